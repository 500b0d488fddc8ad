#!/usr/bin/python3
"""slixmpp logs in with each SASL mechanism Starling offers (SCRAM-SHA-256, SCRAM-SHA-1,
PLAIN), always after STARTTLS; each session answers a ping; a wrong password is refused
with <not-authorized/>.

Accounts: ann.
"""

import interop
from interop import Failure, Session, check, log

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")


async def scenario(args):
    for mechanism in MECHANISMS:
        session = await Session(args, "ann", mechanism.lower(), mechanism=mechanism,
                                plugins=("xep_0030", "xep_0092")).start()
        used = session.xmpp["feature_mechanisms"].mech
        check(used is not None and used.name == mechanism,
              f"asked for {mechanism}, slixmpp used {used.name if used else None}")
        check(session.jid == f"ann@{args.domain}/{mechanism.lower()}",
              f"{mechanism}: bound JID {session.jid}")
        rtt = await session.xmpp["xep_0199"].ping(jid=args.domain, timeout=interop.STEP_TIMEOUT)
        log(f"{mechanism}: logged in over STARTTLS as {session.jid}, ping {rtt * 1000:.1f} ms")
        if mechanism == MECHANISMS[0]:
            info = await session.xmpp["xep_0030"].get_info(jid=args.domain,
                                                           timeout=interop.STEP_TIMEOUT)
            features = info["disco_info"]["features"]
            for feature in ("urn:xmpp:ping", "jabber:iq:version"):
                check(feature in features, f"disco#info of {args.domain} lacks {feature}: "
                      f"{features}")
            version = await session.xmpp["xep_0092"].get_version(args.domain,
                                                                 timeout=interop.STEP_TIMEOUT)
            name = version["software_version"]["name"]
            check(bool(name), f"software version without a name: {version}")
            log(f"disco#info lists {len(features)} features; the server is {name!r}")
        await session.stop()

    wrong = Session(args, "ann", "wrong", mechanism="SCRAM-SHA-256", secret="not-the-password")
    try:
        await wrong.start()
    except Failure:
        pass
    else:
        raise Failure("a wrong password was accepted")
    check(wrong.auth_failure == "not-authorized",
          f"wrong password: expected <not-authorized/>, got <{wrong.auth_failure}/>")
    log("wrong password refused with <not-authorized/>")
    await wrong.stop()


if __name__ == "__main__":
    interop.main(scenario)
