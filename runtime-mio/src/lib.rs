//! burrow's event loop on mio: feeds `burrow_core::Endpoint` from real sockets and timers (being built).
