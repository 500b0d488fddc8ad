"""The load-test accounts and the XEP-0227 (PIEFXIS) file that carries them.

Users PREFIX1..PREFIXN have passwords PASSWORD1..PASSWORDN (Tsung's
convention) and ROSTER_SIZE contacts each: their neighbours in that numbering,
subscription both, exactly as `starling user provision` makes them. Offline
recipients OFFLINE_PREFIX1..M never log in and have no contacts.
"""

import dataclasses
from xml.sax.saxutils import quoteattr

NS = "urn:xmpp:pie:0"


@dataclasses.dataclass
class Plan:
    domain: str
    prefix: str
    password: str
    count: int
    roster_size: int
    offline_prefix: str
    offline_count: int

    def offline_password(self):
        return self.password + "away"


def roster_neighbours(index, count, size):
    """The same relation as `starling user provision` (xmpp/src/cli/provision.rs)."""
    if count <= 1 or size == 0:
        return []
    if size >= count - 1:
        return [other for other in range(count) if other != index]
    contacts = []
    for distance in range(1, size // 2 + 1):
        contacts.append((index + distance) % count)
        contacts.append((index + count - distance) % count)
    if size % 2 == 1 and count % 2 == 0:
        contacts.append((index + count // 2) % count)
    return contacts


def accounts(plan):
    """(username, password, [contact usernames]) for every account."""
    for index in range(plan.count):
        contacts = [
            f"{plan.prefix}{other + 1}"
            for other in roster_neighbours(index, plan.count, plan.roster_size)
        ]
        yield f"{plan.prefix}{index + 1}", f"{plan.password}{index + 1}", contacts
    for number in range(1, plan.offline_count + 1):
        yield f"{plan.offline_prefix}{number}", f"{plan.offline_password()}{number}", []


def write(plan, path):
    """Writes every account with a clear-text password (the importing server
    hashes it) and its roster."""
    with open(path, "w") as out:
        out.write("<?xml version='1.0' encoding='UTF-8'?>\n")
        out.write(f"<server-data xmlns='{NS}'>\n")
        out.write(f"  <host jid={quoteattr(plan.domain)}>\n")
        for name, password, contacts in accounts(plan):
            out.write(f"    <user name={quoteattr(name)} password={quoteattr(password)}>")
            if contacts:
                out.write("\n      <query xmlns='jabber:iq:roster'>\n")
                for contact in contacts:
                    jid = quoteattr(f"{contact}@{plan.domain}")
                    out.write(f"        <item jid={jid} subscription='both'/>\n")
                out.write("      </query>\n    ")
            out.write("</user>\n")
        out.write("  </host>\n</server-data>\n")


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def read(path):
    """(username, password, [contact JIDs]) for every user of a XEP-0227 file."""
    import xml.etree.ElementTree as ET

    for _, element in ET.iterparse(path):
        if _local(element.tag) != "user":
            continue
        contacts = [
            item.get("jid")
            for item in element.iter()
            if _local(item.tag) == "item" and item.get("jid")
        ]
        yield element.get("name"), element.get("password"), contacts
        element.clear()


def offline_counts(path):
    """(username, offline messages) for every user of a XEP-0227 file."""
    import xml.etree.ElementTree as ET

    for _, element in ET.iterparse(path):
        if _local(element.tag) != "user":
            continue
        count = sum(
            1
            for box in element
            if _local(box.tag) == "offline-messages"
            for message in box
            if _local(message.tag) == "message"
        )
        yield element.get("name"), count
        element.clear()
