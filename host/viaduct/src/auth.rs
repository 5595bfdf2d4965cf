//! `[auth]`: where digest credentials come from and where nonce counts are
//! kept, for the proxy core's [`Authenticator`] (see `viaduct_proxy::auth`
//! for the protocol).
//!
//! HA1s (never passwords) come from `[[auth.users]]` first, then, when
//! `auth.kv_credentials` is on, from the policy kv under
//! `auth:ha1:<md5|sha-256>:<realm>:<user>` (so a policy or an operator's
//! provisioning can add users without a restart). `viaduct ha1` prints the
//! lines for a user from a password read on stdin. Nonce counts live in a
//! moka cache shared by every worker, each entry for one nonce lifetime;
//! with `[state] backend = "redis"` they are also kept in the shared state
//! (`auth:nc:<nonce id>`, advanced by compare-and-swap), so a nonce count
//! used on one instance is refused as a replay on every other instance
//! (the nonce itself is good on all of them when they share `auth.secret`).
//! When the shared state fails, the local count still holds (fail open to
//! per-instance replay protection; the state logs and counts the failure).

use crate::config::AuthSection;
use anyhow::{bail, Result};
use moka::ops::compute::Op;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use viaduct_policy::state::State;
use viaduct_proxy::auth::{Algorithm, Authenticator, DigestStore};

/// Nonces whose counts are remembered at once; past it the oldest are
/// forgotten, which can only make a client re-authenticate (its next count
/// is still accepted), never let a replay through within the same entry.
const MAX_NONCES: u64 = 1_000_000;

/// The kv key of a user's HA1 for one algorithm.
pub fn kv_key(algorithm: Algorithm, realm: &str, user: &str) -> String {
    format!(
        "auth:ha1:{}:{realm}:{user}",
        algorithm.token().to_ascii_lowercase()
    )
}

/// Compare-and-swap attempts on a shared nonce count before a contended
/// count is refused (only a replay race contends for one nonce count).
const SHARED_COUNT_TRIES: usize = 5;

/// HA1 lookup: the config's users, then (optionally) the policy kv.
pub struct Store {
    users: HashMap<(String, String), (Option<String>, Option<String>)>,
    kv: Option<Arc<viaduct_policy::PolicyHost>>,
    counts: Cache<u128, u32>,
    /// Every instance's nonce counts, when instances share a Redis.
    shared: Option<Arc<dyn State>>,
}

impl Store {
    /// Raises the shared count of nonce `id` to `nc`; false when it is
    /// already there or past it (a replay, possibly on another instance).
    fn advance_shared(&self, state: &dyn State, id: u128, nc: u32, ttl: Duration) -> bool {
        let key = format!("auth:nc:{id:032x}").into_bytes();
        for _ in 0..SHARED_COUNT_TRIES {
            let current = match state.get(&key) {
                Ok(v) => v,
                Err(_) => return true,
            };
            let last = current
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u32>().ok());
            if last.is_some_and(|last| last >= nc) {
                return false;
            }
            match state.compare_and_swap(&key, current, nc.to_string().into_bytes(), Some(ttl)) {
                Ok(true) => return true,
                Ok(false) => continue,
                Err(_) => return true,
            }
        }
        false
    }
}

impl DigestStore for Store {
    fn ha1(&self, algorithm: Algorithm, realm: &str, user: &str) -> Option<String> {
        if let Some((md5, sha256)) = self.users.get(&(realm.to_owned(), user.to_owned())) {
            return match algorithm {
                Algorithm::Md5 => md5.clone(),
                Algorithm::Sha256 => sha256.clone(),
            };
        }
        let value = self.kv.as_ref()?.kv_get(&kv_key(algorithm, realm, user))?;
        let ha1 = String::from_utf8(value).ok()?.trim().to_ascii_lowercase();
        is_hex_digest(&ha1, algorithm).then_some(ha1)
    }

    fn advance_nonce_count(&self, id: u128, nc: u32, ttl: Duration) -> bool {
        // One atomic step per nonce: of two workers checking the same count, one wins.
        let result = self.counts.entry(id).and_compute_with(|last| match last {
            Some(e) if *e.value() >= nc => Op::Nop,
            _ => Op::Put(nc),
        });
        if matches!(result, moka::ops::compute::CompResult::Unchanged(_)) {
            return false;
        }
        match &self.shared {
            Some(state) => self.advance_shared(&**state, id, nc, ttl),
            None => true,
        }
    }
}

fn is_hex_digest(s: &str, algorithm: Algorithm) -> bool {
    let len = match algorithm {
        Algorithm::Md5 => 32,
        Algorithm::Sha256 => 64,
    };
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks `[auth]` (also used by `viaduct check`).
pub fn validate(a: &AuthSection) -> Result<()> {
    if a.nonce_lifetime_s == 0 {
        bail!("auth.nonce_lifetime_s must be at least 1");
    }
    algorithms(a)?;
    if !a.secret.is_empty() && parse_secret(&a.secret).is_none() {
        bail!("auth.secret must be 64 hex digits (32 bytes); generate one with `openssl rand -hex 32`");
    }
    for (i, u) in a.users.iter().enumerate() {
        if u.user.is_empty() || u.realm.is_empty() {
            bail!("auth.users[{i}]: user and realm are required");
        }
        if u.ha1_md5.is_empty() && u.ha1_sha256.is_empty() {
            bail!("auth.users[{i}] ({}@{}): give ha1_md5 and/or ha1_sha256 (`viaduct ha1 {} {}` prints them)", u.user, u.realm, u.user, u.realm);
        }
        if !u.ha1_md5.is_empty() && !is_hex_digest(&u.ha1_md5.to_ascii_lowercase(), Algorithm::Md5)
        {
            bail!(
                "auth.users[{i}] ({}@{}): ha1_md5 must be 32 hex digits",
                u.user,
                u.realm
            );
        }
        if !u.ha1_sha256.is_empty()
            && !is_hex_digest(&u.ha1_sha256.to_ascii_lowercase(), Algorithm::Sha256)
        {
            bail!(
                "auth.users[{i}] ({}@{}): ha1_sha256 must be 64 hex digits",
                u.user,
                u.realm
            );
        }
    }
    Ok(())
}

fn algorithms(a: &AuthSection) -> Result<Vec<Algorithm>> {
    let mut out = Vec::new();
    for name in &a.algorithms {
        match Algorithm::from_token(name) {
            Some(alg) if !out.contains(&alg) => out.push(alg),
            Some(_) => bail!("auth.algorithms: {name:?} is listed twice"),
            None => bail!("auth.algorithms: {name:?} is not \"SHA-256\" or \"MD5\""),
        }
    }
    if out.is_empty() {
        bail!("auth.algorithms is empty: offer \"SHA-256\", \"MD5\" or both");
    }
    Ok(out)
}

fn parse_secret(s: &str) -> Option<[u8; 32]> {
    viaduct_proxy::auth::digest::from_hex(s.trim())
}

/// The authenticator for `[auth]`, or `None` when it is off.
/// `shared_counts`: keep nonce counts in the policy host's state too (when
/// it is a Redis other instances share).
pub fn authenticator(
    a: &AuthSection,
    kv: Option<Arc<viaduct_policy::PolicyHost>>,
    shared_counts: bool,
) -> Result<Option<Arc<Authenticator>>> {
    if !a.enabled {
        return Ok(None);
    }
    validate(a)?;
    let secret = match parse_secret(&a.secret) {
        Some(s) => s,
        // Nonces from before a restart then come back stale: clients re-authenticate once.
        None => std::array::from_fn(|_| rand::random()),
    };
    let lifetime = Duration::from_secs(a.nonce_lifetime_s);
    let users = a
        .users
        .iter()
        .map(|u| {
            let hash = |h: &str| (!h.is_empty()).then(|| h.to_ascii_lowercase());
            (
                (u.realm.clone(), u.user.clone()),
                (hash(&u.ha1_md5), hash(&u.ha1_sha256)),
            )
        })
        .collect();
    let shared = kv
        .as_ref()
        .filter(|_| shared_counts)
        .map(|host| host.state());
    let store = Store {
        users,
        shared,
        kv: if a.kv_credentials { kv } else { None },
        counts: Cache::builder()
            .max_capacity(MAX_NONCES)
            .time_to_live(lifetime + Duration::from_secs(5))
            .build(),
    };
    tracing::info!(
        users = a.users.len(),
        kv = a.kv_credentials,
        lifetime_s = a.nonce_lifetime_s,
        shared_secret = !a.secret.is_empty(),
        shared_nonce_counts = shared_counts,
        "digest authentication on"
    );
    let offered = algorithms(a)?;
    Ok(Some(Arc::new(
        Authenticator::new(secret, lifetime, Arc::new(store)).with_algorithms(offered),
    )))
}

/// `viaduct ha1 USER REALM`: reads a password from stdin, prints the config lines.
pub fn print_ha1(user: &str, realm: &str) -> Result<()> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("no password on stdin (e.g. `read -rs pw && printf '%s\\n' \"$pw\" | viaduct ha1 {user} {realm}`)");
    }
    println!("[[auth.users]]");
    println!("user = {user:?}");
    println!("realm = {realm:?}");
    println!("ha1_md5 = {:?}", Algorithm::Md5.ha1(user, realm, password));
    println!(
        "ha1_sha256 = {:?}",
        Algorithm::Sha256.ha1(user, realm, password)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store {
            users: HashMap::new(),
            kv: None,
            counts: Cache::new(100),
            shared: None,
        }
    }

    /// Two instances on one shared state: a count used on either is a
    /// replay on both; a state that fails leaves each instance's own
    /// replay check.
    #[test]
    fn nonce_counts_are_shared_between_instances() {
        let state: Arc<dyn State> = Arc::new(viaduct_policy::state::MemoryState::default());
        let on = |state: &Arc<dyn State>| Store {
            shared: Some(state.clone()),
            ..store()
        };
        let (a, b) = (on(&state), on(&state));
        let ttl = Duration::from_secs(60);
        assert!(a.advance_nonce_count(7, 1, ttl));
        assert!(!b.advance_nonce_count(7, 1, ttl), "replayed on B");
        assert!(b.advance_nonce_count(7, 2, ttl));
        assert!(!a.advance_nonce_count(7, 2, ttl), "replayed on A");
        assert!(a.advance_nonce_count(8, 1, ttl), "another nonce");

        let down: Arc<dyn State> = Arc::new(viaduct_policy::state::Down(
            viaduct_policy::state::StateError::Unavailable("test".into()),
        ));
        let c = on(&down);
        assert!(
            c.advance_nonce_count(7, 1, ttl),
            "fails open to the local check"
        );
        assert!(
            !c.advance_nonce_count(7, 1, ttl),
            "which still refuses a replay"
        );
    }

    #[test]
    fn nonce_counts_only_grow() {
        let s = store();
        assert!(s.advance_nonce_count(1, 1, Duration::from_secs(1)));
        assert!(!s.advance_nonce_count(1, 1, Duration::from_secs(1)));
        assert!(s.advance_nonce_count(1, 3, Duration::from_secs(1)));
        assert!(!s.advance_nonce_count(1, 2, Duration::from_secs(1)));
        assert!(s.advance_nonce_count(2, 1, Duration::from_secs(1)));
    }

    #[test]
    fn config_is_checked() {
        let mut a = AuthSection {
            enabled: true,
            ..Default::default()
        };
        assert!(validate(&a).is_ok());
        a.secret = "abc".into();
        assert!(validate(&a).unwrap_err().to_string().contains("64 hex"));
        a.secret = "ab".repeat(32);
        a.users.push(crate::config::AuthUser {
            user: "alice".into(),
            realm: "r".into(),
            ..Default::default()
        });
        assert!(validate(&a)
            .unwrap_err()
            .to_string()
            .contains("viaduct ha1 alice r"));
        a.users[0].ha1_md5 = Algorithm::Md5.ha1("alice", "r", "pw");
        assert!(validate(&a).is_ok());
        a.users[0].ha1_sha256 = "xyz".into();
        assert!(validate(&a).is_err());
        a.users[0].ha1_sha256.clear();
        a.algorithms = vec!["MD5".into(), "SHA-512".into()];
        assert!(validate(&a).unwrap_err().to_string().contains("SHA-512"));
        a.algorithms.clear();
        assert!(validate(&a).is_err());
    }
}
