//! Reliable, ordered, multiplexed byte streams inside an encrypted session.
