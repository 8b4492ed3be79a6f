//! Finding external programs that some suites need (installed by `.ci/run`).

use std::path::PathBuf;

/// The path of `program` on `PATH`, if it is there.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The path of `program`, or `None` with a note on stderr when it is missing outside CI.
/// Under CI (`CI` set) a missing program is a failure: `.ci/run` must install it.
pub fn require(program: &str, package: &str) -> Option<PathBuf> {
    match find(program) {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("{program} is missing; .ci/run installs it (Debian package {package})")
        }
        None => {
            eprintln!("skipping: {program} not found (apt-get install {package})");
            None
        }
    }
}
