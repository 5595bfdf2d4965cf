//! Policy hot reload: the file watcher (notify, debounced), SIGHUP and the
//! admin endpoint all end in [`Reloader::reload`], which compiles and
//! validates off the network threads and swaps atomically. The TLS
//! certificates reload the same three ways ([`reload_tls`], and
//! [`watch_files`], the debounced watcher both share).

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use viaduct_policy::{PolicyHost, Version};

/// Quiet time after the last file event before reloading: editors and `cp`
/// write a file in several steps.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Serialises reloads.
pub struct Reloader {
    pub host: Arc<PolicyHost>,
    lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(host: Arc<PolicyHost>) -> Self {
        Reloader {
            host,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the policy file again; the old version keeps serving on failure.
    pub async fn reload(&self, trigger: &str) -> Result<Arc<Version>, String> {
        let _one_at_a_time = self.lock.lock().await;
        tracing::info!(trigger, "reloading policy");
        let host = self.host.clone();
        match tokio::task::spawn_blocking(move || host.reload()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("reload task failed: {e}")),
        }
    }
}

/// Reloads the TLS certificate files: new handshakes get the new
/// certificate, connections up keep theirs; on error the old one stays.
pub fn reload_tls(tls: &crate::tls::Tls, trigger: &str) -> anyhow::Result<()> {
    if tls.watched_files().is_empty() {
        return Ok(()); // a generated certificate: nothing to read again
    }
    // tls.rs logs the new fingerprint; a refusal is logged here as the watcher logs it.
    tls.reload().inspect_err(|e| {
        tracing::warn!(trigger, error = %format!("{e:#}"), "TLS: reload refused, old certificate kept");
    })
}

/// Reloads the policy and the TLS certificates on SIGHUP.
pub fn on_sighup(
    reloader: Option<Arc<Reloader>>,
    tls: Option<Arc<crate::tls::Tls>>,
) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Some(tls) = &tls {
                let _ = reload_tls(tls, "SIGHUP");
            }
            if let Some(r) = &reloader {
                let _ = r.reload("SIGHUP").await;
            }
        }
    });
    Ok(())
}

/// Reloads when the policy file changes.
pub fn watch(reloader: Arc<Reloader>, file: &Path) -> anyhow::Result<notify::RecommendedWatcher> {
    let (watcher, mut changes) = watch_files(&[file.to_path_buf()])?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let _ = reloader.reload("file change").await;
        }
    });
    Ok(watcher)
}

/// One event per burst of changes to any of `files`, once they have been
/// quiet for [`DEBOUNCE`]. Watches the directories, not the files, so a
/// file replaced by rename (what `cp` to a temp + `mv`, most editors and
/// certbot do) and a Kubernetes secret volume (which flips a `..data`
/// symlink) are seen. Call inside the tokio runtime; dropping the watcher
/// stops it.
pub fn watch_files(
    files: &[PathBuf],
) -> anyhow::Result<(notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>)> {
    let files = files
        .iter()
        .map(std::path::absolute)
        .collect::<std::io::Result<Vec<_>>>()?;
    let names: BTreeSet<_> = files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|n| n.to_owned())
        .collect();
    let dirs: BTreeSet<_> = files
        .iter()
        .map(|f| f.parent().map_or_else(|| ".".into(), Path::to_path_buf))
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event
                .paths
                .iter()
                .filter_map(|p| p.file_name())
                .any(|n| names.contains(n) || n.to_string_lossy().starts_with("..data"));
            if ours && !event.kind.is_access() {
                let _ = tx.try_send(());
            }
        }
    })?;
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    let (out, changes) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if out.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok((watcher, changes))
}
