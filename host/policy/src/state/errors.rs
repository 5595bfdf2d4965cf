//! Counting state errors, and logging them without flooding the log: at most
//! one line per [`LOG_INTERVAL`] and kind of error, saying how many were
//! seen since the previous line. A Redis outage at 1000 calls/s is then one
//! warning every 10 s, not 1000 a second.

use super::{StateError, StateOp};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one log line per kind of error in this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A kind of [`StateError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// [`StateError::Unavailable`]
    Unavailable,
    /// [`StateError::Timeout`]
    Timeout,
}

impl ErrorKind {
    /// Every kind, in index order.
    pub const ALL: [ErrorKind; 2] = [ErrorKind::Unavailable, ErrorKind::Timeout];

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
        }
    }
}

/// Errors by operation and kind, indexed like [`StateOp::ALL`] and [`ErrorKind::ALL`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts(pub [[u64; ErrorKind::ALL.len()]; StateOp::ALL.len()]);

impl ErrorCounts {
    /// Every (op, kind, count), zeros included (a scrape shows the series from the start).
    pub fn iter(&self) -> impl Iterator<Item = (StateOp, ErrorKind, u64)> + '_ {
        StateOp::ALL.iter().zip(&self.0).flat_map(|(&op, row)| {
            ErrorKind::ALL
                .iter()
                .zip(row)
                .map(move |(&kind, &n)| (op, kind, n))
        })
    }

    /// Errors of every operation and kind.
    pub fn total(&self) -> u64 {
        self.0.iter().flatten().sum()
    }
}

#[derive(Debug, Default)]
struct Window {
    last_line: Option<Instant>,
    /// Errors of this kind since the last line.
    since: u64,
}

/// A backend's error counters and log limiter.
#[derive(Debug)]
pub struct ErrorLog {
    backend: &'static str,
    interval: Duration,
    counts: [[AtomicU64; ErrorKind::ALL.len()]; StateOp::ALL.len()],
    windows: [Mutex<Window>; ErrorKind::ALL.len()],
}

impl ErrorLog {
    /// A log for `backend` (named in log lines), one line per [`LOG_INTERVAL`] and kind.
    pub fn new(backend: &'static str) -> Self {
        Self::with_interval(backend, LOG_INTERVAL)
    }

    /// The same with another interval (tests).
    pub fn with_interval(backend: &'static str, interval: Duration) -> Self {
        ErrorLog {
            backend,
            interval,
            counts: Default::default(),
            windows: Default::default(),
        }
    }

    /// Counts an error and logs it if its kind has not been logged for an interval.
    pub fn record(&self, op: StateOp, error: &StateError) {
        if let Some(unlogged) = self.record_at(Instant::now(), op, error) {
            tracing::warn!(
                backend = self.backend,
                op = op.as_str(),
                error = %error,
                since_last_line = unlogged + 1,
                "state call failed (one line per {} s and kind of error)",
                self.interval.as_secs()
            );
        }
    }

    /// Counts an error; `Some(n)` when a line is due, `n` being the errors
    /// of this kind left unlogged since the previous line.
    pub fn record_at(&self, now: Instant, op: StateOp, error: &StateError) -> Option<u64> {
        let kind = error.kind();
        self.counts[op as usize][kind as usize].fetch_add(1, Ordering::Relaxed);
        let mut w = self.windows[kind as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = w
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            w.since += 1;
            return None;
        }
        let suppressed = w.since;
        w.since = 0;
        w.last_line = Some(now);
        Some(suppressed)
    }

    /// A snapshot of the counters.
    pub fn counts(&self) -> ErrorCounts {
        let mut c = ErrorCounts::default();
        for (row, counts) in c.0.iter_mut().zip(&self.counts) {
            for (n, count) in row.iter_mut().zip(counts) {
                *n = count.load(Ordering::Relaxed);
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_kind_with_the_count_since_the_last() {
        let log = ErrorLog::with_interval("test", Duration::from_secs(10));
        let t0 = Instant::now();
        let down = StateError::Unavailable("refused".into());
        let slow = StateError::Timeout("50 ms".into());
        assert_eq!(log.record_at(t0, StateOp::Get, &down), Some(0));
        for i in 1..=5 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(log.record_at(at, StateOp::Increment, &down), None);
        }
        // Another kind has its own window.
        assert_eq!(
            log.record_at(t0 + Duration::from_secs(2), StateOp::Set, &slow),
            Some(0)
        );
        assert_eq!(
            log.record_at(t0 + Duration::from_secs(10), StateOp::Get, &down),
            Some(5),
            "the five errors since the first line"
        );
        let c = log.counts();
        assert_eq!(
            c.0[StateOp::Get as usize][ErrorKind::Unavailable as usize],
            2
        );
        assert_eq!(
            c.0[StateOp::Increment as usize][ErrorKind::Unavailable as usize],
            5
        );
        assert_eq!(c.0[StateOp::Set as usize][ErrorKind::Timeout as usize], 1);
        assert_eq!(c.total(), 8);
        assert_eq!(c.iter().count(), 10);
    }
}
