#!/usr/bin/python3
"""Offline delivery (XEP-0160) with XEP-0203 delay stamps: slixmpp sends messages to a user
who is not online; when that user logs in and sends initial presence, they arrive in order,
each with a <delay/> from the server whose stamp is the time they were sent. A message sent
once the user is online arrives at once, without a delay.

Accounts: olga (sender), oscar (recipient).
"""

import datetime as dt

import interop
from interop import Session, check, log, utc_now

COUNT = 3
#: Stamps have one-second resolution at worst.
SLACK = dt.timedelta(seconds=2)


async def scenario(args):
    olga = await Session(args, "olga", "laptop").start()
    oscar_bare = f"oscar@{args.domain}"
    before = utc_now()
    for n in range(COUNT):
        olga.xmpp.send_message(mto=oscar_bare, mbody=f"while you were out {n}", mtype="chat")
    # A ping round trip: everything sent before it has been routed (and stored).
    await olga.xmpp["xep_0199"].ping(jid=args.domain, timeout=interop.STEP_TIMEOUT)
    sent = utc_now()
    await olga.stop()
    log(f"{COUNT} messages sent to {oscar_bare} while offline")

    oscar = await Session(args, "oscar", "home", plugins=("xep_0203",)).start()
    for n in range(COUNT):
        message = await oscar.next_message(f"offline message {n}")
        check(message["body"] == f"while you were out {n}",
              f"got {message['body']!r}, expected 'while you were out {n}' (lost or reordered)")
        check(message["from"].bare == f"olga@{args.domain}", f"from {message['from']}")
        delay = message["delay"]
        stamp = delay["stamp"]
        check(stamp is not None, f"no XEP-0203 <delay/> on an offline message: {message}")
        check(stamp.tzinfo is not None, f"delay stamp without a time zone: {delay}")
        check(before - SLACK <= stamp <= sent + SLACK,
              f"delay stamp {stamp.isoformat()} is not when the message was sent "
              f"({before.isoformat()} .. {sent.isoformat()})")
        delay_from = delay["from"]
        check(delay_from is None or delay_from.bare == args.domain,
              f"delay from {delay_from}, expected the server {args.domain}")
    log(f"{COUNT} offline messages delivered in order with delay stamps")

    olga = await Session(args, "olga", "laptop").start()
    olga.xmpp.send_message(mto=oscar_bare, mbody="now you are here", mtype="chat")
    message = await oscar.next_message("the live message")
    check(message["body"] == "now you are here", f"got {message['body']!r}")
    check(not message.xml.findall("{urn:xmpp:delay}delay"),
          f"a live message carries a delay: {message}")
    log("a live message arrives without a delay")
    await olga.stop()
    await oscar.stop()


if __name__ == "__main__":
    interop.main(scenario)
