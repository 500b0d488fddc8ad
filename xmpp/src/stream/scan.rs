//! The incremental boundary scanner: finds where the next unit of an XMPP
//! stream (XML declaration, stream header, first-level element, stream end)
//! ends, without building anything.
//!
//! Its state survives between reads, so every byte is examined once however
//! the input is split; a client trickling a large stanza costs linear time.
//! It jumps with memchr to the bytes that matter (`<`, `>`, quotes), tracks
//! element nesting and end-tag names, and rejects early what can be told from
//! the markup alone: comments, processing instructions, DTDs, text between
//! stanzas, mismatched end tags, units over the size limit and nesting over
//! the depth limit. Everything else is left to the tree builder, which sees
//! each unit whole.

use memchr::{memchr, memchr3};

use super::Limits;
use super::error::{Malformed, Restricted, StreamError};
use super::lexical::{is_name_start_byte, is_whitespace};

/// A complete unit of the stream: `buf[start..end]` in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unit {
    pub(super) kind: UnitKind,
    pub(super) end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnitKind {
    /// `<?xml ...?>` before the stream header.
    Declaration,
    /// The stream header's start tag (before a header only).
    Header,
    /// A complete first-level element (after a header only).
    Element,
    /// An end tag at first level: the stream's end (after a header only).
    Close,
}

/// Where the scanner is inside the current unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between units: only whitespace may be skipped.
    Idle,
    /// `pos` is at a `<` whose kind needs more bytes to tell.
    Markup,
    /// Character data inside an element.
    Text,
    /// Inside a start tag opened at `tag`; `quote` is the open quote or 0.
    StartTag { tag: usize, quote: u8 },
    /// Inside an end tag opened at `tag`.
    EndTag { tag: usize },
    /// Inside a CDATA section.
    CData,
    /// Inside the XML declaration.
    Declaration,
}

/// Scanner state kept between reads. Positions are indices into the
/// caller's buffer; the caller shifts them with [`Scanner::rebase`] when it
/// drops consumed bytes.
#[derive(Debug)]
pub(super) struct Scanner {
    pos: usize,
    lex: Lex,
    /// Elements open inside the current unit.
    depth: usize,
    /// Name spans (offset from the unit start, length) of the open elements,
    /// to check end tags as soon as they arrive.
    open: Vec<(u32, u32)>,
    /// Nothing of the current document has been seen: a byte order mark is allowed.
    document_start: bool,
    #[cfg(test)]
    pub(super) examined: u64,
}

const CDATA_OPEN: &[u8] = b"<![CDATA[";
const COMMENT_OPEN: &[u8] = b"<!--";
const DECLARATION_OPEN: &[u8] = b"<?xml";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How a `<...` sequence was classified.
enum Markup {
    NeedMore,
    StartTag,
    EndTag,
    CData,
    Declaration,
}

impl Scanner {
    pub(super) fn new() -> Self {
        Scanner {
            pos: 0,
            lex: Lex::Idle,
            depth: 0,
            open: Vec::new(),
            document_start: true,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Forgets everything about the current document (a stream restart).
    /// `pos` becomes the index of the first byte of the new document.
    pub(super) fn restart(&mut self, pos: usize) {
        self.pos = pos;
        self.lex = Lex::Idle;
        self.depth = 0;
        self.open.clear();
        self.document_start = true;
    }

    /// The caller dropped `shift` bytes from the front of its buffer.
    pub(super) fn rebase(&mut self, shift: usize) {
        self.pos = self.pos.saturating_sub(shift);
        match &mut self.lex {
            Lex::StartTag { tag, .. } | Lex::EndTag { tag } => *tag = tag.saturating_sub(shift),
            _ => {}
        }
    }

    /// True while a unit has begun but is not complete.
    pub(super) fn in_unit(&self) -> bool {
        self.lex != Lex::Idle
    }

    /// Releases the name stack's memory once it has grown past a few levels.
    pub(super) fn shrink_idle(&mut self) {
        if self.open.capacity() > 8 {
            self.open = Vec::new();
        }
    }

    /// Scans `buf` from where the last call stopped. Whitespace before a unit
    /// is consumed by moving `*start`; a unit is `buf[*start..unit.end]`.
    /// `prolog` is true before the stream header, `stream_base` is the stream
    /// offset of `buf[0]` (for error reports).
    pub(super) fn next_unit(
        &mut self,
        buf: &[u8],
        start: &mut usize,
        prolog: bool,
        limits: &Limits,
        stream_base: u64,
    ) -> Result<Option<Unit>, StreamError> {
        let at = |index: usize| stream_base + index as u64;
        loop {
            // A unit may not grow beyond the limit; scanning stops at the window's end.
            let window_end = start.saturating_add(limits.max_stanza_size).min(buf.len());
            match self.lex {
                Lex::Idle => {
                    if self.document_start && prolog {
                        match self.skip_byte_order_mark(buf, at)? {
                            true => *start = self.pos,
                            false => return Ok(None),
                        }
                    }
                    let rest = &buf[self.pos..];
                    let found = rest.iter().position(|&b| !is_whitespace(b));
                    self.count(found.map_or(rest.len(), |n| n + 1));
                    match found {
                        None => {
                            self.pos = buf.len();
                            *start = self.pos;
                            return Ok(None);
                        }
                        Some(n) => {
                            self.pos += n;
                            *start = self.pos;
                            if buf[self.pos] != b'<' {
                                return Err(self.stray_text(buf, prolog, at));
                            }
                            self.lex = Lex::Markup;
                        }
                    }
                }
                Lex::Markup => {
                    let markup = self.classify(&buf[self.pos..window_end], prolog, limits, at)?;
                    match markup {
                        Markup::NeedMore => return self.need_more(buf, *start, limits, at),
                        Markup::StartTag => {
                            self.lex = Lex::StartTag {
                                tag: self.pos,
                                quote: 0,
                            };
                            self.pos += 1;
                        }
                        Markup::EndTag => {
                            self.lex = Lex::EndTag { tag: self.pos };
                            self.pos += 2;
                        }
                        Markup::CData => {
                            self.lex = Lex::CData;
                            self.pos += CDATA_OPEN.len();
                        }
                        Markup::Declaration => {
                            self.lex = Lex::Declaration;
                            self.pos += DECLARATION_OPEN.len();
                        }
                    }
                }
                Lex::Text => {
                    let rest = &buf[self.pos..window_end];
                    match memchr(b'<', rest) {
                        Some(n) => {
                            self.count(n + 1);
                            self.pos += n;
                            self.lex = Lex::Markup;
                        }
                        None => {
                            self.count(rest.len());
                            self.pos = window_end;
                            return self.need_more(buf, *start, limits, at);
                        }
                    }
                }
                Lex::StartTag { tag, quote } => {
                    let found = self.advance_past(buf, window_end, |rest| {
                        if quote == 0 {
                            memchr3(b'>', b'"', b'\'', rest)
                        } else {
                            memchr(quote, rest)
                        }
                    });
                    let Some(index) = found else {
                        return self.need_more(buf, *start, limits, at);
                    };
                    let byte = buf[index];
                    if quote != 0 {
                        self.lex = Lex::StartTag { tag, quote: 0 };
                    } else if byte != b'>' {
                        self.lex = Lex::StartTag { tag, quote: byte };
                    } else if let Some(unit) = self.start_tag_done(buf, *start, tag, index, prolog)
                    {
                        return Ok(Some(unit));
                    }
                }
                Lex::EndTag { tag } => {
                    let Some(index) = self.advance_past(buf, window_end, |rest| memchr(b'>', rest))
                    else {
                        return self.need_more(buf, *start, limits, at);
                    };
                    if let Some(unit) = self.end_tag_done(buf, *start, tag, index, at)? {
                        return Ok(Some(unit));
                    }
                }
                Lex::CData => {
                    let Some(index) = self.advance_past(buf, window_end, |rest| memchr(b'>', rest))
                    else {
                        return self.need_more(buf, *start, limits, at);
                    };
                    // "<![CDATA[" ends in '[', so "]]" before '>' is always the section's end.
                    if buf[index - 2..index] == *b"]]" {
                        self.lex = Lex::Text;
                    }
                }
                Lex::Declaration => {
                    let Some(index) = self.advance_past(buf, window_end, |rest| memchr(b'>', rest))
                    else {
                        return self.need_more(buf, *start, limits, at);
                    };
                    if buf[index - 1] == b'?' {
                        self.lex = Lex::Idle;
                        return Ok(Some(Unit {
                            kind: UnitKind::Declaration,
                            end: index + 1,
                        }));
                    }
                }
            }
        }
    }

    #[inline]
    /// Moves past the byte `find` finds in the rest of the window and
    /// returns its index in `buf`; `None` when the window holds none (all
    /// of it examined: the caller asks for more input).
    fn advance_past(
        &mut self,
        buf: &[u8],
        window_end: usize,
        find: impl Fn(&[u8]) -> Option<usize>,
    ) -> Option<usize> {
        let rest = &buf[self.pos..window_end];
        let Some(n) = find(rest) else {
            self.count(rest.len());
            self.pos = window_end;
            return None;
        };
        self.count(n + 1);
        let index = self.pos + n;
        self.pos = index + 1;
        Some(index)
    }

    fn count(&mut self, _bytes: usize) {
        #[cfg(test)]
        {
            self.examined += _bytes as u64;
        }
    }

    /// More input is needed; unless the unit has already outgrown the limit.
    fn need_more(
        &self,
        buf: &[u8],
        start: usize,
        limits: &Limits,
        at: impl Fn(usize) -> u64,
    ) -> Result<Option<Unit>, StreamError> {
        if buf.len() - start > limits.max_stanza_size {
            Err(StreamError::StanzaTooLarge {
                offset: at(start),
                limit: limits.max_stanza_size,
            })
        } else {
            Ok(None)
        }
    }

    /// Skips a UTF-8 byte order mark and refuses other encodings' marks.
    /// Returns false when more bytes are needed to tell.
    fn skip_byte_order_mark(
        &mut self,
        buf: &[u8],
        at: impl Fn(usize) -> u64,
    ) -> Result<bool, StreamError> {
        let rest = &buf[self.pos..];
        let Some(&first) = rest.first() else {
            return Ok(false);
        };
        let encoding = match first {
            0xEF => {
                let known = rest.len().min(UTF8_BOM.len());
                if rest[..known] != UTF8_BOM[..known] {
                    return Err(self.stray_text(buf, true, at));
                }
                if known < UTF8_BOM.len() {
                    return Ok(false);
                }
                self.pos += UTF8_BOM.len();
                self.document_start = false;
                return Ok(true);
            }
            0xFE | 0xFF => "UTF-16 (byte order mark)",
            0x00 => "UTF-16 or UTF-32 (NUL byte)",
            _ => {
                self.document_start = false;
                return Ok(true);
            }
        };
        Err(StreamError::UnsupportedEncoding {
            offset: at(self.pos),
            encoding: encoding.to_owned(),
        })
    }

    fn stray_text(&self, buf: &[u8], prolog: bool, at: impl Fn(usize) -> u64) -> StreamError {
        let problem = if prolog {
            // Only the byte at hand: what follows may not have arrived yet.
            let shown = buf.get(self.pos).map_or(String::new(), |&b| {
                std::ascii::escape_default(b).to_string()
            });
            Malformed::BeforeHeader(format!("'{shown}'"))
        } else {
            Malformed::TextAtTopLevel
        };
        StreamError::malformed(at(self.pos), problem)
    }

    /// Tells what begins at `bytes[0] == b'<'`.
    fn classify(
        &self,
        bytes: &[u8],
        prolog: bool,
        limits: &Limits,
        at: impl Fn(usize) -> u64,
    ) -> Result<Markup, StreamError> {
        let here = at(self.pos);
        let Some(&second) = bytes.get(1) else {
            return Ok(Markup::NeedMore);
        };
        // `known` bytes of `bytes` agree with `pattern`: Some(true) full match,
        // Some(false) mismatch, None undecided yet.
        let matches = |pattern: &[u8]| {
            let known = bytes.len().min(pattern.len());
            if bytes[..known] != pattern[..known] {
                Some(false)
            } else if known == pattern.len() {
                Some(true)
            } else {
                None
            }
        };
        match second {
            b'/' => {
                if prolog {
                    return Err(StreamError::malformed(
                        here,
                        Malformed::BeforeHeader("an end tag".to_owned()),
                    ));
                }
                match bytes.get(2) {
                    None => Ok(Markup::NeedMore),
                    Some(&b) if is_name_start_byte(b) => Ok(Markup::EndTag),
                    Some(_) => Err(bad_name(here, &bytes[..3])),
                }
            }
            b'?' => {
                if !prolog {
                    return Err(StreamError::restricted(
                        here,
                        Restricted::ProcessingInstruction,
                    ));
                }
                match matches(DECLARATION_OPEN) {
                    None => Ok(Markup::NeedMore),
                    Some(false) => Err(StreamError::restricted(
                        here,
                        Restricted::ProcessingInstruction,
                    )),
                    Some(true) => match bytes.get(DECLARATION_OPEN.len()) {
                        None => Ok(Markup::NeedMore),
                        Some(&b) if is_whitespace(b) || b == b'?' => Ok(Markup::Declaration),
                        // `<?xml-stylesheet ...?>` and friends.
                        Some(_) => Err(StreamError::restricted(
                            here,
                            Restricted::ProcessingInstruction,
                        )),
                    },
                }
            }
            b'!' => {
                let Some(&third) = bytes.get(2) else {
                    return Ok(Markup::NeedMore);
                };
                match third {
                    b'-' => match matches(COMMENT_OPEN) {
                        None => Ok(Markup::NeedMore),
                        Some(true) => Err(StreamError::restricted(here, Restricted::Comment)),
                        Some(false) => Err(StreamError::malformed(here, Malformed::UnknownMarkup)),
                    },
                    b'[' => match matches(CDATA_OPEN) {
                        None => Ok(Markup::NeedMore),
                        Some(true) if self.depth > 0 => Ok(Markup::CData),
                        Some(true) if prolog => Err(StreamError::malformed(
                            here,
                            Malformed::BeforeHeader("a CDATA section".to_owned()),
                        )),
                        Some(true) => Err(StreamError::malformed(here, Malformed::TextAtTopLevel)),
                        Some(false) => Err(StreamError::malformed(here, Malformed::UnknownMarkup)),
                    },
                    // <!DOCTYPE, <!ENTITY, <!ELEMENT, <!ATTLIST, <!NOTATION
                    b'A'..=b'Z' => Err(StreamError::restricted(here, Restricted::Dtd)),
                    _ => Err(StreamError::malformed(here, Malformed::UnknownMarkup)),
                }
            }
            0x00 if prolog => Err(StreamError::UnsupportedEncoding {
                offset: here,
                encoding: "UTF-16 (NUL byte after '<')".to_owned(),
            }),
            b if is_name_start_byte(b) => {
                if !prolog && self.depth + 1 > limits.max_depth {
                    return Err(StreamError::TooDeep {
                        offset: here,
                        limit: limits.max_depth,
                    });
                }
                Ok(Markup::StartTag)
            }
            _ => Err(bad_name(here, &bytes[..2])),
        }
    }

    /// A start tag opened at `tag` closed at `gt`.
    fn start_tag_done(
        &mut self,
        buf: &[u8],
        start: usize,
        tag: usize,
        gt: usize,
        prolog: bool,
    ) -> Option<Unit> {
        let done = |kind| Some(Unit { kind, end: gt + 1 });
        if prolog {
            self.lex = Lex::Idle;
            return done(UnitKind::Header);
        }
        let empty = buf[gt - 1] == b'/';
        if empty {
            if self.depth == 0 {
                self.lex = Lex::Idle;
                return done(UnitKind::Element);
            }
        } else {
            let name_len = buf[tag + 1..gt]
                .iter()
                .position(|&b| is_whitespace(b) || b == b'/')
                .unwrap_or(gt - tag - 1);
            // Units are bounded by max_stanza_size, far below u32::MAX in any sane
            // configuration; saturating keeps a silly one from wrapping.
            let span_start = u32::try_from(tag + 1 - start).unwrap_or(u32::MAX);
            let span_len = u32::try_from(name_len).unwrap_or(u32::MAX);
            self.open.push((span_start, span_len));
            self.depth += 1;
        }
        self.lex = Lex::Text;
        None
    }

    /// An end tag opened at `tag` closed at `gt`.
    fn end_tag_done(
        &mut self,
        buf: &[u8],
        start: usize,
        tag: usize,
        gt: usize,
        at: impl Fn(usize) -> u64,
    ) -> Result<Option<Unit>, StreamError> {
        let inner = &buf[tag + 2..gt];
        let name_len = inner
            .iter()
            .position(|&b| is_whitespace(b))
            .unwrap_or(inner.len());
        let (name, trailer) = inner.split_at(name_len);
        if !trailer.iter().all(|&b| is_whitespace(b)) {
            return Err(StreamError::malformed(
                at(tag),
                Malformed::BadName(String::from_utf8_lossy(inner).into_owned()),
            ));
        }
        let Some((span_start, span_len)) = self.open.pop() else {
            self.lex = Lex::Idle;
            return Ok(Some(Unit {
                kind: UnitKind::Close,
                end: gt + 1,
            }));
        };
        let open_start = start + span_start as usize;
        let expected = buf
            .get(open_start..open_start + span_len as usize)
            .unwrap_or_default();
        if expected != name {
            return Err(StreamError::malformed(
                at(tag),
                Malformed::MismatchedEnd {
                    expected: String::from_utf8_lossy(expected).into_owned(),
                    found: String::from_utf8_lossy(name).into_owned(),
                },
            ));
        }
        self.depth -= 1;
        if self.depth == 0 {
            self.lex = Lex::Idle;
            return Ok(Some(Unit {
                kind: UnitKind::Element,
                end: gt + 1,
            }));
        }
        self.lex = Lex::Text;
        Ok(None)
    }
}

/// `bytes` are exactly those examined, so the report does not depend on
/// how much input had arrived.
fn bad_name(offset: u64, bytes: &[u8]) -> StreamError {
    StreamError::malformed(
        offset,
        Malformed::BadName(String::from_utf8_lossy(bytes).into_owned()),
    )
}
