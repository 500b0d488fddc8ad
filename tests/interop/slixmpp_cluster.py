#!/usr/bin/python3
"""Two slixmpp clients on different nodes of one cluster: the subscription handshake both
ways (RFC 6121 3) with roster pushes and presence, chat both ways in order, unavailable
presence at logout, and offline messages stored by one node delivered on a third, in order,
with XEP-0203 delay stamps.

Run by tests/tests/cluster/t80_slixmpp.rs with `--ports P1,P2,P3` (the nodes' client ports;
`--port` is the first). Accounts: alice, bob.
"""

import argparse
import datetime as dt

import interop
from interop import Session, check, log, until, utc_now

COUNT = 10
#: Stamps have one-second resolution at worst.
SLACK = dt.timedelta(seconds=2)


def on_node(args, number):
    """The arguments for a session on node `number` (1-based)."""
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


def roster_state(session, contact):
    item = session.xmpp.client_roster[contact]
    return {"subscription": item["subscription"], "pending_out": item["pending_out"],
            "resources": sorted(item.resources)}


async def scenario(args):
    alice = Session(on_node(args, 1), "alice", "one")
    bob = Session(on_node(args, 2), "bob", "two")
    requests = {alice.bare: [], bob.bare: []}
    for session in (alice, bob):
        # Subscription requests are answered by the scenario, not by slixmpp.
        session.xmpp.auto_authorize = None
        session.xmpp.auto_subscribe = False
        session.xmpp.add_event_handler(
            "presence_subscribe",
            lambda presence, owner=session.bare: requests[owner].append(presence["from"].bare))
        await session.start()
        # Asking for the roster is what makes the server push changes to it.
        await session.xmpp.get_roster(timeout=interop.STEP_TIMEOUT)
    # A first message each way: both nodes know both sessions from here on.
    alice.xmpp.send_message(mto=bob.jid, mbody="hello from node 1", mtype="chat")
    await bob.next_message("alice's first message", lambda m: m["body"] == "hello from node 1")
    bob.xmpp.send_message(mto=alice.jid, mbody="hello from node 2", mtype="chat")
    await alice.next_message("bob's first message", lambda m: m["body"] == "hello from node 2")

    alice.xmpp.client_roster.subscribe(bob.bare)
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
        resource = contact.xmpp.boundjid.resource
        await until(f"{owner.bare} sees {contact.jid} available",
                    lambda: resource in owner.xmpp.client_roster[contact.bare].resources,
                    describe=lambda: str(roster_state(owner, contact.bare)))
    log("subscription handshake across nodes: both rosters say 'both', presence exchanged")

    bob.xmpp.send_presence(pshow="dnd", pstatus="on node 2")
    bob_resource = bob.xmpp.boundjid.resource
    shown = lambda: alice.xmpp.client_roster[bob.bare].resources.get(bob_resource, {})
    await until("alice sees bob's new presence",
                lambda: shown().get("show") == "dnd" and shown().get("status") == "on node 2",
                describe=lambda: str(shown()))

    for n in range(COUNT):
        alice.xmpp.send_message(mto=bob.bare, mbody=f"to bob {n}", mtype="chat")
    for n in range(COUNT):
        message = await bob.next_message(f"message {n} from alice",
                                         lambda m: m["type"] == "chat")
        check(message["body"] == f"to bob {n}",
              f"bob got {message['body']!r}, expected 'to bob {n}' (lost or reordered)")
        check(str(message["from"]) == alice.jid, f"from {message['from']}, expected {alice.jid}")
        message.reply(f"to alice {n}").send()
    for n in range(COUNT):
        message = await alice.next_message(f"reply {n} from bob", lambda m: m["type"] == "chat")
        check(message["body"] == f"to alice {n}", f"alice got {message['body']!r}")
        check(str(message["from"]) == bob.jid, f"from {message['from']}, expected {bob.jid}")
    log(f"{COUNT} messages each way across nodes, in order")

    await bob.stop()
    await until("alice sees bob go offline",
                lambda: not alice.xmpp.client_roster[bob.bare].resources,
                describe=lambda: str(roster_state(alice, bob.bare)))
    before = utc_now()
    for n in range(3):
        alice.xmpp.send_message(mto=bob.bare, mbody=f"while you were out {n}", mtype="chat")
    await alice.xmpp["xep_0199"].ping(jid=args.domain, timeout=interop.STEP_TIMEOUT)
    sent = utc_now()
    bob = await Session(on_node(args, 3), "bob", "three", plugins=("xep_0203",)).start()
    for n in range(3):
        message = await bob.next_message(f"offline message {n}")
        check(message["body"] == f"while you were out {n}",
              f"got {message['body']!r}, expected 'while you were out {n}' (lost or reordered)")
        stamp = message["delay"]["stamp"]
        check(stamp is not None, f"no XEP-0203 <delay/> on an offline message: {message}")
        check(before - SLACK <= stamp <= sent + SLACK,
              f"delay stamp {stamp.isoformat()} is not when the message was sent")
    log("stored on node 1, delivered on node 3 in order with delay stamps")
    await bob.stop()
    await alice.stop()


def ports(parser):
    parser.add_argument("--ports", required=True, help="the nodes' client ports, comma-separated")


if __name__ == "__main__":
    interop.main(scenario, ports)
