//! A set of `u64` values stored as sorted, disjoint, non-adjacent half-open ranges.
//!
//! Used for received packet numbers (ACK ranges), acknowledged and to-be-retransmitted stream
//! offsets, and the receive assembler. The sets stay small in practice (one range per hole), so
//! a sorted `Vec` beats a tree and reuses its allocation.

use std::ops::Range;

/// Sorted, disjoint, non-adjacent half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The ranges in ascending order.
    pub(crate) fn as_slice(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    pub(crate) fn first(&self) -> Option<Range<u64>> {
        self.ranges.first().map(|&(a, b)| a..b)
    }

    pub(crate) fn last(&self) -> Option<Range<u64>> {
        self.ranges.last().map(|&(a, b)| a..b)
    }

    pub(crate) fn contains(&self, v: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end <= v);
        self.ranges.get(i).is_some_and(|&(start, _)| start <= v)
    }

    /// Inserts `r`; returns true if any value in it was new.
    pub(crate) fn insert(&mut self, r: Range<u64>) -> bool {
        if r.is_empty() {
            return false;
        }
        // First range that ends at or after r.start (could merge), last that starts at or
        // before r.end.
        let lo = self.ranges.partition_point(|&(_, end)| end < r.start);
        let hi = self.ranges.partition_point(|&(start, _)| start <= r.end);
        if lo == hi {
            self.ranges.insert(lo, (r.start, r.end));
            return true;
        }
        let start = self.ranges[lo].0.min(r.start);
        let end = self.ranges[hi - 1].1.max(r.end);
        let covered = hi - lo == 1 && self.ranges[lo].0 <= r.start && self.ranges[lo].1 >= r.end;
        self.ranges[lo] = (start, end);
        self.ranges.drain(lo + 1..hi);
        !covered
    }

    /// Removes every value in `r`.
    pub(crate) fn remove(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let lo = self.ranges.partition_point(|&(_, end)| end <= r.start);
        let hi = self.ranges.partition_point(|&(start, _)| start < r.end);
        if lo >= hi {
            return;
        }
        let (first_start, _) = self.ranges[lo];
        let (_, last_end) = self.ranges[hi - 1];
        let mut keep: [(u64, u64); 2] = [(0, 0); 2];
        let mut n = 0;
        if first_start < r.start {
            keep[n] = (first_start, r.start);
            n += 1;
        }
        if last_end > r.end {
            keep[n] = (r.end, last_end);
            n += 1;
        }
        self.ranges.splice(lo..hi, keep[..n].iter().copied());
    }

    /// Removes and returns the lowest range, cut to at most `max` values.
    pub(crate) fn pop_front(&mut self, max: u64) -> Option<Range<u64>> {
        let &(start, end) = self.ranges.first()?;
        let end = end.min(start.saturating_add(max));
        self.remove(start..end);
        Some(start..end)
    }

    /// Drops the lowest ranges until at most `max` remain; returns the end of the last dropped.
    pub(crate) fn truncate_front(&mut self, max: usize) -> Option<u64> {
        if self.ranges.len() <= max {
            return None;
        }
        let n = self.ranges.len() - max;
        let end = self.ranges[n - 1].1;
        self.ranges.drain(..n);
        Some(end)
    }

    /// Heap bytes held.
    pub(crate) fn heap_size(&self) -> usize {
        self.ranges.capacity() * std::mem::size_of::<(u64, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn insert_merges_adjacent_and_overlapping() {
        let mut s = RangeSet::default();
        assert!(s.insert(5..7));
        assert!(s.insert(1..2));
        assert!(s.insert(2..3));
        assert_eq!(s.as_slice(), [(1, 3), (5, 7)]);
        assert!(!s.insert(5..6));
        assert!(s.insert(3..5));
        assert_eq!(s.as_slice(), [(1, 7)]);
        s.remove(2..4);
        assert_eq!(s.as_slice(), [(1, 2), (4, 7)]);
        assert_eq!(s.pop_front(10), Some(1..2));
        assert_eq!(s.pop_front(2), Some(4..6));
        assert_eq!(s.as_slice(), [(6, 7)]);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((any::<bool>(), 0u64..64, 0u64..8), 0..60)) {
            let mut s = RangeSet::default();
            let mut model = BTreeSet::new();
            for (add, start, len) in ops {
                if add {
                    let new = (start..start + len).any(|v| !model.contains(&v));
                    prop_assert_eq!(s.insert(start..start + len), new);
                    model.extend(start..start + len);
                } else {
                    s.remove(start..start + len);
                    for v in start..start + len { model.remove(&v); }
                }
                for w in s.as_slice().windows(2) {
                    prop_assert!(w[0].1 < w[1].0);
                }
                for v in 0..80 {
                    prop_assert_eq!(s.contains(v), model.contains(&v));
                }
            }
        }
    }
}
