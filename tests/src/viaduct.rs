//! [`Viaduct`]: the proxy under test as a child process.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::{
    free_port, http_request, local, options_ping, signal, tail, terminate, viaduct_bin,
    wait_bounded, HttpResponse, PROBE_INTERVAL, READY_BOUND, STOP_BOUND,
};

/// A running `viaduct` child process. Dropping it stops the process (SIGTERM,
/// then SIGKILL after [`crate::KILL_GRACE`]) and, when the test is panicking, prints
/// the tail of its log.
pub struct Viaduct {
    child: Option<Child>,
    dir: TempDir,
    log: PathBuf,
    listen: Vec<String>,
    probe_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
}

/// Whether the binary knows the `[admin]` table (its HTTP port). Asked once
/// with `viaduct check`, so the harness works with builds before and after it.
fn knows_admin_table() -> bool {
    static KNOWS: OnceLock<bool> = OnceLock::new();
    *KNOWS.get_or_init(|| {
        let Ok(dir) = tempfile::tempdir() else {
            return false;
        };
        let path = dir.path().join("probe.toml");
        if fs::write(&path, "[admin]\nlisten = \"\"\n").is_err() {
            return false;
        }
        Command::new(viaduct_bin())
            .arg("check")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn has_table(config: &str, name: &str) -> bool {
    let header = format!("[{name}]");
    config.lines().any(|l| l.trim() == header)
}

impl Viaduct {
    /// Starts the proxy with `config` (TOML) on one fresh UDP port and waits
    /// until it answers the OPTIONS probe. Panics (with the log) if it does not.
    pub fn start(config: &str) -> Viaduct {
        Self::start_within(config, READY_BOUND)
    }

    /// [`Viaduct::start`] waiting up to `ready` for the probe instead of
    /// [`READY_BOUND`]: for policies whose first compile takes longer
    /// (componentize-py/-js builds, see [`crate::PolicyBuild`]).
    pub fn start_within(config: &str, ready: Duration) -> Viaduct {
        let port = free_port();
        match Self::try_start_within(config, &[format!("udp:127.0.0.1:{port}")], ready) {
            Ok(v) => v,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Starts the proxy with `config` and these `--listen` values (which
    /// replace `[server] listen`). One of them must be `udp:`: the readiness
    /// probe goes there.
    pub fn start_with_listen(config: &str, listen: &[String]) -> Viaduct {
        match Self::try_start(config, listen) {
            Ok(v) => v,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// [`Viaduct::start_with_listen`] that returns the failure instead of panicking.
    pub fn try_start(config: &str, listen: &[String]) -> Result<Viaduct> {
        Self::try_start_within(config, listen, READY_BOUND)
    }

    fn try_start_within(config: &str, listen: &[String], ready: Duration) -> Result<Viaduct> {
        let probe_addr = listen
            .iter()
            .find_map(|l| l.strip_prefix("udp:"))
            .context("a udp: listener is needed for the readiness probe")?
            .parse::<SocketAddr>()
            .context("udp: listener is not IP:PORT")?;
        // The admin HTTP port has a fixed default: give every proxy its own so
        // that tests can run in parallel (unless the test configures it).
        let mut config = config.to_owned();
        let mut admin_addr = None;
        if !has_table(&config, "admin") && knows_admin_table() {
            let addr = local(free_port());
            config.push_str(&format!("\n[admin]\nlisten = \"{addr}\"\n"));
            admin_addr = Some(addr);
        }
        let dir = tempfile::Builder::new().prefix("viaduct-e2e-").tempdir()?;
        let config_path = dir.path().join("viaduct.toml");
        fs::write(&config_path, &config)?;
        let log = dir.path().join("viaduct.log");
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let level = std::env::var("VIADUCT_LOG_LEVEL").unwrap_or_else(|_| "debug".to_owned());

        let mut cmd = Command::new(viaduct_bin());
        cmd.arg("--config").arg(&config_path);
        for l in listen {
            cmd.arg("--listen").arg(l);
        }
        cmd.arg("--log-level")
            .arg(&level)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        let mut proxy = Viaduct {
            child: Some(child),
            dir,
            log,
            listen: listen.to_vec(),
            probe_addr,
            admin_addr,
        };
        proxy.wait_ready(ready)?;
        Ok(proxy)
    }

    /// Runs the proxy with `config` and `listen` when it is expected *not*
    /// to start (a broken policy, a bad config): waits up to `bound` for it
    /// to exit and returns its exit status (`None` if it was still running,
    /// then it is stopped) and everything it wrote on stdout and stderr.
    pub fn run_expecting_exit(
        config: &str,
        listen: &[String],
        bound: Duration,
    ) -> (Option<ExitStatus>, String) {
        let dir = tempfile::Builder::new()
            .prefix("viaduct-e2e-")
            .tempdir()
            .expect("temp dir");
        let config_path = dir.path().join("viaduct.toml");
        fs::write(&config_path, config).expect("writing the config");
        let log = dir.path().join("viaduct.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(viaduct_bin());
        cmd.arg("--config").arg(&config_path);
        for l in listen {
            cmd.arg("--listen").arg(l);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawning viaduct");
        let status = wait_bounded(&mut child, bound);
        if status.is_none() {
            terminate(&mut child);
        }
        let text = String::from_utf8_lossy(&fs::read(&log).unwrap_or_default()).into_owned();
        (status, text)
    }

    fn wait_ready(&mut self, bound: Duration) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < bound {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "viaduct exited during start-up ({status}); config and log:\n{}\n--- log ---\n{}",
                        self.config_text(),
                        self.log_tail(80)
                    );
                }
            }
            if let Some(line) = options_ping(self.probe_addr, PROBE_INTERVAL) {
                if line.starts_with("SIP/2.0 200") {
                    return Ok(());
                }
            }
        }
        bail!(
            "viaduct did not answer the OPTIONS probe on {} within {bound:?}; config:\n{}\n--- log ---\n{}",
            self.probe_addr,
            self.config_text(),
            self.log_tail(80)
        )
    }

    fn config_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("viaduct.toml")).unwrap_or_default()
    }

    /// The UDP address the readiness probe uses.
    pub fn udp_addr(&self) -> SocketAddr {
        self.probe_addr
    }

    /// The admin HTTP address the harness chose, when the binary has one and
    /// the test's config did not set it.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The address of the first `tcp:` listener, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.listen
            .iter()
            .find_map(|l| l.strip_prefix("tcp:"))
            .and_then(|a| a.parse().ok())
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether it answers one OPTIONS probe with 200 within `wait`.
    pub fn answers_probe(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if options_ping(self.probe_addr, PROBE_INTERVAL)
                .is_some_and(|l| l.starts_with("SIP/2.0 200"))
            {
                return true;
            }
        }
        false
    }

    /// Sends a signal to the process (by PID), e.g. `Signal::SIGHUP` to
    /// reload the policy.
    pub fn send_signal(&self, sig: Signal) {
        if let Some(child) = self.child.as_ref() {
            signal(child, sig);
        }
    }

    /// One request to the admin HTTP port the harness gave this proxy.
    /// Panics when there is none or the request fails.
    pub fn admin(&self, method: &str, path: &str) -> HttpResponse {
        let addr = self
            .admin_addr
            .expect("this proxy has no admin port chosen by the harness");
        http_request(addr, method, path)
            .unwrap_or_else(|e| panic!("{e:#}\n--- log ---\n{}", self.log_tail(40)))
    }

    /// How many lines of the log so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Polls the log every 10 ms until at least `count` lines contain
    /// `needle`, for at most `bound`. Returns how long that took, or `None`.
    pub fn wait_for_log(&self, needle: &str, count: usize, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        loop {
            if self.log_count(needle) >= count {
                return Some(started.elapsed());
            }
            if started.elapsed() >= bound {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Path of the captured stdout+stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Waits up to `bound` for the process to exit on its own (after a
    /// signal sent with [`Viaduct::send_signal`]); `None` if it is still running.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_bounded(child, bound);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Sends SIGTERM and waits up to [`STOP_BOUND`] for the exit status.
    /// Panics (after SIGKILL, with the log) if the process does not exit in time.
    pub fn stop_gracefully(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("viaduct was already stopped");
        };
        signal(&child, Signal::SIGTERM);
        match wait_bounded(&mut child, STOP_BOUND) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "viaduct did not exit within {STOP_BOUND:?} after SIGTERM (killed); log:\n{}",
                    self.log_tail(80)
                );
            }
        }
    }
}

impl Drop for Viaduct {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
        if thread::panicking() {
            eprintln!(
                "--- viaduct log tail ({}, listen {:?}) ---\n{}\n--- end of viaduct log ---",
                self.log.display(),
                self.listen,
                self.log_tail(80)
            );
        }
    }
}
