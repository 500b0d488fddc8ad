//! An XMPP client for tests and load runs (RFC 6120 stream negotiation, RFC 6121 session).
//!
//! [`Client::login`] runs the whole negotiation: TCP, stream header, STARTTLS, SASL
//! (SCRAM-SHA-256, SCRAM-SHA-1, PLAIN), resource binding and the legacy session iq. Each step
//! is also public, so tests can stop anywhere and poke at the server. After login,
//! [`Client::send`] writes anything and [`Client::expect`] waits for a stanza matching a
//! predicate, keeping the others for later expects.
//!
//! Reading is cancel-safe ([`Client::recv`] can sit in a `select!`), so load tasks can wait
//! for a send time and for incoming stanzas at once.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use starling_core::jid::FullJid;
use starling_core::xml::{Element, ns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use crate::error::{ClientError, condition_of, summarize};
use crate::sasl::Mechanism;
use crate::transport::{Transport, connect_tcp};
use crate::xml_reader::{StreamEvent, XmlReader};

mod negotiate;
mod sm;
#[cfg(test)]
mod tests;

pub use self::sm::{SM, SmEnabled};

/// How long one negotiation step may take unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads ask for at least this much room; small, because a load run holds thousands of
/// idle clients.
const READ_CHUNK: usize = 2048;

/// Whether to negotiate TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Never; fail nothing if the server offers it.
    Off,
    /// STARTTLS, failing if the server does not offer it.
    #[default]
    Required,
    /// STARTTLS when offered.
    IfOffered,
}

/// Everything [`Client::login`] needs.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// The domain to open the stream for (`to` of the stream header, TLS server name).
    pub domain: String,
    pub username: String,
    pub password: String,
    /// `None`: let the server generate a resource.
    pub resource: Option<String>,
    pub tls: TlsMode,
    /// `None`: the strongest mechanism both sides support.
    pub mechanism: Option<Mechanism>,
    /// What a SCRAM exchange binds to (by default: -PLUS where offered and possible).
    pub channel_binding: crate::sasl::ChannelBinding,
    /// Send the RFC 3921 session iq when the server advertises it (even as optional).
    pub legacy_session: bool,
    /// Local address to connect from (any port).
    pub local_addr: Option<IpAddr>,
    /// Limit for each step.
    pub timeout: Duration,
}

impl LoginOptions {
    pub fn new(domain: &str, username: &str, password: &str) -> Self {
        LoginOptions {
            domain: domain.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            resource: None,
            tls: TlsMode::Required,
            mechanism: None,
            channel_binding: crate::sasl::ChannelBinding::Auto,
            legacy_session: true,
            local_addr: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One client connection and its stream state.
#[derive(Debug)]
pub struct Client {
    transport: Transport,
    reader: XmlReader,
    /// Stanzas read while waiting for something else, oldest first.
    pending: VecDeque<Element>,
    domain: String,
    /// The server's latest stream header.
    header: Element,
    /// The server's latest `<stream:features/>`.
    features: Element,
    jid: Option<FullJid>,
    /// The server closed its stream or the connection.
    peer_closed: bool,
    next_id: u64,
    timeout: Duration,
    /// XEP-0198, once enabled on this stream.
    sm: Option<sm::SmClient>,
}

impl Client {
    /// Connects to `addr` and opens a stream for `domain`; the features are then in
    /// [`Client::features`].
    pub async fn connect(addr: SocketAddr, domain: &str) -> Result<Client, ClientError> {
        Self::connect_from(addr, None, domain).await
    }

    /// [`Client::connect`] from a chosen local address.
    pub async fn connect_from(
        addr: SocketAddr,
        local_addr: Option<IpAddr>,
        domain: &str,
    ) -> Result<Client, ClientError> {
        let tcp = connect_tcp(addr, local_addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        Self::connect_over(Transport::Tcp(tcp), domain).await
    }

    /// Opens a stream for `domain` over XMPP over WebSocket (RFC 7395) at `addr` (a node's
    /// HTTP listener).
    pub async fn connect_websocket(
        addr: SocketAddr,
        ws: &crate::websocket::WsOptions,
        domain: &str,
    ) -> Result<Client, ClientError> {
        let pipe =
            crate::websocket::connect(addr, ws)
                .await
                .map_err(|error| ClientError::Connect {
                    addr,
                    source: std::io::Error::other(error.to_string()),
                })?;
        Self::connect_over(Transport::WebSocket(Box::new(pipe)), domain).await
    }

    /// [`Client::login`] over WebSocket: no STARTTLS (the WebSocket's own TLS, if any,
    /// protects the stream).
    pub async fn login_websocket(
        addr: SocketAddr,
        ws: &crate::websocket::WsOptions,
        options: &LoginOptions,
    ) -> Result<Client, ClientError> {
        let connect = Self::connect_websocket(addr, ws, &options.domain);
        Self::login_without_starttls(connect, options).await
    }

    /// [`Client::login`] over XEP-0368 direct TLS: TLS (ALPN `xmpp-client`) from the first
    /// byte, then the stream, without STARTTLS.
    pub async fn login_direct_tls(
        addr: SocketAddr,
        options: &LoginOptions,
    ) -> Result<Client, ClientError> {
        let connect = async {
            let transport = crate::transport::connect_direct_tls(addr)
                .await
                .map_err(|source| ClientError::Connect { addr, source })?;
            Self::connect_over(transport, &options.domain).await
        };
        Self::login_without_starttls(connect, options).await
    }

    /// [`Client::login`] over BOSH (XEP-0206): no STARTTLS (the HTTP listener's TLS, if
    /// any, protects the session).
    pub async fn login_bosh(
        bosh: &crate::bosh::BoshOptions,
        options: &LoginOptions,
    ) -> Result<Client, ClientError> {
        let pipe = crate::bosh::BoshPipe::new(bosh.clone());
        let connect = Self::connect_over(Transport::Bosh(Box::new(pipe)), &options.domain);
        Self::login_without_starttls(connect, options).await
    }

    /// Opens the stream with `connect` within the options' timeout, then
    /// authenticates and binds without STARTTLS (the transport has its own
    /// security, or none).
    async fn login_without_starttls(
        connect: impl std::future::Future<Output = Result<Client, ClientError>>,
        options: &LoginOptions,
    ) -> Result<Client, ClientError> {
        let client = tokio::time::timeout(options.timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout {
                step: "connect",
                waited: options.timeout,
                received: "nothing".to_owned(),
            })??;
        let options = LoginOptions {
            tls: TlsMode::Off,
            ..options.clone()
        };
        client.finish_login(&options).await
    }

    /// Stops a BOSH client's polling without terminating its session (which then times
    /// out at the server); no effect on other transports.
    pub fn abandon_bosh(&mut self) {
        if let Transport::Bosh(pipe) = &mut self.transport {
            pipe.abandon();
        }
    }

    /// Opens a stream for `domain` over an established transport.
    pub async fn connect_over(transport: Transport, domain: &str) -> Result<Client, ClientError> {
        let mut client = Client {
            transport,
            reader: XmlReader::new(),
            pending: VecDeque::new(),
            domain: domain.to_owned(),
            header: Element::new("stream", ns::STREAM),
            features: Element::new("features", ns::STREAM),
            jid: None,
            peer_closed: false,
            next_id: 0,
            timeout: DEFAULT_TIMEOUT,
            sm: None,
        };
        client.open_stream("stream open").await?;
        Ok(client)
    }

    /// Connects and negotiates everything up to a bound (and, if asked, session-started)
    /// resource.
    pub async fn login(addr: SocketAddr, options: &LoginOptions) -> Result<Client, ClientError> {
        let connect = Self::connect_from(addr, options.local_addr, &options.domain);
        let client = tokio::time::timeout(options.timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout {
                step: "connect",
                waited: options.timeout,
                received: "nothing".to_owned(),
            })??;
        client.finish_login(options).await
    }

    /// Everything after the first stream header: STARTTLS, SASL, bind, session.
    async fn finish_login(mut self, options: &LoginOptions) -> Result<Client, ClientError> {
        let client = &mut self;
        client.timeout = options.timeout;
        let offers_tls = client.features.has_child("starttls", ns::TLS);
        match options.tls {
            TlsMode::Required => client.starttls().await?,
            TlsMode::IfOffered if offers_tls => client.starttls().await?,
            TlsMode::IfOffered | TlsMode::Off => {}
        }
        client
            .authenticate_with(
                &options.username,
                &options.password,
                options.mechanism,
                &options.channel_binding,
            )
            .await?;
        client.bind(options.resource.as_deref()).await?;
        if options.legacy_session {
            client.session().await?;
        }
        Ok(self)
    }

    /// [`Client::login`], following `<see-other-host/>` redirects (RFC 6120
    /// 4.9.3.19) up to `max_redirects` times. Returns the client and the
    /// address it is connected to.
    pub async fn login_following(
        addr: SocketAddr,
        options: &LoginOptions,
        max_redirects: usize,
    ) -> Result<(Client, SocketAddr), ClientError> {
        let mut addr = addr;
        let mut redirects = 0;
        loop {
            match Client::login(addr, options).await {
                Ok(client) => return Ok((client, addr)),
                Err(ClientError::SeeOtherHost { step, host }) if redirects < max_redirects => {
                    redirects += 1;
                    addr = tokio::net::lookup_host(host.as_str())
                        .await
                        .ok()
                        .and_then(|mut found| found.next())
                        .ok_or(ClientError::SeeOtherHost { step, host })?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The limit used by negotiation steps.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn features(&self) -> &Element {
        &self.features
    }

    pub fn stream_header(&self) -> &Element {
        &self.header
    }

    /// The `id` of the server's latest stream header.
    pub fn stream_id(&self) -> Option<&str> {
        self.header.attr("id")
    }

    /// The bound JID, once [`Client::bind`] succeeded.
    pub fn jid(&self) -> Option<&FullJid> {
        self.jid.as_ref()
    }

    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// What this connection offers SCRAM -PLUS, from the client's side.
    pub fn channel_bindings(&self) -> crate::sasl::ClientBindings {
        self.transport.channel_bindings()
    }

    /// The channel-binding types the server advertises (XEP-0440).
    pub fn advertised_binding_types(&self) -> Vec<String> {
        self.features
            .child("sasl-channel-binding", crate::sasl::SASL_CB)
            .map(|types| {
                types
                    .children()
                    .filter_map(|binding| binding.attr("type").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The certificate (DER) the server presented, once TLS is up.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.transport.peer_certificate()
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.transport.local_addr()
    }

    /// The SASL mechanisms in the current features.
    pub fn mechanisms(&self) -> Vec<String> {
        self.features
            .child("mechanisms", ns::SASL)
            .map(|mechanisms| {
                mechanisms
                    .children()
                    .filter(|child| child.is("mechanism", ns::SASL))
                    .map(|child| child.text().trim().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes raw text, which need not be well-formed.
    pub async fn send(&mut self, xml: &str) -> Result<(), ClientError> {
        self.send_bytes(xml.as_bytes()).await
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let io = |source| ClientError::Io {
            step: "send",
            source,
        };
        self.transport.write_all(bytes).await.map_err(io)?;
        self.transport.flush().await.map_err(io)
    }

    /// Writes an element as a top-level stanza of a client stream.
    pub async fn send_element(&mut self, element: &Element) -> Result<(), ClientError> {
        self.send_bytes(&element.to_bytes()).await
    }

    /// A fresh stanza id, unique within this client.
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("c{}", self.next_id)
    }

    /// Sends an iq (an id is added if missing) and waits for its result; an error reply
    /// becomes [`ClientError::IqError`].
    pub async fn iq(&mut self, iq: Element, timeout: Duration) -> Result<Element, ClientError> {
        self.iq_step("iq", iq, timeout).await
    }

    /// Waits for a stanza matching `predicate`; stanzas that do not match are kept, in
    /// order, for later calls. A stream error that does not match ends the wait.
    pub async fn expect(
        &mut self,
        predicate: impl Fn(&Element) -> bool,
        timeout: Duration,
    ) -> Result<Element, ClientError> {
        self.expect_in("expect", predicate, timeout).await
    }

    /// The next stanza, whatever it is.
    pub async fn next_stanza(&mut self, timeout: Duration) -> Result<Element, ClientError> {
        self.expect_in("next stanza", |_| true, timeout).await
    }

    /// Waits for `<stream:error>` with `condition` (e.g. `not-well-formed`) and then for the
    /// server to close the stream, as RFC 6120 §4.9.1.1 requires. Returns the error element.
    pub async fn expect_stream_error(
        &mut self,
        condition: &str,
        timeout: Duration,
    ) -> Result<Element, ClientError> {
        const STEP: &str = "expect stream error";
        let deadline = Instant::now() + timeout;
        let is_error = |element: &Element| element.is("error", ns::STREAM);
        let error = self.expect_in(STEP, is_error, timeout).await?;
        let found = condition_of(&error, ns::STREAM_ERRORS).unwrap_or_default();
        if found != condition {
            return Err(ClientError::StreamError {
                step: STEP,
                condition: found,
                text: Some(format!("expected <{condition}/>")),
            });
        }
        self.wait_for_close(STEP, deadline).await?;
        Ok(error)
    }

    /// The next stanza with no time limit; cancel-safe. A stream error becomes
    /// [`ClientError::StreamError`], the end of the stream [`ClientError::Closed`].
    pub async fn recv(&mut self) -> Result<Element, ClientError> {
        let element = match self.pending.pop_front() {
            Some(element) => element,
            None => self.read_element("recv").await?,
        };
        if element.is("error", ns::STREAM) {
            return Err(ClientError::from_stream_error("recv", &element));
        }
        Ok(element)
    }

    /// Stanzas read but not yet taken by an expect.
    pub fn pending(&self) -> impl Iterator<Item = &Element> {
        self.pending.iter()
    }

    /// Closes the stream (RFC 6120 §4.4): sends `</stream:stream>`, waits for the server's
    /// close or the end of the connection, then shuts the connection down.
    pub async fn close(mut self) -> Result<(), ClientError> {
        const STEP: &str = "close";
        if !self.peer_closed {
            self.send("</stream:stream>").await?;
            self.wait_for_close(STEP, Instant::now() + self.timeout)
                .await?;
        }
        // The server may have closed first; a failed shutdown changes nothing then.
        self.transport.shutdown().await.ok();
        Ok(())
    }

    /// Whether the server closed its stream or the connection.
    pub fn is_closed(&self) -> bool {
        self.peer_closed
    }

    async fn iq_step(
        &mut self,
        step: &'static str,
        mut iq: Element,
        timeout: Duration,
    ) -> Result<Element, ClientError> {
        let id = match iq.attr("id") {
            Some(id) => id.to_owned(),
            None => {
                let id = self.next_id();
                iq.set_attr("id", id.clone());
                id
            }
        };
        self.send_element(&iq).await?;
        let is_reply = |element: &Element| {
            element.is("iq", ns::CLIENT)
                && element.attr("id") == Some(id.as_str())
                && matches!(element.attr("type"), Some("result" | "error"))
        };
        let reply = self.expect_in(step, is_reply, timeout).await?;
        if reply.attr("type") == Some("error") {
            let error = reply.child("error", ns::CLIENT);
            return Err(ClientError::IqError {
                step,
                condition: error
                    .and_then(|error| condition_of(error, ns::STANZAS))
                    .unwrap_or_default(),
                error_type: error
                    .and_then(|error| error.attr("type"))
                    .unwrap_or_default()
                    .to_owned(),
                stanza: reply.to_string(),
            });
        }
        Ok(reply)
    }

    async fn expect_in(
        &mut self,
        step: &'static str,
        predicate: impl Fn(&Element) -> bool,
        timeout: Duration,
    ) -> Result<Element, ClientError> {
        if let Some(index) = self.pending.iter().position(&predicate) {
            if let Some(element) = self.pending.remove(index) {
                return Ok(element);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let element = match timeout_at(deadline, self.read_element(step)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(ClientError::Timeout {
                        step,
                        waited: timeout,
                        received: summarize(&self.pending),
                    });
                }
            };
            if predicate(&element) {
                return Ok(element);
            }
            if element.is("error", ns::STREAM) {
                return Err(ClientError::from_stream_error(step, &element));
            }
            self.pending.push_back(element);
        }
    }

    async fn wait_for_close(
        &mut self,
        step: &'static str,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        while !self.peer_closed {
            match timeout_at(deadline, self.read_event(step)).await {
                Ok(Ok(StreamEvent::Close)) => self.peer_closed = true,
                Ok(Ok(StreamEvent::Stanza(element))) => self.pending.push_back(element),
                Ok(Ok(StreamEvent::Open(_))) => {}
                // The connection ending is a close too.
                Ok(Err(ClientError::Closed { .. } | ClientError::Io { .. })) => {
                    self.peer_closed = true
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(ClientError::Timeout {
                        step,
                        waited: Duration::ZERO,
                        received: format!("no stream close; stanzas: {}", summarize(&self.pending)),
                    });
                }
            }
        }
        Ok(())
    }

    /// The next top-level element from the socket (not from `pending`).
    /// With stream management on, stanzas are counted here and the server's
    /// `<r/>` is answered here (unless the test answers itself).
    async fn read_element(&mut self, step: &'static str) -> Result<Element, ClientError> {
        loop {
            match self.read_event(step).await? {
                StreamEvent::Stanza(element) => {
                    if self.sm_read(&element).await? {
                        continue;
                    }
                    return Ok(element);
                }
                StreamEvent::Close => {
                    self.peer_closed = true;
                    return Err(ClientError::Closed {
                        step,
                        received: summarize(&self.pending),
                    });
                }
                // A second header without a restart is a server bug; tests see it as the
                // features or stanza that follows being out of place.
                StreamEvent::Open(header) => self.header = header,
            }
        }
    }

    /// Cancel-safe: bytes read stay in the reader's buffer if the future is dropped.
    async fn read_event(&mut self, step: &'static str) -> Result<StreamEvent, ClientError> {
        loop {
            let event = self
                .reader
                .next_event()
                .map_err(|source| ClientError::Xml { step, source })?;
            if let Some(event) = event {
                return Ok(event);
            }
            if self.peer_closed {
                return Err(ClientError::Closed {
                    step,
                    received: summarize(&self.pending),
                });
            }
            let buffer = self.reader.buffer();
            buffer.reserve(READ_CHUNK);
            let read = self
                .transport
                .read_buf(buffer)
                .await
                .map_err(|source| ClientError::Io { step, source })?;
            if read == 0 {
                self.peer_closed = true;
            }
        }
    }

    fn timeout_error(&self, step: &'static str) -> ClientError {
        ClientError::Timeout {
            step,
            waited: self.timeout,
            received: summarize(&self.pending),
        }
    }
}

fn unexpected(step: &'static str, expected: &'static str, got: &Element) -> ClientError {
    ClientError::Unexpected {
        step,
        expected,
        got: summarize([got]),
    }
}
