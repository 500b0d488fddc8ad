#!/usr/bin/python3
"""slixmpp and Bayeux on different nodes of one cluster, through pub/sub (XEP-0060):

- alice publishes with slixmpp on node 1; a Bayeux client subscribed to the channel
  on node 2 receives the item: its XEP-0335 JSON as `data`, other XML as
  `{"xml": "<...>"}`, and the node, item id and publisher in `ext.xmpp`;
- a Bayeux client authenticated as alice publishes on node 3; bob, subscribed with
  slixmpp on node 1, receives the event with the data as XEP-0335 JSON.

The Bayeux side is a minimal long-polling client written here (urllib), independent
of the JavaScript clients. Run by tests/tests/cometd with `--ports P1,P2,P3` (client
ports) and `--http H1,H2,H3` (HTTP ports). Accounts: alice, bob.
"""

import argparse
import asyncio
import json
import urllib.request
import xml.etree.ElementTree as ET

import interop
from interop import Failure, Session, check, log

JSON_NS = "urn:xmpp:json:0"
ATOM_NS = "http://www.w3.org/2005/Atom"


class Bayeux:
    """A Bayeux 1.0 long-polling client: handshake, subscribe, publish, connect."""

    def __init__(self, url):
        self.url = url
        self.client_id = None
        self.events = []
        self.next_id = 0

    def _post(self, messages):
        request = urllib.request.Request(
            self.url, data=json.dumps(messages).encode(),
            headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=interop.STEP_TIMEOUT) as response:
            return json.loads(response.read())

    async def send(self, message):
        """Sends one message; returns its reply, keeping any events that came along."""
        self.next_id += 1
        message = {**message, "id": str(self.next_id)}
        if self.client_id:
            message["clientId"] = self.client_id
        answer = await asyncio.to_thread(self._post, [message])
        replies = [m for m in answer if m.get("id") == message["id"]]
        self.events += [m for m in answer if "data" in m and m.get("id") != message["id"]]
        check(len(replies) == 1, f"Bayeux: no single reply to {message}: {answer}")
        return replies[0]

    async def handshake(self, auth=None):
        message = {"channel": "/meta/handshake", "version": "1.0",
                   "supportedConnectionTypes": ["long-polling"]}
        if auth:
            message["ext"] = {"authentication": auth}
        reply = await self.send(message)
        check(reply["successful"], f"Bayeux handshake failed: {reply}")
        self.client_id = reply["clientId"]

    async def subscribe(self, channel):
        reply = await self.send({"channel": "/meta/subscribe", "subscription": channel})
        check(reply["successful"], f"Bayeux subscribe to {channel} failed: {reply}")

    async def publish(self, channel, data):
        reply = await self.send({"channel": channel, "data": data})
        check(reply["successful"], f"Bayeux publish to {channel} failed: {reply}")

    async def next_event(self, what):
        """Connects until an event arrives; returns the oldest one not yet taken."""
        deadline = asyncio.get_running_loop().time() + interop.STEP_TIMEOUT
        while not self.events:
            if asyncio.get_running_loop().time() > deadline:
                raise Failure(f"Bayeux: no {what} within {interop.STEP_TIMEOUT} s")
            reply = await self.send({"channel": "/meta/connect", "connectionType": "long-polling"})
            check(reply["successful"], f"Bayeux connect failed: {reply}")
        return self.events.pop(0)


def on_node(args, number):
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


def cometd_url(args, number):
    return f"http://{args.host}:{args.http.split(',')[number - 1]}/cometd"


async def xmpp_to_bayeux(args, alice, service):
    node = "xmpp-to-bayeux"
    bayeux = Bayeux(cometd_url(args, 2))
    await bayeux.handshake()
    # The node does not exist yet: Bayeux channels are implicit.
    await bayeux.subscribe(f"/pubsub/{node}")
    payload = ET.Element(f"{{{JSON_NS}}}json")
    payload.text = json.dumps({"from": "slixmpp", "n": 1})
    result = await alice.xmpp["xep_0060"].publish(service, node, id="first", payload=payload,
                                                  timeout=interop.STEP_TIMEOUT)
    log(f"alice published on node 1: {result['pubsub']['publish']['item']['id']}")
    event = await bayeux.next_event("event for the JSON item")
    check(event["channel"] == f"/pubsub/{node}", f"wrong channel: {event}")
    check(event["data"] == {"from": "slixmpp", "n": 1}, f"JSON payload not the data: {event}")
    xmpp = event.get("ext", {}).get("xmpp", {})
    check(xmpp.get("node") == node and xmpp.get("id") == "first", f"wrong ext.xmpp: {event}")
    check(str(xmpp.get("publisher")).startswith(alice.bare), f"publisher: {event}")
    entry = ET.Element(f"{{{ATOM_NS}}}entry")
    ET.SubElement(entry, f"{{{ATOM_NS}}}title").text = "Atom & XML"
    await alice.xmpp["xep_0060"].publish(service, node, id="second", payload=entry,
                                         timeout=interop.STEP_TIMEOUT)
    event = await bayeux.next_event("event for the Atom item")
    check(event.get("ext", {}).get("xmpp", {}).get("id") == "second", f"wrong item: {event}")
    xml = event["data"].get("xml") if isinstance(event["data"], dict) else None
    check(list(event["data"]) == ["xml"] and isinstance(xml, str)
          and "<title>Atom &amp; XML</title>" in xml and ATOM_NS in xml,
          f"XML payload not as {{\"xml\": its XML}}: {event}")
    log("the Bayeux client on node 2 received both items")


async def bayeux_to_xmpp(args, alice, bob, service):
    node = "bayeux-to-xmpp"
    await alice.xmpp["xep_0060"].create_node(service, node, timeout=interop.STEP_TIMEOUT)
    await bob.xmpp["xep_0060"].subscribe(service, node, timeout=interop.STEP_TIMEOUT)
    events = asyncio.Queue()
    bob.xmpp.add_event_handler("pubsub_publish", events.put_nowait)
    bayeux = Bayeux(cometd_url(args, 3))
    await bayeux.handshake({"user": "alice", "credentials": interop.password("alice")})
    await bayeux.publish(f"/pubsub/{node}", {"from": "bayeux", "list": [1, 2, 3]})
    try:
        message = await asyncio.wait_for(events.get(), interop.STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure("bob on node 1 got no event for the Bayeux publish on node 3") from None
    items = message["pubsub_event"]["items"]
    check(items["node"] == node, f"event for another node: {message}")
    payload = items["item"]["payload"]
    check(payload is not None and payload.tag == f"{{{JSON_NS}}}json",
          f"the item is not XEP-0335 JSON: {message}")
    check(json.loads(payload.text) == {"from": "bayeux", "list": [1, 2, 3]},
          f"wrong JSON: {payload.text}")
    log("bob on node 1 received the Bayeux publish from node 3")


async def scenario(args):
    service = f"pubsub.{args.domain}"
    alice = await Session(on_node(args, 1), "alice", "pub", plugins=("xep_0060",)).start()
    bob = await Session(on_node(args, 1), "bob", "sub", plugins=("xep_0060",)).start()
    await xmpp_to_bayeux(args, alice, service)
    await bayeux_to_xmpp(args, alice, bob, service)
    await alice.stop()
    await bob.stop()


if __name__ == "__main__":
    interop.main(scenario, lambda parser: (
        parser.add_argument("--ports", required=True),
        parser.add_argument("--http", required=True),
    ))
