//! RFC 3263 resolution of next hops named by host: NAPTR, then SRV, then
//! AAAA/A, with an answer cache the proxy core reads synchronously.
//!
//! The core never does I/O: on a cache miss it hands a [`DnsQuery`] to the
//! runtime, which calls [`Resolver::resolve`] and feeds the answer back. Every
//! answer (found, not found, failed) is stored in a cache keyed by the query,
//! so the core's next look through [`NameCache::cached`] is a hit until the
//! DNS TTL runs out.
//!
//! What this does not do: DNSSEC, single-flight of concurrent identical
//! queries (two requests for the same cold name both go to DNS; hickory's own
//! response cache absorbs most of the second), or search-list expansion (SIP
//! host names are absolute, so every name is queried as a fully qualified one).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::rdata::{NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use moka::sync::Cache;
use moka::Expiry;
use rand::Rng;
use viaduct_proxy::dns::{Destination, DnsAnswer, DnsError, DnsQuery, NameCache};
use viaduct_proxy::Transport;

/// How many answers the cache holds before evicting the least used. An answer
/// is a few hundred bytes, so this bounds the cache to a few MiB even when a
/// policy routes to many distinct hosts.
const MAX_CACHED_ANSWERS: u64 = 65_536;

/// How long a failed resolution (timeout, SERVFAIL, REFUSED) is remembered:
/// long enough that a burst of requests to a dead zone costs one query, short
/// enough that recovery is noticed at once.
const FAILED_TTL: Duration = Duration::from_secs(1);

/// A resolution is a chain of dependent queries (NAPTR, SRV, then A and AAAA
/// per target), each bounded by [`DnsSettings::timeout`]; the whole chain is
/// bounded by this many of them so a zone with many slow SRV targets cannot
/// hold a request for long.
const QUERIES_PER_RESOLUTION: u32 = 4;

/// The default SIP ports (RFC 3261 §19.1.2).
const SIP_PORT: u16 = 5060;
const SIPS_PORT: u16 = 5061;

/// How the resolver talks to DNS and how long it keeps what it learns.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// Name servers to ask, over UDP with TCP fallback. Empty: the system's
    /// (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// Bound on one DNS query, retransmission included.
    pub timeout: Duration,
    /// Floor for cached answers, so a zero TTL does not mean a query per request.
    pub min_ttl: Duration,
    /// Ceiling for cached answers, so a renumbered peer is noticed.
    pub max_ttl: Duration,
    /// How long "no such name" is remembered.
    pub negative_ttl: Duration,
    /// Transports this proxy has listeners for: only these are chosen from
    /// NAPTR and SRV records (RFC 3263 §4.1).
    pub transports: Vec<Transport>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(30),
            // The two every RFC 3261 element implements (§18); the binary
            // replaces this with the transports it has listeners for.
            transports: vec![Transport::Udp, Transport::Tcp],
        }
    }
}

/// The RFC 3263 resolver and its answer cache, shared by all workers.
pub struct Resolver {
    dns: TokioResolver,
    answers: Cache<DnsQuery, Cached>,
    settings: DnsSettings,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("settings", &self.settings)
            .field("cached_answers", &self.answers.entry_count())
            .finish()
    }
}

/// A cached answer and how long it may be used.
#[derive(Debug, Clone)]
struct Cached {
    answer: DnsAnswer,
    ttl: Duration,
}

/// Makes each cache entry live for its own DNS TTL.
struct TtlExpiry;

impl Expiry<DnsQuery, Cached> for TtlExpiry {
    fn expire_after_create(&self, _: &DnsQuery, value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    // A fresh resolution replaces the old answer and its lifetime.
    fn expire_after_update(
        &self,
        _: &DnsQuery,
        value: &Cached,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Destinations found so far and how long they stay valid: the shortest TTL
/// of every record (and every negative answer) that led to them.
#[derive(Debug)]
struct Found {
    dests: Vec<Destination>,
    ttl: Duration,
}

impl Found {
    fn new(ttl: Duration) -> Found {
        Found {
            dests: Vec::new(),
            ttl,
        }
    }

    fn append(&mut self, other: Found) {
        for d in other.dests {
            if !self.dests.contains(&d) {
                self.dests.push(d);
            }
        }
        self.ttl = self.ttl.min(other.ttl);
    }

    fn capped(mut self, ttl: Duration) -> Found {
        self.ttl = self.ttl.min(ttl);
        self
    }
}

/// The records of one type a name has, and how long they stay valid.
struct Records {
    data: Vec<RData>,
    ttl: Duration,
}

/// One step of a resolution. `NotFound` covers NXDOMAIN and NODATA, which
/// RFC 3263 treats alike (fall through to the next step); `Failed` stops the
/// resolution, so a fallback the zone did not mean is never cached.
type Step<T> = Result<T, DnsError>;

impl Resolver {
    /// Builds the resolver; no query is sent until [`Resolver::resolve`].
    pub fn new(settings: DnsSettings) -> anyhow::Result<Resolver> {
        // Both would otherwise panic later, in `Duration::clamp` or in a
        // resolution that times out before it starts.
        anyhow::ensure!(
            settings.min_ttl <= settings.max_ttl,
            "DNS min_ttl ({:?}) is above max_ttl ({:?})",
            settings.min_ttl,
            settings.max_ttl
        );
        anyhow::ensure!(!settings.timeout.is_zero(), "DNS timeout is zero");
        let provider = TokioRuntimeProvider::default();
        let mut builder = if settings.servers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| anyhow::anyhow!("reading the system DNS configuration: {e}"))?
        } else {
            let servers = settings
                .servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                provider,
            );
            // "Exactly these servers": /etc/hosts would answer before them.
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        // hickory bounds each attempt by `timeout` and retries `attempts`
        // more times; two halves keep one retransmission for a lost datagram
        // within the configured bound.
        opts.timeout = (settings.timeout / 2).max(Duration::from_millis(50));
        opts.attempts = 1;
        // Its response cache (shared SRV targets, A/AAAA behind several
        // queries) follows the same bounds, so it never outlives ours.
        opts.positive_min_ttl = Some(settings.min_ttl);
        opts.positive_max_ttl = Some(settings.max_ttl);
        opts.negative_max_ttl = Some(settings.negative_ttl);
        let dns = builder
            .build()
            .map_err(|e| anyhow::anyhow!("building the DNS resolver: {e}"))?;
        let answers = Cache::builder()
            .max_capacity(MAX_CACHED_ANSWERS)
            .expire_after(TtlExpiry)
            .build();
        Ok(Resolver {
            dns,
            answers,
            settings,
        })
    }

    /// Resolves `q` as RFC 3263 §4 says, caches the answer for its TTL and
    /// returns it. Never panics on DNS content; a resolution takes at most a
    /// few times [`DnsSettings::timeout`].
    pub async fn resolve(&self, q: &DnsQuery) -> DnsAnswer {
        let budget = self.settings.timeout.saturating_mul(QUERIES_PER_RESOLUTION);
        let outcome = match tokio::time::timeout(budget, self.resolve_uncached(q)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(DnsError::Failed(Arc::from(format!(
                "resolution took over {budget:?}"
            )))),
        };
        let (answer, ttl) = match outcome {
            Ok(found) if !found.dests.is_empty() => {
                let ttl = found
                    .ttl
                    .clamp(self.settings.min_ttl, self.settings.max_ttl);
                (Ok(Arc::from(found.dests)), ttl)
            }
            Ok(_) | Err(DnsError::NotFound) => {
                (Err(DnsError::NotFound), self.settings.negative_ttl)
            }
            Err(e @ DnsError::Failed(_)) => (Err(e), FAILED_TTL),
        };
        match &answer {
            Ok(dests) => tracing::debug!(query = ?q, answer = ?dests, ?ttl, "dns resolved"),
            Err(e) => tracing::info!(query = ?q, error = %e, ?ttl, "dns resolution failed"),
        }
        self.answers.insert(
            q.clone(),
            Cached {
                answer: answer.clone(),
                ttl,
            },
        );
        answer
    }

    /// RFC 3263 §4.1 (transport) and §4.2 (port and address), in the
    /// precedence the RFC gives them.
    async fn resolve_uncached(&self, q: &DnsQuery) -> Step<Found> {
        let transport = q.transport.map(|t| under_scheme(t, q.secure));
        let host = q.host.trim_end_matches('.');
        if let Some(ip) = ip_literal(host) {
            let t = transport.unwrap_or(default_transport(q.secure));
            return Ok(Found {
                dests: vec![Destination {
                    addr: SocketAddr::new(ip, q.port.unwrap_or(default_port(t))),
                    transport: t,
                }],
                ttl: self.settings.max_ttl,
            });
        }
        let name = fqdn(host)?;
        match (transport, q.port) {
            // §4.2: a port in the URI means no SRV, only the address records.
            (t, Some(port)) => {
                let t = t.unwrap_or(default_transport(q.secure));
                self.addresses(&name, port, t).await
            }
            // §4.1: a transport in the URI means no NAPTR; §4.2: SRV for it,
            // then the address records. RFC 7118 defines no SRV for WebSocket.
            (Some(t), None) => {
                if let Some(service) = srv_service(t) {
                    match self.srv(&fqdn(&format!("{service}.{host}"))?, t).await {
                        Err(DnsError::NotFound) => {}
                        found_or_failed => return found_or_failed,
                    }
                    let found = self.addresses(&name, default_port(t), t).await?;
                    return Ok(found.capped(self.settings.negative_ttl));
                }
                self.addresses(&name, default_port(t), t).await
            }
            (None, None) => self.naptr_srv_address(&name, host, q.secure).await,
        }
    }

    /// §4.1 with neither transport nor port: NAPTR, else SRV for each
    /// transport we have, else A/AAAA over UDP (TLS for `sips:`).
    async fn naptr_srv_address(&self, name: &Name, host: &str, secure: bool) -> Step<Found> {
        match self.lookup(name, RecordType::NAPTR).await {
            Ok(naptrs) => {
                for (t, replacement) in self.usable_naptrs(&naptrs.data, secure) {
                    match self.srv(&replacement, t).await {
                        Ok(found) => return Ok(found.capped(naptrs.ttl)),
                        // No usable target behind it: the zone's next
                        // choice in order (RFC 3263 §4.1).
                        Err(DnsError::NotFound) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(DnsError::NotFound) => {}
            Err(e) => return Err(e),
        }

        // RFC 3263 §4.1: without a usable NAPTR, an SRV query for each
        // transport we support. A NAPTR may appear later, so the negative TTL
        // bounds whatever follows.
        let want = |t: Transport| self.supports(t) && (!secure || t.is_secure());
        let srv_for = |t: Transport| async move {
            if !want(t) {
                return Err(DnsError::NotFound);
            }
            let service = srv_service(t).ok_or(DnsError::NotFound)?;
            self.srv(&fqdn(&format!("{service}.{host}"))?, t).await
        };
        let (tls, tcp, udp) = tokio::join!(
            srv_for(Transport::Tls),
            srv_for(Transport::Tcp),
            srv_for(Transport::Udp)
        );
        let mut found = Found::new(self.settings.negative_ttl);
        for step in [tls, tcp, udp] {
            match step {
                Ok(f) => found.append(f),
                Err(DnsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if !found.dests.is_empty() {
            return Ok(found);
        }

        // RFC 3263 §4.1: no SRV either, so UDP for `sip:` and TCP (with TLS)
        // for `sips:`, on the default port (§4.2).
        let t = default_transport(secure);
        let found = self.addresses(name, default_port(t), t).await?;
        Ok(found.capped(self.settings.negative_ttl))
    }

    /// The NAPTR records that lead to a transport we have, in the zone's
    /// order (RFC 3403 §4.1: order, then preference), each as the transport
    /// and the SRV name its "s" flag replacement names.
    fn usable_naptrs(&self, records: &[RData], secure: bool) -> Vec<(Transport, Name)> {
        let mut usable: Vec<(&NAPTR, Transport)> = records
            .iter()
            .filter_map(|r| match r {
                RData::NAPTR(n) => Some(n),
                _ => None,
            })
            // RFC 3263 §4.1: SIP NAPTRs are terminal with an SRV replacement.
            .filter(|n| n.flags.eq_ignore_ascii_case(b"s") && !n.replacement.is_root())
            .filter_map(|n| Some((n, naptr_transport(&n.services)?)))
            .filter(|(_, t)| self.supports(*t) && (!secure || t.is_secure()))
            .collect();
        usable.sort_by_key(|(n, _)| (n.order, n.preference));
        usable
            .into_iter()
            .map(|(n, t)| (t, n.replacement.clone()))
            .collect()
    }

    /// The destinations an SRV name leads to, in RFC 2782 order: lowest
    /// priority first, weighted random within a priority, each target's
    /// addresses in turn.
    async fn srv(&self, name: &Name, transport: Transport) -> Step<Found> {
        let records = self.lookup(name, RecordType::SRV).await?;
        let srvs: Vec<SRV> = records
            .data
            .into_iter()
            .filter_map(|r| match r {
                // RFC 2782: a target of "." means the service is not offered.
                RData::SRV(s) if !s.target.is_root() => Some(s),
                _ => None,
            })
            .collect();
        let ordered = rfc2782_order(srvs, &mut rand::thread_rng());
        let mut found = Found::new(records.ttl);
        for srv in ordered {
            match self.addresses(&srv.target, srv.port, transport).await {
                Ok(f) => found.append(f),
                // A target without addresses is a zone mistake; the others
                // may still be fine.
                Err(DnsError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if found.dests.is_empty() {
            return Err(DnsError::NotFound);
        }
        Ok(found)
    }

    /// The A then AAAA addresses of `name` at `port`: IPv4 first, as the
    /// network this proxy runs on is more likely to reach it.
    async fn addresses(&self, name: &Name, port: u16, transport: Transport) -> Step<Found> {
        let (v4, v6) = tokio::join!(
            self.lookup(name, RecordType::A),
            self.lookup(name, RecordType::AAAA)
        );
        let mut found = Found::new(Duration::MAX);
        let mut failure = None;
        for step in [v4, v6] {
            match step {
                Ok(records) => {
                    found.ttl = found.ttl.min(records.ttl);
                    found.dests.extend(records.data.iter().filter_map(|r| {
                        let ip = match r {
                            RData::A(a) => IpAddr::V4(a.0),
                            RData::AAAA(a) => IpAddr::V6(a.0),
                            _ => return None,
                        };
                        Some(Destination {
                            addr: SocketAddr::new(ip, port),
                            transport,
                        })
                    }));
                }
                Err(DnsError::NotFound) => {}
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            // A broken AAAA (or A) alone should not hide the family that
            // answered; ask again soon in case the other recovers.
            Some(e) if !found.dests.is_empty() => {
                tracing::info!(%name, error = %e, "dns: one address family failed");
                Ok(found.capped(self.settings.negative_ttl))
            }
            Some(e) => Err(e),
            None if found.dests.is_empty() => Err(DnsError::NotFound),
            None => Ok(found),
        }
    }

    /// One query: the records of `rtype` in the answer (CNAMEs followed by
    /// hickory) and how long they remain valid.
    async fn lookup(&self, name: &Name, rtype: RecordType) -> Step<Records> {
        match self.dns.lookup(name.clone(), rtype).await {
            Ok(lookup) => {
                let data: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                if data.is_empty() {
                    return Err(DnsError::NotFound);
                }
                let ttl = lookup
                    .valid_until()
                    .saturating_duration_since(Instant::now());
                Ok(Records { data, ttl })
            }
            Err(e) if e.is_no_records_found() => Err(DnsError::NotFound),
            Err(e) => Err(DnsError::Failed(Arc::from(format!("{rtype} {name}: {e}")))),
        }
    }

    fn supports(&self, t: Transport) -> bool {
        self.settings.transports.contains(&t)
    }
}

impl NameCache for Resolver {
    fn cached(&self, query: &DnsQuery) -> Option<DnsAnswer> {
        self.answers.get(query).map(|c| c.answer)
    }
}

/// The host as an IP address, IPv6 with or without its brackets.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// The host as an absolute DNS name; one that cannot be a name has no records.
fn fqdn(host: &str) -> Step<Name> {
    let mut name = Name::from_ascii(host).map_err(|_| DnsError::NotFound)?;
    name.set_fqdn(true);
    Ok(name)
}

/// RFC 5630 §3.1.3: in a `sips:` URI, `transport=tcp` means TLS over TCP, and
/// likewise `ws` means secure WebSocket.
fn under_scheme(t: Transport, secure: bool) -> Transport {
    match (t, secure) {
        (Transport::Tcp, true) => Transport::Tls,
        (Transport::Ws, true) => Transport::Wss,
        (t, _) => t,
    }
}

/// RFC 3263 §4.1: UDP for `sip:`, TLS over TCP for `sips:`.
fn default_transport(secure: bool) -> Transport {
    if secure {
        Transport::Tls
    } else {
        Transport::Udp
    }
}

/// RFC 3261 §19.1.2: 5061 for TLS-carried transports, 5060 for the rest.
fn default_port(t: Transport) -> u16 {
    if t.is_secure() {
        SIPS_PORT
    } else {
        SIP_PORT
    }
}

/// The SRV service and protocol labels (RFC 3263 §4.2); none for WebSocket,
/// which RFC 7118 reaches only through NAPTR replacements.
fn srv_service(t: Transport) -> Option<&'static str> {
    match t {
        Transport::Udp => Some("_sip._udp"),
        Transport::Tcp => Some("_sip._tcp"),
        Transport::Tls => Some("_sips._tcp"),
        Transport::Ws | Transport::Wss => None,
    }
}

/// The transport a NAPTR service field names (RFC 3263 §4.1, RFC 7118 §9).
fn naptr_transport(services: &[u8]) -> Option<Transport> {
    const SERVICES: [(&[u8], Transport); 5] = [
        (b"SIP+D2U", Transport::Udp),
        (b"SIP+D2T", Transport::Tcp),
        (b"SIPS+D2T", Transport::Tls),
        (b"SIP+D2W", Transport::Ws),
        (b"SIPS+D2W", Transport::Wss),
    ];
    SERVICES
        .iter()
        .find(|(s, _)| services.eq_ignore_ascii_case(s))
        .map(|(_, t)| *t)
}

/// RFC 2782 target selection as a total order: priorities ascending; within
/// one, repeatedly pick a record with probability proportional to its weight
/// (weight-0 records only get a small chance, by being first in the running
/// sum), remove it, and repeat.
fn rfc2782_order(mut srvs: Vec<SRV>, rng: &mut impl Rng) -> Vec<SRV> {
    srvs.sort_by_key(|s| (s.priority, s.weight != 0));
    let mut ordered = Vec::with_capacity(srvs.len());
    while !srvs.is_empty() {
        let priority = srvs[0].priority;
        let same = srvs.iter().take_while(|s| s.priority == priority).count();
        let mut group: Vec<SRV> = srvs.drain(..same).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|s| u32::from(s.weight)).sum();
            let pick = rng.gen_range(0..=total);
            let mut running = 0;
            let index = group
                .iter()
                .position(|s| {
                    running += u32::from(s.weight);
                    running >= pick
                })
                .unwrap_or(0);
            ordered.push(group.remove(index));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::net::UdpSocket;
    use std::process::{Child, Command, Stdio};

    /// A dnsmasq serving the test zone on its own port, killed on drop.
    struct Dnsmasq {
        child: Child,
        addr: SocketAddr,
    }

    impl Drop for Dnsmasq {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The zone every test shares (each on its own server):
    /// - `bridge.test`: NAPTR order 5 WS (unsupported by the tests' listeners),
    ///   order 10 UDP to b1 (priority 10) and b2 (priority 20, with AAAA),
    ///   order 20 SIPS to b3; its own A record for explicit ports.
    /// - `srvonly.test`: no NAPTR; SRV for TCP and TLS to t1.
    /// - `plain.test`: only an A record, TTL 1 s.
    /// - `lame.test`: SRV whose target does not exist.
    const ZONE: &[&str] = &[
        "--naptr-record=bridge.test,5,50,s,SIP+D2W,,_sip._ws.bridge.test",
        "--naptr-record=bridge.test,10,50,s,SIP+D2U,,_sip._udp.bridge.test",
        "--naptr-record=bridge.test,20,50,s,SIPS+D2T,,_sips._tcp.bridge.test",
        "--srv-host=_sip._ws.bridge.test,b1.bridge.test,8080,10,50",
        "--srv-host=_sip._udp.bridge.test,b2.bridge.test,15071,20,50",
        "--srv-host=_sip._udp.bridge.test,b1.bridge.test,15070,10,50",
        "--srv-host=_sips._tcp.bridge.test,b3.bridge.test,15072,10,50",
        "--host-record=bridge.test,127.0.0.9",
        "--host-record=b1.bridge.test,127.0.0.1",
        "--host-record=b2.bridge.test,127.0.0.2,::2",
        "--host-record=b3.bridge.test,127.0.0.5",
        "--srv-host=_sip._tcp.srvonly.test,t1.srvonly.test,5080,10,10",
        "--srv-host=_sips._tcp.srvonly.test,t1.srvonly.test,5081,10,10",
        "--host-record=t1.srvonly.test,127.0.0.4",
        "--host-record=plain.test,127.0.0.3,1",
        "--srv-host=_sip._udp.lame.test,missing.lame.test,5060,10,10",
    ];

    /// Starts dnsmasq on a free loopback port and waits until it answers.
    /// Panics (fails the test) if it cannot: these tests never skip.
    fn dnsmasq() -> Dnsmasq {
        let mut last_error = String::new();
        // A port found free can be taken before dnsmasq binds it (tests run in
        // parallel), so a failed start is retried on another.
        for _ in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("finding a free UDP port")
                .port();
            let spawned = Command::new("dnsmasq")
                .args([
                    "-k",
                    &format!("--port={port}"),
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--local=/test/",
                    "--local-ttl=60",
                    "--neg-ttl=60",
                ])
                .args(ZONE)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            let child = match spawned {
                Ok(c) => c,
                Err(e) => panic!(
                    "cannot run dnsmasq ({e}): these tests need it; \
                     install it with `apt-get install -y dnsmasq-base`"
                ),
            };
            let mut server = Dnsmasq {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            match wait_until_answering(&mut server) {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("dnsmasq did not start: {last_error}");
    }

    fn wait_until_answering(server: &mut Dnsmasq) -> Result<(), String> {
        // A query for plain.test A, id 0x5151, recursion desired.
        let mut query = vec![0x51, 0x51, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["plain", "test"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = server.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                return Err(format!("exited with {status}: {}", stderr.trim()));
            }
            let _ = socket.send_to(&query, server.addr);
            let mut buf = [0u8; 512];
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                if n >= 2 && buf[..2] == [0x51, 0x51] {
                    return Ok(());
                }
            }
        }
        Err("no answer within 5 s".to_string())
    }

    fn settings(server: SocketAddr) -> DnsSettings {
        DnsSettings {
            servers: vec![server],
            timeout: Duration::from_secs(1),
            transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            ..DnsSettings::default()
        }
    }

    fn query(
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> DnsQuery {
        DnsQuery {
            host: host.to_string(),
            port,
            transport,
            secure,
        }
    }

    fn dest(addr: &str, transport: Transport) -> Destination {
        Destination {
            addr: addr.parse().unwrap(),
            transport,
        }
    }

    /// Resolves with a bound, so a hung query fails the test instead of hanging it.
    async fn resolve(r: &Resolver, q: &DnsQuery) -> DnsAnswer {
        tokio::time::timeout(Duration::from_secs(10), r.resolve(q))
            .await
            .expect("resolution finished within 10 s")
    }

    #[tokio::test]
    async fn naptr_leads_to_srv_targets_in_priority_order() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let q = query("bridge.test", None, None, false);
        let answer = resolve(&r, &q).await.unwrap();
        // The order-5 WS record is skipped: no WS listener.
        assert_eq!(
            &answer[..],
            &[
                dest("127.0.0.1:15070", Transport::Udp),
                dest("127.0.0.2:15071", Transport::Udp),
                dest("[::2]:15071", Transport::Udp),
            ]
        );
    }

    #[tokio::test]
    async fn secure_query_takes_only_tls() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let answer = resolve(&r, &query("bridge.test", None, None, true))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.5:15072", Transport::Tls)]);
        let answer = resolve(&r, &query("srvonly.test", None, None, true))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.4:5081", Transport::Tls)]);
    }

    #[tokio::test]
    async fn srv_without_naptr() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let answer = resolve(&r, &query("srvonly.test", None, None, false))
            .await
            .unwrap();
        assert_eq!(
            &answer[..],
            &[
                dest("127.0.0.4:5081", Transport::Tls),
                dest("127.0.0.4:5080", Transport::Tcp),
            ]
        );
        // Without a TLS listener only the TCP record qualifies.
        let r = Resolver::new(DnsSettings {
            transports: vec![Transport::Udp, Transport::Tcp],
            ..settings(server.addr)
        })
        .unwrap();
        let answer = resolve(&r, &query("srvonly.test", None, None, false))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.4:5080", Transport::Tcp)]);
    }

    #[tokio::test]
    async fn neither_naptr_nor_srv_falls_back_to_address_on_5060() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let answer = resolve(&r, &query("plain.test", None, None, false))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.3:5060", Transport::Udp)]);
        let answer = resolve(&r, &query("plain.test", None, None, true))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.3:5061", Transport::Tls)]);
    }

    #[tokio::test]
    async fn explicit_port_skips_naptr_and_srv() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let answer = resolve(&r, &query("bridge.test", Some(5070), None, false))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.9:5070", Transport::Udp)]);
        let answer = resolve(
            &r,
            &query("bridge.test", Some(5070), Some(Transport::Tcp), false),
        )
        .await
        .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.9:5070", Transport::Tcp)]);
    }

    #[tokio::test]
    async fn explicit_transport_uses_its_srv_then_address() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let tcp = Some(Transport::Tcp);
        let answer = resolve(&r, &query("srvonly.test", None, tcp, false))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.4:5080", Transport::Tcp)]);
        // No _sip._tcp SRV (NAPTR says UDP, but a transport skips NAPTR).
        let answer = resolve(&r, &query("bridge.test", None, tcp, false))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.9:5060", Transport::Tcp)]);
        // sips: with transport=tcp is TLS (RFC 5630).
        let answer = resolve(&r, &query("srvonly.test", None, tcp, true))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.4:5081", Transport::Tls)]);
        // No SRV for WebSocket: straight to the address.
        let ws = Some(Transport::Ws);
        let answer = resolve(&r, &query("plain.test", None, ws, false))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("127.0.0.3:5060", Transport::Ws)]);
    }

    #[tokio::test]
    async fn nxdomain_is_not_found_and_cached() {
        let mut server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let q = query("nope.test", None, None, false);
        assert_eq!(resolve(&r, &q).await, Err(DnsError::NotFound));
        // With the server gone, the answer can only come from the cache.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        assert_eq!(r.cached(&q), Some(Err(DnsError::NotFound)));
    }

    #[tokio::test]
    async fn lame_srv_target_is_not_found() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let q = query("lame.test", None, Some(Transport::Udp), false);
        assert_eq!(resolve(&r, &q).await, Err(DnsError::NotFound));
    }

    #[tokio::test]
    async fn cached_is_empty_before_resolve_and_set_after() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        let q = query("bridge.test", None, None, false);
        assert!(r.cached(&q).is_none());
        let answer = resolve(&r, &q).await;
        assert!(answer.is_ok());
        assert_eq!(r.cached(&q), Some(answer));
        // A different query for the same host is a different entry.
        assert!(r.cached(&query("bridge.test", None, None, true)).is_none());
    }

    #[tokio::test]
    async fn entries_expire_with_their_ttl() {
        let server = dnsmasq();
        let r = Resolver::new(DnsSettings {
            negative_ttl: Duration::from_secs(1),
            ..settings(server.addr)
        })
        .unwrap();
        // plain.test has a 1 s TTL; bridge.test's records have 60 s.
        let short = query("plain.test", Some(5060), None, false);
        let long = query("bridge.test", None, None, false);
        let missing = query("nope.test", None, None, false);
        assert!(resolve(&r, &short).await.is_ok());
        assert!(resolve(&r, &long).await.is_ok());
        assert_eq!(resolve(&r, &missing).await, Err(DnsError::NotFound));
        assert!(r.cached(&short).is_some());
        assert!(r.cached(&missing).is_some());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(r.cached(&short).is_none(), "1 s TTL expired");
        assert!(r.cached(&missing).is_none(), "1 s negative TTL expired");
        assert!(r.cached(&long).is_some(), "60 s TTL still valid");
        // And resolving again works and refills the entry.
        assert!(resolve(&r, &short).await.is_ok());
        assert!(r.cached(&short).is_some());
    }

    #[tokio::test]
    async fn server_refusal_is_failed_not_not_found() {
        let server = dnsmasq();
        let r = Resolver::new(settings(server.addr)).unwrap();
        // dnsmasq refuses names outside its local domain (no upstream).
        let q = query("elsewhere.example", Some(5060), None, false);
        assert!(matches!(resolve(&r, &q).await, Err(DnsError::Failed(_))));
    }

    #[tokio::test]
    async fn silent_server_times_out_within_the_bound() {
        // A socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = Resolver::new(DnsSettings {
            servers: vec![silent.local_addr().unwrap()],
            timeout: Duration::from_millis(300),
            ..DnsSettings::default()
        })
        .unwrap();
        let started = Instant::now();
        let answer = resolve(&r, &query("plain.test", None, None, false)).await;
        assert!(matches!(answer, Err(DnsError::Failed(_))), "{answer:?}");
        assert!(started.elapsed() < Duration::from_millis(300 * 4 + 500));
    }

    #[tokio::test]
    async fn ip_literals_need_no_dns() {
        let r = Resolver::new(DnsSettings {
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            ..DnsSettings::default()
        })
        .unwrap();
        let answer = resolve(&r, &query("192.0.2.7", None, None, false))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("192.0.2.7:5060", Transport::Udp)]);
        let answer = resolve(&r, &query("[2001:db8::1]", None, None, true))
            .await
            .unwrap();
        assert_eq!(&answer[..], &[dest("[2001:db8::1]:5061", Transport::Tls)]);
        let answer = resolve(
            &r,
            &query("2001:db8::1", Some(7000), Some(Transport::Tcp), false),
        )
        .await
        .unwrap();
        assert_eq!(&answer[..], &[dest("[2001:db8::1]:7000", Transport::Tcp)]);
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let settings = DnsSettings {
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            min_ttl: Duration::from_secs(10),
            max_ttl: Duration::from_secs(5),
            ..DnsSettings::default()
        };
        assert!(Resolver::new(settings).is_err());
        let settings = DnsSettings {
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            timeout: Duration::ZERO,
            ..DnsSettings::default()
        };
        assert!(Resolver::new(settings).is_err());
        // Building needs no runtime: the binary may build it before starting one.
        let settings = DnsSettings {
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            ..DnsSettings::default()
        };
        assert!(Resolver::new(settings).is_ok());
    }

    #[test]
    fn resolver_can_be_shared_by_workers() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let r = Resolver::new(DnsSettings {
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            ..DnsSettings::default()
        })
        .unwrap();
        send_sync(&r);
        // Workers spawn the resolution on a multi-threaded runtime.
        send(r.resolve(&query("example.test", None, None, false)));
    }

    #[test]
    fn naptr_services_map_to_transports() {
        assert_eq!(naptr_transport(b"SIP+D2U"), Some(Transport::Udp));
        assert_eq!(naptr_transport(b"sips+d2t"), Some(Transport::Tls));
        assert_eq!(naptr_transport(b"SIPS+D2W"), Some(Transport::Wss));
        assert_eq!(naptr_transport(b"E2U+sip"), None);
        assert_eq!(naptr_transport(b""), None);
    }

    #[test]
    fn rfc2782_orders_by_priority_then_weight() {
        let srv = |priority, weight, port| SRV::new(priority, weight, port, Name::root());
        let mut rng = StdRng::seed_from_u64(3263);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let ordered = rfc2782_order(
                vec![srv(20, 0, 3), srv(10, 10, 2), srv(10, 90, 1)],
                &mut rng,
            );
            let ports: Vec<u16> = ordered.iter().map(|s| s.port).collect();
            assert_eq!(ports.len(), 3);
            assert_eq!(ports[2], 3, "priority 20 comes last");
            if ports[0] == 1 {
                heavy_first += 1;
            }
        }
        // Weight 90 of 100 is picked first about 90% of the time.
        assert!((850..=950).contains(&heavy_first), "{heavy_first}");
        assert!(rfc2782_order(Vec::new(), &mut rng).is_empty());
        // All-zero weights still yield every record.
        let ordered = rfc2782_order(vec![srv(1, 0, 1), srv(1, 0, 2)], &mut rng);
        assert_eq!(ordered.len(), 2);
    }

    #[test]
    fn ip_literal_forms() {
        assert_eq!(ip_literal("10.0.0.1"), Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(ip_literal("[::1]"), "::1".parse().ok());
        assert_eq!(ip_literal("::1"), "::1".parse().ok());
        assert_eq!(ip_literal("example.com"), None);
        assert_eq!(ip_literal("[example.com]"), None);
    }
}
