-- XEP-0060 pub/sub on pubsub.<domain> (SQLite): nodes with their configuration,
-- affiliations, subscriptions and published items. Times are unix milliseconds.

-- `config` is the node configuration as JSON (the pub/sub module owns its shape).
CREATE TABLE pubsub_nodes (
    name          TEXT    NOT NULL PRIMARY KEY,
    config        TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- `jid` is a bare JID; affiliation is owner, publisher, publish-only, member or outcast.
CREATE TABLE pubsub_affiliations (
    node        TEXT NOT NULL REFERENCES pubsub_nodes (name) ON DELETE CASCADE,
    jid         TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (node, jid)
) WITHOUT ROWID;

-- One subscription per node and JID (bare or full); state is subscribed,
-- pending or unconfigured; `deliver` is the pubsub#deliver subscription option.
CREATE TABLE pubsub_subscriptions (
    node   TEXT NOT NULL REFERENCES pubsub_nodes (name) ON DELETE CASCADE,
    jid    TEXT NOT NULL,
    subid  TEXT NOT NULL,
    state  TEXT NOT NULL,
    deliver INTEGER NOT NULL DEFAULT 1 CHECK (deliver IN (0, 1)),
    PRIMARY KEY (node, jid)
) WITHOUT ROWID;

-- The subscriptions of a user, for "my subscriptions" across nodes.
CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (jid);

-- Items in publish order: `id` grows with every publish (a re-published item id
-- gets a new row), so the newest items are the highest ids.
CREATE TABLE pubsub_items (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    node      TEXT    NOT NULL REFERENCES pubsub_nodes (name) ON DELETE CASCADE,
    item_id   TEXT    NOT NULL,
    publisher TEXT    NOT NULL,
    payload   TEXT    NOT NULL,
    stamp_ms  INTEGER NOT NULL,
    UNIQUE (node, item_id)
);

CREATE INDEX pubsub_items_node ON pubsub_items (node, id);
