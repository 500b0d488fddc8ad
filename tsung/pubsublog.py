"""Accounts for the pubsub scenario's notifications from Tsung's traffic dump.

tsung.dump (dumptraffic="true") holds every chunk a session sent or received:
    Send:TIME:<PID>:DATA      Recv:TIME:<PID>:DATA
(DATA may run over several lines). From it, per session:
  - its pub/sub requests (create, subscribe, unsubscribe, publish), matched to
    their <iq/> answers by id: times and error answers by kind;
  - each publish's stamp (Tsung's stamped="true": @@@VM,MEGA;SECS;MICRO@@@);
  - the node and stamp of each notification a subscriber received.

A subscriber must receive an item when its subscription was confirmed before
the publish was sent and it sent its unsubscribe after the publisher had the
publish's answer; an item published while one of those was in flight may or
may not reach it; any other item it receives, or one received twice, is
reported as unexpected.
"""

import bisect
import re
from collections import defaultdict

LINE = re.compile(r"^(Send|Recv|NewClient|EndClient|load):")
CHUNK = re.compile(r"^(Send|Recv):([0-9.]+):(<[0-9.]+>):(.*)$", re.S)
STAMP = re.compile(r"@@@([^@,]+),(\d+);(\d+);(\d+)@@@")
IQ_TAG = re.compile(r"<iq\b[^>]*>")
ATTR = re.compile(r"""\b(id|type)=(?:'([^']*)'|"([^"]*)")""")
REQUEST = re.compile(
    r"<(create|subscribe|unsubscribe|publish)\b[^>]*?\bnode=(?:'([^']*)'|\"([^\"]*)\")"
)
# A notification: its node and the stamp of its item (stamps alone can
# repeat: two publishers may stamp within the same microsecond).
NOTIFICATION = re.compile(
    r"<items\b[^>]*?\bnode=(?:'([^']*)'|\"([^\"]*)\")[^>]*>.*?(@@@[^@,]+,\d+;\d+;\d+@@@)", re.S
)
KINDS = ("create", "subscribe", "unsubscribe", "publish")


class Stream:
    """One session's chunks in one direction, joined, with their times."""

    def __init__(self):
        self.parts, self.ends, self.times = [], [], []
        self.length = 0

    def add(self, time, data):
        self.parts.append(data)
        self.length += len(data)
        self.ends.append(self.length)
        self.times.append(time)

    def text(self):
        return "".join(self.parts)

    def time_at(self, offset):
        """When the chunk holding character `offset` arrived."""
        return self.times[min(bisect.bisect_right(self.ends, offset), len(self.times) - 1)]


def _chunks(path):
    """(direction, time, pid, data) for every chunk of the dump."""
    current = None
    with open(path, errors="replace") as dump:
        for line in dump:
            if LINE.match(line):
                if current:
                    yield current
                match = CHUNK.match(line.rstrip("\n"))
                current = (
                    [match.group(1), float(match.group(2)), match.group(3), match.group(4)]
                    if match
                    else None
                )
            elif current:  # a chunk that ran over several lines
                current[3] += "\n" + line.rstrip("\n")
    if current:
        yield current


def _attrs(tag):
    return {m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in ATTR.finditer(tag)}


def _iq_requests(text):
    """(id, kind, node, offset, stamp) for each pub/sub <iq/> a session sent."""
    for tag in IQ_TAG.finditer(text):
        end = text.find("</iq>", tag.end())
        if tag.group(0).endswith("/>") or end < 0:
            continue
        request = REQUEST.search(text, tag.end(), end)
        if not request:
            continue
        stamp = STAMP.search(text, request.end(), end)
        yield (
            _attrs(tag.group(0)).get("id"),
            request.group(1),
            request.group(2) if request.group(2) is not None else request.group(3),
            tag.start(),
            stamp.group(0) if stamp and request.group(1) == "publish" else None,
        )


def _stamp_time(stamp):
    _, mega, secs, micro = STAMP.match(stamp).groups()
    return int(mega) * 1_000_000 + int(secs) + int(micro) / 1e6


def parse(path):
    sent, received = defaultdict(Stream), defaultdict(Stream)
    ended = {}
    for direction, time, pid, data in _chunks(path):
        (sent if direction == "Send" else received)[pid].add(time, data)
    # Answers: id -> (time, type) per session.
    answers = {}
    for pid, stream in received.items():
        text = stream.text()
        for tag in IQ_TAG.finditer(text):
            attrs = _attrs(tag.group(0))
            if attrs.get("type") in ("result", "error") and "id" in attrs:
                answers[(pid, attrs["id"])] = (stream.time_at(tag.end() - 1), attrs["type"])
        ended[pid] = stream.times[-1] if stream.times else None

    requests = {kind: 0 for kind in KINDS}
    errors = {kind: 0 for kind in KINDS}
    unanswered = {kind: 0 for kind in KINDS}
    publishes = defaultdict(list)  # node -> [(sent, answered, stamp)]
    # [pid, node, subscribe sent, confirmed, unsubscribe sent, unsubscribe answered]
    subscribers = []
    for pid, stream in sent.items():
        text = stream.text()
        subscription = None
        for iq_id, kind, node, offset, stamp in _iq_requests(text):
            requests[kind] += 1
            at = stream.time_at(offset)
            answer = answers.get((pid, iq_id))
            if answer is None:
                unanswered[kind] += 1
                continue
            answered, outcome = answer
            if outcome == "error":
                errors[kind] += 1
                continue
            if kind == "publish":
                publishes[node].append((at, answered, stamp))
            elif kind == "subscribe":
                subscription = [pid, node, at, answered, None, None]
                subscribers.append(subscription)
            elif kind == "unsubscribe" and subscription and subscription[1] == node:
                subscription[4], subscription[5] = at, answered
        # A session that never unsubscribed stays subscribed to its end.
        if subscription and subscription[4] is None:
            last = ended.get(pid) or stream.times[-1]
            subscription[4] = subscription[5] = last

    published = sum(len(items) for items in publishes.values())
    must = maybe = received_total = must_received = maybe_received = 0
    unexpected = duplicates = 0
    latencies = []
    for pid, node, sub_sent, confirmed, unsub_sent, unsub_answered in subscribers:
        stream = received.get(pid)
        got = defaultdict(list)
        if stream:
            text = stream.text()
            for match in NOTIFICATION.finditer(text):
                node_of = match.group(1) if match.group(1) is not None else match.group(2)
                got[(node_of, match.group(3))].append(stream.time_at(match.end() - 1))
        for (_, stamp), times in got.items():
            received_total += len(times)
            duplicates += len(times) - 1
            latencies.extend(1000 * (t - _stamp_time(stamp)) for t in times)
        for sent_at, answered_at, stamp in publishes.get(node, []):
            if confirmed <= sent_at and unsub_sent >= answered_at:
                must += 1
                must_received += (node, stamp) in got
            elif sent_at <= unsub_answered and answered_at >= confirmed:
                maybe += 1
                maybe_received += (node, stamp) in got
        allowed = {
            (node, stamp)
            for sent_at, answered_at, stamp in publishes.get(node, [])
            if sent_at <= unsub_answered and answered_at >= sub_sent
        }
        unexpected += sum(1 for key in got if key not in allowed)
    latencies.sort()
    return {
        "requests": requests,
        "error_answers": {k: v for k, v in errors.items() if v},
        "unanswered": {k: v for k, v in unanswered.items() if v},
        "nodes": len(publishes),
        "subscriptions": len(subscribers),
        "items_published": published,
        "notifications_received": received_total,
        "due": must,
        "due_received": must_received,
        "in_flight": maybe,
        "in_flight_received": maybe_received,
        "unexpected": unexpected,
        "duplicates": duplicates,
        "latency_ms": _percentiles(latencies),
    }


def _percentiles(values):
    if not values:
        return None

    def at(q):
        return round(values[min(len(values) - 1, int(q * len(values)))], 2)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(values[-1], 2)}


def lost(result):
    """Notifications due that did not arrive, plus unexpected or duplicated ones."""
    return (result["due"] - result["due_received"]) + result["unexpected"] + result["duplicates"]


def print_summary(ps, server, tsung_publishes):
    """Prints the pub/sub accounting; returns False on any error answer, lost,
    unexpected or duplicated notification."""
    requests = ps["requests"]
    print(
        "  pub/sub requests          "
        + ", ".join(f"{kind} {requests[kind]}" for kind in KINDS)
    )
    problems = dict(ps["error_answers"])
    for kind, n in ps["unanswered"].items():
        problems[f"{kind} unanswered"] = n
    print(
        "  pub/sub error answers     "
        + (", ".join(f"{k} {v}" for k, v in sorted(problems.items())) if problems else "none")
    )
    print(
        f"  items published           {ps['items_published']} on {ps['nodes']} nodes; "
        f"{ps['subscriptions']} subscriptions"
    )
    if ps["requests"]["publish"] != tsung_publishes:
        # Tsung's dump loses what was written in its last seconds.
        print(
            f"    (Tsung timed {tsung_publishes} publishes, its dump holds "
            f"{ps['requests']['publish']}: the rest came after the dump's last write)"
        )
    print(f"  notifications received    {ps['notifications_received']}")
    missing = ps["due"] - ps["due_received"]
    verdict = "all received" if missing == 0 else f"{missing} NOT RECEIVED"
    print(f"    due (subscribed while published)   {ps['due']}: {verdict}")
    print(
        f"    published while (un)subscribing    {ps['in_flight']}, "
        f"{ps['in_flight_received']} received (either is right)"
    )
    print(f"    unexpected / duplicated            {ps['unexpected']} / {ps['duplicates']}")
    if ps["latency_ms"]:
        lat = ps["latency_ms"]
        print(
            f"    publish-to-receipt ms              p50 {lat['p50']}, p99 {lat['p99']}, max {lat['max']}"
        )
    if server:
        print(
            "  server /metrics           "
            + ", ".join(f"{name} {value:g}" for name, value in server.items())
        )
        handed = int(server.get("notifications", 0))
        gap = handed - ps["notifications_received"]
        print(
            f"    handed to sessions vs received     {handed} / {ps['notifications_received']}"
            + (": the same" if gap == 0 else f": {gap:+d}")
        )
    return not problems and lost(ps) == 0
