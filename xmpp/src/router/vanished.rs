//! The one path for a stanza whose session vanished between the routing
//! decision and the delivery: a member sent it to a session that is gone
//! here, a link died before the peer acknowledged it, or a closing session
//! never wrote it (RFC 6121 8.5.3.2.1 rules).

use starling_core::cluster::StanzaKind;

use super::{Routed, bounce, count, route};
use crate::metrics::Outcome;
use crate::server::Server;
use crate::stanza::{Condition, IqType, Stanza, StanzaError};

/// A message goes to another resource or the offline store, addressed to
/// the bare JID so it never chases the vanished full JID from member to
/// member (its hop count still bounds the crossings); a request is
/// answered with an error; anything else is dropped.
pub async fn route_again(server: &Server, mut stanza: Stanza) -> Routed {
    match stanza.kind {
        StanzaKind::Message => {
            if let Some(to) = stanza.to.clone() {
                stanza.set_to(to.to_bare().into());
            }
            route(server, stanza).await
        }
        StanzaKind::Iq if matches!(stanza.iq_type(), Some(IqType::Get | IqType::Set)) => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The recipient is not connected");
            bounce(server, &stanza, error).await
        }
        _ => count(server, Outcome::Discarded),
    }
}
