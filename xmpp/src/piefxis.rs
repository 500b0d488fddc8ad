//! XEP-0227 portable import/export format (PIEFXIS): accounts with their
//! credentials, rosters and offline messages in one XML document.
//!
//! Credentials are either a clear-text `password` attribute (what Prosody,
//! ejabberd and hand-written files use; the importer hashes it) or
//! `<scram-credentials xmlns='urn:xmpp:pie:0#scram'>` elements, one per hash,
//! which is what Starling exports: it never has a clear password to give.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use starling_core::xml::{Element, escape};

use crate::auth::{ScramHash, StoredCredential};
use crate::storage::StoredRosterItem;
use crate::stream::parse_element;
use crate::util::time::{now_ms, parse_xep0082, xep0082};

pub const NS: &str = "urn:xmpp:pie:0";
pub const NS_SCRAM: &str = "urn:xmpp:pie:0#scram";
const NS_ROSTER: &str = "jabber:iq:roster";
const NS_DELAY: &str = "urn:xmpp:delay";
const NS_CLIENT: &str = "jabber:client";

/// One `<host>`: a domain and its accounts.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub jid: String,
    pub users: Vec<Account>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    pub secret: Secret,
    /// Items the user has in their roster (`in_roster`); `pending_in` and
    /// pre-approvals have no XEP-0227 form and are not carried.
    pub roster: Vec<StoredRosterItem>,
    pub offline: Vec<OfflineEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    Password(String),
    Scram(Vec<StoredCredential>),
    None,
}

/// A stored message: the stanza without its delay stamp, and the stamp.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineEntry {
    pub stanza: Element,
    pub stamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiefxisError(String);

impl fmt::Display for PiefxisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PiefxisError {}

fn error(message: impl Into<String>) -> PiefxisError {
    PiefxisError(message.into())
}

// ------------------------------------------------------------------ reading

/// Reads a whole XEP-0227 document.
pub fn parse(xml: &[u8]) -> Result<Vec<Host>, PiefxisError> {
    let root = parse_element(skip_prolog(xml))
        .map_err(|e| error(format!("not a well-formed XML document: {e}")))?;
    if !root.is("server-data", NS) {
        return Err(error(format!(
            "the root element is <{}> in {:?}, not <server-data xmlns='{NS}'>",
            root.name(),
            root.ns()
        )));
    }
    root.children()
        .filter(|c| c.is("host", NS))
        .map(|host| {
            let jid = host
                .attr("jid")
                .ok_or_else(|| error("a <host> has no jid"))?;
            let users = host
                .children()
                .filter(|c| c.is("user", NS))
                .map(|user| parse_user(user).map_err(|e| error(format!("host {jid}: {e}"))))
                .collect::<Result<_, _>>()?;
            Ok(Host {
                jid: jid.to_owned(),
                users,
            })
        })
        .collect()
}

/// The XML declaration, comments and a doctype before the root element.
fn skip_prolog(mut xml: &[u8]) -> &[u8] {
    loop {
        xml = xml.trim_ascii_start();
        let end = if xml.starts_with(b"<?") {
            find(xml, b"?>").map(|i| i + 2)
        } else if xml.starts_with(b"<!--") {
            find(xml, b"-->").map(|i| i + 3)
        } else if xml.starts_with(b"<!") {
            find(xml, b">").map(|i| i + 1)
        } else {
            return xml;
        };
        match end {
            Some(end) => xml = &xml[end..],
            None => return xml,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_user(user: &Element) -> Result<Account, PiefxisError> {
    let name = user
        .attr("name")
        .ok_or_else(|| error("a <user> has no name"))?
        .to_owned();
    let context = |e: PiefxisError| error(format!("user {name}: {e}"));
    let scram: Vec<StoredCredential> = user
        .children()
        .filter(|c| c.is("scram-credentials", NS_SCRAM))
        .map(parse_scram)
        .collect::<Result<_, _>>()
        .map_err(context)?;
    let secret = match (user.attr("password"), scram.is_empty()) {
        (Some(password), _) if !password.is_empty() => Secret::Password(password.to_owned()),
        (_, false) => Secret::Scram(scram),
        _ => Secret::None,
    };
    let mut roster = Vec::new();
    for query in user.children().filter(|c| c.is("query", NS_ROSTER)) {
        for item in query.children().filter(|c| c.is("item", NS_ROSTER)) {
            roster.push(parse_item(item).map_err(context)?);
        }
    }
    let mut offline = Vec::new();
    for messages in user.children().filter(|c| c.name() == "offline-messages") {
        for message in messages.children().filter(|c| c.name() == "message") {
            offline.push(parse_offline(message).map_err(context)?);
        }
    }
    Ok(Account {
        name,
        secret,
        roster,
        offline,
    })
}

fn parse_scram(element: &Element) -> Result<StoredCredential, PiefxisError> {
    let mechanism = element.attr("mechanism").unwrap_or_default();
    let hash = match mechanism {
        "SCRAM-SHA-1" => ScramHash::Sha1,
        "SCRAM-SHA-256" => ScramHash::Sha256,
        other => return Err(error(format!("unsupported SCRAM mechanism {other:?}"))),
    };
    let field = |name: &str| {
        element
            .child(name, NS_SCRAM)
            .map(|c| c.text().trim().to_owned())
            .ok_or_else(|| error(format!("{mechanism} credentials without <{name}>")))
    };
    let bytes = |name: &str| {
        BASE64
            .decode(field(name)?)
            .map_err(|e| error(format!("{mechanism} <{name}> is not base64: {e}")))
    };
    let iterations: u32 = field("iter-count")?
        .parse()
        .map_err(|_| error(format!("{mechanism} <iter-count> is not a number")))?;
    let credential = StoredCredential {
        hash,
        salt: bytes("salt")?,
        iterations,
        stored_key: bytes("stored-key")?,
        server_key: bytes("server-key")?,
    };
    // The store's own format checks lengths and counts: one rule, one place.
    StoredCredential::decode(&credential.encode())
        .map_err(|e| error(format!("{mechanism} credentials: {e}")))
}

fn parse_item(item: &Element) -> Result<StoredRosterItem, PiefxisError> {
    let contact = item
        .attr("jid")
        .ok_or_else(|| error("a roster item has no jid"))?;
    let (sub_to, sub_from) = match item.attr("subscription").unwrap_or("none") {
        "none" => (false, false),
        "to" => (true, false),
        "from" => (false, true),
        "both" => (true, true),
        other => {
            return Err(error(format!(
                "roster item {contact}: subscription {other:?}"
            )));
        }
    };
    Ok(StoredRosterItem {
        contact: contact.to_owned(),
        name: item.attr("name").map(str::to_owned),
        groups: item
            .children()
            .filter(|c| c.is("group", NS_ROSTER))
            .map(|g| g.text())
            .collect(),
        sub_to,
        sub_from,
        pending_out: item.attr("ask") == Some("subscribe"),
        pending_in: false,
        preapproved: false,
        in_roster: true,
    })
}

fn parse_offline(message: &Element) -> Result<OfflineEntry, PiefxisError> {
    let mut stanza = message.clone();
    let stamp_ms = match message
        .child("delay", NS_DELAY)
        .and_then(|d| d.attr("stamp"))
    {
        Some(stamp) => parse_xep0082(stamp)
            .map_err(|bad| error(format!("offline message delay stamp {stamp:?}: {bad}")))?,
        None => now_ms(),
    };
    stanza.remove_children("delay", NS_DELAY);
    Ok(OfflineEntry { stanza, stamp_ms })
}

// ------------------------------------------------------------------ writing

/// The document's opening, up to the first `<host>`.
pub fn begin() -> String {
    format!("<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='{NS}'>\n")
}

pub fn begin_host(jid: &str) -> String {
    format!("  <host jid='{}'>\n", escape(jid))
}

pub fn end_host() -> &'static str {
    "  </host>\n"
}

pub fn end() -> &'static str {
    "</server-data>\n"
}

/// One `<user>` element, for writing inside a `<host>`.
pub fn user_xml(account: &Account) -> String {
    let mut user = Element::new("user", NS).with_attr("name", account.name.clone());
    match &account.secret {
        Secret::Password(password) => user.set_attr("password", password.clone()),
        Secret::Scram(credentials) => {
            for credential in credentials {
                user.push_child(scram_element(credential));
            }
        }
        Secret::None => {}
    }
    let items: Vec<&StoredRosterItem> = account.roster.iter().filter(|i| i.in_roster).collect();
    if !items.is_empty() {
        let mut query = Element::new("query", NS_ROSTER);
        for item in items {
            query.push_child(item_element(item));
        }
        user.push_child(query);
    }
    if !account.offline.is_empty() {
        let mut messages = Element::new("offline-messages", NS);
        for entry in &account.offline {
            let mut stanza = entry.stanza.clone();
            stanza.push_child(
                Element::new("delay", NS_DELAY).with_attr("stamp", xep0082(entry.stamp_ms)),
            );
            messages.push_child(stanza);
        }
        user.push_child(messages);
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"    ");
    user.write_to(&mut out, NS);
    out.push(b'\n');
    // Only valid UTF-8 goes in, so only valid UTF-8 comes out.
    String::from_utf8(out).unwrap_or_default()
}

/// The SASL mechanism name of a hash, as `<scram-credentials>` names it.
pub fn mechanism(hash: ScramHash) -> &'static str {
    match hash {
        ScramHash::Sha1 => "SCRAM-SHA-1",
        ScramHash::Sha256 => "SCRAM-SHA-256",
    }
}

fn scram_element(credential: &StoredCredential) -> Element {
    let mechanism = mechanism(credential.hash);
    let text = |name: &str, value: String| Element::new(name.to_owned(), NS_SCRAM).with_text(value);
    Element::new("scram-credentials", NS_SCRAM)
        .with_attr("mechanism", mechanism)
        .with_child(text("iter-count", credential.iterations.to_string()))
        .with_child(text("salt", BASE64.encode(&credential.salt)))
        .with_child(text("server-key", BASE64.encode(&credential.server_key)))
        .with_child(text("stored-key", BASE64.encode(&credential.stored_key)))
}

fn item_element(item: &StoredRosterItem) -> Element {
    let subscription = match (item.sub_to, item.sub_from) {
        (true, true) => "both",
        (true, false) => "to",
        (false, true) => "from",
        (false, false) => "none",
    };
    let mut element = Element::new("item", NS_ROSTER)
        .with_attr("jid", item.contact.clone())
        .with_attr("subscription", subscription);
    if let Some(name) = &item.name {
        element.set_attr("name", name.clone());
    }
    if item.pending_out {
        element.set_attr("ask", "subscribe");
    }
    for group in &item.groups {
        element.push_child(Element::new("group", NS_ROSTER).with_text(group.clone()));
    }
    element
}

/// A stored offline stanza (serialised with `jabber:client` as its default
/// namespace) as an element for export.
pub fn offline_stanza(xml: &str) -> Result<Element, PiefxisError> {
    let element =
        parse_element(xml.as_bytes()).map_err(|e| error(format!("stored message: {e}")))?;
    if element.ns() != NS_CLIENT {
        return Err(error("a stored message outside jabber:client"));
    }
    Ok(element)
}

#[cfg(test)]
mod tests;
