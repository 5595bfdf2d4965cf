//! Prometheus metrics for `GET /metrics`.
//!
//! Counting happens where the work is, with no lock and no shared atomic per
//! message: each worker's sans-IO `Proxy` keeps plain `u64`s in its
//! [`Stats`], and the worker copies them into its own [`WorkerSlot`] when it
//! goes idle or at most every [`PUBLISH_EVERY`] while busy (one uncontended
//! mutex per publish, not per message). Policy calls are counted per worker
//! too (`viaduct_policy::WorkerCalls`). A scrape sums the slots.
//!
//! Crate: `prometheus-client`, the Prometheus project's own Rust client. Its
//! [`Collector`] trait encodes values we already hold at scrape time, so the
//! hot path uses none of its types; label sets are typed, and it writes the
//! Prometheus text format (0.0.4) that every scraper reads. The `metrics`
//! facade was the other candidate: a global recorder whose counters are
//! shared atomics behind a key lookup, and its exporter brings an HTTP server
//! we do not need next to the admin port.
//!
//! Names follow the Prometheus conventions (`_total` counters, base units,
//! `viaduct_` prefix) and map onto what a Kamailio operator scrapes from
//! xhttp_prom: `kamailio_core_rcv_requests_invite` is
//! `viaduct_requests_received_total{method="INVITE"}`,
//! `kamailio_sl_200_replies` is in `viaduct_responses_sent_total{class="2xx"}`,
//! `kamailio_tmx_active_transactions` is `viaduct_transactions`, pike's blocked
//! sources are `viaduct_flood_banned_sources` and their messages
//! `viaduct_messages_dropped_total{reason="flood_banned"}`. Every
//! label value comes from a fixed enum or a capped set (next hops: at most
//! `viaduct_proxy::MAX_TARGETS` per worker, the rest as `target="other"`),
//! so the series count stays bounded whatever the traffic. The README's
//! "Operating Viaduct" section lists them all.

use crate::ops::Ops;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use viaduct_proxy::{AuthResult, DropReason, ForwardOutcome, Proxy, Stats, StatusClass, METHODS};

/// How stale a busy worker's published counters may get.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// What one worker last published.
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    /// The proxy's counters.
    pub stats: Stats,
    /// Server and client transactions alive.
    pub transactions: (usize, usize),
    /// Requests forwarded without a final answer yet.
    pub pending: usize,
    /// Calls up.
    pub dialogs: usize,
}

/// One worker's published counters; written by that worker only.
#[derive(Debug, Default)]
pub struct WorkerSlot(Mutex<WorkerSnapshot>);

impl WorkerSlot {
    /// A copy of the last snapshot.
    pub fn get(&self) -> WorkerSnapshot {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The worker side: publishes into its slot when idle or every [`PUBLISH_EVERY`].
pub struct Publisher {
    slot: Arc<WorkerSlot>,
    last: Instant,
}

impl Publisher {
    /// The publisher of worker `index`.
    pub fn new(slots: &[Arc<WorkerSlot>], index: usize) -> Self {
        Publisher {
            slot: slots.get(index).cloned().unwrap_or_default(),
            last: Instant::now(),
        }
    }

    /// Called once per worker loop turn; `busy` when more work is waiting.
    pub fn publish(&mut self, proxy: &Proxy, busy: bool) {
        let now = Instant::now();
        if busy && now.duration_since(self.last) < PUBLISH_EVERY {
            return;
        }
        self.last = now;
        let snapshot = WorkerSnapshot {
            stats: proxy.stats().clone(),
            transactions: proxy.transactions(),
            pending: proxy.pending_requests(),
            dialogs: proxy.live_dialogs(),
        };
        *self.slot.0.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }
}

/// The sum over workers.
pub fn totals(slots: &[Arc<WorkerSlot>]) -> WorkerSnapshot {
    let mut t = WorkerSnapshot::default();
    for s in slots {
        let s = s.get();
        t.stats.merge(&s.stats);
        t.transactions.0 += s.transactions.0;
        t.transactions.1 += s.transactions.1;
        t.pending += s.pending;
        t.dialogs += s.dialogs;
    }
    t
}

/// The registry behind `/metrics`.
pub fn registry(ops: Arc<Ops>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(ProxyCollector(ops)));
    r
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
struct ProxyCollector(Arc<Ops>);

pub(crate) type Fmt = Result<(), std::fmt::Error>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Fmt {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Fmt {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// One counter family with one label: `(label value, count)` pairs.
fn counters<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) -> Fmt {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        ConstCounter::new(n).encode(m.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

impl Collector for ProxyCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
        let ops = &self.0;
        let t = totals(&ops.slots);
        let s = &t.stats;
        let health = ops.readiness();
        gauge(
            &mut e,
            "viaduct_available",
            "1 while /health/ready answers 200 (policy loaded, not draining, not overloaded)",
            i64::from(health.is_ready()),
        )?;
        gauge(
            &mut e,
            "viaduct_draining",
            "1 while draining (new dialogs get 503)",
            i64::from(ops.is_draining()),
        )?;
        {
            let mut m = e.encode_descriptor(
                "viaduct_build_info",
                "The running version",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1)
                .encode(m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        }
        {
            let mut m = e.encode_descriptor(
                "viaduct_instance_info",
                "This instance's id ([server] instance_id), to tell instances of a cluster apart",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1)
                .encode(m.encode_family(&[("instance_id", ops.instance_id.as_str())])?)?;
        }
        gauge(
            &mut e,
            "viaduct_start_time_seconds",
            "Process start, seconds since the Unix epoch",
            ops.started_unix() as i64,
        )?;
        counters(
            &mut e,
            "viaduct_requests_received",
            "Requests received (parsed), by method",
            "method",
            METHODS.iter().zip(&s.requests).map(|(m, n)| (*m, *n)),
        )?;
        counters(
            &mut e,
            "viaduct_responses_received",
            "Responses received (parsed), by status class",
            "class",
            StatusClass::ALL
                .iter()
                .map(|c| (c.as_str(), s.received_of(*c))),
        )?;
        counters(
            &mut e,
            "viaduct_responses_sent",
            "Responses sent, forwarded or generated (first transmissions), by status class",
            "class",
            StatusClass::ALL.iter().map(|c| (c.as_str(), s.sent_of(*c))),
        )?;
        counters(
            &mut e,
            "viaduct_retransmissions",
            "Retransmissions: received = request copies absorbed by a server transaction; sent = our Timer A/E/G copies",
            "direction",
            [
                ("received", s.retransmissions_received),
                ("sent", s.retransmissions_sent),
            ]
            .into_iter(),
        )?;
        let flood = ops.flood.snapshot();
        let queue_full = ops
            .dispatcher
            .overflow
            .load(std::sync::atomic::Ordering::Relaxed);
        counters(
            &mut e,
            "viaduct_messages_dropped",
            "Received messages not processed, by reason",
            "reason",
            DropReason::ALL
                .iter()
                .map(|r| {
                    let mut n = s.dropped_of(*r);
                    if *r == DropReason::QueueFull {
                        n += queue_full;
                    }
                    (r.as_str(), n)
                })
                // The flood guard's reasons (flood_banned, too_big,
                // too_many_headers) sit in the same family: one place to
                // look for every message that was not processed.
                .chain(flood.drops.iter().map(|(r, n)| (r.as_str(), *n))),
        )?;
        gauge(
            &mut e,
            "viaduct_flood_banned_sources",
            "Source IPs banned by the flood guard right now (Kamailio pike's blocked IPs)",
            flood.banned_sources as i64,
        )?;
        counter(
            &mut e,
            "viaduct_flood_bans",
            "Bans the flood guard started",
            flood.bans,
        )?;
        {
            let mut m = e.encode_descriptor(
                "viaduct_transactions",
                "Transactions alive (RFC 3261 §17), by kind",
                None,
                MetricType::Gauge,
            )?;
            for (kind, n) in [("server", t.transactions.0), ("client", t.transactions.1)] {
                ConstGauge::new(n as i64).encode(m.encode_family(&[("kind", kind)])?)?;
            }
        }
        gauge(
            &mut e,
            "viaduct_requests_pending",
            "Requests forwarded that have no final response yet",
            t.pending as i64,
        )?;
        gauge(
            &mut e,
            "viaduct_dialogs",
            "Calls up: 2xx to an initial INVITE seen, BYE not yet",
            t.dialogs as i64,
        )?;
        counter(
            &mut e,
            "viaduct_dialogs_established",
            "Calls established through this proxy (2xx to an initial INVITE)",
            s.dialogs_established,
        )?;
        counters(
            &mut e,
            "viaduct_auth",
            "Digest authentication results (ok, challenged, stale, replay, forbidden, bad_request)",
            "result",
            AuthResult::ALL.iter().map(|r| (r.as_str(), s.auth_of(*r))),
        )?;
        counter(
            &mut e,
            "viaduct_drain_rejected",
            "New requests answered 503 while draining",
            s.drain_rejected,
        )?;
        if let Some(c) = &ops.connections {
            use std::sync::atomic::Ordering::Relaxed;
            gauge(
                &mut e,
                "viaduct_connections",
                "Open connections (TCP, TLS, WS, WSS; inbound and outbound)",
                c.open() as i64,
            )?;
            counter(
                &mut e,
                "viaduct_connections_opened",
                "Connections accepted or opened",
                c.counters.opened.load(Relaxed),
            )?;
            let k = &c.counters;
            counters(
                &mut e,
                "viaduct_connections_failed",
                "Connections refused or closed by the proxy: refused (over max_connections or max_connections_per_ip), handshake (TLS or WebSocket), framing (bad or oversized message), idle",
                "reason",
                [
                    ("refused", k.refused.load(Relaxed)),
                    ("handshake", k.handshake_failed.load(Relaxed)),
                    ("framing", k.framing_errors.load(Relaxed)),
                    ("idle", k.idle_closed.load(Relaxed)),
                ]
                .into_iter(),
            )?;
        }
        counter(
            &mut e,
            "viaduct_branch_timeouts",
            "Forwarded branches that timed out (Timer B/F/C)",
            s.branch_timeouts,
        )?;
        {
            let mut m = e.encode_descriptor(
                "viaduct_forwards",
                "Forwarded branches by next hop and how they ended (targets past the cap are summed as \"other\")",
                None,
                MetricType::Counter,
            )?;
            let targets = s
                .targets
                .targets
                .iter()
                .map(|(a, c)| (a.to_string(), c))
                .chain(std::iter::once(("other".to_owned(), &s.targets.other)));
            for (target, counts) in targets {
                for o in ForwardOutcome::ALL {
                    let n = counts[Stats::outcome_index(o)];
                    if n == 0 {
                        continue;
                    }
                    let labels = [("target", target.as_str()), ("outcome", o.as_str())];
                    ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = e.encode_descriptor(
                "viaduct_target_active",
                "1 for an active next hop, 0 for an inactive (drained) one: the next hops forwarded to and every inactive one",
                None,
                MetricType::Gauge,
            )?;
            let inactive = ops.targets.inactive();
            let seen = s.targets.targets.iter().map(|(a, _)| *a);
            let unseen = inactive
                .iter()
                .copied()
                .filter(|a| !s.targets.targets.iter().any(|(t, _)| t == a));
            for target in seen.chain(unseen) {
                let active = i64::from(!inactive.contains(&target));
                let name = target.to_string();
                ConstGauge::new(active).encode(m.encode_family(&[("target", name.as_str())])?)?;
            }
        }
        counter(
            &mut e,
            "viaduct_targets_skipped",
            "Inactive next hops taken out of forward decisions (another target was left)",
            s.targets_skipped,
        )?;
        counter(
            &mut e,
            "viaduct_all_targets_inactive",
            "Requests answered 503 because every target of the decision was inactive",
            s.all_targets_inactive,
        )?;
        gauge(
            &mut e,
            "viaduct_worker_queue_max_length",
            "Messages waiting in the fullest worker queue",
            ops.dispatcher.longest_queue() as i64,
        )?;
        if let Some(reloader) = &ops.reloader {
            crate::metrics_policy::encode(&mut e, &reloader.host)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from a set of worker snapshots, rendered as a scraper sees them.
    #[test]
    fn renders_summed_workers_with_bounded_labels() {
        let ops = Ops::for_tests(2);
        let mut a = WorkerSnapshot::default();
        a.stats.requests[0] = 3;
        a.stats.responses_sent[1] = 2;
        a.transactions = (4, 1);
        let mut b = a.clone();
        b.stats.requests[14] = 1;
        b.dialogs = 2;
        *ops.slots[0].0.lock().unwrap() = a;
        *ops.slots[1].0.lock().unwrap() = b;
        let text = render(&registry(ops.clone()));
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has("viaduct_requests_received_total{method=\"INVITE\"} 6"),
            "{text}"
        );
        assert!(has("viaduct_requests_received_total{method=\"other\"} 1"));
        assert!(has("viaduct_requests_received_total{method=\"BYE\"} 0"));
        assert!(has("viaduct_responses_sent_total{class=\"2xx\"} 4"));
        assert!(has("viaduct_transactions{kind=\"server\"} 8"));
        assert!(has("viaduct_dialogs 2"));
        assert!(has("viaduct_available 1"));
        assert!(has(
            "viaduct_messages_dropped_total{reason=\"flood_banned\"} 0"
        ));
        assert!(has(
            "viaduct_messages_dropped_total{reason=\"parse_error\"} 0"
        ));
        assert!(has("# TYPE viaduct_requests_received_total counter"));
        // Every sample line is `name{labels} value` with a number.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap_or("");
            assert!(v.parse::<f64>().is_ok(), "bad sample {l:?}");
        }
        ops.targets
            .set(
                "127.0.0.1:5080".parse().unwrap(),
                viaduct_proxy::TargetState::Inactive,
            )
            .unwrap();
        let text = render(&registry(ops.clone()));
        assert!(
            text.lines()
                .any(|l| l == "viaduct_target_active{target=\"127.0.0.1:5080\"} 0"),
            "{text}"
        );
        assert!(text
            .lines()
            .any(|l| l == "viaduct_all_targets_inactive_total 0"));
        ops.set_draining();
        let text = render(&registry(ops));
        assert!(text.lines().any(|l| l == "viaduct_available 0"), "{text}");
        assert!(text.lines().any(|l| l == "viaduct_draining 1"));
        assert!(
            text.lines()
                .any(|l| l == "viaduct_instance_info{instance_id=\"test-1\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn publisher_copies_when_idle() {
        let slots = vec![Arc::new(WorkerSlot::default())];
        let mut p = Publisher::new(&slots, 0);
        let config = viaduct_proxy::ProxyConfig {
            listeners: vec![viaduct_proxy::Listener {
                transport: viaduct_proxy::Transport::Udp,
                addr: "127.0.0.1:5060".parse().unwrap(),
            }],
            timers: Default::default(),
            timer_c: Duration::from_secs(180),
            record_route: true,
        };
        let mut proxy = Proxy::new(
            config,
            Box::new(viaduct_proxy::StaticRouter::new(Vec::new())),
        );
        // Garbage from the network: counted as a parse_error drop.
        proxy.handle_incoming(
            Instant::now(),
            viaduct_proxy::Incoming {
                data: bytes::Bytes::from_static(b"\x00\x01 not sip\r\n\r\n"),
                source: "127.0.0.1:5070".parse().unwrap(),
                transport: viaduct_proxy::Transport::Udp,
                flow: None,
            },
        );
        p.publish(&proxy, true);
        assert_eq!(slots[0].get().stats.dropped_of(DropReason::ParseError), 0);
        p.publish(&proxy, false);
        assert_eq!(slots[0].get().stats.dropped_of(DropReason::ParseError), 1);
    }
}
