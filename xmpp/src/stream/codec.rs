//! [`StreamParser`]: the per-connection reader that turns the bytes a client
//! sends into [`StreamEvent`]s (RFC 6120 section 4).
//!
//! It owns the input buffer and the stream's state (before the header, open,
//! ended, failed) and hands complete units from the scanner to the header
//! parser or the tree builder. It keeps memory small for idle connections:
//! once every buffered byte has been consumed, the buffer is freed.

use super::build::build_element;
use super::error::{Malformed, StreamError};
use super::header::{StreamContext, parse_declaration, parse_header};
use super::lexical::is_whitespace;
use super::scan::{Scanner, UnitKind};
use super::{Limits, StreamEvent};

/// Buffers above this size are trimmed when the data they hold shrinks to a
/// quarter of their capacity, so one large stanza does not pin its memory
/// on a connection that never drains completely.
const SHRINK_ABOVE: usize = 16 * 1024;

/// The reading half of one XMPP stream.
///
/// Feed it bytes as they arrive and call [`next_event`](Self::next_event)
/// until it returns `Ok(None)`. Results do not depend on how the input was
/// split. After an error the stream is dead: the same error is returned
/// again and further input is discarded.
#[derive(Debug)]
pub struct StreamParser {
    limits: Limits,
    /// Bytes received and not yet consumed by an event start at `start`.
    buf: Vec<u8>,
    start: usize,
    /// Offset in the current stream of `buf[0]`, for error reports.
    base: u64,
    scanner: Scanner,
    state: State,
    /// Set by `feed`, cleared by `take_activity`.
    activity: bool,
}

#[derive(Debug)]
enum State {
    /// Waiting for the header; an XML declaration may still come first.
    Prolog {
        declaration_allowed: bool,
    },
    Open(StreamContext),
    /// `</stream:stream>` was read.
    Ended,
    Failed(Box<StreamError>),
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        StreamParser {
            limits,
            buf: Vec::new(),
            start: 0,
            base: 0,
            scanner: Scanner::new(),
            state: State::Prolog {
                declaration_allowed: true,
            },
            activity: false,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends received bytes. Ignored once the stream has ended or failed.
    pub fn feed(&mut self, data: &[u8]) {
        if data.is_empty() || matches!(self.state, State::Ended | State::Failed(_)) {
            return;
        }
        self.activity = true;
        if self.start > 0 {
            self.drop_consumed();
            let needed = self.buf.len() + data.len();
            if self.buf.capacity() > SHRINK_ABOVE && self.buf.capacity() / 4 > needed {
                self.buf.shrink_to(needed * 2);
            }
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete event, or `Ok(None)` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        let event =
            self.next_with(|bytes, context, offset| build_element(bytes, context, offset))?;
        Ok(event.map(|event| match event {
            Event::Header(header) => StreamEvent::Header(header),
            Event::Element(element) => StreamEvent::Stanza(element),
            Event::End => StreamEvent::End,
        }))
    }

    /// The next complete event with each first-level element handed to
    /// `element` as the bytes received (checked for size and nesting only):
    /// for output the server wrote itself, which needs no second parse.
    pub(super) fn next_with<T>(
        &mut self,
        element: impl FnOnce(&[u8], &StreamContext, u64) -> Result<T, StreamError>,
    ) -> Result<Option<Event<T>>, StreamError> {
        if let State::Failed(error) = &self.state {
            return Err((**error).clone());
        }
        let result = self.advance(element);
        match &result {
            Err(error) => {
                self.state = State::Failed(Box::new(error.clone()));
                self.buf = Vec::new();
                self.start = 0;
                self.scanner.restart(0);
            }
            Ok(_) if self.start == self.buf.len() => self.release(),
            Ok(_) => {}
        }
        result
    }

    /// Restarts the stream (after STARTTLS or SASL success): the next thing
    /// expected is a new stream header. Bytes already buffered stay and are
    /// read as the new stream; see [`has_buffered_input`](Self::has_buffered_input).
    /// A failed stream stays failed.
    pub fn reset(&mut self) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        self.drop_consumed();
        self.base = 0;
        self.scanner.restart(0);
        self.state = State::Prolog {
            declaration_allowed: true,
        };
    }

    /// Whether bytes are buffered that no event has consumed yet. Right after
    /// a STARTTLS restart this means the client sent data before the TLS
    /// handshake, which the connection must refuse.
    pub fn has_buffered_input(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Whether every unconsumed byte is XML whitespace (a client may end a
    /// line after `<starttls/>`; that is not data sent before the handshake).
    pub fn buffered_is_whitespace(&self) -> bool {
        self.buf[self.start..]
            .iter()
            .all(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
    }

    /// Number of buffered bytes not yet consumed by an event.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes of memory the input buffer holds (zero when idle).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether a stanza (or header) has started arriving but is not complete,
    /// as of the last [`next_event`](Self::next_event) call. The connection
    /// times this to cut off clients that trickle a stanza forever.
    pub fn in_partial_stanza(&self) -> bool {
        self.scanner.in_unit()
    }

    /// Whether any bytes, keepalive whitespace included, were fed since the
    /// last call.
    pub fn take_activity(&mut self) -> bool {
        std::mem::take(&mut self.activity)
    }

    /// Whether a header has been read and the stream has not ended or failed.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Bytes the scanner has looked at so far.
    #[cfg(test)]
    pub(super) fn scanner_examined(&self) -> u64 {
        self.scanner.examined
    }

    fn advance<T>(
        &mut self,
        element: impl FnOnce(&[u8], &StreamContext, u64) -> Result<T, StreamError>,
    ) -> Result<Option<Event<T>>, StreamError> {
        let mut element = Some(element);
        loop {
            let prolog = match self.state {
                State::Prolog { .. } => true,
                State::Open(_) => false,
                State::Ended | State::Failed(_) => return Ok(None),
            };
            let Some(unit) = self.scanner.next_unit(
                &self.buf,
                &mut self.start,
                prolog,
                &self.limits,
                self.base,
            )?
            else {
                return Ok(None);
            };
            let bytes = &self.buf[self.start..unit.end];
            let offset = self.base + self.start as u64;
            let event = match &mut self.state {
                State::Prolog {
                    declaration_allowed,
                } => {
                    if unit.kind == UnitKind::Declaration {
                        if !*declaration_allowed {
                            return Err(StreamError::malformed(
                                offset,
                                Malformed::MisplacedDeclaration,
                            ));
                        }
                        parse_declaration(bytes, offset)?;
                        *declaration_allowed = false;
                        None
                    } else {
                        let (header, context) = parse_header(bytes, offset)?;
                        self.state = State::Open(context);
                        Some(Event::Header(header))
                    }
                }
                State::Open(context) => {
                    if unit.kind == UnitKind::Close {
                        check_close(bytes, context, offset)?;
                        self.state = State::Ended;
                        Some(Event::End)
                    } else {
                        // Each call returns at the first element, so it is taken once.
                        let build = element.take().expect("one element per call");
                        Some(Event::Element(build(bytes, context, offset)?))
                    }
                }
                State::Ended | State::Failed(_) => return Ok(None),
            };
            self.start = unit.end;
            if event.is_some() {
                return Ok(event);
            }
        }
    }

    /// Moves unconsumed bytes to the front of the buffer.
    fn drop_consumed(&mut self) {
        let shift = self.start;
        if shift == 0 {
            return;
        }
        self.buf.drain(..shift);
        self.start = 0;
        self.base += shift as u64;
        self.scanner.rebase(shift);
    }

    /// Everything buffered was consumed: give the memory back.
    fn release(&mut self) {
        let len = self.buf.len();
        self.base += len as u64;
        self.scanner.rebase(len);
        self.start = 0;
        self.buf = Vec::new();
        self.scanner.shrink_idle();
    }
}

/// A stream event whose first-level element is whatever the caller made of its bytes.
pub(super) enum Event<T> {
    Header(super::StreamHeader),
    Element(T),
    End,
}

/// The stream's end tag must name the header's element.
fn check_close(bytes: &[u8], context: &StreamContext, offset: u64) -> Result<(), StreamError> {
    let name = bytes
        .get(2..bytes.len().saturating_sub(1))
        .unwrap_or_default();
    let name_len = name
        .iter()
        .position(|&b| is_whitespace(b))
        .unwrap_or(name.len());
    let name = &name[..name_len];
    if name == context.close_name.as_bytes() {
        return Ok(());
    }
    Err(StreamError::malformed(
        offset,
        Malformed::MismatchedEnd {
            expected: context.close_name.to_string(),
            found: String::from_utf8_lossy(name).into_owned(),
        },
    ))
}
