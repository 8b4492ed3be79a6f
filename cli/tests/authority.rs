//! A server with an authority, through the real binary: `burrow server init` and a SQLite
//! store, `burrow admin` (create, tree, redeem, reload), daemons exposing and connecting with
//! their path's tokens, a restart that keeps everything, and a stopped daemon's name that
//! nobody without the server token can take.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::authority::*;
use common::*;

#[test]
fn a_declared_path_is_exposed_with_its_server_token_and_reached_with_its_client_token() {
    let dir = temp_dir("authority-tokens");
    let auth = Authority::start(&dir);
    let (server_token, client_token) = auth.create("/home/ssh", false);
    let target = echo().to_string();
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &target], &server_token);
    let key = wait_for(&exposer.stdout, "daemon public key:");
    let key = key.rsplit(' ').next().unwrap().to_string();
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    let tree = tree_when_exposed(&auth, "/home/ssh");
    eprintln!("burrow admin tree:\n{tree}");
    assert!(tree.starts_with("tenant acme   limits: "), "{tree}");
    assert!(
        tree.contains(&format!("/home/ssh  exposed by {key}")),
        "{tree}"
    );

    let client = auth.daemon("b", &["connect", "/home/ssh", "127.0.0.1:0"], &client_token);
    assert_eq!(ask_until_answered(listening(&client), "hello"), "hello\n");

    // The client token exposes nothing: the registration is refused.
    let thief = auth.daemon("c", &["expose", "/home/ssh", &target], &client_token);
    let refused = wait_for(&thief.stderr, "registration refused");
    assert!(refused.contains("BadToken"), "{refused}");
    // The server token connects to nothing.
    let wrong = auth.daemon("d", &["connect", "/home/ssh", "127.0.0.1:0"], &server_token);
    let listen = listening(&wrong);
    assert_eq!(ask(listen, "hello"), "");
    let unknown = wait_for(&wrong.stderr, "service unavailable");
    assert!(unknown.contains("UnknownService"), "{unknown}");
    // A daemon's token is no master token.
    let file = auth.token_file("not-master", &server_token);
    let err = auth.admin_with(&file, &["tree"]).unwrap_err();
    assert!(err.contains("not a master token"), "{err}");
}

#[test]
fn tenants_paths_and_tokens_survive_a_server_restart() {
    let dir = temp_dir("authority-restart");
    let mut auth = Authority::start(&dir);
    let (server_token, client_token) = auth.create("/home/ssh", false);
    auth.create("/office/db", true);
    let target = echo().to_string();
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &target], &server_token);
    let key_line = wait_for(&exposer.stdout, "daemon public key:");
    let a_key = key_line.rsplit(' ').next().unwrap().to_string();
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    // The master makes the daemon a client of /office/db: an attachment, stored too.
    let db_listen = free_port().to_string();
    let rattach = [
        "rattach",
        "/office/db",
        "--daemon",
        &a_key,
        "--listen",
        &db_listen,
    ];
    auth.admin(&rattach).expect("rattach");
    let before = tree_when_exposed(&auth, "/home/ssh");
    assert!(
        before.contains(&format!("attached to {a_key} (client, online)")),
        "{before}"
    );

    auth.restart();
    // The daemon registers again by itself; the tree is the same, attachment included.
    let after = tree_when_exposed(&auth, "/home/ssh");
    eprintln!("burrow admin tree before and after the restart:\n{after}");
    assert_eq!(before, after);
    let client = auth.daemon("b", &["connect", "/home/ssh", "127.0.0.1:0"], &client_token);
    assert_eq!(ask_until_answered(listening(&client), "again"), "again\n");
    // What the store holds, read with the sqlite3 program: paths, never a token.
    let db = auth.store.join("directory.sqlite3");
    let query =
        "SELECT tenant, name, fixed, length(server), length(client) FROM paths ORDER BY name";
    let out = Command::new("sqlite3")
        .args([path(&db), query])
        .output()
        .expect("sqlite3 (installed by .ci/run)");
    assert!(out.status.success(), "{out:?}");
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(rows, "acme|/home/ssh|0|32|32\nacme|/office/db|1|32|32\n");
    let raw = std::fs::read(&db).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.contains(&client_token) && !text.contains(&server_token),
        "a token in the store"
    );
}

#[test]
fn a_redeemed_client_token_is_refused_and_its_sessions_close() {
    let dir = temp_dir("authority-redeem");
    let auth = Authority::start(&dir);
    let (server_token, client_token) = auth.create("/home/ssh", false);
    let target = echo().to_string();
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &target], &server_token);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    let client = auth.daemon("b", &["connect", "/home/ssh", "127.0.0.1:0"], &client_token);
    let listen = listening(&client);
    assert_eq!(ask_until_answered(listen, "before"), "before\n");

    let out = auth
        .admin(&["redeem", "/home/ssh", "client"])
        .expect("redeem");
    let new_token = out
        .lines()
        .find_map(|l| l.strip_prefix("new client token of /home/ssh: "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    // The destination drops the client's session at once, and the client is refused.
    let dropped = wait_for(&exposer.stderr, "withdrew a peer's access");
    assert!(dropped.contains("key="), "{dropped}");
    let refused = wait_for(&client.stderr, "registration refused");
    assert!(refused.contains("BadToken"), "{refused}");
    assert_eq!(
        ask(listen, "after"),
        "",
        "the old token still reaches the service"
    );
    // The new token works.
    let renewed = auth.daemon("c", &["connect", "/home/ssh", "127.0.0.1:0"], &new_token);
    assert_eq!(ask_until_answered(listening(&renewed), "new"), "new\n");
}

#[test]
fn a_fixed_path_refuses_a_second_client_until_the_master_reloads_it() {
    let dir = temp_dir("authority-fixed");
    let auth = Authority::start(&dir);
    let (server_token, client_token) = auth.create("/home/ssh", true);
    let target = echo().to_string();
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &target], &server_token);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    let first = auth.daemon("b", &["connect", "/home/ssh", "127.0.0.1:0"], &client_token);
    let first_key = wait_for(&first.stdout, "daemon public key:")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let first_at = listening(&first);
    assert_eq!(ask_until_answered(first_at, "one"), "one\n");
    let second = auth.daemon("c", &["connect", "/home/ssh", "127.0.0.1:0"], &client_token);
    let listen = listening(&second);
    assert_eq!(ask(listen, "two"), "");
    let refused = wait_for(&second.stderr, "service unavailable");
    assert!(refused.contains("NotPinned"), "{refused}");
    let tree = auth.admin(&["tree"]).unwrap();
    assert!(tree.contains("fixed, 1 client(s) pinned"), "{tree}");
    let reloaded = auth.admin(&["reload", "/home/ssh"]).unwrap();
    assert!(
        reloaded.contains("forgot 1 pinned client key"),
        "{reloaded}"
    );
    assert_eq!(ask_until_answered(listen, "two"), "two\n");
    // The exposing daemon holds the pins too: the first client's session still stands, but
    // the daemon refuses its next connection by itself (and the server its next lookup).
    assert_eq!(ask(first_at, "three"), "");
    let refused = wait_for(&exposer.stderr, "refused a stream");
    assert!(refused.contains(&first_key), "{refused}");
}

#[test]
fn a_stopped_daemons_path_is_free_at_once_but_only_for_its_server_token() {
    let dir = temp_dir("authority-release");
    let mut auth = Authority::start(&dir);
    // A second tenant, beta, in the same store (the server loads it when it starts again),
    // whose master declares the same path name in its own namespace.
    let beta_master = dir.join("beta-master");
    let init = [
        "server",
        "init",
        "--state-dir",
        path(&auth.store),
        "--tenant",
        "beta",
        "--out",
        path(&beta_master),
    ];
    assert!(
        run(&init)
            .expect("init beta")
            .contains("tenant beta created")
    );
    auth.restart();
    let beta_created = auth
        .admin_with(path(&beta_master), &["create", "/home/ssh"])
        .expect("beta's create");
    let beta_server = beta_created
        .lines()
        .find_map(|l| l.strip_prefix("server token:"))
        .unwrap_or_else(|| panic!("{beta_created}"))
        .trim()
        .to_string();
    let (server_token, client_token) = auth.create("/home/ssh", false);
    let target = echo().to_string();
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &target], &server_token);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    let client = auth.daemon("b", &["connect", "/home/ssh", "127.0.0.1:0"], &client_token);
    let listen = listening(&client);
    assert_eq!(ask_until_answered(listen, "first"), "first\n");
    exposer.terminate();
    // The name is free at once: the tree shows it unexposed.
    let start = Instant::now();
    let tree = loop {
        let tree = auth.admin(&["tree"]).unwrap();
        if tree.contains("not exposed") || start.elapsed() > WAIT {
            break tree;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(tree.contains("/home/ssh  not exposed"), "{tree}");
    // Neither the client token takes it nor a daemon of another tenant: beta's server token
    // exposes beta's /home/ssh, which acme's client never sees (the server answers "unknown
    // service", not the stranger's key, which the client would refuse as a changed key).
    let thief = auth.daemon("c", &["expose", "/home/ssh", &target], &client_token);
    assert!(wait_for(&thief.stderr, "registration refused").contains("BadToken"));
    let stranger_target = echo().to_string();
    let stranger = auth.daemon(
        "s",
        &["expose", "/home/ssh", &stranger_target],
        &beta_server,
    );
    let stranger_key = wait_for(&stranger.stdout, "daemon public key:")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    wait_for(&stranger.stderr, "registered with the rendezvous server");
    let start = Instant::now();
    let beta_tree = loop {
        let tree = auth
            .admin_with(path(&beta_master), &["tree"])
            .expect("beta's tree");
        if tree.contains("exposed by") || start.elapsed() > WAIT {
            break tree;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        beta_tree.contains(&format!("/home/ssh  exposed by {stranger_key}")),
        "{beta_tree}"
    );
    let tree = auth.admin(&["tree"]).unwrap();
    assert!(tree.contains("/home/ssh  not exposed"), "{tree}");
    assert_eq!(
        ask(listen, "stranger"),
        "",
        "acme's client reached beta's daemon"
    );
    let unknown = wait_for(&client.stderr, "service unavailable");
    assert!(
        unknown.contains("UnknownService") && !unknown.contains(&stranger_key),
        "{unknown}"
    );
    let seen: Vec<String> = stranger.stderr.try_iter().collect();
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("session up") && !l.contains(&auth.public)),
        "beta's daemon met a peer: {seen:#?}"
    );
    // The server token does, with a new key, and the client that pinned the old key refuses.
    let successor = auth.daemon("d", &["expose", "/home/ssh", &target], &server_token);
    wait_for(&successor.stderr, "registered with the rendezvous server");
    assert_eq!(ask(listen, "second"), "");
    let changed = wait_for(&client.stderr, "known_services");
    assert!(changed.contains("service unavailable"), "{changed}");
}

#[test]
fn one_daemon_exposes_two_paths_with_a_path_token_file() {
    let dir = temp_dir("authority-two-paths");
    let auth = Authority::start(&dir);
    let (web_server, web_client) = auth.create("/site/web", false);
    let (db_server, db_client) = auth.create("/site/db", false);
    let (web, db) = (echo().to_string(), echo().to_string());
    let primary = auth.token_file("web.token", &web_server);
    let extra = auth.token_file("db.token", &db_server);
    let config = dir.join("site.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{}\"\nserver_key = \"{}\"\ntoken_file = \"{primary}\"\n\
             path_token_files = [\"{extra}\"]\nstate_dir = \"{}\"\nudp = \"127.0.0.1:0\"\n\
             [[expose]]\nname = \"/site/web\"\ntarget = \"{web}\"\n\
             [[expose]]\nname = \"/site/db\"\ntarget = \"{db}\"\n",
            auth.addr,
            auth.public,
            path(&dir.join("site")),
        ),
    )
    .unwrap();
    let site = spawn(&["daemon", "-c", path(&config)]);
    wait_for(&site.stderr, "registered with the rendezvous server");
    let web_user = auth.daemon("w", &["connect", "/site/web", "127.0.0.1:0"], &web_client);
    let db_user = auth.daemon("d", &["connect", "/site/db", "127.0.0.1:0"], &db_client);
    assert_eq!(ask_until_answered(listening(&web_user), "web"), "web\n");
    assert_eq!(ask_until_answered(listening(&db_user), "db"), "db\n");
    // Each client token reaches its own path only.
    let crossed = auth.daemon("x", &["connect", "/site/db", "127.0.0.1:0"], &web_client);
    assert_eq!(ask(listening(&crossed), "db"), "");
    assert!(wait_for(&crossed.stderr, "service unavailable").contains("UnknownService"));
    // More than four path token files is a configuration error, said before starting.
    let mut args = vec!["connect", "/site/db", "127.0.0.1:0"];
    args.extend(["--server", &auth.addr, "--server-key", &auth.public]);
    args.extend(["--token-file", &extra]);
    for _ in 0..5 {
        args.extend(["--path-token-file", &extra]);
    }
    let err = run(&args).unwrap_err();
    assert!(err.contains("at most 4 path token files"), "{err}");
}

#[test]
fn init_and_admin_refuse_bad_input_with_a_clear_error() {
    let dir = temp_dir("authority-bad-input");
    let auth = Authority::start(&dir);
    let store = path(&auth.store);
    let again = run(&["server", "init", "--state-dir", store, "--tenant", "acme"]).unwrap_err();
    assert!(again.contains("tenant acme already exists"), "{again}");
    let bad = run(&[
        "server",
        "init",
        "--state-dir",
        store,
        "--tenant",
        "Acme Co",
    ])
    .unwrap_err();
    assert!(bad.contains("--tenant"), "{bad}");
    let second = run(&["server", "init", "--state-dir", store, "--tenant", "beta"]).unwrap();
    assert!(second.contains("master token: "), "{second}");
    for (args, needle) in [
        (vec!["create", "no-slash"], "must start with '/'"),
        (vec!["create", "/a/../b"], "invalid service name"),
        (vec!["delete", "/never/made"], "not a path of tenant acme"),
        (vec!["reload", "/never/made"], "not a path of tenant acme"),
    ] {
        let err = auth.admin(&args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    auth.create("/twice", false);
    let err = auth.admin(&["create", "/twice"]).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    let err = auth.admin(&["reload", "/twice"]).unwrap_err();
    assert!(err.contains("is not fixed"), "{err}");
    // A store others can read is refused before the server starts.
    let db = auth.store.join("directory.sqlite3");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key = path(&auth.key);
    let refused = run(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--key",
        key,
        "--state-dir",
        store,
    ]);
    assert!(refused.unwrap_err().contains("chmod 600"));
}
