"""kubepki against a real HA kubeadm cluster: three control planes (stacked etcd) and a worker.

The cluster (tests/realcluster_ha.py) is made by the real ``kubeadm init`` and
``kubeadm join``; each node has its own network namespace and address. Every claim
is judged on the components themselves: the serials their sockets serve, the
containers containerd runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import kubepki
from kubepki.cluster import ssh_restart
from tests import sshd
from tests.realcluster import REPO
from tests.realcluster_ha import HACluster, HANode

pytestmark = [pytest.mark.realcluster, pytest.mark.slow]


def _json(out: str) -> Any:
    return json.loads(out)


def test_every_node_joined_and_is_ready(ha_cluster: HACluster) -> None:
    """kubeadm init and three real joins: four Ready nodes, three etcd members, three apiservers serving."""
    assert ha_cluster.ready_nodes() == set(ha_cluster.nodes)
    cp1 = ha_cluster.control_planes[0]
    members = {p["metadata"]["name"] for p in cp1.api("/api/v1/namespaces/kube-system/pods").json()["items"]
               if p["metadata"]["name"].startswith("etcd-")}
    assert members == {f"etcd-{n.node_name}" for n in ha_cluster.control_planes}
    for node in ha_cluster.control_planes:
        served = node.served_certificate(node.ports.apiserver)
        assert served.serial_number == node.file_serial("apiserver.crt")
        # each node has its own apiserver certificate (its address in the SANs), not a copy
        assert node.address in str(served.extensions)
    serials = {n.file_serial("apiserver.crt") for n in ha_cluster.control_planes}
    assert len(serials) == 3
    # the shared CA really is shared: kubeadm join downloaded it
    assert len({(n.pki / "ca.crt").read_bytes() for n in ha_cluster.nodes.values()}) == 1


@pytest.mark.parametrize("name", ["kpk-cp1", "kpk-cp2", "kpk-cp3"])
def test_check_each_control_plane_node(ha_cluster: HACluster, name: str) -> None:
    """`kubepki check` on every control-plane node kubeadm made: no error, exit 0 or 1 (warnings only)."""
    node = ha_cluster.nodes[name]
    r = node.kubepki("check", "-o", "json")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    report = _json(r.stdout)
    errors = [f for item in report["items"] for f in item.get("findings", []) if f["severity"] == "error"]
    assert errors == []


def test_check_the_worker_kubeadm_join_made(ha_cluster: HACluster) -> None:
    """`kubepki check` on the worker the real `kubeadm join` made (issue 14): discovered as a worker,
    checked for what a worker has — ca.crt without ca.key, kubelet.conf, the client certificate the
    kubelet got by TLS bootstrap, its self-signed kubelet.crt — with no error, and its metrics carry
    the role. Negative control: checked as a control plane, the control-plane files it lacks are
    errors and the exit status is 2 (what every worker got before node roles)."""
    node = ha_cluster.workers[0]
    r = node.kubepki("check", "-o", "json")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    report = _json(r.stdout)
    assert (report["role"], report["role_source"]) == ("worker", "/etc/kubernetes/kubelet.conf without "
                                                       "control-plane files")
    items = {i["name"]: i for i in report["items"]}
    assert set(items) == {"ca", "kubelet.conf", "kubelet-client-current.pem", "kubelet.crt"}
    assert not (node.pki / "ca.key").exists()
    # kubeadm join removed the bootstrap kubeconfig once the kubelet had its own credentials
    # (cmd/kubeadm/app/cmd/phases/join/kubelet.go), which is why a leftover one is a finding
    assert not (node.pki.parent / "bootstrap-kubelet.conf").exists()
    assert report["items"] and all(f["code"] != "bootstrap-kubeconfig-left"
                                   for i in report["items"] for f in i["findings"])
    assert items["ca"]["status"] == "ok" and not items["ca"]["externally_managed"]
    assert items["kubelet-client-current.pem"]["status"] == "ok"
    assert items["kubelet-client-current.pem"]["certificate"]["common_name"] == f"system:node:{node.node_name}"
    errors = [f for item in report["items"] for f in item.get("findings", []) if f["severity"] == "error"]
    assert errors == []
    metrics = node.kubepki("metrics")
    assert metrics.returncode == 0, metrics.stderr
    assert f'kubepki_item_error{{key="",kind="ca",name="ca",namespace="",node="{node.node_name}",' in metrics.stdout
    assert 'role="worker"' in metrics.stdout and 'role="control-plane"' not in metrics.stdout
    bad = node.kubepki("check", "--role", "control-plane", "-o", "json")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    missing = {i["name"] for i in _json(bad.stdout)["items"] if i["status"] == "missing" and i["required"]}
    assert {"apiserver", "sa", "admin.conf", "controller-manager.conf", "etcd-ca"} <= missing


def test_cluster_check_over_ssh(ha_cluster: HACluster, tmp_path: Path) -> None:
    """`kubepki cluster check` over SSH into each control plane (an sshd inside each node): every item
    ok and the same shared material on all three; negative control: a known_hosts with another key
    for cp2 makes that node unreachable, and the check fails."""
    targets = [f"--node={n.ssh_target}" for n in ha_cluster.control_planes]
    r = _kubepki("cluster", "check", *targets, *ha_cluster.ssh_options(), "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = _json(r.stdout)
    assert report["findings"] == []
    assert [n["node"] for n in report["nodes"]] == [n.node_name for n in ha_cluster.control_planes]
    wrong = tmp_path / "known_hosts"
    other = sshd.keygen(tmp_path / "impostor")
    lines = ha_cluster.known_hosts.read_text().splitlines()
    cp2 = ha_cluster.nodes["kpk-cp2"]
    wrong.write_text("\n".join(
        f"{cp2.address} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}"
        if line.startswith(cp2.address + " ") else line for line in lines) + "\n")
    bad = _kubepki("cluster", "check", *targets, "--identity", str(ha_cluster.client_key), "--known-hosts",
                   str(wrong), "-o", "json")
    assert bad.returncode == 2
    assert [f["code"] for f in _json(bad.stdout)["findings"]] == ["node-unreachable"]


class _Prober:
    """Every 0.5 s, /readyz of each control plane on a new connection, from the host."""

    def __init__(self, nodes: list[HANode]) -> None:
        self.nodes, self.rounds = nodes, []  # type: list[HANode], list[dict[str, bool]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.rounds.append({n.node_name: n.readyz() for n in self.nodes})
            self._stop.wait(0.5)

    def __enter__(self) -> _Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_renewal_and_rolling_restarts_over_ssh(ha_cluster: HACluster) -> None:
    """Renew everything on the three control planes over SSH, then roll the restarts one node at a time
    (kubepki runs on each node through SSH): afterwards every apiserver and etcd serves the new
    certificate (judged by handshakes from the host), each node's static pods are new containers,
    the nodes were restarted in order, and at every moment at least one apiserver answered /readyz."""
    cps = ha_cluster.control_planes
    before = {n.node_name: (n.served_serial(n.ports.apiserver), n.served_serial(n.ports.etcd_client)) for n in cps}
    containers = {n.node_name: n.container("kube-apiserver").id for n in cps}
    nodes = [kubepki.ssh_node(f"root@{n.address}", key=ha_cluster.client_key, known_hosts=ha_cluster.known_hosts,
                              name=n.node_name) for n in cps]
    t0 = time.monotonic()
    with _Prober(cps) as probe:
        result = kubepki.apply_cluster_renewal(kubepki.plan_cluster_renewal(nodes, "all"),
                                               backup_dir="/var/backups/kubepki", backup_on_node=True)
        assert result.failed is None, result.error
        plan = kubepki.plan_cluster_restarts(nodes, result, policy="safe", method="manifest")
        report = kubepki.apply_cluster_restarts(
            plan, dry_run=False, health=lambda name, _node: ha_cluster.nodes[name].readyz(),
            restart=ssh_restart([sys.executable, "-m", "kubepki"], dry_run=False))
    assert report.failed is None, report.text()
    down = {name: 0.5 * sum(1 for r in probe.rounds if not r[name]) for name in before}
    print(f"\nrolling renewal of {len(cps)} control planes over SSH: {time.monotonic() - t0:.0f} s; "
          f"each apiserver not ready for about {down} s; rounds with none ready: "
          f"{sum(1 for r in probe.rounds if not any(r.values()))}")
    started = []
    for n in cps:
        assert n.served_serial(n.ports.apiserver) == n.file_serial("apiserver.crt") != before[n.node_name][0]
        assert n.served_serial(n.ports.etcd_client) == n.file_serial("etcd/server.crt") != before[n.node_name][1]
        new = n.container("kube-apiserver")
        assert new.id != containers[n.node_name]
        started.append(new.started_at)
    assert started == sorted(started), "the apiservers were not restarted one node after the other"
    assert probe.rounds and all(any(r.values()) for r in probe.rounds), "no apiserver answered at some moment"


def _kubepki(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "kubepki", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO, check=False)
