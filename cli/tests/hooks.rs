//! Hooks through the real binary on loopback: a `[[connect]]`'s `on_up` gets the wildcard
//! values `burrow status` shows and its `on_down` runs when the exposing daemon goes away; an
//! `[[expose]]`'s `on_up` runs at the first connection; a hook that hangs is killed at its
//! timeout with its children; text that would be shell syntax stays one literal argument
//! when the shell is off; `burrow check` says what is wrong with bad hooks.

use std::path::Path;

mod common;

use common::*;

/// A daemon config `name.toml` with `tail` after the common part.
fn config(dir: &Path, name: &str, server: &(Proc, String, String), tail: &str) -> String {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "server = \"{}\"\nserver_key = \"{}\"\ntoken = \"tok\"\n\
             state_dir = \"{name}\"\nudp = \"127.0.0.1:0\"\n{tail}",
            server.1, server.2
        ),
    )
    .expect("config");
    path(&file).to_string()
}

fn status(state: &Path) -> serde_json::Value {
    let text = run(&["status", "--json", "--state-dir", path(state)]).expect("status");
    serde_json::from_str(&text).expect("JSON status")
}

/// The text after `label=` in a hook's output line, up to the next space.
fn word(line: &str, label: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{label}=")))
        .unwrap_or_else(|| panic!("no {label}= in {line}"))
        .to_string()
}

#[test]
fn on_up_gets_what_status_shows_and_on_down_runs_when_the_peer_goes() {
    let dir = temp_dir("hooks");
    let server = server(&dir);
    let target = echo();
    let listen = free_port();
    let a = config(
        &dir,
        "a",
        &server,
        &format!(
            "[[expose]]\nname = \"/a/echo\"\ntarget = \"{target}\"\n\
             on_up = [\"/bin/echo\", \"EXPOSED\", \"peer=%peerpin%\", \"path=%path%\", \"event=%event%\"]\n"
        ),
    );
    // Direct only, so the path the hook saw is the one status shows later.
    let b = config(
        &dir,
        "b",
        &server,
        &format!(
            "[[connect]]\nname = \"/a/echo\"\nlisten = \"{listen}\"\nroute = \"direct\"\n\
             on_up = [\"/bin/echo\", \"UP\", \"inner=%innerip%:%innerport%\", \
             \"outer=%outerip%:%outerport%\", \"peer=%peerip%:%peerport%\", \"host=%hostpin%\", \
             \"peerpin=%peerpin%\", \"route=%route%\", \"path=%path%\", \"event=%event%\"]\n\
             on_down = [\"/bin/echo\", \"DOWN\", \"peerpin=%peerpin%\", \"event=%event%\"]\n"
        ),
    );
    for c in [&a, &b] {
        let check = run(&["check", "-c", c]);
        assert!(check.is_ok(), "burrow check: {check:?}");
    }
    let a = spawn(&["daemon", "-c", &a]);
    running_and_registered(&a.stderr);
    let b = spawn(&["daemon", "-c", &b]);
    running_and_registered(&b.stderr);
    assert_eq!(ask_until_answered(listen, "hooked"), "hooked\n");

    let up = wait_for(&b.stderr, "UP inner=");
    println!("{up}");
    let json = status(&dir.join("b"));
    let a_key = status(&dir.join("a"))["public_key"]
        .as_str()
        .expect("A's key")
        .to_string();
    let session = json["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["key"] == a_key.as_str())
        .unwrap_or_else(|| panic!("no session with A: {json}"));
    assert_eq!(
        word(&up, "inner"),
        json["udp_addr"].as_str().unwrap(),
        "{json}"
    );
    assert_eq!(
        word(&up, "outer"),
        json["registered"].as_str().unwrap(),
        "{json}"
    );
    assert_eq!(
        word(&up, "peer"),
        session["addr"].as_str().unwrap(),
        "{json}"
    );
    assert_eq!(word(&up, "host"), json["public_key"].as_str().unwrap());
    assert_eq!(word(&up, "peerpin"), a_key);
    assert_eq!(session["relayed"], false, "{json}");
    assert_eq!(word(&up, "route"), "direct");
    assert_eq!(word(&up, "path"), "/a/echo");
    assert_eq!(word(&up, "event"), "up");
    wait_for(&b.stderr, "hook on_up [[connect]] /a/echo: exited with 0");

    // The exposing side's hook ran at the first connection, naming B.
    let exposed = wait_for(&a.stderr, "EXPOSED");
    assert_eq!(
        word(&exposed, "peer"),
        json["public_key"].as_str().unwrap(),
        "{exposed}"
    );
    assert_eq!(word(&exposed, "path"), "/a/echo");
    assert_eq!(word(&exposed, "event"), "up");

    // A goes away: B's session ends and its on_down runs.
    a.terminate();
    let down = wait_for(&b.stderr, "DOWN peerpin=");
    assert_eq!(word(&down, "peerpin"), a_key, "{down}");
    assert_eq!(word(&down, "event"), "down", "{down}");
}

#[test]
fn a_hanging_hook_is_killed_and_shell_syntax_stays_literal() {
    let dir = temp_dir("hooks-kill");
    let server = server(&dir);
    let target = echo();
    let listen = free_port();
    let marks: Vec<String> = (1..=4)
        .map(|n| path(&dir.join(format!("injected{n}"))).to_string())
        .collect();
    // Shell syntax around a wildcard, with the shell off: each is one literal argument.
    let hostile = format!(
        "\"$(touch {})\", \"`touch {}`\", \"; touch {}\", \"%path%|touch {}\"",
        marks[0], marks[1], marks[2], marks[3]
    );
    let a = config(
        &dir,
        "a",
        &server,
        &format!(
            "[[expose]]\nname = \"/a/echo\"\ntarget = \"{target}\"\n\
             on_up = [\"/bin/echo\", \"HOSTILE\", {hostile}]\n"
        ),
    );
    // The hook prints its pid and then hangs (in a child of its own, to show the whole
    // process group goes).
    let b = config(
        &dir,
        "b",
        &server,
        &format!(
            "[[connect]]\nname = \"/a/echo\"\nlisten = \"{listen}\"\nhook_timeout = 1\n\
             on_up = [\"/bin/sh\", \"-c\", \"echo hanging pid=$$; sleep 600; echo never\"]\n"
        ),
    );
    let a = spawn(&["daemon", "-c", &a]);
    running_and_registered(&a.stderr);
    let b = spawn(&["daemon", "-c", &b]);
    running_and_registered(&b.stderr);
    assert_eq!(ask_until_answered(listen, "x"), "x\n");

    let line = wait_for(&b.stderr, "hanging pid=");
    let pid = word(&line, "pid");
    let killed = wait_for(&b.stderr, "killed after its timeout of 1 s");
    println!("{killed}");
    // The shell is gone, and so is its sleep (its child, in its process group).
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the hook's shell {pid} still runs"
    );
    let left = alive_in_group(&pid);
    assert!(left.is_empty(), "its process group still runs {left:?}");

    let echoed = wait_for(&a.stderr, "HOSTILE");
    println!("{echoed}");
    assert!(
        echoed.contains(&format!("$(touch {})", marks[0]))
            && echoed.contains(&format!("`touch {}`", marks[1]))
            && echoed.contains(&format!("; touch {}", marks[2]))
            && echoed.contains(&format!("/a/echo|touch {}", marks[3])),
        "{echoed}"
    );
    wait_for(&a.stderr, "hook on_up [[expose]] /a/echo: exited with 0");
    for mark in &marks {
        assert!(!Path::new(mark).exists(), "{mark} was made: a shell ran");
    }
}

/// The processes of process group `group` that are alive (not zombies), from /proc.
fn alive_in_group(group: &str) -> Vec<String> {
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: the fields after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == group && fields[0] != "Z" {
            alive.push(stat);
        }
    }
    alive
}

#[test]
fn check_says_what_is_wrong_with_a_hook() {
    let dir = temp_dir("hooks-check");
    let head = "server = \"127.0.0.1:7000\"\nserver_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\ntoken = \"t\"\n";
    let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for (entry, want) in [
        (
            "[[connect]]\nname = \"/a\"\nlisten = \"127.0.0.1:0\"\non_up = [\"/bin/echo\", \"%secret%\"]",
            "`[[connect]] #1 on_up`: %secret% does not exist in burrow",
        ),
        (
            "[[expose]]\nname = \"/a\"\ntarget = \"127.0.0.1:1\"\non_down = [\"/bin/echo\", \"%peer_ip%\"]",
            "`[[expose]] #1 on_down`: unknown wildcard",
        ),
        (
            "[[expose]]\nname = \"/a\"\ntarget = \"127.0.0.1:1\"\non_down = [\"/bin/echo\", \"%peerip%\"]\nprotocol = \"udp\"",
            "hooks run for TCP services only",
        ),
        (
            &format!("[[peer]]\nkey = \"{key}\"\non_up = [\"/no/such/program\"]"),
            "`[[peer]] #1 on_up`: `/no/such/program` is not an executable file",
        ),
        (
            "[[connect]]\nname = \"/a\"\nlisten = \"127.0.0.1:0\"\non_up = \"echo %peerip%\"",
            "only with `shell = true`",
        ),
        (
            "[[connect]]\nname = \"/a\"\nlisten = \"127.0.0.1:0\"\non_up = [\"/bin/true\"]\nhook_timeout = 0",
            "`[[connect]] #1 hook_timeout`: 0 is not 1 to 3600",
        ),
        (
            "[[connect]]\nname = \"/a\"\nlisten = \"127.0.0.1:0\"\nshell = true",
            "`[[connect]] #1 shell`: set, but there is no on_up",
        ),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, format!("{head}{entry}\n")).unwrap();
        let err = run(&["check", "-c", path(&file)]).unwrap_err();
        assert!(err.contains(want), "{entry}:\n{err}");
        // The daemon refuses it too, before starting anything.
        let err = run(&["daemon", "-c", path(&file)]).unwrap_err();
        assert!(
            err.contains("on_") || err.contains("hook") || err.contains("shell"),
            "{err}"
        );
    }
}
