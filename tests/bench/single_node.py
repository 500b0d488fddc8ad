#!/usr/bin/env python3
"""Single-node benchmark: Starling and Prosody, same scenarios, same run.

Run from the repository root (needs release builds and Debian's prosody):

    cargo build --release -p starling-xmpp -p starling-tests
    python3 tests/bench/single_node.py [--quick] [--out results.json]

For each server it provisions the same accounts (SCRAM, 4096 iterations),
then measures, with `starling-load` on the same machine:
  - logins/s with SCRAM-SHA-256 over STARTTLS, and server CPU per login;
  - memory per idle session (RSS delta / sessions), plain and TLS;
  - chat throughput and end-to-end latency at several rates, and server CPU
    per routed message.
It prints a Markdown table with Starling/Prosody ratios. Every scenario
starts a fresh server so RSS figures do not carry over.
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
STARLING = os.path.join(ROOT, "target", "release", "starling")
LOAD = os.path.join(ROOT, "target", "release", "starling-load")
PROSODY_SCRIPT = os.path.join(ROOT, "tests", "scripts", "prosody-server.sh")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def load(args):
    command = [LOAD, "--json"] + args
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"starling-load failed: {' '.join(command)}")
    return json.loads(result.stdout)


class Starling:
    name = "Starling"

    def __init__(self, work, users, port):
        self.dir = os.path.join(work, "starling")
        self.port = port
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "node.toml")
        with open(self.config, "w") as config:
            config.write(
                f'[server]\ndata_dir = "data"\n'
                f'[c2s]\nbind = "127.0.0.1:{port}"\nallow_plain_without_tls = true\ndirect_tls_bind = ""\n'
                f'[s2s]\nbind = ""\n'
                # Not the default 5280: a node already running there would stop this one.
                f'[http]\nbind = "127.0.0.1:{port + 100}"\n'
                f"[limits]\nconnections_per_ip_per_sec = 0\nauth_failures_per_ip = 0\n"
            )
        subprocess.run(
            [STARLING, "user", "provision", "--config", self.config, "--prefix", "user",
             "--count", str(users), "--password", "pass", "--roster-size", "0"],
            check=True, capture_output=True,
        )
        self.process = None

    def start(self):
        log = open(os.path.join(self.dir, "server.log"), "a")
        self.process = subprocess.Popen(
            [STARLING, "serve", "--config", self.config],
            stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"),
        )
        wait_port(self.port)
        return self.process.pid

    def stop(self):
        if self.process:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            self.process = None


class Prosody:
    name = "Prosody"

    def __init__(self, work, users, port):
        self.dir = os.path.join(work, "prosody")
        self.port = port
        subprocess.run([PROSODY_SCRIPT, "setup", self.dir, str(port)], check=True, capture_output=True)
        subprocess.run(
            [LOAD, "prosody-users", "--data-dir", os.path.join(self.dir, "data"),
             "--domain", "localhost", "--users", "user", "--password-prefix", "pass",
             "--count", str(users), "--iterations", "4096"],
            check=True, capture_output=True,
        )

    def start(self):
        subprocess.run([PROSODY_SCRIPT, "start", self.dir], check=True, capture_output=True)
        wait_port(self.port)
        with open(os.path.join(self.dir, "prosody.pid")) as pid:
            return int(pid.read().strip())

    def stop(self):
        subprocess.run([PROSODY_SCRIPT, "stop", self.dir], check=True, capture_output=True)


def wait_port(port):
    import socket
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def measured(server, scenario):
    """Starts a fresh server, runs the scenario, returns (report, cpu_s, rss before/after)."""
    pid = server.start()
    try:
        time.sleep(0.5)
        cpu_before, rss_before = cpu_seconds(pid), rss_kib(pid)
        report = scenario(pid)
        return report, cpu_seconds(pid) - cpu_before, rss_before, rss_kib(pid)
    finally:
        server.stop()


def common(server):
    return ["--server", f"127.0.0.1:{server.port}", "--users", "user", "--password-prefix", "pass"]


def run_server(server, plan):
    results = {}
    for rate in plan["login_rates"]:
        count = rate * plan["login_seconds"]
        report, cpu, _, _ = measured(server, lambda pid: load(
            ["login"] + common(server) + ["--count", str(count), "--rate", str(rate), "--tls",
                                          "--mechanism", "scram-sha-256"]))
        login = report["login"]
        results[f"login_{rate}"] = {
            "achieved": login["achieved_rate"], "p50": login["latency"]["p50_ms"],
            "p99": login["latency"]["p99_ms"], "failed": login["failed"],
            "cpu_ms_per_login": 1000 * cpu / max(login["succeeded"], 1),
        }
    for tls in (False, True):
        sessions = plan["hold_sessions"]
        extra = ["--tls"] if tls else []
        report, _, _, _ = measured(server, lambda pid: load(
            ["hold"] + common(server) + ["--count", str(sessions), "--rate", "1000", "--duration", "2",
                                         "--settle", "3", "--server-pid", str(pid),
                                         "--mechanism", "scram-sha-256"] + extra))
        hold = report["hold"]
        key = "hold_tls" if tls else "hold_plain"
        results[key] = {"held": hold["held"], "kib_per_session": hold["memory"]["per_session_kib"]}
    for rate in plan["chat_rates"]:
        report, cpu, _, _ = measured(server, lambda pid: load(
            ["chat"] + common(server) + ["--pairs", str(plan["pairs"]), "--rate", str(rate),
                                         "--duration", str(plan["chat_seconds"]), "--login-rate", "500",
                                         "--mechanism", "plain"]))
        chat = report["chat"]
        results[f"chat_{rate}"] = {
            "received_per_s": chat["received_per_s"], "lost": chat["lost"],
            "p50": chat["latency"]["p50_ms"], "p99": chat["latency"]["p99_ms"],
            "cpu_us_per_message": 1e6 * cpu / max(chat["received"], 1),
        }
    return results


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


def table(plan, starling, prosody):
    rows = ["| scenario | figure | Starling | Prosody | Starling/Prosody |", "|---|---|---|---|---|"]
    for rate in plan["login_rates"]:
        s, p = starling[f"login_{rate}"], prosody[f"login_{rate}"]
        for field, label in (("achieved", "logins/s"), ("p99", "p99 ms"), ("cpu_ms_per_login", "server CPU ms/login")):
            rows.append(f"| SCRAM-SHA-256+STARTTLS at {rate}/s | {label} | {s[field]:.1f} | {p[field]:.1f} | {ratio(s[field], p[field])} |")
    for key, label in (("hold_plain", "idle session, no TLS"), ("hold_tls", "idle session, TLS")):
        s, p = starling[key]["kib_per_session"], prosody[key]["kib_per_session"]
        rows.append(f"| {label} | KiB/session | {s:.1f} | {p:.1f} | {ratio(s, p)} |")
    for rate in plan["chat_rates"]:
        s, p = starling[f"chat_{rate}"], prosody[f"chat_{rate}"]
        for field, label in (("received_per_s", "received/s"), ("p50", "p50 ms"), ("p99", "p99 ms"),
                             ("lost", "lost"), ("cpu_us_per_message", "server CPU µs/message")):
            rows.append(f"| chat at {rate} msg/s | {label} | {s[field]:.1f} | {p[field]:.1f} | {ratio(s[field], p[field])} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--out", help="write all figures as JSON here")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                        help="where the release builds of starling and starling-load are")
    args = parser.parse_args()
    global STARLING, LOAD
    STARLING = os.path.join(args.bin_dir, "starling")
    LOAD = os.path.join(args.bin_dir, "starling-load")
    for path in (STARLING, LOAD):
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: cargo build --release -p starling-xmpp -p starling-tests")
    if not shutil.which("prosody"):
        raise SystemExit("prosody is missing: apt-get install prosody")
    plan = {
        "login_rates": [100, 500] if args.quick else [100, 500, 1000, 2000],
        "login_seconds": 2 if args.quick else 5,
        "hold_sessions": 1000 if args.quick else 10000,
        "pairs": 100 if args.quick else 500,
        "chat_rates": [1000, 2000] if args.quick else [1000, 2000, 4000],
        "chat_seconds": 5 if args.quick else 10,
    }
    users = max(plan["hold_sessions"], 2 * plan["pairs"], max(plan["login_rates"]) * plan["login_seconds"])
    work = tempfile.mkdtemp(prefix="starling-bench-")
    try:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        servers = [Starling(work, users, 36222), Prosody(work, users, 36223)]
        results = {}
        for server in servers:
            print(f"measuring {server.name} ...", file=sys.stderr)
            results[server.name] = run_server(server, plan)
        print(f"Single node, {started}, {os.cpu_count()} cores, driver on the same machine\n")
        print(table(plan, results["Starling"], results["Prosody"]))
        if args.out:
            with open(args.out, "w") as out:
                json.dump({"plan": plan, "started": started, "results": results}, out, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
