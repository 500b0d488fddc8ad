//! Helpers for the bad-input and limits tests (t70, t80).
//!
//! - [`Wire`]: a plain-TCP XMPP conversation that says exactly the bytes it is told to,
//!   can log in with SASL PLAIN first, and parses what the server answers.
//! - [`Wire::expect_stream_error`]: the check every bad input ends with: the server's stream
//!   header came first (RFC 6120 4.9.1.1, even when the client's never arrived), then one
//!   `<stream:error/>` with exactly the expected condition, then `</stream:stream>`, then
//!   the TCP close.
//! - [`assert_serves_fresh_clients`]: a node that just threw a client out still logs new
//!   clients in (STARTTLS, SCRAM) and routes their chat.
//! - [`ChatPair`]: two clients that chat without pause in the background while the tests
//!   attack the node, and finally prove that no message was lost or reordered.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use starling_core::xml::{Element, ns};
use starling_tests::transport::connect_tcp;
use starling_tests::xml_reader::{StreamEvent, XmlReader};
use starling_tests::{Client, LoginOptions, Mechanism, NodeBuilder, TestNode, TlsMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

/// The bound for anything that should arrive; only reached when it does not.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A well-formed client stream header for `localhost`.
pub(crate) const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// The pair that chats through every test, the two fresh clients of the health check, and
/// the account the attacks log in with.
pub(crate) const ALICE: (&str, &str) = ("alice", "alice-pw");
pub(crate) const BOB: (&str, &str) = ("bob", "bob-pw");
const CAROL: (&str, &str) = ("carol", "carol-pw");
const DAVE: (&str, &str) = ("dave", "dave-pw");
pub(crate) const MALLORY: (&str, &str) = ("mallory", "mallory-pw");

/// A node with the accounts above; PLAIN is allowed without TLS so [`Wire`] can log in
/// over plain TCP and write its bad bytes unencrypted.
pub(crate) fn node() -> NodeBuilder {
    TestNode::builder()
        .user(ALICE.0, ALICE.1)
        .user(BOB.0, BOB.1)
        .user(CAROL.0, CAROL.1)
        .user(DAVE.0, DAVE.1)
        .user(MALLORY.0, MALLORY.1)
        .plain_without_tls()
}

/// A resource name no other connection of this test process uses.
pub(crate) fn unique_resource(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Logs in over STARTTLS with SCRAM-SHA-256, from `local` when given.
pub(crate) async fn login_tls(
    node: &TestNode,
    (user, password): (&str, &str),
    local: Option<IpAddr>,
) -> Client {
    let mut options = LoginOptions::new(&node.domain, user, password);
    options.resource = Some(unique_resource(user));
    options.tls = TlsMode::Required;
    options.mechanism = Some(Mechanism::ScramSha256);
    options.local_addr = local;
    Client::login(node.c2s, &options)
        .await
        .unwrap_or_else(|error| panic!("{user} cannot log in: {error}"))
}

/// A raw XMPP conversation over plain TCP.
pub(crate) struct Wire {
    stream: TcpStream,
    reader: XmlReader,
    /// Events of the current stream not yet taken by a wait.
    unread: VecDeque<StreamEvent>,
    /// Every event of the current stream (since the connection or the last restart).
    events: Vec<StreamEvent>,
    /// Everything the server sent, for failure messages.
    transcript: Vec<u8>,
    /// The server closed the TCP connection.
    tcp_closed: bool,
    /// What the server sent could not be parsed.
    xml_error: Option<String>,
    connected: Instant,
}

/// How a connection ended, as [`Wire::finish`] saw it.
pub(crate) struct Ending {
    /// Events of the last stream, in order.
    pub(crate) events: Vec<StreamEvent>,
    pub(crate) tcp_closed: bool,
    /// From connecting to the TCP close (or to giving up).
    pub(crate) after: Duration,
    pub(crate) transcript: String,
}

impl Wire {
    pub(crate) async fn connect(addr: SocketAddr) -> Wire {
        Self::connect_from(addr, None).await
    }

    pub(crate) async fn connect_from(addr: SocketAddr, local: Option<IpAddr>) -> Wire {
        let stream = connect_tcp(addr, local)
            .await
            .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));
        Wire {
            stream,
            reader: XmlReader::new(),
            unread: VecDeque::new(),
            events: Vec::new(),
            transcript: Vec::new(),
            tcp_closed: false,
            xml_error: None,
            connected: Instant::now(),
        }
    }

    /// Connects, authenticates with PLAIN over plain TCP and binds a resource.
    pub(crate) async fn login(node: &TestNode, (user, password): (&str, &str)) -> Wire {
        let mut wire = Wire::connect(node.c2s).await;
        wire.open(HEADER).await;
        let credentials = BASE64.encode(format!("\0{user}\0{password}"));
        wire.send(format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
        ))
        .await;
        let answer = wire
            .wait_stanza("SASL outcome", |e| e.ns() == ns::SASL, WAIT)
            .await;
        assert!(
            answer.is("success", ns::SASL),
            "{user}: PLAIN failed: {answer}"
        );
        wire.restart();
        wire.open(HEADER).await;
        let resource = unique_resource(user);
        wire.send(format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let reply = wire
            .wait_stanza("bind result", |e| e.attr("id") == Some("bind"), WAIT)
            .await;
        assert_eq!(reply.attr("type"), Some("result"), "{user}: bind: {reply}");
        wire
    }

    /// Sends a stream header and waits for the server's header and features.
    pub(crate) async fn open(&mut self, header: &str) -> Element {
        self.send(header).await;
        self.wait_event("server stream header", WAIT, |e| {
            matches!(e, StreamEvent::Open(_))
        })
        .await;
        self.wait_stanza("stream features", |e| e.is("features", ns::STREAM), WAIT)
            .await
    }

    /// Forgets the stream state after SASL success (RFC 6120 4.3.3).
    pub(crate) fn restart(&mut self) {
        self.reader.reset();
        self.events.clear();
        self.unread.clear();
    }

    pub(crate) async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        if let Err(error) = self.try_send(bytes.as_ref()).await {
            panic!("write failed: {error}; received: {}", self.transcript());
        }
    }

    pub(crate) async fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next stanza matching `predicate` (others are skipped); panics on timeout or close.
    pub(crate) async fn wait_stanza(
        &mut self,
        what: &str,
        predicate: impl Fn(&Element) -> bool,
        timeout: Duration,
    ) -> Element {
        let event = self
            .wait_event(
                what,
                timeout,
                |event| matches!(event, StreamEvent::Stanza(element) if predicate(element)),
            )
            .await;
        match event {
            StreamEvent::Stanza(element) => element,
            _ => unreachable!("the predicate only accepts stanzas"),
        }
    }

    /// The next stanza, or `None` if nothing complete arrives within `timeout`.
    pub(crate) async fn next_stanza(&mut self, timeout: Duration) -> Option<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(event) = self.unread.pop_front() {
                if let StreamEvent::Stanza(element) = event {
                    return Some(element);
                }
            }
            if self.tcp_closed || self.xml_error.is_some() || !self.fill(deadline).await {
                return None;
            }
        }
    }

    async fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&StreamEvent) -> bool,
    ) -> StreamEvent {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(event) = self.unread.pop_front() {
                if predicate(&event) {
                    return event;
                }
            }
            let problem = if let Some(error) = &self.xml_error {
                Some(format!("unreadable XML ({error})"))
            } else if self.tcp_closed {
                Some("the server closed the connection".to_owned())
            } else if !self.fill(deadline).await {
                Some(format!("nothing after {timeout:?}"))
            } else {
                None
            };
            if let Some(problem) = problem {
                panic!(
                    "waiting for {what}: {problem}; received: {}",
                    self.transcript()
                );
            }
        }
    }

    /// Reads once (until `deadline`) and parses what arrived; false on timeout.
    async fn fill(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 8192];
        let read = match timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(read)) => read,
            // A reset after the server's last words is the server closing too.
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionReset => 0,
            Ok(Err(error)) => panic!("read failed: {error}; received: {}", self.transcript()),
        };
        if read == 0 {
            self.tcp_closed = true;
        }
        self.transcript.extend_from_slice(&chunk[..read]);
        self.reader.feed(&chunk[..read]);
        while self.xml_error.is_none() {
            match self.reader.next_event() {
                Ok(Some(event)) => {
                    self.events.push(event.clone());
                    self.unread.push_back(event);
                }
                Ok(None) => break,
                Err(error) => self.xml_error = Some(error.to_string()),
            }
        }
        true
    }

    /// Reads until the server closes the TCP connection or `timeout` passes.
    pub(crate) async fn finish(mut self, timeout: Duration) -> Ending {
        let deadline = Instant::now() + timeout;
        while !self.tcp_closed && self.fill(deadline).await {}
        Ending {
            tcp_closed: self.tcp_closed,
            after: self.connected.elapsed(),
            transcript: self.transcript(),
            events: if let Some(error) = self.xml_error {
                // Unparseable output fails every check below with this in the message.
                vec![StreamEvent::Stanza(
                    Element::new("unreadable-xml", "test:").with_text(error),
                )]
            } else {
                self.events
            },
        }
    }

    /// Reads to the end and checks that it is exactly `condition` (see the module docs);
    /// returns the `<stream:error/>` element.
    pub(crate) async fn expect_stream_error(self, condition: &str) -> Element {
        let ending = self.finish(WAIT).await;
        ending
            .stream_error(condition)
            .unwrap_or_else(|problem| panic!("{problem}\nreceived: {}", ending.transcript))
    }

    /// Whether the server has closed the TCP connection (as far as read so far).
    pub(crate) fn tcp_closed(&self) -> bool {
        self.tcp_closed
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript).into_owned()
    }
}

impl Ending {
    /// Checks that the stream ended with exactly `condition`, in a stream the server opened
    /// first, followed by the stream close and the TCP close.
    pub(crate) fn stream_error(&self, condition: &str) -> Result<Element, String> {
        match self.events.first() {
            Some(StreamEvent::Open(header)) => {
                if header.attr("from") != Some("localhost") || header.attr("id").is_none() {
                    return Err(format!(
                        "the server's stream header is incomplete: {header}"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "the server did not send its stream header first (RFC 6120 4.9.1.1); \
                     first event: {other:?}"
                ));
            }
        }
        let errors: Vec<usize> = self
            .events
            .iter()
            .enumerate()
            .filter(
                |(_, event)| matches!(event, StreamEvent::Stanza(e) if e.is("error", ns::STREAM)),
            )
            .map(|(index, _)| index)
            .collect();
        let [index] = errors[..] else {
            return Err(format!(
                "expected one <stream:error/>, found {}",
                errors.len()
            ));
        };
        let StreamEvent::Stanza(error) = &self.events[index] else {
            unreachable!("filtered above");
        };
        let conditions: Vec<&str> = error
            .children()
            .filter(|child| child.ns() == ns::STREAM_ERRORS && child.name() != "text")
            .map(Element::name)
            .collect();
        if conditions != [condition] {
            return Err(format!(
                "expected <{condition}/> in {}, got {conditions:?}: {error}",
                ns::STREAM_ERRORS
            ));
        }
        if self.events[index + 1..] != [StreamEvent::Close] {
            return Err(format!(
                "after the stream error: {:?}, expected only </stream:stream>",
                &self.events[index + 1..]
            ));
        }
        if !self.tcp_closed {
            return Err(format!(
                "the TCP connection was still open {:?} after connecting",
                self.after
            ));
        }
        Ok(error.clone())
    }
}

/// Two fresh clients log in (STARTTLS, SCRAM-SHA-256), exchange a message each way and
/// close cleanly. `context` says after what, for the failure message.
pub(crate) async fn assert_serves_fresh_clients(node: &TestNode, context: &str) {
    let mut carol = login_tls(node, CAROL, None).await;
    let mut dave = login_tls(node, DAVE, None).await;
    let carol_jid = carol.jid().expect("bound").to_string();
    let dave_jid = dave.jid().expect("bound").to_string();
    chat_once(&mut carol, &mut dave, &dave_jid, "ping", context).await;
    chat_once(&mut dave, &mut carol, &carol_jid, "pong", context).await;
    carol.close().await.expect("carol closes");
    dave.close().await.expect("dave closes");
}

async fn chat_once(from: &mut Client, to: &mut Client, to_jid: &str, text: &str, context: &str) {
    from.send(&format!(
        "<message to='{to_jid}' type='chat'><body>{text}</body></message>"
    ))
    .await
    .unwrap_or_else(|error| panic!("after {context}: send failed: {error}"));
    to.expect(|e| e.name() == "message" && body(e) == text, WAIT)
        .await
        .unwrap_or_else(|error| panic!("after {context}: chat failed: {error}"));
}

/// Alice and Bob chatting in the background, a message each way every few milliseconds.
pub(crate) struct ChatPair {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<u64, String>>,
}

/// How often each side of a [`ChatPair`] sends.
const CHAT_EVERY: Duration = Duration::from_millis(20);

impl ChatPair {
    pub(crate) async fn start(node: &TestNode) -> ChatPair {
        let mut alice = login_tls(node, ALICE, None).await;
        let mut bob = login_tls(node, BOB, None).await;
        for client in [&mut alice, &mut bob] {
            client.send("<presence/>").await.expect("initial presence");
        }
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(chat(alice, bob, stopped));
        ChatPair { stop, task }
    }

    /// Stops sending, waits for everything in flight, and panics unless every message
    /// arrived once and in order; returns how many messages were exchanged.
    pub(crate) async fn finish(self) -> u64 {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(count)) => count,
            Ok(Err(problem)) => panic!("the chatting pair was disturbed: {problem}"),
            Err(error) => panic!("the chatting pair's task failed: {error}"),
        }
    }
}

enum ChatEvent {
    Stop,
    Tick,
    ToAlice(Result<Element, starling_tests::ClientError>),
    ToBob(Result<Element, starling_tests::ClientError>),
}

async fn chat(
    mut alice: Client,
    mut bob: Client,
    mut stopped: oneshot::Receiver<()>,
) -> Result<u64, String> {
    let alice_jid = alice.jid().expect("bound").to_string();
    let bob_jid = bob.jid().expect("bound").to_string();
    let mut ticks = tokio::time::interval(CHAT_EVERY);
    let (mut sent, mut alice_got, mut bob_got) = (0u64, 0u64, 0u64);
    let mut stopping: Option<Instant> = None;
    loop {
        if stopping.is_some() && alice_got == sent && bob_got == sent {
            break;
        }
        if stopping.is_some_and(|since| since.elapsed() > WAIT) {
            return Err(format!(
                "{sent} sent each way; alice got {alice_got}, bob got {bob_got}"
            ));
        }
        let event = tokio::select! {
            _ = &mut stopped, if stopping.is_none() => ChatEvent::Stop,
            _ = ticks.tick() => ChatEvent::Tick,
            received = alice.recv() => ChatEvent::ToAlice(received),
            received = bob.recv() => ChatEvent::ToBob(received),
        };
        match event {
            ChatEvent::Stop => stopping = Some(Instant::now()),
            ChatEvent::Tick if stopping.is_none() => {
                sent += 1;
                let to_bob =
                    format!("<message to='{bob_jid}' type='chat'><body>a-{sent}</body></message>");
                let to_alice = format!(
                    "<message to='{alice_jid}' type='chat'><body>b-{sent}</body></message>"
                );
                alice
                    .send(&to_bob)
                    .await
                    .map_err(|e| format!("alice: {e}"))?;
                bob.send(&to_alice).await.map_err(|e| format!("bob: {e}"))?;
            }
            ChatEvent::Tick => {}
            ChatEvent::ToAlice(received) => {
                let element = received.map_err(|e| format!("alice: {e}"))?;
                check_next(&element, "b-", &mut alice_got)?;
            }
            ChatEvent::ToBob(received) => {
                let element = received.map_err(|e| format!("bob: {e}"))?;
                check_next(&element, "a-", &mut bob_got)?;
            }
        }
    }
    alice
        .close()
        .await
        .map_err(|e| format!("alice close: {e}"))?;
    bob.close().await.map_err(|e| format!("bob close: {e}"))?;
    Ok(sent)
}

/// Counts a chat message if it is the next one expected; anything else of the kind is a
/// loss or a reordering.
fn check_next(element: &Element, prefix: &str, got: &mut u64) -> Result<(), String> {
    if element.name() != "message" {
        // Presence and the like are not part of the count.
        return Ok(());
    }
    let text = body(element);
    let expected = format!("{prefix}{}", *got + 1);
    if text != expected {
        return Err(format!("expected {expected:?}, got {element}"));
    }
    *got += 1;
    Ok(())
}

/// The text of a message's `<body/>`.
pub(crate) fn body(message: &Element) -> String {
    message
        .child("body", ns::CLIENT)
        .map(Element::text)
        .unwrap_or_default()
}
