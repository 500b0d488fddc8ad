-- Users, rosters and offline messages (SQLite).
-- Flags are INTEGER 0/1 (SQLite has no boolean type); times are unix milliseconds.
-- Keyed tables are WITHOUT ROWID: the primary key is the only B-tree, which halves
-- the write work of a bulk load and the space on disk.

CREATE TABLE users (
    username      TEXT    NOT NULL PRIMARY KEY,
    scram_sha1    TEXT    NOT NULL,
    scram_sha256  TEXT    NOT NULL,
    admin         INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per roster relation of `owner` (a username) with `contact` (a bare JID).
-- group_names holds the item's groups, each written as <byte length>:<name>.
CREATE TABLE roster_items (
    owner       TEXT    NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    contact     TEXT    NOT NULL,
    name        TEXT,
    group_names TEXT    NOT NULL DEFAULT '',
    sub_to      INTEGER NOT NULL CHECK (sub_to IN (0, 1)),
    sub_from    INTEGER NOT NULL CHECK (sub_from IN (0, 1)),
    pending_out INTEGER NOT NULL CHECK (pending_out IN (0, 1)),
    pending_in  INTEGER NOT NULL CHECK (pending_in IN (0, 1)),
    preapproved INTEGER NOT NULL CHECK (preapproved IN (0, 1)),
    in_roster   INTEGER NOT NULL CHECK (in_roster IN (0, 1)),
    PRIMARY KEY (owner, contact)
) WITHOUT ROWID;

-- Finds the rosters a deleted user appears in.
CREATE INDEX roster_items_contact ON roster_items (contact);

-- XEP-0160 offline storage; AUTOINCREMENT so an id is never reused.
CREATE TABLE offline_messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT    NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    sender   TEXT    NOT NULL,
    stanza   TEXT    NOT NULL,
    stamp_ms INTEGER NOT NULL
);

CREATE INDEX offline_messages_username ON offline_messages (username, id);
