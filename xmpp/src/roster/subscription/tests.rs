//! One test per row of the RFC 6121 Appendix A tables (and of the outbound
//! `subscribe`/`unsubscribe` rules of 3.1.2 and 3.3.2), named
//! `<direction>_<stanza>_<state>`; then pre-approval (3.4), contacts absent
//! from the roster, and full exchanges between two users.

use super::*;
use Disposition::{Absorbed, Forward};
use SubscriptionKind::{Subscribe, Subscribed, Unsubscribe, Unsubscribed};

const fn state(to: bool, from: bool, pending_out: bool, pending_in: bool) -> SubState {
    SubState {
        to,
        from,
        pending_out,
        pending_in,
        preapproved: false,
    }
}

const NONE: SubState = state(false, false, false, false);
const NONE_PENDING_OUT: SubState = state(false, false, true, false);
const NONE_PENDING_IN: SubState = state(false, false, false, true);
const NONE_PENDING_OUT_IN: SubState = state(false, false, true, true);
const TO: SubState = state(true, false, false, false);
const TO_PENDING_IN: SubState = state(true, false, false, true);
const FROM: SubState = state(false, true, false, false);
const FROM_PENDING_OUT: SubState = state(false, true, true, false);
const BOTH: SubState = state(true, true, false, false);

const fn preapproved(sub: SubState) -> SubState {
    SubState {
        preapproved: true,
        ..sub
    }
}

fn visible(sub: SubState) -> ContactState {
    ContactState {
        sub,
        in_roster: true,
    }
}

fn hidden_request() -> ContactState {
    ContactState {
        sub: NONE_PENDING_IN,
        in_roster: false,
    }
}

/// The expected effect of one table row on a visible roster item.
struct Row {
    after: SubState,
    disposition: Disposition,
    push: bool,
    reply_subscribed: bool,
    show_request: bool,
    presence: Option<PresenceNotice>,
}

fn row(after: SubState, disposition: Disposition) -> Row {
    Row {
        after,
        disposition,
        push: false,
        reply_subscribed: false,
        show_request: false,
        presence: None,
    }
}

fn forward(after: SubState) -> Row {
    row(after, Forward)
}

fn absorbed(after: SubState) -> Row {
    row(after, Absorbed)
}

fn ignored(unchanged: SubState) -> Row {
    row(unchanged, Disposition::Ignored(IgnoreReason::NoStateChange))
}

impl Row {
    fn push(mut self) -> Self {
        self.push = true;
        self
    }

    fn reply_subscribed(mut self) -> Self {
        self.reply_subscribed = true;
        self
    }

    fn show_request(mut self) -> Self {
        self.show_request = true;
        self
    }

    fn presence(mut self, notice: PresenceNotice) -> Self {
        self.presence = Some(notice);
        self
    }
}

fn expected_change(before: ContactState, after: ContactState) -> Change {
    if before == after {
        Change::Unchanged
    } else {
        Change::Store(after)
    }
}

fn check_outbound(before: SubState, kind: SubscriptionKind, expected: Row) {
    let before = visible(before);
    let after = visible(expected.after);
    let outcome = outbound(Some(before), kind);
    let context = format!("outbound {kind} in {}", before.sub);
    assert_eq!(outcome.change, expected_change(before, after), "{context}");
    assert_eq!(outcome.disposition, expected.disposition, "{context}");
    assert_eq!(
        outcome.push,
        expected.push.then(|| after.view()),
        "{context}"
    );
    assert_eq!(outcome.presence_to_contact, expected.presence, "{context}");
    assert!(
        !expected.reply_subscribed && !expected.show_request,
        "not outbound fields"
    );
}

fn check_inbound(before: SubState, kind: SubscriptionKind, expected: Row) {
    let before = visible(before);
    let after = visible(expected.after);
    let outcome = inbound(Some(before), kind);
    let context = format!("inbound {kind} in {}", before.sub);
    assert_eq!(outcome.change, expected_change(before, after), "{context}");
    assert_eq!(outcome.disposition, expected.disposition, "{context}");
    assert_eq!(
        outcome.push,
        expected.push.then(|| after.view()),
        "{context}"
    );
    assert_eq!(
        outcome.reply_subscribed, expected.reply_subscribed,
        "{context}"
    );
    assert_eq!(outcome.show_request, expected.show_request, "{context}");
    assert_eq!(outcome.presence_to_contact, expected.presence, "{context}");
}

// --- Outbound "subscribe" (3.1.2; A.2: always routed) ---

#[test]
fn outbound_subscribe_none() {
    check_outbound(NONE, Subscribe, forward(NONE_PENDING_OUT).push());
}

#[test]
fn outbound_subscribe_none_pending_out() {
    check_outbound(NONE_PENDING_OUT, Subscribe, forward(NONE_PENDING_OUT));
}

#[test]
fn outbound_subscribe_none_pending_in() {
    check_outbound(
        NONE_PENDING_IN,
        Subscribe,
        forward(NONE_PENDING_OUT_IN).push(),
    );
}

#[test]
fn outbound_subscribe_none_pending_out_in() {
    check_outbound(NONE_PENDING_OUT_IN, Subscribe, forward(NONE_PENDING_OUT_IN));
}

#[test]
fn outbound_subscribe_to() {
    check_outbound(TO, Subscribe, forward(TO));
}

#[test]
fn outbound_subscribe_to_pending_in() {
    check_outbound(TO_PENDING_IN, Subscribe, forward(TO_PENDING_IN));
}

#[test]
fn outbound_subscribe_from() {
    check_outbound(FROM, Subscribe, forward(FROM_PENDING_OUT).push());
}

#[test]
fn outbound_subscribe_from_pending_out() {
    check_outbound(FROM_PENDING_OUT, Subscribe, forward(FROM_PENDING_OUT));
}

#[test]
fn outbound_subscribe_both() {
    check_outbound(BOTH, Subscribe, forward(BOTH));
}

// --- Outbound "unsubscribe" (3.3.2; A.2: always routed) ---

#[test]
fn outbound_unsubscribe_none() {
    check_outbound(NONE, Unsubscribe, forward(NONE));
}

#[test]
fn outbound_unsubscribe_none_pending_out() {
    check_outbound(NONE_PENDING_OUT, Unsubscribe, forward(NONE).push());
}

#[test]
fn outbound_unsubscribe_none_pending_in() {
    check_outbound(NONE_PENDING_IN, Unsubscribe, forward(NONE_PENDING_IN));
}

#[test]
fn outbound_unsubscribe_none_pending_out_in() {
    check_outbound(
        NONE_PENDING_OUT_IN,
        Unsubscribe,
        forward(NONE_PENDING_IN).push(),
    );
}

#[test]
fn outbound_unsubscribe_to() {
    check_outbound(TO, Unsubscribe, forward(NONE).push());
}

#[test]
fn outbound_unsubscribe_to_pending_in() {
    check_outbound(TO_PENDING_IN, Unsubscribe, forward(NONE_PENDING_IN).push());
}

#[test]
fn outbound_unsubscribe_from() {
    check_outbound(FROM, Unsubscribe, forward(FROM));
}

#[test]
fn outbound_unsubscribe_from_pending_out() {
    check_outbound(FROM_PENDING_OUT, Unsubscribe, forward(FROM).push());
}

#[test]
fn outbound_unsubscribe_both() {
    check_outbound(BOTH, Unsubscribe, forward(FROM).push());
}

// --- A.2.1 outbound "subscribed" (with 3.4 pre-approval) ---

#[test]
fn outbound_subscribed_none() {
    check_outbound(NONE, Subscribed, absorbed(preapproved(NONE)).push());
}

#[test]
fn outbound_subscribed_none_pending_out() {
    check_outbound(
        NONE_PENDING_OUT,
        Subscribed,
        absorbed(preapproved(NONE_PENDING_OUT)).push(),
    );
}

#[test]
fn outbound_subscribed_none_pending_in() {
    let row = forward(FROM).push().presence(PresenceNotice::Available);
    check_outbound(NONE_PENDING_IN, Subscribed, row);
}

#[test]
fn outbound_subscribed_none_pending_out_in() {
    let row = forward(FROM_PENDING_OUT)
        .push()
        .presence(PresenceNotice::Available);
    check_outbound(NONE_PENDING_OUT_IN, Subscribed, row);
}

#[test]
fn outbound_subscribed_to() {
    check_outbound(TO, Subscribed, absorbed(preapproved(TO)).push());
}

#[test]
fn outbound_subscribed_to_pending_in() {
    let row = forward(BOTH).push().presence(PresenceNotice::Available);
    check_outbound(TO_PENDING_IN, Subscribed, row);
}

#[test]
fn outbound_subscribed_from() {
    check_outbound(FROM, Subscribed, ignored(FROM));
}

#[test]
fn outbound_subscribed_from_pending_out() {
    check_outbound(FROM_PENDING_OUT, Subscribed, ignored(FROM_PENDING_OUT));
}

#[test]
fn outbound_subscribed_both() {
    check_outbound(BOTH, Subscribed, ignored(BOTH));
}

// --- A.2.2 outbound "unsubscribed" ---

#[test]
fn outbound_unsubscribed_none() {
    check_outbound(NONE, Unsubscribed, ignored(NONE));
}

#[test]
fn outbound_unsubscribed_none_pending_out() {
    check_outbound(NONE_PENDING_OUT, Unsubscribed, ignored(NONE_PENDING_OUT));
}

#[test]
fn outbound_unsubscribed_none_pending_in() {
    check_outbound(NONE_PENDING_IN, Unsubscribed, forward(NONE));
}

#[test]
fn outbound_unsubscribed_none_pending_out_in() {
    check_outbound(NONE_PENDING_OUT_IN, Unsubscribed, forward(NONE_PENDING_OUT));
}

#[test]
fn outbound_unsubscribed_to() {
    check_outbound(TO, Unsubscribed, ignored(TO));
}

#[test]
fn outbound_unsubscribed_to_pending_in() {
    check_outbound(TO_PENDING_IN, Unsubscribed, forward(TO));
}

#[test]
fn outbound_unsubscribed_from() {
    let row = forward(NONE).push().presence(PresenceNotice::Unavailable);
    check_outbound(FROM, Unsubscribed, row);
}

#[test]
fn outbound_unsubscribed_from_pending_out() {
    let row = forward(NONE_PENDING_OUT)
        .push()
        .presence(PresenceNotice::Unavailable);
    check_outbound(FROM_PENDING_OUT, Unsubscribed, row);
}

#[test]
fn outbound_unsubscribed_both() {
    let row = forward(TO).push().presence(PresenceNotice::Unavailable);
    check_outbound(BOTH, Unsubscribed, row);
}

// --- A.3.1 inbound "subscribe" ---

#[test]
fn inbound_subscribe_none() {
    check_inbound(NONE, Subscribe, forward(NONE_PENDING_IN).show_request());
}

#[test]
fn inbound_subscribe_none_pending_out() {
    check_inbound(
        NONE_PENDING_OUT,
        Subscribe,
        forward(NONE_PENDING_OUT_IN).show_request(),
    );
}

#[test]
fn inbound_subscribe_none_pending_in() {
    check_inbound(NONE_PENDING_IN, Subscribe, ignored(NONE_PENDING_IN));
}

#[test]
fn inbound_subscribe_none_pending_out_in() {
    check_inbound(NONE_PENDING_OUT_IN, Subscribe, ignored(NONE_PENDING_OUT_IN));
}

#[test]
fn inbound_subscribe_to() {
    check_inbound(TO, Subscribe, forward(TO_PENDING_IN).show_request());
}

#[test]
fn inbound_subscribe_to_pending_in() {
    check_inbound(TO_PENDING_IN, Subscribe, ignored(TO_PENDING_IN));
}

#[test]
fn inbound_subscribe_from() {
    let row = absorbed(FROM)
        .reply_subscribed()
        .presence(PresenceNotice::Available);
    check_inbound(FROM, Subscribe, row);
}

#[test]
fn inbound_subscribe_from_pending_out() {
    let row = absorbed(FROM_PENDING_OUT)
        .reply_subscribed()
        .presence(PresenceNotice::Available);
    check_inbound(FROM_PENDING_OUT, Subscribe, row);
}

#[test]
fn inbound_subscribe_both() {
    let row = absorbed(BOTH)
        .reply_subscribed()
        .presence(PresenceNotice::Available);
    check_inbound(BOTH, Subscribe, row);
}

// --- A.3.2 inbound "unsubscribe" ---

#[test]
fn inbound_unsubscribe_none() {
    check_inbound(NONE, Unsubscribe, ignored(NONE));
}

#[test]
fn inbound_unsubscribe_none_pending_out() {
    check_inbound(NONE_PENDING_OUT, Unsubscribe, ignored(NONE_PENDING_OUT));
}

#[test]
fn inbound_unsubscribe_none_pending_in() {
    check_inbound(NONE_PENDING_IN, Unsubscribe, forward(NONE));
}

#[test]
fn inbound_unsubscribe_none_pending_out_in() {
    check_inbound(NONE_PENDING_OUT_IN, Unsubscribe, forward(NONE_PENDING_OUT));
}

#[test]
fn inbound_unsubscribe_to() {
    check_inbound(TO, Unsubscribe, ignored(TO));
}

#[test]
fn inbound_unsubscribe_to_pending_in() {
    check_inbound(TO_PENDING_IN, Unsubscribe, forward(TO));
}

#[test]
fn inbound_unsubscribe_from() {
    let row = forward(NONE).push().presence(PresenceNotice::Unavailable);
    check_inbound(FROM, Unsubscribe, row);
}

#[test]
fn inbound_unsubscribe_from_pending_out() {
    let row = forward(NONE_PENDING_OUT)
        .push()
        .presence(PresenceNotice::Unavailable);
    check_inbound(FROM_PENDING_OUT, Unsubscribe, row);
}

#[test]
fn inbound_unsubscribe_both() {
    let row = forward(TO).push().presence(PresenceNotice::Unavailable);
    check_inbound(BOTH, Unsubscribe, row);
}

// --- A.3.3 inbound "subscribed" ---

#[test]
fn inbound_subscribed_none() {
    check_inbound(NONE, Subscribed, ignored(NONE));
}

#[test]
fn inbound_subscribed_none_pending_out() {
    check_inbound(NONE_PENDING_OUT, Subscribed, forward(TO).push());
}

#[test]
fn inbound_subscribed_none_pending_in() {
    check_inbound(NONE_PENDING_IN, Subscribed, ignored(NONE_PENDING_IN));
}

#[test]
fn inbound_subscribed_none_pending_out_in() {
    check_inbound(
        NONE_PENDING_OUT_IN,
        Subscribed,
        forward(TO_PENDING_IN).push(),
    );
}

#[test]
fn inbound_subscribed_to() {
    check_inbound(TO, Subscribed, ignored(TO));
}

#[test]
fn inbound_subscribed_to_pending_in() {
    check_inbound(TO_PENDING_IN, Subscribed, ignored(TO_PENDING_IN));
}

#[test]
fn inbound_subscribed_from() {
    check_inbound(FROM, Subscribed, ignored(FROM));
}

#[test]
fn inbound_subscribed_from_pending_out() {
    check_inbound(FROM_PENDING_OUT, Subscribed, forward(BOTH).push());
}

#[test]
fn inbound_subscribed_both() {
    check_inbound(BOTH, Subscribed, ignored(BOTH));
}

// --- A.3.4 inbound "unsubscribed" ---

#[test]
fn inbound_unsubscribed_none() {
    check_inbound(NONE, Unsubscribed, ignored(NONE));
}

#[test]
fn inbound_unsubscribed_none_pending_out() {
    check_inbound(NONE_PENDING_OUT, Unsubscribed, forward(NONE).push());
}

#[test]
fn inbound_unsubscribed_none_pending_in() {
    check_inbound(NONE_PENDING_IN, Unsubscribed, ignored(NONE_PENDING_IN));
}

#[test]
fn inbound_unsubscribed_none_pending_out_in() {
    check_inbound(
        NONE_PENDING_OUT_IN,
        Unsubscribed,
        forward(NONE_PENDING_IN).push(),
    );
}

#[test]
fn inbound_unsubscribed_to() {
    check_inbound(TO, Unsubscribed, forward(NONE).push());
}

#[test]
fn inbound_unsubscribed_to_pending_in() {
    check_inbound(TO_PENDING_IN, Unsubscribed, forward(NONE_PENDING_IN).push());
}

#[test]
fn inbound_unsubscribed_from() {
    check_inbound(FROM, Unsubscribed, ignored(FROM));
}

#[test]
fn inbound_unsubscribed_from_pending_out() {
    check_inbound(FROM_PENDING_OUT, Unsubscribed, forward(FROM).push());
}

#[test]
fn inbound_unsubscribed_both() {
    check_inbound(BOTH, Unsubscribed, forward(FROM).push());
}

// --- 3.4 pre-approval ---

#[test]
fn inbound_subscribe_none_preapproved_is_answered_for_the_user() {
    let row = absorbed(FROM)
        .push()
        .reply_subscribed()
        .presence(PresenceNotice::Available);
    check_inbound(preapproved(NONE), Subscribe, row);
}

#[test]
fn inbound_subscribe_none_pending_out_preapproved_is_answered_for_the_user() {
    let row = absorbed(FROM_PENDING_OUT)
        .push()
        .reply_subscribed()
        .presence(PresenceNotice::Available);
    check_inbound(preapproved(NONE_PENDING_OUT), Subscribe, row);
}

#[test]
fn inbound_subscribe_to_preapproved_is_answered_for_the_user() {
    let row = absorbed(BOTH)
        .push()
        .reply_subscribed()
        .presence(PresenceNotice::Available);
    check_inbound(preapproved(TO), Subscribe, row);
}

#[test]
fn outbound_subscribed_none_preapproved_again_is_ignored() {
    check_outbound(preapproved(NONE), Subscribed, ignored(preapproved(NONE)));
}

#[test]
fn outbound_unsubscribed_none_preapproved_cancels_the_preapproval() {
    check_outbound(preapproved(NONE), Unsubscribed, absorbed(NONE).push());
}

#[test]
fn outbound_unsubscribed_none_pending_out_preapproved_cancels_the_preapproval() {
    check_outbound(
        preapproved(NONE_PENDING_OUT),
        Unsubscribed,
        absorbed(NONE_PENDING_OUT).push(),
    );
}

#[test]
fn outbound_unsubscribed_to_preapproved_cancels_the_preapproval() {
    check_outbound(preapproved(TO), Unsubscribed, absorbed(TO).push());
}

#[test]
fn preapproval_survives_the_users_own_subscription_changes() {
    check_outbound(
        preapproved(NONE),
        Subscribe,
        forward(preapproved(NONE_PENDING_OUT)).push(),
    );
    check_inbound(
        preapproved(NONE_PENDING_OUT),
        Subscribed,
        forward(preapproved(TO)).push(),
    );
    check_inbound(preapproved(TO), Unsubscribe, ignored(preapproved(TO)));
}

#[test]
fn outbound_subscribed_to_unknown_contact_creates_a_preapproved_item() {
    let outcome = outbound(None, Subscribed);
    let expected = visible(preapproved(NONE));
    assert_eq!(outcome.change, Change::Store(expected));
    assert_eq!(outcome.disposition, Absorbed);
    assert_eq!(
        outcome.push,
        Some(ItemView {
            subscription: Subscription::None,
            ask: false,
            approved: true,
        })
    );
    assert_eq!(outcome.presence_to_contact, None);
}

// --- Contacts with no entry, and "None + Pending In" outside the roster ---

#[test]
fn inbound_subscribe_from_unknown_contact_keeps_a_hidden_request() {
    let outcome = inbound(None, Subscribe);
    assert_eq!(outcome.change, Change::Store(hidden_request()));
    assert_eq!(outcome.disposition, Forward);
    assert_eq!(outcome.push, None, "None + Pending In is never pushed");
    assert!(outcome.show_request);
    assert!(!outcome.reply_subscribed);
}

#[test]
fn inbound_subscribe_hidden_request_again_is_ignored() {
    let outcome = inbound(Some(hidden_request()), Subscribe);
    assert_eq!(outcome.change, Change::Unchanged);
    assert_eq!(
        outcome.disposition,
        Disposition::Ignored(IgnoreReason::NoStateChange)
    );
    assert!(!outcome.show_request);
}

#[test]
fn inbound_unsubscribe_hidden_request_withdraws_it() {
    let outcome = inbound(Some(hidden_request()), Unsubscribe);
    assert_eq!(outcome.change, Change::Delete);
    assert_eq!(outcome.disposition, Forward);
    assert_eq!(outcome.push, None);
    assert_eq!(outcome.presence_to_contact, None);
}

#[test]
fn inbound_subscribed_and_unsubscribed_leave_a_hidden_request_alone() {
    for kind in [Subscribed, Unsubscribed] {
        let outcome = inbound(Some(hidden_request()), kind);
        assert_eq!(outcome.change, Change::Unchanged, "{kind}");
        assert_eq!(
            outcome.disposition,
            Disposition::Ignored(IgnoreReason::NoStateChange),
            "{kind}"
        );
    }
}

#[test]
fn outbound_subscribed_hidden_request_approves_and_adds_the_item() {
    let outcome = outbound(Some(hidden_request()), Subscribed);
    assert_eq!(outcome.change, Change::Store(visible(FROM)));
    assert_eq!(outcome.disposition, Forward);
    assert_eq!(outcome.push, Some(visible(FROM).view()));
    assert_eq!(outcome.presence_to_contact, Some(PresenceNotice::Available));
}

#[test]
fn outbound_unsubscribed_hidden_request_denies_and_forgets_it() {
    let outcome = outbound(Some(hidden_request()), Unsubscribed);
    assert_eq!(outcome.change, Change::Delete);
    assert_eq!(outcome.disposition, Forward);
    assert_eq!(outcome.push, None);
    assert_eq!(outcome.presence_to_contact, None);
}

#[test]
fn outbound_subscribe_hidden_request_adds_the_item() {
    let outcome = outbound(Some(hidden_request()), Subscribe);
    assert_eq!(outcome.change, Change::Store(visible(NONE_PENDING_OUT_IN)));
    assert_eq!(outcome.disposition, Forward);
    assert_eq!(outcome.push, Some(visible(NONE_PENDING_OUT_IN).view()));
}

#[test]
fn outbound_unsubscribe_hidden_request_is_routed_without_change() {
    let outcome = outbound(Some(hidden_request()), Unsubscribe);
    assert_eq!(outcome.change, Change::Unchanged);
    assert_eq!(outcome.disposition, Forward);
    assert_eq!(outcome.push, None);
}

#[test]
fn outbound_subscribe_to_unknown_contact_adds_it_with_ask() {
    let outcome = outbound(None, Subscribe);
    assert_eq!(outcome.change, Change::Store(visible(NONE_PENDING_OUT)));
    assert_eq!(outcome.disposition, Forward);
    assert_eq!(
        outcome.push,
        Some(ItemView {
            subscription: Subscription::None,
            ask: true,
            approved: false,
        })
    );
}

#[test]
fn outbound_unsubscribe_to_unknown_contact_is_still_routed() {
    let outcome = outbound(None, Unsubscribe);
    assert_eq!(outcome.change, Change::Unchanged);
    assert_eq!(outcome.disposition, Forward);
    assert_eq!(outcome.push, None);
}

#[test]
fn outbound_unsubscribed_to_unknown_contact_is_ignored() {
    let outcome = outbound(None, Unsubscribed);
    assert_eq!(outcome.change, Change::Unchanged);
    assert_eq!(
        outcome.disposition,
        Disposition::Ignored(IgnoreReason::UnknownContact)
    );
}

#[test]
fn inbound_from_unknown_contact_other_than_subscribe_is_ignored() {
    for kind in [Subscribed, Unsubscribe, Unsubscribed] {
        let outcome = inbound(None, kind);
        assert_eq!(outcome.change, Change::Unchanged, "{kind}");
        assert_eq!(
            outcome.disposition,
            Disposition::Ignored(IgnoreReason::UnknownContact),
            "{kind}"
        );
        assert_eq!(outcome.push, None, "{kind}");
    }
}

// --- Derived attributes, normalisation, removal ---

#[test]
fn item_attributes_follow_the_state() {
    let cases = [
        (NONE, "none", false),
        (NONE_PENDING_OUT, "none", true),
        (NONE_PENDING_IN, "none", false),
        (NONE_PENDING_OUT_IN, "none", true),
        (TO, "to", false),
        (TO_PENDING_IN, "to", false),
        (FROM, "from", false),
        (FROM_PENDING_OUT, "from", true),
        (BOTH, "both", false),
    ];
    for (sub, subscription, ask) in cases {
        assert_eq!(sub.subscription().as_str(), subscription, "{sub}");
        assert_eq!(sub.ask(), ask, "{sub}");
        assert!(!sub.approved(), "{sub}");
        assert!(preapproved(sub).approved() || sub.from, "{sub}");
    }
}

#[test]
fn states_are_named_as_in_the_rfc() {
    assert_eq!(NONE.to_string(), "None");
    assert_eq!(NONE_PENDING_OUT_IN.to_string(), "None + Pending Out+In");
    assert_eq!(TO_PENDING_IN.to_string(), "To + Pending In");
    assert_eq!(FROM_PENDING_OUT.to_string(), "From + Pending Out");
    assert_eq!(preapproved(TO).to_string(), "To + Pre-Approved");
}

#[test]
fn contradictory_stored_flags_are_normalised() {
    let odd = SubState {
        to: true,
        from: true,
        pending_out: true,
        pending_in: true,
        preapproved: true,
    };
    assert_eq!(odd.normalized(), BOTH);
    assert!(!odd.ask());
    assert!(!odd.approved());
    // A contradictory Both behaves as Both: a new request is answered.
    let outcome = inbound(Some(visible(odd)), Subscribe);
    assert!(outcome.reply_subscribed);
}

#[test]
fn presence_types_parse_and_print() {
    for kind in [Subscribe, Subscribed, Unsubscribe, Unsubscribed] {
        assert_eq!(
            SubscriptionKind::from_presence_type(kind.as_str()),
            Some(kind)
        );
    }
    assert_eq!(SubscriptionKind::from_presence_type("unavailable"), None);
    assert_eq!(SubscriptionKind::from_presence_type("probe"), None);
}

#[test]
fn removal_cancels_both_directions_and_pending_requests() {
    assert_eq!(
        removal(BOTH),
        Removal {
            send_unsubscribe: true,
            send_unsubscribed: true,
            send_unavailable: true,
        }
    );
    assert_eq!(
        removal(NONE_PENDING_OUT_IN),
        Removal {
            send_unsubscribe: true,
            send_unsubscribed: true,
            send_unavailable: false,
        }
    );
    assert_eq!(
        removal(NONE),
        Removal {
            send_unsubscribe: false,
            send_unsubscribed: false,
            send_unavailable: false,
        }
    );
    assert_eq!(
        removal(TO_PENDING_IN),
        Removal {
            send_unsubscribe: true,
            send_unsubscribed: true,
            send_unavailable: false,
        }
    );
}

#[test]
fn roster_set_makes_a_hidden_request_visible_without_touching_it() {
    assert_eq!(ContactState::after_roster_set(None), visible(NONE));
    assert_eq!(
        ContactState::after_roster_set(Some(hidden_request())),
        visible(NONE_PENDING_IN)
    );
    assert_eq!(
        ContactState::after_roster_set(Some(visible(BOTH))),
        visible(BOTH)
    );
}

// --- Two users end to end ---

/// One user's server as seen by the exchange: the entry it keeps for the
/// other user, plus what its clients were shown.
#[derive(Default)]
struct Side {
    entry: Option<ContactState>,
    pushes: Vec<ItemView>,
    requests_shown: usize,
    presence_sent: Vec<PresenceNotice>,
    ignored: usize,
}

impl Side {
    fn sub(&self) -> Option<SubState> {
        self.entry.map(|entry| entry.sub)
    }

    fn listed(&self) -> bool {
        self.entry.is_some_and(|entry| entry.in_roster)
    }
}

/// `sender` sends `kind` to `receiver`; both servers apply the state machine
/// and the receiver's automatic answer goes back to the sender.
fn send(sender: &mut Side, receiver: &mut Side, kind: SubscriptionKind) {
    let out = outbound(sender.entry, kind);
    sender.entry = out.change.apply(sender.entry);
    sender.pushes.extend(out.push);
    sender.presence_sent.extend(out.presence_to_contact);
    match out.disposition {
        Forward => {}
        Absorbed => return,
        Disposition::Ignored(_) => {
            sender.ignored += 1;
            return;
        }
    }
    let arrived = inbound(receiver.entry, kind);
    receiver.entry = arrived.change.apply(receiver.entry);
    receiver.pushes.extend(arrived.push);
    receiver.presence_sent.extend(arrived.presence_to_contact);
    if arrived.show_request {
        receiver.requests_shown += 1;
    }
    if let Disposition::Ignored(_) = arrived.disposition {
        receiver.ignored += 1;
    }
    if arrived.reply_subscribed {
        let answer = inbound(sender.entry, Subscribed);
        sender.entry = answer.change.apply(sender.entry);
        sender.pushes.extend(answer.push);
    }
}

fn pair() -> (Side, Side) {
    (Side::default(), Side::default())
}

#[test]
fn handshake_subscribe_then_approve() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    assert_eq!(alice.sub(), Some(NONE_PENDING_OUT));
    assert!(alice.listed());
    assert_eq!(bob.sub(), Some(NONE_PENDING_IN));
    assert!(
        !bob.listed(),
        "a stranger's request does not add a roster item"
    );
    assert_eq!(bob.requests_shown, 1);
    assert!(bob.pushes.is_empty());

    send(&mut bob, &mut alice, Subscribed);
    assert_eq!(alice.sub(), Some(TO));
    assert_eq!(bob.sub(), Some(FROM));
    assert!(bob.listed());
    assert_eq!(bob.presence_sent, [PresenceNotice::Available]);
    assert_eq!(alice.pushes.len(), 2, "ask, then to");
    assert_eq!(alice.pushes[1].subscription, Subscription::To);
    assert_eq!(bob.pushes.len(), 1);
    assert_eq!(bob.pushes[0].subscription, Subscription::From);
}

#[test]
fn handshake_both_directions() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    send(&mut bob, &mut alice, Subscribed);
    send(&mut bob, &mut alice, Subscribe);
    assert_eq!(bob.sub(), Some(FROM_PENDING_OUT));
    assert_eq!(alice.sub(), Some(TO_PENDING_IN));
    assert_eq!(alice.requests_shown, 1);

    send(&mut alice, &mut bob, Subscribed);
    assert_eq!(alice.sub(), Some(BOTH));
    assert_eq!(bob.sub(), Some(BOTH));
    assert_eq!(alice.ignored + bob.ignored, 0);
}

#[test]
fn handshake_crossing_requests() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    send(&mut bob, &mut alice, Subscribe);
    assert_eq!(alice.sub(), Some(NONE_PENDING_OUT_IN));
    assert_eq!(bob.sub(), Some(NONE_PENDING_OUT_IN));
    assert!(bob.listed(), "bob's own request added alice to his roster");

    send(&mut alice, &mut bob, Subscribed);
    assert_eq!(alice.sub(), Some(FROM_PENDING_OUT));
    assert_eq!(bob.sub(), Some(TO_PENDING_IN));
    send(&mut bob, &mut alice, Subscribed);
    assert_eq!(alice.sub(), Some(BOTH));
    assert_eq!(bob.sub(), Some(BOTH));
}

#[test]
fn handshake_cancel_a_subscription() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    send(&mut bob, &mut alice, Subscribed);
    send(&mut bob, &mut alice, Unsubscribed);
    assert_eq!(bob.sub(), Some(NONE));
    assert_eq!(alice.sub(), Some(NONE));
    assert_eq!(
        bob.presence_sent,
        [PresenceNotice::Available, PresenceNotice::Unavailable]
    );
    assert!(
        alice.listed() && bob.listed(),
        "items stay; only the subscription goes"
    );
}

#[test]
fn handshake_unsubscribe() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    send(&mut bob, &mut alice, Subscribed);
    send(&mut alice, &mut bob, Unsubscribe);
    assert_eq!(alice.sub(), Some(NONE));
    assert_eq!(bob.sub(), Some(NONE));
    assert_eq!(
        bob.presence_sent,
        [PresenceNotice::Available, PresenceNotice::Unavailable]
    );
}

#[test]
fn handshake_deny_a_request() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    send(&mut bob, &mut alice, Unsubscribed);
    assert_eq!(alice.sub(), Some(NONE));
    assert_eq!(bob.entry, None, "the hidden request is forgotten");
    assert!(bob.presence_sent.is_empty());
}

#[test]
fn handshake_withdraw_a_request() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    send(&mut alice, &mut bob, Unsubscribe);
    assert_eq!(alice.sub(), Some(NONE));
    assert_eq!(bob.entry, None);
}

#[test]
fn handshake_preapproval_then_subscribe() {
    let (mut alice, mut bob) = pair();
    send(&mut bob, &mut alice, Subscribed);
    assert_eq!(bob.sub(), Some(preapproved(NONE)));
    assert!(bob.listed());
    assert_eq!(alice.entry, None, "a pre-approval is not routed");

    send(&mut alice, &mut bob, Subscribe);
    assert_eq!(bob.sub(), Some(FROM));
    assert_eq!(bob.requests_shown, 0, "the server answered for bob");
    assert_eq!(bob.presence_sent, [PresenceNotice::Available]);
    assert_eq!(alice.sub(), Some(TO));
    assert_eq!(bob.pushes.last().map(|view| view.approved), Some(false));
}

#[test]
fn handshake_cancelled_preapproval_needs_an_answer_again() {
    let (mut alice, mut bob) = pair();
    send(&mut bob, &mut alice, Subscribed);
    send(&mut bob, &mut alice, Unsubscribed);
    assert_eq!(bob.sub(), Some(NONE));
    send(&mut alice, &mut bob, Subscribe);
    assert_eq!(bob.sub(), Some(NONE_PENDING_IN));
    assert_eq!(bob.requests_shown, 1);
    assert_eq!(alice.sub(), Some(NONE_PENDING_OUT));
}

#[test]
fn handshake_resubscribe_after_lost_state_is_answered_by_the_server() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    send(&mut bob, &mut alice, Subscribed);
    // Alice's server lost her item; bob still grants her his presence.
    alice.entry = None;
    send(&mut alice, &mut bob, Subscribe);
    assert_eq!(alice.sub(), Some(TO));
    assert_eq!(bob.sub(), Some(FROM));
    assert_eq!(bob.requests_shown, 1, "only the first request was shown");
}

#[test]
fn handshake_repeated_answers_are_ignored() {
    let (mut alice, mut bob) = pair();
    send(&mut alice, &mut bob, Subscribe);
    send(&mut bob, &mut alice, Subscribed);
    send(&mut bob, &mut alice, Subscribed);
    assert_eq!(bob.ignored, 1);
    send(&mut bob, &mut alice, Unsubscribed);
    send(&mut bob, &mut alice, Unsubscribed);
    assert_eq!(bob.ignored, 2);
    assert_eq!(alice.sub(), Some(NONE));
}
