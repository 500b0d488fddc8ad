#!/usr/bin/python3
"""go-sendxmpp as a second client implementation: it logs in (STARTTLS, its own SASL choice)
and sends a message to a slixmpp receiver that is online, and to a user who is offline and
gets the message, with a XEP-0203 delay, at login.

Accounts: sam (go-sendxmpp), rita (online receiver), otto (offline receiver).
"""

import asyncio
import shutil

import interop
from interop import Failure, Session, check, log, password

#: go-sendxmpp's own connection timeout, and the bound for one run of it.
CONNECT_TIMEOUT = 10
RUN_TIMEOUT = 30


async def go_sendxmpp(args, sender, recipient, text):
    binary = shutil.which("go-sendxmpp")
    if binary is None:
        raise Failure("go-sendxmpp is not installed: install the Debian package go-sendxmpp")
    command = [
        binary,
        "--username", f"{sender}@{args.domain}",
        "--password", password(sender),
        "--jserver", f"{args.host}:{args.port}",
        "--no-tls-verify",
        "--timeout", str(CONNECT_TIMEOUT),
        recipient,
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(text.encode()), RUN_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise Failure(f"go-sendxmpp to {recipient} did not finish within {RUN_TIMEOUT} s") \
            from None
    if process.returncode != 0:
        raise Failure(f"go-sendxmpp to {recipient} exited with {process.returncode}: "
                      f"{output.decode(errors='replace').strip()}")
    log(f"go-sendxmpp sent {text!r} to {recipient}")


async def scenario(args):
    sam = f"sam@{args.domain}"

    rita = await Session(args, "rita", "phone").start()
    text = "hello rita, from go-sendxmpp"
    await go_sendxmpp(args, "sam", rita.bare, text)
    message = await rita.next_message("the message from go-sendxmpp",
                                      lambda m: m["body"].strip() != "")
    check(message["body"].strip() == text, f"rita got {message['body']!r}, expected {text!r}")
    check(message["from"].bare == sam, f"from {message['from']}, expected {sam}/...")
    log(f"online receiver got it from {message['from']}")
    await rita.stop()

    otto_bare = f"otto@{args.domain}"
    text = "hello otto, you were offline"
    await go_sendxmpp(args, "sam", otto_bare, text)
    otto = await Session(args, "otto", "desk", plugins=("xep_0203",)).start()
    message = await otto.next_message("the offline message from go-sendxmpp",
                                      lambda m: m["body"].strip() != "")
    check(message["body"].strip() == text, f"otto got {message['body']!r}, expected {text!r}")
    check(message["from"].bare == sam, f"from {message['from']}, expected {sam}/...")
    check(message["delay"]["stamp"] is not None,
          f"no XEP-0203 <delay/> on the offline message: {message}")
    log(f"offline receiver got it at login, delayed from {message['delay']['stamp']}")
    await otto.stop()


if __name__ == "__main__":
    interop.main(scenario)
