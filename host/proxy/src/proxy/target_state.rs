//! Per-next-hop state, as Kamailio's `dispatcher.set_state` sets it: a next
//! hop is active (the default) or inactive (drained). An operator drains a
//! media bridge or a carrier gateway before taking it down, one at a time,
//! while the proxy keeps serving.
//!
//! What inactive means, where the proxy core picks a target:
//! * A new request's `forward` decision (the router's first one, or a new
//!   list from `on_failure`) loses its inactive targets while at least one
//!   active target is left in it; serial failover then walks what is left.
//! * When every target of a decision is inactive the caller gets
//!   `503 All Targets Inactive` with `Retry-After` (RFC 3261 §21.5.4), and the
//!   proxy counts it ([`Stats::all_targets_inactive`](super::Stats)).
//! * In-dialog requests follow their Route set and never look here, and a
//!   branch already started keeps going: that is what drain means.
//!
//! The state is one [`TargetStates`] shared by every worker (an `Arc`): the
//! admin port writes it, workers read it. Reading costs one relaxed atomic
//! load per decision while nothing is inactive; with some target inactive, a
//! read lock of a small set per decision (not per message), and each
//! target's URI parsed once more to find its address. The forward bench
//! (`benches/forward.rs`: `targets` against `targets_one_inactive`, the same
//! call with one of two targets inactive) measured, 2026-12-02 on the shared
//! machine at load average 4.5-8, medians of 3 and 5 rounds: 152.5 vs
//! 123.3 µs and 146.4 vs 130.4 µs with the counters built in, 137.4 vs
//! 138.8 µs and 129.7 vs 132.7 µs with them out; a third run (load 3.6-4.1)
//! 134.5 vs 145.2 µs (0.93) built in. The builds and runs disagree by
//! more than the filter could cost (two URI parses and a hash lookup, on the
//! order of a microsecond), so this is noise; rerun on a quiet machine.

use crate::router::Target;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// How many next hops may be inactive at once: the set is small by design,
/// and `GET /targets` and `/metrics` list every one of them.
pub const MAX_INACTIVE_TARGETS: usize = 256;

/// The state of one next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Takes new requests (the default).
    Active,
    /// Drained: skipped by new requests while another target is left.
    Inactive,
}

impl TargetState {
    /// `active` or `inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Active => "active",
            TargetState::Inactive => "inactive",
        }
    }

    /// Parses `active` or `inactive`.
    pub fn parse(s: &str) -> Option<TargetState> {
        match s {
            "active" => Some(TargetState::Active),
            "inactive" => Some(TargetState::Inactive),
            _ => None,
        }
    }
}

/// Why a state could not be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetStateError {
    /// [`MAX_INACTIVE_TARGETS`] are inactive already.
    #[error("{MAX_INACTIVE_TARGETS} targets are inactive already")]
    TooMany,
}

/// The next hops' states, shared by every worker. Only inactive ones are
/// kept: every other address is active.
#[derive(Debug, Default)]
pub struct TargetStates {
    /// True while `inactive` is not empty: the hot path's only look when nothing is drained.
    any: AtomicBool,
    inactive: RwLock<HashSet<SocketAddr>>,
}

/// A decision's targets once inactive ones are taken out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// What is left, and how many inactive targets were skipped.
    Targets(Vec<Target>, usize),
    /// Every target was inactive.
    AllInactive,
}

impl TargetStates {
    /// Sets a next hop's state; returns the state it had.
    pub fn set(
        &self,
        target: SocketAddr,
        state: TargetState,
    ) -> Result<TargetState, TargetStateError> {
        let mut set = self.inactive.write().unwrap_or_else(|p| p.into_inner());
        let was = if set.contains(&target) {
            TargetState::Inactive
        } else {
            TargetState::Active
        };
        match state {
            TargetState::Active => {
                set.remove(&target);
            }
            TargetState::Inactive if was == TargetState::Active => {
                if set.len() >= MAX_INACTIVE_TARGETS {
                    return Err(TargetStateError::TooMany);
                }
                set.insert(target);
            }
            TargetState::Inactive => {}
        }
        self.any.store(!set.is_empty(), Ordering::Relaxed);
        Ok(was)
    }

    /// A next hop's state.
    pub fn get(&self, target: SocketAddr) -> TargetState {
        if self.is_inactive(target) {
            TargetState::Inactive
        } else {
            TargetState::Active
        }
    }

    /// The inactive next hops, sorted.
    pub fn inactive(&self) -> Vec<SocketAddr> {
        let set = self.inactive.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = set.iter().copied().collect();
        list.sort();
        list
    }

    fn is_inactive(&self, target: SocketAddr) -> bool {
        self.any.load(Ordering::Relaxed)
            && self
                .inactive
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&target)
    }

    /// Takes the inactive targets out of a decision's list, unless every one
    /// is inactive. A target whose URI does not resolve stays: trying it
    /// fails the usual way (503 for that branch).
    pub(crate) fn filter(&self, targets: Vec<Target>) -> Filtered {
        if !self.any.load(Ordering::Relaxed) {
            return Filtered::Targets(targets, 0);
        }
        let set = self.inactive.read().unwrap_or_else(|p| p.into_inner());
        let inactive = |t: &Target| {
            super::next_hop::target_uri(t)
                .and_then(|u| viaduct_sip::Uri::parse(u.as_bytes()).ok())
                .and_then(|uri| super::next_hop::resolve(&uri, t.transport).ok())
                .is_some_and(|r| matches!(r, super::next_hop::Resolved::Addr(addr, _) if set.contains(&addr)))
        };
        let keep: Vec<bool> = targets.iter().map(|t| !inactive(t)).collect();
        let skipped = keep.iter().filter(|k| !**k).count();
        if skipped == 0 {
            return Filtered::Targets(targets, 0);
        }
        if skipped == targets.len() {
            return Filtered::AllInactive;
        }
        let left = targets
            .into_iter()
            .zip(keep)
            .filter_map(|(t, k)| k.then_some(t))
            .collect();
        Filtered::Targets(left, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(list: &[&str]) -> Vec<Target> {
        list.iter().map(|t| Target::new(*t)).collect()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn inactive_targets_are_skipped_unless_none_is_left() {
        let states = TargetStates::default();
        let list = targets(&["sip:127.0.0.1:5080", "sip:bob@127.0.0.2:5080;transport=tcp"]);
        assert_eq!(
            states.filter(list.clone()),
            Filtered::Targets(list.clone(), 0)
        );
        assert_eq!(
            states.set(addr("127.0.0.1:5080"), TargetState::Inactive),
            Ok(TargetState::Active)
        );
        assert_eq!(
            states.filter(list.clone()),
            Filtered::Targets(list[1..].to_vec(), 1)
        );
        // The state is per address: the TCP target at .2 is the same next hop.
        states
            .set(addr("127.0.0.2:5080"), TargetState::Inactive)
            .unwrap();
        assert_eq!(states.filter(list.clone()), Filtered::AllInactive);
        assert_eq!(
            states.inactive(),
            [addr("127.0.0.1:5080"), addr("127.0.0.2:5080")]
        );
        assert_eq!(
            states.set(addr("127.0.0.1:5080"), TargetState::Active),
            Ok(TargetState::Inactive)
        );
        assert_eq!(states.get(addr("127.0.0.1:5080")), TargetState::Active);
        assert_eq!(
            states.filter(list.clone()),
            Filtered::Targets(list[..1].to_vec(), 1)
        );
    }

    #[test]
    fn unresolvable_targets_stay_and_the_set_is_capped() {
        let states = TargetStates::default();
        states
            .set(addr("127.0.0.1:5080"), TargetState::Inactive)
            .unwrap();
        let list = targets(&["sip:127.0.0.1:5080", "sip:bridge.example.com"]);
        assert_eq!(
            states.filter(list.clone()),
            Filtered::Targets(list[1..].to_vec(), 1)
        );
        for port in 1..MAX_INACTIVE_TARGETS as u16 {
            let a = SocketAddr::from(([10, 0, 0, 1], port));
            states.set(a, TargetState::Inactive).unwrap();
        }
        let one_more = addr("10.0.0.2:5060");
        assert_eq!(
            states.set(one_more, TargetState::Inactive),
            Err(TargetStateError::TooMany)
        );
        // Setting an inactive one again or activating one still works.
        assert!(states
            .set(addr("127.0.0.1:5080"), TargetState::Inactive)
            .is_ok());
        assert!(states.set(one_more, TargetState::Active).is_ok());
    }
}
