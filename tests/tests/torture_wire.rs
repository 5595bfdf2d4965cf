//! The RFC 4475 torture messages (host/sip/tests/torture), sent byte for byte
//! over UDP to the running proxy.
//!
//! Asserted: invalid requests get their status (`expect` in expected.toml, or
//! a numeric `also_ok`: 400, 505, 501 or 400 for mismatch02), the malformed
//! requests of RFC 4475 §3.3 that have a plain 400/483 expectation get it,
//! responses to be dropped get no answer, and afterwards the proxy is still
//! running and answers the OPTIONS probe. Valid messages are only checked
//! for "no crash". 416/420 and the reason-phrase hints are reported, not
//! asserted.
//!
//! Everything stays on 127.0.0.1: the proxy's `[routing] targets` is a
//! socket of ours, so forwarded initial requests come back to us instead of
//! the corpus' fake hosts. In-dialog requests (a To tag: `wsinv`, `lwsruri`)
//! would be routed by their Route/Request-URI to those hosts, so they are
//! not sent.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use viaduct_e2e::{header_value, local, recv_all, status_code, workspace_root, Viaduct};

/// How long to listen for the proxy's answer to one message.
const ANSWER_WAIT: Duration = Duration::from_millis(300);

/// The ports the corpus' top Via sent-by values name (5060 by default, 5061
/// for TLS, 5050 in quotbal). None has `rport`, so a proxy that follows RFC
/// 3261 §18.2.2 answers 127.0.0.1 (the received address) at that port, not
/// our source port: we listen there too, when the port is free.
const VIA_PORTS: [u16; 3] = [5060, 5061, 5050];

struct Case {
    name: String,
    group: String,
    file: PathBuf,
    kind: String,
    expect: Option<String>,
    also_ok: Vec<String>,
    call_ids: Vec<String>,
    reason_hint: Option<String>,
    in_dialog: bool,
}

#[derive(Debug, PartialEq)]
enum Check {
    /// The final answer must have one of these codes.
    Status(Vec<u16>),
    /// No answer at all.
    Silence,
    /// Expected codes, reported but not asserted.
    Report(Vec<u16>),
    /// Only "no crash".
    Nothing,
}

impl Case {
    fn codes(&self) -> Vec<u16> {
        self.expect
            .iter()
            .chain(&self.also_ok)
            .filter_map(|c| c.parse().ok())
            .collect()
    }

    fn check(&self) -> Check {
        let codes = self.codes();
        let liberal = self.also_ok.iter().any(|a| a == "accept");
        match (
            self.group.as_str(),
            self.kind.as_str(),
            self.expect.as_deref(),
        ) {
            (_, "response", Some("drop")) => Check::Silence,
            ("invalid", "request", _) if !codes.is_empty() => Check::Status(codes),
            ("other", "request", _)
                if !codes.is_empty()
                    && !liberal
                    && codes.iter().all(|c| [400, 483].contains(c)) =>
            {
                Check::Status(codes)
            }
            _ if !codes.is_empty() => Check::Report(codes),
            _ => Check::Nothing,
        }
    }
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    match v {
        Some(toml::Value::String(s)) => vec![s.clone()],
        Some(toml::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn load_cases() -> Vec<Case> {
    let dir = workspace_root().join("host/sip/tests/torture");
    let manifest = dir.join("expected.toml");
    let text = fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    let table: toml::Table = text.parse().expect("expected.toml parses");
    let mut cases = Vec::new();
    for (name, entry) in &table {
        let Some(entry) = entry.as_table() else {
            continue;
        };
        let file = entry
            .get("file")
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{name}: no file"));
        let group = file.split('/').next().unwrap_or_default().to_owned();
        let mut call_ids = strings(entry.get("call_id"));
        call_ids.extend(strings(entry.get("call_id_values")));
        cases.push(Case {
            name: name.clone(),
            group,
            file: dir.join(file),
            kind: entry
                .get("kind")
                .and_then(toml::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            expect: entry
                .get("expect")
                .and_then(toml::Value::as_str)
                .map(str::to_owned),
            also_ok: strings(entry.get("also_ok")),
            call_ids,
            reason_hint: entry
                .get("reason_hint")
                .and_then(toml::Value::as_str)
                .map(str::to_owned),
            in_dialog: entry.get("kind").and_then(toml::Value::as_str) == Some("request")
                && entry.contains_key("to_tag"),
        });
    }
    cases
}

struct Answer {
    via_port: Option<u16>,
    text: String,
}

impl Answer {
    fn status_line(&self) -> String {
        let line = self.text.lines().next().unwrap_or_default().to_owned();
        match self.via_port {
            Some(p) => format!("{line} (sent to :{p})"),
            None => line,
        }
    }
}

struct Listeners {
    client: UdpSocket,
    via: Vec<(u16, UdpSocket)>,
    unbound: Vec<u16>,
}

impl Listeners {
    fn new() -> Listeners {
        let client = UdpSocket::bind(local(0)).expect("bind client socket");
        let mut via = Vec::new();
        let mut unbound = Vec::new();
        for port in VIA_PORTS {
            match UdpSocket::bind(local(port)) {
                Ok(s) => via.push((port, s)),
                Err(_) => unbound.push(port),
            }
        }
        Listeners {
            client,
            via,
            unbound,
        }
    }

    fn sockets(&self) -> impl Iterator<Item = (Option<u16>, &UdpSocket)> {
        std::iter::once((None, &self.client)).chain(self.via.iter().map(|(p, s)| (Some(*p), s)))
    }

    fn drain(&self) {
        for (_, s) in self.sockets() {
            let _ = recv_all(s, Duration::from_millis(1));
        }
    }

    /// Collects answers for up to `wait`, polling every socket; returns early
    /// once `done` says the answers so far are enough.
    fn collect(&self, wait: Duration, done: impl Fn(&[Answer]) -> bool) -> Vec<Answer> {
        let deadline = Instant::now() + wait;
        let mut answers = Vec::new();
        while Instant::now() < deadline && !done(&answers) {
            for (port, s) in self.sockets() {
                for (_, bytes) in recv_all(s, Duration::from_millis(5)).unwrap_or_default() {
                    answers.push(Answer {
                        via_port: port,
                        text: String::from_utf8_lossy(&bytes).into_owned(),
                    });
                }
            }
        }
        answers
    }
}

#[test]
fn rfc4475_corpus_over_udp() {
    let cases = load_cases();
    assert!(
        cases.len() >= 50,
        "expected.toml lists {} messages",
        cases.len()
    );

    // Forwarded initial requests land here (never read until the end).
    let sink = UdpSocket::bind(local(0)).expect("bind sink");
    let sink_addr = sink.local_addr().expect("sink addr");
    let mut proxy = Viaduct::start(&format!(
        "[timers]\nt1_ms = 50\n\n[routing]\ntargets = [\"sip:{sink_addr}\"]\n"
    ));
    let proxy_addr: SocketAddr = proxy.udp_addr();
    let listeners = Listeners::new();

    let mut failures = Vec::new();
    let mut reports = Vec::new();
    let mut table = String::new();
    for case in &cases {
        let check = case.check();
        if case.in_dialog {
            let _ = writeln!(
                table,
                "{:<11} {:<8} skipped: in-dialog, would be routed to a non-loopback host",
                case.name, case.group
            );
            continue;
        }
        let bytes = fs::read(&case.file).unwrap_or_else(|e| panic!("{}: {e}", case.file.display()));
        listeners.drain();
        listeners
            .client
            .send_to(&bytes, proxy_addr)
            .unwrap_or_else(|e| panic!("sending {}: {e}", case.name));

        let mine = |a: &Answer| {
            case.call_ids.is_empty()
                || header_value(&a.text, "call-id", Some("i"))
                    .is_some_and(|id| case.call_ids.iter().any(|c| id.contains(c.as_str())))
        };
        let answers = listeners.collect(ANSWER_WAIT, |got| {
            !matches!(check, Check::Silence | Check::Nothing)
                && got
                    .iter()
                    .any(|a| mine(a) && status_code(&a.text).is_some_and(|c| c >= 200))
        });
        let answers: Vec<&Answer> = answers.iter().filter(|a| mine(a)).collect();
        let finals: Vec<&Answer> = answers
            .iter()
            .copied()
            .filter(|a| status_code(&a.text).is_some_and(|c| c >= 200))
            .collect();
        let seen: Vec<String> = answers.iter().map(|a| a.status_line()).collect();
        let seen = if seen.is_empty() {
            "no answer".to_owned()
        } else {
            seen.join(" | ")
        };
        let _ = writeln!(
            table,
            "{:<11} {:<8} expect {:<16} got {seen}",
            case.name,
            case.group,
            format!("{:?}", case.expect.as_deref().unwrap_or("-")),
        );

        match &check {
            Check::Silence => {
                if !answers.is_empty() {
                    failures.push(format!(
                        "{}: a response to drop was answered: {seen}",
                        case.name
                    ));
                }
            }
            Check::Status(codes) => {
                let got: Vec<u16> = finals.iter().filter_map(|a| status_code(&a.text)).collect();
                if got.is_empty() || !got.iter().all(|c| codes.contains(c)) {
                    let liberal = if case.also_ok.iter().any(|a| a == "accept") {
                        " (RFC 4475 would also let a liberal proxy accept it)"
                    } else {
                        ""
                    };
                    let hint = if got.is_empty() && !listeners.unbound.is_empty() {
                        format!(
                            "; note: ports {:?} were busy, an answer sent to the Via port would be missed",
                            listeners.unbound
                        )
                    } else {
                        String::new()
                    };
                    failures.push(format!(
                        "{} ({}): expected {codes:?}{liberal}, got {seen}{hint}",
                        case.name,
                        case.file.display()
                    ));
                }
                if let (Some(hint), Some(first)) = (&case.reason_hint, finals.first()) {
                    let line = first
                        .text
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if status_code(&first.text) == Some(400) && !line.contains(hint.as_str()) {
                        reports.push(format!(
                            "{}: reason phrase does not name {hint:?}: {}",
                            case.name,
                            first.status_line()
                        ));
                    }
                }
            }
            Check::Report(codes) => {
                let got: Vec<u16> = finals.iter().filter_map(|a| status_code(&a.text)).collect();
                if got.is_empty() || !got.iter().all(|c| codes.contains(c)) {
                    reports.push(format!(
                        "{}: RFC 4475 suggests {codes:?}, got {seen}",
                        case.name
                    ));
                }
            }
            Check::Nothing => {}
        }
        if !proxy.is_running() {
            failures.push(format!("the proxy exited after {}", case.name));
            break;
        }
    }

    let forwarded = recv_all(&sink, Duration::from_millis(50)).unwrap_or_default();
    let alive = proxy.is_running() && proxy.answers_probe(Duration::from_secs(2));
    if !alive {
        failures.push("the proxy no longer answers the OPTIONS probe".to_owned());
    }
    eprintln!(
        "--- RFC 4475 over UDP ({} datagrams reached the target) ---\n{table}",
        forwarded.len()
    );
    if !listeners.unbound.is_empty() {
        eprintln!(
            "note: Via ports {:?} were busy and not watched",
            listeners.unbound
        );
    }
    for r in &reports {
        eprintln!("report (not asserted): {r}");
    }
    assert!(
        failures.is_empty(),
        "{} torture failures:\n  {}\n\nall results:\n{table}\nproxy log tail:\n{}",
        failures.len(),
        failures.join("\n  "),
        proxy.log_tail(60)
    );
}

#[test]
fn classification_follows_expected_toml() {
    let cases = load_cases();
    let check = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .check()
    };
    assert_eq!(check("badvers"), Check::Status(vec![505]));
    assert_eq!(check("mismatch02"), Check::Status(vec![501, 400]));
    assert_eq!(check("quotbal"), Check::Status(vec![400]));
    assert_eq!(check("bigcode"), Check::Silence);
    assert_eq!(check("scalarlg"), Check::Silence);
    assert_eq!(check("bcast"), Check::Silence);
    assert_eq!(check("zeromf"), Check::Status(vec![483]));
    assert_eq!(check("insuf"), Check::Status(vec![400]));
    assert_eq!(check("unkscm"), Check::Report(vec![416]));
    assert_eq!(check("badbranch"), Check::Report(vec![400]));
    assert_eq!(check("wsinv"), Check::Nothing);
    let skipped: Vec<&str> = cases
        .iter()
        .filter(|c| c.in_dialog)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(skipped, ["lwsruri", "wsinv"]);
}
