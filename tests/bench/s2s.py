#!/usr/bin/env python3
"""Federation benchmark (issue 17): messages/s and server CPU per message over
server-to-server streams, three pairs of servers measured in the same run:

    Starling <-> Starling   (a.test, b.test)
    Starling <-> Prosody    (a.test, p1.test)
    Prosody  <-> Prosody    (p1.test, p2.test)

Run from the repository root as root (needs `ip`, dnsmasq, Debian's prosody and
release builds; builds nothing):

    cargo build --release -p starling-xmpp -p starling-tests --bin starling --bin starling-load
    python3 tests/bench/s2s.py --rates 1000,3000 --duration 10

Every server and the driver run in a network namespace of their own, each
server on its own loopback address with the default ports (5222, 5269), and
a dnsmasq there answers the address record of each `.test` domain, so the
servers find each other as on the Internet (no SRV records: port 5269) and
nothing leaves the machine. Each server has a self-signed certificate, so
the pairs authenticate with dialback over TLS, as most of the network does.

For each pair and rate, `starling-load chat --cross` runs pairs of users,
the sender of pair k on server k mod 2 and its receiver on the other, so
half the messages cross one way and half the other. Two Starling servers
share one bidirectional stream (XEP-0288, on by default); with Prosody
(mod_s2s_bidi not loaded, its default) each direction has its own. A short run first sets the streams up; the measured
run counts both servers' CPU from the start of sending to the end of the
drain (`--server-pid`), divided by the messages received.

Starling archives nothing here (`[modules.mam] enabled = false`), like the
Prosody servers (no mod_mam): the figures compare federation, not message
archives. `--archive` turns Starling's archive (on by default in a real
deployment) back on.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOMAINS = {"a.test": "127.0.1.1", "b.test": "127.0.1.2", "p1.test": "127.0.1.3", "p2.test": "127.0.1.4"}
PAIRS = [("Starling", "a.test", "Starling", "b.test"),
         ("Starling", "a.test", "Prosody", "p1.test"),
         ("Prosody", "p1.test", "Prosody", "p2.test")]


class Namespace:
    """A network namespace with loopback up and a DNS server for the domains."""

    def __init__(self, work):
        self.name = f"starling-s2s-bench-{os.getpid()}"
        self.resolv = f"/etc/netns/{self.name}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        os.makedirs(self.resolv, exist_ok=True)
        with open(os.path.join(self.resolv, "resolv.conf"), "w") as resolv:
            resolv.write("nameserver 127.0.0.1\n")
        records = [f"--host-record={domain},{address}" for domain, address in DOMAINS.items()]
        self.dns = subprocess.Popen(
            self.command(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                          "--no-hosts", "--user=root", "--pid-file=", "--listen-address=127.0.0.1",
                          "--bind-interfaces", "--local=/test/", *records]),
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "dnsmasq.log"), "w"))

    def command(self, argv):
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self):
        self.dns.terminate()
        self.dns.wait(timeout=10)
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
        shutil.rmtree(self.resolv, ignore_errors=True)


def prosody_preamble(directory):
    """The first lines of a bench Prosody's config: root, its folder, warnings
    only, epoll without Nagle (as Starling writes)."""
    return f"""run_as_root = true
pidfile = "{directory}/prosody.pid"
data_path = "{directory}/data"
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{directory}/prosody.log" }} }}
network_backend = "epoll"
network_settings = {{ nagle = false }}
"""


def self_signed(directory, domain):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class Starling:
    archive = False

    def __init__(self, netns, work, domain, users):
        self.netns, self.domain, self.address = netns, domain, DOMAINS[domain]
        self.dir = os.path.join(work, domain)
        os.makedirs(self.dir)
        cert, key = self_signed(self.dir, domain)
        self.config = os.path.join(self.dir, "node.toml")
        with open(self.config, "w") as config:
            config.write(
                f'[server]\ndomain = "{domain}"\ndata_dir = "{self.dir}/data"\n'
                f'[c2s]\nbind = "{self.address}:5222"\ndirect_tls_bind = ""\n'
                f'[s2s]\nbind = "{self.address}:5269"\n'
                f'[http]\nbind = "{self.address}:5280"\n'
                f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
                "[limits]\nconnections_per_ip_per_sec = 0\nauth_failures_per_ip = 0\n"
                f"[modules.mam]\nenabled = {'true' if Starling.archive else 'false'}\n")
        subprocess.run([BIN["starling"], "user", "provision", "--config", self.config, "--prefix", "user",
                        "--count", str(users), "--password", "pass", "--roster-size", "0"],
                       check=True, capture_output=True)
        log = open(os.path.join(self.dir, "server.log"), "w")
        self.process = subprocess.Popen(netns.command([BIN["starling"], "serve", "--config", self.config]),
                                        stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"))
        self.pid = self.process.pid

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


class Prosody:
    def __init__(self, netns, work, domain, users):
        self.netns, self.domain, self.address = netns, domain, DOMAINS[domain]
        self.dir = os.path.join(work, domain)
        os.makedirs(os.path.join(self.dir, "data"))
        cert, key = self_signed(self.dir, domain)
        config = os.path.join(self.dir, "prosody.cfg.lua")
        with open(config, "w") as out:
            out.write(prosody_preamble(self.dir) + f"""interfaces = {{ "{self.address}" }}
c2s_ports = {{ 5222 }}
s2s_ports = {{ 5269 }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
modules_enabled = {{ "roster", "saslauth", "tls", "dialback", "disco", "ping" }}
modules_disabled = {{ "offline" }}
s2s_require_encryption = true
s2s_secure_auth = false
ssl = {{ certificate = "{cert}", key = "{key}" }}

VirtualHost "{domain}"
    password_hash = "SHA-256"
""")
        subprocess.run([BIN["starling-load"], "prosody-users", "--data-dir", os.path.join(self.dir, "data"),
                        "--domain", domain, "--users", "user", "--password-prefix", "pass",
                        "--count", str(users), "--iterations", "4096"], check=True, capture_output=True)
        log = open(os.path.join(self.dir, "prosody.out"), "w")
        self.process = subprocess.Popen(netns.command(["prosody", "--config", config, "-F"]),
                                        stdout=log, stderr=log)
        self.pid = self.process.pid

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def wait_listening(netns, address, port=5222, timeout=30):
    deadline = time.time() + timeout
    probe = f"import socket; socket.create_connection(('{address}', {port}), timeout=0.5).close()"
    while time.time() < deadline:
        if subprocess.run(netns.command([sys.executable, "-c", probe]), capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on {address}:{port}")


def barriers_sent(netns, servers):
    """Barriers the Starling servers among `servers` sent so far (their /metrics)."""
    total = 0
    for server in servers:
        if not isinstance(server, Starling):
            continue
        probe = ("import urllib.request; print(urllib.request.urlopen("
                 f"'http://{server.address}:5280/metrics', timeout=10).read().decode())")
        text = subprocess.run(netns.command([sys.executable, "-c", probe]), capture_output=True,
                              text=True, check=True).stdout
        for line in text.splitlines():
            if line.startswith("starling_s2s_barriers_total "):
                total += int(float(line.split()[1]))
    return total


def chat(netns, servers, pairs, rate, duration, pids=()):
    argv = [BIN["starling-load"], "--json", "chat", "--cross", "--no-presence",
            "--server", ",".join(f"{s.address}:5222" for s in servers),
            "--domain", ",".join(s.domain for s in servers),
            "--users", "user", "--password-prefix", "pass", "--mechanism", "scram-sha-256", "--tls",
            "--pairs", str(pairs), "--rate", str(rate), "--duration", str(duration),
            "--drain", "5", "--login-rate", "200"]
    for pid in pids:
        argv += ["--server-pid", str(pid)]
    result = subprocess.run(netns.command(argv), capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit("starling-load failed")
    return json.loads(result.stdout)["chat"]


def measure_pair(netns, work, pair, plan):
    kinds = {"Starling": Starling, "Prosody": Prosody}
    users = 2 * plan["pairs"]
    servers = [kinds[pair[0]](netns, work, pair[1], users), kinds[pair[2]](netns, work, pair[3], users)]
    try:
        for server in servers:
            wait_listening(netns, server.address)
        chat(netns, servers, 10, 20, 1)  # sets up both streams
        results = {}
        for rate in plan["rates"]:
            barriers_before = barriers_sent(netns, servers)
            report = chat(netns, servers, plan["pairs"], rate, plan["duration"],
                          [s.pid for s in servers])
            barriers = barriers_sent(netns, servers) - barriers_before
            results[rate] = {
                "barriers_per_message": barriers / report["received"] if report.get("received") else 0,
                "received_per_s": report["received_per_s"], "lost": report["lost"],
                "p50_ms": report["latency"]["p50_ms"], "p99_ms": report["latency"]["p99_ms"],
                "cpu_s": report["server_cpu_s"], "cpu_us_per_message": report["cpu_us_per_message"],
            }
            print(f"{pair[0]} {pair[1]} <-> {pair[2]} {pair[3]} at {rate}/s: {results[rate]}",
                  file=sys.stderr)
        return results
    finally:
        for server in servers:
            server.stop()
        for server in servers:
            shutil.rmtree(server.dir, ignore_errors=True)


def cpu_ns(pid):
    """CPU time of every thread of a process so far, in nanoseconds
    (schedstat: finer than the clock ticks of /proc/PID/stat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def measure_stream_setup(netns, work, rounds):
    """CPU both Starling servers spend setting up their stream: a fresh pair of
    servers, a first exchange (which opens the stream: DNS, TCP, TLS, dialback
    and its verification) and the same exchange again on the open stream; the
    difference is the setup. Both exchanges log the same users in, so the
    logins cancel out."""
    firsts, seconds = [], []
    for _ in range(rounds):
        servers = [Starling(netns, work, "a.test", 4), Starling(netns, work, "b.test", 4)]
        try:
            for server in servers:
                wait_listening(netns, server.address)
            costs = []
            for _exchange in range(2):
                before = sum(cpu_ns(s.pid) for s in servers)
                report = chat(netns, servers, 2, 2, 1)
                costs.append((sum(cpu_ns(s.pid) for s in servers) - before) / 1e6)
                if report["lost"]:
                    raise SystemExit(f"messages lost while measuring the stream setup: {report}")
            firsts.append(costs[0])
            seconds.append(costs[1])
            print(f"stream setup round: first exchange {costs[0]:.1f} ms CPU, "
                  f"second {costs[1]:.1f} ms", file=sys.stderr)
        finally:
            for server in servers:
                server.stop()
            for server in servers:
                shutil.rmtree(server.dir, ignore_errors=True)
    setups = sorted(f - s for f, s in zip(firsts, seconds))
    return {"first_exchange_ms": firsts, "second_exchange_ms": seconds,
            "setup_ms_median": setups[len(setups) // 2], "setup_ms_min": setups[0],
            "setup_ms_max": setups[-1]}


def table(plan, results, names):
    baseline = "Prosody <-> Prosody"
    rows = ["| rate offered | pair | received/s | lost | p50 ms | p99 ms | CPU µs/message (both servers) | "
            "CPU vs Prosody <-> Prosody | barriers/message |", "|---|---|---|---|---|---|---|---|---|"]
    for rate in plan["rates"]:
        base = results[baseline][rate]["cpu_us_per_message"] if baseline in results else 0
        for name in names:
            r = results[name][rate]
            ratio = f"{r['cpu_us_per_message'] / base:.2f}" if base else "-"
            rows.append(f"| {rate} | {name} | {r['received_per_s']:.0f} | {r['lost']} | {r['p50_ms']:.1f} | "
                        f"{r['p99_ms']:.1f} | {r['cpu_us_per_message']:.1f} | {ratio} | "
                        f"{r['barriers_per_message']:.2f} |")
    return "\n".join(rows)


BIN = {}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000,3000", help="messages/s offered, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending per rate")
    parser.add_argument("--pairs", type=int, default=100, help="sender/receiver pairs")
    parser.add_argument("--out", help="write all figures as JSON here")
    parser.add_argument("--archive", action="store_true",
                        help="keep Starling's message archive on (the Prosody servers archive nothing)")
    parser.add_argument("--only", choices=["starling", "prosody", "setup"],
                        help="measure only the pairs with Starling, or only Prosody <-> Prosody, or "
                             "only the CPU of setting up one Starling <-> Starling stream")
    parser.add_argument("--setup-rounds", type=int, default=5,
                        help="with --only setup: fresh server pairs to measure")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                        help="where the release builds of starling and starling-load are")
    args = parser.parse_args()
    for name in ("starling", "starling-load"):
        BIN[name] = os.path.join(args.bin_dir, name)
        if not os.path.exists(BIN[name]):
            raise SystemExit(f"missing {BIN[name]}: cargo build --release -p starling-xmpp -p starling-tests")
    for program in ("ip", "dnsmasq", "prosody", "openssl"):
        if not shutil.which(program):
            raise SystemExit(f"{program} is missing (apt-get install iproute2 dnsmasq-base prosody openssl)")
    if os.geteuid() != 0:
        raise SystemExit("network namespaces need root")
    Starling.archive = args.archive
    plan = {"rates": [int(r) for r in args.rates.split(",")], "duration": args.duration, "pairs": args.pairs,
            "archive": args.archive}
    pairs = [p for p in PAIRS if args.only is None or (args.only == "starling") == (p[0] == "Starling")]
    work = tempfile.mkdtemp(prefix="starling-s2s-bench-")
    netns = Namespace(work)
    try:
        if args.only == "setup":
            started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            load = os.getloadavg()[0]
            setup = measure_stream_setup(netns, work, args.setup_rounds)
            print(f"Stream setup, {started}, load average {load:.1f} before: CPU of both servers "
                  f"for one Starling <-> Starling stream (dialback over TLS), median "
                  f"{setup['setup_ms_median']:.1f} ms (min {setup['setup_ms_min']:.1f}, max "
                  f"{setup['setup_ms_max']:.1f}) over {args.setup_rounds} fresh pairs")
            if args.out:
                with open(args.out, "w") as out:
                    json.dump({"started": started, "setup": setup}, out, indent=2)
            return
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()[0]
        results = {f"{p[0]} <-> {p[2]}": measure_pair(netns, work, p, plan) for p in pairs}
        print(f"Federation, {started}, {os.cpu_count()} cores, driver on the same machine, "
              f"{plan['pairs']} pairs, {plan['duration']:.0f} s per rate, Starling's archive "
              f"{'on' if args.archive else 'off'}, load average {load:.1f} before\n")
        print(table(plan, results, [f"{p[0]} <-> {p[2]}" for p in pairs]))
        if args.out:
            with open(args.out, "w") as out:
                json.dump({"plan": plan, "started": started, "results": results}, out, indent=2)
    finally:
        netns.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
