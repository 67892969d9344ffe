"""Expired-cluster recovery (issue 14, item 5): a node off for longer than its certificates lasted.

On the real kubeadm tree ``expired`` (one-minute validity, really expired) and on kubepki.testing
trees issued 400 days ago; the real kubelet and apiserver are in
tests/test_realcluster.py::test_expired_node_recovery.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

import kubepki
from kubepki.cli import main
from kubepki.testing import build_cluster, build_node
from tests.kubeadm_trees import config_path, materialize

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)
LONG_AGO = NOW - dt.timedelta(days=400)


def _errors(inv: kubepki.Inventory) -> set[tuple[str, str]]:
    return {(i.name, f.code) for i, f in inv.findings if f.severity.value in ("error", "critical")}


def test_the_real_expired_kubeadm_tree_recovers(tmp_path: Path) -> None:
    """kubeadm's own expired tree: everything renewable renewed, and kubelet.conf (kubeadm embeds an expired
    certificate in it) gets a new certificate from ca in the rotated PEM, which it now names. After applying:
    no error left (control: before, every leaf is expired)."""
    root = materialize("expired", tmp_path / "n")
    node = kubepki.Node(root, config=config_path("expired"))
    before = kubepki.inspect(node, now=NOW)
    assert ("kubelet.conf", "expired") in _errors(before) and ("apiserver", "expired") in _errors(before)
    plan = kubepki.plan_recovery(node, now=NOW)
    names = [s.name for s in plan.work]
    assert "apiserver" in names and "kubelet.conf" in names
    kubepki.apply_renewal(plan, backup_dir=tmp_path / "bk", force_invalid_times=True)
    after = kubepki.inspect(kubepki.Node(root, config=config_path("expired")), now=NOW)
    assert _errors(after) == set()
    pem = after["kubelet-client-current.pem"]
    assert pem.facts is not None and pem.facts.common_name == "system:node:cp1"
    assert "system:nodes" in pem.facts.organizations


def test_an_expired_control_plane_with_its_rotated_pem(tmp_path: Path) -> None:
    """A control plane off for 400 days: kubelet.conf names an expired kubelet-client-current.pem, which the
    kubelet cannot rotate; recovery writes a new dated PEM signed by ca and repoints the symlink. Only the
    self-signed kubelet.crt stays expired (the kubelet makes a new one when it is removed)."""
    node = build_node(tmp_path, issued_at=LONG_AGO)
    plan = kubepki.plan_recovery(node.as_node(), now=NOW)
    step = next(s for s in plan.steps if s.name == "kubelet.conf")
    assert step.action.value == "switch" and any("a new one is signed by ca" in n for n in step.notes)
    kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    after = kubepki.inspect(node.as_node(), now=NOW)
    assert _errors(after) == {("kubelet.crt", "expired")}


def test_a_healthy_node_needs_no_new_kubelet_certificate(tmp_path: Path) -> None:
    """Negative control: a node whose kubelet certificate is valid gets no kubelet step, and says so."""
    node = build_node(tmp_path, issued_at=NOW - dt.timedelta(days=10))
    plan = kubepki.plan_recovery(node.as_node(), now=NOW)
    assert "kubelet.conf" not in [s.name for s in plan.steps]
    assert any("the kubelet's client certificate needs nothing" in n for n in plan.notes)


def test_an_expired_worker_is_told_how_and_the_way_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A worker has no ca.key: the plan refuses and prints kubeadm's way (a kubeconfig issued on a control
    plane). That command, run as printed on the control plane and its output installed as kubelet.conf,
    then `certs switch-kubelet-conf`, leaves the worker without an expired client certificate."""
    cluster = build_cluster(tmp_path / "c", nodes=1, workers=1, issued_at=LONG_AGO)
    cp, worker = cluster.nodes
    plan = kubepki.plan_recovery(worker.as_node(), now=NOW)
    step = next(s for s in plan.steps if s.name == "kubelet.conf")
    assert step.action.value == "skip" and "a worker has no ca.key" in step.message
    command = step.message.split("`")[1]
    assert command.startswith("kubepki certs kubeconfig-user ") and command.endswith("> kubelet.conf")
    argv = command.removeprefix("kubepki ").removesuffix(" > kubelet.conf").split()
    assert main([*argv, "--root", str(cp.root), "--now", NOW.isoformat()]) == 0
    kubeconfig = capsys.readouterr().out
    worker.path("/etc/kubernetes/kubelet.conf").write_text(kubeconfig)
    assert main(["certs", "switch-kubelet-conf", "--root", str(worker.root), "--apply", "--no-backup",
                 "--now", NOW.isoformat(), "--force-invalid-times"]) == 0
    capsys.readouterr()
    after = kubepki.inspect(worker.as_node(), now=NOW)
    assert _errors(after) == {("kubelet.crt", "expired")}


def test_recover_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki certs recover` shows the plan and writes nothing; --apply -o json gives what restarts
    --from-renewal reads, naming kubelet.conf so that the kubelet is restarted too."""
    node = build_node(tmp_path, issued_at=LONG_AGO)
    before = node.path("/etc/kubernetes/kubelet.conf").read_bytes()
    assert main(["certs", "recover", "--root", str(node.root), "--now", NOW.isoformat()]) == 0
    assert "kubelet.conf" in capsys.readouterr().out
    assert node.path("/etc/kubernetes/kubelet.conf").read_bytes() == before
    assert main(["certs", "recover", "--root", str(node.root), "--now", NOW.isoformat(), "--apply",
                 "--force-invalid-times", "--backup-dir", str(tmp_path / "bk"), "-o", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "kubelet.conf" in result["changed"] and "apiserver" in result["changed"]
    plan = kubepki.plan_restarts(node.as_node(), kubepki.FromRenewal(result))
    assert "kubelet" in {s.component.value for s in plan.steps if s.action.value == "restart"}
    shutil.rmtree(tmp_path / "bk")
