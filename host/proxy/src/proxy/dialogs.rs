//! Calls up, counted for drain and metrics: a set of Call-ID hashes, not
//! dialog state. A call is in it from the 2xx of its initial INVITE passing
//! through us until its BYE arrives (both pass here because we
//! Record-Route, RFC 3261 §16.6 step 4). Routing never reads it.
//!
//! Bounded twice: an entry older than [`DIALOG_TTL`] is forgotten (a BYE
//! that took another path, a caller that vanished), and past
//! [`MAX_DIALOGS`] per worker new calls are not tracked (counted as
//! established, not as up). 16 bytes per call up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a call counts as up without a BYE (Kamailio dialog's default_timeout is 12 h too).
pub const DIALOG_TTL: Duration = Duration::from_secs(12 * 3600);
/// Calls tracked per worker at most.
pub const MAX_DIALOGS: usize = 1 << 20;
/// How often expired entries are swept.
const SWEEP: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(super) struct LiveDialogs {
    up: HashMap<u64, Instant>,
    next_sweep: Option<Instant>,
}

impl LiveDialogs {
    pub(super) fn established(&mut self, now: Instant, call_id: &[u8]) {
        if self.up.len() < MAX_DIALOGS {
            self.up.insert(hash(call_id), now);
        }
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP);
        }
    }

    pub(super) fn ended(&mut self, call_id: &[u8]) {
        self.up.remove(&hash(call_id));
    }

    pub(super) fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| at <= now) {
            self.up
                .retain(|_, since| now.duration_since(*since) < DIALOG_TTL);
            self.next_sweep = (!self.up.is_empty()).then_some(now + SWEEP);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.up.len()
    }
}

fn hash(call_id: &[u8]) -> u64 {
    super::branch::call_id_hash(call_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bye_ends_and_ttl_forgets() {
        let t0 = Instant::now();
        let mut d = LiveDialogs::default();
        d.established(t0, b"a@h");
        d.established(t0, b"b@h");
        d.ended(b"a@h");
        assert_eq!(d.len(), 1);
        d.sweep(t0 + SWEEP);
        assert_eq!(d.len(), 1);
        d.sweep(t0 + DIALOG_TTL + SWEEP);
        assert_eq!(d.len(), 0);
    }
}
