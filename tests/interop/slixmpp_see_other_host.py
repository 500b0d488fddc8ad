#!/usr/bin/python3
"""slixmpp against a full node: the node answers the new stream with
<see-other-host/> (RFC 6120 4.9.3.19) naming a member with room.

Checks that slixmpp receives and parses the redirect (host and port), then
reports where slixmpp connects next. Exit 0: it followed the redirect and
its session started on the named member; exit 3: it received the right
redirect but reconnected elsewhere (the line starting NOT-FOLLOWED says
where); exit 1: anything else failed.

Account: the one given with --user (password: name followed by -pw).
"""

import asyncio
import sys

import interop
from interop import Failure, Session, check, log

NOT_FOLLOWED = 3
#: Where slixmpp went after the redirect, when not where it was sent.
elsewhere = []


def extra(parser):
    parser.add_argument("--user", required=True)
    parser.add_argument("--expect", required=True, help="host:port the full node must name")


async def scenario(args):
    session = Session(args, args.user, "redirected")
    xmpp = session.xmpp
    loop = asyncio.get_running_loop()
    redirects = []
    attempts = []
    started = loop.create_future()
    second_attempt = loop.create_future()

    def on_stream_error(error):
        redirects.append((error["condition"], error["see_other_host"]))

    def on_connecting(_event):
        attempts.append(xmpp.address)
        if len(attempts) == 2 and not second_attempt.done():
            second_attempt.set_result(xmpp.address)

    xmpp.add_event_handler("stream_error", on_stream_error)
    xmpp.add_event_handler("connecting", on_connecting)
    xmpp.add_event_handler("session_start",
                           lambda _: started.done() or started.set_result(xmpp.address))
    xmpp.connect((args.host, args.port), force_starttls=True)

    try:
        address = await asyncio.wait_for(second_attempt, interop.STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure(f"no second connection attempt; stream errors: {redirects}") from None
    check(redirects == [("see-other-host", args.expect)],
          f"the full node's stream errors: {redirects}, expected see-other-host {args.expect}")
    log(f"slixmpp received see-other-host {args.expect}")
    host, port = args.expect.rsplit(":", 1)
    if (address[0], int(address[1])) != (host, int(port)):
        # Do not let it reach whatever listens there.
        xmpp.cancel_connection_attempt()
        xmpp.abort()
        elsewhere.append(f"NOT-FOLLOWED: after see-other-host {args.expect} slixmpp connects "
                         f"to {address[0]}:{address[1]} (connection attempts: {attempts})")
        return
    try:
        where = await asyncio.wait_for(started, interop.STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure(f"followed to {address} but no session within {interop.STEP_TIMEOUT} s") \
            from None
    log(f"FOLLOWED: session started on {where[0]}:{where[1]}")
    await session.stop()


if __name__ == "__main__":
    interop.main(scenario, extra)
    if elsewhere:
        print(elsewhere[0], flush=True)
        sys.exit(NOT_FOLLOWED)
