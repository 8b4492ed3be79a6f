//! `burrow import` on a running daemon, through the real binary: a path token added through
//! the control socket takes effect without a restart (with `burrow attach` for the listener),
//! the server's answer says what it allows, refusals change nothing, the limit on path tokens
//! holds, and what was imported comes back after a restart.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

mod common;

use common::authority::*;
use common::*;

/// A tenant with paths /home/ssh and /office/web, daemon `a` exposing /home/ssh (registered);
/// returns the authority, `a`, /home/ssh's client token, /office/web's server token and an
/// echo target for it.
fn exposed_ssh(dir: &std::path::Path) -> (Authority, Proc, String, String, String) {
    let auth = Authority::start(dir);
    let (ssh_server, ssh_client) = auth.create("/home/ssh", false);
    let (web_server, _) = auth.create("/office/web", false);
    let (ssh_target, web_target) = (echo().to_string(), echo().to_string());
    let exposer = auth.daemon("a", &["expose", "/home/ssh", &ssh_target], &ssh_server);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    (auth, exposer, ssh_client, web_server, web_target)
}

#[test]
fn import_and_attach_on_a_running_daemon_take_effect_without_a_restart() {
    let dir = temp_dir("import");
    let (auth, _exposer, ssh_client, web_server, web_target) = exposed_ssh(&dir);
    // Daemon b exposes /office/web and holds no token for /home/ssh yet.
    let b = auth.daemon("b", &["expose", "/office/web", &web_target], &web_server);
    wait_for(&b.stderr, "registered with the rendezvous server");
    let b_state = dir.join("b");
    let state = ["--state-dir", path(&b_state)];

    // Refusals name the reason and change nothing.
    let bad_mode = dir.join("open.token");
    std::fs::write(&bad_mode, format!("{ssh_client}\n")).unwrap();
    std::fs::set_permissions(&bad_mode, std::fs::Permissions::from_mode(0o644)).unwrap();
    let long = "x".repeat(49);
    let nobodys = "0".repeat(48);
    let refusals: [(Vec<&str>, &str); 4] = [
        (vec!["import", &nobodys], "import refused: BadToken"),
        (vec!["import", &long], "at most 48"),
        (vec!["import", "a b"], "printable ASCII"),
        (vec!["import", "--token-file", path(&bad_mode)], "chmod 600"),
    ];
    for (mut args, needle) in refusals {
        args.extend(state);
        let err = run(&args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!b_state.join("path-tokens").exists());
    let nobody = dir.join("none");
    let file = auth.token_file("x", &ssh_client);
    let err = run(&[
        "import",
        "--token-file",
        &file,
        "--state-dir",
        path(&nobody),
    ])
    .unwrap_err();
    assert!(err.contains("no daemon answers"), "{err}");

    // The client token of /home/ssh, from a file: the daemon says what it may use now.
    let file = auth.token_file("ssh.client", &ssh_client);
    let mut args = vec!["import", "--token-file", &file];
    args.extend(state);
    let out = run(&args).expect("import");
    assert_eq!(
        out.trim(),
        "imported; this daemon may use: exposes /office/web; connects to /home/ssh"
    );
    let mode = std::fs::metadata(b_state.join("path-tokens"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = run(&args).expect("import again");
    assert!(again.starts_with("already imported;"), "{again}");

    // Attached: reached at once, with no restart, and /office/web never stopped.
    let listen = free_port().to_string();
    let mut attach = vec!["attach", "/home/ssh", "--listen", &listen];
    attach.extend(state);
    let out = run(&attach).expect("attach");
    assert!(out.contains("1 added (/home/ssh)"), "{out}");
    let listen: SocketAddr = listen.parse().unwrap();
    assert_eq!(ask_until_answered(listen, "through"), "through\n");

    // The limit on path tokens per registration: four in all, the fifth is refused by name.
    for p in ["/p1", "/p2", "/p3"] {
        let (_, client) = auth.create(p, false);
        let mut args = vec!["import", &client];
        args.extend(state);
        run(&args).expect("import within the limit");
    }
    let (_, fifth) = auth.create("/p4", false);
    let mut args = vec!["import", &fifth];
    args.extend(state);
    let err = run(&args).unwrap_err();
    assert!(err.contains("MAX_PATH_TOKENS = 4"), "{err}");
    assert_eq!(ask(listen, "still"), "still\n");

    // After a restart (SIGKILL: no goodbye), the imported tokens and the attached listener
    // come back, and the path is reached again.
    drop(b);
    let b = auth.daemon("b", &["expose", "/office/web", &web_target], &web_server);
    wait_for(&b.stderr, "registered with the rendezvous server");
    assert_eq!(
        ask_until_answered(listen, "after restart"),
        "after restart\n"
    );
}

#[test]
fn a_redeemed_imported_token_is_refused_alone_named_and_forgotten_by_path() {
    let dir = temp_dir("import-forget");
    let (auth, _exposer, ssh_client, web_server, web_target) = exposed_ssh(&dir);
    let b = auth.daemon("b", &["expose", "/office/web", &web_target], &web_server);
    wait_for(&b.stderr, "registered with the rendezvous server");
    let b_state = dir.join("b");
    let state = ["--state-dir", path(&b_state)];
    let mut args = vec!["import", &ssh_client];
    args.extend(state);
    run(&args).expect("import");
    let kept = std::fs::read_to_string(b_state.join("path-tokens")).unwrap();
    assert!(
        kept.contains(&format!("# for /home/ssh\n{ssh_client}")),
        "{kept}"
    );

    // Its master redeems the client token: after a restart b registers with the tokens left,
    // and its log names the stale one and the fix.
    auth.admin(&["redeem", "/home/ssh", "client"])
        .expect("redeem");
    drop(b);
    let b = auth.daemon("b", &["expose", "/office/web", &web_target], &web_server);
    let start = &ssh_client[..6];
    let needle = format!("path token {start}... refused");
    let lines = wait_for_each(
        &b.stderr,
        &[&needle, "registered with the rendezvous server"],
    );
    assert!(
        lines[0].contains("burrow import --forget PATH"),
        "{}",
        lines[0]
    );

    // The stale token does not stop a new import either.
    let (_, other_client) = auth.create("/other", false);
    let mut args = vec!["import", &other_client];
    args.extend(state);
    let out = run(&args).expect("import next to a stale token");
    assert_eq!(
        out.trim(),
        "imported; this daemon may use: exposes /office/web; connects to /other"
    );

    // Forgotten by its path at run time (the server no longer knows the token; the daemon
    // remembered what it was for), then the other by the start of its token.
    let mut forget = vec!["import", "--forget", "/home/ssh"];
    forget.extend(state);
    let out = run(&forget).expect("forget");
    assert_eq!(
        out.trim(),
        "forgotten; this daemon may use: exposes /office/web; connects to /other"
    );
    let kept = std::fs::read_to_string(b_state.join("path-tokens")).unwrap();
    assert!(
        !kept.contains(&ssh_client) && !kept.contains("/home/ssh"),
        "{kept}"
    );
    let err = run(&forget).unwrap_err();
    assert!(
        err.contains("no token imported into this daemon is for /home/ssh"),
        "{err}"
    );
    let mut short = vec!["import", "--forget", &other_client[..5]];
    short.extend(state);
    assert!(run(&short).unwrap_err().contains("was not imported"));
    let mut by_start = vec!["import", "--forget", &other_client[..6]];
    by_start.extend(state);
    let out = run(&by_start).expect("forget by the start of the token");
    assert_eq!(
        out.trim(),
        "forgotten; this daemon may use: exposes /office/web"
    );
    let mut again = vec!["import", "--forget", &ssh_client];
    again.extend(state);
    assert!(run(&again).unwrap_err().contains("was not imported"));
}
