//! Failed attachments through the protocol: a daemon tells the server that an attachment
//! of a path failed, and the tenant's master lists it (`AdminCommand::Failed`) until the
//! daemon says it runs, the path is detached or deleted, or the daemon's registration ends.
//! Reasons are bounded and cleaned; other tenants' and undeclared paths are ignored.

use std::time::Duration;

use super::authority::{admin, daemon, server_config};
use super::*;
use crate::rendezvous::directory::{
    AdminAnswer, AdminCommand, AttachFailure, Attachment, DaemonRef, MAX_ATTACH_ERROR_LEN,
    MAX_FAILED_PAGE,
};

const SECOND: Duration = Duration::from_secs(1);

/// Every failed attachment acme's master sees, page by page.
fn failed(h: &mut Harness, master: usize) -> Vec<AttachFailure> {
    let mut all = Vec::new();
    loop {
        let after = u32::try_from(all.len()).unwrap();
        match admin(h, master, "M", AdminCommand::Failed { after }) {
            Ok(AdminAnswer::Failed { failures, more }) => {
                assert!(failures.len() <= MAX_FAILED_PAGE);
                all.extend(failures);
                if !more {
                    return all;
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

fn report(h: &mut Harness, i: usize, path: &str, why: Option<&str>) {
    let why = why.map(str::to_string);
    h.with(i, |c, _| c.report_attach(name(path), why));
}

#[test]
fn a_failed_attachment_is_listed_until_it_runs_or_its_daemon_goes() {
    let mut h = Harness::new(server_config(false));
    let master = daemon(&mut h, "M", &[], &[]);
    let user = daemon(&mut h, "C", &[], &[]);
    let stranger = daemon(&mut h, "C2", &[], &[]);
    // Told before it is registered: sent once it is.
    report(
        &mut h,
        user,
        "/ssh",
        Some("cannot listen on 127.0.0.1:22:\naddress in use"),
    );
    h.run(SECOND);
    // Another tenant's daemon and a path nobody declared are not acme's business.
    report(&mut h, stranger, "/ssh", Some("other tenant"));
    report(&mut h, user, "/nowhere", Some("undeclared"));
    h.run(SECOND);
    let shown = AttachFailure {
        daemon: DaemonRef::Key(key(user)),
        name: name("/ssh"),
        reason: "cannot listen on 127.0.0.1:22: address in use".into(),
    };
    assert_eq!(failed(&mut h, master), [shown]);

    // A long reason is cut to the bound, on a character boundary.
    report(
        &mut h,
        user,
        "/ssh",
        Some(&"é".repeat(MAX_ATTACH_ERROR_LEN)),
    );
    h.run(SECOND);
    let reason = failed(&mut h, master).pop().expect("listed").reason;
    assert!(reason.len() <= MAX_ATTACH_ERROR_LEN && reason.starts_with('é'));

    // It runs now: gone.
    report(&mut h, user, "/ssh", None);
    h.run(SECOND);
    assert_eq!(failed(&mut h, master), []);

    // Failing again, then the daemon stops: gone with its registration.
    report(&mut h, user, "/ssh", Some("again"));
    h.run(SECOND);
    assert_eq!(failed(&mut h, master).len(), 1);
    h.with(user, |c, now| c.stop(now));
    h.run(SECOND);
    assert_eq!(failed(&mut h, master), []);
}

#[test]
fn a_detachment_ends_a_failure_and_pages_hold_every_one() {
    let mut h = Harness::new(server_config(false));
    let master = daemon(&mut h, "M", &[], &[]);
    let users: Vec<usize> = (0..MAX_FAILED_PAGE + 2)
        .map(|_| daemon(&mut h, "C", &[], &[]))
        .collect();
    h.run(SECOND);
    for &u in &users {
        report(&mut h, u, "/ssh", Some("bad"));
    }
    h.run(SECOND);
    assert_eq!(failed(&mut h, master).len(), users.len(), "over two pages");

    // The master attaches /ssh to the first anew, then detaches it: its failure goes.
    let attach = AdminCommand::Rattach {
        name: name("/ssh"),
        daemon: key(users[0]).into(),
        attach: Attachment::Listen {
            addr: "127.0.0.1:2222".parse().unwrap(),
        },
    };
    assert!(admin(&mut h, master, "M", attach).is_ok());
    report(&mut h, users[0], "/ssh", Some("still bad"));
    h.run(SECOND);
    let detach = AdminCommand::Rdetach {
        name: name("/ssh"),
        daemon: key(users[0]).into(),
    };
    assert!(admin(&mut h, master, "M", detach).is_ok());
    let left = failed(&mut h, master);
    assert_eq!(left.len(), users.len() - 1);
    assert!(
        left.iter()
            .all(|f| f.daemon != DaemonRef::Key(key(users[0])))
    );

    // The path is deleted: every failure of it goes.
    let delete = AdminCommand::Delete { name: name("/ssh") };
    assert!(admin(&mut h, master, "M", delete).is_ok());
    assert_eq!(failed(&mut h, master), []);
}
