-- XEP-0045 7.12: a nickname reserved by registering with a room, kept with
-- the account's affiliation there; empty: none.
ALTER TABLE muc_affiliations ADD COLUMN nick TEXT NOT NULL DEFAULT '';
