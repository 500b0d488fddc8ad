#!/usr/bin/python3
"""PEP with slixmpp's own plugins (XEP-0163, XEP-0084, XEP-0115) on two nodes of a
cluster: alice (node 1) and bob (node 2) become contacts; bob's client says through its
entity capabilities that it wants avatar metadata; alice publishes an avatar (data and
metadata); bob is notified of the metadata on node 2 and fetches the data from alice's
account. Then alice keeps bookmarks in private PEP (XEP-0223 with XEP-0048's payload):
her session on node 3 reads them back, bob may not.

Run by tests/tests/cluster/t80_slixmpp.rs with `--ports P1,P2,P3`. Accounts: alice, bob.
"""

import argparse
import asyncio
import hashlib

import interop
from interop import Session, check, log, until

from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0048.stanza import Bookmarks

PLUGINS = ("xep_0030", "xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0223", "xep_0048")
AVATAR = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def on_node(args, number):
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


async def scenario(args):
    alice = Session(on_node(args, 1), "alice", "one", plugins=PLUGINS)
    bob = Session(on_node(args, 2), "bob", "two", plugins=PLUGINS)
    metadata = asyncio.Queue()
    bob.xmpp.add_event_handler("avatar_metadata_publish", metadata.put_nowait)
    for session in (alice, bob):
        # Requests are accepted and returned: one subscribe makes it mutual.
        session.xmpp.auto_authorize = True
        session.xmpp.auto_subscribe = True
        await session.start()
        await session.xmpp.get_roster(timeout=interop.STEP_TIMEOUT)
    alice.xmpp.client_roster.subscribe(bob.bare)
    for owner, contact in ((alice, bob), (bob, alice)):
        await until(f"{owner.bare} and {contact.bare} are mutual contacts",
                    lambda: owner.xmpp.client_roster[contact.bare]["subscription"] == "both",
                    describe=lambda: str(dict(owner.xmpp.client_roster[contact.bare])))
    # The plugin put urn:xmpp:avatar:metadata+notify in bob's features, so his
    # presence carries a capabilities hash the server asks him about. Whether his
    # answer arrives before alice publishes (a live notification) or after (the
    # newest item, sent when a session starts wanting a node), he is notified.

    avatar_id = hashlib.sha1(AVATAR).hexdigest()
    await alice.xmpp["xep_0084"].publish_avatar(AVATAR, timeout=interop.STEP_TIMEOUT)
    await alice.xmpp["xep_0084"].publish_avatar_metadata(
        items=[{"id": avatar_id, "type": "image/png", "bytes": len(AVATAR)}],
        timeout=interop.STEP_TIMEOUT)
    log("alice published her avatar on node 1")

    try:
        event = await asyncio.wait_for(metadata.get(), interop.STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise interop.Failure("bob got no avatar metadata notification on node 2") from None
    check(event["from"].bare == alice.bare, f"notification from {event['from']}")
    info = event["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
    check(info["id"] == avatar_id and int(info["bytes"]) == len(AVATAR),
          f"metadata as notified: {event}")
    log("bob was notified on node 2 through his entity capabilities")

    result = await bob.xmpp["xep_0084"].retrieve_avatar(alice.bare, avatar_id,
                                                        timeout=interop.STEP_TIMEOUT)
    data = result["pubsub"]["items"]["item"]["avatar_data"]["value"]
    check(data == AVATAR, f"fetched {len(data)} bytes, published {len(AVATAR)}")
    log("bob fetched the avatar data from alice's account")

    bookmarks = Bookmarks()
    bookmarks.add_conference("team@conference.localhost", "alice", autojoin=True)
    await alice.xmpp["xep_0223"].store(bookmarks, node="storage:bookmarks", id="current",
                                       timeout=interop.STEP_TIMEOUT)
    elsewhere = Session(on_node(args, 3), "alice", "three", plugins=PLUGINS)
    await elsewhere.start()
    stored = await elsewhere.xmpp["xep_0223"].retrieve("storage:bookmarks", id="current",
                                                       timeout=interop.STEP_TIMEOUT)
    conferences = stored["pubsub"]["items"]["item"]["bookmarks"]["conferences"]
    check([str(c["jid"]) for c in conferences] == ["team@conference.localhost"],
          f"bookmarks read on node 3: {stored}")
    log("alice's private bookmarks, stored on node 1, read back on node 3")
    try:
        await bob.xmpp["xep_0060"].get_items(alice.bare, "storage:bookmarks",
                                             timeout=interop.STEP_TIMEOUT)
        raise interop.Failure("bob read alice's private bookmarks")
    except IqError as error:
        check(error.condition == "not-allowed", f"bob's error: {error.condition}")

    for session in (alice, bob, elsewhere):
        await session.stop()


if __name__ == "__main__":
    interop.main(scenario, lambda parser: parser.add_argument("--ports", required=True))
