"""Two app hosts behind HAProxy on shared PostgreSQL and Redis (tests/cluster.py), through real faults.

The module starts one cluster (about 10 s) and every test leaves both app hosts in rotation.

After each fault: original - current == the units stored, nobody above the cap, every 201 a client
received is exactly one stored purchase of that client, and `manage.py auditsales` finds nothing.
"""

import json
import os
import shutil

import pytest

from tests.cluster import APP_HOSTS, Cluster

pytestmark = [
    pytest.mark.cluster,
    # Network namespaces need root (CI is root, and .ci/run installs iproute2 and haproxy).
    pytest.mark.skipif(
        os.geteuid() != 0 and not os.environ.get("CI"), reason="network namespaces need root (runs in CI)"
    ),
]


@pytest.fixture(scope="module")
def cluster():
    assert shutil.which("ip") and shutil.which("haproxy"), "the cluster tests need iproute2 and haproxy"
    with Cluster() as running:
        yield running


@pytest.fixture
def healthy_cluster(cluster):
    """Every app host in rotation before and after a test, whatever the test did to it."""
    yield cluster
    for host in APP_HOSTS:
        if not cluster.processes.get(host):
            cluster.start_app(host)
        cluster.wait_until_in_rotation(host)


def herd_with_fault(cluster: Cluster, fault, after: int, *args: str) -> dict:
    """Run a keyed herd from the client host; inject `fault` once `after` answers are in."""
    process = cluster.client_process("herd", *args)
    injected = False
    lines = []
    try:
        for line in process.stdout:
            lines.append(line.strip())
            if not injected and line.startswith("progress ") and int(line.split()[1]) >= after:
                fault()
                injected = True
        process.wait(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, f"the herd failed: {cluster.log('client', 'client')[-3000:]}"
    assert injected, f"the herd ended before the fault was injected: {lines[-3:]}"
    return json.loads(lines[-1])


def assert_invariants(cluster: Cluster, result: dict) -> None:
    assert result["original"] - result["current"] == result["sold"], result
    assert result["max_units_per_user"] <= result["cap"], result
    # Every 201 received is exactly one stored purchase, of the buyer who received it.
    assert result["received_201"] == result["distinct_201_ids"] == result["stored_purchases"], result
    assert result["mismatched_201"] == [], result
    assert "OK: no violations" in cluster.manage("app2", "auditsales")


def test_an_app_host_killed_mid_herd_loses_nothing_and_its_sockets_move_to_the_other(healthy_cluster):
    cluster = healthy_cluster
    result = herd_with_fault(
        cluster,
        lambda: cluster.kill_app("app1"),
        60,
        "--stock",
        "250",
        "--users",
        "70",
        "--attempts",
        "4",
        "--watchers",
        "20",
    )

    # Keyed retries through lb gave every attempt an answer: a purchase or an honest sold_out.
    assert set(result["statuses"]) <= {"201", "409"}, result
    assert set(result["codes"]) <= {"sold_out"}, result
    assert result["statuses"]["201"] == result["sold"] == 250, result
    assert result["current"] == 0, result
    # Sockets that were on app1 came back through lb (to app2) and show the final stock.
    assert result["watcher_reconnects"] > 0, result
    assert result["watcher_stocks"] == {"0": 20}, result
    assert_invariants(cluster, result)
    assert cluster.ready("app1") is None  # it really is gone
