//! The registrar seen from both sides: the proxy core's
//! [`viaduct_proxy::Registrar`] (the `register` decision) and the policies'
//! `registrar.lookup` import, both on the binding store of
//! [`crate::registrar`].

use crate::bindings::WitTarget;
use crate::registrar::{Contact, Outcome, Registrar, Source};
use crate::state::StateError;
use std::sync::Arc;
use viaduct_proxy::{RegistrarAnswer, Registration};
use viaduct_sip::HeaderName;

/// The extensions a REGISTER may require of us (RFC 3261 §8.2.2.3).
const SUPPORTED: &[&str] = &["path"];

/// [`Registrar`] as the proxy core calls it.
#[derive(Debug)]
pub(crate) struct HostRegistrar(pub(crate) Arc<Registrar>);

impl viaduct_proxy::Registrar for HostRegistrar {
    fn register(&self, reg: &Registration<'_, '_>) -> RegistrarAnswer {
        let msg = reg.message;
        // §10.3 step 2, §8.2.2.3: a Require we do not know gets 420.
        let unsupported: Vec<String> = msg
            .values(HeaderName::Require)
            .flat_map(|(_, v)| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| t.eq_ignore_ascii_case(s)))
            .collect();
        if !unsupported.is_empty() {
            return RegistrarAnswer {
                code: 420,
                reason: "Bad Extension".into(),
                headers: vec![format!("Unsupported: {}", unsupported.join(", "))],
            };
        }
        let source = Source {
            addr: reg.source,
            transport: reg.transport.uri_param(),
            flow_route: reg.flow_route.clone(),
        };
        match self.0.register(msg, &source, unix_ms()) {
            Outcome::Ok { contacts, path } => {
                tracing::debug!(source = %reg.source, contacts = contacts.len(), "REGISTER stored");
                let mut headers: Vec<String> = contacts
                    .into_iter()
                    .map(|c| format!("Contact: {c}"))
                    .collect();
                headers.extend(path.into_iter().map(|p| format!("Path: {p}")));
                RegistrarAnswer {
                    code: 200,
                    reason: "OK".into(),
                    headers,
                }
            }
            Outcome::Reject {
                code,
                reason,
                headers,
            } => {
                tracing::info!(source = %reg.source, code, %reason, "REGISTER refused");
                RegistrarAnswer {
                    code,
                    reason,
                    headers,
                }
            }
        }
    }
}

/// The live contacts of `aor` as WIT targets, highest q first.
pub(crate) fn lookup(registrar: &Registrar, aor: &str) -> Result<Vec<WitTarget>, StateError> {
    Ok(registrar
        .lookup(aor, unix_ms())
        .map_err(|e| {
            tracing::debug!(aor, error = %e, "registrar lookup failed");
            e
        })?
        .into_iter()
        .map(target)
        .collect())
}

/// Where a binding is reached: over its Path when it has one (a REGISTER
/// that came on a connection has this instance's flow entry first, so any
/// instance reaches the UA through the one holding its connection), else at
/// the contact itself (RFC 3261 §16.5). The contact is the Request-URI.
/// A UDP UA behind NAT needs its received address instead (Kamailio's
/// `fix_nated_register`); that is not done here.
fn target(c: Contact) -> WitTarget {
    let (uri, route) = if c.path.is_empty() {
        (c.uri.clone(), Vec::new())
    } else {
        (String::new(), c.path)
    };
    WitTarget {
        uri,
        transport: None,
        timeout_ms: None,
        request_uri: Some(c.uri),
        route,
    }
}

/// Milliseconds on the clock every instance shares.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
