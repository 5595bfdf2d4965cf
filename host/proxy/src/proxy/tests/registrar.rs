//! The registrar seam (RFC 3261 §10.3, RFC 5626 §5.3): a REGISTER the
//! router answers `register` goes to the [`Registrar`], whose answer goes
//! back without a transaction; a REGISTER on a connection comes with a Route
//! value naming it, and a request carrying that value later goes over that
//! connection without asking the router.

use super::challenge::{credentials, nonce_in, Store};
use super::*;
use crate::auth::{AuthCheck, Authenticator};
use crate::router::{Registrar, RegistrarAnswer, Registration};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A phone on a connection: where its REGISTER comes from.
const PHONE: &str = "192.0.2.50:40000";
/// The phone's registered contact: a WebSocket-style unroutable host.
const PHONE_CONTACT: &str = "sip:bob@x.invalid;transport=tcp";
const REGISTRAR_URI: &str = "sip:127.0.0.1:5060";
const BINDING: &str = "Contact: <sip:bob@10.0.0.9:5070>;expires=60";

/// What one [`Registrar::register`] call was given.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    source: SocketAddr,
    transport: Transport,
    flow_route: Option<String>,
}

/// Writes down every registration and answers 200 with [`BINDING`].
#[derive(Default)]
struct FakeRegistrar(Mutex<Vec<Seen>>);

impl FakeRegistrar {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

impl Registrar for FakeRegistrar {
    fn register(&self, r: &Registration<'_, '_>) -> RegistrarAnswer {
        self.0.lock().unwrap().push(Seen {
            method: r.message.method().unwrap().as_str().to_owned(),
            source: r.source,
            transport: r.transport,
            flow_route: r.flow_route.clone(),
        });
        RegistrarAnswer {
            code: 200,
            reason: "OK".into(),
            headers: vec![BINDING.into()],
        }
    }
}

/// Answers every request with one decision and counts how often it was asked.
struct CountingRouter {
    decision: Decision,
    calls: Arc<AtomicUsize>,
}

impl Router for CountingRouter {
    fn route(&mut self, _req: &mut RouteRequest<'_, '_>) -> Decision {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.decision.clone()
    }
}

/// REGISTER to `register`, everything else relayed.
struct RegisterRouter(Arc<AtomicUsize>);

impl Router for RegisterRouter {
    fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision {
        self.0.fetch_add(1, Ordering::SeqCst);
        match req.message.method() {
            Some(viaduct_sip::Method::Register) => Decision::Register,
            _ => Decision::Relay,
        }
    }
}

struct Setup {
    h: Harness,
    registrar: Arc<FakeRegistrar>,
    router_calls: Arc<AtomicUsize>,
}

fn setup(router: impl FnOnce(Arc<AtomicUsize>) -> Box<dyn Router>) -> Setup {
    let router_calls = Arc::new(AtomicUsize::new(0));
    let mut h = Harness::new(BoxedRouter(router(Arc::clone(&router_calls))));
    let registrar = Arc::new(FakeRegistrar::default());
    h.proxy.set_registrar(registrar.clone());
    Setup {
        h,
        registrar,
        router_calls,
    }
}

/// `Harness::new` takes a router by value.
struct BoxedRouter(Box<dyn Router>);

impl Router for BoxedRouter {
    fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision {
        self.0.route(req)
    }
}

fn registering() -> Setup {
    setup(|calls| Box::new(RegisterRouter(calls)))
}

/// bob's REGISTER for one contact, sent by `via` (`UDP 127.0.0.1:5070`).
fn register(branch: &str, via: &str) -> Msg {
    Msg::request("REGISTER", REGISTRAR_URI, branch, 1)
        .set("Via:", &format!("Via: SIP/2.0/{via};branch={branch};rport"))
        .set("From:", "From: <sip:bob@127.0.0.1>;tag=r1")
        .set("To:", "To: <sip:bob@127.0.0.1>")
        .set("Call-ID:", "Call-ID: reg-1@192.0.2.50")
        .h("Contact: <sip:bob@10.0.0.9:5070>")
        .h("Expires: 60")
}

/// The phone's REGISTER over its connection (flow 7); returns the Route
/// value the registrar was given for it.
fn register_phone(s: &mut Setup) -> String {
    let reg = register("z9hG4bKreg1", &format!("TCP {PHONE}"));
    let out = s.h.feed_on(PHONE, Transport::Tcp, reg.bytes());
    assert_eq!(sigs(&out), [sig("200", PHONE)]);
    assert_eq!((out[0].transport, out[0].flow), (Transport::Tcp, Some(7)));
    let seen = s.registrar.seen();
    assert_eq!(seen.len(), 1);
    seen[0]
        .flow_route
        .clone()
        .expect("a flow route for a REGISTER on a connection")
}

/// The caller's INVITE for the phone, carrying `route`.
fn invite_via(branch: &str, route: &str) -> Msg {
    let mut m = invite(branch).h(&format!("Route: {route}"));
    m.start = format!("INVITE {PHONE_CONTACT} SIP/2.0");
    m
}

/// `route` with one hex digit of its token's MAC changed.
fn forged(route: &str) -> String {
    let at = route.find('@').unwrap() - 1;
    let digit = if &route[at..=at] == "0" { "1" } else { "0" };
    let forged = format!("{}{digit}{}", &route[..at], &route[at + 1..]);
    assert_ne!(forged, route);
    forged
}

#[test]
fn a_udp_register_is_answered_by_the_registrar_and_not_forwarded() {
    let mut s = registering();
    let out =
        s.h.feed(UAC, register("z9hG4bKr1", &format!("UDP {UAC}")).bytes());
    let ok = only(&out);
    assert_eq!(sigs(&out), [sig("200", UAC)]);
    assert_eq!(header(ok, "Contact").as_deref(), Some(&BINDING[9..]));
    assert!(
        parse(ok).to().unwrap().tag().is_some(),
        "a final answer has a To tag"
    );
    assert_eq!(
        s.registrar.seen(),
        [Seen {
            method: "REGISTER".into(),
            source: addr(UAC),
            transport: Transport::Udp,
            flow_route: None,
        }]
    );
    // Stateless: nothing left to time out, nothing forwarded later.
    assert_eq!(s.h.proxy.transactions(), (0, 0));
    assert!(s.h.advance(Duration::from_secs(40)).is_empty());
}

#[test]
fn a_register_on_a_connection_gets_a_route_naming_it() {
    let mut s = registering();
    let route = register_phone(&mut s);
    assert!(route.starts_with("<sip:ft-7-"), "{route}");
    assert!(route.contains(";lr;ob"), "{route}");
    // The flow's transport in vd-flow; the URI names our UDP listener (the
    // harness's UDP and TCP listeners share 127.0.0.1:5060), which another
    // instance reaches without opening a connection to us.
    assert!(route.contains(";vd-flow=tcp"), "{route}");
    assert!(!route.contains("transport="), "{route}");
    assert!(
        route.contains("@127.0.0.1:5060;"),
        "our UDP listener: {route}"
    );
    let na = viaduct_sip::NameAddr::parse(route.as_bytes()).expect("a name-addr");
    assert!(na.uri.params.has("ob") && na.uri.is_loose_route());
    let seen = &s.registrar.seen()[0];
    assert_eq!((seen.source, seen.transport), (addr(PHONE), Transport::Tcp));
}

#[test]
fn register_without_a_registrar_or_for_another_method_is_a_500() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = CountingRouter {
        decision: Decision::Register,
        calls,
    };
    let mut h = Harness::new(router);
    let out = h.feed(UAC, register("z9hG4bKr2", &format!("UDP {UAC}")).bytes());
    assert_eq!(sigs(&out), [sig("500", UAC)]);

    let mut s = setup(|calls| {
        Box::new(CountingRouter {
            decision: Decision::Register,
            calls,
        })
    });
    let out = s.h.feed(UAC, invite("z9hG4bKr3").bytes());
    assert_eq!(sigs(&out), [sig("500", UAC)]);
    assert!(
        s.registrar.seen().is_empty(),
        "an INVITE never reaches the registrar"
    );
}

/// Registers authenticated REGISTERs, challenges the rest.
struct AuthRegisterRouter;

impl Router for AuthRegisterRouter {
    fn route(&mut self, req: &mut RouteRequest<'_, '_>) -> Decision {
        match req.authenticate("viaduct") {
            Some(AuthCheck::Valid { .. }) => Decision::Register,
            _ => Decision::Challenge {
                realm: "viaduct".into(),
            },
        }
    }
}

#[test]
fn a_register_is_challenged_with_401_and_answers_in_authorization() {
    let mut s = setup(|_| Box::new(AuthRegisterRouter));
    let auth = Authenticator::new(
        [1; 32],
        Duration::from_secs(300),
        Arc::new(Store::default()),
    );
    s.h.proxy.set_authenticator(Arc::new(auth));
    let via = format!("UDP {UAC}");

    // §22.2: the registrar is the UAS, so 401 with WWW-Authenticate.
    let out = s.h.feed(UAC, register("z9hG4bKa1", &via).bytes());
    let challenge = only(&out);
    assert_eq!(status(challenge), Some(401));
    assert!(header(challenge, "WWW-Authenticate")
        .unwrap()
        .starts_with("Digest realm=\"viaduct\""));
    assert_eq!(header(challenge, "Proxy-Authenticate"), None);
    let n = nonce_in(challenge, "WWW-Authenticate");

    // Credentials in Proxy-Authorization are not a REGISTER's: asked again.
    let proxy_creds = credentials(
        "Proxy-Authorization",
        "REGISTER",
        REGISTRAR_URI,
        "secret",
        &n,
        1,
    );
    let out =
        s.h.feed(UAC, register("z9hG4bKa2", &via).h(&proxy_creds).bytes());
    assert_eq!(status(only(&out)), Some(401));
    assert!(s.registrar.seen().is_empty());

    let creds = credentials("Authorization", "REGISTER", REGISTRAR_URI, "secret", &n, 2);
    let out = s.h.feed(UAC, register("z9hG4bKa3", &via).h(&creds).bytes());
    assert_eq!(sigs(&out), [sig("200", UAC)]);
    assert_eq!(s.registrar.seen().len(), 1);
    assert_eq!(s.h.proxy.stats().auth_of(AuthResult::Ok), 1);

    // A wrong password is refused before the registrar sees it.
    let wrong = credentials("Authorization", "REGISTER", REGISTRAR_URI, "guess", &n, 3);
    let out = s.h.feed(UAC, register("z9hG4bKa4", &via).h(&wrong).bytes());
    assert_eq!(sigs(&out), [sig("403", UAC)]);
    assert_eq!(s.registrar.seen().len(), 1);
}

#[test]
fn a_request_with_the_flow_route_goes_over_the_registered_connection() {
    let mut s = registering();
    let route = register_phone(&mut s);
    let asked = s.router_calls.load(Ordering::SeqCst);

    let out = s.h.feed(UAC, invite_via("z9hG4bKf1", &route).bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", PHONE)]);
    let fwd = &out[1];
    assert_eq!((fwd.transport, fwd.flow), (Transport::Tcp, Some(7)));
    assert_eq!(
        s.router_calls.load(Ordering::SeqCst),
        asked,
        "routed already, by whoever found the binding"
    );
    assert_eq!(parse(fwd).request_uri().unwrap().raw, PHONE_CONTACT);
    assert_eq!(header(fwd, "Route"), None, "our entry came off");

    // The call is set up and torn down over the same connection: the
    // caller's BYE follows the Route set, to the phone's unroutable Contact.
    let contact = format!("Contact: <{PHONE_CONTACT}>");
    let ok = reply(fwd, 200, Some("p1"), &[&contact]);
    let up = s.h.feed_on(PHONE, Transport::Tcp, ok);
    assert_eq!(sigs(&up), [sig("200", UAC)]);
    // The caller's route set is the Record-Route reversed (§12.1.2).
    let mut rr: Vec<String> = parse(&up[0])
        .record_routes()
        .map(|r| format!("<{}>", r.uri.raw))
        .collect();
    rr.reverse();
    let bye = Msg::request("BYE", PHONE_CONTACT, "z9hG4bKf2", 2)
        .with_to_tag("p1")
        .h(&format!("Route: {}", rr.join(", ")));
    let out = s.h.feed(UAC, bye.bytes());
    assert_eq!(sigs(&out), [sig("BYE", PHONE)], "Route set: {rr:?}");
    assert_eq!((out[0].transport, out[0].flow), (Transport::Tcp, Some(7)));
    assert_eq!(header(&out[0], "Route"), None);
}

#[test]
fn a_gone_connection_gets_430_flow_failed() {
    let mut s = registering();
    let route = register_phone(&mut s);
    let out = s.h.feed(UAC, invite_via("z9hG4bKf9", &route).bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", PHONE)]);
    // The runtime finds no connection 7 any more (the phone hung up its
    // WebSocket) and reports the send as failed.
    let now = s.h.now;
    s.h.proxy.handle_send_failure(now, &out[1].data);
    let up = s.h.drain();
    assert_eq!(sigs(&up), [sig("430", UAC)], "RFC 5626 §5.3");
    assert!(String::from_utf8_lossy(&up[0].data).starts_with("SIP/2.0 430 Flow Failed\r\n"));
}

#[test]
fn a_forged_flow_route_is_not_honoured() {
    let mut s = registering();
    let route = register_phone(&mut s);
    let forged = forged(&route);
    let asked = s.router_calls.load(Ordering::SeqCst);

    let out = s.h.feed(UAC, invite_via("z9hG4bKg1", &forged).bytes());
    assert_eq!(
        s.router_calls.load(Ordering::SeqCst),
        asked + 1,
        "routed as usual"
    );
    assert!(out.iter().all(|t| t.flow.is_none()), "{:?}", sigs(&out));
    assert!(out.iter().all(|t| t.destination != addr(PHONE)));
}

#[test]
fn a_path_through_our_own_flow_goes_over_it_directly() {
    // The registrar's lookup on this instance: the contact behind the flow
    // route it stored as the binding's Path.
    let mut s = registering();
    let route = register_phone(&mut s);
    let target = Target {
        request_uri: Some(PHONE_CONTACT.into()),
        route: vec![route.clone(), "<sip:10.0.0.9;lr>".into()],
        ..Target::new("")
    };
    s.h.proxy
        .set_router(Box::new(TestRouter(Some(Decision::Fork(vec![
            target.clone()
        ])))));
    let out = s.h.feed(UAC, invite("z9hG4bKo1").bytes());
    // Not to 127.0.0.1:5060 (ourselves) and back: straight onto flow 7,
    // our entry off, the rest of the Path kept.
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", PHONE)]);
    assert_eq!((out[1].transport, out[1].flow), (Transport::Tcp, Some(7)));
    assert_eq!(parse(&out[1]).request_uri().unwrap().raw, PHONE_CONTACT);
    assert_eq!(
        header(&out[1], "Route").as_deref(),
        Some("<sip:10.0.0.9;lr>")
    );

    // A forged token in the same place is just a route to our address.
    let forged = forged(&route);
    let target = Target {
        route: vec![forged],
        ..target
    };
    s.h.proxy
        .set_router(Box::new(TestRouter(Some(Decision::Forward(vec![target])))));
    let out = s.h.feed(UAC, invite("z9hG4bKo2").bytes());
    assert_eq!(sigs(&out), [sig("100", UAC), sig("INVITE", PROXY)]);
    assert_eq!(out[1].flow, None);
}
