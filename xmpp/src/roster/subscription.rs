//! RFC 6121 presence subscription state machine (sections 3.1 to 3.4, Appendix A).
//!
//! Owns the rules for what one subscription-related presence stanza
//! (`subscribe`, `subscribed`, `unsubscribe`, `unsubscribed`) does to the
//! relation between a user and one contact, seen from the user's server:
//! [`outbound`] for stanzas the user sends, [`inbound`] for stanzas that arrive
//! for the user. Both are pure functions from the stored [`ContactState`] to an
//! outcome that says what to store, whether to push the roster item, whether to
//! forward the stanza, and what else the server must send. Storage, routing and
//! presence broadcast belong to the caller; nothing here does I/O.
//!
//! The RFC names nine states ("None", "None + Pending Out", ..., "Both");
//! [`SubState`] holds them as independent flags, plus the pre-approval of
//! section 3.4. A contact that asked for a subscription but is not in the
//! user's roster ("None + Pending In" with no roster item) is kept as a hidden
//! entry (`in_roster == false`): it is never pushed to or listed for clients,
//! and it disappears once nothing is pending.
//!
//! Appendix A only tabulates `subscribed`/`unsubscribed` for outbound stanzas;
//! outbound `subscribe`/`unsubscribe` are always routed (A.2: "without
//! exception", so a user can resynchronise) and their state changes come from
//! sections 3.1.2 and 3.3.2.

use std::fmt;

/// A subscription-related presence type (RFC 6121 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl SubscriptionKind {
    /// The presence `type` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::Subscribe => "subscribe",
            SubscriptionKind::Subscribed => "subscribed",
            SubscriptionKind::Unsubscribe => "unsubscribe",
            SubscriptionKind::Unsubscribed => "unsubscribed",
        }
    }

    /// Reads a presence `type` attribute; `None` for every other presence type.
    pub fn from_presence_type(value: &str) -> Option<Self> {
        match value {
            "subscribe" => Some(SubscriptionKind::Subscribe),
            "subscribed" => Some(SubscriptionKind::Subscribed),
            "unsubscribe" => Some(SubscriptionKind::Unsubscribe),
            "unsubscribed" => Some(SubscriptionKind::Unsubscribed),
            _ => None,
        }
    }
}

impl fmt::Display for SubscriptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The subscription between the user and one contact, from the user's side.
///
/// The state machine keeps three invariants, and [`SubState::normalized`]
/// restores them on values read from elsewhere: `pending_out` implies `!to`,
/// `pending_in` implies `!from`, and `preapproved` implies `!from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubState {
    /// The user receives the contact's presence.
    pub to: bool,
    /// The contact receives the user's presence.
    pub from: bool,
    /// The user asked for the contact's presence and has no answer yet
    /// (`ask='subscribe'` on the roster item).
    pub pending_out: bool,
    /// The contact asked for the user's presence and the user has not
    /// answered; the request is shown to the user's clients until then.
    pub pending_in: bool,
    /// The user pre-approved a future request from the contact (section 3.4,
    /// `approved='true'` on the roster item).
    pub preapproved: bool,
}

impl SubState {
    /// "None": no subscription either way and nothing pending.
    pub const NONE: SubState = SubState {
        to: false,
        from: false,
        pending_out: false,
        pending_in: false,
        preapproved: false,
    };

    /// The `subscription` attribute of the roster item.
    pub fn subscription(&self) -> Subscription {
        match (self.to, self.from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }

    /// Whether the roster item carries `ask='subscribe'`.
    pub fn ask(&self) -> bool {
        self.pending_out && !self.to
    }

    /// Whether the roster item carries `approved='true'`.
    pub fn approved(&self) -> bool {
        self.preapproved && !self.from
    }

    /// Clears flags that contradict the subscription itself, so that a state
    /// read from storage or written by hand behaves as one of the RFC's states.
    pub fn normalized(self) -> SubState {
        SubState {
            to: self.to,
            from: self.from,
            pending_out: self.pending_out && !self.to,
            pending_in: self.pending_in && !self.from,
            preapproved: self.preapproved && !self.from,
        }
    }
}

/// Names the state as RFC 6121 Appendix A does ("None + Pending Out+In"),
/// with "+ Pre-Approved" when section 3.4 applies.
impl fmt::Display for SubState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.normalized();
        let base = match state.subscription() {
            Subscription::None => "None",
            Subscription::To => "To",
            Subscription::From => "From",
            Subscription::Both => "Both",
        };
        f.write_str(base)?;
        match (state.pending_out, state.pending_in) {
            (true, true) => f.write_str(" + Pending Out+In")?,
            (true, false) => f.write_str(" + Pending Out")?,
            (false, true) => f.write_str(" + Pending In")?,
            (false, false) => {}
        }
        if state.preapproved {
            f.write_str(" + Pre-Approved")?;
        }
        Ok(())
    }
}

/// The `subscription` attribute values a roster item can have (RFC 6121 2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
}

/// What the user's server stores about one contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContactState {
    pub sub: SubState,
    /// The contact is an item of the user's roster. False only for a contact
    /// whose request is pending but whom the user never added: such an entry
    /// is not listed in roster results and never pushed.
    pub in_roster: bool,
}

impl ContactState {
    /// A roster item the user just added with a roster set (RFC 6121 2.3):
    /// subscription "none", nothing pending.
    pub const NEW_ITEM: ContactState = ContactState {
        sub: SubState::NONE,
        in_roster: true,
    };

    /// The state after a roster set for this contact: the subscription is
    /// untouched (the server ignores the client's subscription attributes) and
    /// a hidden entry becomes a visible item.
    pub fn after_roster_set(state: Option<ContactState>) -> ContactState {
        match state {
            Some(state) => ContactState {
                sub: state.sub.normalized(),
                in_roster: true,
            },
            None => ContactState::NEW_ITEM,
        }
    }

    /// The subscription attributes clients see on the roster item.
    pub fn view(&self) -> ItemView {
        ItemView {
            subscription: self.sub.subscription(),
            ask: self.sub.ask(),
            approved: self.sub.approved(),
        }
    }

    fn normalized(self) -> ContactState {
        ContactState {
            sub: self.sub.normalized(),
            in_roster: self.in_roster,
        }
    }

    /// A hidden entry exists only to remember a pending request.
    fn settled(self) -> Option<ContactState> {
        if self.in_roster || self.sub.pending_in {
            Some(self)
        } else {
            None
        }
    }
}

/// The subscription attributes of a roster item as clients see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemView {
    pub subscription: Subscription,
    /// `ask='subscribe'`.
    pub ask: bool,
    /// `approved='true'`.
    pub approved: bool,
}

/// What to do with the stored entry for the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Keep what is stored (including "nothing").
    Unchanged,
    /// Store this state, creating the entry if there was none.
    Store(ContactState),
    /// Delete the entry: it was hidden and nothing is pending any more.
    Delete,
}

impl Change {
    /// The stored state once the change is applied to `before`.
    pub fn apply(self, before: Option<ContactState>) -> Option<ContactState> {
        match self {
            Change::Unchanged => before,
            Change::Store(state) => Some(state),
            Change::Delete => None,
        }
    }
}

/// What happens to the stanza itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Outbound: stamp the user's bare JID and route it to the contact.
    /// Inbound: deliver it to the user's available resources (and keep it for
    /// later ones when it is a request; see [`InboundOutcome::show_request`]).
    Forward,
    /// Not forwarded because the user's server fully handled it: a
    /// pre-approval noted or cancelled, or a `subscribe` answered on the
    /// user's behalf.
    Absorbed,
    /// Not forwarded and nothing happens: the RFC tables say to ignore it.
    Ignored(IgnoreReason),
}

/// Why a stanza was silently ignored, for the caller's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// The contact has no entry at all with the user.
    UnknownContact,
    /// A "no state change" row of the Appendix A tables that is not forwarded.
    NoStateChange,
}

impl IgnoreReason {
    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::UnknownContact => "unknown_contact",
            IgnoreReason::NoStateChange => "no_state_change",
        }
    }
}

/// Presence the user's server must send to the contact from each of the
/// user's available resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceNotice {
    /// The user's current available presence: the contact just gained (or,
    /// on a resynchronising `subscribe`, still has) a subscription (3.1.5).
    Available,
    /// `type='unavailable'`: the contact just lost its subscription (3.2.2,
    /// 3.3.3).
    Unavailable,
}

/// The result of a subscription stanza sent by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundOutcome {
    pub change: Change,
    /// A roster push to the user's interested resources is due, with these
    /// attributes on the item (name and groups are the stored ones).
    pub push: Option<ItemView>,
    pub disposition: Disposition,
    pub presence_to_contact: Option<PresenceNotice>,
}

/// The result of a subscription stanza that arrived for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundOutcome {
    pub change: Change,
    /// A roster push to the user's interested resources is due, with these
    /// attributes on the item (name and groups are the stored ones).
    pub push: Option<ItemView>,
    pub disposition: Disposition,
    /// Send `<presence type='subscribed'/>` from the user's bare JID to the
    /// contact on the user's behalf (3.1.3 for an existing subscription, 3.4
    /// for a pre-approved contact).
    pub reply_subscribed: bool,
    /// A new request from the contact awaits the user's answer: show it to
    /// the user's available resources now and to every resource that becomes
    /// available until the user answers (3.1.3).
    pub show_request: bool,
    pub presence_to_contact: Option<PresenceNotice>,
}

/// Handles a subscription stanza the user sends to the contact.
///
/// `state` is what is stored for the contact, `None` when nothing is.
pub fn outbound(state: Option<ContactState>, kind: SubscriptionKind) -> OutboundOutcome {
    let before = state.map(ContactState::normalized);
    match kind {
        SubscriptionKind::Subscribe => outbound_subscribe(before),
        SubscriptionKind::Subscribed => outbound_subscribed(before),
        SubscriptionKind::Unsubscribe => outbound_unsubscribe(before),
        SubscriptionKind::Unsubscribed => outbound_unsubscribed(before),
    }
}

/// Handles a subscription stanza from the contact that arrived for the user.
///
/// `state` is what is stored for the contact, `None` when nothing is.
pub fn inbound(state: Option<ContactState>, kind: SubscriptionKind) -> InboundOutcome {
    let before = state.map(ContactState::normalized);
    match kind {
        SubscriptionKind::Subscribe => inbound_subscribe(before),
        SubscriptionKind::Subscribed => inbound_subscribed(before),
        SubscriptionKind::Unsubscribe => inbound_unsubscribe(before),
        SubscriptionKind::Unsubscribed => inbound_unsubscribed(before),
    }
}

/// What removing the contact from the roster (RFC 6121 2.5.2) sends on the
/// user's behalf, before the entry is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Removal {
    /// `unsubscribe` to the contact: the user had, or had asked for, the
    /// contact's presence.
    pub send_unsubscribe: bool,
    /// `unsubscribed` to the contact: the contact had, or had asked for, the
    /// user's presence.
    pub send_unsubscribed: bool,
    /// Unavailable presence to the contact from each available resource.
    pub send_unavailable: bool,
}

/// The stanzas a roster removal sends for a contact in `state`.
pub fn removal(state: SubState) -> Removal {
    let state = state.normalized();
    Removal {
        send_unsubscribe: state.to || state.pending_out,
        send_unsubscribed: state.from || state.pending_in,
        send_unavailable: state.from,
    }
}

/// Compares the entry before and after a transition: what to store, and
/// whether clients must see a new item (a hidden entry never is pushed).
fn diff(before: Option<ContactState>, after: Option<ContactState>) -> (Change, Option<ItemView>) {
    let change = if before == after {
        Change::Unchanged
    } else {
        match after {
            Some(state) => Change::Store(state),
            None => Change::Delete,
        }
    };
    let visible = |state: Option<ContactState>| {
        state
            .filter(|state| state.in_roster)
            .map(|state| state.view())
    };
    let push = match visible(after) {
        Some(view) if visible(before) != Some(view) => Some(view),
        _ => None,
    };
    (change, push)
}

fn outbound_outcome(
    before: Option<ContactState>,
    after: Option<ContactState>,
    disposition: Disposition,
    presence_to_contact: Option<PresenceNotice>,
) -> OutboundOutcome {
    let (change, push) = diff(before, after);
    OutboundOutcome {
        change,
        push,
        disposition,
        presence_to_contact,
    }
}

fn outbound_ignored(reason: IgnoreReason) -> OutboundOutcome {
    OutboundOutcome {
        change: Change::Unchanged,
        push: None,
        disposition: Disposition::Ignored(reason),
        presence_to_contact: None,
    }
}

/// 3.1.2: the contact becomes a roster item (if it was not one) marked
/// `ask='subscribe'` unless the user already has the subscription.
fn outbound_subscribe(before: Option<ContactState>) -> OutboundOutcome {
    let mut after = before.unwrap_or(ContactState::NEW_ITEM);
    after.in_roster = true;
    if !after.sub.to {
        after.sub.pending_out = true;
    }
    outbound_outcome(before, Some(after), Disposition::Forward, None)
}

/// A.2.1 and 3.4: approve a pending request, or else note a pre-approval.
fn outbound_subscribed(before: Option<ContactState>) -> OutboundOutcome {
    let Some(current) = before else {
        // 3.4 rule 4: a pre-approval for a stranger creates the roster item.
        let mut after = ContactState::NEW_ITEM;
        after.sub.preapproved = true;
        return outbound_outcome(None, Some(after), Disposition::Absorbed, None);
    };
    if current.sub.from {
        return outbound_ignored(IgnoreReason::NoStateChange);
    }
    let mut after = current;
    after.in_roster = true;
    if current.sub.pending_in {
        after.sub.from = true;
        after.sub.pending_in = false;
        after.sub.preapproved = false;
        return outbound_outcome(
            before,
            Some(after),
            Disposition::Forward,
            Some(PresenceNotice::Available),
        );
    }
    if current.sub.preapproved && current.in_roster {
        return outbound_ignored(IgnoreReason::NoStateChange);
    }
    after.sub.preapproved = true;
    outbound_outcome(before, Some(after), Disposition::Absorbed, None)
}

/// 3.3.2: drop the subscription to the contact and any pending request for it.
fn outbound_unsubscribe(before: Option<ContactState>) -> OutboundOutcome {
    let Some(current) = before else {
        return outbound_outcome(None, None, Disposition::Forward, None);
    };
    let mut after = current;
    after.sub.to = false;
    after.sub.pending_out = false;
    outbound_outcome(before, after.settled(), Disposition::Forward, None)
}

/// A.2.2, 3.2.2: cancel the contact's subscription or deny its request; in
/// the other rows, cancel a pre-approval if there is one.
fn outbound_unsubscribed(before: Option<ContactState>) -> OutboundOutcome {
    let Some(current) = before else {
        return outbound_ignored(IgnoreReason::UnknownContact);
    };
    let mut after = current;
    if current.sub.from || current.sub.pending_in {
        after.sub.from = false;
        after.sub.pending_in = false;
        after.sub.preapproved = false;
        let presence = current.sub.from.then_some(PresenceNotice::Unavailable);
        return outbound_outcome(before, after.settled(), Disposition::Forward, presence);
    }
    if current.sub.preapproved {
        after.sub.preapproved = false;
        return outbound_outcome(before, after.settled(), Disposition::Absorbed, None);
    }
    outbound_ignored(IgnoreReason::NoStateChange)
}

fn inbound_outcome(
    before: Option<ContactState>,
    after: Option<ContactState>,
    disposition: Disposition,
) -> InboundOutcome {
    let (change, push) = diff(before, after);
    InboundOutcome {
        change,
        push,
        disposition,
        reply_subscribed: false,
        show_request: false,
        presence_to_contact: None,
    }
}

fn inbound_ignored(reason: IgnoreReason) -> InboundOutcome {
    InboundOutcome {
        change: Change::Unchanged,
        push: None,
        disposition: Disposition::Ignored(reason),
        reply_subscribed: false,
        show_request: false,
        presence_to_contact: None,
    }
}

/// A.3.1, 3.1.3 and 3.4.
fn inbound_subscribe(before: Option<ContactState>) -> InboundOutcome {
    let Some(current) = before else {
        // "None + Pending In" for a contact that is not in the roster.
        let after = ContactState {
            sub: SubState {
                pending_in: true,
                ..SubState::NONE
            },
            in_roster: false,
        };
        let mut outcome = inbound_outcome(None, Some(after), Disposition::Forward);
        outcome.show_request = true;
        return outcome;
    };
    if current.sub.from {
        // The "no *" rows: the contact lost track of its subscription; answer
        // for the user and send presence the contact is entitled to anyway.
        let mut outcome = inbound_outcome(before, before, Disposition::Absorbed);
        outcome.reply_subscribed = true;
        outcome.presence_to_contact = Some(PresenceNotice::Available);
        return outcome;
    }
    let mut after = current;
    if current.sub.preapproved {
        after.sub.from = true;
        after.sub.preapproved = false;
        after.in_roster = true;
        let mut outcome = inbound_outcome(before, Some(after), Disposition::Absorbed);
        outcome.reply_subscribed = true;
        outcome.presence_to_contact = Some(PresenceNotice::Available);
        return outcome;
    }
    if current.sub.pending_in {
        return inbound_ignored(IgnoreReason::NoStateChange);
    }
    after.sub.pending_in = true;
    let mut outcome = inbound_outcome(before, Some(after), Disposition::Forward);
    outcome.show_request = true;
    outcome
}

/// A.3.3, 3.1.6: only an outstanding request of the user's can be approved.
fn inbound_subscribed(before: Option<ContactState>) -> InboundOutcome {
    let Some(current) = before else {
        return inbound_ignored(IgnoreReason::UnknownContact);
    };
    if !current.sub.pending_out {
        return inbound_ignored(IgnoreReason::NoStateChange);
    }
    let mut after = current;
    after.sub.to = true;
    after.sub.pending_out = false;
    inbound_outcome(before, Some(after), Disposition::Forward)
}

/// A.3.2, 3.3.3: the contact drops its subscription to the user, or
/// withdraws its request.
fn inbound_unsubscribe(before: Option<ContactState>) -> InboundOutcome {
    let Some(current) = before else {
        return inbound_ignored(IgnoreReason::UnknownContact);
    };
    if !current.sub.from && !current.sub.pending_in {
        return inbound_ignored(IgnoreReason::NoStateChange);
    }
    let mut after = current;
    after.sub.from = false;
    after.sub.pending_in = false;
    let mut outcome = inbound_outcome(before, after.settled(), Disposition::Forward);
    // 3.3.3 asks for unavailable presence whenever the stanza is delivered;
    // after a withdrawn request the contact never had presence to revoke.
    outcome.presence_to_contact = current.sub.from.then_some(PresenceNotice::Unavailable);
    outcome
}

/// A.3.4, 3.2.3: the contact cancels the user's subscription or denies the
/// user's request.
fn inbound_unsubscribed(before: Option<ContactState>) -> InboundOutcome {
    let Some(current) = before else {
        return inbound_ignored(IgnoreReason::UnknownContact);
    };
    if !current.sub.to && !current.sub.pending_out {
        return inbound_ignored(IgnoreReason::NoStateChange);
    }
    let mut after = current;
    after.sub.to = false;
    after.sub.pending_out = false;
    inbound_outcome(before, Some(after), Disposition::Forward)
}

#[cfg(test)]
mod tests;
