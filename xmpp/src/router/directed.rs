//! RFC 6121 4.6.2 / 8.5: directed presence (available, unavailable, error)
//! goes to the full JID if it is connected, to every available resource
//! for a bare JID, else nowhere. Subscriptions and probes never get here:
//! the presence module takes them in its inbound hook.

use starling_core::cluster::StanzaKind;
use starling_core::jid::Jid;

use super::resources::{self, Target, send_onward};
use super::{Routed, count};
use crate::metrics::Outcome;
use crate::server::Server;
use crate::stanza::Stanza;

pub(super) async fn deliver(server: &Server, stanza: Stanza, to: Jid) -> Routed {
    let targets: Vec<Target> = match to.try_as_full() {
        Ok(full) => resources::locate(server, full).await.into_iter().collect(),
        Err(bare) => resources::resources(server, bare)
            .into_iter()
            .filter(|candidate| candidate.available)
            .map(|candidate| candidate.target)
            .collect(),
    };
    let mut delivered = false;
    for target in &targets {
        let element = stanza.element.clone();
        delivered |=
            send_onward(server, target, element, StanzaKind::Presence, stanza.hops).is_ok();
    }
    count(
        server,
        if delivered {
            Outcome::Delivered
        } else {
            Outcome::Discarded
        },
    )
}
