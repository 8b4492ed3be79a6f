//! `burrow attach` and `burrow detach` on running daemons: a service added or removed takes
//! effect at once, the others keep going, and what is attached comes back after a restart.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

mod common;

use common::*;

/// A daemon (`expose ...` or `connect ...`) with state directory `dir/state`.
fn daemon(dir: &Path, state: &str, server: &(Proc, String, String), cmd: &[&str]) -> Proc {
    let state_dir = dir.join(state);
    let mut args: Vec<&str> = cmd.to_vec();
    args.extend([
        "--server",
        &server.1,
        "--server-key",
        &server.2,
        "--token",
        "tok",
    ]);
    args.extend(["--state-dir", path(&state_dir), "--udp", "127.0.0.1:0"]);
    spawn(&args)
}

#[test]
fn attach_and_detach_take_effect_at_once_and_survive_a_restart() {
    let dir = temp_dir("attach");
    let server = server(&dir);
    let (one, two) = (echo().to_string(), echo().to_string());
    let a_state = dir.join("a");
    let b_state = dir.join("b");
    let exposer = daemon(&dir, "a", &server, &["expose", "/one", &one]);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    let user = daemon(&dir, "b", &server, &["connect", "/one", "127.0.0.1:0"]);
    let one_port = listening(&user);
    assert_eq!(ask_until_answered(one_port, "one"), "one\n");

    // Expose a second service on the running daemon, and listen for it on the other one.
    let out = run(&[
        "attach",
        "/two",
        "--expose",
        &two,
        "--state-dir",
        path(&a_state),
    ])
    .unwrap();
    assert!(out.contains("attached: 1 added (/two)"), "{out}");
    let two_port = free_port();
    let listen = two_port.to_string();
    let out = run(&[
        "attach",
        "/two",
        "--listen",
        &listen,
        "--state-dir",
        path(&b_state),
    ])
    .unwrap();
    assert!(out.contains("1 added (/two)"), "{out}");
    assert_eq!(ask_until_answered(two_port, "two"), "two\n");
    // The first service was never interrupted.
    assert_eq!(ask(one_port, "still one"), "still one\n");

    // Refusals name the reason and change nothing.
    for (args, needle) in [
        (
            vec!["attach", "/one", "--expose", &one],
            "in the config file already",
        ),
        (vec!["attach", "/two", "--expose", &one], "attached twice"),
        (
            vec!["attach", "no-slash", "--expose", &one],
            "must start with '/'",
        ),
        (vec!["detach", "/never"], "is not attached"),
    ] {
        let mut all = args.clone();
        all.extend(["--state-dir", path(&a_state)]);
        let err = run(&all).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let err = run(&[
        "attach",
        "/x",
        "--listen",
        "nowhere",
        "--state-dir",
        path(&b_state),
    ]);
    assert!(err.unwrap_err().contains("not IP:PORT"));

    // The attached listener comes back when its daemon restarts, here after SIGKILL (no
    // goodbye: the exposing daemon learns of the restart from the new life's handshake).
    drop(user);
    let user = daemon(&dir, "b", &server, &["connect", "/one", "127.0.0.1:0"]);
    let mut ports = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let line = wait_for(&user.stdout, "listening on");
        let words: Vec<&str> = line.split(' ').collect();
        ports.insert(
            words[4].to_string(),
            words[2].parse::<SocketAddr>().unwrap(),
        );
    }
    assert_eq!(ports["/two"], two_port, "the attached listener moved");
    let one_port = ports["/one"];
    assert_eq!(ask_until_answered(two_port, "two again"), "two again\n");
    let mode = std::fs::metadata(b_state.join("attached.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Detached: the exposing daemon stops serving it, the rest carries on.
    let out = run(&["detach", "/two", "--state-dir", path(&a_state)]).unwrap();
    assert!(out.contains("1 removed (/two)"), "{out}");
    assert_eq!(ask(two_port, "gone"), "");
    assert_eq!(ask_until_answered(one_port, "one"), "one\n");
    drop(exposer);
    let exposer = daemon(&dir, "a", &server, &["expose", "/one", &one]);
    wait_for(&exposer.stderr, "registered with the rendezvous server");
    let attached = std::fs::read_to_string(a_state.join("attached.toml")).unwrap();
    assert!(!attached.contains("/two"), "{attached}");

    // An attached.toml others can read is refused at start, with the fix.
    drop(exposer);
    std::fs::set_permissions(
        a_state.join("attached.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut refused = daemon(&dir, "a", &server, &["expose", "/one", &one]);
    let status = refused.child.wait().unwrap();
    assert!(!status.success());
    assert!(wait_for(&refused.stderr, "chmod 600").contains("attached.toml"));
}
