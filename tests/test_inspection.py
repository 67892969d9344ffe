"""Inspection findings on demo trees: each defect yields its finding, and only on its item."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import kubepki
from kubepki import testing
from kubepki.cli import exit_status
from kubepki.inspection._findings import CODES, Status
from kubepki.testing import Defect, DefectKind

UTC = dt.timezone.utc
ISSUED = dt.datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
NOW = ISSUED + dt.timedelta(days=10)


def _inspect(tmp_path: Path, *defects: Defect, now: dt.datetime = NOW, **options: object) -> kubepki.Inventory:
    demo = testing.build_node(tmp_path / "demo", issued_at=ISSUED, defects=defects, **options)  # type: ignore[arg-type]
    return kubepki.inspect(demo.as_node(), now=now)


def test_clean_demo_tree_is_all_ok(tmp_path: Path) -> None:
    """A demo tree without defects: every item ok, exit 0 (negative control for the cases below)."""
    inv = _inspect(tmp_path)
    bad = [(i.name, f.code) for i, f in inv.findings if f.severity.rank >= 1]
    assert bad == []
    assert exit_status(inv) == 0
    assert all(i.status is Status.OK for i in inv), [(i.name, i.status) for i in inv]


@pytest.mark.parametrize(
    ("kind", "name", "code", "status"),
    [
        (DefectKind.EXPIRED, "apiserver", "expired", Status.EXPIRED),
        (DefectKind.EXPIRED, "admin.conf", "expired", Status.EXPIRED),
        (DefectKind.NOT_YET_VALID, "front-proxy-client", "not-yet-valid", Status.INVALID),
        (DefectKind.WRONG_SIGNER, "apiserver-kubelet-client", "wrong-signer", Status.INVALID),
        (DefectKind.WRONG_SIGNER, "scheduler.conf", "wrong-signer", Status.INVALID),
        (DefectKind.KEY_MISMATCH, "etcd-peer", "key-mismatch", Status.INVALID),
        (DefectKind.KEY_MISMATCH, "controller-manager.conf", "key-mismatch", Status.INVALID),
        (DefectKind.KEY_MISMATCH, "kubelet-client-current.pem", "key-mismatch", Status.INVALID),
        (DefectKind.MISSING, "etcd-server", "missing", Status.MISSING),
        (DefectKind.GARBAGE, "apiserver", "not-pem", Status.INVALID),
        (DefectKind.GARBAGE, "admin.conf", "invalid-kubeconfig", Status.INVALID),
        (DefectKind.TRUNCATED_PEM, "front-proxy-client", "truncated-pem", Status.INVALID),
        (DefectKind.STALE_KUBECONFIG_CA, "admin.conf", "kubeconfig-ca-mismatch", Status.INVALID),
        (DefectKind.EMBEDDED_KUBELET_CONF, "kubelet.conf", "kubelet-client-embedded", Status.WARNING),
        (DefectKind.MISSING_SAN, "apiserver", "missing-san", Status.INVALID),
        (DefectKind.WRONG_USAGE, "apiserver", "missing-usage", Status.INVALID),
        (DefectKind.SA_MISMATCH, "sa", "sa-key-mismatch", Status.INVALID),
        (DefectKind.CA_EXPIRES_BEFORE_LEAF, "front-proxy-ca", "ca-expires-before-leaf", Status.WARNING),
    ],
)
def test_defect_gives_its_finding(
    tmp_path: Path, kind: DefectKind, name: str, code: str, status: Status
) -> None:
    """The damaged item carries the finding and status; undamaged items stay clean."""
    # NOT_YET_VALID starts a day after issue: look right after issue time.
    now = ISSUED + dt.timedelta(hours=1) if kind is DefectKind.NOT_YET_VALID else NOW
    inv = _inspect(tmp_path, Defect(kind, name), now=now)
    damaged = {name}
    if kind is DefectKind.CA_EXPIRES_BEFORE_LEAF:
        damaged = {"front-proxy-client"}  # the finding is on the leaves the CA signed
    if name == "kubelet-client-current.pem":
        damaged.add("kubelet.conf")  # kubelet.conf reads its credentials from that file
    for target in damaged:
        item = inv[target]
        assert item.has(code), (target, item.findings)
        assert item.status is status
    for item in inv:
        if item.name in damaged:
            continue
        serious = [f for f in item.findings if f.severity.rank >= 2]
        assert serious == [], (item.name, serious)
    assert exit_status(inv) == (1 if status is Status.WARNING else 2)
    assert code in CODES


def test_expiring_threshold(tmp_path: Path) -> None:
    """Items within warn_within are warnings, outside are ok; CAs (ten years) stay ok."""
    demo = testing.build_node(tmp_path / "d", issued_at=ISSUED)
    late = ISSUED + dt.timedelta(days=350)
    inv = kubepki.inspect(demo.as_node(), now=late)
    assert inv["apiserver"].status is Status.WARNING
    assert inv["apiserver"].has("expiring")
    assert inv["ca"].status is Status.OK
    assert exit_status(inv) == 1
    inv = kubepki.inspect(demo.as_node(), now=late, warn_within=dt.timedelta(days=7))
    assert inv["apiserver"].status is Status.OK


def test_external_ca(tmp_path: Path) -> None:
    """Without ca.key, ca and everything it signs is externally managed; nothing is an error."""
    inv = _inspect(tmp_path, external_ca=True)
    assert inv["ca"].externally_managed
    assert inv["ca"].has("external-ca")
    assert inv["apiserver"].externally_managed
    assert inv["admin.conf"].externally_managed
    assert not inv["front-proxy-client"].externally_managed
    assert exit_status(inv) == 0


def test_external_etcd_drops_etcd_items(tmp_path: Path) -> None:
    """External etcd (from the node's kubeadm config) removes the etcd entries."""
    inv = _inspect(tmp_path, external_etcd=True)
    assert inv.profile.external_etcd
    assert "etcd-server" not in inv
    assert "apiserver-etcd-client" not in inv
    assert exit_status(inv) == 0


def test_pre_129_tree(tmp_path: Path) -> None:
    """A 1.28 tree: system:masters admin.conf is expected, super-admin.conf does not apply."""
    inv = _inspect(tmp_path, version="1.28")
    assert str(inv.profile.kubernetes_version) == "1.28"
    assert "super-admin.conf" not in inv
    assert not inv["admin.conf"].has("unexpected-organization")
    assert exit_status(inv) == 0


@pytest.mark.parametrize("algorithm", ["ECDSA-P256", "ECDSA-P384", "RSA-3072"])
def test_other_key_algorithms(tmp_path: Path, algorithm: str) -> None:
    """ECDSA and larger RSA trees inspect clean, with the algorithm reported."""
    inv = _inspect(tmp_path, key_algorithm=algorithm)
    assert exit_status(inv) == 0
    assert inv["apiserver"].key_algorithm == algorithm
    assert inv["sa"].key_algorithm is not None


def test_kubeconfig_referencing_files_is_followed(tmp_path: Path) -> None:
    """A kubeconfig naming cert/key files is inspected through those files."""
    demo = testing.build_node(tmp_path / "d", issued_at=ISSUED)
    conf = demo.path("/etc/kubernetes/scheduler.conf")
    import base64

    import yaml

    doc = yaml.safe_load(conf.read_text())
    user = doc["users"][0]["user"]
    (conf.parent / "sched.crt").write_bytes(base64.b64decode(user.pop("client-certificate-data")))
    (conf.parent / "sched.key").write_bytes(base64.b64decode(user.pop("client-key-data")))
    user["client-certificate"] = "sched.crt"
    user["client-key"] = "/etc/kubernetes/sched.key"
    conf.write_text(yaml.safe_dump(doc))
    item = kubepki.inspect(demo.as_node(), now=NOW)["scheduler.conf"]
    assert item.status is Status.OK
    assert item.has("kubeconfig-file-reference")
    assert {f.path for f in item.files} >= {"/etc/kubernetes/sched.crt", "/etc/kubernetes/sched.key"}
    (conf.parent / "sched.key").unlink()
    item = kubepki.inspect(demo.as_node(), now=NOW)["scheduler.conf"]
    assert item.status is Status.INVALID
    assert item.has("missing")


def test_one_bad_file_never_stops_the_rest(tmp_path: Path) -> None:
    """Several damaged files: every item is still inspected, each with its own findings."""
    inv = _inspect(
        tmp_path,
        Defect(DefectKind.GARBAGE, "ca"),
        Defect(DefectKind.TRUNCATED_PEM, "etcd-ca"),
        Defect(DefectKind.MISSING, "sa"),
    )
    assert inv["ca"].status is Status.INVALID
    assert inv["apiserver"].has("signer-unavailable")
    assert not inv["apiserver"].has("wrong-signer")
    assert inv["etcd-ca"].status is Status.INVALID
    assert inv["sa"].status is Status.MISSING
    assert inv["front-proxy-client"].status is Status.OK
    # every 1.34 item but the serving certificate of serverTLSBootstrap, which this node does not use
    assert {i.name for i in inv} == {e.name for e in kubepki.catalog.entries(version="1.34")} - {
        "kubelet-server-current.pem"}


def test_inventory_outputs(tmp_path: Path) -> None:
    """repr, table, JSON and HTML render without heavy imports and agree on statuses."""
    inv = _inspect(tmp_path, Defect(DefectKind.EXPIRED, "apiserver"))
    assert "expired=1" in repr(inv)
    text = inv.table()
    assert "FINDINGS" in text and "apiserver" in text
    data = inv.to_dict()
    assert data["summary"]["expired"] == 1
    html = inv._repr_html_()
    assert html.startswith("<table") and "expired" in html
    assert "<script" not in html
    with pytest.raises(KeyError):
        inv["super-admin.conf-typo"]


def test_now_must_be_aware(tmp_path: Path) -> None:
    """A naive `now` is refused rather than silently taken as local time."""
    demo = testing.build_node(tmp_path / "d", issued_at=ISSUED)
    with pytest.raises(ValueError, match="timezone"):
        kubepki.inspect(demo.as_node(), now=dt.datetime(2026, 1, 1))


def test_html_escapes_hostile_names(tmp_path: Path) -> None:
    """Subjects with markup are escaped in HTML output."""
    inv = _inspect(tmp_path, Defect(DefectKind.MISSING_SAN, "apiserver"))
    html = inv._repr_html_()
    assert "<b>apiserver</b>" in html


def _kubelet_style_client_cert(node_root: Path, key: Any) -> None:
    """Replace the node's kubelet client pair with one shaped like the kubelet's own TLS-bootstrap
    certificate: signed by the cluster CA, digitalSignature only, clientAuth (no keyEncipherment)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = node_root / "etc/kubernetes/pki"
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, "system:node:cp1")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    current = node_root / "var/lib/kubelet/pki/kubelet-client-current.pem"
    # the link is absolute inside the node (/var/lib/kubelet/pki/kubelet-client-<date>.pem)
    target = current.parent / current.readlink().name if current.is_symlink() else current
    target.write_bytes(pem)


@pytest.mark.parametrize(("algorithm", "flagged"), [("ecdsa", False), ("rsa", True)])
def test_key_encipherment_is_required_of_rsa_keys_only(tmp_path: Path, algorithm: str, flagged: bool) -> None:
    """The kubelet's ECDSA client certificate (digitalSignature only, as a real ``kubeadm join`` node gets it
    through TLS bootstrap) is no missing-usage; the same usages on an RSA key still are (negative control)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    node = testing.build_node(tmp_path / "n")
    key = ec.generate_private_key(ec.SECP256R1()) if algorithm == "ecdsa" else rsa.generate_private_key(65537, 2048)
    _kubelet_style_client_cert(node.root, key)
    inv = kubepki.inspect(node.root)
    codes = {f.code for f in inv["kubelet-client-current.pem"].findings}
    assert ("missing-usage" in codes) is flagged
