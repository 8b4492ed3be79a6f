//! Path tokens imported into a running daemon through its control socket (`burrow import`),
//! next to those of its config file (`--path-token-file`, `path_token_files`). An import
//! takes effect at once: the daemon registers again with the token added, and the server's
//! answer says which paths the registration may now expose or connect to, or why it refused
//! the token (then nothing changes). Accepted tokens are kept in `path-tokens` in the state
//! directory (0600, one per line), which the daemon reads again at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burrow_core::rendezvous::{
    MAX_PATH_TOKEN_LEN, MAX_PATH_TOKENS, ServiceName, TokenUse, token_start,
};

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
    Ok(load_with_paths(state_dir)?.0)
}

/// The comment `save` writes above a token that is known to be for a path.
const FOR_PATH: &str = "# for ";

/// Reads the imported tokens in `state_dir`, and the path each is for where the file says
/// (a `# for PATH` line above it); none if there is no file.
fn load_with_paths(state_dir: &Path) -> Result<(Vec<String>, BTreeMap<String, String>), String> {
    let path = state_dir.join(IMPORTED_FILE);
    let text = match secrets::read_private(&path, "imported path tokens", MAX_FILE_LEN) {
        Ok(text) => text,
        Err(_) if !path.exists() => return Ok((Vec::new(), BTreeMap::new())),
        Err(e) => return Err(e),
    };
    let mut tokens = Vec::new();
    let (mut paths, mut above) = (BTreeMap::new(), None);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix(FOR_PATH) {
            above = ServiceName::parse(name.trim()).ok().map(|n| n.to_string());
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check(line).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        tokens.push(line.to_string());
        if let Some(name) = above.take() {
            paths.insert(line.to_string(), name);
        }
    }
    if tokens.len() > MAX_PATH_TOKENS {
        return Err(format!(
            "{} holds {} tokens; a daemon presents at most {MAX_PATH_TOKENS}",
            path.display(),
            tokens.len()
        ));
    }
    Ok((tokens, paths))
}

/// Writes `tokens` to `path-tokens` in `state_dir`, each under a `# for PATH` line where
/// `paths` knows its path (older binaries read those as comments): a new 0600 file renamed
/// into place.
fn save(
    state_dir: &Path,
    tokens: &[String],
    paths: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut text = String::from("# path tokens imported with `burrow import`\n");
    for t in tokens {
        if let Some(name) = paths.get(t) {
            text.push_str(&format!("{FOR_PATH}{name}\n"));
        }
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
    /// The path each imported token is for, as the server said when it was imported.
    paths: BTreeMap<String, String>,
}

impl Imports {
    pub fn new(
        node: Control,
        state_dir: PathBuf,
        base: Vec<String>,
        imported: Vec<String>,
    ) -> Self {
        let paths = load_with_paths(&state_dir).map_or_else(|_| BTreeMap::new(), |(_, p)| p);
        Self {
            node,
            state_dir,
            base,
            imported,
            paths,
        }
    }

    /// The path `token` (presented now) is for, as the server said at the latest
    /// registration.
    fn path_of(&self, token: &str) -> Option<String> {
        let all = Self::all(&self.base, &self.imported);
        let at = all.iter().position(|t| t == token)?;
        let uses = self.node.status().ok()?.path_tokens;
        match uses.get(at) {
            Some((start, TokenUse::Path(grant))) if *start == token_start(token) => {
                Some(grant.name.to_string())
            }
            _ => None,
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
            self.imported = imported;
        }
        if let Some(name) = self.path_of(token) {
            self.paths.insert(token.to_string(), name);
        }
        save(&self.state_dir, &self.imported, &self.paths)?;
        let verb = if known {
            "already imported"
        } else {
            "imported"
        };
        Ok(format!("{verb}; this daemon may use: {grants}"))
    }
}

impl Imports {
    /// Removes imported tokens: `what` is a PATH (every imported token for it), a token, or
    /// the start of one (at least 6 characters, as the daemon's log names a refused token)
    /// that only one imported token has. The daemon registers again without them (a token
    /// its master redeemed is refused alone, and named in the log at every registration),
    /// and `path-tokens` drops them. What the registration may use then, or why the server
    /// refused the tokens left (they stay forgotten: the file no longer holds them).
    pub fn forget(&mut self, what: &str) -> Result<String, String> {
        let tokens = if what.starts_with('/') {
            self.tokens_for(what)?
        } else {
            vec![self.token_named(what)?]
        };
        let imported: Vec<String> = self
            .imported
            .iter()
            .filter(|t| !tokens.contains(t))
            .cloned()
            .collect();
        for t in &tokens {
            self.paths.remove(t);
        }
        save(&self.state_dir, &imported, &self.paths)?;
        self.imported = imported;
        let all = Self::all(&self.base, &self.imported);
        let grants = self.node.set_path_tokens(all).map_err(|e| {
            format!("forgotten (path-tokens no longer holds it), but the registration with the tokens left failed: {e}")
        })?;
        let what = if tokens.len() == 1 {
            "forgotten".to_string()
        } else {
            format!("{} tokens forgotten", tokens.len())
        };
        Ok(format!("{what}; this daemon may use: {grants}"))
    }

    /// The imported tokens for `path`: those the server said were for it when imported, or
    /// at the latest registration.
    fn tokens_for(&self, path: &str) -> Result<Vec<String>, String> {
        let name = ServiceName::parse(path).map_err(|e| format!("{path}: {e}"))?;
        let name = name.to_string();
        let tokens: Vec<String> = self
            .imported
            .iter()
            .filter(|t| {
                self.paths.get(*t) == Some(&name) || self.path_of(t).as_ref() == Some(&name)
            })
            .cloned()
            .collect();
        if tokens.is_empty() {
            let config = self
                .base
                .iter()
                .any(|t| self.path_of(t).as_ref() == Some(&name));
            if config {
                return Err(format!(
                    "the token for {name} comes from the config (--path-token-file or \
                     path_token_files), not from `burrow import`; remove it there and reload"
                ));
            }
            return Err(format!(
                "no token imported into this daemon is for {name} (`burrow status` lists what \
                 each path token does; --forget also takes a token or its first 6 characters)"
            ));
        }
        Ok(tokens)
    }

    /// The imported token `what` names: itself, or the only one starting with it.
    fn token_named(&self, what: &str) -> Result<String, String> {
        check(what)?;
        if let Some(t) = self.imported.iter().find(|t| *t == what) {
            return Ok(t.clone());
        }
        if self.base.iter().any(|t| t == what) {
            return Err(
                "that token comes from the config (--path-token-file or path_token_files), \
                 not from `burrow import`; remove it there and reload"
                    .to_string(),
            );
        }
        let starting: Vec<&String> = self
            .imported
            .iter()
            .filter(|t| t.starts_with(what))
            .collect();
        match starting.as_slice() {
            [one] if what.len() >= 6 => Ok((*one).clone()),
            [_, _, ..] if what.len() >= 6 => Err(format!(
                "{} imported tokens start with {what}; give more of it",
                starting.len()
            )),
            _ => Err("that token was not imported into this daemon".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> crate::test_dir::TestDir {
        crate::test_dir::TestDir::new(&format!("import-{name}"))
    }

    #[test]
    fn saved_tokens_load_back_owner_only() {
        let d = dir("save");
        assert_eq!(load(&d).unwrap(), Vec::<String>::new());
        let tokens = vec!["a".repeat(48), "b".repeat(48)];
        save(&d, &tokens, &BTreeMap::new()).unwrap();
        assert_eq!(load(&d).unwrap(), tokens);
        let mode = std::fs::metadata(d.join(IMPORTED_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_path_of_each_token_comes_back_and_a_bad_one_is_left_out() {
        let d = dir("paths");
        let tokens = vec!["a".repeat(48), "b".repeat(48)];
        let paths = BTreeMap::from([(tokens[1].clone(), "/home/ssh".to_string())]);
        save(&d, &tokens, &paths).unwrap();
        let text = std::fs::read_to_string(d.join(IMPORTED_FILE)).unwrap();
        assert!(text.contains("# for /home/ssh\nbbbb"), "{text}");
        assert_eq!(load_with_paths(&d).unwrap(), (tokens.clone(), paths));
        // A comment that names no path, or one not above a token, names nothing.
        let file = d.join(IMPORTED_FILE);
        std::fs::write(
            &file,
            format!("# for not a path\n{}\n# for /x\n", tokens[0]),
        )
        .unwrap();
        assert_eq!(
            load_with_paths(&d).unwrap(),
            (vec![tokens[0].clone()], BTreeMap::new())
        );
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
