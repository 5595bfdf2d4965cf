//! The per-worker router that calls the policy.
//!
//! Each proxy worker owns one `PolicyRouter`, and it one long-lived instance
//! per policy version it has served: a call is a store borrow, no
//! instantiation. After a hot swap the next request instantiates the new
//! version on this worker; the old instance stays while transactions that
//! started on it may still call `on-failure`.

use crate::bindings::{Decision as WitDecision, Policy, WitTransport};
use crate::host::{PolicyHost, Version};
use crate::request::RequestView;
use crate::state::StateError;
use crate::store::{CallClock, StoreData};
use crate::CallOutcome;
use crate::{describe_trap, FailAction};
use bytes::Bytes;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use viaduct_proxy::{Decision, RouteRequest, Router, Target, Transport};
use wasmtime::component::Resource;
use wasmtime::Store;

/// Versions kept per worker: the current one and a few older ones whose
/// transactions may still fail over.
const KEPT_VERSIONS: usize = 4;

struct Loaded {
    version: Arc<Version>,
    /// None after a trap: the next call instantiates afresh.
    instance: Option<(Store<StoreData>, Policy)>,
}

/// What a call leaves behind: the edits and the digest check, if it ran.
type ViewResult = (
    viaduct_proxy::RequestEdits,
    Option<(String, viaduct_proxy::auth::AuthCheck)>,
);

/// Why a call gave no decision.
enum CallFailure {
    /// A trap (or no instance): one retry on a fresh instance, then the fail action.
    Trap(String),
    /// The deadline: the fail action.
    Timeout(String),
    /// A `kv` call failed under `on_error = "closed"`: 503.
    State(StateError),
}

/// What a request gets when the state it needs is down and the policy
/// fails closed: come back in a few seconds (RFC 3261 §21.5.4, §20.33).
fn state_unavailable() -> Decision {
    Decision::Reject {
        code: 503,
        reason: "Service Unavailable".into(),
        headers: vec!["Retry-After: 5".into()],
    }
}

/// Headers a caller may not set for itself unless its source is trusted.
pub const UNTRUSTED_HEADERS: [&str; 2] = ["X-Room-ID", "X-Session-ID"];

/// How instances are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStrategy {
    /// One long-lived instance per worker and version (the default; see the crate docs for figures).
    PerWorker,
    /// A fresh instance (and `init`) for every call: full isolation between calls.
    PerCall,
}

/// A [`Router`] backed by the Wasm policy.
pub struct PolicyRouter {
    host: Arc<PolicyHost>,
    loaded: Vec<Loaded>,
    trusted: Arc<Vec<(IpAddr, u8)>>,
    /// Shared so that a call borrows it without copying three allocations.
    hidden: Arc<[String]>,
    strategy: InstanceStrategy,
    calls: Arc<crate::WorkerCalls>,
}

impl PolicyRouter {
    /// A router for one worker. `trusted` sources keep their X-Room-ID / X-Session-ID.
    pub fn new(host: Arc<PolicyHost>, trusted: Arc<Vec<(IpAddr, u8)>>) -> Self {
        PolicyRouter {
            loaded: Vec::new(),
            trusted,
            hidden: UNTRUSTED_HEADERS.iter().map(|s| (*s).to_owned()).collect(),
            strategy: InstanceStrategy::PerWorker,
            calls: host.register_worker(),
            host,
        }
    }

    /// Changes the instance strategy (for benchmarks and strict isolation).
    pub fn with_strategy(mut self, strategy: InstanceStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    fn fail(&self, what: &str, version: &Version, err: &str) -> Decision {
        tracing::warn!(version = version.id, hash = %version.hash, error = %err, "policy {what} failed; applying the fail action");
        match self.host.settings.fail_action {
            FailAction::Reject => Decision::Reject {
                code: 500,
                reason: "Server Internal Error".into(),
                headers: vec![],
            },
            FailAction::Relay => Decision::Relay,
        }
    }

    /// Index of the loaded entry for `version`, instantiated.
    fn instance_for(&mut self, version: &Arc<Version>) -> Result<usize, String> {
        let idx = match self.loaded.iter().position(|l| l.version.id == version.id) {
            Some(i) => i,
            None => {
                if self.loaded.len() >= KEPT_VERSIONS {
                    // Drop the oldest version that is not the one asked for.
                    let oldest = (0..self.loaded.len())
                        .min_by_key(|&i| self.loaded[i].version.id)
                        .unwrap_or(0);
                    self.loaded.remove(oldest);
                }
                self.loaded.push(Loaded {
                    version: version.clone(),
                    instance: None,
                });
                self.loaded.len() - 1
            }
        };
        if self.loaded[idx].instance.is_none() || self.strategy == InstanceStrategy::PerCall {
            self.loaded[idx].instance = Some(self.host.instantiate(version)?);
        }
        Ok(idx)
    }

    fn call(
        &mut self,
        version: &Arc<Version>,
        req: &mut RouteRequest<'_, '_>,
        failure: Option<u16>,
    ) -> Decision {
        let what = if failure.is_some() {
            "on-failure"
        } else {
            "on-request"
        };
        let started = Instant::now();
        let (decision, outcome) = self.call_attempts(version, req, failure, what);
        self.calls.record(version.id, outcome, started.elapsed());
        decision
    }

    fn call_attempts(
        &mut self,
        version: &Arc<Version>,
        req: &mut RouteRequest<'_, '_>,
        failure: Option<u16>,
        what: &str,
    ) -> (Decision, CallOutcome) {
        let hidden: Arc<[String]> = if self.is_trusted(req.source.ip()) {
            Arc::from([])
        } else {
            self.hidden.clone()
        };
        let data = Bytes::copy_from_slice(req.message.bytes());
        let mut first_error = None;
        // A trap other than the deadline (most often an instance that filled its
        // memory over many calls, as JavaScript engines do) gets one retry on a
        // fresh instance, so the request is not what pays for it.
        for attempt in 0..2 {
            let idx = match self.instance_for(version) {
                Ok(i) => i,
                Err(e) => return (self.fail(what, version, &e), CallOutcome::Error),
            };
            let view = RequestView::new(
                req.message,
                data.clone(),
                req.source,
                req.transport,
                &hidden,
            )
            .with_authenticator(req.authenticator.clone(), req.auth_check.clone());
            match self.call_once(idx, view, failure) {
                Ok((d, (edits, auth_check))) => {
                    req.edits = edits;
                    req.auth_check = auth_check;
                    req.version = version.id;
                    let outcome = outcome_of(&d);
                    return (convert(d), outcome);
                }
                Err(failed) => {
                    // A trapped instance may hold broken state: never call it again.
                    self.loaded[idx].instance = None;
                    let (e, outcome) = match failed {
                        // The state backend logs its failures (a few lines per
                        // outage, not one per request); a retry would meet it again.
                        CallFailure::State(e) => {
                            tracing::debug!(version = version.id, error = %e, "policy {what} aborted: state unavailable; 503");
                            return (state_unavailable(), CallOutcome::StateUnavailable);
                        }
                        CallFailure::Timeout(e) => (e, CallOutcome::Timeout),
                        CallFailure::Trap(e) if attempt == 1 => (e, CallOutcome::Error),
                        CallFailure::Trap(e) => {
                            tracing::info!(version = version.id, error = %e, "policy instance trapped; retrying once on a fresh one");
                            first_error = Some(e);
                            continue;
                        }
                    };
                    let err = first_error.as_deref().unwrap_or(e.as_str());
                    return (self.fail(what, version, err), outcome);
                }
            }
        }
        (
            self.fail(what, version, "no attempt left"),
            CallOutcome::Error,
        )
    }

    /// One call on the instance at `idx`.
    fn call_once(
        &mut self,
        idx: usize,
        view: RequestView,
        failure: Option<u16>,
    ) -> Result<(WitDecision, ViewResult), CallFailure> {
        let budget = self.host.settings.deadline;
        let deadline = self.host.epoch.ticks(budget);
        let Some((store, policy)) = self.loaded[idx].instance.as_mut() else {
            return Err(CallFailure::Trap("no instance".into()));
        };
        let own = store
            .data_mut()
            .table
            .push(view)
            .map_err(|e| CallFailure::Trap(e.to_string()))?;
        let borrow = Resource::<RequestView>::new_borrow(own.rep());
        let _running = self.host.epoch.enter();
        store.data_mut().call = CallClock::new(budget);
        store.set_epoch_deadline(deadline);
        let result = match failure {
            None => policy.call_on_request(&mut *store, borrow),
            Some(code) => policy.call_on_failure(&mut *store, borrow, code),
        };
        let edits = store
            .data_mut()
            .table
            .delete(own)
            .map(|v| (v.edits, v.auth_check))
            .unwrap_or_default();
        match result {
            Ok(d) => Ok((d, edits)),
            Err(e) => {
                if let Some(state) = store.data_mut().call.state_failure.take() {
                    return Err(CallFailure::State(state));
                }
                let timeout = matches!(
                    e.downcast_ref::<wasmtime::Trap>(),
                    Some(wasmtime::Trap::Interrupt)
                );
                let message = describe_trap(&e);
                Err(if timeout {
                    CallFailure::Timeout(message)
                } else {
                    CallFailure::Trap(message)
                })
            }
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted
            .iter()
            .any(|&(net, bits)| crate::cidr_contains(net, bits, ip))
    }
}

impl Router for PolicyRouter {
    fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision {
        let Some(version) = self.host.current() else {
            return Decision::Reject {
                code: 503,
                reason: "No Policy Loaded".into(),
                headers: vec![],
            };
        };
        self.call(&version, req, None)
    }

    fn on_failure(&mut self, req: &mut RouteRequest<'_, '_>, status: u16) -> Decision {
        // The version that decided, if this worker still has it; else the current one.
        let version = self
            .loaded
            .iter()
            .find(|l| l.version.id == req.version)
            .map(|l| l.version.clone())
            .or_else(|| self.host.current());
        match version {
            Some(v) => self.call(&v, req, Some(status)),
            None => Decision::Continue,
        }
    }
}

fn outcome_of(d: &WitDecision) -> CallOutcome {
    match d {
        WitDecision::Forward(_) | WitDecision::Fork(_) => CallOutcome::Forward,
        WitDecision::Register => CallOutcome::Register,
        WitDecision::Reject(_) => CallOutcome::Reject,
        WitDecision::Redirect(_) => CallOutcome::Redirect,
        WitDecision::Relay => CallOutcome::Relay,
        WitDecision::Drop => CallOutcome::Drop,
        WitDecision::Continue => CallOutcome::Continue,
        WitDecision::Challenge(_) => CallOutcome::Challenge,
    }
}

/// A WIT target as the proxy core takes it.
pub(crate) fn target(t: crate::bindings::WitTarget) -> Target {
    Target {
        uri: t.uri,
        transport: t.transport.map(|t| match t {
            WitTransport::Udp => Transport::Udp,
            WitTransport::Tcp => Transport::Tcp,
            WitTransport::Tls => Transport::Tls,
            WitTransport::Ws => Transport::Ws,
            WitTransport::Wss => Transport::Wss,
        }),
        timeout: t.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        request_uri: t.request_uri,
        route: t.route,
    }
}

fn convert(d: WitDecision) -> Decision {
    match d {
        WitDecision::Forward(targets) => {
            Decision::Forward(targets.into_iter().map(target).collect())
        }
        WitDecision::Fork(targets) => Decision::Fork(targets.into_iter().map(target).collect()),
        WitDecision::Register => Decision::Register,
        WitDecision::Reject(r) => Decision::Reject {
            code: r.code,
            reason: r.reason,
            headers: r
                .headers
                .into_iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect(),
        },
        WitDecision::Redirect(c) => Decision::Redirect(c),
        WitDecision::Relay => Decision::Relay,
        WitDecision::Drop => Decision::Drop,
        WitDecision::Continue => Decision::Continue,
        WitDecision::Challenge(realm) => Decision::Challenge { realm },
    }
}
