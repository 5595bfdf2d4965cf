//! What each wasmtime `Store` carries, and what all stores share.

use crate::registrar::Registrar;
use crate::state::{MemoryState, OnError, State, StateError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Shared by every instance of every policy version.
#[derive(Debug)]
pub struct Shared {
    /// The registrar's bindings (on the same state as `kv`).
    pub registrar: Arc<Registrar>,
    /// The `kv` import's backend.
    pub kv: Arc<dyn State>,
    /// What a failed `kv` call does to the policy call.
    pub on_kv_error: OnError,
    /// The `metrics` import.
    pub counters: Counters,
}

impl Default for Shared {
    fn default() -> Self {
        let kv: Arc<dyn State> = Arc::new(MemoryState::default());
        Shared {
            registrar: Arc::new(Registrar::new(kv.clone(), Default::default())),
            kv,
            on_kv_error: OnError::Open,
            counters: Counters::default(),
        }
    }
}

/// A counter's identity: its name and its labels, sorted.
pub type CounterKey = (String, Vec<(String, String)>);

/// Policy-defined counters.
#[derive(Debug, Default)]
pub struct Counters {
    values: Mutex<HashMap<CounterKey, u64>>,
}

impl Counters {
    /// Adds to a counter.
    pub fn add(&self, name: &str, labels: &[(String, String)], value: u64) {
        let mut labels = labels.to_vec();
        labels.sort();
        let mut map = self.values.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((name.to_owned(), labels)).or_insert(0) += value;
    }

    /// A snapshot of every counter.
    pub fn snapshot(&self) -> Vec<(CounterKey, u64)> {
        let map = self.values.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The data of one store: one instance of one policy version on one worker.
pub struct StoreData {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) limits: StoreLimits,
    pub(crate) shared: Arc<Shared>,
    /// `name@version` for log lines.
    pub(crate) label: String,
    /// The running call's: when it started, its budget of guest time, the
    /// time spent blocked in `kv` calls (not guest time: see
    /// `PolicyHost::new_store`), and the `kv` failure that aborted it
    /// under [`OnError::Closed`].
    pub(crate) call: CallClock,
}

/// Guest time accounting of the running call.
#[derive(Debug)]
pub(crate) struct CallClock {
    pub(crate) started: Instant,
    pub(crate) budget: Duration,
    pub(crate) in_kv: Duration,
    pub(crate) state_failure: Option<StateError>,
}

impl CallClock {
    pub(crate) fn new(budget: Duration) -> Self {
        CallClock {
            started: Instant::now(),
            budget,
            in_kv: Duration::ZERO,
            state_failure: None,
        }
    }

    /// Guest time left: the budget less the time since the start that was
    /// not spent in `kv` calls.
    pub(crate) fn left(&self) -> Duration {
        let guest = self.started.elapsed().saturating_sub(self.in_kv);
        self.budget.saturating_sub(guest)
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
