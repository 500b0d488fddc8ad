//! The bridge between Bayeux channels and XMPP pub/sub: channel
//! `/pubsub/<node>` is pub/sub node `<node>` on `pubsub.<domain>`.
//!
//! Events of a node reach this node's Bayeux subscribers through one
//! [`crate::pubsub::Watch`] per channel (the pub/sub service routes them
//! here from whichever cluster node published). A Bayeux publish becomes a
//! pub/sub item whose payload is the message's `data` as XEP-0335 JSON
//! (`payload.rs` maps data and payloads). Only names and identities are
//! decided here; rights and storage are the pub/sub service's.

use starling_core::jid::BareJid;

use super::clients::Identity;
use super::message::BayeuxError;
use crate::pubsub::{Actor, PubSubError};

const PREFIX: &str = "/pubsub/";

/// The pub/sub node a channel stands for (`None`: not a bridged channel).
pub(crate) fn node_of(channel: &str) -> Option<&str> {
    channel.strip_prefix(PREFIX).filter(|node| !node.is_empty())
}

pub(crate) fn channel_of(node: &str) -> String {
    format!("{PREFIX}{node}")
}

pub(crate) fn actor(identity: &Identity) -> Actor {
    match identity {
        Identity::User(jid) => match BareJid::new(jid) {
            Ok(jid) => Actor::User(jid),
            // Identities come from accounts we authenticated; never reached.
            Err(_) => Actor::Anonymous,
        },
        Identity::Anonymous => Actor::Anonymous,
    }
}

/// A pub/sub refusal as a Bayeux error on `channel`.
pub(crate) fn error_of(channel: &str, error: &PubSubError) -> BayeuxError {
    let code = match error.condition() {
        "forbidden" | "not-authorized" | "registration-required" => 403,
        "item-not-found" => 404,
        "bad-request" | "not-acceptable" | "policy-violation" | "jid-malformed" => 400,
        "conflict" => 409,
        "not-allowed" | "feature-not-implemented" => 405,
        _ => 500,
    };
    BayeuxError::with_arg(code, channel, error.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_to_nodes() {
        assert_eq!(node_of("/pubsub/news"), Some("news"));
        assert_eq!(node_of("/pubsub/a/b"), Some("a/b"));
        assert_eq!(node_of("/pubsub/"), None);
        assert_eq!(node_of("/chat/news"), None);
        assert_eq!(channel_of("news"), "/pubsub/news");
    }
}
