//! Stateless nonces (RFC 7616 §3.3 leaves the format to the server): the
//! issue time, 8 random bytes and an HMAC-SHA256 over both and the realm, in
//! hex. Any instance holding the secret can check one without having seen it
//! issued, and a nonce cannot be moved to another realm or made younger.

use super::digest::{constant_time_eq, from_hex, to_hex};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const TIME: usize = 8;
const RANDOM: usize = 8;
const MAC: usize = 16;
/// Hex characters in a nonce.
pub const NONCE_LEN: usize = 2 * (TIME + RANDOM + MAC);

/// What a received nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Ours, and younger than the lifetime; `id` is its time and random part.
    Fresh {
        /// The first 16 bytes, unique per issued nonce: the key for nonce counts.
        id: u128,
    },
    /// Ours but past its lifetime.
    Expired,
    /// Not ours: a forged value, another realm, or a secret we no longer hold (restart).
    Foreign,
}

fn mac(secret: &[u8; 32], head: &[u8], realm: &str) -> [u8; MAC] {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0; MAC],
    };
    m.update(head);
    m.update(realm.as_bytes());
    let full = m.finalize().into_bytes();
    let mut out = [0; MAC];
    out.copy_from_slice(&full[..MAC]);
    out
}

/// A nonce for `realm`, issued at `now_secs` (Unix time).
pub fn issue(secret: &[u8; 32], realm: &str, now_secs: u64, random: u64) -> String {
    let mut raw = [0u8; TIME + RANDOM + MAC];
    raw[..TIME].copy_from_slice(&now_secs.to_be_bytes());
    raw[TIME..TIME + RANDOM].copy_from_slice(&random.to_be_bytes());
    let tag = mac(secret, &raw[..TIME + RANDOM], realm);
    raw[TIME + RANDOM..].copy_from_slice(&tag);
    to_hex(&raw)
}

/// Checks a nonce received in credentials for `realm`.
pub fn check(
    secret: &[u8; 32],
    realm: &str,
    nonce: &str,
    now_secs: u64,
    lifetime_secs: u64,
) -> NonceState {
    let Some(raw) = from_hex::<{ TIME + RANDOM + MAC }>(nonce) else {
        return NonceState::Foreign;
    };
    let tag = mac(secret, &raw[..TIME + RANDOM], realm);
    if !constant_time_eq(&tag, &raw[TIME + RANDOM..]) {
        return NonceState::Foreign;
    }
    let mut time = [0u8; TIME];
    time.copy_from_slice(&raw[..TIME]);
    let issued = u64::from_be_bytes(time);
    // A nonce from the future (clock stepped back) counts as expired too.
    if issued > now_secs || now_secs - issued > lifetime_secs {
        return NonceState::Expired;
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&raw[..TIME + RANDOM]);
    NonceState::Fresh {
        id: u128::from_be_bytes(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_nonce_is_fresh_until_its_lifetime_ends() {
        let n = issue(&KEY, "viaduct", 1000, 42);
        assert_eq!(n.len(), NONCE_LEN);
        assert!(matches!(
            check(&KEY, "viaduct", &n, 1000, 300),
            NonceState::Fresh { .. }
        ));
        assert!(matches!(
            check(&KEY, "viaduct", &n, 1300, 300),
            NonceState::Fresh { .. }
        ));
        assert_eq!(check(&KEY, "viaduct", &n, 1301, 300), NonceState::Expired);
        assert_eq!(check(&KEY, "viaduct", &n, 999, 300), NonceState::Expired);
    }

    #[test]
    fn forged_moved_or_foreign_nonces_are_refused() {
        let n = issue(&KEY, "viaduct", 1000, 42);
        assert_eq!(check(&KEY, "other", &n, 1000, 300), NonceState::Foreign);
        assert_eq!(
            check(&[8; 32], "viaduct", &n, 1000, 300),
            NonceState::Foreign
        );
        // Making it younger breaks the MAC.
        let younger = issue(&KEY, "viaduct", 2000, 42);
        let forged = format!("{}{}", &younger[..16], &n[16..]);
        assert_eq!(
            check(&KEY, "viaduct", &forged, 2000, 300),
            NonceState::Foreign
        );
        assert_eq!(
            check(&KEY, "viaduct", "abc", 1000, 300),
            NonceState::Foreign
        );
        assert_eq!(
            check(&KEY, "viaduct", &"zz".repeat(32), 1000, 300),
            NonceState::Foreign
        );
    }

    #[test]
    fn each_issue_has_its_own_id() {
        let a = check(&KEY, "r", &issue(&KEY, "r", 5, 1), 5, 300);
        let b = check(&KEY, "r", &issue(&KEY, "r", 5, 2), 5, 300);
        assert_ne!(a, b);
    }
}
