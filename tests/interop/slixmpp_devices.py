#!/usr/bin/python3
"""Carbons (XEP-0280) and the message archive (XEP-0313) with slixmpp's xep_0280 and xep_0313
plugins, alice's two devices and bob on three different nodes of one cluster: with carbons
enabled on both devices, the laptop (node 3) gets a copy of what bob (node 2) sends the phone
(node 1) and of what the phone sends bob; then the laptop pages through the conversation with
bob in the archive, forwards and backwards, two messages a page.

Run by tests/tests/cluster/t80_slixmpp.rs with `--ports P1,P2,P3` (the nodes' client ports;
`--port` is the first). Accounts: alice, bob.
"""

import argparse

import interop
from interop import Session, check, log


def on_node(args, number):
    """The arguments for a session on node `number` (1-based)."""
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


def bodies(messages):
    return [str(m["mam_result"]["forwarded"]["stanza"]["body"]) for m in messages]


async def scenario(args):
    plugins = ("xep_0280", "xep_0313")
    phone = Session(on_node(args, 1), "alice", "phone", plugins=plugins)
    laptop = Session(on_node(args, 3), "alice", "laptop", plugins=plugins)
    bob = Session(on_node(args, 2), "bob", "desk", plugins=plugins)
    carbons = []
    laptop.xmpp.add_event_handler(
        "carbon_received",
        lambda m: carbons.append(("received", str(m["carbon_received"]["body"]))))
    laptop.xmpp.add_event_handler(
        "carbon_sent", lambda m: carbons.append(("sent", str(m["carbon_sent"]["body"]))))
    for session in (phone, laptop, bob):
        await session.start()
    for device in (phone, laptop):
        await device.xmpp["xep_0280"].enable(timeout=interop.STEP_TIMEOUT)
    # A first message each way: every node knows every session from here on.
    bob.xmpp.send_message(mto=phone.jid, mbody="hello phone", mtype="chat")
    await phone.next_message("bob's first message", lambda m: m["body"] == "hello phone")
    phone.xmpp.send_message(mto=bob.jid, mbody="hello bob", mtype="chat")
    await bob.next_message("the phone's first message", lambda m: m["body"] == "hello bob")
    await interop.until("both carbons on the laptop",
                        lambda: ("received", "hello phone") in carbons
                        and ("sent", "hello bob") in carbons,
                        describe=lambda: str(carbons))
    log("carbons of a received and a sent chat reach the third device")

    for n in range(1, 6):
        bob.xmpp.send_message(mto=phone.jid, mbody=f"message {n}", mtype="chat")
        await phone.next_message(f"message {n}", lambda m, n=n: m["body"] == f"message {n}")
    expected = ["hello phone", "hello bob"] + [f"message {n}" for n in range(1, 6)]

    mam = laptop.xmpp["xep_0313"]
    forwards = [m async for m in mam.iterate(with_jid=bob.bare, rsm={"max": 2})]
    check(bodies(forwards) == expected, f"the archive forwards: {bodies(forwards)}")
    backwards = [m async for m in mam.iterate(with_jid=bob.bare, reverse=True, rsm={"max": 2})]
    check(bodies(backwards) == list(reversed(expected)),
          f"the archive backwards: {bodies(backwards)}")
    ids = {str(m["mam_result"]["id"]) for m in forwards}
    check(len(ids) == len(expected), f"archive ids are not unique: {ids}")
    log("the archive pages both ways, two messages a page, from a third node")
    for session in (bob, laptop, phone):
        await session.stop()


def ports(parser):
    parser.add_argument("--ports", required=True, help="the nodes' client ports, comma-separated")


if __name__ == "__main__":
    interop.main(scenario, ports)
