//! A server with an authority for the binary's tests: `burrow server init`, the server on
//! its store, `burrow admin` with the master token, and daemons with their own tokens.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

/// A server started from a store that `burrow server init` made, with tenant `acme`.
pub struct Authority {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub store: PathBuf,
    pub master: PathBuf,
    pub server: Proc,
    pub addr: String,
    pub public: String,
}

impl Authority {
    pub fn start(dir: &Path) -> Self {
        let key = dir.join("server.key");
        keygen(&key);
        let store = dir.join("store");
        let master = dir.join("master");
        let init = run(&[
            "server",
            "init",
            "--state-dir",
            path(&store),
            "--tenant",
            "acme",
            "--out",
            path(&master),
        ])
        .expect("server init");
        assert!(init.contains("tenant acme created"), "{init}");
        let mode = std::fs::metadata(&master).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the master token file");
        let (server, addr, public) = serve(&key, &store, "127.0.0.1:0");
        Self {
            dir: dir.to_path_buf(),
            key,
            store,
            master,
            server,
            addr,
            public,
        }
    }

    /// Stops the server (SIGTERM) and starts it again on the same address and store.
    pub fn restart(&mut self) {
        self.server.terminate();
        let _ = self.server.child.wait();
        let (server, addr, public) = serve(&self.key, &self.store, &self.addr);
        assert_eq!((&addr, &public), (&self.addr, &self.public));
        self.server = server;
    }

    /// `burrow admin ARGS` with the master token file: stdout, or stderr on failure.
    pub fn admin(&self, args: &[&str]) -> Result<String, String> {
        self.admin_with(path(&self.master), args)
    }

    pub fn admin_with(&self, token_file: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec![
            "admin",
            "--server",
            &self.addr,
            "--server-key",
            &self.public,
            "--token-file",
            token_file,
        ];
        all.extend(args);
        run(&all)
    }

    /// Creates `path`: its (server, client) tokens.
    pub fn create(&self, path: &str, fixed: bool) -> (String, String) {
        let mut args = vec!["create", path];
        if fixed {
            args.push("--fixed");
        }
        let out = self.admin(&args).expect("admin create");
        let token = |label: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(label))
                .unwrap_or_else(|| panic!("no {label} in {out}"))
                .trim()
                .to_string()
        };
        (token("server token:"), token("client token:"))
    }

    /// Writes `token` to a 0600 file named `name`.
    pub fn token_file(&self, name: &str, token: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        path(&p).to_string()
    }

    /// A daemon (`expose ...` or `connect ...`) with its own state directory `state`,
    /// registering with `token`.
    pub fn daemon(&self, state: &str, cmd: &[&str], token: &str) -> Proc {
        let file = self.token_file(&format!("{state}.token"), token);
        let state_dir = self.dir.join(state);
        let mut args: Vec<&str> = cmd.to_vec();
        args.extend(["--server", &self.addr, "--server-key", &self.public]);
        args.extend(["--token-file", &file, "--state-dir", path(&state_dir)]);
        args.extend(["--udp", "127.0.0.1:0"]);
        spawn(&args)
    }
}

pub fn serve(key: &Path, store: &Path, listen: &str) -> (Proc, String, String) {
    let server = spawn(&[
        "server",
        "--listen",
        listen,
        "--key",
        path(key),
        "--state-dir",
        path(store),
    ]);
    let public = wait_for(&server.stdout, "server public key:");
    let addr = wait_for(&server.stdout, "listening on udp");
    let word = |l: String| l.rsplit(' ').next().expect("word").to_string();
    (server, word(addr), word(public))
}

/// The tree once `path` shows as exposed.
pub fn tree_when_exposed(auth: &Authority, path: &str) -> String {
    let start = Instant::now();
    loop {
        let tree = auth.admin(&["tree"]).expect("tree");
        let exposed = tree
            .lines()
            .any(|l| l.contains(path) && l.contains("exposed by"));
        if exposed || start.elapsed() > WAIT {
            return tree;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
