//! `burrow admin rattach`/`rdetach` through the protocol: the master attaches a path to a
//! daemon of its tenant, the server pushes it (through loss, and again when the daemon comes
//! back), the attachment authorises the daemon, and every refusal names its reason.

use std::time::Duration;

use super::authority::{admin, daemon, lookup, registered, server_config};
use super::*;
use crate::rendezvous::directory::{
    AdminAnswer, AdminCommand, Attachment, DirectoryChange, MAX_ATTACHMENTS_PER_DAEMON,
    MAX_TARGET_LEN,
};

const SECOND: Duration = Duration::from_secs(1);

fn listen() -> Attachment {
    Attachment::Listen {
        addr: "127.0.0.1:2222".parse().unwrap(),
    }
}

fn rattach(path: &str, daemon: usize, attach: Attachment) -> AdminCommand {
    AdminCommand::Rattach {
        name: name(path),
        daemon: key(daemon).into(),
        attach,
    }
}

fn rdetach(path: &str, daemon: usize) -> AdminCommand {
    AdminCommand::Rdetach {
        name: name(path),
        daemon: key(daemon).into(),
    }
}

/// The attachments daemon `i` was told of, in order.
fn pushed(h: &Harness, i: usize) -> Vec<(ServiceName, Option<Attachment>)> {
    h.events(i)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Attach { name, attach } => Some((name, attach)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_rattached_client_is_told_and_authorised_and_rdetach_withdraws_it() {
    let mut h = Harness::new(server_config(false));
    let server = daemon(&mut h, "S", &[], &["/ssh"]);
    // Registered with the server token: it may not connect to /ssh on its own.
    let user = daemon(&mut h, "S", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    assert_eq!(lookup(&mut h, user, "/ssh"), Err(ErrorCode::UnknownService));

    let answer = admin(&mut h, master, "M", rattach("/ssh", user, listen()));
    assert_eq!(
        answer,
        Ok(AdminAnswer::Rattached {
            name: name("/ssh"),
            daemon: key(user)
        })
    );
    assert_eq!(pushed(&h, user), [(name("/ssh"), Some(listen()))]);
    assert_eq!(lookup(&mut h, user, "/ssh"), Ok(key(server)));
    let stored = h
        .server()
        .directory()
        .attachment(&"acme".parse().unwrap(), &key(user), &name("/ssh"))
        .cloned();
    assert_eq!(stored.and_then(|a| a.attach), Some(listen()));
    assert_eq!(
        h.count_server(|e| matches!(e, ServerEvent::Directory(DirectoryChange::PutAttachment(_)))),
        1
    );

    // Detached: told, no longer authorised, and the record goes once acknowledged.
    let answer = admin(&mut h, master, "M", rdetach("/ssh", user));
    assert!(
        matches!(answer, Ok(AdminAnswer::Rdetached { .. })),
        "{answer:?}"
    );
    assert_eq!(pushed(&h, user).last(), Some(&(name("/ssh"), None)));
    assert_eq!(lookup(&mut h, user, "/ssh"), Err(ErrorCode::UnknownService));
    assert!(h.server().directory().records().attachments.is_empty());
    assert_eq!(
        admin(&mut h, master, "M", rdetach("/ssh", user)),
        Err(ErrorCode::UnknownService)
    );
}

#[test]
fn a_rattached_server_may_publish_the_path() {
    let mut h = Harness::new(server_config(false));
    // Registered with the client token: exposing /ssh on its own is refused.
    let exposer = daemon(&mut h, "C", &[], &[]);
    let user = daemon(&mut h, "C", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let target = Attachment::Expose {
        target: "127.0.0.1:22".into(),
    };
    let answer = admin(
        &mut h,
        master,
        "M",
        rattach("/ssh", exposer, target.clone()),
    );
    assert!(
        matches!(answer, Ok(AdminAnswer::Rattached { .. })),
        "{answer:?}"
    );
    assert_eq!(pushed(&h, exposer), [(name("/ssh"), Some(target))]);
    // The daemon publishes it (as its owner does on the push).
    h.with(exposer, |c, now| {
        c.set_services(now, vec![name("/ssh")], vec![])
    })
    .unwrap();
    h.run(SECOND);
    assert!(registered(&h, exposer));
    assert_eq!(lookup(&mut h, user, "/ssh"), Ok(key(exposer)));
}

#[test]
fn rattach_refuses_other_tenants_unknown_daemons_and_bad_input_by_name() {
    let mut h = Harness::new(server_config(false));
    let user = daemon(&mut h, "S", &[], &[]);
    let other_master = daemon(&mut h, "M2", &[], &[]);
    let open = daemon(&mut h, "open", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    let cases = [
        // Another tenant's master cannot reach acme's daemon, nor an open daemon.
        (
            other_master,
            "M2",
            rattach("/ssh", user, listen()),
            ErrorCode::UnknownService,
        ),
        (
            master,
            "M",
            rattach("/ssh", open, listen()),
            ErrorCode::UnknownService,
        ),
        // A key that never registered.
        (
            master,
            "M",
            rattach("/ssh", 40, listen()),
            ErrorCode::UnknownService,
        ),
        (
            master,
            "M",
            rattach("/nope", user, listen()),
            ErrorCode::UnknownService,
        ),
        (
            master,
            "nope",
            rattach("/ssh", user, listen()),
            ErrorCode::BadToken,
        ),
        // A path token is no master token.
        (
            user,
            "S",
            rattach("/ssh", user, listen()),
            ErrorCode::BadToken,
        ),
        // (A target longer than MAX_TARGET_LEN does not even decode: see messages.rs.)
        (
            master,
            "M",
            rattach(
                "/ssh",
                user,
                Attachment::Expose {
                    target: "a\nb".into(),
                },
            ),
            ErrorCode::Malformed,
        ),
        (
            master,
            "M",
            rdetach("/ssh", user),
            ErrorCode::UnknownService,
        ),
    ];
    for (i, token, command, code) in cases {
        assert_eq!(
            admin(&mut h, i, token, command.clone()),
            Err(code),
            "{command:?}"
        );
    }
    assert!(pushed(&h, user).is_empty());
    assert!(h.server().directory().records().attachments.is_empty());
    // A target at the bound is taken.
    let longest = Attachment::Expose {
        target: "x".repeat(MAX_TARGET_LEN),
    };
    assert!(admin(&mut h, master, "M", rattach("/ssh", user, longest.clone())).is_ok());
    assert_eq!(pushed(&h, user), [(name("/ssh"), Some(longest))]);

    // A path another daemon exposes: attaching it as a server would cost `user` its
    // registration, so it is refused.
    let exposer = daemon(&mut h, "S", &[], &["/ssh"]);
    h.run(SECOND);
    let expose = Attachment::Expose {
        target: "127.0.0.1:22".into(),
    };
    assert_eq!(
        admin(&mut h, master, "M", rattach("/ssh", user, expose)),
        Err(ErrorCode::NameTaken)
    );
    assert!(registered(&h, exposer));
    // At most MAX_ATTACHMENTS_PER_DAEMON per daemon (/ssh is the first).
    for i in 1..=MAX_ATTACHMENTS_PER_DAEMON {
        let path = format!("/p{i}");
        let create = AdminCommand::Create {
            name: name(&path),
            fixed: false,
            max_connections: None,
        };
        assert!(admin(&mut h, master, "M", create).is_ok());
        let outcome = admin(&mut h, master, "M", rattach(&path, user, listen()));
        if i < MAX_ATTACHMENTS_PER_DAEMON {
            assert!(outcome.is_ok(), "{i}: {outcome:?}");
        } else {
            assert_eq!(outcome, Err(ErrorCode::TooMany));
        }
    }
}

#[test]
fn attachments_reach_a_daemon_through_loss_and_when_it_comes_back() {
    let mut h = Harness::new(server_config(false));
    let user = daemon(&mut h, "S", &[], &[]);
    let master = daemon(&mut h, "M", &[], &[]);
    h.run(SECOND);
    h.impair(5, 300, 100);
    let answer = {
        let request = h.with(master, |c, now| {
            c.admin(now, "M".into(), rattach("/ssh", user, listen()))
        });
        h.run(15 * SECOND);
        h.events(master).into_iter().find_map(|e| match e {
            ClientEvent::AdminAnswered { request: r, answer } if r == request => Some(answer),
            _ => None,
        })
    };
    assert!(
        matches!(answer, Some(AdminAnswer::Rattached { .. })),
        "{answer:?}"
    );
    assert_eq!(
        pushed(&h, user),
        [(name("/ssh"), Some(listen()))],
        "once, through loss"
    );
    h.impair(5, 0, 0);

    // Away while the master detaches it: the detachment waits in the directory and reaches
    // the daemon when it registers again (with the attachment state it must converge to).
    h.set_online(user, false);
    h.run(SECOND);
    // Still registered at the server (its lease runs), but nothing gets through.
    assert!(matches!(
        admin(&mut h, master, "M", rdetach("/ssh", user)),
        Ok(AdminAnswer::Rdetached { .. })
    ));
    h.run(15 * SECOND);
    assert_eq!(pushed(&h, user).len(), 1, "offline");
    assert_eq!(h.server().directory().records().attachments.len(), 1);
    h.set_online(user, true);
    h.run(2 * SECOND);
    assert_eq!(pushed(&h, user).last(), Some(&(name("/ssh"), None)));
    assert!(h.server().directory().records().attachments.is_empty());
}
