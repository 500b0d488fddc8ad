//! The one JID type every crate uses: RFC 7622 JIDs from the `jid` crate,
//! prepared (nodeprep, nameprep, resourceprep) when they are parsed.

pub use jid::{BareJid, Error as JidError, FullJid, Jid, NodePart, ResourcePart};

/// The bare part of a JID as text, borrowed: `node@domain`, or `domain`.
///
/// For lookups and comparisons on the path of every stanza: `to_bare()`
/// builds a new JID through `format!`, this costs nothing. Two prepared
/// JIDs name the same account exactly when these texts are equal.
pub fn bare_str(jid: &Jid) -> &str {
    let text = jid.as_str();
    match jid.resource() {
        Some(resource) => &text[..text.len() - resource.as_str().len() - 1],
        None => text,
    }
}

/// Whether two JIDs name the same account (or the same server).
pub fn same_bare(a: &Jid, b: &Jid) -> bool {
    bare_str(a) == bare_str(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_text_drops_only_the_resource() {
        let full = Jid::new("Juliet@Example.com/balcony/with/slashes").unwrap();
        assert_eq!(bare_str(&full), "juliet@example.com");
        assert_eq!(bare_str(&full), full.to_bare().as_str());
        assert_eq!(bare_str(&Jid::new("example.com/r").unwrap()), "example.com");
        assert_eq!(
            bare_str(&Jid::new("a@example.com").unwrap()),
            "a@example.com"
        );
        assert_eq!(bare_str(&Jid::new("example.com").unwrap()), "example.com");
    }

    #[test]
    fn same_bare_compares_accounts() {
        let a = Jid::new("a@example.com/one").unwrap();
        assert!(same_bare(&a, &Jid::new("a@example.com/two").unwrap()));
        assert!(same_bare(&a, &Jid::new("a@example.com").unwrap()));
        assert!(!same_bare(&a, &Jid::new("a@example.org/one").unwrap()));
        assert!(!same_bare(&a, &Jid::new("example.com").unwrap()));
    }
}
