-- XEP-0163 personal eventing (PostgreSQL): every account is a pub/sub service
-- of its own. Nodes with their configuration, items in publish order, and the
-- XEP-0115 capabilities cache that tells which notifications a client wants.
-- Times are unix milliseconds. Rows go with the account (the PEP module's
-- user-deleted hook), not by foreign key, like every module's data.

-- `owner` is the account's username; `config` the node configuration as JSON.
CREATE TABLE pep_nodes (
    owner         TEXT COLLATE "C" NOT NULL,
    node          TEXT COLLATE "C" NOT NULL,
    config        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, node)
);

-- `id` grows with every publish (a re-published item id gets a new row), so
-- the newest item of a node is its highest id.
CREATE TABLE pep_items (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner    TEXT COLLATE "C" NOT NULL,
    node     TEXT COLLATE "C" NOT NULL,
    item_id  TEXT COLLATE "C" NOT NULL,
    payload  TEXT   NOT NULL,
    stamp_ms BIGINT NOT NULL,
    UNIQUE (owner, node, item_id),
    FOREIGN KEY (owner, node) REFERENCES pep_nodes (owner, node) ON DELETE CASCADE
);

CREATE INDEX pep_items_node ON pep_items (owner, node, id);

-- XEP-0115: a verified capabilities hash ("<algo> <ver>") and the features
-- it stands for, one per line; shared by every member of a cluster.
CREATE TABLE caps_features (
    ver      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    features TEXT NOT NULL
);
