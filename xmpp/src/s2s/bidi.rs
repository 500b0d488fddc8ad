//! XEP-0288 bidirectional server streams, the receiving side: an incoming
//! stream whose peer sent `<bidi/>` carries this member's stanzas for each
//! pair (our domain, the peer's domain) it authenticates, instead of a
//! stream of our own. It takes the pair's link queue (`outbound.rs`), even
//! from a link still dialing, and writes it the way an outgoing stream
//! does: with barriers, keeping each stanza until the peer confirmed it.
//! When the stream ends, the links are given back: what was not confirmed
//! and what they hold goes out again on a new stream.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use tokio::time::sleep_until;

use super::outbound::{self, Confirming, Ended, Link, Pair, Receivers};
use super::streams::StreamStats;
use super::wire::Wire;
use crate::server::Server;
use crate::stanza::Stanza;

/// The stream feature a receiving server offers.
pub(crate) const NS_FEATURE: &str = "urn:xmpp:features:bidi";
/// The element the initiating server sends to ask for it.
pub(crate) const NS: &str = "urn:xmpp:bidi";

/// One link an incoming stream carries.
struct Carrying {
    pair: Pair,
    link: Arc<Link>,
    receivers: Receivers,
    stream: Confirming,
    /// How this link's carrying ended, once it did.
    ended: Option<Ended>,
}

/// The links an incoming stream carries.
#[derive(Default)]
pub(super) struct Carried {
    links: Vec<Carrying>,
}

/// Work for one carried link (its index in [`Carried`]).
pub(super) enum Work {
    Send(usize, Stanza),
    Reply(usize, Stanza),
    Answer(usize, u64),
    Due(usize),
}

impl Carried {
    /// Takes the queue of `pair`, unless a stream already carries it;
    /// what it writes counts on `stats`, the incoming stream's.
    pub(super) fn adopt(
        &mut self,
        server: &Arc<Server>,
        pair: Pair,
        stats: &Arc<StreamStats>,
    ) -> bool {
        if self.links.iter().any(|carrying| carrying.pair == pair) {
            return true;
        }
        let Some((link, receivers)) = server.s2s.adopt(&pair) else {
            tracing::debug!(local = %pair.local, remote = %pair.remote,
                "a stream of our own already carries the pair");
            return false;
        };
        tracing::info!(local = %pair.local, remote = %pair.remote,
            "sending over the incoming bidirectional stream");
        stats.set_bidi();
        let stream = Confirming::new(server.clone(), pair.clone(), link.id(), stats.clone());
        self.links.push(Carrying {
            pair,
            link,
            receivers,
            stream,
            ended: None,
        });
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The next thing a carried link has to do: write a stanza, take the
    /// peer's answer to a barrier, write ours to the peer's, or act on its
    /// deadline; pending while there is none. Cancel-safe.
    pub(super) async fn next(&mut self) -> Work {
        let deadline = self
            .links
            .iter()
            .enumerate()
            .filter_map(|(index, carrying)| Some((carrying.stream.deadline()?, index)))
            .min();
        let links = &mut self.links;
        let ready = poll_fn(|context| {
            for (index, carrying) in links.iter_mut().enumerate() {
                if let Poll::Ready(Some(number)) = carrying.receivers.answered.poll_recv(context) {
                    return Poll::Ready(Work::Answer(index, number));
                }
                if let Poll::Ready(Some(answer)) = carrying.receivers.replying.poll_recv(context) {
                    return Poll::Ready(Work::Reply(index, answer));
                }
                if carrying.stream.room() > 0 {
                    if let Poll::Ready(Some(stanza)) = carrying.receivers.waiting.poll_recv(context)
                    {
                        return Poll::Ready(Work::Send(index, stanza));
                    }
                }
            }
            Poll::Pending
        });
        match deadline {
            Some((at, index)) => tokio::select! {
                work = ready => work,
                () = sleep_until(at) => Work::Due(index),
            },
            None => ready.await,
        }
    }

    /// Does `work` on `wire`; `Err` when the stream must end (it broke,
    /// or the peer confirmed nothing for too long).
    pub(super) async fn work(&mut self, wire: &mut Wire, work: Work) -> Result<(), ()> {
        let (index, result) = match work {
            Work::Send(index, stanza) => {
                let carrying = &mut self.links[index];
                let result = carrying
                    .stream
                    .send(wire, stanza, &mut carrying.receivers.waiting)
                    .await;
                (index, result)
            }
            Work::Reply(index, answer) => {
                (index, self.links[index].stream.reply(wire, answer).await)
            }
            Work::Answer(index, number) => {
                (index, self.links[index].stream.answer(wire, number).await)
            }
            Work::Due(index) => (index, self.links[index].stream.due(wire).await),
        };
        match result {
            Ok(()) => Ok(()),
            Err(ended) => {
                self.links[index].ended = Some(ended);
                Err(())
            }
        }
    }

    /// The node stops: what was written and not confirmed is not sent
    /// again, as on an outgoing stream.
    pub(super) fn shutting_down(&mut self) {
        for carrying in &mut self.links {
            carrying.ended.get_or_insert(Ended::Closed);
        }
    }

    /// Gives every link back: what was not confirmed (unless the peer
    /// confirmed nothing for too long: that bounces) and what the queues
    /// hold are routed again, to new streams.
    pub(super) async fn release(self, server: &Server) {
        for carrying in self.links {
            let ended = carrying.ended.unwrap_or(Ended::Broken);
            outbound::release(
                server,
                carrying.link,
                carrying.receivers,
                carrying.stream,
                ended,
            )
            .await;
        }
    }
}
