//! The XMPP face of the service: iqs to `pubsub.<domain>` parsed into the
//! use cases of [`PubSub`] and their results built back (XEP-0060 5-8),
//! with disco handled in `disco`. Errors keep the XEP's conditions.

use starling_core::jid::{FullJid, Jid};
use starling_core::xml::{Element, ns};

use super::access::Affiliation;
use super::config::NodeConfig;
use super::error::PubSubError;
use super::form::{FormBuilder, Submitted, parse_bool};
use super::subscribe::SUBSCRIBE_OPTIONS;
use super::{Actor, PubSub, disco};
use crate::metrics::Outcome;
use crate::router::Routed;
use crate::router::iq::reply;
use crate::router::{bounce, count};
use crate::server::Server;
use crate::stanza::{Condition, IqType, Stanza, StanzaError};
use crate::storage::{StoredItem, StoredSubscription};

/// A stanza addressed to the service itself.
pub async fn handle(server: &Server, stanza: Stanza) -> Routed {
    match stanza.iq_type() {
        Some(IqType::Get | IqType::Set) => {}
        Some(IqType::Result | IqType::Error) => return count(server, Outcome::Handled),
        None if stanza.is_error() => return count(server, Outcome::Discarded),
        // Presence to the service means nothing to it (no presence-based delivery).
        None if stanza.presence_type().is_some() => return count(server, Outcome::Discarded),
        None => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The pub/sub service takes no messages");
            return bounce(server, &stanza, error).await;
        }
    }
    let answer = match requester(server, &stanza) {
        Ok(requester) => answer(&server.pubsub, &requester, &stanza).await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(payload) => reply(server, &stanza, payload).await,
        Err(error) => bounce(server, &stanza, error.to_stanza_error()).await,
    }
}

/// Users act on the service: this server's, and those of other servers
/// (their stanzas arrive over federation, `from` checked against the
/// stream's authenticated domains). Only this server's users create
/// nodes; for the rest, remote users are subject to the same affiliations
/// and access models as local ones.
fn requester(server: &Server, stanza: &Stanza) -> Result<FullJid, PubSubError> {
    let Some(from) = &stanza.from else {
        return Err(PubSubError::forbidden().with_text("Only users may use this service"));
    };
    let local = server.is_local_user(from);
    let remote = from.node().is_some() && !server.serves_domain(from.domain().as_str());
    if !local && !remote {
        return Err(PubSubError::forbidden().with_text("Only users may use this service"));
    }
    let full = from
        .try_as_full()
        .map_err(|_| PubSubError::new(Condition::NotAuthorized))?;
    if !local && creates(stanza) {
        return Err(
            PubSubError::forbidden().with_text("Only users of this server create nodes here")
        );
    }
    Ok(full.clone())
}

/// A `<pubsub><create/>` request.
fn creates(stanza: &Stanza) -> bool {
    stanza
        .payload()
        .filter(|payload| payload.is("pubsub", ns::PUBSUB))
        .and_then(|payload| payload.children().next())
        .is_some_and(|first| first.is("create", ns::PUBSUB))
}

async fn answer(
    pubsub: &PubSub,
    requester: &FullJid,
    stanza: &Stanza,
) -> Result<Option<Element>, PubSubError> {
    let Some(payload) = stanza.payload() else {
        return Err(PubSubError::new(Condition::BadRequest));
    };
    let set = stanza.iq_type() == Some(IqType::Set);
    match (payload.ns(), payload.name()) {
        (ns::DISCO_INFO, "query") if !set => disco::info(pubsub, payload).await.map(Some),
        (ns::DISCO_ITEMS, "query") if !set => {
            disco::items(pubsub, requester, payload).await.map(Some)
        }
        (ns::PUBSUB, "pubsub") => user_request(pubsub, requester, payload, set).await,
        (ns::PUBSUB_OWNER, "pubsub") => owner_request(pubsub, requester, payload, set).await,
        _ => Err(
            PubSubError::new(Condition::ServiceUnavailable).with_text(format!(
                "No {{{}}}{} here",
                payload.ns(),
                payload.name()
            )),
        ),
    }
}

/// The `node` attribute, required.
fn node_of(element: &Element) -> Result<&str, PubSubError> {
    match element.attr("node") {
        Some(node) if !node.is_empty() => Ok(node),
        _ => Err(PubSubError::bad_request("nodeid-required")),
    }
}

/// A form inside `parent` (`<configure/>`, `<publish-options/>`, `<options/>`).
fn form_in(parent: Option<&Element>) -> Option<Submitted> {
    parent
        .and_then(|parent| parent.child("x", ns::XDATA))
        .map(Submitted::parse)
}

fn pubsub(child: Element) -> Element {
    Element::new("pubsub", ns::PUBSUB).with_child(child)
}

/// The requester's own `<subscriptions/>` or `<affiliations/>`, for the
/// node the request names, if it names one.
fn own_list(
    name: &'static str,
    request: &Element,
    children: impl Iterator<Item = Element>,
) -> Element {
    let mut list = Element::new(name, ns::PUBSUB);
    if let Some(node) = request.attr("node") {
        list.set_attr("node", node);
    }
    for child in children {
        list.push_child(child);
    }
    list
}

async fn user_request(
    pubsub_service: &PubSub,
    requester: &FullJid,
    request: &Element,
    set: bool,
) -> Result<Option<Element>, PubSubError> {
    let actor = Actor::User(requester.to_bare());
    let mut children = request.children();
    let Some(first) = children.next() else {
        return Err(PubSubError::new(Condition::BadRequest));
    };
    let rest: Vec<&Element> = children.collect();
    let sibling = |name: &str| rest.iter().copied().find(|c| c.is(name, ns::PUBSUB));
    match (first.name(), set) {
        ("create", true) => {
            let form = form_in(sibling("configure"));
            let named = first.attr("node");
            let node = pubsub_service
                .create(&requester.to_bare(), named, form.as_ref())
                .await?;
            Ok(named
                .is_none()
                .then(|| pubsub(Element::new("create", ns::PUBSUB).with_attr("node", node))))
        }
        ("publish", true) => {
            let node = node_of(first)?;
            let mut items = first.children().filter(|c| c.is("item", ns::PUBSUB));
            let Some(item) = items.next() else {
                return Err(PubSubError::bad_request("item-required"));
            };
            if items.next().is_some() {
                return Err(PubSubError::bad_request("invalid-payload")
                    .with_text("Publish one item at a time"));
            }
            let mut payloads = item.children();
            let payload = payloads.next().cloned();
            if payloads.next().is_some() {
                return Err(PubSubError::bad_request("invalid-payload"));
            }
            let options = form_in(sibling("publish-options"));
            let item_id = item.attr("id").map(str::to_owned);
            let id = pubsub_service
                .publish_item(&actor, node, item_id, payload, options.as_ref(), true)
                .await?;
            Ok(Some(pubsub(
                Element::new("publish", ns::PUBSUB)
                    .with_attr("node", node)
                    .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id)),
            )))
        }
        ("retract", true) => {
            let node = node_of(first)?;
            let Some(item_id) = first
                .child("item", ns::PUBSUB)
                .and_then(|item| item.attr("id"))
            else {
                return Err(PubSubError::bad_request("item-required"));
            };
            let notify = first.attr("notify").and_then(parse_bool).unwrap_or(false);
            pubsub_service
                .retract(&actor, node, item_id, notify)
                .await?;
            Ok(None)
        }
        ("subscribe", true) => {
            let node = node_of(first)?;
            let jid = jid_attr(first)?;
            let subscription = pubsub_service.subscribe(requester, node, &jid).await?;
            if let Some(form) = form_in(sibling("options")) {
                let mut updated = subscription.clone();
                apply_options(&mut updated, &form)?;
                pubsub_service.set_options(&updated).await?;
            }
            Ok(Some(pubsub(subscription_element(&subscription, true))))
        }
        ("unsubscribe", true) => {
            let node = node_of(first)?;
            let jid = jid_attr(first)?;
            pubsub_service
                .unsubscribe(requester, node, &jid, first.attr("subid"))
                .await?;
            Ok(None)
        }
        ("options", _) => {
            let node = node_of(first)?;
            let jid = first
                .attr("jid")
                .ok_or_else(|| PubSubError::bad_request("jid-required"))?;
            let jid = Jid::new(jid).map_err(|_| PubSubError::bad_request("invalid-jid"))?;
            let mut subscription = pubsub_service
                .subscription_for_options(requester, node, &jid, first.attr("subid"))
                .await?;
            if set {
                let form =
                    form_in(Some(first)).ok_or_else(|| PubSubError::new(Condition::BadRequest))?;
                apply_options(&mut subscription, &form)?;
                pubsub_service.set_options(&subscription).await?;
                return Ok(None);
            }
            Ok(Some(pubsub(
                Element::new("options", ns::PUBSUB)
                    .with_attr("node", node)
                    .with_attr("jid", jid.as_str())
                    .with_attr("subid", subscription.subid.as_str())
                    .with_child(options_form(subscription.deliver)),
            )))
        }
        ("default", false) => Ok(Some(pubsub(
            Element::new("default", ns::PUBSUB).with_child(options_form(true)),
        ))),
        ("items", false) => {
            let node = node_of(first)?;
            let max = match first.attr("max_items") {
                Some(max) => Some(max.parse::<u64>().map_err(|_| {
                    PubSubError::new(Condition::BadRequest).with_text("max_items is not a number")
                })?),
                None => None,
            };
            let ids: Vec<String> = first
                .children()
                .filter(|c| c.is("item", ns::PUBSUB))
                .filter_map(|item| item.attr("id").map(str::to_owned))
                .collect();
            let items = pubsub_service.retrieve(&actor, node, max, &ids).await?;
            let mut list = Element::new("items", ns::PUBSUB).with_attr("node", node);
            for item in items {
                list.push_child(item_element(&item));
            }
            Ok(Some(pubsub(list)))
        }
        ("subscriptions", false) => {
            let subscriptions = pubsub_service
                .own_subscriptions(&requester.to_bare(), first.attr("node"))
                .await?;
            let children = subscriptions
                .iter()
                .map(|subscription| subscription_element(subscription, true));
            Ok(Some(pubsub(own_list("subscriptions", first, children))))
        }
        ("affiliations", false) => {
            let affiliations = pubsub_service
                .own_affiliations(&requester.to_bare(), first.attr("node"))
                .await?;
            let children = affiliations.into_iter().map(|(node, affiliation)| {
                Element::new("affiliation", ns::PUBSUB)
                    .with_attr("node", node)
                    .with_attr("affiliation", affiliation)
            });
            Ok(Some(pubsub(own_list("affiliations", first, children))))
        }
        (name, _) => Err(unknown_request(name)),
    }
}

async fn owner_request(
    pubsub_service: &PubSub,
    requester: &FullJid,
    request: &Element,
    set: bool,
) -> Result<Option<Element>, PubSubError> {
    let actor = Actor::User(requester.to_bare());
    let Some(first) = request.children().next() else {
        return Err(PubSubError::new(Condition::BadRequest));
    };
    let owner = |child: Element| Element::new("pubsub", ns::PUBSUB_OWNER).with_child(child);
    match (first.name(), set) {
        ("configure", false) => {
            let node = node_of(first)?;
            let config = pubsub_service.config_of(&actor, node).await?;
            Ok(Some(owner(
                Element::new("configure", ns::PUBSUB_OWNER)
                    .with_attr("node", node)
                    .with_child(config.to_form("form")),
            )))
        }
        ("configure", true) => {
            let node = node_of(first)?;
            let form = form_in(Some(first))
                .ok_or_else(|| PubSubError::new(Condition::BadRequest).with_text("No form"))?;
            pubsub_service.configure(&actor, node, &form).await?;
            Ok(None)
        }
        ("default", false) => Ok(Some(owner(
            Element::new("default", ns::PUBSUB_OWNER)
                .with_child(NodeConfig::default().to_form("form")),
        ))),
        ("delete", true) => {
            pubsub_service.delete(&actor, node_of(first)?).await?;
            Ok(None)
        }
        ("purge", true) => {
            pubsub_service.purge(&actor, node_of(first)?).await?;
            Ok(None)
        }
        ("subscriptions", false) => {
            let node = node_of(first)?;
            let mut list = Element::new("subscriptions", ns::PUBSUB_OWNER).with_attr("node", node);
            for subscription in pubsub_service.node_subscriptions(&actor, node).await? {
                list.push_child(
                    Element::new("subscription", ns::PUBSUB_OWNER)
                        .with_attr("jid", subscription.jid.as_str())
                        .with_attr("subscription", subscription.state.as_str())
                        .with_attr("subid", subscription.subid.as_str()),
                );
            }
            Ok(Some(owner(list)))
        }
        ("subscriptions", true) => {
            let node = node_of(first)?;
            let changes = owner_entries(first, "subscription", |entry| {
                let state = entry
                    .attr("subscription")
                    .ok_or_else(|| PubSubError::new(Condition::BadRequest))?;
                Ok((jid_attr(entry)?, state.to_owned()))
            })?;
            pubsub_service
                .set_subscriptions(&actor, node, &changes)
                .await?;
            Ok(None)
        }
        ("affiliations", false) => {
            let node = node_of(first)?;
            let mut list = Element::new("affiliations", ns::PUBSUB_OWNER).with_attr("node", node);
            for (jid, affiliation) in pubsub_service.node_affiliations(&actor, node).await? {
                list.push_child(
                    Element::new("affiliation", ns::PUBSUB_OWNER)
                        .with_attr("jid", jid)
                        .with_attr("affiliation", affiliation),
                );
            }
            Ok(Some(owner(list)))
        }
        ("affiliations", true) => {
            let node = node_of(first)?;
            let changes = owner_entries(first, "affiliation", |entry| {
                let jid = jid_attr(entry)?.to_bare();
                let affiliation = entry
                    .attr("affiliation")
                    .and_then(Affiliation::parse)
                    .ok_or_else(|| {
                        PubSubError::new(Condition::BadRequest).with_text("Unknown affiliation")
                    })?;
                Ok((jid, affiliation))
            })?;
            pubsub_service
                .set_affiliations(&actor, node, &changes)
                .await?;
            Ok(None)
        }
        (name, _) => Err(unknown_request(name)),
    }
}

/// Each `<name/>` entry of an owner's change request, read by `read`;
/// the first that does not read is the error.
fn owner_entries<T>(
    request: &Element,
    name: &str,
    read: impl Fn(&Element) -> Result<T, PubSubError>,
) -> Result<Vec<T>, PubSubError> {
    request
        .children()
        .filter(|c| c.is(name, ns::PUBSUB_OWNER))
        .map(read)
        .collect()
}

fn unknown_request(name: &str) -> PubSubError {
    PubSubError::new(Condition::FeatureNotImplemented)
        .with_text(format!("Unsupported pub/sub request <{name}/>"))
}

/// The `jid` attribute, required and valid (`<bad-request/>` + `<invalid-jid/>`).
fn jid_attr(element: &Element) -> Result<Jid, PubSubError> {
    element
        .attr("jid")
        .and_then(|jid| Jid::new(jid).ok())
        .ok_or_else(|| PubSubError::bad_request("invalid-jid"))
}

fn subscription_element(subscription: &StoredSubscription, with_node: bool) -> Element {
    let mut element = Element::new("subscription", ns::PUBSUB)
        .with_attr("jid", subscription.jid.as_str())
        .with_attr("subscription", subscription.state.as_str())
        .with_attr("subid", subscription.subid.as_str());
    if with_node {
        element.set_attr("node", subscription.node.as_str());
    }
    element
}

fn item_element(item: &StoredItem) -> Element {
    let mut element = Element::new("item", ns::PUBSUB).with_attr("id", item.item_id.as_str());
    if !item.publisher.is_empty() {
        element.set_attr("publisher", item.publisher.as_str());
    }
    match crate::stream::parse_element(item.payload.as_bytes()) {
        Ok(payload) => element.push_child(payload),
        Err(error) => tracing::error!(item = item.item_id, %error, "stored item unreadable"),
    }
    element
}

/// XEP-0060 6.3: the subscription options form; `pubsub#deliver` is the
/// option this service keeps.
fn options_form(deliver: bool) -> Element {
    let mut form = FormBuilder::new("form", SUBSCRIBE_OPTIONS);
    form.boolean("pubsub#deliver", "Enable delivery?", deliver);
    form.build()
}

fn apply_options(
    subscription: &mut StoredSubscription,
    form: &Submitted,
) -> Result<(), PubSubError> {
    if form
        .form_type
        .as_deref()
        .is_some_and(|form_type| form_type != SUBSCRIBE_OPTIONS)
    {
        return Err(PubSubError::bad_request("invalid-options"));
    }
    let mut deliver = subscription.deliver;
    for (var, values) in &form.fields {
        let value = values.first().map(String::as_str).unwrap_or("");
        match var.as_str() {
            "pubsub#deliver" => {
                deliver =
                    parse_bool(value).ok_or_else(|| PubSubError::bad_request("invalid-options"))?
            }
            _ => return Err(PubSubError::bad_request("invalid-options")),
        }
    }
    subscription.deliver = deliver;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_accept_deliver_only() {
        let mut subscription = StoredSubscription {
            node: "n".into(),
            jid: "a@x".into(),
            subid: "s".into(),
            state: "subscribed".into(),
            deliver: true,
        };
        let mut form = Submitted::parse(&options_form(false));
        apply_options(&mut subscription, &form).unwrap();
        assert!(!subscription.deliver);
        form.fields.insert("pubsub#digest".into(), vec!["1".into()]);
        let error = apply_options(&mut subscription, &form).unwrap_err();
        assert_eq!(error.pubsub, Some("invalid-options"));
    }

    #[test]
    fn node_is_required() {
        let element = Element::new("items", ns::PUBSUB);
        assert_eq!(
            node_of(&element).unwrap_err().pubsub,
            Some("nodeid-required")
        );
        let element = Element::new("subscribe", ns::PUBSUB).with_attr("jid", "a@@b");
        assert_eq!(jid_attr(&element).unwrap_err().pubsub, Some("invalid-jid"));
    }
}
