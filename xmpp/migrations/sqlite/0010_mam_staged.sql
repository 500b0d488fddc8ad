-- XEP-0313 archive staging (SQLite only): archive batches are committed
-- here first, in rowid order with no secondary index, so a commit writes
-- about the rows' own size to the WAL; the archive's writer moves them into
-- `mam_messages` in large batches (where rows of the same owner share index
-- pages), and every read of an archive moves them first. Rows left here by
-- a stop are moved when the archive next starts writing.
CREATE TABLE mam_staged (
    id        INTEGER PRIMARY KEY,
    owner     TEXT    NOT NULL,
    stanza_id TEXT    NOT NULL,
    with_jid  TEXT    NOT NULL,
    stamp_ms  INTEGER NOT NULL,
    stanza    TEXT    NOT NULL
);
