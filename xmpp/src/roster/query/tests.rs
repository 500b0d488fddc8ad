//! Round trips (XML literal -> value -> element -> compare) for every roster
//! payload, and one test per roster set error of RFC 6121 2.3.3.

use std::error::Error as _;

use quick_xml::events::{BytesStart, Event};
use starling_core::xml::ns_str;

use super::super::subscription::{ContactState, SubState};
use super::*;

/// Parses an XML literal into an element tree. Whitespace-only text between
/// elements is dropped so literals can be indented.
fn parse(xml: &str) -> Element {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut text = String::new();
    loop {
        let event = reader.read_event().expect("well-formed test XML");
        if matches!(event, Event::Start(_) | Event::Empty(_) | Event::End(_)) {
            match stack.last_mut() {
                Some(parent) if !text.trim().is_empty() => parent.push_text(text.as_str()),
                _ => {}
            }
            text.clear();
        }
        match event {
            Event::Start(start) => {
                let element = open(&start, stack.last());
                stack.push(element);
            }
            Event::Empty(start) => {
                let element = open(&start, stack.last());
                match stack.last_mut() {
                    Some(parent) => parent.push_child(element),
                    None => return element,
                }
            }
            Event::End(_) => {
                let element = stack.pop().expect("balanced test XML");
                match stack.last_mut() {
                    Some(parent) => parent.push_child(element),
                    None => return element,
                }
            }
            Event::Text(chunk) => text.push_str(&chunk.xml10_content()),
            Event::GeneralRef(reference) => match reference.resolve_char_ref().unwrap() {
                Some(ch) => text.push(ch),
                None => text.push_str(
                    quick_xml::escape::resolve_predefined_entity(&reference)
                        .expect("predefined entity"),
                ),
            },
            Event::Eof => panic!("unterminated test XML"),
            _ => {}
        }
    }
}

fn open(start: &BytesStart<'_>, parent: Option<&Element>) -> Element {
    let name = start.name().as_ref().to_owned();
    let mut namespace = parent.map_or(ns::CLIENT, Element::ns).to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.unwrap();
        let key = attr.key.as_ref().to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .unwrap()
            .into_owned();
        if key == "xmlns" {
            namespace = value;
        } else {
            attrs.push((key, value));
        }
    }
    let mut element = Element::new(name, ns_str(&namespace));
    for (key, value) in attrs {
        element.set_attr(key, value);
    }
    element
}

fn bare(jid: &str) -> BareJid {
    BareJid::new(jid).unwrap()
}

fn full(jid: &str) -> FullJid {
    FullJid::new(jid).unwrap()
}

fn parse_set(xml: &str) -> Result<RosterSet, RosterError> {
    RosterSet::parse(&parse(xml), &RosterLimits::default())
}

fn set_error(xml: &str) -> RosterError {
    parse_set(xml).expect_err("the roster set must be rejected")
}

/// A roster set query around one item carrying `inner` attributes and children.
fn set_with(attrs: &str, children: &str) -> String {
    format!("<query xmlns='jabber:iq:roster'><item {attrs}>{children}</item></query>")
}

// --- Items ---

#[test]
fn item_round_trip_with_every_attribute() {
    let xml = "<item xmlns='jabber:iq:roster' jid='nurse@example.com' name='Nurse' \
               subscription='none' ask='subscribe' approved='true'>\
               <group>Servants</group><group>Capulets</group></item>";
    let item = RosterItem::try_from(&parse(xml)).unwrap();
    assert_eq!(
        item,
        RosterItem {
            jid: bare("nurse@example.com"),
            name: Some("Nurse".to_owned()),
            subscription: SubscriptionAttr::None,
            ask: true,
            approved: true,
            groups: vec!["Servants".to_owned(), "Capulets".to_owned()],
        }
    );
    assert_eq!(item.to_element(), parse(xml));
}

#[test]
fn item_round_trip_minimal() {
    let xml = "<item xmlns='jabber:iq:roster' jid='romeo@example.net' subscription='both'/>";
    let item = RosterItem::try_from(&parse(xml)).unwrap();
    assert_eq!(item.name, None);
    assert!(item.groups.is_empty());
    assert!(!item.ask && !item.approved);
    assert_eq!(item.to_element(), parse(xml));
}

#[test]
fn item_round_trip_with_escaped_text() {
    let xml = "<item xmlns='jabber:iq:roster' jid='tybalt@example.com' \
               name='Tom &amp; &quot;Jerry&quot;' subscription='to'>\
               <group>a &lt; b &#233;</group></item>";
    let item = RosterItem::try_from(&parse(xml)).unwrap();
    assert_eq!(item.name.as_deref(), Some("Tom & \"Jerry\""));
    assert_eq!(item.groups, ["a < b é"]);
    assert_eq!(item.to_element(), parse(xml));
}

#[test]
fn item_round_trip_removed() {
    let xml = "<item xmlns='jabber:iq:roster' jid='nurse@example.com' subscription='remove'/>";
    let item = RosterItem::try_from(&parse(xml)).unwrap();
    assert_eq!(item, RosterItem::removed(bare("nurse@example.com")));
    assert_eq!(item.to_element(), parse(xml));
}

#[test]
fn item_jid_is_normalised() {
    let xml = "<item xmlns='jabber:iq:roster' jid='Juliet@Example.COM' subscription='none'/>";
    let item = RosterItem::try_from(&parse(xml)).unwrap();
    assert_eq!(item.jid.as_str(), "juliet@example.com");
}

#[test]
fn item_without_subscription_reads_as_none() {
    let xml = "<item xmlns='jabber:iq:roster' jid='romeo@example.net'/>";
    let item = RosterItem::try_from(&parse(xml)).unwrap();
    assert_eq!(item.subscription, SubscriptionAttr::None);
}

#[test]
fn item_from_subscription_state() {
    let state = ContactState {
        sub: SubState {
            from: true,
            pending_out: true,
            ..SubState::NONE
        },
        in_roster: true,
    };
    let item = RosterItem::from_view(
        bare("benvolio@example.net"),
        Some("Ben".to_owned()),
        vec!["Montagues".to_owned()],
        state.view(),
    );
    let expected = "<item xmlns='jabber:iq:roster' jid='benvolio@example.net' name='Ben' \
                    subscription='from' ask='subscribe'><group>Montagues</group></item>";
    assert_eq!(item.to_element(), parse(expected));
}

#[test]
fn item_rejects_unknown_attribute_values() {
    let cases = [
        (
            "subscription='sometimes'",
            RosterError::InvalidSubscription("sometimes".into()),
        ),
        (
            "ask='unsubscribe'",
            RosterError::InvalidAsk("unsubscribe".into()),
        ),
        ("approved='yes'", RosterError::InvalidApproved("yes".into())),
    ];
    for (attr, expected) in cases {
        let xml = format!("<item xmlns='jabber:iq:roster' jid='a@example.com' {attr}/>");
        let error = RosterItem::try_from(&parse(&xml)).unwrap_err();
        assert_eq!(error.condition(), ErrorCondition::BadRequest, "{attr}");
        assert_eq!(error, expected);
    }
}

#[test]
fn item_accepts_numeric_booleans() {
    let xml = "<item xmlns='jabber:iq:roster' jid='a@example.com' approved='1'/>";
    assert!(RosterItem::try_from(&parse(xml)).unwrap().approved);
    let xml = "<item xmlns='jabber:iq:roster' jid='a@example.com' approved='0'/>";
    assert!(!RosterItem::try_from(&parse(xml)).unwrap().approved);
}

#[test]
fn item_in_another_namespace_is_not_an_item() {
    let error = RosterItem::try_from(&parse("<item xmlns='urn:example' jid='a@example.com'/>"))
        .unwrap_err();
    assert_eq!(error, RosterError::NotAnItem);
}

// --- Results and pushes ---

#[test]
fn roster_result_round_trip() {
    let xml = "<iq type='result' id='hu2bac18' to='juliet@example.com/balcony'>\
                 <query xmlns='jabber:iq:roster' ver='ver11'>\
                   <item jid='romeo@example.net' name='Romeo' subscription='both'>\
                     <group>Friends</group>\
                   </item>\
                   <item jid='mercutio@example.com' name='Mercutio' subscription='from'/>\
                   <item jid='benvolio@example.net' name='Benvolio' subscription='none' \
                         ask='subscribe'/>\
                 </query>\
               </iq>";
    let literal = parse(xml);
    let query = literal.child("query", ns::ROSTER).unwrap();
    let items: Vec<RosterItem> = query
        .children()
        .map(|item| RosterItem::try_from(item).unwrap())
        .collect();
    assert_eq!(items.len(), 3);
    assert_eq!(requested_version(query), Some("ver11"));
    let built = roster_result(
        "hu2bac18",
        &full("juliet@example.com/balcony"),
        &items,
        Some("ver11"),
    );
    assert_eq!(built, literal);
}

#[test]
fn empty_roster_result() {
    let xml = "<iq type='result' id='r1' to='juliet@example.com/balcony'>\
               <query xmlns='jabber:iq:roster'/></iq>";
    let built = roster_result("r1", &full("juliet@example.com/balcony"), &[], None);
    assert_eq!(built, parse(xml));
}

#[test]
fn roster_push_round_trip() {
    let xml = "<iq type='set' id='a78b4q6ha463' to='juliet@example.com/chamber'>\
                 <query xmlns='jabber:iq:roster' ver='ver13'>\
                   <item jid='nurse@example.com' name='Nurse' subscription='none'>\
                     <group>Servants</group>\
                   </item>\
                 </query>\
               </iq>";
    let literal = parse(xml);
    let item = literal
        .child("query", ns::ROSTER)
        .and_then(|query| query.child("item", ns::ROSTER))
        .map(|item| RosterItem::try_from(item).unwrap())
        .unwrap();
    let built = roster_push(
        "a78b4q6ha463",
        &full("juliet@example.com/chamber"),
        &item,
        Some("ver13"),
    );
    assert_eq!(built, literal);
}

#[test]
fn roster_push_wire_form() {
    let push = roster_push(
        "p1",
        &full("juliet@example.com/balcony"),
        &RosterItem::removed(bare("nurse@example.com")),
        None,
    );
    assert_eq!(
        String::from_utf8(push.to_bytes()).unwrap(),
        "<iq type=\"set\" id=\"p1\" to=\"juliet@example.com/balcony\">\
         <query xmlns=\"jabber:iq:roster\">\
         <item jid=\"nurse@example.com\" subscription=\"remove\"/></query></iq>"
    );
}

#[test]
fn roster_get_version() {
    let get = parse("<query xmlns='jabber:iq:roster' ver='ver14'/>");
    assert_eq!(requested_version(&get), Some("ver14"));
    let get = parse("<query xmlns='jabber:iq:roster'/>");
    assert_eq!(requested_version(&get), None);
}

// --- Roster sets ---

#[test]
fn roster_set_update_round_trip() {
    let xml = "<query xmlns='jabber:iq:roster'>\
                 <item jid='nurse@example.com' name='Nurse'>\
                   <group>Servants</group><group>Capulets</group>\
                 </item>\
               </query>";
    let set = parse_set(xml).unwrap();
    assert_eq!(
        set,
        RosterSet::Update(ItemUpdate {
            jid: bare("nurse@example.com"),
            name: Some("Nurse".to_owned()),
            groups: vec!["Servants".to_owned(), "Capulets".to_owned()],
        })
    );
    assert_eq!(set.jid(), &bare("nurse@example.com"));
    assert_eq!(set.to_query(), parse(xml));
}

#[test]
fn roster_set_remove_round_trip() {
    let xml = "<query xmlns='jabber:iq:roster'>\
               <item jid='nurse@example.com' subscription='remove'/></query>";
    let set = parse_set(xml).unwrap();
    assert_eq!(set, RosterSet::Remove(bare("nurse@example.com")));
    assert_eq!(set.to_query(), parse(xml));
}

#[test]
fn roster_set_without_name_or_groups() {
    let set = parse_set(&set_with("jid='nurse@example.com' name=''", "")).unwrap();
    assert_eq!(
        set,
        RosterSet::Update(ItemUpdate {
            jid: bare("nurse@example.com"),
            name: None,
            groups: Vec::new(),
        })
    );
}

#[test]
fn roster_set_ignores_subscription_ask_and_approved() {
    // 2.1.2.5: values other than "remove" are ignored; a client echoing a
    // received item must not be refused.
    let xml = set_with(
        "jid='nurse@example.com' subscription='both' ask='subscribe' approved='true'",
        "<group>Servants</group>",
    );
    let set = parse_set(&xml).unwrap();
    assert_eq!(
        set,
        RosterSet::Update(ItemUpdate {
            jid: bare("nurse@example.com"),
            name: None,
            groups: vec!["Servants".to_owned()],
        })
    );
    let xml = set_with("jid='nurse@example.com' subscription='bogus'", "");
    assert!(matches!(parse_set(&xml), Ok(RosterSet::Update(_))));
}

#[test]
fn roster_set_remove_does_not_validate_the_rest() {
    let xml = set_with(
        "jid='nurse@example.com' subscription='remove'",
        "<group/><group>x</group><group>x</group>",
    );
    assert_eq!(
        parse_set(&xml),
        Ok(RosterSet::Remove(bare("nurse@example.com")))
    );
}

#[test]
fn roster_set_keeps_groups_untrimmed() {
    let query = Element::new("query", ns::ROSTER).with_child(
        Element::new("item", ns::ROSTER)
            .with_attr("jid", "nurse@example.com")
            .with_child(Element::new("group", ns::ROSTER).with_text(" "))
            .with_child(Element::new("group", ns::ROSTER).with_text(" work "))
            .with_child(Element::new("group", ns::ROSTER).with_text("work")),
    );
    let set = RosterSet::parse(&query, &RosterLimits::default()).unwrap();
    let RosterSet::Update(update) = set else {
        panic!("expected an update");
    };
    assert_eq!(update.groups, [" ", " work ", "work"]);
}

#[test]
fn roster_set_with_two_items_is_a_bad_request() {
    let error = set_error(
        "<query xmlns='jabber:iq:roster'>\
         <item jid='nurse@example.com'/><item jid='romeo@example.net'/></query>",
    );
    assert_eq!(error, RosterError::ItemCount(2));
    assert_eq!(error.condition(), ErrorCondition::BadRequest);
}

#[test]
fn roster_set_without_item_is_a_bad_request() {
    let error = set_error("<query xmlns='jabber:iq:roster'/>");
    assert_eq!(error, RosterError::ItemCount(0));
    assert_eq!(error.condition(), ErrorCondition::BadRequest);
}

#[test]
fn roster_set_outside_the_roster_namespace_is_a_bad_request() {
    let error = set_error("<query xmlns='jabber:iq:private'><item jid='a@example.com'/></query>");
    assert_eq!(error, RosterError::NotRosterQuery);
    assert_eq!(error.condition(), ErrorCondition::BadRequest);
}

#[test]
fn roster_set_without_jid_is_a_bad_request() {
    let error = set_error(&set_with("name='Nobody'", ""));
    assert_eq!(error, RosterError::MissingJid);
    assert_eq!(error.condition(), ErrorCondition::BadRequest);
}

#[test]
fn roster_set_with_malformed_jid_is_jid_malformed() {
    for jid in ["@example.com", "a@b@example.com", "user@exa mple.com", ""] {
        let error = set_error(&set_with(&format!("jid='{jid}'"), ""));
        assert!(
            matches!(&error, RosterError::MalformedJid { jid: raw, .. } if raw == jid),
            "{jid:?}: {error:?}"
        );
        assert_eq!(error.condition(), ErrorCondition::JidMalformed, "{jid:?}");
        assert!(
            error.source().is_some(),
            "the JID error is kept as the cause"
        );
    }
}

#[test]
fn roster_set_with_full_jid_is_jid_malformed() {
    let error = set_error(&set_with("jid='nurse@example.com/kitchen'", ""));
    assert_eq!(
        error,
        RosterError::FullJid("nurse@example.com/kitchen".to_owned())
    );
    assert_eq!(error.condition(), ErrorCondition::JidMalformed);
}

#[test]
fn roster_set_with_duplicate_group_is_a_bad_request() {
    let error = set_error(&set_with(
        "jid='nurse@example.com'",
        "<group>Servants</group><group>Capulets</group><group>Servants</group>",
    ));
    assert_eq!(error, RosterError::DuplicateGroup("Servants".to_owned()));
    assert_eq!(error.condition(), ErrorCondition::BadRequest);
}

#[test]
fn roster_set_with_empty_group_is_not_acceptable() {
    for group in ["<group/>", "<group></group>"] {
        let error = set_error(&set_with("jid='nurse@example.com'", group));
        assert_eq!(error, RosterError::EmptyGroup, "{group}");
        assert_eq!(error.condition(), ErrorCondition::NotAcceptable);
    }
}

#[test]
fn roster_set_with_overlong_name_is_not_acceptable() {
    let at_limit = "n".repeat(DEFAULT_MAX_TEXT_BYTES);
    let xml = set_with(&format!("jid='nurse@example.com' name='{at_limit}'"), "");
    assert!(parse_set(&xml).is_ok());

    let over = format!("{at_limit}n");
    let error = set_error(&set_with(
        &format!("jid='nurse@example.com' name='{over}'"),
        "",
    ));
    assert_eq!(
        error,
        RosterError::NameTooLong {
            len: DEFAULT_MAX_TEXT_BYTES + 1,
            max: DEFAULT_MAX_TEXT_BYTES,
        }
    );
    assert_eq!(error.condition(), ErrorCondition::NotAcceptable);
}

#[test]
fn roster_set_name_limit_is_configurable_and_counts_bytes() {
    let limits = RosterLimits {
        max_name_bytes: 4,
        max_group_bytes: 4,
    };
    // Two characters, four bytes: at the limit.
    let ok = parse(&set_with(
        "jid='nurse@example.com' name='éé'",
        "<group>éé</group>",
    ));
    assert!(RosterSet::parse(&ok, &limits).is_ok());
    // Three characters, six bytes.
    let long = parse(&set_with("jid='nurse@example.com' name='ééé'", ""));
    assert_eq!(
        RosterSet::parse(&long, &limits),
        Err(RosterError::NameTooLong { len: 6, max: 4 })
    );
}

#[test]
fn roster_set_with_overlong_group_is_not_acceptable() {
    let limits = RosterLimits {
        max_name_bytes: 1024,
        max_group_bytes: 8,
    };
    let xml = parse(&set_with(
        "jid='nurse@example.com'",
        "<group>Servants</group><group>Capulets!</group>",
    ));
    let error = RosterSet::parse(&xml, &limits).unwrap_err();
    assert_eq!(error, RosterError::GroupTooLong { len: 9, max: 8 });
    assert_eq!(error.condition(), ErrorCondition::NotAcceptable);

    let over = "g".repeat(DEFAULT_MAX_TEXT_BYTES + 1);
    let error = set_error(&set_with(
        "jid='nurse@example.com'",
        &format!("<group>{over}</group>"),
    ));
    assert!(matches!(error, RosterError::GroupTooLong { .. }));
}

#[test]
fn error_conditions_name_the_stanza_errors() {
    assert_eq!(ErrorCondition::BadRequest.as_str(), "bad-request");
    assert_eq!(ErrorCondition::NotAcceptable.as_str(), "not-acceptable");
    assert_eq!(ErrorCondition::JidMalformed.as_str(), "jid-malformed");
    assert_eq!(ErrorCondition::JidMalformed.error_type(), "modify");
}
