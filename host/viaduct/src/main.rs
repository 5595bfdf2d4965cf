//! `viaduct`: the stateful SIP proxy binary.
//!
//! A thin async shell (tokio) around the sans-IO proxy core: sockets feed
//! workers sharded by Call-ID; each worker drives one `viaduct_proxy::Proxy`
//! and sends what it yields. See `examples/viaduct.toml` for the config.

mod admin;
mod advertise;
mod auth;
mod config;
mod ctl;
mod dns;
mod flood;
mod instance;
mod metrics;
mod metrics_policy;
mod ops;
mod reload;
mod tls;
mod transport;
mod worker;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use config::{Config, ListenAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use viaduct_proxy::{Listener, Proxy, ProxyConfig, StaticRouter, Transport};

/// mimalloc instead of glibc malloc: the worker threads allocate and free a
/// few buffers per message, and glibc's per-thread arenas grew and shrank
/// their heaps with one mprotect call per call or so at 1000 calls/s
/// (strace: 2,247 mprotect in 4 s; 227 with the arena trimmed less).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "viaduct",
    version,
    about = "A stateful SIP proxy whose routing is a WebAssembly policy"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (TOML); every field has a default.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Listen address, repeatable: TRANSPORT:IP:PORT with udp, tcp, tls, ws
    /// or wss, IPv6 as udp:[::1]:5060 (replaces server.listen).
    #[arg(long)]
    listen: Vec<String>,
    /// The routing policy component (overrides policy.file).
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    /// The admin HTTP port, IP:PORT (overrides admin.listen; for `ctl`, the proxy to talk to).
    #[arg(long, global = true)]
    admin: Option<String>,
    /// Log level: error, warn, info, debug (SIP dumps of forwarded messages), trace (every message).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the config file and exit (non-zero with the reason when invalid).
    Check,
    /// Talk to a running proxy's admin port (as kamcmd does).
    Ctl {
        #[command(subcommand)]
        action: ctl::Action,
    },
    /// Print the `[[auth.users]]` lines (HA1s, MD5 and SHA-256) for a user;
    /// the password is read from stdin, never from the command line.
    Ha1 {
        /// User name.
        user: String,
        /// Realm the policy challenges with.
        realm: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("viaduct: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, every line ending with this instance's id (`instance.rs`).
fn init_logging(level: &str, instance_id: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "warn,viaduct={level},viaduct_proxy={level},viaduct_sip={level}"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(instance::Stamped::new(
            tracing_subscriber::fmt::format().with_ansi(ansi),
            instance_id,
        ))
        .init();
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => {
            let mut c = Config::default();
            c.apply_env();
            c
        }
    };
    if let Some(admin) = &cli.admin {
        config.admin.listen = admin.clone();
    }
    if !cli.listen.is_empty() {
        config.server.listen = cli.listen.clone();
    }
    if let Some(policy) = &cli.policy {
        config.policy.file = policy.display().to_string();
    }
    config.check()?;
    Ok(config)
}

fn run(cli: Cli) -> Result<()> {
    if let Some(Command::Ha1 { user, realm }) = &cli.command {
        return auth::print_ha1(user, realm);
    }
    let config = load_config(&cli)?;
    // The id is known once the config is: log lines before this point are none.
    let instance_id = config.instance_id();
    init_logging(&cli.log_level, &instance_id);
    if let Some(Command::Ctl { action }) = cli.command {
        let addr = config
            .admin
            .listen
            .parse()
            .context("ctl needs the admin port: --admin IP:PORT or admin.listen")?;
        return ctl::run(action, addr, config.admin.token().as_deref());
    }
    if let Some(Command::Check) = cli.command {
        // A policy is checked the way a reload does it: compile, link, instantiate, init.
        if let Some(settings) = config.policy_settings() {
            let host = viaduct_policy::PolicyHost::new(settings)
                .map_err(|e| anyhow::anyhow!("policy engine: {e:#}"))?;
            let version = host.reload()?;
            println!(
                "policy OK: {} (sha256 {})",
                config.policy.file, version.hash
            );
        }
        if let viaduct_policy::state::Backend::Redis(redis) = config.state_backend() {
            // Unreachable is not invalid: the proxy starts and fails open or closed.
            let state = viaduct_policy::state::RedisState::open(redis)?;
            match state.ping() {
                Ok(()) => println!("state: Redis {} answers", state.server()),
                Err(e) => println!(
                    "state: {e} (the proxy would start anyway, failing {})",
                    config.state.on_error
                ),
            }
        }
        println!(
            "config OK: listening on {}",
            config.server.listen.join(", ")
        );
        return Ok(());
    }
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    // This runtime carries TCP, the admin port, signals and reloads; each
    // proxy worker has its own thread and single-threaded runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, workers, instance_id))
}

async fn serve(config: Config, workers: usize, instance_id: String) -> Result<()> {
    let listen: Vec<ListenAddr> = config.listeners()?;
    let (dispatcher, receivers) = worker::channels(workers);
    let flood_counters = Arc::new(flood::FloodCounters::default());
    let flood_guard = || flood::FloodGuard::new(config.flood_settings(), flood_counters.clone());
    let tls = if config.wants_tls() {
        Some(tls::Tls::load(tls_settings(&config, &listen))?)
    } else {
        None
    };
    let connections = Arc::new(transport::Connections::new(
        flood_guard(),
        tls.clone(),
        config.connection_limits(),
    ));
    // One SO_REUSEPORT socket per worker and UDP listener; worker 0 binds
    // first so a port 0 resolves once and the others join it.
    let mut udp: Vec<Vec<std::net::UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    let mut listeners = Vec::new();
    for l in &listen {
        let local = match l.transport {
            Transport::Udp => {
                let first = transport::bind_udp(l.addr, config.server.socket_buffer)?;
                let local = first.local_addr()?;
                udp[0].push(first);
                for sockets in udp.iter_mut().skip(1) {
                    sockets.push(transport::bind_udp(local, config.server.socket_buffer)?);
                }
                local
            }
            stream => {
                let listener = transport::bind_stream(stream, l.addr)?;
                let local = listener.local_addr()?;
                tokio::spawn(transport::accept(
                    listener,
                    stream,
                    connections.clone(),
                    dispatcher.clone(),
                ));
                local
            }
        };
        listeners.push(Listener {
            transport: l.transport,
            addr: local,
        });
        match (&tls, l.transport.is_secure()) {
            (Some(tls), true) => tracing::info!(
                fingerprint = %tls.fingerprint(),
                certificate = %tls.cert_path().display(),
                "listening on {}:{local}",
                l.transport.uri_param()
            ),
            _ => tracing::info!("listening on {}:{local}", l.transport.uri_param()),
        }
    }
    let resolver = Arc::new(dns::Resolver::new(dns::DnsSettings {
        servers: config
            .dns
            .servers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
        timeout: Duration::from_millis(config.dns.timeout_ms),
        negative_ttl: Duration::from_secs(config.dns.negative_ttl_s),
        transports: listeners.iter().map(|l| l.transport).collect(),
        ..Default::default()
    })?);
    // Every worker signs and checks the same flow tokens.
    let flow_key: [u8; 32] = rand::random();
    let status = Arc::new(worker::WorkerStatus::new(workers));
    let listener_names: Vec<String> = listeners
        .iter()
        .map(|l| format!("{}:{}", l.transport.uri_param(), l.addr))
        .collect();
    // What each listener writes in Via and Record-Route: its own address,
    // never a shared one, so a cluster's responses and in-dialog requests
    // come back to the instance that owns them (DESIGN §6).
    let advertised = advertise::listeners(&listeners, config.advertise(), advertise::outbound_ip)?;
    for (bound, adv) in listeners.iter().zip(&advertised) {
        if bound.addr != adv.addr {
            tracing::info!(
                "{}:{} advertises {} in Via and Record-Route",
                bound.transport.uri_param(),
                bound.addr,
                adv.addr
            );
        }
    }
    let advertised_names: Vec<String> = advertised[..listeners.len()]
        .iter()
        .map(|l| format!("{}:{}", l.transport.uri_param(), l.addr))
        .collect();
    let proxy_config = ProxyConfig {
        listeners: advertised,
        timers: config.transaction_timers(),
        timer_c: Duration::from_millis(config.timers.timer_c_ms),
        record_route: config.proxy.record_route,
    };
    // The policy must load before we take traffic: a broken file at start-up is an error.
    let reloader = match config.policy_settings() {
        Some(settings) => {
            // Redis down is no reason not to start: it connects in the background.
            let state = viaduct_policy::state::open(&config.state_backend())?;
            let host = viaduct_policy::PolicyHost::with_registrar(
                settings,
                state,
                config.state_on_error(),
                config.registrar_settings()?,
            )
            .map_err(|e| anyhow::anyhow!("policy engine: {e:#}"))?;
            let host_for_load = host.clone();
            tokio::task::spawn_blocking(move || host_for_load.reload()).await??;
            Some(Arc::new(reload::Reloader::new(host)))
        }
        None => None,
    };
    let trusted = Arc::new(config.trusted_sources());
    let authenticator = auth::authenticator(
        &config.auth,
        reloader.as_ref().map(|r| r.host.clone()),
        matches!(
            config.state_backend(),
            viaduct_policy::state::Backend::Redis(_)
        ),
    )?;
    // Per-target drain: the admin port writes, every worker's core reads.
    let target_states = Arc::new(viaduct_proxy::TargetStates::default());
    // The admin port is bound before any worker answers SIP: whoever sees the
    // proxy answer (a test, an orchestrator) can reach /health and /metrics.
    let admin_listener = match config.admin.listen.as_str() {
        "" => None,
        listen => Some(admin::bind(listen.parse()?).await?),
    };
    for ((index, rx), udp) in receivers.into_iter().enumerate().zip(udp) {
        let router: Box<dyn viaduct_proxy::Router> = match &reloader {
            Some(r) => Box::new(viaduct_policy::PolicyRouter::new(
                r.host.clone(),
                trusted.clone(),
            )),
            None => Box::new(StaticRouter::new(config.targets())),
        };
        let mut proxy = Proxy::new(proxy_config.clone(), router);
        if let Some(a) = &authenticator {
            proxy.set_authenticator(a.clone());
        }
        if let Some(r) = &reloader {
            proxy.set_registrar(r.host.registrar());
        }
        proxy.set_target_states(target_states.clone());
        proxy.set_flow_key(flow_key);
        proxy.set_name_cache(resolver.clone());
        let w = worker::Worker {
            index,
            proxy,
            udp,
            rx,
            dispatcher: dispatcher.clone(),
            connections: connections.clone(),
            status: status.clone(),
            flood: flood_guard(),
            dns: worker::Dns {
                resolver: resolver.clone(),
                runtime: tokio::runtime::Handle::current(),
            },
        };
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let result = match runtime {
                    Ok(rt) => rt.block_on(worker::run(w)),
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = result {
                    tracing::error!(worker = index, error = %e, "worker stopped");
                    std::process::exit(1);
                }
            })?;
    }
    reload::on_sighup(reloader.clone(), tls.clone())?;
    let _tls_watcher = match &tls {
        Some(t) if config.tls.watch => tls::watch(t.clone())?,
        _ => None,
    };
    let _watcher = match &reloader {
        Some(r) => {
            if config.policy.watch {
                Some(reload::watch(r.clone(), Path::new(&config.policy.file))?)
            } else {
                None
            }
        }
        None => None,
    };
    let ops = Arc::new(
        ops::Ops::new(
            status.clone(),
            dispatcher.clone(),
            reloader.clone(),
            flood_counters.clone(),
            target_states,
            listener_names,
        )
        .with_instance(instance_id.clone(), advertised_names)
        .with_transports(tls.clone(), connections.clone()),
    );
    if let Some(listener) = admin_listener {
        let state = admin::AdminState {
            ops: ops.clone(),
            registry: metrics::registry(ops.clone()),
            token: config.admin.token(),
        };
        admin::serve(listener, Arc::new(state));
    }
    match &reloader {
        Some(_) => {
            tracing::info!(workers, policy = %config.policy.file, state = %config.state.backend, "viaduct ready")
        }
        None => {
            tracing::info!(workers, targets = ?config.routing.targets, "viaduct ready (built-in router)")
        }
    }

    if wait_for_stop_signal().await? == Stop::Now {
        return Ok(());
    }
    drain(&ops, Duration::from_millis(config.proxy.shutdown_grace_ms)).await;
    Ok(())
}

/// The `[tls]` section as the TLS module takes it; a generated certificate
/// names every listen IP and `localhost`.
fn tls_settings(config: &Config, listen: &[ListenAddr]) -> tls::TlsSettings {
    let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
    let t = &config.tls;
    let mut names: Vec<String> = listen.iter().map(|l| l.addr.ip().to_string()).collect();
    names.push("localhost".into());
    if let Some(a) = config.advertise() {
        names.push(a.ip.to_string());
    }
    names.sort();
    names.dedup();
    tls::TlsSettings {
        cert_file: path(&t.cert_file),
        key_file: path(&t.key_file),
        ca_file: path(&t.ca_file),
        client_cert_file: path(&t.client_cert_file),
        client_key_file: path(&t.client_key_file),
        verify_peer: t.verify_peer,
        data_dir: config.data_dir(),
        names,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: drain, then exit.
    Drain,
    /// SIGINT: exit at once.
    Now,
}

async fn wait_for_stop_signal() -> Result<Stop> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => {
            tracing::info!("SIGINT: stopping now");
            return Ok(Stop::Now);
        }
    }
    // A second signal stops at once.
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::warn!("second signal: stopping now");
        std::process::exit(1);
    });
    Ok(Stop::Drain)
}

/// New dialogs get 503; waits until requests in flight have their final
/// answer and the calls up have ended (their BYE came through), or `grace` passes.
async fn drain(ops: &ops::Ops, grace: Duration) {
    ops.set_draining();
    let start = Instant::now();
    // Let every worker see the flag and publish once (idle ones look every 250 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut last = None;
    loop {
        let left = ops.left();
        if left.is_empty() {
            tracing::info!(
                elapsed_ms = start.elapsed().as_millis() as u64,
                "drained; exiting"
            );
            return;
        }
        if start.elapsed() >= grace {
            tracing::warn!(
                pending = left.pending,
                dialogs = left.dialogs,
                "shutdown grace period over; exiting with calls or requests in flight"
            );
            return;
        }
        if last != Some(left) {
            tracing::info!(pending = left.pending, dialogs = left.dialogs, "draining");
            last = Some(left);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
