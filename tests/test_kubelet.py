"""The kubelet, fully (issue 14, item 2): its settings, its certificates' findings and the clean-up of rotated PEMs.

Trees come from :mod:`kubepki.testing` with kubeadm's kubelet config.yaml and kubeadm-flags.env;
each finding has a negative control beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

import kubepki
from kubepki.cli import main
from kubepki.errors import ConfigError, RenewalError
from kubepki.node import LocalFS, parse_kubeadm_flags, read_kubelet_settings
from kubepki.testing import Defect, DemoNode, build_node

ISSUED = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SOON = ISSUED + dt.timedelta(days=350)  # within 30 days of the leaves' expiry
PKI = "var/lib/kubelet/pki"


def _node(tmp_path: Path, role: str = "worker", **kw: Any) -> DemoNode:
    return build_node(tmp_path, name="w1", role=role, issued_at=ISSUED, **kw)


def _codes(inv: kubepki.Inventory, name: str) -> list[tuple[str, str]]:
    return [(f.code, f.severity.value) for f in inv[name].findings]


# ---- settings


def test_kubeadm_flags_are_parsed() -> None:
    """KUBELET_KUBEADM_ARGS as kubeadm writes it; bare flags are true; the last assignment wins."""
    text = ('KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
            '--rotate-server-certificates --cert-dir=/srv/kubelet-pki"\n')
    assert parse_kubeadm_flags(text) == {"container-runtime-endpoint": "unix:///run/containerd/containerd.sock",
                                         "rotate-server-certificates": "true", "cert-dir": "/srv/kubelet-pki"}
    assert parse_kubeadm_flags('KUBELET_KUBEADM_ARGS="--a=1"\nKUBELET_KUBEADM_ARGS="--b=2"\n') == {"b": "2"}
    assert parse_kubeadm_flags("# nothing\nOTHER=1\n") == {}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_kubeadm_flags_never_raise(text: str) -> None:
    """Any text (an edited or damaged flags file) parses to flags or nothing."""
    flags = parse_kubeadm_flags(text)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in flags.items())


def test_settings_from_a_kubeadm_tree(tmp_path: Path) -> None:
    """kubeadm's config.yaml: rotation on, client CA the cluster CA; no files: the kubelet's defaults (control)."""
    node = _node(tmp_path / "a")
    s = kubepki.Node(node.root).profile.kubelet
    assert s.found and s.rotate_certificates and not s.server_tls_bootstrap
    assert s.client_ca_file == "/etc/kubernetes/pki/ca.crt"
    bare = read_kubelet_settings(LocalFS(tmp_path / "empty"))
    assert not bare.found and not bare.rotate_certificates and bare.client_ca_file is None


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    """--rotate-server-certificates turns serving bootstrap on; --cert-dir moves the kubelet's PKI dir."""
    node = _node(tmp_path)
    flags = node.root / "var/lib/kubelet/kubeadm-flags.env"
    flags.write_text('KUBELET_KUBEADM_ARGS="--rotate-server-certificates --cert-dir=/srv/kpki"\n')
    (node.root / "srv").mkdir()
    shutil.move(node.root / PKI, node.root / "srv/kpki")
    profile = kubepki.Node(node.root).profile
    assert profile.kubelet.server_tls_bootstrap
    assert profile.kubelet_pki_dir == PurePosixPath("/srv/kpki")
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    # looked for under --cert-dir (its symlink still names the old directory, so it dangles there)
    assert inv["kubelet-client-current.pem"].path == "/srv/kpki/kubelet-client-current.pem"


@settings(max_examples=60, deadline=None)
@given(config=st.binary(max_size=400), flags=st.binary(max_size=200))
def test_any_kubelet_files_inspect_without_raising(tmp_path_factory: pytest.TempPathFactory, config: bytes,
                                                   flags: bytes) -> None:
    """Hostile bytes in config.yaml and kubeadm-flags.env: settings or notes, and an inventory, never a traceback."""
    node = _node(tmp_path_factory.mktemp("h"))
    (node.root / "var/lib/kubelet/config.yaml").write_bytes(config)
    (node.root / "var/lib/kubelet/kubeadm-flags.env").write_bytes(flags)
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    assert "kubelet.conf" in inv


def test_a_damaged_config_is_a_note_not_an_error(tmp_path: Path) -> None:
    """Unparseable YAML in config.yaml: a note, the defaults, and inspection still runs."""
    node = _node(tmp_path)
    (node.root / "var/lib/kubelet/config.yaml").write_bytes(b"rotateCertificates: [\n")
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    assert any("ignored /var/lib/kubelet/config.yaml" in n for n in inv.profile.notes)
    assert not inv.profile.kubelet.found


# ---- findings


def test_rotation_off_is_an_error_only_near_expiry(tmp_path: Path) -> None:
    """rotateCertificates: false: info while far from expiry, an error within the warning window;
    control: kubeadm's rotateCertificates: true gives no such finding even near expiry."""
    node = _node(tmp_path / "off", kubelet_config={"rotateCertificates": False})
    far = kubepki.inspect(node.as_node(), now=ISSUED)
    assert ("kubelet-rotation-disabled", "info") in _codes(far, "kubelet-client-current.pem")
    assert far.outcome.rank == 0
    near = kubepki.inspect(node.as_node(), now=SOON)
    assert ("kubelet-rotation-disabled", "error") in _codes(near, "kubelet-client-current.pem")
    assert near.outcome.rank == 2
    on = _node(tmp_path / "on")
    assert "kubelet-rotation-disabled" not in [c for c, _ in _codes(kubepki.inspect(on.as_node(), now=SOON),
                                                                     "kubelet-client-current.pem")]


def test_server_tls_bootstrap(tmp_path: Path) -> None:
    """serverTLSBootstrap: the serving certificate signed by the cluster CA is checked like kubeadm's own,
    and there is no kubelet.crt; without it the item is pending (a warning, exit 1); a node without
    serverTLSBootstrap has no such item at all (control)."""
    node = _node(tmp_path / "on", kubelet_config={"serverTLSBootstrap": True})
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    item = inv["kubelet-server-current.pem"]
    assert item.status.value == "ok" and item.findings == ()
    assert item.facts is not None and item.facts.common_name == "system:node:w1"
    assert "kubelet.crt" not in {i.name for i in inv if i.status.value != "missing"}
    pending = _node(tmp_path / "pending", kubelet_config={"serverTLSBootstrap": True},
                    defects=[Defect("missing", "kubelet-server-current.pem")])
    inv = kubepki.inspect(pending.as_node(), now=ISSUED)
    assert ("kubelet-serving-pending", "warning") in _codes(inv, "kubelet-server-current.pem")
    assert inv.outcome.rank == 1
    off = _node(tmp_path / "off")
    assert "kubelet-server-current.pem" not in kubepki.inspect(off.as_node(), now=ISSUED)


def test_a_serving_certificate_without_server_auth_is_refused(tmp_path: Path) -> None:
    """The catalog's usages hold for the CSR-issued serving certificate too (control: the one above is clean)."""
    node = _node(tmp_path, kubelet_config={"serverTLSBootstrap": True},
                 defects=[Defect("wrong-usage", "kubelet-server-current.pem")])
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    assert "missing-usage" in [c for c, _ in _codes(inv, "kubelet-server-current.pem")]


def test_the_self_signed_kubelet_crt_near_expiry(tmp_path: Path) -> None:
    """kubelet.crt within the warning window: the kubelet never renews it (kubernetes/kubernetes#99418);
    control: a year away, no such finding."""
    node = _node(tmp_path)
    assert ("kubelet-serving-self-signed", "warning") in _codes(kubepki.inspect(node.as_node(), now=SOON),
                                                                 "kubelet.crt")
    assert _codes(kubepki.inspect(node.as_node(), now=ISSUED), "kubelet.crt") == []


def test_a_leftover_bootstrap_kubeconfig(tmp_path: Path) -> None:
    """bootstrap-kubelet.conf beside a working kubelet.conf: a warning naming the bootstrap token;
    control: without it, none."""
    node = _node(tmp_path)
    assert _codes(kubepki.inspect(node.as_node(), now=ISSUED), "kubelet.conf") == []
    (node.root / "etc/kubernetes/bootstrap-kubelet.conf").write_text("apiVersion: v1\nkind: Config\n")
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    assert ("bootstrap-kubeconfig-left", "warning") in _codes(inv, "kubelet.conf")
    assert "bootstrap token" in inv["kubelet.conf"].findings[-1].message


def _rotated(node: DemoNode, *stamps: str) -> list[Path]:
    pki = node.root / PKI
    current = pki / Path(os.readlink(pki / "kubelet-client-current.pem")).name
    out = []
    for stamp in stamps:
        dest = pki / f"kubelet-client-{stamp}.pem"
        shutil.copy(current, dest)
        out.append(dest)
    return out


def test_the_pile_of_rotated_client_certificates(tmp_path: Path) -> None:
    """Dated client PEMs the current symlink does not name: counted, oldest named; control: none left."""
    node = _node(tmp_path)
    assert _codes(kubepki.inspect(node.as_node(), now=ISSUED), "kubelet-client-current.pem") == []
    _rotated(node, "2025-01-01-00-00-00", "2025-07-01-00-00-00")
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    finding = next(f for f in inv["kubelet-client-current.pem"].findings if f.code == "rotated-client-certificates")
    assert finding.message.startswith("2 earlier client certificate(s)") and "2025-01-01-00-00-00" in finding.message


def test_a_client_ca_file_without_the_cluster_ca(tmp_path: Path) -> None:
    """clientCAFile naming another CA, or no file: an error on ca; control: kubeadm's (the cluster CA) is fine,
    and a bundle that holds the cluster CA among others is fine too."""
    node = _node(tmp_path)
    assert _codes(kubepki.inspect(node.as_node(), now=ISSUED), "ca") == []
    other = _node(tmp_path / "other")
    ca_file = node.root / "etc/kubernetes/pki/ca.crt"
    bundle = node.root / "etc/kubernetes/pki/bundle.crt"
    bundle.write_bytes((other.root / "etc/kubernetes/pki/ca.crt").read_bytes() + ca_file.read_bytes())
    config = node.root / "var/lib/kubelet/config.yaml"
    text = config.read_text()
    config.write_text(text.replace("/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/bundle.crt"))
    assert _codes(kubepki.inspect(node.as_node(), now=ISSUED), "ca") == []
    bundle.write_bytes((other.root / "etc/kubernetes/pki/ca.crt").read_bytes())
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    assert ("kubelet-client-ca-mismatch", "error") in _codes(inv, "ca") and inv.outcome.rank == 2
    bundle.unlink()
    assert "does not exist" in kubepki.inspect(node.as_node(), now=ISSUED)["ca"].findings[-1].message


# ---- clean-up


def test_cleanup_plan_and_apply(tmp_path: Path) -> None:
    """The plan lists the dated PEMs no symlink names, never the current target; apply backs up first,
    removes exactly those, and the backup holds them; the current certificate still works after."""
    node = _node(tmp_path)
    old = _rotated(node, "2025-01-01-00-00-00", "2025-07-01-00-00-00")
    target = node.root / PKI / Path(os.readlink(node.root / PKI / "kubelet-client-current.pem")).name
    plan = kubepki.plan_kubelet_cleanup(node.as_node(), now=ISSUED)
    assert [Path(f.path).name for f in plan.files] == [p.name for p in old]
    assert all(f.not_after is not None for f in plan.files)
    assert plan.kept[0][0] == "kubelet-client-current.pem"
    with pytest.raises(ConfigError, match="backup_dir is required"):
        kubepki.apply_kubelet_cleanup(plan)
    result = kubepki.apply_kubelet_cleanup(plan, backup_dir=tmp_path / "bk")
    assert not any(p.exists() for p in old) and target.exists()
    assert result.backup is not None
    with tarfile.open(result.backup) as tf:
        names = tf.getnames()
    assert all(any(n.endswith(p.name) for n in names) for p in old)
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    assert inv["kubelet-client-current.pem"].status.value == "ok"
    assert not inv["kubelet-client-current.pem"].findings


def test_cleanup_refuses_when_the_kubelet_rotated_since_the_plan(tmp_path: Path) -> None:
    """The symlink now names one of the planned files (the kubelet rotated back, or a restore): nothing is
    removed; a planned file that changed: nothing is removed either."""
    node = _node(tmp_path)
    old = _rotated(node, "2025-01-01-00-00-00", "2025-07-01-00-00-00")
    plan = kubepki.plan_kubelet_cleanup(node.as_node(), now=ISSUED)
    link = node.root / PKI / "kubelet-client-current.pem"
    link.unlink()
    link.symlink_to(f"/{PKI}/{old[1].name}")
    with pytest.raises(RenewalError, match="symlink changed"):
        kubepki.apply_kubelet_cleanup(plan, take_backup=False)
    assert all(p.exists() for p in old)
    plan = kubepki.plan_kubelet_cleanup(node.as_node(), now=ISSUED)
    assert old[1].name not in [Path(f.path).name for f in plan.files]
    planned = Path(node.root / plan.files[0].path.lstrip("/"))
    planned.write_bytes(planned.read_bytes() + b"\n")
    with pytest.raises(RenewalError, match="changed since the plan"):
        kubepki.apply_kubelet_cleanup(plan, take_backup=False)
    assert planned.exists()


def test_cleanup_keeps_everything_when_current_is_not_a_symlink(tmp_path: Path) -> None:
    """A kubelet-client-current.pem that is a plain file: which dated file is in use is unknown, nothing planned."""
    node = _node(tmp_path)
    _rotated(node, "2025-01-01-00-00-00")
    link = node.root / PKI / "kubelet-client-current.pem"
    data = (node.root / os.readlink(link).lstrip("/")).read_bytes()  # absolute: under the node's root
    link.unlink()
    link.write_bytes(data)
    plan = kubepki.plan_kubelet_cleanup(node.as_node(), now=ISSUED)
    assert plan.files == () and any("not a symlink" in n for n in plan.notes)
    # and check does not promise a clean-up that would remove nothing (one lister serves both)
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    assert "rotated-client-certificates" not in [c for c, _ in _codes(inv, "kubelet-client-current.pem")]


def test_cleanup_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki kubelet clean-up` shows the plan and removes nothing; with --apply it backs up and removes."""
    node = _node(tmp_path)
    old = _rotated(node, "2025-01-01-00-00-00")
    assert main(["kubelet", "clean-up", "--root", str(node.root), "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [Path(f["path"]).name for f in plan["files"]] == [old[0].name] and old[0].exists()
    assert main(["kubelet", "clean-up", "--root", str(node.root), "--apply"]) == 0
    out = capsys.readouterr().out
    assert "REMOVED" in out and not old[0].exists()
    assert list((node.root / "var/backups/kubepki").glob("kubepki-backup-*.tar.gz"))


def test_a_serving_pair_named_by_tls_cert_file_is_the_one_checked(tmp_path: Path) -> None:
    """tlsCertFile/tlsPrivateKeyFile in config.yaml: kubelet.crt is that pair (the kubelet makes none of its own);
    an expired one there is found (control: without the fields, the default kubelet.crt is checked)."""
    node = _node(tmp_path)
    pki = node.root / PKI
    (node.root / "etc/kubelet-tls").mkdir()
    shutil.move(pki / "kubelet.crt", node.root / "etc/kubelet-tls/serving.crt")
    shutil.move(pki / "kubelet.key", node.root / "etc/kubelet-tls/serving.key")
    assert kubepki.inspect(node.as_node(), now=ISSUED)["kubelet.crt"].status.value == "missing"
    config = node.root / "var/lib/kubelet/config.yaml"
    config.write_text(config.read_text() + "tlsCertFile: /etc/kubelet-tls/serving.crt\n"
                      "tlsPrivateKeyFile: /etc/kubelet-tls/serving.key\n")
    inv = kubepki.inspect(node.as_node(), now=ISSUED)
    assert inv["kubelet.crt"].path == "/etc/kubelet-tls/serving.crt"
    assert inv["kubelet.crt"].status.value == "ok"
    assert kubepki.inspect(node.as_node(), now=ISSUED + dt.timedelta(days=400))["kubelet.crt"].status.value == "expired"


def test_fifos_where_the_kubelet_files_belong_never_block(tmp_path: Path) -> None:
    """A FIFO as config.yaml, kubeadm-flags.env or the clientCAFile would block a plain read for ever: each is
    "not a regular file" (a note, or the clientCAFile finding), and inspection finishes. Run in a child with a
    timeout, so that a regression fails instead of hanging the suite (control: the same tree with regular
    files gives no such note)."""
    import subprocess
    import sys

    node = _node(tmp_path)
    kubelet = node.root / "var/lib/kubelet"
    code = ("import sys, json, kubepki\n"
            "inv = kubepki.inspect(sys.argv[1])\n"
            "print(json.dumps({'notes': list(inv.profile.notes), 'ca': [f.code for f in inv['ca'].findings]}))\n")

    def run() -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-c", code, str(node.root)], capture_output=True, text=True,
                              timeout=60, check=True)
        return json.loads(done.stdout)

    assert not any("not a regular file" in n for n in run()["notes"])
    for name in ("config.yaml", "kubeadm-flags.env"):
        (kubelet / name).unlink()
        os.mkfifo(kubelet / name)
    result = run()
    assert sum("not a regular file" in n for n in result["notes"]) == 2
    (kubelet / "config.yaml").unlink()
    (kubelet / "config.yaml").write_text("authentication: {x509: {clientCAFile: /etc/kubernetes/pki/fifo.crt}}\n")
    os.mkfifo(node.root / "etc/kubernetes/pki/fifo.crt")
    assert run()["ca"] == ["kubelet-client-ca-mismatch"]
