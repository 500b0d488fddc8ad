#!/usr/bin/env python3
"""What SQLite itself costs per archived row, for the archive's schema and
for alternatives to it (issue 12): no server, no driver, only Python's
sqlite3 module (the system's SQLite, which is older than the one Starling
builds in: compare the variants with each other, not with server figures).

    python3 tests/bench/archive_schema.py                 # every variant, 3 rounds
    python3 tests/bench/archive_schema.py --variants current,upsert --rounds 5

Each variant stages rows as the archive writer does (commits of 32 rows
into a table with no secondary index) and moves them into the archive
table in batches of `--move-rows` (one transaction: INSERT ... SELECT in
staging order, then DELETE), 1,000 owners writing to 1,000 correspondents
at random, `--rows` rows in all, into a fresh file each time (WAL,
synchronous NORMAL, 16 MiB page cache, as Starling's archive connection).
Prints the process CPU per row for staging and for moving.

Variants:
  current   the schema of migrations 0006 and 0010 with the move's INSERT OR IGNORE
  upsert    the same with the move's upsert (ON CONFLICT DO NOTHING), as before
  by-owner  the same, rows moved in owner order (each owner's rows keep their order)
  int-keys  owner, correspondent and stanza id as integers (a lookup table would map them)
  no-unique text keys; the stanza id is the row's id (time-ordered, assigned when
            routed), so no UNIQUE (owner, stanza_id) index
  int-no-unique  both
"""

import argparse
import os
import random
import sqlite3
import tempfile
import time

STANZA = ("<message xmlns='jabber:client' to='user12@localhost/load' type='chat' id='m-123456'>"
          "<body>" + "x" * 120 + "</body><stanza-id xmlns='urn:xmpp:sid:0' by='user12@localhost' "
          "id='0123456789abcdef01234567'/></message>")
OWNERS = 1000

TEXT_STAGING = ("CREATE TABLE staged (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, sid TEXT, "
                "with_jid TEXT NOT NULL, stamp INTEGER NOT NULL, stanza TEXT NOT NULL);")
INT_STAGING = ("CREATE TABLE staged (id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, sid INTEGER, "
               "with_jid INTEGER NOT NULL, stamp INTEGER NOT NULL, stanza TEXT NOT NULL);")
THREE_INDEXES = """
CREATE TABLE archive (id INTEGER PRIMARY KEY AUTOINCREMENT, owner {t} NOT NULL, sid {t} NOT NULL,
    with_jid {t} NOT NULL, stamp INTEGER NOT NULL, stanza TEXT NOT NULL, UNIQUE (owner, sid));
CREATE INDEX archive_owner ON archive (owner, id);
CREATE INDEX archive_with ON archive (owner, with_jid, id);
"""
TWO_INDEXES = """
CREATE TABLE archive (id INTEGER PRIMARY KEY, owner {t} NOT NULL, with_jid {t} NOT NULL,
    stamp INTEGER NOT NULL, stanza TEXT NOT NULL);
CREATE INDEX archive_owner ON archive (owner, id);
CREATE INDEX archive_with ON archive (owner, with_jid, id);
"""
MOVE_WITH_SID = ("INSERT OR IGNORE INTO archive (owner, sid, with_jid, stamp, stanza) "
                 "SELECT owner, sid, with_jid, stamp, stanza FROM staged ORDER BY id;")
# The staged row's id restarts after each DELETE: the time-ordered id a
# router would assign is stood in for by the row's global sequence number.
MOVE_ID_AS_SID = ("INSERT OR IGNORE INTO archive (id, owner, with_jid, stamp, stanza) "
                  "SELECT stamp, owner, with_jid, stamp, stanza FROM staged ORDER BY id;")


def text_row(n):
    return (f"user{random.randint(1, OWNERS)}", os.urandom(12).hex(),
            f"user{random.randint(1, OWNERS)}@localhost", n, STANZA)


def int_row(n):
    return (random.randint(1, OWNERS), random.getrandbits(62), random.randint(1, OWNERS), n, STANZA)


VARIANTS = {
    "current": (TEXT_STAGING, THREE_INDEXES.format(t="TEXT"), MOVE_WITH_SID, text_row),
    "upsert": (TEXT_STAGING, THREE_INDEXES.format(t="TEXT"),
               MOVE_WITH_SID.replace("INSERT OR IGNORE", "INSERT")
               .replace("FROM staged ORDER BY id;", "FROM staged WHERE true ORDER BY id ON CONFLICT DO NOTHING;"),
               text_row),
    "by-owner": (TEXT_STAGING, THREE_INDEXES.format(t="TEXT"),
                 MOVE_WITH_SID.replace("ORDER BY id", "ORDER BY owner, id"), text_row),
    "int-keys": (INT_STAGING, THREE_INDEXES.format(t="INTEGER"), MOVE_WITH_SID, int_row),
    "no-unique": (TEXT_STAGING, TWO_INDEXES.format(t="TEXT"), MOVE_ID_AS_SID, text_row),
    "int-no-unique": (INT_STAGING, TWO_INDEXES.format(t="INTEGER"), MOVE_ID_AS_SID, int_row),
}


def run(variant, rows, move_rows, folder):
    staging, schema, move, make_row = VARIANTS[variant]
    path = os.path.join(folder, f"{variant}.db")
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -16384",
                   "wal_autocheckpoint = 8192"):
        db.execute(f"PRAGMA {pragma}")
    db.executescript(staging + schema)
    insert = "INSERT INTO staged (owner, sid, with_jid, stamp, stanza) VALUES (?, ?, ?, ?, ?)"
    staged_cpu = moved_cpu = 0.0
    written = 0
    while written < rows:
        batch = [make_row(written + i) for i in range(move_rows)]
        written += move_rows
        start = time.process_time()
        for first in range(0, move_rows, 32):
            db.execute("BEGIN")
            db.executemany(insert, batch[first:first + 32])
            db.execute("COMMIT")
        staged_cpu += time.process_time() - start
        start = time.process_time()
        db.executescript(f"BEGIN IMMEDIATE; {move} DELETE FROM staged; COMMIT;")
        moved_cpu += time.process_time() - start
    kept = db.execute("SELECT count(*) FROM archive").fetchone()[0]
    db.close()
    if kept != written:
        raise SystemExit(f"{variant}: {kept} rows archived of {written}")
    return staged_cpu * 1e6 / written, moved_cpu * 1e6 / written


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--rows", type=int, default=122_880)
    p.add_argument("--move-rows", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(f"SQLite {sqlite3.sqlite_version}, {args.rows} rows, moves of {args.move_rows}; "
          "µs of CPU per row, each round a fresh file")
    print("| variant | staging, per round | moving, per round | moving, median |")
    print("|---|---|---|---|")
    for variant in args.variants.split(","):
        results = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="archive-schema-") as folder:
                results.append(run(variant, args.rows, args.move_rows, folder))
        staged = ", ".join(f"{s:.2f}" for s, _ in results)
        moved = sorted(m for _, m in results)
        print(f"| {variant} | {staged} | {', '.join(f'{m:.2f}' for _, m in results)} | "
              f"{moved[len(moved) // 2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
