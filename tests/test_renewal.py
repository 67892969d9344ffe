"""Renewal: kubeadm's ``certs renew`` semantics on real kubeadm trees and demo trees.

Certificates are compared with ``cryptography`` directly; kubepki's inspection is
used only as the final "would ``kubepki check`` be happy" verdict.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings, strategies as st

import kubepki
from kubepki.cli import exit_status
from kubepki.errors import (
    ConfigError,
    InvalidTimeError,
    LockError,
    RenewalError,
    SignerError,
    StalePlanError,
    UnknownItemError,
)
from kubepki.node._lock import node_lock
from kubepki.node._node import Node
from kubepki.pki import _issuing as issuing
from kubepki.pki._certs import load_certificate, load_private_key, public_key_der, signed_by
from kubepki.renewal import _renewal as renewal
from tests.kubeadm_trees import FIXTURES, config_path, materialize

UTC = dt.timezone.utc
#: The fixtures were issued 2026-11-28 and their leaves expire 2027-11-28.
NOW = dt.datetime(2027, 9, 1, 12, 0, tzinfo=UTC)
YEAR = dt.timedelta(days=365)
PKI = "etc/kubernetes/pki"
KCONF = "etc/kubernetes"
#: Where each renewable item's certificate lives under the root: (cert, key) or kubeconfig.
PAIRS = {
    "apiserver": "apiserver",
    "apiserver-kubelet-client": "apiserver-kubelet-client",
    "front-proxy-client": "front-proxy-client",
    "etcd-server": "etcd/server",
    "etcd-peer": "etcd/peer",
    "etcd-healthcheck-client": "etcd/healthcheck-client",
    "apiserver-etcd-client": "apiserver-etcd-client",
}
SIGNERS = {"apiserver": "ca", "apiserver-kubelet-client": "ca", "front-proxy-client": "front-proxy-ca",
           "etcd-server": "etcd/ca", "etcd-peer": "etcd/ca", "etcd-healthcheck-client": "etcd/ca",
           "apiserver-etcd-client": "etcd/ca"}
CONFS = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf")
ALL = tuple(sorted((*PAIRS, *CONFS)))


# ------------------------------------------------------------------------------------- helpers


def material(root: Path, name: str) -> tuple[x509.Certificate, bytes, bytes]:
    """(certificate, cert bytes, key bytes) of a renewable item, read straight from disk."""
    if name in PAIRS:
        cert_pem = (root / PKI / f"{PAIRS[name]}.crt").read_bytes()
        key_pem = (root / PKI / f"{PAIRS[name]}.key").read_bytes()
    else:
        doc = yaml.safe_load((root / KCONF / name).read_bytes())
        user = doc["users"][0]["user"]
        cert_pem = base64.b64decode(user["client-certificate-data"])
        key_pem = base64.b64decode(user["client-key-data"])
    return x509.load_pem_x509_certificate(cert_pem), cert_pem, key_pem


def ca_cert(root: Path, name: str) -> x509.Certificate:
    """The CA that signs ``name``."""
    base = SIGNERS.get(name, "ca")
    return x509.load_pem_x509_certificate((root / PKI / f"{base}.crt").read_bytes())


def spki(key_pem: bytes) -> bytes:
    """The public half of a PEM private key, DER."""
    return public_key_der(load_private_key(key_pem))


def digests(root: Path) -> dict[str, str]:
    """sha256 of every regular file under root (the lock file aside)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if f == ".kubepki.lock" or p.is_symlink():
                continue
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def stats(root: Path) -> dict[str, tuple[int, int, int]]:
    """(mode, uid, gid) of every file, symlinks not followed."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f == ".kubepki.lock":
                continue
            st = os.lstat(Path(dirpath) / f)
            out[str((Path(dirpath) / f).relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid)
    return out


def attributes(cert: x509.Certificate) -> dict[str, object]:
    """What renewal must keep, read with cryptography alone."""
    ext = cert.extensions
    try:
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    ku = ext.get_extension_for_class(x509.KeyUsage)
    try:
        eku = list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        eku = []
    return {
        "cn": [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)],
        "o": [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)],
        "dns": dns, "ip": ips, "ku": ku.value, "ku_critical": ku.critical, "eku": eku,
        "issuer": cert.issuer,
    }


def copy_tree(src: Path, dest: Path) -> Path:
    """A private copy of a tree (symlinks kept)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def demo_rsa() -> Iterator[Path]:
    """A clean RSA-2048 demo node issued 330 days before NOW (read-only; copy to change)."""
    from kubepki import testing

    with tempfile.TemporaryDirectory() as tmp:
        yield testing.build_node(tmp, issued_at=NOW - dt.timedelta(days=330)).root


@pytest.fixture(scope="module")
def demo_ecdsa() -> Iterator[Path]:
    """A clean ECDSA-P256 demo node (read-only; copy to change)."""
    from kubepki import testing

    with tempfile.TemporaryDirectory() as tmp:
        yield testing.build_node(tmp, issued_at=NOW - dt.timedelta(days=330),
                                 key_algorithm="ECDSA-P256").root


def renew(root: Path | Node, names: object = ("all",), **kw: object) -> tuple[
        renewal.RenewalPlan, renewal.RenewalResult]:
    """Plan and apply without a backup, at the fixtures' times, not the real clock's (forced)."""
    apply_kw = {k: kw.pop(k) for k in ("workers",) if k in kw}
    plan = kubepki.plan_renewal(root, names, now=kw.pop("now", NOW), **kw)  # type: ignore[arg-type]
    return plan, kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True,  # type: ignore[arg-type]
                                       **apply_kw)


def check_renewed(before: Path, after: Path, names: tuple[str, ...], *, not_before: dt.datetime,
                  not_after: dt.datetime, algorithm: str | None = None) -> None:
    """Each item kept its attributes and signer and got a new serial, key and validity."""
    for name in names:
        old, _, old_key = material(before, name)
        new, new_pem, new_key = material(after, name)
        assert attributes(new) == attributes(old), name
        assert new.serial_number != old.serial_number, name
        assert spki(new_key) != spki(old_key), name
        assert public_key_der(load_private_key(new_key)) == public_key_der(
            new.public_key()), name  # type: ignore[arg-type]
        assert new.not_valid_before_utc == not_before, name
        assert new.not_valid_after_utc == not_after, name
        assert signed_by(new, ca_cert(after, name)), name
        assert new_pem.startswith(b"-----BEGIN CERTIFICATE-----\n"), name
        bc = new.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and not bc.value.ca, name
        if algorithm is not None:
            assert kubepki.KubeVersion and issuing.KEY_ALGORITHMS  # names exist
            from kubepki.pki._certs import key_algorithm

            assert key_algorithm(load_private_key(new_key)) == algorithm, name
            header = b"RSA PRIVATE KEY" if algorithm.startswith("RSA") else b"EC PRIVATE KEY"
            assert new_key.startswith(b"-----BEGIN " + header), name


# ---------------------------------------------------------------- real kubeadm trees


@pytest.mark.parametrize("scenario", ["single", "ha-cp2", "expired"])
def test_renew_all_on_real_kubeadm_trees(tmp_path: Path, scenario: str) -> None:
    """renew all keeps every attribute, changes serial/key/validity, touches nothing else."""
    before = materialize(scenario, tmp_path / "before")
    root = copy_tree(before, tmp_path / "root")
    now = NOW if scenario != "expired" else dt.datetime(2026, 12, 1, tzinfo=UTC)
    # expired's config says 1m; kubeadm's expired-renewed used the default, so do we.
    validity = YEAR if scenario == "expired" else None
    node = Node(root, config=config_path(scenario))
    modes = stats(root)
    plan, result = renew(node, now=now, validity=validity, key_algorithm=None)
    assert [s.action for s in plan.steps] == [renewal.Action.RENEW] * 11
    assert result.changed == ALL
    check_renewed(before, root, ALL, not_before=now - dt.timedelta(minutes=5),
                  not_after=now + YEAR, algorithm="RSA-2048")
    written = {str(Path(p).relative_to("/")) for p in result.files}
    assert written == {f"{PKI}/{PAIRS[n]}.{x}" for n in PAIRS for x in ("crt", "key")} | {
        f"{KCONF}/{c}" for c in CONFS}
    old, new = digests(before), digests(root)
    assert {k for k in old if old[k] != new[k]} == written
    assert stats(root) == modes  # modes and owners kept, nothing added or removed
    inv = kubepki.inspect(Node(root, config=config_path(scenario)), now=now)
    for name in ALL:
        assert inv[name].status.value == "ok", (name, inv[name].findings)


def test_renewed_single_matches_kubeadms_own_renewal(tmp_path: Path) -> None:
    """Against single-renewed: same attributes, extensions, criticality and signature algorithm."""
    root = materialize("single", tmp_path / "root")
    renew(Node(root, config=config_path("single")), key_algorithm="ECDSA-P256")
    kubeadm = FIXTURES / "single-renewed" / "root"
    for name in ALL:
        ours, _, _ = material(root, name)
        theirs, _, _ = material(kubeadm, name)
        assert attributes(ours) == attributes(theirs), name
        assert [(e.oid, e.critical) for e in ours.extensions] == [
            (e.oid, e.critical) for e in theirs.extensions], name
        assert ours.signature_algorithm_oid == theirs.signature_algorithm_oid, name
        assert ours.subject.public_bytes() == theirs.subject.public_bytes(), name  # same encoding


def test_kubeconfig_only_credential_lines_change(tmp_path: Path) -> None:
    """Like kubeadm: the client cert and key lines change, every other line is byte-identical."""
    root = materialize("single", tmp_path / "root")
    original = {c: (root / KCONF / c).read_bytes() for c in CONFS}
    renew(root, [*CONFS], key_algorithm="ECDSA-P256")
    for c in CONFS:
        old, new = original[c].splitlines(), (root / KCONF / c).read_bytes().splitlines()
        assert len(old) == len(new)
        changed = [o.split(b":")[0].strip() for o, n in zip(old, new, strict=True) if o != n]
        assert changed == [b"client-certificate-data", b"client-key-data"], c
        kubeadm = (FIXTURES / "single-renewed/root" / KCONF / c).read_bytes().splitlines()
        assert [n for n in new if b"client-" not in n] == [k for k in kubeadm if b"client-" not in k]


def test_kubeconfig_ca_is_re_embedded_from_ca_crt(tmp_path: Path) -> None:
    """A stale embedded CA is replaced by the current ca.crt (kubernetes/kubernetes#88052)."""
    root = materialize("single", tmp_path / "root")
    path = root / KCONF / "admin.conf"
    doc = yaml.safe_load(path.read_bytes())
    stale = (root / PKI / "front-proxy-ca.crt").read_bytes()
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(stale).decode()
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    renew(root, ["admin.conf"], key_algorithm="ECDSA-P256")
    new = yaml.safe_load(path.read_bytes())
    embedded = base64.b64decode(new["clusters"][0]["cluster"]["certificate-authority-data"])
    assert embedded == (root / PKI / "ca.crt").read_bytes()


# ---------------------------------------------------------------- demo trees


@pytest.mark.parametrize("algorithm", ["RSA-2048", "ECDSA-P256"])
def test_renew_all_on_demo_trees_keeps_the_algorithm(
    tmp_path: Path, algorithm: str, demo_rsa: Path, demo_ecdsa: Path
) -> None:
    """RSA stays RSA and ECDSA stays ECDSA (kubeadm would turn ECDSA leaves into RSA)."""
    src = demo_rsa if algorithm == "RSA-2048" else demo_ecdsa
    root = copy_tree(src, tmp_path / "root")
    plan, result = renew(root)
    assert {s.new_key_algorithm for s in plan.work} == {algorithm}
    assert result.changed == ALL
    check_renewed(src, root, ALL, not_before=NOW - dt.timedelta(minutes=5), not_after=NOW + YEAR,
                  algorithm=algorithm)
    new, _, _ = material(root, "apiserver")
    expected = "ecdsa-with-SHA256" if algorithm.startswith("ECDSA") else "sha256WithRSAEncryption"
    assert new.signature_algorithm_oid._name == expected
    inv = kubepki.inspect(root, now=NOW)
    assert exit_status(inv) == 0, [(i.name, f.code) for i, f in inv.findings]


def test_key_algorithm_argument_overrides(tmp_path: Path, demo_ecdsa: Path) -> None:
    """key_algorithm= changes the new keys' algorithm, as kubeadm's encryptionAlgorithm does."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    plan, _ = renew(root, ["front-proxy-client", "scheduler.conf"], key_algorithm="ECDSA-P384")
    assert [(s.old_key_algorithm, s.new_key_algorithm) for s in plan.steps] == [
        ("ECDSA-P256", "ECDSA-P384")] * 2
    check_renewed(demo_ecdsa, root, ("front-proxy-client", "scheduler.conf"),
                  not_before=NOW - dt.timedelta(minutes=5), not_after=NOW + YEAR,
                  algorithm="ECDSA-P384")
    with pytest.raises(ConfigError, match="unknown key algorithm"):
        kubepki.plan_renewal(root, key_algorithm="ED25519", now=NOW)


def test_untouched_files_are_byte_identical(tmp_path: Path, demo_ecdsa: Path) -> None:
    """Renewing two items writes exactly their files."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    before = digests(root)
    _, result = renew(root, ["etcd-peer", "controller-manager.conf"])
    after = digests(root)
    assert {k for k in before if before[k] != after[k]} == {
        f"{PKI}/etcd/peer.crt", f"{PKI}/etcd/peer.key", f"{KCONF}/controller-manager.conf"}
    assert set(after) == set(before)
    assert result.files == ("/etc/kubernetes/controller-manager.conf",
                            "/etc/kubernetes/pki/etcd/peer.key", "/etc/kubernetes/pki/etcd/peer.crt")


# ---------------------------------------------------------------- selection and time


def test_all_is_kubeadms_list_and_names_are_checked(demo_ecdsa: Path) -> None:
    """'all' never includes CAs, sa or kubelet.conf; bad names are ConfigErrors."""
    plan = kubepki.plan_renewal(demo_ecdsa, now=NOW)
    assert tuple(s.name for s in plan.steps) == ALL
    for name, match in (("ca", "is a CA"), ("kubelet.conf", "kubelet rotates"), ("sa", "key pair")):
        with pytest.raises(ConfigError, match=match):
            kubepki.plan_renewal(demo_ecdsa, [name], now=NOW)
    with pytest.raises(UnknownItemError):
        kubepki.plan_renewal(demo_ecdsa, ["apisrever"], now=NOW)
    with pytest.raises(ConfigError, match="cannot be combined"):
        kubepki.plan_renewal(demo_ecdsa, ["all", "apiserver"], now=NOW)
    assert [s.name for s in kubepki.plan_renewal(demo_ecdsa, "apiserver", now=NOW).steps] == [
        "apiserver"]


def test_external_etcd_has_no_etcd_items(tmp_path: Path) -> None:
    """With external etcd the four etcd-CA items are neither renewed nor accepted as names."""
    from kubepki import testing

    root = testing.build_node(tmp_path, external_etcd=True, key_algorithm="ECDSA-P256",
                              issued_at=NOW - dt.timedelta(days=300)).root
    plan = kubepki.plan_renewal(root, now=NOW)
    assert {s.name for s in plan.steps} == set(ALL) - {
        "etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"}
    with pytest.raises(ConfigError, match="external etcd"):
        kubepki.plan_renewal(root, ["etcd-peer"], now=NOW)


def test_expiring_within_selects_by_expiry(tmp_path: Path) -> None:
    """Only items expiring within D are renewed; the others say when they expire."""
    from kubepki import testing

    root = testing.build_node(
        tmp_path, key_algorithm="ECDSA-P256", issued_at=NOW - dt.timedelta(days=100),
        defects=[testing.Defect("expired", "apiserver"), testing.Defect("expired", "admin.conf")],
    ).root
    plan = kubepki.plan_renewal(root, now=NOW, expiring_within=dt.timedelta(days=30))
    assert [s.name for s in plan.work] == ["admin.conf", "apiserver"]
    skipped = {s.reason for s in plan.skipped}
    assert skipped == {"not-expiring"}
    assert not plan.refused
    assert "not within 30 days" in plan["scheduler.conf"].message


def test_validity_sources_and_shared_times(tmp_path: Path, demo_ecdsa: Path) -> None:
    """Argument, then the config's certificateValidityPeriod, then 365 days; one window per run."""
    plan = kubepki.plan_renewal(demo_ecdsa, now=NOW)
    assert (plan.validity, plan.validity_source) == (YEAR, "default")
    assert {(s.new_not_before, s.new_not_after) for s in plan.work} == {
        (NOW - dt.timedelta(minutes=5), NOW + YEAR)}
    plan = kubepki.plan_renewal(demo_ecdsa, now=NOW, validity=dt.timedelta(days=90))
    assert (plan.validity_source, plan.not_after) == ("argument", NOW + dt.timedelta(days=90))
    config = tmp_path / "kubeadm.yaml"
    config.write_text(config_path("single").read_text() + "certificateValidityPeriod: 720h\n")
    plan = kubepki.plan_renewal(Node(demo_ecdsa, config=config), now=NOW)
    assert (plan.validity, plan.validity_source) == (dt.timedelta(hours=720), "kubeadm config")
    with pytest.raises(ConfigError, match="positive"):
        kubepki.plan_renewal(demo_ecdsa, now=NOW, validity=dt.timedelta(0))
    with pytest.raises(ConfigError, match="timezone-aware"):
        kubepki.plan_renewal(demo_ecdsa, now=dt.datetime(2027, 1, 1))


def test_validity_is_clamped_to_the_ca(tmp_path: Path) -> None:
    """A NotAfter past the CA's is cut to the CA's NotAfter and reported."""
    from kubepki import testing

    root = testing.build_node(tmp_path, key_algorithm="ECDSA-P256",
                              issued_at=NOW - dt.timedelta(days=100),
                              defects=[testing.Defect("ca-expires-before-leaf", "front-proxy-ca")]).root
    ca = x509.load_pem_x509_certificate((root / PKI / "front-proxy-ca.crt").read_bytes())
    plan, _ = renew(root, ["front-proxy-client", "apiserver"])
    step = plan["front-proxy-client"]
    assert step.clamped and step.new_not_after == ca.not_valid_after_utc
    assert any("clamped" in n for n in step.notes)
    assert not plan["apiserver"].clamped
    new, _, _ = material(root, "front-proxy-client")
    assert new.not_valid_after_utc == ca.not_valid_after_utc
    assert "(CA)" in plan.table()


# ---------------------------------------------------------------- signers and external CAs


def test_external_ca_items_are_skipped_with_kubeadms_message(tmp_path: Path) -> None:
    """Without ca.key, the ca-signed items stay byte-identical and each says why."""
    from kubepki import testing

    root = testing.build_node(tmp_path, external_ca=True, key_algorithm="ECDSA-P256",
                              issued_at=NOW - dt.timedelta(days=300)).root
    ca_signed = ["admin.conf", "apiserver", "apiserver-kubelet-client", "controller-manager.conf",
                 "scheduler.conf", "super-admin.conf"]
    before = digests(root)
    plan, result = renew(root, ca_signed)
    assert digests(root) == before
    assert result.changed == () and result.ok
    for step in plan.steps:
        assert step.reason == "external-ca"
        assert step.message == f"Detected external ca, {step.long_name} can't be renewed"
    assert {s.name for s in result.skipped} == set(ca_signed)
    # The other CAs still have keys, so their items renew, as with kubeadm.
    plan, result = renew(root)
    assert set(result.changed) == set(ALL) - set(ca_signed)


def test_all_cas_external_changes_nothing(tmp_path: Path, demo_ecdsa: Path) -> None:
    """With every CA key gone, renew all writes nothing and explains each item."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    for ca in ("ca", "front-proxy-ca", "etcd/ca"):
        (root / PKI / f"{ca}.key").unlink()
    before = digests(root)
    plan, result = renew(root)
    assert digests(root) == before
    assert {s.reason for s in plan.steps} == {"external-ca"}
    assert "Detected external etcd/ca" in plan["etcd-peer"].message
    assert exit_status(result) == 0


def test_wrong_signer_is_refused_per_item(tmp_path: Path) -> None:
    """A certificate the node's CA did not issue is refused; the rest still renew."""
    from kubepki import testing

    root = testing.build_node(tmp_path, key_algorithm="ECDSA-P256",
                              issued_at=NOW - dt.timedelta(days=300),
                              defects=[testing.Defect("wrong-signer", "apiserver")]).root
    before = (root / PKI / "apiserver.crt").read_bytes()
    plan, result = renew(root)
    assert plan["apiserver"].refused and plan["apiserver"].reason == "wrong-signer"
    assert "REFUSED" in plan.table()
    assert (root / PKI / "apiserver.crt").read_bytes() == before
    assert "apiserver" not in result.changed and len(result.changed) == 10
    assert exit_status(result) == 2


def test_ca_key_not_matching_its_certificate_is_refused(tmp_path: Path, demo_ecdsa: Path) -> None:
    """A CA key that does not belong to the CA certificate never signs."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    (root / PKI / "front-proxy-ca.key").write_bytes(
        issuing.key_to_pem(issuing.generate_key("ECDSA-P256")))
    plan = kubepki.plan_renewal(root, ["front-proxy-client"], now=NOW)
    assert plan.steps[0].reason == "signer-key-mismatch"
    with pytest.raises(SignerError):
        issuing.Signer.from_key("ca", load_certificate((root / PKI / "ca.crt").read_bytes()),
                                load_private_key((root / PKI / "front-proxy-ca.key").read_bytes()))


# ---------------------------------------------------------------- missing and re-created items


def test_missing_items_are_skipped_like_kubeadm(tmp_path: Path) -> None:
    """A missing item reads 'MISSING! <long name>' and is not created."""
    root = materialize("single", tmp_path / "root")
    (root / KCONF / "scheduler.conf").unlink()
    plan, result = renew(root, ["scheduler.conf", "front-proxy-client"], key_algorithm="ECDSA-P256")
    step = plan["scheduler.conf"]
    assert step.reason == "missing" and not step.refused
    assert step.message == ("MISSING! certificate embedded in the kubeconfig file for the "
                            "scheduler manager to use")
    assert not (root / KCONF / "scheduler.conf").exists()
    assert result.changed == ("front-proxy-client",)


@pytest.mark.parametrize("name", ["apiserver", "etcd-peer", "apiserver-kubelet-client"])
def test_recreate_follows_kubeadms_rules(tmp_path: Path, name: str) -> None:
    """A re-created certificate has the subject and SANs kubeadm gave the original."""
    root = materialize("single", tmp_path / "root")
    original, _, _ = material(root, name)
    for ext in ("crt", "key"):
        (root / PKI / f"{PAIRS[name]}.{ext}").unlink()
    node = Node(root, config=config_path("single"))
    plan, _ = renew(node, [name], recreate_missing=True, key_algorithm="ECDSA-P256")
    assert plan.steps[0].action is renewal.Action.RECREATE
    new, _, _ = material(root, name)
    assert attributes(new) == attributes(original)
    base = root / PKI / PAIRS[name]
    modes = {p.name: p.stat().st_mode & 0o777 for p in base.parent.glob(f"{base.name}.*")}
    assert set(modes.values()) == {0o644, 0o600}  # kubeadm's modes for new files
    assert kubepki.inspect(node, now=NOW)[name].status.value == "ok"


def test_recreate_kubeconfig_and_unusable_items(tmp_path: Path) -> None:
    """Garbage or missing kubeconfigs are refused or, when asked, re-created from the rules."""
    root = materialize("single", tmp_path / "root")
    original = yaml.safe_load((root / KCONF / "controller-manager.conf").read_bytes())
    (root / KCONF / "controller-manager.conf").write_bytes(b"\x00garbage\xff")
    (root / KCONF / "admin.conf").unlink()
    node = Node(root, config=config_path("single"))
    plan = kubepki.plan_renewal(node, ["controller-manager.conf", "admin.conf"], now=NOW)
    assert plan["controller-manager.conf"].refused
    assert plan["controller-manager.conf"].reason == "unusable"
    plan, _ = renew(node, ["controller-manager.conf", "admin.conf"], recreate_missing=True,
                    key_algorithm="ECDSA-P256")
    assert [s.action.value for s in plan.steps] == ["recreate", "recreate"]
    new = yaml.safe_load((root / KCONF / "controller-manager.conf").read_bytes())
    assert new["clusters"][0]["cluster"]["server"] == original["clusters"][0]["cluster"]["server"]
    assert new["contexts"] == original["contexts"] and new["current-context"] == original[
        "current-context"]
    admin = yaml.safe_load((root / KCONF / "admin.conf").read_bytes())
    assert admin["clusters"][0]["cluster"]["server"] == "https://cp.example.test:6443"
    assert (root / KCONF / "admin.conf").stat().st_mode & 0o777 == 0o600
    inv = kubepki.inspect(node, now=NOW)
    for name in ("admin.conf", "controller-manager.conf"):
        assert inv[name].status.value == "ok", inv[name].findings
    cert, _, _ = material(root, "admin.conf")
    assert attributes(cert)["o"] == ["kubeadm:cluster-admins"]


def test_recreate_never_creates_super_admin(tmp_path: Path) -> None:
    """super-admin.conf is optional: 'all' with recreate_missing leaves it missing."""
    root = materialize("ha-cp2", tmp_path / "root")
    (root / KCONF / "super-admin.conf").unlink()
    plan = kubepki.plan_renewal(Node(root, config=config_path("ha-cp2")), now=NOW,
                                recreate_missing=True)
    assert plan["super-admin.conf"].reason == "missing"


# ---------------------------------------------------------------- files: modes, links, references


def test_modes_owners_and_symlinks_are_kept(tmp_path: Path) -> None:
    """Modes survive (as kubeadm's in-place writes keep them); symlinks are written through."""
    root = materialize("single", tmp_path / "root")
    (root / PKI / "apiserver.crt").chmod(0o640)
    (root / PKI / "apiserver.key").chmod(0o640)
    (root / KCONF / "admin.conf").chmod(0o644)
    elsewhere = root / "srv/pki"
    elsewhere.mkdir(parents=True)
    shutil.move(root / PKI / "front-proxy-client.crt", elsewhere / "fpc.crt")
    (root / PKI / "front-proxy-client.crt").symlink_to("/srv/pki/fpc.crt")
    plan, result = renew(root, ["apiserver", "admin.conf", "front-proxy-client"],
                         key_algorithm="ECDSA-P256")
    assert (root / PKI / "apiserver.crt").stat().st_mode & 0o777 == 0o640
    assert (root / PKI / "apiserver.key").stat().st_mode & 0o777 == 0o640
    assert (root / KCONF / "admin.conf").stat().st_mode & 0o777 == 0o644
    assert any("readable by others" in n for n in plan["apiserver"].notes)
    assert os.readlink(root / PKI / "front-proxy-client.crt") == "/srv/pki/fpc.crt"
    assert "/srv/pki/fpc.crt" in result.files
    cert = x509.load_pem_x509_certificate((elsewhere / "fpc.crt").read_bytes())
    assert public_key_der(cert.public_key()) == spki(  # type: ignore[arg-type]
        (root / PKI / "front-proxy-client.key").read_bytes())
    target = next(f for f in plan["front-proxy-client"].files if f.role == "cert")
    assert (target.path, target.target) == ("/etc/kubernetes/pki/front-proxy-client.crt",
                                            "/srv/pki/fpc.crt")


def test_kubeconfig_referencing_files_is_renewed_in_those_files(tmp_path: Path) -> None:
    """kubeadm refuses such kubeconfigs; kubepki renews the files and keeps the kubeconfig."""
    root = materialize("single", tmp_path / "root")
    path = root / KCONF / "admin.conf"
    doc = yaml.safe_load(path.read_bytes())
    user = doc["users"][0]["user"]
    (root / PKI / "admin.crt").write_bytes(base64.b64decode(user.pop("client-certificate-data")))
    (root / PKI / "admin.key").write_bytes(base64.b64decode(user.pop("client-key-data")))
    user["client-certificate"] = "pki/admin.crt"  # relative to the kubeconfig, as kubectl reads it
    user["client-key"] = "/etc/kubernetes/pki/admin.key"
    path.write_text(yaml.safe_dump(doc))
    kubeconfig = path.read_bytes()
    old = x509.load_pem_x509_certificate((root / PKI / "admin.crt").read_bytes())
    plan, result = renew(root, ["admin.conf"], key_algorithm="ECDSA-P256")
    assert plan.steps[0].kubeconfig is not None
    assert plan.steps[0].kubeconfig.credentials == "files"
    assert path.read_bytes() == kubeconfig
    assert set(result.files) == {"/etc/kubernetes/pki/admin.crt", "/etc/kubernetes/pki/admin.key"}
    new = x509.load_pem_x509_certificate((root / PKI / "admin.crt").read_bytes())
    assert attributes(new) == attributes(old) and new.serial_number != old.serial_number
    assert public_key_der(new.public_key()) == spki(  # type: ignore[arg-type]
        (root / PKI / "admin.key").read_bytes())


# ---------------------------------------------------------------- plan and result objects


def test_plan_is_immutable_serialisable_and_renders(demo_ecdsa: Path) -> None:
    """The plan is frozen, round-trips through JSON and renders as text and HTML; nothing written."""
    before = digests(demo_ecdsa)
    plan = kubepki.plan_renewal(demo_ecdsa, now=NOW)
    assert digests(demo_ecdsa) == before
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plan.steps = ()  # type: ignore[misc]
    data = json.loads(plan.to_json())
    assert data["summary"]["renew"] == 11 and data["not_after"] == "2028-08-31T12:00:00Z"
    step = next(s for s in data["steps"] if s["name"] == "apiserver")
    assert step["attributes"]["common_name"] == "kube-apiserver"
    assert step["files"][0] == {"path": "/etc/kubernetes/pki/apiserver.key",
                                "target": "/etc/kubernetes/pki/apiserver.key", "role": "key",
                                "mode": "0600", "uid": os.getuid(), "gid": os.getgid(),
                                "exists": True}
    assert len(data["inputs"]) > 20 and all(len(v) == 64 for v in data["inputs"].values() if v)
    text = str(plan)
    assert "apiserver" in text and "Nothing has been written." in text
    html_text = plan._repr_html_()
    assert "<table>" in html_text and "#1a7f37" in html_text
    assert "renew=11" in repr(plan)


def test_result_is_what_restart_planning_needs(tmp_path: Path, demo_ecdsa: Path) -> None:
    """The result lists names, paths and times, and serialises."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    _, result = renew(root, ["apiserver", "scheduler.conf"])
    data = json.loads(result.to_json())
    assert data["changed"] == ["apiserver", "scheduler.conf"]
    assert data["files"] == ["/etc/kubernetes/pki/apiserver.key", "/etc/kubernetes/pki/apiserver.crt",
                             "/etc/kubernetes/scheduler.conf"]
    assert data["renewed_at"] == "2027-09-01T12:00:00Z" and data["ok"] is True
    text = result.table()
    assert "certificate for serving the Kubernetes API renewed" in text
    # what needs a restart is kubepki.plan_restarts' answer, not kubeadm's blanket line
    assert "Done renewing certificates." in text and "You must restart" not in text
    assert "written" in result._repr_html_()


def test_apply_refuses_a_changed_node(tmp_path: Path, demo_ecdsa: Path) -> None:
    """A file changed between plan and apply makes apply refuse, writing nothing."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    plan = kubepki.plan_renewal(root, ["apiserver"], now=NOW)
    (root / PKI / "apiserver.crt").write_bytes((root / PKI / "front-proxy-client.crt").read_bytes())
    before = digests(root)
    with pytest.raises(RenewalError, match="changed since the plan"):
        kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    assert digests(root) == before


def test_backup_is_taken_first_and_required(tmp_path: Path, demo_ecdsa: Path) -> None:
    """apply takes a backup before writing; without a backup_dir it refuses."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    plan = kubepki.plan_renewal(root, ["apiserver"], now=NOW)
    with pytest.raises(ConfigError, match="backup_dir"):
        kubepki.apply_renewal(plan)
    old = (root / PKI / "apiserver.crt").read_bytes()
    result = kubepki.apply_renewal(plan, backup_dir=tmp_path / "backups", force_invalid_times=True)
    assert result.backup is not None and result.backup.parent == tmp_path / "backups"
    import tarfile

    with tarfile.open(result.backup) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("pki/apiserver.crt"))
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == old


def test_second_renewal_fails_while_the_lock_is_held(tmp_path: Path, demo_ecdsa: Path) -> None:
    """Two renewals on one node: the second fails clearly (or waits with wait=)."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    node = Node(root)
    plan = kubepki.plan_renewal(node, ["apiserver"], now=NOW)
    with node_lock(Node(root)), pytest.raises(LockError, match="another kubepki"):
        kubepki.apply_renewal(plan, take_backup=False, wait=0.1, force_invalid_times=True)
    assert kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True).changed == ("apiserver",)


# ---------------------------------------------------------------- the journal


def test_interrupted_commit_is_completed(tmp_path: Path, demo_ecdsa: Path) -> None:
    """A committed journal with a half-renamed pair is finished by the next run."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    new_key = issuing.generate_key("ECDSA-P256")
    old = load_certificate((root / PKI / "apiserver.crt").read_bytes())
    ca = issuing.Signer.from_key("ca", load_certificate((root / PKI / "ca.crt").read_bytes()),
                                 load_private_key((root / PKI / "ca.key").read_bytes()))
    cert = issuing.sign_leaf(issuing.LeafTemplate.from_certificate(old), new_key.public_key(), ca,
                             not_before=NOW, not_after=NOW + YEAR)
    # The state after "rename key" and before "rename cert": a mismatched pair on disk.
    (root / PKI / "apiserver.key").write_bytes(issuing.key_to_pem(new_key))
    (root / PKI / ".apiserver.crt.kubepki-new").write_bytes(issuing.cert_to_pem(cert))
    journal = {"version": 1, "state": "committing", "started": "2027-09-01T12:00:00Z", "pid": 1,
               "groups": [{"name": "apiserver", "check": "pair", "files": [
                   {"staged": "/etc/kubernetes/pki/.apiserver.key.kubepki-new",
                    "target": "/etc/kubernetes/pki/apiserver.key", "role": "key"},
                   {"staged": "/etc/kubernetes/pki/.apiserver.crt.kubepki-new",
                    "target": "/etc/kubernetes/pki/apiserver.crt", "role": "cert"}]}]}
    (root / PKI / renewal.JOURNAL_NAME).write_text(json.dumps(journal))
    plan = kubepki.plan_renewal(root, ["scheduler.conf"], now=NOW)
    assert plan.pending_journal
    result = renewal.resume_renewal(root)
    assert result is not None and result.resumed == ("apiserver",)
    assert (root / PKI / "apiserver.crt").read_bytes() == issuing.cert_to_pem(cert)
    assert not (root / PKI / renewal.JOURNAL_NAME).exists()
    assert renewal.resume_renewal(root) is None
    assert kubepki.inspect(root, now=NOW)["apiserver"].status.value == "ok"


def test_staging_journal_is_rolled_back_and_bad_pairs_refused(tmp_path: Path,
                                                               demo_ecdsa: Path) -> None:
    """Before the commit, staged files are discarded; a mismatched staged pair is never installed."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    before = digests(root)
    staged = root / PKI / ".apiserver.crt.kubepki-new"
    staged.write_bytes(b"half written")
    group = {"name": "apiserver", "check": "pair", "files": [
        {"staged": "/etc/kubernetes/pki/.apiserver.key.kubepki-new",
         "target": "/etc/kubernetes/pki/apiserver.key", "role": "key"},
        {"staged": "/etc/kubernetes/pki/.apiserver.crt.kubepki-new",
         "target": "/etc/kubernetes/pki/apiserver.crt", "role": "cert"}]}
    journal = root / PKI / renewal.JOURNAL_NAME
    journal.write_text(json.dumps({"state": "staging", "groups": [group]}))
    assert renewal.resume_renewal(root) is not None
    assert not staged.exists() and not journal.exists()
    assert digests(root) == {k: v for k, v in before.items() if "kubepki-new" not in k}
    staged.write_bytes((root / PKI / "front-proxy-client.crt").read_bytes())
    journal.write_text(json.dumps({"state": "committing", "groups": [group]}))
    with pytest.raises(RenewalError, match="do not match"):
        renewal.resume_renewal(root)
    assert (root / PKI / "apiserver.crt").read_bytes() == (
        demo_ecdsa / PKI / "apiserver.crt").read_bytes()
    journal.write_text("{not json")
    with pytest.raises(RenewalError, match="damaged"):
        renewal.resume_renewal(root)


# ---------------------------------------------------------------- CSR mode


def _sign_csr(csr_pem: bytes, ca_cert_pem: bytes, ca_key_pem: bytes, *,
              cn: str | None = None) -> bytes:
    """What an external CA does: copy the requested names and usages, sign."""
    csr = x509.load_pem_x509_csr(csr_pem)
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    key = load_private_key(ca_key_pem)
    subject = csr.subject if cn is None else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
               .public_key(csr.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(hours=1))
               .not_valid_after(NOW + dt.timedelta(days=90)))
    for ext in csr.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    cert = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM)


def test_csr_mode_round_trip(tmp_path: Path, demo_ecdsa: Path) -> None:
    """write_csrs, an external CA signs, install_signed installs only what checks out."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    ca_key = (root / PKI / "ca.key").read_bytes()
    (root / PKI / "ca.key").unlink()  # ca is external now
    out = tmp_path / "csrs"
    before = digests(root)
    paths = renewal.write_csrs(root, out, ["apiserver", "admin.conf", "scheduler.conf",
                                           "apiserver-kubelet-client"])
    assert digests(root) == before
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{x}" for n in ("apiserver", "admin.conf", "scheduler.conf", "apiserver-kubelet-client")
        for x in ("key", "csr"))
    assert {p.stat().st_mode & 0o777 for p in paths} == {0o600}
    csr = x509.load_pem_x509_csr((out / "apiserver.csr").read_bytes())
    old, _, _ = material(root, "apiserver")
    assert csr.subject == old.subject
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert (out / "admin.conf.key").read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY")
    ca_pem = (root / PKI / "ca.crt").read_bytes()
    for name in ("apiserver", "admin.conf"):
        (out / f"{name}.crt").write_bytes(_sign_csr((out / f"{name}.csr").read_bytes(), ca_pem, ca_key))
    # Negative controls: another CA, a wrong CN, a certificate for another key.
    other = issuing.generate_key("ECDSA-P256")
    other_ca = issuing.self_signed_ca("kubernetes", other, not_before=NOW - YEAR, validity=10 * YEAR)
    (out / "scheduler.conf.crt").write_bytes(_sign_csr(
        (out / "scheduler.conf.csr").read_bytes(), issuing.cert_to_pem(other_ca),
        issuing.key_to_pem(other)))
    (out / "apiserver-kubelet-client.crt").write_bytes(_sign_csr(
        (out / "apiserver-kubelet-client.csr").read_bytes(), ca_pem, ca_key, cn="intruder"))
    with pytest.raises(ConfigError, match="backup_dir"):
        renewal.install_signed(root, out, now=NOW)
    # Signed at NOW, which the real clock has not reached: refused unless forced.
    early = renewal.install_signed(root, out, now=NOW, take_backup=False)
    assert early.changed == () and digests(root) == before
    assert all("not valid at the real time" in s.message for s in early.skipped if s.name in ("admin.conf",
                                                                                              "apiserver"))
    result = renewal.install_signed(root, out, now=NOW, take_backup=False, force_invalid_times=True)
    assert result.changed == ("admin.conf", "apiserver")
    refused = {s.name: s.message for s in result.skipped}
    assert "not issued by the ca CA" in refused["scheduler.conf"]
    assert "CN 'intruder'" in refused["apiserver-kubelet-client"]
    assert exit_status(result) == 2
    assert (root / PKI / "apiserver.crt").read_bytes() == (out / "apiserver.crt").read_bytes()
    inv = kubepki.inspect(root, now=NOW)
    for name in ("apiserver", "admin.conf"):
        assert inv[name].status.value == "ok", inv[name].findings
    (out / "empty").mkdir()
    with pytest.raises(RenewalError, match="no signed certificate"):
        renewal.install_signed(root, out / "empty", now=NOW, take_backup=False)
    with pytest.raises(RenewalError, match="exists"):
        renewal.write_csrs(root, out, ["apiserver"])


def test_install_refuses_a_certificate_that_does_not_match_its_key(tmp_path: Path,
                                                                    demo_ecdsa: Path) -> None:
    """A signed certificate next to the wrong key is refused."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    out = tmp_path / "csrs"
    renewal.write_csrs(root, out, ["front-proxy-client"])
    signed = _sign_csr((out / "front-proxy-client.csr").read_bytes(),
                       (root / PKI / "front-proxy-ca.crt").read_bytes(),
                       (root / PKI / "front-proxy-ca.key").read_bytes())
    (out / "front-proxy-client.crt").write_bytes(signed)
    (out / "front-proxy-client.key").write_bytes(
        issuing.key_to_pem(issuing.generate_key("ECDSA-P256")))
    result = renewal.install_signed(root, out, now=NOW, take_backup=False, force_invalid_times=True)
    assert result.changed == () and "does not match" in result.skipped[0].message


# ---------------------------------------------------------------- beyond kubeadm


def test_issue_kubeconfig_like_kubeadm_kubeconfig_user(tmp_path: Path) -> None:
    """A kubeconfig for any user and groups, signed by ca, with the cluster's endpoint."""
    root = materialize("single", tmp_path / "root")
    data = renewal.issue_kubeconfig(Node(root, config=config_path("single")), "jane",
                                    ["devs", "ops"], validity=dt.timedelta(days=7), now=NOW,
                                    key_algorithm="ECDSA-P256", force_invalid_times=True)
    doc = yaml.safe_load(data)
    assert doc["clusters"][0]["cluster"]["server"] == "https://cp.example.test:6443"
    assert doc["current-context"] == "jane@kubernetes"
    cert = x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
    assert attributes(cert)["cn"] == ["jane"] and attributes(cert)["o"] == ["devs", "ops"]
    assert attributes(cert)["eku"] == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=7)
    assert signed_by(cert, load_certificate((root / PKI / "ca.crt").read_bytes()))
    (root / PKI / "ca.key").unlink()
    with pytest.raises(SignerError, match="external CA"):
        renewal.issue_kubeconfig(root, "jane", now=NOW)


def test_switch_kubelet_conf_from_embedded_data(tmp_path: Path) -> None:
    """An embedding kubelet.conf is pointed at a written kubelet-client-current.pem."""
    root = materialize("single", tmp_path / "root")
    node = Node(root, config=config_path("single"))
    assert kubepki.inspect(node, now=NOW)["kubelet.conf"].has("kubelet-client-embedded")
    plan = renewal.switch_kubelet_conf(node, now=NOW)
    step = plan.steps[0]
    assert step.action is renewal.Action.SWITCH
    assert [f.role for f in step.files] == ["cert_and_key", "symlink", "kubeconfig"]
    assert "all" not in {s.name for s in plan.steps}
    kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    current = root / "var/lib/kubelet/pki/kubelet-client-current.pem"
    assert current.is_symlink() and os.readlink(current).startswith("/var/lib/kubelet/pki/kubelet-client-")
    doc = yaml.safe_load((root / KCONF / "kubelet.conf").read_bytes())
    assert doc["users"][0]["user"] == {
        "client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
        "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    inv = kubepki.inspect(Node(root, config=config_path("single")), now=NOW)
    assert not inv["kubelet.conf"].has("kubelet-client-embedded")
    assert inv["kubelet.conf"].status.value == "ok", inv["kubelet.conf"].findings
    assert inv["kubelet-client-current.pem"].status.value == "ok"
    again = renewal.switch_kubelet_conf(root, now=NOW)
    assert again.steps[0].reason == "already-switched"


def test_switch_kubelet_conf_with_an_expired_embedded_certificate(tmp_path: Path) -> None:
    """When the embedded certificate expired, a fresh one is signed for the kubelet's PEM."""
    root = materialize("expired", tmp_path / "root")
    now = dt.datetime(2026, 12, 1, tzinfo=UTC)
    node = Node(root, config=config_path("expired"))
    plan = renewal.switch_kubelet_conf(node, now=now, validity=YEAR, key_algorithm="ECDSA-P256")
    assert plan.steps[0].new_not_after == now + YEAR
    kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    inv = kubepki.inspect(Node(root, config=config_path("expired")), now=now)
    assert inv["kubelet.conf"].status.value == "ok", inv["kubelet.conf"].findings


def test_create_super_admin_on_an_upgraded_cluster(tmp_path: Path) -> None:
    """super-admin.conf is created on request only, with KEP-4214's subject."""
    root = materialize("ha-cp2", tmp_path / "root")
    (root / KCONF / "super-admin.conf").unlink()
    node = Node(root, config=config_path("ha-cp2"))
    plan = renewal.create_super_admin(node, now=NOW, key_algorithm="ECDSA-P256")
    assert plan.steps[0].action is renewal.Action.CREATE
    kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    cert, _, _ = material(root, "super-admin.conf")
    assert attributes(cert)["cn"] == ["kubernetes-super-admin"]
    assert attributes(cert)["o"] == ["system:masters"]
    assert kubepki.inspect(node, now=NOW)["super-admin.conf"].status.value == "ok"
    assert renewal.create_super_admin(node, now=NOW).steps[0].reason == "exists"


def test_super_admin_needs_129(tmp_path: Path) -> None:
    """Before 1.29 there is no super-admin.conf to create."""
    from kubepki import testing

    root = testing.build_node(tmp_path, version="1.28", key_algorithm="ECDSA-P256",
                              issued_at=NOW - dt.timedelta(days=10)).root
    with pytest.raises(RenewalError, match=r"1\.29"):
        renewal.create_super_admin(root, now=NOW)


# ---------------------------------------------------------------- issuing details


def test_edit_kubeconfig_keeps_comments_and_falls_back_to_a_dump() -> None:
    """Text edits keep every other byte; folded values make it dump the document instead."""
    from kubepki.pki._kubeconfig import parse_kubeconfig

    text = (b"# managed by hand\napiVersion: v1\nclusters:\n- cluster:\n"
            b"    certificate-authority-data: Q0E=\n    server: https://x:6443\n  name: c\n"
            b"contexts:\n- context: {cluster: c, user: u}\n  name: ctx\ncurrent-context: ctx\n"
            b"kind: Config\nusers:\n- name: u\n  user:\n    client-certificate-data: Q0VSVA==\n"
            b"    client-key-data: S0VZ\n")
    kc = parse_kubeconfig(text)
    out = issuing.edit_kubeconfig(text, kc, user={"client-certificate-data": "TkVX",
                                                  "client-key-data": "TktFWQ=="})
    assert out == text.replace(b"Q0VSVA==", b"TkVX").replace(b"S0VZ", b"TktFWQ==")
    folded = text.replace(b"client-key-data: S0VZ", b"client-key-data: >-\n      S0\n      VZ")
    out = issuing.edit_kubeconfig(folded, parse_kubeconfig(folded), user={"client-key-data": "TQ=="})
    assert yaml.safe_load(out)["users"][0]["user"]["client-key-data"] == "TQ=="
    assert b"# managed by hand" not in out


# ---------------------------------------------------------------- the property


_DNS = st.from_regex(r"(\*\.)?[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,6}){0,2}", fullmatch=True)
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
_KU = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
       "key_agreement", "key_cert_sign", "crl_sign")
_EKUS = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH,
         ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION,
         ExtendedKeyUsageOID.OCSP_SIGNING, x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")]


@st.composite
def leaf_certificates(draw: st.DrawFn) -> dict[str, object]:
    """Arbitrary valid leaf attributes."""
    return {
        "cn": draw(st.one_of(st.none(), _TEXT)),
        "o": draw(st.lists(_TEXT, max_size=3)),
        "dns": draw(st.lists(_DNS, max_size=4)),
        "ip": draw(st.lists(st.ip_addresses().map(str), max_size=3)),
        "ku": draw(st.sets(st.sampled_from(_KU), min_size=1)),
        "eku": draw(st.lists(st.sampled_from(_EKUS), unique=True, max_size=4)),
    }


_CA_KEY = ec.generate_private_key(ec.SECP256R1())
_CA = issuing.self_signed_ca("kubernetes", _CA_KEY, not_before=NOW - YEAR, validity=10 * YEAR)
_LEAF_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _old_certificate(spec: dict[str, object]) -> x509.Certificate:
    """A leaf made with cryptography alone (UTF8String names, extensions in another order)."""
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec["o"]]  # type: ignore[attr-defined]
    if spec["cn"] is not None:
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, spec["cn"], _validate=False))  # type: ignore[arg-type]
    builder = (x509.CertificateBuilder().subject_name(x509.Name(names)).issuer_name(_CA.subject)
               .public_key(_LEAF_KEY.public_key()).serial_number(12345)
               .not_valid_before(NOW - YEAR).not_valid_after(NOW + dt.timedelta(days=10)))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec["dns"]]  # type: ignore[attr-defined]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in spec["ip"]]  # type: ignore[attr-defined]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if spec["eku"]:
        builder = builder.add_extension(x509.ExtendedKeyUsage(spec["eku"]), critical=False)  # type: ignore[arg-type]
    ku = {k: k in spec["ku"] for k in _KU}  # type: ignore[operator]
    builder = builder.add_extension(x509.KeyUsage(**ku, encipher_only=False, decipher_only=False),
                                    critical=False)
    return builder.sign(_CA_KEY, hashes.SHA256())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=leaf_certificates())
def test_renewal_keeps_cn_o_sans_and_usages(spec: dict[str, object]) -> None:
    """For any valid leaf, renewal keeps CN, O, DNS and IP SANs (in order), KU and EKU."""
    old = _old_certificate(spec)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / PKI).mkdir(parents=True)
        (root / PKI / "ca.crt").write_bytes(issuing.cert_to_pem(_CA))
        (root / PKI / "ca.key").write_bytes(issuing.key_to_pem(_CA_KEY))
        (root / PKI / "apiserver.crt").write_bytes(issuing.cert_to_pem(old))
        # Arbitrary attributes are not this node's: copied only when asked (kubeadm always copies).
        plan, result = renew(root, ["apiserver"], key_algorithm="ECDSA-P256", workers=1, keep_attributes=True)
        assert result.changed == ("apiserver",), plan.steps[0].message
        new = x509.load_pem_x509_certificate((root / PKI / "apiserver.crt").read_bytes())
    old_attrs, new_attrs = attributes(old), attributes(new)
    for key in ("cn", "o", "dns", "ip", "ku", "eku", "issuer"):
        assert new_attrs[key] == old_attrs[key], key
    assert new.serial_number != old.serial_number


def test_signature_follows_a_p384_ca(tmp_path: Path) -> None:
    """Under an ECDSA-P384 CA the leaves are signed with SHA-384, as Go's x509 picks."""
    from kubepki import testing

    root = testing.build_node(tmp_path, key_algorithm="ECDSA-P384",
                              issued_at=NOW - dt.timedelta(days=300)).root
    plan, _ = renew(root, ["apiserver"])
    assert plan.steps[0].new_key_algorithm == "ECDSA-P384"
    new, _, _ = material(root, "apiserver")
    assert new.signature_algorithm_oid._name == "ecdsa-with-SHA384"
    assert kubepki.inspect(root, now=NOW)["apiserver"].status.value == "ok"


# ------------------------------------------ the real clock, one file under two names, metadata, loops


def real_now() -> dt.datetime:
    """The real clock (what apply_renewal judges times by)."""
    return dt.datetime.now(UTC)


@pytest.fixture(scope="module")
def live_ecdsa() -> Iterator[Path]:
    """A clean ECDSA-P256 demo node issued 330 days before the real clock (read-only; copy to change)."""
    from kubepki import testing

    with tempfile.TemporaryDirectory() as tmp:
        yield testing.build_node(tmp, issued_at=real_now() - dt.timedelta(days=330),
                                 key_algorithm="ECDSA-P256").root


@pytest.mark.parametrize(("ahead", "refused"), [
    (dt.timedelta(days=400), True), (dt.timedelta(minutes=10), True),
    (dt.timedelta(minutes=3), False), (dt.timedelta(0), False),
])
def test_certificates_not_yet_valid_at_the_real_time_are_refused(tmp_path: Path, live_ecdsa: Path,
                                                                 ahead: dt.timedelta, refused: bool) -> None:
    """now= more than the 5-minute back-dating ahead of the real clock: refused, nothing written; forced, written;
    within it (negative control), applied."""
    root = copy_tree(live_ecdsa, tmp_path / "root")
    before = digests(root)
    plan = kubepki.plan_renewal(root, ["apiserver", "admin.conf"], now=real_now() + ahead)
    if not refused:
        assert kubepki.apply_renewal(plan, take_backup=False).changed == ("admin.conf", "apiserver")
        return
    with pytest.raises(InvalidTimeError, match=r"not valid at the real time .*admin\.conf \(valid only from "
                                               r".*--force-invalid-times") as err:
        kubepki.apply_renewal(plan, take_backup=False)
    assert isinstance(err.value, RenewalError) and err.value.name == "admin.conf"
    assert digests(root) == before and not (root / PKI / renewal.JOURNAL_NAME).exists()
    kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    assert material(root, "apiserver")[0].not_valid_before_utc == plan.not_before.replace(microsecond=0) > real_now()


def test_certificates_expired_at_the_real_time_are_refused(tmp_path: Path, live_ecdsa: Path) -> None:
    """now= so far back that the new certificates have expired: refused, even with no age limit; a plan at the
    real time (negative control) applies."""
    root = copy_tree(live_ecdsa, tmp_path / "root")
    before = digests(root)
    plan = kubepki.plan_renewal(root, ["apiserver"], now=real_now() - dt.timedelta(days=400),
                                validity=dt.timedelta(days=30))
    with pytest.raises(InvalidTimeError, match=r"apiserver \(expired on "):
        kubepki.apply_renewal(plan, take_backup=False, max_plan_age=None)
    with pytest.raises(StalePlanError):
        kubepki.apply_renewal(plan, take_backup=False)
    assert digests(root) == before
    plan = kubepki.plan_renewal(root, ["apiserver"], validity=dt.timedelta(days=30))
    assert kubepki.apply_renewal(plan, take_backup=False).changed == ("apiserver",)


def test_a_plan_older_than_its_maximum_age_is_refused(tmp_path: Path, live_ecdsa: Path) -> None:
    """A plan whose time is further behind the real clock than max_plan_age (default 1h) is refused with its
    age; a larger max_plan_age or force applies it; a fresh plan (negative control) applies by default."""
    root = copy_tree(live_ecdsa, tmp_path / "root")
    before = digests(root)
    old = kubepki.plan_renewal(root, ["apiserver"], now=real_now() - dt.timedelta(hours=2))
    with pytest.raises(StalePlanError, match=r"2\.0 hours behind the real clock .*maximum of 1\.0 hours"):
        kubepki.apply_renewal(old, take_backup=False)
    assert dt.timedelta(hours=1) == renewal.DEFAULT_MAX_PLAN_AGE
    fresh = kubepki.plan_renewal(root, ["apiserver"])
    with pytest.raises(StalePlanError):  # a plan made now is older than a zero maximum by the time it applies
        kubepki.apply_renewal(fresh, take_backup=False, max_plan_age=dt.timedelta(0))
    for bad in (dt.timedelta(seconds=-1), "1h"):
        with pytest.raises(ConfigError, match="max_plan_age"):
            kubepki.apply_renewal(fresh, take_backup=False, max_plan_age=bad)  # type: ignore[arg-type]
    assert digests(root) == before
    assert kubepki.apply_renewal(old, take_backup=False, max_plan_age=dt.timedelta(hours=3)).changed == ("apiserver",)
    recent = kubepki.plan_renewal(root, ["apiserver"], now=real_now() - dt.timedelta(minutes=30))
    assert kubepki.apply_renewal(recent, take_backup=False).changed == ("apiserver",)
    assert kubepki.apply_renewal(kubepki.plan_renewal(root, ["apiserver"]), take_backup=False).changed


def test_issue_kubeconfig_refuses_a_certificate_not_valid_at_the_real_time(tmp_path: Path,
                                                                          live_ecdsa: Path) -> None:
    """kubeconfig-user at a now= the real clock has not reached: refused unless forced; at the real time, issued."""
    root = copy_tree(live_ecdsa, tmp_path / "root")
    with pytest.raises(InvalidTimeError, match="valid only from"):
        renewal.issue_kubeconfig(root, "jane", now=real_now() + dt.timedelta(days=2), key_algorithm="ECDSA-P256")
    assert renewal.issue_kubeconfig(root, "jane", now=real_now() + dt.timedelta(days=2), key_algorithm="ECDSA-P256",
                                    force_invalid_times=True)
    assert renewal.issue_kubeconfig(root, "jane", key_algorithm="ECDSA-P256")


def _alias(root: Path, alias: str, original: str, how: str) -> None:
    (root / alias).unlink()
    if how == "symlink":
        os.symlink(os.path.relpath(root / original, (root / alias).parent), root / alias)
    else:
        os.link(root / original, root / alias)


@pytest.mark.parametrize("how", ["symlink", "hard link"])
@pytest.mark.parametrize("layout", [
    (f"{KCONF}/super-admin.conf", f"{KCONF}/admin.conf", ("super-admin.conf", "admin.conf")),
    (f"{PKI}/apiserver-etcd-client.crt", f"{PKI}/etcd/healthcheck-client.crt",
     ("apiserver-etcd-client", "etcd-healthcheck-client")),
])
def test_two_catalog_files_that_are_one_file_are_refused(tmp_path: Path, demo_ecdsa: Path, how: str,
                                                         layout: tuple[str, str, tuple[str, str]]) -> None:
    """A symlink or hard link between two items' files: both refused at planning (aliased, naming both files),
    the others renewed, every pair still matching and no journal left; negative control: the same node
    without the link refuses nothing, its kubelet-client-current.pem a symlink by design."""
    alias, original, names = layout
    clean = copy_tree(demo_ecdsa, tmp_path / "clean")
    assert (clean / "var/lib/kubelet/pki/kubelet-client-current.pem").is_symlink()
    plan, result = renew(clean, keep_attributes=True)
    assert plan.refused == () and result.changed == ALL
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    _alias(root, alias, original, how)
    shared = (root / original).read_bytes()
    plan, result = renew(root, keep_attributes=True)
    refused = {s.name: s for s in plan.refused}
    assert set(refused) == set(names)
    assert {s.reason for s in refused.values()} == {"aliased"}
    first = refused[names[0]].message
    assert f"/{alias} and /{original} ({names[1]}) are one file (a {how})" in first
    assert f"/{original} and /{alias} ({names[0]}) are one file" in refused[names[1]].message
    assert not result.ok and result.changed == tuple(sorted(set(ALL) - set(names)))
    assert (root / original).read_bytes() == shared
    assert not (root / PKI / renewal.JOURNAL_NAME).exists() and not list(root.rglob("*.kubepki-new"))
    for name in ALL:
        if name not in names:
            cert, _, key = material(root, name)
            assert spki(key) == public_key_der(cert.public_key()), name  # type: ignore[arg-type]
    # Renewing one of the two alone is refused too: it would write the other's file.
    alone = kubepki.plan_renewal(root, [names[0]], now=NOW, keep_attributes=True)
    assert alone[names[0]].reason == "aliased"


def test_one_file_is_never_committed_twice(tmp_path: Path, demo_ecdsa: Path) -> None:
    """The commit refuses two writes of one target, and a resume a journal naming one target twice, before
    touching anything; negative control: one write of it commits."""
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    before = digests(root)
    node = Node(root)
    target = node.profile.cert_dir / "front-proxy-client.crt"
    write = renewal._Write(target=target, role=renewal.PlannedFileRole.CERT, mode=0o644, uid=None, gid=None,
                           data=b"x")
    with pytest.raises(RenewalError, match="twice"):
        renewal._commit(node, [renewal._Group("a", "none", (write,)), renewal._Group("b", "none", (write,))],
                        started=NOW)
    assert digests(root) == before and not list(root.rglob("*.kubepki-new"))
    entry = {"staged": str(renewal._staged(target)), "target": str(target), "role": "cert"}
    journal = {"version": 1, "state": "committing", "started": "2027-09-01T12:00:00Z", "pid": 1,
               "groups": [{"name": n, "check": "none", "files": [entry]} for n in ("a", "b")]}
    (root / PKI / renewal.JOURNAL_NAME).write_text(json.dumps(journal))
    with pytest.raises(RenewalError, match="more than once"):
        renewal.resume_renewal(root)
    (root / PKI / renewal.JOURNAL_NAME).unlink()
    assert digests(root) == before
    renewal._commit(node, [renewal._Group("a", "none", (write,))], started=NOW)
    assert (root / PKI / "front-proxy-client.crt").read_bytes() == b"x"


@pytest.mark.parametrize("change", ["mode", "owner", "mode and owner"])
def test_a_mode_or_owner_changed_after_planning_is_a_change(tmp_path: Path, demo_ecdsa: Path, change: str) -> None:
    """chmod/chown of a file the plan writes, after planning: apply refuses as for content and keeps them;
    negative control: planned again, it applies and the file keeps the new mode and owner."""
    if change != "mode" and os.geteuid() != 0:
        pytest.skip("chown needs root")
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    key = root / PKI / "apiserver.key"
    plan = kubepki.plan_renewal(root, ["apiserver"], now=NOW)
    before = key.read_bytes()
    expected = []
    if "mode" in change:
        key.chmod(0o640)
        expected.append("mode 0600 -> 0640")
    if "owner" in change:
        was = key.stat()
        os.chown(key, 4321, 4321)
        expected.append(f"owner {was.st_uid}:{was.st_gid} -> 4321:4321")
    with pytest.raises(RenewalError, match="the node changed since the plan was made") as err:
        kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    assert f"/etc/kubernetes/pki/apiserver.key ({', '.join(expected)})" in err.value.message
    assert key.read_bytes() == before
    mode, uid = key.stat().st_mode & 0o777, key.stat().st_uid
    assert mode == (0o640 if "mode" in change else 0o600)
    plan, result = renew(root, ["apiserver"])
    assert result.changed == ("apiserver",) and key.read_bytes() != before
    assert (key.stat().st_mode & 0o777, key.stat().st_uid) == (mode, uid)


@pytest.mark.parametrize("path", [f"{PKI}/apiserver.crt", f"{PKI}/apiserver.key", f"{KCONF}/admin.conf"])
def test_a_symlink_loop_is_refused_for_that_item_alone(tmp_path: Path, demo_ecdsa: Path, path: str) -> None:
    """A symlink loop at one item's file: that item refused (unusable, saying why) however it is planned, never
    written through; the other items renewed; negative control: the same node without the loop renews all."""
    item = "admin.conf" if path.endswith("admin.conf") else "apiserver"
    root = copy_tree(demo_ecdsa, tmp_path / "root")
    looped = root / path
    looped.unlink()
    os.symlink(looped.name + ".2", looped)
    os.symlink(looped.name, looped.parent / (looped.name + ".2"))
    for kw in ({}, {"recreate_missing": True}, {"reissue": True}, {"keep_attributes": True}):
        step = kubepki.plan_renewal(root, "all", now=NOW, **kw)[item]  # type: ignore[arg-type]
        assert (step.refused, step.reason) == (True, "unusable"), kw
        assert "too many levels of symbolic links" in step.message, kw
    plan, result = renew(root)
    assert result.changed == tuple(n for n in ALL if n != item)
    assert [s.name for s in plan.refused] == [item]
    assert os.readlink(looped) == looped.name + ".2"
    clean = copy_tree(demo_ecdsa, tmp_path / "clean")
    assert renew(clean)[1].changed == ALL

