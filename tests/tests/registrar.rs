//! The registrar across instances (RFC 3261 §10, issue #9): two Viaduct
//! instances share one Redis; a phone registers through instance A with a
//! digest password, a caller reaches it through instance B by its AOR, the
//! call completes and its BYE follows the Record-Route. When the binding
//! expires the AOR is unknown again. An instance on its own in-memory state
//! never sees A's binding: the control that shows the sharing is what
//! makes the call work.
//!
//! Peers: SIPp's `register_uac.xml` (the phone registering, MD5 digest as
//! Debian's SIPp does), a SIPp UAS as the phone's ringer at the registered
//! contact, SIPp's built-in UAC as the caller; Debian's redis-server.

use std::thread;
use std::time::Duration;

use md5::{Digest, Md5};
use viaduct_e2e::{policy_wasm, scenario_path, RedisServer, Sipp, SippRun, Viaduct};

const REALM: &str = "voice.test";
const PASSWORD: &str = "bob's secret";

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An instance running `policies/registrar` with digest on REGISTER (MD5
/// first: SIPp answers the first challenge only), bob's HA1 in `[auth]`,
/// one shared `auth.secret` (so a nonce from A is good on B) and `state`.
fn instance(state: &str, cache: &tempfile::TempDir) -> Viaduct {
    Viaduct::start(&format!(
        "[auth]\nenabled = true\nalgorithms = [\"MD5\"]\nsecret = \"{secret}\"\n\n\
         [[auth.users]]\nuser = \"bob\"\nrealm = \"{REALM}\"\nha1_md5 = \"{ha1}\"\n\n\
         [registrar]\nmin_expires = 1\n\n{state}\n\n\
         [policy]\nfile = {file:?}\ncache_dir = {cache:?}\n\n[policy.config]\nrealm = \"{REALM}\"\n",
        secret = "7".repeat(64),
        ha1 = md5_hex(&format!("bob:{REALM}:{PASSWORD}")),
        file = policy_wasm("registrar").display().to_string(),
        cache = cache.path().display().to_string(),
    ))
}

/// bob registers `contact_port` through `proxy` for `expires` seconds.
fn register(proxy: &Viaduct, contact_port: u16, expires: u32, password: &str) -> SippRun {
    Sipp::uac(proxy.udp_addr())
        .scenario_file(&scenario_path("register_uac.xml"))
        .service("bob")
        .arg("-key")
        .arg("contact_port")
        .arg(&contact_port.to_string())
        .arg("-key")
        .arg("expires")
        .arg(&expires.to_string())
        .arg("-au")
        .arg("bob")
        .arg("-ap")
        .arg(password)
        .calls(1)
        .timeout(Duration::from_secs(10))
        .trace_msg()
        .spawn()
        .wait()
}

/// `calls` calls to `sip:bob@<proxy>` through `proxy`.
fn call_bob(proxy: &Viaduct, calls: u64) -> SippRun {
    Sipp::uac(proxy.udp_addr())
        .scenario("call_aor_uac.xml")
        .service("bob")
        .calls(calls)
        .rate(10)
        .timeout(Duration::from_secs(15))
        .trace_msg()
        .spawn()
        .wait()
}

#[test]
fn register_on_one_instance_call_through_the_other() {
    let redis = RedisServer::start();
    let cache = tempfile::tempdir().expect("temp dir");
    let shared = format!("[state]\nbackend = \"redis\"\nurl = \"{}\"", redis.url());
    let a = instance(&shared, &cache);
    let b = instance(&shared, &cache);
    let alone = instance("", &cache);
    let ringer = Sipp::uas().trace_msg().spawn();
    let contact = ringer.addr();

    // A wrong password is refused, and stores nothing.
    let refused = register(&a, contact.port(), 30, "not bob's");
    assert!(
        refused.messages().contains("SIP/2.0 403"),
        "wrong password: {}",
        refused.messages()
    );

    let reg = register(&a, contact.port(), 30, PASSWORD);
    assert_eq!(reg.successful, 1, "REGISTER through A:\n{}", reg.summary());
    let trace = reg.messages();
    assert!(
        trace.contains("SIP/2.0 401") && trace.contains("WWW-Authenticate: Digest"),
        "the registrar challenges with 401:\n{trace}"
    );
    let ok = reg.first_message("SIP/2.0 200");
    let want = format!("Contact: <sip:bob@{contact}>;expires=");
    assert!(ok.contains(&want), "200 lists the binding ({want}):\n{ok}");

    // Through B, whose R-URI has B's port: the AOR's canonical form finds
    // the binding A stored in Redis.
    let caller = call_bob(&b, 3);
    assert_eq!(
        (caller.successful, caller.failed),
        (3, 0),
        "calls to bob through B:\n{}\n{}",
        caller.summary(),
        b.log_tail(30)
    );
    let invite = ringer_invites(&ringer.stop(), 3);
    assert!(
        invite.starts_with(&format!("INVITE sip:bob@{contact} SIP/2.0")),
        "the contact is the Request-URI at the phone:\n{invite}"
    );
    assert!(
        invite.contains(&format!("Record-Route: <sip:{};lr>", b.udp_addr())),
        "B records its own address, so the BYE comes back through it:\n{invite}"
    );

    // An instance with its own in-memory state knows no bob: relaying the
    // request to itself gets 404.
    let lost = call_bob(&alone, 1);
    assert!(
        lost.messages().contains("SIP/2.0 404"),
        "{}\n{}",
        lost.messages(),
        alone.log_tail(40)
    );

    // Expiry: the same contact re-registered for 1 s (a new Call-ID
    // replaces the binding) is gone 2.5 s later, on every instance; before
    // that a call would go to the contact (nobody answers there now) and
    // never get 404.
    let reg = register(&a, contact.port(), 1, PASSWORD);
    assert_eq!(reg.successful, 1, "{}", reg.summary());
    assert!(
        reg.first_message("SIP/2.0 200")
            .contains(&format!("Contact: <sip:bob@{contact}>;expires=1")),
        "{}",
        reg.messages()
    );
    thread::sleep(Duration::from_millis(2500));
    let late = call_bob(&b, 1);
    assert!(
        late.messages().contains("SIP/2.0 404"),
        "{}\n{}",
        late.messages(),
        b.log_tail(30)
    );
}

/// The first INVITE the ringer received, after checking it got `calls` of them.
fn ringer_invites(run: &SippRun, calls: usize) -> String {
    let invites: Vec<String> = run
        .message_list()
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), calls, "{}", run.summary());
    invites[0].clone()
}

/// Two phones of one user (RFC 3261 §16.7): the desk phone rings until
/// cancelled, the softphone answers at once. The call forks to both; the
/// softphone's 200 reaches the caller and the desk phone gets CANCEL (and
/// answers 487, which the caller never sees).
#[test]
fn both_phones_ring_and_the_first_answer_wins() {
    let cache = tempfile::tempdir().expect("temp dir");
    let proxy = instance("", &cache);
    let soft = Sipp::uas().trace_msg().spawn();
    let desk = Sipp::uas()
        .scenario("cancel_uas.xml")
        .calls(1)
        .timeout(Duration::from_secs(15))
        .trace_msg()
        .spawn();
    for phone in [soft.addr(), desk.addr()] {
        let reg = register(&proxy, phone.port(), 60, PASSWORD);
        assert_eq!(reg.successful, 1, "{}", reg.summary());
    }

    let caller = call_bob(&proxy, 1);
    assert!(
        caller
            .first_message("SIP/2.0 200")
            .contains("CSeq: 1 INVITE"),
        "the softphone's answer reaches the caller:\n{}",
        caller.messages()
    );
    assert!(
        !caller.messages().contains("SIP/2.0 487"),
        "the cancelled branch's 487 stays in the proxy:\n{}",
        caller.messages()
    );
    let desk = desk.wait();
    assert_eq!(
        desk.successful,
        1,
        "the desk phone rang and was cancelled:\n{}\n{}",
        desk.summary(),
        proxy.log_tail(40)
    );
    assert!(
        desk.messages().contains("CANCEL sip:bob@"),
        "{}",
        desk.messages()
    );
    let soft = soft.stop();
    assert!(
        soft.messages().contains("BYE sip:"),
        "the call ended on the softphone:\n{}",
        soft.messages()
    );
}
