#!/usr/bin/python3
"""XEP-0191 with slixmpp's xep_0191 plugin across two nodes of one cluster: alice blocks bob
on node 1; her resource on node 2 that retrieved the list gets the push; bob (node 2) gets
<service-unavailable/> for his message, alice <not-acceptable/> for hers; unblocking
restores delivery.

Run by tests/tests/cluster/t80_slixmpp.rs with `--ports P1,P2,P3` (the nodes' client ports;
`--port` is the first). Accounts: alice, bob.
"""

import argparse

import interop
from interop import Session, check, log, until


def on_node(args, number):
    """The arguments for a session on node `number` (1-based)."""
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


def blocked_jids(result):
    return sorted(str(jid) for jid in result["blocklist"]["items"])


async def scenario(args):
    alice = Session(on_node(args, 1), "alice", "one", plugins=("xep_0191",))
    alice_two = Session(on_node(args, 2), "alice", "two", plugins=("xep_0191",))
    bob = Session(on_node(args, 2), "bob", "two", plugins=("xep_0191",))
    pushes = []
    alice_two.xmpp.add_event_handler(
        "blocked", lambda iq: pushes.append(("block", sorted(str(j) for j in iq["block"]["items"]))))
    alice_two.xmpp.add_event_handler(
        "unblocked",
        lambda iq: pushes.append(("unblock", sorted(str(j) for j in iq["unblock"]["items"]))))
    for session in (alice, alice_two, bob):
        await session.start()
    # A first message each way: both nodes know both sessions from here on.
    alice.xmpp.send_message(mto=bob.jid, mbody="hello from node 1", mtype="chat")
    await bob.next_message("alice's first message", lambda m: m["body"] == "hello from node 1")
    bob.xmpp.send_message(mto=alice.jid, mbody="hello from node 2", mtype="chat")
    await alice.next_message("bob's first message", lambda m: m["body"] == "hello from node 2")

    listed = await alice_two.xmpp["xep_0191"].get_blocked(timeout=interop.STEP_TIMEOUT)
    check(blocked_jids(listed) == [], f"a new account's block list: {blocked_jids(listed)}")
    await alice.xmpp["xep_0191"].block(bob.bare, timeout=interop.STEP_TIMEOUT)
    await until("the block push on node 2", lambda: ("block", [bob.bare]) in pushes,
                describe=lambda: str(pushes))
    listed = await alice.xmpp["xep_0191"].get_blocked(timeout=interop.STEP_TIMEOUT)
    check(blocked_jids(listed) == [bob.bare], f"the block list: {blocked_jids(listed)}")
    log("blocked on node 1, pushed to node 2, listed")

    bob.xmpp.send_message(mto=alice.bare, mbody="are you there?", mtype="chat")
    error = await bob.next_message("the bounce of bob's message", lambda m: m["type"] == "error")
    check(error["error"]["condition"] == "service-unavailable",
          f"bob's message bounced with {error['error']['condition']!r}: {error}")
    alice.xmpp.send_message(mto=bob.bare, mbody="go away", mtype="chat")
    error = await alice.next_message("the refusal of alice's message",
                                     lambda m: m["type"] == "error")
    check(error["error"]["condition"] == "not-acceptable",
          f"alice's message refused with {error['error']['condition']!r}: {error}")
    check("urn:xmpp:blocking:errors" in str(error), f"no <blocked/> in {error}")
    log("a blocked sender bounces, a message to a blocked JID is refused")

    await alice.xmpp["xep_0191"].unblock(bob.bare, timeout=interop.STEP_TIMEOUT)
    await until("the unblock push on node 2", lambda: ("unblock", [bob.bare]) in pushes,
                describe=lambda: str(pushes))
    bob.xmpp.send_message(mto=alice.jid, mbody="better now?", mtype="chat")
    await alice.next_message("bob's message after the unblock",
                             lambda m: m["body"] == "better now?")
    log("unblocked: delivery restored")
    for session in (bob, alice_two, alice):
        await session.stop()


def ports(parser):
    parser.add_argument("--ports", required=True, help="the nodes' client ports, comma-separated")


if __name__ == "__main__":
    interop.main(scenario, ports)
