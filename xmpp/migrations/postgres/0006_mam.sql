-- XEP-0313 message archives (PostgreSQL): each account's archive of the chats
-- it sent and received, in archive order. `stanza_id` is the XEP-0359 id the
-- archive gives a message; `with_jid` the bare JID of the other party;
-- `stamp_ms` when the server archived it (unix milliseconds).
CREATE TABLE mam_messages (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner     TEXT COLLATE "C" NOT NULL,
    stanza_id TEXT COLLATE "C" NOT NULL,
    with_jid  TEXT COLLATE "C" NOT NULL,
    stamp_ms  BIGINT NOT NULL,
    stanza    TEXT   NOT NULL,
    UNIQUE (owner, stanza_id)
);

CREATE INDEX mam_messages_owner ON mam_messages (owner, id);
CREATE INDEX mam_messages_with ON mam_messages (owner, with_jid, id);
