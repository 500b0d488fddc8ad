#!/usr/bin/python3
"""Two slixmpp clients: roster and the subscription handshake (RFC 6121 3), presence
(initial, broadcast, a change of show/status, unavailable at logout) and chat both ways in
order.

Accounts: alice, bob.
"""

import interop
from interop import Session, check, log, until

COUNT = 5


def roster_state(session, contact):
    item = session.xmpp.client_roster[contact]
    return {"subscription": item["subscription"], "pending_out": item["pending_out"],
            "resources": sorted(item.resources)}


async def scenario(args):
    alice = Session(args, "alice", "desk")
    bob = Session(args, "bob", "phone")
    for session in (alice, bob):
        # Subscription requests are answered by the scenario, not by slixmpp.
        session.xmpp.auto_authorize = None
        session.xmpp.auto_subscribe = False
        await session.start()
        roster = await interop.stored_roster(session)
        check(roster == {}, f"{session.bare}: roster not empty at first: {roster}")

    # Alice asks; Bob approves and asks back; Alice approves.
    requests = {alice.bare: [], bob.bare: []}
    for session in (alice, bob):
        session.xmpp.add_event_handler(
            "presence_subscribe",
            lambda presence, owner=session.bare: requests[owner].append(presence["from"].bare))
    alice.xmpp.client_roster.subscribe(bob.bare)
    # The roster push for the request shows it pending (ask='subscribe').
    await until("alice's roster push: bob pending out",
                lambda: alice.xmpp.client_roster[bob.bare]["pending_out"],
                describe=lambda: str(roster_state(alice, bob.bare)))
    stored = (await interop.stored_roster(alice)).get(bob.bare, {})
    check(stored.get("subscription") == "none" and stored.get("ask") == "subscribe",
          f"alice's stored roster while pending: {stored}")
    await until("bob sees alice's request", lambda: alice.bare in requests[bob.bare],
                describe=lambda: f"bob's requests: {requests[bob.bare]}")
    bob.xmpp.client_roster[alice.bare].authorize()
    bob.xmpp.client_roster.subscribe(alice.bare)
    await until("alice sees bob's request", lambda: bob.bare in requests[alice.bare],
                describe=lambda: f"alice's requests: {requests[alice.bare]}")
    alice.xmpp.client_roster[bob.bare].authorize()

    for owner, contact in ((alice, bob), (bob, alice)):
        await until(f"{owner.bare}'s roster push: {contact.bare} both",
                    lambda: owner.xmpp.client_roster[contact.bare]["subscription"] == "both",
                    describe=lambda: str(roster_state(owner, contact.bare)))
        stored = await interop.stored_roster(owner)
        item = stored.get(contact.bare, {})
        check(item.get("subscription") == "both" and not item.get("ask"),
              f"{owner.bare}'s stored roster: {stored}")
        # Each sees the other's available presence once subscribed.
        resource = contact.xmpp.boundjid.resource
        await until(f"{owner.bare} sees {contact.jid} available",
                    lambda: resource in owner.xmpp.client_roster[contact.bare].resources,
                    describe=lambda: str(roster_state(owner, contact.bare)))
    log("subscription handshake done: both rosters say 'both', presence exchanged")

    bob.xmpp.send_presence(pshow="away", pstatus="at lunch")
    bob_resource = bob.xmpp.boundjid.resource
    away = lambda: alice.xmpp.client_roster[bob.bare].resources.get(bob_resource, {})
    await until("alice sees bob away", lambda: away().get("show") == "away"
                and away().get("status") == "at lunch", describe=lambda: str(away()))
    log("presence change broadcast")

    for n in range(COUNT):
        alice.xmpp.send_message(mto=bob.bare, mbody=f"hello bob {n}", mtype="chat")
    for n in range(COUNT):
        message = await bob.next_message(f"message {n} from alice",
                                         lambda m: m["type"] == "chat")
        check(message["body"] == f"hello bob {n}", f"bob got {message['body']!r}, "
              f"expected 'hello bob {n}' (lost or reordered)")
        check(str(message["from"]) == alice.jid, f"from {message['from']}, expected {alice.jid}")
        message.reply(f"hi alice {n}").send()
    for n in range(COUNT):
        message = await alice.next_message(f"reply {n} from bob", lambda m: m["type"] == "chat")
        check(message["body"] == f"hi alice {n}", f"alice got {message['body']!r}")
        check(str(message["from"]) == bob.jid, f"from {message['from']}, expected {bob.jid}")
    log(f"{COUNT} messages each way, in order")

    # Alice removes Bob (RFC 6121 2.5.3): both subscriptions end, Bob is told and his
    # roster says 'none'; Alice's roster loses the item.
    removed = await alice.xmpp.del_roster_item(bob.bare)
    check(removed["type"] == "result", f"roster remove: {removed}")
    stored = await interop.stored_roster(alice)
    check(bob.bare not in stored, f"alice's roster still has bob: {stored}")
    await until("bob's roster push: alice none",
                lambda: bob.xmpp.client_roster[alice.bare]["subscription"] == "none",
                describe=lambda: str(roster_state(bob, alice.bare)))
    await until("bob sees alice unavailable",
                lambda: not bob.xmpp.client_roster[alice.bare].resources,
                describe=lambda: str(roster_state(bob, alice.bare)))
    stored = (await interop.stored_roster(bob)).get(alice.bare, {})
    check(stored.get("subscription") == "none", f"bob's stored item for alice: {stored}")
    log("roster removal ended both subscriptions")
    # Re-subscribe one way only so that Bob's logout is still seen by Alice.
    requests[bob.bare].clear()
    alice.xmpp.client_roster.subscribe(bob.bare)
    await until("bob sees alice's new request", lambda: alice.bare in requests[bob.bare])
    bob.xmpp.client_roster[alice.bare].authorize()
    await until("alice's roster push: bob to",
                lambda: alice.xmpp.client_roster[bob.bare]["subscription"] == "to",
                describe=lambda: str(roster_state(alice, bob.bare)))
    await until("alice sees bob available again",
                lambda: bob_resource in alice.xmpp.client_roster[bob.bare].resources,
                describe=lambda: str(roster_state(alice, bob.bare)))

    await bob.stop()
    await until("alice sees bob go offline",
                lambda: not alice.xmpp.client_roster[bob.bare].resources,
                describe=lambda: str(roster_state(alice, bob.bare)))
    log("unavailable presence at logout")
    await alice.stop()


if __name__ == "__main__":
    interop.main(scenario)
