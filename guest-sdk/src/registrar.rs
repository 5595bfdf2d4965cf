//! The bindings stored by [`Decision::register`](crate::Decision::register),
//! shared by every instance that shares the state.
//!
//! ```no_run
//! use viaduct_guest_sdk::{registrar, Decision, Request};
//!
//! fn to_user(req: &Request) -> Decision {
//!     match registrar::lookup(&req.request_uri()) {
//!         Ok(contacts) if !contacts.is_empty() => Decision::fork(contacts),
//!         Ok(_) => Decision::reject(404, "Not Found"),
//!         Err(_) => Decision::reject(503, "Service Unavailable").with_header("Retry-After", "5"),
//!     }
//! }
//! # let _ = to_user;
//! ```

use crate::decision::Target;
use crate::kv::KvError;
use crate::wit::viaduct::policy::registrar as raw;

/// The live contacts of an address-of-record, highest q-value first, as
/// targets for [`Decision::fork`](crate::Decision::fork) (ring all) or
/// [`Decision::forward_targets`](crate::Decision::forward_targets) (one
/// after the other). The AOR is matched in canonical form (scheme, user,
/// host), so a Request-URI with a port or parameters finds the bindings of
/// the plain AOR. Each target carries the contact as its Request-URI and
/// the registered Path as its Route.
pub fn lookup(aor: &str) -> Result<Vec<Target>, KvError> {
    raw::lookup(aor)
        .map(|t| t.into_iter().map(Target::from_raw).collect())
        .map_err(Into::into)
}
