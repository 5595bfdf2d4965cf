//! Sans-IO SIP transaction layer and stateful proxy core.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod transaction;
