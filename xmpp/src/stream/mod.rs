//! The XMPP stream codec (RFC 6120 sections 4 and 11): bytes from a client
//! become [`StreamEvent`]s, and stream-level output (header, errors,
//! `stream:`-prefixed elements) becomes bytes.
//!
//! This module owns the byte level; nothing outside it sees quick-xml. The
//! reader works in two steps:
//!
//! ```text
//!  feed(bytes) ──> buffer ──> scan ──(unit boundaries)──> header / build ──> StreamEvent
//!                             incremental, memchr       quick-xml over the
//!                             state kept across reads   complete slice
//! ```
//!
//! The scanner finds where each first-level element ends, enforcing the size
//! and depth limits as bytes arrive; the builder turns the complete slice into
//! an [`Element`] with namespaces resolved against
//! the stream header. Stream negotiation (what to do with the header, when to
//! restart) belongs to the connection, which calls [`StreamParser::reset`].

mod build;
mod codec;
mod error;
pub mod framing;
mod header;
mod lexical;
mod scan;
mod write;

pub use codec::StreamParser;
pub use error::{Malformed, Restricted, StreamError};
pub(crate) use write::write_prefixed;
pub use write::{
    STREAM_CLOSE, element_to_bytes, server_stream_header, stream_error, stream_error_bytes,
    stream_header, write_element,
};

use starling_core::xml::{Element, Str};

/// Bounds on what one client may make the reader hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest first-level element (or stream header) in bytes; one byte more
    /// is a `policy-violation`, reported as soon as it is buffered.
    pub max_stanza_size: usize,
    /// Deepest element nesting, the first-level element being depth 1.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_size: 64 * 1024,
            max_depth: 32,
        }
    }
}

/// What the reader produces from a client's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The opening `<stream:stream>`; at the start and after each restart.
    Header(StreamHeader),
    /// A complete first-level element: a stanza, or a negotiation element
    /// such as `<starttls/>`, `<auth/>` or `<stream:error/>`.
    Stanza(Element),
    /// The closing `</stream:stream>`.
    End,
}

/// The attributes of a stream header the connection negotiates with.
/// Values are as sent (entity-decoded); none is validated here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHeader {
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// The content namespace: `jabber:client` or `jabber:server`.
    pub ns: Str,
}

#[cfg(test)]
mod tests;

/// Parses one complete element written by [`Element::to_bytes`] (default
/// namespace `jabber:client`), e.g. a stanza read back from the store.
pub fn parse_element(xml: &[u8]) -> Result<Element, StreamError> {
    const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams'>";
    let mut parser = StreamParser::new(Limits {
        max_stanza_size: xml.len().max(HEADER.len()) + 1,
        max_depth: 256,
    });
    parser.feed(HEADER);
    parser.feed(xml);
    parser.feed(STREAM_CLOSE);
    loop {
        match parser.next_event()? {
            Some(StreamEvent::Stanza(element)) => return Ok(element),
            Some(StreamEvent::Header(_)) => continue,
            Some(StreamEvent::End) | None => {
                return Err(StreamError::NotWellFormed {
                    offset: 0,
                    problem: Malformed::UnexpectedEof,
                });
            }
        }
    }
}
