//! One heap of deadlines for every transaction and branch timer of a worker.
//!
//! Entries are never removed early: a handler checks whether its object still
//! wants the timer, so a stale entry costs one no-op pop.

use super::TxId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    /// A server transaction's own timers (G, H, I, J, L).
    Server(TxId),
    /// A client transaction's own timers (A, B, D, E, F, K, M).
    Client(TxId),
    /// Timer C or a per-target timeout of branch `.1` of server transaction `.0`.
    Branch(TxId, usize),
}

#[derive(Debug, Default)]
pub(super) struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl TimerHeap {
    pub(super) fn push(&mut self, at: Instant, key: TimerKey) {
        self.heap.push(Reverse((at, key)));
    }

    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    pub(super) fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, k))| k),
            _ => None,
        }
    }
}
