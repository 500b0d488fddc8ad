//! BOSH (XEP-0124, XEP-0206) for the test client: a byte pipe that looks like a TCP stream
//! to [`crate::Client`], so every helper works unchanged over BOSH.
//!
//! A background task keeps one request held at the server and sends each client write in
//! a request of its own (so at most two are in flight, as `hold='1'` allows). The client's
//! first stream header creates the session, later ones are `xmpp:restart` requests, and
//! `</stream:stream>` terminates. Answers are passed on in `rid` order: their children as
//! stream bytes, a synthesized stream header after creation and restarts, and the end of
//! the stream on a terminate body.
//!
//! The raw request helpers ([`BoshRequest`]) are for tests of the protocol rules.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::http::{HttpRequest, Response};
use crate::transport::Inbox;

pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const XBOSH: &str = "urn:xmpp:xbosh";

/// Where the BOSH endpoint is.
#[derive(Debug, Clone)]
pub struct BoshOptions {
    pub addr: SocketAddr,
    pub tls: bool,
    pub path: String,
    /// Asked for in the creation request.
    pub wait: u64,
    pub origin: Option<String>,
}

impl BoshOptions {
    pub fn new(addr: SocketAddr, tls: bool) -> BoshOptions {
        BoshOptions {
            addr,
            tls,
            path: "/http-bind".into(),
            wait: 10,
            origin: None,
        }
    }

    /// POSTs one raw body.
    pub async fn post(&self, body: &str) -> anyhow::Result<Response> {
        let mut request = HttpRequest::new(self.addr, "POST", &self.path)
            .body(body.to_owned(), "text/xml; charset=utf-8");
        if self.tls {
            request = request.tls();
        }
        if let Some(origin) = &self.origin {
            request = request.header("origin", origin);
        }
        request.send().await
    }
}

/// The value of attribute `name` in the first tag of `xml`.
pub fn attribute(xml: &str, name: &str) -> Option<String> {
    let tag_end = xml.find('>').unwrap_or(xml.len());
    let tag = &xml[..tag_end];
    for quote in ['\'', '"'] {
        let start = format!(" {name}={quote}");
        if let Some(at) = tag.find(&start) {
            let rest = &tag[at + start.len()..];
            return rest.find(quote).map(|end| rest[..end].to_owned());
        }
    }
    None
}

/// What is inside `<body ...>...</body>` (empty for `<body .../>`).
pub fn children(xml: &str) -> &str {
    let xml = xml.trim();
    let Some(tag_end) = xml.find('>') else {
        return "";
    };
    if xml[..tag_end].ends_with('/') {
        return "";
    }
    xml[tag_end + 1..].trim_end_matches("</body>")
}

/// The client's side of a BOSH session, as a byte stream.
#[derive(Debug)]
pub struct BoshPipe {
    /// Translated server messages.
    inbox: Inbox,
    outgoing: Option<mpsc::UnboundedSender<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BoshPipe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a request was for, to translate its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Create,
    Restart,
    Other,
}

impl BoshPipe {
    pub fn new(options: BoshOptions) -> BoshPipe {
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(options, outgoing_rx, incoming_tx));
        BoshPipe {
            inbox: Inbox::new(incoming),
            outgoing: Some(outgoing),
            task,
        }
    }

    /// Stops polling (the session is left to time out) without terminating it.
    pub fn abandon(&mut self) {
        self.task.abort();
    }
}

async fn run(
    options: BoshOptions,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    incoming: mpsc::UnboundedSender<Vec<u8>>,
) {
    let mut rid: u64 = 1_000 + u64::from(rand::random::<u16>());
    let mut sid: Option<String> = None;
    let mut authid = String::new();
    let mut from = String::new();
    let mut in_flight: JoinSet<(u64, Purpose, anyhow::Result<Response>)> = JoinSet::new();
    // Answers that came before an older one, by rid.
    let mut answers: BTreeMap<u64, (Purpose, String)> = BTreeMap::new();
    let mut next_answer = rid;
    let mut waiting: Vec<Vec<u8>> = Vec::new();
    let mut ended = false;
    loop {
        // Send what the client wrote, while there is a free slot (two in flight).
        while sid.is_some() && in_flight.len() < 2 && !waiting.is_empty() && !ended {
            let bytes = waiting.remove(0);
            let (body, purpose) = request_for(&bytes, rid, sid.as_deref(), &options);
            if purpose == Purpose::Restart {
                // The new stream starts now: whatever arrives from here on,
                // in any answer, is in it. A server may push the new
                // features on an older held request (Prosody does) rather
                // than on the restart request.
                let _ = incoming.send(stream_header(&from, &authid));
            }
            spawn_request(&mut in_flight, &options, rid, purpose, body);
            rid += 1;
        }
        // Keep one request held so the server can push.
        if sid.is_some() && in_flight.is_empty() && !ended {
            let body = format!(
                "<body xmlns='{HTTPBIND}' rid='{rid}' sid='{}'/>",
                sid.as_deref().unwrap_or_default()
            );
            spawn_request(&mut in_flight, &options, rid, Purpose::Other, body);
            rid += 1;
        }
        tokio::select! {
            written = outgoing.recv() => {
                let Some(bytes) = written else {
                    if in_flight.is_empty() { return; }
                    // Let the last answers arrive.
                    while let Some(Ok((r, purpose, result))) = in_flight.join_next().await {
                        if let Ok(response) = result {
                            answers.insert(r, (purpose, response.text()));
                        }
                    }
                    let _ = flush(&mut answers, &mut next_answer, &incoming, &authid, &from);
                    return;
                };
                if sid.is_none() {
                    // The first header creates the session, synchronously.
                    let (body, _) = request_for(&bytes, rid, None, &options);
                    spawn_request(&mut in_flight, &options, rid, Purpose::Create, body);
                    rid += 1;
                    let Some(Ok((r, purpose, Ok(response)))) = in_flight.join_next().await else {
                        return;
                    };
                    let text = response.text();
                    let Some(new_sid) = attribute(&text, "sid") else {
                        let _ = incoming.send(b"</stream:stream>".to_vec());
                        return;
                    };
                    sid = Some(new_sid);
                    authid = attribute(&text, "authid").unwrap_or_default();
                    from = attribute(&text, "from").unwrap_or_default();
                    answers.insert(r, (purpose, text));
                    ended |= flush(&mut answers, &mut next_answer, &incoming, &authid, &from);
                } else {
                    waiting.push(bytes);
                }
            }
            done = in_flight.join_next(), if !in_flight.is_empty() => {
                let Some(Ok((r, purpose, result))) = done else { continue };
                match result {
                    Ok(response) => {
                        answers.insert(r, (purpose, response.text()));
                    }
                    Err(_) => {
                        let _ = incoming.send(b"</stream:stream>".to_vec());
                        return;
                    }
                }
                ended |= flush(&mut answers, &mut next_answer, &incoming, &authid, &from);
                if ended {
                    return;
                }
            }
        }
    }
}

/// Passes on the answers that are next in rid order; true when the session ended.
fn flush(
    answers: &mut BTreeMap<u64, (Purpose, String)>,
    next: &mut u64,
    incoming: &mpsc::UnboundedSender<Vec<u8>>,
    authid: &str,
    from: &str,
) -> bool {
    while let Some((purpose, text)) = answers.remove(next) {
        *next += 1;
        let mut bytes = Vec::new();
        // A restart's header went out when it was asked for (see `run`).
        if purpose == Purpose::Create {
            bytes.extend_from_slice(&stream_header(from, authid));
        }
        bytes.extend_from_slice(children(&text).as_bytes());
        let terminated = attribute(&text, "type").as_deref() == Some("terminate");
        if terminated {
            bytes.extend_from_slice(b"</stream:stream>");
        }
        let _ = incoming.send(bytes);
        if terminated {
            return true;
        }
    }
    false
}

/// The stream header the client reads for a new stream.
fn stream_header(from: &str, authid: &str) -> Vec<u8> {
    format!(
        "<stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' from='{from}' \
         id='{authid}' version='1.0'>"
    )
    .into_bytes()
}

fn spawn_request(
    in_flight: &mut JoinSet<(u64, Purpose, anyhow::Result<Response>)>,
    options: &BoshOptions,
    rid: u64,
    purpose: Purpose,
    body: String,
) {
    let options = options.clone();
    in_flight.spawn(async move { (rid, purpose, options.post(&body).await) });
}

/// The request body for one client write.
fn request_for(
    bytes: &[u8],
    rid: u64,
    sid: Option<&str>,
    options: &BoshOptions,
) -> (String, Purpose) {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim();
    let header = trimmed
        .strip_prefix("<?xml version='1.0'?>")
        .unwrap_or(trimmed);
    let Some(sid) = sid else {
        let to = attribute(header, "to").unwrap_or_default();
        return (
            format!(
                "<body xmlns='{HTTPBIND}' rid='{rid}' to='{to}' wait='{}' hold='1' \
                 xml:lang='en' ver='1.6' xmlns:xmpp='{XBOSH}' xmpp:version='1.0'/>",
                options.wait
            ),
            Purpose::Create,
        );
    };
    if header.starts_with("<stream:stream") {
        return (
            format!(
                "<body xmlns='{HTTPBIND}' rid='{rid}' sid='{sid}' xmlns:xmpp='{XBOSH}' \
                 xmpp:restart='true'/>"
            ),
            Purpose::Restart,
        );
    }
    if trimmed == "</stream:stream>" {
        return (
            format!("<body xmlns='{HTTPBIND}' rid='{rid}' sid='{sid}' type='terminate'/>"),
            Purpose::Other,
        );
    }
    // Stanzas written without a namespace are in jabber:client (XEP-0206 says so).
    let payload = qualify(trimmed);
    (
        format!("<body xmlns='{HTTPBIND}' rid='{rid}' sid='{sid}'>{payload}</body>"),
        Purpose::Other,
    )
}

/// Adds `xmlns='jabber:client'` to first-level elements that declare no namespace.
pub(crate) fn qualify(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len() + 32);
    let mut depth = 0usize;
    let mut rest = xml;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find('>').map_or(rest.len(), |end| end + 1);
        let tag = &rest[..end];
        if tag.starts_with("</") {
            depth = depth.saturating_sub(1);
            out.push_str(tag);
        } else {
            let self_closing = tag.ends_with("/>");
            if depth == 0 && !tag.contains("xmlns=") {
                let name_end = tag[1..]
                    .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                    .map_or(tag.len(), |i| i + 1);
                out.push_str(&tag[..name_end]);
                out.push_str(" xmlns='jabber:client'");
                out.push_str(&tag[name_end..]);
            } else {
                out.push_str(tag);
            }
            if !self_closing {
                depth += 1;
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl AsyncRead for BoshPipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().inbox.poll_read(cx, buf)
    }
}

impl AsyncWrite for BoshPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let sent = self
            .outgoing
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "BOSH session closed"))
            .and_then(|outgoing| {
                outgoing
                    .send(buf.to_vec())
                    .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "BOSH session closed"))
            });
        Poll::Ready(sent.map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().outgoing = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifies_first_level_elements_only() {
        assert_eq!(
            qualify("<message to='a'><body>x</body></message><iq/>"),
            "<message xmlns='jabber:client' to='a'><body>x</body></message><iq xmlns='jabber:client'/>"
        );
        assert_eq!(
            qualify("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>x</auth>"),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>x</auth>"
        );
    }

    #[test]
    fn body_children_and_attributes() {
        let body = "<body xmlns='http://jabber.org/protocol/httpbind' sid='s1'><a/><b/></body>";
        assert_eq!(children(body), "<a/><b/>");
        assert_eq!(attribute(body, "sid").as_deref(), Some("s1"));
        assert_eq!(children("<body sid='x'/>"), "");
    }
}
