-- XEP-0060 pub/sub on pubsub.<domain> (PostgreSQL): nodes with their configuration,
-- affiliations, subscriptions and published items. Times are unix milliseconds.

-- `config` is the node configuration as JSON (the pub/sub module owns its shape).
CREATE TABLE pubsub_nodes (
    name          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    config        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- `jid` is a bare JID; affiliation is owner, publisher, publish-only, member or outcast.
CREATE TABLE pubsub_affiliations (
    node        TEXT COLLATE "C" NOT NULL REFERENCES pubsub_nodes (name) ON DELETE CASCADE,
    jid         TEXT COLLATE "C" NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (node, jid)
);

-- One subscription per node and JID (bare or full); state is subscribed,
-- pending or unconfigured; `deliver` is the pubsub#deliver subscription option.
CREATE TABLE pubsub_subscriptions (
    node   TEXT COLLATE "C" NOT NULL REFERENCES pubsub_nodes (name) ON DELETE CASCADE,
    jid    TEXT COLLATE "C" NOT NULL,
    subid  TEXT NOT NULL,
    state  TEXT NOT NULL,
    deliver BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (node, jid)
);

-- The subscriptions of a user, for "my subscriptions" across nodes.
CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (jid);

-- Items in publish order: `id` grows with every publish (a re-published item id
-- gets a new row), so the newest items are the highest ids.
CREATE TABLE pubsub_items (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node      TEXT COLLATE "C" NOT NULL REFERENCES pubsub_nodes (name) ON DELETE CASCADE,
    item_id   TEXT COLLATE "C" NOT NULL,
    publisher TEXT   NOT NULL,
    payload   TEXT   NOT NULL,
    stamp_ms  BIGINT NOT NULL,
    UNIQUE (node, item_id)
);

CREATE INDEX pubsub_items_node ON pubsub_items (node, id);
