-- XEP-0045 multi-user chat (PostgreSQL): the rooms that outlive their
-- occupants (persistent rooms), with their configuration (JSON, the
-- module's RoomConfig), subject, and affiliations. Live state (occupants,
-- history) is in memory on the member hosting the room.
CREATE TABLE muc_rooms (
    room        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    config      TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    subject_by  TEXT   NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE muc_affiliations (
    room        TEXT COLLATE "C" NOT NULL REFERENCES muc_rooms (room) ON DELETE CASCADE,
    jid         TEXT COLLATE "C" NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (room, jid)
);

CREATE INDEX muc_affiliations_jid ON muc_affiliations (jid);
