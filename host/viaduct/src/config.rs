//! The configuration file (TOML). Every field has a default, so an empty file
//! (or none) runs a proxy on UDP 127.0.0.1:5060. `examples/viaduct.toml`
//! documents every field.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use viaduct_proxy::transaction::Timers;
use viaduct_proxy::{Target, Transport};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    pub server: Server,
    /// `[timers]`
    pub timers: TimersConfig,
    /// `[proxy]`
    pub proxy: ProxySection,
    /// `[routing]`
    pub routing: Routing,
    /// `[policy]`
    pub policy: PolicySection,
    /// `[admin]`
    pub admin: Admin,
    /// `[limits]`
    pub limits: Limits,
    /// `[auth]`
    pub auth: AuthSection,
    /// `[tls]`
    pub tls: TlsSection,
    /// `[dns]`
    pub dns: DnsSection,
    /// `[state]`
    pub state: StateSection,
    /// `[registrar]`
    pub registrar: RegistrarSection,
}

/// `[registrar]`: the limits of the bindings the `register` decision
/// stores (RFC 3261 §10.3); the bindings live in `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarSection {
    /// Shorter non-zero expiries get `423 Interval Too Brief`, seconds.
    pub min_expires: u32,
    /// Longer expiries are shortened to this, seconds.
    pub max_expires: u32,
    /// The expiry of a contact that asks for none, seconds.
    pub default_expires: u32,
    /// Contacts per address-of-record; more get 403.
    pub max_contacts: usize,
}

impl Default for RegistrarSection {
    fn default() -> Self {
        let d = viaduct_policy::registrar::RegistrarSettings::default();
        RegistrarSection {
            min_expires: d.min_expires,
            max_expires: d.max_expires,
            default_expires: d.default_expires,
            max_contacts: d.max_contacts,
        }
    }
}

/// `[state]`: where the policy `kv` lives (see `viaduct_policy::state`):
/// in this process, or in a Redis shared by several instances.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateSection {
    /// "memory" (this process only) or "redis".
    pub backend: String,
    /// The Redis server: `redis://[user:password@]host:port/db`.
    /// `VIADUCT_STATE_URL` overrides it (keep passwords out of files).
    pub url: String,
    /// Bound of one Redis call, in milliseconds.
    pub timeout_ms: u64,
    /// Put before every key in Redis.
    pub prefix: String,
    /// When a state call fails: "open" (the policy sees an empty state) or
    /// "closed" (the request gets 503 with Retry-After: 5).
    pub on_error: String,
}

impl Default for StateSection {
    fn default() -> Self {
        let redis = viaduct_policy::state::RedisSettings::default();
        StateSection {
            backend: "memory".into(),
            url: redis.url,
            timeout_ms: redis.timeout.as_millis() as u64,
            prefix: redis.prefix,
            on_error: "open".into(),
        }
    }
}

/// The environment variable that overrides `state.url`.
pub const STATE_URL_ENV: &str = "VIADUCT_STATE_URL";

/// `[tls]`: certificates for `tls:` and `wss:` listeners and TLS next hops
/// (see `tls.rs`). Paths are PEM files; empty means "not configured".
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// This proxy's certificate chain; with `key_file`. Empty: a self-signed
    /// certificate made on first start and kept in `server.data_dir/tls/`.
    pub cert_file: String,
    /// The private key of `cert_file`.
    pub key_file: String,
    /// CA certificates that next hops' certificates must chain to; empty: the system's roots.
    pub ca_file: String,
    /// A client certificate for next hops that ask for one (mutual TLS).
    pub client_cert_file: String,
    /// Its private key.
    pub client_key_file: String,
    /// Verify next hops' certificates (name and chain). Off only in a lab.
    pub verify_peer: bool,
    /// Reload the certificate files when they change (SIGHUP and `POST /reload` reload them too).
    pub watch: bool,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert_file: String::new(),
            key_file: String::new(),
            ca_file: String::new(),
            client_cert_file: String::new(),
            client_key_file: String::new(),
            verify_peer: true,
            watch: true,
        }
    }
}

/// `[dns]`: RFC 3263 resolution of next hops named by host (see `dns.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// DNS servers as IP:PORT; empty: the system's (/etc/resolv.conf).
    pub servers: Vec<String>,
    /// How long one lookup may take before the target counts as failed.
    pub timeout_ms: u64,
    /// How long a name that does not exist is remembered.
    pub negative_ttl_s: u64,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            servers: Vec::new(),
            timeout_ms: 2000,
            negative_ttl_s: 30,
        }
    }
}

/// `[auth]`: digest authentication for policies that answer `challenge`
/// (see `auth.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// On: policies may challenge. Off: a `challenge` decision gets 500.
    pub enabled: bool,
    /// How long a nonce is good, in seconds (then the client gets a `stale=true` 407).
    pub nonce_lifetime_s: u64,
    /// 64 hex digits keying the nonce HMAC; instances sharing it accept each
    /// other's nonces. Empty = random at start. `VIADUCT_AUTH_SECRET` overrides it.
    pub secret: String,
    /// Algorithms offered, in order: "SHA-256", "MD5". Clients that answer
    /// the first challenge whatever it is (SIPp 3.6.1, old phones) need MD5 first.
    pub algorithms: Vec<String>,
    /// Also look HA1s up in the policy kv (`auth:ha1:<md5|sha-256>:<realm>:<user>`).
    pub kv_credentials: bool,
    /// Users: HA1 = H(user:realm:password) per algorithm, never the password.
    pub users: Vec<AuthUser>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            enabled: false,
            nonce_lifetime_s: 300,
            secret: String::new(),
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            kv_credentials: false,
            users: Vec::new(),
        }
    }
}

/// The environment variable that overrides `auth.secret`.
pub const AUTH_SECRET_ENV: &str = "VIADUCT_AUTH_SECRET";

/// One `[[auth.users]]` entry.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthUser {
    /// User name (the `username` of the credentials).
    pub user: String,
    /// Realm the policy challenges with.
    pub realm: String,
    /// MD5(user:realm:password), 32 hex digits.
    pub ha1_md5: String,
    /// SHA-256(user:realm:password), 64 hex digits.
    pub ha1_sha256: String,
}

/// `[limits]`: the flood guard in front of the parser (see `flood.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Off: no rate, size or header limit at the door.
    pub enabled: bool,
    /// Sampling window per source, in milliseconds.
    pub window_ms: u64,
    /// Messages from one source IP in one window that get it banned; 0 = no rate limit.
    pub max_messages: u32,
    /// Ban length in milliseconds, extended while the source keeps its rate.
    pub ban_ms: u64,
    /// Largest message admitted on any transport, in bytes.
    pub max_message_bytes: usize,
    /// Most header lines admitted.
    pub max_headers: usize,
    /// Source IPs tracked at most (memory bound); sources past it are admitted untracked.
    pub max_sources: usize,
    /// CIDRs exempt from the rate limit (trusted trunks, your own load balancers).
    pub allow: Vec<String>,
    /// At most one drop log line per source per this interval, in milliseconds.
    pub log_interval_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let d = crate::flood::FloodSettings::default();
        Limits {
            enabled: d.enabled,
            window_ms: d.window.as_millis() as u64,
            max_messages: d.max_messages,
            ban_ms: d.ban.as_millis() as u64,
            max_message_bytes: d.max_message_bytes,
            max_headers: d.max_headers,
            max_sources: d.max_sources,
            allow: Vec::new(),
            log_interval_ms: d.log_interval.as_millis() as u64,
        }
    }
}

/// `[policy]`: the Wasm routing policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// The component (`.wasm`); empty = the built-in `[routing]` router. `--policy` overrides it.
    pub file: String,
    /// Budget of one policy call, in milliseconds (epoch deadline).
    pub deadline_ms: u64,
    /// Budget of `init`, in milliseconds.
    pub init_deadline_ms: u64,
    /// Memory cap per policy instance, in MiB.
    pub memory_mb: usize,
    /// What a trap, timeout or memory exhaustion gives: "reject" (500) or "relay".
    pub fail_action: String,
    /// CIDRs whose caller-supplied X-Room-ID / X-Session-ID the policy may see and keep.
    pub trusted_sources: Vec<String>,
    /// Reload when the file changes (SIGHUP and POST /reload always work).
    pub watch: bool,
    /// Where compiled policies are cached; empty = $XDG_CACHE_HOME/viaduct or ~/.cache/viaduct.
    pub cache_dir: String,
    /// Handed to the policy's `init` as (key, value) strings; arrays are joined with commas.
    pub config: toml::Table,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            file: String::new(),
            deadline_ms: 5,
            init_deadline_ms: 1000,
            memory_mb: 64,
            fail_action: "reject".into(),
            trusted_sources: Vec::new(),
            watch: true,
            cache_dir: String::new(),
            config: toml::Table::new(),
        }
    }
}

/// `[admin]`: the HTTP admin port (see `admin.rs` for the routes).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// IP:PORT; empty = off. `--admin` overrides it.
    pub listen: String,
    /// Bearer token for every route but `/health/*`; required when `listen`
    /// is not 127.0.0.1 or ::1. `VIADUCT_ADMIN_TOKEN` overrides it.
    pub token: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: "127.0.0.1:9060".into(),
            token: String::new(),
        }
    }
}

/// The environment variable that names the instance when `server.instance_id` is empty.
pub const INSTANCE_ID_ENV: &str = "VIADUCT_INSTANCE_ID";

/// The environment variable for `server.advertise` when the file leaves it empty
/// (Kubernetes: the pod IP from the downward API).
pub const ADVERTISE_ENV: &str = "VIADUCT_ADVERTISE";

/// The environment variable that overrides `admin.token` (keep secrets out of files).
pub const ADMIN_TOKEN_ENV: &str = "VIADUCT_ADMIN_TOKEN";

impl Admin {
    /// The token, if one is set.
    pub fn token(&self) -> Option<String> {
        (!self.token.is_empty()).then(|| self.token.clone())
    }
}

/// Loopback for the admin port means exactly 127.0.0.1 or ::1: other
/// 127.0.0.0/8 addresses are often routed to containers or shared hosts.
pub fn is_loopback_only(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
        std::net::IpAddr::V6(ip) => ip == std::net::Ipv6Addr::LOCALHOST,
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// `udp:IP:PORT` or `tcp:IP:PORT`, IPv6 as `udp:[::1]:5060`.
    pub listen: Vec<String>,
    /// Proxy workers (messages are sharded to them by Call-ID); 0 = one per core.
    pub workers: usize,
    /// Socket receive/send buffer size in bytes (UDP bursts need room).
    pub socket_buffer: usize,
    /// Largest message accepted on a stream transport.
    pub max_message_size: usize,
    /// Where state that outlives a restart is kept (the self-signed TLS
    /// certificate); empty = $XDG_DATA_HOME/viaduct or ~/.local/share/viaduct.
    pub data_dir: String,
    /// Open connections (TCP, TLS, WS, WSS; inbound and outbound) at most.
    pub max_connections: usize,
    /// Inbound connections from one IP address at most.
    pub max_connections_per_ip: usize,
    /// A connection that receives nothing for this long is closed (keep-alives count).
    pub idle_timeout_s: u64,
    /// How long a TLS or WebSocket handshake may take.
    pub handshake_timeout_ms: u64,
    /// This process's name in a cluster: in every log line, in
    /// `viaduct_instance_info` and in `/status`. Empty: `VIADUCT_INSTANCE_ID`,
    /// else `<hostname>-<pid>` (see `instance.rs`).
    pub instance_id: String,
    /// `IP` or `IP:PORT` written in Via and Record-Route instead of the bound
    /// address, by listeners of its family (see `advertise.rs`). Empty:
    /// `VIADUCT_ADVERTISE`, else the bound address (for `0.0.0.0`/`[::]`,
    /// the host's outbound address).
    pub advertise: String,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: vec!["udp:127.0.0.1:5060".into()],
            workers: 0,
            socket_buffer: 4 << 20,
            max_message_size: 65535,
            data_dir: String::new(),
            max_connections: 4096,
            max_connections_per_ip: 256,
            idle_timeout_s: 600,
            handshake_timeout_ms: 5000,
            instance_id: String::new(),
            advertise: String::new(),
        }
    }
}

/// `[timers]`, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimersConfig {
    /// RFC 3261 T1 (RTT estimate).
    pub t1_ms: u64,
    /// RFC 3261 T2.
    pub t2_ms: u64,
    /// RFC 3261 T4.
    pub t4_ms: u64,
    /// Timer C: how long an INVITE may ring without a final answer (§16.6 step 11).
    pub timer_c_ms: u64,
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            timer_c_ms: 180_000,
        }
    }
}

/// `[proxy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySection {
    /// Record-Route initial INVITE and SUBSCRIBE so in-dialog requests come back through us.
    pub record_route: bool,
    /// On SIGTERM, how long to wait for requests in flight and calls up to
    /// end before exiting anyway (a drain's bound).
    pub shutdown_grace_ms: u64,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            record_route: true,
            // Kubernetes' default terminationGracePeriodSeconds.
            shutdown_grace_ms: 30_000,
        }
    }
}

/// `[routing]`: the built-in router used until a policy is configured.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Routing {
    /// Next hops for initial requests, tried in order (failover on 408/503/timeout).
    /// Empty: relay by Route set, then Request-URI.
    pub targets: Vec<String>,
}

/// A parsed `--listen` / `server.listen` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    /// Transport.
    pub transport: Transport,
    /// Address.
    pub addr: SocketAddr,
}

impl std::str::FromStr for ListenAddr {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (proto, addr) = s.split_once(':').with_context(|| {
            format!("listen address {s:?}: expected TRANSPORT:IP:PORT (udp, tcp, tls, ws, wss)")
        })?;
        let transport = Transport::from_token(proto.as_bytes()).with_context(|| {
            format!("listen address {s:?}: transport {proto:?} is not supported (udp, tcp, tls, ws, wss)")
        })?;
        let addr: SocketAddr = addr.parse().with_context(|| {
            format!("listen address {s:?}: {addr:?} is not IP:PORT (IPv6 as [::1]:5060)")
        })?;
        Ok(ListenAddr { transport, addr })
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        config.apply_env();
        config.check()?;
        Ok(config)
    }

    /// Environment overrides: `VIADUCT_ADMIN_TOKEN`, `VIADUCT_AUTH_SECRET`,
    /// `VIADUCT_STATE_URL`; and defaults for what a file shared by every
    /// instance of a cluster leaves empty: `VIADUCT_INSTANCE_ID`, `VIADUCT_ADVERTISE`.
    pub fn apply_env(&mut self) {
        let from_env = |field: &mut String, var: &str| {
            if field.is_empty() {
                if let Some(v) = std::env::var_os(var) {
                    *field = v.to_string_lossy().into_owned();
                }
            }
        };
        from_env(&mut self.server.instance_id, INSTANCE_ID_ENV);
        from_env(&mut self.server.advertise, ADVERTISE_ENV);
        if let Some(url) = std::env::var_os(STATE_URL_ENV) {
            self.state.url = url.to_string_lossy().into_owned();
        }
        if let Some(token) = std::env::var_os(ADMIN_TOKEN_ENV) {
            self.admin.token = token.to_string_lossy().into_owned();
        }
        if let Some(secret) = std::env::var_os(AUTH_SECRET_ENV) {
            self.auth.secret = secret.to_string_lossy().into_owned();
        }
    }

    /// Checks what serde cannot: addresses, URIs, timer relations.
    pub fn check(&self) -> Result<()> {
        if self.server.listen.is_empty() {
            bail!("server.listen is empty: give at least one TRANSPORT:IP:PORT (udp, tcp, tls, ws, wss)");
        }
        for l in &self.server.listen {
            l.parse::<ListenAddr>()?;
        }
        let sv = &self.server;
        if !sv.instance_id.is_empty() {
            crate::instance::check_id(&sv.instance_id)?;
        }
        if !sv.advertise.is_empty() {
            sv.advertise.parse::<crate::advertise::Advertise>()?;
        }
        if sv.max_connections == 0
            || sv.max_connections_per_ip == 0
            || sv.idle_timeout_s == 0
            || sv.handshake_timeout_ms == 0
        {
            bail!("server.max_connections, max_connections_per_ip, idle_timeout_s and handshake_timeout_ms must be > 0");
        }
        let tls = &self.tls;
        if tls.cert_file.is_empty() != tls.key_file.is_empty() {
            bail!("tls.cert_file and tls.key_file go together: set both, or neither for a self-signed certificate");
        }
        if tls.client_cert_file.is_empty() != tls.client_key_file.is_empty() {
            bail!("tls.client_cert_file and tls.client_key_file go together");
        }
        for server in &self.dns.servers {
            server
                .parse::<SocketAddr>()
                .with_context(|| format!("dns.servers: {server:?} is not IP:PORT"))?;
        }
        if self.dns.timeout_ms == 0 {
            bail!("dns.timeout_ms must be > 0");
        }
        let t = &self.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms || t.t4_ms == 0 {
            bail!(
                "timers: need t1_ms > 0, t2_ms >= t1_ms, t4_ms > 0 (got {}, {}, {})",
                t.t1_ms,
                t.t2_ms,
                t.t4_ms
            );
        }
        if t.timer_c_ms == 0 {
            bail!("timers.timer_c_ms must be > 0");
        }
        let p = &self.policy;
        if !matches!(p.fail_action.as_str(), "reject" | "relay") {
            bail!(
                "policy.fail_action must be \"reject\" or \"relay\" (got {:?})",
                p.fail_action
            );
        }
        if p.deadline_ms == 0 || p.init_deadline_ms == 0 || p.memory_mb == 0 {
            bail!("policy.deadline_ms, policy.init_deadline_ms and policy.memory_mb must be > 0");
        }
        for cidr in &p.trusted_sources {
            if viaduct_policy::parse_cidr(cidr).is_none() {
                bail!("policy.trusted_sources: {cidr:?} is not an IP address or CIDR");
            }
        }
        let l = &self.limits;
        if l.window_ms == 0 || l.ban_ms == 0 || l.max_sources == 0 || l.max_message_bytes == 0 {
            bail!("limits.window_ms, limits.ban_ms, limits.max_sources and limits.max_message_bytes must be > 0");
        }
        for cidr in &l.allow {
            if viaduct_policy::parse_cidr(cidr).is_none() {
                bail!("limits.allow: {cidr:?} is not an IP address or CIDR");
            }
        }
        if !self.admin.listen.is_empty() {
            let addr =
                self.admin.listen.parse::<SocketAddr>().with_context(|| {
                    format!("admin.listen: {:?} is not IP:PORT", self.admin.listen)
                })?;
            if !is_loopback_only(&addr) && self.admin.token.is_empty() {
                bail!(
                    "admin.listen {addr} is reachable from other hosts: set admin.token (or {ADMIN_TOKEN_ENV})"
                );
            }
        }
        crate::auth::validate(&self.auth)?;
        let st = &self.state;
        match st.backend.as_str() {
            "memory" => {}
            "redis" => viaduct_policy::state::RedisState::check_url(&st.url)
                .map_err(|e| anyhow::anyhow!("state.url: {e}"))?,
            other => bail!("state.backend must be \"memory\" or \"redis\" (got {other:?})"),
        }
        if !matches!(st.on_error.as_str(), "open" | "closed") {
            bail!(
                "state.on_error must be \"open\" or \"closed\" (got {:?})",
                st.on_error
            );
        }
        if st.timeout_ms == 0 {
            bail!("state.timeout_ms must be > 0");
        }
        for target in &self.routing.targets {
            let uri = viaduct_sip::Uri::parse(target.as_bytes())
                .map_err(|_| anyhow::anyhow!("routing.targets: {target:?} is not a SIP URI"))?;
            if !matches!(
                uri.scheme,
                viaduct_sip::Scheme::Sip | viaduct_sip::Scheme::Sips
            ) {
                bail!("routing.targets: {target:?}: only sip: and sips: targets are supported");
            }
            if let Some(tp) = uri.transport() {
                if Transport::from_token(tp).is_none() {
                    bail!(
                        "routing.targets: {target:?}: transport must be udp, tcp, tls, ws or wss"
                    );
                }
            }
        }
        Ok(())
    }

    /// `server.instance_id`, or `<hostname>-<pid>` when it is empty (after [`Config::apply_env`]).
    pub fn instance_id(&self) -> String {
        if self.server.instance_id.is_empty() {
            crate::instance::default_id()
        } else {
            self.server.instance_id.clone()
        }
    }

    /// `server.advertise`, when set (checked by [`Config::check`]).
    pub fn advertise(&self) -> Option<crate::advertise::Advertise> {
        self.server.advertise.parse().ok()
    }

    /// The listen addresses.
    pub fn listeners(&self) -> Result<Vec<ListenAddr>> {
        self.server.listen.iter().map(|l| l.parse()).collect()
    }

    /// `server.data_dir`, or the XDG default.
    pub fn data_dir(&self) -> std::path::PathBuf {
        if !self.server.data_dir.is_empty() {
            return self.server.data_dir.clone().into();
        }
        std::env::var_os("XDG_DATA_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
            })
            .unwrap_or_else(|| std::path::PathBuf::from("."))
            .join("viaduct")
    }

    /// Connection limits from `[server]`.
    pub fn connection_limits(&self) -> crate::transport::Limits {
        let s = &self.server;
        crate::transport::Limits {
            max_connections: s.max_connections,
            max_per_ip: s.max_connections_per_ip,
            idle_timeout: Duration::from_secs(s.idle_timeout_s),
            handshake_timeout: Duration::from_millis(s.handshake_timeout_ms),
            // A message over the flood guard's limit would be dropped after
            // framing, leaving its sender waiting: on a connection it closes
            // the connection instead, whichever limit is lower.
            max_message: if self.limits.enabled {
                s.max_message_size.min(self.limits.max_message_bytes)
            } else {
                s.max_message_size
            },
        }
    }

    /// Whether a listener or a next hop may need TLS: a `tls:`/`wss:`
    /// listener, or any TLS setting (next hops named `sips:` or
    /// `;transport=tls` are only known at run time, so a configured CA or
    /// client certificate also turns the client side on).
    pub fn wants_tls(&self) -> bool {
        self.listeners()
            .map(|ls| ls.iter().any(|l| l.transport.is_secure()))
            .unwrap_or(false)
            || !self.tls.ca_file.is_empty()
            || !self.tls.client_cert_file.is_empty()
            || !self.tls.cert_file.is_empty()
    }

    /// RFC 3261 timers from the `[timers]` section.
    pub fn transaction_timers(&self) -> Timers {
        Timers::from_t1(
            Duration::from_millis(self.timers.t1_ms),
            Duration::from_millis(self.timers.t2_ms),
            Duration::from_millis(self.timers.t4_ms),
        )
    }

    /// Settings for the policy host, when a policy file is configured.
    pub fn policy_settings(&self) -> Option<viaduct_policy::PolicySettings> {
        let p = &self.policy;
        if p.file.is_empty() {
            return None;
        }
        let cache_dir = if p.cache_dir.is_empty() {
            std::env::var_os("XDG_CACHE_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
                })
                .map(|d| d.join("viaduct"))
        } else {
            Some(p.cache_dir.clone().into())
        };
        Some(viaduct_policy::PolicySettings {
            file: p.file.clone().into(),
            config: p
                .config
                .iter()
                .map(|(k, v)| (k.clone(), config_value(v)))
                .collect(),
            deadline: Duration::from_millis(p.deadline_ms),
            init_deadline: Duration::from_millis(p.init_deadline_ms),
            memory_limit: p.memory_mb << 20,
            fail_action: if p.fail_action == "relay" {
                viaduct_policy::FailAction::Relay
            } else {
                viaduct_policy::FailAction::Reject
            },
            cache_dir,
        })
    }

    /// The state backend from `[state]`.
    pub fn state_backend(&self) -> viaduct_policy::state::Backend {
        let st = &self.state;
        match st.backend.as_str() {
            "redis" => {
                viaduct_policy::state::Backend::Redis(viaduct_policy::state::RedisSettings {
                    url: st.url.clone(),
                    timeout: Duration::from_millis(st.timeout_ms),
                    prefix: st.prefix.clone(),
                })
            }
            _ => viaduct_policy::state::Backend::Memory,
        }
    }

    /// What a failed state call does, from `state.on_error`.
    /// The `[registrar]` limits, checked.
    pub fn registrar_settings(&self) -> Result<viaduct_policy::registrar::RegistrarSettings> {
        let r = &self.registrar;
        if r.min_expires > r.default_expires || r.default_expires > r.max_expires {
            bail!(
                "registrar: need min_expires <= default_expires <= max_expires (got {} / {} / {})",
                r.min_expires,
                r.default_expires,
                r.max_expires
            );
        }
        Ok(viaduct_policy::registrar::RegistrarSettings {
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            default_expires: r.default_expires,
            max_contacts: r.max_contacts,
        })
    }

    pub fn state_on_error(&self) -> viaduct_policy::state::OnError {
        if self.state.on_error == "closed" {
            viaduct_policy::state::OnError::Closed
        } else {
            viaduct_policy::state::OnError::Open
        }
    }

    /// Trusted source networks.
    pub fn trusted_sources(&self) -> Vec<(std::net::IpAddr, u8)> {
        self.policy
            .trusted_sources
            .iter()
            .filter_map(|c| viaduct_policy::parse_cidr(c))
            .collect()
    }

    /// The flood guard's settings from `[limits]`.
    pub fn flood_settings(&self) -> crate::flood::FloodSettings {
        let l = &self.limits;
        crate::flood::FloodSettings {
            enabled: l.enabled,
            window: Duration::from_millis(l.window_ms),
            max_messages: l.max_messages,
            ban: Duration::from_millis(l.ban_ms),
            max_message_bytes: l.max_message_bytes,
            max_headers: l.max_headers,
            max_sources: l.max_sources,
            allow: {
                let networks: Vec<_> = l
                    .allow
                    .iter()
                    .filter_map(|c| viaduct_policy::parse_cidr(c))
                    .collect();
                if networks.is_empty() {
                    crate::flood::Allowlist::default()
                } else {
                    crate::flood::Allowlist::new(move |ip| {
                        networks
                            .iter()
                            .any(|&(net, bits)| viaduct_policy::cidr_contains(net, bits, ip))
                    })
                }
            },
            log_interval: Duration::from_millis(l.log_interval_ms),
        }
    }

    /// The built-in router's targets.
    pub fn targets(&self) -> Vec<Target> {
        self.routing.targets.iter().map(Target::new).collect()
    }
}

/// A config value as the string a policy's `init` receives.
fn config_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(config_value).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c: Config = toml::from_str("").unwrap();
        c.check().unwrap();
        assert_eq!(
            c.listeners().unwrap()[0].addr,
            "127.0.0.1:5060".parse().unwrap()
        );
    }

    #[test]
    fn errors_name_the_field() {
        let c: Config = toml::from_str("[routing]\ntargets = [\"tel:+123\"]").unwrap();
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("routing.targets"));
        assert!(toml::from_str::<Config>("[server]\nlisen = []").is_err());
        let c: Config = toml::from_str("[limits]\nallow = [\"10.0.0.0/33\"]").unwrap();
        assert!(c.check().unwrap_err().to_string().contains("limits.allow"));
        assert!("sctp:127.0.0.1:5060".parse::<ListenAddr>().is_err());
        let half: Config = toml::from_str("[tls]\ncert_file = \"c.pem\"").unwrap();
        assert!(half
            .check()
            .unwrap_err()
            .to_string()
            .contains("tls.key_file"));
        let dns: Config = toml::from_str("[dns]\nservers = [\"127.0.0.1\"]").unwrap();
        assert!(dns.check().unwrap_err().to_string().contains("dns.servers"));
        for (toml, field) in [
            ("[state]\nbackend = \"etcd\"", "state.backend"),
            (
                "[state]\nbackend = \"redis\"\nurl = \"http://127.0.0.1\"",
                "state.url",
            ),
            (
                "[state]\nbackend = \"redis\"\nurl = \"redis://\"",
                "state.url",
            ),
            ("[state]\non_error = \"maybe\"", "state.on_error"),
            ("[state]\ntimeout_ms = 0", "state.timeout_ms"),
            ("[server]\ninstance_id = \"a b\"", "server.instance_id"),
            ("[server]\nadvertise = \"0.0.0.0\"", "server.advertise"),
        ] {
            let c: Config = toml::from_str(toml).unwrap();
            let e = c.check().unwrap_err().to_string();
            assert!(e.contains(field), "{toml}: {e}");
        }
        let redis: Config =
            toml::from_str("[state]\nbackend = \"redis\"\non_error = \"closed\"").unwrap();
        redis.check().unwrap();
        assert!(matches!(
            redis.state_backend(),
            viaduct_policy::state::Backend::Redis(r) if r.prefix == "viaduct:" && r.timeout == Duration::from_millis(50)
        ));
        assert_eq!(
            redis.state_on_error(),
            viaduct_policy::state::OnError::Closed
        );
        let wss = "wss:[::1]:8443".parse::<ListenAddr>().unwrap();
        assert_eq!(wss.transport, Transport::Wss);
        let named: Config =
            toml::from_str("[server]\ninstance_id = \"sip-0\"\nadvertise = \"192.0.2.1:5080\"")
                .unwrap();
        named.check().unwrap();
        assert_eq!(named.instance_id(), "sip-0");
        assert_eq!(named.advertise().and_then(|a| a.port), Some(5080));
        let open: Config = toml::from_str("[admin]\nlisten = \"127.0.0.2:9060\"").unwrap();
        assert!(open
            .check()
            .unwrap_err()
            .to_string()
            .contains("admin.token"));
        let open: Config =
            toml::from_str("[admin]\nlisten = \"0.0.0.0:9060\"\ntoken = \"t\"").unwrap();
        open.check().unwrap();
        assert_eq!(
            "udp:[::1]:5070".parse::<ListenAddr>().unwrap().addr,
            "[::1]:5070".parse().unwrap()
        );
    }
}
