#!/usr/bin/python3
"""slixmpp over XEP-0368 direct TLS: two clients connect to the direct TLS port with
TLS from the first byte (no STARTTLS), authenticate, bind and chat both ways.

Accounts: alice, bob (password --password).
"""

import asyncio
import ssl

import slixmpp

import interop
from interop import Failure, STEP_TIMEOUT, check, log


async def start(args, user, resource):
    xmpp = slixmpp.ClientXMPP(f"{user}@{args.domain}/{resource}", args.password)
    # The node's certificate is self-signed for the test.
    xmpp.ssl_context.check_hostname = False
    xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    xmpp.ssl_context.set_alpn_protocols(["xmpp-client"])
    messages = asyncio.Queue()
    xmpp.add_event_handler("message", messages.put_nowait)
    started = asyncio.get_running_loop().create_future()

    def done(outcome):
        if not started.done():
            started.set_result(outcome)

    xmpp.add_event_handler("session_start", lambda _: done("session"))
    xmpp.add_event_handler("failed_all_auth", lambda _: done("auth failed"))
    xmpp.add_event_handler("disconnected", lambda _: done("disconnected"))
    xmpp.add_event_handler("connection_failed", lambda e: done(f"connection failed: {e}"))
    xmpp.connect((args.host, args.port), use_ssl=True, disable_starttls=True)
    try:
        outcome = await asyncio.wait_for(started, STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure(f"{user}: no session within {STEP_TIMEOUT} s") from None
    check(outcome == "session", f"{user}: {outcome}")
    ssl_object = xmpp.transport.get_extra_info("ssl_object")
    check(ssl_object is not None, f"{user}: the stream is not inside TLS")
    log(f"{xmpp.boundjid} online over direct TLS ({ssl_object.version()}, "
        f"ALPN {ssl_object.selected_alpn_protocol()})")
    xmpp.send_presence()
    return xmpp, messages


async def expect(messages, user, body):
    try:
        while True:
            message = await asyncio.wait_for(messages.get(), STEP_TIMEOUT)
            if message["body"] == body:
                return message
    except asyncio.TimeoutError:
        raise Failure(f"{user}: no message {body!r} within {STEP_TIMEOUT} s") from None


async def scenario(args):
    alice, alice_messages = await start(args, "alice", "direct")
    bob, bob_messages = await start(args, "bob", "direct")
    alice.send_message(mto=str(bob.boundjid), mbody="hello over direct TLS", mtype="chat")
    message = await expect(bob_messages, "bob", "hello over direct TLS")
    check(message["from"] == alice.boundjid, f"from {message['from']}")
    bob.send_message(mto=str(alice.boundjid), mbody="hello back", mtype="chat")
    await expect(alice_messages, "alice", "hello back")
    log("chat both ways over direct TLS")
    for xmpp in (alice, bob):
        xmpp.disconnect()


if __name__ == "__main__":
    interop.main(scenario, lambda parser: parser.add_argument("--password", required=True))
