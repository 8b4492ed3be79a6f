//! burrow's event loop on smol: feeds `burrow_core::Endpoint` from real sockets and timers (being built).
