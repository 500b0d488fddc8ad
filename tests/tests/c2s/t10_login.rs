//! Stream negotiation and session life (RFC 6120 4-7, RFC 3921 3): the SASL
//! mechanisms over STARTTLS, failures, the TLS requirement, resource
//! binding, the closing handshake, keepalives, resource conflicts, and the
//! config checks of `starling serve`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use starling_core::xml::ns;
use starling_tests::{
    Client, Mechanism, RawConnection, TestNode, TlsMode, free_port, starling_binary,
};

use crate::support::{
    WAIT, assert_error, assert_none, assert_result, iq, is_message_with_body, jid, login, options,
    sasl_condition, sync,
};

#[tokio::test]
async fn two_users_log_in_and_chat() {
    let node = TestNode::builder()
        .user("alice", "secret-a")
        .user("bob", "secret-b")
        .start();
    let mut alice = login(&node, "alice", "secret-a", "home").await;
    let mut bob = login(&node, "bob", "secret-b", "phone").await;
    assert!(alice.is_tls() && bob.is_tls());
    bob.send("<presence/>").await.unwrap();
    alice
        .send("<message to='bob@localhost/phone' type='chat'><body>hello</body></message>")
        .await
        .unwrap();
    let message = bob
        .expect(|e| is_message_with_body(e, "hello"), WAIT)
        .await
        .unwrap();
    assert_eq!(message.attr("from"), Some("alice@localhost/home"));
    assert_eq!(message.attr("to"), Some("bob@localhost/phone"));
    assert_eq!(message.attr("type"), Some("chat"));
}

#[tokio::test]
async fn every_mechanism_works_over_starttls_and_wrong_passwords_fail() {
    let node = TestNode::builder().user("alice", "secret").start();
    for (mechanism, resource) in [
        (Mechanism::ScramSha256, "sha256"),
        (Mechanism::ScramSha1, "sha1"),
        (Mechanism::Plain, "plain"),
    ] {
        let mut options = options(&node, "alice", "secret", resource);
        options.mechanism = Some(mechanism);
        let client = Client::login(node.c2s, &options)
            .await
            .unwrap_or_else(|error| panic!("{mechanism} login failed: {error}"));
        assert!(client.is_tls(), "{mechanism} login without TLS");
        assert_eq!(jid(&client), format!("alice@localhost/{resource}"));
        let offered = client.features();
        assert!(
            offered.has_child("bind", ns::BIND),
            "no bind after SASL: {offered}"
        );

        let mut options = options.clone();
        options.password = "wrong".to_owned();
        let result = Client::login(node.c2s, &options).await;
        assert_eq!(sasl_condition(result), "not-authorized", "{mechanism}");
    }
    // An unknown account fails exactly like a wrong password.
    let mut unknown = options(&node, "mallory", "secret", "x");
    unknown.mechanism = Some(Mechanism::ScramSha256);
    assert_eq!(
        sasl_condition(Client::login(node.c2s, &unknown).await),
        "not-authorized"
    );
}

#[tokio::test]
async fn tls_offers_all_mechanisms_and_plain_text_auth_is_refused_before_it() {
    let node = TestNode::builder().user("alice", "secret").start();
    let mut client = Client::connect(node.c2s, "localhost").await.unwrap();
    let features = client.features().clone();
    let starttls = features
        .child("starttls", ns::TLS)
        .unwrap_or_else(|| panic!("no STARTTLS offered: {features}"));
    assert!(
        starttls.has_child("required", ns::TLS),
        "STARTTLS must be required: {features}"
    );
    assert!(
        !features.has_child("mechanisms", ns::SASL),
        "SASL offered before TLS: {features}"
    );
    assert!(
        !features.has_child("auth", ns::AUTH_FEATURE),
        "legacy auth offered before TLS: {features}"
    );

    // PLAIN before TLS: <failure><encryption-required/></failure>.
    let plain = BASE64.encode(b"\0alice\0secret");
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"
        ))
        .await
        .unwrap();
    let failure = client.expect(|e| e.ns() == ns::SASL, WAIT).await.unwrap();
    assert!(failure.is("failure", ns::SASL), "{failure}");
    assert!(
        failure.has_child("encryption-required", ns::SASL),
        "{failure}"
    );

    // Legacy auth before TLS is refused with an error, not performed.
    let reply = iq(
        &mut client,
        "set",
        None,
        "<query xmlns='jabber:iq:auth'><username>alice</username>\
         <password>secret</password><resource>r</resource></query>",
    )
    .await;
    assert_error(&reply, "modify", "policy-violation");

    // After STARTTLS every mechanism is offered, SCRAM with channel binding too.
    client.starttls().await.unwrap();
    let mut mechanisms = client.mechanisms();
    mechanisms.sort();
    assert_eq!(
        mechanisms,
        [
            "PLAIN",
            "SCRAM-SHA-1",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-256-PLUS"
        ]
    );
    assert!(!client.features().has_child("starttls", ns::TLS));
    client
        .authenticate("alice", "secret", Some(Mechanism::Plain))
        .await
        .unwrap();
    let bound = client.bind(Some("after-tls")).await.unwrap();
    assert_eq!(bound.to_string(), "alice@localhost/after-tls");
}

#[tokio::test]
async fn plain_without_tls_when_configured() {
    let node = TestNode::builder()
        .user("alice", "secret")
        .plain_without_tls()
        .start();
    let probe = Client::connect(node.c2s, "localhost").await.unwrap();
    let features = probe.features();
    let starttls = features
        .child("starttls", ns::TLS)
        .unwrap_or_else(|| panic!("STARTTLS should still be offered: {features}"));
    assert!(!starttls.has_child("required", ns::TLS), "{features}");
    assert!(
        probe.mechanisms().iter().any(|m| m == "PLAIN"),
        "{features}"
    );
    assert!(features.has_child("auth", ns::AUTH_FEATURE), "{features}");

    let mut options = options(&node, "alice", "secret", "clear");
    options.tls = TlsMode::Off;
    options.mechanism = Some(Mechanism::Plain);
    let mut client = Client::login(node.c2s, &options).await.unwrap();
    assert!(!client.is_tls());
    assert_eq!(jid(&client), "alice@localhost/clear");
    sync(&mut client).await;
}

#[tokio::test]
async fn server_generates_a_resource_and_answers_the_session_iq() {
    let node = TestNode::builder().user("alice", "secret").start();
    let mut options = options(&node, "alice", "secret", "unused");
    options.resource = None;
    options.legacy_session = false;
    let mut client = Client::login(node.c2s, &options).await.unwrap();
    let bound = client.jid().unwrap().clone();
    assert_eq!(bound.to_bare().to_string(), "alice@localhost");
    assert!(!bound.resource().as_str().is_empty());
    // Two logins without a resource get two different ones.
    let other = Client::login(node.c2s, &options).await.unwrap();
    assert_ne!(other.jid().unwrap(), &bound);

    // RFC 3921 session: advertised as optional, answered with a result.
    let session = client
        .features()
        .child("session", ns::SESSION)
        .expect("session feature");
    assert!(session.has_child("optional", ns::SESSION));
    let reply = iq(
        &mut client,
        "set",
        None,
        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
    )
    .await;
    assert_result(&reply);
    assert_eq!(reply.attr("to"), Some(bound.to_string().as_str()));
    // A second bind on a bound stream is not allowed.
    let reply = iq(
        &mut client,
        "set",
        None,
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>x</resource></bind>",
    )
    .await;
    assert_eq!(reply.attr("type"), Some("error"), "{reply}");
}

/// Reads from a raw connection until `needle` arrived; returns everything read.
async fn read_until(raw: &mut RawConnection, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut text = String::new();
    while !text.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} from the server; got {text:?}"
        );
        let read = raw.read_for(Duration::from_millis(50), WAIT).await.unwrap();
        text.push_str(&read.text());
        assert!(
            !read.closed || text.contains(needle),
            "closed before {needle:?}: {text:?}"
        );
    }
    text
}

#[tokio::test]
async fn closing_the_stream_is_answered_with_a_closing_tag() {
    let node = TestNode::builder()
        .user("alice", "secret")
        .plain_without_tls()
        .start();
    let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
    let mut raw = starling_tests::connect_raw(node.c2s).await.unwrap();
    raw.write(header.as_bytes()).await.unwrap();
    read_until(&mut raw, "</stream:features>").await;
    let plain = BASE64.encode(b"\0alice\0secret");
    raw.write(
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>")
            .as_bytes(),
    )
    .await
    .unwrap();
    read_until(&mut raw, "<success").await;
    raw.write(header.as_bytes()).await.unwrap();
    read_until(&mut raw, "</stream:features>").await;
    raw.write(
        b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
          <resource>raw</resource></bind></iq>",
    )
    .await
    .unwrap();
    let bound = read_until(&mut raw, "</iq>").await;
    assert!(bound.contains("alice@localhost/raw"), "{bound}");

    raw.write(b"</stream:stream>").await.unwrap();
    let rest = raw.read_until_close(WAIT).await.unwrap();
    let text = rest.text();
    assert_eq!(
        text.trim(),
        "</stream:stream>",
        "the server must answer a close with its own close and nothing else"
    );
}

#[tokio::test]
async fn whitespace_keepalives_keep_an_idle_session_alive() {
    let node = TestNode::builder()
        .user("alice", "secret")
        .set("limits", "idle_timeout_secs = 3")
        .start();
    let mut quiet = login(&node, "alice", "secret", "quiet").await;
    let mut talker = login(&node, "alice", "secret", "talker").await;
    let is_server_ping = |e: &starling_core::xml::Element| {
        e.name() == "iq" && e.attr("type") == Some("get") && e.has_child("ping", ns::PING)
    };
    let silent = async {
        // A silent client is pinged after half the idle time, then dropped.
        let ping = quiet.expect(is_server_ping, WAIT).await.unwrap();
        assert_eq!(ping.attr("from"), Some("localhost"));
        assert_eq!(ping.attr("to"), Some("alice@localhost/quiet"));
        quiet
            .expect_stream_error("connection-timeout", WAIT)
            .await
            .unwrap();
    };
    let keepalives = async {
        // Whitespace alone, for longer than the idle timeout, 5 per second:
        // the pacing is what is tested, not a wait for an event.
        for _ in 0..18 {
            talker.send(" \n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sync(&mut talker).await;
    };
    tokio::join!(silent, keepalives);
    assert_none(&talker, "keepalive ping", is_server_ping);
    assert!(!talker.is_closed());
}

#[tokio::test]
async fn a_second_login_with_the_same_full_jid_replaces_the_first() {
    let node = TestNode::builder().user("alice", "secret").start();
    let mut first = login(&node, "alice", "secret", "desk").await;
    let mut second = login(&node, "alice", "secret", "desk").await;
    assert_eq!(jid(&second), "alice@localhost/desk");
    first.expect_stream_error("conflict", WAIT).await.unwrap();
    assert!(first.is_closed());
    sync(&mut second).await;
    // Messages to the full JID now reach the new session.
    let mut other = login(&node, "alice", "secret", "other").await;
    other
        .send("<message to='alice@localhost/desk'><body>to desk</body></message>")
        .await
        .unwrap();
    second
        .expect(|e| is_message_with_body(e, "to desk"), WAIT)
        .await
        .unwrap();
}

/// Runs `starling serve` on a config and returns its exit status and stderr;
/// a server that keeps running is a failure.
fn serve_with_config(config: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("starling.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(starling_binary())
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            let output = child.wait_with_output().unwrap();
            let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stdout));
            return (output.status, text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("starling serve accepted this config and kept running:\n{config}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_refuses_unknown_keys_and_bad_values_naming_the_key() {
    let base = |extra: &str| {
        format!(
            "[server]\ndata_dir = \"data\"\n{extra}\n[c2s]\nbind = \"127.0.0.1:{}\"\n\
             [http]\nbind = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port()
        )
    };
    let cases = [
        (base("color = \"blue\""), "color"),
        (base("domain = \"not@a.domain\""), "server.domain"),
        (
            format!("{}[limits]\nmax_stanza_size = \"big\"\n", base("")),
            "max_stanza_size",
        ),
        (
            format!("{}[no_such_section]\nx = 1\n", base("")),
            "no_such_section",
        ),
        // Feature modules: an unknown module, an unknown key of a module,
        // a bad `enabled`.
        (format!("{}[modules.vcrad]\n", base("")), "vcrad"),
        (
            format!("{}[modules.ping]\ninterval = 3\n", base("")),
            "interval",
        ),
        (
            format!("{}[modules.version]\nenabled = \"no\"\n", base("")),
            "modules.version",
        ),
    ];
    for (config, key) in cases {
        let (status, output) = serve_with_config(&config);
        assert!(!status.success(), "exit {status} for:\n{config}");
        assert!(
            output.contains(key),
            "the error does not name `{key}`:\n{output}"
        );
    }
}
