//! Secrets kept off command lines: key files, token files and the `BURROW_TOKEN` variable.
//!
//! A secret file must be readable by its owner only (as ssh demands of private keys), is read
//! up to a size limit, and each error names the file and the fix.

use std::io::Read;
use std::path::Path;

/// Longest token the server accepts, in bytes.
pub const MAX_TOKEN_LEN: usize = 64;
/// Largest secret file read: a key is 44 characters, a tokens file holds at most a few
/// thousand tokens.
const MAX_FILE_LEN: u64 = 256 * 1024;
/// Most tokens one tokens file may list.
pub const MAX_TOKENS: usize = 4096;

/// Reads the secret file at `path` (a `what`, for messages): refused when its group or others
/// may read or write it, or when it is larger than `limit` bytes.
pub fn read_private(path: &Path, what: &str, limit: u64) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{what} {} not found", path.display()),
        _ => format!("cannot read {what} {}: {e}", path.display()),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{what} {} is accessible by others (mode {:04o}): a secret must be readable by its owner only; run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            ));
        }
    }
    if meta.len() > limit.min(MAX_FILE_LEN) {
        return Err(format!(
            "{what} {} is {} bytes, more than the {} a {what} may be",
            path.display(),
            meta.len(),
            limit.min(MAX_FILE_LEN)
        ));
    }
    let mut text = String::new();
    file.by_ref()
        .take(limit.min(MAX_FILE_LEN))
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    Ok(text)
}

/// Writes `text` to `path` so that a crash leaves the old file or the new one: a new file
/// beside it (mode 0600, created exclusively, so a symlink planted there is not followed),
/// synced, then renamed over `path`.
pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Checks one token: 1 to [`MAX_TOKEN_LEN`] printable ASCII characters, no spaces.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(format!(
            "the token is {} bytes, longer than {MAX_TOKEN_LEN}",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the token must be printable ASCII without spaces (`burrow token` makes one)".into(),
        );
    }
    Ok(())
}

/// Reads the tokens in the file at `path`: one per line, blank lines and `#` comments
/// ignored. At least one, at most [`MAX_TOKENS`].
pub fn read_tokens(path: &Path) -> Result<Vec<String>, String> {
    let text = read_private(path, "token file", MAX_FILE_LEN)?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_token(line)
            .map_err(|e| format!("token file {} line {}: {e}", path.display(), i + 1))?;
        if tokens.len() == MAX_TOKENS {
            return Err(format!(
                "token file {} lists more than {MAX_TOKENS} tokens",
                path.display()
            ));
        }
        tokens.push(line.to_string());
    }
    if tokens.is_empty() {
        return Err(format!("token file {} holds no token", path.display()));
    }
    Ok(tokens)
}

/// Reads the single token in the file at `path`.
pub fn read_token(path: &Path) -> Result<String, String> {
    let mut tokens = read_tokens(path)?;
    if tokens.len() > 1 {
        return Err(format!(
            "token file {} holds {} tokens; a daemon uses one",
            path.display(),
            tokens.len()
        ));
    }
    Ok(tokens.remove(0))
}

/// Creates `dir` (and its parents) owner-only (0700) if it does not exist.
pub fn private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn dir() -> crate::test_dir::TestDir {
        crate::test_dir::TestDir::new("secrets")
    }

    #[test]
    fn a_tokens_file_skips_comments_and_blank_lines() {
        let d = dir();
        let p = file(&d, "ok", "# tenants\nalpha\n\n  beta  \n", 0o600);
        assert_eq!(read_tokens(&p).unwrap(), vec!["alpha", "beta"]);
        assert!(read_token(&p).unwrap_err().contains("holds 2 tokens"));
    }

    #[test]
    fn hostile_token_files_are_refused_with_the_fix() {
        let d = dir();
        let open = file(&d, "open", "alpha\n", 0o644);
        assert!(read_token(&open).unwrap_err().contains("chmod 600"));
        let empty = file(&d, "empty", "# nothing\n", 0o600);
        assert!(read_token(&empty).unwrap_err().contains("holds no token"));
        let long = file(&d, "long", &"x".repeat(65), 0o600);
        assert!(read_token(&long).unwrap_err().contains("line 1"));
        let spaced = file(&d, "spaced", "a b\n", 0o600);
        assert!(read_token(&spaced).unwrap_err().contains("printable ASCII"));
        let huge = file(&d, "huge", &"t\n".repeat(200_000), 0o600);
        assert!(read_tokens(&huge).unwrap_err().contains("bytes, more than"));
        let many = file(&d, "many", &"tok\n".repeat(MAX_TOKENS + 1), 0o600);
        assert!(read_tokens(&many).unwrap_err().contains("more than 4096"));
        let missing = d.join("missing");
        assert!(read_token(&missing).unwrap_err().contains("not found"));
    }
}
