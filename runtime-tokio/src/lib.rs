//! burrow's event loop on tokio: feeds `burrow_core::Endpoint` from real sockets and timers (being built).
