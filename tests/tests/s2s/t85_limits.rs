//! What one peer cannot do to an incoming stream or the listener: a slow
//! dialback verification does not stop the stream it came on, and
//! `[s2s] max_inbound_streams` caps the incoming streams.

use starling_tests::free_port;
use tokio::net::TcpListener;

use crate::support::*;
use crate::t20_refusals::authoritative;

/// Accepts connections and never says a word on them.
fn silent_authority(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    })
}

#[tokio::test]
async fn a_hanging_dialback_verification_does_not_block_the_stream() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pb = free_port();
    let silent_port = silent.local_addr().unwrap().port();
    let good_port = good.local_addr().unwrap().port();
    // Verifications may take longer than this test waits for anything.
    let b = server(
        "b.test",
        pb,
        &[("evil.test", silent_port), ("good.test", good_port)],
    )
    .set("s2s", "require_tls = false")
    .set("s2s", "connect_timeout_secs = 600")
    .start();
    let _silent = silent_authority(silent);
    let authority = authoritative(good, "valid");

    let mut peer = RawPeer::connect(pb).await;
    peer.open("evil.test", "b.test").await;
    let features = peer.until("</stream:features>").await;
    assert!(features.contains("urn:xmpp:features:bidi"), "{features}");
    peer.send("<bidi xmlns='urn:xmpp:bidi'/>").await;
    // evil.test's authoritative server accepts and never answers.
    peer.send("<db:result from='evil.test' to='b.test'>0123456789abcdef</db:result>")
        .await;
    // Meanwhile a verification b.test is the authoritative server for...
    peer.send("<db:verify from='x.test' to='b.test' id='v1'>0123</db:verify>")
        .await;
    let answer = peer.until("/>").await;
    assert!(
        answer.contains("verify") && answer.contains("type=\"invalid\""),
        "{answer}"
    );
    // ...and a second domain's authentication and stanzas are answered.
    peer.send("<db:result from='good.test' to='b.test'>fedcba9876543210</db:result>")
        .await;
    let verdict = peer.until("/>").await;
    assert!(
        verdict.contains("good.test") && verdict.contains("type=\"valid\""),
        "{verdict}"
    );
    authority.await.unwrap();
    peer.send(
        "<iq type='get' id='ping1' from='gus@good.test/r' to='b.test'>\
         <ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await;
    // The answer comes back on this stream: the peer asked for bidi.
    let reply = peer.until("ping1").await;
    let reply = reply + &peer.until(">").await;
    assert!(reply.contains("type=\"result\""), "{reply}");
    assert_eq!(
        b.metric("starling_s2s_bidi_streams{direction=\"in\"}")
            .await,
        1.0,
        "{}",
        b.log()
    );
    assert_eq!(authentications(&b, "in", "dialback").await, 1.0);
    assert_eq!(authentications(&b, "out", "dialback").await, 0.0);
}

#[tokio::test]
async fn incoming_streams_beyond_the_cap_are_refused() {
    let pb = free_port();
    let b = server("b.test", pb, &[])
        .set("s2s", "require_tls = false")
        .set("s2s", "max_inbound_streams = 2")
        .start();
    let mut first = RawPeer::connect(pb).await;
    first.open("one.test", "b.test").await;
    first.until("</stream:features>").await;
    let mut second = RawPeer::connect(pb).await;
    second.open("two.test", "b.test").await;
    second.until("</stream:features>").await;

    let mut third = RawPeer::connect(pb).await;
    third.open("three.test", "b.test").await;
    let refused = third.until_closed().await;
    assert!(refused.contains("<resource-constraint"), "{refused}");
    assert!(refused.contains("jabber:server"), "{refused}");
    assert!(
        b.metric("starling_s2s_refused_total").await >= 1.0,
        "{}",
        b.log()
    );
    assert!(
        b.log().contains("the cap of open connections is reached"),
        "{}",
        b.log()
    );

    // A stream that ends frees its place.
    drop(first);
    let freed = async {
        while b.metric("starling_s2s_streams{direction=\"in\"}").await != 1.0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(FEDERATION_WAIT, freed)
        .await
        .unwrap_or_else(|_| panic!("the first stream never ended\n{}", b.log()));
    let mut fourth = RawPeer::connect(pb).await;
    fourth.open("four.test", "b.test").await;
    let features = fourth.until("</stream:features>").await;
    assert!(features.contains("dialback"), "{features}");
    drop(second);
}
