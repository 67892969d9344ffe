"""Node roles (issue 14, item 1): control planes, workers and etcd nodes each have their own catalog items.

Trees come from :mod:`kubepki.testing` for every role and from a real kubeadm tree cut down to
what ``kubeadm join`` leaves on a worker; the real joined worker is checked in
tests/test_realcluster_ha.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import kubepki
from kubepki import catalog
from kubepki.catalog import Kind, NodeRole
from kubepki.cli import main
from kubepki.errors import ConfigError
from kubepki.testing import build_cluster, build_node
from tests.kubeadm_trees import materialize

ROLES = list(NodeRole)
NOW = "2026-12-01T00:00:00Z"


def _check(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, dict[str, object]]:
    code = main(["check", "--root", str(root), "-o", "json", *extra])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


# ---- the catalog


@pytest.mark.parametrize("entry", catalog.CATALOG, ids=lambda e: e.name)
def test_every_entry_is_a_control_planes_and_cert_only_roles_are_its_own(entry: catalog.CatalogEntry) -> None:
    """A control plane has everything; only a CA can be held without its key, and only on a role that has it."""
    assert NodeRole.CONTROL_PLANE in entry.roles
    assert entry.cert_only_on <= entry.roles
    assert NodeRole.CONTROL_PLANE not in entry.cert_only_on
    if entry.cert_only_on:
        assert entry.kind is Kind.CA


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_entries_of_a_role_are_the_roles_entries(role: NodeRole) -> None:
    """entries(role=) and by_role agree, and each applies() on that role only where the role has it."""
    got = catalog.entries(version="1.28", role=role)
    assert got == tuple(e for e in catalog.by_role(role) if e.applies("1.28", role=role))
    for entry in catalog.CATALOG:
        assert entry.applies("1.28", role=role) is (role in entry.roles and entry.applies("1.28"))


def test_external_etcd_drops_the_etcd_items_from_control_planes_only() -> None:
    """An etcd node of the external-etcd topology is where the etcd items are; control control planes lose them."""
    cp = {e.name for e in catalog.entries(version="1.28", external_etcd=True, role="control-plane")}
    etcd = {e.name for e in catalog.entries(version="1.28", external_etcd=True, role="etcd")}
    assert "etcd-server" not in cp and "etcd-server" in etcd
    assert etcd == {"etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client", "kubelet.crt"}


def test_an_unknown_role_is_a_config_error(tmp_path: Path) -> None:
    """Node(role=...) takes the three roles by value; anything else is a ConfigError naming them."""
    assert kubepki.Node(tmp_path, role="worker").role is NodeRole.WORKER
    with pytest.raises(ConfigError, match=r"unknown node role 'master'.*control-plane, worker, etcd"):
        kubepki.Node(tmp_path, role="master")
    with pytest.raises(ConfigError, match="unknown node role"):
        build_node(tmp_path, role="master")


# ---- every role, built


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_a_healthy_node_of_each_role_checks_clean(role: NodeRole, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A node of each role, as kubeadm leaves it: discovered as that role, its items and no others, exit 0.
    Negative control: checked as a control plane, a worker or etcd node has errors (exit 2)."""
    node = build_node(tmp_path, name="n1", role=role)
    inv = kubepki.inspect(node.as_node())
    assert inv.profile.role is role and inv.profile.role_source != "assumed"
    assert {i.name for i in inv} == {e.name for e in inv.profile.entries()} - {"kubelet-server-current.pem"}
    assert {i.name for i in inv} <= {e.name for e in catalog.by_role(role)}
    assert inv.findings == [] and inv.outcome.rank == 0
    code, data = _check(capsys, node.root)
    assert code == 0 and data["role"] == role.value
    if role is not NodeRole.CONTROL_PLANE:
        code, data = _check(capsys, node.root, "--role", "control-plane")
        assert code == 2
        assert data["role"] == "control-plane" and data["role_source"] == "given"
        missing = [i["name"] for i in data["items"] if i["status"] == "missing" and i["required"]]
        assert "apiserver" in missing and "admin.conf" in missing


def test_a_worker_lacks_ca_key_by_design(tmp_path: Path) -> None:
    """A worker's ca.crt without ca.key is neither a finding nor an external CA; a control plane without
    ca.key (control) is an external CA, and a worker without ca.crt (control) has an error."""
    worker = build_node(tmp_path / "w", name="w1", role="worker")
    assert not worker.path("/etc/kubernetes/pki/ca.key").exists()
    inv = kubepki.inspect(worker.as_node())
    assert inv["ca"].findings == () and not inv["ca"].externally_managed
    assert not inv["kubelet.conf"].externally_managed
    cp = build_node(tmp_path / "c", external_ca=True)
    cp_inv = kubepki.inspect(cp.as_node())
    assert cp_inv["ca"].externally_managed and [f.code for f in cp_inv["ca"].findings] == ["external-ca"]
    worker.path("/etc/kubernetes/pki/ca.crt").unlink()
    broken = kubepki.inspect(worker.as_node())
    assert broken["ca"].status.value == "missing" and broken.outcome.rank == 2


def test_a_worker_cut_from_a_real_kubeadm_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real kubeadm tree single-full reduced to what kubeadm join leaves on a worker (ca.crt,
    kubelet.conf naming the rotated PEM, /var/lib/kubelet/pki): a worker with no error (the issue's
    13 errors and exit 2 before node roles)."""
    root = materialize("single-full", tmp_path / "n")
    shutil.rmtree(root / "etc/kubernetes/manifests")
    for path in (root / "etc/kubernetes").rglob("*"):
        if (path.is_file() and path.name not in ("kubelet.conf", "ca.crt")) or path.parent.name == "etcd":
            path.unlink()
    code, data = _check(capsys, root, "--now", NOW)
    assert data["role"] == "worker"
    assert [i["name"] for i in data["items"]] == ["ca", "kubelet.conf", "kubelet-client-current.pem", "kubelet.crt"]
    errors = [f for i in data["items"] for f in i["findings"] if f["severity"] == "error"]
    assert errors == [] and code == 0


def test_a_cluster_with_workers(tmp_path: Path) -> None:
    """build_cluster(workers=): the workers share the control planes' CA and each is discovered as a worker."""
    cluster = build_cluster(tmp_path, nodes=1, workers=2)
    assert [(n.name, n.role) for n in cluster.nodes] == [
        ("cp1", NodeRole.CONTROL_PLANE), ("w1", NodeRole.WORKER), ("w2", NodeRole.WORKER)]
    ca = cluster.first.path("/etc/kubernetes/pki/ca.crt").read_bytes()
    for worker in cluster.nodes[1:]:
        assert worker.path("/etc/kubernetes/pki/ca.crt").read_bytes() == ca
        inv = kubepki.inspect(worker.as_node())
        assert inv.profile.role is NodeRole.WORKER and inv.outcome.rank == 0
        assert inv["kubelet.conf"].facts is not None
        assert inv["kubelet.conf"].facts.common_name == f"system:node:{worker.name}"


def test_external_etcd_nodes(tmp_path: Path) -> None:
    """build_cluster(etcd_nodes=) writes kubeadm's external-etcd hosts: the etcd CA's key on the first only;
    each is an etcd node with no error. Control planes beside them need external_etcd."""
    cluster = build_cluster(tmp_path / "a", nodes=1, etcd_nodes=2, external_etcd=True)
    e1, e2 = cluster.nodes[1:]
    assert e1.path("/etc/kubernetes/pki/etcd/ca.key").exists()
    assert not e2.path("/etc/kubernetes/pki/etcd/ca.key").exists()
    for node in (e1, e2):
        inv = kubepki.inspect(node.as_node())
        assert inv.profile.role is NodeRole.ETCD and inv.findings == []
        assert inv["etcd-server"].facts is not None
        assert node.address in inv["etcd-server"].facts.ip_addresses
    with pytest.raises(ConfigError, match="external_etcd=True"):
        build_cluster(tmp_path / "b", nodes=1, etcd_nodes=1)


# ---- discovery


def test_a_control_plane_with_its_manifests_moved_out_is_still_one(tmp_path: Path) -> None:
    """kubeadm's manual restart moves the manifests out: the control-plane files still say control plane,
    even one of them alone. Control: with none of them (and no etcd files), kubelet.conf says worker."""
    node = build_node(tmp_path, name="cp1", write_config=False)
    shutil.rmtree(node.root / "etc/kubernetes/manifests")
    profile = kubepki.Node(node.root).profile
    assert profile.role is NodeRole.CONTROL_PLANE
    assert profile.role_source == "/etc/kubernetes/pki/apiserver.crt"
    for rel in ("pki/apiserver.crt", "controller-manager.conf", "scheduler.conf", "pki/ca.key", "pki/sa.key",
                "pki/front-proxy-ca.crt"):
        (node.root / "etc/kubernetes" / rel).unlink()
    profile = kubepki.Node(node.root).profile
    assert (profile.role, profile.role_source) == (NodeRole.CONTROL_PLANE,
                                                   "/etc/kubernetes/pki/apiserver-kubelet-client.crt")
    (node.root / "etc/kubernetes/pki/apiserver-kubelet-client.crt").unlink()
    assert kubepki.Node(node.root).profile.role is NodeRole.ETCD  # stacked etcd's files are left
    shutil.rmtree(node.root / "etc/kubernetes/pki/etcd")
    assert kubepki.Node(node.root).profile.role is NodeRole.WORKER


def test_an_etcd_node_without_its_manifest_is_still_one(tmp_path: Path) -> None:
    """An etcd node whose manifest is moved out: pki/etcd/server.crt tells it. The cert dir comes from the
    etcd manifest's --trusted-ca-file when there is one."""
    node = build_node(tmp_path, name="e1", role="etcd")
    (node.root / "etc/kubernetes/manifests/etcd.yaml").unlink()
    profile = kubepki.Node(node.root).profile
    assert (profile.role, profile.role_source) == (NodeRole.ETCD, "/etc/kubernetes/pki/etcd/server.crt")


def test_an_empty_root_assumes_a_control_plane_and_says_so(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """No manifests, no role files: a control plane is assumed (the strictest role), never silently:
    the note and role_source say so and every missing item is an error."""
    code, data = _check(capsys, tmp_path)
    assert (data["role"], data["role_source"]) == ("control-plane", "assumed")
    assert any("node role unknown" in n for n in data["notes"])
    assert code == 2
    main(["check", "--root", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert "a control-plane node (assumed)" in out


def test_the_table_names_a_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The text output says which role decided the items; a control plane's table stays kubeadm's (control)."""
    worker = build_node(tmp_path / "w", name="w1", role="worker")
    main(["check", "--root", str(worker.root)])
    out, _ = capsys.readouterr()
    assert "note: a worker node (/etc/kubernetes/kubelet.conf without control-plane files)" in out
    cp = build_node(tmp_path / "c")
    main(["check", "--root", str(cp.root)])
    out, _ = capsys.readouterr()
    assert "node (" not in out


def test_renewal_on_a_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """renew all on a worker plans nothing and says why; naming a control-plane item is refused with the role."""
    worker = build_node(tmp_path, name="w1", role="worker")
    plan = kubepki.plan_renewal(worker.as_node())
    assert plan.steps == () and any("worker node has no certificate kubeadm renews" in n for n in plan.notes)
    with pytest.raises(ConfigError, match=r"apiserver does not exist on this node \(a worker node\)"):
        kubepki.plan_renewal(worker.as_node(), ["apiserver"])
    cp = build_node(tmp_path / "c")
    assert kubepki.plan_renewal(cp.as_node()).steps != ()


# ---- clusters with workers and etcd nodes


def _cluster_check(capsys: pytest.CaptureFixture[str], *nodes: str) -> tuple[int, dict[str, Any]]:
    code = main(["cluster", "check", *nodes, "-o", "json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def test_a_cluster_with_workers_checks_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two control planes and two workers: every node's role, the workers' CA compared with the control planes'
    and no finding; a worker whose ca.crt is another cluster's is the odd one out (control)."""
    demo = build_cluster(tmp_path / "c", nodes=2, workers=2)
    args = [f"--node={n.name}={n.root}" for n in demo.nodes]
    code, data = _cluster_check(capsys, *args)
    assert code == 0, data["findings"]
    assert [(n["label"], n["role"]) for n in data["nodes"]] == [
        ("cp1", "control-plane"), ("cp2", "control-plane"), ("w1", "worker"), ("w2", "worker")]
    assert data["findings"] == []
    other = build_node(tmp_path / "o", name="x1")
    shutil.copy(other.path("/etc/kubernetes/pki/ca.crt"), demo.node("w2").path("/etc/kubernetes/pki/ca.crt"))
    code, data = _cluster_check(capsys, *args)
    mismatch = [f for f in data["findings"] if f["code"] == "shared-mismatch"]
    assert code == 2 and mismatch and mismatch[0]["nodes"] == ["w2"]


def test_a_ca_key_on_a_worker_is_a_cluster_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ca.key copied onto a worker: still a worker, and the cluster check says the key should go
    (control: the clean cluster above has no such finding)."""
    demo = build_cluster(tmp_path, nodes=1, workers=1)
    shutil.copy(demo.first.path("/etc/kubernetes/pki/ca.key"), demo.node("w1").path("/etc/kubernetes/pki/ca.key"))
    code, data = _cluster_check(capsys, f"--node=cp1={demo.first.root}", f"--node=w1={demo.node('w1').root}")
    assert data["nodes"][1]["role"] == "worker"
    assert [(f["code"], f["nodes"]) for f in data["findings"]] == [("shared-key-off-control-plane", ["w1"])]
    assert code == 1


def test_worker_and_etcd_options_give_the_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--worker and --etcd say the role (role_source "given"); --node discovers it. An external-etcd cluster:
    control plane and etcd hosts together, the etcd CA compared among the etcd hosts only."""
    demo = build_cluster(tmp_path, nodes=1, etcd_nodes=2, workers=1, external_etcd=True)
    cp, w1, e1, e2 = demo.nodes  # control planes, workers, then etcd nodes
    code, data = _cluster_check(capsys, f"--node=cp1={cp.root}", f"--etcd=e1={e1.root}", f"--etcd=e2={e2.root}",
                                f"--worker=w1={w1.root}")
    assert code == 0, data["findings"]
    assert [n["role"] for n in data["nodes"]] == ["control-plane", "etcd", "etcd", "worker"]
    assert {data["inventories"][n]["role_source"] for n in ("e1", "e2", "w1")} == {"given"}
    assert data["findings"] == []
    shutil.copy(e1.path("/etc/kubernetes/pki/etcd/ca.key"), e2.path("/etc/kubernetes/pki/etcd/ca.key"))
    _code, data = _cluster_check(capsys, f"--etcd=e1={e1.root}", f"--etcd=e2={e2.root}")
    assert data["findings"] == []  # the etcd CA's key on a second etcd host is kubeadm's guide's choice to make
    assert main(["cluster", "check"]) == 3  # no node at all: a usage error
    assert "name the nodes" in capsys.readouterr().err
