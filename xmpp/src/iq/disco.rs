//! XEP-0030 service discovery for the server and for accounts.

use starling_core::xml::{Element, ns};

use crate::router::message;
use crate::server::Server;
use crate::stanza::{Condition, Stanza, StanzaError};

/// Features the server itself answers for.
fn server_features(server: &Server) -> Vec<&'static str> {
    let mut features = vec![
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::VERSION,
        ns::OFFLINE,
        "urn:xmpp:delay",
    ];
    if server.config.c2s.registration {
        features.push(ns::REGISTER);
    }
    features.sort_unstable();
    features
}

fn query(namespace: &'static str, request: &Element) -> Element {
    let mut query = Element::new("query", namespace);
    if let Some(node) = request.attr("node") {
        query.set_attr("node", node);
    }
    query
}

fn feature(var: &str) -> Element {
    Element::new("feature", ns::DISCO_INFO).with_attr("var", var)
}

fn no_such_node() -> StanzaError {
    StanzaError::new(Condition::ItemNotFound).with_text("No such disco node")
}

pub fn server_info(server: &Server, request: &Element) -> Result<Element, StanzaError> {
    if request.attr("node").is_some() {
        return Err(no_such_node());
    }
    let mut info = query(ns::DISCO_INFO, request).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "server")
            .with_attr("type", "im")
            .with_attr("name", "Starling"),
    );
    for var in server_features(server) {
        info.push_child(feature(var));
    }
    Ok(info)
}

pub fn server_items(server: &Server, request: &Element) -> Result<Element, StanzaError> {
    if request.attr("node").is_some() {
        return Err(no_such_node());
    }
    // XEP-0060 5.1: the pub/sub service is found among the server's items.
    Ok(query(ns::DISCO_ITEMS, request).with_child(
        Element::new("item", ns::DISCO_ITEMS)
            .with_attr("jid", server.pubsub.service())
            .with_attr("name", "Publish-Subscribe"),
    ))
}

/// Errors unless the iq's bare-JID target is an account here.
pub async fn account_exists(server: &Server, stanza: &Stanza) -> Result<(), StanzaError> {
    let Some(to) = &stanza.to else {
        return Err(StanzaError::new(Condition::ServiceUnavailable));
    };
    match message::account_exists(server, &to.to_bare()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(StanzaError::new(Condition::ServiceUnavailable).with_text("No such user")),
        Err(()) => Err(StanzaError::new(Condition::InternalServerError)),
    }
}

pub async fn account_info(server: &Server, stanza: &Stanza) -> Result<Element, StanzaError> {
    account_exists(server, stanza).await?;
    let request = stanza
        .payload()
        .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
    if request.attr("node").is_some() {
        return Err(no_such_node());
    }
    Ok(query(ns::DISCO_INFO, request)
        .with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "account")
                .with_attr("type", "registered"),
        )
        .with_child(feature(ns::DISCO_INFO))
        .with_child(feature(ns::DISCO_ITEMS)))
}

pub async fn account_items(server: &Server, stanza: &Stanza) -> Result<Element, StanzaError> {
    account_exists(server, stanza).await?;
    let request = stanza
        .payload()
        .ok_or_else(|| StanzaError::new(Condition::BadRequest))?;
    if request.attr("node").is_some() {
        return Err(no_such_node());
    }
    Ok(query(ns::DISCO_ITEMS, request))
}
