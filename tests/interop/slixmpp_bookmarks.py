#!/usr/bin/env python3
"""XEP-0402 bookmarks with slixmpp's own xep_0402 plugin (PyPI slixmpp: Debian's 1.8
has no such plugin) on three nodes of a cluster, and their XEP-0411 mapping to the
XEP-0048 bookmarks a legacy client keeps in private storage.

alice's session on node 1 wants bookmark notifications (urn:xmpp:bookmarks:1+notify in
its entity capabilities); her session on node 2 publishes a conference with the
publish-options XEP-0402 asks for; node 1's session is notified, her session on node 3
reads the item, and a legacy read of private storage (XEP-0049) on node 3 lists the same
conference. bob may not read alice's bookmarks. A retraction on node 2 reaches node 1
and empties the legacy list too.

Run by tests/tests/cluster/t80_slixmpp.rs with `--ports P1,P2,P3` and the PyPI slixmpp
that tests/run installs. Accounts: alice, bob.
"""

import argparse
import asyncio

import interop
from interop import Session, check, log

from slixmpp import register_stanza_plugin
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form
from slixmpp.plugins.xep_0060.stanza.pubsub_event import EventItem
from slixmpp.plugins.xep_0402.stanza import Conference

NODE = "urn:xmpp:bookmarks:1"
ROOM = "team@conference.localhost"
PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0402",
           "xep_0049", "xep_0048")


def on_node(args, number):
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


def publish_options():
    """The node configuration XEP-0402 section 3 asks a client to require."""
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="pubsub#persist_items", value="true")
    form.add_field(var="pubsub#max_items", value="max")
    form.add_field(var="pubsub#send_last_published_item", value="never")
    form.add_field(var="pubsub#access_model", value="whitelist")
    return form


async def next_event(queue, what):
    try:
        return await asyncio.wait_for(queue.get(), interop.STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise interop.Failure(f"no {what} within {interop.STEP_TIMEOUT} s") from None


async def legacy_rooms(session):
    """The conferences a XEP-0048 client reads from private storage."""
    result = await session.xmpp["xep_0048"].get_bookmarks(method="xep_0049",
                                                          timeout=interop.STEP_TIMEOUT)
    return [str(conference["jid"]) for conference in
            result["private"]["bookmarks"]["conferences"]]


async def scenario(args):
    # The plugin maps the payload of fetched items only; notifications carry it too.
    register_stanza_plugin(EventItem, Conference)
    watcher = Session(on_node(args, 1), "alice", "one", plugins=PLUGINS)
    publisher = Session(on_node(args, 2), "alice", "two", plugins=PLUGINS)
    reader = Session(on_node(args, 3), "alice", "three", plugins=PLUGINS)
    bob = Session(on_node(args, 3), "bob", "one", plugins=PLUGINS)
    published, retracted = asyncio.Queue(), asyncio.Queue()
    watcher.xmpp.add_event_handler("pubsub_publish", published.put_nowait)
    watcher.xmpp.add_event_handler("pubsub_retract", retracted.put_nowait)
    # Before presence: the capabilities hash in it then already names the interest.
    watcher.xmpp["xep_0163"].add_interest(NODE)
    for session in (watcher, publisher, reader, bob):
        await session.start()
    # The server asks node 1's session for its features once it sees the hash; the
    # notification below waits on that, not on a sleep.

    conference = Conference()
    conference["name"] = "The team"
    conference["autojoin"] = True
    conference["nick"] = "alice"
    await publisher.xmpp["xep_0163"].publish(conference, node=NODE, id=ROOM,
                                             options=publish_options(),
                                             timeout=interop.STEP_TIMEOUT)
    log("alice published a bookmark on node 2")

    event = await next_event(published, "bookmark notification on node 1")
    item = event["pubsub_event"]["items"]["item"]
    check(event["from"].bare == watcher.bare and item["id"] == ROOM,
          f"notification: {event}")
    check(item["conference"]["nick"] == "alice" and item["conference"]["autojoin"],
          f"notified conference: {item}")
    log("alice's session on node 1 was notified")

    result = await reader.xmpp["xep_0060"].get_items(reader.bare, NODE,
                                                     timeout=interop.STEP_TIMEOUT)
    items = list(result["pubsub"]["items"])
    check([i["id"] for i in items] == [ROOM], f"items read on node 3: {result}")
    check(items[0]["conference"]["name"] == "The team", f"item read on node 3: {items[0]}")
    rooms = await legacy_rooms(reader)
    check(rooms == [ROOM], f"private storage on node 3 lists {rooms}")
    log("node 3 reads the bookmark, and as XEP-0048 from private storage")

    try:
        await bob.xmpp["xep_0060"].get_items(watcher.bare, NODE, timeout=interop.STEP_TIMEOUT)
        raise interop.Failure("bob read alice's bookmarks")
    except IqError as error:
        check(error.condition == "not-allowed", f"bob's error: <{error.condition}/>")
    log("bob may not read them")

    await publisher.xmpp["xep_0060"].retract(publisher.bare, NODE, ROOM, notify=True,
                                             timeout=interop.STEP_TIMEOUT)
    event = await next_event(retracted, "retraction on node 1")
    check(event["pubsub_event"]["items"]["retract"]["id"] == ROOM, f"retraction: {event}")
    rooms = await legacy_rooms(reader)
    check(rooms == [], f"after the retraction private storage lists {rooms}")
    log("the retraction reached node 1 and emptied the legacy list")

    for session in (watcher, publisher, reader, bob):
        await session.stop()


if __name__ == "__main__":
    interop.main(scenario, lambda parser: parser.add_argument("--ports", required=True))
