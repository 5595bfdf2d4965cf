//! The registrar's binding store (RFC 3261 §10.3, RFC 3327 Path) over the
//! shared [`State`], so every instance sharing a Redis sees every binding.
//!
//! * [`Registrar::register`] applies a REGISTER the policy accepted to the
//!   bindings of its address-of-record and says what to answer: a 200 with
//!   every current binding, or a refusal.
//! * [`Registrar::lookup`] gives the live bindings of an address-of-record,
//!   best first, for a policy's `lookup` import.
//! * [`canonical_aor`] is the key both meet on.
//!
//! Sans-IO in time: both take `now_ms` (milliseconds on a clock every
//! instance shares, such as Unix time) and never read a clock.
//!
//! # Storage
//! One key per AOR, `reg:<canonical AOR>`, holding every binding as JSON
//! with a format version. Its TTL is the longest remaining binding plus
//! [`TTL_MARGIN`], so an abandoned AOR leaves the state by itself; expired
//! bindings are filtered out on every read and dropped on every write, so
//! correctness never rests on the backend's expiry. A write is a
//! `compare_and_swap` against the bytes read, retried up to [`CAS_TRIES`]
//! times, so two instances registering contacts of one AOR at once both
//! land; every binding change of one REGISTER commits together or not at
//! all (§10.3: "if and only if all binding updates and additions succeed").
//!
//! # Decisions
//! * **Path order.** RFC 3327 §4: each proxy on the way to the registrar
//!   adds its Path value on top, so the top value is the proxy nearest to
//!   the registrar, and the stored Path is used as a Route set as-is, top
//!   first. When the REGISTER came over a connection ([`Source::flow_route`]),
//!   that connection is the hop nearest to us: a request for this AOR
//!   handled on another instance must first reach the instance holding the
//!   connection, which then sends it down that connection to the nearest
//!   Path proxy (or the UA itself). So the flow route is stored *first*,
//!   then the received Path values: `[flow, P_near_registrar, …, P_near_UA]`.
//!   The 200 echoes only the received Path values (the flow route is ours),
//!   and only to a UA that sent `Supported: path` (RFC 3327 §5.3).
//! * **sips.** Folded into `sip:` in the AOR (see [`canonical_aor`]).
//! * **Call-ID and CSeq** (§10.3 steps 6-7): a binding whose stored Call-ID
//!   is the request's and whose stored CSeq is higher than the request's
//!   makes the whole request fail, nothing committed: `500 Out-of-Order
//!   REGISTER` ("the update MUST be aborted and the request fails"; 500 is
//!   §10.3's code for a failed update). A different Call-ID always updates.
//!   The *same* Call-ID and CSeq as a stored binding is the REGISTER that
//!   wrote it, retransmitted (the host answers REGISTER without a server
//!   transaction): nothing changes and it gets the current bindings, as a
//!   transaction layer would have answered it.
//! * **Codes.** 400 naming the bad header; 423 with `Min-Expires` for a
//!   non-zero interval below the minimum (one above the maximum is
//!   shortened); 403 `Too Many Registered Contacts` when a REGISTER would
//!   add bindings beyond [`RegistrarSettings::max_contacts`] (retrying will
//!   not help, so not 503, which also stays distinct from an outage); 503
//!   with `Retry-After: 5` when the state fails or stays contended, as
//!   [`OnError::Closed`](crate::state::OnError::Closed) answers, and when
//!   the AOR's record is in a newer format (written by a later version
//!   sharing the state: never overwritten by one that cannot read it).
//! * **q** is kept in thousandths; a binding without one sorts as `q=1`.
//!
//! Not here: the Request-URI domain check, `Require`, authentication and
//! authorisation (§10.3 steps 1-4: the policy and host decide before calling
//! [`Registrar::register`]), building the response (the caller adds To tag,
//! Date and so on), GRUU and outbound (`+sip.instance`, `reg-id`).

mod aor;
mod request;
#[cfg(test)]
mod tests;

pub use aor::canonical_aor;

use crate::state::{State, StateError};
use aor::same_contact;
use request::{Asked, RegisterRequest};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use viaduct_sip::Message;

/// Compare-and-swap attempts before a REGISTER gives up with 503.
pub const CAS_TRIES: usize = 5;
/// Kept past the last binding's expiry, so a slow clock on another
/// instance does not lose a binding that instance still counts as live.
pub const TTL_MARGIN: Duration = Duration::from_secs(10);
/// The stored format; bump when it changes incompatibly.
const FORMAT: u32 = 1;

/// Limits on what a REGISTER may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarSettings {
    /// A shorter non-zero interval gets 423 Interval Too Brief (seconds).
    pub min_expires: u32,
    /// A longer interval is shortened to this (seconds).
    pub max_expires: u32,
    /// The interval when neither the Contact nor the request says (seconds).
    pub default_expires: u32,
    /// Bindings one AOR may hold.
    pub max_contacts: usize,
}

impl Default for RegistrarSettings {
    fn default() -> Self {
        RegistrarSettings {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// Where the REGISTER came from, as the transport saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The peer's address (where responses and requests for NATed contacts go).
    pub addr: SocketAddr,
    /// `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub transport: &'static str,
    /// A Route value naming this instance and the connection the REGISTER
    /// came on (`<sip:ft-…@10.0.0.1:5060;lr>`), set by the host for stream
    /// and WebSocket transports; stored first in the binding's path.
    pub flow_route: Option<String>,
}

/// What to answer a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200 OK.
    Ok {
        /// One Contact header value per current binding, best first:
        /// `<uri>;expires=N` (and `;q=` when the binding has one).
        contacts: Vec<String>,
        /// Path header values to echo (RFC 3327 §5.3); empty when the UA did
        /// not send `Supported: path`.
        path: Vec<String>,
    },
    /// A refusal.
    Reject {
        /// The status code.
        code: u16,
        /// The reason phrase, naming the problem.
        reason: String,
        /// Whole header lines to add, e.g. `Min-Expires: 60`.
        headers: Vec<String>,
    },
}

impl Outcome {
    fn reject(code: u16, reason: &str, headers: Vec<String>) -> Outcome {
        Outcome::Reject {
            code,
            reason: reason.to_owned(),
            headers,
        }
    }

    fn unavailable() -> Outcome {
        Outcome::reject(503, "Service Unavailable", vec!["Retry-After: 5".into()])
    }
}

/// A live binding, as a lookup returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// The contact URI as registered (no header parameters).
    pub uri: String,
    /// The `q` preference in thousandths (`q=0.5` is 500), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<u16>,
    /// When the binding lapses, on the caller's clock (ms).
    pub expires_at_ms: u64,
    /// Where the REGISTER came from: send here when the contact is behind NAT.
    pub received: SocketAddr,
    /// The transport it came on (`udp`, `tcp`, `tls`, `ws`, `wss`).
    pub transport: String,
    /// Route values to reach the contact, top first (see the module doc).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
}

/// A stored binding: the contact and what §10.3 step 7 compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Binding {
    contact: Contact,
    call_id: String,
    cseq: u32,
    /// When it was last registered, to put the newest first among equals.
    updated_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    v: u32,
    bindings: Vec<Binding>,
}

/// The registrar over a shared state.
#[derive(Debug, Clone)]
pub struct Registrar {
    state: Arc<dyn State>,
    settings: RegistrarSettings,
}

impl Registrar {
    /// A registrar keeping its bindings in `state`.
    pub fn new(state: Arc<dyn State>, settings: RegistrarSettings) -> Self {
        Registrar { state, settings }
    }

    /// The limits in force.
    pub fn settings(&self) -> &RegistrarSettings {
        &self.settings
    }

    /// Applies a REGISTER (RFC 3261 §10.3 steps 5-8) the policy has already
    /// accepted, at `now_ms`.
    pub fn register(&self, msg: &Message<'_>, source: &Source, now_ms: u64) -> Outcome {
        let req = match RegisterRequest::read(msg, &self.settings) {
            Ok(req) => req,
            Err(refusal) => return refusal,
        };
        let key = key(&req.aor);
        for _ in 0..CAS_TRIES {
            let old = match self.state.get(&key) {
                Ok(old) => old,
                Err(e) => return state_failed(&req.aor, &e),
            };
            let Some(before) = decode(old.as_deref(), now_ms) else {
                // Written by a newer instance: do not overwrite what we cannot read.
                return Outcome::unavailable();
            };
            let live_before = before.len();
            let after = match apply(&req, source, before, now_ms) {
                Ok(after) => after,
                Err(refusal) => return refusal,
            };
            if after.len() > self.settings.max_contacts && after.len() > live_before {
                return Outcome::reject(403, "Too Many Registered Contacts", Vec::new());
            }
            let write = match (&req.contacts, &old) {
                // A query changes nothing; nor does removing from nothing.
                (Asked::Query, _) => false,
                (_, None) => !after.is_empty(),
                _ => true,
            };
            if write {
                let (value, ttl) = encode(&after, now_ms);
                match self.state.compare_and_swap(&key, old, value, Some(ttl)) {
                    Ok(true) => {}
                    // Another instance wrote this AOR since we read it.
                    Ok(false) => continue,
                    Err(e) => return state_failed(&req.aor, &e),
                }
            }
            let path = if req.supports_path {
                req.path
            } else {
                Vec::new()
            };
            return Outcome::Ok {
                contacts: best_first(after)
                    .iter()
                    .map(|c| contact_value(c, now_ms))
                    .collect(),
                path,
            };
        }
        tracing::warn!(aor = %req.aor, tries = CAS_TRIES, "registrar: REGISTER lost every compare-and-swap");
        Outcome::unavailable()
    }

    /// The live bindings of an AOR (any URI form: it is canonicalised),
    /// highest `q` first, the most recently registered first among equals.
    /// A URI that is not `sip:`/`sips:` has none.
    pub fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Contact>, StateError> {
        let Some(aor) = canonical_aor(aor) else {
            return Ok(Vec::new());
        };
        let stored = self.state.get(&key(&aor))?;
        Ok(best_first(
            decode(stored.as_deref(), now_ms).unwrap_or_default(),
        ))
    }
}

/// §10.3 steps 6-7 on the live bindings: the bindings to store, or the
/// refusal that aborts the whole request.
fn apply(
    req: &RegisterRequest,
    source: &Source,
    mut bindings: Vec<Binding>,
    now_ms: u64,
) -> Result<Vec<Binding>, Outcome> {
    // The REGISTER that wrote a binding, again: a retransmission (the host
    // answers REGISTER without a transaction, so a UDP retransmission whose
    // 200 was lost arrives here). It changes nothing and gets the bindings.
    if bindings
        .iter()
        .any(|b| b.call_id == req.call_id && b.cseq == req.cseq)
    {
        return Ok(bindings);
    }
    let stale = |b: &Binding| b.call_id == req.call_id && req.cseq < b.cseq;
    let out_of_order = || Outcome::reject(500, "Out-of-Order REGISTER", Vec::new());
    let asked = match &req.contacts {
        Asked::Query => return Ok(bindings),
        Asked::RemoveAll if bindings.iter().any(stale) => return Err(out_of_order()),
        Asked::RemoveAll => return Ok(Vec::new()),
        Asked::Bindings(asked) => asked,
    };
    let path: Vec<String> = source.flow_route.iter().chain(&req.path).cloned().collect();
    // Bindings this request already wrote: a Contact listed twice is not
    // out of order against itself, the later value wins.
    let mut touched = vec![false; bindings.len()];
    for a in asked {
        let binding = Binding {
            contact: Contact {
                uri: a.uri.clone(),
                q: a.q,
                // Zero: lapses now, so the filter below removes it.
                expires_at_ms: now_ms.saturating_add(u64::from(a.expires) * 1000),
                received: source.addr,
                transport: source.transport.to_owned(),
                path: path.clone(),
            },
            call_id: req.call_id.clone(),
            cseq: req.cseq,
            updated_ms: now_ms,
        };
        match bindings
            .iter()
            .position(|b| same_contact(&b.contact.uri, &a.uri))
        {
            Some(i) if !touched[i] && stale(&bindings[i]) => return Err(out_of_order()),
            Some(i) => {
                bindings[i] = binding;
                touched[i] = true;
            }
            None => {
                bindings.push(binding);
                touched.push(true);
            }
        }
    }
    bindings.retain(|b| b.contact.expires_at_ms > now_ms);
    Ok(bindings)
}

fn key(aor: &str) -> Vec<u8> {
    format!("reg:{aor}").into_bytes()
}

/// The live bindings in a stored value. A value that does not parse counts
/// as no bindings (the next REGISTER replaces it); one in a newer format
/// (an instance of a later version sharing the state) is `None`.
fn decode(stored: Option<&[u8]>, now_ms: u64) -> Option<Vec<Binding>> {
    let Some(bytes) = stored else {
        return Some(Vec::new());
    };
    match serde_json::from_slice::<Record>(bytes) {
        Ok(record) if record.v == FORMAT => {
            let mut bindings = record.bindings;
            bindings.retain(|b| b.contact.expires_at_ms > now_ms);
            Some(bindings)
        }
        Ok(Record { v, .. }) => other_format(v),
        Err(e) => {
            // A later format may change more than the fields: ask its version alone.
            #[derive(Deserialize)]
            struct Version {
                v: u32,
            }
            match serde_json::from_slice::<Version>(bytes) {
                Ok(Version { v }) if v != FORMAT => other_format(v),
                _ => {
                    tracing::warn!(error = %e, "registrar: unreadable stored bindings");
                    Some(Vec::new())
                }
            }
        }
    }
}

fn other_format(version: u32) -> Option<Vec<Binding>> {
    tracing::warn!(
        version,
        "registrar: stored bindings in a format this version cannot read"
    );
    None
}

/// The value to store and its TTL: the longest remaining binding plus the margin.
fn encode(bindings: &[Binding], now_ms: u64) -> (Vec<u8>, Duration) {
    let record = Record {
        v: FORMAT,
        bindings: bindings.to_vec(),
    };
    // Strings, numbers and addresses only: serialising cannot fail.
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let longest_ms = bindings
        .iter()
        .map(|b| b.contact.expires_at_ms.saturating_sub(now_ms))
        .max()
        .unwrap_or(0);
    (value, Duration::from_millis(longest_ms) + TTL_MARGIN)
}

/// Highest q first (none counts as 1), then the most recently registered.
fn best_first(mut bindings: Vec<Binding>) -> Vec<Contact> {
    bindings.sort_by(|a, b| {
        let q = |x: &Binding| x.contact.q.unwrap_or(1000);
        q(b).cmp(&q(a)).then(b.updated_ms.cmp(&a.updated_ms))
    });
    bindings.into_iter().map(|b| b.contact).collect()
}

/// `<uri>;q=0.5;expires=N` with N the remaining whole seconds, rounded up.
fn contact_value(c: &Contact, now_ms: u64) -> String {
    let remaining = c.expires_at_ms.saturating_sub(now_ms).div_ceil(1000);
    match c.q {
        Some(q) => format!("<{}>;q={};expires={remaining}", c.uri, format_q(q)),
        None => format!("<{}>;expires={remaining}", c.uri),
    }
}

/// Thousandths as a qvalue: 1000 → `1`, 500 → `0.5`, 5 → `0.005`.
fn format_q(q: u16) -> String {
    if q >= 1000 {
        return "1".into();
    }
    let frac = format!("{q:03}");
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        "0".into()
    } else {
        format!("0.{frac}")
    }
}

fn state_failed(aor: &str, e: &StateError) -> Outcome {
    // The backend counts and rate-limits its own error logs.
    tracing::debug!(%aor, error = %e, "registrar: state failed");
    Outcome::unavailable()
}
