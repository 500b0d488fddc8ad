-- Account data kept by the feature modules (PostgreSQL): XEP-0054 vCards,
-- XEP-0049 private XML and XEP-0012 last logout. Rows go with the account
-- (the foreign keys cascade, and each module deletes its rows too).
-- Times are unix milliseconds.

-- One vCard per account, as serialised XML; `photo_hash` is the XEP-0153
-- SHA-1 (hex) of its PHOTO's BINVAL, '' when it has no photo.
CREATE TABLE vcards (
    username   TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
    vcard      TEXT   NOT NULL,
    photo_hash TEXT   NOT NULL DEFAULT '',
    updated_ms BIGINT NOT NULL
);

-- One element per account and namespace; `size_bytes` is the length of
-- `element` in bytes, summed for the per-account limit.
CREATE TABLE private_xml (
    username   TEXT COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    namespace  TEXT COLLATE "C" NOT NULL,
    element    TEXT   NOT NULL,
    size_bytes BIGINT NOT NULL,
    PRIMARY KEY (username, namespace)
);

-- When the account's last session in the cluster ended, with the status
-- text of its last unavailable presence.
CREATE TABLE last_activity (
    username  TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
    logout_ms BIGINT NOT NULL,
    status    TEXT   NOT NULL DEFAULT ''
);
