//! Parallel forking (RFC 3261 §16.7, §16.10): one branch per target at
//! once, the first 2xx wins and the others are cancelled, the best final
//! response goes up when every branch failed.

use super::*;
use std::sync::Mutex;

const A: &str = "127.0.0.1:5081";
const B: &str = "127.0.0.1:5082";
const C: &str = "127.0.0.1:5083";

/// One registered contact: the branch goes to `at` with `sip:bob@at` as its Request-URI.
fn contact(at: &str) -> Target {
    Target {
        request_uri: Some(format!("sip:bob@{at}")),
        ..Target::new(format!("sip:{at}"))
    }
}

/// Forks to its targets and writes down every status `on_failure` is asked
/// about; answers it with `then` once, `continue` after.
struct ForkRouter {
    decision: Decision,
    failures: Arc<Mutex<Vec<u16>>>,
    then: Option<Decision>,
}

impl Router for ForkRouter {
    fn route(&mut self, _req: &mut RouteRequest<'_, '_>) -> Decision {
        self.decision.clone()
    }

    fn on_failure(&mut self, _req: &mut RouteRequest<'_, '_>, status: u16) -> Decision {
        self.failures.lock().unwrap().push(status);
        self.then.take().unwrap_or(Decision::Continue)
    }
}

/// The caller's ACK for a non-2xx answer to its INVITE sent with `branch`.
fn caller_ack(branch: &str, to_tag: &str) -> Msg {
    Msg::request("ACK", BOB, branch, 1).with_to_tag(to_tag)
}

fn fork_harness(targets: Vec<Target>) -> (Harness, Arc<Mutex<Vec<u16>>>) {
    let failures = Arc::default();
    let router = ForkRouter {
        decision: Decision::Fork(targets),
        failures: Arc::clone(&failures),
        then: None,
    };
    (Harness::new(router), failures)
}

/// Sends the caller's INVITE and checks it reached A, B and C at once, each
/// with its own Request-URI and branch; returns the three INVITEs.
fn fork_invite(h: &mut Harness, branch: &str) -> [Transmit; 3] {
    let out = h.feed(UAC, invite(branch).bytes());
    assert_eq!(
        sigs(&out),
        [
            sig("100", UAC),
            sig("INVITE", A),
            sig("INVITE", B),
            sig("INVITE", C)
        ]
    );
    let hash = branch_of(&out[1]);
    let hash = hash.strip_suffix(".0").expect("first branch is .0");
    for (n, (fwd, at)) in out[1..].iter().zip([A, B, C]).enumerate() {
        assert_eq!(
            parse(fwd).request_uri().unwrap().raw,
            format!("sip:bob@{at}")
        );
        assert_eq!(branch_of(fwd), format!("{hash}.{n}"));
    }
    [out[1].clone(), out[2].clone(), out[3].clone()]
}

#[test]
fn first_2xx_wins_and_the_other_branches_are_cancelled() {
    let (mut h, failures) = fork_harness(vec![contact(A), contact(B), contact(C)]);
    let [to_a, to_b, to_c] = fork_invite(&mut h, "z9hG4bKf1");
    assert_eq!(h.proxy.pending_requests(), 1);

    // Provisional responses from any branch go up (§16.7 step 5).
    let up = passes_up(&mut h, reply(&to_a, 180, Some("a1"), &[]));
    assert_eq!(status(&up), Some(180));
    passes_up(&mut h, reply(&to_b, 180, Some("b1"), &[]));

    // A answers: its 200 goes up, B (ringing) gets a CANCEL at once; C has
    // sent nothing yet, so its CANCEL waits for a provisional response (§9.1).
    let ok = reply(
        &to_a,
        200,
        Some("a1"),
        &[&format!("Contact: <sip:bob@{A}>")],
    );
    let out = h.feed(A, ok.clone());
    assert_eq!(sigs(&out), [sig("200", UAC), sig("CANCEL", B)]);
    assert_eq!(text(&out[0].data), text(&without_top_via(&ok)));
    let cancel_b = out[1].clone();
    assert_eq!(branch_of(&cancel_b), branch_of(&to_b));
    assert_eq!(
        parse(&cancel_b).request_uri().unwrap().raw,
        format!("sip:bob@{B}")
    );
    assert_eq!(h.proxy.pending_requests(), 0);

    // C rings late: it gets its CANCEL now, and its 180 stays here.
    let out = h.feed(C, reply(&to_c, 180, Some("c1"), &[]));
    assert_eq!(sigs(&out), [sig("CANCEL", C)]);
    let cancel_c = out[0].clone();
    assert_eq!(branch_of(&cancel_c), branch_of(&to_c));

    // Their 200 (CANCEL) and 487 (INVITE) are absorbed: the 487s are ACKed, not forwarded.
    for (from, fwd, cancel, tag) in [(B, &to_b, &cancel_b, "b1"), (C, &to_c, &cancel_c, "c1")] {
        assert!(h.feed(from, reply(cancel, 200, None, &[])).is_empty());
        let out = h.feed(from, reply(fwd, 487, Some(tag), &[]));
        assert_eq!(sigs(&out), [sig("ACK", from)]);
        assert_eq!(branch_of(&out[0]), branch_of(fwd));
    }

    // The caller's ACK for the 2xx follows the recorded route to A, as ever.
    let ack = Msg::request("ACK", &format!("sip:bob@{A}"), "z9hG4bKf1ack", 1)
        .with_to_tag("a1")
        .h(&format!("Route: <sip:{PROXY};lr>"));
    let out = h.feed(UAC, ack.bytes());
    assert_eq!(sigs(&out), [sig("ACK", A)]);

    // A 2xx retransmission still reaches the caller; nothing else happens later.
    assert_eq!(sigs(&h.feed(A, ok)), [sig("200", UAC)]);
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    assert!(
        failures.lock().unwrap().is_empty(),
        "a call that was answered did not fail"
    );
    assert_eq!(h.proxy.transactions(), (0, 0));
}

#[test]
fn a_later_2xx_from_another_branch_still_goes_up() {
    let (mut h, _) = fork_harness(vec![contact(A), contact(B), contact(C)]);
    let [to_a, to_b, to_c] = fork_invite(&mut h, "z9hG4bKf2");
    h.feed(A, reply(&to_a, 180, Some("a1"), &[]));
    h.feed(B, reply(&to_b, 180, Some("b1"), &[]));
    let out = h.feed(A, reply(&to_a, 200, Some("a1"), &[]));
    assert_eq!(sigs(&out), [sig("200", UAC), sig("CANCEL", B)]);
    assert!(h.feed(B, reply(&out[1], 200, None, &[])).is_empty());
    // B answered before our CANCEL reached it: §16.7 step 5 forwards every 2xx
    // to an INVITE, so the caller can ACK and BYE that dialog too.
    passes_up(&mut h, reply(&to_b, 200, Some("b1"), &[]));
    // C never answers anything: its CANCEL never goes (no provisional), Timer C ends it.
    let later = h.advance(Duration::from_secs(40));
    assert!(
        later
            .iter()
            .all(|t| t.destination == addr(C) && method(t) == "INVITE"),
        "only Timer A retransmissions to C: {:?}",
        sigs(&later)
    );
    assert_eq!(
        parse(&to_c).request_uri().unwrap().raw,
        format!("sip:bob@{C}")
    );
    h.advance(Duration::from_secs(200));
    assert_eq!(h.proxy.transactions(), (0, 0));
}

#[test]
fn when_every_branch_fails_the_best_answer_goes_up_once() {
    let (mut h, failures) = fork_harness(vec![contact(A), contact(B), contact(C)]);
    let [to_a, to_b, to_c] = fork_invite(&mut h, "z9hG4bKf3");
    // Each failure is ACKed by its client transaction; nothing goes up while one is pending.
    let out = h.feed(A, reply(&to_a, 503, Some("a1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", A)]);
    let not_found = reply(&to_b, 404, Some("b1"), &[]);
    let out = h.feed(B, not_found.clone());
    assert_eq!(sigs(&out), [sig("ACK", B)]);
    // The last one: §16.7 step 6 picks the lowest class, the first of it (404 before 486).
    let out = h.feed(C, reply(&to_c, 486, Some("c1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", C), sig("404", UAC)]);
    assert_eq!(text(&out[1].data), text(&without_top_via(&not_found)));
    // The router was asked once, with the best status, not once per branch.
    assert_eq!(*failures.lock().unwrap(), [404]);

    // Retransmitted failures are ACKed again and go up no more.
    assert_eq!(
        sigs(&h.feed(C, reply(&to_c, 486, Some("c1"), &[]))),
        [sig("ACK", C)]
    );
    assert!(h
        .feed(UAC, caller_ack("z9hG4bKf3", "b1").bytes())
        .is_empty());
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    assert_eq!(h.proxy.pending_requests(), 0);
}

#[test]
fn a_failed_fork_can_fail_over_to_new_targets() {
    let failures = Arc::default();
    let router = ForkRouter {
        decision: Decision::Fork(vec![contact(A), contact(B)]),
        failures: Arc::clone(&failures),
        then: Some(Decision::Forward(vec![contact(UAS)])),
    };
    let mut h = Harness::new(router);
    let out = h.feed(UAC, invite("z9hG4bKf15").bytes());
    let (to_a, to_b) = (out[1].clone(), out[2].clone());
    assert_eq!(
        sigs(&h.feed(A, reply(&to_a, 480, Some("a1"), &[]))),
        [sig("ACK", A)]
    );
    // The last branch failed: the router, asked once, names a new target.
    let out = h.feed(B, reply(&to_b, 486, Some("b1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", B), sig("INVITE", UAS)]);
    assert_eq!(*failures.lock().unwrap(), [480]);
    let hash = branch_of(&to_a);
    assert_eq!(branch_of(&out[1]), hash.replace(".0", ".2"));
    // It failed too: the best of all three goes up.
    let out = h.feed(UAS, reply(&out[1], 404, Some("u1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", UAS), sig("480", UAC)]);
    assert_eq!(*failures.lock().unwrap(), [480, 404]);
}

#[test]
fn every_branch_503_gives_500() {
    let (mut h, _) = fork_harness(vec![contact(A), contact(B)]);
    let out = h.feed(UAC, invite("z9hG4bKf4").bytes());
    assert_eq!(
        sigs(&out),
        [sig("100", UAC), sig("INVITE", A), sig("INVITE", B)]
    );
    h.feed(A, reply(&out[1], 503, Some("a1"), &[]));
    let out = h.feed(B, reply(&out[2], 503, Some("b1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", B), sig("500", UAC)]);
}

#[test]
fn a_6xx_cancels_the_others_and_asks_no_router() {
    let (mut h, failures) = fork_harness(vec![contact(A), contact(B), contact(C)]);
    let [to_a, to_b, to_c] = fork_invite(&mut h, "z9hG4bKf5");
    h.feed(A, reply(&to_a, 180, Some("a1"), &[]));
    // §16.7 step 5: the 6xx is not forwarded yet; the pending branches are cancelled.
    let decline = reply(&to_b, 603, Some("b1"), &[]);
    let out = h.feed(B, decline.clone());
    assert_eq!(sigs(&out), [sig("ACK", B), sig("CANCEL", A)]);
    let out = h.feed(C, reply(&to_c, 100, None, &[]));
    assert_eq!(sigs(&out), [sig("CANCEL", C)]);
    assert!(h.feed(A, reply(&to_a, 487, Some("a1"), &[])).len() == 1);
    // Once the last branch ended, the 6xx goes up, whatever came after it.
    let out = h.feed(C, reply(&to_c, 487, Some("c1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", C), sig("603", UAC)]);
    assert_eq!(text(&out[1].data), text(&without_top_via(&decline)));
    assert!(
        failures.lock().unwrap().is_empty(),
        "no new branches after a 6xx"
    );
}

#[test]
fn caller_cancel_reaches_every_branch_and_487_goes_up_once() {
    let (mut h, failures) = fork_harness(vec![contact(A), contact(B), contact(C)]);
    let [to_a, to_b, to_c] = fork_invite(&mut h, "z9hG4bKf6");
    h.feed(A, reply(&to_a, 180, Some("a1"), &[]));
    assert!(h.feed(B, reply(&to_b, 100, None, &[])).is_empty());
    let out = h.feed(UAC, cancel("z9hG4bKf6").bytes());
    assert_eq!(
        sigs(&out),
        [sig("200", UAC), sig("CANCEL", A), sig("CANCEL", B)]
    );
    // C had sent nothing: its CANCEL follows its first provisional response.
    let out = h.feed(C, reply(&to_c, 180, Some("c1"), &[]));
    assert_eq!(sigs(&out)[0], sig("CANCEL", C));
    for (from, fwd, tag) in [(A, &to_a, "a1"), (B, &to_b, "b1")] {
        let out = h.feed(from, reply(fwd, 487, Some(tag), &[]));
        assert_eq!(
            sigs(&out),
            [sig("ACK", from)],
            "no answer while C is pending"
        );
    }
    let out = h.feed(C, reply(&to_c, 487, Some("c1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", C), sig("487", UAC)]);
    assert!(failures.lock().unwrap().is_empty());
    assert!(h
        .feed(UAC, caller_ack("z9hG4bKf6", "c1").bytes())
        .is_empty());
    h.advance(Duration::from_secs(200));
    assert_eq!(h.proxy.transactions(), (0, 0));
}

#[test]
fn each_branch_has_its_own_timeout() {
    let quick = Target {
        timeout: Some(Duration::from_secs(2)),
        ..contact(A)
    };
    let (mut h, _) = fork_harness(vec![quick, contact(B)]);
    let out = h.feed(UAC, invite("z9hG4bKf7").bytes());
    let (to_a, to_b) = (out[1].clone(), out[2].clone());
    h.feed(B, reply(&to_b, 180, Some("b1"), &[]));
    // A is silent: Timer A retransmits to it until its own timeout (2 s) ends
    // it; B rings on, and the caller waits for B.
    let log = h.advance_log(Duration::from_secs(5));
    assert_eq!(
        timeline(&log, A),
        [(500, sig("INVITE", A)), (1_500, sig("INVITE", A))]
    );
    assert!(timeline(&log, UAC).is_empty());
    assert!(
        h.feed(A, reply(&to_a, 180, Some("a1"), &[])).is_empty(),
        "A ended"
    );
    passes_up(&mut h, reply(&to_b, 200, Some("b1"), &[]));
}

#[test]
fn a_forked_non_invite_takes_the_first_2xx_and_cancels_nothing() {
    let (mut h, _) = fork_harness(vec![contact(A), contact(B), contact(C)]);
    let message = Msg::request("MESSAGE", BOB, "z9hG4bKf8", 1);
    let out = h.feed(UAC, message.bytes());
    assert_eq!(
        sigs(&out),
        [sig("MESSAGE", A), sig("MESSAGE", B), sig("MESSAGE", C)]
    );
    let ok = reply(&out[0], 200, Some("a1"), &[]);
    passes_up(&mut h, ok);
    // The other branches run their course; their answers stay here, and no CANCEL goes.
    assert!(h.feed(B, reply(&out[1], 200, Some("b1"), &[])).is_empty());
    assert!(h.feed(C, reply(&out[2], 404, Some("c1"), &[])).is_empty());
    h.advance(Duration::from_secs(40));
    assert_eq!(h.proxy.transactions(), (0, 0));
}

/// Everything a scenario put on the wire, for one decision.
fn scenario(decision: Decision, answers: &[u16]) -> Vec<Transmit> {
    let mut h = Harness::new(TestRouter(Some(decision)));
    let mut wire = h.feed(UAC, invite("z9hG4bKf9").bytes());
    let fwd = wire[1].clone();
    for &code in answers {
        wire.extend(h.feed(UAS, reply(&fwd, code, Some("b1"), &[])));
    }
    wire.extend(h.advance(Duration::from_secs(40)));
    wire
}

#[test]
fn a_fork_of_one_target_is_a_forward() {
    for answers in [&[180, 200][..], &[486], &[]] {
        let target = vec![contact(UAS)];
        let forward = scenario(Decision::Forward(target.clone()), answers);
        let fork = scenario(Decision::Fork(target), answers);
        assert_eq!(sigs(&fork), sigs(&forward), "{answers:?}");
        let bytes = |w: &[Transmit]| w.iter().map(|t| t.data.clone()).collect::<Vec<_>>();
        if !answers.is_empty() {
            // (A 408 of ours carries a random To tag.)
            assert_eq!(bytes(&fork), bytes(&forward), "{answers:?}");
        }
    }
}

#[test]
fn drained_fork_targets_are_skipped() {
    let (mut h, _) = fork_harness(vec![contact(A), contact(B), contact(C)]);
    let states = Arc::new(TargetStates::default());
    states.set(addr(B), TargetState::Inactive).unwrap();
    h.proxy.set_target_states(states);
    let out = h.feed(UAC, invite("z9hG4bKf10").bytes());
    assert_eq!(
        sigs(&out),
        [sig("100", UAC), sig("INVITE", A), sig("INVITE", C)]
    );
    assert_eq!(h.proxy.stats().targets_skipped, 1);
}

#[test]
fn a_fork_target_waiting_for_dns_does_not_hold_the_others() {
    let names = Arc::new(FakeNames::default());
    let (mut h, _) = fork_harness(vec![Target::new("sip:bob@Desk.Test"), contact(A)]);
    h.proxy.set_name_cache(names.clone());
    let out = h.feed(UAC, invite("z9hG4bKf11").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", A)]);
    let to_a = out[1].clone();
    let query = h.proxy.poll_dns().expect("a query for the parked target");
    assert_eq!(query.host, "desk.test");

    // The answer starts the parked branch, to its first address only.
    h.proxy.handle_resolved(h.now, &query, srv_answer(&[B, C]));
    let out = h.drain();
    assert_eq!(sigs(&out), [sig("INVITE", B)]);
    let to_b = out[0].clone();
    assert_eq!(parse(&to_b).request_uri().unwrap().raw, BOB);
    assert_eq!(
        branch_of(&to_b),
        branch_of(&to_a).replace(".0", ".1"),
        "numbered in the order the branches started"
    );
    h.feed(A, reply(&to_a, 486, Some("a1"), &[]));
    let out = h.feed(B, reply(&to_b, 480, Some("b1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", B), sig("486", UAC)]);

    // A fork answered before DNS was: the late answer starts nothing.
    let (mut h, _) = fork_harness(vec![Target::new("sip:bob@desk.test"), contact(A)]);
    h.proxy.set_name_cache(Arc::new(FakeNames::default()));
    let out = h.feed(UAC, invite("z9hG4bKf12").bytes());
    passes_up(&mut h, reply(&out[1], 200, Some("a1"), &[]));
    let query = h.proxy.poll_dns().unwrap();
    h.proxy.handle_resolved(h.now, &query, srv_answer(&[B]));
    assert!(h.drain().is_empty());

    // Caller CANCEL while only DNS is awaited: 487 at once.
    let (mut h, _) = fork_harness(vec![
        Target::new("sip:bob@desk.test"),
        Target::new("sip:bob@cell.test"),
    ]);
    h.proxy.set_name_cache(Arc::new(FakeNames::default()));
    let out = h.feed(UAC, invite("z9hG4bKf13").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC)]);
    let out = h.feed(UAC, cancel("z9hG4bKf13").bytes());
    assert_eq!(sigs(&out), [sig("200", UAC), sig("487", UAC)]);
    while let Some(q) = h.proxy.poll_dns() {
        h.proxy.handle_resolved(h.now, &q, srv_answer(&[B]));
    }
    assert!(h.drain().is_empty());
    assert_eq!(h.proxy.pending_requests(), 0);
}

#[test]
fn an_unresolvable_fork_target_fails_alone() {
    let (mut h, _) = fork_harness(vec![Target::new("sip:bob@gone.test"), contact(A)]);
    h.proxy.set_name_cache(Arc::new(FakeNames::default()));
    let out = h.feed(UAC, invite("z9hG4bKf14").bytes());
    let to_a = out[1].clone();
    let query = h.proxy.poll_dns().unwrap();
    h.proxy
        .handle_resolved(h.now, &query, Err(crate::dns::DnsError::NotFound));
    assert!(h.drain().is_empty(), "A is still pending");
    let out = h.feed(A, reply(&to_a, 486, Some("a1"), &[]));
    assert_eq!(sigs(&out), [sig("ACK", A), sig("486", UAC)]);
}
