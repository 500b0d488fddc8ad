#!/usr/bin/env python3
"""Group chat benchmark (issue 13): `starling-load muc` against a 3-node cluster.

Run from the repository root (needs release builds; builds nothing):

    cargo build --release -p starling-xmpp -p starling-tests
    python3 tests/bench/muc.py --rooms 1 --occupants 1000 --rate 20 --duration 60
    python3 tests/bench/muc.py --rooms 3000 --occupants 5 --rate 1500 --duration 60

It writes three node configs of its own (`[modules.muc] max_occupants` raised
to the room size; `cluster up` has no key for it), starts `starling serve`
for each on ports from --base, provisions the users (SCRAM, 4,096
iterations), and runs the driver with every node's pid (server CPU per
delivery). When the driver says every occupant has joined, 2 s before the
end of its drain (messages only), and after it ends (its clients' leaves
included), it reads every node's /metrics and
prints the change of the group chat and peer-link counters: with one room
whose occupants are on all three nodes, `starling_muc_relays_sent_total`
must grow by 2 per message on the room's host (one envelope per other node
with occupants) and `starling_muc_relays_received_total` by 1 per message on
each other node. Prints the driver's report and a JSON summary.
"""

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COUNTERS = re.compile(r"^(starling_muc_\S+|starling_cluster_\S+)\s+([0-9.e+]+)$")


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        match = COUNTERS.match(line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


class Nodes:
    def __init__(self, bin_dir, work, base, nodes, max_occupants):
        self.bin = os.path.join(bin_dir, "starling")
        self.c2s = [base + i for i in range(nodes)]
        self.http = [base + 10 + i for i in range(nodes)]
        peer = [base + 20 + i for i in range(nodes)]
        secret = secrets.token_hex(24)
        self.configs, self.processes, self.logs = [], [], []
        for i in range(nodes):
            seeds = ", ".join(f'"127.0.0.1:{peer[j]}"' for j in range(nodes) if j != i)
            text = f"""[server]
domain = "localhost"
data_dir = "{work}/node{i + 1}"

[c2s]
bind = "127.0.0.1:{self.c2s[i]}"
direct_tls_bind = "127.0.0.1:{base + 30 + i}"

[s2s]
bind = "127.0.0.1:{base + 40 + i}"

[http]
bind = "127.0.0.1:{self.http[i]}"

[storage]
url = "sqlite://{work}/starling.db"

[cluster]
enabled = true
node_name = "node{i + 1}"
bind = "127.0.0.1:{peer[i]}"
seeds = [{seeds}]
secret = "{secret}"

[modules.muc]
max_occupants = {max_occupants}
"""
            path = os.path.join(work, f"node{i + 1}.toml")
            with open(path, "w") as out:
                out.write(text)
            self.configs.append(path)
        for i, path in enumerate(self.configs):
            log = open(os.path.join(work, f"node{i + 1}.log"), "w")
            self.logs.append(log)
            self.processes.append(subprocess.Popen(
                [self.bin, "serve", "--config", path], stdout=log, stderr=log,
                env=dict(os.environ, RUST_LOG="warn,starling_cluster=info")))
        for port in self.c2s + self.http:
            wait_port(port)
        self.wait_formed(work, nodes)

    def wait_formed(self, work, nodes, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            ok = 0
            for i in range(nodes):
                with open(os.path.join(work, f"node{i + 1}.log"), errors="replace") as log:
                    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read())
                ups = set(re.findall(r"cluster member is up peer=(\S+)", text))
                if "cluster ready" in text and len(ups) >= nodes - 1:
                    ok += 1
            if ok == nodes:
                time.sleep(1)
                return
            time.sleep(0.25)
        raise SystemExit(f"the cluster in {work} did not form within {timeout} s")

    def pids(self):
        return [p.pid for p in self.processes]

    def servers(self):
        return ",".join(f"127.0.0.1:{port}" for port in self.c2s)

    def counters(self):
        return [metrics(port) for port in self.http]

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    p.add_argument("--rooms", type=int, default=1)
    p.add_argument("--occupants", type=int, default=1000)
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--drain", type=float, default=10)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--base", type=int, default=21100, help="first port (about 50 are used)")
    p.add_argument("--work", default="", help="folder for data and logs (default: temporary, removed)")
    p.add_argument("--out", default="", help="write the summary as JSON here")
    args = p.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="starling-muc-bench-")
    os.makedirs(work, exist_ok=True)
    users = args.rooms * args.occupants
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open("/proc/loadavg") as f:
        load_before = " ".join(f.read().split()[:3])
    nodes = Nodes(args.bin_dir, work, args.base, args.nodes, max(args.occupants, 500))
    try:
        subprocess.run([nodes.bin, "user", "provision", "--config", nodes.configs[0], "--prefix", "user",
                        "--count", str(users), "--password", "pass", "--roster-size", "0",
                        "--iterations", "4096"], check=True, capture_output=True)
        before = nodes.counters()
        command = [os.path.join(args.bin_dir, "starling-load"), "--json", "muc", "--server", nodes.servers(),
                   "--users", "user", "--password-prefix", "pass", "--tls",
                   "--rooms", str(args.rooms), "--occupants", str(args.occupants),
                   "--rate", f"{args.rate:g}", "--duration", f"{args.duration:g}",
                   "--drain", f"{args.drain:g}",
                   "--server-pid", ",".join(str(pid) for pid in nodes.pids())]
        print("$ " + " ".join(command), file=sys.stderr, flush=True)
        window = []
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        output = []
        reader = threading.Thread(target=lambda: output.append(process.stdout.read()))
        reader.start()
        errors = []
        for line in process.stderr:
            errors.append(line)
            if "; running" in line:
                # Every join is done: from here the counters move for messages only,
                # until the clients close at the end of the drain (their leaves).
                before = nodes.counters()
                timer = threading.Timer(max(args.duration + args.drain - 2, 1),
                                        lambda: window.append(nodes.counters()))
                timer.start()
        reader.join()
        result = subprocess.CompletedProcess(command, process.wait(), output[0], "".join(errors))
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        # The driver shares the machine: what it used shows how far it could keep up.
        driver_cpu = (done.ru_utime + done.ru_stime) - (children.ru_utime + children.ru_stime)
        sys.stderr.write(result.stderr[-3000:])
        if result.returncode != 0:
            raise SystemExit("starling-load failed")
        after = nodes.counters()
        alive = [process.poll() is None for process in nodes.processes]
    finally:
        nodes.stop()
    with open("/proc/loadavg") as f:
        load_after = " ".join(f.read().split()[:3])
    report = json.loads(result.stdout)
    muc = report["muc"]
    def delta(before, after):
        return [{key: a[key] - b.get(key, 0) for key in sorted(a) if a[key] - b.get(key, 0)}
                for b, a in zip(before, after)]
    # Sending and drain only (2 s before the clients close), then the whole run.
    deltas = delta(before, window[0]) if window else []
    summary = {
        "started": started, "load_before": load_before, "load_after": load_after,
        "rooms": args.rooms, "occupants": args.occupants, "rate": args.rate, "duration": args.duration,
        "nodes_alive_at_end": alive, "driver_cpu_s": round(driver_cpu, 2), "muc": muc, "login": report.get("login"), "metrics_delta": deltas,
        "metrics_delta_with_leaves": delta(before, after),
    }
    sent = muc["sent"]
    if sent:
        relays = sum(d.get("starling_muc_relays_sent_total", 0) for d in deltas)
        summary["relays_sent_per_message"] = relays / sent
        summary["relays_received_per_message_by_node"] = [
            d.get("starling_muc_relays_received_total", 0) / sent for d in deltas]
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as out:
            json.dump(summary, out, indent=2)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
