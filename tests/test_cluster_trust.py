"""The cluster's trust check: every TLS edge, both directions, from the files each side loads.

Ground truth: the real kubeadm HA trees (three control planes, before and after `renew all`) and a
kubepki.testing cluster of three control planes and two workers have no broken edge. A mix of two
clusters (one file copied in from a cluster with other CAs) breaks exactly the edges that load that
file, in the direction that uses it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import kubepki
from kubepki import testing
from kubepki.cli import main
from kubepki.cluster import (
    Cluster,
    Direction,
    EdgeKind,
    TrustEdge,
    TrustReport,
    Verdict,
    check_trust,
)
from kubepki.pki import load_certificate
from tests import sshd
from tests.kubeadm_trees import materialize
from tests.rotation_trees import copy_cluster

WHEN = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
NOW = WHEN + dt.timedelta(days=1)
PKI = "etc/kubernetes/pki"
CLIENT, SERVER = Direction.CLIENT_AUTH, Direction.SERVER_AUTH


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> testing.DemoCluster:
    """Cluster A: three control planes, two workers."""
    return testing.build_cluster(tmp_path_factory.mktemp("a"), nodes=3, workers=2, issued_at=WHEN)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory, pristine: testing.DemoCluster) -> testing.DemoCluster:
    """Cluster B: the same shape and names, its own CAs (fresh keys: never one of A's)."""
    b = testing.build_cluster(tmp_path_factory.mktemp("b"), nodes=3, workers=2, issued_at=WHEN, fresh_keys=True)
    for rel in ("ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"):
        a_ca = load_certificate((pristine.first.root / PKI / rel).read_bytes())
        b_ca = load_certificate((b.first.root / PKI / rel).read_bytes())
        assert a_ca.subject == b_ca.subject and a_ca.public_key() != b_ca.public_key()
    return b


@pytest.fixture
def mixed(pristine: testing.DemoCluster, tmp_path: Path) -> dict[str, Path]:
    """A private copy of cluster A to damage: node name -> root."""
    return copy_cluster(pristine, tmp_path)


def trust(roots: dict[str, Path], now: dt.datetime = NOW) -> TrustReport:
    return check_trust(Cluster(list(roots.values()), labels=list(roots)), now=now)


def copy_in(other: testing.DemoCluster, roots: dict[str, Path], node: str, rel: str) -> None:
    """Node ``node``'s file ``rel`` (under /etc/kubernetes) replaced by cluster B's same file."""
    shutil.copyfile(other.node(node).root / "etc/kubernetes" / rel, roots[node] / "etc/kubernetes" / rel)


def failing(report: TrustReport) -> dict[str, set[Direction]]:
    """Each broken edge's name -> the directions that fail."""
    return {e.name: {c.direction for c in e.checks if c.verdict is Verdict.BROKEN} for e in report.broken}


def edges(names: Iterable[str], directions: set[Direction]) -> dict[str, set[Direction]]:
    return dict.fromkeys(names, directions)


def assert_healthy(report: TrustReport) -> None:
    assert report.broken == () and report.unjudged == () and report.errors == {}
    assert report.outcome is kubepki._report.Outcome.OK
    assert all(e.verdict is Verdict.TRUSTED for e in report)


CPS, WORKERS = ("cp1", "cp2", "cp3"), ("w1", "w2")


# -- healthy clusters -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "-renewed"])
def test_real_kubeadm_ha_trees_have_no_broken_edge(tmp_path: Path, suffix: str) -> None:
    """kubeadm's own HA trees (no manifests: kubeadm's default files), fresh and after `renew all`."""
    roots = {f"cp{i}": materialize(f"ha-cp{i}{suffix}", tmp_path / f"cp{i}") for i in (1, 2, 3)}
    report = trust(roots)
    assert_healthy(report)
    kinds = {kind: len(report.edges_of(kind)) for kind in EdgeKind}
    # five kubeconfigs per node (kubeadm wrote super-admin.conf on each) to each of three API servers
    assert kinds == {EdgeKind.KUBECONFIG: 45, EdgeKind.APISERVER_ETCD: 3, EdgeKind.APISERVER_KUBELET: 9,
                     EdgeKind.FRONT_PROXY: 9, EdgeKind.ETCD_PEER: 6, EdgeKind.ETCD_HEALTHCHECK: 3}
    assert any("no kube-apiserver manifest" in n for n in report.notes)
    kubelet = report.edges_of(EdgeKind.APISERVER_KUBELET)[0]
    assert kubelet.server_auth.verdict is Verdict.NOT_VERIFIED  # kubeadm sets no --kubelet-certificate-authority
    assert "does not verify" in kubelet.server_auth.reason
    peer = report.edges_of(EdgeKind.ETCD_PEER)[0]
    assert peer.client_auth.issuer == "CN=etcd-ca" and peer.server_auth.issuer == "CN=etcd-ca"


def test_renewed_node_beside_unrenewed_ones_is_still_trusted(tmp_path: Path) -> None:
    """Renewal keeps the CAs: a cluster of renewed and not yet renewed nodes has no broken edge."""
    roots = {"cp1": materialize("ha-cp1-renewed", tmp_path / "cp1"), "cp2": materialize("ha-cp2", tmp_path / "cp2"),
             "cp3": materialize("ha-cp3", tmp_path / "cp3")}
    assert_healthy(trust(roots))


def test_testing_cluster_of_three_control_planes_and_two_workers(pristine: testing.DemoCluster) -> None:
    """A kubepki.testing cluster with manifests and kubelet configs: every edge trusted, the kinds complete."""
    roots = {n.name: n.root for n in pristine.nodes}
    report = trust(roots)
    assert_healthy(report)
    assert report.notes == ()
    assert {e.server_node for e in report.edges_of(EdgeKind.APISERVER_KUBELET)} == {*CPS, *WORKERS}
    # controller-manager.conf names its own API server; admin.conf the endpoint (any API server)
    def servers(client: str) -> set[str]:
        return {e.server_node for e in report if e.client_node == "cp2" and e.client == client}

    assert servers("controller-manager.conf") == {"cp2"}
    assert servers("admin.conf") == set(CPS)
    # stacked etcd: each API server talks to its own member
    assert [(e.client_node, e.server_node) for e in report.edges_of("apiserver-etcd")] == [(n, n) for n in CPS]


def test_nothing_to_judge_is_not_all_well(pristine: testing.DemoCluster) -> None:
    """A worker alone: its kubelet.conf has no API server to judge against: incomplete, never ok."""
    report = trust({"w1": pristine.node("w1").root})
    assert report.edges == () and report.outcome is kubepki._report.Outcome.INCOMPLETE


# -- a mix of two clusters: each edge kind ---------------------------------------------------------


def test_kubeconfig_from_another_cluster(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """cp2's admin.conf from cluster B: its edge to every API server fails both ways, nothing else."""
    copy_in(other, mixed, "cp2", "admin.conf")
    report = trust(mixed)
    assert failing(report) == edges([f"cp2 admin.conf -> {cp} kube-apiserver" for cp in CPS], {CLIENT, SERVER})
    edge = report.broken[0]
    assert edge.client_auth.certificate is not None
    assert edge.client_auth.certificate.via == "admin.conf client-certificate-data"
    assert edge.client_auth.bundle is not None and edge.client_auth.bundle.via == "--client-ca-file"
    assert edge.client_auth.bundle.path == "/etc/kubernetes/pki/ca.crt"
    assert edge.server_auth.bundle is not None
    assert edge.server_auth.bundle.via == "admin.conf certificate-authority-data"
    assert "not by any CA of the bundle" in edge.client_auth.reason
    assert report.outcome is kubepki._report.Outcome.FAILED


def test_apiserver_serving_certificate_from_another_cluster(mixed: dict[str, Path],
                                                            other: testing.DemoCluster) -> None:
    """cp3's apiserver.crt from B: every kubeconfig's edge to cp3 fails server-auth only."""
    copy_in(other, mixed, "cp3", "pki/apiserver.crt")
    report = trust(mixed)
    broken = failing(report)
    assert broken and all(name.endswith("-> cp3 kube-apiserver") for name in broken)
    assert set(map(frozenset, broken.values())) == {frozenset({SERVER})}
    expected = {e.name for e in report.edges_of("kubeconfig") if e.server_node == "cp3"}
    assert set(broken) == expected
    assert {"cp1 admin.conf -> cp3 kube-apiserver", "w1 kubelet.conf -> cp3 kube-apiserver",
            "cp3 scheduler.conf -> cp3 kube-apiserver"} <= expected


def test_kubelet_client_certificate_from_another_cluster(mixed: dict[str, Path],
                                                         other: testing.DemoCluster) -> None:
    """cp1's apiserver-kubelet-client.crt from B: cp1's API server is refused by every kubelet."""
    copy_in(other, mixed, "cp1", "pki/apiserver-kubelet-client.crt")
    assert failing(trust(mixed)) == edges([f"cp1 kube-apiserver -> {n} kubelet" for n in (*CPS, *WORKERS)],
                                          {CLIENT})


def test_worker_ca_from_another_cluster(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """w1's ca.crt (its kubelet's clientCAFile) from B: every API server's edge to w1's kubelet fails
    client-auth; w1's kubelet.conf embeds its own CA data, so its edges stay trusted."""
    copy_in(other, mixed, "w1", "pki/ca.crt")
    report = trust(mixed)
    assert failing(report) == edges([f"{cp} kube-apiserver -> w1 kubelet" for cp in CPS], {CLIENT})
    assert report.broken[0].client_auth.bundle is not None
    assert report.broken[0].client_auth.bundle.via == "authentication.x509.clientCAFile"


def test_kubelet_serving_verified_when_the_apiserver_asks(mixed: dict[str, Path]) -> None:
    """With --kubelet-certificate-authority the self-signed kubelet.crt is refused (and not otherwise:
    the negative control is every healthy test's not-verified)."""
    manifest = mixed["cp1"] / "etc/kubernetes/manifests/kube-apiserver.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("    - --client-ca-file=", "    - --kubelet-certificate-authority="
                                     "/etc/kubernetes/pki/ca.crt\n    - --client-ca-file=", 1))
    report = trust(mixed)
    assert failing(report) == edges([f"cp1 kube-apiserver -> {n} kubelet" for n in (*CPS, *WORKERS)], {SERVER})
    check = report.broken[0].server_auth
    assert check.certificate is not None and check.certificate.path == "/var/lib/kubelet/pki/kubelet.crt"
    assert check.bundle is not None and check.bundle.via == "--kubelet-certificate-authority"
    others = [e for e in report.edges_of("apiserver-kubelet") if e.client_node != "cp1"]
    assert others and all(e.server_auth.verdict is Verdict.NOT_VERIFIED for e in others)


def test_kubelet_serving_certificate_from_a_csr_is_trusted(tmp_path: Path) -> None:
    """serverTLSBootstrap: the kubelet serves kubelet-server-current.pem, signed by the cluster CA."""
    demo = testing.build_cluster(tmp_path / "c", nodes=1, workers=1, issued_at=WHEN,
                                 kubelet_config={"serverTLSBootstrap": True})
    manifest = demo.first.root / "etc/kubernetes/manifests/kube-apiserver.yaml"
    manifest.write_text(manifest.read_text().replace(
        "    - --client-ca-file=", "    - --kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt\n"
                                  "    - --client-ca-file=", 1))
    report = trust({n.name: n.root for n in demo.nodes})
    assert_healthy(report)
    kubelet = report.edges_of("apiserver-kubelet")
    assert [e.server_auth.certificate.path for e in kubelet if e.server_auth.certificate] == [
        "/var/lib/kubelet/pki/kubelet-server-current.pem"] * 2


def test_front_proxy_client_from_another_cluster(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """cp2's front-proxy-client.crt from B: aggregated APIs refuse cp2's API server, whichever API
    server's requestheader CA they were given."""
    copy_in(other, mixed, "cp2", "pki/front-proxy-client.crt")
    report = trust(mixed)
    assert failing(report) == edges([f"cp2 kube-apiserver -> {cp} aggregated-apis" for cp in CPS], {CLIENT})
    assert all(e.server_auth.verdict is Verdict.NOT_ON_NODES for e in report.edges_of("front-proxy"))


def test_front_proxy_ca_from_another_cluster(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """cp3's front-proxy-ca.crt (its --requestheader-client-ca-file) from B: every API server's
    front-proxy client fails against what cp3 publishes; nothing else uses the file."""
    copy_in(other, mixed, "cp3", "pki/front-proxy-ca.crt")
    assert failing(trust(mixed)) == edges([f"{cp} kube-apiserver -> cp3 aggregated-apis" for cp in CPS], {CLIENT})


def test_front_proxy_client_name_not_allowed(mixed: dict[str, Path]) -> None:
    """cp2 allows another front-proxy CN: every API server's front-proxy client is refused by what
    cp2 publishes, though its CA trusts them (negative control: the healthy clusters' allowed names)."""
    manifest = mixed["cp2"] / "etc/kubernetes/manifests/kube-apiserver.yaml"
    manifest.write_text(manifest.read_text().replace("--requestheader-allowed-names=front-proxy-client",
                                                     "--requestheader-allowed-names=aggregator,proxy"))
    report = trust(mixed)
    assert failing(report) == edges([f"{cp} kube-apiserver -> cp2 aggregated-apis" for cp in CPS], {CLIENT})
    assert "'front-proxy-client' is not in cp2's --requestheader-allowed-names (aggregator, proxy)" in (
        report.broken[0].client_auth.reason)


def test_external_etcd(tmp_path: Path) -> None:
    """External etcd: the API servers talk to every member their --etcd-servers may reach; without the
    client files kubeadm's guide has you copy onto the control planes, those edges cannot be judged."""
    demo = testing.build_cluster(tmp_path / "c", nodes=2, etcd_nodes=3, external_etcd=True, issued_at=WHEN)
    roots = {n.name: n.root for n in demo.nodes}
    report = trust(roots)
    assert report.broken == () and report.outcome is kubepki._report.Outcome.INCOMPLETE
    assert {e.name for e in report.unjudged} == {f"{cp} kube-apiserver -> {e} etcd" for cp in ("cp1", "cp2")
                                                  for e in ("e1", "e2", "e3")}
    assert len(report.edges_of("etcd-peer")) == 6 and all(e.verdict is Verdict.TRUSTED
                                                          for e in report.edges_of("etcd-peer"))
    assert not [e for e in report.edges_of("apiserver-kubelet") if e.server_node.startswith("e")]
    manifest = (roots["cp1"] / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text().splitlines()
    flags = dict(line.strip().removeprefix("- --").split("=", 1) for line in manifest
                 if line.strip().startswith("- --etcd-"))
    for cp in ("cp1", "cp2"):  # an etcd client certificate from the etcd CA, and that CA, where the flags say
        for flag, source in (("etcd-certfile", "healthcheck-client.crt"), ("etcd-cafile", "ca.crt")):
            target = roots[cp] / flags[flag].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(roots["e1"] / PKI / "etcd" / source, target)
    assert_healthy(trust(roots))


def test_etcd_client_certificate_from_another_cluster(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    copy_in(other, mixed, "cp2", "pki/apiserver-etcd-client.crt")
    assert failing(trust(mixed)) == {"cp2 kube-apiserver -> cp2 etcd": {CLIENT}}


def test_etcd_serving_certificate_from_another_cluster(mixed: dict[str, Path],
                                                       other: testing.DemoCluster) -> None:
    """cp2's etcd/server.crt from B: its API server and its healthcheck client refuse it; peers do not use it."""
    copy_in(other, mixed, "cp2", "pki/etcd/server.crt")
    assert failing(trust(mixed)) == {"cp2 kube-apiserver -> cp2 etcd": {SERVER},
                                     "cp2 etcd-healthcheck-client -> cp2 etcd": {SERVER}}


def test_etcd_peer_certificate_from_another_cluster(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """cp2's etcd/peer.crt from B: refused as a client by cp1 and cp3, and as a server by them."""
    copy_in(other, mixed, "cp2", "pki/etcd/peer.crt")
    assert failing(trust(mixed)) == {
        "cp2 etcd -> cp1 etcd": {CLIENT}, "cp2 etcd -> cp3 etcd": {CLIENT},
        "cp1 etcd -> cp2 etcd": {SERVER}, "cp3 etcd -> cp2 etcd": {SERVER},
    }


def test_etcd_healthcheck_client_from_another_cluster(mixed: dict[str, Path],
                                                      other: testing.DemoCluster) -> None:
    copy_in(other, mixed, "cp3", "pki/etcd/healthcheck-client.crt")
    report = trust(mixed)
    assert failing(report) == {"cp3 etcd-healthcheck-client -> cp3 etcd": {CLIENT}}
    check = report.broken[0].client_auth
    assert check.bundle is not None and (check.bundle.node, check.bundle.via) == ("cp3", "--trusted-ca-file")


def test_etcd_ca_from_another_cluster(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """cp2's etcd/ca.crt from B: every edge that loads it on cp2, in the direction that loads it."""
    copy_in(other, mixed, "cp2", "pki/etcd/ca.crt")
    assert failing(trust(mixed)) == {
        "cp2 kube-apiserver -> cp2 etcd": {CLIENT, SERVER},  # etcd's --trusted-ca-file, the API server's --etcd-cafile
        "cp2 etcd-healthcheck-client -> cp2 etcd": {CLIENT, SERVER},
        "cp1 etcd -> cp2 etcd": {CLIENT}, "cp3 etcd -> cp2 etcd": {CLIENT},  # cp2's --peer-trusted-ca-file
        "cp2 etcd -> cp1 etcd": {SERVER}, "cp2 etcd -> cp3 etcd": {SERVER},
    }


# -- bundles, validity, usages -----------------------------------------------------------------------


def _pem(path: Path) -> bytes:
    return path.read_bytes().strip() + b"\n"


def test_bundle_of_both_clusters_cas_trusts_both(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """A CA rotation's middle step: cp1 trusts both CAs (bundle), and cp2's admin.conf is from B with
    both CAs in its certificate-authority-data: only the edges to API servers that trust A alone fail."""
    b_ca = _pem(other.first.root / PKI / "ca.crt")
    a_ca = _pem(mixed["cp1"] / PKI / "ca.crt")
    (mixed["cp1"] / PKI / "ca.crt").write_bytes(a_ca + b_ca)
    copy_in(other, mixed, "cp2", "admin.conf")
    conf = mixed["cp2"] / "etc/kubernetes/admin.conf"
    doc = yaml.safe_load(conf.read_text())
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(b_ca + a_ca).decode()
    conf.write_text(yaml.safe_dump(doc))
    report = trust(mixed)
    assert failing(report) == {"cp2 admin.conf -> cp2 kube-apiserver": {CLIENT},
                               "cp2 admin.conf -> cp3 kube-apiserver": {CLIENT}}
    to_cp1 = next(e for e in report if e.name == "cp2 admin.conf -> cp1 kube-apiserver")
    assert to_cp1.verdict is Verdict.TRUSTED
    # the same subject twice: the reason tells the CAs apart by their keys
    assert to_cp1.client_auth.reason != next(
        e for e in report if e.name == "cp1 admin.conf -> cp1 kube-apiserver").client_auth.reason


def test_expired_certificate_is_broken_with_that_reason(tmp_path: Path) -> None:
    demo = testing.build_cluster(tmp_path / "c", nodes=3, issued_at=WHEN, defects=[
        testing.Defect(testing.DefectKind.EXPIRED, "front-proxy-client", node="cp2")])
    report = trust({n.name: n.root for n in demo.nodes})
    assert failing(report) == edges([f"cp2 kube-apiserver -> {cp} aggregated-apis" for cp in CPS], {CLIENT})
    assert all(e.client_auth.reason.startswith("the certificate expired at ") for e in report.broken)


def test_everything_expires_eventually(pristine: testing.DemoCluster) -> None:
    """Past the leaves' year every judged direction is broken, none is trusted."""
    report = trust({n.name: n.root for n in pristine.nodes}, now=WHEN + dt.timedelta(days=400))
    judged = [c for e in report for c in e.checks if c.verdict in (Verdict.TRUSTED, Verdict.BROKEN)]
    assert judged and all(c.verdict is Verdict.BROKEN and "expired" in c.reason for c in judged)


def test_expired_ca_breaks_what_it_issued(tmp_path: Path) -> None:
    """A CA that expires before its leaves: past the CA, its leaves are refused for the CA's sake."""
    demo = testing.build_cluster(tmp_path / "c", nodes=1, issued_at=WHEN, defects=[
        testing.Defect(testing.DefectKind.CA_EXPIRES_BEFORE_LEAF, "front-proxy-ca")])
    ca = load_certificate((demo.first.root / PKI / "front-proxy-ca.crt").read_bytes())
    report = trust({"cp1": demo.first.root}, now=ca.not_valid_after_utc + dt.timedelta(days=1))
    (edge,) = report.broken
    assert edge.kind is EdgeKind.FRONT_PROXY and "its issuing CA front-proxy-ca" in edge.client_auth.reason
    assert "expired" in edge.client_auth.reason


def test_wrong_usage_is_broken(tmp_path: Path) -> None:
    """An etcd peer certificate without clientAuth is refused as a client, not as a server."""
    demo = testing.build_cluster(tmp_path / "c", nodes=2, issued_at=WHEN, defects=[
        testing.Defect(testing.DefectKind.WRONG_USAGE, "apiserver-etcd-client", node="cp1")])
    report = trust({n.name: n.root for n in demo.nodes})
    assert failing(report) == {"cp1 kube-apiserver -> cp1 etcd": {CLIENT}}
    assert "clientAuth" in report.broken[0].client_auth.reason


def _chain(pki: Path, *, mid_ca: bool = True, mid_usage: list[str] | None = None) -> tuple[bytes, bytes]:
    """(leaf PEM, intermediate PEM): a front-proxy client issued by an intermediate under front-proxy-ca."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root = load_certificate((pki / "front-proxy-ca.crt").read_bytes())
    root_key = serialization.load_pem_private_key((pki / "front-proxy-ca.key").read_bytes(), None)
    mid_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    oids = {"clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH, "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH}

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: object, *,
              ca: bool, usage: list[str] | None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(WHEN)
             .not_valid_after(WHEN + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([oids[u] for u in usage]), critical=False)
        return b.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    mid = issue("front-proxy-intermediate", mid_key, root.subject, root_key, ca=mid_ca, usage=mid_usage)
    leaf = issue("front-proxy-client", leaf_key, mid.subject, mid_key, ca=False, usage=["clientAuth"])
    pem = serialization.Encoding.PEM
    return leaf.public_bytes(pem), mid.public_bytes(pem)


FROM_CP1 = [f"cp1 kube-apiserver -> {cp} aggregated-apis" for cp in CPS]


def test_intermediate_in_the_certificate_file_is_followed(mixed: dict[str, Path]) -> None:
    """A leaf issued by an intermediate CA, the intermediate beside it in the file: trusted through it."""
    pki = mixed["cp1"] / PKI
    leaf, mid = _chain(pki)
    (pki / "front-proxy-client.crt").write_bytes(leaf + mid)
    report = trust(mixed)
    assert_healthy(report)
    assert report.edges_of("front-proxy")[0].client_auth.issuer == "CN=front-proxy-ca"
    # negative control: the leaf without its intermediate chains to nothing
    (pki / "front-proxy-client.crt").write_bytes(leaf)
    assert failing(trust(mixed)) == edges(FROM_CP1, {CLIENT})


@pytest.mark.parametrize(("mid_ca", "mid_usage", "why"), [
    (False, None, "the intermediate front-proxy-intermediate (key "),
    (True, ["serverAuth"], "extended key usage has no clientAuth"),
    (True, ["clientAuth", "serverAuth"], None),
])
def test_intermediate_must_be_a_ca_for_the_usage(mixed: dict[str, Path], mid_ca: bool, mid_usage: list[str] | None,
                                                 why: str | None) -> None:
    """Go refuses an intermediate that is not a CA, or whose extended key usage lacks the leaf's."""
    pki = mixed["cp1"] / PKI
    leaf, mid = _chain(pki, mid_ca=mid_ca, mid_usage=mid_usage)
    (pki / "front-proxy-client.crt").write_bytes(leaf + mid)
    report = trust(mixed)
    if why is None:
        assert_healthy(report)
        return
    assert failing(report) == edges(FROM_CP1, {CLIENT})
    reason = report.broken[0].client_auth.reason
    assert why in reason and ("is not a CA" in reason) is not mid_ca


# -- what could not be judged ---------------------------------------------------------------------


def test_missing_file_is_not_judged(mixed: dict[str, Path]) -> None:
    """cp3's apiserver.crt missing: the edges to cp3 are unknown (not broken, not trusted): incomplete."""
    (mixed["cp3"] / PKI / "apiserver.crt").unlink()
    report = trust(mixed)
    assert report.broken == ()
    to_cp3 = {e.name for e in report.edges_of("kubeconfig") if e.server_node == "cp3"}
    assert {e.name for e in report.unjudged} == to_cp3
    check = report.unjudged[0].server_auth
    assert check.verdict is Verdict.UNKNOWN and check.reason.endswith(": missing")
    assert report.unjudged[0].client_auth.verdict is Verdict.TRUSTED
    assert report.outcome is kubepki._report.Outcome.INCOMPLETE


def test_fifo_is_never_opened_for_reading(mixed: dict[str, Path]) -> None:
    """A FIFO where ca.crt should be: not a regular file, never read (a read would block)."""
    path = mixed["w2"] / PKI / "ca.crt"
    path.unlink()
    os.mkfifo(path)
    report = trust(mixed)
    assert {e.name for e in report.unjudged} == {f"{cp} kube-apiserver -> w2 kubelet" for cp in CPS}
    assert report.unjudged[0].client_auth.reason.endswith("not a regular file")


def test_broken_wins_over_unjudged(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """A broken edge fails the report even when another edge could not be judged."""
    (mixed["cp3"] / PKI / "apiserver.crt").unlink()
    copy_in(other, mixed, "cp3", "pki/etcd/healthcheck-client.crt")
    report = trust(mixed)
    assert report.unjudged and report.broken
    assert report.outcome is kubepki._report.Outcome.FAILED


def test_unreachable_node_is_incomplete(mixed: dict[str, Path], tmp_path: Path) -> None:
    report = check_trust(Cluster([mixed["cp1"], tmp_path / "nowhere"], labels=["cp1", "gone"]), now=NOW)
    assert "gone" in report.errors and report.broken == ()
    assert report.outcome is kubepki._report.Outcome.INCOMPLETE


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, pristine: testing.DemoCluster) -> dict[str, Path]:
    return copy_cluster(pristine, tmp_path_factory.mktemp("fuzz"), nodes=3)


DAMAGED = ("etc/kubernetes/admin.conf", "etc/kubernetes/pki/apiserver.crt", "etc/kubernetes/pki/etcd/ca.crt",
           "var/lib/kubelet/pki/kubelet-client-current.pem", "etc/kubernetes/manifests/etcd.yaml",
           "etc/kubernetes/manifests/kube-apiserver.yaml", "var/lib/kubelet/config.yaml")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rel=st.sampled_from(DAMAGED), data=st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda b: b"-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b)
                                + b"\n-----END CERTIFICATE-----\n"),
    st.sampled_from([b"", b"apiVersion: v1\nkind: Config\n", b"{", b"- --cert-file=/dev/zero\n",
                     b"apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver}\nspec:\n  containers:\n"
                     b"  - command: [kube-apiserver, '--advertise-address=[::1', '--etcd-servers=http://[x',"
                     b" '--client-ca-file=/proc/self/mem', '--tls-cert-file=../../dev/zero']\n"]),
))
def test_damaged_files_give_verdicts_never_tracebacks(fuzzed: dict[str, Path], rel: str, data: bytes) -> None:
    """Any bytes in a file each side loads: a report, the edges that do not load it untouched."""
    path = fuzzed["cp2"] / rel
    if path.is_symlink():  # kubelet-client-current.pem: its absolute target, inside the node's root
        path = fuzzed["cp2"] / os.readlink(path).lstrip("/")
    saved = path.read_bytes()
    try:
        path.unlink()
        path.write_bytes(data)
        report = trust(fuzzed)
    finally:
        path.unlink()
        path.write_bytes(saved)
    assert report.edges
    touching = {"cp2"}
    for e in report:
        if e.client_node not in touching and e.server_node not in touching:
            assert e.verdict is Verdict.TRUSTED, e.name
    json.dumps(report.to_dict())


# -- the public API, JSON and the command line --------------------------------------------------------


def test_public_api(pristine: testing.DemoCluster) -> None:
    assert kubepki.check_trust is check_trust and kubepki.TrustReport is TrustReport
    assert kubepki.TrustEdge is TrustEdge
    report = kubepki.check_trust([n.root for n in pristine.nodes[:1]], now=NOW)
    assert report.outcome is kubepki._report.Outcome.OK
    doc = report.to_dict()
    assert doc["kind"] == "TrustReport" and doc["summary"]["broken"] == 0
    edge = doc["edges"][0]
    assert set(edge) == {"kind", "name", "client", "client_node", "server", "server_node", "verdict",
                         "client_auth", "server_auth"}
    assert set(edge["client_auth"]) == {"direction", "verdict", "certificate", "bundle", "reason", "issuer"}


def _cli(roots: dict[str, Path], *extra: str) -> list[str]:
    args = ["cluster", "trust", "--now", NOW.isoformat()]
    for name, root in roots.items():
        args += ["--worker" if name.startswith("w") else "--node", f"{name}={root}"]
    return [*args, *extra]


def test_cli_exit_statuses_and_json(mixed: dict[str, Path], other: testing.DemoCluster,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_cli(mixed)) == 0
    assert "0 broken, 0 not judged" in capsys.readouterr().out
    copy_in(other, mixed, "cp2", "pki/etcd/peer.crt")
    assert main(_cli(mixed, "-o", "json")) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 2 and doc["outcome"] == "failed"
    broken = {e["name"]: e for e in doc["edges"] if e["verdict"] == "broken"}
    assert set(broken) == {"cp2 etcd -> cp1 etcd", "cp2 etcd -> cp3 etcd", "cp1 etcd -> cp2 etcd",
                           "cp3 etcd -> cp2 etcd"}
    check = broken["cp2 etcd -> cp1 etcd"]["client_auth"]
    assert check["verdict"] == "broken" and check["certificate"] == {
        "node": "cp2", "path": "/etc/kubernetes/pki/etcd/peer.crt", "via": "--peer-cert-file"}
    assert main(_cli(mixed, "--problems")) == 2
    out = capsys.readouterr().out
    assert "cp2 etcd" in out and "admin.conf" not in out  # only the problems listed


def test_cli_could_not_judge_is_three(mixed: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    (mixed["cp1"] / PKI / "apiserver.crt").unlink()
    assert main(_cli(mixed)) == 3
    assert "not judged" in capsys.readouterr().out


def test_kubeconfig_naming_a_ca_file(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """w1's kubelet.conf names /etc/kubernetes/pki/ca.crt instead of embedding it: B's ca.crt there now
    breaks w1's kubelet.conf towards every API server (server-auth) besides its kubelet (client-auth)."""
    conf = mixed["w1"] / "etc/kubernetes/kubelet.conf"
    doc = yaml.safe_load(conf.read_text())
    cluster = doc["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["certificate-authority"] = "pki/ca.crt"  # relative: to the kubeconfig's directory, as kubectl
    conf.write_text(yaml.safe_dump(doc))
    assert_healthy(trust(mixed))  # negative control: the same CA through the file
    copy_in(other, mixed, "w1", "pki/ca.crt")
    report = trust(mixed)
    assert failing(report) == {**edges([f"w1 kubelet.conf -> {cp} kube-apiserver" for cp in CPS], {SERVER}),
                               **edges([f"{cp} kube-apiserver -> w1 kubelet" for cp in CPS], {CLIENT})}
    bundle = next(e for e in report.broken if e.kind is EdgeKind.KUBECONFIG).server_auth.bundle
    assert bundle is not None and (bundle.path, bundle.via) == ("/etc/kubernetes/pki/ca.crt",
                                                                "kubelet.conf certificate-authority")


@pytest.mark.skipif(sshd.SKIP_REASON is not None, reason=sshd.SKIP_REASON or "")
def test_over_ssh(tmp_path: Path, other: testing.DemoCluster) -> None:
    """The same judgement through SFTP: two control planes served by their own sshd."""
    demo = testing.build_cluster(tmp_path / "served", nodes=2, issued_at=WHEN)
    with sshd.fleet(tmp_path / "sshd", 2) as fleet:
        known_hosts = fleet.known_hosts(tmp_path / "known_hosts")
        targets = {n.name: f"ssh://root@127.0.0.1:{s.port}{n.root}"
                   for n, s in zip(demo.nodes, fleet.servers, strict=True)}
        with Cluster.from_targets(targets, key=fleet.client_key, known_hosts=known_hosts) as cluster:
            report = check_trust(cluster, now=NOW)
        assert_healthy(report)
        local = trust({n.name: n.root for n in demo.nodes})
        assert len(report) == 26 and report.to_dict()["edges"] == local.to_dict()["edges"]  # node paths alike
        shutil.copyfile(other.node("cp2").root / PKI / "etcd/peer.crt", demo.node("cp2").root / PKI / "etcd/peer.crt")
        with Cluster.from_targets(targets, key=fleet.client_key, known_hosts=known_hosts) as cluster:
            report = check_trust(cluster, now=NOW)
        assert failing(report) == {"cp2 etcd -> cp1 etcd": {CLIENT}, "cp1 etcd -> cp2 etcd": {SERVER}}
        assert report.broken[0].client_auth.certificate is not None


def test_kubelet_client_pem_from_another_cluster(mixed: dict[str, Path], other: testing.DemoCluster) -> None:
    """w2's rotated client PEM (kubelet.conf names kubelet-client-current.pem, a symlink) from B: w2's
    kubelet is refused by every API server; its serving side and everything else stay trusted."""
    link = mixed["w2"] / "var/lib/kubelet/pki/kubelet-client-current.pem"
    target = mixed["w2"] / os.readlink(link).lstrip("/")
    b_link = other.node("w2").root / "var/lib/kubelet/pki/kubelet-client-current.pem"
    shutil.copyfile(other.node("w2").root / os.readlink(b_link).lstrip("/"), target)
    report = trust(mixed)
    assert failing(report) == edges([f"w2 kubelet.conf -> {cp} kube-apiserver" for cp in CPS], {CLIENT})
    check = report.broken[0].client_auth
    assert check.certificate is not None
    assert check.certificate.path == "/var/lib/kubelet/pki/kubelet-client-current.pem"
    assert check.certificate.via == "kubelet.conf client-certificate"
