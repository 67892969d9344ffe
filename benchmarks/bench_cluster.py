"""Cluster inspection over SSH: 3 and 30 control-plane nodes, one after the other vs concurrently.

Run as a script for a table::

    python benchmarks/bench_cluster.py                  # 3 and 30 nodes on 3 sshd servers
    python benchmarks/bench_cluster.py --servers 6 --repeat 5

or through pytest-benchmark (``python -m pytest benchmarks/bench_cluster.py``).
Each node is a kubeadm demo tree in its own directory; the nodes are spread over a
few real sshd servers on 127.0.0.1 (one SSH connection per node, as against a real
fleet), so 30 nodes need neither 30 servers nor 30 ports. Every measurement opens
the connections afresh (key exchange and login included) and closes them after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubepki import testing  # noqa: E402
from kubepki.cli import exit_status  # noqa: E402
from kubepki.cluster._cluster import Cluster, inspect_cluster  # noqa: E402
from kubepki.node._ssh import ssh_node  # noqa: E402
from tests import sshd  # noqa: E402

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)


def _cluster(demo: testing.DemoCluster, fleet: sshd.Fleet, known_hosts: Path, count: int) -> Cluster:
    """``count`` nodes over SSH, node i on server i mod len(servers)."""
    nodes = []
    for i, node in enumerate(demo.nodes[:count]):
        server = fleet.servers[i % len(fleet.servers)]
        nodes.append(ssh_node(f"ssh://root@127.0.0.1:{server.port}{node.root}", key=fleet.client_key,
                              known_hosts=known_hosts, name=node.name))
    return Cluster(nodes)


def measure(demo: testing.DemoCluster, fleet: sshd.Fleet, known_hosts: Path, count: int,
            workers: int | None) -> float:
    """Seconds for one inspect_cluster of ``count`` nodes, connecting included."""
    with _cluster(demo, fleet, known_hosts, count) as cluster:
        start = time.perf_counter()
        inv = inspect_cluster(cluster, now=NOW, workers=workers)
        elapsed = time.perf_counter() - start
    assert not inv.errors, inv.errors
    assert exit_status(inv) == 0, inv.table()
    return elapsed


def _best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sshd_cpu(fleet: sshd.Fleet) -> float:
    """CPU seconds the servers and their reaped per-connection children have used."""
    total = 0
    for server in fleet.servers:
        fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def report(servers: int, repeat: int) -> None:
    """Measure 3 and 30 nodes, sequential and concurrent, and print a table."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        demo = testing.build_cluster(base / "nodes", nodes=30, issued_at=NOW)
        with sshd.fleet(base / "sshd", servers) as fleet:
            kh = fleet.known_hosts(base / "known_hosts")
            rows = []
            results: dict[tuple[int, str], float] = {}
            for count in (3, 30):
                for mode, workers in (("one at a time", 1), ("concurrent", None)):
                    t = _best(lambda c=count, w=workers: measure(demo, fleet, kh, c, w), repeat)
                    results[(count, mode)] = t
                    rows.append((f"inspect {count} nodes over SSH, {mode}", f"{t:.2f} s",
                                 f"{t / count * 1e3:.0f} ms/node"))
            before, before_sshd = _cpu(), _sshd_cpu(fleet)
            measure(demo, fleet, kh, 30, None)
            time.sleep(0.5)  # let the servers reap their children
            client, server = _cpu() - before, _sshd_cpu(fleet) - before_sshd
            rows.append(("  CPU of one 30-node run: kubepki (client)", f"{client:.2f} s",
                         f"{client / 30 * 1e3:.0f} ms/node"))
            rows.append(("  CPU of one 30-node run: the sshd servers", f"{server:.2f} s",
                         f"{server / 30 * 1e3:.0f} ms/node (same {os.cpu_count()} CPUs here)"))
            ratio = results[(30, "concurrent")] / results[(3, "concurrent")]
            rows.append(("30 nodes / 3 nodes (concurrent)", f"{ratio:.1f}x", "target: far below 10x"))
            speedup = results[(30, "one at a time")] / results[(30, "concurrent")]
            rows.append(("30 nodes: one at a time / concurrent", f"{speedup:.1f}x", ""))
    width = max(len(r[0]) for r in rows)
    print(f"{servers} sshd servers on 127.0.0.1, {os.cpu_count()} CPUs, best of {repeat}")
    print(f"{'measurement':<{width}}  {'result':<10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<10}  {note}")


# pytest-benchmark entry points -----------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[testing.DemoCluster, sshd.Fleet, Path]]:
    if sshd.SKIP_REASON is not None:
        pytest.skip(sshd.SKIP_REASON)
    base = tmp_path_factory.mktemp("bench-cluster")
    demo = testing.build_cluster(base / "nodes", nodes=30, issued_at=NOW)
    with sshd.fleet(base / "sshd", 3) as fleet:
        yield demo, fleet, fleet.known_hosts(base / "known_hosts")


@pytest.mark.parametrize("count", [3, 30])
def test_bench_inspect_cluster_over_ssh(benchmark: Callable[..., object], setup: tuple[
        testing.DemoCluster, sshd.Fleet, Path], count: int) -> None:
    """inspect_cluster of 3 and 30 nodes over SSH, concurrently, connections included."""
    demo, fleet, kh = setup
    benchmark.pedantic(lambda: measure(demo, fleet, kh, count, None), rounds=3)  # type: ignore[attr-defined]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3, help="sshd servers the nodes are spread over")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    options = parser.parse_args()
    report(options.servers, options.repeat)
