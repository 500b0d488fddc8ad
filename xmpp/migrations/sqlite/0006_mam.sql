-- XEP-0313 message archives (SQLite): each account's archive of the chats it
-- sent and received, in archive order. `stanza_id` is the XEP-0359 id the
-- archive gives a message; `with_jid` the bare JID of the other party;
-- `stamp_ms` when the server archived it (unix milliseconds).
CREATE TABLE mam_messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    owner     TEXT    NOT NULL,
    stanza_id TEXT    NOT NULL,
    with_jid  TEXT    NOT NULL,
    stamp_ms  INTEGER NOT NULL,
    stanza    TEXT    NOT NULL,
    UNIQUE (owner, stanza_id)
);

CREATE INDEX mam_messages_owner ON mam_messages (owner, id);
CREATE INDEX mam_messages_with ON mam_messages (owner, with_jid, id);
