//! RFC 4475 torture messages against the parser, driven by `torture/expected.toml`.
//!
//! * `valid/`: parse (datagram), validate, and read every field the manifest gives.
//! * `invalid/`: requests are refused with the expected status (and a reason
//!   phrase naming the problem); responses are refused (the proxy drops them).
//! * `other/`: the parser-level part of §3.2-3.4 (accept what is syntactically
//!   fine, refuse the framing/header defects); the rest is for proxy tests.
//! * every file, every prefix of it and byte-flipped variants: no panic.
//!
//! Every failure names its message; all messages are checked before failing.
// Helpers outside #[test] fns too: a missing corpus file should just fail the test.
#![allow(clippy::unwrap_used)]

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use viaduct_sip::{
    frame_stream, Editor, Framing, HeaderName, Message, NameAddr, ParseError, StartLine, Via,
};

#[derive(Debug, Deserialize)]
struct Expect {
    file: String,
    kind: String,
    size: usize,
    method: Option<String>,
    request_uri: Option<String>,
    status: Option<u16>,
    reason: Option<String>,
    call_id: Option<String>,
    cseq: Option<u32>,
    cseq_method: Option<String>,
    max_forwards: Option<u32>,
    via_count: Option<usize>,
    from_tag: Option<String>,
    to_tag: Option<String>,
    contact_count: Option<usize>,
    content_length: Option<i64>,
    body_len: Option<usize>,
    body_has_nul: Option<bool>,
    first_message_len: Option<usize>,
    via_transports: Option<Vec<String>>,
    from_display_name: Option<String>,
    to_display_name: Option<String>,
    ruri_user_unescaped: Option<String>,
    to_user_unescaped: Option<String>,
    from_user_unescaped: Option<String>,
    subject: Option<String>,
    unknown_header_value: Option<String>,
    expect: Option<String>,
    #[serde(default)]
    also_ok: Vec<String>,
    reason_hint: Option<String>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture")
}

fn manifest() -> BTreeMap<String, Expect> {
    let text = std::fs::read_to_string(corpus_dir().join("expected.toml")).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("expected.toml: {}", e.message()))
}

/// Every `.dat` file under `sub`, as (message name, bytes), sorted by name.
fn files(sub: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dat"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// The manifest entry for a file, checking it describes these bytes.
fn entry<'e>(
    m: &'e BTreeMap<String, Expect>,
    sub: &str,
    name: &str,
    bytes: &[u8],
) -> Result<&'e Expect, String> {
    let e = m
        .get(name)
        .ok_or_else(|| format!("{sub}/{name}.dat has no table in expected.toml"))?;
    if e.file != format!("{sub}/{name}.dat") {
        return Err(format!("{name}: manifest file is {}", e.file));
    }
    if e.size != bytes.len() {
        return Err(format!(
            "{name}: {} bytes, manifest says {} (corpus must stay byte-exact)",
            bytes.len(),
            e.size
        ));
    }
    Ok(e)
}

/// %HH-unescaping (RFC 3261 §19.1.2), for the user-part checks.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

macro_rules! check {
    ($errs:expr, $name:expr, $what:expr, $got:expr, $want:expr) => {{
        let (got, want) = ($got, $want);
        if got != want {
            $errs.push(format!(
                "{}: {}: got {:?}, want {:?}",
                $name, $what, got, want
            ));
        }
    }};
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks every field the manifest gives against the parsed message.
fn check_fields(name: &str, e: &Expect, m: &Message<'_>, errs: &mut Vec<String>) {
    match (e.kind.as_str(), m.start_line()) {
        ("request", StartLine::Request { method, uri }) => {
            if let Some(want) = &e.method {
                check!(errs, name, "method", method.as_str(), want.as_str());
            }
            if let Some(want) = &e.request_uri {
                check!(errs, name, "Request-URI", uri.raw, want.as_str());
            }
            if let Some(want) = &e.ruri_user_unescaped {
                check!(
                    errs,
                    name,
                    "Request-URI user (unescaped)",
                    s(&unescape(uri.user.unwrap_or(""))),
                    want.clone()
                );
            }
        }
        ("response", StartLine::Response { code, reason }) => {
            check!(errs, name, "status", Some(*code), e.status);
            if let Some(want) = &e.reason {
                check!(errs, name, "reason phrase", s(reason), want.clone());
            }
        }
        (kind, _) => errs.push(format!("{name}: start line is not a {kind}")),
    }
    if let Some(want) = &e.call_id {
        check!(
            errs,
            name,
            "Call-ID",
            m.call_id().map(s),
            Some(want.clone())
        );
    }
    let cseq = m.cseq();
    if let Some(want) = e.cseq {
        check!(errs, name, "CSeq number", cseq.map(|c| c.seq), Some(want));
    }
    if let Some(want) = &e.cseq_method {
        check!(
            errs,
            name,
            "CSeq method",
            cseq.map(|c| c.method.as_str()),
            Some(want.as_str())
        );
    }
    if let Some(want) = e.max_forwards {
        check!(
            errs,
            name,
            "Max-Forwards",
            m.max_forwards().map(u32::from),
            Some(want)
        );
    }
    if let Some(want) = e.via_count {
        check!(errs, name, "Via count", m.via_count(), want);
    }
    if let Some(want) = &e.via_transports {
        let got: Vec<String> = m
            .values(HeaderName::Via)
            .map(|(_, v)| Via::parse(v).map_or("?".into(), |v| v.transport.to_string()))
            .collect();
        check!(errs, name, "Via transports", &got, want);
    }
    let tag = |n: Option<NameAddr<'_>>| n.and_then(|n| n.tag()).map(s);
    let from = m.from();
    let to = m.to();
    if from.is_none() {
        errs.push(format!("{name}: From does not parse"));
    }
    if to.is_none() {
        errs.push(format!("{name}: To does not parse"));
    }
    check!(errs, name, "From tag", tag(from), e.from_tag.clone());
    check!(errs, name, "To tag", tag(to), e.to_tag.clone());
    if let Some(want) = &e.from_display_name {
        let got = from.and_then(|f| f.display).map(|d| s(unquote(d)));
        check!(errs, name, "From display name", got, Some(want.clone()));
    }
    if let Some(want) = &e.to_display_name {
        let got = to.and_then(|t| t.display).map(|d| s(unquote(d)));
        check!(errs, name, "To display name", got, Some(want.clone()));
    }
    if let Some(want) = &e.from_user_unescaped {
        let got = from.and_then(|f| f.uri.user).map(|u| s(&unescape(u)));
        check!(errs, name, "From user (unescaped)", got, Some(want.clone()));
    }
    if let Some(want) = &e.to_user_unescaped {
        let got = to.and_then(|t| t.uri.user).map(|u| s(&unescape(u)));
        check!(errs, name, "To user (unescaped)", got, Some(want.clone()));
    }
    if let Some(want) = e.contact_count {
        check!(errs, name, "Contact count", m.contacts().count(), want);
        // Every Contact value must parse, not just be skipped.
        check!(
            errs,
            name,
            "Contact values",
            m.values(HeaderName::Contact).count(),
            want
        );
    }
    if let Some(want) = e.body_len {
        check!(errs, name, "body length", m.body().len(), want);
    }
    if let (Some(cl), None) = (e.content_length, e.first_message_len) {
        check!(errs, name, "Content-Length", m.content_length() as i64, cl);
    }
    if let Some(want) = e.body_has_nul {
        check!(errs, name, "body has NUL", m.body().contains(&0), want);
    }
    if let Some(want) = &e.subject {
        check!(
            errs,
            name,
            "Subject",
            m.header_value(HeaderName::Subject).map(s),
            Some(want.clone())
        );
    }
    if let Some(want) = &e.unknown_header_value {
        check!(
            errs,
            name,
            "UnknownHeaderWithUnusualValue",
            m.header_value_by_name("UnknownHeaderWithUnusualValue")
                .map(s),
            Some(want.clone())
        );
    }
}

fn unquote(d: &[u8]) -> &[u8] {
    d.strip_prefix(b"\"")
        .and_then(|d| d.strip_suffix(b"\""))
        .unwrap_or(d)
}

fn outcome(bytes: &[u8]) -> Result<Message<'_>, ParseError> {
    let m = Message::parse(bytes, Framing::Datagram)?;
    m.validate()?;
    Ok(m)
}

/// One line per message (shown with `--nocapture`).
fn report(name: &str, r: &Result<Message<'_>, ParseError>) {
    match r {
        Ok(_) => println!("{name:>11}: accepted"),
        Err(e) => println!("{name:>11}: {} {} ({e:?})", e.status(), e.reason()),
    }
}

/// A refused request must carry `expect` (or a numeric `also_ok`) and a reason naming the problem.
fn check_refusal(name: &str, e: &Expect, err: ParseError, errs: &mut Vec<String>) {
    let want = e.expect.as_deref().unwrap_or("?");
    let status = err.status().to_string();
    let alternatives: Vec<&str> = e
        .also_ok
        .iter()
        .map(String::as_str)
        .filter(|a| a.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    // "accept" in also_ok lets a liberal proxy take it; we answer `expect` anyway.
    if status != want && !alternatives.contains(&status.as_str()) {
        errs.push(format!(
            "{name}: refused with {status} {:?} ({err:?}), want {want}",
            err.reason()
        ));
        return;
    }
    if let Some(hint) = &e.reason_hint {
        if !err.reason().to_ascii_lowercase().contains(hint.as_str()) {
            errs.push(format!(
                "{name}: reason {:?} ({err:?}) does not name {hint:?}",
                err.reason()
            ));
        }
    }
}

fn finish(what: &str, errs: Vec<String>) {
    assert!(
        errs.is_empty(),
        "{what}: {} problem(s):\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

#[test]
fn manifest_covers_every_file() {
    let m = manifest();
    let mut errs = Vec::new();
    let mut seen = 0;
    for sub in ["valid", "invalid", "other"] {
        for (name, bytes) in files(sub) {
            seen += 1;
            if let Err(e) = entry(&m, sub, &name, &bytes) {
                errs.push(e);
            }
        }
    }
    check!(errs, "corpus", "file count", seen, m.len());
    check!(errs, "corpus", "file count", seen, 50);
    finish("manifest", errs);
}

#[test]
fn valid_messages_parse_validate_and_read_right() {
    let m = manifest();
    let mut errs = Vec::new();
    let all = files("valid");
    check!(errs, "valid/", "file count", all.len(), 13);
    for (name, bytes) in &all {
        let e = match entry(&m, "valid", name, bytes) {
            Ok(e) => e,
            Err(msg) => {
                errs.push(msg);
                continue;
            }
        };
        let result = outcome(bytes);
        report(name, &result);
        match result {
            Ok(msg) => check_fields(name, e, &msg, &mut errs),
            Err(err) => errs.push(format!(
                "{name}: refused: {err:?} ({} {})",
                err.status(),
                err.reason()
            )),
        }
    }
    finish("valid/", errs);
}

#[test]
fn invalid_messages_are_refused_for_the_right_reason() {
    let m = manifest();
    let mut errs = Vec::new();
    let all = files("invalid");
    check!(errs, "invalid/", "file count", all.len(), 19);
    for (name, bytes) in &all {
        let e = match entry(&m, "invalid", name, bytes) {
            Ok(e) => e,
            Err(msg) => {
                errs.push(msg);
                continue;
            }
        };
        let result = outcome(bytes);
        report(name, &result);
        match (e.kind.as_str(), result) {
            ("response", Ok(_)) => errs.push(format!("{name}: invalid response accepted")),
            ("response", Err(_)) => {
                check!(errs, name, "expect", e.expect.as_deref(), Some("drop"));
            }
            (_, Ok(_)) => errs.push(format!(
                "{name}: accepted, want {}",
                e.expect.as_deref().unwrap_or("?")
            )),
            (_, Err(err)) => check_refusal(name, e, err, &mut errs),
        }
    }
    finish("invalid/", errs);
}

/// The parser-level part of §3.2-3.4: syntactically fine messages parse,
/// validate and read right; framing and required-header defects are refused.
#[test]
fn other_messages_at_the_parser_level() {
    let m = manifest();
    let mut errs = Vec::new();
    for (name, bytes) in &files("other") {
        let e = match entry(&m, "other", name, bytes) {
            Ok(e) => e,
            Err(msg) => {
                errs.push(msg);
                continue;
            }
        };
        let result = outcome(bytes);
        report(name, &result);
        match (name.as_str(), result) {
            // Missing Call-ID/From/To, duplicated single-value headers, two Content-Lengths.
            ("insuf" | "multi01" | "mcl01", Ok(_)) => {
                errs.push(format!("{name}: accepted, want 400"))
            }
            ("insuf" | "multi01" | "mcl01", Err(err)) => check_refusal(name, e, err, &mut errs),
            // No SIP-Version, a header line without a colon.
            ("test", Ok(_)) => errs.push(format!("{name}: accepted")),
            ("test", Err(_)) => {}
            // Everything else is syntactically valid: 416/420/483/drop are decided above the parser.
            (_, Ok(msg)) => {
                if name == "badbranch" {
                    check!(
                        errs,
                        name,
                        "branch",
                        msg.top_via().and_then(|v| v.branch()).map(s),
                        Some("z9hG4bK".to_string())
                    );
                }
                if name == "bcast" {
                    let hosts: Vec<String> = msg
                        .values(HeaderName::Via)
                        .filter_map(|(_, v)| Via::parse(v))
                        .map(|v| v.host.to_string())
                        .collect();
                    check!(
                        errs,
                        name,
                        "Via hosts",
                        hosts.get(1).map(String::as_str),
                        Some("255.255.255.255")
                    );
                }
                if name == "inv2543" {
                    check!(
                        errs,
                        name,
                        "From tag",
                        msg.from().and_then(|f| f.tag()),
                        None
                    );
                    check!(errs, name, "Max-Forwards", msg.max_forwards(), None);
                }
                check_fields(name, e, &msg, &mut errs);
            }
            (_, Err(err)) => errs.push(format!(
                "{name}: refused: {err:?} ({} {})",
                err.status(),
                err.reason()
            )),
        }
    }
    finish("other/", errs);
}

/// RFC 4475 §3.1.1.8: a datagram carries the REGISTER and 450 bytes of noise.
#[test]
fn dblreq_only_the_first_request_counts() {
    let m = manifest();
    let bytes = std::fs::read(corpus_dir().join("valid/dblreq.dat")).unwrap();
    let e = &m["dblreq"];
    let msg = outcome(&bytes).unwrap();
    assert_eq!(msg.len(), e.first_message_len.unwrap());
    assert_eq!(msg.len(), 300);
    assert_eq!(msg.content_length(), 0);
    assert!(msg.body().is_empty());
    assert_eq!(msg.method().unwrap().as_str(), "REGISTER");
    // The forwarded REGISTER never carries the trailing INVITE.
    let out = Editor::new(&bytes).finish(msg.len());
    assert_eq!(out, &bytes[..300]);
    assert!(out.ends_with(b"\r\n\r\n"));
    assert!(!out.windows(6).any(|w| w == b"INVITE"));
}

/// Exercises every getter and an editor, so a panic anywhere in them shows up.
fn poke(bytes: &[u8]) {
    for framing in [Framing::Datagram, Framing::Stream] {
        let Ok(m) = Message::parse(bytes, framing) else {
            continue;
        };
        let ok = m.validate().is_ok();
        let _ = (
            m.method(),
            m.request_uri(),
            m.status(),
            m.call_id(),
            m.cseq(),
        );
        let _ = (
            m.from(),
            m.to(),
            m.max_forwards(),
            m.via_count(),
            m.top_via(),
        );
        let _ = (
            m.contacts().count(),
            m.routes().count(),
            m.record_routes().count(),
        );
        let _ = (m.body(), m.content_type(), m.len());
        for (_, v) in m.values(HeaderName::Via) {
            if let Some(v) = Via::parse(v) {
                let _ = (v.branch(), v.received(), v.rport());
            }
        }
        if ok {
            let mut e = Editor::new(bytes);
            if let Some(r) = m.first_value_removal(HeaderName::Via) {
                e.remove(r);
            }
            let out = e.finish(m.len());
            assert!(out.len() <= m.len());
        }
    }
    let _ = frame_stream(bytes, 65535);
}

#[test]
fn no_panic_on_prefixes_and_flipped_bytes() {
    const FLIPS: &[u8] = b"\0 \t\r\n:;,\"<>@?%=\\/\xff0";
    let mut variants = 0usize;
    for sub in ["valid", "invalid", "other"] {
        for (_, bytes) in files(sub) {
            for end in 0..=bytes.len() {
                poke(&bytes[..end]);
                variants += 1;
            }
            let mut copy = bytes.clone();
            // Every byte of the head and a sample of the body, each set to a few troublemakers.
            for i in (0..bytes.len()).step_by(4) {
                for &b in FLIPS {
                    copy[i] = b;
                    poke(&copy);
                    copy[i] = bytes[i];
                    variants += 1;
                }
            }
        }
    }
    assert!(variants > 80_000, "{variants}");
}
