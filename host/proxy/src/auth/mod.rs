//! Digest authentication by the proxy (RFC 3261 §22.3, RFC 7616, RFC 8760).
//!
//! A policy asks for it: it reads
//! [`RouteRequest::auth_check`](crate::RouteRequest) (through the WIT
//! `authenticated-user`) and answers `challenge(realm)` when that is not a
//! user. The host then replies itself:
//!
//! | credentials for the realm | answer |
//! |---|---|
//! | none | 407, one `Proxy-Authenticate` per algorithm, SHA-256 first |
//! | right digest, nonce expired, foreign (another instance's secret, a restart) or nonce count replayed | 407 with `stale=true` |
//! | unknown user, or a response that does not match | 403 |
//! | unparsable, `uri` not the Request-URI, unsupported algorithm or qop | 400 with the reason |
//!
//! Nonces are stateless ([`nonce`]): issue time, randomness and an HMAC
//! over both and the realm, so any instance sharing the secret verifies them
//! and they expire on their own. The only state is the highest nonce count
//! seen per nonce (RFC 7616 §3.4: a count that does not grow is a replay),
//! kept by the [`DigestStore`] for one nonce lifetime; a response without
//! `qop` (RFC 2069 form) has no count, so its nonce may be used once.
//!
//! This module is sans-IO: time comes in as Unix seconds, randomness as a
//! `u64`, and credentials and counts from the store the binary provides.

pub mod digest;
pub mod nonce;

pub use digest::{Algorithm, Credentials};

use nonce::NonceState;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use viaduct_sip::{HeaderName, Message};

/// Where HA1s and nonce counts live (in memory, config or a shared store).
pub trait DigestStore: Send + Sync {
    /// HA1 = H(user:realm:password), lowercase hex, for this algorithm; `None`
    /// for an unknown user (or one without a hash for this algorithm).
    fn ha1(&self, algorithm: Algorithm, realm: &str, user: &str) -> Option<String>;

    /// Records nonce count `nc` for the nonce `id`, remembered for `ttl`.
    /// False when a count at least as high was already recorded (a replay).
    /// Must be atomic: two workers checking the same count may not both win.
    fn advance_nonce_count(&self, id: u128, nc: u32, ttl: Duration) -> bool;
}

/// What the credentials of a request say for one realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthCheck {
    /// No Digest credentials for this realm.
    Missing,
    /// The digest is right and the nonce fresh: this user sent it.
    Valid {
        /// The user name.
        user: String,
        /// The algorithm used.
        algorithm: Algorithm,
    },
    /// The digest is right, but the nonce is expired, not ours or replayed:
    /// challenge again with `stale=true` (RFC 7616 §3.3).
    Stale {
        /// The nonce count did not grow (or a `qop`-less nonce was reused).
        replay: bool,
    },
    /// Unknown user or wrong password.
    Wrong {
        /// The user name the credentials named.
        user: String,
    },
    /// Credentials that cannot be checked; the reason goes in the 400.
    Malformed(&'static str),
}

impl AuthCheck {
    /// The user, when valid.
    pub fn user(&self) -> Option<&str> {
        match self {
            AuthCheck::Valid { user, .. } => Some(user),
            _ => None,
        }
    }
}

/// Checks credentials and writes challenges. One per process, shared by every worker.
pub struct Authenticator {
    secret: [u8; 32],
    lifetime: Duration,
    store: Arc<dyn DigestStore>,
    offered: Vec<Algorithm>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("Authenticator")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `secret` keys the nonce HMAC (share it between instances that must
    /// accept each other's nonces); `lifetime` is how long a nonce is good.
    pub fn new(secret: [u8; 32], lifetime: Duration, store: Arc<dyn DigestStore>) -> Self {
        Authenticator {
            secret,
            lifetime,
            store,
            offered: Algorithm::OFFERED.to_vec(),
        }
    }

    /// Offers these algorithms, in this order, instead of SHA-256 then MD5.
    /// Some clients answer the *first* challenge whatever its algorithm (SIPp
    /// 3.6.1 then fails on SHA-256), so deployments with MD5-only phones put
    /// MD5 first or alone. Credentials with an algorithm not offered get 400.
    /// An empty list keeps the default.
    pub fn with_algorithms(mut self, offered: Vec<Algorithm>) -> Self {
        if !offered.is_empty() {
            self.offered = offered;
        }
        self
    }

    /// The `Proxy-Authenticate` header lines of a 407 for `realm`, one per
    /// offered algorithm, by default SHA-256 first (RFC 8760 §2.4: most
    /// preferred first), sharing one fresh nonce.
    pub fn challenge(&self, realm: &str, stale: bool, now_secs: u64, random: u64) -> Vec<String> {
        self.challenge_in("Proxy-Authenticate", realm, stale, now_secs, random)
    }

    /// [`Authenticator::challenge`] in `header` lines: `WWW-Authenticate`
    /// for a registrar's 401 (see [`Challenge::of`]).
    pub fn challenge_in(
        &self,
        header: &str,
        realm: &str,
        stale: bool,
        now_secs: u64,
        random: u64,
    ) -> Vec<String> {
        let nonce = nonce::issue(&self.secret, realm, now_secs, random);
        let realm = quote(realm);
        self.offered
            .iter()
            .map(|a| {
                format!(
                    "{header}: Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
                    a.token(),
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }

    /// [`Authenticator::check`] at most once per request and realm: `checked`
    /// keeps the last answer (checking records the nonce count, so a second
    /// check of the same credentials would read as a replay).
    pub fn check_once<'c>(
        &self,
        msg: &Message<'_>,
        realm: &str,
        checked: &'c mut Option<(String, AuthCheck)>,
    ) -> &'c AuthCheck {
        if checked.as_ref().is_none_or(|(r, _)| r != realm) {
            *checked = Some((realm.to_owned(), self.check(msg, realm, unix_now())));
        }
        match checked {
            Some((_, c)) => c,
            None => &AuthCheck::Missing,
        }
    }

    /// Checks the request's `Proxy-Authorization` for `realm` at `now_secs`.
    /// A valid answer records its nonce count, so call this once per request.
    pub fn check(&self, msg: &Message<'_>, realm: &str, now_secs: u64) -> AuthCheck {
        let Some(c) = find_credentials(msg, realm) else {
            return AuthCheck::Missing;
        };
        let c = match c {
            Ok(c) => c,
            Err(why) => return AuthCheck::Malformed(why),
        };
        if c.username.is_empty() || c.nonce.is_empty() || c.response.is_empty() {
            return AuthCheck::Malformed("Digest credentials lack username, nonce or response");
        }
        let algorithm = match c.algorithm.as_deref() {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::from_token(a) {
                Some(a) => a,
                None => return AuthCheck::Malformed("Unsupported Digest Algorithm"),
            },
        };
        if !self.offered.contains(&algorithm) {
            return AuthCheck::Malformed("Digest Algorithm Not Offered");
        }
        let nc = match (&c.qop, &c.nc, &c.cnonce) {
            (None, _, _) => None,
            (Some(q), Some(nc), Some(_)) if q.eq_ignore_ascii_case("auth") => {
                match (nc.len() == 8)
                    .then(|| u32::from_str_radix(nc, 16).ok())
                    .flatten()
                {
                    Some(n) => Some(n),
                    None => return AuthCheck::Malformed("Digest nc is not 8 hex digits"),
                }
            }
            (Some(q), _, _) if !q.eq_ignore_ascii_case("auth") => {
                return AuthCheck::Malformed("Unsupported Digest qop")
            }
            _ => return AuthCheck::Malformed("Digest qop=auth without nc or cnonce"),
        };
        if !msg.request_uri().is_some_and(|r| same_resource(&c.uri, &r)) {
            return AuthCheck::Malformed("Digest uri does not match the Request-URI");
        }
        let method = msg.method().map(|m| m.as_str()).unwrap_or_default();
        let good = self
            .store
            .ha1(algorithm, realm, &c.username)
            .map(|ha1| c.expected_response(algorithm, &ha1, method))
            .is_some_and(|want| {
                digest::constant_time_eq(
                    want.as_bytes(),
                    c.response.to_ascii_lowercase().as_bytes(),
                )
            });
        if !good {
            return AuthCheck::Wrong { user: c.username };
        }
        // Only now the nonce: a stale answer tells the client its password was right.
        let lifetime = self.lifetime.as_secs();
        let id = match nonce::check(&self.secret, realm, &c.nonce, now_secs, lifetime) {
            NonceState::Fresh { id } => id,
            NonceState::Expired | NonceState::Foreign => return AuthCheck::Stale { replay: false },
        };
        // A qop-less response has no count: its nonce is good once (u32::MAX
        // leaves no count above it).
        let count = nc.unwrap_or(u32::MAX);
        if count == 0 || !self.store.advance_nonce_count(id, count, self.lifetime) {
            return AuthCheck::Stale { replay: true };
        }
        AuthCheck::Valid {
            user: c.username,
            algorithm,
        }
    }
}

/// Seconds since the Unix epoch: nonces carry wall-clock time so that every
/// instance reads them the same way.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The credentials for `realm` among the request's `Proxy-Authorization`
/// lines (a request may carry one per realm it was challenged for).
fn find_credentials(msg: &Message<'_>, realm: &str) -> Option<Result<Credentials, &'static str>> {
    let bytes = msg.bytes();
    let mut broken = false;
    let how = Challenge::of(msg);
    let wanted = how.credentials.as_bytes();
    for h in msg.headers() {
        if h.name != HeaderName::Other || !bytes[h.name_span.clone()].eq_ignore_ascii_case(wanted) {
            continue;
        }
        let Ok(value) = std::str::from_utf8(&bytes[h.value_span.clone()]) else {
            broken = true;
            continue;
        };
        match Credentials::parse(value) {
            Some(c) if c.realm == realm => return Some(Ok(c)),
            Some(_) => {}
            None => broken = true,
        }
    }
    broken.then_some(Err(how.malformed))
}

/// How a request is challenged and where it answers. A REGISTER is
/// answered by this host as the registrar, which challenges with 401 and
/// `WWW-Authenticate`, so the UA answers in `Authorization` (RFC 3261
/// §22.2, §10.3 step 6); everything else is challenged as a proxy: 407,
/// `Proxy-Authenticate`, `Proxy-Authorization` (§22.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    /// 401 or 407.
    pub code: u16,
    /// The header the challenge goes in.
    pub header: &'static str,
    /// The header the credentials come back in.
    pub credentials: &'static str,
    /// The 400 reason for credentials in it that cannot be read.
    pub malformed: &'static str,
}

impl Challenge {
    /// The challenge for `msg`.
    pub fn of(msg: &Message<'_>) -> Challenge {
        if msg.method() == Some(viaduct_sip::Method::Register) {
            Challenge {
                code: 401,
                header: "WWW-Authenticate",
                credentials: "Authorization",
                malformed: "Malformed Authorization",
            }
        } else {
            Challenge {
                code: 407,
                header: "Proxy-Authenticate",
                credentials: "Proxy-Authorization",
                malformed: "Malformed Proxy-Authorization",
            }
        }
    }
}

/// RFC 7616 §3.4.6: the digest-uri must name the Request-URI. The same
/// string always does; so does a URI with the same host and port, because
/// some clients hash the Request-URI without its user part (SIPp 3.6.1 sends
/// `uri="sip:HOST:PORT"` for `INVITE sip:room-1@HOST:PORT`). The response
/// still binds the request to that host, and the nonce count to one use.
fn same_resource(digest_uri: &str, request_uri: &viaduct_sip::Uri<'_>) -> bool {
    if digest_uri == request_uri.raw {
        return true;
    }
    viaduct_sip::Uri::parse(digest_uri.as_bytes()).is_ok_and(|d| {
        d.scheme == request_uri.scheme
            && d.host.eq_ignore_ascii_case(request_uri.host)
            && d.port == request_uri.port
    })
}

/// Escapes `"` and `\` for a quoted-string.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests;
