//! The one JID type every crate uses: RFC 7622 JIDs from the `jid` crate,
//! prepared (nodeprep, nameprep, resourceprep) when they are parsed.

pub use jid::{BareJid, Error as JidError, FullJid, Jid, NodePart, ResourcePart};
