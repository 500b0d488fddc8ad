#!/usr/bin/env python3
"""Cluster benchmark: Starling nodes started with `starling cluster up` on this machine.

Run from the repository root (needs release builds; builds nothing):

    cargo build --release -p starling-xmpp -p starling-tests
    python3 tests/bench/cluster.py [--quick] [--out results.json]

Every scenario starts its own cluster (high ports, a temporary folder, users
provisioned with SCRAM at 4096 iterations) and measures with `starling-load`:
  - chat between pairs on the same node and across nodes, at several rates on
    3 nodes (the highest saturates the machine): throughput, end-to-end
    latency, server CPU per message (targets: cross-node p99 under 15 ms at
    10,000 msg/s, cross-node throughput at least 70 % of same-node; as the
    driver shares the cores, the capacity ratio is also estimated from server
    CPU per message, and measured with the nodes pinned to one core and the
    driver to the other, offered more than the nodes can carry);
  - cross-node chat with TLS peer links (the default) and with clear-text links
    (`insecure_plaintext`), one after the other: what TLS on the links costs per
    message in server CPU and latency;
  - directory convergence (`starling-load converge`): from a fresh session's
    bind result to the arrival of a message sent to it from another node at
    that moment (target: p99 under 50 ms), with the same-node figure beside it;
  - memory per node for 1..4 nodes holding the same number of sessions each,
    so the cost of other nodes' sessions in the replicated directory shows,
    and the same cost alone: all sessions on one node of 4, the others idle;
  - time from SIGKILL of a node to unavailable presence at its users'
    contacts on another node (`starling-load failover`), without and with the
    supervisor restarting the killed node;
  - many concurrent sessions over 3 nodes (55,000 by default), errors and RSS
    per node;
  - pub/sub fan-out (`starling-load fanout`): 10,000 Bayeux WebSocket subscribers
    over 3 nodes on one channel, items published over XMPP at several rates:
    deliveries/s, latency from publish to arrival, loss, RSS per node and per
    idle subscriber; and XMPP subscribers of one node spread over 1, 2 and 3
    nodes.
It prints Markdown tables. The driver runs on the same machine as the nodes,
so absolute figures depend on how busy the machine is: the load average is
printed with them.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Logins per second per (node, source address) stay under the server's default
# limit of 200 new connections/s per IP: workers each have their own address.
MIN_WORKERS = 8


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


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


class Cluster:
    """`starling cluster up --nodes N` in its own folder, on its own ports."""

    def __init__(self, bins, work, name, nodes, base, users, roster_size=0, restart=True, cpus=None,
                 plaintext_links=False):
        self.bins = bins
        self.dir = os.path.join(work, name)
        self.nodes = nodes
        self.c2s = [base + i for i in range(nodes)]
        self.http = [base + 40 + i for i in range(nodes)]
        os.makedirs(self.dir)
        self.log_path = os.path.join(self.dir, "cluster.log")
        self.log = open(self.log_path, "w")
        command = [bins.starling, "cluster", "up", "--nodes", str(nodes), "--dir", self.dir,
                   "--c2s-base", str(base), "--http-base", str(base + 40),
                   "--cluster-base", str(base + 80)]
        if not restart:
            command.append("--no-restart")
        if plaintext_links:
            command.append("--insecure-plaintext-links")
        if cpus:
            # The nodes inherit the supervisor's CPU affinity.
            command = ["taskset", "-c", cpus] + command
        # The cluster module's info lines say when the nodes are linked and ready.
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log,
                                        env=dict(os.environ, RUST_LOG="warn,starling_cluster=info"))
        try:
            for port in self.c2s:
                wait_port(port)
            self.config = os.path.join(self.dir, "node1.toml")
            self.wait_formed()
            if users:
                self.starling(["user", "provision", "--config", self.config, "--prefix", "user",
                               "--count", str(users), "--password", "pass",
                               "--roster-size", str(roster_size), "--iterations", "4096"])
            self.pids = [self.node_pid(i) for i in range(1, nodes + 1)]
        except BaseException:
            self.stop()
            raise

    def starling(self, args):
        result = subprocess.run([self.bins.starling] + args, capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            raise SystemExit(f"starling {' '.join(args)} failed")

    def wait_formed(self, timeout=60):
        """Until every node accepts logins and has seen every other node up (from the log:
        the nodes have no other outside view of the membership yet)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            ready, peers = set(), {}
            with open(self.log_path, errors="replace") as log:
                for line in log:
                    line = ANSI.sub("", line)
                    node = re.match(r"\[(node\d+)\]", line)
                    if not node:
                        continue
                    if "cluster ready" in line:
                        ready.add(node.group(1))
                    up = re.search(r"cluster member is up peer=(\S+)", line)
                    if up:
                        peers.setdefault(node.group(1), set()).add(up.group(1))
            if len(ready) == self.nodes and all(len(peers.get(f"node{i}", ())) >= self.nodes - 1
                                                for i in range(1, self.nodes + 1)):
                # Let the senior member commit the membership the links already show.
                time.sleep(1)
                return
            time.sleep(0.25)
        with open(self.log_path, errors="replace") as log:
            tail = [ANSI.sub("", line) for line in log.readlines()[-30:]]
        sys.stderr.write("".join(tail))
        raise SystemExit(f"the {self.nodes}-node cluster in {self.dir} did not form within {timeout} s")

    def node_pid(self, index):
        pattern = f"serve --config {os.path.join(self.dir, f'node{index}.toml')}"
        result = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
        pids = [int(pid) for pid in result.stdout.split()]
        if len(pids) != 1:
            raise SystemExit(f"expected one node{index} process, found {pids}")
        return pids[0]

    def servers(self, nodes=None):
        ports = self.c2s if nodes is None else [self.c2s[i] for i in nodes]
        return ",".join(f"127.0.0.1:{port}" for port in ports)

    def http_servers(self, nodes=None):
        ports = self.http if nodes is None else [self.http[i] for i in nodes]
        return ",".join(f"127.0.0.1:{port}" for port in ports)

    def cpu(self):
        return sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Bins:
    def __init__(self, folder):
        self.starling = os.path.join(folder, "starling")
        self.load = os.path.join(folder, "starling-load")
        for path in (self.starling, self.load):
            if not os.path.exists(path):
                raise SystemExit(f"missing {path}: cargo build --release -p starling-xmpp -p starling-tests")

    def run_load(self, args, on_running=None, cpus=None):
        """Runs the driver; `on_running` is called when its sessions are up and the measured
        phase starts (it says so on stderr), e.g. to sample the servers' CPU time."""
        command = [self.load, "--json"] + args
        print(f"  $ starling-load {' '.join(args)}", file=sys.stderr)
        if cpus:
            command = ["taskset", "-c", cpus] + command
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        output = []
        reader = threading.Thread(target=lambda: output.append(process.stdout.read()))
        reader.start()
        errors = []
        for line in process.stderr:
            errors.append(line)
            if on_running and "; running" in line:
                on_running()
        reader.join()
        if process.wait() != 0:
            sys.stderr.write("".join(errors)[-4000:])
            raise SystemExit(f"starling-load failed: {' '.join(command)}")
        return json.loads(output[0])


def common(cluster, nodes=None):
    return ["--server", cluster.servers(nodes), "--users", "user", "--password-prefix", "pass", "--tls"]


def chat_scenario(bins, work, plan):
    pairs = plan["pairs"]
    cluster = Cluster(bins, work, "chat", 3, 42200, users=2 * pairs + plan["converge_targets"] + 3)
    results = {}
    try:
        for rate in plan["chat_rates"]:
            for layout in ("same", "cross"):
                extra = ["--cross"] if layout == "cross" else []
                # Server CPU from the end of the logins to the end of the run.
                cpu_before = []
                report = bins.run_load(
                    ["chat"] + common(cluster) + extra +
                    ["--pairs", str(pairs), "--rate", str(rate), "--duration", str(plan["chat_seconds"]),
                     "--login-rate", "400", "--mechanism", "plain"],
                    on_running=lambda: cpu_before.append(cluster.cpu()))
                cpu = cluster.cpu() - cpu_before[0]
                chat = report["chat"]
                results[f"chat_{layout}_{rate}"] = {
                    "sent_per_s": chat["sent_per_s"], "received_per_s": chat["received_per_s"],
                    "lost": chat["lost"], "p50": chat["latency"]["p50_ms"], "p99": chat["latency"]["p99_ms"],
                    "max": chat["latency"]["max_ms"], "send_lag_p99": chat["send_lag"]["p99_ms"],
                    "errors": sum(chat["errors"].values()) + report["login"]["failed"],
                    "cpu_us_per_message": 1e6 * cpu / max(chat["received"], 1),
                }
        # Converge: senders are users 1..n, targets the next ones (after the chat users).
        first = str(2 * pairs + 1)
        for label, nodes in (("converge_cross", None), ("converge_same", [0])):
            report = bins.run_load(
                ["converge"] + common(cluster, nodes) +
                ["--first", first, "--rounds", str(plan["converge_rounds"]), "--rate", "20",
                 "--targets", str(plan["converge_targets"]), "--mechanism", "plain"])
            converge = report["converge"]
            results[label] = {key: converge[key] for key in ("rounds", "delivered", "late", "offline", "lost", "unsent")}
            results[label].update({"p50": converge["latency"]["p50_ms"], "p99": converge["latency"]["p99_ms"],
                                   "max": converge["latency"]["max_ms"]})
    finally:
        cluster.stop()
    return results


def links_scenario(bins, work, plan):
    """Cross-node chat on 3 nodes with TLS peer links (the default), then the same with
    clear-text links (`insecure_plaintext`), one after the other in the same session: what TLS
    on the links costs per message in server CPU and latency."""
    pairs = plan["links_pairs"]
    results = {}
    for label, plaintext in (("tls", False), ("plain", True)):
        cluster = Cluster(bins, work, f"links-{label}", 3, 42300 if plaintext else 42400,
                          users=2 * pairs, plaintext_links=plaintext)
        try:
            for rate in plan["links_rates"]:
                cpu_before = []
                report = bins.run_load(
                    ["chat"] + common(cluster) + ["--cross", "--pairs", str(pairs), "--rate", str(rate),
                                                  "--duration", str(plan["links_seconds"]),
                                                  "--login-rate", "400", "--mechanism", "plain"],
                    on_running=lambda: cpu_before.append(cluster.cpu()))
                cpu = cluster.cpu() - cpu_before[0]
                chat = report["chat"]
                results[f"links_{label}_{rate}"] = {
                    "received_per_s": chat["received_per_s"], "lost": chat["lost"],
                    "p50": chat["latency"]["p50_ms"], "p99": chat["latency"]["p99_ms"],
                    "errors": sum(chat["errors"].values()) + report["login"]["failed"],
                    "cpu_us_per_message": 1e6 * cpu / max(chat["received"], 1),
                }
        finally:
            cluster.stop()
    return results


def capacity_scenario(bins, work, plan):
    """All nodes on CPU 0, the driver on CPU 1, offered more than the nodes can carry: the
    delivered rate is the nodes' capacity, same node vs across nodes."""
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        print("  capacity: needs 2 cores and taskset; skipped", file=sys.stderr)
        return {}
    pairs = plan["pairs"]
    cluster = Cluster(bins, work, "capacity", 3, 43800, users=2 * pairs, cpus="0")
    results = {}
    try:
        # Cross last: what an overloaded run leaves in offline storage would come back as
        # duplicates in the next run of the same users.
        for layout in ("same", "cross"):
            extra = ["--cross"] if layout == "cross" else []
            cpu_before = []
            report = bins.run_load(
                ["chat"] + common(cluster) + extra +
                ["--pairs", str(pairs), "--rate", str(plan["capacity_rate"]),
                 "--duration", str(plan["chat_seconds"]), "--drain", "30",
                 "--login-rate", "300", "--mechanism", "plain"],
                on_running=lambda: cpu_before.append((cluster.cpu(), time.time())), cpus="1")
            cpu_after, end = cluster.cpu(), time.time()
            chat = report["chat"]
            results[f"capacity_{layout}"] = {
                "received_per_s": chat["received_per_s"], "lost": chat["lost"],
                "out_of_order": chat["out_of_order"], "duplicates": chat["duplicates"],
                "p50": chat["latency"]["p50_ms"], "p99": chat["latency"]["p99_ms"],
                "send_lag_p99": chat["send_lag"]["p99_ms"],
                # Busy share of the nodes' core from the go to the end of the run (which
                # includes the closing of the sessions): near 1 when the nodes are the limit.
                "node_core_busy": (cpu_after - cpu_before[0][0]) / max(end - cpu_before[0][1], 1e-9),
            }
    finally:
        cluster.stop()
    return results


def memory_scenario(bins, work, plan):
    per_node = plan["sessions_per_node"]
    results = {}
    for nodes in plan["memory_nodes"]:
        count = per_node * nodes
        cluster = Cluster(bins, work, f"memory{nodes}", nodes, 42400 + 100 * nodes, users=count)
        try:
            time.sleep(1)
            report = bins.run_load(
                ["hold"] + common(cluster) +
                ["--count", str(count), "--rate", str(plan["hold_rate"]), "--duration", "2", "--settle", "3",
                 "--server-pid", ",".join(map(str, cluster.pids)), "--mechanism", "scram-sha-256",
                 "--workers", str(max(MIN_WORKERS, -(-count // 19_900)))])
        finally:
            cluster.stop()
        hold = report["hold"]
        memories = hold.get("memory_by_server") or [hold["memory"]]
        results[f"memory_{nodes}"] = {
            "nodes": nodes, "sessions": count, "held": hold["held"],
            "failed": report["login"]["failed"], "dropped": hold["dropped"],
            "rss_before_mib": [m["before"]["rss_kib"] / 1024 for m in memories],
            "rss_after_mib": [m["after"]["rss_kib"] / 1024 for m in memories],
            "kib_per_local_session": [m["per_session_kib"] for m in memories],
        }
    return results


def directory_scenario(bins, work, plan):
    """All sessions on node 1 of 4: the other nodes hold only directory entries, so their
    growth is the cost of an entry, apart from the noise of sessions on the same node."""
    count = plan["directory_sessions"]
    cluster = Cluster(bins, work, "directory", 4, 43400, users=count)
    idle = cluster.pids[1:]
    try:
        time.sleep(1)
        before = [rss_kib(pid) for pid in idle]
        after = []

        def sample():
            # The driver says "running" when every session is up; give the deltas the
            # same settle time as the driver's own sample of node 1.
            time.sleep(3)
            after.extend(rss_kib(pid) for pid in idle)

        report = bins.run_load(
            ["hold"] + common(cluster, [0]) +
            ["--count", str(count), "--rate", str(plan["hold_rate"]), "--duration", "5", "--settle", "3",
             "--server-pid", str(cluster.pids[0]), "--mechanism", "scram-sha-256",
             "--workers", str(MIN_WORKERS)],
            on_running=sample)
    finally:
        cluster.stop()
    held = report["hold"]["held"]
    return {"directory": {
        "sessions_on_node1": held, "failed": report["login"]["failed"],
        "node1_rss_after_mib": report["hold"]["memory"]["after"]["rss_kib"] / 1024,
        "idle_rss_before_mib": [kib / 1024 for kib in before],
        "idle_rss_after_mib": [kib / 1024 for kib in after],
        "bytes_per_entry": [1024 * (a - b) / max(held, 1) for a, b in zip(after, before)],
    }}


def failover_scenario(bins, work, plan):
    results = {}
    runs = [("failover_norestart", False)] * plan["failover_runs"] + [("failover_restart", True)]
    for index, (label, restart) in enumerate(runs):
        pairs = plan["failover_pairs"]
        cluster = Cluster(bins, work, f"failover{index}", 3, 42900 + 100 * index,
                          users=2 * pairs, roster_size=2, restart=restart)
        try:
            report = bins.run_load(
                ["failover"] + common(cluster, [0, 1]) +
                ["--pairs", str(pairs), "--kill-pid", str(cluster.pids[1]), "--mechanism", "plain",
                 "--wait", "30"])
        finally:
            cluster.stop()
        failover = report["failover"]
        entry = results.setdefault(label, {"runs": 0, "watched": 0, "notified": 0, "missed": 0,
                                           "p50": [], "max": []})
        entry["runs"] += 1
        for key in ("watched", "notified", "missed"):
            entry[key] += failover[key]
        entry["p50"].append(failover["latency"]["p50_ms"])
        entry["max"].append(failover["latency"]["max_ms"])
    return results


def many_sessions_scenario(bins, work, plan):
    count = plan["many_sessions"]
    cluster = Cluster(bins, work, "many", 3, 43600, users=count)
    try:
        time.sleep(1)
        workers = max(MIN_WORKERS, -(-count // 19_900))
        started = time.time()
        report = bins.run_load(
            ["hold"] + common(cluster) +
            ["--count", str(count), "--rate", str(plan["many_rate"]), "--duration", "10", "--settle", "5",
             "--server-pid", ",".join(map(str, cluster.pids)), "--mechanism", "scram-sha-256",
             "--workers", str(workers), "--timeout", "60"])
        elapsed = time.time() - started
    finally:
        cluster.stop()
    hold = report["hold"]
    login = report["login"]
    return {"many": {
        "sessions": count, "workers": workers, "held": hold["held"], "dropped": hold["dropped"],
        "failed": login["failed"], "errors": {**login["errors"], **hold["errors"]},
        "logins_per_s": login["achieved_rate"], "login_p99": login["latency"]["p99_ms"],
        "per_server": login.get("succeeded_by_server", []),
        "rss_after_mib": [m["after"]["rss_kib"] / 1024 for m in hold["memory_by_server"]],
        "kib_per_local_session": [m["per_session_kib"] for m in hold["memory_by_server"]],
        "elapsed_s": elapsed,
    }}


def fanout_entry(report, load, cpu):
    fanout = report["fanout"]
    return {
        "load": load, "cpu_us_per_delivery": 1e6 * cpu / max(fanout["received"], 1), "subscribers": fanout["subscribers"], "wanted": fanout["subscribers_wanted"],
        "connect_failed": report["login"]["failed"], "published": fanout["published"],
        "publish_failed": fanout["publish_failed"], "expected": fanout["expected"],
        "received": fanout["received"], "lost": fanout["lost"], "dropped": fanout["dropped"],
        "duplicates": fanout["duplicates"], "out_of_order": fanout["out_of_order"],
        "delivered_per_s": fanout["delivered_per_s"], "p50": fanout["latency"]["p50_ms"],
        "p99": fanout["latency"]["p99_ms"], "max": fanout["latency"]["max_ms"],
        "publish_p99": fanout["publish_latency"]["p99_ms"],
        "per_server": [s["subscribers"] for s in fanout["by_server"]],
        "p99_per_server": [s["latency"]["p99_ms"] for s in fanout["by_server"]],
        "rss_before_mib": [s["memory"]["idle"]["before"]["rss_kib"] / 1024 for s in fanout["by_server"] if "memory" in s],
        "rss_idle_mib": [s["memory"]["idle"]["after"]["rss_kib"] / 1024 for s in fanout["by_server"] if "memory" in s],
        "rss_end_mib": [s["memory"]["end"]["rss_kib"] / 1024 for s in fanout["by_server"] if "memory" in s],
        "kib_per_subscriber": [s["memory"]["idle"]["per_session_kib"] for s in fanout["by_server"] if "memory" in s],
        "errors": fanout["errors"],
    }


def fanout_scenario(bins, work, plan):
    """One channel, many subscribers: Bayeux WebSocket clients over the 3 nodes' HTTP
    listeners, then XMPP sessions over 1, 2 and 3 nodes; the publisher is an XMPP client
    on node 1. Every run uses a fresh pub/sub node."""
    xmpp_subscribers = plan["fanout_xmpp_subscribers"]
    cluster = Cluster(bins, work, "fanout", 3, 44000, users=1 + xmpp_subscribers)
    results = {}
    try:
        time.sleep(1)
        for rate in plan["fanout_rates"]:
            for repeat in range(plan["fanout_repeats"]):
                load, cpu_before = loadavg(), []
                report = bins.run_load(
                    ["fanout", "--transport", "bayeux"] + common(cluster, [0]) +
                    ["--http", cluster.http_servers(), "--subscribers", str(plan["fanout_subscribers"]),
                     "--rate", str(rate), "--duration", str(plan["fanout_seconds"]),
                     "--drain", str(plan["fanout_drain"]), "--connect-rate", "1000", "--mechanism", "plain",
                     "--workers", "2", "--timeout", "60", "--server-pid", ",".join(map(str, cluster.pids))],
                    on_running=lambda: cpu_before.append(cluster.cpu()))
                results[f"fanout_bayeux_{rate}_{repeat}"] = fanout_entry(
                    report, load, cluster.cpu() - cpu_before[0])
        for nodes in plan["fanout_xmpp_nodes"]:
            subset = list(range(nodes))
            for rate in plan["fanout_xmpp_rates"]:
                for repeat in range(plan["fanout_repeats"]):
                    load, cpu_before = loadavg(), []
                    report = bins.run_load(
                        ["fanout", "--transport", "xmpp"] + common(cluster, subset) +
                        ["--subscribers", str(xmpp_subscribers), "--rate", str(rate),
                         "--duration", str(plan["fanout_seconds"]), "--drain", str(plan["fanout_drain"]),
                         "--connect-rate", "400", "--mechanism", "plain", "--workers", str(MIN_WORKERS),
                         "--timeout", "60", "--server-pid", ",".join(str(cluster.pids[i]) for i in subset)],
                        on_running=lambda: cpu_before.append(cluster.cpu()))
                    results[f"fanout_xmpp{nodes}_{rate}_{repeat}"] = fanout_entry(
                        report, load, cluster.cpu() - cpu_before[0])
    finally:
        cluster.stop()
    return results


def fanout_tables(plan, r):
    out = []
    bayeux = [(rate, repeat, r[f"fanout_bayeux_{rate}_{repeat}"]) for rate in plan["fanout_rates"]
              for repeat in range(plan["fanout_repeats"]) if f"fanout_bayeux_{rate}_{repeat}" in r]
    if bayeux:
        out += ["", f"### Bayeux fan-out: {plan['fanout_subscribers']:,} WebSocket subscribers over 3 nodes, "
                    f"one channel, {plan['fanout_seconds']} s per run", "",
                "Items published over XMPP on node 1 (XEP-0335 JSON payload); latency from the scheduled "
                "publish to arrival at the Bayeux client.", "",
                "| items/s | run | load avg | subscribers per node | deliveries expected | received | "
                f"not arrived within {plan['fanout_drain']} s | delivered/s | p50 ms | p99 ms | max ms | publish p99 ms | "
                "server CPU µs per delivery (all nodes) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for rate, repeat, e in bayeux:
            out.append(f"| {rate:,} | {repeat + 1} | {e['load']} | {' / '.join(f'{x:,}' for x in e['per_server'])} | "
                       f"{e['expected']:,} | {e['received']:,} | {e['lost']:,} | {fmt(e['delivered_per_s'], 0)} | "
                       f"{fmt(e['p50'], 2)} | {fmt(e['p99'], 2)} | {fmt(e['max'], 1)} | {fmt(e['publish_p99'], 2)} | "
                       f"{fmt(e['cpu_us_per_delivery'], 1)} |")
        first = bayeux[0][2]
        if first["kib_per_subscriber"]:
            out += ["", "### Memory per idle Bayeux WebSocket client (release build)", "",
                    "Each node's RSS before the subscribers connected and once all were subscribed with a "
                    "`/meta/connect` held (2 s settle), over that node's subscribers; and when publishing ended.", "",
                    "| node | subscribers | RSS before, MiB | RSS idle, MiB | KiB per subscriber | RSS when publishing ended, MiB |",
                    "|---|---|---|---|---|---|"]
            # Only the first run starts from fresh nodes: later runs reuse memory the
            # allocator kept.
            rate = bayeux[0][0]
            for index, (count, before, idle, per, end) in enumerate(zip(
                    first["per_server"], first["rss_before_mib"], first["rss_idle_mib"],
                    first["kib_per_subscriber"], first["rss_end_mib"])):
                out.append(f"| node{index + 1} | {count:,} | {fmt(before)} | {fmt(idle)} | {fmt(per, 2)} | "
                           f"{fmt(end)} ({rate}/s) |")
    xmpp = [(nodes, rate, repeat, r[f"fanout_xmpp{nodes}_{rate}_{repeat}"]) for nodes in plan["fanout_xmpp_nodes"]
            for rate in plan["fanout_xmpp_rates"] for repeat in range(plan["fanout_repeats"])
            if f"fanout_xmpp{nodes}_{rate}_{repeat}" in r]
    if xmpp:
        out += ["", f"### XMPP pub/sub fan-out: {plan['fanout_xmpp_subscribers']:,} subscriber sessions (STARTTLS) "
                    f"over 1, 2 and 3 nodes of a 3-node cluster, {plan['fanout_seconds']} s per run", "",
                "The publisher is on node 1; subscribers are spread round-robin over the first N nodes.", "",
                "| nodes | items/s | run | load avg | subscribers per node | deliveries expected | received | "
                f"not arrived within {plan['fanout_drain']} s | delivered/s | p50 ms | p99 ms | max ms | publish p99 ms | "
                "server CPU µs per delivery (all nodes) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for nodes, rate, repeat, e in xmpp:
            out.append(f"| {nodes} | {rate:,} | {repeat + 1} | {e['load']} | "
                       f"{' / '.join(f'{x:,}' for x in e['per_server'])} | {e['expected']:,} | {e['received']:,} | "
                       f"{e['lost']:,} | {fmt(e['delivered_per_s'], 0)} | {fmt(e['p50'], 2)} | {fmt(e['p99'], 2)} | "
                       f"{fmt(e['max'], 1)} | {fmt(e['publish_p99'], 2)} | {fmt(e['cpu_us_per_delivery'], 1)} |")
    problems = [(key, e) for key, e in sorted(r.items()) if key.startswith("fanout_") and
                (e["errors"] or e["connect_failed"] or e["publish_failed"] or e["dropped"])]
    for key, e in problems:
        out.append(f"\n{key}: {e['connect_failed']} subscribers failed to connect, {e['publish_failed']} publishes "
                   f"failed, {e['dropped']} dropped; errors {e['errors']}")
    return out


def fmt(value, digits=1):
    return f"{value:,.{digits}f}"


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


def tables(plan, r):
    out = []
    if "converge_cross" in r:
        out += ["### Chat on 3 nodes: same node vs across nodes", "",
                f"{plan['pairs']} pairs, {plan['chat_seconds']} s per run, STARTTLS, latency from scheduled send to arrival.", "",
                "| offered msg/s | figure | same node | cross node | cross/same |", "|---|---|---|---|---|"]
        for rate in plan["chat_rates"]:
            s, c = r[f"chat_same_{rate}"], r[f"chat_cross_{rate}"]
            for field, label, digits in (("received_per_s", "received/s", 0), ("p50", "p50 ms", 2),
                                         ("p99", "p99 ms", 2), ("max", "max ms", 1), ("lost", "lost", 0),
                                         ("errors", "errors", 0),
                                         ("cpu_us_per_message", "server CPU µs/msg (all nodes)", 1)):
                out.append(f"| {rate:,} | {label} | {fmt(s[field], digits)} | {fmt(c[field], digits)} | "
                           f"{ratio(c[field], s[field])} |")
            # With the driver on the same cores, received/s follows the offered rate until the
            # driver itself saturates; server CPU per message says what the nodes could carry.
            out.append(f"| {rate:,} | capacity from server CPU, cross as share of same | | | "
                       f"{ratio(s['cpu_us_per_message'], c['cpu_us_per_message'])} |")
        out += ["", "### Directory convergence (bind result to arrival of a message sent at that moment)", "",
                "| sender and new session | rounds | delivered live | late / offline / lost | p50 ms | p99 ms | max ms |",
                "|---|---|---|---|---|---|---|"]
        for label, name in (("converge_same", "same node"), ("converge_cross", "different nodes (3-node cluster)")):
            c = r[label]
            out.append(f"| {name} | {c['rounds']} | {c['delivered']} | {c['late']} / {c['offline']} / {c['lost']} | "
                       f"{fmt(c['p50'], 2)} | {fmt(c['p99'], 2)} | {fmt(c['max'], 2)} |")
    if "capacity_same" in r:
        s, c = r["capacity_same"], r["capacity_cross"]
        out += ["", f"### Capacity: 3 nodes pinned to one core, driver on the other, "
                    f"{plan['capacity_rate']:,} msg/s offered", "",
                "| figure | same node | cross node | cross/same |", "|---|---|---|---|"]
        for field, label, digits in (("received_per_s", "delivered/s", 0), ("p50", "p50 ms", 1),
                                     ("p99", "p99 ms", 1), ("send_lag_p99", "driver send lag p99 ms", 1),
                                     ("node_core_busy", "nodes' core busy (0-1)", 2),
                                     ("lost", "lost", 0), ("out_of_order", "out of order", 0),
                                     ("duplicates", "duplicates", 0)):
            out.append(f"| {label} | {fmt(s[field], digits)} | {fmt(c[field], digits)} | "
                       f"{ratio(c[field], s[field])} |")
    memory = [r[key] for key in sorted(r) if key.startswith("memory_")]
    if memory:
        base = sum(memory[0]["rss_after_mib"]) / len(memory[0]["rss_after_mib"])
        out += ["", f"### Memory per node, {plan['sessions_per_node']:,} idle TLS sessions on every node", "",
                "| nodes | sessions held | RSS per node before, MiB | RSS per node after, MiB | mean after, MiB | "
                "directory entries of other nodes | extra per entry vs 1 node, bytes |",
                "|---|---|---|---|---|---|---|"]
        for m in memory:
            mean = sum(m["rss_after_mib"]) / len(m["rss_after_mib"])
            remote = plan["sessions_per_node"] * (m["nodes"] - 1)
            extra = f"{(mean - base) * 1048576 / remote:,.0f}" if remote else "-"
            out.append(f"| {m['nodes']} | {m['held']:,} | {' / '.join(fmt(x) for x in m['rss_before_mib'])} | "
                       f"{' / '.join(fmt(x) for x in m['rss_after_mib'])} | {fmt(mean)} | {remote:,} | {extra} |")
    if "directory" in r:
        d = r["directory"]
        out += ["", f"### Directory only: {d['sessions_on_node1']:,} sessions on node 1 of 4, nodes 2-4 idle", "",
                "| node | RSS before, MiB | RSS after, MiB | bytes per directory entry |", "|---|---|---|---|"]
        for index, (b, a, e) in enumerate(zip(d["idle_rss_before_mib"], d["idle_rss_after_mib"],
                                              d["bytes_per_entry"])):
            out.append(f"| node{index + 2} | {fmt(b)} | {fmt(a)} | {fmt(e, 0)} |")
    if "failover_norestart" in r:
        out += ["", "### SIGKILL of a node: time until contacts on another node see its users unavailable", "",
                "| killed node | runs | contact sessions watched | notified | missed | p50 ms (per run) | max ms (per run) |",
                "|---|---|---|---|---|---|---|"]
        for label, name in (("failover_norestart", "stays down (`--no-restart`)"),
                            ("failover_restart", "restarted by `cluster up` after 1 s")):
            f = r[label]
            out.append(f"| {name} | {f['runs']} | {f['watched']} | {f['notified']} | {f['missed']} | "
                       f"{' / '.join(fmt(x, 0) for x in f['p50'])} | {' / '.join(fmt(x, 0) for x in f['max'])} |")
    if "many" in r:
        m = r["many"]
        errors = ", ".join(f"{k}: {v}" for k, v in m["errors"].items()) or "none"
        out += ["", f"### {m['sessions']:,} concurrent sessions on 3 nodes", "",
                "| figure | value |", "|---|---|",
                f"| sessions held / logins failed / dropped | {m['held']:,} / {m['failed']:,} / {m['dropped']:,} |",
                f"| errors | {errors} |",
                f"| sessions per node | {' / '.join(f'{x:,}' for x in m['per_server'])} |",
                f"| logins/s achieved ({m['workers']} driver processes) | {fmt(m['logins_per_s'], 0)} |",
                f"| login p99 ms | {fmt(m['login_p99'])} |",
                f"| RSS per node after, MiB | {' / '.join(fmt(x) for x in m['rss_after_mib'])} |",
                f"| KiB per local session (incl. directory of the others) | "
                f"{' / '.join(fmt(x) for x in m['kib_per_local_session'])} |"]
    if f"links_tls_{plan['links_rates'][0]}" in r:
        out += ["", f"### Peer links: TLS vs clear text, cross-node chat on 3 nodes ({plan['links_pairs']} pairs, "
                    f"{plan['links_seconds']} s per rate, STARTTLS clients)", "",
                "| offered msg/s | figure | TLS links | clear-text links | TLS/clear |", "|---|---|---|---|---|"]
        for rate in plan["links_rates"]:
            t, p = r[f"links_tls_{rate}"], r[f"links_plain_{rate}"]
            for field, label, digits in (("received_per_s", "received/s", 0), ("p50", "p50 ms", 2),
                                         ("p99", "p99 ms", 2), ("lost", "lost", 0), ("errors", "errors", 0),
                                         ("cpu_us_per_message", "server CPU µs/msg (all nodes)", 1)):
                out.append(f"| {rate:,} | {label} | {fmt(t[field], digits)} | {fmt(p[field], digits)} | "
                           f"{ratio(t[field], p[field])} |")
    out += fanout_tables(plan, r)
    return "\n".join(out)


SCENARIOS = ("chat", "links", "capacity", "memory", "directory", "failover", "many", "fanout")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument("--sessions", type=int, help="sessions for the many-sessions scenario")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                        help="folder with the starling and starling-load binaries")
    parser.add_argument("--fanout-rates", help="fanout: Bayeux items/s to run, comma-separated (default 1,10,50)")
    parser.add_argument("--fanout-drain", type=int, help="fanout: seconds to wait for items in flight (default 30)")
    parser.add_argument("--no-xmpp-fanout", action="store_true", help="fanout: Bayeux subscribers only")
    parser.add_argument("--out", help="write all figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the clusters' folders and logs")
    args = parser.parse_args()
    bins = Bins(args.bin_dir)
    plan = {
        "pairs": 100 if args.quick else 600,
        "chat_rates": [2000, 10000] if args.quick else [2000, 10000, 20000, 40000],
        "chat_seconds": 5 if args.quick else 10,
        "capacity_rate": 20000 if args.quick else 80000,
        "links_pairs": 100 if args.quick else 300,
        "links_rates": [2000] if args.quick else [5000, 20000],
        "links_seconds": 5 if args.quick else 10,
        "converge_rounds": 40 if args.quick else 400,
        "converge_targets": 20 if args.quick else 50,
        "memory_nodes": [1, 2] if args.quick else [1, 2, 3, 4],
        "sessions_per_node": 1000 if args.quick else 5000,
        "hold_rate": 500 if args.quick else 1000,
        "directory_sessions": 2000 if args.quick else 15000,
        "failover_runs": 1 if args.quick else 3,
        "failover_pairs": 10 if args.quick else 50,
        "many_sessions": args.sessions or (3000 if args.quick else 55000),
        "many_rate": 500,
        "fanout_subscribers": 600 if args.quick else 10000,
        "fanout_rates": [int(rate) for rate in args.fanout_rates.split(",")] if args.fanout_rates
        else [5] if args.quick else [1, 10, 50],
        "fanout_seconds": 3 if args.quick else 10,
        "fanout_repeats": 1 if args.quick else 2,
        "fanout_drain": args.fanout_drain or (5 if args.quick else 30),
        "fanout_xmpp_subscribers": 150 if args.quick else 1000,
        "fanout_xmpp_nodes": [] if args.no_xmpp_fanout else [1, 3] if args.quick else [1, 2, 3],
        "fanout_xmpp_rates": [5] if args.quick else [10],
    }
    scenarios = args.only or SCENARIOS
    work = tempfile.mkdtemp(prefix="starling-cluster-bench-")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = loadavg()
    results = {}
    failures = {}
    try:
        for name, scenario in (("chat", chat_scenario), ("links", links_scenario),
                               ("capacity", capacity_scenario),
                               ("memory", memory_scenario),
                               ("directory", directory_scenario), ("failover", failover_scenario),
                               ("many", many_sessions_scenario), ("fanout", fanout_scenario)):
            if name in scenarios:
                print(f"measuring {name} (load average {loadavg()}) ...", file=sys.stderr)
                try:
                    results.update(scenario(bins, work, plan))
                except SystemExit as error:
                    # One scenario's failure does not void the others' figures.
                    print(f"{name} failed: {error}", file=sys.stderr)
                    failures[name] = str(error)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"Starling cluster on one machine, {started}, {os.cpu_count()} cores, driver on the same "
          f"machine; load average {load_before} before, {loadavg()} after\n")
    print(tables(plan, results))
    for name, error in failures.items():
        print(f"\n**{name} failed:** {error}")
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"plan": plan, "started": started, "load_before": load_before,
                       "load_after": loadavg(), "results": results, "failures": failures}, out, indent=2)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
