#!/usr/bin/env python3
"""WebSocket fan-out across the cluster (tests/cluster.py): N watchers over both app hosts' Daphnes.

    sudo .venv/bin/python bench/ws_fanout_cluster.py                    # 1 watcher, then 10,000
    sudo .venv/bin/python bench/ws_fanout_cluster.py --watchers 2000    # a short smoke run

The single-host benchmark is bench/ws_fanout.py; this one lays out db, app1, app2, lb and client
in network namespaces (root), opens the watchers from the client host through HAProxy on
ws/sales/<id>/ (leastconn spreads them over both hosts), and then sends a burst of keyed purchases
through lb. Per run it prints: the Daphne processes' RSS before and with the sockets open (memory
per socket), how long after the burst's last answer every watcher showed the database's final
stock, and the ratio of that time with N watchers to the time with 1. Raises RLIMIT_NOFILE to its
hard limit first (every socket is a descriptor on the client, HAProxy and Daphne).
"""

import argparse
import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import APP_HOSTS, Cluster, netns, run  # noqa: E402


def daphne_rss_kib() -> dict[int, int]:
    rss = {}
    for host in APP_HOSTS:
        for pid in run("ip", "netns", "pids", netns(host), check=False).stdout.split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if b"daphne" in cmd:
                rss[int(pid)] = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return rss


def one_run(cluster: Cluster, watchers: int, burst: int) -> dict:
    users = max(1, burst // 4)
    before = daphne_rss_kib()
    process = cluster.client_process(
        "herd",
        "--stock",
        str(burst),
        "--users",
        str(users),
        "--attempts",
        "4",
        "--watchers",
        str(watchers),
        "--concurrency",
        "40",
    )
    with_sockets = None
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if line.startswith("connected "):
            with_sockets = daphne_rss_kib()
    process.wait(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"the client failed: {cluster.log('client', 'client')[-2000:]}")
    result = json.loads(lines[-1])
    grown = sum(with_sockets.values()) - sum(before.values()) if with_sockets else None
    return {
        "watchers": watchers,
        "connected": next((int(line.split()[1]) for line in lines if line.startswith("connected ")), None),
        "purchases": result["statuses"].get("201", 0),
        "every_watcher_final": result["watcher_stocks"] == {str(result["current"]): watchers},
        "final_stock": result["current"],
        "watchers_by_stock_shown": result["watcher_stocks"],
        "watcher_reconnects": result["watcher_reconnects"],
        "settle_seconds": result["settle_seconds"],
        "daphne_rss_mib_before": round(sum(before.values()) / 1024, 1),
        "daphne_rss_mib_with_sockets": round(sum(with_sockets.values()) / 1024, 1) if with_sockets else None,
        "kib_per_socket": round(grown / watchers, 1) if grown is not None and watchers > 1 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=500, help="purchases after the watchers are connected")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"RLIMIT_NOFILE {soft} -> {hard}")
    # One client host stands for thousands of browsers: lift the per-address socket cap.
    with Cluster(settings={"WS_MAX_SOCKETS_PER_ADDRESS": str(args.watchers + 100)}) as cluster:
        runs = [one_run(cluster, 1, args.burst), one_run(cluster, args.watchers, args.burst)]
    for result in runs:
        print(json.dumps(result))
    single, many = runs
    if single["settle_seconds"] and many["settle_seconds"] is not None:
        print(
            f"final stock on every watcher after the burst: 1 watcher {single['settle_seconds']} s, "
            f"{many['watchers']} watchers {many['settle_seconds']} s, "
            f"ratio {many['settle_seconds'] / max(single['settle_seconds'], 0.05):.1f}"
        )
    print(f"memory per open socket (Daphne RSS growth / sockets): {many['kib_per_socket']} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
