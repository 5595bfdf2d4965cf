//! TLS material for the TLS and WSS transports: the server certificate (the
//! configured PEM files, or a self-signed one generated once and kept under
//! the data dir), the client side for outbound hops, and hot reload.
//!
//! SIP over TLS protects each hop, not the message end to end (RFC 3261
//! §26.2.1, §26.3.1): the proxy presents a certificate to whoever connects
//! and checks the certificate of the next hop it connects to. Per RFC 5922
//! §4 the identity to check is the host of the SIP URI being sent to, not
//! the host an SRV lookup gave; [`Tls::server_name`] turns that host into
//! the name rustls checks: a DNS name (sent as SNI, matched against DNS
//! SANs) or an IP literal (matched against IP SANs, no SNI per RFC 6066 §3).
//!
//! What it does:
//! - Server: TLS 1.3 and 1.2 (softphones and PJSIP builds on OpenSSL 1.0.2
//!   speak only 1.2), ring as the one crypto provider (the process-wide
//!   default is never consulted), no client certificate asked for.
//! - Client: the next hop is checked against `ca_file` or the system roots;
//!   an optional client certificate for trunks that want mutual TLS.
//! - Reload: [`Tls::reload`] re-reads every configured file and, only when
//!   all of them load, swaps the server certificate inside the resolver the
//!   server config holds and replaces the client config. A handshake takes
//!   the certificate when it starts, so new handshakes get the new one while
//!   established connections keep running on the keys they negotiated: they
//!   never look at the resolver again. A file that does not load changes
//!   nothing and the error says which file and why.
//!
//! What it does not: no sockets or handshake timeouts (the transport owns
//! those); one server certificate, not one per SNI name; no CRL or OCSP; no
//! `sip:` URI SAN matching (RFC 5922 §7.1), only DNS and IP SANs as webpki
//! checks them; no checking of inbound client certificates (callers
//! authenticate with digest); and no `sips:` policy (RFC 5630 asks for TLS
//! on every hop; routing enforces that, not this module).

use anyhow::{anyhow, bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

/// TLS 1.3 first; 1.2 because deployed phones and PJSIP's OpenSSL 1.0.2 stop there.
const VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Apple platforms refuse server certificates valid for more than 825 days,
/// even ones the user trusts by hand.
const GENERATED_VALIDITY: Duration = Duration::from_secs(800 * 86_400);

/// A stored self-signed certificate this close to expiry is replaced at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// Where the certificates come from and how outbound hops are checked.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM chain, leaf first; needs `key_file`. `None` (with `key_file`
    /// `None`): a self-signed certificate under `data_dir/tls/`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: Option<PathBuf>,
    /// Outbound: trust these CAs (PEM, one or more) instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Outbound mutual TLS (trunk providers ask for it); needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key for `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Outbound certificate checking; `false` accepts any certificate (labs only).
    pub verify_peer: bool,
    /// A generated certificate is kept in `data_dir/tls/{cert,key}.pem`.
    pub data_dir: PathBuf,
    /// SANs of a generated certificate: the listen IPs and `localhost`.
    /// IP literals become IP SANs (`0.0.0.0` and `::` are skipped: nobody
    /// connects to them), anything else a DNS SAN.
    pub names: Vec<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_file: None,
            key_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            verify_peer: true,
            data_dir: PathBuf::from("."),
            names: vec!["localhost".into()],
        }
    }
}

/// The loaded TLS material, shared by every TLS and WSS listener and
/// outbound connection behind an `Arc`.
pub struct Tls {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    server_cert: Arc<ServerCert>,
    server_config: Arc<ServerConfig>,
    client_config: RwLock<Arc<ClientConfig>>,
    /// Read once: parsing the system bundle costs ~300 KB of PEM.
    system_roots: Option<Arc<RootCertStore>>,
    cert_path: PathBuf,
    /// Two reloads at once would interleave their swaps.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_path", &self.cert_path)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads (or generates) the server certificate and builds both configs.
    pub fn load(settings: TlsSettings) -> Result<Arc<Tls>> {
        let provider = ring_provider();
        let (cert, cert_path) = match pair(&settings.cert_file, &settings.key_file, "")? {
            Some((cert, key)) => {
                let loaded = load_pair(cert, key, &provider)?;
                tracing::info!(
                    fingerprint = %fingerprint(&loaded),
                    cert = %cert.display(),
                    "TLS: certificate loaded",
                );
                (loaded, cert.to_path_buf())
            }
            None => self_signed(&settings, &provider)?,
        };
        let server_cert = Arc::new(ServerCert(RwLock::new(Arc::new(cert))));
        let server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)?
            .with_no_client_auth()
            .with_cert_resolver(server_cert.clone());
        if !settings.verify_peer {
            tracing::warn!(
                "TLS: verify_peer = false: outbound TLS accepts any certificate; labs only"
            );
        }
        let system_roots = match settings.verify_peer && settings.ca_file.is_none() {
            true => Some(Arc::new(system_roots()?)),
            false => None,
        };
        let client_config = client_config(&settings, &provider, system_roots.as_ref())?;
        Ok(Arc::new(Tls {
            settings,
            provider,
            server_cert,
            server_config: Arc::new(server_config),
            client_config: RwLock::new(Arc::new(client_config)),
            system_roots,
            cert_path,
            reloading: Mutex::new(()),
        }))
    }

    /// Server side for TLS and WSS listeners; sees certificates `reload` swaps in.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config.clone())
    }

    /// Client side for outbound hops, as of the last successful load or reload.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        let config = self
            .client_config
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        tokio_rustls::TlsConnector::from(config.clone())
    }

    /// The name to verify a next hop against: an IP literal (`[::1]` too)
    /// checks IP SANs and sends no SNI; anything else is a DNS name, sent as
    /// SNI (a trailing dot dropped, RFC 6066 §3).
    pub fn server_name(host: &str) -> Result<ServerName<'static>> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if let Ok(ip) = bare.unwrap_or(host).parse::<IpAddr>() {
            return Ok(ServerName::IpAddress(ip.into()));
        }
        let dns = host.strip_suffix('.').unwrap_or(host);
        match bare {
            None => ServerName::try_from(dns.to_owned())
                .map_err(|e| anyhow!("{host:?} is neither an IP address nor a DNS name: {e}")),
            Some(_) => bail!("{host:?} is not an IPv6 address"),
        }
    }

    /// Re-reads the configured certificate, key, CA and client files. On any
    /// error nothing changes and the error names the file; the old
    /// certificate keeps serving. A generated certificate is left as it is.
    pub fn reload(&self) -> Result<()> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let s = &self.settings;
        let server = match pair(&s.cert_file, &s.key_file, "")? {
            Some((cert, key)) => Some(load_pair(cert, key, &self.provider)?),
            None => None,
        };
        let client = match s.ca_file.is_some() || s.client_cert_file.is_some() {
            true => Some(client_config(
                s,
                &self.provider,
                self.system_roots.as_ref(),
            )?),
            false => None,
        };
        if let Some(cert) = server {
            tracing::info!(
                fingerprint = %fingerprint(&cert),
                cert = %self.cert_path.display(),
                "TLS: certificate reloaded",
            );
            self.server_cert.set(Arc::new(cert));
        }
        if let Some(client) = client {
            *self
                .client_config
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(client);
            tracing::info!("TLS: outbound CA and client certificate reloaded");
        }
        Ok(())
    }

    /// SHA-256 of the current leaf certificate, `AB:CD:...` as `openssl x509
    /// -fingerprint -sha256` prints it: what a user compares before trusting it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.server_cert.current())
    }

    /// The PEM chain the server presents: the configured `cert_file`, or the
    /// generated `data_dir/tls/cert.pem`, which clients can trust as a CA.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Every configured file that `reload` re-reads (empty when the
    /// certificate is generated and no CA or client files are set).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let s = &self.settings;
        [
            &s.cert_file,
            &s.key_file,
            &s.ca_file,
            &s.client_cert_file,
            &s.client_key_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// Reloads `tls` when a watched file changes (debounced, see
/// [`crate::reload::watch_files`]); `None` when there is nothing to watch.
/// Call inside the tokio runtime; dropping the watcher stops it.
pub fn watch(tls: Arc<Tls>) -> Result<Option<notify::RecommendedWatcher>> {
    let files = tls.watched_files();
    if files.is_empty() {
        return Ok(None);
    }
    let (watcher, mut changes) = crate::reload::watch_files(&files)?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let tls = tls.clone();
            let reloaded =
                tokio::task::spawn_blocking(move || crate::reload::reload_tls(&tls, "file change"))
                    .await;
            if let Err(e) = reloaded {
                tracing::warn!(error = %e, "TLS: reload task failed");
            }
        }
    });
    Ok(Some(watcher))
}

/// The server certificate, swappable under a lock held only to clone an `Arc`.
#[derive(Debug)]
struct ServerCert(RwLock<Arc<CertifiedKey>>);

impl ServerCert {
    fn current(&self) -> Arc<CertifiedKey> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, cert: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = cert;
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// `verify_peer = false`: any certificate for any name. The handshake
/// signature is still checked, so the peer at least holds the key it shows.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The one crypto provider, never the process-wide default. rustls 0.23.48
/// deprecates ring's provider for lacking post-quantum key exchange; ring is
/// still the choice here (no C toolchain for aws-lc-rs), and SIP peers do not
/// offer ML-KEM anyway.
#[allow(deprecated)]
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Both files of a cert/key pair, or neither; `prefix` is `""` or `"client_"`.
fn pair<'a>(
    cert: &'a Option<PathBuf>,
    key: &'a Option<PathBuf>,
    prefix: &str,
) -> Result<Option<(&'a Path, &'a Path)>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(cert), None) => bail!(
            "tls {prefix}key_file is not set: {prefix}cert_file {} needs its private key",
            cert.display()
        ),
        (None, Some(key)) => bail!(
            "tls {prefix}cert_file is not set: {prefix}key_file {} needs its certificate",
            key.display()
        ),
    }
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let chain = read_certs(cert)?;
    let signing_key = provider
        .key_provider
        .load_private_key(read_key(key)?)
        .map_err(|e| anyhow!("unusable private key in {}: {e}", key.display()))?;
    let loaded = CertifiedKey::new(chain, signing_key);
    match loaded.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(loaded)
        }
        Err(rustls::Error::InconsistentKeys(_)) => bail!(
            "the private key in {} does not match the certificate in {}",
            key.display(),
            cert.display()
        ),
        Err(e) => bail!("bad certificate in {}: {e}", cert.display()),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("bad PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "no certificate in {} (expected PEM \"BEGIN CERTIFICATE\")",
            path.display()
        );
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) if pem.windows(9).any(|w| w == b"ENCRYPTED") => bail!(
            "encrypted private key in {}: not supported, decrypt it (openssl pkey -in KEY -out KEY.pem)",
            path.display()
        ),
        Err(pem::Error::NoItemsFound) => bail!(
            "no private key in {} (expected PEM PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ),
        Err(e) => bail!("bad PEM in {}: {e}", path.display()),
    }
}

/// SHA-256 of the leaf, uppercase hex bytes joined by colons.
fn fingerprint(cert: &CertifiedKey) -> String {
    let leaf = cert.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    let hex: Vec<String> = Sha256::digest(leaf)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    hex.join(":")
}

fn client_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    system_roots: Option<&Arc<RootCertStore>>,
) -> Result<ClientConfig> {
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(VERSIONS)?;
    let builder = match (settings.verify_peer, &settings.ca_file) {
        (false, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider.clone()))),
        (true, Some(ca)) => builder.with_root_certificates(ca_roots(ca)?),
        (true, None) => builder.with_root_certificates(
            system_roots
                .cloned()
                .ok_or_else(|| anyhow!("no system CA certificates loaded"))?,
        ),
    };
    let client = &settings.client_cert_file;
    Ok(match pair(client, &settings.client_key_file, "client_")? {
        Some((cert, key)) => {
            let certified = load_pair(cert, key, provider)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        None => builder.with_no_client_auth(),
    })
}

/// A configured CA file is the operator's choice: any bad entry is an error.
fn ca_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certs(path)?.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| anyhow!("bad CA certificate #{} in {}: {e}", i + 1, path.display()))?;
    }
    Ok(roots)
}

/// The system bundle is not ours to fix: skip what does not parse, fail only
/// when nothing is left.
fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "TLS: skipping unreadable system CA certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "TLS: skipping system CA certificates that do not parse"
        );
    }
    if added == 0 {
        bail!(
            "no system CA certificates found: install ca-certificates, set tls ca_file, or (labs only) verify_peer = false",
        );
    }
    tracing::debug!(added, "TLS: system CA certificates loaded");
    Ok(roots)
}

/// The generated certificate: reused from `data_dir/tls/` when it still
/// covers every name for at least [`RENEW_BEFORE`], else made anew.
fn self_signed(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<(CertifiedKey, PathBuf)> {
    let dir = settings.data_dir.join("tls");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    let names = san_names(&settings.names);
    if cert_path.exists() || key_path.exists() {
        let stored = load_pair(&cert_path, &key_path, provider);
        match stored.and_then(|cert| covers(&cert, &names, provider).map(|()| cert)) {
            Ok(cert) => {
                tracing::info!(
                    fingerprint = %fingerprint(&cert),
                    cert = %cert_path.display(),
                    "TLS: self-signed certificate reused",
                );
                return Ok((cert, cert_path));
            }
            Err(e) => {
                tracing::info!(
                    reason = %format!("{e:#}"),
                    "TLS: stored self-signed certificate replaced",
                )
            }
        }
    }
    let key = rcgen::KeyPair::generate().context("generating a TLS key")?;
    // rcgen makes IP SANs of the names that parse as IPs, DNS SANs of the rest.
    let mut params =
        rcgen::CertificateParams::new(names.clone()).context("TLS certificate names")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Viaduct self-signed");
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = SystemTime::now();
    params.not_before = now
        .checked_sub(Duration::from_secs(86_400))
        .unwrap_or(now)
        .into();
    params.not_after = (now + GENERATED_VALIDITY).into();
    let cert = params
        .self_signed(&key)
        .context("signing the TLS certificate")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomically(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(&cert_path, cert.pem().as_bytes(), 0o644)?;
    let loaded = load_pair(&cert_path, &key_path, provider)?;
    tracing::info!(
        fingerprint = %fingerprint(&loaded),
        cert = %cert_path.display(),
        names = ?names,
        "TLS: self-signed certificate generated; trust this file or its fingerprint",
    );
    Ok((loaded, cert_path))
}

/// The names as SANs: IPs canonical and unbracketed, unspecified addresses
/// dropped, duplicates removed, `localhost` when nothing is left.
fn san_names(names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names.iter().map(|n| n.trim()) {
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let name = match bare.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => continue,
            Ok(ip) => ip.to_string(),
            Err(_) => bare.to_owned(),
        };
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        out.push("localhost".into());
    }
    out
}

/// Would a client that trusts this certificate accept it for every name,
/// [`RENEW_BEFORE`] from now? Asked of webpki itself, so no SAN parsing here.
fn covers(cert: &CertifiedKey, names: &[String], provider: &Arc<CryptoProvider>) -> Result<()> {
    let leaf = cert.end_entity_cert()?;
    let mut roots = RootCertStore::empty();
    roots.add(leaf.clone())?;
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let later = SystemTime::now() + RENEW_BEFORE;
    let later = UnixTime::since_unix_epoch(later.duration_since(SystemTime::UNIX_EPOCH)?);
    for name in names {
        verifier
            .verify_server_cert(leaf, &[], &Tls::server_name(name)?, &[], later)
            .map_err(|e| {
                anyhow!(
                    "not valid for {name} in {} days: {e}",
                    RENEW_BEFORE.as_secs() / 86_400
                )
            })?;
    }
    Ok(())
}

/// Write then rename, so a crash never leaves half a key; `mode` applies
/// from creation, so the key is never readable by others.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::client::TlsStream;

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings {
            data_dir: dir.to_path_buf(),
            names: vec!["127.0.0.1".into(), "::1".into(), "localhost".into()],
            ..TlsSettings::default()
        }
    }

    /// A client that trusts `ca` (its own certificate is generated in `dir`).
    fn client_trusting(dir: &Path, ca: &Path) -> Arc<Tls> {
        Tls::load(TlsSettings {
            ca_file: Some(ca.to_path_buf()),
            ..settings(dir)
        })
        .unwrap()
    }

    /// Writes a fresh self-signed certificate for 127.0.0.1 as `{stem}.pem` and `{stem}.key`.
    fn make_cert(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    /// Accepts TLS connections and echoes what each one sends.
    async fn echo_server(tls: &Tls) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.acceptor();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let (mut rx, mut tx) = tokio::io::split(stream);
                        let _ = tokio::io::copy(&mut rx, &mut tx).await;
                    }
                });
            }
        });
        addr
    }

    async fn connect(
        connector: tokio_rustls::TlsConnector,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        connector
            .connect(Tls::server_name("127.0.0.1").unwrap(), tcp)
            .await
    }

    async fn ping(stream: &mut TlsStream<TcpStream>, msg: &[u8]) {
        stream.write_all(msg).await.unwrap();
        let mut back = vec![0; msg.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }

    fn peer_fingerprint(stream: &TlsStream<TcpStream>) -> String {
        let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        fingerprint(&CertifiedKey::new(vec![leaf], Arc::new(NoKey)))
    }

    /// Lets `fingerprint` hash a bare certificate.
    #[derive(Debug)]
    struct NoKey;
    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(&self, _: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }

    #[test]
    fn tls_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<Tls>();
    }

    #[test]
    fn generated_cert_is_stored_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Tls::load(settings(dir.path())).unwrap();
        let cert = dir.path().join("tls/cert.pem");
        assert_eq!(first.cert_path(), cert);
        assert!(first.watched_files().is_empty());
        let fp = first.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp
            .chars()
            .all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        let second = Tls::load(settings(dir.path())).unwrap();
        assert_eq!(second.fingerprint(), fp);

        // A name the stored certificate does not cover: made anew.
        let mut more = settings(dir.path());
        more.names.push("sip.example.com".into());
        assert_ne!(Tls::load(more).unwrap().fingerprint(), fp);
    }

    #[tokio::test]
    async fn handshake_by_ip_trusting_generated_cert() {
        let dir = tempfile::tempdir().unwrap();
        let server = Tls::load(settings(&dir.path().join("server"))).unwrap();
        let addr = echo_server(&server).await;

        let client = client_trusting(&dir.path().join("client"), server.cert_path());
        let mut stream = connect(client.connector(), addr).await.unwrap();
        assert_eq!(peer_fingerprint(&stream), server.fingerprint());
        ping(&mut stream, b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n").await;

        // The system roots do not know a self-signed certificate.
        match Tls::load(settings(&dir.path().join("system"))) {
            Ok(system) => assert!(connect(system.connector(), addr).await.is_err()),
            Err(e) => assert!(format!("{e:#}").contains("no system CA"), "{e:#}"),
        }

        // Labs: verify_peer = false accepts it.
        let lab = TlsSettings {
            verify_peer: false,
            ..settings(&dir.path().join("lab"))
        };
        let mut stream = connect(Tls::load(lab).unwrap().connector(), addr)
            .await
            .unwrap();
        ping(&mut stream, b"lab").await;
    }

    #[tokio::test]
    async fn tls12_only_client_connects() {
        let dir = tempfile::tempdir().unwrap();
        let server = Tls::load(settings(dir.path())).unwrap();
        let addr = echo_server(&server).await;
        let config = ClientConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(ca_roots(server.cert_path()).unwrap())
            .with_no_client_auth();
        let mut stream = connect(Arc::new(config).into(), addr).await.unwrap();
        assert_eq!(
            stream.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        ping(&mut stream, b"REGISTER").await;
    }

    #[tokio::test]
    async fn reload_swaps_cert_for_new_handshakes_only() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, key_a) = make_cert(dir.path(), "a");
        let (cert_b, key_b) = make_cert(dir.path(), "b");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::copy(&cert_a, &cert).unwrap();
        std::fs::copy(&key_a, &key).unwrap();
        let server = Tls::load(TlsSettings {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ..settings(dir.path())
        })
        .unwrap();
        assert_eq!(server.watched_files(), vec![cert.clone(), key.clone()]);
        let addr = echo_server(&server).await;

        // One CA file with both certificates.
        let both = dir.path().join("both.pem");
        let pems = [
            std::fs::read(&cert_a).unwrap(),
            std::fs::read(&cert_b).unwrap(),
        ]
        .concat();
        std::fs::write(&both, pems).unwrap();
        let client = client_trusting(&dir.path().join("client"), &both);

        let mut old = connect(client.connector(), addr).await.unwrap();
        let fp_a = server.fingerprint();
        assert_eq!(peer_fingerprint(&old), fp_a);

        std::fs::copy(&cert_b, &cert).unwrap();
        std::fs::copy(&key_b, &key).unwrap();
        server.reload().unwrap();
        let fp_b = server.fingerprint();
        assert_ne!(fp_a, fp_b);

        let mut new = connect(client.connector(), addr).await.unwrap();
        assert_eq!(peer_fingerprint(&new), fp_b);
        ping(&mut old, b"BYE opened before the reload").await;
        ping(&mut new, b"INVITE opened after it").await;
    }

    #[tokio::test]
    async fn bad_reload_keeps_old_cert() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make_cert(dir.path(), "a");
        let (_, other_key) = make_cert(dir.path(), "b");
        let server = Tls::load(TlsSettings {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ..settings(dir.path())
        })
        .unwrap();
        let fp = server.fingerprint();
        let good_key = std::fs::read(&key).unwrap();

        std::fs::copy(&other_key, &key).unwrap();
        let e = format!("{:#}", server.reload().unwrap_err());
        assert!(e.contains("does not match"), "{e}");

        std::fs::write(&key, &good_key).unwrap();
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let e = format!("{:#}", server.reload().unwrap_err());
        assert!(
            e.contains("no certificate in") && e.contains("a.pem"),
            "{e}"
        );
        assert_eq!(server.fingerprint(), fp);

        // Still serving the old certificate.
        let addr = echo_server(&server).await;
        let lab = TlsSettings {
            verify_peer: false,
            ..settings(&dir.path().join("lab"))
        };
        let stream = connect(Tls::load(lab).unwrap().connector(), addr)
            .await
            .unwrap();
        assert_eq!(peer_fingerprint(&stream), fp);
    }

    #[tokio::test]
    async fn watch_reloads_when_a_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make_cert(dir.path(), "a");
        let (cert_b, key_b) = make_cert(dir.path(), "b");
        let server = Tls::load(TlsSettings {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ..settings(dir.path())
        })
        .unwrap();
        let fp = server.fingerprint();
        let _watcher = watch(server.clone()).unwrap().unwrap();
        // Replaced by rename, as certbot and editors do.
        std::fs::rename(&key_b, &key).unwrap();
        std::fs::rename(&cert_b, &cert).unwrap();
        for _ in 0..100 {
            if server.fingerprint() != fp {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no reload within 5 s");
    }

    #[test]
    fn bad_configured_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = make_cert(dir.path(), "a");
        let (_, other_key) = make_cert(dir.path(), "b");
        let load = |cert_file: Option<&PathBuf>, key_file: Option<&PathBuf>| {
            let s = TlsSettings {
                cert_file: cert_file.cloned(),
                key_file: key_file.cloned(),
                ..settings(dir.path())
            };
            format!("{:#}", Tls::load(s).unwrap_err())
        };
        let e = load(Some(&cert), Some(&other_key));
        assert!(e.contains("b.key does not match the certificate in"), "{e}");
        let e = load(Some(&cert), None);
        assert!(e.contains("key_file is not set"), "{e}");
        let e = load(Some(&cert), Some(&cert));
        assert!(
            e.contains("no private key in") && e.contains("a.pem"),
            "{e}"
        );
        let e = load(Some(&dir.path().join("missing.pem")), Some(&other_key));
        assert!(e.contains("missing.pem"), "{e}");
    }

    #[tokio::test]
    async fn mutual_tls_client_presents_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let server = Tls::load(settings(&dir.path().join("server"))).unwrap();
        let (client_cert, client_key) = make_cert(dir.path(), "client");
        let client = Tls::load(TlsSettings {
            ca_file: Some(server.cert_path().to_path_buf()),
            client_cert_file: Some(client_cert.clone()),
            client_key_file: Some(client_key),
            ..settings(&dir.path().join("client"))
        })
        .unwrap();

        // A trunk-provider-like server that demands a client certificate.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(ca_roots(&client_cert).unwrap()),
            server.provider.clone(),
        )
        .build()
        .unwrap();
        let config = ServerConfig::builder_with_provider(server.provider.clone())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(server.server_cert.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = acceptor.accept(tcp).await.unwrap();
            let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
            let mut buf = [0; 4];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(&buf).await.unwrap();
            fingerprint(&CertifiedKey::new(vec![leaf], Arc::new(NoKey)))
        });

        let mut stream = connect(client.connector(), addr).await.unwrap();
        ping(&mut stream, b"mTLS").await;
        let expected = fingerprint(&CertifiedKey::new(
            read_certs(&client_cert).unwrap(),
            Arc::new(NoKey),
        ));
        assert_eq!(accepted.await.unwrap(), expected);

        // Without a client certificate the same server refuses us.
        let plain = client_trusting(&dir.path().join("plain"), server.cert_path());
        let refused = async {
            let mut stream = connect(plain.connector(), addr).await?;
            stream.write_all(b"mTLS").await?;
            stream.read_exact(&mut [0; 4]).await
        };
        assert!(refused.await.is_err());
    }

    #[test]
    fn server_name_from_host() {
        let ip = |s: &str| match Tls::server_name(s).unwrap() {
            ServerName::IpAddress(ip) => IpAddr::from(ip).to_string(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(ip("127.0.0.1"), "127.0.0.1");
        assert_eq!(ip("[::1]"), "::1");
        assert_eq!(ip("::1"), "::1");
        match Tls::server_name("sip.example.com.").unwrap() {
            ServerName::DnsName(name) => assert_eq!(name.as_ref(), "sip.example.com"),
            other => panic!("{other:?}"),
        }
        assert!(Tls::server_name("").is_err());
        assert!(Tls::server_name("[sip.example.com]").is_err());
        assert!(Tls::server_name("bad host").is_err());
    }

    #[test]
    fn san_names_are_canonical() {
        let names = ["[::0001]", "0.0.0.0", "::", " localhost ", "localhost"].map(String::from);
        assert_eq!(san_names(&names), vec!["::1", "localhost"]);
        assert_eq!(san_names(&["0.0.0.0".into()]), vec!["localhost"]);
    }
}
