//! The registrar seen from both sides: the proxy core's
//! [`viaduct_proxy::Registrar`] (the `register` decision) and the policies'
//! `registrar.lookup` import, both on the shared state.

use crate::bindings::WitTarget;
use crate::state::{State, StateError};

/// The live contacts of `aor` as WIT targets, highest q first.
pub(crate) fn lookup(_kv: &dyn State, _aor: &str) -> Result<Vec<WitTarget>, StateError> {
    Ok(Vec::new())
}
