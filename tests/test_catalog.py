"""The catalog: complete, consistent, and queryable as documented."""

from __future__ import annotations

import attrs
import pytest

import kubepki
from kubepki import catalog
from kubepki.catalog import Component, FileRole, Kind, Location, Reload, Scope
from kubepki.versions import KubeVersion

KUBEADM_NAMES = {
    "ca", "front-proxy-ca", "etcd-ca",
    "apiserver", "apiserver-kubelet-client", "apiserver-etcd-client", "front-proxy-client",
    "etcd-server", "etcd-peer", "etcd-healthcheck-client",
    "sa",
    "admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf",
}
RENEWABLE = {
    "apiserver", "apiserver-kubelet-client", "apiserver-etcd-client", "front-proxy-client",
    "etcd-server", "etcd-peer", "etcd-healthcheck-client",
    "admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
}


def test_every_kubeadm_artifact_is_in_the_catalog() -> None:
    """The reference's artifacts, plus the kubelet's own three, are all there and nothing else."""
    assert set(catalog.names()) == KUBEADM_NAMES | {"kubelet-client-current.pem", "kubelet-server-current.pem",
                                                    "kubelet.crt"}


def test_renewable_matches_kubeadm_certs_renew() -> None:
    """Exactly kubeadm's renew subcommands are renewable."""
    assert {e.name for e in catalog.CATALOG if e.renewable} == RENEWABLE


@pytest.mark.parametrize("entry", catalog.CATALOG, ids=lambda e: e.name)
def test_entry_is_frozen_and_consistent(entry: catalog.CatalogEntry) -> None:
    """Entries are immutable; signers exist and are CAs; CAs are shared and self-signed."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        entry.name = "x"  # type: ignore[misc]
    if entry.signer is not None:
        assert catalog.get(entry.signer).kind is Kind.CA
    if entry.kind is Kind.CA:
        assert entry.signer == entry.name and entry.scope is Scope.SHARED
    for f in entry.files:
        assert not f.path.startswith("/")
        assert f.mode in (0o600, 0o644)
        if f.role in (FileRole.KEY, FileRole.KUBECONFIG, FileRole.CERT_AND_KEY):
            assert f.mode == 0o600
    assert entry.long_name and entry.description


def test_scope_split_matches_copycerts() -> None:
    """Shared = what kubeadm's copycerts uploads (the three CAs and sa)."""
    assert {e.name for e in catalog.by_scope("shared")} == {"ca", "front-proxy-ca", "etcd-ca", "sa"}
    assert all(e.scope is Scope.NODE for e in catalog.by_scope(Scope.NODE))


@pytest.mark.parametrize(
    ("name", "version", "orgs"),
    [
        ("admin.conf", "1.28", ("system:masters",)),
        ("admin.conf", "1.29", ("kubeadm:cluster-admins",)),
        ("apiserver-kubelet-client", "1.28", ("system:masters",)),
        ("apiserver-kubelet-client", "1.34", ("kubeadm:cluster-admins",)),
        ("apiserver-etcd-client", "1.28", ("system:masters",)),
        ("apiserver-etcd-client", "1.29", ()),
        ("etcd-healthcheck-client", "1.29", ()),
        ("super-admin.conf", "1.29", ("system:masters",)),
        ("kubelet.conf", "1.21", ("system:nodes",)),
    ],
)
def test_organisations_follow_the_1_29_changes(name: str, version: str, orgs: tuple[str, ...]) -> None:
    """O values per version, as KEP-4214 and PRs #119859/#120521/#121837 changed them."""
    rule = catalog.get(name).subject
    assert rule is not None
    assert rule.organizations_for(KubeVersion.parse(version)) == orgs


def test_versions_and_external_etcd() -> None:
    """super-admin.conf only from 1.29; external etcd drops the five etcd entries."""
    assert "super-admin.conf" not in {e.name for e in catalog.entries(version="1.28")}
    assert "super-admin.conf" in {e.name for e in catalog.entries(version="1.29")}
    ext = {e.name for e in catalog.entries(version="1.34", external_etcd=True)}
    assert ext.isdisjoint({"etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client",
                           "apiserver-etcd-client"})
    assert "apiserver" in ext


def test_lookups_by_component() -> None:
    """by_component finds who reads what, with the flag and reload behaviour."""
    apiserver_reads = {e.name for e in catalog.by_component(Component.KUBE_APISERVER)}
    assert {"apiserver", "front-proxy-client", "front-proxy-ca", "ca", "sa", "etcd-ca",
            "apiserver-etcd-client", "apiserver-kubelet-client"} == apiserver_reads
    fpc = catalog.get("front-proxy-client").consumers_of(Component.KUBE_APISERVER)[0]
    assert fpc.flag == "--proxy-client-cert-file"
    assert fpc.reload_for(KubeVersion(1, 19)) is Reload.RESTART  # reload came with 1.20
    assert fpc.reload_for(KubeVersion(1, 20)) is Reload.HOT_FSNOTIFY
    scheduler = catalog.get("scheduler.conf").consumers_of(Component.KUBE_SCHEDULER)
    assert scheduler and all(c.reload.needs_restart for c in scheduler)
    assert {e.name for e in catalog.by_component("etcd")} == {"etcd-ca", "etcd-server", "etcd-peer"}


def test_unknown_name_is_a_typed_error() -> None:
    """Unknown names raise UnknownItemError (a KeyError and a ConfigError) naming the item."""
    with pytest.raises(kubepki.UnknownItemError) as info:
        catalog.get("apiserver.crt")
    assert info.value.name == "apiserver.crt"
    assert isinstance(info.value, KeyError) and isinstance(info.value, kubepki.ConfigError)
    assert "apiserver.crt" in str(info.value)


def test_locations_and_paths() -> None:
    """Paths are kubeadm's, relative to their directory."""
    assert catalog.get("etcd-server").files[0].path == "etcd/server.crt"
    assert catalog.get("admin.conf").location is Location.KUBECONFIG_DIR
    assert catalog.get("kubelet-client-current.pem").location is Location.KUBELET_PKI_DIR
    assert [f.path for f in catalog.get("sa").files] == ["sa.key", "sa.pub"]
