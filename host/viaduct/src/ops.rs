//! What an operator can see and steer: readiness, drain, the next hops'
//! states (per-target drain), the workers' published counters. Shared by
//! the admin port, `/metrics` and the signal handlers.
//!
//! Ready means: the policy is loaded (or none is configured: the built-in
//! router needs nothing), not draining, and not overloaded. Overloaded means
//! the workers are not keeping up, concretely either of
//! * a worker's queue (datagrams handed over from another worker's socket, TCP
//!   messages) holds at least [`OVERLOAD_QUEUE_LENGTH`] messages now, or
//! * a message was dropped because a worker queue was full in the last
//!   [`OVERLOAD_HOLD`].
//!
//! `/health/ready` answers 503 when not loaded or draining (take me out of
//! rotation) and 429 when overloaded (send less), as LiveKit SIP's health
//! port does.

use crate::flood::FloodCounters;
use crate::metrics::{totals, WorkerSlot};
use crate::reload::Reloader;
use crate::worker::{Dispatcher, WorkerStatus};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use viaduct_proxy::TargetStates;

/// Messages waiting in one worker queue (it holds 8192) that count as overloaded.
pub const OVERLOAD_QUEUE_LENGTH: usize = 4096;
/// How long a queue-full drop keeps the proxy reported as overloaded.
pub const OVERLOAD_HOLD: Duration = Duration::from_secs(10);

/// Why the proxy is or is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Taking new dialogs.
    Ready,
    /// A policy is configured but none is loaded.
    NoPolicy,
    /// Draining: new dialogs get 503.
    Draining,
    /// Not keeping up (see the module docs).
    Overloaded(String),
}

impl Readiness {
    /// True for [`Readiness::Ready`].
    pub fn is_ready(&self) -> bool {
        *self == Readiness::Ready
    }

    /// The `/health/ready` status code.
    pub fn http_status(&self) -> u16 {
        match self {
            Readiness::Ready => 200,
            Readiness::Overloaded(_) => 429,
            Readiness::NoPolicy | Readiness::Draining => 503,
        }
    }

    /// A short line for humans.
    pub fn describe(&self) -> String {
        match self {
            Readiness::Ready => "ready".into(),
            Readiness::NoPolicy => "no policy loaded".into(),
            Readiness::Draining => "draining".into(),
            Readiness::Overloaded(why) => format!("overloaded: {why}"),
        }
    }
}

/// The operational state of the running proxy.
pub struct Ops {
    /// The drain flag and per-worker pending counts.
    pub status: Arc<WorkerStatus>,
    /// Each worker's published counters.
    pub slots: Vec<Arc<WorkerSlot>>,
    /// The worker queues (and their queue-full drop count).
    pub dispatcher: Arc<Dispatcher>,
    /// The policy, when one is configured.
    pub reloader: Option<Arc<Reloader>>,
    /// The TLS certificates, when a listener or next hop uses TLS.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Open connections and why others were refused or closed.
    pub connections: Option<Arc<crate::transport::Connections>>,
    /// The flood guards' drop counters (shared by every worker's guard).
    pub flood: Arc<FloodCounters>,
    /// The next hops' states, shared with every worker's proxy core.
    pub targets: Arc<TargetStates>,
    /// `udp:IP:PORT` as bound.
    pub listeners: Vec<String>,
    /// This instance's id (`instance.rs`).
    pub instance_id: String,
    /// `udp:IP:PORT` as written in Via and Record-Route, one per listener (`advertise.rs`).
    pub advertised: Vec<String>,
    started: Instant,
    started_wall: SystemTime,
    /// Queue-full drops at the last look, and when that number last grew.
    overflow: Mutex<(u64, Option<Instant>)>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("instance_id", &self.instance_id)
            .field("listeners", &self.listeners)
            .finish()
    }
}

/// What a drain still waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// Requests forwarded without a final answer.
    pub pending: usize,
    /// Calls up.
    pub dialogs: usize,
}

impl Left {
    /// Nothing left.
    pub fn is_empty(&self) -> bool {
        self.pending == 0 && self.dialogs == 0
    }
}

impl Ops {
    /// The state of a proxy that starts now.
    pub fn new(
        status: Arc<WorkerStatus>,
        dispatcher: Arc<Dispatcher>,
        reloader: Option<Arc<Reloader>>,
        flood: Arc<FloodCounters>,
        targets: Arc<TargetStates>,
        listeners: Vec<String>,
    ) -> Self {
        Ops {
            slots: status.slots.clone(),
            status,
            dispatcher,
            reloader,
            tls: None,
            connections: None,
            flood,
            targets,
            advertised: listeners.clone(),
            listeners,
            instance_id: String::new(),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            overflow: Mutex::new((0, None)),
        }
    }

    /// Names the instance and what its listeners advertise.
    pub fn with_instance(mut self, instance_id: String, advertised: Vec<String>) -> Self {
        self.instance_id = instance_id;
        self.advertised = advertised;
        self
    }

    /// Adds the TLS material (for `POST /reload`) and the connections (for `/metrics`).
    pub fn with_transports(
        mut self,
        tls: Option<Arc<crate::tls::Tls>>,
        connections: Arc<crate::transport::Connections>,
    ) -> Self {
        self.tls = tls;
        self.connections = Some(connections);
        self
    }

    /// Stops taking new dialogs; workers see it within their next turn (idle ones within 250 ms).
    pub fn set_draining(&self) {
        self.status.draining.store(true, Ordering::Relaxed);
    }

    /// True once draining started.
    pub fn is_draining(&self) -> bool {
        self.status.draining.load(Ordering::Relaxed)
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Start time, seconds since the Unix epoch.
    pub fn started_unix(&self) -> u64 {
        unix(self.started_wall)
    }

    /// What a drain still waits for, from the workers' last published counters.
    pub fn left(&self) -> Left {
        let t = totals(&self.slots);
        Left {
            pending: t.pending,
            dialogs: t.dialogs,
        }
    }

    /// Ready, or why not (see the module docs).
    pub fn readiness(&self) -> Readiness {
        if let Some(r) = &self.reloader {
            if r.host.current().is_none() {
                return Readiness::NoPolicy;
            }
        }
        if self.is_draining() {
            return Readiness::Draining;
        }
        let queue = self.dispatcher.longest_queue();
        if queue >= OVERLOAD_QUEUE_LENGTH {
            return Readiness::Overloaded(format!("{queue} messages queued for one worker"));
        }
        let dropped = self.dispatcher.overflow.load(Ordering::Relaxed);
        let mut seen = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        if dropped > seen.0 {
            *seen = (dropped, Some(Instant::now()));
        }
        if let Some(at) = seen.1.filter(|at| at.elapsed() < OVERLOAD_HOLD) {
            return Readiness::Overloaded(format!(
                "worker queue full {} ms ago",
                at.elapsed().as_millis()
            ));
        }
        Readiness::Ready
    }

    #[cfg(test)]
    pub fn for_tests(workers: usize) -> Arc<Ops> {
        let (dispatcher, _receivers) = crate::worker::channels(workers);
        let status = Arc::new(WorkerStatus::new(workers));
        Arc::new(
            Ops::new(
                status,
                dispatcher,
                None,
                Arc::default(),
                Arc::default(),
                vec!["udp:127.0.0.1:5060".into()],
            )
            .with_instance("test-1".into(), vec!["udp:192.0.2.1:5060".into()]),
        )
    }
}

/// Seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use viaduct_proxy::Incoming;

    #[test]
    fn drain_and_queue_full_drops_leave_the_ready_state() {
        let ops = Ops::for_tests(1);
        assert_eq!(ops.readiness(), Readiness::Ready);
        // The receiver is gone, so every message counts as a queue-full drop.
        let msg = Incoming {
            data: bytes::Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            source: "127.0.0.1:5070".parse().unwrap(),
            transport: viaduct_proxy::Transport::Udp,
            flow: None,
        };
        ops.dispatcher.send(0, msg);
        let r = ops.readiness();
        assert_eq!(r.http_status(), 429, "{r:?}");
        ops.set_draining();
        assert_eq!(ops.readiness().http_status(), 503);
    }
}
