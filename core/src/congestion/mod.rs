//! Congestion control behind a trait, and RTT estimation.
