//! Counters exported with the proxy's metrics, as
//! `viaduct_policy_<name>_total{label="value",...}`.

use crate::wit::viaduct::policy::metrics as raw;

/// Adds `value` to the counter `name` with these labels. Keep label values
/// bounded (a method or a bridge index, never a Call-ID).
///
/// ```no_run
/// viaduct_guest_sdk::metrics::counter("rejected", &[("reason", "rate")], 1);
/// ```
pub fn counter(name: &str, labels: &[(&str, &str)], value: u64) {
    let labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    raw::counter_add(name, &labels, value)
}
