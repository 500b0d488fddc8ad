//! XEP-0030 service discovery for the server and for accounts. The answers
//! are assembled from what every enabled module registered (its features,
//! identities and items), never listed by hand.

use starling_core::xml::{Element, ns};

use super::{
    Addressee, Disco as Entry, IqRequest, IqRoute, Module, ModuleConfigError, Options, Registration,
};
use crate::BoxFuture;
use crate::router::Routed;
use crate::router::iq::answer;
use crate::router::message;
use crate::server::Server;
use crate::stanza::{Condition, StanzaError};

pub struct Disco;

impl Disco {
    pub fn new(options: Options) -> Result<Disco, ModuleConfigError> {
        options.none()?;
        Ok(Disco)
    }
}

impl Module for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn registration(&self) -> Registration {
        let both = |entry: Entry| [entry.clone(), entry];
        let [server_info, account_info] = both(Entry::Feature(ns::DISCO_INFO));
        let [server_items, account_items] = both(Entry::Feature(ns::DISCO_ITEMS));
        Registration {
            iqs: vec![
                IqRoute::get(ns::DISCO_INFO, Addressee::Server),
                IqRoute::get(ns::DISCO_ITEMS, Addressee::Server),
                IqRoute::get(ns::DISCO_INFO, Addressee::Account),
                IqRoute::get(ns::DISCO_ITEMS, Addressee::Account),
            ],
            server_disco: vec![
                Entry::Identity {
                    category: "server",
                    ty: "im",
                    name: Some("Starling"),
                },
                server_info,
                server_items,
            ],
            account_disco: vec![
                Entry::Identity {
                    category: "account",
                    ty: "registered",
                    name: None,
                },
                account_info,
                account_items,
            ],
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            let result = respond(server, &request).await;
            answer(server, &request.stanza, result.map(Some)).await
        })
    }
}

async fn respond(server: &Server, request: &IqRequest) -> Result<Element, StanzaError> {
    let query = request
        .stanza
        .payload()
        .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
    if query.attr("node").is_some() {
        return Err(StanzaError::new(Condition::ItemNotFound).with_text("No such disco node"));
    }
    let entries = match &request.account {
        None => server.modules.server_disco(),
        Some(account) => {
            match message::account_exists(server, account).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(
                        StanzaError::new(Condition::ServiceUnavailable).with_text("No such user")
                    );
                }
                Err(()) => return Err(StanzaError::new(Condition::InternalServerError)),
            }
            server.modules.account_disco()
        }
    };
    let info = query.ns() == ns::DISCO_INFO;
    let mut answer = Element::new(
        "query",
        if info {
            ns::DISCO_INFO
        } else {
            ns::DISCO_ITEMS
        },
    );
    let mut features = Vec::new();
    for entry in entries {
        match entry {
            Entry::Identity { category, ty, name } if info => {
                let mut identity = Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", *category)
                    .with_attr("type", *ty);
                if let Some(name) = name {
                    identity.set_attr("name", *name);
                }
                answer.push_child(identity);
            }
            Entry::Feature(var) if info => features.push(*var),
            Entry::Item { jid, name } if !info => answer.push_child(
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", jid.as_str())
                    .with_attr("name", *name),
            ),
            _ => {}
        }
    }
    // Sorted and once each, as XEP-0115 hashing expects of a client anyway.
    features.sort_unstable();
    features.dedup();
    for var in features {
        answer.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", var));
    }
    if let (false, Some(account)) = (info, &request.account) {
        let requester = request
            .stanza
            .from
            .as_ref()
            .map(|from| from.to_bare())
            .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
        let items = server
            .modules
            .account_items(server, account, &requester)
            .await
            .map_err(|error| {
                tracing::error!(%account, %error, "listing an account's disco items failed");
                StanzaError::new(Condition::InternalServerError)
            })?;
        for item in items {
            answer.push_child(item);
        }
    }
    Ok(answer)
}
