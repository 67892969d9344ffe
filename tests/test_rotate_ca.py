"""Rotating the cluster CA (``kubepki cluster rotate-ca --ca ca --no-restart``), phase by phase.

After every phase, on every node of a 3 control plane + 2 worker ``kubepki.testing`` cluster and of
kubeadm's own HA trees: no TLS edge is broken (check_trust), only the plan's paths changed (modes and
owners kept), and ``status`` says where the rotation is. At the end every certificate the cluster CA
signs is the new CA's and the old CA is in no trust file; abort returns byte for byte; a SIGKILL during
apply resumes to the same end state.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from hypothesis import HealthCheck, given, settings, strategies as st

from kubepki import testing
from kubepki.cli import main
from kubepki.cluster import (
    PHASES,
    Cluster,
    Phase,
    RotationPlan,
    abort_rotation,
    apply_rotation,
    check_trust,
    plan_rotation,
    rotation_status,
)
from kubepki.errors import ConfigError, LockError
from kubepki.node import Node, node_lock
from kubepki.pki import load_certificates, load_private_key, public_key_der, signed_by
from tests._hardening import snapshot
from tests.kubeadm_trees import materialize

REPO = Path(__file__).resolve().parents[1]
PKI = "etc/kubernetes/pki"
BACKUPS = "/var/backups/kubepki"
CPS, WORKERS = ("cp1", "cp2", "cp3"), ("w1", "w2")
#: What a node's tree holds besides the plan's paths: the backups taken first, and the lock file.
OUTSIDE = ("var/backups", "etc/kubernetes/.kubepki.lock")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> testing.DemoCluster:
    return testing.build_cluster(tmp_path_factory.mktemp("rot"), nodes=3, workers=2)


@pytest.fixture
def roots(pristine: testing.DemoCluster, tmp_path: Path) -> dict[str, Path]:
    """A private copy of the 3 + 2 cluster: node name -> root."""
    out = {}
    for n in pristine.nodes:
        out[n.name] = tmp_path / n.name
        shutil.copytree(n.root, out[n.name], symlinks=True)
    return out


@pytest.fixture
def ha_roots(tmp_path: Path) -> dict[str, Path]:
    return {f"cp{i}": materialize(f"ha-cp{i}", tmp_path / f"cp{i}") for i in (1, 2, 3)}


def cluster(roots: dict[str, Path]) -> Cluster:
    return Cluster(list(roots.values()), labels=list(roots))


Tree = dict[str, dict[str, tuple[str, int, int, int, str]]]


def trees(roots: dict[str, Path]) -> Tree:
    """Every node's files (type, mode, owner, content; not mtime) outside the backups and the lock."""
    return {name: {p: (e.kind, e.mode, e.uid, e.gid, e.content) for p, e in snapshot(root).items()
                   if not p.startswith(OUTSIDE)}
            for name, root in roots.items()}


def changed(before: Tree, after: Tree) -> dict[str, set[str]]:
    """Each node's paths (node paths) added, removed or changed; directories are judged by their entries."""
    return {n: {"/" + p for p in before[n].keys() | after[n].keys()
                if before[n].get(p) != after[n].get(p) and (after[n].get(p) or before[n][p])[0] != "dir"}
            for n in before}


def assert_trusted(roots: dict[str, Path]) -> None:
    report = check_trust(cluster(roots))
    assert report.broken == (), [e.name for e in report.broken]
    assert report.errors == {}
    # every kubeconfig's client certificate is trusted by every API server it reaches, both ways
    kubeconfig = report.edges_of("kubeconfig")
    assert kubeconfig and all(e.client_auth.verdict.value == "trusted" for e in kubeconfig)
    assert all(e.server_auth.verdict.value == "trusted" for e in kubeconfig)


def ca_of(root: Path) -> x509.Certificate:
    return load_certificates((root / PKI / "ca.crt").read_bytes())[0]


def signed_by_ca(root: Path) -> dict[str, x509.Certificate]:
    """Every certificate on the node that the cluster CA signs (kubeconfigs' embedded ones included)."""
    out = {}
    for rel in ("etc/kubernetes/pki/apiserver.crt", "etc/kubernetes/pki/apiserver-kubelet-client.crt",
                "var/lib/kubelet/pki/kubelet-client-current.pem"):
        path = root / rel
        if path.is_symlink():  # kubeadm's link is absolute: a node path, under the root here
            path = root / os.readlink(path).lstrip("/")
        if path.exists():
            out[rel] = load_certificates(path.read_bytes())[0]
    for conf in ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"):
        path = root / "etc/kubernetes" / conf
        if path.exists():
            user = yaml.safe_load(path.read_text())["users"][0]["user"]
            if "client-certificate-data" in user:
                out[conf] = load_certificates(base64.b64decode(user["client-certificate-data"]))[0]
    return out


def trust_files(root: Path) -> dict[str, list[x509.Certificate]]:
    """Every file on the node a component trusts the cluster CA through (the other CAs' files aside)."""
    out = {}
    for path in (root / PKI / "ca.crt", root / PKI / "ca-bundle.crt"):
        if path.exists():
            out[str(path.relative_to(root))] = load_certificates(path.read_bytes())
    kubelet = root / "var/lib/kubelet/config.yaml"
    if kubelet.exists():
        named = yaml.safe_load(kubelet.read_text())["authentication"]["x509"]["clientCAFile"]
        out["kubelet clientCAFile"] = load_certificates((root / named.lstrip("/")).read_bytes())
    for conf in (root / "etc/kubernetes").glob("*.conf"):
        cluster_doc = yaml.safe_load(conf.read_text())["clusters"][0]["cluster"]
        out[conf.name] = load_certificates(base64.b64decode(cluster_doc["certificate-authority-data"]))
    return out


def run_phases(roots: dict[str, Path], *, workers: tuple[str, ...]) -> tuple[x509.Certificate, x509.Certificate]:
    """All four phases, checked after each; returns (old CA, new CA)."""
    old = ca_of(roots["cp1"])
    c = cluster(roots)
    assert rotation_status(c).active is False and rotation_status(c).next_phase is Phase.PREPARE
    new: x509.Certificate | None = None
    for phase in PHASES:
        before = trees(roots)
        plan = plan_rotation(c)
        assert plan.phase is phase
        assert trees(roots) == before  # planning writes nothing
        json.dumps(plan.to_dict())  # printable
        assert "PRIVATE KEY" not in plan.to_json()
        result = apply_rotation(plan, backup_dir=BACKUPS)
        assert result.ok, result.problems
        assert set(result.backups) >= set(CPS)
        after = trees(roots)
        # nothing outside the plan changed, and every planned file did
        for name in roots:
            planned = plan.paths(name)
            assert changed(before, after)[name] <= planned, name
            writes = {ch.path for ch in plan.changes if ch.node == name and ch.action != "record"}
            assert writes <= changed(before, after)[name], name
            for p, entry in after[name].items():  # an existing file kept its mode and owner
                if p in before[name] and entry != before[name][p]:
                    assert entry[1:4] == before[name][p][1:4], p
        assert_trusted(roots)
        status = rotation_status(c)
        assert status.phase is phase and status.applying is None and set(status.nodes) == set(CPS)
        if phase is Phase.PREPARE:
            staged = roots["cp1"] / PKI / ".kubepki-rotation-ca-new.key"
            assert staged.stat().st_mode & 0o777 == 0o600
            new = load_certificates((roots["cp1"] / PKI / ".kubepki-rotation-ca-new.crt").read_bytes())[0]
            assert new.public_key() != old.public_key()
            for w in workers:
                assert not changed(before, after)[w]  # prepare touches only the control planes
        if phase is Phase.TRUST_BOTH:
            for name, root in roots.items():
                assert ca_of(root) == old  # the signing copy stays one certificate, the old one
                assert len(load_certificates((root / PKI / "ca.crt").read_bytes())) == 1
                for where, certs in trust_files(root).items():
                    if where != f"{PKI}/ca.crt":
                        assert {old, new} <= set(certs), (name, where)
    assert new is not None
    assert rotation_status(c).next_phase is None
    with pytest.raises(ConfigError, match="complete"):
        plan_rotation(c)
    return old, new


def assert_rotated(roots: dict[str, Path], old: x509.Certificate, new: x509.Certificate) -> None:
    for name, root in roots.items():
        assert ca_of(root) == new
        leaves = signed_by_ca(root)
        assert leaves, name
        for where, cert in leaves.items():
            assert signed_by(cert, new) and not signed_by(cert, old), (name, where)
        pem = root / "var/lib/kubelet/pki/kubelet-client-current.pem"
        if pem.is_symlink():  # the link kept, its target re-signed over the same key
            data = (root / os.readlink(pem).lstrip("/")).read_bytes()
            assert public_key_der(load_private_key(data)) == public_key_der(
                load_certificates(data)[0].public_key())  # type: ignore[arg-type]
        for where, certs in trust_files(root).items():
            assert old not in certs, (name, where)
        assert not list((root / PKI).glob(".kubepki-rotation-ca-*"))  # staged copies and undo records gone
        assert not (root / PKI / "ca-bundle.crt").exists()
        for m in ("kube-apiserver.yaml", "kube-controller-manager.yaml"):
            path = root / "etc/kubernetes/manifests" / m
            if path.exists():
                assert "ca-bundle.crt" not in path.read_text()


def test_four_phases_on_three_control_planes_and_two_workers(roots: dict[str, Path]) -> None:
    old, new = run_phases(roots, workers=WORKERS)
    assert_rotated(roots, old, new)
    # the kubeadm layout is back: every flag names ca.crt, which is the new CA alone
    for cp in CPS:
        api = (roots[cp] / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
        assert "--client-ca-file=/etc/kubernetes/pki/ca.crt" in api
        kcm = (roots[cp] / "etc/kubernetes/manifests/kube-controller-manager.yaml").read_text()
        assert "--root-ca-file=/etc/kubernetes/pki/ca.crt" in kcm
        assert "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt" in kcm
    for w in WORKERS:
        assert "clientCAFile: /etc/kubernetes/pki/ca.crt" in (roots[w] / "var/lib/kubelet/config.yaml").read_text()
        assert ca_of(roots[w]) == new


def test_four_phases_on_kubeadm_ha_trees(ha_roots: dict[str, Path]) -> None:
    """kubeadm's own trees (no manifests, no kubelet config, kubelet.conf with embedded data)."""
    old, new = run_phases(ha_roots, workers=())
    assert_rotated(ha_roots, old, new)


def test_kubeadm_ha_trees_plan_says_what_it_cannot_point(ha_roots: dict[str, Path]) -> None:
    """Without manifests or kubelet config, the flags are not kubepki's to change: the plan says so."""
    c = cluster(ha_roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    notes = " ".join(plan_rotation(c).notes)
    assert "cp2: no kube-apiserver manifest" in notes and "cp3: no kubelet config.yaml" in notes


def test_trust_both_in_a_bundle_keeps_the_signing_certificate_single(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    plan = plan_rotation(c)
    assert plan.phase is Phase.TRUST_BOTH
    paths = {(ch.node, ch.path) for ch in plan.changes}
    assert ("cp1", "/etc/kubernetes/pki/ca.crt") not in paths  # KCM --cluster-signing-cert-file's file
    assert ("w1", "/etc/kubernetes/pki/ca-bundle.crt") in paths
    assert plan.restarts["w1"] == ("kubelet",)
    assert "kube-apiserver" in plan.restarts["cp1"] and "kube-controller-manager" in plan.restarts["cp1"]
    assert apply_rotation(plan, backup_dir=BACKUPS).ok
    kcm = (roots["cp1"] / "etc/kubernetes/manifests/kube-controller-manager.yaml").read_text()
    assert "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt" in kcm
    assert "--root-ca-file=/etc/kubernetes/pki/ca-bundle.crt" in kcm
    assert "--client-ca-file=/etc/kubernetes/pki/ca-bundle.crt" in kcm


def test_skipping_trust_both_breaks_edges(roots: dict[str, Path]) -> None:
    """Negative control: reissuing right after prepare (a record forged to skip trust-both) breaks the
    edges whose other side still trusts the old CA alone, and check_trust names them."""
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    for cp in CPS:
        state = roots[cp] / PKI / ".kubepki-rotation-ca.json"
        doc = json.loads(state.read_text())
        doc["phase"] = "trust-both"
        state.write_text(json.dumps(doc))
    plan = plan_rotation(c)
    assert plan.phase is Phase.REISSUE
    result = apply_rotation(plan, backup_dir=BACKUPS)
    assert not result.ok
    broken = {e.name for e in result.trust.broken}
    assert "cp1 admin.conf -> cp1 kube-apiserver" in broken  # its CA data: the old CA; the server: new
    assert any("w1 kubelet.conf" in b for b in broken)
    assert any(p.startswith("broken TLS edge cp1 admin.conf") for p in result.problems)
    status = rotation_status(c)
    assert status.applying is Phase.REISSUE and status.phase is Phase.TRUST_BOTH  # not verified
    # the unverified phase is what abort undoes: the old CA signs again, and every edge holds
    ca_key = (roots["cp1"] / PKI / "ca.key").read_bytes()
    assert abort_rotation(c).ok
    assert (roots["cp1"] / PKI / "ca.key").read_bytes() != ca_key
    assert_trusted(roots)
    assert rotation_status(c).applying is None


def test_abort_from_reissue_brings_the_old_signer_back(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    old_key = (roots["cp1"] / PKI / "ca.key").read_bytes()
    for _ in range(2):
        assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    after_trust_both = trees(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    assert (roots["cp1"] / PKI / "ca.key").read_bytes() != old_key
    result = abort_rotation(c)
    assert result.ok and result.phase is Phase.REISSUE and result.trust.broken == ()
    assert (roots["cp1"] / PKI / "ca.key").read_bytes() == old_key
    assert {p for n in changed(after_trust_both, trees(roots)).values() for p in n} == {
        f"/{PKI}/.kubepki-rotation-ca.json"}
    assert rotation_status(c).phase is Phase.TRUST_BOTH
    for _ in range(2):  # and the rotation goes on from there
        assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    assert rotation_status(c).next_phase is None


def test_abort_from_trust_both_restores_every_byte(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    with pytest.raises(ConfigError, match="nothing to abort"):
        abort_rotation(c)
    original = trees(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    after_prepare = trees(roots)
    assert after_prepare != original
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    assert trees(roots) != after_prepare
    result = abort_rotation(c)
    assert result.ok and result.phase is Phase.TRUST_BOTH
    # back to prepare, verified: every file as it was, but the record, whose history says "aborted"
    assert changed(after_prepare, trees(roots)) == {n: {f"/{PKI}/.kubepki-rotation-ca.json"} if n in CPS else set()
                                                   for n in roots}
    assert rotation_status(c).history[-1]["event"] == "aborted"
    assert rotation_status(c).phase is Phase.PREPARE
    assert_trusted(roots)
    assert abort_rotation(c).phase is Phase.PREPARE
    assert trees(roots) == original  # byte for byte, modes and owners too
    assert rotation_status(c).active is False


def test_a_node_locked_by_another_run_stops_the_phase_before_any_write(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    plan = plan_rotation(c)
    before = snapshot_all(roots)
    with node_lock(Node(roots["w2"])), pytest.raises(LockError):
        apply_rotation(plan, backup_dir=BACKUPS)
    assert snapshot_all(roots) == before  # not even a backup: every lock is taken first
    assert apply_rotation(plan, backup_dir=BACKUPS).ok  # positive control: the lock released, it applies


def snapshot_all(roots: dict[str, Path]) -> dict[str, set[str]]:
    return {n: {p for p in snapshot(r) if not p.endswith(".kubepki.lock")} for n, r in roots.items()}


def test_a_plan_whose_files_moved_is_refused(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    plan = plan_rotation(c)
    admin = roots["cp2"] / "etc/kubernetes/admin.conf"
    admin.write_bytes(admin.read_bytes() + b"# another writer\n")
    before = snapshot_all(roots)
    with pytest.raises(ConfigError, match=r"cp2:/etc/kubernetes/admin.conf changed since the plan"):
        apply_rotation(plan, backup_dir=BACKUPS)
    assert snapshot_all(roots) == before
    plan = plan_rotation(c)  # planned from the other writer's admin.conf: that is kept
    (roots["w1"] / PKI / "ca-bundle.crt").write_bytes(b"")  # a create's path taken meanwhile
    with pytest.raises(ConfigError, match=r"w1:/etc/kubernetes/pki/ca-bundle.crt changed"):
        apply_rotation(plan, backup_dir=BACKUPS)
    (roots["w1"] / PKI / "ca-bundle.crt").unlink()
    assert apply_rotation(plan, backup_dir=BACKUPS).ok  # positive control: as planned again, it applies
    assert admin.read_bytes().endswith(b"# another writer\n")


def test_records_a_step_apart_say_the_phase_is_under_way(roots: dict[str, Path]) -> None:
    """A run killed while saving the records (cp1 says trust-both verified, cp2 and cp3 still applying):
    trust-both is under way, not verified, until next --apply verifies it again on every node."""
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    state = roots["cp2"] / PKI / ".kubepki-rotation-ca.json"
    applying = json.loads(state.read_text())
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    for cp in ("cp2", "cp3"):
        (roots[cp] / PKI / ".kubepki-rotation-ca.json").write_text(json.dumps({**applying, "applying": "trust-both"}))
    status = rotation_status(c)
    assert status.phase is Phase.PREPARE and status.applying is Phase.TRUST_BOTH
    plan = plan_rotation(c)
    assert plan.phase is Phase.TRUST_BOTH and all(ch.action == "record" for ch in plan.changes)  # all written
    assert apply_rotation(plan, backup_dir=BACKUPS).ok
    status = rotation_status(c)
    assert status.phase is Phase.TRUST_BOTH and status.applying is None


def test_abort_refused_once_drop_old_starts(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    for _ in range(4):
        assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    with pytest.raises(ConfigError, match="drop-old"):
        abort_rotation(c)


def test_plan_is_refused_out_of_order_and_bad_new_ca(roots: dict[str, Path], tmp_path: Path) -> None:
    c = cluster(roots)
    stale = plan_rotation(c)
    assert apply_rotation(stale, backup_dir=BACKUPS).ok
    with pytest.raises(ConfigError, match="plan again"):
        apply_rotation(stale, backup_dir=BACKUPS)  # prepare again: the rotation is at trust-both
    with pytest.raises(ConfigError, match="for prepare"):
        plan_rotation(c, new_ca_cert=b"x", new_ca_key=b"y")
    fresh = {n: tmp_path / "f" / n for n in roots}
    for n, r in roots.items():
        shutil.copytree(r, fresh[n], symlinks=True)
        for p in (fresh[n] / PKI).glob(".kubepki-rotation-ca*"):
            p.unlink()
    leaf = (roots["cp1"] / PKI / "apiserver.crt").read_bytes()
    key = (roots["cp1"] / PKI / "apiserver.key").read_bytes()
    with pytest.raises(ConfigError, match="not a CA"):
        plan_rotation(cluster(fresh), new_ca_cert=leaf, new_ca_key=key)
    with pytest.raises(ConfigError, match="in use"):
        plan_rotation(cluster(fresh), new_ca_cert=(roots["cp1"] / PKI / "ca.crt").read_bytes(),
                      new_ca_key=(roots["cp1"] / PKI / "ca.key").read_bytes())
    with pytest.raises(ConfigError, match="both"):
        plan_rotation(cluster(fresh), new_ca_cert=leaf)


def test_given_new_ca_is_the_one_staged_and_signing(roots: dict[str, Path], pristine: testing.DemoCluster,
                                                    tmp_path: Path) -> None:
    other = testing.build_cluster(tmp_path / "other", nodes=1, fresh_keys=True)
    cert = (other.first.root / PKI / "ca.crt").read_bytes()
    key = (other.first.root / PKI / "ca.key").read_bytes()
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c, new_ca_cert=cert, new_ca_key=key), backup_dir=BACKUPS).ok
    for cp in CPS:
        assert (roots[cp] / PKI / ".kubepki-rotation-ca-new.crt").read_bytes() == cert
    for _ in range(3):
        assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    assert ca_of(roots["w2"]) == load_certificates(cert)[0]
    assert_rotated(roots, ca_of(pristine.first.root), load_certificates(cert)[0])


# -- damaged records: a typed error, never a traceback, and nothing written ---------------------------


def _record_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                        st.sampled_from([p.value for p in PHASES]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), st.dictionaries(
    st.sampled_from(["kind", "phase", "applying", "old_ca_pem", "old_ca_sha256", "new_ca_sha256", "history"]),
    _record_values(), max_size=7).map(lambda d: json.dumps({"kind": "CARotationState", **d}).encode())))
def test_a_damaged_record_is_a_config_error(roots: dict[str, Path], data: bytes) -> None:
    state = roots["cp2"] / PKI / ".kubepki-rotation-ca.json"
    state.write_bytes(data)
    before = trees(roots)
    c = cluster(roots)
    for call in (lambda: rotation_status(c), lambda: plan_rotation(c), lambda: abort_rotation(c)):
        with contextlib.suppress(ConfigError):  # a ConfigError, or a status: never another exception
            call()
    assert trees(roots) == before


def test_a_damaged_record_names_what_is_damaged(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    assert rotation_status(c).phase is Phase.PREPARE  # positive control: the record as written reads back
    state = roots["cp2"] / PKI / ".kubepki-rotation-ca.json"
    doc = json.loads(state.read_text())
    state.write_text(json.dumps({**doc, "phase": ["prepare"], "old_ca_pem": "-----BEGIN CERTIFICATE-----"}))
    with pytest.raises(ConfigError, match=r"cp2:.*damaged rotation record \(phase, old_ca_pem\)"):
        rotation_status(c)


def test_a_damaged_undo_record_is_refused_before_any_write(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    for _ in range(2):
        assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    undo = roots["w2"] / PKI / ".kubepki-rotation-ca-undo-trust-both.json"
    doc = json.loads(undo.read_text())
    doc["files"][0]["before"] = "not base64!"
    undo.write_text(json.dumps(doc))
    before = trees(roots)
    with pytest.raises(ConfigError, match="damaged undo record"):
        abort_rotation(c)
    assert trees(roots) == before  # cp1's undo was not replayed first: every record is checked up front
    undo.write_text("{")
    with pytest.raises(ConfigError, match="damaged undo record"):
        abort_rotation(c)


def cli(roots: dict[str, Path], action: str, *extra: str) -> list[str]:
    args = ["cluster", "rotate-ca", action]
    for name, root in roots.items():
        args += ["--worker" if name.startswith("w") else "--node", f"{name}={root}"]
    return [*args, *extra]


def test_cli(roots: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cli(roots, "status", "-o", "json")) == 0
    assert json.loads(capsys.readouterr().out)["next"] == "prepare"
    assert main(cli(roots, "plan")) == 3  # --no-restart is required
    assert "--no-restart" in capsys.readouterr().err
    assert main(cli(roots, "plan", "--no-restart")) == 0
    assert "prepare" in capsys.readouterr().out
    assert not list((roots["cp1"] / PKI).glob(".kubepki-rotation*"))  # plan, next without --apply: nothing
    for phase in PHASES:
        assert main(cli(roots, "next", "--no-restart", "--apply", "-o", "json")) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["phase"] == phase.value and doc["outcome"] == "ok" and doc["trust"]["broken"] == []
        assert main(cli(roots, "status")) == 0
        assert f"{phase.value}" in capsys.readouterr().out
        if phase is Phase.TRUST_BOTH:
            assert main(cli(roots, "abort")) == 0
            assert "would undo trust-both" in capsys.readouterr().out
    assert main(cli(roots, "next", "--no-restart")) == 3
    assert "complete" in capsys.readouterr().err


# -- crash: SIGKILL at checkpoints of a phase, then next --apply resumes ------------------------


def run_cli(roots: dict[str, Path], *extra: str, crash_at: int | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "KUBEPKI_TEST_CRASH_AT"}
    if crash_at is not None:
        env["KUBEPKI_TEST_CRASH_AT"] = str(crash_at)
    proc = subprocess.run([sys.executable, "-m", "kubepki", *cli(roots, "next", "--no-restart", *extra)],
                          check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode


#: Checkpoints: each node's backup (5), each control plane's record (3), then each file in the plan's
#: order (prepare 6, trust-both 31, reissue 29, drop-old 50): the first, the first record, some writes,
#: the last.
CRASHES = [(Phase.PREPARE, n) for n in (1, 6, 9, 14)] + [(Phase.TRUST_BOTH, n) for n in (2, 7, 9, 20, 33, 39)] + [
    (Phase.REISSUE, n) for n in (5, 8, 17, 30, 37)] + [(Phase.DROP_OLD, n) for n in (7, 20, 45, 58)]


@pytest.mark.parametrize(("phase", "crash_at"), CRASHES, ids=[f"{p.value}-{n}" for p, n in CRASHES])
def test_sigkill_during_a_phase_resumes_to_the_same_end(roots: dict[str, Path], phase: Phase, crash_at: int) -> None:
    """SIGKILL at the crash_at-th checkpoint of `next --apply` (backups, records, each file); a plain
    `next --apply` then finishes the phase, verified; its undo record still holds the files as they were
    before the phase (abort returns to them); and the rotation runs on to the same end state."""
    c = cluster(roots)
    old = ca_of(roots["cp1"])
    for _ in range(PHASES.index(phase)):
        assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    before = trees(roots)
    previous = rotation_status(c).phase
    assert run_cli(roots, "--apply", crash_at=crash_at) == -9  # killed: the checkpoint was reached
    status = rotation_status(c)
    if status.applying is None:  # killed in the first backup: nothing in the trees changed yet
        assert status.phase is previous and trees(roots) == before
    else:
        assert status.applying is phase and status.phase is previous
        assert plan_rotation(c).phase is phase
    assert run_cli(roots, "--apply") == 0
    status = rotation_status(c)
    assert status.phase is phase and status.applying is None
    assert_trusted(roots)
    if phase is Phase.DROP_OLD:  # no way back from drop-old: resumed, it ends the rotation
        assert_rotated(roots, old, ca_of(roots["cp1"]))
        return
    assert abort_rotation(c).ok
    assert {p for n in changed(before, trees(roots)).values() for p in n} <= {f"/{PKI}/.kubepki-rotation-ca.json"}
    for _ in range(PHASES.index(phase), len(PHASES)):
        assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    assert_rotated(roots, old, ca_of(roots["cp1"]))


@pytest.mark.parametrize("crash_at", [1, 16, 31])
def test_sigkill_during_abort_is_finished_by_aborting_again(roots: dict[str, Path], crash_at: int) -> None:
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    after_prepare = trees(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    env = {**os.environ, "KUBEPKI_TEST_CRASH_AT": str(crash_at)}
    proc = subprocess.run([sys.executable, "-m", "kubepki", *cli(roots, "abort", "--apply")], check=False,
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9
    assert rotation_status(c).phase is Phase.TRUST_BOTH  # the records are saved last
    assert abort_rotation(c).ok
    assert {p for n in changed(after_prepare, trees(roots)).values() for p in n} == {
        f"/{PKI}/.kubepki-rotation-ca.json"}
    assert rotation_status(c).phase is Phase.PREPARE


def test_plan_type(roots: dict[str, Path]) -> None:
    plan = plan_rotation(cluster(roots))
    assert isinstance(plan, RotationPlan)
    assert "cp1" in plan.table() and "prepare" in plan.table()
