//! XMPP over WebSocket (RFC 7395) for the test client: a byte pipe that looks like a TCP
//! stream to [`crate::Client`], so every helper works unchanged over WebSocket.
//!
//! Each write becomes one WebSocket text message, so a test controls framing by how it
//! calls `send` (two stanzas in one `send` are two stanzas in one frame). The client's
//! stream header becomes `<open/>`, `</stream:stream>` becomes `<close/>`; in the other
//! direction `<open/>` and `<close/>` become a stream header and its end, and every other
//! message is passed on as it came.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::transport::{Inbox, connect_tcp};

/// The RFC 7395 framing namespace.
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// How to open the WebSocket.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// `wss` (TLS, any certificate accepted) instead of `ws`.
    pub tls: bool,
    pub path: String,
    /// `Sec-WebSocket-Protocol`; None: none sent.
    pub subprotocol: Option<String>,
    pub origin: Option<String>,
    /// Local address to connect from (the load driver's workers each use
    /// their own); None: the system's choice.
    pub local_addr: Option<std::net::IpAddr>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            tls: false,
            path: "/xmpp-websocket".into(),
            subprotocol: Some("xmpp".into()),
            origin: None,
            local_addr: None,
        }
    }
}

/// Why a WebSocket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("connect: {0}")]
    Io(#[from] io::Error),
    /// The server refused the upgrade with this HTTP answer.
    #[error("upgrade refused: {status} {body}")]
    Refused { status: u16, body: String },
    #[error("WebSocket handshake: {0}")]
    Handshake(Box<tungstenite::Error>),
}

/// Opens `ws(s)://addr/path` and returns the pipe the client reads and writes.
pub async fn connect(addr: SocketAddr, options: &WsOptions) -> Result<WsPipe, WsError> {
    let scheme = if options.tls { "wss" } else { "ws" };
    let url = format!("{scheme}://{addr}{}", options.path);
    let mut request = url
        .into_client_request()
        .map_err(|error| WsError::Handshake(Box::new(error)))?;
    let headers = request.headers_mut();
    if let Some(protocol) = &options.subprotocol {
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocol).expect("a header value"),
        );
    }
    if let Some(origin) = &options.origin {
        headers.insert(
            "Origin",
            HeaderValue::from_str(origin).expect("a header value"),
        );
    }
    let tcp = connect_tcp(addr, options.local_addr).await?;
    if options.tls {
        let connector = crate::tls::insecure_connector().map_err(io::Error::other)?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = connector.connect(name, tcp).await?;
        let bindings = crate::sasl::ClientBindings::from_tls(tls.get_ref().1);
        let (socket, response) = tokio_tungstenite::client_async(request, tls)
            .await
            .map_err(refusal)?;
        check_protocol(&response, options)?;
        let mut pipe = WsPipe::spawn(socket);
        pipe.bindings = bindings;
        Ok(pipe)
    } else {
        let (socket, response) = tokio_tungstenite::client_async(request, tcp)
            .await
            .map_err(refusal)?;
        check_protocol(&response, options)?;
        Ok(WsPipe::spawn(socket))
    }
}

/// Opens `ws(s)://addr/path`, sends `open` as one text message and returns
/// the server's first text message, and whether the server then closed the
/// WebSocket (within `wait`). For frame-level checks such as RFC 7395
/// see-other-uri, which the byte pipe of [`connect`] cannot show.
pub async fn first_answer(
    addr: SocketAddr,
    options: &WsOptions,
    open: &str,
    wait: std::time::Duration,
) -> Result<(String, bool), WsError> {
    let scheme = if options.tls { "wss" } else { "ws" };
    let mut request = format!("{scheme}://{addr}{}", options.path)
        .into_client_request()
        .map_err(|error| WsError::Handshake(Box::new(error)))?;
    if let Some(protocol) = &options.subprotocol {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocol).expect("a header value"),
        );
    }
    let tcp = connect_tcp(addr, None).await?;
    if options.tls {
        let connector = crate::tls::insecure_connector().map_err(io::Error::other)?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = connector.connect(name, tcp).await?;
        let (socket, _) = tokio_tungstenite::client_async(request, tls)
            .await
            .map_err(refusal)?;
        exchange(socket, open, wait).await
    } else {
        let (socket, _) = tokio_tungstenite::client_async(request, tcp)
            .await
            .map_err(refusal)?;
        exchange(socket, open, wait).await
    }
}

async fn exchange<S>(
    mut socket: WebSocketStream<S>,
    open: &str,
    wait: std::time::Duration,
) -> Result<(String, bool), WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "no answer from the server");
    let failed = |error: tungstenite::Error| WsError::Handshake(Box::new(error));
    socket
        .send(Message::text(open.to_owned()))
        .await
        .map_err(failed)?;
    let first = loop {
        match tokio::time::timeout(wait, socket.next())
            .await
            .map_err(|_| timed_out())?
        {
            Some(Ok(Message::Text(text))) => break text.as_str().to_owned(),
            Some(Ok(Message::Close(_))) | None => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed").into());
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(failed(error)),
        }
    };
    let closed = loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => break false,
            Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => break true,
            Ok(Some(Ok(_))) => continue,
        }
    };
    Ok((first, closed))
}

fn refusal(error: tungstenite::Error) -> WsError {
    match error {
        tungstenite::Error::Http(response) => WsError::Refused {
            status: response.status().as_u16(),
            body: response
                .body()
                .as_ref()
                .map(|body| String::from_utf8_lossy(body).into_owned())
                .unwrap_or_default(),
        },
        other => WsError::Handshake(Box::new(other)),
    }
}

/// RFC 7395 3.2: the server must confirm the subprotocol.
fn check_protocol<T>(response: &Response<T>, options: &WsOptions) -> Result<(), WsError> {
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|value| value.to_str().ok());
    if options.subprotocol.is_some() && chosen != Some("xmpp") {
        return Err(WsError::Handshake(Box::new(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(
                tungstenite::error::SubProtocolError::NoSubProtocol,
            ),
        ))));
    }
    Ok(())
}

/// The client's side of a WebSocket, as a byte stream.
#[derive(Debug)]
pub struct WsPipe {
    /// Translated server messages.
    inbox: Inbox,
    outgoing: Option<mpsc::UnboundedSender<Message>>,
    task: tokio::task::JoinHandle<()>,
    /// The channel binding of the TLS connection under a `wss:` socket.
    bindings: crate::sasl::ClientBindings,
}

impl Drop for WsPipe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsPipe {
    fn spawn<S>(socket: WebSocketStream<S>) -> WsPipe
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            loop {
                tokio::select! {
                    message = outgoing_rx.recv() => match message {
                        Some(message) => {
                            if sink.send(message).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            let _ = sink.close().await;
                            // Keep reading what the server still says.
                            while let Some(Ok(message)) = stream.next().await {
                                if let Some(bytes) = from_server(message) {
                                    let _ = incoming_tx.send(bytes);
                                }
                            }
                            break;
                        }
                    },
                    message = stream.next() => match message {
                        Some(Ok(message)) => {
                            if let Some(bytes) = from_server(message) {
                                let _ = incoming_tx.send(bytes);
                            }
                        }
                        _ => break,
                    },
                }
            }
        });
        WsPipe {
            inbox: Inbox::new(incoming),
            outgoing: Some(outgoing),
            task,
            bindings: crate::sasl::ClientBindings::default(),
        }
    }

    pub fn channel_bindings(&self) -> &crate::sasl::ClientBindings {
        &self.bindings
    }
}

/// A server message as bytes of an ordinary stream.
fn from_server(message: Message) -> Option<Vec<u8>> {
    let text = match message {
        Message::Text(text) => text.as_str().to_owned(),
        Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => return None,
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with("<open") {
        let attributes = trimmed
            .trim_start_matches("<open")
            .trim_end()
            .trim_end_matches("/>")
            .replace(&format!("xmlns=\"{FRAMING}\""), "")
            .replace(&format!("xmlns='{FRAMING}'"), "");
        return Some(
            format!(
                "<stream:stream xmlns='jabber:client' \
                 xmlns:stream='http://etherx.jabber.org/streams' {attributes}>"
            )
            .into_bytes(),
        );
    }
    if trimmed.starts_with("<close") {
        return Some(b"</stream:stream>".to_vec());
    }
    if let Err(problem) = check_standalone(&text) {
        // The pipe ends, so the test waiting on this client fails.
        panic!("RFC 7395 3.3.3: a server message {problem}: {text}");
    }
    Some(text.into_bytes())
}

/// RFC 7395 3.3.3: a message holds exactly one complete element, and as no
/// stream header is around it, the element declares its own namespace.
fn check_standalone(text: &str) -> Result<(), String> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut reader = quick_xml::NsReader::from_str(text);
    let mut depth = 0usize;
    let mut roots = 0;
    loop {
        let (namespace, event) = reader
            .read_resolved_event()
            .map_err(|error| format!("is not well-formed ({error})"))?;
        let opens = match event {
            Event::Start(_) => true,
            Event::Empty(_) => false,
            Event::End(_) => {
                depth -= 1;
                continue;
            }
            Event::Eof => break,
            Event::Text(text) if depth == 0 && !text.trim_ascii().is_empty() => {
                return Err("has text outside its element".into());
            }
            _ => continue,
        };
        if depth == 0 {
            roots += 1;
            if !matches!(namespace, ResolveResult::Bound(_)) {
                return Err("does not declare its element's namespace".into());
            }
        }
        if opens {
            depth += 1;
        }
    }
    match roots {
        1 => Ok(()),
        n => Err(format!("holds {n} elements, not one")),
    }
}

#[cfg(test)]
mod tests {
    use super::check_standalone;

    #[test]
    fn a_message_is_one_element_that_declares_its_namespace() {
        assert!(
            check_standalone("<message xmlns='jabber:client' to='a@b'><body>x</body></message>")
                .is_ok()
        );
        assert!(
            check_standalone("<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>")
                .is_ok()
        );
        assert!(check_standalone("<message to='a@b'><body>x</body></message>").is_err());
        assert!(
            check_standalone("<r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='1'/>").is_err()
        );
        assert!(check_standalone("<r xmlns='urn:xmpp:sm:3'/>text").is_err());
    }
}

/// One client write as a message.
fn to_server(bytes: &[u8]) -> Message {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim();
    let header = trimmed
        .strip_prefix("<?xml version='1.0'?>")
        .unwrap_or(trimmed);
    if header.starts_with("<stream:stream") {
        let to = attribute(header, "to").unwrap_or_default();
        return Message::text(format!(
            "<open xmlns=\"{FRAMING}\" to=\"{to}\" version=\"1.0\" xml:lang=\"en\"/>"
        ));
    }
    if trimmed == "</stream:stream>" {
        return Message::text(format!("<close xmlns=\"{FRAMING}\"/>"));
    }
    // RFC 7395 3.3.3: a message stands alone, so its stanza declares its
    // namespace (Prosody takes an undeclared one as no namespace at all).
    if trimmed.starts_with('<') && !trimmed.starts_with("<?") {
        return Message::text(crate::bosh::qualify(&text));
    }
    Message::text(text.into_owned())
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    for quote in ['\'', '"'] {
        let start = format!(" {name}={quote}");
        if let Some(at) = tag.find(&start) {
            let rest = &tag[at + start.len()..];
            return rest.find(quote).map(|end| &rest[..end]);
        }
    }
    None
}

impl WsPipe {
    /// Sends a binary message (RFC 7395 forbids them; for bad-input tests).
    pub fn send_binary(&self, bytes: &[u8]) -> io::Result<()> {
        self.send_message(Message::binary(bytes.to_vec()))
    }

    fn send_message(&self, message: Message) -> io::Result<()> {
        self.outgoing
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed"))?
            .send(message)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed"))
    }
}

impl AsyncRead for WsPipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().inbox.poll_read(cx, buf)
    }
}

impl AsyncWrite for WsPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.send_message(to_server(buf)).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().outgoing = None;
        Poll::Ready(Ok(()))
    }
}
