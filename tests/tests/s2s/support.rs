//! Federation test helpers: servers with routes to each other, a test CA,
//! and a fake peer speaking raw server-to-server XML.

#[path = "../c2s/support.rs"]
#[allow(dead_code)]
mod single;

use std::time::Duration;

use starling_tests::pki::Pki;
use starling_tests::{Client, NodeBuilder, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[allow(unused_imports)]
pub(crate) use single::*;

pub(crate) const PW: &str = "pw";

/// Setting up a stream can take a DNS timeout or a dialback round trip:
/// more than a local stanza.
pub(crate) const FEDERATION_WAIT: Duration = Duration::from_secs(40);

/// A server for `domain` listening for federation on `s2s_port`, with
/// static routes to the other test domains, and users alice and bob.
pub(crate) fn server(domain: &str, s2s_port: u16, routes: &[(&str, u16)]) -> NodeBuilder {
    let mut builder = TestNode::builder()
        .domain(domain)
        .user("alice", PW)
        .user("bob", PW)
        .set("s2s", &format!("bind = \"127.0.0.1:{s2s_port}\""));
    for (remote, port) in routes {
        builder = builder.set("s2s.routes", &format!("{remote:?} = \"127.0.0.1:{port}\""));
    }
    builder
}

/// Uses a certificate for the node's domain from `pki`, and trusts `pki`
/// for peers.
pub(crate) fn certified(builder: NodeBuilder, pki: &Pki, domain: &str) -> NodeBuilder {
    let (cert, key) = pki.issue(domain);
    builder
        .set("tls", &format!("cert = {cert:?}"))
        .set("tls", &format!("key = {key:?}"))
        .set("s2s", &format!("ca_files = [{:?}]", pki.ca_path()))
}

/// Sends and waits for a message with `body` at `to`, from `from`'s JID.
pub(crate) async fn chat(from: &mut Client, to: &mut Client, body: &str) {
    let (sender, recipient) = (jid(from), bare(to));
    from.send(&format!(
        "<message to='{recipient}' type='chat'><body>{body}</body></message>"
    ))
    .await
    .unwrap();
    let got = to
        .expect(|e| is_message_with_body(e, body), FEDERATION_WAIT)
        .await
        .unwrap_or_else(|error| panic!("{recipient} did not get {body:?}: {error}"));
    assert_eq!(got.attr("from"), Some(sender.as_str()), "{got}");
}

/// Waits for an error reply from `from`, returning its condition.
pub(crate) async fn expect_bounce(client: &mut Client, from: &str) -> String {
    let error = client
        .expect(
            |e| e.attr("type") == Some("error") && e.attr("from") == Some(from),
            FEDERATION_WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no error from {from}: {error}"));
    error_of(&error)
        .map(|(_, condition)| condition)
        .unwrap_or_default()
}

/// `starling_s2s_authentications_total` for a direction and method.
pub(crate) async fn authentications(node: &TestNode, direction: &str, method: &str) -> f64 {
    node.metric(&format!(
        "starling_s2s_authentications_total{{direction=\"{direction}\",method=\"{method}\"}}"
    ))
    .await
}

/// A hand-written server stream: bytes out, text in.
pub(crate) struct RawPeer {
    socket: TcpStream,
    received: String,
}

impl RawPeer {
    pub(crate) fn new(socket: TcpStream) -> RawPeer {
        RawPeer {
            socket,
            received: String::new(),
        }
    }

    pub(crate) async fn connect(port: u16) -> RawPeer {
        RawPeer::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap())
    }

    pub(crate) async fn send(&mut self, xml: &str) {
        self.socket.write_all(xml.as_bytes()).await.unwrap();
    }

    /// Opens a stream from `from` to `to`.
    pub(crate) async fn open(&mut self, from: &str, to: &str) {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
             xmlns:db='jabber:server:dialback' xmlns:stream='http://etherx.jabber.org/streams' \
             from='{from}' to='{to}' version='1.0'>"
        ))
        .await;
    }

    /// Reads until the text received since the last call contains `needle`;
    /// returns that text. Panics with what arrived if it never does.
    pub(crate) async fn until(&mut self, needle: &str) -> String {
        let wait = async {
            loop {
                if let Some(at) = self.received.find(needle) {
                    let end = at + needle.len();
                    let text: String = self.received.drain(..end).collect();
                    return Some(text);
                }
                let mut chunk = [0u8; 4096];
                match self.socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self
                        .received
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        };
        match tokio::time::timeout(FEDERATION_WAIT, wait).await {
            Ok(Some(text)) => text,
            _ => panic!("never got {needle:?}; got {:?}", self.received),
        }
    }

    /// Reads until the peer closes; returns everything unread.
    pub(crate) async fn until_closed(&mut self) -> String {
        let wait = async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self
                        .received
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        };
        let closed = tokio::time::timeout(FEDERATION_WAIT, wait).await;
        assert!(closed.is_ok(), "still open; got {:?}", self.received);
        std::mem::take(&mut self.received)
    }
}

/// The value of attribute `name` in the first element of `xml` that has it.
pub(crate) fn attribute(xml: &str, name: &str) -> String {
    for quote in ['"', '\''] {
        let needle = format!(" {name}={quote}");
        if let Some(at) = xml.find(&needle) {
            let rest = &xml[at + needle.len()..];
            return rest[..rest.find(quote).unwrap_or(rest.len())].to_owned();
        }
    }
    panic!("no {name} attribute in {xml}")
}

/// A server for `domain` inside `netns` on `address`, federating on
/// `address:s2s_port` and finding peers through the namespace's DNS (no
/// routes), with users alice and bob.
pub(crate) fn dns_server(
    netns: &starling_tests::netns::NetNs,
    domain: &str,
    address: std::net::IpAddr,
    s2s_port: u16,
) -> NodeBuilder {
    TestNode::builder()
        .domain(domain)
        .user("alice", PW)
        .user("bob", PW)
        .set("s2s", &format!("bind = \"{address}:{s2s_port}\""))
        .netns(netns, address)
}

/// Skips nothing: fails with what to install when namespaces, dnsmasq or
/// root are missing (the tests that call it are ignored under plain
/// `cargo test`).
pub(crate) fn require_private_network() {
    starling_tests::netns::require_netns();
}
