//! Daemon tokens through the real binary: `burrow admin register` prints a daemon token, the
//! first daemon that registers with it binds its key (`burrow admin daemons` shows it online
//! with that key and the path it exposes), a second daemon with the same token and another key
//! is refused with the reason in its log, and `unregister` takes the first one offline.

use std::time::{Duration, Instant};

mod common;

use common::authority::*;
use common::*;

/// `burrow admin daemons` once `needle` shows in it.
fn daemons_when(auth: &Authority, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let out = auth.admin(&["daemons"]).expect("daemons");
        if out.contains(needle) || start.elapsed() > WAIT {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_daemon_token_binds_the_first_key_and_unregister_takes_it_offline() {
    let dir = temp_dir("daemons");
    let auth = Authority::start(&dir);
    let (ssh_server, _) = auth.create("/home/ssh", false);
    let out = auth.admin(&["register", "laptop"]).expect("register");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("daemon token:"))
        .unwrap_or_else(|| panic!("no daemon token in {out}"))
        .trim()
        .to_string();
    let listed = auth.admin(&["daemons"]).expect("daemons");
    assert!(
        listed.contains("laptop") && listed.contains("not yet bound"),
        "{listed}"
    );

    // The daemon registers with its daemon token, and exposes /home/ssh with the path's
    // server token.
    let target = echo().to_string();
    let server_token = auth.token_file("ssh.server", &ssh_server);
    let a = auth.daemon(
        "a",
        &[
            "expose",
            "/home/ssh",
            &target,
            "--path-token-file",
            &server_token,
        ],
        &token,
    );
    let a_key = wait_for(&a.stdout, "daemon public key:");
    let a_key = a_key.rsplit(' ').next().unwrap().to_string();
    wait_for(&a.stderr, "registered with the rendezvous server");
    let listed = daemons_when(&auth, "online");
    eprintln!("burrow admin daemons:\n{listed}");
    let row = listed
        .lines()
        .find(|l| l.starts_with("laptop"))
        .unwrap_or("");
    assert!(row.contains(&a_key), "{listed}");
    assert!(
        row.contains("online") && row.contains("exposes /home/ssh"),
        "{listed}"
    );
    let only = auth.admin(&["daemons", "/home/ssh"]).expect("daemons PATH");
    assert!(only.contains("laptop"), "{only}");

    // A second daemon with the same token and another key is refused, with the reason.
    let b = auth.daemon("b", &["connect", "/home/ssh", "127.0.0.1:0"], &token);
    let refused = wait_for(&b.stderr, "registration refused");
    assert!(refused.contains("bound to another key"), "{refused}");
    assert!(refused.contains("redeem daemon laptop"), "{refused}");
    let listed = auth.admin(&["daemons"]).expect("daemons");
    assert!(
        listed.contains(&a_key),
        "still bound to the first key: {listed}"
    );

    // Refusals name the reason.
    let cases: [(&[&str], &str); 4] = [
        (&["register", "Bad Name"], "daemon name"),
        (&["register", "laptop"], "already exists"),
        (&["unregister", "nas"], "is not a daemon of tenant acme"),
        (&["daemons", "/nope"], "is not a path of tenant acme"),
    ];
    for (args, reason) in cases {
        let err = auth.admin(args).unwrap_err();
        assert!(err.contains(reason), "{args:?}: {err}");
    }

    // Unregister: the entry goes and the daemon is offline at once (its token no longer works).
    let out = auth.admin(&["unregister", "laptop"]).expect("unregister");
    assert!(out.contains("unregistered daemon laptop"), "{out}");
    wait_for(&a.stderr, "registration refused");
    let listed = auth.admin(&["daemons"]).expect("daemons");
    assert!(!listed.contains("laptop"), "{listed}");
    let tree = auth.admin(&["tree"]).expect("tree");
    assert!(
        tree.contains("/home/ssh") && tree.contains("not exposed"),
        "{tree}"
    );
}
