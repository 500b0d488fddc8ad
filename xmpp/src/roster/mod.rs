//! RFC 6121 roster management: roster items and presence subscriptions.
//!
//! - [`subscription`]: the subscription state machine (sections 3 and 3.4,
//!   Appendix A): what one `subscribe`/`subscribed`/`unsubscribe`/
//!   `unsubscribed` does to the relation with one contact.
//! - [`query`]: the `jabber:iq:roster` payloads (section 2): typed items,
//!   roster set validation, result and push builders.
//!
//! - [`cached`]: a user's roster as the cache keeps it, compact because
//!   every online user's roster is cached; [`interned`]: the contact JIDs
//!   those rosters share.
//! - [`service`]: both applied with the store and the router: roster iqs,
//!   pushes, subscription stanzas in and out, pending requests at login.
//!
//! `subscription` and `query` are pure; `service` does the I/O and counts
//! every outcome.

pub mod cached;
pub mod interned;
pub mod query;
pub mod service;
pub mod subscription;

pub use query::{
    DEFAULT_MAX_TEXT_BYTES, ErrorCondition, ItemUpdate, RosterError, RosterItem, RosterLimits,
    RosterSet, SubscriptionAttr, requested_version, roster_push, roster_query, roster_result,
};
pub use subscription::{
    Change, ContactState, Disposition, IgnoreReason, InboundOutcome, ItemView, OutboundOutcome,
    PresenceNotice, Removal, SubState, Subscription, SubscriptionKind, inbound, outbound, removal,
};
