//! Hooks: the programs an `[[expose]]`, `[[connect]]` or `[[peer]]` runs when a session comes
//! up for it (`on_up`), moves to another path (`on_path`) or ends (`on_down`), with
//! plexus-style wildcards (`%peerip%` ...) in their arguments. Core says when
//! ([`burrow_core::node::HookEvent`]); this runs them.
//!
//! A hook is a program and its arguments, run without a shell: a wildcard's value is one
//! argument (or part of one) whatever it holds. `shell = true` runs one script with `sh -c`
//! instead; its wildcards are replaced by single-quoted values, so a value is still never
//! shell syntax. Each run is killed (with its process group) after `hook_timeout` seconds,
//! its output goes to the daemon's log (bounded), and at most [`MAX_RUNNING`] run at once.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burrow_core::node::{HookEvent, HookKind, HookSubject};
use serde::Deserialize;

/// Most arguments of a hook, the program included.
pub const MAX_ARGS: usize = 64;
/// Longest argument (or script), in bytes.
pub const MAX_ARG_LEN: usize = 4096;
/// The timeout when `hook_timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `hook_timeout`, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// Most hooks running at once in a daemon; more are not run (and logged).
pub const MAX_RUNNING: usize = 16;
/// Most bytes of one run's output (stdout and stderr each) that reach the log.
pub const MAX_OUTPUT: usize = 16 * 1024;
/// Longest output line logged; longer ones are cut.
const MAX_LINE: usize = 1024;
/// How long a finished hook's output may take to reach the log.
const READER_GRACE: Duration = Duration::from_secs(2);

/// The wildcards a hook may use, as `%name%`.
pub const WILDCARDS: [&str; 11] = [
    "innerip",
    "innerport",
    "outerip",
    "outerport",
    "peerip",
    "peerport",
    "hostpin",
    "peerpin",
    "path",
    "route",
    "event",
];

/// A hook as written: a list (program and arguments) or, with `shell = true`, a string.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Written {
    /// `["program", "arg", ...]`.
    Argv(Vec<String>),
    /// `"script"`, for `sh -c`.
    Script(String),
}

/// The hook keys of one config entry, as written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keys<'a> {
    pub on_up: Option<&'a Written>,
    pub on_path: Option<&'a Written>,
    pub on_down: Option<&'a Written>,
    pub shell: Option<bool>,
    pub hook_timeout: Option<u64>,
}

/// One checked hook: a program and its arguments, or a script for `sh -c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    Argv(Vec<String>),
    Script(String),
}

/// The checked hooks of one config entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hooks {
    pub on_up: Option<Hook>,
    pub on_path: Option<Hook>,
    pub on_down: Option<Hook>,
    pub timeout: Duration,
}

/// Every entry's hooks, by what they belong to.
pub type Table = BTreeMap<HookSubject, Hooks>;

impl Keys<'_> {
    /// The entry's hooks, checked (`None`: it has none), or the key at fault and why.
    pub fn check(&self) -> Result<Option<Hooks>, (&'static str, String)> {
        let shell = self.shell.unwrap_or(false);
        let any = self.on_up.or(self.on_path).or(self.on_down).is_some();
        if !any {
            if self.shell.is_some() {
                return Err((
                    "shell",
                    "set, but there is no on_up, on_path or on_down".into(),
                ));
            }
            if self.hook_timeout.is_some() {
                return Err((
                    "hook_timeout",
                    "set, but there is no on_up, on_path or on_down".into(),
                ));
            }
            return Ok(None);
        }
        let timeout = match self.hook_timeout {
            None => DEFAULT_TIMEOUT,
            Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                return Err((
                    "hook_timeout",
                    format!("{s} is not 1 to {MAX_TIMEOUT_SECS} (seconds)"),
                ));
            }
        };
        let one = |key: &'static str, w: Option<&Written>| {
            w.map(|w| hook(w, shell).map_err(|why| (key, why)))
                .transpose()
        };
        Ok(Some(Hooks {
            on_up: one("on_up", self.on_up)?,
            on_path: one("on_path", self.on_path)?,
            on_down: one("on_down", self.on_down)?,
            timeout,
        }))
    }
}

/// One hook, checked: its shape, its limits, its wildcards and its program.
fn hook(written: &Written, shell: bool) -> Result<Hook, String> {
    let hook = match (written, shell) {
        (Written::Script(s), true) => Hook::Script(s.clone()),
        (Written::Argv(a), true) if a.len() == 1 => Hook::Script(a[0].clone()),
        (Written::Argv(_), true) => {
            return Err("with `shell = true`, give one script (a string) for sh -c".into());
        }
        (Written::Script(s), false) => {
            return Err(format!(
                "a string runs only with `shell = true`; without a shell give the program and \
                 its arguments as a list, such as [\"/usr/bin/logger\", \"%peerip%\"] (not `{s}`)"
            ));
        }
        (Written::Argv(a), false) => Hook::Argv(a.clone()),
    };
    let args: &[String] = match &hook {
        Hook::Argv(a) => a,
        Hook::Script(s) => std::slice::from_ref(s),
    };
    if args.is_empty() || args[0].is_empty() {
        return Err("an empty command: name the program to run".into());
    }
    if args.len() > MAX_ARGS {
        return Err(format!("{} arguments; at most {MAX_ARGS}", args.len()));
    }
    for arg in args {
        if arg.len() > MAX_ARG_LEN {
            return Err(format!(
                "an argument of {} bytes; at most {MAX_ARG_LEN}",
                arg.len()
            ));
        }
        if arg.contains('\0') {
            return Err("an argument holds a NUL byte".into());
        }
        wildcards(arg)?;
    }
    if let Hook::Argv(a) = &hook {
        if a[0].contains('%') {
            return Err(format!(
                "the program `{}` holds a `%`: the program is fixed, wildcards go in its \
                 arguments",
                a[0]
            ));
        }
        find_program(&a[0])?;
    }
    Ok(hook)
}

/// Checks every `%name%` of `text` is a known wildcard.
fn wildcards(text: &str) -> Result<(), String> {
    for name in names(text) {
        match name {
            n if WILDCARDS.contains(&n) => {}
            "secret" => {
                return Err(
                    "%secret% does not exist in burrow: there is no shared secret (sessions are \
                     keyed by Noise IK from the two daemons' keys); identify the two sides with \
                     %hostpin% and %peerpin%, their public keys"
                        .into(),
                );
            }
            "hostmail" | "peermail" => {
                return Err(format!(
                    "%{name}% does not exist in burrow: daemons have keys, not owners' mail; \
                     use %hostpin% and %peerpin% (their public keys) or %path%"
                ));
            }
            other => {
                return Err(format!(
                    "unknown wildcard %{other}%; the wildcards are %{}%",
                    WILDCARDS.join("% %")
                ));
            }
        }
    }
    Ok(())
}

/// The `%name%` words of `text`: a `%`, lowercase letters or `_`, a `%`. Any other `%` is
/// text.
fn names(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let word_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        if word_len > 0 && after[word_len..].starts_with('%') {
            found.push(&after[..word_len]);
            rest = &after[word_len + 1..];
        } else {
            rest = after;
        }
    }
    found
}

/// Replaces every known `%name%` of `text` with `value(name)`.
fn substitute(text: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let word_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        let word = &after[..word_len];
        if word_len > 0 && after[word_len..].starts_with('%') && WILDCARDS.contains(&word) {
            out.push_str(&value(word));
            rest = &after[word_len + 1..];
        } else {
            out.push('%');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `text` as one sh word: in single quotes, each `'` written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Whether `program` can be run: a path to an executable file, or a name found on `$PATH`.
fn find_program(program: &str) -> Result<(), String> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        if executable(Path::new(program)) {
            return Ok(());
        }
        return Err(format!("`{program}` is not an executable file"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| executable(&dir.join(program))) {
        return Ok(());
    }
    Err(format!(
        "`{program}` is not found on $PATH ({}); give its full path",
        path.to_string_lossy()
    ))
}

/// What each wildcard stands for in `event` (an unknown address is the empty string).
pub fn value(event: &HookEvent, name: &str) -> String {
    let peer = event.path.map(|p| p.addr());
    let ip = |a: Option<std::net::SocketAddr>| a.map_or(String::new(), |a| a.ip().to_string());
    let port = |a: Option<std::net::SocketAddr>| a.map_or(String::new(), |a| a.port().to_string());
    match name {
        "innerip" => ip(Some(event.inner)),
        "innerport" => port(Some(event.inner)),
        "outerip" => ip(event.outer),
        "outerport" => port(event.outer),
        "peerip" => ip(peer),
        "peerport" => port(peer),
        "hostpin" => event.host_key.to_string(),
        "peerpin" => event.peer_key.to_string(),
        "path" => match &event.subject {
            HookSubject::Expose(s) | HookSubject::Connect(s) => s.to_string(),
            HookSubject::Peer(_) => String::new(),
        },
        "route" => match event.path {
            Some(p) if p.is_relay() => "relay".into(),
            Some(_) => "direct".into(),
            None => String::new(),
        },
        "event" => event.kind.name().into(),
        _ => String::new(),
    }
}

/// The command line of `hook` for `event`, wildcards filled in.
fn command(hook: &Hook, event: &HookEvent) -> Command {
    let mut cmd = match hook {
        Hook::Argv(argv) => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(argv[1..].iter().map(|a| substitute(a, |n| value(event, n))));
            cmd
        }
        Hook::Script(script) => {
            let mut cmd = Command::new("/bin/sh");
            let script = substitute(script, |n| shell_quote(&value(event, n)));
            cmd.arg("-c").arg(script);
            cmd
        }
    };
    // The same values for scripts that prefer the environment: BURROW_PEERIP, ...
    for name in WILDCARDS {
        cmd.env(
            format!("BURROW_{}", name.to_uppercase()),
            value(event, name),
        );
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd
}

/// What a hook is called in the log: `on_up /a/echo`, `on_down peer KEY`.
fn label(kind: HookKind, subject: &HookSubject) -> String {
    let what = match subject {
        HookSubject::Expose(s) => format!("[[expose]] {s}"),
        HookSubject::Connect(s) => format!("[[connect]] {s}"),
        HookSubject::Peer(k) => format!("[[peer]] {k}"),
    };
    format!("on_{} {what}", kind.name())
}

/// Runs the daemon's hooks for the events `next` hands out until it returns `None`, on a
/// thread of its own; the table can be replaced (a reload) through the returned handle.
pub fn spawn(
    table: Table,
    mut next: Box<dyn FnMut() -> Option<HookEvent> + Send>,
) -> Arc<Mutex<Table>> {
    let table = Arc::new(Mutex::new(table));
    let shared = Arc::clone(&table);
    let running = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        // The last run of each subject and session: the next one waits for it, so a
        // session's on_down never overtakes its on_up.
        let mut last: BTreeMap<(HookSubject, u64), JoinHandle<()>> = BTreeMap::new();
        while let Some(event) = next() {
            last.retain(|_, h| !h.is_finished());
            let found = {
                let table = shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                table.get(&event.subject).and_then(|h| {
                    let hook = match event.kind {
                        HookKind::Up => h.on_up.clone(),
                        HookKind::Path => h.on_path.clone(),
                        HookKind::Down => h.on_down.clone(),
                    };
                    hook.map(|hook| (hook, h.timeout))
                })
            };
            let Some((hook, timeout)) = found else {
                continue;
            };
            let name = label(event.kind, &event.subject);
            if running.load(Ordering::SeqCst) >= MAX_RUNNING {
                tracing::error!(
                    "hook {name}: not run, {MAX_RUNNING} hooks are running already (each is \
                     killed after its hook_timeout)"
                );
                continue;
            }
            running.fetch_add(1, Ordering::SeqCst);
            let key = (event.subject.clone(), event.peer.0);
            let before = last.remove(&key);
            let running = Arc::clone(&running);
            let handle = std::thread::spawn(move || {
                if let Some(before) = before {
                    let _ = before.join();
                }
                run(&name, command(&hook, &event), timeout);
                running.fetch_sub(1, Ordering::SeqCst);
            });
            last.insert(key, handle);
        }
    });
    table
}

/// Runs one hook to its end or its timeout, logging its output and how it ended.
fn run(name: &str, mut cmd: Command, timeout: Duration) {
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!("hook {name}: cannot start {:?}: {e}", cmd.get_program());
            return;
        }
    };
    let pid = child.id();
    tracing::info!("hook {name}: started (pid {pid})");
    let readers: Vec<JoinHandle<()>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let name = name.to_string();
        std::thread::spawn(move || log_output(&name, stream))
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::error!("hook {name}: cannot wait for it: {e}");
                break None;
            }
        }
    };
    // The whole process group goes: a script's children too. Its output pipes close then.
    let group = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    if status.is_none() {
        let _ = child.wait();
    }
    // Its output is logged before how it ended; a pipe held open by something that left the
    // process group is given up on after a moment.
    let until = Instant::now() + READER_GRACE;
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    match status {
        Some(status) if status.success() => tracing::info!("hook {name}: exited with 0"),
        Some(status) => tracing::warn!("hook {name}: failed: {status}"),
        None => tracing::warn!(
            "hook {name}: killed after its timeout of {} s",
            timeout.as_secs()
        ),
    }
}

/// Logs `stream` line by line, at most [`MAX_OUTPUT`] bytes; reads the rest to its end
/// (so the program never blocks on a full pipe) and says how much was not logged.
fn log_output(name: &str, mut stream: Box<dyn Read + Send>) {
    let mut logged = 0usize;
    let mut dropped = 0usize;
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    let emit = |line: &mut Vec<u8>, logged: &mut usize, dropped: &mut usize| {
        if *logged >= MAX_OUTPUT {
            *dropped += line.len();
        } else {
            *logged += line.len();
            let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
            tracing::info!("hook {name}: {}", text.trim_end());
        }
        line.clear();
    };
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                emit(&mut line, &mut logged, &mut dropped);
            } else if line.len() <= MAX_LINE {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut logged, &mut dropped);
    }
    if dropped > 0 {
        tracing::warn!("hook {name}: {dropped} more bytes of output not logged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Written {
        Written::Argv(a.iter().map(|s| s.to_string()).collect())
    }

    fn check(w: &Written, shell: Option<bool>) -> Result<Option<Hooks>, (&'static str, String)> {
        Keys {
            on_up: Some(w),
            shell,
            ..Keys::default()
        }
        .check()
    }

    #[test]
    fn good_hooks_pass() {
        let hooks = check(&argv(&["/bin/echo", "%peerip%:%peerport%", "50%"]), None)
            .unwrap()
            .unwrap();
        assert_eq!(hooks.timeout, DEFAULT_TIMEOUT);
        assert!(check(&argv(&["echo", "x"]), None).is_ok(), "found on $PATH");
        let script = Written::Script("echo %peerip% >&2".into());
        assert!(matches!(
            check(&script, Some(true)).unwrap().unwrap().on_up,
            Some(Hook::Script(_))
        ));
        assert_eq!(Keys::default().check(), Ok(None));
    }

    #[test]
    fn bad_hooks_say_why() {
        let long = "x".repeat(MAX_ARG_LEN + 1);
        let many: Vec<&str> = std::iter::once("/bin/echo")
            .chain(std::iter::repeat_n("a", MAX_ARGS))
            .collect();
        for (w, shell, want) in [
            (argv(&["/bin/echo", "%secret%"]), None, "no shared secret"),
            (argv(&["/bin/echo", "%peermail%"]), None, "not owners' mail"),
            (
                argv(&["/bin/echo", "%peer%"]),
                None,
                "unknown wildcard %peer%",
            ),
            (argv(&["/no/such/prog"]), None, "not an executable file"),
            (argv(&["no-such-prog-burrow"]), None, "not found on $PATH"),
            (argv(&["%peerip%"]), None, "the program is fixed"),
            (argv(&[]), None, "an empty command"),
            (argv(&["/bin/echo", &long]), None, "at most 4096"),
            (argv(&many), None, "at most 64"),
            (argv(&["/bin/echo", "a\0b"]), None, "NUL"),
            (
                Written::Script("echo hi".into()),
                None,
                "only with `shell = true`",
            ),
            (argv(&["echo", "hi"]), Some(true), "one script"),
        ] {
            let err = check(&w, shell).unwrap_err();
            assert_eq!(err.0, "on_up");
            assert!(err.1.contains(want), "{w:?}: {}", err.1);
        }
        let bad_timeout = Keys {
            on_down: Some(&argv(&["/bin/true"])),
            hook_timeout: Some(0),
            ..Keys::default()
        };
        assert_eq!(bad_timeout.check().unwrap_err().0, "hook_timeout");
        let lonely = Keys {
            shell: Some(true),
            ..Keys::default()
        };
        assert_eq!(lonely.check().unwrap_err().0, "shell");
    }

    #[test]
    fn substitution_replaces_known_words_only() {
        let got = substitute("%peerip%:%peerport% 100% %x% %%path%", |n| n.to_uppercase());
        assert_eq!(got, "PEERIP:PEERPORT 100% %x% %PATH");
        assert_eq!(names("a %b% %c d% %e%f% %g_h% %I%"), vec!["b", "e", "g_h"]);
    }

    #[test]
    fn a_quoted_value_stays_one_word_in_sh() {
        for hostile in [
            "'; touch /tmp/burrow-pwned; '",
            "$(id)",
            "`id`",
            "a b\nc",
            "\\'\"",
            "",
        ] {
            let script = format!("printf %s {}", shell_quote(hostile));
            let out = Command::new("/bin/sh")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), hostile, "{script}");
        }
    }
}
