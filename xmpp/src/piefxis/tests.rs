use super::*;

fn item(contact: &str, to: bool, from: bool) -> StoredRosterItem {
    StoredRosterItem {
        contact: contact.to_owned(),
        name: None,
        groups: Vec::new(),
        sub_to: to,
        sub_from: from,
        pending_out: false,
        pending_in: false,
        preapproved: false,
        in_roster: true,
    }
}

fn document(users: &[Account]) -> Vec<u8> {
    let mut xml = begin() + &begin_host("example.org");
    for user in users {
        xml += &user_xml(user);
    }
    xml += end_host();
    xml += end();
    xml.into_bytes()
}

fn one_host(xml: &[u8]) -> Vec<Account> {
    let mut hosts = parse(xml).unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].jid, "example.org");
    hosts.remove(0).users
}

#[test]
fn accounts_round_trip() {
    let credentials = crate::auth::Credentials::with_iterations("secret", 64);
    let mut friend = item("bob@example.org", true, true);
    friend.name = Some("Bob <the builder>".into());
    friend.groups = vec!["Friends".into(), "Work & play".into()];
    let mut asked = item("carol@example.net", false, true);
    asked.pending_out = true;
    let message = parse_element(
        b"<message from='bob@example.org/x' to='alice@example.org' type='chat'>\
          <body>hi &amp; bye</body></message>",
    )
    .unwrap();
    let users = vec![
        Account {
            name: "alice".into(),
            secret: Secret::Scram(vec![credentials.sha1.clone(), credentials.sha256.clone()]),
            roster: vec![friend, asked, item("dave@example.org", false, false)],
            offline: vec![OfflineEntry {
                stanza: message,
                stamp_ms: 1_795_335_300_123,
            }],
        },
        Account {
            name: "bob".into(),
            secret: Secret::Password("it's \"quoted\"".into()),
            roster: vec![item("alice@example.org", true, false)],
            offline: Vec::new(),
        },
    ];
    assert_eq!(one_host(&document(&users)), users);
}

#[test]
fn roster_items_not_in_the_roster_are_not_written() {
    let mut pending = item("eve@example.org", false, false);
    pending.in_roster = false;
    pending.pending_in = true;
    let user = Account {
        name: "alice".into(),
        secret: Secret::Password("pw".into()),
        roster: vec![pending],
        offline: Vec::new(),
    };
    assert!(one_host(&document(&[user]))[0].roster.is_empty());
}

#[test]
fn reads_a_file_as_other_servers_write_it() {
    // The XEP's own example shape: prolog, password attribute, vCard and
    // private storage (ignored), offline messages in jabber:client.
    let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<!-- exported -->
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='example.org'>
    <user name='juliet' password='s3crEt'>
      <query xmlns='jabber:iq:roster'>
        <item jid='romeo@montague.net' name='Romeo' subscription='both' ask='subscribe'>
          <group>Friends</group>
        </item>
      </query>
      <vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard>
      <offline-messages>
        <message xmlns='jabber:client' from='romeo@montague.net/orchard' to='juliet@example.org' type='chat'>
          <body>Wherefore art thou?</body>
          <delay xmlns='urn:xmpp:delay' stamp='2026-11-22T08:15:00Z'/>
        </message>
      </offline-messages>
    </user>
    <user name='nurse' password='pw'/>
  </host>
</server-data>
"#;
    let users = one_host(xml);
    assert_eq!(users.len(), 2);
    let juliet = &users[0];
    assert_eq!(juliet.secret, Secret::Password("s3crEt".into()));
    let romeo = &juliet.roster[0];
    assert_eq!(romeo.contact, "romeo@montague.net");
    assert_eq!(romeo.name.as_deref(), Some("Romeo"));
    assert_eq!(romeo.groups, ["Friends"]);
    assert!(romeo.sub_to && romeo.sub_from && romeo.pending_out);
    let stored = &juliet.offline[0];
    assert_eq!(stored.stamp_ms, 1_795_335_300_000);
    assert!(
        !stored.stanza.has_child("delay", NS_DELAY),
        "the stamp moves out of the stanza"
    );
    assert_eq!(
        stored.stanza.attr("from"),
        Some("romeo@montague.net/orchard")
    );
    assert_eq!(users[1].name, "nurse");
}

#[test]
fn delay_stamps_with_offsets_and_fractions_are_read_in_utc() {
    let xml = b"<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'><user name='a'>\
        <offline-messages>\
        <message xmlns='jabber:client'><delay xmlns='urn:xmpp:delay' stamp='2026-11-22T10:15:00+02:00'/></message>\
        <message xmlns='jabber:client'><delay xmlns='urn:xmpp:delay' stamp='2026-11-22T02:45:00.25-05:30'/></message>\
        </offline-messages></user></host></server-data>";
    let stamps: Vec<i64> = one_host(xml)[0]
        .offline
        .iter()
        .map(|entry| entry.stamp_ms)
        .collect();
    assert_eq!(stamps, [1_795_335_300_000, 1_795_335_300_250]);
}

#[test]
fn rejects_what_it_cannot_import_with_a_reason() {
    let cases: [(&[u8], &str); 7] = [
        (b"<root/>", "not <server-data"),
        (
            b"<server-data xmlns='urn:xmpp:pie:0'><host/></server-data>",
            "no jid",
        ),
        (
            b"<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user/></host></server-data>",
            "no name",
        ),
        (
            b"<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'>\
              <query xmlns='jabber:iq:roster'><item jid='b@h' subscription='maybe'/></query>\
              </user></host></server-data>",
            "subscription \"maybe\"",
        ),
        (
            b"<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'>\
              <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>\
              <iter-count>4096</iter-count><salt>!!</salt><server-key>AA==</server-key>\
              <stored-key>AA==</stored-key></scram-credentials></user></host></server-data>",
            "not base64",
        ),
        (b"<server-data xmlns='urn:xmpp:pie:0'><host", "well-formed"),
        (
            b"<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'>\
              <offline-messages><message xmlns='jabber:client'>\
              <delay xmlns='urn:xmpp:delay' stamp='yesterday'/></message>\
              </offline-messages></user></host></server-data>",
            "delay stamp \"yesterday\": not an XEP-0082 DateTime",
        ),
    ];
    for (xml, expected) in cases {
        let error = parse(xml).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{error:?} should mention {expected:?}"
        );
    }
}

#[test]
fn a_user_without_credentials_is_read_as_such() {
    let xml =
        b"<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'/></host></server-data>";
    assert_eq!(parse(xml).unwrap()[0].users[0].secret, Secret::None);
}

#[test]
fn scram_credentials_with_wrong_key_lengths_are_refused() {
    let xml = b"<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='a'>\
        <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-256'>\
        <iter-count>4096</iter-count><salt>c2FsdA==</salt><server-key>AA==</server-key>\
        <stored-key>AA==</stored-key></scram-credentials></user></host></server-data>";
    let error = parse(xml).unwrap_err().to_string();
    assert!(
        error.contains("user a: SCRAM-SHA-256 credentials"),
        "{error}"
    );
}
