-- XEP-0191 block lists and RFC 6121 2.6 (XEP-0237) roster versions (PostgreSQL).

-- One row per JID `owner` (a username) blocks: a full JID, bare JID,
-- domain/resource or domain, prepared, as XEP-0191 matches them.
CREATE TABLE blocked_jids (
    owner TEXT COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    jid   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (owner, jid)
);

-- The version of `owner`'s roster: raised in the transaction of every
-- roster write. No row means the roster never changed (version 0).
CREATE TABLE roster_versions (
    owner   TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
    version BIGINT NOT NULL
);
