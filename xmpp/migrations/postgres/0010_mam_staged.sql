-- XEP-0313 archive staging is SQLite's alone (see the SQLite migration of
-- the same number): PostgreSQL writes archive batches straight into
-- `mam_messages`. This version is kept so both dialects number their
-- migrations alike; it changes nothing.
SELECT 1;
