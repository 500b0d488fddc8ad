//! RFC 6121 section 2 roster payloads: the `jabber:iq:roster` query and its items.
//!
//! Owns the typed form of roster items, the validation of a client's roster
//! set (2.1.5, 2.3.3, 2.5) and the builders for roster results (2.1.4) and
//! roster pushes (2.1.6). It works on [`Element`] trees only: reading the
//! stream, checking who may touch which roster, storage and stanza error
//! replies belong to the caller, which maps [`RosterError::condition`] to the
//! wire.

use std::collections::HashSet;

use starling_core::jid::{BareJid, FullJid, Jid, JidError};
use starling_core::xml::{Element, ns};
use thiserror::Error;

use super::subscription::{ItemView, Subscription};

/// The limit on `name` and `<group/>` lengths when the config sets none.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 1024;

/// Server-configured limits on what a client may store in a roster item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosterLimits {
    /// Longest `name` attribute, in UTF-8 bytes.
    pub max_name_bytes: usize,
    /// Longest group name, in UTF-8 bytes.
    pub max_group_bytes: usize,
}

impl Default for RosterLimits {
    fn default() -> Self {
        RosterLimits {
            max_name_bytes: DEFAULT_MAX_TEXT_BYTES,
            max_group_bytes: DEFAULT_MAX_TEXT_BYTES,
        }
    }
}

/// The `subscription` attribute of an item on the wire (RFC 6121 2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionAttr {
    None,
    To,
    From,
    Both,
    /// Only in a client's roster set and in the push that follows a removal.
    Remove,
}

impl SubscriptionAttr {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionAttr::None => "none",
            SubscriptionAttr::To => "to",
            SubscriptionAttr::From => "from",
            SubscriptionAttr::Both => "both",
            SubscriptionAttr::Remove => "remove",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(SubscriptionAttr::None),
            "to" => Some(SubscriptionAttr::To),
            "from" => Some(SubscriptionAttr::From),
            "both" => Some(SubscriptionAttr::Both),
            "remove" => Some(SubscriptionAttr::Remove),
            _ => None,
        }
    }
}

impl From<Subscription> for SubscriptionAttr {
    fn from(subscription: Subscription) -> Self {
        match subscription {
            Subscription::None => SubscriptionAttr::None,
            Subscription::To => SubscriptionAttr::To,
            Subscription::From => SubscriptionAttr::From,
            Subscription::Both => SubscriptionAttr::Both,
        }
    }
}

/// One `<item/>` of a roster result or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    pub jid: BareJid,
    pub name: Option<String>,
    pub subscription: SubscriptionAttr,
    /// `ask='subscribe'`.
    pub ask: bool,
    /// `approved='true'`.
    pub approved: bool,
    pub groups: Vec<String>,
}

impl RosterItem {
    /// The item clients see for a stored contact: name and groups as the user
    /// set them, subscription attributes from the subscription state.
    pub fn from_view(
        jid: BareJid,
        name: Option<String>,
        groups: Vec<String>,
        view: ItemView,
    ) -> Self {
        RosterItem {
            jid,
            name,
            subscription: view.subscription.into(),
            ask: view.ask,
            approved: view.approved,
            groups,
        }
    }

    /// The item pushed after a removal (2.5.2): `subscription='remove'`.
    pub fn removed(jid: BareJid) -> Self {
        RosterItem {
            jid,
            name: None,
            subscription: SubscriptionAttr::Remove,
            ask: false,
            approved: false,
            groups: Vec::new(),
        }
    }

    pub fn to_element(&self) -> Element {
        let mut item = Element::new("item", ns::ROSTER).with_attr("jid", self.jid.to_string());
        if let Some(name) = &self.name {
            item.set_attr("name", name.as_str());
        }
        item.set_attr("subscription", self.subscription.as_str());
        if self.ask {
            item.set_attr("ask", "subscribe");
        }
        if self.approved {
            item.set_attr("approved", "true");
        }
        for group in &self.groups {
            item.push_child(Element::new("group", ns::ROSTER).with_text(group.as_str()));
        }
        item
    }
}

/// Reads an item as a server writes it (a result or push item). Client roster
/// sets go through [`RosterSet::parse`], which applies the rules for them.
impl TryFrom<&Element> for RosterItem {
    type Error = RosterError;

    fn try_from(item: &Element) -> Result<Self, Self::Error> {
        if !item.is("item", ns::ROSTER) {
            return Err(RosterError::NotAnItem);
        }
        let subscription = match item.attr("subscription") {
            None => SubscriptionAttr::None,
            Some(value) => SubscriptionAttr::parse(value)
                .ok_or_else(|| RosterError::InvalidSubscription(value.to_owned()))?,
        };
        let ask = match item.attr("ask") {
            None => false,
            Some("subscribe") => true,
            Some(other) => return Err(RosterError::InvalidAsk(other.to_owned())),
        };
        let approved = match item.attr("approved") {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => return Err(RosterError::InvalidApproved(other.to_owned())),
        };
        Ok(RosterItem {
            jid: item_jid(item)?,
            name: item_name(item, None)?,
            subscription,
            ask,
            approved,
            groups: item_groups(item, None)?,
        })
    }
}

/// A client's roster set (RFC 6121 2.1.5), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterSet {
    /// Add the contact or replace its name and groups (2.3, 2.4). The
    /// subscription attributes a client sends are ignored (2.1.2); the
    /// subscription changes only through presence.
    Update(ItemUpdate),
    /// `subscription='remove'` (2.5).
    Remove(BareJid),
}

/// The part of a roster item a client may set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemUpdate {
    pub jid: BareJid,
    /// `None` when absent or empty.
    pub name: Option<String>,
    /// In the client's order; an update without groups removes the item from
    /// all groups.
    pub groups: Vec<String>,
}

impl RosterSet {
    /// Validates the `<query xmlns='jabber:iq:roster'/>` of an iq set.
    pub fn parse(query: &Element, limits: &RosterLimits) -> Result<Self, RosterError> {
        if !query.is("query", ns::ROSTER) {
            return Err(RosterError::NotRosterQuery);
        }
        let mut items = query
            .children()
            .filter(|child| child.is("item", ns::ROSTER));
        let item = match (items.next(), items.count()) {
            (Some(item), 0) => item,
            (None, _) => return Err(RosterError::ItemCount(0)),
            (Some(_), more) => return Err(RosterError::ItemCount(more + 1)),
        };
        let jid = item_jid(item)?;
        // 2.1.2.5: every other subscription value is ignored in a roster set,
        // and so are `ask` and `approved` (2.1.2.1, 2.1.2.2).
        if item.attr("subscription") == Some("remove") {
            return Ok(RosterSet::Remove(jid));
        }
        Ok(RosterSet::Update(ItemUpdate {
            jid,
            name: item_name(item, Some(limits.max_name_bytes))?,
            groups: item_groups(item, Some(limits.max_group_bytes))?,
        }))
    }

    /// The `<query/>` a client sends for this set (the inverse of [`RosterSet::parse`]).
    pub fn to_query(&self) -> Element {
        let item = match self {
            RosterSet::Update(update) => {
                let mut item =
                    Element::new("item", ns::ROSTER).with_attr("jid", update.jid.to_string());
                if let Some(name) = &update.name {
                    item.set_attr("name", name.as_str());
                }
                for group in &update.groups {
                    item.push_child(Element::new("group", ns::ROSTER).with_text(group.as_str()));
                }
                item
            }
            RosterSet::Remove(jid) => Element::new("item", ns::ROSTER)
                .with_attr("jid", jid.to_string())
                .with_attr("subscription", "remove"),
        };
        Element::new("query", ns::ROSTER).with_child(item)
    }

    /// The contact the set is about.
    pub fn jid(&self) -> &BareJid {
        match self {
            RosterSet::Update(update) => &update.jid,
            RosterSet::Remove(jid) => jid,
        }
    }
}

/// The `ver` a client sent with its roster get (RFC 6121 2.6), if any.
pub fn requested_version(query: &Element) -> Option<&str> {
    query.attr("ver")
}

/// `<query xmlns='jabber:iq:roster'/>` holding `items`, with `ver` when the
/// server versions rosters.
pub fn roster_query<'a>(
    items: impl IntoIterator<Item = &'a RosterItem>,
    ver: Option<&str>,
) -> Element {
    let mut query = Element::new("query", ns::ROSTER);
    if let Some(ver) = ver {
        query.set_attr("ver", ver);
    }
    for item in items {
        query.push_child(item.to_element());
    }
    query
}

/// The answer to a roster get (2.1.4): the whole roster.
pub fn roster_result(id: &str, to: &FullJid, items: &[RosterItem], ver: Option<&str>) -> Element {
    iq("result", id, to).with_child(roster_query(items, ver))
}

/// A roster push (2.1.6) of one changed item to one interested resource. It
/// carries no `from`: a push comes from the user's own account.
pub fn roster_push(id: &str, to: &FullJid, item: &RosterItem, ver: Option<&str>) -> Element {
    iq("set", id, to).with_child(roster_query([item], ver))
}

fn iq(kind: &str, id: &str, to: &FullJid) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", kind)
        .with_attr("id", id)
        .with_attr("to", to.to_string())
}

/// The stanza error condition a rejected roster payload calls for (RFC 6120
/// 8.3.3); all three have error type "modify".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCondition {
    BadRequest,
    NotAcceptable,
    JidMalformed,
}

impl ErrorCondition {
    /// The element name in `urn:ietf:params:xml:ns:xmpp-stanzas`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCondition::BadRequest => "bad-request",
            ErrorCondition::NotAcceptable => "not-acceptable",
            ErrorCondition::JidMalformed => "jid-malformed",
        }
    }

    /// The `type` attribute of the `<error/>`.
    pub fn error_type(self) -> &'static str {
        "modify"
    }
}

/// Why a roster payload was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RosterError {
    #[error("expected <query xmlns='jabber:iq:roster'/>")]
    NotRosterQuery,
    #[error("expected <item xmlns='jabber:iq:roster'/>")]
    NotAnItem,
    #[error("a roster set carries exactly one item, this one has {0}")]
    ItemCount(usize),
    #[error("the item has no 'jid' attribute")]
    MissingJid,
    #[error("the item JID {jid:?} is malformed")]
    MalformedJid {
        jid: String,
        #[source]
        source: JidError,
    },
    #[error("the item JID {0} has a resource; roster items are bare JIDs")]
    FullJid(String),
    #[error("unknown subscription value {0:?}")]
    InvalidSubscription(String),
    #[error("unknown ask value {0:?}")]
    InvalidAsk(String),
    #[error("approved must be a boolean, got {0:?}")]
    InvalidApproved(String),
    #[error("group {0:?} appears more than once")]
    DuplicateGroup(String),
    #[error("a group name is empty")]
    EmptyGroup,
    #[error("the name is {len} bytes long, the limit is {max}")]
    NameTooLong { len: usize, max: usize },
    #[error("a group name is {len} bytes long, the limit is {max}")]
    GroupTooLong { len: usize, max: usize },
}

impl RosterError {
    /// The stanza error to answer with (RFC 6121 2.3.3, 2.5.3).
    pub fn condition(&self) -> ErrorCondition {
        match self {
            RosterError::MalformedJid { .. } | RosterError::FullJid(_) => {
                ErrorCondition::JidMalformed
            }
            // 2.3.3 puts an empty group with the length limits, not with the
            // malformed requests.
            RosterError::EmptyGroup
            | RosterError::NameTooLong { .. }
            | RosterError::GroupTooLong { .. } => ErrorCondition::NotAcceptable,
            RosterError::NotRosterQuery
            | RosterError::NotAnItem
            | RosterError::ItemCount(_)
            | RosterError::MissingJid
            | RosterError::InvalidSubscription(_)
            | RosterError::InvalidAsk(_)
            | RosterError::InvalidApproved(_)
            | RosterError::DuplicateGroup(_) => ErrorCondition::BadRequest,
        }
    }
}

fn item_jid(item: &Element) -> Result<BareJid, RosterError> {
    let raw = item.attr("jid").ok_or(RosterError::MissingJid)?;
    let jid = Jid::new(raw).map_err(|source| RosterError::MalformedJid {
        jid: raw.to_owned(),
        source,
    })?;
    if jid.resource().is_some() {
        return Err(RosterError::FullJid(jid.to_string()));
    }
    Ok(jid.into_bare())
}

fn item_name(item: &Element, max: Option<usize>) -> Result<Option<String>, RosterError> {
    let Some(name) = item.attr("name").filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    match max {
        Some(max) if name.len() > max => Err(RosterError::NameTooLong {
            len: name.len(),
            max,
        }),
        _ => Ok(Some(name.to_owned())),
    }
}

/// Group names are taken as sent: nothing is trimmed or folded, so " work"
/// and "work" are two groups.
fn item_groups(item: &Element, max: Option<usize>) -> Result<Vec<String>, RosterError> {
    let mut groups = Vec::new();
    for group in item
        .children()
        .filter(|child| child.is("group", ns::ROSTER))
    {
        let name = group.text();
        if name.is_empty() {
            return Err(RosterError::EmptyGroup);
        }
        if let Some(max) = max.filter(|max| name.len() > *max) {
            return Err(RosterError::GroupTooLong {
                len: name.len(),
                max,
            });
        }
        groups.push(name);
    }
    let mut seen = HashSet::with_capacity(groups.len());
    if let Some(duplicate) = groups.iter().find(|group| !seen.insert(group.as_str())) {
        return Err(RosterError::DuplicateGroup(duplicate.clone()));
    }
    Ok(groups)
}

#[cfg(test)]
mod tests;
