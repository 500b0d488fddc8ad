#!/usr/bin/env python3
"""Web transports benchmark: Starling, Prosody and ejabberd over XMPP over
WebSocket (RFC 7395) and BOSH (XEP-0206), in the same run.

Run from the repository root as root (ejabberd's folder is chowned to its
user), with release builds and Debian's prosody and ejabberd installed
(their system services stopped: each server here gets its own folder and
ports):

    cargo build --release -p starling-xmpp -p starling-tests
    python3 tests/bench/web.py [--quick] [--ports 22000-22999] [--out web.json]
    python3 tests/bench/web.py --servers starling --perf ws.perf   # profile the chat

The servers are set up as tsung/servers.py sets them up (same accounts,
SCRAM-SHA-1 credentials with the same iteration count, plain listeners with
PLAIN and SCRAM allowed without TLS), plus each one's HTTP listener with
WebSocket at /xmpp-websocket and BOSH at /http-bind: Prosody's mod_websocket
and mod_bosh, ejabberd's ejabberd_http with ejabberd_http_ws and mod_bosh.
All of them are measured over plain ws:// and http:// (no TLS on any),
with `starling-load --client-transport websocket|bosh` on the same machine:

  - memory per idle WebSocket session and per idle BOSH session (the
    server's resident memory before the logins and once every session is
    up, divided by the sessions; BOSH sessions keep one request waiting);
  - logins/s over WebSocket with SCRAM-SHA-1, offered faster than any of
    them logs in, and server CPU per login;
  - messages/s between WebSocket clients and server CPU per message, at
    2,000 msg/s (light load: every server here keeps up, and much of each
    message's CPU is the wake-up from idle) and at 5,000 msg/s (a load at
    which CPU per message decides what one machine carries; a server that
    does not keep up is marked and left out of the ratio): two chat runs
    at the same rate that differ only in their sending time, so the
    difference in server CPU over the difference in messages leaves the
    logins and set-up out; three such pairs per rate, the median reported
    (each pair's figure is in the JSON).

Every run stops by itself (each starling-load call has a bound). The
servers run one after the other, never together; the figures and the
Starling/best-peer ratios are printed as Markdown and, with --out, JSON.
"""

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import shutil
import signal
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tsung"))

import piefxis  # noqa: E402
import servers  # noqa: E402

DOMAIN = "localhost"
PREFIX = "web"
PASSWORD = "pw"
ITERATIONS = 4096
# Longest any one starling-load call may take.
CALL_BOUND_S = 300

# ---------------------------------------------------------------- ports


class PortRange:
    """Hands out ports of one range, each once, checked free on 127.0.0.1."""

    def __init__(self, low, high):
        self.low, self.high = low, high
        self.given = set()

    def block(self, count, avoid=()):
        for base in range(self.low, self.high - count + 2):
            ports = range(base, base + count)
            if any(p in self.given or p in avoid for p in ports):
                continue
            if all(self._free(p) for p in ports):
                self.given.update(ports)
                return base
        raise SystemExit(f"no {count} free ports left in {self.low}-{self.high}")

    @staticmethod
    def _free(port):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
        finally:
            s.close()


# ---------------------------------------------------------------- servers


class Starling(servers.Starling):
    """One node, as tsung/servers.py configures it (plain HTTP listener:
    WebSocket and BOSH need allow_plain_without_tls, which it sets), with
    message archiving off: the peers here archive nothing either."""

    name = "Starling"

    def setup(self, plan):
        super().setup(plan)
        with open(self.configs[0], "a") as out:
            out.write("\n[modules.mam]\nenabled = false\n")

    def restart(self):
        self.stop()
        self.processes = []
        self.start()

    def http_addr(self):
        return f"127.0.0.1:{self.http}"


class Prosody(servers.Prosody):
    name = "Prosody"

    def __init__(self, work, iterations, ports):
        super().__init__(work, iterations)
        self.http = ports.block(1)
        self.extra_modules = ("websocket", "bosh")
        self.extra_global = (
            f'http_ports = {{ {self.http} }}\n'
            'http_interfaces = { "127.0.0.1" }\n'
            "https_ports = { }\n"
            # Plain ws:// and http:// here, as for the others.
            "consider_websocket_secure = true\n"
            "consider_bosh_secure = true\n"
        )

    def http_addr(self):
        return f"127.0.0.1:{self.http}"

    def start(self):
        super().start()
        servers.wait_for_port(self.http, "prosody http", process=self.process)

    def restart(self):
        self.stop()
        self.start()


class Ejabberd(servers.Ejabberd):
    name = "ejabberd"

    def __init__(self, work, ports):
        super().__init__(work)
        self.http = ports.block(1)
        self.extra_listen = (
            "  -\n"
            f"    port: {self.http}\n"
            '    ip: "127.0.0.1"\n'
            "    module: ejabberd_http\n"
            "    request_handlers:\n"
            '      "/xmpp-websocket": ejabberd_http_ws\n'
            '      "/http-bind": mod_bosh\n'
        )
        self.extra_modules = "  mod_bosh: {}\n"

    def http_addr(self):
        return f"127.0.0.1:{self.http}"

    def start(self):
        # Running since the import (tsung/servers.py); its HTTP side too.
        servers.wait_for_port(self.http, "ejabberd http")

    def restart(self):
        self.stop()
        self._start_node()
        self.start()


# ---------------------------------------------------------------- load


def version(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def load(args, log):
    command = [LOAD, "--json"] + [str(a) for a in args]
    log.append(" ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, timeout=CALL_BOUND_S)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"starling-load failed: {' '.join(command)}")
    return json.loads(result.stdout)


def target(server, transport, first=1):
    return ["--client-transport", transport, "--server", server.http_addr(), "--domain", DOMAIN,
            "--users", PREFIX, "--password-prefix", PASSWORD, "--first", first,
            "--resource", "bench", "--timeout", 30]


def fresh(server):
    """The server restarted, so memory figures do not carry over; its pid."""
    server.restart()
    time.sleep(1)
    return server.pids()[0]


def measure(server, plan, log, perf=""):
    """Every figure of one started server; with `perf`, the long chat run is
    recorded with `perf record -g` into that file."""
    results = {}
    cpu = servers.cpu_seconds
    for transport, count, rate in (("websocket", plan["hold_ws"], plan["hold_rate"]),
                                   ("bosh", plan["hold_bosh"], plan["hold_rate"] / 2)):
        pid = fresh(server)
        print(f"  {server.name}: {count} idle {transport} sessions", file=sys.stderr, flush=True)
        report = load(["hold"] + target(server, transport)
                      + ["--count", count, "--rate", rate, "--duration", plan["hold_seconds"],
                         "--settle", plan["settle_seconds"], "--server-pid", pid,
                         "--mechanism", "plain"], log)
        hold = report["hold"]
        memory = hold.get("memory") or {}
        results[f"hold_{transport}"] = {
            "held": hold["held"], "dropped": hold["dropped"],
            "login_failed": report["login"]["failed"],
            "errors": report["login"]["errors"] | hold["errors"],
            "kib_per_session": memory.get("per_session_kib"),
        }

    pid = fresh(server)
    print(f"  {server.name}: WebSocket logins", file=sys.stderr, flush=True)
    before = cpu(pid)
    report = load(["login"] + target(server, "websocket")
                  + ["--count", plan["login_count"], "--rate", plan["login_rate"],
                     "--mechanism", "scram-sha-1"], log)
    used = cpu(pid) - before
    login = report["login"]
    results["login_websocket"] = {
        "offered": login["offered_rate"], "achieved": login["achieved_rate"],
        "succeeded": login["succeeded"], "failed": login["failed"], "errors": login["errors"],
        "p50_ms": login["latency"]["p50_ms"], "p99_ms": login["latency"]["p99_ms"],
        "cpu_ms_per_login": 1000 * used / max(login["succeeded"], 1),
    }

    for rate in plan["chat_rates"]:
        print(f"  {server.name}: WebSocket chat at {rate} msg/s", file=sys.stderr, flush=True)
        results[f"chat_websocket_{rate}"] = chat(server, pid, plan, rate, log,
                                                 perf if rate == plan["chat_rates"][0] else "")
    return results


def chat(server, pid, plan, rate, log, perf=""):
    """CPU per message between WebSocket clients at one offered rate: a pair
    of runs that differ only in their sending time, repeated; the figure is
    the median pair (CPU per message moves by 10 to 20 % from one pair to
    the next on a shared 2 vCPU machine). A server that did not keep up
    (received less than 98 % of the offered rate, or lost messages) is
    marked: its figure is then that of a saturated server, not comparable.
    The median pair's CPU is also given split into the server's own code
    (user time) and the kernel's work for it (system time: sockets,
    waking and parking threads)."""
    cpu = servers.cpu_split
    pairs = []
    for repeat in range(plan["chat_repeats"]):
        runs = []
        for seconds in (plan["chat_short_s"], plan["chat_long_s"]):
            recorder = None
            if perf and seconds == plan["chat_long_s"] and repeat == 0:
                recorder = subprocess.Popen(["perf", "record", "-g", "-o", perf, "-p", str(pid)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = cpu(pid)
            try:
                report = load(["chat"] + target(server, "websocket")
                              + ["--pairs", plan["pairs"], "--rate", rate,
                                 "--duration", seconds, "--drain", 3, "--login-rate", 200,
                                 "--mechanism", "plain"], log)
            finally:
                if recorder:
                    recorder.send_signal(signal.SIGINT)
                    recorder.wait(timeout=120)
            runs.append((report["chat"], (before, cpu(pid))))
        (short, short_cpu), (long, long_cpu) = runs
        extra = long["received"] - short["received"]
        split = [1e6 * ((l1 - l0) - (s1 - s0)) / extra if extra > 0 else None
                 for (s0, s1), (l0, l1) in zip(zip(*short_cpu), zip(*long_cpu))]
        per_message = None if None in split else sum(split)
        pairs.append((per_message, short, long, split))
    each = ", ".join("-" if p[0] is None else f"{p[0]:.1f}" for p in pairs)
    print(f"    server CPU per message, each pair: {each} µs", file=sys.stderr, flush=True)
    measured = sorted((p for p in pairs if p[0] is not None), key=lambda p: p[0])
    per_message, short, long, (user, system) = (measured[len(measured) // 2] if measured
                                                else pairs[0])
    lost = sum(s["lost"] + l["lost"] for _, s, l, _ in pairs)
    kept_up = lost == 0 and all(l["received_per_s"] >= 0.98 * rate for _, _, l, _ in pairs)
    return {
        "offered": long["offered_rate"], "received_per_s": long["received_per_s"],
        "received": long["received"], "lost": lost, "kept_up": kept_up,
        "p50_ms": long["latency"]["p50_ms"], "p99_ms": long["latency"]["p99_ms"],
        "cpu_us_per_message": per_message,
        "cpu_us_per_message_user": user,
        "cpu_us_per_message_system": system,
        "cpu_us_per_message_each": [p[0] for p in pairs],
    }


# ---------------------------------------------------------------- report


def ratio(ours, peers, lower_is_better=True):
    values = [p for p in peers if p]
    if ours is None or not values:
        return "-", None
    best = min(values) if lower_is_better else max(values)
    return f"{ours / best:.2f}", best


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


ROWS = [
    ("hold_websocket", "kib_per_session", "memory per idle WebSocket session, KiB", True),
    ("hold_bosh", "kib_per_session", "memory per idle BOSH session, KiB", True),
    ("login_websocket", "achieved", "WebSocket logins/s (SCRAM-SHA-1)", False),
    ("login_websocket", "p99_ms", "WebSocket login p99 latency, ms", True),
    ("login_websocket", "cpu_ms_per_login", "server CPU per WebSocket login, ms", True),
    # One group of these per chat rate (`chat_rows`).
]
CHAT_ROWS = [
    ("received_per_s", "messages/s between WebSocket clients", False),
    ("p99_ms", "message p99 latency, ms", True),
    ("cpu_us_per_message", "server CPU per message, µs", True),
    ("cpu_us_per_message_user", "of it in the server's own code, µs", True),
    ("cpu_us_per_message_system", "of it in the kernel, µs", True),
]


def chat_rows(rates):
    return [(f"chat_websocket_{rate}", field, f"{label} ({rate:,} msg/s offered)", lower)
            for rate in rates for field, label, lower in CHAT_ROWS]


def table(results, names, rates):
    """The figures as Markdown. A chat figure of a server that did not keep
    up with the offered rate is marked with `*` and left out of the ratio."""
    peers = [n for n in names if n != "Starling"]
    head = "| figure | " + " | ".join(names) + " | Starling / best peer |"
    rows = [head, "|---" * (len(names) + 2) + "|"]
    for scenario, field, label, lower in ROWS + chat_rows(rates):
        figures = {n: results[n].get(scenario, {}) for n in names}
        values = {n: figures[n].get(field) for n in names}
        kept_up = {n: figures[n].get("kept_up", True) for n in names}
        comparable = {n: values[n] if kept_up[n] else None for n in names}
        text, _ = ratio(comparable.get("Starling"), [comparable[p] for p in peers], lower)
        cells = [fmt(values[n]) + ("" if kept_up[n] else "*") for n in names]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {text} |")
    if any(not f.get("kept_up", True) for r in results.values() for f in r.values()):
        rows.append("\n\\* did not keep up with the offered rate (or lost messages): "
                    "the figure is a saturated server's, left out of the ratio.")
    return "\n".join(rows)


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--ports", default="22000-22999", help="port range for the servers")
    parser.add_argument("--servers", default="starling,prosody,ejabberd")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    parser.add_argument("--out", help="write every figure as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the servers' folders (logs)")
    parser.add_argument("--perf", default="",
                        help="record Starling's long WebSocket chat run with `perf record -g` into this file")
    args = parser.parse_args()
    global LOAD
    starling_bin = os.path.join(args.bin_dir, "starling")
    LOAD = os.path.join(args.bin_dir, "starling-load")
    for path in (starling_bin, LOAD):
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: cargo build --release -p starling-xmpp -p starling-tests")
    low, high = (int(p) for p in args.ports.split("-"))
    ports = PortRange(low, high)
    servers.free_port_block = ports.block

    plan = {
        "hold_ws": 500 if args.quick else 2000,
        "hold_bosh": 200 if args.quick else 500,
        "hold_rate": 200,
        "hold_seconds": 3 if args.quick else 5,
        "settle_seconds": 3,
        "login_count": 300 if args.quick else 1500,
        "login_rate": 1000,
        "pairs": 50 if args.quick else 100,
        # Light load, which every server here keeps up with, and a load
        # where CPU per message decides how much one machine carries.
        "chat_rates": [1000, 2500] if args.quick else [2000, 5000],
        "chat_short_s": 2,
        "chat_long_s": 5 if args.quick else 12,
        "chat_repeats": 1 if args.quick else 3,
    }
    users = max(plan["hold_ws"], plan["hold_bosh"], plan["login_count"], 2 * plan["pairs"])
    accounts = piefxis.Plan(domain=DOMAIN, prefix=PREFIX, password=PASSWORD, count=users,
                            roster_size=0, offline_prefix="webaway", offline_count=1)
    work = tempfile.mkdtemp(prefix="web-bench-", dir="/tmp")
    os.chmod(work, 0o755)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = (f"{os.cpu_count()} vCPU ({platform.processor() or platform.machine()}), "
               f"{platform.system()} {platform.release()}, driver on the same machine")
    versions = {
        "Starling": version([starling_bin, "--version"]),
        "Prosody": version(["prosodyctl", "about"]) if shutil.which("prosodyctl") else "-",
        "ejabberd": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "ejabberd"],
                                   capture_output=True, text=True).stdout,
        "prosody_package": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "prosody"],
                                          capture_output=True, text=True).stdout,
    }
    results, log, names = {}, [], []
    try:
        for key in args.servers.split(","):
            if key == "starling":
                server = Starling(starling_bin, 1, work, ITERATIONS)
            elif key == "prosody":
                server = Prosody(work, ITERATIONS, ports)
            elif key == "ejabberd":
                server = Ejabberd(work, ports)
            else:
                raise SystemExit(f"unknown server {key}")
            print(f"setting up {server.name} ...", file=sys.stderr, flush=True)
            server.setup(accounts)
            try:
                server.start()
                perf = args.perf if key == "starling" else ""
                results[server.name] = measure(server, plan, log, perf)
                names.append(server.name)
            finally:
                server.stop()
    finally:
        if args.keep:
            print(f"servers' folders kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"Web transports, {started}; {machine}; plan {json.dumps(plan)}\n")
    print(table(results, names, plan["chat_rates"]))
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"started": started, "machine": machine, "versions": versions,
                       "plan": plan, "results": results, "commands": log}, out, indent=2)


if __name__ == "__main__":
    main()
