-- XEP-0313 archiving preferences (PostgreSQL): one row per account that set
-- them; an account without a row has the server's default. `default_mode`
-- is always | never | roster; `always_jids` and `never_jids` hold bare
-- JIDs, one per line.
CREATE TABLE mam_prefs (
    owner        TEXT COLLATE "C" PRIMARY KEY,
    default_mode TEXT NOT NULL,
    always_jids  TEXT NOT NULL,
    never_jids   TEXT NOT NULL
);
