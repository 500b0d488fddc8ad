//! XEP-0288 bidirectional server streams, the receiving side: an incoming
//! stream whose peer sent `<bidi/>` carries this member's stanzas for each
//! pair (our domain, the peer's domain) it authenticates, instead of a
//! stream of our own. It takes the pair's link queue (`outbound.rs`), even
//! from a link still dialing; when the stream ends, the links are given
//! back and what they hold goes out again on a new stream.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::mpsc;

use super::outbound::{self, Link, Pair};
use crate::server::Server;
use crate::stanza::Stanza;

/// The stream feature a receiving server offers.
pub(crate) const NS_FEATURE: &str = "urn:xmpp:features:bidi";
/// The element the initiating server sends to ask for it.
pub(crate) const NS: &str = "urn:xmpp:bidi";

/// The links an incoming stream carries.
#[derive(Default)]
pub(super) struct Carried {
    links: Vec<(Pair, Arc<Link>, mpsc::Receiver<Stanza>)>,
}

impl Carried {
    /// Takes the queue of `pair`, unless a stream already carries it.
    pub(super) fn adopt(&mut self, server: &Server, pair: Pair) -> bool {
        if self.links.iter().any(|(carried, ..)| *carried == pair) {
            return true;
        }
        let Some((link, waiting)) = server.s2s.adopt(&pair) else {
            tracing::debug!(local = %pair.local, remote = %pair.remote,
                "a stream of our own already carries the pair");
            return false;
        };
        tracing::info!(local = %pair.local, remote = %pair.remote,
            "sending over the incoming bidirectional stream");
        self.links.push((pair, link, waiting));
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The next stanza any carried link has to send; pending while none
    /// has. Cancel-safe.
    pub(super) async fn next(&mut self) -> Stanza {
        poll_fn(|context| {
            for (_, _, waiting) in &mut self.links {
                if let Poll::Ready(Some(stanza)) = waiting.poll_recv(context) {
                    return Poll::Ready(stanza);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Gives every link back: `unsent` and what the queues hold are routed
    /// again, to new streams.
    pub(super) async fn release(self, server: &Server, mut unsent: Option<Stanza>) {
        for (pair, link, waiting) in self.links {
            outbound::release(server, &pair, link, waiting, unsent.take()).await;
        }
        if let Some(stanza) = unsent {
            crate::router::route(server, stanza).await;
        }
    }
}
