//! Key files, readable by the owner only: a label line naming what the file is and its public
//! key, then the secret key in base64.
//!
//! ```text
//! # burrow secret key: keep it to yourself. Its public key is <base64>
//! <base64 of the 32 secret bytes>
//! ```
//!
//! The bytes of a public and a secret key look alike (32 bytes, 44 base64 characters), so the
//! label is what tells a secret key file from a public key saved to a file. Files without it
//! (written by hand, or before burrow labelled its key files) are still read as secret keys;
//! `burrow pubkey` then warns that it cannot tell.

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

/// Writes `key` to `path`, owner-only (0600) whatever the umask, refusing to replace a file
/// unless `force`. The key goes to a new temporary file beside `path` (created exclusively, so
/// a planted file or symlink there is never written through), which is then renamed over
/// `path`: a symlink at `path` is replaced, not followed, and `--force` leaves a 0600 file
/// even where a 0644 one was.
pub fn write(path: &Path, key: &SecretKey, force: bool) -> Result<(), String> {
    if path.extension().is_some_and(|e| e == "pub") {
        return Err(format!(
            "{} is a public key's name (*.pub); write the secret key to another file, and its \
             public key (printed on stdout) to this one if you like",
            path.display()
        ));
    }
    if std::fs::symlink_metadata(path).is_ok() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it (the old identity is lost)",
            path.display()
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Directories made for a key are owner-only too.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = write_new(&tmp, key).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write key file {}: {e}", path.display()));
    }
    Ok(())
}

/// Creates `path` (which must not exist) with mode 0600 and the key in it, synced to disk.
fn write_new(path: &Path, key: &SecretKey) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // The umask can only clear bits; make it exactly 0600.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    write!(file, "{}", labelled(key))?;
    file.sync_all()
}

/// The label line's start; the public key follows it.
const LABEL: &str = "# burrow secret key: keep it to yourself. Its public key is ";

/// A key file's text for `key`: the label with its public key, then the secret.
fn labelled(key: &SecretKey) -> String {
    format!("{LABEL}{}\n{}\n", key.public_key(), key.to_base64())
}

/// A key file's text, read: the secret key, and whether the file carried burrow's label.
/// Comment lines (`#`) other than the label are skipped; exactly one key line must remain,
/// and a label's public key must be the secret's.
fn parse(text: &str) -> Result<(SecretKey, bool), String> {
    let mut label = None;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(public) = line.strip_prefix(LABEL.trim_end()) {
            label = Some(public.trim());
        } else if !line.starts_with('#') {
            keys.push(line);
        }
    }
    let [line] = keys.as_slice() else {
        return Err(format!(
            "holds {} key lines where a key file has one (the secret key in base64)",
            keys.len()
        ));
    };
    let key: SecretKey = line.parse().map_err(|e| format!("{e}"))?;
    if let Some(public) = label {
        let expected = key.public_key().to_string();
        if public != expected {
            return Err(format!(
                "its label names public key {public}, but its secret key's public key is \
                 {expected}: the file was edited; restore it from a backup"
            ));
        }
    }
    Ok((key, label.is_some()))
}

/// Reads the key at `path`. Refuses a key file that its group or others may read or write
/// (as ssh does), with the `chmod` that fixes it, and a file that holds a public key.
pub fn read(path: &Path) -> Result<SecretKey, String> {
    read_labelled(path).map(|(key, _)| key)
}

/// [`read`], and whether the file carried burrow's label.
fn read_labelled(path: &Path) -> Result<(SecretKey, bool), String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(format!(
            "key file {} not found: create it with `burrow keygen --out {}`",
            path.display(),
            path.display()
        ));
    }
    if let Some(why) = holds_public_key(path) {
        return Err(why);
    }
    let text = crate::secrets::read_private(path, "key file", 1024)
        .map_err(|e| shared_key_file(path, e))?;
    parse(&text).map_err(|e| format!("key file {}: {e}", path.display()))
}

/// The public key of the secret key file at `path` (`burrow pubkey`). A key given in place of
/// the file is refused with what it is: the bytes of a public and a secret key look alike,
/// and printing the "public key" of a public key would give a key nobody holds. With the key, a
/// warning when the file has no label (so it might hold a public key: nothing tells).
pub fn public_of(path: &Path) -> Result<(burrow_core::PublicKey, Option<String>), String> {
    let text = path.to_string_lossy();
    if std::fs::symlink_metadata(path).is_err() && text.parse::<burrow_core::PublicKey>().is_ok() {
        return Err(format!(
            "`{text}` is a key, not a key file: if `burrow keygen`, `burrow server` or a daemon \
             printed it, it is a public key already; `burrow pubkey --key FILE` reads a secret \
             key file"
        ));
    }
    let (key, labelled) = read_labelled(path)?;
    let warning = (!labelled).then(|| {
        format!(
            "{} has no `# burrow secret key` label (written by hand, or before burrow labelled \
             its key files), and a public key saved to a file looks the same as a secret one: \
             if it holds a public key, the key printed belongs to nobody. Key files that \
             `burrow keygen --out` and the daemon write are labelled",
            path.display()
        )
    });
    Ok((key.public_key(), warning))
}

/// Largest file looked at for a public key: a key is 44 characters and a newline.
const PUBLIC_KEY_FILE_MAX: u64 = 128;

/// Whether the file at `path` holds one key (public or secret: their bytes look alike).
fn holds_a_key(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= PUBLIC_KEY_FILE_MAX)
        && std::fs::read_to_string(path)
            .is_ok_and(|t| t.trim().parse::<burrow_core::PublicKey>().is_ok())
}

/// Why the file at `path` is taken for a public key, or `None`. The bytes of a public and a
/// secret key look alike, so it is told by the file's name: `NAME.pub` is where a public key
/// is saved (as ssh's are), and burrow never writes a secret key there.
fn holds_public_key(path: &Path) -> Option<String> {
    let named = path.extension().is_some_and(|e| e == "pub");
    (named && holds_a_key(path)).then(|| {
        format!(
            "{} holds a public key (a *.pub file): it is the public key already, to give to \
             others; `burrow pubkey --key FILE` and `--key` read a secret key file, which \
             `burrow keygen --out FILE` makes",
            path.display()
        )
    })
}

/// The error for a key file others can read, with what it means if it is a public key.
fn shared_key_file(path: &Path, error: String) -> String {
    if error.contains("chmod 600") && holds_a_key(path) {
        format!(
            "{error}; or, if it holds a public key (what `burrow pubkey` and `keygen --out` \
             print, saved to a file), it is the public key already and --key wants the secret \
             key file instead"
        )
    } else {
        error
    }
}

/// Reads the key at `path`, creating it first if it does not exist.
pub fn read_or_create(path: &Path) -> Result<SecretKey, String> {
    if std::fs::symlink_metadata(path).is_err() {
        let key = generate()?;
        write(path, &key, false)?;
        tracing::info!(path = %path.display(), public_key = %key.public_key(), "created a new key");
        return Ok(key);
    }
    read(path)
}
