//! Policy call counters, per worker: each [`PolicyRouter`](crate::PolicyRouter)
//! owns one [`WorkerCalls`] and is the only writer of it, so a call costs a
//! few `Relaxed` adds on a cache line no other worker writes (the scrape reads
//! it now and then). [`PolicyHost::calls`](crate::PolicyHost::calls) sums them.
//!
//! Labels stay bounded: the outcome is a fixed enum, durations fall in fixed
//! buckets, and versions take one of [`VERSION_SLOTS`] slots (a worker keeps
//! that many versions loaded at most; a newer version reuses the slot of the
//! one it replaces, which ends that version's series).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Versions counted per worker at once.
pub const VERSION_SLOTS: usize = 4;

/// Upper bounds of the call duration histogram, in seconds: 5 µs (a
/// policy that reads a header) to 25 ms (past the default 5 ms deadline).
pub const DURATION_BUCKETS: [f64; 12] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025,
];

/// How one policy call ended: the decision it returned, or how it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// `forward`
    Forward,
    /// `reject`
    Reject,
    /// `redirect`
    Redirect,
    /// `relay`
    Relay,
    /// `drop`
    Drop,
    /// `continue`
    Continue,
    /// `challenge`
    Challenge,
    /// `register`
    Register,
    /// A trap, memory exhaustion or a failed instantiation: the fail action applied.
    Error,
    /// The epoch deadline passed: the fail action applied.
    Timeout,
    /// A `kv` call failed under `on_error = "closed"`: 503 with Retry-After.
    StateUnavailable,
}

impl CallOutcome {
    /// Every outcome, in index order.
    pub const ALL: [CallOutcome; 11] = [
        CallOutcome::Forward,
        CallOutcome::Reject,
        CallOutcome::Redirect,
        CallOutcome::Relay,
        CallOutcome::Drop,
        CallOutcome::Continue,
        CallOutcome::Challenge,
        CallOutcome::Register,
        CallOutcome::Error,
        CallOutcome::Timeout,
        CallOutcome::StateUnavailable,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Forward => "forward",
            CallOutcome::Reject => "reject",
            CallOutcome::Redirect => "redirect",
            CallOutcome::Relay => "relay",
            CallOutcome::Drop => "drop",
            CallOutcome::Continue => "continue",
            CallOutcome::Challenge => "challenge",
            CallOutcome::Register => "register",
            CallOutcome::Error => "error",
            CallOutcome::Timeout => "timeout",
            CallOutcome::StateUnavailable => "state_unavailable",
        }
    }

    /// True for the calls that failed (the fail action, or 503 for the state).
    pub fn failed(self) -> bool {
        matches!(
            self,
            CallOutcome::Error | CallOutcome::Timeout | CallOutcome::StateUnavailable
        )
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// 0 = unused.
    version: AtomicU64,
    outcomes: [AtomicU64; CallOutcome::ALL.len()],
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; 13],
    sum_ns: AtomicU64,
}

/// One worker's policy call counters.
#[derive(Debug, Default)]
pub struct WorkerCalls {
    slots: [Slot; VERSION_SLOTS],
}

impl WorkerCalls {
    /// Counts one call of `version`.
    pub fn record(&self, version: u64, outcome: CallOutcome, elapsed: Duration) {
        let slot = &self.slots[(version % VERSION_SLOTS as u64) as usize];
        if slot.version.load(Ordering::Relaxed) != version {
            // A newer version takes the slot: its series start from zero.
            for c in slot.outcomes.iter().chain(&slot.buckets) {
                c.store(0, Ordering::Relaxed);
            }
            slot.sum_ns.store(0, Ordering::Relaxed);
            slot.version.store(version, Ordering::Relaxed);
        }
        slot.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let b = DURATION_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        slot.buckets[b].fetch_add(1, Ordering::Relaxed);
        slot.sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn add_to(&self, totals: &mut Vec<VersionCalls>) {
        for slot in &self.slots {
            let version = slot.version.load(Ordering::Relaxed);
            if version == 0 {
                continue;
            }
            let t = match totals.iter_mut().position(|t| t.version == version) {
                Some(i) => &mut totals[i],
                None => {
                    totals.push(VersionCalls {
                        version,
                        ..Default::default()
                    });
                    let last = totals.len() - 1;
                    &mut totals[last]
                }
            };
            for (t, c) in t.outcomes.iter_mut().zip(&slot.outcomes) {
                *t += c.load(Ordering::Relaxed);
            }
            for (t, c) in t.buckets.iter_mut().zip(&slot.buckets) {
                *t += c.load(Ordering::Relaxed);
            }
            t.sum_seconds += slot.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        }
    }
}

/// Calls of one version, summed over workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionCalls {
    /// The version id.
    pub version: u64,
    /// Counts indexed like [`CallOutcome::ALL`].
    pub outcomes: [u64; CallOutcome::ALL.len()],
    /// Counts per duration bucket (not cumulative; the last is +Inf).
    pub buckets: [u64; 13],
    /// Sum of call durations.
    pub sum_seconds: f64,
}

impl VersionCalls {
    /// Calls made.
    pub fn count(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    /// Calls that failed (a trap, the deadline, or the state under `on_error = "closed"`).
    pub fn failures(&self) -> u64 {
        CallOutcome::ALL
            .iter()
            .zip(&self.outcomes)
            .filter(|(o, _)| o.failed())
            .map(|(_, n)| n)
            .sum()
    }
}

/// Sums the workers' counters by version, oldest version first.
pub(crate) fn totals(workers: &[std::sync::Arc<WorkerCalls>]) -> Vec<VersionCalls> {
    let mut totals = Vec::new();
    for w in workers {
        w.add_to(&mut totals);
    }
    totals.sort_by_key(|t| t.version);
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sums_by_version_and_buckets_durations() {
        let a = Arc::new(WorkerCalls::default());
        let b = Arc::new(WorkerCalls::default());
        a.record(1, CallOutcome::Forward, Duration::from_micros(3));
        b.record(1, CallOutcome::Timeout, Duration::from_millis(30));
        b.record(2, CallOutcome::Reject, Duration::from_micros(40));
        let t = totals(&[a.clone(), b]);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].version, t[0].count(), t[0].failures()), (1, 2, 1));
        assert_eq!(t[0].buckets[0], 1, "3 µs is in the 5 µs bucket");
        assert_eq!(t[0].buckets[12], 1, "30 ms is past the last bucket");
        assert_eq!(t[1].buckets[3], 1, "40 µs is in the 50 µs bucket");
        // Version 5 takes version 1's slot: version 1's series on that worker end.
        a.record(5, CallOutcome::Relay, Duration::from_micros(1));
        let t = totals(&[a]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].version, 5);
        assert_eq!(t[0].outcomes[CallOutcome::Relay as usize], 1);
    }
}
