//! XEP-0313 5 archiving preferences: a default (always, never, roster) and
//! JIDs whose chats are always or never archived, whatever the default.

use std::collections::BTreeSet;

use serde::Deserialize;
use starling_core::jid::{BareJid, Jid};
use starling_core::xml::Element;

use super::MAM;
use crate::stanza::{Condition, StanzaError};
use crate::storage::StoredArchivePrefs;

/// Most JIDs in both lists together: the lists live in memory for every
/// user whose chats pass this member.
pub const MAX_LISTED: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultMode {
    /// Every chat.
    Always,
    /// No chat.
    Never,
    /// Chats with JIDs in the user's roster.
    Roster,
}

impl DefaultMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultMode::Always => "always",
            DefaultMode::Never => "never",
            DefaultMode::Roster => "roster",
        }
    }

    fn parse(value: &str) -> Option<DefaultMode> {
        match value {
            "always" => Some(DefaultMode::Always),
            "never" => Some(DefaultMode::Never),
            "roster" => Some(DefaultMode::Roster),
            _ => None,
        }
    }
}

/// What a user's archive keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePrefs {
    pub default: DefaultMode,
    pub always: BTreeSet<String>,
    pub never: BTreeSet<String>,
}

/// Whether a chat is archived, once the lists have been looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Archive,
    Skip,
    /// Archived if the other party is in the user's roster.
    IfInRoster,
}

impl ArchivePrefs {
    /// A user who never set preferences gets the server's default.
    pub fn server_default(default: DefaultMode) -> ArchivePrefs {
        ArchivePrefs {
            default,
            always: BTreeSet::new(),
            never: BTreeSet::new(),
        }
    }

    /// Reads a `<prefs/>` element from a set request.
    pub fn parse(prefs: &Element) -> Result<ArchivePrefs, StanzaError> {
        let bad = |text: String| StanzaError::new(Condition::BadRequest).with_text(text);
        let default = prefs
            .attr("default")
            .ok_or_else(|| bad("<prefs/> needs a 'default' (always, never or roster)".into()))?;
        let default = DefaultMode::parse(default).ok_or_else(|| {
            bad(format!(
                "'{default}' is not a default: always, never or roster"
            ))
        })?;
        let list = |name: &str| -> Result<BTreeSet<String>, StanzaError> {
            let mut jids = BTreeSet::new();
            for list in prefs.children().filter(|child| child.is(name, MAM)) {
                for item in list.children().filter(|child| child.is("jid", MAM)) {
                    let text = item.text();
                    let jid = Jid::new(text.trim())
                        .map_err(|_| bad(format!("'{}' in <{name}/> is not a JID", text.trim())))?;
                    jids.insert(jid.to_bare().to_string());
                }
            }
            Ok(jids)
        };
        let (always, never) = (list("always")?, list("never")?);
        if let Some(both) = always.intersection(&never).next() {
            return Err(bad(format!("{both} is both in <always/> and in <never/>")));
        }
        if always.len() + never.len() > MAX_LISTED {
            return Err(StanzaError::new(Condition::NotAcceptable)
                .with_text(format!("At most {MAX_LISTED} JIDs may be listed")));
        }
        Ok(ArchivePrefs {
            default,
            always,
            never,
        })
    }

    /// The `<prefs/>` element that shows them.
    pub fn to_element(&self) -> Element {
        let list = |name: &'static str, jids: &BTreeSet<String>| {
            let mut element = Element::new(name, MAM);
            for jid in jids {
                element.push_child(Element::new("jid", MAM).with_text(jid.clone()));
            }
            element
        };
        Element::new("prefs", MAM)
            .with_attr("default", self.default.as_str())
            .with_child(list("always", &self.always))
            .with_child(list("never", &self.never))
    }

    /// Whether a chat with `with` goes into the archive. The lists win over
    /// the default (XEP-0313 5.1).
    pub fn decide(&self, with: &BareJid) -> Decision {
        if self.never.contains(with.as_str()) {
            return Decision::Skip;
        }
        if self.always.contains(with.as_str()) {
            return Decision::Archive;
        }
        match self.default {
            DefaultMode::Always => Decision::Archive,
            DefaultMode::Never => Decision::Skip,
            DefaultMode::Roster => Decision::IfInRoster,
        }
    }

    pub fn to_stored(&self) -> StoredArchivePrefs {
        StoredArchivePrefs {
            default_mode: self.default.as_str().to_owned(),
            always: self.always.iter().cloned().collect(),
            never: self.never.iter().cloned().collect(),
        }
    }

    /// Stored preferences; an unknown default (written by a newer version)
    /// reads as `fallback`, which is logged by the caller.
    pub fn from_stored(stored: StoredArchivePrefs, fallback: DefaultMode) -> ArchivePrefs {
        ArchivePrefs {
            default: DefaultMode::parse(&stored.default_mode).unwrap_or(fallback),
            always: stored.always.into_iter().collect(),
            never: stored.never.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<ArchivePrefs, StanzaError> {
        ArchivePrefs::parse(&crate::stream::parse_element(xml.as_bytes()).unwrap())
    }

    fn bare(jid: &str) -> BareJid {
        BareJid::new(jid).unwrap()
    }

    #[test]
    fn lists_win_over_the_default() {
        let prefs = parse(
            "<prefs xmlns='urn:xmpp:mam:2' default='roster'>\
               <always><jid>Bob@x/phone</jid></always>\
               <never><jid>spam@y</jid></never>\
             </prefs>",
        )
        .unwrap();
        assert_eq!(prefs.decide(&bare("bob@x")), Decision::Archive);
        assert_eq!(prefs.decide(&bare("spam@y")), Decision::Skip);
        assert_eq!(prefs.decide(&bare("carol@x")), Decision::IfInRoster);
        let never = ArchivePrefs {
            default: DefaultMode::Never,
            ..prefs.clone()
        };
        assert_eq!(never.decide(&bare("carol@x")), Decision::Skip);
        assert_eq!(never.decide(&bare("bob@x")), Decision::Archive);
    }

    #[test]
    fn shown_as_parsed_and_stored_as_shown() {
        let prefs = parse(
            "<prefs xmlns='urn:xmpp:mam:2' default='never'>\
               <always><jid>a@x</jid><jid>b@x</jid></always><never/>\
             </prefs>",
        )
        .unwrap();
        let shown = prefs.to_element();
        assert_eq!(ArchivePrefs::parse(&shown).unwrap(), prefs);
        let stored = prefs.to_stored();
        assert_eq!(
            ArchivePrefs::from_stored(stored, DefaultMode::Always),
            prefs
        );
    }

    #[test]
    fn bad_prefs_are_refused_with_a_reason() {
        for (xml, reason) in [
            ("<prefs xmlns='urn:xmpp:mam:2'/>", "needs a 'default'"),
            (
                "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>",
                "not a default",
            ),
            (
                "<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>@@</jid></never></prefs>",
                "not a JID",
            ),
            (
                "<prefs xmlns='urn:xmpp:mam:2' default='always'>\
                   <always><jid>a@x</jid></always><never><jid>a@x</jid></never></prefs>",
                "both in",
            ),
        ] {
            let error = parse(xml).unwrap_err();
            assert!(format!("{error:?}").contains(reason), "{xml}: {error:?}");
        }
    }
}
