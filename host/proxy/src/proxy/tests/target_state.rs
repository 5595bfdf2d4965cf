//! Per-target drain through the proxy core: what goes on the wire when a
//! decision's targets are inactive (see `target_state.rs`).

use super::*;

fn drained(h: &mut Harness, targets: &[&str]) -> Arc<TargetStates> {
    let states = Arc::new(TargetStates::default());
    for t in targets {
        states.set(addr(t), TargetState::Inactive).unwrap();
    }
    h.proxy.set_target_states(states.clone());
    states
}

#[test]
fn an_inactive_target_is_skipped_for_new_calls() {
    let mut h = Harness::new(two_targets());
    drained(&mut h, &[SILENT]);
    // Straight to the second target: no INVITE to the drained one, no failover wait.
    let fwd = h.invite(invite("z9hG4bKc1"));
    assert_eq!(fwd.destination, addr(UAS));
    passes_up(&mut h, reply(&fwd, 200, Some("b1"), &[CONTACT]));
    assert_eq!(h.proxy.stats().targets_skipped, 1);
    assert_eq!(h.proxy.stats().all_targets_inactive, 0);
}

#[test]
fn every_target_inactive_gives_503_with_retry_after() {
    let mut h = Harness::new(two_targets());
    drained(&mut h, &[SILENT, UAS]);
    let t = answered(&mut h, &invite("z9hG4bKc1"));
    assert_eq!(status(&t), Some(503));
    assert!(text(&t.data).starts_with("SIP/2.0 503 All Targets Inactive\r\n"));
    assert_eq!(header(&t, "Retry-After").as_deref(), Some("30"));
    let tag = parse(&t).to().and_then(|t| t.tag()).map(<[u8]>::to_vec);
    let tag = String::from_utf8(tag.expect("a To tag on our 503")).unwrap();
    // The caller's ACK ends here; nothing ever reaches either target.
    assert!(h.feed(UAC, non_2xx_ack(&tag).bytes()).is_empty());
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    assert_eq!(h.proxy.stats().all_targets_inactive, 1);
}

/// Drain means new calls only: a call whose INVITE already went to the
/// target completes there, and its in-dialog requests follow their Route.
#[test]
fn calls_in_flight_and_in_dialog_requests_keep_their_target() {
    let mut h = Harness::relay();
    let fwd = h.invite(invite("z9hG4bKc1"));
    let states = drained(&mut h, &[UAS]);
    h.feed(UAS, reply(&fwd, 180, Some("b1"), &[]));
    passes_up(&mut h, reply(&fwd, 200, Some("b1"), &[CONTACT]));
    let ack = h.feed(UAC, in_dialog("ACK", "z9hG4bKack1", 1).bytes());
    assert_eq!(sigs(&ack), [sig("ACK", UAS)]);
    let bye = h.feed(UAC, in_dialog("BYE", "z9hG4bKbye1", 2).bytes());
    assert_eq!(sigs(&bye), [sig("BYE", UAS)]);
    passes_up(&mut h, reply(&bye[0], 200, None, &[]));
    // Plain relaying by Request-URI is no decision's target list: it goes on too.
    let relayed = h.feed(
        UAC,
        invite("z9hG4bKc2").set("Call-ID:", "Call-ID: c2").bytes(),
    );
    assert_eq!(sigs(&relayed), [sig("100", UAC), sig("INVITE", UAS)]);
    assert_eq!(states.get(addr(UAS)), TargetState::Inactive);
    assert_eq!(h.proxy.stats().targets_skipped, 0);
}

/// A router whose failover names new targets (`on_failure` → `forward`).
struct FailoverTo(Vec<Target>);

impl Router for FailoverTo {
    fn route(&mut self, _req: &mut RouteRequest<'_, '_>) -> Decision {
        Decision::Forward(vec![Target::new(format!("sip:{UAS}"))])
    }

    fn on_failure(&mut self, _req: &mut RouteRequest<'_, '_>, _status: u16) -> Decision {
        Decision::Forward(std::mem::take(&mut self.0))
    }
}

#[test]
fn failover_to_inactive_targets_only_gives_503_with_retry_after() {
    let mut h = Harness::new(FailoverTo(vec![Target::new(format!("sip:{SILENT}"))]));
    drained(&mut h, &[SILENT]);
    let fwd = h.invite(invite("z9hG4bKc1"));
    let out = h.feed(UAS, reply(&fwd, 486, Some("b1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", UAS), sig("503", UAC)]);
    assert!(text(&out[1].data).starts_with("SIP/2.0 503 All Targets Inactive\r\n"));
    assert_eq!(header(&out[1], "Retry-After").as_deref(), Some("30"));
    assert_eq!(h.proxy.stats().all_targets_inactive, 1);
}
