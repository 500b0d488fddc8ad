#!/usr/bin/env python3
"""The modern login storm: Starling and Prosody (mod_pep), same users, same run.

Run from the repository root (needs release builds and Debian's prosody):

    cargo build --release -p starling-xmpp -p starling-tests
    python3 tests/bench/pep_storm.py --users 2000 --roster-size 200 --rate 20 --out r.json

For each server, fresh: the same accounts (SCRAM-SHA-256, 4096 iterations) with
the same rosters (every user has ROSTER_SIZE contacts, subscription both), then
`starling-load pep-storm`: every user publishes an avatar (XEP-0084 metadata)
and an OMEMO device list (access model open), then every user logs in at RATE/s
with STARTTLS + SCRAM-SHA-256, gets its roster, sends presence whose XEP-0115
capabilities want both nodes, answers the server's disco#info if asked, and
counts the contacts' items it is sent. The driver samples the server process:
CPU per login and memory per held session (over the whole storm, and over its
second half only, once the first logins have warmed the caches). Prints a
Markdown table with Starling/Prosody ratios.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROSODY_SCRIPT = os.path.join(ROOT, "tests", "scripts", "prosody-server.sh")
ITERATIONS = "4096"


def wait_port(port, process=None):
    import socket
    deadline = time.time() + 30
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited (status {process.returncode}) before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


class Starling:
    name = "Starling"

    def __init__(self, bins, work, args, port):
        self.binary = os.path.join(bins, "starling")
        self.dir = os.path.join(work, "starling")
        self.port = port
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "node.toml")
        with open(self.config, "w") as config:
            config.write(
                f'[server]\ndata_dir = "data"\n'
                f'[c2s]\nbind = "127.0.0.1:{port}"\ndirect_tls_bind = ""\n'
                f'[s2s]\nbind = ""\n'
                # Not the default 5280: a node already running there would stop this one.
                f'[http]\nbind = "127.0.0.1:{port + 100}"\n'
                f"[limits]\nconnections_per_ip_per_sec = 0\nauth_failures_per_ip = 0\n"
            )
        result = subprocess.run(
            [self.binary, "user", "provision", "--config", self.config, "--prefix", "user",
             "--count", str(args.users), "--password", "pass",
             "--roster-size", str(args.roster_size), "--iterations", ITERATIONS],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"starling user provision failed:\n{result.stderr}")
        self.process = None

    def start(self):
        log = open(os.path.join(self.dir, "server.log"), "a")
        self.process = subprocess.Popen(
            [self.binary, "serve", "--config", self.config],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"),
        )
        wait_port(self.port, self.process)
        return self.process.pid

    def stop(self):
        if self.process:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None


class Prosody:
    name = "Prosody"

    def __init__(self, bins, work, args, port):
        self.dir = os.path.join(work, "prosody")
        self.port = port
        subprocess.run([PROSODY_SCRIPT, "setup", self.dir, str(port), "pep"],
                       check=True, capture_output=True)
        subprocess.run(
            [os.path.join(bins, "starling-load"), "prosody-users",
             "--data-dir", os.path.join(self.dir, "data"), "--domain", "localhost",
             "--users", "user", "--password-prefix", "pass", "--count", str(args.users),
             "--roster-size", str(args.roster_size), "--iterations", ITERATIONS],
            check=True, capture_output=True,
        )

    def start(self):
        subprocess.run([PROSODY_SCRIPT, "start", self.dir], check=True, capture_output=True)
        wait_port(self.port)
        with open(os.path.join(self.dir, "prosody.pid")) as pid:
            return int(pid.read().strip())

    def stop(self):
        subprocess.run([PROSODY_SCRIPT, "stop", self.dir], check=True, capture_output=True)


def storm(bins, server, args, rate, publish_rate):
    """Starts the server, runs the storm against it, stops it; returns the report."""
    pid = server.start()
    try:
        time.sleep(0.5)
        command = [
            os.path.join(bins, "starling-load"), "--json", "pep-storm",
            "--server", f"127.0.0.1:{server.port}", "--users", "user", "--password-prefix", "pass",
            "--count", str(args.users), "--rate", str(rate),
            "--publish-rate", str(publish_rate), "--wait", str(args.wait),
            "--timeout", str(args.timeout),
            "--tls", "--mechanism", "scram-sha-256", "--server-pid", str(pid),
        ]
        print(f"{server.name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        sys.stderr.write(result.stderr)
        if not result.stdout.strip():
            raise SystemExit(f"starling-load failed against {server.name} (status {result.returncode})")
        report = json.loads(result.stdout)
        report["exit_status"] = result.returncode
        return report
    finally:
        server.stop()


def control_hold(bins, server, args, rate):
    """The same logins without PEP: a fresh server process, the same users at the same
    rate, presence without capabilities, sessions held; returns the hold report."""
    pid = server.start()
    try:
        time.sleep(0.5)
        command = [
            os.path.join(bins, "starling-load"), "--json", "hold",
            "--server", f"127.0.0.1:{server.port}", "--users", "user", "--password-prefix", "pass",
            "--count", str(args.users), "--rate", str(rate), "--duration", "1", "--settle", "2",
            "--timeout", str(args.timeout), "--tls", "--mechanism", "scram-sha-256",
            "--server-pid", str(pid),
        ]
        print(f"{server.name} control: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        sys.stderr.write(result.stderr)
        if result.returncode != 0:
            raise SystemExit(f"the control hold failed against {server.name}")
        return json.loads(result.stdout)
    finally:
        server.stop()


def figures(report):
    pep = report["pep_storm"]
    memory = (report.get("hold") or {}).get("memory") or {}
    setup = pep.get("setup") or {}
    return {
        "logins": report["login"]["succeeded"],
        "failed": report["login"]["failed"],
        "offered": pep["offered_rate"],
        "achieved": report["login"]["achieved_rate"],
        "cpu_ms_per_login": (pep.get("cpu") or {}).get("ms_per_login", 0.0),
        "kib_per_session": memory.get("per_session_kib", 0.0),
        "marginal_kib_per_session": (pep.get("marginal_memory") or {}).get("per_session_kib", 0.0),
        "received_per_session": pep["received_per_session"],
        "min_received": pep["min_received"],
        "expected_per_session": pep["expected"] / max(pep["sessions"], 1),
        "complete": pep["complete"],
        "empty": pep["empty"],
        "own": pep["own"],
        "disco_questions": pep["disco_questions"],
        "to_complete_p50": pep["to_complete"]["p50_ms"],
        "to_complete_p99": pep["to_complete"]["p99_ms"],
        "bound_p50": report["login"]["latency"]["p50_ms"],
        "setup_cpu_ms_per_item": setup.get("cpu_ms_per_item") or 0.0,
        "dropped": (report.get("hold") or {}).get("dropped", 0),
        "control_kib_per_session": ((report.get("control") or {}).get("hold") or {})
        .get("memory", {}).get("per_session_kib", 0.0),
    }


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


ROWS = [
    ("offered", "logins/s offered", "{:.1f}"),
    ("logins", "sessions logged in", "{:.0f}"),
    ("achieved", "logins/s achieved", "{:.1f}"),
    ("cpu_ms_per_login", "server CPU ms per login", "{:.2f}"),
    ("kib_per_session", "KiB per held session (TLS): RSS delta over the storm / sessions", "{:.1f}"),
    ("marginal_kib_per_session", "KiB per held session, second half of the storm only", "{:.1f}"),
    ("control_kib_per_session", "control (--control): KiB per session, same logins without caps", "{:.1f}"),
    ("expected_per_session", "contact items expected per login", "{:.1f}"),
    ("received_per_session", "contact items received per login (mean)", "{:.1f}"),
    ("min_received", "fewest received by one login", "{:.0f}"),
    ("complete", "logins with every item", "{:.0f}"),
    ("own", "own items received (all logins)", "{:.0f}"),
    ("disco_questions", "disco#info questions answered", "{:.0f}"),
    ("bound_p50", "p50 ms to a bound session", "{:.1f}"),
    ("to_complete_p50", "p50 ms to the last item", "{:.1f}"),
    ("to_complete_p99", "p99 ms to the last item", "{:.1f}"),
    ("setup_cpu_ms_per_item", "setup: server CPU ms per item published", "{:.2f}"),
]


def table(results):
    names = list(results)
    rows = ["| figure | " + " | ".join(names) + (" | Starling/Prosody |" if len(names) == 2 else " |"),
            "|---|" + "---|" * len(names) + ("---|" if len(names) == 2 else "")]
    for key, label, fmt in ROWS:
        if key.startswith("control") and not any("control" in results[name] for name in names):
            continue
        values = [figures(results[name])[key] for name in names]
        row = f"| {label} | " + " | ".join(fmt.format(v) for v in values) + " |"
        if len(names) == 2:
            row += f" {ratio(values[0], values[1])} |"
        rows.append(row)
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--roster-size", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="storm logins per second")
    parser.add_argument("--publish-rate", type=float, default=50.0, help="setup logins per second")
    # Prosody spends far more per login; offered the same rate it queues logins until they
    # time out, and a failed login's CPU would then be charged to the ones that succeeded.
    parser.add_argument("--prosody-rate", type=float, help="storm logins per second for Prosody (default --rate)")
    parser.add_argument("--prosody-publish-rate", type=float, default=25.0,
                        help="setup logins per second for Prosody")
    parser.add_argument("--wait", type=float, default=60.0, help="longest wait for a login's items, s")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds allowed for each login step (a slow server's queue)")
    parser.add_argument("--control", action="store_true",
                        help="also hold the same sessions without capabilities (no PEP), for memory")
    parser.add_argument("--servers", default="starling,prosody", help="comma-separated: starling, prosody")
    parser.add_argument("--out", help="write every report as JSON here")
    parser.add_argument("--port", type=int, default=36322,
                        help="Starling's client port (its HTTP port is this plus 100); Prosody's is this plus 1")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                        help="where the release builds of starling and starling-load are")
    args = parser.parse_args()
    bins = args.bin_dir
    for binary in ("starling", "starling-load"):
        if not os.path.exists(os.path.join(bins, binary)):
            raise SystemExit(f"missing {bins}/{binary}: cargo build --release -p starling-xmpp -p starling-tests")
    wanted = args.servers.split(",")
    if "prosody" in wanted and not shutil.which("prosody"):
        raise SystemExit("prosody is missing: apt-get install prosody")
    work = tempfile.mkdtemp(prefix="starling-pep-storm-")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    results = {}
    try:
        kinds = {
            "starling": (Starling, args.port, args.rate, args.publish_rate),
            "prosody": (Prosody, args.port + 1, args.prosody_rate or args.rate, args.prosody_publish_rate),
        }
        for name in wanted:
            kind, port, rate, publish_rate = kinds[name]
            print(f"setting up {kind.name} ...", file=sys.stderr, flush=True)
            server = kind(bins, work, args, port)
            results[kind.name] = storm(bins, server, args, rate, publish_rate)
            if args.control:
                results[kind.name]["control"] = control_hold(bins, server, args, rate)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"PEP login storm, {started}, {os.cpu_count()} cores, load average "
          f"{load_before[0]:.2f} before; {args.users} users x {args.roster_size} contacts, "
          f"STARTTLS + SCRAM-SHA-256; storm logins/s offered: "
          + ", ".join(f"{name} {report['pep_storm']['offered_rate']}" for name, report in results.items())
          + "\n")
    print(table(results))
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"started": started, "args": vars(args), "load_before": load_before,
                       "results": results}, out, indent=2)
    if any(report["exit_status"] != 0 for report in results.values()):
        raise SystemExit("a storm failed: some login got none of its contacts' items")


if __name__ == "__main__":
    main()
