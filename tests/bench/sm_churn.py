#!/usr/bin/env python3
"""Stream management under churn (issue 12): sessions that lose their socket
and resume on a random node, under steady chat, on a 3-node cluster.

Run from the repository root (needs release builds; builds nothing):

    cargo build --release -p starling-xmpp -p starling-tests --bin starling --bin starling-load
    python3 tests/bench/sm_churn.py                       # 5,000 sessions, 3 minutes
    python3 tests/bench/sm_churn.py --pairs 300 --duration 40 --churn-every 20   # smoke

Two runs, each on a fresh 3-node cluster with the same users (SCRAM-SHA-256
over STARTTLS), `starling-load chat --cross` at a steady total rate, each
pair's sender on one node and its receiver on the next:

  1. without stream management;
  2. with resumable stream management on every session, and receivers that
     drop their socket (closed without `</stream:stream>`, as a phone losing
     its network) and at once resume their session on a node picked at
     random: `--churn-percent` of the receivers in every `--churn-every`
     seconds. The default, 20 % of the receivers, is 10 % of all sessions a
     minute.

For each it prints messages lost (must be 0 in both), duplicated and out of
order, resumptions and how long from the drop to `<resumed/>` (p50/p99), the
nodes' CPU per message from the start of sending to the end of the drain,
and memory per session on each node with everyone logged in before the
first message.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from muc import Nodes  # noqa: E402  (the bench's 3-node cluster)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(args, work, stream_management):
    work = os.path.join(work, "sm" if stream_management else "plain")
    os.makedirs(work)
    nodes = Nodes(args.bin_dir, work, args.base, 3, 500)
    try:
        subprocess.run([nodes.bin, "user", "provision", "--config", nodes.configs[0], "--prefix", "user",
                        "--count", str(2 * args.pairs), "--password", "pass", "--roster-size", "0",
                        "--iterations", "4096"], check=True, capture_output=True)
        command = [os.path.join(args.bin_dir, "starling-load"), "--json", "chat", "--cross", "--tls",
                   "--server", nodes.servers(), "--users", "user", "--password-prefix", "pass",
                   "--pairs", str(args.pairs), "--rate", f"{args.rate:g}", "--duration", f"{args.duration:g}",
                   "--drain", "10", "--login-rate", "300",
                   "--server-pid", ",".join(str(pid) for pid in nodes.pids())]
        if stream_management:
            command += ["--sm", "--churn-percent", f"{args.churn_percent:g}",
                        "--churn-every", f"{args.churn_every:g}"]
        print("$ " + " ".join(command), file=sys.stderr, flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=args.duration + 600)
        sys.stderr.write(result.stderr[-2000:])
        if result.returncode != 0:
            raise SystemExit("starling-load failed")
        alive = all(process.poll() is None for process in nodes.processes)
    finally:
        nodes.stop()
    chat = json.loads(result.stdout)["chat"]
    chat["nodes_alive_at_end"] = alive
    return chat


def row(label, chat):
    memory = [m["per_session_kib"] for m in chat["memory"]]
    resume = chat.get("resume_latency") or {}
    return (f"| {label} | {chat['sent']} | {chat['received']} | {chat['lost']} | {chat['duplicates']} | "
            f"{chat['out_of_order']} | {chat['resumed']} | {chat['resume_failed']} | "
            f"{resume.get('p50_ms', 0):.1f} / {resume.get('p99_ms', 0):.1f} | "
            f"{chat['cpu_us_per_message']:.1f} | {sum(memory) / max(len(memory), 1):.1f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    p.add_argument("--pairs", type=int, default=2500, help="sender/receiver pairs (sessions = 2 x pairs)")
    p.add_argument("--rate", type=float, default=500, help="messages/s in total")
    p.add_argument("--duration", type=float, default=180, help="seconds of sending")
    p.add_argument("--churn-percent", type=float, default=20, help="of the receivers, per period")
    p.add_argument("--churn-every", type=float, default=60, help="the period, seconds")
    p.add_argument("--base", type=int, default=21300, help="first port (about 50 are used)")
    p.add_argument("--out", default="", help="write both reports as JSON here")
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="starling-sm-bench-")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = loadavg()
    plain = run(args, work, stream_management=False)
    churned = run(args, work, stream_management=True)
    print(f"Stream management under churn, {started}, {os.cpu_count()} cores, driver on the same machine, "
          f"load average {load_before} before and {loadavg()} after; {2 * args.pairs} sessions on 3 nodes, "
          f"{args.rate:g} msg/s for {args.duration:g} s; with SM, {args.churn_percent:g} % of the receivers "
          f"drop and resume every {args.churn_every:g} s\n")
    print("| run | sent | received | lost | duplicated | out of order | resumed | resume failed | "
          "resume p50 / p99 ms | server CPU µs/message | KiB/session |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(row("no stream management", plain))
    print(row("resumable SM + churn", churned))
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"started": started, "args": vars(args), "plain": plain, "churned": churned}, out, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
