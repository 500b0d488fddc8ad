//! The client against a scripted server on a local socket: the server side checks what the
//! client sends (including the SCRAM proof) and answers as RFC 6120 says.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use starling_core::xml::{Element, ns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::sasl::{SaslError, ScramHash};
use crate::xml_reader::{StreamEvent, XmlReader};

const DOMAIN: &str = "example.test";
const WAIT: Duration = Duration::from_secs(5);

/// The server end of one connection.
struct Peer {
    socket: TcpStream,
    reader: XmlReader,
}

impl Peer {
    async fn next(&mut self) -> StreamEvent {
        loop {
            if let Some(event) = self.reader.next_event().unwrap() {
                return event;
            }
            let read = self.socket.read_buf(self.reader.buffer()).await.unwrap();
            assert!(read > 0, "client closed early");
        }
    }

    async fn stanza(&mut self) -> Element {
        match self.next().await {
            StreamEvent::Stanza(element) => element,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    async fn send(&mut self, xml: &str) {
        self.socket.write_all(xml.as_bytes()).await.unwrap();
    }

    /// Reads the client's (re)opened stream header and answers with `features`.
    async fn open(&mut self, features: &str) {
        self.reader.reset();
        let StreamEvent::Open(header) = self.next().await else {
            panic!("no stream header from the client")
        };
        assert_eq!(header.attr("to"), Some(DOMAIN));
        assert_eq!(header.attr("version"), Some("1.0"));
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' from='{DOMAIN}' id='s1' \
             version='1.0'><stream:features>{features}</stream:features>"
        ))
        .await;
    }
}

async fn listen() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn accept(listener: &TcpListener) -> Peer {
    let (socket, _) = listener.accept().await.unwrap();
    Peer {
        socket,
        reader: XmlReader::new(),
    }
}

fn options(password: &str) -> LoginOptions {
    let mut options = LoginOptions::new(DOMAIN, "juliet", password);
    options.tls = TlsMode::Off;
    options.timeout = WAIT;
    options
}

const MECHANISMS: &str = "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
    <mechanism>SCRAM-SHA-256</mechanism><mechanism>PLAIN</mechanism></mechanisms>";
const BIND: &str = "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
    <session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>";

/// Runs the server side of SCRAM-SHA-256 for `juliet` / `r0m30`; `tamper` spoils the
/// server signature. Returns whether the client's proof was right.
async fn scram_server(peer: &mut Peer, tamper: bool) -> bool {
    let hash = ScramHash::Sha256;
    let auth = peer.stanza().await;
    assert!(auth.is("auth", ns::SASL));
    assert_eq!(auth.attr("mechanism"), Some("SCRAM-SHA-256"));
    let client_first = String::from_utf8(BASE64.decode(auth.text()).unwrap()).unwrap();
    let client_first_bare = client_first.strip_prefix("n,,").unwrap().to_owned();
    assert!(client_first_bare.starts_with("n=juliet,r="));
    let nonce = format!("{}server", &client_first_bare["n=juliet,r=".len()..]);
    let salt = b"salt-of-juliet";
    let server_first = format!("r={nonce},s={},i=4096", BASE64.encode(salt));
    peer.send(&format!(
        "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</challenge>",
        BASE64.encode(&server_first)
    ))
    .await;

    let response = peer.stanza().await;
    assert!(response.is("response", ns::SASL));
    let client_final = String::from_utf8(BASE64.decode(response.text()).unwrap()).unwrap();
    let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
    assert_eq!(without_proof, format!("c=biws,r={nonce}"));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let salted = hash.salted_password(b"r0m30", salt, 4096);
    let stored_key = hash.hash(&hash.hmac(&salted, b"Client Key"));
    let signature = hash.hmac(&stored_key, auth_message.as_bytes());
    let client_key: Vec<u8> = BASE64
        .decode(proof)
        .unwrap()
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    if hash.hash(&client_key) != stored_key {
        peer.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
            .await;
        return false;
    }
    let mut server_signature =
        hash.hmac(&hash.hmac(&salted, b"Server Key"), auth_message.as_bytes());
    if tamper {
        server_signature[0] ^= 1;
    }
    let server_final = format!("v={}", BASE64.encode(server_signature));
    peer.send(&format!(
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</success>",
        BASE64.encode(server_final)
    ))
    .await;
    true
}

#[tokio::test]
async fn scram_login_bind_session_then_expect_and_stream_error() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        peer.open(MECHANISMS).await;
        assert!(scram_server(&mut peer, false).await);
        peer.open(BIND).await;
        let bind = peer.stanza().await;
        assert_eq!(bind.attr("type"), Some("set"));
        let request = bind.child("bind", ns::BIND).unwrap();
        assert!(
            !request.has_child("resource", ns::BIND),
            "server-generated resource"
        );
        let id = bind.attr("id").unwrap().to_owned();
        peer.send(&format!(
            "<iq type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <jid>juliet@{DOMAIN}/gen-42</jid></bind></iq>"
        ))
        .await;
        let session = peer.stanza().await;
        assert!(session.has_child("session", ns::SESSION));
        let id = session.attr("id").unwrap().to_owned();
        peer.send(&format!("<iq type='result' id='{id}'/>")).await;

        peer.send("<message id='a'><body>first</body></message>")
            .await;
        peer.send("<message id='b'><body>second</body></message>")
            .await;
        peer.send(
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             </stream:error></stream:stream>",
        )
        .await;
    });

    let mut client = Client::login(addr, &options("r0m30")).await.unwrap();
    assert_eq!(
        client.jid().unwrap().to_string(),
        format!("juliet@{DOMAIN}/gen-42")
    );
    let second = client
        .expect(|e| e.attr("id") == Some("b"), WAIT)
        .await
        .unwrap();
    assert_eq!(second.child("body", ns::CLIENT).unwrap().text(), "second");
    assert_eq!(client.pending().count(), 1);
    let first = client.next_stanza(WAIT).await.unwrap();
    assert_eq!(first.attr("id"), Some("a"));
    let error = client.expect_stream_error("conflict", WAIT).await.unwrap();
    assert!(error.has_child("conflict", ns::STREAM_ERRORS));
    assert!(client.is_closed());
    server.await.unwrap();
}

#[tokio::test]
async fn a_server_that_does_not_know_the_password_is_caught() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        peer.open(MECHANISMS).await;
        scram_server(&mut peer, true).await
    });
    match Client::login(addr, &options("r0m30")).await {
        Err(ClientError::Sasl {
            source: SaslError::BadServerSignature,
            ..
        }) => {}
        other => panic!("expected a bad server signature, got {other:?}"),
    }
    assert!(server.await.unwrap());
}

#[tokio::test]
async fn wrong_password_gets_the_failure_condition() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        peer.open(MECHANISMS).await;
        scram_server(&mut peer, false).await
    });
    match Client::login(addr, &options("wrong")).await {
        Err(ClientError::SaslFailure { condition, .. }) => assert_eq!(condition, "not-authorized"),
        other => panic!("expected not-authorized, got {other:?}"),
    }
    assert!(!server.await.unwrap());
}

#[tokio::test]
async fn plain_sends_authcid_and_password_and_missing_features_are_named() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        peer.open(MECHANISMS).await;
        let auth = peer.stanza().await;
        assert_eq!(auth.attr("mechanism"), Some("PLAIN"));
        assert_eq!(BASE64.decode(auth.text()).unwrap(), b"\0juliet\0r0m30");
        peer.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .await;
        // No bind feature after SASL: the client must say so.
        peer.open("").await;
    });
    let mut options = options("r0m30");
    options.mechanism = Some(Mechanism::Plain);
    match Client::login(addr, &options).await {
        Err(ClientError::MissingFeature { step, .. }) => assert_eq!(step, "bind"),
        other => panic!("expected a missing bind feature, got {other:?}"),
    }
    server.await.unwrap();
}

#[tokio::test]
async fn starttls_is_required_when_asked() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        peer.open(MECHANISMS).await;
    });
    let mut options = options("r0m30");
    options.tls = TlsMode::Required;
    match Client::login(addr, &options).await {
        Err(ClientError::MissingFeature { step, .. }) => assert_eq!(step, "starttls"),
        other => panic!("expected a missing starttls feature, got {other:?}"),
    }
    server.await.unwrap();
}

#[tokio::test]
async fn timeouts_name_what_arrived_instead() {
    let (listener, addr) = listen().await;
    let server = tokio::spawn(async move {
        let mut peer = accept(&listener).await;
        peer.open("").await;
        peer.send("<presence from='romeo@example.test/x'/>").await;
        // Keep the connection open until the client gives up.
        let mut rest = Vec::new();
        peer.socket.read_to_end(&mut rest).await.ok();
    });
    let mut client = Client::connect(addr, DOMAIN).await.unwrap();
    let error = client
        .expect(|e| e.is("message", ns::CLIENT), Duration::from_millis(200))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("romeo@example.test/x"), "{text}");
    assert_eq!(error.kind(), "timeout:expect");
    drop(client);
    server.await.unwrap();
}
