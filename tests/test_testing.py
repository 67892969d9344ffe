"""kubepki.testing builds trees that match what a real kubeadm writes.

Every comparison is made with ``cryptography`` and PyYAML directly, against the
real kubeadm trees in tests/fixtures/kubeadm, never through kubepki's own
inspection code.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings, strategies as st

import kubepki
from kubepki import catalog
from kubepki.catalog import CatalogEntry, Kind, Location
from kubepki.errors import ConfigError
from kubepki.testing import (
    DEMO_AGE,
    KEY_ALGORITHMS,
    Defect,
    DefectKind,
    DemoCluster,
    DemoNode,
    build_cluster,
    build_node,
    generate_key,
    key_pool,
)
from kubepki.versions import KubeVersion
from tests.kubeadm_trees import FIXTURES, file_modes, materialize

UTC = dt.timezone.utc
#: The fixtures' kubeadm start time: their certificates begin five minutes before it.
ISSUED = dt.datetime(2026, 11, 28, 14, 38, 21, tzinfo=UTC)
#: The fixtures' kubeadm: 1.34 with patch level 1 in image tags and config.
VERSION = "1.34.1"
PKI = "etc/kubernetes/pki"
KUBELET_PKI = "var/lib/kubelet/pki"
SHARED_FILES = ("ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key",
                "etcd/ca.crt", "etcd/ca.key", "sa.key", "sa.pub")
KUBECONFIGS = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
               "kubelet.conf")
#: libyaml's safe loader when present: PyYAML's own is slow on long base64 lines.
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MANIFESTS = ("etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml",
             "kube-scheduler.yaml")


# --------------------------------------------------------------------------- helpers


def tree_paths(root: Path) -> set[str]:
    """Regular files and symlinks under ``root``, relative to it."""
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if (Path(dirpath) / d).is_symlink()]:
            out.add(str((Path(dirpath) / name).relative_to(root)))
    return out


def timeless(rel: str) -> str:
    """``rel`` with the kubelet's dated PEM name made independent of its time."""
    return re.sub(r"kubelet-client-\d{4}(-\d\d){5}\.pem$", "kubelet-client-<time>.pem", rel)


def resolve(root: Path, rel: str) -> Path:
    """``rel`` under ``root``, following symlinks as the node would (absolute = root-relative)."""
    path = root / rel.lstrip("/")
    for _ in range(10):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    raise AssertionError(f"symlink loop at {rel}")


def kubeconfig(root: Path, name: str) -> dict[str, Any]:
    """The parsed kubeconfig ``name`` of a node."""
    doc = yaml.load((root / "etc/kubernetes" / name).read_bytes(), Loader=LOADER)  # noqa: S506
    assert isinstance(doc, dict)
    return doc


def kubeconfig_credential(root: Path, name: str) -> tuple[bytes, bytes]:
    """A kubeconfig's client certificate and key PEM, embedded or referenced."""
    user = kubeconfig(root, name)["users"][0]["user"]
    if "client-certificate-data" in user:
        return (base64.b64decode(user["client-certificate-data"]),
                base64.b64decode(user["client-key-data"]))
    return (resolve(root, user["client-certificate"]).read_bytes(),
            resolve(root, user["client-key"]).read_bytes())


def certificates(root: Path) -> dict[str, x509.Certificate]:
    """Every certificate of a node tree, by file (kubeconfigs: their client certificate)."""
    out: dict[str, x509.Certificate] = {}
    for rel in sorted(tree_paths(root)):
        path = root / rel
        if rel.endswith((".crt", ".pem")) and not path.is_symlink():
            out[rel] = x509.load_pem_x509_certificates(path.read_bytes())[0]
        elif rel.endswith(".conf"):
            out[rel] = x509.load_pem_x509_certificate(kubeconfig_credential(root, path.name)[0])
    return out


def pem_types(data: bytes) -> list[str]:
    """The BEGIN types of the PEM blocks in ``data``, in order."""
    return [m.decode() for m in re.findall(rb"-----BEGIN ([A-Z ]+)-----", data)]


def spki(key: Any) -> bytes:
    """A key's public half as DER SubjectPublicKeyInfo."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return bytes(public.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo))


def load_key(data: bytes) -> Any:
    """The first private key in PEM ``data`` (which may hold certificates too)."""
    block = re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                      data, re.DOTALL)
    assert block is not None
    # The RSA consistency check takes tens of milliseconds per key; comparing
    # public halves needs none of it.
    return serialization.load_pem_private_key(block.group(0), None,
                                              unsafe_skip_rsa_key_validation=True)


def key_shape(key: Any) -> tuple[str, int]:
    """Key type and size (RSA bits or EC curve bits)."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return ("RSA", key.key_size)
    assert isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
    return ("EC", key.curve.key_size)


def verifies(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` signed ``cert`` (name and signature)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def ext(cert: x509.Certificate, kind: type[Any]) -> Any:
    """The value of an extension, or None."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def dns_sans(cert: x509.Certificate) -> list[str]:
    """The DNS SANs in order."""
    san = ext(cert, x509.SubjectAlternativeName)
    return san.get_values_for_type(x509.DNSName) if san else []


def profile(cert: x509.Certificate, *, start: dt.datetime = ISSUED) -> dict[str, Any]:
    """What kubeadm decides about a certificate: all but its key, serial and expiry.

    ``not_before`` is relative to ``start``, the kubeadm run's start time.
    """
    san = ext(cert, x509.SubjectAlternativeName)
    eku = ext(cert, x509.ExtendedKeyUsage)
    return {
        "subject": [[(a.oid.dotted_string, a.value, a._type) for a in rdn] for rdn in cert.subject.rdns],
        "issuer": [[(a.oid.dotted_string, a.value, a._type) for a in rdn] for rdn in cert.issuer.rdns],
        "version": cert.version,
        "extensions": [(e.oid.dotted_string, e.critical) for e in cert.extensions],
        "key_usage": ext(cert, x509.KeyUsage),
        "extended_key_usage": list(eku) if eku else None,
        "basic_constraints": ext(cert, x509.BasicConstraints),
        "sans": [(type(n).__name__, str(n.value)) for n in san] if san else None,
        "signature": cert.signature_algorithm_oid,
        "key": key_shape(cert.public_key()),
        "not_before": cert.not_valid_before_utc - start,
    }


@pytest.fixture(scope="module")
def fixture_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A real kubeadm scenario's root with kubeadm's modes and symlinks (cached)."""
    cache: dict[str, Path] = {}

    def get(scenario: str) -> Path:
        if scenario not in cache:
            cache[scenario] = materialize(scenario, tmp_path_factory.mktemp("fx") / scenario)
        return cache[scenario]

    return get


#: build options that reproduce each fixture scenario's tree.
SCENARIO_OPTIONS: dict[str, dict[str, Any]] = {
    "single": {"manifests": False, "kubelet": False, "write_config": False},
    "single-full": {"kubelet_serving": False, "write_config": False},
}


@pytest.fixture(scope="module")
def demo_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], DemoNode]:
    """A demo node built to match a fixture scenario (cached)."""
    cache: dict[str, DemoNode] = {}

    def get(scenario: str) -> DemoNode:
        if scenario not in cache:
            cache[scenario] = build_node(tmp_path_factory.mktemp("demo"), version=VERSION,
                                         issued_at=ISSUED, **SCENARIO_OPTIONS[scenario])
        return cache[scenario]

    return get


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> DemoCluster:
    """A three-node demo cluster like the ha-cp* fixtures."""
    return build_cluster(tmp_path_factory.mktemp("ha"), nodes=3, version=VERSION, issued_at=ISSUED,
                         manifests=False, write_config=False)


# --------------------------------------------------------------------------- same as kubeadm


@pytest.mark.parametrize("scenario", ["single", "single-full"])
def test_same_file_paths(scenario: str, fixture_tree: Callable[[str], Path],
                         demo_tree: Callable[[str], DemoNode]) -> None:
    """The demo tree holds exactly the files and symlinks of the kubeadm tree."""
    demo = {timeless(p) for p in tree_paths(demo_tree(scenario).root)}
    assert demo == {timeless(p) for p in tree_paths(fixture_tree(scenario))}


@pytest.mark.parametrize("scenario", ["single", "single-full"])
def test_same_file_modes(scenario: str, demo_tree: Callable[[str], DemoNode]) -> None:
    """Every file has the mode kubeadm gave it, and directories kubeadm's too."""
    root = demo_tree(scenario).root
    expected = {timeless(rel): mode for rel, mode in file_modes(scenario).items()
                if rel.startswith(("etc", "var"))}
    actual = {timeless(rel): stat.S_IMODE(os.lstat(root / rel).st_mode)
              for rel in tree_paths(root) if not (root / rel).is_symlink()}
    assert actual == expected
    for dirpath, _dirs, _files in os.walk(root):
        want = 0o700 if dirpath.endswith("manifests") else 0o755
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == want, dirpath


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_catalog_modes_used(mode: int, demo_tree: Callable[[str], DemoNode]) -> None:
    """Files get the catalog's mode for their role (negative control: the other mode is absent)."""
    root = demo_tree("single").root
    for entry in catalog.entries(version=VERSION):
        base = {Location.CERT_DIR: PKI, Location.KUBECONFIG_DIR: "etc/kubernetes"}.get(entry.location)
        if base is None:
            continue
        for f in entry.files:
            actual = stat.S_IMODE(os.lstat(root / base / f.path).st_mode)
            assert (actual == mode) == (f.mode == mode), f.path


def test_kubelet_symlink_is_absolute(demo_tree: Callable[[str], DemoNode],
                                     fixture_tree: Callable[[str], Path]) -> None:
    """kubelet-client-current.pem is an absolute symlink to a dated PEM, as the kubelet makes it."""
    for root in (demo_tree("single-full").root, fixture_tree("single-full")):
        target = os.readlink(root / KUBELET_PKI / "kubelet-client-current.pem")
        assert re.fullmatch(r"/var/lib/kubelet/pki/kubelet-client-\d{4}(-\d\d){5}\.pem", target)
        assert (root / target.lstrip("/")).is_file()
    demo = demo_tree("single-full").root
    assert os.readlink(demo / KUBELET_PKI / "kubelet-client-current.pem").endswith(
        ISSUED.strftime("%Y-%m-%d-%H-%M-%S.pem"))


def _fixture_cert_labels() -> list[str]:
    root = FIXTURES / "single-full" / "root"
    labels = [str(p.relative_to(root)) for p in sorted((root / PKI).rglob("*.crt"))]
    labels += [f"etc/kubernetes/{name}" for name in KUBECONFIGS]
    labels.append(f"{KUBELET_PKI}/kubelet-client-current.pem")
    return labels


@pytest.mark.parametrize("label", _fixture_cert_labels())
def test_certificate_profile_matches(label: str, fixture_tree: Callable[[str], Path],
                                     demo_tree: Callable[[str], DemoNode]) -> None:
    """Subject, issuer, extensions (order and criticality), usages, SANs and key match kubeadm's."""
    real = certificates(fixture_tree("single-full"))
    demo = certificates(demo_tree("single-full").root)
    key = label if label in real else str(resolve(fixture_tree("single-full"), label).relative_to(
        fixture_tree("single-full")))
    demo_key = label if label in demo else str(resolve(demo_tree("single-full").root, label)
                                               .relative_to(demo_tree("single-full").root))
    assert profile(demo[demo_key]) == profile(real[key])
    # The real kubeconfig phase ran two seconds after the certs phase.
    lifetime = demo[demo_key].not_valid_after_utc - real[key].not_valid_after_utc
    assert abs(lifetime) <= dt.timedelta(seconds=5)
    assert 1 <= demo[demo_key].serial_number < 2**63


def test_profile_detects_a_difference(fixture_tree: Callable[[str], Path]) -> None:
    """Negative control: two different kubeadm certificates have different profiles."""
    real = certificates(fixture_tree("single"))
    assert profile(real[f"{PKI}/apiserver.crt"]) != profile(real[f"{PKI}/front-proxy-client.crt"])
    assert profile(real[f"{PKI}/etcd/peer.crt"]) == profile(real[f"{PKI}/etcd/server.crt"])


def _pem_files() -> list[str]:
    root = FIXTURES / "single" / "root"
    return sorted(str(p.relative_to(root)) for p in (root / PKI).rglob("*") if p.is_file())


@pytest.mark.parametrize("rel", _pem_files())
def test_pem_block_types_match(rel: str, fixture_tree: Callable[[str], Path],
                               demo_tree: Callable[[str], DemoNode]) -> None:
    """PEM files hold the same block types as kubeadm's (RSA PRIVATE KEY, PUBLIC KEY...)."""
    real = (fixture_tree("single") / rel).read_bytes()
    demo = (demo_tree("single").root / rel).read_bytes()
    assert pem_types(demo) == pem_types(real)
    assert demo.endswith(b"\n") and real.endswith(b"\n")


@pytest.mark.parametrize("scenario", ["single", "single-full"])
@pytest.mark.parametrize("name", KUBECONFIGS)
def test_kubeconfig_layout_matches(scenario: str, name: str, fixture_tree: Callable[[str], Path],
                                   demo_tree: Callable[[str], DemoNode]) -> None:
    """Kubeconfigs are byte-identical to kubeadm's apart from the base64 data."""
    def masked(root: Path) -> str:
        return re.sub(r"(-data: ).*", r"\1DATA", (root / "etc/kubernetes" / name).read_text())

    real, demo = fixture_tree(scenario), demo_tree(scenario).root
    assert masked(demo) == masked(real)
    for root in (real, demo):
        doc = kubeconfig(root, name)
        assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == (
            root / PKI / "ca.crt").read_bytes()
        cert_pem, key_pem = kubeconfig_credential(root, name)
        both = cert_pem if cert_pem == key_pem else cert_pem + key_pem  # one PEM file, or data
        assert pem_types(both) == ["CERTIFICATE", "RSA PRIVATE KEY"]


@pytest.mark.parametrize(("name", "server"), [
    ("admin.conf", "https://cp.example.test:6443"),
    ("super-admin.conf", "https://cp.example.test:6443"),
    ("controller-manager.conf", "https://10.0.0.11:6443"),
    ("scheduler.conf", "https://10.0.0.11:6443"),
    ("kubelet.conf", "https://10.0.0.11:6443"),
])
def test_kubeconfig_servers(name: str, server: str, fixture_tree: Callable[[str], Path],
                            demo_tree: Callable[[str], DemoNode]) -> None:
    """Server URLs are the endpoint for users and the local API server for components."""
    for root in (fixture_tree("single"), demo_tree("single").root):
        assert kubeconfig(root, name)["clusters"][0]["cluster"]["server"] == server


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_identical(name: str, fixture_tree: Callable[[str], Path],
                             demo_tree: Callable[[str], DemoNode]) -> None:
    """Static pod manifests are byte-identical to kubeadm's for the same version and node."""
    rel = f"etc/kubernetes/manifests/{name}"
    assert (demo_tree("single-full").root / rel).read_text() == (fixture_tree("single-full") / rel).read_text()


def test_kubeadm_config_identical(tmp_path: Path) -> None:
    """The written kubeadm config is the fixtures' config, byte for byte."""
    node = build_node(tmp_path, version=VERSION, issued_at=ISSUED, manifests=False, kubelet=False)
    written = node.path("/etc/kubernetes/kubeadm-config.yaml")
    assert written.read_text() == (FIXTURES / "single" / "kubeadm-config.yaml").read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o644


def test_image_tag_defaults_to_patch_zero(tmp_path: Path) -> None:
    """A version without a patch level gives v<version>.0 image tags."""
    node = build_node(tmp_path, version="1.33", issued_at=ISSUED, kubelet=False)
    text = node.path("/etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
    assert "image: registry.k8s.io/kube-apiserver:v1.33.0" in text
    assert "kubernetesVersion: v1.33.0" in node.path("/etc/kubernetes/kubeadm-config.yaml").read_text()


# --------------------------------------------------------------------------- several nodes


@pytest.mark.parametrize("name", ["cp2", "cp3"])
def test_ha_node_matches_fixture(name: str, ha: DemoCluster,
                                 fixture_tree: Callable[[str], Path]) -> None:
    """Each HA node's node-specific certificates match kubeadm's for that node."""
    real = certificates(fixture_tree(f"ha-{name}"))
    demo = certificates(ha.node(name).root)
    for rel in (f"{PKI}/apiserver.crt", f"{PKI}/etcd/peer.crt", f"{PKI}/etcd/server.crt",
                "etc/kubernetes/kubelet.conf", "etc/kubernetes/controller-manager.conf"):
        # Each HA fixture node ran a few seconds after the one before it, and the
        # kubeconfig certificates start with the (copied) CA, as kubeadm makes them.
        start = real[f"{PKI}/ca.crt" if rel.endswith(".conf") else f"{PKI}/apiserver.crt"]
        real_start = start.not_valid_before_utc + dt.timedelta(minutes=5)
        assert profile(demo[rel]) == profile(real[rel], start=real_start), rel


@pytest.mark.parametrize("rel", SHARED_FILES)
def test_shared_files_identical(rel: str, ha: DemoCluster) -> None:
    """Shared material is the same bytes on every node."""
    contents = {(n.root / PKI / rel).read_bytes() for n in ha.nodes}
    assert len(contents) == 1


def test_node_files_distinct(ha: DemoCluster) -> None:
    """Node-specific certificates differ between nodes in serial and key."""
    per_node = [certificates(n.root) for n in ha.nodes]
    shared = {f"{PKI}/{rel}" for rel in SHARED_FILES}
    labels = [label for label in per_node[0] if label not in shared and "super-admin" not in label]
    assert len(labels) >= 12
    for label in labels:
        certs = [c[label] for c in per_node]
        if not label.endswith("kubelet.crt"):  # client-go always uses serial 2 there
            assert len({c.serial_number for c in certs}) == 3, label
        assert len({spki(c.public_key()) for c in certs}) == 3, label


def test_every_key_distinct_within_cluster(ha: DemoCluster) -> None:
    """No two artifacts of one cluster share a key pair (sa included)."""
    seen: dict[bytes, str] = {}
    for node in ha.nodes:
        for rel in sorted(tree_paths(node.root)):
            path = node.root / rel
            if rel.endswith(".key") or (rel.endswith(".pem") and not path.is_symlink()):
                if node is not ha.first and rel.removeprefix(f"{PKI}/") in SHARED_FILES:
                    continue
                label = f"{node.name}:{rel}"
                public = spki(load_key(path.read_bytes()))
                assert public not in seen, (label, seen.get(public))
                seen[public] = label
            elif rel.endswith(".conf") and "client-key-data" in path.read_text():
                public = spki(load_key(kubeconfig_credential(node.root, path.name)[1]))
                assert public not in seen, (rel, seen.get(public))
                seen[public] = f"{node.name}:{rel}"
    assert len(seen) > 40


def test_super_admin_only_on_first_node(ha: DemoCluster) -> None:
    """Only the init node has super-admin.conf, as only kubeadm init writes it."""
    has = [(n.root / "etc/kubernetes/super-admin.conf").exists() for n in ha.nodes]
    assert has == [True, False, False]


def test_joining_etcd_members_list_their_predecessors(tmp_path: Path) -> None:
    """etcd.yaml of a joining member names the members before it and the existing cluster."""
    cluster = build_cluster(tmp_path, nodes=2, issued_at=ISSUED, kubelet=False, write_config=False)
    first = cluster.nodes[0].path("/etc/kubernetes/manifests/etcd.yaml").read_text()
    second = cluster.nodes[1].path("/etc/kubernetes/manifests/etcd.yaml").read_text()
    assert "--initial-cluster=cp1=https://10.0.0.11:2380\n" in first
    assert "initial-cluster-state" not in first
    assert ("--initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380\n"
            "    - --initial-cluster-state=existing\n") in second


def test_named_nodes_and_addresses(tmp_path: Path) -> None:
    """Node names and addresses are substituted, with DNS SANs sorted as kubeadm sorts them."""
    cluster = build_cluster(tmp_path, nodes=["alpha", "zulu"], first_address="192.168.7.10",
                            issued_at=ISSUED, manifests=False, kubelet=False)
    assert [(n.name, n.address, n.root) for n in cluster.nodes] == [
        ("alpha", "192.168.7.10", tmp_path / "alpha"), ("zulu", "192.168.7.11", tmp_path / "zulu")]
    real = x509.load_pem_x509_certificate(
        (FIXTURES / "single/root" / PKI / "apiserver.crt").read_bytes())
    real_san = real.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    for node in cluster.nodes:
        cert = x509.load_pem_x509_certificate((node.root / PKI / "apiserver.crt").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        swap = {"cp1": node.name, "10.0.0.11": node.address}
        want_dns = sorted(swap.get(d, d) for d in real_san.get_values_for_type(x509.DNSName))
        want_ips = [swap.get(str(i), str(i)) for i in real_san.get_values_for_type(x509.IPAddress)]
        assert san.get_values_for_type(x509.DNSName) == want_dns
        assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == want_ips
    # kubeadm's sorting puts "alpha" before the endpoint, and "zulu" after "kubernetes*".
    assert dns_sans(x509.load_pem_x509_certificate(
        (cluster.nodes[1].root / PKI / "apiserver.crt").read_bytes()))[-1] == "zulu"


@settings(max_examples=5, deadline=None)
@given(name=st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z"))
def test_any_node_name_gets_sorted_sans(name: str) -> None:
    """For any node name the apiserver's DNS SANs are kubeadm's sorted set with the name in it."""
    with tempfile.TemporaryDirectory() as tmp:
        node = build_node(tmp, name=name, issued_at=ISSUED, manifests=False, kubelet=False,
                          write_config=False, external_etcd=True)
        cert = x509.load_pem_x509_certificate((node.root / PKI / "apiserver.crt").read_bytes())
        dns = dns_sans(cert)
        assert name in dns
        assert dns == sorted(set(dns))


# --------------------------------------------------------------------------- versions and options


@pytest.mark.parametrize(("version", "api_version", "masters"), [
    ("1.21", "kubeadm.k8s.io/v1beta2", True),
    ("1.28", "kubeadm.k8s.io/v1beta3", True),
    ("1.29", "kubeadm.k8s.io/v1beta3", False),
    ("1.31", "kubeadm.k8s.io/v1beta4", False),
])
def test_organizations_by_version(version: str, api_version: str, masters: bool,
                                  tmp_path: Path) -> None:
    """Before 1.29 admin and client certificates carry system:masters, and no super-admin.conf."""
    node = build_node(tmp_path, version=version, issued_at=ISSUED, manifests=False)
    certs = certificates(node.root)
    kube_version = KubeVersion.parse(version)

    def orgs(label: str) -> list[str]:
        return [str(a.value) for a in certs[label].subject.get_attributes_for_oid(
            NameOID.ORGANIZATION_NAME)]

    if masters:
        assert orgs("etc/kubernetes/admin.conf") == ["system:masters"]
        assert orgs(f"{PKI}/apiserver-kubelet-client.crt") == ["system:masters"]
        assert orgs(f"{PKI}/apiserver-etcd-client.crt") == ["system:masters"]
        assert orgs(f"{PKI}/etcd/healthcheck-client.crt") == ["system:masters"]
        assert "etc/kubernetes/super-admin.conf" not in certs
    else:
        assert orgs("etc/kubernetes/admin.conf") == ["kubeadm:cluster-admins"]
        assert orgs(f"{PKI}/apiserver-kubelet-client.crt") == ["kubeadm:cluster-admins"]
        assert orgs(f"{PKI}/apiserver-etcd-client.crt") == []
        assert orgs("etc/kubernetes/super-admin.conf") == ["system:masters"]
    for entry in catalog.entries(version=version, kinds=[Kind.CERTIFICATE, Kind.KUBECONFIG]):
        label = (f"{PKI}/{entry.path}" if entry.kind is Kind.CERTIFICATE
                 else f"etc/kubernetes/{entry.path}")
        assert entry.subject is not None
        assert tuple(orgs(label)) == entry.subject.organizations_for(kube_version), label
    config = yaml.safe_load_all(node.path("/etc/kubernetes/kubeadm-config.yaml").read_text())
    assert {doc["apiVersion"] for doc in config} == {api_version}
    has_preferences = "preferences: {}" in node.path("/etc/kubernetes/admin.conf").read_text()
    assert has_preferences


@pytest.mark.parametrize(("algorithm", "curve_bits", "signature"), [
    ("ECDSA-P256", 256, "ecdsa-with-SHA256"),
    ("ECDSA-P384", 384, "ecdsa-with-SHA384"),
])
def test_ecdsa_trees(algorithm: str, curve_bits: int, signature: str, tmp_path: Path) -> None:
    """ECDSA trees have EC keys written as EC PRIVATE KEY, signed with the curve's hash."""
    node = build_node(tmp_path, key_algorithm=algorithm, issued_at=ISSUED, manifests=False)
    certs = certificates(node.root)
    for label, cert in certs.items():
        if label.endswith("kubelet.crt"):
            assert key_shape(cert.public_key()) == ("RSA", 2048)  # the kubelet's own, always RSA
            continue
        assert key_shape(cert.public_key()) == ("EC", curve_bits), label
        assert cert.signature_algorithm_oid._name == signature, label
    for rel in tree_paths(node.root):
        if rel.endswith(".key") and "kubelet" not in rel:
            data = (node.root / rel).read_bytes()
            assert pem_types(data) == ["EC PRIVATE KEY"], rel
            assert key_shape(load_key(data)) == ("EC", curve_bits)
    assert pem_types((node.root / PKI / "sa.pub").read_bytes()) == ["PUBLIC KEY"]
    _cert, key_pem = kubeconfig_credential(node.root, "admin.conf")
    assert pem_types(key_pem) == ["EC PRIVATE KEY"]
    assert f"encryptionAlgorithm: {algorithm}" in node.path(
        "/etc/kubernetes/kubeadm-config.yaml").read_text()


def test_ecdsa_before_v1beta4_keeps_rsa_kubeconfigs(tmp_path: Path) -> None:
    """With the PublicKeysECDSA gate (before 1.31) kubeconfig keys stayed RSA (kubeadm#3072)."""
    node = build_node(tmp_path, version="1.30", key_algorithm="ECDSA-P256", issued_at=ISSUED,
                      manifests=False, kubelet=False)
    assert key_shape(load_key((node.root / PKI / "apiserver.key").read_bytes())) == ("EC", 256)
    assert key_shape(load_key(kubeconfig_credential(node.root, "admin.conf")[1])) == ("RSA", 2048)
    config = node.path("/etc/kubernetes/kubeadm-config.yaml").read_text()
    assert "PublicKeysECDSA: true" in config
    assert "encryptionAlgorithm" not in config


@pytest.mark.parametrize(("algorithm", "shape"), [
    ("RSA-2048", ("RSA", 2048)),
    ("RSA-3072", ("RSA", 3072)),
    ("ECDSA-P256", ("EC", 256)),
    ("ECDSA-P384", ("EC", 384)),
])
def test_generate_key(algorithm: str, shape: tuple[str, int]) -> None:
    """Each algorithm name gives its key type and size (RSA-4096 is left out: too slow)."""
    assert key_shape(generate_key(algorithm)) == shape
    assert algorithm in KEY_ALGORITHMS


@pytest.mark.parametrize(("version", "algorithm"), [
    ("1.30", "RSA-4096"), ("1.30", "RSA-3072"), ("1.33", "ECDSA-P384"), ("1.34", "DSA-1024"),
])
def test_algorithm_unavailable_refused(version: str, algorithm: str, tmp_path: Path) -> None:
    """An algorithm the kubeadm version does not offer is refused."""
    with pytest.raises(ConfigError):
        build_node(tmp_path, version=version, key_algorithm=algorithm)
    assert not (tmp_path / "cp1").exists()


def test_external_etcd(tmp_path: Path) -> None:
    """External etcd drops the etcd CA, its certificates and etcd.yaml; the config says so."""
    node = build_node(tmp_path, external_etcd=True, issued_at=ISSUED)
    paths = tree_paths(node.root)
    assert not [p for p in paths if "etcd" in p and "kubeadm-config" not in p and
                "kube-apiserver" not in p]
    assert f"{PKI}/apiserver-etcd-client.crt" not in paths
    assert f"{PKI}/apiserver.crt" in paths
    config = list(yaml.safe_load_all(node.path("/etc/kubernetes/kubeadm-config.yaml").read_text()))
    assert config[1]["etcd"]["external"]["endpoints"]
    api = node.path("/etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
    assert "--etcd-servers=https://etcd.example.test:2379" in api
    assert "127.0.0.1:2379" not in api


def test_external_ca(tmp_path: Path) -> None:
    """External CA mode has ca.crt but no ca.key, and blank KCM signing flags."""
    node = build_node(tmp_path, external_ca=True, issued_at=ISSUED)
    assert (node.root / PKI / "ca.crt").is_file()
    assert not (node.root / PKI / "ca.key").exists()
    assert (node.root / PKI / "front-proxy-ca.key").is_file()
    kcm = node.path("/etc/kubernetes/manifests/kube-controller-manager.yaml").read_text()
    assert "- --cluster-signing-cert-file=\n" in kcm
    assert "- --cluster-signing-key-file=\n" in kcm


def test_validity_options(tmp_path: Path) -> None:
    """Validity, CA validity and the five-minute backdate are kubeadm's; v1beta4 records them."""
    node = build_node(tmp_path, issued_at=ISSUED, validity=dt.timedelta(days=30),
                      ca_validity=dt.timedelta(days=100), manifests=False)
    certs = certificates(node.root)
    ca, leaf = certs[f"{PKI}/ca.crt"], certs[f"{PKI}/apiserver.crt"]
    admin = certs["etc/kubernetes/admin.conf"]
    assert ca.not_valid_before_utc == leaf.not_valid_before_utc == ISSUED - dt.timedelta(minutes=5)
    assert admin.not_valid_before_utc == ca.not_valid_before_utc
    assert ca.not_valid_after_utc == ISSUED + dt.timedelta(days=100)
    assert leaf.not_valid_after_utc == admin.not_valid_after_utc == ISSUED + dt.timedelta(days=30)
    config = node.path("/etc/kubernetes/kubeadm-config.yaml").read_text()
    assert "certificateValidityPeriod: 720h0m0s" in config
    assert "caCertificateValidityPeriod: 2400h0m0s" in config


def test_kubelet_serving_certificate(tmp_path: Path) -> None:
    """kubelet.crt is client-go's self-signed pair: <node>@<ts> issued by <node>-ca@<ts>."""
    node = build_node(tmp_path, issued_at=ISSUED, manifests=False)
    data = (node.root / KUBELET_PKI / "kubelet.crt").read_bytes()
    leaf, ca = x509.load_pem_x509_certificates(data)
    stamp = int(ISSUED.timestamp())
    assert leaf.subject.rfc4514_string() == f"CN=cp1@{stamp}"
    assert ca.subject.rfc4514_string() == leaf.issuer.rfc4514_string() == f"CN=cp1-ca@{stamp}"
    assert (leaf.serial_number, ca.serial_number) == (2, 1)
    assert verifies(leaf, ca) and verifies(ca, ca)
    assert leaf.not_valid_before_utc == ISSUED - dt.timedelta(hours=1)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=365)
    assert list(ext(leaf, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert dns_sans(leaf) == ["cp1"]
    assert ext(ca, x509.BasicConstraints).ca and ext(ca, x509.SubjectKeyIdentifier) is not None
    key = load_key((node.root / KUBELET_PKI / "kubelet.key").read_bytes())
    assert spki(key) == spki(leaf.public_key())
    assert pem_types(data) == ["CERTIFICATE", "CERTIFICATE"]


def test_kubelet_pem_holds_kubelet_conf_credential(tmp_path: Path) -> None:
    """The rotated PEM holds the certificate and key kubeadm issued for kubelet.conf."""
    node = build_node(tmp_path, issued_at=ISSUED, manifests=False)
    data = resolve(node.root, f"/{KUBELET_PKI}/kubelet-client-current.pem").read_bytes()
    assert pem_types(data) == ["CERTIFICATE", "RSA PRIVATE KEY"]
    cert = x509.load_pem_x509_certificate(data)
    assert cert.subject.rfc4514_string() == "CN=system:node:cp1,O=system:nodes"
    assert spki(load_key(data)) == spki(cert.public_key())
    user = kubeconfig(node.root, "kubelet.conf")["users"][0]["user"]
    assert user == {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                    "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}


def test_demo_node_as_node(tmp_path: Path) -> None:
    """DemoNode.as_node gives a kubepki.Node on the tree that discovers its name and version."""
    node = build_node(tmp_path, version="1.30", issued_at=ISSUED)
    kn = node.as_node()
    assert isinstance(kn, kubepki.Node)
    assert kn.root == node.root
    assert kn.profile.name == "cp1"
    assert str(kn.profile.kubernetes_version) == "1.30"


def test_cluster_summary(tmp_path: Path) -> None:
    """DemoCluster records its options and finds nodes by name."""
    cluster = build_cluster(tmp_path, nodes=2, issued_at=ISSUED + dt.timedelta(microseconds=7),
                            manifests=False, kubelet=False)
    assert cluster.issued_at == ISSUED
    assert cluster.node("cp2") is cluster.nodes[1]
    assert cluster.to_dict()["nodes"][1] == {"name": "cp2", "address": "10.0.0.12",
                                             "root": str(tmp_path / "cp2"), "role": "control-plane"}
    assert cluster.to_dict()["kubelet_config"] == {}
    with pytest.raises(ConfigError):
        cluster.node("cp9")
    assert dt.timedelta(days=200) < DEMO_AGE < dt.timedelta(days=365)


@pytest.mark.parametrize("options", [
    {"issued_at": dt.datetime(2026, 1, 1)},  # naive
    {"nodes": 0},
    {"nodes": ["cp1", "cp1"]},
    {"nodes": ["Bad_Name"]},
    {"nodes": "cp1"},
    {"version": "1.20"},
    {"validity": dt.timedelta(0)},
    {"control_plane_endpoint": "no-port"},
])
def test_invalid_options_refused(options: dict[str, Any], tmp_path: Path) -> None:
    """Invalid options raise ConfigError."""
    with pytest.raises(ConfigError):
        build_cluster(tmp_path, **options)


def test_non_empty_node_root_refused(tmp_path: Path) -> None:
    """A node root that already holds files is not overwritten."""
    (tmp_path / "cp1").mkdir()
    (tmp_path / "cp1" / "keep").write_text("x")
    with pytest.raises(ConfigError):
        build_node(tmp_path)
    assert (tmp_path / "cp1" / "keep").read_text() == "x"


# --------------------------------------------------------------------------- key pool


def test_key_pool_distinct_and_reused() -> None:
    """A take gives distinct keys; later takes reuse the pool's keys."""
    pool = key_pool("ECDSA-P256")
    first = pool.take(6)
    assert len({spki(k) for k in first}) == 6
    again = pool.take(len(pool))
    assert {spki(k) for k in first} <= {spki(k) for k in again}
    assert key_pool("ECDSA-P256") is pool


def test_fresh_keys_bypass_pool(tmp_path: Path) -> None:
    """fresh_keys=True uses keys no pool holds; by default the pool's keys are used."""
    pool = key_pool("ECDSA-P384")

    def ca_key(node: DemoNode) -> bytes:
        return spki(load_key((node.root / PKI / "ca.key").read_bytes()))

    fresh = build_node(tmp_path / "a", key_algorithm="ECDSA-P384", fresh_keys=True, kubelet=False,
                       manifests=False)
    assert ca_key(fresh) not in {spki(k) for k in pool.take(len(pool))}
    pooled = build_node(tmp_path / "b", key_algorithm="ECDSA-P384", kubelet=False, manifests=False)
    assert ca_key(pooled) in {spki(k) for k in pool.take(len(pool))}


# --------------------------------------------------------------------------- an independent checker


def present(cluster: DemoCluster, node: DemoNode) -> Iterator[CatalogEntry]:
    """The catalog entries a node of ``cluster`` should have."""
    for entry in catalog.entries(version=cluster.version, external_etcd=cluster.external_etcd, role=node.role):
        if entry.name == "super-admin.conf" and node is not cluster.first:
            continue
        if entry.name == "kubelet-server-current.pem" and not cluster.kubelet_config.get("serverTLSBootstrap"):
            continue
        if entry.name == "kubelet-client-current.pem" and not cluster.kubelet:
            continue
        if entry.name == "kubelet.crt" and not cluster.kubelet_serving:
            continue
        yield entry


def entry_path(node: DemoNode, entry: CatalogEntry, index: int = 0) -> Path:
    """The local path of one of an entry's files."""
    base = {Location.CERT_DIR: PKI, Location.KUBECONFIG_DIR: "etc/kubernetes",
            Location.KUBELET_PKI_DIR: KUBELET_PKI}[entry.location]
    return node.root / base / entry.files[index].path


def healthy_cert(cert: x509.Certificate, key: Any, issuer: x509.Certificate, entry: CatalogEntry,
                 node: DemoNode) -> bool:
    """Valid now, signed by ``issuer``, matching ``key``, with the SANs and usages it needs."""
    if not cert.not_valid_before_utc <= ISSUED <= cert.not_valid_after_utc:
        return False
    if not verifies(cert, issuer) or spki(key) != spki(cert.public_key()):
        return False
    if "{node_name}" in entry.sans.dns and node.name not in dns_sans(cert):
        return False
    eku = ext(cert, x509.ExtendedKeyUsage)
    wanted = {{"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
               "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}[u.value]
              for u in entry.extended_key_usages}
    return wanted <= set(eku or ())


def majority_copy(cluster: DemoCluster, path: Path, node: DemoNode) -> bool:
    """True when a shared file equals the copy most nodes hold."""
    rel = path.relative_to(node.root)
    copies = collections.Counter(
        (n.root / rel).read_bytes() if (n.root / rel).exists() else b"" for n in cluster.nodes)
    return copies.most_common(1)[0][0] == path.read_bytes()


def healthy(cluster: DemoCluster, node: DemoNode, entry: CatalogEntry) -> bool:
    """Whether one item of a node is as kubeadm would leave it in a healthy cluster."""
    ca = x509.load_pem_x509_certificate((node.root / PKI / "ca.crt").read_bytes())
    if entry.kind is Kind.CA:
        crt = entry_path(node, entry, 0)
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        if not (verifies(cert, cert) and cert.not_valid_before_utc <= ISSUED
                and cert.not_valid_after_utc >= ISSUED + cluster.validity):
            return False
        files = [crt]
        if not (entry.name == "ca" and cluster.external_ca):
            key = entry_path(node, entry, 1)
            files.append(key)
            if spki(load_key(key.read_bytes())) != spki(cert.public_key()):
                return False
        return all(majority_copy(cluster, f, node) for f in files)
    if entry.kind is Kind.KEYPAIR:
        key, pub = entry_path(node, entry, 0), entry_path(node, entry, 1)
        public = serialization.load_pem_public_key(pub.read_bytes())
        return (spki(load_key(key.read_bytes())) == spki(public)
                and majority_copy(cluster, key, node) and majority_copy(cluster, pub, node))
    if entry.kind is Kind.CERTIFICATE:
        assert entry.signer is not None
        signer = x509.load_pem_x509_certificate(
            entry_path(node, catalog.get(entry.signer)).read_bytes())
        cert = x509.load_pem_x509_certificate(entry_path(node, entry, 0).read_bytes())
        return healthy_cert(cert, load_key(entry_path(node, entry, 1).read_bytes()), signer,
                            entry, node)
    if entry.kind is Kind.KUBECONFIG:
        doc = kubeconfig(node.root, entry.path)
        ca_data = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
        if ca_data != (node.root / PKI / "ca.crt").read_bytes():
            return False
        user = doc["users"][0]["user"]
        if entry.name == "kubelet.conf" and cluster.kubelet and "client-certificate-data" in user:
            return False  # kubeadm#1753: embedded data never rotates
        cert_pem, key_pem = kubeconfig_credential(node.root, entry.path)
        return healthy_cert(x509.load_pem_x509_certificate(cert_pem), load_key(key_pem), ca,
                            entry, node)
    main = entry_path(node, entry, 0)
    if entry.name == "kubelet-client-current.pem":
        if not os.readlink(main).startswith("/"):
            return False
        data = resolve(node.root, str(main.relative_to(node.root))).read_bytes()
        return healthy_cert(x509.load_pem_x509_certificate(data), load_key(data), ca, entry, node)
    leaf, own_ca = x509.load_pem_x509_certificates(main.read_bytes())
    key = load_key(entry_path(node, entry, 1).read_bytes())
    return (healthy_cert(leaf, key, own_ca, entry, node)
            and ExtendedKeyUsageOID.SERVER_AUTH in ext(leaf, x509.ExtendedKeyUsage))


def problems(cluster: DemoCluster) -> set[tuple[str, str]]:
    """(node, item) for every item that is not healthy."""
    out = set()
    for node in cluster.nodes:
        for entry in present(cluster, node):
            try:
                ok = healthy(cluster, node, entry)
            except Exception:  # any failure to read or parse is a problem
                ok = False
            if not ok:
                out.add((node.name, entry.name))
    return out


@pytest.mark.parametrize("options", [
    {},
    {"external_ca": True},
    {"external_etcd": True, "key_algorithm": "ECDSA-P256"},
    {"version": "1.28", "kubelet": False},
])
def test_clean_cluster_has_no_problems(options: dict[str, Any], tmp_path: Path) -> None:
    """Negative control for the defects: a cluster built without defects is healthy everywhere."""
    cluster = build_cluster(tmp_path, nodes=3, issued_at=ISSUED, manifests=False,
                            write_config=False, **options)
    assert problems(cluster) == set()


# --------------------------------------------------------------------------- defects


def _cert(node: DemoNode, rel: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates((node.root / PKI / rel).read_bytes())[0]


def _conf_cert(node: DemoNode, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(kubeconfig_credential(node.root, name)[0])


def _expired(node: DemoNode) -> bool:
    return _cert(node, "apiserver.crt").not_valid_after_utc < ISSUED


def _not_yet_valid(node: DemoNode) -> bool:
    return _conf_cert(node, "admin.conf").not_valid_before_utc > ISSUED


def _wrong_signer(node: DemoNode) -> bool:
    cert, ca = _cert(node, "front-proxy-client.crt"), _cert(node, "front-proxy-ca.crt")
    return cert.issuer == ca.subject and not verifies(cert, ca)


def _key_mismatch(node: DemoNode) -> bool:
    key = load_key((node.root / PKI / "apiserver.key").read_bytes())
    return spki(key) != spki(_cert(node, "apiserver.crt").public_key())


def _kubelet_key_mismatch(node: DemoNode) -> bool:
    data = resolve(node.root, f"{KUBELET_PKI}/kubelet-client-current.pem").read_bytes()
    return spki(load_key(data)) != spki(x509.load_pem_x509_certificate(data).public_key())


def _missing(node: DemoNode) -> bool:
    return not any((node.root / PKI / "etcd" / f).exists() for f in ("peer.crt", "peer.key"))


def _garbage(node: DemoNode) -> bool:
    data = (node.root / "etc/kubernetes/scheduler.conf").read_bytes()
    try:
        yaml.safe_load(data)
    except yaml.YAMLError:
        return b"-----BEGIN" not in data and not data.startswith(b"0")
    return False


def _truncated(node: DemoNode) -> bool:
    data = (node.root / PKI / "apiserver.crt").read_bytes()
    try:
        x509.load_pem_x509_certificate(data)
    except ValueError:
        return b"-----BEGIN CERTIFICATE-----" in data and b"-----END" not in data
    return False


def _truncated_embedded(node: DemoNode) -> bool:
    cert_pem = kubeconfig_credential(node.root, "controller-manager.conf")[0]
    return cert_pem.startswith(b"-----BEGIN CERTIFICATE-----") and b"-----END" not in cert_pem


def _stale_ca(node: DemoNode) -> bool:
    doc = kubeconfig(node.root, "admin.conf")
    embedded = x509.load_pem_x509_certificate(
        base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]))
    ca = _cert(node, "ca.crt")
    return (embedded.subject == ca.subject and embedded != ca
            and not verifies(_conf_cert(node, "admin.conf"), embedded))


def _embedded(node: DemoNode) -> bool:
    user = kubeconfig(node.root, "kubelet.conf")["users"][0]["user"]
    pem = resolve(node.root, f"{KUBELET_PKI}/kubelet-client-current.pem")
    return "client-certificate-data" in user and "client-certificate" not in user and pem.is_file()


def _missing_san(node: DemoNode) -> bool:
    dns = dns_sans(_cert(node, "apiserver.crt"))
    return node.name not in dns and "kubernetes.default.svc" in dns


def _wrong_usage(node: DemoNode) -> bool:
    eku = ext(_cert(node, "apiserver.crt"), x509.ExtendedKeyUsage)
    return ExtendedKeyUsageOID.SERVER_AUTH not in eku


def _sa_mismatch(node: DemoNode) -> bool:
    key = load_key((node.root / PKI / "sa.key").read_bytes())
    pub = serialization.load_pem_public_key((node.root / PKI / "sa.pub").read_bytes())
    return spki(key) != spki(pub)


def _ca_before_leaf(node: DemoNode) -> bool:
    return _cert(node, "etcd/ca.crt").not_valid_after_utc < _cert(node, "etcd/server.crt").not_valid_after_utc


#: (defect on cp2, what the damage looks like, the items a checker must flag).
DEFECT_CASES: list[tuple[Defect, Callable[[DemoNode], bool], set[tuple[str, str]]]] = [
    (Defect(DefectKind.EXPIRED, "apiserver", "cp2"), _expired, {("cp2", "apiserver")}),
    (Defect(DefectKind.NOT_YET_VALID, "admin.conf", "cp2"), _not_yet_valid, {("cp2", "admin.conf")}),
    (Defect(DefectKind.WRONG_SIGNER, "front-proxy-client", "cp2"), _wrong_signer,
     {("cp2", "front-proxy-client")}),
    (Defect(DefectKind.KEY_MISMATCH, "apiserver", "cp2"), _key_mismatch, {("cp2", "apiserver")}),
    (Defect(DefectKind.KEY_MISMATCH, "kubelet-client-current.pem", "cp2"), _kubelet_key_mismatch,
     {("cp2", "kubelet-client-current.pem"), ("cp2", "kubelet.conf")}),
    (Defect(DefectKind.MISSING, "etcd-peer", "cp2"), _missing, {("cp2", "etcd-peer")}),
    (Defect(DefectKind.GARBAGE, "scheduler.conf", "cp2"), _garbage, {("cp2", "scheduler.conf")}),
    (Defect(DefectKind.TRUNCATED_PEM, "apiserver", "cp2"), _truncated, {("cp2", "apiserver")}),
    (Defect(DefectKind.TRUNCATED_PEM, "controller-manager.conf", "cp2"), _truncated_embedded,
     {("cp2", "controller-manager.conf")}),
    (Defect(DefectKind.STALE_KUBECONFIG_CA, "admin.conf", "cp2"), _stale_ca, {("cp2", "admin.conf")}),
    (Defect(DefectKind.EMBEDDED_KUBELET_CONF, "kubelet.conf", "cp2"), _embedded,
     {("cp2", "kubelet.conf")}),
    (Defect(DefectKind.MISSING_SAN, "apiserver", "cp2"), _missing_san, {("cp2", "apiserver")}),
    (Defect(DefectKind.WRONG_USAGE, "apiserver", "cp2"), _wrong_usage, {("cp2", "apiserver")}),
    (Defect(DefectKind.SA_MISMATCH, "sa", "cp2"), _sa_mismatch, {("cp2", "sa")}),
]


def _case_id(case: tuple[Defect, Any, Any]) -> str:
    return f"{case[0].kind.value}-{case[0].name}"


@pytest.mark.parametrize("case", DEFECT_CASES, ids=[_case_id(c) for c in DEFECT_CASES])
def test_defect_damages_only_what_it_names(
    case: tuple[Defect, Callable[[DemoNode], bool], set[tuple[str, str]]], tmp_path: Path
) -> None:
    """Each defect does its damage on the named item and node, and nothing else is flagged."""
    defect, damaged, flagged = case
    cluster = build_cluster(tmp_path, nodes=3, issued_at=ISSUED, manifests=False,
                            write_config=False, defects=[defect])
    assert cluster.defects == (defect,)
    assert damaged(cluster.node("cp2"))
    assert not damaged(cluster.node("cp1"))  # negative control: the same item elsewhere
    assert not damaged(cluster.node("cp3"))
    assert problems(cluster) == flagged


def test_defect_node_defaults_to_first(tmp_path: Path) -> None:
    """A defect without a node damages the first node."""
    cluster = build_cluster(tmp_path, nodes=2, issued_at=ISSUED, manifests=False, kubelet=False,
                            write_config=False, defects=[Defect("missing-san", "apiserver")])
    assert cluster.defects == (Defect(DefectKind.MISSING_SAN, "apiserver", "cp1"),)
    assert _missing_san(cluster.node("cp1"))
    assert not _missing_san(cluster.node("cp2"))


@pytest.mark.parametrize("name", ["ca", "front-proxy-ca", "etcd-ca"])
def test_ca_expires_before_leaf(name: str, tmp_path: Path) -> None:
    """The named CA ends before its leaves, on every node, since nodes share it."""
    cluster = build_cluster(tmp_path, nodes=3, issued_at=ISSUED, manifests=False, kubelet=False,
                            write_config=False,
                            defects=[Defect(DefectKind.CA_EXPIRES_BEFORE_LEAF, name)])
    assert problems(cluster) == {(n, name) for n in ("cp1", "cp2", "cp3")}
    ca_file = catalog.get(name).files[0].path
    for node in cluster.nodes:
        ca = _cert(node, ca_file)
        assert ISSUED < ca.not_valid_after_utc < ISSUED + cluster.validity
    assert _ca_before_leaf(cluster.first) is (name == "etcd-ca")


def test_shared_ca_expired_on_every_node(tmp_path: Path) -> None:
    """An expired shared CA is the same expired certificate on every node."""
    cluster = build_cluster(tmp_path, nodes=3, issued_at=ISSUED, manifests=False, kubelet=False,
                            write_config=False, defects=[Defect(DefectKind.EXPIRED, "ca")])
    assert problems(cluster) == {(n, "ca") for n in ("cp1", "cp2", "cp3")}
    assert len({(n.root / PKI / "ca.crt").read_bytes() for n in cluster.nodes}) == 1
    assert _cert(cluster.first, "ca.crt").not_valid_after_utc < ISSUED


@pytest.mark.parametrize("name", ["ca", "etcd-ca", "sa"])
def test_mismatched_shared_ca(name: str, tmp_path: Path) -> None:
    """The named node gets its own CA (or sa pair); its own leaves still chain to it."""
    cluster = build_cluster(tmp_path, nodes=3, issued_at=ISSUED, manifests=False, kubelet=False,
                            write_config=False,
                            defects=[Defect(DefectKind.MISMATCHED_SHARED_CA, name, "cp2")])
    assert problems(cluster) == {("cp2", name)}
    rel = catalog.get(name).files[0].path
    cp1, cp2, cp3 = ((n.root / PKI / rel).read_bytes() for n in cluster.nodes)
    assert cp1 == cp3 != cp2
    if name == "etcd-ca":
        own = _cert(cluster.node("cp2"), "etcd/server.crt")
        assert verifies(own, _cert(cluster.node("cp2"), "etcd/ca.crt"))
        assert not verifies(own, _cert(cluster.node("cp1"), "etcd/ca.crt"))


@pytest.mark.parametrize(("defect", "options"), [
    (Defect(DefectKind.WRONG_SIGNER, "ca"), {}),
    (Defect(DefectKind.EXPIRED, "sa"), {}),
    (Defect(DefectKind.MISSING_SAN, "admin.conf"), {}),
    (Defect(DefectKind.MISSING_SAN, "front-proxy-client"), {}),
    (Defect(DefectKind.WRONG_USAGE, "front-proxy-ca"), {}),
    (Defect(DefectKind.SA_MISMATCH, "apiserver"), {}),
    (Defect(DefectKind.STALE_KUBECONFIG_CA, "apiserver"), {}),
    (Defect(DefectKind.CA_EXPIRES_BEFORE_LEAF, "apiserver"), {}),
    (Defect(DefectKind.EMBEDDED_KUBELET_CONF, "admin.conf"), {}),
    (Defect(DefectKind.EMBEDDED_KUBELET_CONF, "kubelet.conf"), {"kubelet": False}),
    (Defect(DefectKind.TRUNCATED_PEM, "kubelet.conf"), {}),
    (Defect(DefectKind.MISMATCHED_SHARED_CA, "ca"), {"nodes": 1}),
    (Defect(DefectKind.MISMATCHED_SHARED_CA, "apiserver", "cp2"), {}),
    (Defect(DefectKind.KEY_MISMATCH, "ca"), {"external_ca": True}),
    (Defect(DefectKind.KEY_MISMATCH, "sa"), {}),
    (Defect(DefectKind.EXPIRED, "etcd-peer"), {"external_etcd": True}),
    (Defect(DefectKind.EXPIRED, "super-admin.conf", "cp2"), {}),
    (Defect(DefectKind.EXPIRED, "super-admin.conf"), {"version": "1.28"}),
    (Defect(DefectKind.MISSING, "kubelet.crt"), {"kubelet_serving": False}),
    (Defect(DefectKind.MISSING, "apiserver", "cp7"), {}),
    (Defect(DefectKind.MISSING, "no-such-item"), {}),
])
def test_defect_that_does_not_apply_is_refused(defect: Defect, options: dict[str, Any],
                                               tmp_path: Path) -> None:
    """A defect that does not apply to its item (or names nothing) raises ConfigError."""
    options = {"nodes": 2, **options}
    with pytest.raises(ConfigError):
        build_cluster(tmp_path, issued_at=ISSUED, manifests=False, defects=[defect], **options)


def test_unknown_defect_kind_refused() -> None:
    """An unknown defect kind raises ConfigError when the Defect is made."""
    with pytest.raises(ConfigError):
        Defect("melted", "apiserver")


def test_contradicting_defects_refused(tmp_path: Path) -> None:
    """EXPIRED and NOT_YET_VALID on one item contradict each other."""
    with pytest.raises(ConfigError):
        build_node(tmp_path, defects=[Defect(DefectKind.EXPIRED, "apiserver"),
                                      Defect(DefectKind.NOT_YET_VALID, "apiserver")])


def test_kubelet_credential_defects(tmp_path: Path) -> None:
    """Defects on the kubelet's credential and files: expired, garbage PEM, missing link."""
    cluster = build_cluster(tmp_path, nodes=3, issued_at=ISSUED, manifests=False,
                            write_config=False, defects=[
                                Defect(DefectKind.EXPIRED, "kubelet.conf", "cp1"),
                                Defect(DefectKind.GARBAGE, "kubelet-client-current.pem", "cp2"),
                                Defect(DefectKind.MISSING, "kubelet-client-current.pem", "cp3"),
                                Defect(DefectKind.WRONG_SIGNER, "kubelet.crt", "cp3"),
                            ])
    assert problems(cluster) == {
        ("cp1", "kubelet.conf"), ("cp1", "kubelet-client-current.pem"),
        ("cp2", "kubelet.conf"), ("cp2", "kubelet-client-current.pem"),
        ("cp3", "kubelet.conf"), ("cp3", "kubelet-client-current.pem"), ("cp3", "kubelet.crt"),
    }
    cp1, cp2, cp3 = cluster.nodes
    pem = resolve(cp1.root, f"{KUBELET_PKI}/kubelet-client-current.pem").read_bytes()
    assert x509.load_pem_x509_certificate(pem).not_valid_after_utc < ISSUED
    link = cp2.root / KUBELET_PKI / "kubelet-client-current.pem"
    assert link.is_symlink() and b"-----BEGIN" not in resolve(cp2.root, str(link.relative_to(
        cp2.root))).read_bytes()
    assert not any(p.name.startswith("kubelet-client") for p in (cp3.root / KUBELET_PKI).iterdir())
    leaf, own_ca = x509.load_pem_x509_certificates((cp3.root / KUBELET_PKI / "kubelet.crt").read_bytes())
    assert leaf.issuer == own_ca.subject and not verifies(leaf, own_ca)


def test_every_defect_kind_is_exercised() -> None:
    """Every DefectKind has a test above that checks its damage."""
    covered = {case[0].kind for case in DEFECT_CASES}
    covered |= {DefectKind.CA_EXPIRES_BEFORE_LEAF, DefectKind.MISMATCHED_SHARED_CA}
    assert covered == set(DefectKind)
