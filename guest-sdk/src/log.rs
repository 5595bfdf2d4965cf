//! Logging into the proxy's log, tagged with the policy name and version.
//!
//! Each level exists as a function taking a `&str` and as a macro taking
//! `format!` arguments:
//!
//! ```no_run
//! use viaduct_guest_sdk::log;
//!
//! log::info("policy ready");
//! let room = "room-42";
//! log::debug!("routing {room}");
//! ```

use crate::wit::viaduct::policy::log as raw;
use crate::wit::viaduct::policy::types::Level;

/// Logs at trace level.
pub fn trace(message: &str) {
    raw::log(Level::Trace, message)
}

/// Logs at debug level.
pub fn debug(message: &str) {
    raw::log(Level::Debug, message)
}

/// Logs at info level.
pub fn info(message: &str) {
    raw::log(Level::Info, message)
}

/// Logs at warn level.
pub fn warn(message: &str) {
    raw::log(Level::Warn, message)
}

/// Logs at error level.
pub fn error(message: &str) {
    raw::log(Level::Error, message)
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_trace {
    ($($arg:tt)*) => { $crate::log::trace(&::std::format!($($arg)*)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}
#[doc(hidden)]
#[macro_export]
macro_rules! __log_error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

/// Logs `format!` arguments at debug level.
pub use crate::__log_debug as debug;
/// Logs `format!` arguments at error level.
pub use crate::__log_error as error;
/// Logs `format!` arguments at info level.
pub use crate::__log_info as info;
/// Logs `format!` arguments at trace level.
pub use crate::__log_trace as trace;
/// Logs `format!` arguments at warn level.
pub use crate::__log_warn as warn;
