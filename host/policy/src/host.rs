//! Loading policy versions: compile (or load the cached native code), link,
//! validate with `init`, then publish atomically.

use crate::bindings::{Policy, PolicyPre};
use crate::epoch::Epoch;
use crate::registrar::{Registrar, RegistrarSettings};
use crate::state::{ErrorCounts, MemoryState, OnError, State};
use crate::store::{CallClock, Shared, StoreData};
use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};

/// How policies run.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The component file.
    pub file: PathBuf,
    /// The `[policy.config]` table, flattened to strings.
    pub config: Vec<(String, String)>,
    /// Wall-clock budget of one `on-request` / `on-failure` call.
    pub deadline: Duration,
    /// Budget of `init` (it may build tables).
    pub init_deadline: Duration,
    /// Linear memory cap per instance, in bytes.
    pub memory_limit: usize,
    /// What a trap, a timeout or an exhausted memory turns into.
    pub fail_action: FailAction,
    /// Where compiled code is cached, keyed by content hash.
    pub cache_dir: Option<PathBuf>,
}

/// The decision used when a policy call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// 500 Server Internal Error.
    Reject,
    /// Plain RFC routing, as if there were no policy.
    Relay,
}

/// Why a version was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a valid component (garbage, a core module, a corrupt file).
    #[error("compiling {path}: {message}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Wasmtime's explanation.
        message: String,
    },
    /// A component for another world or version (imports we do not provide, exports missing).
    #[error("{path} is not a viaduct:policy@0.3.0 policy: {message}")]
    Link {
        /// The file.
        path: PathBuf,
        /// Wasmtime's explanation.
        message: String,
    },
    /// `init` failed, trapped or timed out.
    #[error("{path}: init failed: {message}")]
    Init {
        /// The file.
        path: PathBuf,
        /// The policy's error, or the trap.
        message: String,
    },
}

/// One loaded policy version.
pub struct Version {
    /// Increases with every successful load (starts at 1).
    pub id: u64,
    /// First 12 hex digits of the file's SHA-256.
    pub hash: String,
    /// When it was loaded.
    pub loaded_at: std::time::SystemTime,
    pub(crate) pre: PolicyPre<StoreData>,
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("id", &self.id)
            .field("hash", &self.hash)
            .finish()
    }
}

/// The policy engine shared by all workers: compiles, validates and publishes versions.
pub struct PolicyHost {
    pub(crate) engine: Engine,
    linker: Linker<StoreData>,
    pub(crate) settings: PolicySettings,
    pub(crate) shared: Arc<Shared>,
    current: ArcSwapOption<Version>,
    next_id: AtomicU64,
    /// Advances the engine's epoch while calls run; deadlines are in its ticks.
    pub(crate) epoch: Epoch,
    /// Counters for logs and metrics.
    pub stats: crate::PolicyStats,
    /// Each worker's call counters (locked when a router is made and when scraped).
    workers: std::sync::Mutex<Vec<Arc<crate::WorkerCalls>>>,
    /// The last refusal's message, for the admin status.
    last_error: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for PolicyHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHost")
            .field("file", &self.settings.file)
            .finish()
    }
}

impl PolicyHost {
    /// Sets up the engine (epoch interruption on, a ticker thread; see
    /// `epoch.rs`) and the linker (WASI + our imports), with the in-memory
    /// state behind `kv`.
    pub fn new(settings: PolicySettings) -> wasmtime::Result<Arc<Self>> {
        Self::with_state(settings, Arc::new(MemoryState::default()), OnError::Open)
    }

    /// The same with `state` behind `kv` (see [`crate::state`]), and what
    /// a failed `kv` call does.
    pub fn with_state(
        settings: PolicySettings,
        state: Arc<dyn State>,
        on_error: OnError,
    ) -> wasmtime::Result<Arc<Self>> {
        Self::with_registrar(settings, state, on_error, RegistrarSettings::default())
    }

    /// [`PolicyHost::with_state`] with the registrar's expiry limits (the
    /// `[registrar]` config section); its bindings live in `state` too.
    pub fn with_registrar(
        settings: PolicySettings,
        state: Arc<dyn State>,
        on_error: OnError,
        registrar: RegistrarSettings,
    ) -> wasmtime::Result<Arc<Self>> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::<StoreData>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Policy::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s)?;
        let epoch = Epoch::start(
            engine.clone(),
            settings.deadline.min(settings.init_deadline),
        )?;
        let host = Arc::new(PolicyHost {
            engine,
            linker,
            settings,
            shared: Arc::new(Shared {
                registrar: Arc::new(Registrar::new(state.clone(), registrar)),
                kv: state,
                on_kv_error: on_error,
                counters: Default::default(),
            }),
            current: ArcSwapOption::empty(),
            next_id: AtomicU64::new(1),
            epoch,
            stats: Default::default(),
            workers: Default::default(),
            last_error: Default::default(),
        });
        Ok(host)
    }

    /// The shared state behind `kv` and the registrar, for the host's own
    /// shared records (digest nonce counts).
    pub fn state(&self) -> Arc<dyn State> {
        self.shared.kv.clone()
    }

    /// The registrar behind the `register` decision, for the proxy core
    /// (`Proxy::set_registrar`).
    pub fn registrar(&self) -> Arc<dyn viaduct_proxy::Registrar> {
        Arc::new(crate::registrar_glue::HostRegistrar(
            self.shared.registrar.clone(),
        ))
    }

    /// A value of the policy `kv` (shared by all versions), for the host's own
    /// lookups such as digest credentials. A failed lookup finds nothing,
    /// whatever `on_error` says (the backend counted and logged it).
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.kv.get(key.as_bytes()).unwrap_or(None)
    }

    /// Call counters for a new worker's router.
    /// Failed `kv` calls so far, by operation and kind.
    pub fn state_errors(&self) -> ErrorCounts {
        self.shared.kv.errors()
    }

    pub(crate) fn register_worker(&self) -> Arc<crate::WorkerCalls> {
        let calls = Arc::new(crate::WorkerCalls::default());
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.push(calls.clone());
        calls
    }

    /// Policy calls so far, summed over workers, by version.
    pub fn calls(&self) -> Vec<crate::VersionCalls> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        crate::calls::totals(&workers)
    }

    /// Why the last reload was refused, if it was (cleared by a successful one).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The policy's name: the file name without `.wasm`.
    pub fn name(&self) -> String {
        self.settings
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The version serving new requests.
    pub fn current(&self) -> Option<Arc<Version>> {
        self.current.load_full()
    }

    /// A fresh store for one instance, with the memory cap and no WASI capabilities
    /// beyond clocks and randomness (no files, no network, no environment).
    ///
    /// The deadline bounds the policy's own work: time blocked in `kv` calls
    /// is bounded per call by the state backend (`state.timeout_ms`) and does
    /// not count, or one slow Redis answer would turn a fail-open `kv` into
    /// the fail action. When the epoch deadline comes, the callback gives the
    /// call what is left of its budget of guest time, or interrupts it.
    pub(crate) fn new_store(&self, label: String) -> Store<StoreData> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.settings.memory_limit)
            .instances(16)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(true)
            .build();
        let state = StoreData {
            table: Default::default(),
            wasi: wasmtime_wasi::WasiCtx::builder().build(),
            limits,
            shared: self.shared.clone(),
            label,
            call: CallClock::new(self.settings.deadline),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let tick = self.epoch.tick();
        store.epoch_deadline_callback(move |ctx| {
            let left = ctx.data().call.left();
            if left.is_zero() {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(
                (left.as_nanos().div_ceil(tick.as_nanos()) as u64).max(1),
            ))
        });
        store.set_epoch_deadline(self.epoch.ticks(self.settings.deadline));
        store
    }

    /// Loads the configured file as a new version and publishes it if it validates.
    /// Runs on a blocking thread (compilation takes tens of milliseconds).
    pub fn reload(&self) -> Result<Arc<Version>, LoadError> {
        let started = Instant::now();
        let result = self.load(&self.settings.file);
        match &result {
            Ok(v) => {
                self.current.store(Some(v.clone()));
                self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!(
                    file = %self.settings.file.display(),
                    version = v.id,
                    hash = %v.hash,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "policy loaded"
                );
            }
            Err(e) => {
                self.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                let serving = self.current().map(|v| v.id);
                tracing::error!(error = %e, serving_version = ?serving, "policy refused; the previous version keeps serving");
            }
        }
        result
    }

    fn load(&self, path: &Path) -> Result<Arc<Version>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.into(),
            source,
        })?;
        let digest = Sha256::digest(&bytes);
        let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let full_hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(current) = self.current().filter(|c| c.hash == hash) {
            tracing::info!(
                version = current.id,
                "policy file unchanged; keeping the current version"
            );
            return Ok(current);
        }
        let component = self.compile(path, &bytes, &full_hash)?;
        let link = |e: wasmtime::Error| LoadError::Link {
            path: path.into(),
            message: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link)?;
        let pre = PolicyPre::new(pre).map_err(link)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let version = Arc::new(Version {
            id,
            hash,
            loaded_at: std::time::SystemTime::now(),
            pre,
        });
        // Validate: instantiate and init exactly as a worker will.
        let init = |message: String| LoadError::Init {
            path: path.into(),
            message,
        };
        self.instantiate(&version).map_err(init)?;
        Ok(version)
    }

    /// Instantiates a version in a fresh store and runs its `init`.
    pub(crate) fn instantiate(
        &self,
        version: &Version,
    ) -> Result<(Store<StoreData>, Policy), String> {
        let mut store = self.new_store(format!("v{}-{}", version.id, version.hash));
        let _running = self.epoch.enter();
        store.data_mut().call = CallClock::new(self.settings.init_deadline);
        store.set_epoch_deadline(self.epoch.ticks(self.settings.init_deadline));
        let instance = version
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("{e:#}"))?;
        match instance.call_init(&mut store, &self.settings.config) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return Err(msg),
            Err(e) => return Err(crate::describe_trap(&e)),
        }
        store.set_epoch_deadline(self.epoch.ticks(self.settings.deadline));
        Ok((store, instance))
    }

    /// Native code for the component: from the cache when this exact file was
    /// compiled by this exact wasmtime before, else compiled and cached.
    fn compile(&self, path: &Path, bytes: &[u8], hash: &str) -> Result<Component, LoadError> {
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            path: path.into(),
            message: format!("{e:#}"),
        };
        let cached = self.settings.cache_dir.as_ref().map(|d| {
            // The engine's compatibility hash changes with the wasmtime version and settings.
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut h);
            d.join(format!(
                "{hash}-{:016x}.cwasm",
                std::hash::Hasher::finish(&h)
            ))
        });
        if let Some(file) = &cached {
            if let Some(component) = crate::cache::load(&self.engine, file) {
                tracing::debug!(file = %file.display(), "compiled policy loaded from cache");
                return Ok(component);
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(compile_err)?;
        if let Some(file) = &cached {
            crate::cache::store(&component, file);
        }
        Ok(component)
    }
}
