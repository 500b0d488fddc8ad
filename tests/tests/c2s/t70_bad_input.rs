//! Bad input over raw sockets (RFC 6120 4.9.3 and 11): every case below ends in exactly the
//! stream error RFC 6120 names for it, inside a stream the server opened first, followed by
//! the TCP close. Alice and Bob chat through the whole run without losing a message, and
//! after each case two fresh clients log in and chat.

use std::sync::Arc;

use starling_tests::TestNode;

use crate::wire::{self, ChatPair, HEADER, MALLORY, Wire};

/// Whether the bad bytes come on a fresh connection or after a complete login.
#[derive(Clone, Copy, Debug)]
enum Stage {
    Connected,
    LoggedIn,
}

struct Case {
    name: &'static str,
    stage: Stage,
    /// Written in order, each as one write.
    input: Vec<Vec<u8>>,
    condition: &'static str,
}

fn connected(name: &'static str, condition: &'static str, input: &[&[u8]]) -> Case {
    Case {
        name,
        stage: Stage::Connected,
        input: input.iter().map(|piece| piece.to_vec()).collect(),
        condition,
    }
}

fn logged_in(name: &'static str, condition: &'static str, input: &[&[u8]]) -> Case {
    Case {
        stage: Stage::LoggedIn,
        ..connected(name, condition, input)
    }
}

/// The stanza size limit of the node under test.
const MAX_STANZA: usize = 4096;
/// The nesting limit of the node under test.
const MAX_DEPTH: usize = 16;

fn header_with(namespaces: &str, attributes: &str) -> Vec<u8> {
    format!("<?xml version='1.0'?><stream:stream {namespaces} {attributes}>").into_bytes()
}

const NAMESPACES: &str = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";

fn cases() -> Vec<Case> {
    let h = HEADER.as_bytes();
    // Never closed: the limit must trip while the stanza is still arriving.
    let oversized = format!(
        "<message to='bob@localhost' type='chat'><body>{}",
        "a".repeat(MAX_STANZA + 1000)
    );
    let deep = format!(
        "<message to='bob@localhost'>{}",
        "<x>".repeat(MAX_DEPTH + 4)
    );
    let deep_payload = format!(
        "<iq type='get' id='d'><query xmlns='jabber:iq:roster'>{}",
        "<item>".repeat(MAX_DEPTH + 4)
    );
    let huge_header = header_with(
        NAMESPACES,
        &format!(
            "to='localhost' version='1.0' id='{}'",
            "z".repeat(MAX_STANZA)
        ),
    );
    let many_attributes = format!(
        "<message to='bob@localhost' {}/>",
        (0..100)
            .map(|n| format!("a{n}='{n}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    vec![
        // Malformed XML: not-well-formed (4.9.3.13).
        connected(
            "mismatched end tag",
            "not-well-formed",
            &[h, b"<message to='bob@localhost'><body>hi</message>"],
        ),
        connected(
            "unquoted attribute value",
            "not-well-formed",
            &[h, b"<message to=bob@localhost><body>hi</body></message>"],
        ),
        connected(
            "duplicate attribute",
            "not-well-formed",
            &[h, b"<message to='a@localhost' to='b@localhost'/>"],
        ),
        connected(
            "'<' in an attribute value",
            "not-well-formed",
            &[h, b"<message to='a<b@localhost'/>"],
        ),
        connected(
            "invalid UTF-8 in a stanza",
            "not-well-formed",
            &[
                h,
                b"<message to='bob@localhost'><body>\xC3\x28\xFF</body></message>",
            ],
        ),
        connected(
            "invalid UTF-8 in the stream header",
            "not-well-formed",
            &[
                b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                xmlns:stream='http://etherx.jabber.org/streams' to='local\xFFhost' version='1.0'>",
            ],
        ),
        connected(
            "text at the top level",
            "not-well-formed",
            &[h, b"hello there"],
        ),
        connected(
            "character reference to NUL",
            "not-well-formed",
            &[
                h,
                b"<message to='bob@localhost'><body>&#0;</body></message>",
            ],
        ),
        connected(
            "character reference to a surrogate",
            "not-well-formed",
            &[
                h,
                b"<message to='bob@localhost'><body>&#xD800;</body></message>",
            ],
        ),
        connected(
            "control character",
            "not-well-formed",
            &[
                h,
                b"<message to='bob@localhost'><body>\x01</body></message>",
            ],
        ),
        connected(
            "overlong UTF-8",
            "not-well-formed",
            &[
                h,
                b"<message to='bob@localhost'><body>\xC0\xAF</body></message>",
            ],
        ),
        connected(
            "rebinding the xml prefix",
            "not-well-formed",
            &[h, b"<message xmlns:xml='urn:example:not-xml'/>"],
        ),
        logged_in(
            "mismatched end tag after login",
            "not-well-formed",
            &[b"<message to='bob@localhost'><body>hi</bodyx></message>"],
        ),
        logged_in(
            "invalid UTF-8 after login",
            "not-well-formed",
            &[b"<message to='bob@localhost'><body>\xED\xA0\x80</body></message>"],
        ),
        // Garbage before the header: the client's header never arrives.
        connected(
            "garbage before the stream header",
            "not-well-formed",
            &[b"hello", h],
        ),
        connected(
            "an HTTP request instead of a stream",
            "not-well-formed",
            &[b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"],
        ),
        connected(
            "a stanza instead of a stream header",
            "not-well-formed",
            &[b"<message to='bob@localhost'><body>hi</body></message>"],
        ),
        // Limits: policy-violation (4.9.3.12), before the element ends.
        connected(
            "oversized stanza before login",
            "policy-violation",
            &[h, oversized.as_bytes()],
        ),
        logged_in(
            "oversized stanza after login",
            "policy-violation",
            &[oversized.as_bytes()],
        ),
        connected(
            "oversized stream header",
            "policy-violation",
            &[&huge_header],
        ),
        connected(
            "nesting too deep before login",
            "policy-violation",
            &[h, deep.as_bytes()],
        ),
        logged_in(
            "nesting too deep in an iq payload",
            "policy-violation",
            &[deep_payload.as_bytes()],
        ),
        logged_in(
            "too many attributes",
            "policy-violation",
            &[many_attributes.as_bytes()],
        ),
        // Only UTF-8: unsupported-encoding (4.9.3.22, 11.6).
        connected(
            "UTF-16 in the XML declaration",
            "unsupported-encoding",
            &[&[b"<?xml version='1.0' encoding='UTF-16'?>", &h[21..]].concat()],
        ),
        connected(
            "UTF-16 byte order mark",
            "unsupported-encoding",
            &[b"\xFF\xFE<\x00s\x00t\x00"],
        ),
        // XML that XMPP forbids: restricted-xml (4.9.3.18, 11.1).
        connected(
            "document type declaration",
            "restricted-xml",
            &[b"<?xml version='1.0'?><!DOCTYPE stream:stream>", &h[21..]],
        ),
        connected(
            "entity declaration in an internal subset",
            "restricted-xml",
            &[
                b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY boom 'boom'>]>",
                &h[21..],
            ],
        ),
        connected(
            "entity declaration inside the stream",
            "restricted-xml",
            &[h, b"<!ENTITY boom 'boom'>"],
        ),
        connected(
            "undeclared entity reference",
            "restricted-xml",
            &[
                h,
                b"<message to='bob@localhost'><body>&boom;</body></message>",
            ],
        ),
        logged_in(
            "undeclared entity reference in an attribute",
            "restricted-xml",
            &[b"<message to='bob@localhost' id='&boom;'><body>x</body></message>"],
        ),
        connected(
            "comment between stanzas",
            "restricted-xml",
            &[h, b"<!-- hello -->"],
        ),
        logged_in(
            "comment inside a stanza",
            "restricted-xml",
            &[b"<message to='bob@localhost'><!-- hi --><body>x</body></message>"],
        ),
        connected(
            "processing instruction between stanzas",
            "restricted-xml",
            &[h, b"<?php echo 1; ?>"],
        ),
        logged_in(
            "processing instruction inside a stanza",
            "restricted-xml",
            &[b"<message to='bob@localhost'><?foo bar?><body>x</body></message>"],
        ),
        // Namespaces.
        connected(
            "undeclared element prefix",
            "bad-namespace-prefix",
            &[h, b"<foo:message to='bob@localhost'/>"],
        ),
        logged_in(
            "undeclared prefix in a payload attribute",
            "bad-namespace-prefix",
            &[b"<message to='bob@localhost'><body foo:lang='en'>x</body></message>"],
        ),
        connected(
            "stream header without the streams namespace",
            "bad-namespace-prefix",
            &[&header_with(
                "xmlns='jabber:client'",
                "to='localhost' version='1.0'",
            )],
        ),
        connected(
            "wrong streams namespace",
            "invalid-namespace",
            &[&header_with(
                "xmlns='jabber:client' xmlns:stream='http://example.org/streams'",
                "to='localhost' version='1.0'",
            )],
        ),
        connected(
            "wrong content namespace",
            "invalid-namespace",
            &[&header_with(
                "xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'",
                "to='localhost' version='1.0'",
            )],
        ),
        // The stream header's attributes.
        connected(
            "'to' of another domain",
            "host-unknown",
            &[&header_with(NAMESPACES, "to='example.org' version='1.0'")],
        ),
        connected(
            "version 2.0",
            "unsupported-version",
            &[&header_with(NAMESPACES, "to='localhost' version='2.0'")],
        ),
        // Order of negotiation: not-authorized (4.9.3.14).
        connected(
            "message before authentication",
            "not-authorized",
            &[h, b"<message to='bob@localhost'><body>hi</body></message>"],
        ),
        connected(
            "presence before authentication",
            "not-authorized",
            &[h, b"<presence/>"],
        ),
        connected(
            "roster get before authentication",
            "not-authorized",
            &[
                h,
                b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
            ],
        ),
        // After login.
        logged_in(
            "spoofed 'from' of another user",
            "invalid-from",
            &[b"<message from='bob@localhost/x' to='alice@localhost'><body>hi</body></message>"],
        ),
        logged_in(
            "spoofed 'from' of another domain",
            "invalid-from",
            &[b"<presence from='mallory@example.org'/>"],
        ),
        logged_in(
            "unknown first-level element in jabber:client",
            "unsupported-stanza-type",
            &[b"<foo/>"],
        ),
        logged_in(
            "unknown first-level element in another namespace",
            "unsupported-stanza-type",
            &[b"<x:foo xmlns:x='urn:example:foo'/>"],
        ),
    ]
}

async fn run_case(node: Arc<TestNode>, case: Case) {
    let mut wire = match case.stage {
        Stage::Connected => Wire::connect(node.c2s).await,
        Stage::LoggedIn => Wire::login(&node, MALLORY).await,
    };
    for piece in &case.input {
        // The server may already have closed after an earlier piece; what it said is
        // checked below either way.
        if wire.try_send(piece).await.is_err() {
            break;
        }
    }
    wire.expect_stream_error(case.condition).await;
    wire::assert_serves_fresh_clients(&node, case.name).await;
}

#[tokio::test]
async fn bad_input_ends_in_the_exact_stream_error() {
    let node = Arc::new(
        wire::node()
            .set("limits", &format!("max_stanza_size = {MAX_STANZA}"))
            .set("limits", &format!("max_depth = {MAX_DEPTH}"))
            .start(),
    );
    let pair = ChatPair::start(&node).await;
    let mut failures = Vec::new();
    let cases = cases();
    let count = cases.len();
    for case in cases {
        let name = case.name;
        let stage = case.stage;
        // A case that panics is reported with the others instead of hiding them.
        if let Err(error) = tokio::spawn(run_case(node.clone(), case)).await {
            let message = match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default(),
                Err(error) => error.to_string(),
            };
            failures.push(format!("{name} ({stage:?}): {message}"));
        }
    }
    let exchanged = pair.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(exchanged > 0, "the pair never chatted");
}

/// Over STARTTLS the same errors come back inside TLS, and the node carries on.
#[tokio::test]
async fn bad_input_inside_tls_gets_the_stream_error_inside_tls() {
    let node = wire::node()
        .set("limits", &format!("max_stanza_size = {MAX_STANZA}"))
        .start();
    let oversized = format!("<message><body>{}", "a".repeat(MAX_STANZA + 100));
    let cases: [(&str, &str); 5] = [
        ("<message><body>hi</message>", "not-well-formed"),
        (&oversized, "policy-violation"),
        ("<message><!-- hi --></message>", "restricted-xml"),
        (
            "<message from='bob@localhost/x' to='alice@localhost'/>",
            "invalid-from",
        ),
        ("<foo/>", "unsupported-stanza-type"),
    ];
    for (input, condition) in cases {
        let mut client = wire::login_tls(&node, MALLORY, None).await;
        assert!(client.is_tls());
        client.send(input).await.expect("send");
        client
            .expect_stream_error(condition, wire::WAIT)
            .await
            .unwrap_or_else(|error| panic!("{condition}: {error}"));
        assert!(client.is_closed());
    }
    wire::assert_serves_fresh_clients(&node, "bad input over TLS").await;
}
