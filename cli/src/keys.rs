//! Key files: one line of base64, readable by the owner only.

use std::io::Write;
use std::path::Path;

use burrow_core::SecretKey;

/// A new key from the OS's randomness.
pub fn generate() -> Result<SecretKey, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(SecretKey::from_bytes(bytes))
}

/// A new access token: 24 random bytes as 48 lowercase hex characters.
pub fn token() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `key` to `path` (mode 0600), refusing to replace a file unless `force`.
pub fn write(path: &Path, key: &SecretKey, force: bool) -> Result<(), String> {
    if path.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it (the old identity is lost)",
            path.display()
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write key file {}: {e}", path.display()))?;
    writeln!(file, "{}", key.to_base64())
        .map_err(|e| format!("cannot write key file {}: {e}", path.display()))
}

/// Reads the key at `path`.
pub fn read(path: &Path) -> Result<SecretKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "key file {} not found: create it with `burrow keygen --out {}`",
                path.display(),
                path.display()
            )
        } else {
            format!("cannot read key file {}: {e}", path.display())
        }
    })?;
    text.trim()
        .parse()
        .map_err(|e| format!("key file {}: {e}", path.display()))
}

/// Reads the key at `path`, creating it first if it does not exist.
pub fn read_or_create(path: &Path) -> Result<SecretKey, String> {
    if !path.exists() {
        let key = generate()?;
        write(path, &key, false)?;
        tracing::info!(path = %path.display(), public_key = %key.public_key(), "created a new key");
        return Ok(key);
    }
    read(path)
}
