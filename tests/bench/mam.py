#!/usr/bin/env python3
"""Message archive benchmark (issue 12): Starling and Prosody's mod_mam side
by side on the same archive and the same queries, and what archiving costs
per message.

Run from the repository root (needs release builds, Debian's prosody and
lua-dbi-sqlite3 for Prosody's SQL storage; builds nothing):

    cargo build --release -p starling-xmpp -p starling-tests --bin starling --bin starling-load
    apt-get install prosody lua-dbi-sqlite3
    python3 tests/bench/mam.py                      # 1,000,000 archived messages
    python3 tests/bench/mam.py --messages 100000 --rounds 20   # smoke
    python3 tests/bench/mam.py --postgres postgres://starling:starling@127.0.0.1:5432/starling_test
        # Starling on PostgreSQL (a schema per server, dropped after); Prosody stays on SQLite

The archive: `--messages` rows in SQLite for 1,000 users of `localhost`.
user1 owns a tenth of them, in conversations with user2..user101 taking
turns (so one conversation is a hundredth of user1's archive, spread over
all of it); the rest belong to the other users. The same rows are written
into Starling's `mam_messages` and into Prosody's `prosodyarchive` (its
mod_storage_sql, archive store `archive`), straight into each database
after the server created its tables, with the servers stopped.

The queries (`starling-load mam`): user1 opens the conversation with
user8@localhost: the latest 50 messages (`<before/>`), then 10 pages of 50
back, `--rounds` times, each query timed from the iq to its result with
every message read. Target: p99 at most 20 ms for both kinds.

The cost: `starling-load chat` at `--chat-rate` msg/s between 500 pairs
(STARTTLS), Starling's CPU per message with the archive module on and off
(target: archiving adds at most 25 %); then Prosody with mod_mam on and
off (its SQL archive on SQLite, every message archived) and Starling again,
both at `--peer-rate`, which Prosody keeps up with.
"""

import argparse
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from muc import wait_port  # noqa: E402  (the benches' shared helpers)
from s2s import prosody_preamble, self_signed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USERS = 1000
CONVERSATIONS = 100
WITH = "user8@localhost"
STAMP0 = 1_700_000_000  # seconds


def rows(messages):
    """(owner, with, stamp seconds, outgoing, number) for every archived message."""
    own = messages // 10
    for n in range(own):
        yield "user1", f"user{2 + n % CONVERSATIONS}@localhost", STAMP0 + n, n % 2 == 0, n
    others = messages - own
    for n in range(others):
        owner = 2 + n % (USERS - 1)
        contact = 1 + (owner + 1 + (n // (USERS - 1)) % 50) % USERS
        yield f"user{owner}", f"user{contact}@localhost", STAMP0 + n, n % 2 == 0, own + n


def stanza(owner, with_jid, outgoing, number, xmlns):
    me = f"{owner}@localhost"
    sender, recipient = (me, with_jid) if outgoing else (with_jid, me)
    namespace = " xmlns='jabber:client'" if xmlns else ""
    return (f"<message{namespace} from='{sender}/phone' to='{recipient}' type='chat' id='m{number}'>"
            f"<body>Message number {number}, a line of ordinary chat.</body></message>")


class Starling:
    name = "Starling"

    def __init__(self, bins, work, port, mam=True, folder="starling", postgres=""):
        self.bins, self.port = bins, port
        self.dir = os.path.join(work, folder)
        os.makedirs(self.dir)
        self.db = os.path.join(self.dir, "starling.db")
        self.config = os.path.join(self.dir, "node.toml")
        # On PostgreSQL: a schema of its own in the database `postgres` names.
        self.postgres, self.schema = postgres, ""
        url = f"sqlite://{self.db}"
        if postgres:
            self.schema = f"mam_bench_{os.getpid()}_{folder.replace('-', '_')}"
            psql(postgres, f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in postgres else "?"
            url = f"{postgres}{sep}options[search_path]={self.schema}"
        with open(self.config, "w") as out:
            out.write(f'[server]\ndata_dir = "{self.dir}"\n'
                      f'[c2s]\nbind = "127.0.0.1:{port}"\ndirect_tls_bind = ""\n'
                      f'[s2s]\nbind = ""\n[http]\nbind = "127.0.0.1:{port + 100}"\n'
                      f'[storage]\nurl = "{url}"\n'
                      "[limits]\nconnections_per_ip_per_sec = 0\nauth_failures_per_ip = 0\n"
                      f"[modules.mam]\nenabled = {'true' if mam else 'false'}\n")
        # Provisioning creates the database and runs the migrations.
        subprocess.run([bins["starling"], "user", "provision", "--config", self.config, "--prefix", "user",
                        "--count", str(USERS), "--password", "pass", "--roster-size", "0",
                        "--iterations", "4096"], check=True, capture_output=True)
        self.process = None

    def fill(self, messages):
        if self.postgres:
            return self.fill_postgres(messages)
        db = sqlite3.connect(self.db)
        db.executemany(
            "INSERT INTO mam_messages (owner, stanza_id, with_jid, stamp_ms, stanza) VALUES (?, ?, ?, ?, ?)",
            ((owner, f"a{number:08d}", with_jid, stamp * 1000, stanza(owner, with_jid, out, number, True))
             for owner, with_jid, stamp, out, number in rows(messages)))
        db.commit()
        db.execute("ANALYZE")
        db.close()

    def fill_postgres(self, messages):
        import csv
        import io
        data = io.StringIO()
        writer = csv.writer(data)
        for owner, with_jid, stamp, out, number in rows(messages):
            writer.writerow((owner, f"a{number:08d}", with_jid, stamp * 1000, stanza(owner, with_jid, out, number, True)))
        psql(self.postgres, "\\copy mam_messages (owner, stanza_id, with_jid, stamp_ms, stanza) FROM STDIN WITH (FORMAT csv)",
             self.schema, stdin=data.getvalue())
        psql(self.postgres, "ANALYZE mam_messages", self.schema)

    def size_mib(self):
        if self.postgres:
            return int(psql(self.postgres, "SELECT pg_total_relation_size('mam_messages')", self.schema)) / 2**20
        return os.path.getsize(self.db) / 2**20

    def drop(self):
        if self.postgres:
            psql(self.postgres, f"DROP SCHEMA {self.schema} CASCADE")

    def start(self):
        log = open(os.path.join(self.dir, "server.log"), "a")
        self.process = subprocess.Popen([self.bins["starling"], "serve", "--config", self.config],
                                        stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"))
        wait_port(self.port)
        return self.process.pid

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def psql(url, command, schema="", stdin=None):
    """Runs one psql command on `url` (with `schema` first on the search path)."""
    env = dict(os.environ, PGOPTIONS=f"-c search_path={schema}") if schema else None
    result = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-tAq", "-c", command], input=stdin,
                            capture_output=True, text=True, env=env, check=True)
    return result.stdout.strip()


class Prosody:
    name = "Prosody"

    def __init__(self, bins, work, port, mam=True, folder="prosody"):
        self.bins, self.port = bins, port
        self.dir = os.path.join(work, folder)
        modules = '"roster", "saslauth", "tls", "disco", "ping"' + (', "mam"' if mam else "")
        os.makedirs(os.path.join(self.dir, "data"))
        self.db = os.path.join(self.dir, "prosody.sqlite")
        cert, key = self_signed(self.dir, "localhost")
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.config, "w") as out:
            out.write(prosody_preamble(self.dir) + f"""interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_require_encryption = false
authentication = "internal_hashed"
storage = {{ archive = "sql" }}
sql = {{ driver = "SQLite3", database = "{self.db}" }}
archive_expires_after = "never"
modules_enabled = {{ {modules} }}
modules_disabled = {{ "s2s", "offline" }}
ssl = {{ certificate = "{cert}", key = "{key}" }}

VirtualHost "localhost"
    password_hash = "SHA-256"
""")
        subprocess.run([bins["starling-load"], "prosody-users", "--data-dir", os.path.join(self.dir, "data"),
                        "--domain", "localhost", "--users", "user", "--password-prefix", "pass",
                        "--count", str(USERS), "--iterations", "4096"], check=True, capture_output=True)
        self.process = None

    def fill(self, messages):
        # Prosody creates its tables on the store's first use: one query.
        self.start()
        try:
            load(self.bins, ["mam", "--server", f"127.0.0.1:{self.port}", "--users", "user",
                             "--password-prefix", "pass", "--tls", "--with", WITH, "--rounds", "1", "--pages", "0"])
        finally:
            self.stop()
        db = sqlite3.connect(self.db)
        db.executemany(
            'INSERT INTO prosodyarchive (host, user, store, key, "when", "with", type, value) '
            "VALUES ('localhost', ?, 'archive', ?, ?, ?, 'xml', ?)",
            ((owner, f"a{number:08d}", stamp, with_jid, stanza(owner, with_jid, out, number, False))
             for owner, with_jid, stamp, out, number in rows(messages)))
        db.commit()
        db.execute("ANALYZE")
        db.close()

    def size_mib(self):
        return os.path.getsize(self.db) / 2**20

    def drop(self):
        pass

    def start(self):
        log = open(os.path.join(self.dir, "prosody.out"), "a")
        self.process = subprocess.Popen(["prosody", "--config", self.config, "-F"], stdout=log, stderr=log)
        wait_port(self.port)
        return self.process.pid

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def load(bins, args):
    result = subprocess.run([bins["starling-load"], "--json"] + args, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit("starling-load failed")
    return json.loads(result.stdout)


def queries(bins, server, rounds):
    pid = server.start()
    try:
        load(bins, ["mam", "--server", f"127.0.0.1:{server.port}", "--users", "user",
                    "--password-prefix", "pass", "--tls", "--with", WITH, "--rounds", "2"])  # warm-up
        before = cpu_seconds(pid)
        report = load(bins, ["mam", "--server", f"127.0.0.1:{server.port}", "--users", "user",
                             "--password-prefix", "pass", "--tls", "--with", WITH, "--rounds", str(rounds)])
        report["server_cpu_s"] = cpu_seconds(pid) - before
        return report
    finally:
        server.stop()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds():
    """CPU time of every PostgreSQL process on this machine (its server and
    backends; the database the bench uses is local)."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() != "postgres":
                    continue
            total += cpu_seconds(pid)
        except OSError:
            continue  # gone meanwhile
    return total


def archiving_cost(bins, rate, seconds, make_server, perf="", postgres=""):
    """CPU per message with the archive on and off: `make_server(mam)` makes
    the server (not started) for each run."""
    results = {}
    for mam in (True, False):
        server = make_server(mam)
        port = server.port
        pid = server.start()
        recorder = None
        if perf and mam:
            recorder = subprocess.Popen(["perf", "record", "-g", "-o", perf, "-p", str(pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        database_before = postgres_cpu_seconds() if postgres else 0.0
        try:
            report = load(bins, ["chat", "--server", f"127.0.0.1:{port}", "--users", "user",
                                 "--password-prefix", "pass", "--tls", "--pairs", "500", "--rate", str(rate),
                                 "--duration", str(seconds), "--login-rate", "500", "--no-presence",
                                 "--server-pid", str(pid)])["chat"]
        finally:
            database_cpu = postgres_cpu_seconds() - database_before if postgres else 0.0
            if recorder:
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=120)
            server.stop()
            server.drop()
        results["on" if mam else "off"] = {
            "received_per_s": report["received_per_s"], "lost": report["lost"],
            "p99_ms": report["latency"]["p99_ms"], "cpu_us_per_message": report["cpu_us_per_message"],
        }
        if postgres:
            # The whole run, logins included (the same in both runs); over
            # the messages received.
            results["on" if mam else "off"]["postgres_cpu_us_per_message"] = (
                1e6 * database_cpu / max(report["received"], 1))
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--chat-rate", type=int, default=5000)
    p.add_argument("--chat-seconds", type=int, default=10)
    p.add_argument("--peer-rate", type=int, default=1000,
                   help="also measure the cost on Prosody (mod_mam, SQLite) and on Starling at this rate, "
                        "which Prosody keeps up with over STARTTLS (0: Starling at --chat-rate only)")
    p.add_argument("--base", type=int, default=21500)
    p.add_argument("--out", default="")
    p.add_argument("--only", choices=("queries", "cost"), default=None,
                   help="run only the queries (both servers) or only the archiving cost")
    p.add_argument("--perf", default="", help="record the archive-on server with `perf record -g` into this file")
    p.add_argument("--postgres", default="",
                   help="Starling on this PostgreSQL database (a schema of its own per server, dropped after; "
                        "e.g. postgres://starling:starling@127.0.0.1:5432/starling_test) instead of SQLite")
    args = p.parse_args()
    bins = {name: os.path.join(args.bin_dir, name) for name in ("starling", "starling-load")}
    for path in bins.values():
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: cargo build --release -p starling-xmpp -p starling-tests")
    if args.postgres and not shutil.which("psql"):
        raise SystemExit("psql is missing: apt-get install postgresql-client")
    if (args.only != "cost" or args.peer_rate) and not shutil.which("prosody"):
        raise SystemExit("prosody is missing: apt-get install prosody lua-dbi-sqlite3")
    work = tempfile.mkdtemp(prefix="starling-mam-bench-")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        results, cost = {}, None
        servers = [] if args.only == "cost" else [Starling(bins, work, args.base, postgres=args.postgres),
                                                  Prosody(bins, work, args.base + 1)]
        try:
            for server in servers:
                began = time.time()
                server.fill(args.messages)
                print(f"{server.name}: {args.messages} messages written in {time.time() - began:.0f} s, "
                      f"database {server.size_mib():.0f} MiB", file=sys.stderr)
                results[server.name] = queries(bins, server, args.rounds)
                results[server.name]["database_mib"] = server.size_mib()
        finally:
            if servers:
                servers[0].drop()
        if args.only != "queries":
            runs = itertools.count()

            def starling(mam):
                return Starling(bins, work, args.base + 2, mam=mam, postgres=args.postgres,
                                folder=f"starling-archive-{'on' if mam else 'off'}-{next(runs)}")

            def prosody(mam):
                return Prosody(bins, work, args.base + 3, mam=mam,
                               folder=f"prosody-archive-{'on' if mam else 'off'}")

            cost = {}
            cost[f"Starling at {args.chat_rate}"] = archiving_cost(
                bins, args.chat_rate, args.chat_seconds, starling, args.perf, args.postgres)
            if args.peer_rate:
                cost[f"Starling at {args.peer_rate}"] = archiving_cost(
                    bins, args.peer_rate, args.chat_seconds, starling, postgres=args.postgres)
                cost[f"Prosody at {args.peer_rate}"] = archiving_cost(
                    bins, args.peer_rate, args.chat_seconds, prosody)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if results:
        s, pr = results["Starling"], results["Prosody"]
        print(f"Message archive, {started}, {os.cpu_count()} cores, {args.messages} archived messages, "
              f"{args.rounds} rounds of 1 + 10 pages of 50\n")
        print("| query | Starling p50 / p99 ms | Prosody p50 / p99 ms | p99 Starling/Prosody |")
        print("|---|---|---|---|")
        for key, label in (("latest", "latest 50 of one conversation"), ("page_back", "each page of 50 back")):
            a, b = s[key], pr[key]
            print(f"| {label} | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | "
                  f"{a['p99_ms'] / b['p99_ms']:.2f} |")
        print(f"| server CPU for all queries, s | {s['server_cpu_s']:.2f} | {pr['server_cpu_s']:.2f} | "
              f"{s['server_cpu_s'] / max(pr['server_cpu_s'], 1e-9):.2f} |")
        print(f"| database size, MiB | {s['database_mib']:.0f} | {pr['database_mib']:.0f} | |\n")
    if cost:
        print(f"Archiving cost, msg/s offered as named (500 pairs, STARTTLS, {args.chat_seconds} s each):\n")
        print("| server and rate | archive | received/s | lost | p99 ms | server CPU µs/message | archiving adds |")
        print("|---|---|---|---|---|---|---|")
        for name, runs in cost.items():
            on, off = runs["on"], runs["off"]
            added = on["cpu_us_per_message"] - off["cpu_us_per_message"]
            share = f"{added:.1f} µs, {100 * added / off['cpu_us_per_message']:.0f} %"
            for label, r in (("on", on), ("off", off)):
                print(f"| {name} | {label} | {r['received_per_s']:.0f} | {r['lost']} | {r['p99_ms']:.1f} | "
                      f"{r['cpu_us_per_message']:.1f} | {share if label == 'on' else ''} |")
        on, off = next(iter(cost.values()))["on"], next(iter(cost.values()))["off"]
        if "postgres_cpu_us_per_message" in on:
            db_on, db_off = on["postgres_cpu_us_per_message"], off["postgres_cpu_us_per_message"]
            both_on, both_off = on["cpu_us_per_message"] + db_on, off["cpu_us_per_message"] + db_off
            print(f"PostgreSQL's own CPU per message (whole run, logins included): {db_on:.1f} on, "
                  f"{db_off:.1f} off; Starling and PostgreSQL together: {both_on:.1f} on, {both_off:.1f} off, "
                  f"archiving adds {100 * (both_on / both_off - 1):.0f} %")
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"started": started, "args": vars(args), "queries": results, "cost": cost}, out, indent=2)


if __name__ == "__main__":
    main()
