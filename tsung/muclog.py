"""Counts the muc scenario's group chat traffic from Tsung's traffic dump.

tsung.dump (dumptraffic="true", which tsung/run turns on for muc) holds every
chunk each session sent and received. Per session the received chunks are
joined, then counted:
  - sent: groupchat messages the sessions sent (with a body);
  - delivered: groupchat messages with a body the sessions received, live
    ones and history (messages with a XEP-0203 <delay/>) apart;
  - errors: message errors received.
The server's CPU time divided by the live deliveries is the "CPU per
delivery" tsung/run prints for muc, the same figure for every server.
"""

import re
from collections import defaultdict

import pubsublog

MESSAGE = re.compile(r"<message\b([^>]*?)(/>|>(.*?)</message>)", re.S)
GROUPCHAT = re.compile(r"""\btype=(?:'groupchat'|"groupchat")""")
ERROR = re.compile(r"""\btype=(?:'error'|"error")""")


def count(text):
    """(groupchat with body, of them with a delay, message errors) in `text`."""
    live = delayed = errors = 0
    for match in MESSAGE.finditer(text):
        attrs, body = match.group(1), match.group(3) or ""
        if ERROR.search(attrs):
            errors += 1
        elif GROUPCHAT.search(attrs) and "<body" in body:
            if "<delay" in body:
                delayed += 1
            else:
                live += 1
    return live, delayed, errors


def parse(path):
    sent, received = defaultdict(list), defaultdict(list)
    for direction, _time, pid, data in pubsublog._chunks(path):
        (sent if direction == "Send" else received)[pid].append(data)
    result = {"sessions": len(sent), "sent": 0, "delivered": 0, "history": 0, "errors": 0}
    for parts in sent.values():
        result["sent"] += count("".join(parts))[0]
    for parts in received.values():
        live, delayed, errors = count("".join(parts))
        result["delivered"] += live
        result["history"] += delayed
        result["errors"] += errors
    return result


def print_summary(muc, server):
    print(
        f"  group chat                {muc['sent']} sent, {muc['delivered']} delivered live "
        f"(+{muc['history']} history), {muc['errors']} message errors"
    )
    if server and muc["delivered"]:
        per = 1e6 * server["cpu_seconds"] / muc["delivered"]
        print(f"  server CPU per delivery   {per:.1f} µs")


def _selftest():
    text = (
        "<message from='r@c/a' to='u@x/1' type='groupchat'><body>hi</body></message>"
        '<message from="r@c" type="groupchat"><subject>s</subject></message>'
        "<message type='groupchat'><body>old</body><delay xmlns='urn:xmpp:delay'/></message>"
        "<message type='error'><error/></message><presence/>"
    )
    assert count(text) == (1, 1, 1), count(text)


if __name__ == "__main__":
    import json
    import sys

    _selftest()
    for path in sys.argv[1:]:
        print(path, json.dumps(parse(path)))
