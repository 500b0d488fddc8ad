//! Behaviour of the whole reader on realistic and hostile streams. Every
//! input goes through [`parse`], which feeds it whole, byte by byte and in
//! pseudo-random pieces and insists on identical results.

use starling_core::xml::{Element, Node, ns};

use super::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/// What one call sequence produced: events, then possibly a final error.
#[derive(Debug, PartialEq)]
enum Outcome {
    Event(StreamEvent),
    Error {
        condition: &'static str,
        text: String,
    },
}

fn run<'a>(limits: Limits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Outcome> {
    let mut parser = StreamParser::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => out.push(Outcome::Event(event)),
                Ok(None) => break,
                Err(error) => {
                    out.push(Outcome::Error {
                        condition: error.condition(),
                        text: error.to_string(),
                    });
                    // Dead streams stay dead with the same error.
                    assert_eq!(
                        parser.next_event().unwrap_err().to_string(),
                        error.to_string()
                    );
                    return out;
                }
            }
        }
    }
    out
}

/// Deterministic pseudo-random piece lengths in 1..=max.
fn pieces(input: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = ((state >> 33) as usize % max + 1).min(rest.len());
        let (piece, tail) = rest.split_at(len);
        out.push(piece);
        rest = tail;
    }
    out
}

fn parse_with(limits: Limits, input: &[u8]) -> Vec<Outcome> {
    let whole = run(limits, [input]);
    let bytewise = run(limits, input.chunks(1));
    assert_eq!(whole, bytewise, "byte-at-a-time feeding changed the result");
    for seed in 0..4 {
        let split = run(limits, pieces(input, seed, 13));
        assert_eq!(whole, split, "split with seed {seed} changed the result");
    }
    whole
}

fn parse(input: &str) -> Vec<Outcome> {
    parse_with(Limits::default(), input.as_bytes())
}

fn stanzas(input: &str) -> Vec<Element> {
    parse(input)
        .into_iter()
        .filter_map(|outcome| match outcome {
            Outcome::Event(StreamEvent::Stanza(element)) => Some(element),
            Outcome::Error { text, .. } => panic!("unexpected error: {text}"),
            _ => None,
        })
        .collect()
}

fn stanza(xml: &str) -> Element {
    let mut all = stanzas(&format!("{HEADER}{xml}"));
    assert_eq!(all.len(), 1, "expected one stanza from {xml}");
    all.remove(0)
}

/// The error a stream ends with, as (condition, text).
fn error_of(outcomes: Vec<Outcome>) -> (&'static str, String) {
    match outcomes.into_iter().last() {
        Some(Outcome::Error { condition, text }) => (condition, text),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn stream_error(after_header: &str) -> (&'static str, String) {
    error_of(parse(&format!("{HEADER}{after_header}")))
}

fn header_error(input: &str) -> (&'static str, String) {
    error_of(parse(input))
}

// ---- events ----

#[test]
fn t10_header_stanzas_keepalives_and_end() {
    let input = format!(
        "{HEADER}\n  <message to='romeo@example.net' type='chat'><body>hi</body></message>\
         \n \t <presence/>  </stream:stream>"
    );
    let outcomes = parse(&input);
    let expected_header = StreamHeader {
        to: Some("example.com".into()),
        from: None,
        id: None,
        version: Some("1.0".into()),
        lang: None,
        ns: ns::CLIENT.into(),
    };
    let message = Element::new("message", ns::CLIENT)
        .with_attr("to", "romeo@example.net")
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
    assert_eq!(
        outcomes,
        vec![
            Outcome::Event(StreamEvent::Header(expected_header)),
            Outcome::Event(StreamEvent::Stanza(message)),
            Outcome::Event(StreamEvent::Stanza(Element::new("presence", ns::CLIENT))),
            Outcome::Event(StreamEvent::End),
        ]
    );
}

#[test]
fn t10_header_reports_all_attributes() {
    let outcomes = parse(
        "<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:server' \
         to='a.example' from='b.example' id='xyz' version='1.0' xml:lang='fr' extra='ignored'>",
    );
    assert_eq!(
        outcomes,
        vec![Outcome::Event(StreamEvent::Header(StreamHeader {
            to: Some("a.example".into()),
            from: Some("b.example".into()),
            id: Some("xyz".into()),
            version: Some("1.0".into()),
            lang: Some("fr".into()),
            ns: ns::SERVER.into(),
        }))]
    );
}

#[test]
fn t10_prolog_may_have_bom_declaration_and_whitespace() {
    let input = format!(
        "\u{FEFF}<?xml version='1.0' encoding='UTF-8'?>\n\n{}",
        &HEADER[21..]
    );
    assert!(matches!(
        parse(&input).as_slice(),
        [Outcome::Event(StreamEvent::Header(_))]
    ));
    let no_declaration = format!("  \r\n{}", &HEADER[21..]);
    assert!(matches!(
        parse(&no_declaration).as_slice(),
        [Outcome::Event(StreamEvent::Header(_))]
    ));
}

#[test]
fn t10_stream_namespace_elements_resolve_to_it() {
    let features = stanza(
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>\
         </starttls></stream:features>",
    );
    assert!(features.is("features", ns::STREAM));
    let starttls = features.child("starttls", ns::TLS).unwrap();
    assert!(starttls.has_child("required", ns::TLS));
    let error = stanza(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    );
    assert!(error.is("error", ns::STREAM));
    assert!(error.has_child("conflict", ns::STREAM_ERRORS));
}

#[test]
fn t10_end_tag_may_carry_whitespace_and_other_prefixes() {
    let outcomes = parse(
        "<x:stream xmlns:x='http://etherx.jabber.org/streams' xmlns='jabber:client'>\
         <x:features/></x:stream  >",
    );
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[2], Outcome::Event(StreamEvent::End));
    match &outcomes[1] {
        Outcome::Event(StreamEvent::Stanza(features)) => {
            assert!(features.is("features", ns::STREAM))
        }
        other => panic!("{other:?}"),
    }
}

// ---- namespaces ----

#[test]
fn t20_default_namespaces_inherit_and_redeclare() {
    let iq = stanza(
        "<iq type='get' id='1'><query xmlns='jabber:iq:roster'><item jid='a@b'>\
         <group>Friends</group></item></query><x xmlns=''><y/></x></iq>",
    );
    assert_eq!(iq.ns(), ns::CLIENT);
    let query = iq.child("query", ns::ROSTER).unwrap();
    let item = query.child("item", ns::ROSTER).unwrap();
    assert_eq!(item.child("group", ns::ROSTER).unwrap().text(), "Friends");
    let x = iq.child("x", "").unwrap();
    assert!(x.has_child("y", ""));
}

#[test]
fn t20_prefixed_elements_and_attributes_resolve() {
    let message = stanza(
        "<message xmlns:e='urn:example:e'><e:payload e:level='3' plain='x'>\
         <e:inner/><other/></e:payload></message>",
    );
    let payload = message.child("payload", "urn:example:e").unwrap();
    assert_eq!(
        payload.attrs().collect::<Vec<_>>(),
        vec![
            ("e:level", "3"),
            ("xmlns:e", "urn:example:e"),
            ("plain", "x")
        ]
    );
    assert!(payload.has_child("inner", "urn:example:e"));
    // A prefix leaves the default namespace alone.
    assert!(payload.has_child("other", ns::CLIENT));
    // Declarations that no attribute needs are not kept.
    assert_eq!(message.attrs().count(), 0);
}

#[test]
fn t20_prefix_redeclaration_is_scoped() {
    let message = stanza(
        "<message xmlns:p='urn:one'><p:a><p:b xmlns:p='urn:two'><p:c/></p:b><p:d/></p:a>\
         </message>",
    );
    let a = message.child("a", "urn:one").unwrap();
    let b = a.child("b", "urn:two").unwrap();
    assert!(b.has_child("c", "urn:two"));
    assert!(a.has_child("d", "urn:one"));
}

#[test]
fn t20_header_declarations_reach_stanzas() {
    let outcomes = parse(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns:db='jabber:server:dialback'><db:result from='a' to='b'>key</db:result>",
    );
    match &outcomes[1] {
        Outcome::Event(StreamEvent::Stanza(result)) => {
            assert!(result.is("result", "jabber:server:dialback"));
            assert_eq!(result.text(), "key");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn t20_xml_prefix_needs_no_declaration() {
    let message = stanza("<message xml:lang='en'><body xml:lang='de'>Hallo</body></message>");
    assert_eq!(message.attr("xml:lang"), Some("en"));
    let body = message.child("body", ns::CLIENT).unwrap();
    assert_eq!(body.attr("xml:lang"), Some("de"));
    assert_eq!(body.attrs().count(), 1);
}

// ---- character data ----

#[test]
fn t30_references_decode_in_text_and_attributes() {
    let message = stanza(
        "<message to='a&amp;b&apos;c'><body>&lt;3 &amp; &quot;x&quot; &#65;&#x42;&#x1F600;\
         </body></message>",
    );
    assert_eq!(message.attr("to"), Some("a&b'c"));
    let body = message.child("body", ns::CLIENT).unwrap();
    assert_eq!(body.nodes().len(), 1, "adjacent character data is one node");
    assert_eq!(body.text(), "<3 & \"x\" AB😀");
}

#[test]
fn t30_cdata_becomes_text() {
    let body = stanza("<message><body>a<![CDATA[<b>&amp;]]]]>c</body></message>");
    let body = body.child("body", ns::CLIENT).unwrap();
    assert_eq!(body.nodes().len(), 1);
    assert_eq!(body.text(), "a<b>&amp;]]c");
}

#[test]
fn t30_line_ends_and_attribute_whitespace_normalise() {
    let message = stanza("<message id='a\tb\r\nc&#10;'><body>x\r\ny\rz</body></message>");
    assert_eq!(message.attr("id"), Some("a b c\n"));
    assert_eq!(message.child("body", ns::CLIENT).unwrap().text(), "x\ny\nz");
}

#[test]
fn t30_whitespace_inside_stanzas_is_kept() {
    let message = stanza("<message>\n  <body> x </body>\n</message>");
    assert_eq!(message.nodes().len(), 3);
    assert!(matches!(&message.nodes()[0], Node::Text(t) if t == "\n  "));
}

// ---- errors: not-well-formed ----

#[test]
fn t40_not_well_formed() {
    let cases = [
        (
            "<message><body>hi</message>",
            "</message> does not match <body>",
        ),
        ("<message>\u{1}</message>", "U+0001"),
        (
            "<message><body>&#0;</body></message>",
            "malformed reference",
        ),
        (
            "<message><body>&#xFFFE;</body></message>",
            "malformed reference",
        ),
        ("<message><body>a & b</body></message>", ""),
        ("hello", "character data outside"),
        ("<![CDATA[x]]>", "character data outside"),
        ("<message a='1' a='2'/>", "appears twice"),
        ("<message a=1/>", ""),
        ("<message a='<'/>", "'<' inside an attribute value"),
        ("<1message/>", "invalid name"),
        ("< message/>", "invalid name"),
        ("<message><a:b:c/></message>", "invalid name"),
        ("<message xmlns:p=''/>", "bad namespace declaration"),
        ("<message><!x></message>", "unrecognised markup"),
        ("<xml:message/>", "reserved namespace"),
        ("</stream:strea>", "does not match <stream:stream>"),
    ];
    for (input, text) in cases {
        let (condition, message) = stream_error(input);
        assert_eq!(condition, "not-well-formed", "{input}: {message}");
        assert!(message.contains(text), "{input}: {message}");
        assert!(message.contains("at byte"), "{input}: {message}");
    }
}

#[test]
fn t40_mismatched_end_is_reported_without_waiting() {
    // The closing tag of <body> never comes, yet the error is immediate.
    let outcomes = parse_with(
        Limits::default(),
        format!("{HEADER}<message><body>hi</message>").as_bytes(),
    );
    assert_eq!(error_of(outcomes).0, "not-well-formed");
}

#[test]
fn t40_invalid_utf8() {
    let mut input = HEADER.as_bytes().to_vec();
    input.extend_from_slice(b"<message><body>\xFF\xFE</body></message>");
    let (condition, text) = error_of(parse_with(Limits::default(), &input));
    assert_eq!(condition, "not-well-formed");
    assert!(text.contains("UTF-8"), "{text}");
    let mut header = HEADER.as_bytes().to_vec();
    header.insert(HEADER.len() - 2, 0xC3);
    let (condition, text) = error_of(parse_with(Limits::default(), &header));
    assert_eq!(condition, "not-well-formed");
    assert!(text.contains("UTF-8"), "{text}");
}

#[test]
fn t40_bad_prolog() {
    let cases = [
        (
            "GET / HTTP/1.1\r\n",
            "expected the stream header, found 'G'",
        ),
        (
            "<message xmlns='jabber:client'/>",
            "expected <stream:stream>, found <message>",
        ),
        ("</stream:stream>", "an end tag"),
        (
            "<stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams'/>",
            "empty element",
        ),
        ("<stream:stream/>", "empty element"),
        (
            "<?xml version='1.0'?><?xml version='1.0'?><stream:stream/>",
            "XML declaration may only open",
        ),
        ("<?xml version='1.0' foo='bar'?>", "bad XML declaration"),
    ];
    for (input, text) in cases {
        let (condition, message) = header_error(input);
        assert_eq!(condition, "not-well-formed", "{input}: {message}");
        assert!(message.contains(text), "{input}: {message}");
    }
}

// ---- errors: restricted-xml ----

#[test]
fn t41_restricted_xml() {
    let after_header = [
        ("<message><!-- hi --></message>", "comments"),
        ("<!-- between stanzas -->", "comments"),
        ("<?xml version='1.0'?>", "processing instructions"),
        (
            "<message><?php echo ?></message>",
            "processing instructions",
        ),
        ("<!DOCTYPE foo>", "document type"),
        ("<message><!ENTITY x 'y'></message>", "document type"),
        ("<message><body>&nbsp;</body></message>", "'&nbsp;'"),
        ("<message to='&ent;'/>", "'&ent;'"),
    ];
    for (input, text) in after_header {
        let (condition, message) = stream_error(input);
        assert_eq!(condition, "restricted-xml", "{input}: {message}");
        assert!(message.contains(text), "{input}: {message}");
    }
    for input in [
        "<!-- c --><stream:stream>",
        "<!DOCTYPE stream>",
        "<?php x ?>",
    ] {
        assert_eq!(header_error(input).0, "restricted-xml", "{input}");
    }
}

// ---- errors: namespaces ----

#[test]
fn t42_bad_namespace_prefix() {
    let (condition, text) = stream_error("<message><foo:bar/></message>");
    assert_eq!(condition, "bad-namespace-prefix");
    assert!(
        text.contains("'foo'") && text.contains("<foo:bar>"),
        "{text}"
    );
    let (condition, text) = stream_error("<message foo:a='1'/>");
    assert_eq!(condition, "bad-namespace-prefix");
    assert!(text.contains("<message>"), "{text}");
    // A declaration goes out of scope with its element.
    let (condition, _) = stream_error("<message><a xmlns:p='urn:p'/><p:b/></message>");
    assert_eq!(condition, "bad-namespace-prefix");
    let (condition, _) = header_error(
        "<stream:stream xmlns='jabber:client' xmlns:streams='http://etherx.jabber.org/streams'>",
    );
    assert_eq!(condition, "bad-namespace-prefix");
}

#[test]
fn t42_invalid_namespace() {
    for input in [
        "<stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams'>",
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://example.com/streams'>",
    ] {
        let (condition, text) = header_error(input);
        assert_eq!(condition, "invalid-namespace", "{input}: {text}");
    }
}

// ---- errors: policy-violation ----

#[test]
fn t43_oversized_stanza_is_caught_before_it_ends() {
    let limits = Limits {
        max_stanza_size: 1000,
        max_depth: 8,
    };
    let mut input = HEADER.as_bytes().to_vec();
    input.extend_from_slice(b"<message><body>");
    input.extend(std::iter::repeat_n(b'a', 2000));
    let (condition, text) = error_of(parse_with(limits, &input));
    assert_eq!(condition, "policy-violation");
    assert!(text.contains("exceeds the limit of 1000 bytes"), "{text}");
    assert!(
        text.contains(&format!("at byte {}", HEADER.len())),
        "{text}"
    );
}

#[test]
fn t43_stanza_of_exactly_the_limit_passes() {
    let stanza = format!("<message><body>{}</body></message>", "a".repeat(100));
    let at_limit = Limits {
        max_stanza_size: stanza.len(),
        max_depth: 8,
    };
    let input = format!("{HEADER}{stanza}{stanza}");
    let outcomes = parse_with(at_limit, input.as_bytes());
    assert_eq!(outcomes.len(), 3);
    let one_less = Limits {
        max_stanza_size: stanza.len() - 1,
        ..at_limit
    };
    assert_eq!(
        error_of(parse_with(one_less, input.as_bytes())).0,
        "policy-violation"
    );
}

#[test]
fn t43_too_deep() {
    let limits = Limits {
        max_stanza_size: 10_000,
        max_depth: 4,
    };
    let ok = format!("{HEADER}<a><b><c><d/></c></b></a>");
    assert!(matches!(
        parse_with(limits, ok.as_bytes()).last(),
        Some(Outcome::Event(StreamEvent::Stanza(_)))
    ));
    let deep = format!("{HEADER}<a><b><c><d><e>");
    let (condition, text) = error_of(parse_with(limits, deep.as_bytes()));
    assert_eq!(condition, "policy-violation");
    assert!(text.contains("deeper than the limit of 4"), "{text}");
}

#[test]
fn t43_too_many_attributes() {
    let attributes: String = (0..65).map(|i| format!(" a{i}='x'")).collect();
    let (condition, _) = stream_error(&format!("<message{attributes}/>"));
    assert_eq!(condition, "policy-violation");
}

#[test]
fn t43_endless_header_is_bounded_too() {
    let limits = Limits {
        max_stanza_size: 100,
        max_depth: 8,
    };
    let input = format!("<stream:stream foo='{}", "x".repeat(200));
    assert_eq!(
        error_of(parse_with(limits, input.as_bytes())).0,
        "policy-violation"
    );
}

// ---- errors: unsupported-encoding ----

#[test]
fn t44_unsupported_encoding() {
    let (condition, text) = header_error("<?xml version='1.0' encoding='ISO-8859-1'?>");
    assert_eq!(condition, "unsupported-encoding");
    assert!(text.contains("ISO-8859-1"), "{text}");
    let utf16: Vec<u8> = "\u{FEFF}<?xml version='1.0'?>"
        .encode_utf16()
        .flat_map(|unit| unit.to_le_bytes())
        .collect();
    assert_eq!(
        error_of(parse_with(Limits::default(), &utf16)).0,
        "unsupported-encoding"
    );
    let utf16_no_bom: Vec<u8> = "<stream:stream>"
        .encode_utf16()
        .flat_map(|unit| unit.to_be_bytes())
        .collect();
    assert_eq!(
        error_of(parse_with(Limits::default(), &utf16_no_bom)).0,
        "unsupported-encoding"
    );
}

// ---- restarts, buffering, memory ----

#[test]
fn t50_reset_expects_a_new_header() {
    let mut parser = StreamParser::new(Limits::default());
    parser.feed(HEADER.as_bytes());
    parser.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Header(_)))
    ));
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
    parser.reset();
    assert!(!parser.has_buffered_input());
    assert!(!parser.is_open());
    parser.feed(HEADER.as_bytes());
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Header(_)))
    ));
    assert!(parser.is_open());
}

#[test]
fn t50_bytes_pipelined_past_a_restart_are_visible() {
    let mut parser = StreamParser::new(Limits::default());
    parser.feed(HEADER.as_bytes());
    parser.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\x16\x03\x01");
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Header(_)))
    ));
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
    parser.reset();
    assert!(parser.has_buffered_input());
    assert_eq!(parser.buffered_len(), 3);
}

#[test]
fn t50_after_sasl_the_new_header_may_already_be_buffered() {
    let mut parser = StreamParser::new(Limits::default());
    parser.feed(HEADER.as_bytes());
    parser
        .feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>");
    parser.feed(HEADER.as_bytes());
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Header(_)))
    ));
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
    parser.reset();
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Header(_)))
    ));
    // Offsets restart with the stream.
    parser.feed(b"junk");
    let error = parser.next_event().unwrap_err();
    assert_eq!(error.offset(), HEADER.len() as u64);
}

#[test]
fn t50_idle_parser_holds_no_buffer() {
    let limits = Limits {
        max_stanza_size: 1 << 20,
        max_depth: 8,
    };
    let mut parser = StreamParser::new(limits);
    parser.feed(HEADER.as_bytes());
    assert!(parser.next_event().unwrap().is_some());
    assert_eq!(parser.buffer_capacity(), 0);

    let big = format!("<message><body>{}</body></message>", "x".repeat(200 * 1024));
    let (head, tail) = big.as_bytes().split_at(100 * 1024);
    parser.feed(head);
    assert!(parser.next_event().unwrap().is_none());
    assert!(parser.in_partial_stanza());
    assert_eq!(parser.buffered_len(), head.len());
    parser.feed(tail);
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
    assert!(!parser.in_partial_stanza());
    assert_eq!(parser.buffered_len(), 0);
    assert_eq!(parser.buffer_capacity(), 0);

    parser.feed(b"  \n ");
    assert!(parser.take_activity());
    assert!(!parser.take_activity());
    assert!(parser.next_event().unwrap().is_none());
    assert!(!parser.in_partial_stanza());
    assert_eq!(parser.buffer_capacity(), 0);
}

#[test]
fn t50_large_buffer_shrinks_while_traffic_continues() {
    let limits = Limits {
        max_stanza_size: 1 << 20,
        max_depth: 8,
    };
    let mut parser = StreamParser::new(limits);
    parser.feed(HEADER.as_bytes());
    parser.next_event().unwrap();
    let big = format!("<message><body>{}</body></message>", "x".repeat(200 * 1024));
    parser.feed(big.as_bytes());
    // A partial stanza is pending, so the buffer is never empty.
    parser.feed(b"<message><bo");
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
    assert!(parser.next_event().unwrap().is_none());
    parser.feed(b"dy>");
    assert!(
        parser.buffer_capacity() < 1024,
        "{}",
        parser.buffer_capacity()
    );
}

#[test]
fn t50_trickled_megabyte_costs_linear_time() {
    let limits = Limits {
        max_stanza_size: 2 << 20,
        max_depth: 8,
    };
    let mut body = String::new();
    while body.len() < 1 << 20 {
        body.push_str("<p class='x'>lorem &amp; ipsum</p> <![CDATA[ <> ]]> ");
    }
    let stanza = format!("<message><body xmlns='urn:x'>{body}</body></message>");
    let mut parser = StreamParser::new(limits);
    parser.feed(HEADER.as_bytes());
    parser.next_event().unwrap();
    let started = std::time::Instant::now();
    let before = parser.scanner_examined();
    let mut got = None;
    for piece in stanza.as_bytes().chunks(7) {
        parser.feed(piece);
        if let Some(event) = parser.next_event().unwrap() {
            got = Some(event);
        }
    }
    let examined = parser.scanner_examined() - before;
    assert!(matches!(got, Some(StreamEvent::Stanza(_))));
    // Every byte is looked at about once, however the input is split.
    assert!(
        examined <= stanza.len() as u64 + 16,
        "examined {examined} bytes of {}",
        stanza.len()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn t50_nothing_is_read_after_the_end() {
    let mut parser = StreamParser::new(Limits::default());
    parser.feed(HEADER.as_bytes());
    parser.feed(b"</stream:stream><message/>");
    assert!(matches!(
        parser.next_event(),
        Ok(Some(StreamEvent::Header(_)))
    ));
    assert!(matches!(parser.next_event(), Ok(Some(StreamEvent::End))));
    assert!(parser.next_event().unwrap().is_none());
    parser.feed(b"more");
    assert!(parser.next_event().unwrap().is_none());
    assert!(!parser.is_open());
}

// ---- round trips ----

/// Realistic stanzas a server sees, as clients write them.
const CORPUS: &[&str] = &[
    // Chat message with thread and a delay stamp.
    "<message from='juliet@example.com/balcony' to='romeo@example.net' type='chat' \
     id='ktx72v49' xml:lang='en'><body>Art thou not Romeo, &amp; a Montague?</body>\
     <thread parent='7edac73ab41e45c4aafa7b2d7b749080'>e0ffe42b28561960c6b12b944a092794b9683a38\
     </thread><delay xmlns='urn:xmpp:delay' from='capulet.com' stamp='2002-09-10T23:08:25Z'>\
     Offline Storage</delay><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    // Presence with show, status, priority and entity capabilities.
    "<presence xml:lang='en'><show>dnd</show><status>Wooing Juliet</status>\
     <status xml:lang='cs'>Dvo&#x0159;&#xED;m se Julii</status><priority>1</priority>\
     <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://psi-im.org' \
     ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>",
    // Roster set.
    "<iq from='juliet@example.com/balcony' id='rs1' type='set'>\
     <query xmlns='jabber:iq:roster' ver='ver7'><item jid='nurse@example.com' name='Nurse' \
     subscription='both' ask='subscribe'><group>Servants</group><group>Family &amp; Co</group>\
     </item><item jid='tybalt@example.com' subscription='remove'/></query></iq>",
    // Pub/sub publish with a namespaced Atom payload and publish options.
    "<iq type='set' from='hamlet@denmark.lit/blogbot' to='pubsub.shakespeare.lit' id='pub1'>\
     <pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='princely_musings'>\
     <item id='ae890ac52d0df67ed7cfdf51b644e901'><entry xmlns='http://www.w3.org/2005/Atom' \
     xmlns:thr='http://purl.org/syndication/thread/1.0'><title type='text'>Soliloquy</title>\
     <summary>To be, or not to be: that is the question:\n Whether 'tis nobler in the mind\
     </summary><link rel='alternate' type='text/html' thr:count='3' \
     href='http://denmark.lit/2003/12/13/atom03'/><id>tag:denmark.lit,2003:entry-32397</id>\
     <published>2003-12-13T18:30:02Z</published><updated>2003-12-13T18:30:02Z</updated>\
     </entry></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'>\
     <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options\
     </value></field><field var='pubsub#access_model'><value>presence</value></field></x>\
     </publish-options></pubsub></iq>",
    // SASL auth, challenge response and STARTTLS.
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>\
     biwsbj1qdWxpZXQscj1vTXNUQUF3QUFBQU1BQUFBTlAwVEFBQUFBQUJQVTBBQQ==</auth>",
    "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    // Resource binding and a ping.
    "<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
     <resource>balcony</resource></bind></iq>",
    "<iq to='example.com' id='c2s1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
    // A stanza error and stream-namespace elements.
    "<message type='error' id='x'><error type='cancel' by='example.com'>\
     <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
     <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>gone</text></error></message>",
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
     <mechanism>SCRAM-SHA-256</mechanism><mechanism>PLAIN</mechanism></mechanisms>\
     <ver xmlns='urn:xmpp:features:rosterver'/></stream:features>",
    "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
     <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>&lt;oops&gt;</text></stream:error>",
    // Prefixed payload, undeclared default, CDATA and awkward characters.
    "<message><p:x xmlns:p='urn:example:p' p:a='1'><p:y/><z xmlns=''>\t\r\n &#13;</z>\
     </p:x><body><![CDATA[if (a < b && c > d) {}]]> \u{e9}\u{1F600}</body></message>",
];

#[test]
fn t60_corpus_round_trips() {
    for xml in CORPUS {
        let parsed = stanza(xml);
        let written = element_to_bytes(&parsed);
        let reparsed = stanza(std::str::from_utf8(&written).unwrap());
        assert_eq!(parsed, reparsed, "{xml}");
        // Client stanzas also survive core's own serialiser.
        if parsed.ns() != ns::STREAM {
            assert_eq!(written, parsed.to_bytes());
        }
    }
}

#[test]
fn t60_corpus_parses_as_one_stream() {
    let mut input = String::from(HEADER);
    for xml in CORPUS {
        input.push_str(xml);
        input.push_str("\n ");
    }
    input.push_str("</stream:stream>");
    let outcomes = parse(&input);
    assert_eq!(outcomes.len(), CORPUS.len() + 2);
    assert_eq!(outcomes.last(), Some(&Outcome::Event(StreamEvent::End)));
}

#[test]
fn t60_stream_error_round_trips_through_the_reader() {
    let error = StreamError::StanzaTooLarge {
        offset: 7,
        limit: 10,
    };
    let element = error.to_element();
    let reparsed = stanza(std::str::from_utf8(&element_to_bytes(&element)).unwrap());
    assert_eq!(element, reparsed);
    assert!(reparsed.has_child("policy-violation", ns::STREAM_ERRORS));
}
