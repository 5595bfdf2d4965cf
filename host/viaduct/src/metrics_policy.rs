//! The policy's part of `/metrics`: calls by policy, version and outcome,
//! their duration, reloads by result, which version serves, and the failed
//! calls of its state (`kv`) by operation and kind.

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
    {
        let mut m = e.encode_descriptor(
            "viaduct_state_errors",
            "Failed state (policy kv) calls by operation and kind (unavailable, timeout)",
            None,
            MetricType::Counter,
        )?;
        for (op, kind, n) in host.state_errors().iter() {
            let labels = [("op", op.as_str()), ("kind", kind.as_str())];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use std::sync::Arc;
    use std::time::Duration;
    use viaduct_policy::state::{
        ErrorCounts, ErrorKind, MemoryState, OnError, State, StateError, StateOp,
    };

    /// The in-memory state, claiming three increment timeouts.
    #[derive(Debug, Default)]
    struct Flaky(MemoryState);

    impl State for Flaky {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            self.0.get(key)
        }
        fn set(&self, key: &[u8], value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StateError> {
            self.0.set(key, value, ttl)
        }
        fn increment(
            &self,
            key: &[u8],
            delta: i64,
            ttl: Option<Duration>,
        ) -> Result<i64, StateError> {
            self.0.increment(key, delta, ttl)
        }
        fn compare_and_swap(
            &self,
            key: &[u8],
            expected: Option<Vec<u8>>,
            new: Vec<u8>,
            ttl: Option<Duration>,
        ) -> Result<bool, StateError> {
            self.0.compare_and_swap(key, expected, new, ttl)
        }
        fn delete(&self, key: &[u8]) -> Result<(), StateError> {
            self.0.delete(key)
        }
        fn errors(&self) -> ErrorCounts {
            let mut c = ErrorCounts::default();
            c.0[StateOp::Increment as usize][ErrorKind::Timeout as usize] = 3;
            c
        }
    }

    #[derive(Debug)]
    struct Policy(Arc<PolicyHost>);

    impl Collector for Policy {
        fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
            encode(&mut e, &self.0)
        }
    }

    #[test]
    fn state_errors_by_op_and_kind() {
        let settings = viaduct_policy::PolicySettings {
            file: "unused.wasm".into(),
            config: vec![],
            deadline: Duration::from_millis(5),
            init_deadline: Duration::from_secs(1),
            memory_limit: 1 << 20,
            fail_action: viaduct_policy::FailAction::Reject,
            cache_dir: None,
        };
        let host = PolicyHost::with_state(settings, Arc::new(Flaky::default()), OnError::Open)
            .expect("engine");
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Policy(host)));
        let text = crate::metrics::render(&registry);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("# TYPE viaduct_state_errors_total counter"), "{text}");
        assert!(
            has("viaduct_state_errors_total{op=\"increment\",kind=\"timeout\"} 3"),
            "{text}"
        );
        assert!(
            has("viaduct_state_errors_total{op=\"get\",kind=\"unavailable\"} 0"),
            "{text}"
        );
        let series = text
            .lines()
            .filter(|l| l.starts_with("viaduct_state_errors_total"))
            .count();
        assert_eq!(series, 10, "5 operations x 2 kinds, bounded");
    }
}
