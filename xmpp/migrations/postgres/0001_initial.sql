-- Users, rosters and offline messages (PostgreSQL).
-- Times are unix milliseconds. Keys use the "C" collation so that ordering is
-- byte order, as on SQLite, and comparisons stay cheap.

CREATE TABLE users (
    username      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    scram_sha1    TEXT    NOT NULL,
    scram_sha256  TEXT    NOT NULL,
    admin         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms BIGINT  NOT NULL
);

-- One row per roster relation of `owner` (a username) with `contact` (a bare JID).
-- group_names holds the item's groups, each written as <byte length>:<name>.
CREATE TABLE roster_items (
    owner       TEXT COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    contact     TEXT COLLATE "C" NOT NULL,
    name        TEXT,
    group_names TEXT    NOT NULL DEFAULT '',
    sub_to      BOOLEAN NOT NULL,
    sub_from    BOOLEAN NOT NULL,
    pending_out BOOLEAN NOT NULL,
    pending_in  BOOLEAN NOT NULL,
    preapproved BOOLEAN NOT NULL,
    in_roster   BOOLEAN NOT NULL,
    PRIMARY KEY (owner, contact)
);

-- Finds the rosters a deleted user appears in.
CREATE INDEX roster_items_contact ON roster_items (contact);

-- XEP-0160 offline storage.
CREATE TABLE offline_messages (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    sender   TEXT   NOT NULL,
    stanza   TEXT   NOT NULL,
    stamp_ms BIGINT NOT NULL
);

CREATE INDEX offline_messages_username ON offline_messages (username, id);
