//! A target's own Request-URI and Route values (a registered contact and
//! its Path, RFC 3261 §16.6 step 2, RFC 3327 §5.3) on the wire.

use super::*;

const PATH_HOP: &str = "10.0.0.9:5060";

/// A target reached through a Path: no URI of its own, the first Route decides.
fn via_path(contact: &str, route: &[&str]) -> Target {
    Target {
        request_uri: Some(contact.into()),
        route: route.iter().map(|r| r.to_string()).collect(),
        ..Target::new("")
    }
}

fn forward(targets: Vec<Target>) -> TestRouter {
    TestRouter(Some(Decision::Forward(targets)))
}

/// Every Route value of a message, in order.
fn routes(t: &Transmit) -> Vec<String> {
    parse(t)
        .routes()
        .map(|r| text(r.uri.raw.as_bytes()).to_owned())
        .collect()
}

#[test]
fn a_path_target_goes_to_its_first_route_with_its_contact_as_request_uri() {
    let contact = "sip:bob@192.0.2.50:5062;ob";
    let mut h = Harness::new(forward(vec![via_path(contact, &["<sip:10.0.0.9;lr>"])]));
    let out = h.feed(UAC, invite("z9hG4bKp1").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", PATH_HOP)]);
    let fwd = &out[1];
    assert_eq!(parse(fwd).request_uri().unwrap().raw, contact);
    assert_eq!(header(fwd, "Route").as_deref(), Some("<sip:10.0.0.9;lr>"));
    // The CANCEL of this branch is the INVITE's twin: same Request-URI and Route (§9.1).
    h.feed(PATH_HOP, reply(fwd, 180, Some("b1"), &[]));
    let out = h.feed(UAC, cancel("z9hG4bKp1").bytes());
    assert_eq!(sigs(&out), [sig("200", UAC), sig("CANCEL", PATH_HOP)]);
    assert_eq!(parse(&out[1]).request_uri().unwrap().raw, contact);
    assert_eq!(routes(&out[1]), ["sip:10.0.0.9;lr"]);
}

#[test]
fn target_routes_go_ahead_of_the_received_and_the_planned_ones() {
    // Received Route values not ours stay, after the target's.
    let target = via_path(BOB, &["<sip:10.0.0.9;lr>", "<sip:10.0.0.10;lr>"]);
    let mut h = Harness::new(forward(vec![target.clone()]));
    let sent = invite("z9hG4bKp2").h("Route: <sip:10.0.0.5;lr>");
    let out = h.feed(UAC, sent.bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", PATH_HOP)]);
    assert_eq!(
        routes(&out[1]),
        ["sip:10.0.0.9;lr", "sip:10.0.0.10;lr", "sip:10.0.0.5;lr"]
    );
    let fwd = text(&out[1].data);
    assert!(
        fwd.contains(
            "\r\nRoute: <sip:10.0.0.9;lr>, <sip:10.0.0.10;lr>\r\nRoute: <sip:10.0.0.5;lr>\r\n"
        ),
        "{fwd}"
    );

    // Our own entry comes off the top (§16.4); the rest follows the target's.
    let mut h = Harness::new(forward(vec![target]));
    let sent = invite("z9hG4bKp3").h(&format!("Route: <sip:{PROXY};lr>, <sip:10.0.0.5;lr>"));
    let out = h.feed(UAC, sent.bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", PATH_HOP)]);
    let fwd = text(&out[1].data);
    assert!(
        fwd.contains("\r\nRoute: <sip:10.0.0.9;lr>, <sip:10.0.0.10;lr>, <sip:10.0.0.5;lr>\r\n"),
        "{fwd}"
    );
    assert_eq!(
        fwd.matches("Route:").count(),
        2,
        "one Route and one Record-Route line"
    );
}

#[test]
fn a_target_with_a_uri_goes_there_and_still_carries_its_route() {
    let target = Target {
        route: vec!["<sip:10.0.0.9;lr>".into()],
        ..Target::new(format!("sip:{UAS}"))
    };
    let mut h = Harness::new(forward(vec![target]));
    let fwd = h.invite(invite("z9hG4bKp4"));
    assert_eq!(parse(&fwd).request_uri().unwrap().raw, BOB);
    assert_eq!(routes(&fwd), ["sip:10.0.0.9;lr"]);
}

#[test]
fn serial_targets_each_carry_their_own_request_uri() {
    let contact = |user: &str, at: &str| Target {
        request_uri: Some(format!("sip:{user}@{at}")),
        ..Target::new(format!("sip:{at}"))
    };
    let router = forward(vec![contact("bob-desk", SILENT), contact("bob-cell", UAS)]);
    let mut h = Harness::new(router);
    let out = h.feed(UAC, invite("z9hG4bKp5").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", SILENT)]);
    assert_eq!(
        parse(&out[1]).request_uri().unwrap().raw,
        "sip:bob-desk@127.0.0.1:5090"
    );
    let first = branch_of(&out[1]);
    let out = h.feed(SILENT, reply(&out[1], 503, Some("x"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", SILENT), sig("INVITE", UAS)]);
    // The ACK of the first branch's 503 has that branch's Request-URI (§17.1.1.3).
    assert_eq!(
        parse(&out[0]).request_uri().unwrap().raw,
        "sip:bob-desk@127.0.0.1:5090"
    );
    let second = &out[1];
    assert_eq!(
        parse(second).request_uri().unwrap().raw,
        "sip:bob-cell@127.0.0.1:5080"
    );
    assert_eq!(
        branch_of(second),
        format!("{}.1", first.strip_suffix(".0").unwrap())
    );
    passes_up(&mut h, reply(second, 200, Some("b1"), &[CONTACT]));
}

#[test]
fn unusable_target_fields_fail_that_target_only() {
    let bad = [
        via_path("sip:bob@192.0.2.50\r\nX-Evil: 1", &["<sip:10.0.0.9;lr>"]),
        via_path("tel:+15551234", &["<sip:10.0.0.9;lr>"]),
        via_path(BOB, &["<sip:10.0.0.9;lr>\r\nX-Evil: 1"]),
        via_path(BOB, &["not a route"]),
        Target::new(""),
    ];
    for target in bad {
        let mut h = Harness::new(forward(vec![
            target.clone(),
            Target::new(format!("sip:{UAS}")),
        ]));
        let fwd = h.invite(invite("z9hG4bKp6"));
        assert!(!text(&fwd.data).contains("X-Evil"), "{target:?}");
        assert_eq!(parse(&fwd).request_uri().unwrap().raw, BOB);

        // Alone, it is a 503 from that branch, which goes up as 500 (§16.7 step 6).
        let mut h = Harness::new(forward(vec![target.clone()]));
        let out = h.feed(UAC, invite("z9hG4bKp7").bytes());
        assert_eq!(sigs(&out), [sig("100", UAC), sig("500", UAC)], "{target:?}");
    }
}

#[test]
fn a_drained_path_hop_is_skipped_like_any_target() {
    let mut h = Harness::new(forward(vec![
        via_path(BOB, &["<sip:10.0.0.9;lr>"]),
        Target::new(format!("sip:{UAS}")),
    ]));
    let states = Arc::new(TargetStates::default());
    states.set(addr(PATH_HOP), TargetState::Inactive).unwrap();
    h.proxy.set_target_states(states);
    let fwd = h.invite(invite("z9hG4bKp8"));
    assert_eq!(fwd.destination, addr(UAS));
    assert_eq!(h.proxy.stats().targets_skipped, 1);
}
