#!/usr/bin/python3
"""Account data with slixmpp's own plugins across two nodes of one cluster: alice on node 1
sets her vCard and avatar (xep_0054, xep_0153); bob on node 2 gets her avatar hash in
presence and reads her vCard, and may not set it; alice stores private XML on node 1
(xep_0049) and reads it back logged in on node 2; bob logs out on node 2 with a status and
alice, on node 1, gets his last activity (xep_0012), and the server's uptime.

Run by tests/tests/account_data/t30_slixmpp.rs with `--ports P1,P2,P3` (the nodes' client
ports; `--port` is the first). Accounts: alice, bob.
"""

import argparse
import asyncio
import hashlib

from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase

import interop
from interop import Session, check, log, until

PLUGINS = ("xep_0054", "xep_0153", "xep_0049", "xep_0012")
# A 1x1 PNG.
AVATAR = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4"
    "890000000d49444154789c63606060f80f0001040100f5c5c9d60000000049454e44ae426082")


class Prefs(ElementBase):
    """What alice keeps in private storage."""
    name = "prefs"
    namespace = "urn:test:interop"
    plugin_attrib = "interop_prefs"
    interfaces = {"colour"}
    sub_interfaces = interfaces


def on_node(args, number):
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


def subscription(owner, contact):
    item = owner.xmpp.client_roster[contact.bare]
    return {"subscription": item["subscription"], "pending_out": item["pending_out"]}


async def befriend(alice, bob):
    """Mutual presence subscription, answered by slixmpp's defaults (authorize, and
    subscribe back), after a message each way so both nodes know both sessions."""
    for sender, receiver in ((alice, bob), (bob, alice)):
        sender.xmpp.send_message(mto=receiver.jid, mbody=f"hi {receiver.bare}", mtype="chat")
        await receiver.next_message("a first message",
                                    lambda m, r=receiver: m["body"] == f"hi {r.bare}")
    alice.xmpp.client_roster.subscribe(bob.bare)
    for owner, contact in ((alice, bob), (bob, alice)):
        await until(f"{owner.bare} subscribed both ways with {contact.bare}",
                    lambda o=owner, c=contact: subscription(o, c)["subscription"] == "both",
                    describe=lambda o=owner, c=contact: str(subscription(o, c)))


async def scenario(args):
    timeout = interop.STEP_TIMEOUT
    alice = Session(on_node(args, 1), "alice", "one", plugins=PLUGINS)
    bob = Session(on_node(args, 2), "bob", "two", plugins=PLUGINS)
    avatars = []
    bob.xmpp.add_event_handler(
        "vcard_avatar_update",
        lambda presence: avatars.append((presence["from"].bare,
                                         presence["vcard_temp_update"]["photo"])))
    for session in (alice, bob):
        await session.start()
        await session.xmpp.get_roster(timeout=timeout)
    await befriend(alice, bob)
    log("alice on node 1 and bob on node 2 are subscribed both ways")

    vcard = alice.xmpp["xep_0054"].make_vcard()
    vcard["FN"] = "Alice Interop"
    await alice.xmpp["xep_0054"].publish_vcard(vcard=vcard, jid=alice.bare, timeout=timeout)
    await alice.xmpp["xep_0153"].set_avatar(avatar=AVATAR, mtype="image/png", timeout=timeout)
    expected = hashlib.sha1(AVATAR).hexdigest()
    await until("bob sees alice's avatar hash", lambda: (alice.bare, expected) in avatars,
                describe=lambda: f"bob saw {avatars}")
    result = await bob.xmpp["xep_0054"].get_vcard(alice.bare, local=False, timeout=timeout)
    read = result["vcard_temp"]
    check(read["FN"] == "Alice Interop", f"bob read FN {read['FN']!r}")
    check(read["PHOTO"]["BINVAL"] == AVATAR, "bob read another photo than alice set")
    log("vCard and avatar set on node 1, hash in presence and vCard read on node 2")

    intruder = bob.xmpp["xep_0054"].make_vcard()
    intruder["FN"] = "Bob was here"
    try:
        await bob.xmpp["xep_0054"].publish_vcard(vcard=intruder, jid=alice.bare, timeout=timeout)
        raise interop.Failure("bob set alice's vCard")
    except IqError as error:
        condition = error.iq["error"]["condition"]
        check(condition == "forbidden", f"bob setting alice's vCard: <{condition}/>")
    result = await alice.xmpp["xep_0054"].get_vcard(alice.bare, local=False, timeout=timeout)
    check(result["vcard_temp"]["FN"] == "Alice Interop", "alice's vCard changed")
    log("bob may not set alice's vCard; it is unchanged")

    prefs = Prefs()
    prefs["colour"] = "teal"
    alice.xmpp["xep_0049"].register(Prefs)
    await alice.xmpp["xep_0049"].store(prefs, timeout=timeout)
    alice_two = Session(on_node(args, 2), "alice", "two", plugins=PLUGINS)
    await alice_two.start()
    alice_two.xmpp["xep_0049"].register(Prefs)
    result = await alice_two.xmpp["xep_0049"].retrieve("interop_prefs", timeout=timeout)
    colour = result["private"]["interop_prefs"]["colour"]
    check(colour == "teal", f"alice on node 2 read colour {colour!r}")
    await alice_two.stop()
    log("private XML stored on node 1 read back on node 2")

    last = alice.xmpp["xep_0012"]
    result = await last.get_last_activity(bob.bare, timeout=timeout)
    seconds = result["last_activity"]["seconds"]
    check(seconds == 0, f"bob is online, yet last activity says {seconds} s")
    bob.xmpp.send_presence(ptype="unavailable", pstatus="bye from node 2")
    await bob.stop()
    answers = []

    async def ask():
        result = await last.get_last_activity(bob.bare, timeout=timeout)
        answers.append((result["last_activity"]["seconds"], result["last_activity"]["status"]))

    for _ in range(100):
        await ask()
        if answers[-1][1] == "bye from node 2":
            break
        await asyncio.sleep(0.1)
    seconds, status = answers[-1]
    check(status == "bye from node 2" and seconds < 60, f"bob's last activity: {answers[-3:]}")
    result = await last.get_last_activity(args.domain, timeout=timeout)
    check(result["last_activity"]["seconds"] >= 0, f"uptime: {result}")
    log("bob logged out on node 2; alice on node 1 got his last activity and status")
    await alice.stop()


def ports(parser):
    parser.add_argument("--ports", required=True, help="the nodes' client ports, comma-separated")


if __name__ == "__main__":
    interop.main(scenario, ports)
