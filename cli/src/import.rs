//! Path tokens imported into a running daemon through its control socket (`burrow import`),
//! next to those of its config file (`--path-token-file`, `path_token_files`). An import
//! takes effect at once: the daemon registers again with the token added, and the server's
//! answer says which paths the registration may now expose or connect to, or why it refused
//! the token (then nothing changes). Accepted tokens are kept in `path-tokens` in the state
//! directory (0600, one per line), which the daemon reads again at start.

use std::path::{Path, PathBuf};

use burrow_core::rendezvous::{MAX_PATH_TOKEN_LEN, MAX_PATH_TOKENS};

use crate::node::Control;
use crate::secrets;

/// The file in the state directory.
pub const IMPORTED_FILE: &str = "path-tokens";
/// The longest `path-tokens` file read.
const MAX_FILE_LEN: u64 = 4096;

/// Checks one path token as the server would take it.
pub fn check(token: &str) -> Result<(), String> {
    secrets::check_token(token)?;
    if token.len() > MAX_PATH_TOKEN_LEN {
        return Err(format!(
            "the token is {} bytes; a path token has at most {MAX_PATH_TOKEN_LEN} (`burrow admin create` makes them)",
            token.len()
        ));
    }
    Ok(())
}

/// Reads the imported tokens in `state_dir`; none if there is no file.
pub fn load(state_dir: &Path) -> Result<Vec<String>, String> {
    let path = state_dir.join(IMPORTED_FILE);
    let text = match secrets::read_private(&path, "imported path tokens", MAX_FILE_LEN) {
        Ok(text) => text,
        Err(_) if !path.exists() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check(line).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        tokens.push(line.to_string());
    }
    if tokens.len() > MAX_PATH_TOKENS {
        return Err(format!(
            "{} holds {} tokens; a daemon presents at most {MAX_PATH_TOKENS}",
            path.display(),
            tokens.len()
        ));
    }
    Ok(tokens)
}

/// Writes `tokens` to `path-tokens` in `state_dir`: a new 0600 file renamed into place.
fn save(state_dir: &Path, tokens: &[String]) -> Result<(), String> {
    let mut text = String::from("# path tokens imported with `burrow import`\n");
    for t in tokens {
        text.push_str(t);
        text.push('\n');
    }
    crate::secrets::write_private(&state_dir.join(IMPORTED_FILE), &text)
}

/// The path tokens a running daemon presents: its config's and the imported ones.
pub struct Imports {
    node: Control,
    state_dir: PathBuf,
    base: Vec<String>,
    imported: Vec<String>,
}

impl Imports {
    pub fn new(
        node: Control,
        state_dir: PathBuf,
        base: Vec<String>,
        imported: Vec<String>,
    ) -> Self {
        Self {
            node,
            state_dir,
            base,
            imported,
        }
    }

    /// Every token presented: the config's, then the imported ones, each once.
    pub fn all(base: &[String], imported: &[String]) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for t in base.iter().chain(imported) {
            if !all.contains(t) {
                all.push(t.clone());
            }
        }
        all
    }

    /// Adds `token` to the daemon's registration: what the registration may now use, or why
    /// the server (or a limit) refused it, with nothing changed. Importing a token already
    /// presented registers again and reports what it allows.
    pub fn import(&mut self, token: &str) -> Result<String, String> {
        check(token)?;
        let mut imported = self.imported.clone();
        let known = self.base.iter().chain(&imported).any(|t| t == token);
        if !known {
            imported.push(token.to_string());
        }
        let all = Self::all(&self.base, &imported);
        if all.len() > MAX_PATH_TOKENS {
            return Err(format!(
                "this daemon presents {} path tokens already, the most one registration may \
                 (MAX_PATH_TOKENS = {MAX_PATH_TOKENS}); register it with its tenant's master \
                 token instead, or ask the master to attach paths with `burrow admin rattach`",
                all.len() - 1
            ));
        }
        let grants = self.node.set_path_tokens(all)?;
        if !known {
            save(&self.state_dir, &imported)?;
            self.imported = imported;
        }
        let verb = if known {
            "already imported"
        } else {
            "imported"
        };
        Ok(format!("{verb}; this daemon may use: {grants}"))
    }
}

impl Imports {
    /// Removes the imported `token`: the daemon registers again without it (a token its
    /// master redeemed makes every registration that presents it fail), and `path-tokens`
    /// drops it. What the registration may use then, or why the server refused the tokens
    /// left (they stay forgotten: the file no longer holds the token).
    pub fn forget(&mut self, token: &str) -> Result<String, String> {
        check(token)?;
        if !self.imported.iter().any(|t| t == token) {
            if self.base.iter().any(|t| t == token) {
                return Err(
                    "that token comes from the config (--path-token-file or path_token_files), \
                     not from `burrow import`; remove it there and reload"
                        .to_string(),
                );
            }
            return Err("that token was not imported into this daemon".to_string());
        }
        let imported: Vec<String> = self
            .imported
            .iter()
            .filter(|t| *t != token)
            .cloned()
            .collect();
        save(&self.state_dir, &imported)?;
        self.imported = imported;
        let all = Self::all(&self.base, &self.imported);
        let grants = self.node.set_path_tokens(all).map_err(|e| {
            format!("forgotten (path-tokens no longer holds it), but the registration with the tokens left failed: {e}")
        })?;
        Ok(format!("forgotten; this daemon may use: {grants}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("burrow-import-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn saved_tokens_load_back_owner_only() {
        let d = dir("save");
        assert_eq!(load(&d).unwrap(), Vec::<String>::new());
        let tokens = vec!["a".repeat(48), "b".repeat(48)];
        save(&d, &tokens).unwrap();
        assert_eq!(load(&d).unwrap(), tokens);
        let mode = std::fs::metadata(d.join(IMPORTED_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn hostile_files_and_tokens_are_refused() {
        let d = dir("hostile");
        let file = d.join(IMPORTED_FILE);
        let write = |text: &str, mode: u32| {
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("abc\n", 0o644);
        assert!(load(&d).unwrap_err().contains("chmod 600"));
        write(&format!("{}\n", "x".repeat(49)), 0o600);
        assert!(load(&d).unwrap_err().contains("at most 48"));
        write(&"tok\n".repeat(MAX_PATH_TOKENS + 1), 0o600);
        assert!(load(&d).unwrap_err().contains("at most 4"));
        write(&"t".repeat(5000), 0o600);
        assert!(load(&d).unwrap_err().contains("bytes, more than"));
        assert!(check("").unwrap_err().contains("empty"));
        assert!(check("a b").unwrap_err().contains("printable ASCII"));
        assert!(check(&"x".repeat(49)).unwrap_err().contains("at most 48"));
    }

    #[test]
    fn all_keeps_each_token_once_in_order() {
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Imports::all(&s(&["a", "b"]), &s(&["b", "c"])),
            s(&["a", "b", "c"])
        );
    }
}
