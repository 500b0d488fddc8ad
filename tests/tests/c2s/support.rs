//! Helpers shared by the c2s tests: logging in, iq round trips, stanza
//! predicates, and barriers that make "this did not arrive" checks exact.
//!
//! A node routes everything one client sends in order, inside that client's
//! connection task, and every session's mailbox is first in, first out. So
//! when a marker sent after an action arrives, everything the action caused
//! for that recipient has arrived before it: [`sync`] (a ping answered by the
//! server, for stanzas the client itself caused) and [`barrier`] (a message
//! from the actor, for stanzas another client caused) rely on that, and the
//! timeouts here are only bounds for "never arrived".

use std::time::Duration;

use starling_core::xml::{Element, ns};
use starling_tests::{Client, ClientError, LoginOptions, Mechanism, TestNode, TlsMode};

/// The bound for anything that should arrive; only reached when it does not.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Login options for `user` over STARTTLS with SCRAM-SHA-256.
pub(crate) fn options(node: &TestNode, user: &str, password: &str, resource: &str) -> LoginOptions {
    let mut options = LoginOptions::new(&node.domain, user, password);
    options.resource = Some(resource.to_owned());
    options.tls = TlsMode::Required;
    options.mechanism = Some(Mechanism::ScramSha256);
    options
}

/// Logs in over STARTTLS with SCRAM-SHA-256 and binds `resource`.
pub(crate) async fn login(node: &TestNode, user: &str, password: &str, resource: &str) -> Client {
    Client::login(node.c2s, &options(node, user, password, resource))
        .await
        .unwrap_or_else(|error| panic!("{user} cannot log in: {error}"))
}

/// Logs in as a typical client does: roster get (so roster pushes come),
/// then initial presence, returned once the server echoed it.
pub(crate) async fn online(node: &TestNode, user: &str, password: &str, resource: &str) -> Client {
    let mut client = login(node, user, password, resource).await;
    roster_get(&mut client).await;
    available(&mut client, "<presence/>").await;
    client
}

/// Sends an available presence (no `to`) and waits for the server's echo
/// to this resource (RFC 6121 4.2.2: a user is subscribed to itself).
pub(crate) async fn available(client: &mut Client, presence: &str) -> Element {
    let me = jid(client);
    client.send(presence).await.unwrap();
    client
        .expect(|e| is_presence(e, &me, None), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{me} got no echo of its presence: {error}"))
}

/// The client's bound full JID.
pub(crate) fn jid(client: &Client) -> String {
    client.jid().expect("a bound client").to_string()
}

/// The client's bare JID.
pub(crate) fn bare(client: &Client) -> String {
    client.jid().expect("a bound client").to_bare().to_string()
}

/// Sends an iq of type `ty` carrying `payload` and returns the reply,
/// whether a result or an error.
pub(crate) async fn iq(client: &mut Client, ty: &str, to: Option<&str>, payload: &str) -> Element {
    let id = client.next_id();
    let to = to.map(|to| format!(" to='{to}'")).unwrap_or_default();
    client
        .send(&format!("<iq type='{ty}' id='{id}'{to}>{payload}</iq>"))
        .await
        .unwrap();
    expect_reply(client, &id).await
}

/// Waits for the result or error of the iq with `id`.
pub(crate) async fn expect_reply(client: &mut Client, id: &str) -> Element {
    client
        .expect(
            |e| {
                e.name() == "iq"
                    && e.attr("id") == Some(id)
                    && matches!(e.attr("type"), Some("result" | "error"))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no reply to iq {id}: {error}"))
}

/// Asserts `reply` is `type='result'` and returns it.
pub(crate) fn assert_result(reply: &Element) -> &Element {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "expected a result: {reply}"
    );
    reply
}

/// The `type` and defined condition of a stanza's `<error/>`.
pub(crate) fn error_of(stanza: &Element) -> Option<(String, String)> {
    let error = stanza.child("error", stanza.ns())?;
    let condition = error
        .children()
        .find(|child| child.ns() == ns::STANZAS && child.name() != "text")?;
    Some((
        error.attr("type").unwrap_or_default().to_owned(),
        condition.name().to_owned(),
    ))
}

/// Asserts that `stanza` is an error stanza with this error type and condition.
pub(crate) fn assert_error(stanza: &Element, error_type: &str, condition: &str) {
    assert_eq!(stanza.attr("type"), Some("error"), "not an error: {stanza}");
    assert_eq!(
        error_of(stanza),
        Some((error_type.to_owned(), condition.to_owned())),
        "wrong error in {stanza}"
    );
}

/// Pings the server and waits for the answer: everything the server sent
/// this client because of its earlier stanzas has arrived by then.
pub(crate) async fn sync(client: &mut Client) {
    let reply = iq(client, "get", None, "<ping xmlns='urn:xmpp:ping'/>").await;
    assert_result(&reply);
}

/// A message from `from` to `to`'s full JID that `to` waits for: whatever
/// `from`'s earlier stanzas caused for `to` has arrived by then.
pub(crate) async fn barrier(from: &mut Client, to: &mut Client) {
    let marker = format!("barrier-{}", from.next_id());
    from.send(&format!(
        "<message to='{}' type='chat'><body>{marker}</body></message>",
        jid(to)
    ))
    .await
    .unwrap();
    to.expect(|e| is_message_with_body(e, &marker), WAIT)
        .await
        .unwrap_or_else(|error| panic!("barrier message lost: {error}"));
}

/// Asserts that no stanza matching `predicate` is waiting in the client's
/// queue (call after [`sync`] or [`barrier`]).
pub(crate) fn assert_none(client: &Client, what: &str, predicate: impl Fn(&Element) -> bool) {
    let found: Vec<String> = client
        .pending()
        .filter(|e| predicate(e))
        .map(Element::to_string)
        .collect();
    assert!(found.is_empty(), "unexpected {what}: {found:?}");
}

/// The text of the `<body/>` of a message.
pub(crate) fn body(message: &Element) -> String {
    message
        .children()
        .find(|child| child.name() == "body")
        .map(Element::text)
        .unwrap_or_default()
}

pub(crate) fn is_message_with_body(element: &Element, text: &str) -> bool {
    element.name() == "message" && body(element) == text
}

/// A presence from `from` of type `ty` (`None`: available).
pub(crate) fn is_presence(element: &Element, from: &str, ty: Option<&str>) -> bool {
    element.is("presence", ns::CLIENT)
        && element.attr("from") == Some(from)
        && element.attr("type") == ty
}

/// Waits for a presence from `from` of type `ty`.
pub(crate) async fn expect_presence(client: &mut Client, from: &str, ty: Option<&str>) -> Element {
    client
        .expect(|e| is_presence(e, from, ty), WAIT)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "no presence type {ty:?} from {from} for {}: {error}",
                jid(client)
            )
        })
}

/// A roster item as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) jid: String,
    pub(crate) name: Option<String>,
    pub(crate) subscription: String,
    pub(crate) ask: Option<String>,
    pub(crate) approved: bool,
    pub(crate) groups: Vec<String>,
}

impl Item {
    fn from_element(item: &Element) -> Item {
        Item {
            jid: item.attr("jid").unwrap_or_default().to_owned(),
            name: item.attr("name").map(str::to_owned),
            subscription: item.attr("subscription").unwrap_or("none").to_owned(),
            ask: item.attr("ask").map(str::to_owned),
            approved: matches!(item.attr("approved"), Some("true" | "1")),
            groups: item
                .children()
                .filter(|g| g.is("group", ns::ROSTER))
                .map(Element::text)
                .collect(),
        }
    }

    /// An item with this subscription and nothing else set.
    pub(crate) fn new(jid: &str, subscription: &str) -> Item {
        Item {
            jid: jid.to_owned(),
            name: None,
            subscription: subscription.to_owned(),
            ask: None,
            approved: false,
            groups: Vec::new(),
        }
    }

    pub(crate) fn asking(mut self) -> Item {
        self.ask = Some("subscribe".to_owned());
        self
    }

    pub(crate) fn approved(mut self) -> Item {
        self.approved = true;
        self
    }
}

/// The items of the roster query in an iq.
pub(crate) fn roster_items(iq: &Element) -> Vec<Item> {
    iq.child("query", ns::ROSTER)
        .map(|query| {
            query
                .children()
                .filter(|item| item.is("item", ns::ROSTER))
                .map(Item::from_element)
                .collect()
        })
        .unwrap_or_default()
}

/// The client's roster, sorted by JID.
pub(crate) async fn roster_get(client: &mut Client) -> Vec<Item> {
    let reply = iq(client, "get", None, "<query xmlns='jabber:iq:roster'/>").await;
    assert_result(&reply);
    assert!(
        reply.has_child("query", ns::ROSTER),
        "roster result without a query: {reply}"
    );
    let mut items = roster_items(&reply);
    items.sort_by(|a, b| a.jid.cmp(&b.jid));
    items
}

/// A roster push (RFC 6121 2.1.6) about `contact`.
pub(crate) fn is_push_for(element: &Element, contact: &str) -> bool {
    element.is("iq", ns::CLIENT)
        && element.attr("type") == Some("set")
        && roster_items(element).iter().any(|item| item.jid == contact)
}

/// Waits for a roster push about `contact` and checks what a push must be:
/// addressed to this resource, from the account or from nobody, one item.
pub(crate) async fn expect_push(client: &mut Client, contact: &str) -> Item {
    let push = client
        .expect(|e| is_push_for(e, contact), WAIT)
        .await
        .unwrap_or_else(|error| {
            panic!("no roster push about {contact} to {}: {error}", jid(client))
        });
    assert_eq!(push.attr("to"), Some(jid(client).as_str()), "push: {push}");
    let from = push.attr("from");
    assert!(
        from.is_none() || from == Some(bare(client).as_str()),
        "a push must come from the account: {push}"
    );
    let items = roster_items(&push);
    assert_eq!(items.len(), 1, "a push carries one item: {push}");
    items
        .into_iter()
        .next()
        .unwrap_or_else(|| Item::new(contact, "none"))
}

/// The SASL failure condition of a failed login, or a panic naming what
/// happened instead.
pub(crate) fn sasl_condition(result: Result<Client, ClientError>) -> String {
    match result {
        Err(ClientError::SaslFailure { condition, .. }) => condition,
        Err(other) => panic!("expected a SASL failure, got {other}"),
        Ok(client) => panic!("login succeeded as {}", jid(&client)),
    }
}

/// `from` asks for `to`'s presence and `to` approves, both online with
/// their rosters requested: the four steps of RFC 6121 3.1, each checked
/// only as far as needed to know it happened.
pub(crate) async fn subscribe(from: &mut Client, to: &mut Client) {
    let (from_bare, to_bare) = (bare(from), bare(to));
    from.send(&format!("<presence to='{to_bare}' type='subscribe'/>"))
        .await
        .unwrap();
    let asking = expect_push(from, &to_bare).await;
    assert_eq!(asking.ask.as_deref(), Some("subscribe"), "{asking:?}");
    expect_presence(to, &from_bare, Some("subscribe")).await;
    to.send(&format!("<presence to='{from_bare}' type='subscribed'/>"))
        .await
        .unwrap();
    let approved = expect_push(to, &from_bare).await;
    assert!(
        matches!(approved.subscription.as_str(), "from" | "both"),
        "{approved:?}"
    );
    let granted = expect_push(from, &to_bare).await;
    assert!(
        matches!(granted.subscription.as_str(), "to" | "both") && granted.ask.is_none(),
        "{granted:?}"
    );
    expect_presence(from, &to_bare, Some("subscribed")).await;
}

/// Mutual subscription ("both") between two online clients.
pub(crate) async fn befriend(a: &mut Client, b: &mut Client) {
    subscribe(a, b).await;
    subscribe(b, a).await;
}

/// PBKDF2 iterations of provisioned test accounts: the debug build derives
/// credentials slowly, and the count does not change what the tests prove.
pub(crate) const TEST_ITERATIONS: &str = "64";

/// `starling user provision`: users PREFIX1..PREFIXn with passwords
/// pw1..pwn, each with `roster` contacts, subscription both.
pub(crate) fn provision(node: &TestNode, prefix: &str, count: u32, roster: u32) {
    let (count, roster) = (count.to_string(), roster.to_string());
    let output = node.cli(&[
        "user",
        "provision",
        "--prefix",
        prefix,
        "--count",
        &count,
        "--password",
        "pw",
        "--roster-size",
        &roster,
        "--iterations",
        TEST_ITERATIONS,
    ]);
    assert!(
        output.status.success(),
        "provisioning failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
