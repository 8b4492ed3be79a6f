//! Logs on stderr, as text or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

const LEVELS: &str =
    "use off, error, warn, info, debug or trace, or a filter such as burrow_tokio=debug";

/// Checks `level`: a level name, or a tracing filter with a directive that names a level
/// (`target=level`). A bare word such as `verbose` would parse as a target and silence every
/// log line, errors included, so it is refused.
pub fn check_level(level: &str) -> Result<EnvFilter, String> {
    let named = |l: &str| {
        matches!(
            l.trim().to_ascii_lowercase().as_str(),
            "off" | "error" | "warn" | "info" | "debug" | "trace"
        )
    };
    let ok = level
        .split(',')
        .all(|d| named(d) || d.rsplit_once('=').is_some_and(|(_, l)| named(l)));
    if !ok {
        return Err(format!("log level `{level}` is not a level ({LEVELS})"));
    }
    EnvFilter::try_new(level).map_err(|e| format!("log level `{level}`: {e} ({LEVELS})"))
}

/// Installs the global subscriber. `level` is a level or a tracing filter.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = check_level(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}
