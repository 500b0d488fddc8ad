//! PEP requests to an account's bare JID (XEP-0163 with XEP-0060's
//! syntax): the owner publishes and manages; contacts read as the node's
//! access model allows. Errors keep XEP-0060's conditions.

use std::sync::atomic::Ordering;

use starling_core::jid::BareJid;
use starling_core::xml::{Element, ns};

use super::Pep;
use super::notify::{self, Event};
use crate::modules::IqRequest;
use crate::pubsub::PubSubError;
use crate::pubsub::config::{AccessModel, MAX_ITEMS_LIMIT, NodeConfig, SendLast};
use crate::pubsub::form::Submitted;
use crate::router::Routed;
use crate::router::bounce;
use crate::router::iq::reply;
use crate::server::Server;
use crate::stanza::{Condition, IqType};
use crate::storage::PepItem;
use crate::util::time::now_ms;

/// Longest node name accepted.
const MAX_NODE_NAME: usize = 1024;

pub(super) async fn handle(pep: &Pep, server: &Server, request: IqRequest) -> Routed {
    match answer(pep, server, &request).await {
        Ok(payload) => reply(server, &request.stanza, payload).await,
        Err(error) => bounce(server, &request.stanza, error.to_stanza_error()).await,
    }
}

/// Who asks, about whose service.
struct Parties {
    owner: BareJid,
    requester: BareJid,
}

impl Parties {
    fn is_owner(&self) -> bool {
        self.owner == self.requester
    }

    fn must_own(&self) -> Result<(), PubSubError> {
        if self.is_owner() {
            Ok(())
        } else {
            Err(PubSubError::forbidden()
                .with_text("Only the account's owner may change its PEP nodes"))
        }
    }

    fn owner_name(&self) -> &str {
        self.owner
            .node()
            .map(|node| node.as_str())
            .unwrap_or_default()
    }
}

/// The node configuration of a PEP node created without one: contacts
/// with a presence subscription read it, the newest item is kept and sent
/// to them when they come online.
pub(super) fn default_config() -> NodeConfig {
    NodeConfig {
        access_model: AccessModel::Presence,
        max_items: 1,
        send_last_published_item: SendLast::OnSubAndPresence,
        ..NodeConfig::default()
    }
}

async fn answer(
    pep: &Pep,
    server: &Server,
    request: &IqRequest,
) -> Result<Option<Element>, PubSubError> {
    let (Some(owner), Some(from)) = (request.account.clone(), request.from()) else {
        return Err(PubSubError::new(Condition::BadRequest));
    };
    // Users of other servers (over federation) are contacts like local
    // ones: they read what the access model lets them, and only the owner
    // changes anything.
    let user_elsewhere = from.node().is_some() && !server.serves_domain(from.domain().as_str());
    if !server.is_local_user(&from.to_bare().into()) && !user_elsewhere {
        return Err(PubSubError::forbidden().with_text("Only users may use PEP here"));
    }
    let parties = Parties {
        owner,
        requester: from.to_bare(),
    };
    let stanza = &request.stanza;
    let Some(payload) = stanza.payload() else {
        return Err(PubSubError::new(Condition::BadRequest));
    };
    let set = stanza.iq_type() == Some(IqType::Set);
    let mut children = payload.children();
    let Some(first) = children.next() else {
        return Err(PubSubError::new(Condition::BadRequest));
    };
    let rest: Vec<&Element> = children.collect();
    let sibling = |name: &str| rest.iter().copied().find(|c| c.is(name, payload.ns()));
    match (payload.ns(), first.name(), set) {
        (ns::PUBSUB, "publish", true) => {
            publish(
                pep,
                server,
                &parties,
                first,
                form_in(sibling("publish-options")),
            )
            .await
        }
        (ns::PUBSUB, "items", false) => items(server, &parties, first).await,
        (ns::PUBSUB, "retract", true) => retract(pep, server, &parties, first).await,
        (ns::PUBSUB, "create", true) => {
            create(pep, server, &parties, first, form_in(sibling("configure"))).await
        }
        (ns::PUBSUB_OWNER, "configure", false) => {
            parties.must_own()?;
            let node = node_of(first)?;
            let config = node_config(server, &parties, node).await?;
            Ok(Some(
                Element::new("pubsub", ns::PUBSUB_OWNER).with_child(
                    Element::new("configure", ns::PUBSUB_OWNER)
                        .with_attr("node", node)
                        .with_child(config.to_form("form")),
                ),
            ))
        }
        (ns::PUBSUB_OWNER, "configure", true) => configure(server, &parties, first).await,
        (ns::PUBSUB_OWNER, "default", false) => Ok(Some(
            Element::new("pubsub", ns::PUBSUB_OWNER).with_child(
                Element::new("default", ns::PUBSUB_OWNER)
                    .with_child(default_config().to_form("form")),
            ),
        )),
        (ns::PUBSUB_OWNER, "delete", true) => {
            remove(pep, server, &parties, first, NodeRemoval::Delete).await
        }
        (ns::PUBSUB_OWNER, "purge", true) => {
            remove(pep, server, &parties, first, NodeRemoval::Purge).await
        }
        (ns::PUBSUB, "subscribe" | "unsubscribe" | "options", _) => {
            // Contacts get notifications through presence and capabilities.
            Err(PubSubError::unsupported("subscribe"))
        }
        (_, name, _) => Err(
            PubSubError::new(Condition::FeatureNotImplemented).with_text(format!(
                "PEP does not do <{name}/> as a {}",
                if set { "set" } else { "get" }
            )),
        ),
    }
}

fn node_of(element: &Element) -> Result<&str, PubSubError> {
    match element.attr("node") {
        Some(node) if !node.is_empty() && node.len() <= MAX_NODE_NAME => Ok(node),
        Some(node) if node.len() > MAX_NODE_NAME => Err(PubSubError::new(Condition::NotAcceptable)
            .with_text(format!("Node names are at most {MAX_NODE_NAME} bytes"))),
        _ => Err(PubSubError::bad_request("nodeid-required")),
    }
}

fn form_in(parent: Option<&Element>) -> Option<Submitted> {
    parent
        .and_then(|parent| parent.child("x", ns::XDATA))
        .map(Submitted::parse)
}

fn storage(error: crate::storage::StorageError) -> PubSubError {
    PubSubError::storage(&error)
}

/// The configuration of an existing node.
async fn node_config(
    server: &Server,
    parties: &Parties,
    node: &str,
) -> Result<NodeConfig, PubSubError> {
    let json = server
        .store
        .pep_node(parties.owner_name(), node)
        .await
        .map_err(storage)?
        .ok_or_else(PubSubError::item_not_found)?;
    NodeConfig::from_json(&json).ok_or_else(|| {
        tracing::error!(owner = %parties.owner, node, "a stored PEP node configuration is unreadable");
        PubSubError::new(Condition::InternalServerError)
    })
}

/// XEP-0060 6.5.9 errors: who may read the node's items.
async fn may_read(
    server: &Server,
    parties: &Parties,
    config: &NodeConfig,
) -> Result<(), PubSubError> {
    if parties.is_owner() {
        return Ok(());
    }
    match config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence => {
            let roster = server.rosters.get(&parties.owner).await.map_err(storage)?;
            if roster.is_subscriber(&parties.requester) {
                Ok(())
            } else {
                Err(PubSubError::with(
                    Condition::NotAuthorized,
                    "presence-subscription-required",
                ))
            }
        }
        AccessModel::Whitelist => Err(PubSubError::with(Condition::NotAllowed, "closed-node")),
    }
}

/// XEP-0163 / XEP-0060 5.2: the account's nodes the requester may read,
/// as disco#items (the owner sees them all).
pub(super) async fn readable_nodes(
    server: &Server,
    owner: &BareJid,
    requester: &BareJid,
) -> Result<Vec<Element>, crate::storage::StorageError> {
    let Some(name) = owner.node() else {
        return Ok(Vec::new());
    };
    let nodes = server.store.pep_nodes_with_config(name.as_str()).await?;
    let mut subscriber = None;
    let mut items = Vec::new();
    for (node, json) in nodes {
        let Some(config) = NodeConfig::from_json(&json) else {
            tracing::error!(%owner, node, "a stored PEP node configuration is unreadable; not listed");
            continue;
        };
        let listed = owner == requester
            || match config.access_model {
                AccessModel::Open => true,
                AccessModel::Whitelist => false,
                AccessModel::Presence => match subscriber {
                    Some(known) => known,
                    None => {
                        let roster = server.rosters.get(owner).await?;
                        *subscriber.insert(roster.is_subscriber(requester))
                    }
                },
            };
        if listed {
            items.push(
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", owner.as_str())
                    .with_attr("node", node),
            );
        }
    }
    Ok(items)
}

async fn publish(
    pep: &Pep,
    server: &Server,
    parties: &Parties,
    publish: &Element,
    options: Option<Submitted>,
) -> Result<Option<Element>, PubSubError> {
    parties.must_own()?;
    let node = node_of(publish)?;
    let mut items = publish.children();
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(PubSubError::bad_request("item-required")
            .with_text("A PEP publish carries exactly one <item/>"));
    };
    let mut payloads = item.children();
    let (Some(payload), None) = (payloads.next(), payloads.next()) else {
        return Err(PubSubError::bad_request("invalid-payload")
            .with_text("An item carries exactly one payload element"));
    };
    let serialised = String::from_utf8_lossy(&payload.to_bytes()).into_owned();
    if serialised.len() > pep.config.max_item_bytes {
        return Err(
            PubSubError::with(Condition::NotAcceptable, "payload-too-big").with_text(format!(
                "The payload has {} bytes; this server takes at most {}",
                serialised.len(),
                pep.config.max_item_bytes
            )),
        );
    }
    let config = node_for_publish(pep, server, parties, node, options.as_ref()).await?;
    let item_id = match item.attr("id") {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => generated_id(),
    };
    let keep = config.stored_items().unwrap_or(0).min(MAX_ITEMS_LIMIT);
    if keep > 0 {
        let stored = PepItem {
            item_id: item_id.clone(),
            payload: serialised,
            stamp_ms: now_ms(),
        };
        server
            .store
            .publish_pep_item(parties.owner_name(), node, &stored, keep)
            .await
            .map_err(storage)?;
    }
    pep.counters.published.fetch_add(1, Ordering::Relaxed);
    let event = Event::Published {
        item_id: item_id.clone(),
        payload: payload.clone(),
    };
    notified(
        pep,
        notify::event(server, &pep.remote, &parties.owner, node, &config, &event).await,
    );
    Ok(Some(
        Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("publish", ns::PUBSUB)
                .with_attr("node", node)
                .with_child(Element::new("item", ns::PUBSUB).with_attr("id", item_id)),
        ),
    ))
}

/// Publishes one item on the owner's own node, as the owner would, with
/// notifications (the XEP-0411 bookmarks conversion).
pub(super) async fn publish_as_owner(
    pep: &Pep,
    server: &Server,
    owner: &BareJid,
    node: &str,
    item_id: &str,
    payload: Element,
    options: Submitted,
) -> Result<(), PubSubError> {
    let parties = Parties {
        owner: owner.clone(),
        requester: owner.clone(),
    };
    let request = Element::new("publish", ns::PUBSUB)
        .with_attr("node", node)
        .with_child(
            Element::new("item", ns::PUBSUB)
                .with_attr("id", item_id)
                .with_child(payload),
        );
    publish(pep, server, &parties, &request, Some(options))
        .await
        .map(drop)
}

/// Retracts one item of the owner's own node, notifying as a client's
/// retract with `notify` would.
pub(super) async fn retract_as_owner(
    pep: &Pep,
    server: &Server,
    owner: &BareJid,
    node: &str,
    item_id: &str,
) -> Result<(), PubSubError> {
    let parties = Parties {
        owner: owner.clone(),
        requester: owner.clone(),
    };
    let request = Element::new("retract", ns::PUBSUB)
        .with_attr("node", node)
        .with_attr("notify", "true")
        .with_child(Element::new("item", ns::PUBSUB).with_attr("id", item_id));
    retract(pep, server, &parties, &request).await.map(drop)
}

fn notified(pep: &Pep, (local, remote): (u64, u64)) {
    pep.counters
        .notifications_local
        .fetch_add(local, Ordering::Relaxed);
    pep.counters
        .notifications_remote
        .fetch_add(remote, Ordering::Relaxed);
}

/// The node a publish goes to: existing (its configuration must match the
/// publish-options, XEP-0060 7.1.5) or created with them (auto-create).
async fn node_for_publish(
    pep: &Pep,
    server: &Server,
    parties: &Parties,
    node: &str,
    options: Option<&Submitted>,
) -> Result<NodeConfig, PubSubError> {
    for _ in 0..2 {
        if let Some(json) = server
            .store
            .pep_node(parties.owner_name(), node)
            .await
            .map_err(storage)?
        {
            let config = NodeConfig::from_json(&json)
                .ok_or_else(|| PubSubError::new(Condition::InternalServerError))?;
            if let Some(options) = options {
                config.check_preconditions(options)?;
            }
            return Ok(config);
        }
        let mut config = default_config();
        if let Some(options) = options {
            config.apply(options)?;
        }
        if create_node(pep, server, parties, node, &config).await? {
            return Ok(config);
        }
        // Created by a concurrent publish: use that one.
    }
    Err(PubSubError::new(Condition::InternalServerError))
}

/// Creates a node; false when one of that name exists already, an error
/// when the owner has too many.
async fn create_node(
    pep: &Pep,
    server: &Server,
    parties: &Parties,
    node: &str,
    config: &NodeConfig,
) -> Result<bool, PubSubError> {
    let owner = parties.owner_name();
    let created = server
        .store
        .create_pep_node(
            owner,
            node,
            &config.to_json(),
            now_ms(),
            pep.config.max_nodes_per_user,
        )
        .await
        .map_err(storage)?;
    if created {
        return Ok(true);
    }
    let exists = server
        .store
        .pep_node(owner, node)
        .await
        .map_err(storage)?
        .is_some();
    if exists {
        Ok(false)
    } else {
        Err(
            PubSubError::new(Condition::ResourceConstraint).with_text(format!(
                "An account has at most {} PEP nodes",
                pep.config.max_nodes_per_user
            )),
        )
    }
}

fn generated_id() -> String {
    let mut random = [0u8; 8];
    rand::fill(&mut random[..]);
    format!("{:x}-{:016x}", now_ms(), u64::from_le_bytes(random))
}

async fn items(
    server: &Server,
    parties: &Parties,
    items: &Element,
) -> Result<Option<Element>, PubSubError> {
    let node = node_of(items)?;
    let config = node_config(server, parties, node).await?;
    may_read(server, parties, &config).await?;
    let max = match items.attr("max_items") {
        None => MAX_ITEMS_LIMIT,
        Some(max) => max.parse::<u64>().map_err(|_| {
            PubSubError::new(Condition::BadRequest).with_text("max_items is not a number")
        })?,
    };
    let ids: Vec<String> = items
        .children()
        .filter(|child| child.is("item", ns::PUBSUB))
        .filter_map(|item| item.attr("id").map(str::to_owned))
        .collect();
    let stored = server
        .store
        .pep_items(parties.owner_name(), node, max, &ids)
        .await
        .map_err(storage)?;
    let mut answer = Element::new("items", ns::PUBSUB).with_attr("node", node);
    for item in stored {
        let Ok(payload) = crate::stream::parse_element(item.payload.as_bytes()) else {
            tracing::error!(owner = %parties.owner, node, "a stored PEP item is unreadable");
            continue;
        };
        answer.push_child(
            Element::new("item", ns::PUBSUB)
                .with_attr("id", item.item_id)
                .with_child(payload),
        );
    }
    Ok(Some(Element::new("pubsub", ns::PUBSUB).with_child(answer)))
}

async fn retract(
    pep: &Pep,
    server: &Server,
    parties: &Parties,
    retract: &Element,
) -> Result<Option<Element>, PubSubError> {
    parties.must_own()?;
    let node = node_of(retract)?;
    let config = node_config(server, parties, node).await?;
    let Some(item_id) = retract
        .child("item", ns::PUBSUB)
        .and_then(|item| item.attr("id"))
    else {
        return Err(PubSubError::bad_request("item-required"));
    };
    let removed = server
        .store
        .retract_pep_item(parties.owner_name(), node, item_id)
        .await
        .map_err(storage)?;
    if !removed {
        return Err(PubSubError::item_not_found());
    }
    let notify = matches!(retract.attr("notify"), Some("true" | "1"));
    if notify && config.notify_retract {
        let event = Event::Retracted {
            item_id: item_id.to_owned(),
        };
        notify::event(server, &pep.remote, &parties.owner, node, &config, &event).await;
    }
    Ok(None)
}

async fn create(
    pep: &Pep,
    server: &Server,
    parties: &Parties,
    create: &Element,
    form: Option<Submitted>,
) -> Result<Option<Element>, PubSubError> {
    parties.must_own()?;
    let node = node_of(create)?;
    let mut config = default_config();
    if let Some(form) = &form {
        config.apply(form)?;
    }
    if !create_node(pep, server, parties, node, &config).await? {
        return Err(PubSubError::new(Condition::Conflict).with_text("The node exists already"));
    }
    Ok(None)
}

async fn configure(
    server: &Server,
    parties: &Parties,
    configure: &Element,
) -> Result<Option<Element>, PubSubError> {
    parties.must_own()?;
    let node = node_of(configure)?;
    let mut config = node_config(server, parties, node).await?;
    let Some(form) = form_in(Some(configure)) else {
        return Err(PubSubError::new(Condition::BadRequest).with_text("No configuration form"));
    };
    // A cancelled form has no fields and changes nothing.
    config.apply(&form)?;
    server
        .store
        .set_pep_config(parties.owner_name(), node, &config.to_json())
        .await
        .map_err(storage)?;
    Ok(None)
}

/// What an owner can do to a whole node.
enum NodeRemoval {
    Delete,
    Purge,
}

/// Deletes a node or purges its items (owner only), and tells the
/// subscribers (a deletion only if the node's config says so).
async fn remove(
    pep: &Pep,
    server: &Server,
    parties: &Parties,
    request: &Element,
    removal: NodeRemoval,
) -> Result<Option<Element>, PubSubError> {
    parties.must_own()?;
    let node = node_of(request)?;
    let config = node_config(server, parties, node).await?;
    let (written, event) = match removal {
        // Whether the node was there does not matter: its config was read.
        NodeRemoval::Delete => (
            server
                .store
                .delete_pep_node(parties.owner_name(), node)
                .await
                .map(drop),
            config.notify_delete.then_some(Event::Deleted),
        ),
        NodeRemoval::Purge => (
            server
                .store
                .purge_pep_items(parties.owner_name(), node)
                .await,
            Some(Event::Purged),
        ),
    };
    written.map_err(storage)?;
    if let Some(event) = event {
        notify::event(server, &pep.remote, &parties.owner, node, &config, &event).await;
    }
    Ok(None)
}
