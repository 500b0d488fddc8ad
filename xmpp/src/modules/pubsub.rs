//! The pub/sub module: XEP-0060 on `pubsub.<domain>`, listed among the
//! server's disco items. The engine (`crate::pubsub`) is shared with the
//! CometD bridge; this module is its XMPP face on the router.

use starling_core::config::Config;
use starling_core::jid::Jid;

use super::{Disco, Module, ModuleConfigError, Options, Registration};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::bounce;
use crate::server::Server;
use crate::stanza::{Condition, Stanza, StanzaError};

pub struct PubSubModule {
    /// `pubsub.<domain>`, the domain prepared as the server prepares it.
    host: String,
}

impl PubSubModule {
    pub fn new(config: &Config, options: Options) -> Result<PubSubModule, ModuleConfigError> {
        // The service's settings stay under `[pubsub]`-free defaults and
        // `[cometd]`; nothing to read here yet.
        options.none()?;
        let domain = Jid::new(&config.server.domain)
            .map(|jid| jid.domain().to_string())
            .unwrap_or_else(|_| config.server.domain.clone());
        Ok(PubSubModule {
            host: format!("pubsub.{domain}"),
        })
    }
}

impl Module for PubSubModule {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    fn registration(&self) -> Registration {
        Registration {
            hosts: vec![self.host.clone()],
            // XEP-0060 5.1: the service is found among the server's items.
            server_disco: vec![Disco::Item {
                jid: self.host.clone(),
                name: "Publish-Subscribe",
            }],
            ..Registration::default()
        }
    }

    fn host_stanza<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        _returned: bool,
    ) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let addressed_to_service = stanza
                .to
                .as_ref()
                .is_some_and(|to| to.node().is_none() && to.resource().is_none());
            if !addressed_to_service {
                let error = StanzaError::new(Condition::ServiceUnavailable)
                    .with_text("The pub/sub service has no entities of its own");
                return bounce(server, &stanza, error).await;
            }
            crate::pubsub::iq::handle(server, stanza).await
        })
    }
}
