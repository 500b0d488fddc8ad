//! Resource limits over raw sockets: negotiation, stanza and idle timeouts, failed
//! authentications per connection and per address, the connection cap and the per-address
//! connection rate. Each limit ends the offending connection with the RFC 6120 stream error
//! (or SASL failure) it names, and the node keeps serving everyone else.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use starling_core::xml::{Element, ns};
use starling_tests::{Client, ClientError, LoginOptions, Mechanism, TestNode, TlsMode};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

use crate::wire::{
    self, ALICE, ChatPair, HEADER, MALLORY, WAIT, Wire, assert_serves_fresh_clients, login_tls,
};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn assert_between(what: &str, value: Duration, low: Duration, high: Duration) {
    assert!(
        low <= value && value <= high,
        "{what} after {value:?}, expected between {low:?} and {high:?}"
    );
}

/// `<auth mechanism='PLAIN'/>` with an initial response.
fn plain_auth((user, password): (&str, &str)) -> String {
    let response = BASE64.encode(format!("\0{user}\0{password}"));
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{response}</auth>")
}

/// The SASL outcome on `wire`: `Ok(())` for success, else the failure's condition.
async fn sasl_outcome(wire: &mut Wire) -> Result<(), String> {
    let answer = wire
        .wait_stanza("SASL outcome", |e| e.ns() == ns::SASL, WAIT)
        .await;
    if answer.is("success", ns::SASL) {
        return Ok(());
    }
    assert!(
        answer.is("failure", ns::SASL),
        "not a SASL outcome: {answer}"
    );
    Err(answer
        .children()
        .find(|child| child.name() != "text")
        .map(|child| child.name().to_owned())
        .unwrap_or_default())
}

/// 300 connections that never finish negotiating are each closed with connection-timeout
/// (with the server's header first even where the client's never arrived) while a pair of
/// real clients keeps chatting.
#[tokio::test]
async fn unfinished_negotiations_time_out_while_others_chat() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    const PER_KIND: usize = 100;
    let node = wire::node()
        .set("limits", "negotiation_timeout_secs = 2")
        .start();
    let pair = ChatPair::start(&node).await;
    let mut idle = Vec::with_capacity(3 * PER_KIND);
    for _ in 0..PER_KIND {
        // Says nothing at all.
        idle.push(("silent", Wire::connect(node.c2s).await));
        // Opens the stream, then stops.
        let mut opened = Wire::connect(node.c2s).await;
        opened.open(HEADER).await;
        idle.push(("header only", opened));
        // Stops in the middle of its header.
        let mut partial = Wire::connect(node.c2s).await;
        partial.send(&HEADER[..60]).await;
        idle.push(("half a header", partial));
    }
    let mut endings = JoinSet::new();
    for (kind, wire) in idle {
        endings.spawn(async move { (kind, wire.finish(TIMEOUT + WAIT).await) });
    }
    let mut closed = 0;
    while let Some(result) = endings.join_next().await {
        let (kind, ending) = result.expect("a reader task");
        if let Err(problem) = ending.stream_error("connection-timeout") {
            panic!("{kind}: {problem}\nreceived: {}", ending.transcript);
        }
        assert_between(
            kind,
            ending.after,
            TIMEOUT - Duration::from_millis(200),
            TIMEOUT + Duration::from_secs(4),
        );
        closed += 1;
    }
    assert_eq!(closed, 3 * PER_KIND);
    assert_serves_fresh_clients(&node, "300 negotiation timeouts").await;
    assert!(pair.finish().await > 0);
}

/// A logged-in client that trickles a stanza one byte every 200 ms is closed with
/// connection-timeout once the stanza has taken longer than `stanza_timeout_secs`, although
/// bytes keep arriving (so the idle timeout alone would never fire).
#[tokio::test]
async fn trickling_stanza_times_out() {
    const STEP: Duration = Duration::from_millis(200);
    const BYTES: usize = 50;
    let node = wire::node()
        .set("limits", "stanza_timeout_secs = 1")
        .start();
    let mut wire = Wire::login(&node, MALLORY).await;
    let start = Instant::now();
    wire.send("<message to='bob@localhost' type='chat'><body>")
        .await;
    let mut sent = 0;
    while sent < BYTES {
        if wire.try_send(b"x").await.is_err() {
            break;
        }
        sent += 1;
        if let Some(stanza) = wire.next_stanza(STEP).await {
            if stanza.is("error", ns::STREAM) {
                break;
            }
        }
        if wire.tcp_closed() {
            break;
        }
    }
    let took = start.elapsed();
    let error = wire.expect_stream_error("connection-timeout").await;
    assert!(
        sent < BYTES,
        "the whole trickle ({sent} bytes in {took:?}) was accepted"
    );
    assert_between(
        "trickling client closed",
        took,
        Duration::from_millis(900),
        Duration::from_secs(3),
    );
    let text = error
        .child("text", ns::STREAM_ERRORS)
        .map(Element::text)
        .unwrap_or_default();
    assert!(text.contains("stanza"), "timeout text: {text:?}");
    assert_serves_fresh_clients(&node, "a trickling client").await;
}

/// A busy client whose writes each end in the middle of the next stanza is never idle nor
/// trickling: each stanza completes within the stanza timeout, so the connection stays up for
/// several timeouts in a row and every message arrives.
#[tokio::test]
async fn steady_stanzas_split_across_writes_are_not_a_trickle() {
    const STEP: Duration = Duration::from_millis(100);
    const MESSAGES: usize = 30;
    let node = wire::node()
        .set("limits", "stanza_timeout_secs = 1")
        .start();
    let mut bob = login_tls(&node, wire::BOB, None).await;
    let bob_jid = bob.jid().expect("bound").to_string();
    let mut wire = Wire::login(&node, MALLORY).await;
    let stanza =
        |n: usize| format!("<message to='{bob_jid}' type='chat'><body>split-{n}</body></message>");
    // Each write: the rest of stanza n-1 and the first half of stanza n.
    let mut rest = String::new();
    for n in 1..=MESSAGES {
        let whole = stanza(n);
        let (head, tail) = whole.split_at(whole.len() / 2);
        wire.send(format!("{rest}{head}")).await;
        rest = tail.to_owned();
        if let Some(stanza) = wire.next_stanza(STEP).await {
            panic!("after {n} writes: {stanza}");
        }
        assert!(
            !wire.tcp_closed(),
            "closed after {n} writes ({:?})",
            STEP * n as u32
        );
    }
    wire.send(rest).await;
    for n in 1..=MESSAGES {
        let text = format!("split-{n}");
        bob.expect(|e| e.name() == "message" && wire::body(e) == text, WAIT)
            .await
            .unwrap_or_else(|error| panic!("message {n}: {error}"));
    }
    wire.send("</stream:stream>").await;
    let ending = wire.finish(WAIT).await;
    assert!(ending.tcp_closed, "{}", ending.transcript);
    bob.close().await.expect("bob closes");
}

/// With `idle_timeout_secs = 2`, an idle session gets an XEP-0199 ping from the server after
/// one second; a client that answers keeps its session for as long as it answers, one that
/// does not is closed with connection-timeout at two seconds.
#[tokio::test]
async fn idle_sessions_are_pinged_then_closed() {
    const IDLE: Duration = Duration::from_secs(2);
    let node = wire::node().set("limits", "idle_timeout_secs = 2").start();

    let silent = tokio::spawn({
        let mut wire = Wire::login(&node, MALLORY).await;
        async move {
            let since = Instant::now();
            let ping = wire
                .wait_stanza("the server's ping", is_server_ping, IDLE + WAIT)
                .await;
            let pinged = since.elapsed();
            assert_eq!(ping.attr("from"), Some("localhost"), "{ping}");
            assert!(
                ping.attr("to")
                    .is_some_and(|to| to.starts_with("mallory@localhost/"))
            );
            let finished = wire.finish(IDLE + WAIT).await;
            finished
                .stream_error("connection-timeout")
                .unwrap_or_else(|problem| panic!("{problem}\n{}", finished.transcript));
            (pinged, since.elapsed())
        }
    });

    let mut answering = Wire::login(&node, ALICE).await;
    let since = Instant::now();
    let mut pings = 0;
    while since.elapsed() < IDLE * 2 + IDLE / 4 {
        let left = (IDLE * 2 + IDLE / 4).saturating_sub(since.elapsed());
        let Some(stanza) = answering.next_stanza(left).await else {
            assert!(!answering.tcp_closed(), "the answering client was closed");
            continue;
        };
        assert!(is_server_ping(&stanza), "unexpected: {stanza}");
        pings += 1;
        let id = stanza.attr("id").unwrap_or_default();
        answering
            .send(format!("<iq type='result' id='{id}' to='localhost'/>"))
            .await;
    }
    assert!(pings >= 3, "{pings} pings in {:?}", since.elapsed());
    // Still in session: the server answers it.
    answering
        .send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let reply = answering
        .wait_stanza("ping result", |e| e.attr("id") == Some("alive"), WAIT)
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply}");

    let (pinged, closed) = silent.await.expect("the silent client's task");
    assert_between(
        "ping",
        pinged,
        // The server's clock started when it read the bind request, a little before ours.
        IDLE / 2 - Duration::from_millis(400),
        IDLE / 2 + Duration::from_millis(800),
    );
    assert_between(
        "silent client closed",
        closed,
        IDLE - Duration::from_millis(400),
        IDLE + Duration::from_millis(1500),
    );
    answering.send("</stream:stream>").await;
    let ending = answering.finish(WAIT).await;
    assert!(
        ending.tcp_closed,
        "no close after ours: {}",
        ending.transcript
    );
    assert_serves_fresh_clients(&node, "idle timeouts").await;
}

fn is_server_ping(element: &Element) -> bool {
    element.name() == "iq"
        && element.attr("type") == Some("get")
        && element.has_child("ping", ns::PING)
}

/// The third wrong password on one connection ends the stream with policy-violation.
#[tokio::test]
async fn three_wrong_passwords_end_the_stream() {
    let node = wire::node().start();
    let mut wire = Wire::connect(node.c2s).await;
    wire.open(HEADER).await;
    for attempt in 1..=3 {
        wire.send(plain_auth((MALLORY.0, "wrong"))).await;
        assert_eq!(
            sasl_outcome(&mut wire).await,
            Err("not-authorized".to_owned()),
            "attempt {attempt}"
        );
    }
    wire.expect_stream_error("policy-violation").await;
    assert_serves_fresh_clients(&node, "three wrong passwords").await;
}

/// Beyond `auth_failures_per_ip` failures, an address gets temporary-auth-failure even
/// with the right password, on new connections too and with any mechanism, until the
/// window has passed; other addresses are not affected.
#[tokio::test]
async fn failures_per_address_lock_it_out_until_the_window_passes() {
    const WINDOW: Duration = Duration::from_secs(2);
    let node = wire::node()
        .set("limits", "auth_failures_per_ip = 4")
        .set("limits", "auth_failure_window_secs = 2")
        .set("limits", "auth_failures_per_connection = 100")
        .start();
    let attacker = ip("127.0.0.2");
    let mut wire = Wire::connect_from(node.c2s, Some(attacker)).await;
    wire.open(HEADER).await;
    let first_failure = Instant::now();
    for attempt in 1..=4 {
        wire.send(plain_auth((MALLORY.0, "wrong"))).await;
        assert_eq!(
            sasl_outcome(&mut wire).await,
            Err("not-authorized".to_owned()),
            "attempt {attempt}"
        );
    }
    wire.send(plain_auth(MALLORY)).await;
    assert_eq!(
        sasl_outcome(&mut wire).await,
        Err("temporary-auth-failure".to_owned()),
        "right password on the same connection"
    );
    let mut again = Wire::connect_from(node.c2s, Some(attacker)).await;
    again.open(HEADER).await;
    again.send(plain_auth(MALLORY)).await;
    assert_eq!(
        sasl_outcome(&mut again).await,
        Err("temporary-auth-failure".to_owned()),
        "right password on a new connection"
    );
    match try_login(&node, Some(attacker)).await {
        Err(ClientError::SaslFailure { condition, .. })
            if condition == "temporary-auth-failure" => {}
        other => panic!("SCRAM from the locked-out address: {other:?}"),
    }
    // Another address logs in meanwhile.
    login_tls(&node, ALICE, Some(ip("127.0.0.3")))
        .await
        .close()
        .await
        .expect("close");
    let open_for = first_failure.elapsed();
    assert!(
        open_for < WINDOW,
        "the checks took {open_for:?}, longer than the window"
    );
    sleep(WINDOW - open_for + Duration::from_millis(300)).await;
    let client = try_login(&node, Some(attacker))
        .await
        .unwrap_or_else(|error| panic!("after the window: {error}"));
    client.close().await.expect("close");
    assert_serves_fresh_clients(&node, "a locked-out address").await;
}

async fn try_login(node: &TestNode, local: Option<IpAddr>) -> Result<Client, ClientError> {
    let mut options = LoginOptions::new(&node.domain, MALLORY.0, MALLORY.1);
    options.tls = TlsMode::Required;
    options.mechanism = Some(Mechanism::ScramSha256);
    options.local_addr = local;
    Client::login(node.c2s, &options).await
}

/// With `max_connections = 5`, a sixth connection gets resource-constraint; once one of the
/// five leaves, a new connection is served again.
#[tokio::test]
async fn sixth_connection_gets_resource_constraint() {
    let node = wire::node().set("c2s", "max_connections = 5").start();
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut wire = Wire::connect(node.c2s).await;
        wire.open(HEADER).await;
        held.push(wire);
    }
    let mut sixth = Wire::connect(node.c2s).await;
    sixth.send(HEADER).await;
    sixth.expect_stream_error("resource-constraint").await;

    let mut leaving = held.pop().expect("five connections");
    leaving.send("</stream:stream>").await;
    assert!(leaving.finish(WAIT).await.tcp_closed);
    // The slot is free once the server's task for the closed connection has ended.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut wire = Wire::connect(node.c2s).await;
        wire.send(HEADER).await;
        let first = wire.next_stanza(WAIT).await;
        if first.as_ref().is_some_and(|e| e.is("features", ns::STREAM)) {
            held.push(wire);
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed: {first:?}");
        sleep(Duration::from_millis(50)).await;
    }
    for mut wire in held {
        wire.send("</stream:stream>").await;
        assert!(wire.finish(WAIT).await.tcp_closed);
    }
    sleep(Duration::from_millis(200)).await;
    assert_serves_fresh_clients(&node, "a full node").await;
}

/// With 2 connections per second and a burst of 5 per address, a burst of 12 connections
/// from one address gets 5 served and the rest refused with policy-violation; another
/// address is served at once, and the first is served again once tokens have refilled.
#[tokio::test]
async fn connection_burst_beyond_the_rate_is_refused() {
    const BURST: usize = 5;
    const TRIES: usize = 12;
    let node = wire::node()
        .set("limits", "connections_per_ip_per_sec = 2")
        .set("limits", &format!("connection_burst_per_ip = {BURST}"))
        .start();
    let flooder = ip("127.0.0.4");
    let start = Instant::now();
    let mut wires = Vec::new();
    for _ in 0..TRIES {
        let mut wire = Wire::connect_from(node.c2s, Some(flooder)).await;
        wire.send(HEADER).await;
        wires.push(wire);
    }
    let burst_took = start.elapsed();
    let (mut served, mut refused) = (Vec::new(), 0);
    for mut wire in wires {
        match wire.next_stanza(WAIT).await {
            Some(features) if features.is("features", ns::STREAM) => served.push(wire),
            _ => {
                let ending = wire.finish(WAIT).await;
                ending
                    .stream_error("policy-violation")
                    .unwrap_or_else(|problem| panic!("{problem}\n{}", ending.transcript));
                refused += 1;
            }
        }
    }
    // Tokens refilled while the burst was being made.
    let refilled = (burst_took.as_secs_f64() * 2.0) as usize;
    assert!(
        (BURST..=BURST + refilled).contains(&served.len()),
        "{} of {TRIES} served in {burst_took:?}, expected {BURST}",
        served.len()
    );
    assert_eq!(served.len() + refused, TRIES);

    // Another address is not limited by the first one's burst.
    assert_serves_fresh_clients(&node, "a connection burst").await;

    sleep(Duration::from_millis(1100)).await;
    let mut later = Wire::connect_from(node.c2s, Some(flooder)).await;
    later.open(HEADER).await;
    served.push(later);
    for mut wire in served {
        wire.send("</stream:stream>").await;
        assert!(wire.finish(WAIT).await.tcp_closed);
    }
}
