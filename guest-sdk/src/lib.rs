//! Viaduct guest SDK: the crate policy authors will depend on.
//!
//! Placeholder until the Wasm policy issue lands: the WIT world (`wit/`) and the
//! export macro live here then. Nothing to use yet.
#![deny(missing_docs)]
