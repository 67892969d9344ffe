"""A real kubeadm v1.28.4 control plane: time to Ready, memory, and the apiserver's downtime
during a full renewal under each restart policy, against kubeadm's documented procedure.

Run as a script (needs root, containerd and the binaries the real-cluster tests use)::

    python benchmarks/bench_realcluster.py [--rounds N] [--ha]

Each scenario starts from a Ready node, renews every certificate (``kubepki renew all
--apply``, or ``kubeadm certs renew all`` for kubeadm's procedure), rolls the change
out, and probes ``/readyz`` on new connections every 0.2 s from a thread of this
process until the node is Ready again. "Downtime" is the total time ``/readyz`` did not
answer ok; "to ready" is from the start of the rollout to the first ok after it.

- ``minimal``: ``kubepki restarts apply --policy minimal --method manifest``;
- ``safe``: the same with ``--policy safe``;
- ``kubeadm``: kubeadm's documented manifest move (the four manifests out of
  ``/etc/kubernetes/manifests``, 20 s, back in).

``--ha`` also times the three-control-plane cluster's start (tests/realcluster_ha.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import realcluster as rc  # noqa: E402

#: Ports of the benchmark's node (apart from the test suite's).
PORTS = rc.Ports(apiserver=32643, etcd_client=32679, etcd_peer=32680, etcd_metrics=32681,
                 controller_manager=32657, scheduler=32659, kubelet=32650, kubelet_healthz=32648)


class Prober:
    """``/readyz`` every ``interval`` seconds on a new connection; records (time, ok)."""

    def __init__(self, cluster: rc.RealCluster, interval: float = 0.2) -> None:
        self.cluster, self.interval = cluster, interval
        self.samples: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.cluster.readyz()))
            self._stop.wait(self.interval)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def downtime(self) -> float:
        """Seconds between a failed sample and the next ok one, summed."""
        total, down_since = 0.0, None
        for t, ok in self.samples:
            if not ok and down_since is None:
                down_since = t
            elif ok and down_since is not None:
                total += t - down_since
                down_since = None
        if down_since is not None:
            total += self.samples[-1][0] - down_since
        return total


def _memory_mib(cluster: rc.RealCluster) -> float:
    """Resident memory of every process of the node, in MiB: its mount namespace (containerd, the
    kubelet) and its cgroup root (the containers, which runc gives mount namespaces of their own)."""
    total = 0
    for pid in cluster._namespace_pids() | cluster._cgroup_pids() | {cluster.holder_pid}:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _wait_settled(cluster: rc.RealCluster) -> None:
    cluster.wait_ready(300)
    cluster.wait_pods_ready(300)
    rc.wait_until("leaders", cluster._controllers_working, 300)


def _kubepki(cluster: rc.RealCluster, *args: str) -> None:
    r = cluster.kubepki(*args, timeout=900)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"kubepki {' '.join(args)} exited {r.returncode}: {r.stdout[-2000:]}{r.stderr[-2000:]}")


def scenario_kubepki(cluster: rc.RealCluster, policy: str, work: Path) -> tuple[float, float]:
    result = work / f"renewal-{policy}.json"
    r = cluster.kubepki("renew", "all", "--apply", "--no-backup", "-o", "json", timeout=300)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"renew all: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    result.write_text(r.stdout)
    with Prober(cluster) as probe:
        t0 = time.monotonic()
        _kubepki(cluster, "restarts", "apply", "--from-renewal", str(result), "--policy", policy,
                 "--method", "manifest", "--apply", "--no-backup")
        _wait_settled(cluster)
        took = time.monotonic() - t0
    return probe.downtime(), took


def scenario_kubeadm(cluster: rc.RealCluster, work: Path) -> tuple[float, float]:
    """kubeadm's documented procedure: renew, then move the static pod manifests out, wait 20 s, move back."""
    with open(cluster.logs / "kubeadm-certs-renew.log", "ab") as log:
        rc_ = rc.subprocess.run(cluster.nsenter(str(cluster.binaries["kubeadm"]), "certs", "renew", "all"),
                                stdout=log, stderr=log, check=False, timeout=300).returncode
    if rc_:
        raise RuntimeError(f"kubeadm certs renew all exited {rc_}")
    parked = work / "manifests-parked"
    parked.mkdir(exist_ok=True)
    with Prober(cluster) as probe:
        t0 = time.monotonic()
        for manifest in sorted(cluster.manifests.glob("*.yaml")):
            shutil.move(manifest, parked / manifest.name)
        time.sleep(20)
        for manifest in sorted(parked.glob("*.yaml")):
            shutil.move(manifest, cluster.manifests / manifest.name)
        _wait_settled(cluster)
        took = time.monotonic() - t0
    return probe.downtime(), took


def _report(rows: list[tuple[str, str]], figures: dict[str, list[tuple[float, float]]], rounds: int) -> None:
    print(f"Real kubeadm {rc.K8S_VERSION} control plane on this machine ({rounds} round(s))\n")
    width = max(len(r[0]) for r in rows)
    for what, value in rows:
        print(f"{what:<{width}}  {value}")
    print("\nfull renewal rolled out       /readyz down (s)   to Ready again (s)")
    for name, label in (("minimal", "kubepki --policy minimal"), ("safe", "kubepki --policy safe"),
                        ("kubeadm", "kubeadm: manifests out 20 s")):
        downs = [d for d, _ in figures[name]]
        tooks = [t for _, t in figures[name]]
        print(f"{label:<29} {min(downs):6.1f}–{max(downs):<6.1f}      {min(tooks):6.1f}–{max(tooks):.1f}")
    print(json.dumps(figures), file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="times each scenario runs (default 1)")
    parser.add_argument("--ha", action="store_true", help="also time a three-control-plane cluster's start")
    args = parser.parse_args()
    reason = rc.missing_prerequisites()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    cache = Path.home() / ".cache" / "kubepki-tests" / f"k8s-{rc.K8S_VERSION}"
    binaries = rc.kubernetes_binaries(cache / "bin")
    images = rc.build_images(binaries, cache / "images")
    work = Path(tempfile.mkdtemp(prefix="kubepki-bench-rc-"))
    cluster = rc.RealCluster(work / "node", binaries, images, ports=PORTS, cgroup_root="kubepki-bench",
                             node_name="kubepki-bench")
    rows: list[tuple[str, str]] = []
    figures: dict[str, list[tuple[float, float]]] = {"minimal": [], "safe": [], "kubeadm": []}
    try:
        t0 = time.monotonic()
        (work / "node").mkdir(parents=True)
        cluster.start()
        rows.append(("cold start to a Ready control plane", f"{time.monotonic() - t0:.1f} s"))
        time.sleep(5)
        rows.append(("memory of the node's processes (RSS)", f"{_memory_mib(cluster):.0f} MiB"))
        for _ in range(args.rounds):
            for policy in ("minimal", "safe"):
                figures[policy].append(scenario_kubepki(cluster, policy, work))
            figures["kubeadm"].append(scenario_kubeadm(cluster, work))
    finally:
        notes = cluster.stop()
        left = cluster.leftovers()
        if not left:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("left behind:", left, notes)
    if args.ha:
        from tests.realcluster_ha import HACluster

        ha_work = Path(tempfile.mkdtemp(prefix="kubepki-bench-ha-"))
        ha = HACluster(ha_work, binaries, images)
        try:
            ha.start()
            rows += [(f"HA cluster: {what}", f"{t:.1f} s") for t, what in ha.timeline]
        finally:
            ha.stop()
            if not ha.leftovers():
                shutil.rmtree(ha_work, ignore_errors=True)
    _report(rows, figures, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
