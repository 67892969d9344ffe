"""The CIS Kubernetes Benchmark checks (kubepki/inspection/_cis.py) and ``kubepki permissions fix``.

Every rule is tried on real demo trees of each node role: a looser mode or another owner (the
positive check) beside a stricter mode or the right owner (its negative control). The trees
are kubepki.testing's, which follow kubeadm's modes, and a real kubeadm tree from
/work/shared/fixtures; the fix runs on a local root and over a real SSH server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

import kubepki
from kubepki import testing
from kubepki.catalog import NodeRole
from kubepki.cli import main
from kubepki.errors import ConfigError, LockError, NodeError, RenewalError
from kubepki.inspection import Severity
from kubepki.inspection._cis import IDS, CisReport, Verdict
from kubepki.node import Node, node_lock
from kubepki.permissions import apply_permissions, plan_permissions, plan_permissions_undo
from tests.kubeadm_trees import materialize
from tests.test_ssh import Connector, connect, fleet, known_hosts  # noqa: F401 - the SSH fixtures

WHEN = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)
ROLES = (NodeRole.CONTROL_PLANE, NodeRole.WORKER, NodeRole.ETCD)
FILE_RULE_IDS = {i for i in IDS if i.startswith(("1.1.", "4.1."))}
MANIFESTS = "/etc/kubernetes/manifests"


def _demo(tmp_path: Path, role: NodeRole = NodeRole.CONTROL_PLANE) -> Path:
    return testing.build_node(tmp_path / role.value, issued_at=WHEN, role=role).root


def _cis(root: Path) -> tuple[kubepki.Inventory, CisReport]:
    inv = kubepki.inspect(root, now=WHEN)
    assert inv.cis is not None
    return inv, inv.cis


def _findings(inv: kubepki.Inventory, cis_id: str) -> list[kubepki.Finding]:
    return [f for _item, f in inv.findings if f.cis == cis_id]


def _p(root: Path, node_path: str) -> Path:
    return root / node_path.lstrip("/")


# -- kubeadm's own trees pass ----------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_kubeadm_modes_pass_every_file_rule(role: NodeRole, tmp_path: Path) -> None:
    """A demo node of each role as kubeadm writes it: no file rule fails but 4.1.9 (kubeadm writes
    config.yaml 0644, an info finding only), no benchmark warning on any item, check exits 0."""
    root = _demo(tmp_path, role)
    inv, report = _cis(root)
    failed = {r.id for r in report.results if r.id in FILE_RULE_IDS and r.verdict in (Verdict.FAIL, Verdict.WARN)}
    assert failed <= {"4.1.9"}, report.text()
    assert not [f for _i, f in inv.findings if f.cis], inv.findings
    assert kubepki.cli.exit_status(inv) == 0
    # the rules of the node's role and no others
    ids = {r.id for r in report.results}
    if role is NodeRole.WORKER:
        assert all(i.startswith("4.") for i in ids)
    else:
        assert "1.1.21" in ids and "2.2" in ids
        assert ("1.2.25" in ids) is (role is NodeRole.CONTROL_PLANE)


def test_a_real_kubeadm_tree_passes_the_pki_rules(tmp_path: Path) -> None:
    """The tree a real kubeadm wrote (its modes from FILES.txt): 1.1.13-1.1.21 and 4.1.5/4.1.6 pass."""
    root = materialize("single-full", tmp_path / "n")
    _inv, report = _cis(root)
    for cis_id in ("1.1.13", "1.1.14", "1.1.15", "1.1.17", "1.1.19", "1.1.20", "1.1.21", "4.1.5", "4.1.6"):
        assert report[cis_id].verdict is Verdict.PASS, report.text()
    assert {f.path for f in report["1.1.21"].files} >= {"/etc/kubernetes/pki/etcd/peer.key",
                                                        "/etc/kubernetes/pki/sa.key"}


# -- the reproduction ----------------------------------------------------------------------


def test_a_world_readable_ca_key_fails_check_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``chmod 0666 ca.key`` and ``kubepki check -q`` exits 2 with the CIS id and the fix; control: 0600 exits 0."""
    root = _demo(tmp_path)
    key = _p(root, "/etc/kubernetes/pki/ca.key")
    assert main(["check", "-q", "--root", str(root), "--now", WHEN.isoformat()]) == 0
    capsys.readouterr()
    key.chmod(0o666)
    assert main(["check", "-q", "--root", str(root), "--now", WHEN.isoformat()]) == 2
    out = capsys.readouterr().out
    assert re.search(r"ERROR\s+ca\s+cis-file-mode\s+CIS 1\.1\.21 .*chmod 0600 /etc/kubernetes/pki/ca.key", out), out
    assert main(["check", "-o", "json", "--root", str(root), "--now", WHEN.isoformat()]) == 2
    doc = json.loads(capsys.readouterr().out)
    ca = next(i for i in doc["items"] if i["name"] == "ca")
    assert {"code": "cis-file-mode", "severity": "error", "cis": "1.1.21"}.items() <= ca["findings"][-1].items()


def test_an_inventory_of_some_items_keeps_other_files_findings_out(tmp_path: Path) -> None:
    """inspect(names=["apiserver"]) with ca.key 0666: no benchmark finding on apiserver (it is ca's);
    control: the whole inventory has it on ca."""
    root = _demo(tmp_path)
    _p(root, "/etc/kubernetes/pki/ca.key").chmod(0o666)
    some = kubepki.inspect(root, now=WHEN, names=["apiserver"])
    assert [f for _i, f in some.findings if f.cis] == []
    whole = kubepki.inspect(root, now=WHEN)
    assert [(i.name, f.cis) for i, f in whole.findings if f.cis] == [("ca", "1.1.21")]


# -- file rules, each with its negative control --------------------------------------------------

#: (id, role, node path, a looser mode and its severity, a stricter mode that passes)
MODE_CASES = [
    ("1.1.1", NodeRole.CONTROL_PLANE, "/etc/kubernetes/manifests/kube-apiserver.yaml", 0o644, "warning", 0o400),
    ("1.1.3", NodeRole.CONTROL_PLANE, "/etc/kubernetes/manifests/kube-controller-manager.yaml", 0o660, "warning",
     0o400),
    ("1.1.5", NodeRole.CONTROL_PLANE, "/etc/kubernetes/manifests/kube-scheduler.yaml", 0o604, "warning", 0o000),
    ("1.1.7", NodeRole.CONTROL_PLANE, "/etc/kubernetes/manifests/etcd.yaml", 0o640, "warning", 0o400),
    ("1.1.7", NodeRole.ETCD, "/etc/kubernetes/manifests/etcd.yaml", 0o700, "warning", 0o600),
    ("1.1.13", NodeRole.CONTROL_PLANE, "/etc/kubernetes/admin.conf", 0o644, "error", 0o400),
    ("1.1.13", NodeRole.CONTROL_PLANE, "/etc/kubernetes/super-admin.conf", 0o640, "error", 0o400),
    ("1.1.15", NodeRole.CONTROL_PLANE, "/etc/kubernetes/scheduler.conf", 0o606, "error", 0o400),
    ("1.1.17", NodeRole.CONTROL_PLANE, "/etc/kubernetes/controller-manager.conf", 0o660, "error", 0o400),
    ("1.1.20", NodeRole.CONTROL_PLANE, "/etc/kubernetes/pki/apiserver.crt", 0o664, "warning", 0o444),
    ("1.1.20", NodeRole.ETCD, "/etc/kubernetes/pki/etcd/server.crt", 0o666, "warning", 0o600),
    ("1.1.21", NodeRole.CONTROL_PLANE, "/etc/kubernetes/pki/sa.key", 0o644, "error", 0o400),
    ("1.1.21", NodeRole.CONTROL_PLANE, "/etc/kubernetes/pki/etcd/peer.key", 0o640, "error", 0o400),
    ("1.1.21", NodeRole.ETCD, "/etc/kubernetes/pki/etcd/ca.key", 0o700, "warning", 0o400),
    ("4.1.5", NodeRole.WORKER, "/etc/kubernetes/kubelet.conf", 0o644, "error", 0o400),
    ("4.1.5", NodeRole.CONTROL_PLANE, "/etc/kubernetes/kubelet.conf", 0o620, "error", 0o600),
    ("4.1.7", NodeRole.WORKER, "/etc/kubernetes/pki/ca.crt", 0o664, "warning", 0o444),
    ("4.1.9", NodeRole.WORKER, "/var/lib/kubelet/config.yaml", 0o666, "warning", 0o600),
    ("4.1.9", NodeRole.CONTROL_PLANE, "/var/lib/kubelet/config.yaml", 0o646, "warning", 0o400),
]


@pytest.mark.parametrize(("cis_id", "role", "path", "loose", "severity", "strict"), MODE_CASES,
                         ids=[f"{c[0]}-{c[1].value}-{PurePosixPath(c[2]).name}" for c in MODE_CASES])
def test_mode_rule(cis_id: str, role: NodeRole, path: str, loose: int, severity: str, strict: int,  # noqa: PLR0917
                   tmp_path: Path) -> None:
    """A looser mode fails the rule with a finding naming the chmod that fixes it (removing only the
    disallowed bits); the stricter mode passes with no finding."""
    root = _demo(tmp_path, role)
    target = _p(root, path)
    target.chmod(loose)
    inv, report = _cis(root)
    result = report[cis_id]
    scored_verdict = Verdict.FAIL if result.scored else Verdict.WARN
    assert result.verdict is scored_verdict, report.text()
    found = [f for f in _findings(inv, cis_id) if path in f.message]
    assert [f.severity.value for f in found] == [severity]
    allowed = {"1.1.20": 0o644, "4.1.7": 0o644}.get(cis_id, 0o600)
    assert f"chmod {format(loose & allowed, '04o')} {path}" in found[0].message
    assert next(f for f in result.files if f.path == path).fix_mode == loose & allowed

    target.chmod(strict)
    inv, report = _cis(root)
    assert report[cis_id].verdict is Verdict.PASS, report.text()
    assert _findings(inv, cis_id) == []


def test_kubeadms_own_kubelet_config_mode_is_only_info(tmp_path: Path) -> None:
    """config.yaml at 0644 (kubeadm's mode): 4.1.9 fails as in kube-bench but only as an info finding in the
    benchmark view, none on the inventory; 0664 is beyond kubeadm's mode: a warning on kubelet.conf."""
    root = _demo(tmp_path, NodeRole.WORKER)
    inv, report = _cis(root)
    assert report["4.1.9"].verdict is Verdict.FAIL
    assert [f.severity for _i, f in report["4.1.9"].findings] == [Severity.INFO]
    assert _findings(inv, "4.1.9") == []
    _p(root, "/var/lib/kubelet/config.yaml").chmod(0o664)
    inv, _report = _cis(root)
    assert [(i.name, f.severity) for i, f in inv.findings if f.cis == "4.1.9"] == [("kubelet.conf", Severity.WARNING)]


#: (id, role, node path) of each ownership rule
OWNER_CASES = [
    ("1.1.2", NodeRole.CONTROL_PLANE, "/etc/kubernetes/manifests/kube-apiserver.yaml"),
    ("1.1.4", NodeRole.CONTROL_PLANE, "/etc/kubernetes/manifests/kube-controller-manager.yaml"),
    ("1.1.6", NodeRole.CONTROL_PLANE, "/etc/kubernetes/manifests/kube-scheduler.yaml"),
    ("1.1.8", NodeRole.ETCD, "/etc/kubernetes/manifests/etcd.yaml"),
    ("1.1.14", NodeRole.CONTROL_PLANE, "/etc/kubernetes/super-admin.conf"),
    ("1.1.16", NodeRole.CONTROL_PLANE, "/etc/kubernetes/scheduler.conf"),
    ("1.1.18", NodeRole.CONTROL_PLANE, "/etc/kubernetes/controller-manager.conf"),
    ("1.1.19", NodeRole.CONTROL_PLANE, "/etc/kubernetes/pki/front-proxy-ca.key"),
    ("1.1.19", NodeRole.ETCD, "/etc/kubernetes/pki/etcd"),
    ("4.1.6", NodeRole.WORKER, "/etc/kubernetes/kubelet.conf"),
    ("4.1.8", NodeRole.WORKER, "/etc/kubernetes/pki/ca.crt"),
    ("4.1.10", NodeRole.WORKER, "/var/lib/kubelet/config.yaml"),
]


@pytest.mark.parametrize(("cis_id", "role", "path"), OWNER_CASES,
                         ids=[f"{c[0]}-{c[1].value}-{PurePosixPath(c[2]).name}" for c in OWNER_CASES])
def test_owner_rule(cis_id: str, role: NodeRole, path: str, tmp_path: Path) -> None:
    """Another owner fails the rule with a chown finding; root:root (the control) passes."""
    root = _demo(tmp_path, role)
    target = _p(root, path)
    os.chown(target, 1000, 1000)
    inv, report = _cis(root)
    assert report[cis_id].verdict in (Verdict.FAIL, Verdict.WARN)
    assert report[cis_id].verdict is (Verdict.FAIL if report[cis_id].scored else Verdict.WARN)
    found = [f for f in _findings(inv, cis_id) if path in f.message]
    assert [f.code for f in found] == ["cis-file-owner"] and f"chown root:root {path}" in found[0].message
    os.chown(target, 0, 0)
    inv, report = _cis(root)
    assert report[cis_id].verdict is Verdict.PASS
    assert _findings(inv, cis_id) == []


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_writable_directory_above_a_key_is_reported(mode: int, tmp_path: Path) -> None:
    """pki/etcd group- or world-writable: a finding with the chmod that removes only the write bits, though
    every key in it has the right mode; controls: 0755 and the sticky 1777 are not reported."""
    root = _demo(tmp_path)
    directory = _p(root, "/etc/kubernetes/pki/etcd")
    directory.chmod(mode)
    inv, _report = _cis(root)
    found = [f for _i, f in inv.findings if f.code == "cis-directory-writable"]
    assert len(found) == 1 and f"chmod {format(mode & ~0o022, '04o')} /etc/kubernetes/pki/etcd" in found[0].message
    for control in (0o755, 0o1777):
        directory.chmod(control)
        inv, _report = _cis(root)
        assert not [f for _i, f in inv.findings if f.code == "cis-directory-writable"]


def test_the_etcd_data_directory(tmp_path: Path) -> None:
    """1.1.11: /var/lib/etcd (the manifest's --data-dir) 0755 fails, 0700 passes. 1.1.12: kubeadm's etcd runs
    as root, so root:root is a WARN with no finding even when the node has an etcd user (the real-cluster
    harness's host has one); another owner is a finding. With runAsUser/runAsGroup in the manifest, root:root
    fails and that owner (etcd:etcd by /etc/passwd) passes."""
    root = _demo(tmp_path)
    data = _p(root, "/var/lib/etcd")
    data.mkdir(parents=True)
    data.chmod(0o755)
    etc = _p(root, "/etc")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\netcd:x:915:916::/var/lib/etcd:/bin/false\n")
    (etc / "group").write_text("root:x:0:\netcd:x:917:\n")
    inv, report = _cis(root)
    assert report["1.1.11"].verdict is Verdict.FAIL and [f.severity for f in _findings(inv, "1.1.11")] == [
        Severity.ERROR]
    assert report["1.1.12"].verdict is Verdict.WARN and _findings(inv, "1.1.12") == []
    assert "etcd runs as root" in report["1.1.12"].notes[0]
    data.chmod(0o700)
    inv, report = _cis(root)
    assert report["1.1.11"].verdict is Verdict.PASS and _findings(inv, "1.1.11") == []
    assert kubepki.cli.exit_status(inv) == 0  # the real-cluster node: kubeadm's data dir, the host's etcd user
    os.chown(data, 915, 917)  # owned by a user etcd does not run as
    inv, report = _cis(root)
    assert report["1.1.12"].verdict is Verdict.FAIL
    assert "chown root:root /var/lib/etcd" in _findings(inv, "1.1.12")[0].message
    os.chown(data, 0, 0)
    _edit(_p(root, f"{MANIFESTS}/etcd.yaml"), "  securityContext:\n",
          "  securityContext:\n    runAsUser: 915\n    runAsGroup: 917\n")
    inv, report = _cis(root)
    assert report["1.1.12"].verdict is Verdict.FAIL
    assert "chown etcd:etcd /var/lib/etcd" in _findings(inv, "1.1.12")[0].message
    os.chown(data, 915, 917)
    inv, report = _cis(root)
    assert report["1.1.12"].verdict is Verdict.PASS and _findings(inv, "1.1.12") == []


# -- TLS flags ------------------------------------------------------------------------------------


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1))


#: (id, manifest, the flag line kubeadm writes, the line that fails, severity, the failing flag is written)
FLAG_CASES = [
    ("1.2.22", "kube-apiserver.yaml", "- --service-account-key-file=", "- --x-service-account-key-file=", "warning",
     None),
    ("1.2.23", "kube-apiserver.yaml", "- --etcd-keyfile=", "- --x-etcd-keyfile=", "warning", None),
    ("1.2.24", "kube-apiserver.yaml", "- --tls-cert-file=", "- --x-tls-cert-file=", "warning", None),
    ("1.2.25", "kube-apiserver.yaml", "- --client-ca-file=", "- --x-client-ca-file=", "warning", None),
    ("1.2.26", "kube-apiserver.yaml", "- --etcd-cafile=", "- --x-etcd-cafile=", "warning", None),
    ("1.3.4", "kube-controller-manager.yaml", "- --service-account-private-key-file=",
     "- --x-service-account-private-key-file=", "warning", None),
    ("1.3.5", "kube-controller-manager.yaml", "- --root-ca-file=", "- --x-root-ca-file=", "warning", None),
    ("2.1", "etcd.yaml", "- --key-file=", "- --x-key-file=", "warning", None),
    ("2.2", "etcd.yaml", "- --client-cert-auth=true", "- --client-cert-auth=false", "error", "client-cert-auth"),
    ("2.3", "etcd.yaml", "- --client-cert-auth=true", "- --client-cert-auth=true\n    - --auto-tls=true", "warning",
     "auto-tls"),
    ("2.4", "etcd.yaml", "- --peer-cert-file=", "- --x-peer-cert-file=", "warning", None),
    ("2.5", "etcd.yaml", "- --peer-client-cert-auth=true", "- --peer-client-cert-auth=false", "warning",
     "peer-client-cert-auth"),
    ("2.6", "etcd.yaml", "- --client-cert-auth=true", "- --client-cert-auth=true\n    - --peer-auto-tls=true",
     "warning", "peer-auto-tls"),
]


@pytest.mark.parametrize(("cis_id", "manifest", "good", "bad", "severity", "written"), FLAG_CASES,
                         ids=[c[0] for c in FLAG_CASES])
def test_flag_rule(cis_id: str, manifest: str, good: str, bad: str, severity: str,  # noqa: PLR0917
                   written: str | None, tmp_path: Path) -> None:
    """kubeadm's manifest passes (the control); the flag unset or wrong fails with a finding naming the
    manifest (and the flag's line when it is written) and the kubeadm configuration field that sets it.
    etcd's rules on a control-plane node and on an external etcd host alike."""
    for role in (NodeRole.CONTROL_PLANE, NodeRole.ETCD) if manifest == "etcd.yaml" else (NodeRole.CONTROL_PLANE,):
        _flag_case(cis_id, manifest, good, bad, severity, written, _demo(tmp_path, role))


def _flag_case(cis_id: str, manifest: str, good: str, bad: str, severity: str,  # noqa: PLR0917
               written: str | None, root: Path) -> None:
    inv, report = _cis(root)
    assert report[cis_id].verdict is Verdict.PASS and _findings(inv, cis_id) == []
    path = _p(root, f"{MANIFESTS}/{manifest}")
    _edit(path, good, bad)
    inv, report = _cis(root)
    assert report[cis_id].verdict is Verdict.FAIL, report.text()
    [finding] = _findings(inv, cis_id)
    assert finding.severity.value == severity
    assert "ClusterConfiguration" in finding.message
    if written:  # a flag written with a wrong value: the finding names its line
        line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if f"- --{written}=" in text)
        assert finding.message.startswith(f"{MANIFESTS}/{manifest}:{line}: --{written}=")
    else:
        assert finding.message.startswith(f"{MANIFESTS}/{manifest} (not in the command): not set")


def test_kubelet_certificate_authority(tmp_path: Path) -> None:
    """1.2.5: kubeadm leaves --kubelet-certificate-authority unset: FAIL as in kube-bench, an info finding only
    (the kubelets' self-signed serving certificates would be refused); set, it passes with no finding."""
    root = _demo(tmp_path)
    inv, report = _cis(root)
    assert report["1.2.5"].verdict is Verdict.FAIL and _findings(inv, "1.2.5") == []
    [(item, finding)] = report["1.2.5"].findings
    assert (item, finding.severity) == ("apiserver", Severity.INFO) and "serverTLSBootstrap" in finding.message
    _edit(_p(root, f"{MANIFESTS}/kube-apiserver.yaml"), "- --client-ca-file=",
          "- --kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt\n    - --client-ca-file=")
    _inv, report = _cis(root)
    assert report["1.2.5"].verdict is Verdict.PASS and report["1.2.5"].findings == ()


def test_cipher_suites_and_feature_gates(tmp_path: Path) -> None:
    """1.2.29 / 4.2.12: unset (kubeadm's default) is WARN with an info finding; a weak suite is a warning;
    strong suites pass. 1.3.6: RotateKubeletServerCertificate=false fails; the gate left on passes."""
    root = _demo(tmp_path)
    api = _p(root, f"{MANIFESTS}/kube-apiserver.yaml")
    inv, report = _cis(root)
    assert report["1.2.29"].verdict is Verdict.WARN and _findings(inv, "1.2.29") == []
    assert [f.severity for _i, f in report["1.2.29"].findings] == [Severity.INFO]
    _edit(api, "- --client-ca-file=", "- --tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA,"
          "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n    - --client-ca-file=")
    inv, report = _cis(root)
    [weak] = _findings(inv, "1.2.29")
    assert weak.severity is Severity.WARNING and "TLS_RSA_WITH_AES_128_CBC_SHA" in weak.message
    assert "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" not in weak.message.split("weak suites:")[1].split(";")[0]
    _edit(api, "TLS_RSA_WITH_AES_128_CBC_SHA,", "")
    inv, report = _cis(root)
    assert report["1.2.29"].verdict is Verdict.PASS and _findings(inv, "1.2.29") == []

    kcm = _p(root, f"{MANIFESTS}/kube-controller-manager.yaml")
    _edit(kcm, "- --root-ca-file=", "- --feature-gates=RotateKubeletServerCertificate=false\n    - --root-ca-file=")
    inv, report = _cis(root)
    assert report["1.3.6"].verdict is Verdict.FAIL and "controllerManager.extraArgs feature-gates" in _findings(
        inv, "1.3.6")[0].message
    _edit(kcm, "RotateKubeletServerCertificate=false", "RotateKubeletServerCertificate=true")
    inv, report = _cis(root)
    assert report["1.3.6"].verdict is Verdict.PASS


@pytest.mark.parametrize("role", [NodeRole.WORKER, NodeRole.CONTROL_PLANE], ids=lambda r: r.value)
def test_kubelet_settings(role: NodeRole, tmp_path: Path) -> None:
    """4.2.10: rotateCertificates false (or unset: the kubelet's default is false) fails, true passes.
    4.2.11: serverTLSBootstrap off is WARN, on passes. 4.2.12: a weak tlsCipherSuites entry warns."""
    root = _demo(tmp_path, role)
    config = _p(root, "/var/lib/kubelet/config.yaml")
    _inv, report = _cis(root)
    assert report["4.2.10"].verdict is Verdict.PASS
    assert report["4.2.11"].verdict is Verdict.WARN
    _edit(config, "rotateCertificates: true", "rotateCertificates: false")
    _inv, report = _cis(root)
    assert report["4.2.10"].verdict is Verdict.FAIL and "rotateCertificates" in report["4.2.10"].findings[0][1].message
    _edit(config, "rotateCertificates: false\n", "")
    _inv, report = _cis(root)
    assert report["4.2.10"].verdict is Verdict.FAIL and "default is false" in report["4.2.10"].notes[0]
    config.write_text(config.read_text() + "rotateCertificates: true\nserverTLSBootstrap: true\n"
                      "tlsCipherSuites:\n- TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n- TLS_RSA_WITH_AES_128_GCM_SHA256\n")
    inv, report = _cis(root)
    assert report["4.2.10"].verdict is Verdict.PASS and report["4.2.11"].verdict is Verdict.PASS
    [weak] = _findings(inv, "4.2.12")
    assert weak.severity is Severity.WARNING and "TLS_RSA_WITH_AES_128_GCM_SHA256" in weak.message
    _edit(config, "- TLS_RSA_WITH_AES_128_GCM_SHA256\n", "")
    inv, report = _cis(root)
    assert report["4.2.12"].verdict is Verdict.PASS and _findings(inv, "4.2.12") == []


# -- the benchmark view --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_check_benchmark_view(role: NodeRole, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``check --benchmark``: one ``[VERDICT] id`` line per id with the files it looked at; ``-o json`` the
    same ids and verdicts; a key made readable turns its line to WARN (1.1.21 is Manual) and exits 2."""
    root = _demo(tmp_path, role)
    argv = ["check", "--benchmark", "--root", str(root), "--now", WHEN.isoformat()]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert main([*argv, "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ids = {r["id"] for r in doc["results"]}
    lines = {i: v for v, i in re.findall(r"^\[(PASS|WARN|FAIL|INFO)\] (\d+(?:\.\d+)+) ", text, re.M) if i in ids}
    assert lines == {r["id"]: r["verdict"] for r in doc["results"]}
    assert doc["role"] == role.value and doc["benchmark"] == "cis-1.12" and doc["exit_code"] == 0
    if role is not NodeRole.WORKER:
        _p(root, "/etc/kubernetes/pki/etcd/peer.key").chmod(0o644)
        assert main(argv) == 2
        out = capsys.readouterr().out
        assert re.search(r"^\[WARN\] 1\.1\.21 .*\n(?:.*\n)*?\s+/etc/kubernetes/pki/etcd/peer.key 0644 0:0$", out, re.M)


# -- permissions fix -----------------------------------------------------------------------------


def _modes(root: Path, *paths: str) -> dict[str, tuple[int, int, int]]:
    out = {}
    for p in paths:
        s = os.stat(_p(root, p))
        out[p] = (s.st_mode & 0o7777, s.st_uid, s.st_gid)
    return out


DAMAGE = {  # node path: (mode, uid, gid) before the fix, (mode, uid, gid) after it
    "/etc/kubernetes/pki/ca.key": ((0o666, 0, 0), (0o600, 0, 0)),
    "/etc/kubernetes/pki/etcd/peer.key": ((0o740, 0, 0), (0o600, 0, 0)),
    "/etc/kubernetes/pki/etcd": ((0o777, 0, 0), (0o755, 0, 0)),
    "/etc/kubernetes/admin.conf": ((0o600, 1000, 1000), (0o600, 0, 0)),
    "/etc/kubernetes/pki/apiserver.crt": ((0o666, 0, 0), (0o644, 0, 0)),
}
UNTOUCHED = ("/etc/kubernetes/pki/apiserver.key", "/etc/kubernetes/pki/front-proxy-ca.crt")


def _damage(root: Path) -> None:
    for path, ((mode, uid, gid), _after) in DAMAGE.items():
        os.chown(_p(root, path), uid, gid)
        os.chmod(_p(root, path), mode)
    _p(root, "/etc/kubernetes/pki/apiserver.key").chmod(0o400)  # stricter than asked: never loosened
    _p(root, "/etc/kubernetes/pki/front-proxy-ca.crt").chmod(0o444)


def test_permissions_fix_plans_applies_and_undoes(tmp_path: Path) -> None:
    """The plan names exactly the failing files, with modes only ever narrowed (0400 stays); nothing
    changes without apply; apply changes exactly them, writes the undo record first, and the benchmark
    then passes; the undo record puts every previous mode and owner back."""
    root = _demo(tmp_path)
    _damage(root)
    before = _modes(root, *DAMAGE, *UNTOUCHED)
    plan = plan_permissions(root, now=WHEN)
    planned = {c.target: ((c.mode_before, c.uid_before, c.gid_before), (c.mode_after, c.uid_after, c.gid_after))
               for c in plan.changes}
    assert {k: v for k, v in planned.items() if k != "/var/lib/kubelet/config.yaml"} == DAMAGE
    assert all(not c.mode_after & ~c.mode_before for c in plan.changes)
    assert _modes(root, *DAMAGE, *UNTOUCHED) == before  # planning changes nothing
    result = apply_permissions(plan, now=WHEN)
    assert _modes(root, *DAMAGE) == {p: after for p, (_b, after) in DAMAGE.items()}
    assert _modes(root, *UNTOUCHED) == {p: before[p] for p in UNTOUCHED}
    inv = kubepki.inspect(root, now=WHEN)
    assert not [f for _i, f in inv.findings if f.cis] and inv.cis is not None
    assert inv.cis["4.1.9"].verdict is Verdict.PASS  # config.yaml narrowed to 0600 too
    record = result.undo_record
    assert record is not None and record.startswith("/var/backups/kubepki/")
    saved = json.loads(_p(root, record).read_text())
    assert os.stat(_p(root, record)).st_mode & 0o777 == 0o600
    assert {c["path"] for c in saved["changes"]} == set(planned)
    undo = plan_permissions_undo(root, record)
    apply_permissions(undo, undo_record="/var/backups/kubepki/undo-of-undo.json")
    assert _modes(root, *DAMAGE, *UNTOUCHED) == before


def test_permissions_fix_refuses_a_file_changed_since_the_plan(tmp_path: Path) -> None:
    """A file whose mode changed after planning stops the fix before anything (the record included) is
    written; control: planning again applies."""
    root = _demo(tmp_path)
    _damage(root)
    plan = plan_permissions(root, now=WHEN)
    _p(root, "/etc/kubernetes/pki/ca.key").chmod(0o644)
    before = _modes(root, *DAMAGE)
    with pytest.raises(RenewalError, match="changed since the plan"):
        apply_permissions(plan)
    assert _modes(root, *DAMAGE) == before
    assert not _p(root, "/var/backups/kubepki").exists()
    apply_permissions(plan_permissions(root, now=WHEN))
    assert _modes(root, "/etc/kubernetes/pki/ca.key")["/etc/kubernetes/pki/ca.key"] == (0o600, 0, 0)


def test_permissions_fix_never_loosens(tmp_path: Path) -> None:
    """A plan edited to add a bit is refused (ConfigError) without touching the node; an undo plan may."""
    import attrs

    root = _demo(tmp_path)
    _damage(root)
    plan = plan_permissions(root, now=WHEN)
    loose = attrs.evolve(plan, changes=(attrs.evolve(plan.changes[0], mode_after=0o777),))
    with pytest.raises(ConfigError, match="never loosens"):
        apply_permissions(loose)
    assert _modes(root, *DAMAGE) == {p: b for p, (b, _a) in DAMAGE.items()}


def test_permissions_fix_waits_for_the_node_lock(tmp_path: Path) -> None:
    """Another writer holding the node's lock: LockError and no change; control: once it is released, applies."""
    root = _demo(tmp_path)
    _damage(root)
    plan = plan_permissions(root, now=WHEN)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with node_lock(Node(root)):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(LockError):
            apply_permissions(plan)
        assert _modes(root, *DAMAGE) == {p: b for p, (b, _a) in DAMAGE.items()}
    finally:
        release.set()
        t.join()
    apply_permissions(plan)
    assert _modes(root, *DAMAGE) == {p: a for p, (_b, a) in DAMAGE.items()}


def test_undo_record_refuses_garbage(tmp_path: Path) -> None:
    """A file that is not kubepki's undo record is a ConfigError; an absent one a NodeError."""
    root = _demo(tmp_path)
    bad = _p(root, "/var/backups/kubepki/x.json")
    bad.parent.mkdir(parents=True)
    for text in ("{", '{"kind": "other"}', '{"kind": "kubepki-permissions-undo", "changes": [{"path": 1}]}',
                 '{"kind": "kubepki-permissions-undo", "changes": [{"path": "/a", "target": "relative", "cis": [],'
                 ' "mode_before": "0600", "mode_after": "0600", "owner_before": "0:0", "owner_after": "0:0"}]}'):
        bad.write_text(text)
        with pytest.raises(ConfigError):
            plan_permissions_undo(root, "/var/backups/kubepki/x.json")
    with pytest.raises(NodeError):
        plan_permissions_undo(root, "/var/backups/kubepki/absent.json")


def test_permissions_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``permissions fix`` shows the plan and changes nothing; ``--apply`` changes and names the undo
    record; ``permissions undo RECORD --apply`` puts the modes back."""
    root = _demo(tmp_path)
    _damage(root)
    before = _modes(root, *DAMAGE)
    assert main(["permissions", "fix", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "chmod 0600 /etc/kubernetes/pki/ca.key" in out and "Nothing has been changed" in out
    assert _modes(root, *DAMAGE) == before
    assert main(["permissions", "fix", "--root", str(root), "--apply", "-o", "json",
                 "--undo-record", "/var/backups/kubepki/r.json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["result"]["undo_record"] == "/var/backups/kubepki/r.json"
    assert _modes(root, *DAMAGE) == {p: a for p, (_b, a) in DAMAGE.items()}
    assert main(["permissions", "undo", "/var/backups/kubepki/r.json", "--root", str(root), "--apply"]) == 0
    assert _modes(root, *DAMAGE) == before


def test_permissions_fix_over_ssh(connect: Connector, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """The same plan and changes through a real SSH server (SFTP chmod and chown), and the record on the node."""
    root = _demo(tmp_path)
    _damage(root)
    node = Node(root, fs=connect(root))
    plan = plan_permissions(node, now=WHEN)
    assert {c.target for c in plan.changes} >= set(DAMAGE)
    result = apply_permissions(plan, now=WHEN)
    assert _modes(root, *DAMAGE) == {p: a for p, (_b, a) in DAMAGE.items()}
    assert result.undo_record is not None and _p(root, result.undo_record).is_file()


# -- hostile input ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(passwd=st.binary(max_size=400), manifest_tail=st.binary(max_size=300))
def test_hostile_passwd_and_manifests_give_findings_not_tracebacks(passwd: bytes, manifest_tail: bytes,
                                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """Arbitrary /etc/passwd and /etc/group bytes and garbage after a manifest's command: the benchmark is
    evaluated (a verdict for every id of the role), never an exception."""
    root = _hostile_root(tmp_path_factory)
    (root / "etc/passwd").write_bytes(passwd)
    (root / "etc/group").write_bytes(passwd[::-1])
    etcd = root / "etc/kubernetes/manifests/etcd.yaml"
    original = _HOSTILE_ETCD.setdefault(str(etcd), etcd.read_bytes())
    etcd.write_bytes(original + manifest_tail)
    _inv, report = _cis(root)
    assert {r.id for r in report.results} >= {"1.1.12", "2.2"}
    assert all(r.verdict in Verdict for r in report.results)


def _record_like(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function, not a lambda: hypothesis reads an extend lambda's source to check it recurses.
    keys = ["kind", "changes", "path", "target", "cis", "mode_before", "mode_after", "owner_before", "owner_after"]
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(keys), inner, max_size=9))


@settings(max_examples=60, deadline=None)
@given(record=st.one_of(st.binary(max_size=300), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)), _record_like,
    max_leaves=12).map(lambda d: json.dumps({"kind": "kubepki-permissions-undo", "changes": [d]}).encode())))
def test_hostile_undo_records_are_refused_cleanly(record: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any bytes, and any JSON shaped almost like a record, at the undo record's path: a plan, or a
    ConfigError; never another exception."""
    root = _hostile_root(tmp_path_factory)
    path = _p(root, "/var/backups/kubepki/hostile.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(record)
    try:
        plan = plan_permissions_undo(root, "/var/backups/kubepki/hostile.json")
    except ConfigError:
        return
    assert plan.restore and all(c.target.startswith("/") for c in plan.changes)


_HOSTILE_ROOTS: dict[str, Path] = {}
_HOSTILE_ETCD: dict[str, bytes] = {}


def _hostile_root(factory: pytest.TempPathFactory) -> Path:
    if "root" not in _HOSTILE_ROOTS:
        root = testing.build_node(factory.mktemp("hostile"), issued_at=WHEN).root
        _p(root, "/var/lib/etcd").mkdir(parents=True, mode=0o700)
        _HOSTILE_ROOTS["root"] = root
    return _HOSTILE_ROOTS["root"]

