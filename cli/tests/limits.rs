//! A path's limit of connections through the real binary: `burrow admin create PATH
//! --max-connections N`, the connecting daemon past the limit told why, its place free when
//! a connecting daemon stops, and `burrow admin tree` showing limits and attachments.

mod common;

use common::authority::*;
use common::*;

/// Creates `path` with a limit of `max` connections: its (server, client) tokens.
fn create_limited(auth: &Authority, path: &str, max: &str) -> (String, String) {
    let out = auth
        .admin(&["create", path, "--max-connections", max])
        .expect("admin create");
    let token = |label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {out}"))
            .trim()
            .to_string()
    };
    (token("server token:"), token("client token:"))
}

#[test]
fn a_path_at_its_limit_refuses_a_connecting_daemon_until_one_stops() {
    let dir = temp_dir("limits");
    let auth = Authority::start(&dir);
    let (server, client) = create_limited(&auth, "/home/ssh", "1");
    auth.create("/office/web", false);
    let target = echo().to_string();
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &target], &server);
    wait_for(&exposer.stderr, "registered with the rendezvous server");

    let first = auth.daemon("b", &["connect", "/home/ssh", "127.0.0.1:0"], &client);
    assert_eq!(ask_until_answered(listening(&first), "one"), "one\n");
    let second = auth.daemon("c", &["connect", "/home/ssh", "127.0.0.1:0"], &client);
    let second_key = wait_for(&second.stdout, "daemon public key:")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let second_at = listening(&second);
    assert_eq!(ask(second_at, "two"), "", "refused");
    let refusal = wait_for(&second.stderr, "is at its limit");
    assert!(
        refusal.contains("path /home/ssh is at its limit of 1 connections"),
        "{refusal}"
    );

    // The tree shows the limit, the one connection, and an attachment.
    let web_at = free_port().to_string();
    auth.admin(&[
        "rattach",
        "/office/web",
        "--daemon",
        &second_key,
        "--listen",
        &web_at,
    ])
    .expect("rattach");
    let tree = auth.admin(&["tree"]).expect("tree");
    eprintln!("burrow admin tree:\n{tree}");
    assert!(
        tree.lines().next().is_some_and(
            |l| l.contains("tenant acme   limits: 10000 paths, 1000 daemons, relay 16 MiB/s")
        ),
        "{tree}"
    );
    let row = tree.lines().find(|l| l.contains("/home/ssh")).unwrap_or("");
    assert!(row.contains("connections 1 of 1"), "{tree}");
    assert!(
        tree.contains(&format!("└── attached to {second_key} (client, online)")),
        "{tree}"
    );

    // `daemons` lists the daemons online without an entry of their own, marked as such.
    let daemons = auth.admin(&["daemons"]).expect("daemons");
    eprintln!("burrow admin daemons:\n{daemons}");
    let row = daemons
        .lines()
        .find(|l| l.contains(&second_key))
        .unwrap_or("");
    assert!(
        row.starts_with("(not registered)")
            && row.contains("online")
            && row.contains("connects to /home/ssh, connects to /office/web"),
        "{daemons}"
    );
    assert_eq!(
        daemons.matches("(not registered)").count(),
        3,
        "the exposer and both clients, not the asking master: {daemons}"
    );

    // The first connecting daemon stops: the second gets through.
    first.terminate();
    assert_eq!(ask_until_answered(second_at, "two"), "two\n");
    let tree = auth.admin(&["tree"]).expect("tree");
    let row = tree.lines().find(|l| l.contains("/home/ssh")).unwrap_or("");
    assert!(row.contains("connections 1 of 1"), "{tree}");

    // A limit of 0 is refused before anything is sent.
    let err = auth
        .admin(&["create", "/x", "--max-connections", "0"])
        .unwrap_err();
    assert!(err.contains("--max-connections"), "{err}");
}

#[test]
fn a_tenants_limits_are_set_by_the_operator_shown_and_enforced() {
    let dir = temp_dir("tenant-limits");
    let mut auth = Authority::start(&dir);
    let store = path(&auth.store).to_string();
    // Out of range, or a tenant that does not exist: refused with the reason.
    let err = run(&[
        "server",
        "limits",
        "--state-dir",
        &store,
        "--tenant",
        "acme",
        "--max-paths",
        "0",
    ])
    .unwrap_err();
    assert!(err.contains("--max-paths"), "{err}");
    let err = run(&[
        "server",
        "limits",
        "--state-dir",
        &store,
        "--tenant",
        "nobody",
        "--max-paths",
        "1",
    ])
    .unwrap_err();
    assert!(err.contains("no tenant nobody"), "{err}");
    let err = run(&[
        "server",
        "limits",
        "--state-dir",
        &store,
        "--tenant",
        "acme",
        "--relay-rate",
        "3 furlongs",
    ])
    .unwrap_err();
    assert!(err.contains("not a unit"), "{err}");
    let out = run(&[
        "server",
        "limits",
        "--state-dir",
        &store,
        "--tenant",
        "acme",
        "--max-paths",
        "1",
        "--max-daemons",
        "1",
        "--relay-rate",
        "64KiB",
    ])
    .expect("server limits");
    assert!(
        out.contains("tenant acme: max paths 1, max daemons 1, relay 64 KiB/s"),
        "{out}"
    );
    auth.restart();

    let tree = auth.admin(&["tree"]).expect("tree");
    println!("{tree}");
    assert!(
        tree.starts_with("tenant acme   limits: 1 paths, 1 daemons, relay 64 KiB/s"),
        "{tree}"
    );
    auth.create("/home/ssh", false);
    let err = auth.admin(&["create", "/office/web"]).unwrap_err();
    assert!(
        err.contains("tenant acme is at its limit of 1 paths"),
        "{err}"
    );
    auth.admin(&["register", "laptop"]).expect("register");
    let err = auth.admin(&["register", "nas"]).unwrap_err();
    assert!(
        err.contains("tenant acme is at its limit of 1 daemons"),
        "{err}"
    );

    // A new tenant gets its limits at creation.
    let out = run(&[
        "server",
        "init",
        "--state-dir",
        &store,
        "--tenant",
        "beta",
        "--max-daemons",
        "3",
        "--out",
        path(&dir.join("beta.master")),
    ])
    .expect("init beta");
    assert!(
        out.contains("limits: max paths default, max daemons 3, relay default"),
        "{out}"
    );
}
