//! XEP-0045 7.2.14: the recent messages a room keeps for new occupants, and
//! the limits a joining client may put on them (`<history/>`).

use std::collections::VecDeque;

use starling_core::xml::Element;

use crate::util::time::parse_xep0082;

/// One kept message: the stanza as broadcast (no `to`), when the room
/// received it, and its size as XEP-0045 counts `maxchars`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub stanza: Element,
    pub stamp_ms: i64,
    pub chars: usize,
}

/// The newest `capacity` messages of a room, oldest first.
#[derive(Debug, Clone)]
pub struct History {
    entries: VecDeque<Entry>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> History {
        History {
            entries: VecDeque::new(),
            capacity,
        }
    }

    pub fn push(&mut self, stanza: Element, stamp_ms: i64) {
        if self.capacity == 0 {
            return;
        }
        let chars = stanza.to_bytes().len();
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            stanza,
            stamp_ms,
            chars,
        });
    }

    /// Puts `stanza` in place of the kept messages `which` picks (a
    /// retracted message's tombstone), keeping their time.
    pub fn replace(&mut self, which: impl Fn(&Element) -> bool, stanza: &Element) {
        for entry in self.entries.iter_mut().filter(|e| which(&e.stanza)) {
            entry.stanza = stanza.clone();
            entry.chars = stanza.to_bytes().len();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The kept entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries a join asking for `request` gets, oldest first: the
    /// newest ones that satisfy every limit it gave.
    pub fn select(&self, request: &HistoryRequest, now_ms: i64) -> Vec<&Entry> {
        let oldest_ms = match (request.seconds, request.since_ms) {
            (Some(seconds), Some(since)) => {
                Some(since.max(now_ms - i64::try_from(seconds).unwrap_or(i64::MAX) * 1000))
            }
            (Some(seconds), None) => {
                Some(now_ms.saturating_sub(i64::try_from(seconds).unwrap_or(i64::MAX) * 1000))
            }
            (None, since) => since,
        };
        let mut chosen = Vec::new();
        let mut chars = 0usize;
        for entry in self.entries.iter().rev() {
            if request.max_stanzas.is_some_and(|max| chosen.len() >= max) {
                break;
            }
            if oldest_ms.is_some_and(|oldest| entry.stamp_ms < oldest) {
                break;
            }
            if request
                .max_chars
                .is_some_and(|max| chars + entry.chars > max)
            {
                break;
            }
            chars += entry.chars;
            chosen.push(entry);
        }
        chosen.reverse();
        chosen
    }
}

/// The limits of a join's `<history/>` element; absent ones do not limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    pub max_stanzas: Option<usize>,
    pub max_chars: Option<usize>,
    pub seconds: Option<u64>,
    pub since_ms: Option<i64>,
}

impl HistoryRequest {
    /// Reads `<history maxchars maxstanzas seconds since/>`; a value that
    /// does not parse is ignored, as if absent.
    pub fn parse(history: Option<&Element>) -> HistoryRequest {
        let Some(history) = history else {
            return HistoryRequest::default();
        };
        HistoryRequest {
            max_stanzas: history.attr("maxstanzas").and_then(|v| v.parse().ok()),
            max_chars: history.attr("maxchars").and_then(|v| v.parse().ok()),
            seconds: history.attr("seconds").and_then(|v| v.parse().ok()),
            since_ms: history.attr("since").and_then(|v| parse_xep0082(v).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::xml::ns;

    fn message(text: &str) -> Element {
        Element::new("message", ns::CLIENT)
            .with_child(Element::new("body", ns::CLIENT).with_text(text))
    }

    fn history(count: usize) -> History {
        let mut history = History::new(5);
        for i in 0..count {
            history.push(message(&format!("m{i}")), 1_000 * i as i64);
        }
        history
    }

    fn bodies(entries: Vec<&Entry>) -> Vec<String> {
        entries
            .into_iter()
            .map(|e| e.stanza.child("body", ns::CLIENT).unwrap().text())
            .collect()
    }

    #[test]
    fn keeps_the_newest_up_to_its_capacity() {
        let history = history(8);
        assert_eq!(history.len(), 5);
        let all = history.select(&HistoryRequest::default(), 10_000);
        assert_eq!(bodies(all), ["m3", "m4", "m5", "m6", "m7"]);
    }

    #[test]
    fn maxstanzas_takes_the_newest() {
        let history = history(5);
        let request = HistoryRequest {
            max_stanzas: Some(2),
            ..HistoryRequest::default()
        };
        assert_eq!(bodies(history.select(&request, 10_000)), ["m3", "m4"]);
        let none = HistoryRequest {
            max_stanzas: Some(0),
            ..HistoryRequest::default()
        };
        assert!(history.select(&none, 10_000).is_empty());
    }

    #[test]
    fn maxchars_counts_whole_stanzas() {
        let history = history(5);
        let one = history.entries[0].chars;
        let request = HistoryRequest {
            max_chars: Some(one * 2 + 1),
            ..HistoryRequest::default()
        };
        assert_eq!(bodies(history.select(&request, 10_000)), ["m3", "m4"]);
    }

    #[test]
    fn seconds_and_since_cut_off_older_messages() {
        let history = history(5);
        let seconds = HistoryRequest {
            seconds: Some(2),
            ..HistoryRequest::default()
        };
        // now = 5 s: messages stamped 3 s and 4 s are within 2 s.
        assert_eq!(bodies(history.select(&seconds, 5_000)), ["m3", "m4"]);
        let since = HistoryRequest {
            since_ms: Some(4_000),
            ..HistoryRequest::default()
        };
        assert_eq!(bodies(history.select(&since, 5_000)), ["m4"]);
    }

    #[test]
    fn parses_the_history_element() {
        let element = Element::new("history", "http://jabber.org/protocol/muc")
            .with_attr("maxstanzas", "3")
            .with_attr("maxchars", "x")
            .with_attr("since", "1970-01-01T00:00:01Z");
        let request = HistoryRequest::parse(Some(&element));
        assert_eq!(request.max_stanzas, Some(3));
        assert_eq!(request.max_chars, None);
        assert_eq!(request.since_ms, Some(1_000));
    }
}
