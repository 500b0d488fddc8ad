//! What a server refuses from its peers.

use starling_tests::free_port;
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test]
async fn require_valid_certificates_refuses_dialback() {
    let (pa, pb) = (free_port(), free_port());
    let a = server("a.test", pa, &[("b.test", pb)]).start();
    let b = server("b.test", pb, &[("a.test", pa)])
        .set("s2s", "require_valid_certificates = true")
        .start();
    let mut alice = online(&a, "alice", PW, "phone").await;
    alice
        .send("<message to='bob@b.test' type='chat'><body>let me in</body></message>")
        .await
        .unwrap();
    assert_eq!(
        expect_bounce(&mut alice, "bob@b.test").await,
        "remote-server-not-found"
    );
    assert_eq!(authentications(&b, "in", "dialback").await, 0.0);
    assert!(
        b.metric("starling_s2s_stream_errors_total").await >= 1.0,
        "{}",
        b.log()
    );
    assert!(
        b.log().contains("Dialback is not accepted here"),
        "{}",
        b.log()
    );
}

/// b.test with clear-text federation allowed (the fake peer speaks no
/// TLS) and evil.test routed to a fake authoritative server on `port`.
fn lenient_b(pb: u16, evil_port: u16) -> starling_tests::TestNode {
    server("b.test", pb, &[("evil.test", evil_port)])
        .set("s2s", "require_tls = false")
        .start()
}

/// Plays evil.test's authoritative server for one dialback verification,
/// answering `verdict`.
pub(crate) fn authoritative(
    listener: TcpListener,
    verdict: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut peer = RawPeer::new(socket);
        peer.until("version='1.0'>").await;
        peer.send(
            "<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
             xmlns:stream='http://etherx.jabber.org/streams' from='evil.test' to='b.test' \
             id='auth1' version='1.0'><stream:features/>",
        )
        .await;
        // Dialback elements come with the db: prefix (ejabberd needs it).
        let verify = peer.until("</db:verify>").await;
        let id = attribute(&verify[verify.find("<db:verify").unwrap()..], "id");
        peer.send(&format!(
            "<db:verify from='evil.test' to='b.test' id='{id}' type='{verdict}'/>"
        ))
        .await;
        peer.until_closed().await;
    })
}

/// Opens a stream from evil.test and asks for dialback.
async fn evil_stream(pb: u16) -> RawPeer {
    let mut evil = RawPeer::connect(pb).await;
    evil.open("evil.test", "b.test").await;
    evil.until("</stream:features>").await;
    evil.send("<db:result from='evil.test' to='b.test'>0123456789abcdef</db:result>")
        .await;
    evil
}

#[tokio::test]
async fn a_peer_may_only_send_from_the_domain_it_authenticated() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pb = free_port();
    let b = lenient_b(pb, listener.local_addr().unwrap().port());
    let authority = authoritative(listener, "valid");
    let mut bob = online(&b, "bob", PW, "laptop").await;

    let mut evil = evil_stream(pb).await;
    let verdict = evil.until("/>").await;
    assert!(verdict.contains("type=\"valid\""), "{verdict}");
    // From the authenticated domain: delivered.
    evil.send(
        "<message from='mallory@evil.test/x' to='bob@b.test' type='chat'><body>legit</body></message>",
    )
    .await;
    let got = bob
        .expect(|e| is_message_with_body(e, "legit"), FEDERATION_WAIT)
        .await
        .unwrap();
    assert_eq!(got.attr("from"), Some("mallory@evil.test/x"));
    // From another domain: the stream ends with invalid-from.
    evil.send(
        "<message from='alice@a.test/x' to='bob@b.test' type='chat'><body>spoofed</body></message>",
    )
    .await;
    let end = evil.until_closed().await;
    assert!(end.contains("<invalid-from"), "{end}");
    authority.await.unwrap();
    sync(&mut bob).await;
    assert_none(&bob, "the spoofed message", |e| {
        is_message_with_body(e, "spoofed")
    });
}

#[tokio::test]
async fn a_wrong_dialback_key_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pb = free_port();
    let b = lenient_b(pb, listener.local_addr().unwrap().port());
    let authority = authoritative(listener, "invalid");
    let mut evil = evil_stream(pb).await;
    let end = evil.until_closed().await;
    assert!(end.contains("type=\"invalid\""), "{end}");
    assert!(end.contains("<not-authorized"), "{end}");
    authority.await.unwrap();
    assert_eq!(authentications(&b, "in", "dialback").await, 0.0);
}

#[tokio::test]
async fn stanzas_before_authentication_and_unknown_hosts_are_stream_errors() {
    let pb = free_port();
    let b = server("b.test", pb, &[])
        .set("s2s", "require_tls = false")
        .start();

    let mut early = RawPeer::connect(pb).await;
    early.open("evil.test", "b.test").await;
    early.until("</stream:features>").await;
    early
        .send("<message from='m@evil.test' to='bob@b.test'><body>early</body></message>")
        .await;
    let end = early.until_closed().await;
    assert!(end.contains("<not-authorized"), "{end}");

    let mut lost = RawPeer::connect(pb).await;
    lost.open("evil.test", "elsewhere.test").await;
    let end = lost.until_closed().await;
    assert!(end.contains("<host-unknown"), "{end}");

    let mut client_ns = RawPeer::connect(pb).await;
    client_ns
        .send(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             to='b.test' version='1.0'>",
        )
        .await;
    let end = client_ns.until_closed().await;
    assert!(end.contains("<invalid-namespace"), "{end}");
    assert!(b.metric("starling_s2s_stream_errors_total").await >= 3.0);
}

/// b.test's opening and features: SASL EXTERNAL and dialback offered.
async fn offer_external(peer: &mut RawPeer, id: &str) {
    peer.until("version='1.0'>").await;
    peer.send(&format!(
        "<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
         xmlns:stream='http://etherx.jabber.org/streams' from='b.test' to='a.test' \
         id='{id}' version='1.0'><stream:features>\
         <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>\
         <dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"
    ))
    .await;
}

/// A peer that offers SASL EXTERNAL and then refuses our certificate (as
/// ejabberd does with one it cannot verify): dialback follows on the same
/// stream, its elements written with the `db:` prefix, which ejabberd
/// 23.01 needs (it ignores `<result xmlns='jabber:server:dialback'/>`).
#[tokio::test]
async fn a_refused_sasl_external_falls_back_to_prefixed_dialback() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pa = free_port();
    let a = server(
        "a.test",
        pa,
        &[("b.test", listener.local_addr().unwrap().port())],
    )
    .set("s2s", "require_tls = false")
    .start();
    let mut alice = online(&a, "alice", PW, "phone").await;
    alice
        .send("<message to='bob@b.test' type='chat'><body>after a refusal</body></message>")
        .await
        .unwrap();

    let (socket, _) = listener.accept().await.unwrap();
    let mut b = RawPeer::new(socket);
    offer_external(&mut b, "s1").await;
    let auth = b.until("</auth>").await;
    assert!(auth.contains("mechanism=\"EXTERNAL\""), "{auth}");
    b.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
        .await;
    let request = b.until("</db:result>").await;
    assert!(
        request.contains("<db:result from=\"a.test\" to=\"b.test\">"),
        "{request}"
    );
    let request = request.strip_suffix("</db:result>").unwrap();
    let key = &request[request.rfind('>').unwrap() + 1..];
    // b.test checks the key with a.test, the authoritative server, whose
    // answer is prefixed too.
    let mut verifier = RawPeer::connect(pa).await;
    verifier.open("b.test", "a.test").await;
    verifier.until("</stream:features>").await;
    verifier
        .send(&format!(
            "<db:verify from='b.test' to='a.test' id='s1'>{key}</db:verify>"
        ))
        .await;
    let verdict = verifier.until("/>").await;
    assert!(
        verdict.contains("<db:verify from=\"a.test\" to=\"b.test\" id=\"s1\" type=\"valid\"/>"),
        "{verdict}"
    );
    b.send("<db:result from='b.test' to='a.test' type='valid'/>")
        .await;
    let message = b.until("</message>").await;
    assert!(message.contains("after a refusal"), "{message}");
    assert_eq!(authentications(&a, "out", "dialback").await, 1.0);
    assert_eq!(authentications(&a, "out", "external").await, 0.0);
}
