#!/usr/bin/python3
"""slixmpp's own XEP-0045 plugin against Starling's group chat: creating a room and
configuring it through the room configuration form, history on join (maxstanzas),
groupchat, a private message through the room, a kick (307) and a ban (301, the outcast
list, and a refused join).

Accounts: alice, bob, carol.
"""

import asyncio

from slixmpp.exceptions import PresenceError

import interop
from interop import STEP_TIMEOUT, Session, check, log, until

ROOM = "lounge@conference.{domain}"


def codes(presence):
    return sorted(int(code) for code in presence["muc"]["status_codes"])


async def scenario(args):
    room = ROOM.format(domain=args.domain)
    alice = Session(args, "alice", "desk", plugins=("xep_0045",))
    bob = Session(args, "bob", "phone", plugins=("xep_0045",))
    carol = Session(args, "carol", "laptop", plugins=("xep_0045",))
    for session in (alice, bob, carol):
        await session.start()
    muc = {s.user: s.xmpp.plugin["xep_0045"] for s in (alice, bob, carol)}

    own, _subject, _occupants, _history = await muc["alice"].join_muc_wait(
        room, "alice", maxstanzas=0, timeout=STEP_TIMEOUT)
    check(codes(own) == [110, 201], f"the creator's self-presence codes: {codes(own)}")
    form = await muc["alice"].get_room_config(room)
    check("muc#roomconfig_roomname" in form.get_fields(), f"no room name field: {form}")
    form.set_values({"muc#roomconfig_roomname": "The Lounge"})
    await muc["alice"].set_room_config(room, form)
    log("room created and configured through the form")

    for n in range(3):
        alice.xmpp.send_message(mto=room, mbody=f"earlier {n}", mtype="groupchat")
    await alice.next_message("alice's own last message back",
                             lambda m: m["type"] == "groupchat" and m["body"] == "earlier 2")

    _own, _subject, _occupants, history = await muc["bob"].join_muc_wait(
        room, "bob", maxstanzas=2, timeout=STEP_TIMEOUT)
    bodies = [m["body"] for m in history]
    check(bodies == ["earlier 1", "earlier 2"], f"bob's history: {bodies}")
    await muc["carol"].join_muc_wait(room, "carol", maxstanzas=0, timeout=STEP_TIMEOUT)
    log("history on join limited to two stanzas")

    bob.xmpp.send_message(mto=f"{room}/alice", mbody="just between us", mtype="chat")
    private = await alice.next_message("bob's private message",
                                       lambda m: m["body"] == "just between us")
    check(str(private["from"]) == f"{room}/bob", f"private message from {private['from']}")
    carol.xmpp.send_message(mto=room, mbody="hello all", mtype="groupchat")
    heard = await bob.next_message("carol's groupchat",
                                   lambda m: m["type"] == "groupchat" and m["body"] == "hello all")
    check(str(heard["from"]) == f"{room}/carol", f"groupchat from {heard['from']}")
    log("private message and groupchat delivered")

    kicked = asyncio.get_running_loop().create_future()
    carol.xmpp.add_event_handler(
        f"muc::{room}::self-presence",
        lambda p: kicked.set_result(p) if p["type"] == "unavailable" and not kicked.done() else None)
    await muc["alice"].set_role(room, "carol", "none", reason="too loud")
    presence = await asyncio.wait_for(kicked, STEP_TIMEOUT)
    check(307 in codes(presence), f"carol's kick codes: {codes(presence)}")
    log("kick seen by slixmpp with status 307")

    banned = asyncio.get_running_loop().create_future()
    bob.xmpp.add_event_handler(
        f"muc::{room}::self-presence",
        lambda p: banned.set_result(p) if p["type"] == "unavailable" and not banned.done() else None)
    await muc["alice"].set_affiliation(room, "outcast", jid=bob.bare, reason="spam")
    presence = await asyncio.wait_for(banned, STEP_TIMEOUT)
    check(301 in codes(presence), f"bob's ban codes: {codes(presence)}")
    outcasts = [str(j) for j in await muc["alice"].get_affiliation_list(room, "outcast")]
    check(bob.bare in outcasts, f"outcast list: {outcasts}")
    try:
        await muc["bob"].join_muc_wait(room, "bob", maxstanzas=0, timeout=STEP_TIMEOUT)
    except PresenceError as refused:
        condition = refused.condition
        check(condition == "forbidden", f"bob's join refused with {condition}")
    else:
        raise interop.Failure("a banned user joined again")
    log("ban seen with status 301, listed, and the rejoin refused")

    for session in (alice, bob, carol):
        await session.stop()


if __name__ == "__main__":
    interop.main(scenario)
