//! The test client against a running server: by default a `starling` node this test starts
//! (plain PLAIN allowed, one account), or any RFC 6120/6121 server named by the environment,
//! to check the client itself against another implementation:
//!
//! ```text
//! STARLING_TEST_SERVER=127.0.0.1:15222 STARLING_TEST_DOMAIN=localhost \
//! STARLING_TEST_USER=alice STARLING_TEST_PASSWORD=secret1 \
//!     cargo test -p starling-tests --test client_live -- --test-threads 1
//! ```
//!
//! Such a server must offer STARTTLS and allow PLAIN without TLS.

use std::env;
use std::net::SocketAddr;
use std::time::Duration;

use starling_core::xml::{Element, ns};
use starling_tests::{
    Client, ClientError, LoginOptions, Mechanism, TestNode, TlsMode, connect_raw,
};

const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    domain: String,
    user: String,
    password: String,
    /// The node this test started, when the environment names no server.
    _own: Option<TestNode>,
}

/// The server named by `STARLING_TEST_SERVER` and its account, or else a node of our own.
fn server() -> Server {
    let Ok(addr) = env::var("STARLING_TEST_SERVER") else {
        let node = TestNode::builder()
            .plain_without_tls()
            .user("alice", "secret1")
            .start();
        return Server {
            addr: node.c2s,
            domain: node.domain.clone(),
            user: "alice".into(),
            password: "secret1".into(),
            _own: Some(node),
        };
    };
    let var = |name: &str| {
        env::var(name).unwrap_or_else(|_| panic!("set {name} with STARLING_TEST_SERVER"))
    };
    Server {
        addr: addr.parse().expect("STARLING_TEST_SERVER: ip:port"),
        domain: env::var("STARLING_TEST_DOMAIN").unwrap_or_else(|_| "localhost".to_owned()),
        user: var("STARLING_TEST_USER"),
        password: var("STARLING_TEST_PASSWORD"),
        _own: None,
    }
}

impl Server {
    fn options(&self) -> LoginOptions {
        LoginOptions::new(&self.domain, &self.user, &self.password)
    }
}

fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
    )
}

#[tokio::test]
async fn every_offered_mechanism_logs_in_over_tls() {
    let server = server();
    let client = Client::connect(server.addr, &server.domain).await.unwrap();
    assert!(client.features().has_child("starttls", ns::TLS));
    client.close().await.unwrap();

    let mut tried = 0;
    for mechanism in Mechanism::PREFERENCE {
        let mut probe = Client::connect(server.addr, &server.domain).await.unwrap();
        probe.starttls().await.unwrap();
        assert!(probe.is_tls());
        if !probe.mechanisms().iter().any(|m| m == mechanism.name()) {
            continue;
        }
        probe
            .authenticate(&server.user, &server.password, Some(mechanism))
            .await
            .unwrap();
        let jid = probe.bind(Some("mech-test")).await.unwrap();
        assert_eq!(
            jid.node().map(|node| node.as_str()),
            Some(server.user.as_str())
        );
        assert_eq!(jid.resource().as_str(), "mech-test");
        probe.session().await.unwrap();
        probe.close().await.unwrap();
        tried += 1;
    }
    assert!(tried >= 2, "expected a SCRAM mechanism and PLAIN");
}

#[tokio::test]
async fn plain_without_tls_and_server_generated_resource() {
    let server = server();
    let mut options = server.options();
    options.tls = TlsMode::Off;
    options.mechanism = Some(Mechanism::Plain);
    let probe = Client::connect(server.addr, &server.domain).await.unwrap();
    assert!(
        probe.mechanisms().iter().any(|m| m == "PLAIN"),
        "the server does not offer PLAIN without TLS: allow it for this test"
    );
    probe.close().await.unwrap();
    let client = Client::login(server.addr, &options).await.unwrap();
    assert!(!client.is_tls());
    let jid = client.jid().unwrap();
    assert!(!jid.resource().as_str().is_empty());
    client.close().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_not_authorized() {
    let server = server();
    for mechanism in [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ] {
        let mut options = server.options();
        options.password = format!("{}-wrong", server.password);
        options.mechanism = Some(mechanism);
        match Client::login(server.addr, &options).await {
            Err(ClientError::SaslFailure { condition, .. }) => {
                assert_eq!(condition, "not-authorized")
            }
            Err(ClientError::MissingFeature { .. }) => continue,
            other => panic!("{mechanism}: expected not-authorized, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn messages_between_resources_and_expect_buffering() {
    let server = server();
    let mut options = server.options();
    options.resource = Some("a".to_owned());
    let mut a = Client::login(server.addr, &options).await.unwrap();
    options.resource = Some("b".to_owned());
    let mut b = Client::login(server.addr, &options).await.unwrap();
    let b_jid = b.jid().unwrap().to_string();

    for n in 1..=3 {
        let message = Element::new("message", ns::CLIENT)
            .with_attr("to", b_jid.clone())
            .with_attr("type", "chat")
            .with_attr("id", format!("m{n}"))
            .with_child(Element::new("body", ns::CLIENT).with_text(format!("hello <{n}> & bye")));
        a.send_element(&message).await.unwrap();
    }
    // Take the last one first: the other two must wait in the buffer, in order.
    let third = b
        .expect(|e| e.attr("id") == Some("m3"), WAIT)
        .await
        .unwrap();
    assert_eq!(
        third.child("body", ns::CLIENT).unwrap().text(),
        "hello <3> & bye"
    );
    let first = b
        .expect(|e| e.is("message", ns::CLIENT), WAIT)
        .await
        .unwrap();
    assert_eq!(first.attr("id"), Some("m1"));
    let second = b.next_stanza(WAIT).await.unwrap();
    assert_eq!(second.attr("id"), Some("m2"));

    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("to", server.domain.clone())
        .with_child(Element::new("ping", ns::PING));
    a.iq(ping, WAIT).await.unwrap();

    match b
        .expect(
            |e| e.attr("id") == Some("never"),
            Duration::from_millis(300),
        )
        .await
    {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn same_resource_twice_ends_one_session_with_conflict() {
    let server = server();
    let mut options = server.options();
    options.resource = Some("dup".to_owned());
    let mut first = Client::login(server.addr, &options).await.unwrap();
    let second = Client::login(server.addr, &options).await;
    match second {
        // Most servers replace the old session (RFC 6120 §7.7.2.2).
        Ok(second) => {
            first.expect_stream_error("conflict", WAIT).await.unwrap();
            assert!(first.is_closed());
            second.close().await.unwrap();
        }
        Err(ClientError::IqError { condition, .. }) => {
            assert_eq!(condition, "conflict");
            first.close().await.unwrap();
        }
        Err(other) => panic!("unexpected: {other}"),
    }
}

#[tokio::test]
async fn malformed_xml_gets_a_stream_error() {
    let server = server();
    let mut client = Client::login(server.addr, &server.options()).await.unwrap();
    client.send("<message><body>oops</message>").await.unwrap();
    let error = client.expect_stream_error("not-well-formed", WAIT).await;
    // Servers differ in the condition they choose for a mismatched tag.
    match error {
        Ok(_) => {}
        Err(ClientError::StreamError { condition, .. }) => {
            assert!(matches!(
                condition.as_str(),
                "not-well-formed" | "bad-format" | "invalid-xml"
            ))
        }
        Err(other) => panic!("expected a stream error, got {other}"),
    }

    let mut raw = connect_raw(server.addr).await.unwrap();
    raw.write(format!("{}<<<>>>", header(&server.domain)).as_bytes())
        .await
        .unwrap();
    let read = raw.read_until_close(WAIT).await.unwrap();
    assert!(read.text().contains("not-well-formed"), "{}", read.text());
}

#[tokio::test]
async fn unknown_host_is_refused_at_stream_open() {
    let server = server();
    match Client::connect(server.addr, "no-such-host.invalid").await {
        Err(ClientError::StreamError { condition, .. }) => assert_eq!(condition, "host-unknown"),
        other => panic!("expected host-unknown, got {other:?}"),
    }
}
