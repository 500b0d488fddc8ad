//! Disco#info and #items on the room (XEP-0045 6.4, 6.5).

use starling_core::xml::{Element, ns};

use super::super::MUC;
use super::Room;

impl Room {
    /// Disco#info on the room (XEP-0045 6.4).
    pub fn disco_info(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr(
                    "name",
                    if self.config.name.is_empty() {
                        self.jid.node().map(|n| n.to_string()).unwrap_or_default()
                    } else {
                        self.config.name.clone()
                    },
                ),
        );
        let mut features = vec![MUC, ns::DISCO_INFO, "urn:xmpp:ping"];
        features.push(super::REGISTER);
        if self.config.logging {
            features.push(super::super::archive::MAM);
            features.push(super::super::moderation::MODERATE);
            features.push(super::super::moderation::MODERATE_0);
        }
        features.extend(self.config.features());
        for feature in features {
            query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
        }
        let mut form = crate::pubsub::form::FormBuilder::new(
            "result",
            "http://jabber.org/protocol/muc#roominfo",
        );
        form.field(
            "muc#roominfo_description",
            "text-single",
            Some("Description"),
            &[&self.config.description],
        );
        form.field(
            "muc#roominfo_occupants",
            "text-single",
            Some("Occupants"),
            &[&self.occupants.len().to_string()],
        );
        form.field(
            "muc#roominfo_subject",
            "text-single",
            Some("Subject"),
            &[&self.subject.0],
        );
        query.push_child(form.build());
        query
    }

    /// Disco#items on the room: its occupants' room JIDs when it is public
    /// (XEP-0045 6.5), nothing otherwise.
    pub fn disco_items(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_ITEMS);
        if self.config.public {
            for occupant in &self.occupants {
                query.push_child(
                    Element::new("item", ns::DISCO_ITEMS)
                        .with_attr("jid", self.nick_jid(&occupant.nick).as_str()),
                );
            }
        }
        query
    }
}
