//! Deterministic network and NAT simulator (being built).
