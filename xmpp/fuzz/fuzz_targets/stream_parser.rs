//! Feeds arbitrary bytes, split at arbitrary points, after a valid stream
//! header. Checks that the reader never panics, that the result does not
//! depend on the split, and that every stanza it returns serialises and
//! reads back as the same tree.
//!
//! Run with (stable toolchain):
//! `cd xmpp && RUSTC_BOOTSTRAP=1 cargo fuzz run stream_parser fuzz/corpus fuzz/seeds -- -max_total_time=300 -dict=fuzz/stream.dict`

#![no_main]

use starling_xmpp::stream::{Limits, StreamEvent, StreamParser, element_to_bytes};
use libfuzzer_sys::fuzz_target;
use starling_core::xml::Element;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

const LIMITS: Limits = Limits {
    max_stanza_size: 4096,
    max_depth: 16,
};

/// Everything a run produced, errors by condition and text.
#[derive(Debug, PartialEq)]
enum Outcome {
    Event(StreamEvent),
    Error(&'static str, String),
}

fn run<'a>(limits: Limits, pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Outcome> {
    let mut parser = StreamParser::new(limits);
    let mut out = Vec::new();
    for piece in std::iter::once(HEADER).chain(pieces) {
        parser.feed(piece);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => out.push(Outcome::Event(event)),
                Ok(None) => break,
                Err(error) => {
                    out.push(Outcome::Error(error.condition(), error.to_string()));
                    return out;
                }
            }
        }
    }
    out
}

/// Splits `body` into pieces whose lengths come from `lengths` (cycled).
fn split<'a>(body: &'a [u8], lengths: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut index = 0;
    while !rest.is_empty() {
        let len = lengths
            .get(index % lengths.len().max(1))
            .map_or(rest.len(), |&l| usize::from(l % 32) + 1)
            .min(rest.len());
        let (piece, tail) = rest.split_at(len);
        out.push(piece);
        rest = tail;
        index += 1;
    }
    out
}

fn reparse(stanza: &Element) {
    let written = element_to_bytes(stanza);
    let roomy = Limits {
        max_stanza_size: 1 << 30,
        ..LIMITS
    };
    let outcomes = run(roomy, [written.as_slice()]);
    match outcomes.as_slice() {
        [Outcome::Event(StreamEvent::Header(_)), Outcome::Event(StreamEvent::Stanza(again))] => {
            assert_eq!(
                again,
                stanza,
                "round trip changed the tree; written as {}",
                String::from_utf8_lossy(&written)
            );
        }
        other => panic!(
            "serialised stanza did not read back: {other:?}\nwritten: {}",
            String::from_utf8_lossy(&written)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how many of the following bytes give piece lengths.
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 8).min(rest.len());
    let (lengths, body) = rest.split_at(count);

    let split_outcomes = run(LIMITS, split(body, lengths));
    let whole_outcomes = run(LIMITS, [body]);
    assert_eq!(split_outcomes, whole_outcomes, "result depends on the split");

    for outcome in &whole_outcomes {
        if let Outcome::Event(StreamEvent::Stanza(stanza)) = outcome {
            reparse(stanza);
        }
    }
});
