//! `burrow admin rattach` and `rdetach` through the real binary: the master attaches a path
//! to a running daemon, which listens for it or exposes it at once (no restart, nothing run on
//! its machine), keeps it across a restart, and lets it go when the master detaches it; every
//! refusal names its reason.

mod common;

use common::authority::*;
use common::*;

/// The key a daemon printed.
fn key_of(daemon: &Proc) -> String {
    let line = wait_for(&daemon.stdout, "daemon public key:");
    line.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn rattach_from_the_master_takes_effect_on_a_running_daemon_without_a_restart() {
    let dir = temp_dir("rattach");
    let auth = Authority::start(&dir);
    let (ssh_server, _) = auth.create("/home/ssh", false);
    let (web_server, _) = auth.create("/office/web", false);
    let (_, db_client) = auth.create("/office/db", false);
    let (ssh_target, web_target, db_target) =
        (echo().to_string(), echo().to_string(), echo().to_string());
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &ssh_target], &ssh_server);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    // Daemon b holds only /office/web's server token.
    let b = auth.daemon("b", &["expose", "/office/web", &web_target], &web_server);
    let b_key = key_of(&b);
    wait_for(&b.stderr, "registered with the rendezvous server");
    let b_state = dir.join("b");

    // The master makes b a client of /home/ssh: b listens for it at once.
    let listen = free_port();
    let out = auth
        .admin(&[
            "rattach",
            "/home/ssh",
            "--daemon",
            &b_key,
            "--listen",
            &listen.to_string(),
        ])
        .expect("rattach");
    assert!(
        out.contains(&format!("attached /home/ssh to daemon {b_key}")),
        "{out}"
    );
    assert_eq!(ask_until_answered(listen, "pushed"), "pushed\n");
    let attached = std::fs::read_to_string(b_state.join("attached.toml")).unwrap();
    assert!(attached.contains("by_master = true"), "{attached}");
    // Its owner cannot drop it behind the master's back.
    let err = run(&["detach", "/home/ssh", "--state-dir", path(&b_state)]).unwrap_err();
    assert!(err.contains("attached by the tenant's master"), "{err}");

    // ... and a server of /office/db, which a client token holder then reaches.
    let out = auth
        .admin(&[
            "rattach",
            "/office/db",
            "--daemon",
            &b_key,
            "--expose",
            &db_target,
        ])
        .expect("rattach --expose");
    assert!(out.contains("attached /office/db"), "{out}");
    let tree = tree_when_exposed(&auth, "/office/db");
    eprintln!("burrow admin tree:\n{tree}");
    let row = tree
        .lines()
        .find(|l| l.contains("/office/db"))
        .unwrap_or("");
    assert!(row.contains(&format!("exposed by {b_key}")), "{tree}");
    let user = auth.daemon("c", &["connect", "/office/db", "127.0.0.1:0"], &db_client);
    assert_eq!(ask_until_answered(listening(&user), "db"), "db\n");

    // Refusals name the reason.
    let stranger = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let long = "x".repeat(201);
    let not_master = auth.token_file("not-master", &web_server);
    let cases: [(Vec<&str>, &str); 6] = [
        (
            vec![
                "rattach",
                "/home/ssh",
                "--daemon",
                stranger,
                "--listen",
                "127.0.0.1:1",
            ],
            "no daemon with key",
        ),
        (
            vec![
                "rattach",
                "/home/ssh",
                "--daemon",
                "nokey",
                "--listen",
                "127.0.0.1:1",
            ],
            "is not a public key",
        ),
        (
            vec![
                "rattach",
                "/nope",
                "--daemon",
                &b_key,
                "--listen",
                "127.0.0.1:1",
            ],
            "is not a path of tenant acme",
        ),
        (
            vec![
                "rattach",
                "/home/ssh",
                "--daemon",
                &b_key,
                "--expose",
                &long,
            ],
            "a target has 1 to 200 bytes",
        ),
        (
            vec![
                "rattach",
                "/home/ssh",
                "--daemon",
                &b_key,
                "--listen",
                "nowhere",
            ],
            "is not IP:PORT",
        ),
        (
            vec!["rdetach", "/office/web", "--daemon", &b_key],
            "is not attached",
        ),
    ];
    for (args, needle) in cases {
        let err = auth.admin(&args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let err = auth
        .admin_with(
            &not_master,
            &[
                "rattach",
                "/home/ssh",
                "--daemon",
                &b_key,
                "--listen",
                "127.0.0.1:1",
            ],
        )
        .unwrap_err();
    assert!(err.contains("not a master token"), "{err}");

    // After a restart (SIGKILL), both come back.
    drop(user);
    drop(b);
    let b = auth.daemon("b", &["expose", "/office/web", &web_target], &web_server);
    wait_for(&b.stderr, "registered with the rendezvous server");
    assert_eq!(ask_until_answered(listen, "again"), "again\n");

    // Detached by the master: b stops listening at once, and the attachment is gone.
    let out = auth
        .admin(&["rdetach", "/home/ssh", "--daemon", &b_key])
        .expect("rdetach");
    assert!(out.contains("detached /home/ssh"), "{out}");
    wait_for(&b.stderr, "the tenant's master detached /home/ssh");
    let applied = wait_for(&b.stderr, "the master's attachment of /home/ssh");
    assert!(applied.contains("1 removed (/home/ssh)"), "{applied}");
    assert_eq!(ask(listen, "gone"), "");
    let attached = std::fs::read_to_string(b_state.join("attached.toml")).unwrap();
    assert!(!attached.contains("/home/ssh"), "{attached}");
}

/// `burrow admin tree` once it shows `needle`, or a panic after a while.
fn tree_showing(auth: &Authority, needle: &str, present: bool) -> String {
    let start = std::time::Instant::now();
    loop {
        let tree = auth.admin(&["tree"]).expect("tree");
        if tree.contains(needle) == present {
            return tree;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "tree {} {needle:?}:\n{tree}",
            if present {
                "never showed"
            } else {
                "still shows"
            }
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_failed_rattach_is_shown_to_the_master_until_it_is_detached() {
    let dir = temp_dir("rattach-failed");
    let auth = Authority::start(&dir);
    let (ssh_server, _) = auth.create("/home/ssh", false);
    let (web_server, _) = auth.create("/office/web", false);
    let ssh_target = echo().to_string();
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &ssh_target], &ssh_server);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    let web_target = echo().to_string();
    let b = auth.daemon("b", &["expose", "/office/web", &web_target], &web_server);
    let b_key = key_of(&b);
    wait_for(&b.stderr, "registered with the rendezvous server");
    auth.admin(&["register", "laptop"]).expect("register");

    // The address the master names is taken on b's machine: b cannot listen there.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    auth.admin(&[
        "rattach",
        "/home/ssh",
        "--daemon",
        &b_key,
        "--listen",
        &addr,
    ])
    .expect("rattach");
    wait_for(
        &b.stderr,
        "cannot run what the master attached as /home/ssh",
    );
    let tree = tree_showing(&auth, "attach failed:", true);
    println!("{tree}");
    let line = tree
        .lines()
        .find(|l| l.contains("attach failed:"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(&format!("attached to {b_key} (client, online)")),
        "{tree}"
    );
    assert!(line.contains(&addr), "the reason names the address: {tree}");
    let daemons = auth.admin(&["daemons"]).expect("daemons");
    println!("{daemons}");
    assert!(daemons.contains("/home/ssh: attach failed:"), "{daemons}");

    // Detached by the master: the failure goes with it.
    auth.admin(&["rdetach", "/home/ssh", "--daemon", &b_key])
        .expect("rdetach");
    tree_showing(&auth, "attach failed:", false);
    drop(taken);
}
