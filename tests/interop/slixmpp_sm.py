#!/usr/bin/python3
"""XEP-0198 with slixmpp's own plugin (xep_0198) against a cluster: the client enables
stream management with resumption, loses its connection without closing its stream, and
resumes, first on the same node, then on another node; the messages sent to it while it
was away arrive once each, in order, and the session keeps its JID.

Run by tests/tests/sm/t30_slixmpp.rs with `--ports P1,P2,P3` (the nodes' client ports;
`--port` is the first). Accounts: sam (stream management), pat (sends).
"""

import argparse
import asyncio

import interop
from interop import Session, check, log

COUNT = 20


def on_node(args, number):
    """The arguments for a session on node `number` (1-based)."""
    ports = [int(port) for port in args.ports.split(",")]
    return argparse.Namespace(**{**vars(args), "port": ports[number - 1]})


def ports(parser):
    parser.add_argument("--ports", required=True, help="client ports of the nodes, comma-separated")


async def wait_event(session, event, what):
    """Waits for slixmpp event `event` (registered before the action that causes it)."""
    future = asyncio.get_running_loop().create_future()

    def fire(payload):
        if not future.done():
            future.set_result(payload)

    session.xmpp.add_event_handler(event, fire, disposable=True)
    return future


async def outcome(future, what):
    try:
        return await asyncio.wait_for(future, interop.STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise interop.Failure(f"no {what} within {interop.STEP_TIMEOUT} s") from None


async def lose_and_resume(sam, pat, args, node, label):
    """Cuts sam's connection, sends COUNT messages meanwhile, resumes on `node`."""
    before = sam.jid
    disconnected = await wait_event(sam, "disconnected", "disconnect")
    # No </stream>: the network is gone, as far as the server can tell.
    sam.xmpp.transport.abort()
    await outcome(disconnected, "disconnected event after the cut")
    log(f"{label}: connection cut")
    for n in range(COUNT):
        pat.xmpp.send_message(mto=before, mbody=f"{label}-{n}", mtype="chat")
    await pat.xmpp["xep_0199"].ping(jid=args.domain, timeout=interop.STEP_TIMEOUT)

    resumed = await wait_event(sam, "session_resumed", "resumption")
    failed = await wait_event(sam, "sm_failed", "failure")
    target = on_node(args, node)
    sam.xmpp.connect((target.host, target.port), force_starttls=True)
    done, _ = await asyncio.wait({resumed, failed}, timeout=interop.STEP_TIMEOUT,
                                 return_when=asyncio.FIRST_COMPLETED)
    check(resumed in done, f"{label}: not resumed on node {node}: "
          f"{failed.result() if failed in done else 'no answer'}")
    check(sam.jid == before, f"{label}: the session's JID changed from {before} to {sam.jid}")
    for n in range(COUNT):
        message = await sam.next_message(f"{label} message {n}",
                                         lambda m: m["body"].startswith(f"{label}-"))
        check(message["body"] == f"{label}-{n}",
              f"{label}: got {message['body']!r}, expected {label}-{n} (lost, repeated or reordered)")
    log(f"{label}: resumed on node {node}; {COUNT} messages arrived once each, in order")


async def scenario(args):
    sam = Session(on_node(args, 1), "sam", "phone", plugins=("xep_0198",))
    enabled = await wait_event(sam, "sm_enabled", "<enabled/>")
    await sam.start()
    await outcome(enabled, "<enabled/>")
    sm = sam.xmpp["xep_0198"]
    check(bool(sm.sm_id), "<enabled/> carried no resumption id")
    log(f"stream management enabled on node 1, id {sm.sm_id}")
    pat = await Session(on_node(args, 3), "pat", "desk").start()

    pat.xmpp.send_message(mto=sam.jid, mbody="hello", mtype="chat")
    await sam.next_message("the first message", lambda m: m["body"] == "hello")

    await lose_and_resume(sam, pat, args, 1, "same-node")
    await lose_and_resume(sam, pat, args, 2, "other-node")

    # The session is live on node 2 both ways.
    sam.xmpp.send_message(mto=pat.jid, mbody="back", mtype="chat")
    await pat.next_message("sam's message after the move", lambda m: m["body"] == "back")
    await sam.stop()
    await pat.stop()


if __name__ == "__main__":
    interop.main(scenario, ports)
