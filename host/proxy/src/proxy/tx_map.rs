//! The tables keyed by this worker's own transaction ids ([`TxId`]).
//!
//! Ids are a counter the proxy hands out, never a value from the wire, so
//! they need no keyed (HashDoS-resistant) hash: a multiply spreads them over
//! the buckets. These tables are looked up several times per message
//! (send, drain, timers); SipHash was 7% of the calls bench. The tables keyed
//! by branch parameters keep std's keyed SipHash, since their keys come from
//! the network.

use super::TxId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from our transaction ids.
pub(super) type TxMap<V> = HashMap<TxId, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of one `u64`: the top bits (which hashbrown uses for
/// its control bytes) and the low bits (its bucket index) both vary with
/// every bit of the id.
#[derive(Debug, Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; this keeps any other use correct.
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, id: u64) {
        let h = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_buckets_and_control_bytes() {
        let hash = |id: u64| {
            let mut h = IdHasher::default();
            h.write_u64(id);
            h.finish()
        };
        let low: std::collections::HashSet<u64> = (1..=1024).map(|id| hash(id) & 1023).collect();
        let top: std::collections::HashSet<u64> = (1..=1024).map(|id| hash(id) >> 57).collect();
        assert!(low.len() > 600, "{} distinct bucket indexes", low.len());
        assert_eq!(top.len(), 128, "every control byte value is used");
        let mut m: TxMap<u64> = TxMap::default();
        for id in 1..=10_000 {
            m.insert(id, id * 2);
        }
        assert!((1..=10_000).all(|id| m.get(&id) == Some(&(id * 2))));
    }
}
