"""Rotating a kubeadm CA (``kubepki cluster rotate-ca --ca {ca,front-proxy-ca,etcd-ca} --no-restart``).

After every phase, on every node of a 3 control plane + 2 worker ``kubepki.testing`` cluster and of
kubeadm's own HA trees, for each CA: no TLS edge is broken (check_trust), only the plan's paths changed
(modes and owners kept), and ``status`` says where the rotation is. At the end every certificate the CA
signs is the new CA's and the old CA is in no trust file; abort returns byte for byte; a SIGKILL during
apply resumes to the same end state. The restarts themselves need running components: they are proven
on the real cluster (tests/test_rotate_ca_realcluster.py); here the roll's order and its stop on an
unhealthy node are checked with a recording runner.
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
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings, strategies as st

from kubepki import testing
from kubepki._crash import passed
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
from tests import sshd
from tests._figures import count
from tests._hardening import snapshot
from tests.rotation_trees import (
    BACKUPS,
    CPS,
    PKI,
    WORKERS,
    changed,
    cluster,
    copy_cluster,
    ha_trees,
    trees,
)

REPO = Path(__file__).resolve().parents[1]
CAS = ("ca", "front-proxy-ca", "etcd-ca")
_SHA = hashes.SHA256()
#: Each CA's certificate file (node-relative) and the leaves it signs as files.
CA_FILE = {"ca": f"{PKI}/ca.crt", "front-proxy-ca": f"{PKI}/front-proxy-ca.crt", "etcd-ca": f"{PKI}/etcd/ca.crt"}
LEAVES = {
    "ca": (f"{PKI}/apiserver.crt", f"{PKI}/apiserver-kubelet-client.crt",
           "var/lib/kubelet/pki/kubelet-client-current.pem"),
    "front-proxy-ca": (f"{PKI}/front-proxy-client.crt",),
    "etcd-ca": (f"{PKI}/etcd/server.crt", f"{PKI}/etcd/peer.crt", f"{PKI}/etcd/healthcheck-client.crt",
                f"{PKI}/apiserver-etcd-client.crt"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> testing.DemoCluster:
    return testing.build_cluster(tmp_path_factory.mktemp("rot"), nodes=3, workers=2)


@pytest.fixture
def roots(pristine: testing.DemoCluster, tmp_path: Path) -> dict[str, Path]:
    """A private copy of the 3 + 2 cluster: node name -> root."""
    return copy_cluster(pristine, tmp_path)


@pytest.fixture
def ha_roots(tmp_path: Path) -> dict[str, Path]:
    return ha_trees(tmp_path)


def record(ca: str) -> str:
    """The node path of the CA's rotation record."""
    return "/" + str(Path(CA_FILE[ca]).parent / f".kubepki-rotation-{ca}.json")




def assert_trusted(roots: dict[str, Path]) -> None:
    report = check_trust(cluster(roots))
    assert report.broken == (), [e.name for e in report.broken]
    assert report.errors == {}
    # every kubeconfig's client certificate is trusted by every API server it reaches, both ways
    kubeconfig = report.edges_of("kubeconfig")
    assert kubeconfig and all(e.client_auth.verdict.value == "trusted" for e in kubeconfig)
    assert all(e.server_auth.verdict.value == "trusted" for e in kubeconfig)


def ca_certs(root: Path, ca: str = "ca") -> list[x509.Certificate]:
    path = root / CA_FILE[ca]
    return load_certificates(path.read_bytes()) if path.exists() else []


def ca_of(root: Path, ca: str = "ca") -> x509.Certificate:
    return ca_certs(root, ca)[0]


def _file(root: Path, rel: str) -> Path:
    path = root / rel
    if path.is_symlink():  # kubeadm's link is absolute: a node path, under the root here
        path = root / os.readlink(path).lstrip("/")
    return path


def signed_by_ca(root: Path, ca: str = "ca") -> dict[str, x509.Certificate]:
    """Every certificate on the node that the CA signs (for ca: the kubeconfigs' embedded ones too)."""
    out = {rel: load_certificates(_file(root, rel).read_bytes())[0] for rel in LEAVES[ca] if _file(root, rel).exists()}
    if ca == "ca":
        for conf in ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"):
            path = root / "etc/kubernetes" / conf
            if path.exists():
                user = yaml.safe_load(path.read_text())["users"][0]["user"]
                if "client-certificate-data" in user:
                    out[conf] = load_certificates(base64.b64decode(user["client-certificate-data"]))[0]
    return out


def trust_files(root: Path, ca: str = "ca") -> dict[str, list[x509.Certificate]]:
    """Every file on the node a component trusts the CA through."""
    out = {}
    if (root / CA_FILE[ca]).exists():
        out[CA_FILE[ca]] = ca_certs(root, ca)
    if ca != "ca":
        return out
    kubelet = root / "var/lib/kubelet/config.yaml"
    if kubelet.exists():
        named = yaml.safe_load(kubelet.read_text())["authentication"]["x509"]["clientCAFile"]
        out["kubelet clientCAFile"] = load_certificates((root / named.lstrip("/")).read_bytes())
    for conf in (root / "etc/kubernetes").glob("*.conf"):
        cluster_doc = yaml.safe_load(conf.read_text())["clusters"][0]["cluster"]
        out[conf.name] = load_certificates(base64.b64decode(cluster_doc["certificate-authority-data"]))
    return out


def run_phases(roots: dict[str, Path], *, workers: tuple[str, ...], ca: str = "ca"
               ) -> tuple[x509.Certificate, x509.Certificate]:
    """All four phases, checked after each; returns (old CA, new CA)."""
    old = ca_of(roots["cp1"], ca)
    c = cluster(roots)
    assert rotation_status(c, ca=ca).active is False and rotation_status(c, ca=ca).next_phase is Phase.PREPARE
    new: x509.Certificate | None = None
    staged = roots["cp1"] / Path(CA_FILE[ca]).parent / f".kubepki-rotation-{ca}-new"
    for phase in PHASES:
        before = trees(roots)
        plan = plan_rotation(c, ca=ca)
        assert plan.phase is phase and plan.ca == ca
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
        status = rotation_status(c, ca=ca)
        assert status.phase is phase and status.applying is None and set(status.nodes) == set(CPS)
        if phase is Phase.PREPARE:
            assert Path(f"{staged}.key").stat().st_mode & 0o777 == 0o600
            new = load_certificates(Path(f"{staged}.crt").read_bytes())[0]
            assert new.public_key() != old.public_key()
            for w in workers:
                assert not changed(before, after)[w]  # prepare touches only the nodes holding the key
        assert new is not None
        if phase in (Phase.TRUST_BOTH, Phase.REISSUE):
            # the old CA first while it signs (kubeadm signs with the file's first certificate), then the new
            order = [old, new] if phase is Phase.TRUST_BOTH else [new, old]
            for name, root in roots.items():
                if (root / CA_FILE[ca]).exists():
                    assert ca_certs(root, ca) == order, (name, phase)
                for where, certs in trust_files(root, ca).items():
                    assert {old, new} <= set(certs), (name, where)
    assert new is not None
    assert rotation_status(c, ca=ca).next_phase is None
    with pytest.raises(ConfigError, match="complete"):
        plan_rotation(c, ca=ca)
    return old, new


def assert_rotated(roots: dict[str, Path], old: x509.Certificate, new: x509.Certificate, ca: str = "ca") -> None:
    for name, root in roots.items():
        if not (root / CA_FILE[ca]).exists():
            continue
        assert ca_certs(root, ca) == [new]
        leaves = signed_by_ca(root, ca)
        assert leaves or name in WORKERS, name
        for where, cert in leaves.items():
            assert signed_by(cert, new) and not signed_by(cert, old), (name, where)
        for rel in LEAVES[ca]:  # re-signed over the same key: the pair still matches
            if _file(root, rel).exists() and rel.endswith(".pem"):
                data = _file(root, rel).read_bytes()
                assert public_key_der(load_private_key(data)) == public_key_der(
                    load_certificates(data)[0].public_key())  # type: ignore[arg-type]
        for where, certs in trust_files(root, ca).items():
            assert old not in certs, (name, where)
        assert not list((root / CA_FILE[ca]).parent.glob(f".kubepki-rotation-{ca}-*"))  # copies and undos gone
        path = root / "etc/kubernetes/manifests/kube-controller-manager.yaml"
        if path.exists():
            assert ".kubepki-rotation" not in path.read_text()


@pytest.mark.parametrize("ca", CAS)
def test_four_phases_on_three_control_planes_and_two_workers(roots: dict[str, Path], ca: str) -> None:
    others = {o: ca_of(roots["cp1"], o) for o in CAS if o != ca}
    old, new = run_phases(roots, workers=WORKERS, ca=ca)
    assert_rotated(roots, old, new, ca)
    # the kubeadm layout is back: every flag names the CA file, which is the new CA alone
    for cp in CPS:
        kcm = (roots[cp] / "etc/kubernetes/manifests/kube-controller-manager.yaml").read_text()
        assert "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt" in kcm
        assert "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key" in kcm
    for w in WORKERS:
        assert "clientCAFile: /etc/kubernetes/pki/ca.crt" in (roots[w] / "var/lib/kubelet/config.yaml").read_text()
        assert not (roots[w] / PKI / "front-proxy-ca.crt").exists()  # a worker has none: nothing created
    for o, cert in others.items():  # the other CAs are untouched
        assert all(ca_certs(roots[cp], o) == [cert] for cp in CPS), o


@pytest.mark.parametrize("ca", CAS)
def test_four_phases_on_kubeadm_ha_trees(ha_roots: dict[str, Path], ca: str) -> None:
    """kubeadm's own trees (no manifests, no kubelet config, kubelet.conf with embedded data)."""
    old, new = run_phases(ha_roots, workers=(), ca=ca)
    assert_rotated(ha_roots, old, new, ca)


def test_kubeadm_ha_trees_plan_says_what_it_cannot_point(ha_roots: dict[str, Path]) -> None:
    """Without manifests, KCM's signing flags are not kubepki's to change: the plan says so."""
    c = cluster(ha_roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    notes = " ".join(plan_rotation(c).notes)
    assert "cp2: no kube-controller-manager manifest" in notes


def test_trust_both_keeps_the_signing_certificate_single_on_a_copy(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    plan = plan_rotation(c)
    assert plan.phase is Phase.TRUST_BOTH
    copy = "/etc/kubernetes/pki/.kubepki-rotation-ca-signing.crt"
    paths = {(ch.node, ch.path) for ch in plan.changes}
    assert ("cp1", "/etc/kubernetes/pki/ca.crt") in paths and ("w1", "/etc/kubernetes/pki/ca.crt") in paths
    assert ("cp1", copy) in paths and ("w1", copy) not in paths
    # kube-apiserver reloads --client-ca-file (E5): KCM (--root-ca-file), the scheduler and the kubelet
    # (their kubeconfigs' embedded CA) restart; a worker restarts only its kubelet
    assert plan.restarts["w1"] == ("kubelet",)
    assert plan.restarts["cp1"] == ("kube-controller-manager", "kube-scheduler", "kubelet")
    assert apply_rotation(plan, backup_dir=BACKUPS).ok
    kcm = (roots["cp1"] / "etc/kubernetes/manifests/kube-controller-manager.yaml").read_text()
    assert f"--cluster-signing-cert-file={copy}" in kcm
    assert "--cluster-signing-key-file=/etc/kubernetes/pki/.kubepki-rotation-ca-signing.key" in kcm
    assert "--root-ca-file=/etc/kubernetes/pki/ca.crt" in kcm  # the bundle: kube-root-ca.crt carries both
    signing = load_certificates((roots["cp1"] / copy.lstrip("/")).read_bytes())
    assert signing == [ca_certs(roots["cp1"])[0]]  # one certificate: the old CA, which still signs
    assert (roots["cp1"] / PKI / ".kubepki-rotation-ca-signing.key").stat().st_mode & 0o777 == 0o600
    api = (roots["cp1"] / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
    assert "--client-ca-file=/etc/kubernetes/pki/ca.crt" in api  # unchanged: no kube-apiserver restart
    reissue = plan_rotation(c)
    assert "kube-apiserver" not in reissue.restarts["cp1"]
    assert any("--discovery-token-ca-cert-hash sha256:" in n for n in reissue.notes)


def test_etcd_ca_restarts_etcd_and_the_apiserver(roots: dict[str, Path]) -> None:
    """kube-apiserver reads --etcd-cafile at start only (E4b): every etcd-ca phase restarts it with etcd."""
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c, ca="etcd-ca"), backup_dir=BACKUPS).ok
    plan = plan_rotation(c, ca="etcd-ca")
    assert plan.restarts == dict.fromkeys(CPS, ("etcd", "kube-apiserver"))
    assert {ch.node for ch in plan.changes} == set(CPS)
    fp = plan_rotation(c, ca="front-proxy-ca")  # negative control: front-proxy-ca reloads everywhere (E2, E8)
    assert fp.phase is Phase.PREPARE and fp.restarts == {}


def test_rotations_of_two_cas_are_independent(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    for _ in range(2):
        assert apply_rotation(plan_rotation(c, ca="front-proxy-ca"), backup_dir=BACKUPS).ok
    assert rotation_status(c, ca="front-proxy-ca").phase is Phase.TRUST_BOTH
    assert rotation_status(c, ca="ca").active is False
    old, new = run_phases(roots, workers=WORKERS, ca="ca")
    assert_rotated(roots, old, new, "ca")
    assert rotation_status(c, ca="front-proxy-ca").phase is Phase.TRUST_BOTH
    assert_trusted(roots)
    with pytest.raises(ConfigError, match="unknown CA 'sa'"):
        plan_rotation(c, ca="sa")


def test_a_second_rotation_after_a_finished_one(roots: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    c = cluster(roots)
    first_old, first_new = run_phases(roots, workers=WORKERS, ca="front-proxy-ca")
    assert main(cli(roots, "next", "--ca", "front-proxy-ca")) == 3  # finished: refused without --again
    assert "--again" in capsys.readouterr().err
    assert main(cli(roots, "next", "--ca", "front-proxy-ca", "--again", "--no-restart", "--apply")) == 0
    capsys.readouterr()
    status = rotation_status(c, ca="front-proxy-ca")
    assert status.phase is Phase.PREPARE and status.old_ca is not None
    assert [h["event"] for h in status.history].count("verified") == 5  # the first rotation's history kept
    for _ in range(3):
        assert apply_rotation(plan_rotation(c, ca="front-proxy-ca"), backup_dir=BACKUPS).ok
    second = ca_of(roots["cp1"], "front-proxy-ca")
    assert second not in (first_old, first_new)
    assert_rotated(roots, first_new, second, "front-proxy-ca")


@pytest.mark.parametrize("ca", CAS)
def test_a_ca_file_that_lost_the_new_ca_breaks_edges(roots: dict[str, Path], ca: str) -> None:
    """Negative control: after reissue, a node whose CA file trusts the old CA alone again (an operator's
    copy, a config manager) no longer trusts the re-issued certificates: check_trust names the edges, and
    drop-old's verification fails."""
    c = cluster(roots)
    old = ca_of(roots["cp2"], ca)
    for _ in range(3):
        assert apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS).ok
    assert check_trust(c).broken == ()  # positive control
    saved = (roots["cp2"] / CA_FILE[ca]).read_bytes()
    (roots["cp2"] / CA_FILE[ca]).write_bytes(old.public_bytes(Encoding.PEM))
    broken = {e.name for e in check_trust(c).broken}
    assert broken and all("cp2" in b for b in broken), broken
    (roots["cp2"] / CA_FILE[ca]).write_bytes(saved)
    assert check_trust(c).broken == ()


def test_skipping_trust_both_breaks_edges(roots: dict[str, Path]) -> None:
    """Negative control: reissuing right after prepare (a record forged to skip trust-both) breaks the
    kubeconfig edges (their CA data: the old CA alone; the server: new), and check_trust names them."""
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
    assert "cp1 admin.conf -> cp1 kube-apiserver" in broken
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


@pytest.mark.parametrize("ca", CAS)
def test_abort_from_reissue_brings_the_old_signer_back(roots: dict[str, Path], ca: str) -> None:
    c = cluster(roots)
    key = Path(CA_FILE[ca].replace(".crt", ".key"))
    old_key = (roots["cp1"] / key).read_bytes()
    for _ in range(2):
        assert apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS).ok
    after_trust_both = trees(roots)
    assert apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS).ok
    assert (roots["cp1"] / key).read_bytes() != old_key
    result = abort_rotation(c, ca=ca)
    assert result.ok and result.phase is Phase.REISSUE and result.trust.broken == ()
    assert (roots["cp1"] / key).read_bytes() == old_key
    assert {p for n in changed(after_trust_both, trees(roots)).values() for p in n} == {record(ca)}
    assert rotation_status(c, ca=ca).phase is Phase.TRUST_BOTH
    for _ in range(2):  # and the rotation goes on from there
        assert apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS).ok
    assert rotation_status(c, ca=ca).next_phase is None


@pytest.mark.parametrize("ca", CAS)
def test_abort_from_trust_both_restores_every_byte(roots: dict[str, Path], ca: str) -> None:
    c = cluster(roots)
    with pytest.raises(ConfigError, match="nothing to abort"):
        abort_rotation(c, ca=ca)
    original = trees(roots)
    assert apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS).ok
    after_prepare = trees(roots)
    assert after_prepare != original
    assert apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS).ok
    assert trees(roots) != after_prepare
    result = abort_rotation(c, ca=ca)
    assert result.ok and result.phase is Phase.TRUST_BOTH
    # back to prepare, verified: every file as it was, but the record, whose history says "aborted"
    assert changed(after_prepare, trees(roots)) == {n: {record(ca)} if n in CPS else set() for n in roots}
    assert rotation_status(c, ca=ca).history[-1]["event"] == "aborted"
    assert rotation_status(c, ca=ca).phase is Phase.PREPARE
    assert_trusted(roots)
    assert abort_rotation(c, ca=ca).phase is Phase.PREPARE
    assert trees(roots) == original  # byte for byte, modes and owners too
    assert rotation_status(c, ca=ca).active is False


def test_restarts_roll_node_by_node_and_stop_at_an_unhealthy_node(roots: dict[str, Path]) -> None:
    """With restart=True the plan's restarts roll one node at a time, each healthy before the next. The
    component restarts need running components (proven on the real cluster): here a recording runner
    stands in for them, and a health check that fails for cp2 stops the roll there, unverified."""
    from kubepki.restarts import RestartReport

    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS, restart=True).ok  # prepare: nothing to restart
    plan = plan_rotation(c)
    calls: list[tuple[str, tuple[str, ...]]] = []

    def runner(node_plan, node):  # type: ignore[no-untyped-def]
        calls.append((node_plan.node, tuple(s.component.value for s in node_plan.steps
                                                  if s.action.value == "restart")))
        return RestartReport(node=node_plan.node, plan=node_plan, dry_run=False, outcomes=())

    def health(label: str, node: Node) -> bool:
        if label == "cp2":
            raise ConfigError("cp2's kube-controller-manager does not answer")
        return True

    result = apply_rotation(plan, backup_dir=BACKUPS, restart=True, runner=runner, health=health,
                            health_timeout=0.1)
    assert not result.ok
    assert [n for n, _ in calls] == ["cp1", "cp2"]  # cp3 and the workers were not touched
    assert calls[0][1] == ("kube-controller-manager", "kube-scheduler", "kubelet")
    assert result.restarts is not None and result.restarts.failed == "cp2"
    assert result.restarts.not_attempted == ("cp3", "w1", "w2")
    assert any("restarts stopped at cp2" in p for p in result.problems)
    status = rotation_status(c)
    assert status.applying is Phase.TRUST_BOTH  # not verified: next --apply carries it out again
    calls.clear()
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS, restart=True, runner=runner,
                          health=lambda label, node: True).ok
    assert [n for n, _ in calls] == ["cp1", "cp2", "cp3", "w1", "w2"]
    assert dict(calls)["w1"] == ("kubelet",)


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
    copy = roots["cp3"] / PKI / ".kubepki-rotation-ca-signing.crt"
    copy.write_bytes(b"")  # a create's path taken meanwhile
    with pytest.raises(ConfigError, match=r"cp3:/etc/kubernetes/pki/.kubepki-rotation-ca-signing.crt changed"):
        apply_rotation(plan, backup_dir=BACKUPS)
    copy.unlink()
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


def test_records_naming_different_old_cas_are_refused(roots: dict[str, Path]) -> None:
    """The nodes' records must be of one rotation: one naming another old CA is refused, not merged."""
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    assert rotation_status(c).nodes == CPS  # positive control: three records of one rotation
    state = roots["cp3"] / PKI / ".kubepki-rotation-ca.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "old_ca_sha256": "0" * 64}))
    with pytest.raises(ConfigError, match=r"the nodes' ca rotation records name different old CAs: "
                                          r"\['cp1', 'cp2', 'cp3'\]"):
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


def test_the_parser_offers_every_rotation_ca() -> None:
    from kubepki.cli.cluster import _ROTATION_CAS
    from kubepki.cluster import ROTATION_CAS

    assert _ROTATION_CAS == ROTATION_CAS == CAS


def test_cli(roots: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cli(roots, "status", "-o", "json")) == 0
    assert json.loads(capsys.readouterr().out)["next"] == "prepare"
    with pytest.raises(SystemExit) as refused:  # argparse: not a CA it rotates
        main(cli(roots, "plan", "--ca", "sa"))
    assert refused.value.code == 3 and "invalid choice: 'sa'" in capsys.readouterr().err
    assert main(cli(roots, "plan")) == 0
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
            assert "would undo trust-both of ca" in capsys.readouterr().out
    assert main(cli(roots, "next", "--no-restart")) == 3
    assert "complete" in capsys.readouterr().err


def test_cli_etcd_ca_plan_lists_each_nodes_restarts(roots: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cli(roots, "next", "--ca", "etcd-ca", "--apply", "-o", "json")) == 0  # prepare: no restart
    assert json.loads(capsys.readouterr().out)["restarts"] is None
    assert main(cli(roots, "plan", "--ca", "etcd-ca")) == 0
    out = capsys.readouterr().out
    assert "CA ROTATION (etcd-ca): trust-both" in out
    assert all(f"restart on {cp} (in this order, node by node" in out for cp in CPS)
    assert "etcd, kube-apiserver" in out and "restart on w1" not in out
    assert main(cli(roots, "status", "--ca", "etcd-ca", "-o", "json")) == 0
    assert json.loads(capsys.readouterr().out)["next"] == "trust-both"
    assert main(cli(roots, "status", "-o", "json")) == 0  # the cluster CA's rotation: not started
    assert json.loads(capsys.readouterr().out)["next"] == "prepare"


# -- crash: SIGKILL at checkpoints of a phase, then next --apply resumes ------------------------


def run_cli(roots: dict[str, Path], *extra: str, crash_at: int | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "KUBEPKI_TEST_CRASH_AT"}
    if crash_at is not None:
        env["KUBEPKI_TEST_CRASH_AT"] = str(crash_at)
    proc = subprocess.run([sys.executable, "-m", "kubepki", *cli(roots, "next", "--no-restart", *extra)],
                          check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode


def checkpoints(roots: dict[str, Path], ca: str, tmp: Path) -> int:
    """How many checkpoints the next phase passes (each node's backup, each record, each file), counted
    by applying it to a copy."""
    copy = {}
    for name, root in roots.items():
        copy[name] = tmp / name
        shutil.copytree(root, copy[name], symlinks=True)
    start = passed()
    assert apply_rotation(plan_rotation(cluster(copy), ca=ca), backup_dir=BACKUPS).ok
    return passed() - start


#: Where to kill: the first checkpoint (the first backup), the first record, the middle of the files, the last.
WHERE = {"first": lambda n: 1, "record": lambda n: 6, "middle": lambda n: n // 2 + 3, "last": lambda n: n}
#: Through the CLI (a real process, killed for real); every checkpoint of every CA is swept in-process
#: by test_sigkill_at_every_checkpoint_of_every_phase_resumes.
CRASHES = [("ca", p, w) for p in PHASES for w in ("record", "last")] + [("etcd-ca", Phase.REISSUE, "middle")]


@pytest.mark.parametrize(("ca", "phase", "where"), CRASHES, ids=[f"{c}-{p.value}-{w}" for c, p, w in CRASHES])
def test_sigkill_during_a_phase_resumes_to_the_same_end(roots: dict[str, Path], tmp_path: Path, ca: str,
                                                        phase: Phase, where: str) -> None:
    """SIGKILL at a checkpoint of `next --apply` (backups, records, each file); a plain `next --apply` then
    finishes the phase, verified; its undo record still holds the files as they were before the phase
    (abort returns to them); and the rotation runs on to the same end state."""
    c = cluster(roots)
    old = ca_of(roots["cp1"], ca)
    for _ in range(PHASES.index(phase)):
        assert apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS).ok
    total = checkpoints(roots, ca, tmp_path / "count")
    before = trees(roots)
    previous = rotation_status(c, ca=ca).phase
    crash_at = WHERE[where](total)
    assert run_cli(roots, "--ca", ca, "--apply", crash_at=crash_at) == -9  # killed: the checkpoint was reached
    status = rotation_status(c, ca=ca)
    if status.applying is None:  # killed in the first backup: nothing in the trees changed yet
        assert status.phase is previous and trees(roots) == before
    else:
        assert status.applying is phase and status.phase is previous
        assert plan_rotation(c, ca=ca).phase is phase
    assert run_cli(roots, "--ca", ca, "--apply") == 0
    status = rotation_status(c, ca=ca)
    assert status.phase is phase and status.applying is None
    assert_trusted(roots)
    if phase is Phase.DROP_OLD:  # no way back from drop-old: resumed, it ends the rotation
        assert_rotated(roots, old, ca_of(roots["cp1"], ca), ca)
        return
    assert abort_rotation(c, ca=ca).ok
    assert {p for n in changed(before, trees(roots)).values() for p in n} <= {record(ca)}
    for _ in range(PHASES.index(phase), len(PHASES)):
        assert apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS).ok
    assert_rotated(roots, old, ca_of(roots["cp1"], ca), ca)


def test_a_resumed_phase_still_restarts_what_reads_the_files_written_before_the_crash(
        roots: dict[str, Path]) -> None:
    """A phase killed after its files were written plans no file any more, but the restarts it needs are
    kept in the record: the resumed plan lists them (else the readers would never load the new files)."""
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    wanted = plan_rotation(c).restarts
    total = checkpoints(roots, "ca", roots["cp1"].parent / "count")
    assert run_cli(roots, "--apply", crash_at=total) == -9  # every file written, not verified
    resumed = plan_rotation(c)
    assert resumed.phase is Phase.TRUST_BOTH
    assert all(ch.action == "record" for ch in resumed.changes)  # nothing left to write...
    assert resumed.restarts == wanted  # ...but the same restarts


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_sigkill_during_abort_is_finished_by_aborting_again(roots: dict[str, Path], tmp_path: Path,
                                                            where: str) -> None:
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    after_prepare = trees(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS).ok
    copy = {}
    for name, root in roots.items():  # count the abort's checkpoints (each file put back) on a copy
        copy[name] = tmp_path / "count" / name
        shutil.copytree(root, copy[name], symlinks=True)
    start = passed()
    assert abort_rotation(cluster(copy)).ok
    total = passed() - start
    crash_at = {"first": 1, "middle": total // 2, "last": total}[where]
    env = {**os.environ, "KUBEPKI_TEST_CRASH_AT": str(crash_at)}
    proc = subprocess.run([sys.executable, "-m", "kubepki", *cli(roots, "abort", "--no-restart", "--apply")],
                          check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert rotation_status(c).phase is Phase.TRUST_BOTH  # the records are saved last
    assert abort_rotation(c).ok
    assert {p for n in changed(after_prepare, trees(roots)).values() for p in n} == {record("ca")}
    assert rotation_status(c).phase is Phase.PREPARE


def test_plan_type(roots: dict[str, Path]) -> None:
    plan = plan_rotation(cluster(roots))
    assert isinstance(plan, RotationPlan)
    assert "cp1" in plan.table() and "prepare" in plan.table()


# -- live objects: the caBundle rewrite (the API round trip is proven on the real cluster) -----------


def test_a_ca_bundle_gets_the_phases_cas_and_keeps_its_others(pristine: testing.DemoCluster) -> None:
    from kubepki.cluster._rotate_objects import _fp, _pem, _rebundled

    root = pristine.first.root
    old, other = ca_of(root), ca_of(root, "front-proxy-ca")
    new = ca_of(root, "etcd-ca")  # stands for the new CA: any other certificate
    rotated = {_fp(old), _fp(new)}
    after = _rebundled(_pem([other, old]), rotated, [old, new])  # trust-both: the new CA added
    assert after is not None and load_certificates(after) == [old, new, other]
    assert _rebundled(after, rotated, [old, new]) is None  # already so: nothing to write
    dropped = _rebundled(after, rotated, [new])  # drop-old: the old CA leaves, the webhook's own CA stays
    assert dropped is not None and load_certificates(dropped) == [new, other]
    # negative controls: a bundle without the rotated CA (a webhook's own CA) and bytes that are no PEM
    assert _rebundled(_pem([other]), rotated, [new]) is None
    assert _rebundled(b"not a certificate", rotated, [new]) is None


# -- over SSH: the same rotation through SFTP ---------------------------------------------------


@pytest.mark.skipif(sshd.SKIP_REASON is not None, reason=sshd.SKIP_REASON or "")
def test_the_four_phases_over_ssh(tmp_path: Path) -> None:
    """Two control planes and a worker, each behind its own real sshd (the rotation reads, locks, backs
    up and writes through SFTP): every phase verified, and the end state as on local directories."""
    demo = testing.build_cluster(tmp_path / "served", nodes=2, workers=1)
    roots = {n.name: n.root for n in demo.nodes}
    old = ca_of(roots["cp1"])
    with sshd.fleet(tmp_path / "sshd", 3) as fleet:
        known_hosts = fleet.known_hosts(tmp_path / "known_hosts")
        targets = {n.name: f"ssh://root@127.0.0.1:{s.port}{n.root}"
                   for n, s in zip(demo.nodes, fleet.servers, strict=True)}
        for phase in PHASES:
            with Cluster.from_targets(targets, key=fleet.client_key, known_hosts=known_hosts,
                                      roles={"w1": "worker"}) as c:
                plan = plan_rotation(c)
                assert plan.phase is phase
                result = apply_rotation(plan, backup_dir=BACKUPS)
                assert result.ok, result.problems
                assert set(result.backups) == {"cp1", "cp2", "w1"}
                assert rotation_status(c).phase is phase
    new = ca_of(roots["cp1"])
    assert new != old
    assert_rotated(roots, old, new)
    assert_trusted(roots)
    for name, root in roots.items():  # each node's backups were written on the node, through SFTP
        assert list((root / BACKUPS.lstrip("/")).glob("*.tar*")), name


def test_restarts_on_node_directories_are_refused_before_anything_is_written(
        roots: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing to restart runs on a node directory: restarting would wait minutes for components that
    never come, so the phase (and an abort) is refused before any write; --no-restart is the way."""
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c), backup_dir=BACKUPS, restart=True).ok  # prepare: no restart
    before = snapshot_all(roots)
    with pytest.raises(ConfigError, match=r"none of the components to restart runs on cp1 \(.*kube-controller-manager"):
        apply_rotation(plan_rotation(c), backup_dir=BACKUPS, restart=True)
    assert snapshot_all(roots) == before  # not even a backup
    assert main(cli(roots, "next", "--apply")) == 3
    assert "--no-restart" in capsys.readouterr().err
    assert snapshot_all(roots) == before
    assert main(cli(roots, "next", "--no-restart", "--apply")) == 0  # positive control
    with pytest.raises(ConfigError, match="none of the components to restart runs"):
        abort_rotation(c, restart=True)
    assert rotation_status(c).phase is Phase.TRUST_BOTH  # the abort wrote nothing
    assert abort_rotation(c).ok


# -- every checkpoint: a forked child is SIGKILLed at each one, the parent resumes ------------------


def _copy(roots: dict[str, Path], dest: Path) -> dict[str, Path]:
    out = {}
    for name, root in roots.items():
        out[name] = dest / name
        shutil.copytree(root, out[name], symlinks=True)
    return out


def _killed_at(roots: dict[str, Path], ca: str, n: int) -> int:
    """Run the next phase in a forked child that SIGKILLs itself at its n-th checkpoint; the signal."""
    from kubepki import _crash

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            _crash._count[0] = 0
            os.environ[_crash.CRASH_ENV] = str(n)
            apply_rotation(plan_rotation(cluster(roots), ca=ca), backup_dir=BACKUPS)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)


@pytest.mark.parametrize("ca", CAS)
def test_sigkill_at_every_checkpoint_of_every_phase_resumes(pristine: testing.DemoCluster, tmp_path: Path,
                                                            ca: str) -> None:
    """For each phase and each of its checkpoints (each node's backup, each record, each file): killed
    there, the phase resumed by the next apply is verified, the CA files hold the phase's CAs in the
    phase's order, and no TLS edge is broken; one past the last checkpoint nothing is killed."""
    base = _copy({n.name: n.root for n in pristine.nodes}, tmp_path / "base")
    killed = 0
    for i, phase in enumerate(PHASES):
        total = checkpoints(base, ca, tmp_path / f"count-{i}")
        for n in range(1, total + 1):
            work = _copy(base, tmp_path / f"{i}-{n}")
            assert _killed_at(work, ca, n) == 9, (phase, n)
            killed += 1
            c = cluster(work)
            assert rotation_status(c, ca=ca).phase is (PHASES[i - 1] if i else None)
            result = apply_rotation(plan_rotation(c, ca=ca), backup_dir=BACKUPS)
            assert result.ok, (phase, n, result.problems)
            status = rotation_status(c, ca=ca)
            assert status.phase is phase and status.applying is None, (phase, n)
            files = {name: [x.fingerprint(_SHA).hex() for x in ca_certs(root, ca)] for name, root in work.items()
                     if (root / CA_FILE[ca]).exists()}
            want = {Phase.PREPARE: [status.old_ca], Phase.TRUST_BOTH: [status.old_ca, status.new_ca],
                    Phase.REISSUE: [status.new_ca, status.old_ca], Phase.DROP_OLD: [status.new_ca]}[phase]
            assert all(f == want for f in files.values()), (phase, n, files)
            shutil.rmtree(tmp_path / f"{i}-{n}")
        work = _copy(base, tmp_path / f"{i}-past")
        assert _killed_at(work, ca, total + 1) == 0  # control: one past the last checkpoint, no kill
        assert rotation_status(cluster(work), ca=ca).phase is phase
        assert apply_rotation(plan_rotation(cluster(base), ca=ca), backup_dir=BACKUPS).ok
    assert_trusted(base)
    count("crashes survived", killed)
