//! Virtual time: a fixed origin, a clock that only jumps forward, and the one event queue.
//!
//! The host clock is read exactly once per process ([`origin`]); every simulated instant is that
//! origin plus a [`Duration`]. Traces print durations since the origin, never instants, so they
//! are byte-identical across runs and processes.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The fixed origin of virtual time.
///
/// The first call reads the host clock (the simulator's only call to `Instant::now`); every later
/// call, from any simulation in the process, returns the same instant. Nodes convert between
/// `Instant` and "time since origin" with it.
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// A virtual clock: `origin + now`, where `now` only moves forward by jumping to the next event.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    now: Duration,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock at the origin.
    pub fn new() -> Self {
        Self {
            origin: origin(),
            now: Duration::ZERO,
        }
    }

    /// Virtual time elapsed since the origin.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The current virtual time as an `Instant` (what nodes are given).
    pub fn instant(&self) -> Instant {
        self.origin + self.now
    }

    /// The `Instant` for a time since the origin.
    pub fn to_instant(&self, since_origin: Duration) -> Instant {
        self.origin + since_origin
    }

    /// The time since the origin of an `Instant`; instants before the origin map to zero.
    pub fn since_origin(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    /// Moves the clock to `t` if `t` is later; the clock never goes backwards.
    pub fn advance_to(&mut self, t: Duration) {
        if t > self.now {
            self.now = t;
        }
    }
}

#[derive(Clone, Copy)]
struct Entry {
    at: Duration,
    seq: u64,
    slot: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    // Reversed so that `BinaryHeap` (a max-heap) pops the earliest `(at, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A priority queue of events keyed by `(at, seq)`: earliest time first, then insertion order, so
/// events at the same instant run in the order they were scheduled.
///
/// The heap holds small `(at, seq, slot)` keys; the events themselves sit in a slab whose slots
/// are reused, so sifting never moves datagrams around and a steady run does not allocate.
pub struct EventQueue<T> {
    heap: BinaryHeap<Entry>,
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> EventQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::with_capacity(64),
            slab: Vec::with_capacity(64),
            free: Vec::with_capacity(64),
            seq: 0,
        }
    }

    /// Schedules `item` at time `at` (since origin).
    pub fn push(&mut self, at: Duration, item: T) {
        let seq = self.seq;
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(item);
                i
            }
            None => {
                self.slab.push(Some(item));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Entry { at, seq, slot });
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(Duration, T)> {
        let e = self.heap.pop()?;
        self.free.push(e.slot);
        let item = self.slab[e.slot as usize]
            .take()
            .expect("every queued slot holds an event");
        Some((e.at, item))
    }

    /// The time of the earliest event.
    pub fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|e| e.at)
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no events are pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut q = EventQueue::new();
        q.push(Duration::from_millis(5), "c");
        q.push(Duration::from_millis(1), "a");
        q.push(Duration::from_millis(5), "d");
        q.push(Duration::from_millis(1), "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, x)| x)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn clock_never_goes_back() {
        let mut c = Clock::new();
        c.advance_to(Duration::from_secs(2));
        c.advance_to(Duration::from_secs(1));
        assert_eq!(c.now(), Duration::from_secs(2));
        assert_eq!(c.since_origin(c.instant()), Duration::from_secs(2));
    }
}
