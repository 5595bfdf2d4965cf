use super::*;
use std::collections::HashMap;
use std::sync::Mutex;
use viaduct_sip::Framing;

/// The store a test needs: fixed HA1s, counts in a map.
#[derive(Default)]
struct Store {
    ha1: HashMap<(Algorithm, String, String), String>,
    counts: Mutex<HashMap<u128, u32>>,
}

impl DigestStore for Store {
    fn ha1(&self, algorithm: Algorithm, realm: &str, user: &str) -> Option<String> {
        self.ha1
            .get(&(algorithm, realm.into(), user.into()))
            .cloned()
    }
    fn advance_nonce_count(&self, id: u128, nc: u32, _ttl: Duration) -> bool {
        let mut counts = self.counts.lock().unwrap();
        let last = counts.entry(id).or_insert(0);
        if nc > *last {
            *last = nc;
            true
        } else {
            false
        }
    }
}

const REALM: &str = "viaduct";
const NOW: u64 = 1_800_000_000;

fn auth() -> Authenticator {
    let mut store = Store::default();
    for a in Algorithm::OFFERED {
        store.ha1.insert(
            (a, REALM.into(), "alice".into()),
            a.ha1("alice", REALM, "secret"),
        );
    }
    Authenticator::new([3; 32], Duration::from_secs(300), Arc::new(store))
}

fn nonce_of(challenge: &str) -> String {
    let start = challenge.find("nonce=\"").unwrap() + 7;
    challenge[start..start + nonce::NONCE_LEN].to_owned()
}

/// What a client knowing `password` sends (computed here from the RFC text,
/// through the same hash helper; the RFC vectors in `digest` check the helper).
fn credentials(alg: Algorithm, password: &str, nonce: &str, nc: Option<u32>, uri: &str) -> String {
    let ha1 = alg.ha1("alice", REALM, password);
    let ha2 = alg.hex(&[b"INVITE", uri.as_bytes()]);
    match nc {
        Some(nc) => {
            let nc = format!("{nc:08x}");
            let resp = alg.hex(&[
                ha1.as_bytes(),
                nonce.as_bytes(),
                nc.as_bytes(),
                b"c0ffee",
                b"auth",
                ha2.as_bytes(),
            ]);
            format!(
                "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 response=\"{resp}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"c0ffee\"",
                alg.token()
            )
        }
        None => {
            let resp = alg.hex(&[ha1.as_bytes(), nonce.as_bytes(), ha2.as_bytes()]);
            format!(
                "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\""
            )
        }
    }
}

fn invite(authorization: Option<&str>) -> Vec<u8> {
    let mut m = String::from(
        "INVITE sip:room-1@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=1\r\nTo: <sip:room-1@127.0.0.1>\r\n\
         Call-ID: a@b\r\nCSeq: 2 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\n",
    );
    if let Some(a) = authorization {
        m.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

fn check(a: &Authenticator, authorization: Option<&str>, now: u64) -> AuthCheck {
    let buf = invite(authorization);
    let msg = Message::parse(&buf, Framing::Datagram).unwrap();
    a.check(&msg, REALM, now)
}

#[test]
fn challenge_offers_sha256_then_md5_with_one_nonce() {
    let lines = auth().challenge(REALM, false, NOW, 9);
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("Proxy-Authenticate: Digest realm=\"viaduct\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("algorithm=SHA-256") && lines[0].contains("qop=\"auth\""));
    assert!(lines[1].contains("algorithm=MD5"));
    assert_eq!(nonce_of(&lines[0]), nonce_of(&lines[1]));
    assert!(!lines[0].contains("stale"));
    assert!(auth().challenge(REALM, true, NOW, 9)[0].ends_with(", stale=true"));
}

#[test]
fn the_right_password_passes_with_either_algorithm_and_qop_or_none() {
    let a = auth();
    let mut random = 0;
    for alg in Algorithm::OFFERED {
        for nc in [Some(1), None] {
            random += 1;
            let n = nonce_of(&a.challenge(REALM, false, NOW, random)[0]);
            let c = credentials(alg, "secret", &n, nc, "sip:room-1@127.0.0.1");
            let c = if nc.is_none() && alg == Algorithm::Sha256 {
                c.replace("response=", "algorithm=SHA-256, response=")
            } else {
                c
            };
            assert_eq!(
                check(&a, Some(&c), NOW + 10),
                AuthCheck::Valid {
                    user: "alice".into(),
                    algorithm: alg
                },
                "{alg:?} {nc:?}"
            );
        }
    }
}

#[test]
fn a_wrong_password_or_unknown_user_is_wrong_not_stale() {
    let a = auth();
    let n = nonce_of(&a.challenge(REALM, false, NOW, 1)[0]);
    let c = credentials(Algorithm::Md5, "guess", &n, Some(1), "sip:room-1@127.0.0.1");
    assert_eq!(
        check(&a, Some(&c), NOW),
        AuthCheck::Wrong {
            user: "alice".into()
        }
    );
    let bob = credentials(
        Algorithm::Md5,
        "secret",
        &n,
        Some(1),
        "sip:room-1@127.0.0.1",
    )
    .replace("\"alice\"", "\"bob\"");
    assert_eq!(
        check(&a, Some(&bob), NOW),
        AuthCheck::Wrong { user: "bob".into() }
    );
    // Even with an expired nonce, a wrong password is 403, not an invitation to retry.
    assert_eq!(
        check(&a, Some(&c), NOW + 301),
        AuthCheck::Wrong {
            user: "alice".into()
        }
    );
}

#[test]
fn replayed_counts_and_reused_qopless_nonces_are_stale() {
    let a = auth();
    let n = nonce_of(&a.challenge(REALM, false, NOW, 1)[0]);
    let uri = "sip:room-1@127.0.0.1";
    let one = credentials(Algorithm::Sha256, "secret", &n, Some(1), uri);
    assert!(check(&a, Some(&one), NOW).user().is_some());
    assert_eq!(
        check(&a, Some(&one), NOW),
        AuthCheck::Stale { replay: true }
    );
    let two = credentials(Algorithm::Sha256, "secret", &n, Some(2), uri);
    assert!(check(&a, Some(&two), NOW).user().is_some());
    let zero = credentials(Algorithm::Sha256, "secret", &n, Some(0), uri);
    assert_eq!(
        check(&a, Some(&zero), NOW),
        AuthCheck::Stale { replay: true }
    );

    let m = nonce_of(&a.challenge(REALM, false, NOW, 2)[0]);
    let plain = credentials(Algorithm::Md5, "secret", &m, None, uri);
    assert!(check(&a, Some(&plain), NOW).user().is_some());
    assert_eq!(
        check(&a, Some(&plain), NOW),
        AuthCheck::Stale { replay: true }
    );
}

#[test]
fn expired_or_foreign_nonces_with_the_right_password_are_stale() {
    let a = auth();
    let n = nonce_of(&a.challenge(REALM, false, NOW, 1)[0]);
    let c = credentials(
        Algorithm::Md5,
        "secret",
        &n,
        Some(1),
        "sip:room-1@127.0.0.1",
    );
    assert_eq!(
        check(&a, Some(&c), NOW + 301),
        AuthCheck::Stale { replay: false }
    );
    // Another secret (a restarted instance) did not issue it.
    let other = Authenticator::new(
        [4; 32],
        Duration::from_secs(300),
        Arc::new(Store {
            ha1: [(
                (Algorithm::Md5, REALM.into(), "alice".into()),
                Algorithm::Md5.ha1("alice", REALM, "secret"),
            )]
            .into(),
            ..Store::default()
        }),
    );
    assert_eq!(
        check(&other, Some(&c), NOW),
        AuthCheck::Stale { replay: false }
    );
}

#[test]
fn missing_other_realm_and_malformed_credentials() {
    let a = auth();
    assert_eq!(check(&a, None, NOW), AuthCheck::Missing);
    let n = nonce_of(&a.challenge(REALM, false, NOW, 1)[0]);
    let c = credentials(
        Algorithm::Md5,
        "secret",
        &n,
        Some(1),
        "sip:room-1@127.0.0.1",
    );
    assert_eq!(
        check(&a, Some(&c.replace("viaduct", "elsewhere")), NOW),
        AuthCheck::Missing
    );
    let wrong_uri = credentials(
        Algorithm::Md5,
        "secret",
        &n,
        Some(1),
        "sip:room-2@127.0.0.2",
    );
    assert!(matches!(
        check(&a, Some(&wrong_uri), NOW),
        AuthCheck::Malformed(_)
    ));
    let other_port = credentials(Algorithm::Md5, "secret", &n, Some(1), "sip:127.0.0.1:5070");
    assert!(matches!(
        check(&a, Some(&other_port), NOW),
        AuthCheck::Malformed(_)
    ));
    // SIPp 3.6.1 hashes the Request-URI without its user part: same host and port pass.
    let hostonly = credentials(Algorithm::Md5, "secret", &n, Some(1), "sip:127.0.0.1");
    assert!(check(&a, Some(&hostonly), NOW).user().is_some());
    let sess = c.replace("algorithm=MD5", "algorithm=MD5-sess");
    assert!(matches!(
        check(&a, Some(&sess), NOW),
        AuthCheck::Malformed(_)
    ));
    let int = c.replace("qop=auth", "qop=auth-int");
    assert!(matches!(
        check(&a, Some(&int), NOW),
        AuthCheck::Malformed(_)
    ));
    let bad_nc = c.replace("nc=00000001", "nc=1");
    assert!(matches!(
        check(&a, Some(&bad_nc), NOW),
        AuthCheck::Malformed(_)
    ));
    assert!(matches!(
        check(&a, Some("Digest username=\"x"), NOW),
        AuthCheck::Malformed(_)
    ));
    // A Basic header is not Digest credentials at all.
    assert!(matches!(
        check(&a, Some("Basic Zm9vOmJhcg=="), NOW),
        AuthCheck::Malformed(_)
    ));
}

#[test]
fn the_offer_order_is_configurable_and_binding() {
    let a = auth().with_algorithms(vec![Algorithm::Md5]);
    let lines = a.challenge(REALM, false, NOW, 5);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("algorithm=MD5"));
    let n = nonce_of(&lines[0]);
    let sha = credentials(
        Algorithm::Sha256,
        "secret",
        &n,
        Some(1),
        "sip:room-1@127.0.0.1",
    );
    assert_eq!(
        check(&a, Some(&sha), NOW),
        AuthCheck::Malformed("Digest Algorithm Not Offered")
    );
    let md5 = credentials(
        Algorithm::Md5,
        "secret",
        &n,
        Some(1),
        "sip:room-1@127.0.0.1",
    );
    assert!(check(&a, Some(&md5), NOW).user().is_some());
    let both = auth().with_algorithms(vec![Algorithm::Md5, Algorithm::Sha256]);
    let lines = both.challenge(REALM, false, NOW, 6);
    assert!(lines[0].contains("MD5") && lines[1].contains("SHA-256"));
}
