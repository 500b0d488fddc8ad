"""Reads Tsung's tsung.log and prints the summary tsung/run promises.

Tsung writes a block of `stats:` lines every 10 s (`# stats: dump at T`):
  samples   NAME count mean stddev max min mean_before count_before  (ms)
  counters  NAME count_in_interval total
  users     users current peak
Sample totals are the count-weighted mean of the interval and everything before.
"""

import muclog
import pubsublog

INTERVAL = 10  # seconds between Tsung's dumps
TRANSACTIONS = [
    "authenticate", "roster", "online", "offline",
    "create", "subscribe", "publish", "unsubscribe", "close",
]


def parse(path):
    samples, counters = {}, {}
    peak_users = 0
    interval_arrivals = []
    with open(path) as log:
        for line in log:
            if not line.startswith("stats: "):
                continue
            fields = line.split()
            name, values = fields[1], fields[2:]
            if name.startswith("{"):  # Tsung's own load/cpu/memory
                continue
            if name == "users":
                peak_users = max(peak_users, int(values[1]))
            elif len(values) == 7:
                count, mean, _, top, _, mean_before, count_before = map(float, values)
                total = count + count_before
                samples[name] = {
                    "count": int(total),
                    "mean_ms": round((mean * count + mean_before * count_before) / total, 2)
                    if total
                    else 0.0,
                    "max_ms": round(top, 2),
                }
            elif len(values) == 2:
                counters[name] = int(float(values[1]))
                if name == "users_count":
                    interval_arrivals.append(int(float(values[0])))
    errors = {name[len("error_"):]: n for name, n in counters.items() if name.startswith("error_") and n}
    return {
        "peak_users": peak_users,
        "sessions_started": counters.get("users_count", 0),
        "sessions_finished": counters.get("finish_users_count", 0),
        "peak_arrival_rate": max(interval_arrivals, default=0) / INTERVAL,
        "arrival_intervals": [n for n in interval_arrivals if n],
        "errors": errors,
        "transactions": {
            name: samples["tr_" + name] for name in TRANSACTIONS if "tr_" + name in samples
        },
        "connect": samples.get("connect"),
    }


def progress(path):
    """The latest 10 s dump of a running Tsung's log: users online now, the
    peak so far, sessions started and finished, errors (totals), and how many
    dumps there are; None before the first dump."""
    try:
        with open(path) as log:
            lines = log.read().splitlines()
    except OSError:
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith("# stats: dump at")]
    if not starts:
        return None
    now = {"users": 0, "peak_users": 0, "started": 0, "finished": 0, "errors": 0,
           "dumps": len(starts)}
    for line in lines[starts[-1]:]:
        fields = line.split()
        if len(fields) < 4 or fields[0] != "stats:":
            continue
        name, values = fields[1], fields[2:]
        try:
            if name == "users":
                now["users"], now["peak_users"] = int(values[0]), int(values[1])
            elif name == "users_count" and len(values) == 2:
                now["started"] = int(float(values[1]))
            elif name == "finish_users_count" and len(values) == 2:
                now["finished"] = int(float(values[1]))
            elif name.startswith("error_") and len(values) == 2:
                now["errors"] += int(float(values[1]))
        except ValueError:
            continue
    return now


def lost_offline(result):
    """Messages sent to offline users that the server did not store (None: unknown)."""
    sent = result["tsung"]["transactions"].get("offline", {}).get("count", 0)
    stored = result["offline_stored"]
    return None if stored is None else sent - stored


def print_summary(result):
    """Prints one target's figures; returns False on errors or lost messages."""
    t = result["tsung"]
    print(f"\n-- {result['target']}: {result['scenario']}, Tsung log {result['tsung_log']}")
    print(f"  peak simultaneous users   {t['peak_users']}")
    print(f"  sessions started/finished {t['sessions_started']} / {t['sessions_finished']}")
    # Sessions that start at once (pubsub's publishers) are not arrivals.
    # The mean of Tsung's 10 s intervals, leaving out the first and last
    # (partial; the first also holds pubsub's publishers, which start at
    # once); a short run has none whole, then it is started / time asked.
    whole = t["arrival_intervals"][1:-1]
    if whole:
        reached = sum(whole) / len(whole) / INTERVAL
    else:
        reached = (t["sessions_started"] - result.get("static_sessions", 0)) / result["arrival_seconds"]
    best = f", best 10 s {t['peak_arrival_rate']:g}/s" if result["arrival_seconds"] >= 20 else ""
    print(f"  arrival rate reached      {reached:.1f}/s{best} (asked {result['rate']:g}/s)")
    errors = t["errors"]
    print(
        "  errors                    "
        + (", ".join(f"{k} {v}" for k, v in sorted(errors.items())) if errors else "none")
    )
    print("  transaction       count     mean ms    max ms")
    for name, tr in t["transactions"].items():
        print(f"    {name:<14}{tr['count']:>8}{tr['mean_ms']:>12.2f}{tr['max_ms']:>10.1f}")
    sent = t["transactions"].get("offline", {}).get("count", 0)
    lost = lost_offline(result)
    stored = result["offline_stored"]
    pubsub_ok = True
    if result["scenario"] == "pubsub":
        pubsub_ok = pubsublog.print_summary(
            result["pubsub"],
            result.get("pubsub_server"),
            t["transactions"].get("publish", {}).get("count", 0),
        )
    elif result["scenario"] == "muc" and result.get("muc"):
        muclog.print_summary(result["muc"], result["server"])
    elif stored is None:
        print(f"  offline messages          {sent} sent; stored unknown (external server)")
    else:
        verdict = "nothing lost" if lost == 0 else f"{lost} NOT STORED"
        print(f"  offline messages          {sent} sent to offline users, {stored} stored: {verdict}")
    server = result["server"]
    finished = t["sessions_finished"]
    if server:
        line = (
            f"  server ({server['processes']} process{'es' if server['processes'] > 1 else ''}) "
            f"CPU {server['cpu_seconds']:.1f} s"
        )
        if finished:
            line += f" ({1000 * server['cpu_seconds'] / finished:.2f} ms per finished session)"
        line += f"; memory (PSS) {server['rss_start_mib']:.0f} MiB before, {server['rss_peak_mib']:.0f} MiB peak"
        if t["peak_users"]:
            per = 1024 * (server["rss_peak_mib"] - server["rss_start_mib"]) / t["peak_users"]
            line += f" ({per:.1f} KiB per peak user)"
        print(line)
    return (
        not errors
        and (lost in (0, None))
        and finished == t["sessions_started"]
        and pubsub_ok
    )


def _figures(result):
    t, server = result["tsung"], result["server"] or {}
    finished = t["sessions_finished"] or 1
    auth = t["transactions"].get("authenticate", {})
    figures = {
        "peak users": t["peak_users"],
        "sessions finished": t["sessions_finished"],
        "errors": sum(t["errors"].values()),
        "authenticate mean ms": auth.get("mean_ms"),
        "roster mean ms": t["transactions"].get("roster", {}).get("mean_ms"),
        "server CPU s": server.get("cpu_seconds"),
        "CPU ms per session": server.get("cpu_seconds", 0) * 1000 / finished if server else None,
        "peak memory (PSS) MiB": server.get("rss_peak_mib"),
        "KiB per peak user": 1024
        * (server["rss_peak_mib"] - server["rss_start_mib"])
        / max(t["peak_users"], 1)
        if server
        else None,
    }
    if result.get("muc"):
        muc = result["muc"]
        figures["groupchat sent"] = muc["sent"]
        figures["groupchat delivered (live)"] = muc["delivered"]
        figures["server CPU µs per delivery"] = (
            1e6 * server["cpu_seconds"] / muc["delivered"] if server and muc["delivered"] else None
        )
    if result.get("pubsub"):
        ps = result["pubsub"]
        for name in ("create", "subscribe", "publish"):
            figures[f"{name} mean ms"] = t["transactions"].get(name, {}).get("mean_ms")
        figures["notifications received"] = ps["notifications_received"]
        figures["notifications due, missed"] = ps["due"] - ps["due_received"]
        figures["publish-to-receipt p99 ms"] = (ps["latency_ms"] or {}).get("p99")
    return figures


def print_comparison(results):
    """A side-by-side table; ratios are Starling (the first Starling target) / peer."""
    rows = [(r["target"], _figures(r)) for r in results]
    keys = list(rows[0][1])
    print("\n" + "| figure | " + " | ".join(name for name, _ in rows) + " |")
    print("|---" * (len(rows) + 1) + "|")
    for key in keys:
        cells = [_fmt(figures[key]) for _, figures in rows]
        print(f"| {key} | " + " | ".join(cells) + " |")
    starling = [(n, f) for n, f in rows if n.startswith("Starling")]
    peers = [(n, f) for n, f in rows if not n.startswith("Starling")]
    for s_name, s in starling:
        for p_name, p in peers:
            ratios = []
            for key in keys:
                a, b = s[key], p[key]
                if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                    ratios.append(f"{key} {a / b:.2f}")
            print(f"{s_name} / {p_name}: " + "; ".join(ratios))


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
