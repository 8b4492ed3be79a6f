//! systemd's readiness protocol (sd_notify): one datagram such as `READY=1` to the unix
//! socket named by `$NOTIFY_SOCKET`, when a unit with `Type=notify` started us. Written here
//! rather than taken from a crate: it is a few lines over std's `UnixDatagram`, and needs no
//! `unsafe` and no libsystemd.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=VALUE` lines) to the service manager, if one asked
/// for it; does nothing otherwise. A failure is logged, never fatal: the service manager's
/// timeout reports it.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!("cannot notify the service manager at {path:?}: {e}");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path);
    // A leading `@` names a socket in the abstract namespace (Linux).
    #[cfg(target_os = "linux")]
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
        return Ok(());
    }
    socket.send_to(state.as_bytes(), std::path::Path::new(path))?;
    let _ = bytes;
    Ok(())
}
