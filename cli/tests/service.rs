//! Running burrow as a service, through the real binary: `burrow check`, reloading a daemon's
//! config (SIGHUP and `burrow reload`), readiness for systemd (`READY=1` on $NOTIFY_SOCKET),
//! shell completions, `burrow demo --hold`, and the unit files in cli/dist.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;

mod common;

use common::*;

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn check(config: &Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["check", "-c", path(config)])
        .env_remove("BURROW_TOKEN")
        .output()
        .expect("run burrow check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config's top: server, key, token and state directory, all valid.
fn top(dir: &Path) -> String {
    format!(
        "server = \"127.0.0.1:7000\"\nserver_key = \"{KEY}\"\ntoken = \"tok\"\nstate_dir = \"{}\"\n",
        path(&dir.join("state"))
    )
}

#[test]
fn check_says_ok_with_a_summary_for_a_good_config() {
    let dir = temp_dir("check-ok");
    let config = dir.join("ok.toml");
    let text = format!(
        "{}route = \"relay-first\"\ncongestion = \"newreno\"\n[[expose]]\nname = \"/a\"\ntarget = \"127.0.0.1:22\"\n[[connect]]\nname = \"/b\"\nlisten = \"127.0.0.1:0\"\n",
        top(&dir)
    );
    std::fs::write(&config, text).unwrap();
    let (ok, out, err) = check(&config);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        format!(
            "ok: {}: server 127.0.0.1:7000, 1 exposed (/a), 1 connected (/b)",
            path(&config)
        )
    );
    assert!(
        !dir.join("state").exists(),
        "check starts nothing and creates nothing"
    );
}

#[test]
fn check_reports_each_broken_config_with_its_line_and_key() {
    let dir = temp_dir("check-bad");
    let open_key = dir.join("open.key");
    keygen(&open_key);
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let head = top(&dir);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown key",
            format!("{head}sevrer = \"x\"\n"),
            "line 5: unknown field `sevrer`",
        ),
        (
            "bad server key",
            head.replace(KEY, "short"),
            "line 2: `server_key`: `short`",
        ),
        (
            "server not an address",
            head.replace("127.0.0.1:7000", "no port here"),
            "line 1: `server`: cannot resolve `no port here`",
        ),
        (
            "missing token file",
            head.replace(
                "token = \"tok\"",
                &format!("token_file = \"{}\"", path(&dir.join("nope"))),
            ),
            "line 3: `token_file`: token file",
        ),
        (
            "key readable by others",
            format!("{head}key_file = \"{}\"\n", path(&open_key)),
            "line 5: `key_file`: key file",
        ),
        (
            "bad route",
            format!("{head}route = \"fast\"\n"),
            "line 5: `route`: `fast` is not one of any, relay-first, direct, relay",
        ),
        (
            "bad congestion control",
            format!("{head}congestion = \"cubic\"\n"),
            "line 5: `congestion`: `cubic` is not one of bbr, newreno",
        ),
        (
            "log level that would silence everything",
            format!("{head}log_level = \"verbose\"\n"),
            "line 5: `log_level`: log level `verbose` is not a level",
        ),
        (
            "bad udp address",
            format!("{head}udp = \"localhost\"\n"),
            "line 5: `udp`: `localhost` is not IP:PORT",
        ),
        (
            "duplicate exposed name",
            format!(
                "{head}[[expose]]\nname = \"/a\"\ntarget = \"127.0.0.1:22\"\n[[expose]]\nname = \"/a\"\ntarget = \"127.0.0.1:23\"\n"
            ),
            "line 9: `[[expose]] #2 name`: `/a` is exposed already by [[expose]] #1",
        ),
        (
            "duplicate listen port",
            format!(
                "{head}[[connect]]\nname = \"/a\"\nlisten = \"127.0.0.1:5000\"\n[[connect]]\nname = \"/b\"\nlisten = \"127.0.0.1:5000\"\n"
            ),
            "line 10: `[[connect]] #2 listen`: 127.0.0.1:5000 is used already by [[connect]] #1",
        ),
        (
            "bad target",
            format!("{head}[[expose]]\nname = \"/a\"\ntarget = \"22\"\n"),
            "line 7: `[[expose]] #1 target`: `22` is not HOST:PORT",
        ),
        (
            "bad service name",
            format!("{head}[[connect]]\nname = \"db\"\nlisten = \"127.0.0.1:0\"\n"),
            "line 6: `[[connect]] #1 name`: service name `db`",
        ),
    ];
    for (i, (what, text, expected)) in cases.iter().enumerate() {
        let config = dir.join(format!("bad{i}.toml"));
        std::fs::write(&config, text).unwrap();
        let (ok, out, err) = check(&config);
        assert!(!ok, "{what}: accepted: {out}");
        assert!(
            err.contains(&format!("{}{expected}", path(&config)))
                || err.contains(&format!("{} {}", path(&config), expected)),
            "{what}: expected {expected:?} in:\n{err}"
        );
        assert!(err.contains("1 problem in"), "{what}: one problem: {err}");
    }

    // Several problems at once: every one is reported, not only the first.
    let config = dir.join("many.toml");
    let text = format!(
        "{}route = \"fast\"\nudp = \"x\"\n[[expose]]\nname = \"nope\"\ntarget = \"127.0.0.1:22\"\n",
        head.replace(KEY, "short")
    );
    std::fs::write(&config, text).unwrap();
    let (ok, _, err) = check(&config);
    assert!(!ok);
    for key in ["`server_key`", "`route`", "`udp`", "`[[expose]] #1 name`"] {
        assert!(err.contains(key), "{key} in:\n{err}");
    }
    assert!(err.contains("4 problems in"), "{err}");
}

fn daemon_config(dir: &Path, server: &str, server_key: &str, services: &str) -> String {
    format!(
        "server = \"{server}\"\nserver_key = \"{server_key}\"\ntoken = \"tok\"\nstate_dir = \"{}\"\n{services}",
        path(dir)
    )
}

fn expose(name: &str, target: SocketAddr) -> String {
    format!("[[expose]]\nname = \"{name}\"\ntarget = \"{target}\"\n")
}

fn connect(name: &str, listen: &str) -> String {
    format!("[[connect]]\nname = \"{name}\"\nlisten = \"{listen}\"\n")
}

/// Sends a line on `conn` and reads it back through the echo service.
fn echoes(conn: &mut BufReader<TcpStream>, line: &str) -> std::io::Result<String> {
    conn.get_mut().write_all(format!("{line}\n").as_bytes())?;
    let mut back = String::new();
    conn.read_line(&mut back)?;
    Ok(back.trim_end().to_string())
}

fn open(addr: SocketAddr) -> BufReader<TcpStream> {
    let conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(WAIT)).unwrap();
    BufReader::new(conn)
}

/// The local address `line` ("listening on ADDR for NAME") names.
fn listen_addr(line: &str) -> SocketAddr {
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn reload_adds_and_removes_services_and_an_open_connection_carries_on() {
    let dir = temp_dir("reload");
    let (_server, addr, key) = server(&dir);
    let target = echo();
    let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
    let (a_config, b_config) = (dir.join("a.toml"), dir.join("b.toml"));
    let a_text = |services: &str| daemon_config(&a_dir, &addr, &key, services);
    let b_text = |services: &str| daemon_config(&b_dir, &addr, &key, services);

    std::fs::write(
        &a_config,
        a_text(&(expose("/one", target) + &expose("/three", target))),
    )
    .unwrap();
    let a = spawn(&["daemon", "-c", path(&a_config)]);
    wait_for(&a.stderr, "registered with the rendezvous server");
    std::fs::write(
        &b_config,
        b_text(&(connect("/one", "127.0.0.1:0") + &connect("/three", "127.0.0.1:0"))),
    )
    .unwrap();
    let mut b = spawn(&["daemon", "-c", path(&b_config)]);
    let one = listen_addr(&wait_for(&b.stdout, "for /one"));
    let three = listen_addr(&wait_for(&b.stdout, "for /three"));
    wait_for(&b.stderr, "registered with the rendezvous server");

    let mut first = open(one);
    assert_eq!(echoes(&mut first, "before").unwrap(), "before");
    let mut doomed = open(three);
    assert_eq!(echoes(&mut doomed, "doomed").unwrap(), "doomed");

    // The exposing side adds /two, through the control command.
    std::fs::write(
        &a_config,
        a_text(&(expose("/one", target) + &expose("/two", target) + &expose("/three", target))),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["reload", "--state-dir", path(&a_dir)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "reloaded: 1 added (/two), 0 removed, 2 unchanged"
    );

    // The connecting side adds /two and drops /three, on SIGHUP.
    std::fs::write(
        &b_config,
        b_text(&(connect("/one", "127.0.0.1:0") + &connect("/two", "127.0.0.1:0"))),
    )
    .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let line = wait_for(&b.stderr, "reloaded the config");
    assert!(
        line.contains("1 added (/two), 1 removed (/three), 1 unchanged"),
        "{line}"
    );
    b.assert_running("the daemon after SIGHUP");

    assert_eq!(
        echoes(&mut first, "after").unwrap(),
        "after",
        "the unchanged service's open connection carries on"
    );
    match echoes(&mut doomed, "still there?") {
        Ok(line) if !line.is_empty() => {
            panic!("the removed service's connection answered {line:?}")
        }
        Ok(_) => {}
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{e}"
        ),
    }
    let refused = TcpStream::connect(three).expect_err("the removed service's port is closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    let status = Command::new(BIN)
        .args(["status", "--json", "--state-dir", path(&b_dir)])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let two = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "/two")
        .expect("/two is listed")["listen"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut second = open(two);
    assert_eq!(echoes(&mut second, "new").unwrap(), "new");

    // A config that does not check is refused; the daemon keeps the one it runs.
    std::fs::write(&b_config, b_text(&connect("/one", "nonsense"))).unwrap();
    let out = Command::new(BIN)
        .args(["reload", "--state-dir", path(&b_dir)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reload refused") && err.contains("listen `nonsense` is not IP:PORT"),
        "{err}"
    );
    b.assert_running("the daemon after a refused reload");
    assert_eq!(echoes(&mut first, "still").unwrap(), "still");
    assert_eq!(echoes(&mut second, "here").unwrap(), "here");
}

/// Starts `burrow args` with $NOTIFY_SOCKET set to a socket of the test's, and returns what
/// the binary sent there first.
fn readiness(dir: &Path, args: &[&str]) -> (Proc, String) {
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let proc = spawn_env(args, Some(("NOTIFY_SOCKET", path(&socket_path))));
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification");
    (proc, String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn server_and_daemon_tell_the_service_manager_they_are_ready() {
    let dir = temp_dir("notify");
    let key = dir.join("server.key");
    keygen(&key);
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let (mut server, sent) = readiness(
        &server_dir,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--key",
            path(&key),
            "--token",
            "tok",
        ],
    );
    assert!(sent.lines().any(|l| l == "READY=1"), "{sent:?}");
    let addr = wait_for(&server.stdout, "listening on udp");
    let addr = addr.rsplit(' ').next().unwrap().to_string();
    assert!(
        sent.contains(&format!("STATUS=listening on udp {addr}")),
        "{sent:?}"
    );
    // SIGHUP no longer stops the server (it has no config file: it says so).
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    wait_for(&server.stderr, "no config file to reload");
    server.assert_running("the server after SIGHUP");

    let public = Command::new(BIN)
        .args(["pubkey", "--key", path(&key)])
        .output()
        .unwrap();
    let public = String::from_utf8_lossy(&public.stdout).trim().to_string();
    let config = dir.join("d.toml");
    let services = connect("/x", "127.0.0.1:0");
    std::fs::write(
        &config,
        daemon_config(&dir.join("d"), &addr, &public, &services),
    )
    .unwrap();
    let daemon_dir = dir.join("daemon");
    std::fs::create_dir_all(&daemon_dir).unwrap();
    let (daemon, sent) = readiness(&daemon_dir, &["daemon", "-c", path(&config)]);
    assert!(sent.lines().any(|l| l == "READY=1"), "{sent:?}");
    // Ready means serving: the control socket answers.
    let status = Command::new(BIN)
        .args(["status", "--state-dir", path(&dir.join("d"))])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    drop(daemon);
}

#[test]
fn completions_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.len() > 1000, "{shell}: {script}");
        for sub in [
            "server",
            "daemon",
            "expose",
            "connect",
            "status",
            "check",
            "reload",
            "demo",
            "completions",
        ] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown shell is an error");
}

#[test]
fn demo_hold_prints_how_to_try_it_and_runs_until_interrupted() {
    let mut demo = spawn(&["demo", "--hold"]);
    wait_for(&demo.stdout, "demo OK");
    let line = wait_for(&demo.stdout, "  nc ");
    let mut words = line.split_whitespace().skip(1);
    let (ip, port) = (words.next().unwrap(), words.next().unwrap());
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    wait_for(&demo.stdout, "Ctrl-C");
    // By hand, as the demo says, while it holds.
    let mut conn = open(addr);
    assert_eq!(echoes(&mut conn, "by hand").unwrap(), "by hand");
    drop(conn);
    demo.assert_running("the held demo");
    let interrupted = Command::new("kill")
        .args(["-INT", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = demo.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn unit_files_use_readiness_hardening_and_reload() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    for unit in ["burrow-server.service", "burrow-daemon.service"] {
        let text = std::fs::read_to_string(dist.join(unit)).expect(unit);
        for line in [
            "Type=notify",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "StateDirectory=burrow",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
        assert!(
            text.contains("ExecReload=/bin/kill -HUP $MAINPID"),
            "{unit} reloads with SIGHUP"
        );
    }
    let daemon = std::fs::read_to_string(dist.join("burrow-daemon.service")).unwrap();
    assert!(
        daemon.contains("ExecStartPre=/usr/bin/burrow check -c /etc/burrow/daemon.toml"),
        "the daemon's config is checked before start"
    );
    // The example config the unit points at checks, apart from its placeholder secrets.
    let example = dist.join("daemon.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(text.contains("[[expose]]") && text.contains("[[connect]]"));
}

/// Issue 19, what a new user hit: a config with nothing to do passes `check` with a warning
/// that says so (services may still be attached at run time), and a metrics address off
/// loopback is a problem unless `metrics_public` says so.
#[test]
fn check_warns_of_a_config_with_nothing_to_do_and_refuses_public_metrics() {
    let dir = temp_dir("check-idle");
    let config = dir.join("idle.toml");
    std::fs::write(&config, top(&dir)).unwrap();
    let (ok, out, err) = check(&config);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(
            "0 exposed, 0 connected; warning: nothing to do: no [[expose]] or [[connect]]"
        ),
        "{out}"
    );
    let config = dir.join("metrics.toml");
    std::fs::write(
        &config,
        format!(
            "{}metrics = \"0.0.0.0:9464\"\n[[expose]]\nname = \"/a\"\ntarget = \"127.0.0.1:22\"\n",
            top(&dir)
        ),
    )
    .unwrap();
    let (ok, out, err) = check(&config);
    assert!(!ok, "{out}");
    assert!(
        err.contains("metrics") && err.contains("--metrics-public"),
        "{err}"
    );
    assert!(!out.contains("warning"), "{out}");
    let config = dir.join("public.toml");
    std::fs::write(
        &config,
        format!("{}metrics = \"0.0.0.0:9464\"\nmetrics_public = true\n[[expose]]\nname = \"/a\"\ntarget = \"127.0.0.1:22\"\n", top(&dir)),
    )
    .unwrap();
    let (ok, out, err) = check(&config);
    assert!(ok, "{out}{err}");
}

/// Issue 19: `keygen` labels what it prints without `--out`, and with `--out` prints the
/// public key alone on stdout (the secret only in the file).
#[test]
fn keygen_labels_the_secret_and_prints_the_public_key_for_a_file() {
    let out = Command::new(BIN).arg("keygen").output().expect("keygen");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("secret key: "), "{text}");
    assert!(lines[1].starts_with("public key: "), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out FILE"));

    let dir = temp_dir("keygen-out");
    let key = dir.join("k");
    let out = Command::new(BIN)
        .args(["keygen", "--out", path(&key)])
        .output()
        .expect("keygen");
    assert!(out.status.success());
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let secret = std::fs::read_to_string(&key).unwrap();
    assert_eq!(
        run(&["pubkey", "--key", path(&key)])
            .expect("pubkey")
            .trim(),
        public,
        "stdout is the file's public key"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret.trim()));
    assert!(!public.contains(secret.trim()));
}

/// Issue 19: Cargo.toml says MIT OR Apache-2.0; both license texts are at the root.
#[test]
fn both_license_files_are_at_the_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"MIT OR Apache-2.0\""));
    let mit = std::fs::read_to_string(root.join("LICENSE-MIT")).expect("LICENSE-MIT");
    assert!(mit.starts_with("MIT License") && mit.contains("WITHOUT WARRANTY OF ANY KIND"));
    let apache = std::fs::read_to_string(root.join("LICENSE-APACHE")).expect("LICENSE-APACHE");
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
}

/// Issue 19: `burrow pubkey` given a key instead of a key file says what it is rather than
/// suggesting to create a key file of that name.
#[test]
fn pubkey_given_a_key_says_it_is_a_key() {
    let out = Command::new(BIN).arg("keygen").output().expect("keygen");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("public key");
    let err = run(&["pubkey", "--key", public]).expect_err("a key is not a key file");
    assert!(
        err.contains("is a key, not a key file") && err.contains("public key already"),
        "{err}"
    );
    assert!(
        !err.contains("keygen --out"),
        "no advice to create it: {err}"
    );
}

/// Issue 19: `burrow pubkey --key FILE` where FILE holds a public key says so instead of
/// printing the "public key" of a public key (a key nobody holds). The bytes of the two look
/// alike, so the file tells: a `*.pub` file is a public key (and keygen never writes a
/// secret there); one that others can read is refused with both readings, the chmod for a
/// secret and what a public key is for.
#[test]
fn pubkey_given_a_public_key_file_says_it_is_a_public_key() {
    let dir = temp_dir("pubkey-file");
    let key = dir.join("k");
    let public = run(&["keygen", "--out", path(&key)]).expect("keygen");
    let public = public.trim();
    let saved = dir.join("k.pub");
    std::fs::write(&saved, format!("{public}\n")).unwrap();
    for mode in [0o600, 0o644] {
        std::fs::set_permissions(&saved, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = run(&["pubkey", "--key", path(&saved)])
            .expect_err("a public key file is not a secret key file");
        assert!(
            err.contains("holds a public key") && err.contains("public key already"),
            "mode {mode:o}: {err}"
        );
        assert!(!err.contains(public), "{err}");
    }
    // Saved under another name where others can read it: both readings, in one line.
    let shared = dir.join("server-key.txt");
    std::fs::write(&shared, format!("{public}\n")).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = run(&["pubkey", "--key", path(&shared)]).expect_err("others can read it");
    assert!(
        err.contains(&format!("chmod 600 {}", path(&shared)))
            && err.contains("if it holds a public key")
            && err.contains("public key already"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // keygen never writes a secret key to a *.pub name.
    let err = run(&["keygen", "--out", path(&dir.join("new.pub"))]).expect_err("*.pub");
    assert!(err.contains("public key's name"), "{err}");
    assert!(!dir.join("new.pub").exists());
    // The secret key file itself still works.
    assert_eq!(
        run(&["pubkey", "--key", path(&key)]).unwrap().trim(),
        public
    );
}

/// Issue 19: a public key saved with mode 0600 under a name without `.pub` looks like a
/// secret key file (both are 32 bytes of base64). The key files burrow writes carry a label
/// with their public key, so `pubkey` prints theirs silently; an unlabelled file is still read
/// (key files written by hand or by older versions), with a warning that it may be a public
/// key. A label that names another public key, or a file of two keys, is refused.
#[test]
fn pubkey_tells_a_labelled_secret_key_file_and_warns_on_an_unlabelled_one() {
    let dir = temp_dir("pubkey-label");
    let pubkey = |file: &Path| {
        let out = Command::new(BIN)
            .args(["pubkey", "--key", path(file)])
            .output()
            .expect("pubkey");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let key = dir.join("k");
    let public = run(&["keygen", "--out", path(&key)]).expect("keygen");
    let public = public.trim();
    let text = std::fs::read_to_string(&key).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("# burrow secret key") && lines[0].ends_with(public),
        "{text}"
    );
    let (ok, out, err) = pubkey(&key);
    assert!(ok && out == public && err.is_empty(), "{out} {err}");

    // The secret line alone (the format before the label): read, with a warning.
    let bare_secret = dir.join("bare-secret");
    std::fs::write(&bare_secret, format!("{}\n", lines[1])).unwrap();
    std::fs::set_permissions(&bare_secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out, err) = pubkey(&bare_secret);
    assert!(ok && out == public, "{out} {err}");
    assert!(err.contains("no `# burrow secret key` label"), "{err}");

    // A public key saved 0600 without .pub: the same warning, so the key printed is not
    // taken on trust.
    let saved = dir.join("server-key");
    std::fs::write(&saved, format!("{public}\n")).unwrap();
    std::fs::set_permissions(&saved, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, out, err) = pubkey(&saved);
    assert!(ok && out != public, "{out}");
    assert!(
        err.contains("if it holds a public key, the key printed belongs to nobody"),
        "{err}"
    );

    // A label naming another key (the secret line swapped), and two key lines: refused.
    let other = dir.join("other");
    run(&["keygen", "--out", path(&other)]).expect("keygen");
    let other_text = std::fs::read_to_string(&other).unwrap();
    let swapped = dir.join("swapped");
    std::fs::write(
        &swapped,
        format!("{}\n{}\n", lines[0], other_text.lines().nth(1).unwrap()),
    )
    .unwrap();
    std::fs::set_permissions(&swapped, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _, err) = pubkey(&swapped);
    assert!(!ok && err.contains("its label names public key"), "{err}");
    let two = dir.join("two");
    std::fs::write(&two, format!("{}\n{}\n", lines[1], lines[1])).unwrap();
    std::fs::set_permissions(&two, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _, err) = pubkey(&two);
    assert!(!ok && err.contains("holds 2 key lines"), "{err}");
}
