//! The policy's part of `/metrics`: calls by policy, version and outcome,
//! their duration, reloads by result, and which version serves.

use crate::metrics::Fmt;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering;
use viaduct_policy::{CallOutcome, PolicyHost, DURATION_BUCKETS};

/// Encodes the policy families.
pub fn encode(e: &mut DescriptorEncoder, host: &PolicyHost) -> Fmt {
    let name = host.name();
    let calls = host.calls();
    {
        let mut m = e.encode_descriptor(
            "viaduct_policy_calls",
            "Policy calls (on-request and on-failure) by policy, version and outcome",
            None,
            MetricType::Counter,
        )?;
        for v in &calls {
            let version = v.version.to_string();
            for (o, n) in CallOutcome::ALL.iter().zip(&v.outcomes) {
                let labels = [
                    ("policy", name.as_str()),
                    ("version", version.as_str()),
                    ("outcome", o.as_str()),
                ];
                ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
    }
    {
        let mut m = e.encode_descriptor(
            "viaduct_policy_call_duration_seconds",
            "Policy call duration, including building the request handle",
            None,
            MetricType::Histogram,
        )?;
        for v in &calls {
            let version = v.version.to_string();
            let labels = [("policy", name.as_str()), ("version", version.as_str())];
            let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(v.buckets.iter().copied())
                .collect();
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                v.sum_seconds,
                v.count(),
                &buckets,
                None,
            )?;
        }
    }
    {
        let mut m = e.encode_descriptor(
            "viaduct_policy_reloads",
            "Policy loads by result (the first load counts as ok)",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("ok", host.stats.reloads_ok.load(Ordering::Relaxed)),
            ("failed", host.stats.reloads_failed.load(Ordering::Relaxed)),
        ] {
            ConstCounter::new(n).encode(m.encode_family(&[("result", result)])?)?;
        }
    }
    if let Some(v) = host.current() {
        let mut m = e.encode_descriptor(
            "viaduct_policy_info",
            "The policy version serving new requests (value 1)",
            None,
            MetricType::Gauge,
        )?;
        let version = v.id.to_string();
        let labels = [
            ("policy", name.as_str()),
            ("version", version.as_str()),
            ("hash", v.hash.as_str()),
        ];
        ConstGauge::new(1).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}
