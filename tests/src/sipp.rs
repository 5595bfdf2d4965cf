//! [`Sipp`]: SIPp as a child process, and [`SippRun`]: what it reported.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use nix::sys::signal::Signal;

use crate::{
    free_port, header_value, scenario_path, signal, sipp_bin, status_code, tail, terminate,
    wait_bounded, SIPP_TIMEOUT,
};

/// Which side of a call SIPp plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Places calls to a remote address (positional argument).
    Uac,
    /// Waits for calls on its local port.
    Uas,
}

#[derive(Debug, Clone)]
enum Scenario {
    Builtin(String),
    File(PathBuf),
}

/// A SIPp command line, built step by step, then [`Sipp::spawn`]ed as a
/// child process (never `-bg`). Always `-i 127.0.0.1 -nostdin`, with the
/// stats (`-trace_stat`), final screen (`-trace_screen`) and unexpected
/// messages (`-trace_err`) written to a temp dir; `-timeout 60s` unless set.
/// SIPp runs with `TZ=UTC`, so the times in its message trace are UTC
/// ([`SippRun::timed_message_list`]).
#[derive(Debug, Clone)]
pub struct Sipp {
    role: Role,
    scenario: Scenario,
    remote: Option<SocketAddr>,
    local_ip: IpAddr,
    local_port: u16,
    rsa: Option<SocketAddr>,
    transport: Option<String>,
    calls: Option<u64>,
    rate: Option<u32>,
    timeout: Duration,
    timeout_error: bool,
    trace_msg: bool,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Sipp {
    fn new(role: Role, scenario: Scenario, remote: Option<SocketAddr>) -> Sipp {
        Sipp {
            role,
            scenario,
            remote,
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local_port: free_port(),
            rsa: None,
            transport: None,
            calls: None,
            rate: None,
            timeout: SIPP_TIMEOUT,
            timeout_error: true,
            trace_msg: false,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The built-in `uac` calling `remote` (which becomes the Request-URI's
    /// host:port; send through a proxy with [`Sipp::rsa`]).
    pub fn uac(remote: SocketAddr) -> Sipp {
        Sipp::new(Role::Uac, Scenario::Builtin("uac".into()), Some(remote))
    }

    /// The built-in `uas` on a fresh local port.
    pub fn uas() -> Sipp {
        Sipp::new(Role::Uas, Scenario::Builtin("uas".into()), None)
    }

    /// Use a built-in scenario (`-sn NAME`).
    pub fn builtin(mut self, name: &str) -> Sipp {
        self.scenario = Scenario::Builtin(name.to_owned());
        self
    }

    /// Use a scenario file from `tests/scenarios/` (`-sf`).
    pub fn scenario(mut self, file: &str) -> Sipp {
        self.scenario = Scenario::File(scenario_path(file));
        self
    }

    /// Use a scenario file anywhere (`-sf`), e.g. one shipped with a peer in `tests/peers/`.
    pub fn scenario_file(mut self, path: &std::path::Path) -> Sipp {
        assert!(path.is_file(), "no scenario {}", path.display());
        self.scenario = Scenario::File(path.to_path_buf());
        self
    }

    /// Local address (`-i`); 127.0.0.1 by default, `::1` for IPv6 runs.
    pub fn local_ip(mut self, ip: IpAddr) -> Sipp {
        self.local_ip = ip;
        self
    }

    /// Local port (`-p`); a fresh free one by default.
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.local_port = port;
        self
    }

    /// Send every message to this address (`-rsa`), e.g. the proxy.
    pub fn rsa(mut self, addr: SocketAddr) -> Sipp {
        self.rsa = Some(addr);
        self
    }

    /// Transport mode (`-t`), e.g. `t1` for TCP with one socket.
    pub fn transport(mut self, mode: &str) -> Sipp {
        self.transport = Some(mode.to_owned());
        self
    }

    /// Stop after this many calls (`-m`).
    pub fn calls(mut self, m: u64) -> Sipp {
        self.calls = Some(m);
        self
    }

    /// Calls per second (`-r`).
    pub fn rate(mut self, r: u32) -> Sipp {
        self.rate = Some(r);
        self
    }

    /// Global timeout (`-timeout`), 60 s by default.
    pub fn timeout(mut self, d: Duration) -> Sipp {
        self.timeout = d;
        self
    }

    /// Whether reaching the global timeout is an error (`-timeout_error`); on by default.
    pub fn timeout_error(mut self, on: bool) -> Sipp {
        self.timeout_error = on;
        self
    }

    /// Record every message sent and received (`-trace_msg`), read back with
    /// [`SippRun::messages`].
    pub fn trace_msg(mut self) -> Sipp {
        self.trace_msg = true;
        self
    }

    /// Any other argument, appended as is.
    pub fn arg(mut self, a: &str) -> Sipp {
        self.extra.push(a.to_owned());
        self
    }

    /// The service (`-s`): the user part of the Request-URI in scenarios
    /// that write `[service]` (the built-in `uac` does).
    pub fn service(self, user: &str) -> Sipp {
        self.arg("-s").arg(user)
    }

    /// An environment variable for the SIPp process.
    pub fn env(mut self, key: &str, value: &str) -> Sipp {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `<local ip>:<local port>`: where a UAS receives calls.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.local_ip, self.local_port)
    }

    fn name(&self) -> String {
        let role = match self.role {
            Role::Uac => "uac",
            Role::Uas => "uas",
        };
        let scenario = match &self.scenario {
            Scenario::Builtin(n) => format!("built-in {n}"),
            Scenario::File(p) => p
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        format!("sipp {role} ({scenario}) on port {}", self.local_port)
    }

    /// Starts SIPp. A UAS is started only once its port is bound, so a UAC
    /// started next finds it listening. Panics if SIPp cannot be started.
    pub fn spawn(self) -> SippProcess {
        match self.try_spawn() {
            Ok(p) => p,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// [`Sipp::spawn`] that returns the failure instead of panicking.
    pub fn try_spawn(self) -> Result<SippProcess> {
        let dir = tempfile::Builder::new()
            .prefix("viaduct-e2e-sipp-")
            .tempdir()?;
        let d = dir.path();
        let mut cmd = Command::new(sipp_bin());
        match &self.scenario {
            Scenario::Builtin(n) => cmd.arg("-sn").arg(n),
            Scenario::File(p) => cmd.arg("-sf").arg(p),
        };
        if let Some(remote) = self.remote {
            cmd.arg(remote.to_string());
        }
        cmd.arg("-i")
            .arg(self.local_ip.to_string())
            .arg("-p")
            .arg(self.local_port.to_string())
            .arg("-nostdin");
        if let Some(rsa) = self.rsa {
            cmd.arg("-rsa").arg(rsa.to_string());
        }
        if let Some(t) = &self.transport {
            cmd.arg("-t").arg(t);
        }
        if let Some(m) = self.calls {
            cmd.arg("-m").arg(m.to_string());
        }
        if let Some(r) = self.rate {
            cmd.arg("-r").arg(r.to_string());
        }
        cmd.arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)));
        if self.timeout_error {
            cmd.arg("-timeout_error");
        }
        cmd.args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(d.join("stats.csv"))
            .args(["-trace_screen", "-screen_file"])
            .arg(d.join("screen.log"))
            .args(["-trace_err", "-error_file"])
            .arg(d.join("errors.log"));
        if self.trace_msg {
            cmd.args(["-trace_msg", "-message_file"])
                .arg(d.join("messages.log"));
        }
        cmd.args(&self.extra);
        cmd.env("TZ", "UTC");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let command_line = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(File::create(d.join("stdout.log"))?)
            .stderr(File::create(d.join("stderr.log"))?);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {command_line}"))?;
        let mut process = SippProcess {
            child: Some(child),
            dir: Some(dir),
            name: self.name(),
            command_line,
            addr: self.addr(),
            bound: self.timeout + Duration::from_secs(15),
            started: Instant::now(),
        };
        if self.role == Role::Uas {
            let tcp = self
                .transport
                .as_deref()
                .is_some_and(|t| t.starts_with('t'));
            process.wait_bound(tcp)?;
        }
        Ok(process)
    }
}

/// Asserts that SIPp exited 0 with exactly `calls` successful and no failed
/// calls, printing the run's summary when not.
pub fn assert_all_calls_ok(run: &SippRun, calls: u64) {
    assert!(
        run.exit_code == Some(0) && run.successful == calls && run.failed == 0,
        "expected exit 0 with {calls} successful and 0 failed calls\n{}",
        run.summary()
    );
}

/// A running SIPp child. Dropping it kills the process (SIGKILL) if it is
/// still running.
pub struct SippProcess {
    child: Option<Child>,
    dir: Option<TempDir>,
    name: String,
    command_line: String,
    addr: SocketAddr,
    bound: Duration,
    started: Instant,
}

impl SippProcess {
    /// `127.0.0.1:<local port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// The `-trace_msg` file as SIPp has written it so far (empty without
    /// [`Sipp::trace_msg`]): for a process that keeps running, such as a
    /// phone that registers and then waits for calls.
    pub fn messages_so_far(&self) -> String {
        std::fs::read_to_string(self.dir().join("messages.log")).unwrap_or_default()
    }

    /// Polls until SIPp holds its local port (binding it ourselves fails).
    fn wait_bound(&mut self, tcp: bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let taken = if tcp {
                TcpListener::bind(self.addr).is_err()
            } else {
                UdpSocket::bind(self.addr).is_err()
            };
            if taken {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "{} exited at start-up ({status}): {}\n{}\n{}",
                        self.name,
                        self.command_line,
                        tail(&self.dir().join("stderr.log"), 20),
                        tail(&self.dir().join("stdout.log"), 20)
                    );
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not bind {} within 5 s", self.name, self.addr)
    }

    /// Asks SIPp to stop (SIGUSR1: no new calls, calls in progress finish,
    /// then it exits 0 as if `-m` was reached) and waits for it, at most 10 s
    /// (then it is killed). For a UAS whose number of calls is not known.
    pub fn stop(mut self) -> SippRun {
        if let Some(child) = self.child.as_ref() {
            signal(child, Signal::SIGUSR1);
        }
        self.bound = self.bound.min(Duration::from_secs(10));
        self.wait()
    }

    /// Stops SIPp now (SIGTERM, SIGKILL 3 s later) and reads its counts as
    /// of its last `-fd 1` line: for a caller whose calls cannot end, e.g.
    /// through a proxy that was killed.
    pub fn kill(mut self) -> SippRun {
        self.bound = Duration::ZERO;
        self.wait()
    }

    /// Waits for SIPp to exit (at most its `-timeout` plus 15 s, then it is
    /// killed) and reads its final counts.
    pub fn wait(mut self) -> SippRun {
        let mut killed = false;
        let status = match self.child.as_mut() {
            Some(child) => match wait_bounded(child, self.bound) {
                Some(s) => Some(s),
                None => {
                    killed = true;
                    terminate(child);
                    None
                }
            },
            None => None,
        };
        self.child = None;
        let elapsed = self.started.elapsed();
        let dir = self.dir.take();
        let (successful, failed) = dir
            .as_ref()
            .and_then(|d| read_counts(&d.path().join("stats.csv")))
            .unwrap_or((0, 0));
        SippRun {
            name: std::mem::take(&mut self.name),
            addr: self.addr,
            command_line: std::mem::take(&mut self.command_line),
            exit_code: status.and_then(|s| s.code()),
            killed,
            successful,
            failed,
            elapsed,
            dir,
        }
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads `SuccessfulCall(C)` and `FailedCall(C)` from the last line of a
/// `-trace_stat` CSV (`;`-separated, header first).
fn read_counts(path: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let col = |name: &str| -> Option<u64> {
        let i = header.iter().position(|h| *h == name)?;
        last.get(i)?.trim().parse().ok()
    };
    Some((col("SuccessfulCall(C)")?, col("FailedCall(C)")?))
}

/// The outcome of one SIPp run. Keeps SIPp's files until dropped.
pub struct SippRun {
    /// e.g. `sipp uac (cancel_uac.xml) on port 40123`.
    pub name: String,
    /// `127.0.0.1:<local port>` it used.
    pub addr: SocketAddr,
    /// The command that was run.
    pub command_line: String,
    /// SIPp's exit code: 0 = every call succeeded, 1 = at least one failed,
    /// 97/99 = stopped without (all) calls, 255/254 = fatal error. `None` if
    /// it was killed.
    pub exit_code: Option<i32>,
    /// Whether the harness had to kill it (it outlived its bound).
    pub killed: bool,
    /// Successful calls (cumulative), from the stats file.
    pub successful: u64,
    /// Failed calls (cumulative), from the stats file.
    pub failed: u64,
    /// From spawn to exit.
    pub elapsed: Duration,
    dir: Option<TempDir>,
}

impl SippRun {
    fn file(&self, name: &str) -> String {
        self.dir
            .as_ref()
            .and_then(|d| fs::read(d.path().join(name)).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The message trace (`-trace_msg`); empty unless [`Sipp::trace_msg`] was set.
    pub fn messages(&self) -> String {
        self.file("messages.log")
    }

    /// Every SIP message in the trace, in order, without SIPp's separators.
    pub fn message_list(&self) -> Vec<String> {
        trace_blocks(&self.messages())
            .into_iter()
            .map(|(_, _, msg)| msg)
            .collect()
    }

    /// The first traced message whose start line begins with `start` (e.g.
    /// `"INVITE "`); panics with the whole trace when there is none.
    pub fn first_message(&self, start: &str) -> String {
        self.message_list()
            .into_iter()
            .find(|m| m.starts_with(start))
            .unwrap_or_else(|| panic!("{} saw no {start:?}\n{}", self.name, self.messages()))
    }

    /// Every SIP message in the trace with the time SIPp logged it
    /// (microseconds; the harness runs SIPp with `TZ=UTC`) and whether SIPp
    /// received it (`true`) or sent it. Blocks whose date cannot be read
    /// get `UNIX_EPOCH`.
    pub fn timed_message_list(&self) -> Vec<TracedMessage> {
        traced_messages(&self.messages())
    }

    /// The first final response (≥ 200, CSeq INVITE) per Call-ID this
    /// caller received, in order of arrival (retransmissions are ignored);
    /// needs [`Sipp::trace_msg`].
    pub fn invite_finals(&self) -> Vec<InviteFinal> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in self.timed_message_list() {
            let Some(code) = status_code(&m.text) else {
                continue;
            };
            let cseq = header_value(&m.text, "cseq", None).unwrap_or_default();
            if !m.received || code < 200 || !cseq.ends_with("INVITE") {
                continue;
            }
            let call_id = header_value(&m.text, "call-id", Some("i")).unwrap_or_default();
            if seen.insert(call_id.clone()) {
                out.push(InviteFinal {
                    call_id,
                    code,
                    message: m.text,
                    at: m.at,
                });
            }
        }
        out
    }

    /// When this caller first sent the INVITE of each Call-ID; needs [`Sipp::trace_msg`].
    pub fn invite_sent_at(&self) -> HashMap<String, SystemTime> {
        let mut out = HashMap::new();
        for m in self.timed_message_list() {
            if !m.received && m.text.starts_with("INVITE ") {
                let call_id = header_value(&m.text, "call-id", Some("i")).unwrap_or_default();
                out.entry(call_id).or_insert(m.at);
            }
        }
        out
    }

    /// The last statistics screen (`-trace_screen`).
    pub fn screen(&self) -> String {
        self.file("screen.log")
    }

    /// Unexpected messages and errors (`-trace_err`).
    pub fn errors(&self) -> String {
        self.file("errors.log")
    }

    /// SIPp's last scenario screen: per message of the scenario, how many
    /// were sent/received, retransmitted, timed out or unexpected. Taken from
    /// stdout (SIPp prints it on exit even after `-timeout`, when the
    /// `-trace_screen` file stays empty), else from the screen file.
    pub fn scenario_screen(&self) -> String {
        let from = |text: &str| -> Option<String> {
            let start = text.rfind("Scenario Screen")?;
            let block = &text[start..];
            let end = block.find("Statistics Screen").unwrap_or(block.len());
            let block = &block[..end];
            // Drop the banner's trailing dashes line of the next screen.
            let lines: Vec<&str> = block
                .lines()
                .skip(1)
                .filter(|l| !l.starts_with("-----"))
                .collect();
            Some(lines.join("\n").trim_end().to_owned())
        };
        from(&self.file("stdout.log"))
            .or_else(|| from(&self.screen()))
            .unwrap_or_default()
    }

    /// Everything worth reading when an assertion about this run fails.
    pub fn summary(&self) -> String {
        let errors = self.errors();
        let error_tail: Vec<&str> = errors.lines().rev().take(30).collect();
        let stderr = self.file("stderr.log");
        format!(
            "{name}: exit {exit:?}{killed}, {ok} successful, {failed} failed, {elapsed:.1?}\n\
             command: {cmd}\n--- scenario screen ---\n{screen}\n--- errors (last 30 lines) ---\n{errs}\n\
             --- stderr ---\n{stderr}\n",
            name = self.name,
            exit = self.exit_code,
            killed = if self.killed { " (killed: outlived its bound)" } else { "" },
            ok = self.successful,
            failed = self.failed,
            elapsed = self.elapsed,
            cmd = self.command_line,
            screen = self.scenario_screen(),
            errs = error_tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            stderr = stderr.trim_end(),
        )
    }

    /// Keeps SIPp's files (stats, screen, errors, messages) after the run
    /// and returns their directory.
    pub fn keep_files(&mut self) -> Option<PathBuf> {
        self.dir.take().map(TempDir::keep)
    }
}

/// The final answer to one INVITE, as the caller received it ([`SippRun::invite_finals`]).
#[derive(Debug, Clone)]
pub struct InviteFinal {
    /// The call's Call-ID.
    pub call_id: String,
    /// The status code (≥ 200).
    pub code: u16,
    /// The whole response.
    pub message: String,
    /// When the caller logged it.
    pub at: SystemTime,
}

/// One message of a `-trace_msg` file.
#[derive(Debug, Clone)]
pub struct TracedMessage {
    /// When SIPp logged it (UTC, microsecond resolution).
    pub at: SystemTime,
    /// Received by SIPp (`true`) or sent by it.
    pub received: bool,
    /// The SIP message, CRLF line ends.
    pub text: String,
}

/// Every SIP message of a `-trace_msg` file (SIPp's `-message_file`), as
/// [`SippRun::timed_message_list`] gives it: for SIPp runs the harness did
/// not start. Times are read as UTC (run SIPp with `TZ=UTC`).
pub fn traced_messages(trace: &str) -> Vec<TracedMessage> {
    trace_blocks(trace)
        .into_iter()
        .map(|(date, what, text)| TracedMessage {
            at: parse_trace_time(&date).unwrap_or(UNIX_EPOCH),
            received: what.contains("received"),
            text,
        })
        .collect()
}

/// Splits a `-trace_msg` file into (date, "UDP message received ...", message).
fn trace_blocks(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for block in text.split("----------------------------------------------- ") {
        // "<date>\nUDP message received [N] bytes :\n\n<message>"
        let mut parts = block.splitn(3, '\n');
        let date = parts.next().unwrap_or_default();
        let what = parts.next().unwrap_or_default();
        if let Some(msg) = parts.next() {
            let msg = msg.trim_start_matches('\n').trim_end();
            if !msg.is_empty() {
                out.push((
                    date.trim().to_owned(),
                    what.to_owned(),
                    msg.replace("\r\n", "\n").replace('\n', "\r\n"),
                ));
            }
        }
    }
    out
}

/// `2026-11-25 17:54:49.343678` (SIPp's trace date, read as UTC).
fn parse_trace_time(date: &str) -> Option<SystemTime> {
    let (day, time) = date.split_once(' ')?;
    let mut d = day.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<u64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // Microseconds from the fraction, whatever its number of digits.
    let digits: String = frac.chars().take(6).collect();
    let micros = digits.parse::<u64>().ok()? * 10u64.pow(6 - digits.len() as u32);
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sipp_trace_dates_as_utc() {
        let t = parse_trace_time("2026-11-25 17:54:49.343678").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_795_629_289);
        assert_eq!(d.subsec_micros(), 343_678);
        assert_eq!(
            parse_trace_time("1970-01-01 00:00:00.000000"),
            Some(UNIX_EPOCH)
        );
    }

    #[test]
    fn reads_counts_from_sipp_stats() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        fs::write(
            &p,
            "StartTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
             2026-11-25\t17:01:47;0;0;0;0;\n\
             2026-11-25\t17:01:48;1;199;0;1;\n",
        )
        .unwrap();
        assert_eq!(read_counts(&p), Some((199, 1)));
    }
}
