#!/usr/bin/python3
"""XEP-0060 with slixmpp's own pub/sub plugin across three nodes of one cluster: alice on
node 1 creates and configures a node and publishes; bob on node 2 and carol on node 3
subscribe and get the events in publish order; bob retrieves all items, one by id and the
newest by max_items; carol lists her subscriptions and unsubscribes; a retract and the
node's deletion reach bob as notifications.

Run by tests/tests/pubsub/t30_slixmpp.rs with `--ports P1,P2,P3` (the nodes' client ports;
`--port` is the first). Accounts: alice, bob, carol.
"""

import argparse
import asyncio

from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream import ET

import interop
from interop import Session, check, log

COUNT = 5
NODE = "princely_musings"
NS = "urn:test:entry"


def on_node(args, number):
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


def entry(text):
    element = ET.Element(f"{{{NS}}}entry")
    element.text = text
    return element


class Events:
    """The pub/sub notifications a session receives, by kind."""

    def __init__(self, session):
        self.queues = {kind: asyncio.Queue() for kind in ("publish", "retract", "delete")}
        for kind, queue in self.queues.items():
            session.xmpp.add_event_handler(f"pubsub_{kind}", queue.put_nowait)

    async def next(self, kind, what):
        try:
            return await asyncio.wait_for(self.queues[kind].get(), interop.STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise interop.Failure(f"no {what} within {interop.STEP_TIMEOUT} s") from None


def texts(items):
    return [item["payload"].text for item in items]


async def scenario(args):
    service = f"pubsub.{args.domain}"
    alice = Session(on_node(args, 1), "alice", "one", plugins=("xep_0060",))
    bob = Session(on_node(args, 2), "bob", "two", plugins=("xep_0060",))
    carol = Session(on_node(args, 3), "carol", "three", plugins=("xep_0060",))
    bob_events, carol_events = Events(bob), Events(carol)
    for session in (alice, bob, carol):
        await session.start()
    # A message each way: every node knows every session from here on.
    for sender, receiver in ((alice, bob), (alice, carol), (bob, alice), (carol, alice)):
        sender.xmpp.send_message(mto=receiver.jid, mbody=f"hi {receiver.bare}", mtype="chat")
        await receiver.next_message("a first message", lambda m, r=receiver: m["body"] == f"hi {r.bare}")
    pubsub = {s.bare: s.xmpp.plugin["xep_0060"] for s in (alice, bob, carol)}
    timeout = interop.STEP_TIMEOUT

    config = Form()
    config["type"] = "submit"
    config.add_field(var="FORM_TYPE", ftype="hidden",
                     value="http://jabber.org/protocol/pubsub#node_config")
    config.add_field(var="pubsub#max_items", value="20")
    config.add_field(var="pubsub#title", value="Princely Musings")
    await pubsub[alice.bare].create_node(service, NODE, config=config, timeout=timeout)
    log("node created and configured on node 1")

    for session in (bob, carol):
        result = await pubsub[session.bare].subscribe(service, NODE, timeout=timeout)
        state = result["pubsub"]["subscription"]["subscription"]
        check(state == "subscribed", f"{session.bare}'s subscription is {state!r}")
    log("subscribed from nodes 2 and 3")

    ids = []
    for n in range(COUNT):
        result = await pubsub[alice.bare].publish(service, NODE, payload=entry(f"item {n}"),
                                                  timeout=timeout)
        ids.append(result["pubsub"]["publish"]["item"]["id"])
    check(all(ids) and len(set(ids)) == COUNT, f"server-generated ids: {ids}")
    for name, events in (("bob", bob_events), ("carol", carol_events)):
        got = []
        for n in range(COUNT):
            message = await events.next("publish", f"{name}'s event {n}")
            item = message["pubsub_event"]["items"]["item"]
            got.append((item["id"], item["payload"].text))
        expected = [(ids[n], f"item {n}") for n in range(COUNT)]
        check(got == expected, f"{name}'s events {got}, expected {expected} (lost or reordered)")
    log("published on node 1; events on nodes 2 and 3 in order")

    result = await pubsub[bob.bare].get_items(service, NODE, timeout=timeout)
    got = texts(result["pubsub"]["items"])
    check(got == [f"item {n}" for n in range(COUNT)], f"bob retrieved {got}")
    result = await pubsub[bob.bare].get_item(service, NODE, ids[2], timeout=timeout)
    got = texts(result["pubsub"]["items"])
    check(got == ["item 2"], f"bob retrieved item {ids[2]} as {got}")
    result = await pubsub[bob.bare].get_items(service, NODE, max_items=2, timeout=timeout)
    got = texts(result["pubsub"]["items"])
    check(got == [f"item {COUNT - 2}", f"item {COUNT - 1}"], f"the newest two: {got}")
    log("retrieved all items, one by id, and the newest by max_items on node 2")

    result = await pubsub[carol.bare].get_subscriptions(service, timeout=timeout)
    nodes = [sub["node"] for sub in result["pubsub"]["subscriptions"]]
    check(nodes == [NODE], f"carol's subscriptions: {nodes}")
    await pubsub[carol.bare].unsubscribe(service, NODE, timeout=timeout)
    result = await pubsub[carol.bare].get_subscriptions(service, timeout=timeout)
    check(len(result["pubsub"]["subscriptions"]) == 0,
          f"carol still subscribed: {result}")
    log("carol listed her subscription on node 3 and unsubscribed")

    await pubsub[alice.bare].retract(service, NODE, ids[0], notify=True, timeout=timeout)
    message = await bob_events.next("retract", "bob's retract notification")
    retracted = message["pubsub_event"]["items"]["retract"]["id"]
    check(retracted == ids[0], f"retracted {retracted}, expected {ids[0]}")
    await pubsub[alice.bare].delete_node(service, NODE, timeout=timeout)
    message = await bob_events.next("delete", "bob's delete notification")
    deleted = message["pubsub_event"]["delete"]["node"]
    check(deleted == NODE, f"deleted {deleted}")
    check(carol_events.queues["retract"].empty(), "carol got a retract after unsubscribing")
    log("retract and delete notifications reached bob on node 2")
    for session in (alice, bob, carol):
        await session.stop()


def ports(parser):
    parser.add_argument("--ports", required=True, help="the nodes' client ports, comma-separated")


if __name__ == "__main__":
    interop.main(scenario, ports)
