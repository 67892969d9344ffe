"""Kubeadm-faithful node trees for tests, demos and notebooks.

:func:`build_cluster` writes one directory per control-plane node, laid out as
kubeadm leaves a node's filesystem root: ``etc/kubernetes/{*.conf,pki/,manifests/}``,
``var/lib/kubelet/pki/`` and a kubeadm config. The certificates are real X.509
made with ``cryptography`` and shaped as kubeadm shapes them: subjects
(including the 1.29 organisation changes), key usages and their criticality,
extended key usages, SANs in kubeadm's order, serials, validity windows, PEM
block types, kubeconfig layout and file modes. ``tests/test_testing.py``
compares every one of these with trees written by a real kubeadm.

>>> import datetime as dt, tempfile
>>> from kubepki.testing import Defect, DefectKind, build_cluster
>>> cluster = build_cluster(
...     tempfile.mkdtemp(), nodes=3,
...     issued_at=dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc),
...     defects=[Defect(DefectKind.EXPIRED, "apiserver", node="cp2")],
... )
>>> [n.name for n in cluster.nodes], cluster.node("cp2").address
(['cp1', 'cp2', 'cp3'], '10.0.0.12')

Key generation is the slow part, so keys come from a process-wide
:func:`key_pool` and are reused by every tree built in the same process. Within
one cluster every artifact has its own key; two clusters built one after the
other may share keys, so pass ``fresh_keys=True`` to trees that a test compares
with each other (a leaf of one cluster could otherwise verify against the other
cluster's CA).

Simplifications, each deliberate: all nodes share one ``issued_at`` (in a real
HA cluster each node's certificates start at its own join time, while its
kubeconfig certificates start with the copied CA); static pod manifests have
kubeadm 1.34's shape for every version (image repository and tags follow the
version); external etcd is ``https://etcd.example.test:2379`` with client files
under ``/etc/etcd/pki``, which the trees do not contain.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import enum
import ipaddress
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import attrs
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubepki import catalog
from kubepki.catalog import CatalogEntry, ExtendedKeyUsage, Kind, Location, NodeRole
from kubepki.errors import ConfigError
from kubepki.node import Node
from kubepki.versions import OLDEST, KubeVersion, as_version

__all__ = [
    "DEFAULT_VERSION",
    "DEMO_AGE",
    "KEY_ALGORITHMS",
    "Defect",
    "DefectKind",
    "DemoCluster",
    "DemoKey",
    "DemoNode",
    "KeyPool",
    "build_cluster",
    "build_node",
    "generate_key",
    "key_pool",
]

#: kubeadm's ``encryptionAlgorithm`` values this module can build trees with.
KEY_ALGORITHMS: Final = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")
#: The kubeadm version trees are built for unless told otherwise.
DEFAULT_VERSION: Final = "1.34"
#: How long before "now" the demo commands issue their trees: leaves have about
#: two months left, so a demo shows a realistic, healthy cluster.
DEMO_AGE: Final = dt.timedelta(days=300)

#: A private key of one of :data:`KEY_ALGORITHMS`.
DemoKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# kubeadm constants.go: CertificateBackdate, CertificateValidityPeriod, CACertificateValidityPeriod.
_BACKDATE = dt.timedelta(minutes=5)
_DEFAULT_VALIDITY = dt.timedelta(days=365)
_DEFAULT_CA_VALIDITY = dt.timedelta(days=3650)
# client-go util/cert GenerateSelfSignedCertKey: valid from one hour ago, for one year.
_KUBELET_SERVING_BACKDATE = dt.timedelta(hours=1)
_KUBELET_SERVING_VALIDITY = dt.timedelta(days=365)
# How far outside its window an EXPIRED or NOT_YET_VALID item is put.
_DEFECT_MARGIN = dt.timedelta(days=1)
_BIND_PORT = 6443
_MAX_SERIAL = 2**63 - 1
_CERT_DIR = "/etc/kubernetes/pki"
_KUBELET_PKI_DIR = "/var/lib/kubelet/pki"
_CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"
_ETCD_IMAGE_TAG = "3.6.4-0"  # kubeadm 1.34's etcd; older versions are not distinguished
_EXTERNAL_ETCD_ENDPOINT = "https://etcd.example.test:2379"
_EXTERNAL_ETCD_DIR = "/etc/etcd/pki"


def _v(text: str) -> KubeVersion:
    return KubeVersion.parse(text)


_V122_V1BETA3 = _v("1.22")
_V125_REGISTRY = _v("1.25")  # registry.k8s.io replaced k8s.gcr.io as kubeadm's default
_V131_V1BETA4 = _v("1.31")
# ControlPlaneKubeletLocalMode: beta and on by default from 1.33 (the fixtures show it).
_V133_KUBELET_LOCAL = _v("1.33")
# The 1.34 fixtures have no `preferences: {}`; older client-go always wrote it.
_V134_NO_PREFERENCES = _v("1.34")

# Since which kubeadm version each algorithm can be configured. ECDSA-P256 came
# first through the PublicKeysECDSA feature gate; the others need v1beta4's
# encryptionAlgorithm, and ECDSA-P384 arrived in 1.34 (kubernetes#131677).
_ALGORITHM_SINCE: Mapping[str, KubeVersion] = {
    "RSA-2048": OLDEST,
    "ECDSA-P256": OLDEST,
    "RSA-3072": _V131_V1BETA4,
    "RSA-4096": _V131_V1BETA4,
    "ECDSA-P384": _v("1.34"),
}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The characters of an ASN.1 PrintableString, as Go's encoding/asn1 marshals them.
_PRINTABLE_RE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?*]*$")
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_EKU_OIDS: Mapping[ExtendedKeyUsage, x509.ObjectIdentifier] = {
    ExtendedKeyUsage.SERVER_AUTH: ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsage.CLIENT_AUTH: ExtendedKeyUsageOID.CLIENT_AUTH,
}


# --------------------------------------------------------------------------- keys


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in KEY_ALGORITHMS:
        raise ConfigError(
            f"unknown key algorithm {algorithm!r} (known: {', '.join(KEY_ALGORITHMS)})"
        )


def generate_key(algorithm: str) -> DemoKey:
    """A new private key for a kubeadm ``encryptionAlgorithm`` value such as ``RSA-2048``.

    Raises :class:`~kubepki.ConfigError` for an unknown algorithm.
    """
    _check_algorithm(algorithm)
    if algorithm == "ECDSA-P256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ECDSA-P384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))


def _generate_many(algorithm: str, count: int, jobs: int | None = None) -> list[DemoKey]:
    """``count`` new keys, on ``jobs`` threads (default: one per CPU)."""
    if count <= 0:
        return []
    workers = min(count, _jobs(jobs))
    if workers == 1 or algorithm.startswith("ECDSA"):  # EC keys take microseconds
        return [generate_key(algorithm) for _ in range(count)]
    # OpenSSL releases the GIL while it searches for primes, so threads help.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kubepki-keygen") as pool:
        return list(pool.map(generate_key, [algorithm] * count))


def _jobs(jobs: int | None) -> int:
    """Key-generation threads: ``jobs``, or one per CPU; a ConfigError unless a positive int."""
    if jobs is None:
        return os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive number of threads, not {jobs!r}")
    return jobs


class KeyPool:
    """Private keys of one algorithm, generated ahead and lent to every tree of the process.

    :meth:`take` hands out keys that are distinct from one another; the pool grows
    (generating concurrently) when it holds fewer than asked for. Later calls get
    the same keys again, in a rotated order. Thread-safe.
    """

    def __init__(self, algorithm: str) -> None:
        _check_algorithm(algorithm)
        self.algorithm = algorithm
        self._keys: list[DemoKey] = []
        self._cursor = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyPool({self.algorithm!r}, size={len(self)})"

    def __len__(self) -> int:
        return len(self._keys)

    def fill(self, count: int, *, jobs: int | None = None) -> None:
        """Make sure the pool holds at least ``count`` keys (generated on ``jobs`` threads, default one per CPU)."""
        with self._lock:
            self._fill_locked(count, jobs)

    def _fill_locked(self, count: int, jobs: int | None = None) -> None:
        self._keys.extend(_generate_many(self.algorithm, count - len(self._keys), jobs))

    def take(self, count: int, *, jobs: int | None = None) -> tuple[DemoKey, ...]:
        """``count`` keys, all different from one another (any missing generated on ``jobs`` threads)."""
        if count <= 0:
            return ()
        with self._lock:
            self._fill_locked(count, jobs)
            size = len(self._keys)
            start = self._cursor
            self._cursor = (start + count) % size
            return tuple(self._keys[(start + i) % size] for i in range(count))


_POOLS: dict[str, KeyPool] = {}
_POOLS_LOCK = threading.Lock()


def key_pool(algorithm: str) -> KeyPool:
    """The process-wide :class:`KeyPool` of ``algorithm`` (created empty on first use)."""
    _check_algorithm(algorithm)
    with _POOLS_LOCK:
        pool = _POOLS.get(algorithm)
        if pool is None:
            pool = _POOLS[algorithm] = KeyPool(algorithm)
        return pool


class _KeySource:
    """The keys of one build: reserved up front, each handed out once."""

    def __init__(self, budget: Mapping[str, int], *, fresh: bool, jobs: int | None = None) -> None:
        self._reserved: dict[str, collections.deque[DemoKey]] = {}
        for algorithm, count in budget.items():
            keys = (_generate_many(algorithm, count, jobs) if fresh
                    else key_pool(algorithm).take(count, jobs=jobs))
            self._reserved[algorithm] = collections.deque(keys)

    def next(self, algorithm: str) -> DemoKey:
        reserved = self._reserved.get(algorithm)
        if reserved:
            return reserved.popleft()
        # Beyond the budget: a fresh key can never collide with a reserved one.
        return generate_key(algorithm)


# --------------------------------------------------------------------------- public model


class DefectKind(str, enum.Enum):
    """A deliberate flaw :func:`build_cluster` can build into a tree."""

    #: The certificate expired a day before ``issued_at``.
    EXPIRED = "expired"
    #: The certificate becomes valid a day after ``issued_at``.
    NOT_YET_VALID = "not-yet-valid"
    #: Signed by an unrelated CA that has the real signer's subject.
    WRONG_SIGNER = "wrong-signer"
    #: The key file (or embedded key, or key block) belongs to another key pair.
    KEY_MISMATCH = "key-mismatch"
    #: The item's files are absent.
    MISSING = "missing"
    #: The main file holds random bytes instead of PEM or YAML.
    GARBAGE = "garbage"
    #: The first PEM block is cut in the middle of its base64 (embedded ones too).
    TRUNCATED_PEM = "truncated-pem"
    #: The kubeconfig embeds another CA named like the cluster CA.
    STALE_KUBECONFIG_CA = "stale-kubeconfig-ca"
    #: kubelet.conf embeds its certificate and key instead of naming the rotated PEM
    #: (nodes set up before kubeadm 1.17, kubernetes/kubeadm#1753).
    EMBEDDED_KUBELET_CONF = "embedded-kubelet-conf"
    #: The certificate lacks the node name among its DNS SANs.
    MISSING_SAN = "missing-san"
    #: The certificate lacks the extended key usage its consumers need.
    WRONG_USAGE = "wrong-usage"
    #: ``sa.pub`` is not the public half of ``sa.key``.
    SA_MISMATCH = "sa-mismatch"
    #: The CA expires before the leaves it signs (half the leaf validity).
    CA_EXPIRES_BEFORE_LEAF = "ca-expires-before-leaf"
    #: The node has its own CA (or ``sa`` pair) instead of the one all nodes share.
    MISMATCHED_SHARED_CA = "mismatched-shared-ca"


def _defect_kind(value: DefectKind | str) -> DefectKind:
    try:
        return DefectKind(value)
    except ValueError:
        known = ", ".join(k.value for k in DefectKind)
        raise ConfigError(f"unknown defect kind {value!r} (known: {known})") from None


@attrs.frozen
class Defect:
    """One flaw to build in: its kind, the catalog name it damages, and on which node.

    ``node`` None means the first node. Defects that change how a shared CA is
    issued (``EXPIRED``, ``NOT_YET_VALID``, ``CA_EXPIRES_BEFORE_LEAF`` on ``ca``,
    ``front-proxy-ca`` or ``etcd-ca``) change it on every node, since the nodes
    share it; every other defect damages the named node only.
    """

    kind: DefectKind = attrs.field(converter=_defect_kind)
    name: str
    node: str | None = None


@attrs.frozen
class DemoNode:
    """One built node: its name, its address, the directory that is its ``/`` and its role."""

    name: str
    address: str
    root: Path
    role: NodeRole = NodeRole.CONTROL_PLANE

    def as_node(self) -> Node:
        """A :class:`kubepki.Node` reading this tree."""
        return Node(self.root)

    def path(self, node_path: str) -> Path:
        """The local path of an absolute node path such as ``/etc/kubernetes/pki/ca.crt``."""
        return self.root / node_path.lstrip("/")


@attrs.frozen(kw_only=True)
class DemoCluster:
    """What :func:`build_cluster` built, and the options it was built with."""

    #: The directory holding one root per node.
    root: Path
    nodes: tuple[DemoNode, ...]
    issued_at: dt.datetime
    version: KubeVersion
    key_algorithm: str
    validity: dt.timedelta
    ca_validity: dt.timedelta
    external_ca: bool
    external_etcd: bool
    cluster_name: str
    control_plane_endpoint: str | None
    manifests: bool
    kubelet: bool
    kubelet_serving: bool
    write_config: bool
    #: The defects built in, each with its node filled in.
    defects: tuple[Defect, ...]
    #: The KubeletConfiguration fields given on top of kubeadm's (``serverTLSBootstrap``...).
    kubelet_config: Mapping[str, Any] = attrs.field(factory=dict)

    def node(self, name: str) -> DemoNode:
        """The node called ``name``; raises :class:`~kubepki.ConfigError` otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise ConfigError(f"no node {name!r} in this cluster (nodes: {known})", node=name)

    @property
    def first(self) -> DemoNode:
        """The node ``kubeadm init`` ran on (the only one with super-admin.conf)."""
        return self.nodes[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "root": str(self.root),
            "nodes": [
                {"name": n.name, "address": n.address, "root": str(n.root), "role": n.role.value}
                for n in self.nodes
            ],
            "issued_at": self.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": str(self.version),
            "key_algorithm": self.key_algorithm,
            "validity_seconds": int(self.validity.total_seconds()),
            "ca_validity_seconds": int(self.ca_validity.total_seconds()),
            "external_ca": self.external_ca,
            "external_etcd": self.external_etcd,
            "cluster_name": self.cluster_name,
            "control_plane_endpoint": self.control_plane_endpoint,
            "manifests": self.manifests,
            "kubelet": self.kubelet,
            "kubelet_serving": self.kubelet_serving,
            "write_config": self.write_config,
            "defects": [
                {"kind": d.kind.value, "name": d.name, "node": d.node} for d in self.defects
            ],
            "kubelet_config": dict(self.kubelet_config),
        }


# --------------------------------------------------------------------------- entry points


def build_cluster(
    dest: str | os.PathLike[str],
    *,
    nodes: int | Sequence[str] = 1,
    version: str | KubeVersion = DEFAULT_VERSION,
    key_algorithm: str = "RSA-2048",
    issued_at: dt.datetime | None = None,
    validity: dt.timedelta = _DEFAULT_VALIDITY,
    ca_validity: dt.timedelta = _DEFAULT_CA_VALIDITY,
    external_ca: bool = False,
    external_etcd: bool = False,
    manifests: bool = True,
    kubelet: bool = True,
    kubelet_serving: bool = True,
    write_config: bool = True,
    defects: Iterable[Defect] = (),
    cluster_name: str = "kubernetes",
    control_plane_endpoint: str | None = "cp.example.test:6443",
    service_subnet: str = "10.96.0.0/12",
    pod_subnet: str | None = "10.244.0.0/16",
    dns_domain: str = "cluster.local",
    first_address: str = "10.0.0.11",
    fresh_keys: bool = False,
    workers: int | Sequence[str] = 0,
    etcd_nodes: int | Sequence[str] = 0,
    kubelet_config: Mapping[str, Any] | None = None,
    jobs: int | None = None,
) -> DemoCluster:
    """Write a kubeadm cluster of control-plane nodes (and workers) under ``dest``, one root per node.

    ``nodes`` is a count (named ``cp1``, ``cp2``...) or the names themselves;
    ``workers`` likewise (``w1``, ``w2``...: what ``kubeadm join`` leaves, ``ca.crt``
    without its key, kubelet.conf and the kubelet's files). Node *i* (workers after
    the control planes) gets ``first_address`` + *i* and the root ``dest/<name>``,
    which must not exist or be empty. ``etcd_nodes`` (``e1``, ``e2``...) are the hosts of
    kubeadm's external-etcd topology: the etcd CA (its key on the first only), etcd's
    certificates and manifest, the kubelet's self-signed serving pair; control planes
    beside them need ``external_etcd``.

    With ``kubelet`` and ``write_config``, control planes and workers also get kubeadm's
    ``/var/lib/kubelet/config.yaml`` (``rotateCertificates: true``, ``clientCAFile``
    the cluster CA) and ``kubeadm-flags.env``; ``kubelet_config`` sets more
    KubeletConfiguration fields (``{"serverTLSBootstrap": True}`` gives each such node
    a serving certificate signed by the cluster CA, ``kubelet-server-current.pem``,
    instead of the self-signed kubelet.crt; ``{"rotateCertificates": False}`` turns
    client rotation off). The shared material (``ca``, ``front-proxy-ca``, ``etcd-ca``,
    ``sa``) is byte-identical on every node; everything else is issued per node.
    Only the first node gets ``super-admin.conf`` (kubeadm >= 1.29), as only
    ``kubeadm init`` writes it.

    ``version`` may carry a patch level (``"1.34.1"``), used for image tags and the
    config's ``kubernetesVersion`` (``.0`` otherwise). ``issued_at`` (tz-aware,
    default now, truncated to the second) is kubeadm's start time: certificates are
    valid from five minutes before it, for ``validity`` (CAs ``ca_validity``).
    ``external_ca`` leaves out ``ca.key``; ``external_etcd`` leaves out the etcd CA
    and the certificates it signs, and the config says ``etcd.external``.
    ``manifests`` writes the four static pod manifests (kubeadm 1.34's shape for
    every version); ``kubelet`` writes the kubelet's rotated client PEM, the
    ``kubelet-client-current.pem`` symlink and a kubelet.conf naming it (kubeadm's
    kubelet-finalize phase), and with ``kubelet_serving`` the kubelet's self-signed
    ``kubelet.crt``; ``write_config`` writes ``/etc/kubernetes/kubeadm-config.yaml``.

    Kubeconfigs point at ``https://<control_plane_endpoint>``, except
    controller-manager.conf and scheduler.conf (the node's own API server) and,
    from 1.33 (``ControlPlaneKubeletLocalMode``), kubelet.conf. Other version
    differences: ``system:masters`` and no super-admin.conf before 1.29; RSA
    kubeconfig keys with ECDSA before 1.31 (kubernetes/kubeadm#3072); config API
    v1beta2 (1.21), v1beta3 (1.22-1.30) or v1beta4; ``preferences: {}`` in
    kubeconfigs before 1.34.

    ``defects`` builds flaws in (see :class:`DefectKind`); ``fresh_keys`` bypasses
    the process-wide :func:`key_pool`. Keys the build needs are generated up front on
    ``jobs`` threads (default: one per CPU; RSA key generation releases the GIL).

    Raises :class:`~kubepki.ConfigError` for invalid options, for a key algorithm
    the version does not offer, and for a defect that does not apply to its item.
    """
    opts = _options(
        dest, nodes=nodes, version=version, key_algorithm=key_algorithm, issued_at=issued_at,
        validity=validity, ca_validity=ca_validity, external_ca=external_ca,
        external_etcd=external_etcd, manifests=manifests, kubelet=kubelet,
        kubelet_serving=kubelet_serving, write_config=write_config, cluster_name=cluster_name,
        control_plane_endpoint=control_plane_endpoint, service_subnet=service_subnet,
        pod_subnet=pod_subnet, dns_domain=dns_domain, first_address=first_address, workers=workers,
        etcd_nodes=etcd_nodes, kubelet_config=kubelet_config,
    )
    _jobs(jobs)  # refused before anything is written
    resolved = tuple(_resolve_defect(d, opts) for d in defects)
    return _Builder(opts, resolved, fresh_keys=fresh_keys, jobs=jobs).build()


def build_node(
    dest: str | os.PathLike[str],
    *,
    name: str = "cp1",
    version: str | KubeVersion = DEFAULT_VERSION,
    key_algorithm: str = "RSA-2048",
    issued_at: dt.datetime | None = None,
    validity: dt.timedelta = _DEFAULT_VALIDITY,
    ca_validity: dt.timedelta = _DEFAULT_CA_VALIDITY,
    external_ca: bool = False,
    external_etcd: bool = False,
    manifests: bool = True,
    kubelet: bool = True,
    kubelet_serving: bool = True,
    write_config: bool = True,
    defects: Iterable[Defect] = (),
    cluster_name: str = "kubernetes",
    control_plane_endpoint: str | None = "cp.example.test:6443",
    service_subnet: str = "10.96.0.0/12",
    pod_subnet: str | None = "10.244.0.0/16",
    dns_domain: str = "cluster.local",
    first_address: str = "10.0.0.11",
    fresh_keys: bool = False,
    role: NodeRole | str = NodeRole.CONTROL_PLANE,
    kubelet_config: Mapping[str, Any] | None = None,
    jobs: int | None = None,
) -> DemoNode:
    """Write one node at ``dest/<name>`` and return it.

    A ``control-plane`` node is a one-node cluster (``kubeadm init``); a ``worker``
    is what ``kubeadm join`` leaves (``ca.crt`` alone, kubelet.conf, the kubelet's
    files); an ``etcd`` node is one host of kubeadm's external-etcd topology (the
    etcd CA, etcd's certificates and its static pod manifest, no kubelet.conf).
    The other options are :func:`build_cluster`'s.
    """
    r = _node_role(role)
    cluster = build_cluster(
        dest, nodes=[name] if r is NodeRole.CONTROL_PLANE else 0, workers=[name] if r is NodeRole.WORKER else 0,
        etcd_nodes=[name] if r is NodeRole.ETCD else 0, version=version, key_algorithm=key_algorithm,
        issued_at=issued_at, validity=validity, ca_validity=ca_validity, external_ca=external_ca,
        external_etcd=external_etcd, manifests=manifests, kubelet=kubelet,
        kubelet_serving=kubelet_serving, write_config=write_config and r is not NodeRole.ETCD, defects=defects,
        cluster_name=cluster_name, control_plane_endpoint=control_plane_endpoint,
        service_subnet=service_subnet, pod_subnet=pod_subnet, dns_domain=dns_domain,
        first_address=first_address, fresh_keys=fresh_keys, kubelet_config=kubelet_config, jobs=jobs,
    )
    return cluster.first


# --------------------------------------------------------------------------- options


@attrs.frozen(kw_only=True)
class _Options:
    dest: Path
    nodes: tuple[DemoNode, ...]
    version: KubeVersion
    image_tag: str
    key_algorithm: str
    issued_at: dt.datetime
    validity: dt.timedelta
    ca_validity: dt.timedelta
    external_ca: bool
    external_etcd: bool
    manifests: bool
    kubelet: bool
    kubelet_serving: bool
    write_config: bool
    cluster_name: str
    control_plane_endpoint: str | None
    service_subnet: str
    kubelet_config: Mapping[str, Any] = attrs.field(factory=dict)
    service_vip: str
    pod_subnet: str | None
    dns_domain: str

    @property
    def kubeconfig_algorithm(self) -> str:
        # Before v1beta4, kubeconfig keys stayed RSA even with PublicKeysECDSA
        # (kubernetes/kubeadm#3072, fixed in 1.31).
        return self.key_algorithm if self.version >= _V131_V1BETA4 else "RSA-2048"

    @property
    def control_plane_host(self) -> str | None:
        if self.control_plane_endpoint is None:
            return None
        host = self.control_plane_endpoint.rsplit(":", 1)[0]
        return host.strip("[]")

    def applies(self, entry: CatalogEntry, node: DemoNode) -> bool:
        """True when ``entry`` is written on ``node`` with these options."""
        if not entry.applies(self.version, external_etcd=self.external_etcd, role=node.role):
            return False
        if entry.name == "super-admin.conf":
            return node is self.nodes[0]
        if entry.name == "kubelet-client-current.pem":
            return self.kubelet
        if entry.name == "kubelet.crt":
            return self.kubelet and self.kubelet_serving and not (
                self.server_tls_bootstrap and node.role is not NodeRole.ETCD)
        if entry.name == "kubelet-server-current.pem":
            return self.kubelet and self.server_tls_bootstrap
        return True

    @property
    def server_tls_bootstrap(self) -> bool:
        return self.kubelet_config.get("serverTLSBootstrap") is True


def _options(
    dest: str | os.PathLike[str],
    *,
    nodes: int | Sequence[str],
    version: str | KubeVersion,
    key_algorithm: str,
    issued_at: dt.datetime | None,
    validity: dt.timedelta,
    ca_validity: dt.timedelta,
    external_ca: bool,
    external_etcd: bool,
    manifests: bool,
    kubelet: bool,
    kubelet_serving: bool,
    write_config: bool,
    cluster_name: str,
    control_plane_endpoint: str | None,
    service_subnet: str,
    pod_subnet: str | None,
    dns_domain: str,
    first_address: str,
    workers: int | Sequence[str] = 0,
    etcd_nodes: int | Sequence[str] = 0,
    kubelet_config: Mapping[str, Any] | None = None,
) -> _Options:
    v, patch = _version_and_patch(version, key_algorithm)
    issued_at = _issue_time(issued_at)
    for label, span in (("validity", validity), ("ca_validity", ca_validity)):
        if span <= dt.timedelta(0):
            raise ConfigError(f"{label} must be positive, not {span}")
    for label, text in (("cluster_name", cluster_name), ("dns_domain", dns_domain)):
        if not _NAME_RE.match(text):
            raise ConfigError(f"{label} {text!r} is not a DNS-1123 name")
    roles = _node_roles(nodes, workers, etcd_nodes)
    if external_etcd is False and any(r is NodeRole.ETCD for r in roles.values()) and \
            any(r is NodeRole.CONTROL_PLANE for r in roles.values()):
        raise ConfigError("etcd nodes serve control planes with external etcd: pass external_etcd=True")
    start, subnet = _addresses(first_address, service_subnet, pod_subnet, control_plane_endpoint)
    root = Path(dest)
    built = _demo_nodes(root, list(roles), start, roles)
    return _Options(
        dest=root,
        nodes=tuple(built),
        version=v,
        image_tag=f"v{v.major}.{v.minor}.{patch}",
        key_algorithm=key_algorithm,
        issued_at=issued_at,
        validity=validity,
        ca_validity=ca_validity,
        external_ca=external_ca,
        external_etcd=external_etcd,
        manifests=manifests,
        kubelet=kubelet,
        kubelet_serving=kubelet_serving,
        write_config=write_config,
        cluster_name=cluster_name,
        control_plane_endpoint=control_plane_endpoint,
        service_subnet=service_subnet,
        kubelet_config=dict(kubelet_config or {}),
        # kubeadm's GetAPIServerVirtualIP: the first address of the service subnet.
        service_vip=str(subnet.network_address + 1),
        pod_subnet=pod_subnet,
        dns_domain=dns_domain,
    )


def _version_and_patch(version: str | KubeVersion, key_algorithm: str) -> tuple[KubeVersion, str]:
    """The modelled minor version and the patch level asked for; refuses versions and algorithms kubeadm lacks."""
    v = as_version(version)
    if v < OLDEST:
        raise ConfigError(f"kubeadm {v} is older than the oldest modelled version {OLDEST}")
    patch = "0"
    if isinstance(version, str):
        match = re.match(r"^v?\d+\.\d+\.(\d+)", version.strip())
        patch = match.group(1) if match else "0"
    _check_algorithm(key_algorithm)
    if v < _ALGORITHM_SINCE[key_algorithm]:
        raise ConfigError(
            f"kubeadm {v} cannot use {key_algorithm} "
            f"(available from {_ALGORITHM_SINCE[key_algorithm]})"
        )
    return v, patch


def _issue_time(issued_at: dt.datetime | None) -> dt.datetime:
    if issued_at is None:
        issued_at = dt.datetime.now(dt.timezone.utc)
    if issued_at.tzinfo is None or issued_at.utcoffset() is None:
        raise ConfigError("issued_at must be timezone-aware (UTC)")
    # X.509 times have whole seconds; keep issued_at equal to what the files say.
    return issued_at.astimezone(dt.timezone.utc).replace(microsecond=0)


def _node_names(nodes: int | Sequence[str], prefix: str = "cp", what: str = "nodes") -> list[str]:
    if isinstance(nodes, str):
        raise ConfigError(f"{what} must be a count or a sequence of node names, not a string")
    if isinstance(nodes, bool) or (isinstance(nodes, int) and nodes < 0):
        raise ConfigError(f"{what} must be a count or a sequence of node names, not {nodes!r}")
    return [f"{prefix}{i + 1}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)


def _node_roles(nodes: int | Sequence[str], workers: int | Sequence[str],
                etcd_nodes: int | Sequence[str]) -> dict[str, NodeRole]:
    """Every node's name with its role, control planes first (the first is where ``kubeadm init`` ran)."""
    out: dict[str, NodeRole] = {}
    names: list[str] = []
    for count, prefix, what, role in ((nodes, "cp", "nodes", NodeRole.CONTROL_PLANE),
                                      (workers, "w", "workers", NodeRole.WORKER),
                                      (etcd_nodes, "e", "etcd_nodes", NodeRole.ETCD)):
        for name in _node_names(count, prefix, what):
            names.append(name)
            out[name] = role
    if not names:
        raise ConfigError("nodes must be a positive count or a sequence of node names")
    if len(set(names)) != len(names):
        raise ConfigError(f"node names must be unique: {names}")
    return out


def _node_role(role: NodeRole | str) -> NodeRole:
    try:
        return NodeRole(role)
    except ValueError:
        raise ConfigError(f"unknown node role {role!r} (known: {', '.join(r.value for r in NodeRole)})") from None


def _addresses(first_address: str, service_subnet: str, pod_subnet: str | None,
               control_plane_endpoint: str | None) -> tuple[Any, Any]:
    """The first node's address and the service subnet, parsed; the pod subnet and endpoint checked."""
    try:
        start = ipaddress.ip_address(first_address)
        subnet = ipaddress.ip_network(service_subnet, strict=False)
        if pod_subnet is not None:
            ipaddress.ip_network(pod_subnet, strict=False)
    except ValueError as exc:
        raise ConfigError(f"invalid address or subnet: {exc}") from None
    if control_plane_endpoint is not None and not re.match(
        r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d+$", control_plane_endpoint
    ):
        raise ConfigError(f"control_plane_endpoint {control_plane_endpoint!r} is not host:port")
    return start, subnet


def _demo_nodes(root: Path, names: Sequence[str], start: Any,
                roles: Mapping[str, NodeRole] | None = None) -> list[DemoNode]:
    built = []
    for i, name in enumerate(names):
        if not _NAME_RE.match(name):
            raise ConfigError(f"node name {name!r} is not a DNS-1123 name", node=name)
        node_root = root / name
        if node_root.exists() and (not node_root.is_dir() or any(node_root.iterdir())):
            raise ConfigError(f"{node_root} exists and is not an empty directory",
                              path=str(node_root), node=name)
        role = roles.get(name, NodeRole.CONTROL_PLANE) if roles else NodeRole.CONTROL_PLANE
        built.append(DemoNode(name=name, address=str(start + i), root=node_root, role=role))
    return built


# --------------------------------------------------------------------------- defects

_ALL_SHAPES = frozenset({"ca", "leaf", "kubeconfig", "sa", "kubelet-pem", "serving"})
_CERT_SHAPES = frozenset({"ca", "leaf", "kubeconfig", "kubelet-pem", "serving"})
_ISSUED_SHAPES = frozenset({"leaf", "kubeconfig", "kubelet-pem", "serving"})
_APPLIES_TO: Mapping[DefectKind, frozenset[str]] = {
    DefectKind.EXPIRED: _CERT_SHAPES,
    DefectKind.NOT_YET_VALID: _CERT_SHAPES,
    DefectKind.WRONG_SIGNER: _ISSUED_SHAPES,
    DefectKind.KEY_MISMATCH: _CERT_SHAPES,
    DefectKind.MISSING: _ALL_SHAPES,
    DefectKind.GARBAGE: _ALL_SHAPES,
    DefectKind.TRUNCATED_PEM: _ALL_SHAPES,
    DefectKind.STALE_KUBECONFIG_CA: frozenset({"kubeconfig"}),
    DefectKind.EMBEDDED_KUBELET_CONF: frozenset({"kubeconfig"}),
    DefectKind.MISSING_SAN: _CERT_SHAPES,
    DefectKind.WRONG_USAGE: _ISSUED_SHAPES,
    DefectKind.SA_MISMATCH: frozenset({"sa"}),
    DefectKind.CA_EXPIRES_BEFORE_LEAF: frozenset({"ca"}),
    DefectKind.MISMATCHED_SHARED_CA: frozenset({"ca", "sa"}),
}
#: Defects that change how a shared CA is issued: they hold on every node.
_SHARED_CONTENT = frozenset(
    {DefectKind.EXPIRED, DefectKind.NOT_YET_VALID, DefectKind.CA_EXPIRES_BEFORE_LEAF}
)
#: Defects on the kubelet's client credential, whichever of its two names is used.
_CREDENTIAL = frozenset(
    {DefectKind.EXPIRED, DefectKind.NOT_YET_VALID, DefectKind.WRONG_SIGNER, DefectKind.WRONG_USAGE}
)


def _shape(entry: CatalogEntry) -> str:
    if entry.kind is Kind.KUBELET:
        return "serving" if entry.name == "kubelet.crt" else "kubelet-pem"
    return {
        Kind.CA: "ca",
        Kind.CERTIFICATE: "leaf",
        Kind.KUBECONFIG: "kubeconfig",
        Kind.KEYPAIR: "sa",
    }[entry.kind]


def _resolve_defect(defect: Defect, opts: _Options) -> Defect:
    """The defect with its node filled in; ConfigError when it cannot be built."""
    entry = catalog.get(defect.name)  # UnknownItemError (a ConfigError) for unknown names
    node = opts.nodes[0]
    if defect.node is not None:
        match = [n for n in opts.nodes if n.name == defect.node]
        if not match:
            raise ConfigError(f"defect {defect.kind.value} names an unknown node {defect.node!r}",
                              name=defect.name, node=defect.node)
        node = match[0]

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"defect {defect.kind.value} does not apply to {defect.name} on "
                           f"{node.name}: {why}", name=defect.name, node=node.name)

    if not opts.applies(entry, node):
        raise refuse("this tree has no such item")
    kind = defect.kind
    if _shape(entry) not in _APPLIES_TO[kind]:
        raise refuse(f"it applies to {', '.join(sorted(_APPLIES_TO[kind]))} items only")
    if kind is DefectKind.MISSING_SAN and "{node_name}" not in entry.sans.dns:
        raise refuse("its SANs do not include the node name")
    embedded = kind is DefectKind.EMBEDDED_KUBELET_CONF
    if embedded and (entry.name != "kubelet.conf" or not opts.kubelet):
        raise refuse("only kubelet.conf, in a tree built with kubelet=True, names the rotated PEM")
    if kind is DefectKind.KEY_MISMATCH and entry.name == "ca" and opts.external_ca:
        raise refuse("with an external CA there is no ca.key")
    if kind is DefectKind.MISMATCHED_SHARED_CA and len(opts.nodes) < 2:
        raise refuse("a cluster of one node has nothing to mismatch with")
    return Defect(kind, defect.name, node.name)


# --------------------------------------------------------------------------- X.509 helpers


@attrs.frozen
class _Issued:
    cert: x509.Certificate
    key: DemoKey


def _name_attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    # Go's encoding/asn1 writes a PrintableString when it can, UTF8String otherwise.
    kind = _ASN1Type.PrintableString if _PRINTABLE_RE.match(value) else _ASN1Type.UTF8String
    return x509.NameAttribute(oid, value, _type=kind)


def _subject(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    # Go's pkix.Name order: O (one multi-valued RDN) before CN.
    rdns = []
    if organizations:
        rdns.append(x509.RelativeDistinguishedName(
            [_name_attribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        ))
    rdns.append(x509.RelativeDistinguishedName([_name_attribute(NameOID.COMMON_NAME, common_name)]))
    return x509.Name(rdns)


def _hash_for(key: DemoKey) -> hashes.SHA256 | hashes.SHA384:
    # Go's x509 signingParamsForKey: ECDSA P-384 signs with SHA-384, the rest SHA-256.
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _serial() -> int:
    return secrets.randbelow(_MAX_SERIAL) + 1


def _issue(
    *,
    subject: x509.Name,
    key: DemoKey,
    signer: _Issued | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    is_ca: bool = False,
    ekus: Sequence[x509.ObjectIdentifier] = (),
    dns: Sequence[str] = (),
    ips: Sequence[_IP] = (),
    serial: int | None = None,
) -> x509.Certificate:
    """A certificate as Go's x509.CreateCertificate writes kubeadm's templates.

    Extensions in Go's order: keyUsage (critical), extKeyUsage, basicConstraints
    (critical), subjectKeyIdentifier (CAs only), authorityKeyIdentifier (issued
    certificates only), subjectAltName.
    """
    signing_key = key if signer is None else signer.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if signer is None else signer.cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=is_ca,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    builder = builder.add_extension(
        x509.BasicConstraints(ca=is_ca, path_length=None), critical=True
    )
    if is_ca:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if signer is not None:
        ski = signer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(i) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, _hash_for(signing_key))


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: DemoKey) -> bytes:
    # keyutil.MarshalPrivateKeyToPEM: "RSA PRIVATE KEY" (PKCS#1), "EC PRIVATE KEY" (SEC 1).
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _public_pem(key: DemoKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _truncate_pem(data: bytes) -> bytes:
    """``data`` cut in the middle of its first PEM block's base64."""
    begin = data.index(b"-----BEGIN")
    body = data.index(b"\n", begin) + 1
    end = data.index(b"-----END", body)
    return data[: body + (end - body) // 2]


def _garbage(like: bytes) -> bytes:
    # Random bytes that start with NUL: neither PEM, nor DER (0x30), nor YAML.
    return b"\x00" + secrets.token_bytes(max(64, len(like)) - 1)


def _go_duration(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# --------------------------------------------------------------------------- the builder


class _Builder:
    """Builds the trees of one cluster."""

    def __init__(self, opts: _Options, defects: tuple[Defect, ...], *, fresh_keys: bool,
                 jobs: int | None = None) -> None:
        self.opts = opts
        self.defects = defects
        self._node_defects: dict[tuple[str, str], set[DefectKind]] = collections.defaultdict(set)
        self._shared_defects: dict[str, set[DefectKind]] = collections.defaultdict(set)
        for d in defects:
            assert d.node is not None  # noqa: S101 - filled in by _resolve_defect
            name = d.name
            if name == "kubelet-client-current.pem" and d.kind in _CREDENTIAL:
                name = "kubelet.conf"  # one credential, two names
            self._node_defects[(d.node, name)].add(d.kind)
            if d.kind in _SHARED_CONTENT and catalog.get(name).is_ca:
                self._shared_defects[name].add(d.kind)
        for key, kinds in self._node_defects.items():
            if {DefectKind.EXPIRED, DefectKind.NOT_YET_VALID} <= kinds:
                raise ConfigError(f"defects expired and not-yet-valid contradict each other on "
                                  f"{key[1]}", name=key[1], node=key[0])
            if (key[1:] == ("kubelet.conf",) and DefectKind.TRUNCATED_PEM in kinds and opts.kubelet
                    and DefectKind.EMBEDDED_KUBELET_CONF not in kinds):
                raise ConfigError(
                    "defect truncated-pem does not apply to kubelet.conf: it names "
                    "kubelet-client-current.pem and embeds no PEM (add embedded-kubelet-conf)",
                    name="kubelet.conf", node=key[0],
                )
        self.entries = tuple(e for e in catalog.entries(version=opts.version)
                             if any(opts.applies(e, n) for n in opts.nodes))
        self.keys = _KeySource(self._budget(), fresh=fresh_keys, jobs=jobs)
        self._impostors: dict[str, _Issued] = {}

    def _budget(self) -> dict[str, int]:
        opts = self.opts
        budget: collections.Counter[str] = collections.Counter()
        cas = [e for e in self.entries if e.kind is Kind.CA]
        leaves = [e for e in self.entries if e.kind is Kind.CERTIFICATE]
        budget[opts.key_algorithm] += len(cas) + 1  # + sa
        for node in opts.nodes:
            budget[opts.key_algorithm] += sum(1 for e in leaves if opts.applies(e, node))
            budget[opts.kubeconfig_algorithm] += sum(
                1 for e in self.entries if e.kind is Kind.KUBECONFIG and opts.applies(e, node)
            )
            if opts.kubelet and opts.kubelet_serving:
                budget["RSA-2048"] += 2
            if opts.kubelet and opts.server_tls_bootstrap:
                budget["ECDSA-P256"] += 1
        budget[opts.key_algorithm] += len(self.defects)
        return dict(budget)

    def kinds(self, node: DemoNode, name: str) -> set[DefectKind]:
        return self._node_defects.get((node.name, name), set())

    # ---- validity windows

    def window(
        self, kinds: set[DefectKind], *, not_before: dt.datetime, not_after: dt.datetime
    ) -> tuple[dt.datetime, dt.datetime]:
        at = self.opts.issued_at
        span = not_after - not_before
        if DefectKind.EXPIRED in kinds:
            return at - _DEFECT_MARGIN - span, at - _DEFECT_MARGIN
        if DefectKind.NOT_YET_VALID in kinds:
            return at + _DEFECT_MARGIN, at + _DEFECT_MARGIN + span
        return not_before, not_after

    # ---- CAs

    def new_ca(self, entry: CatalogEntry, kinds: set[DefectKind]) -> _Issued:
        opts = self.opts
        assert entry.subject is not None  # noqa: S101 - every CA has one
        cn = entry.subject.common_name
        not_before = opts.issued_at - _BACKDATE
        not_after = opts.issued_at + opts.ca_validity
        if DefectKind.CA_EXPIRES_BEFORE_LEAF in kinds:
            not_after = opts.issued_at + opts.validity / 2
        not_before, not_after = self.window(kinds, not_before=not_before, not_after=not_after)
        key = self.keys.next(opts.key_algorithm)
        # kubeadm's NewSelfSignedCACert: the CN is also the only DNS SAN.
        cert = _issue(subject=_subject(cn), key=key, signer=None, not_before=not_before,
                      not_after=not_after, is_ca=True, dns=[cn])
        return _Issued(cert, key)

    def impostor(self, real: _Issued) -> _Issued:
        """An unrelated CA with ``real``'s subject (cached per subject)."""
        label = real.cert.subject.rfc4514_string()
        if label not in self._impostors:
            key = self.keys.next(_algorithm_of(real.key))
            cert = _issue(
                subject=real.cert.subject, key=key, signer=None,
                not_before=real.cert.not_valid_before_utc, not_after=real.cert.not_valid_after_utc,
                is_ca=True, dns=_dns_names(real.cert),
            )
            self._impostors[label] = _Issued(cert, key)
        return self._impostors[label]

    # ---- issued certificates

    def _sans(self, entry: CatalogEntry, node: DemoNode, kinds: set[DefectKind]
              ) -> tuple[list[str], list[_IP]]:
        values = {
            "node_name": node.name,
            "dns_domain": self.opts.dns_domain,
            "service_vip": self.opts.service_vip,
            "advertise_address": node.address,
        }
        dns = [t.format_map(values) for t in entry.sans.dns]
        ips = [t.format_map(values) for t in entry.sans.ip]
        host = self.opts.control_plane_host
        if "controlPlaneEndpoint" in entry.sans.from_config and host is not None:
            if _is_ip(host):
                ips.append(host)
            else:
                dns.append(host)
        if DefectKind.MISSING_SAN in kinds:
            dns = [d for d in dns if d != node.name]
        # kubeadm's pkiutil.RemoveDuplicateAltNames: DNS names become a sorted set
        # (so cp.example.test sorts before cp1), IPs stay in order without repeats.
        unique_ips: list[_IP] = []
        for text in ips:
            ip = ipaddress.ip_address(text)
            if ip not in unique_ips:
                unique_ips.append(ip)
        return sorted(set(dns)), unique_ips

    @staticmethod
    def ekus(
        wanted: Iterable[ExtendedKeyUsage], kinds: set[DefectKind]
    ) -> list[x509.ObjectIdentifier]:
        server, client = ExtendedKeyUsage.SERVER_AUTH, ExtendedKeyUsage.CLIENT_AUTH
        usages = [u for u in (server, client) if u in set(wanted)]  # kubeadm's order
        if DefectKind.WRONG_USAGE in kinds:
            # A server loses serverAuth (keeping clientAuth if it had it); a client
            # gets serverAuth instead of clientAuth.
            without_server = [u for u in usages if u is not server] or [client]
            usages = without_server if server in usages else [server]
        return [_EKU_OIDS[u] for u in usages]

    def issue_leaf(
        self,
        entry: CatalogEntry,
        node: DemoNode,
        signer: _Issued,
        *,
        algorithm: str,
        kinds: set[DefectKind],
    ) -> _Issued:
        opts = self.opts
        assert entry.subject is not None  # noqa: S101 - every issued entry has one
        cn = entry.subject.render_cn(node.name)
        assert cn is not None  # noqa: S101
        if DefectKind.WRONG_SIGNER in kinds:
            signer = self.impostor(signer)
        dns, ips = self._sans(entry, node, kinds)
        nb, na = self.window(
            kinds,
            not_before=opts.issued_at - _BACKDATE,
            not_after=opts.issued_at + opts.validity,
        )
        key = self.keys.next(algorithm)
        cert = _issue(
            subject=_subject(cn, entry.subject.organizations_for(opts.version)),
            key=key, signer=signer, not_before=nb, not_after=na,
            ekus=self.ekus(entry.extended_key_usages, kinds), dns=dns, ips=ips,
        )
        return _Issued(cert, key)

    def key_file(self, issued: _Issued, kinds: set[DefectKind]) -> bytes:
        if DefectKind.KEY_MISMATCH in kinds:
            return _key_pem(self.keys.next(_algorithm_of(issued.key)))
        return _key_pem(issued.key)

    # ---- the build

    def build(self) -> DemoCluster:
        opts = self.opts
        shared: dict[str, _Issued] = {}
        for entry in self.entries:
            if entry.kind is Kind.CA:
                kinds = self._shared_defects.get(entry.name, set())
                shared[entry.name] = self.new_ca(entry, kinds)
        sa_key = self.keys.next(opts.key_algorithm)
        for index, node in enumerate(opts.nodes):
            cas = dict(shared)
            node_sa = sa_key
            for name in cas:
                if DefectKind.MISMATCHED_SHARED_CA in self.kinds(node, name):
                    cas[name] = self.new_ca(catalog.get(name), set())
            if DefectKind.MISMATCHED_SHARED_CA in self.kinds(node, "sa"):
                node_sa = self.keys.next(opts.key_algorithm)
            _NodeWriter(self, node, index, cas, node_sa).write()
        return DemoCluster(
            root=opts.dest,
            nodes=opts.nodes,
            issued_at=opts.issued_at,
            version=opts.version,
            key_algorithm=opts.key_algorithm,
            validity=opts.validity,
            ca_validity=opts.ca_validity,
            external_ca=opts.external_ca,
            external_etcd=opts.external_etcd,
            cluster_name=opts.cluster_name,
            control_plane_endpoint=opts.control_plane_endpoint,
            manifests=opts.manifests,
            kubelet=opts.kubelet,
            kubelet_serving=opts.kubelet and opts.kubelet_serving,
            write_config=opts.write_config,
            defects=self.defects,
            kubelet_config=dict(opts.kubelet_config),
        )


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _algorithm_of(key: DemoKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA-P{key.curve.key_size}"
    return f"RSA-{key.key_size}"


_LOCATION_DIRS: Mapping[Location, str] = {
    Location.CERT_DIR: "etc/kubernetes/pki",
    Location.KUBECONFIG_DIR: "etc/kubernetes",
    Location.KUBELET_PKI_DIR: "var/lib/kubelet/pki",
}


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # the umask may have narrowed it


# libyaml's emitter is much faster on long base64 scalars and writes the same bytes.
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(doc: Mapping[str, Any], *, sort_keys: bool = True) -> bytes:
    # PyYAML with sorted keys and no line wrapping writes what Go's sigs.k8s.io/yaml
    # writes for these documents, byte for byte (checked against the fixtures).
    text = yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=sort_keys, width=1 << 20,
                     default_flow_style=False)
    return text.encode()


class _NodeWriter:
    """Writes one node's tree."""

    def __init__(self, builder: _Builder, node: DemoNode, index: int, cas: Mapping[str, _Issued],
                 sa_key: DemoKey) -> None:
        self.b = builder
        self.opts = builder.opts
        self.node = node
        self.index = index
        self.cas = cas
        self.sa_key = sa_key

    def path(self, entry: CatalogEntry, file_index: int = 0) -> Path:
        return self.node.root / _LOCATION_DIRS[entry.location] / entry.files[file_index].path

    def kinds(self, name: str) -> set[DefectKind]:
        return self.b.kinds(self.node, name)

    def _first_of_role(self) -> DemoNode:
        return next(n for n in self.opts.nodes if n.role is self.node.role)

    def write(self) -> None:  # noqa: C901, PLR0912  -- one case per demo file kind
        self.node.root.mkdir(parents=True, exist_ok=True)
        present = [e for e in self.b.entries if self.opts.applies(e, self.node)]
        kubelet_credential: _Issued | None = None
        for entry in present:
            if entry.kind is Kind.CA:
                self._write_ca(entry)
            elif entry.kind is Kind.KEYPAIR:
                self._write_sa(entry)
            elif entry.kind is Kind.CERTIFICATE:
                self._write_leaf(entry)
            elif entry.kind is Kind.KUBECONFIG:
                issued = self._write_kubeconfig(entry)
                if entry.name == "kubelet.conf":
                    kubelet_credential = issued
        for entry in present:
            if entry.name == "kubelet-client-current.pem":
                assert kubelet_credential is not None  # noqa: S101 - kubelet.conf comes first
                self._write_kubelet_pem(entry, kubelet_credential)
            elif entry.name == "kubelet.crt":
                self._write_kubelet_serving(entry)
            elif entry.name == "kubelet-server-current.pem":
                self._write_kubelet_server(entry)
        if self.opts.kubelet and self.opts.write_config and self.node.role is not NodeRole.ETCD:
            self._write_kubelet_config()
        if self.opts.manifests:
            for filename, doc in self._manifests().items():
                _write(self.node.root / "etc/kubernetes/manifests" / filename, _dump(doc), 0o600)
        if self.opts.write_config and self.node.role is NodeRole.CONTROL_PLANE:
            _write(self.node.root / "etc/kubernetes/kubeadm-config.yaml", self._config(), 0o644)
        for entry in present:
            self._damage(entry)
        # kubeadm and the kubelet create their directories 0755, the manifests 0700.
        for dirpath, _dirs, _files in os.walk(self.node.root):
            Path(dirpath).chmod(0o755)
        manifests_dir = self.node.root / "etc/kubernetes/manifests"
        if manifests_dir.is_dir():
            manifests_dir.chmod(0o700)

    # ---- PKI files

    def _write_ca(self, entry: CatalogEntry) -> None:
        ca = self.cas[entry.name]
        _write(self.path(entry, 0), _cert_pem(ca.cert), entry.files[0].mode)
        if entry.name == "ca" and self.opts.external_ca:
            return  # kubeadm's external CA mode: ca.crt without ca.key
        role = self.node.role
        if not entry.key_expected(role) and (role is NodeRole.WORKER or self.node is not self._first_of_role()):
            return  # kubeadm join fetches ca.crt alone; etcd hosts after the first get etcd/ca.crt alone
        key = self.b.key_file(ca, self.kinds(entry.name))
        _write(self.path(entry, 1), key, entry.files[1].mode)

    def _write_sa(self, entry: CatalogEntry) -> None:
        public_of = self.sa_key
        if DefectKind.SA_MISMATCH in self.kinds(entry.name):
            public_of = self.b.keys.next(_algorithm_of(self.sa_key))
        _write(self.path(entry, 0), _key_pem(self.sa_key), entry.files[0].mode)
        _write(self.path(entry, 1), _public_pem(public_of), entry.files[1].mode)

    def _write_leaf(self, entry: CatalogEntry) -> None:
        assert entry.signer is not None  # noqa: S101
        kinds = self.kinds(entry.name)
        issued = self.b.issue_leaf(entry, self.node, self.cas[entry.signer],
                                    algorithm=self.opts.key_algorithm, kinds=kinds)
        _write(self.path(entry, 0), _cert_pem(issued.cert), entry.files[0].mode)
        _write(self.path(entry, 1), self.b.key_file(issued, kinds), entry.files[1].mode)

    # ---- kubeconfigs

    def _server(self, entry: CatalogEntry) -> str:
        local = f"https://{_host_port(self.node.address, _BIND_PORT)}"
        endpoint = self.opts.control_plane_endpoint
        if entry.name in ("controller-manager.conf", "scheduler.conf") or endpoint is None:
            return local
        if entry.name == "kubelet.conf" and self.opts.version >= _V133_KUBELET_LOCAL:
            return local
        return f"https://{endpoint}"

    def _write_kubeconfig(self, entry: CatalogEntry) -> _Issued:
        opts = self.opts
        kinds = self.kinds(entry.name)
        # kubeadm's kubeconfig certificates start when the CA does (the CA's
        # notBefore), which is issued_at - 5 min here. An expired or not yet valid
        # CA defect does not move them: that defect damages the CA alone.
        issued = self.b.issue_leaf(entry, self.node, self.cas["ca"],
                                    algorithm=opts.kubeconfig_algorithm, kinds=kinds)
        ca = self.cas["ca"]
        if DefectKind.STALE_KUBECONFIG_CA in kinds:
            ca = self.b.impostor(ca)
        user = issued.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert isinstance(user, str)  # noqa: S101
        context = f"{user}@{opts.cluster_name}"
        credentials: dict[str, str]
        refs_pem = (entry.name == "kubelet.conf" and opts.kubelet
                    and DefectKind.EMBEDDED_KUBELET_CONF not in kinds)
        if refs_pem:
            # kubelet-finalize: point at the kubelet's rotated certificate.
            current = f"{_KUBELET_PKI_DIR}/kubelet-client-current.pem"
            credentials = {"client-certificate": current, "client-key": current}
        else:
            cert_pem = _cert_pem(issued.cert)
            if DefectKind.TRUNCATED_PEM in kinds:
                cert_pem = _truncate_pem(cert_pem)
            key_pem = self.b.key_file(issued, kinds)
            credentials = {
                "client-certificate-data": base64.b64encode(cert_pem).decode(),
                "client-key-data": base64.b64encode(key_pem).decode(),
            }
        doc: dict[str, Any] = {
            "apiVersion": "v1",
            "clusters": [{
                "cluster": {
                    "certificate-authority-data": base64.b64encode(_cert_pem(ca.cert)).decode(),
                    "server": self._server(entry),
                },
                "name": opts.cluster_name,
            }],
            "contexts": [
                {"context": {"cluster": opts.cluster_name, "user": user}, "name": context}
            ],
            "current-context": context,
            "kind": "Config",
            "users": [{"name": user, "user": credentials}],
        }
        if opts.version < _V134_NO_PREFERENCES:
            doc["preferences"] = {}
        _write(self.path(entry), _dump(doc), entry.files[0].mode)
        return issued

    # ---- kubelet

    def _pem_name(self) -> str:
        return f"kubelet-client-{self.opts.issued_at:%Y-%m-%d-%H-%M-%S}.pem"

    def _write_kubelet_pem(self, entry: CatalogEntry, credential: _Issued) -> None:
        # The kubelet stores the client certificate kubeadm gave it, then the
        # key, in a dated file; kubelet-client-current.pem is an absolute symlink.
        kinds = self.kinds(entry.name)
        conf_kinds = self.kinds("kubelet.conf")
        if (DefectKind.KEY_MISMATCH in conf_kinds
                and DefectKind.EMBEDDED_KUBELET_CONF not in conf_kinds):
            kinds = kinds | {DefectKind.KEY_MISMATCH}  # kubelet.conf's key lives here
        data = _cert_pem(credential.cert) + self.b.key_file(credential, kinds)
        pki = self.path(entry).parent
        _write(pki / self._pem_name(), data, entry.files[0].mode)
        os.symlink(f"{_KUBELET_PKI_DIR}/{self._pem_name()}", self.path(entry))

    def _write_kubelet_serving(self, entry: CatalogEntry) -> None:
        # client-go's GenerateSelfSignedCertKey(nodeName, nil, nil), as the kubelet
        # calls it: a throwaway RSA-2048 CA "<host>-ca@<ts>" (serial 1) signs
        # "<host>@<ts>" (serial 2); the file holds the certificate, then the CA.
        kinds = self.kinds(entry.name)
        stamp = int(self.opts.issued_at.timestamp())
        host = self.node.name
        not_before = self.opts.issued_at - _KUBELET_SERVING_BACKDATE
        not_after = not_before + _KUBELET_SERVING_VALIDITY
        nb, na = self.b.window(kinds, not_before=not_before, not_after=not_after)
        ca_key = self.b.keys.next("RSA-2048")
        ca = _Issued(_issue(subject=_subject(f"{host}-ca@{stamp}"), key=ca_key, signer=None,
                            not_before=not_before, not_after=not_after, is_ca=True, serial=1),
                     ca_key)
        signer = self.b.impostor(ca) if DefectKind.WRONG_SIGNER in kinds else ca
        key = self.b.keys.next("RSA-2048")
        ekus = self.b.ekus([ExtendedKeyUsage.SERVER_AUTH], kinds)
        cert = _issue(subject=_subject(f"{host}@{stamp}"), key=key, signer=signer, not_before=nb,
                      not_after=na, ekus=ekus, dns=[host], serial=2)
        _write(self.path(entry, 0), _cert_pem(cert) + _cert_pem(ca.cert), entry.files[0].mode)
        key_pem = self.b.key_file(_Issued(cert, key), kinds)
        _write(self.path(entry, 1), key_pem, entry.files[1].mode)

    def _write_kubelet_server(self, entry: CatalogEntry) -> None:
        # What the kubelet stores once kube-controller-manager signed its kubernetes.io/kubelet-serving CSR:
        # an ECDSA P-256 key (client-go's certificate manager), CN system:node:<name>, O system:nodes, the
        # hostname and the node's address as SANs, signed by the cluster CA; a dated file and a symlink.
        kinds = self.kinds(entry.name)
        nb, na = self.b.window(kinds, not_before=self.opts.issued_at - _BACKDATE,
                               not_after=self.opts.issued_at + _KUBELET_SERVING_VALIDITY)
        signer = self.cas["ca"]
        if DefectKind.WRONG_SIGNER in kinds:
            signer = self.b.impostor(signer)
        key = self.b.keys.next("ECDSA-P256")
        cert = _issue(subject=_subject(f"system:node:{self.node.name}", ("system:nodes",)), key=key, signer=signer,
                      not_before=nb, not_after=na, ekus=self.b.ekus([ExtendedKeyUsage.SERVER_AUTH], kinds),
                      dns=[self.node.name], ips=[ipaddress.ip_address(self.node.address)])
        pki = self.path(entry).parent
        dated = f"kubelet-server-{self.opts.issued_at:%Y-%m-%d-%H-%M-%S}.pem"
        _write(pki / dated, _cert_pem(cert) + self.b.key_file(_Issued(cert, key), kinds), entry.files[0].mode)
        os.symlink(f"{_KUBELET_PKI_DIR}/{dated}", self.path(entry))

    def _write_kubelet_config(self) -> None:
        # kubeadm's kubelet-start phase: the cluster's KubeletConfiguration (the fields that matter to
        # certificates, as kubeadm 1.28 writes them) and the node's flags.
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"cacheTTL": "0s", "enabled": True},
                               "x509": {"clientCAFile": f"{_CERT_DIR}/ca.crt"}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "systemd",
            "clusterDNS": [str(ipaddress.ip_address(self.opts.service_vip) + 9)],
            "clusterDomain": self.opts.dns_domain,
            "kind": "KubeletConfiguration",
            "rotateCertificates": True,
            "staticPodPath": "/etc/kubernetes/manifests",
        }
        config.update(self.opts.kubelet_config)
        _write(self.node.root / "var/lib/kubelet/config.yaml", _dump(config), 0o644)
        flags = ("--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock "
                 "--pod-infra-container-image=registry.k8s.io/pause:3.9")
        _write(self.node.root / "var/lib/kubelet/kubeadm-flags.env", f'KUBELET_KUBEADM_ARGS="{flags}"\n'.encode(),
               0o644)

    # ---- file damage

    def _main_file(self, entry: CatalogEntry) -> Path:
        if entry.name == "kubelet-client-current.pem":
            return self.path(entry).parent / self._pem_name()
        if entry.name == "kubelet-server-current.pem":
            return self.path(entry).parent / f"kubelet-server-{self.opts.issued_at:%Y-%m-%d-%H-%M-%S}.pem"
        return self.path(entry)

    def _damage(self, entry: CatalogEntry) -> None:
        kinds = self.kinds(entry.name)
        main = self._main_file(entry)
        if DefectKind.MISSING in kinds:
            for i in range(len(entry.files)):
                self.path(entry, i).unlink(missing_ok=True)
            main.unlink(missing_ok=True)
            return
        if DefectKind.GARBAGE in kinds:
            _write(main, _garbage(main.read_bytes()), entry.files[0].mode)
        elif DefectKind.TRUNCATED_PEM in kinds and entry.kind is not Kind.KUBECONFIG:
            _write(main, _truncate_pem(main.read_bytes()), entry.files[0].mode)

    # ---- manifests

    def _image(self, component: str) -> str:
        repo = "registry.k8s.io" if self.opts.version >= _V125_REGISTRY else "k8s.gcr.io"
        tag = _ETCD_IMAGE_TAG if component == "etcd" else self.opts.image_tag
        return f"{repo}/{component}:{tag}"

    def _manifests(self) -> dict[str, dict[str, Any]]:
        if self.node.role is NodeRole.WORKER:
            return {}
        if self.node.role is NodeRole.ETCD:
            return {"etcd.yaml": self._etcd_manifest()}
        out = {
            "kube-apiserver.yaml": self._apiserver_manifest(),
            "kube-controller-manager.yaml": self._controller_manager_manifest(),
            "kube-scheduler.yaml": self._scheduler_manifest(),
        }
        if not self.opts.external_etcd:
            out["etcd.yaml"] = self._etcd_manifest()
        return out

    def _apiserver_manifest(self) -> dict[str, Any]:
        opts, addr, pki = self.opts, self.node.address, _CERT_DIR
        if opts.external_etcd:
            etcd = {
                "cafile": f"{_EXTERNAL_ETCD_DIR}/ca.crt",
                "certfile": f"{_EXTERNAL_ETCD_DIR}/apiserver-etcd-client.crt",
                "keyfile": f"{_EXTERNAL_ETCD_DIR}/apiserver-etcd-client.key",
                "servers": _EXTERNAL_ETCD_ENDPOINT,
            }
        else:
            etcd = {
                "cafile": f"{pki}/etcd/ca.crt",
                "certfile": f"{pki}/apiserver-etcd-client.crt",
                "keyfile": f"{pki}/apiserver-etcd-client.key",
                "servers": "https://127.0.0.1:2379",
            }
        command = [
            "kube-apiserver",
            f"--advertise-address={addr}",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            f"--client-ca-file={pki}/ca.crt",
            "--enable-admission-plugins=NodeRestriction",
            "--enable-bootstrap-token-auth=true",
            *(f"--etcd-{k}={v}" for k, v in etcd.items()),
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            f"--proxy-client-cert-file={pki}/front-proxy-client.crt",
            f"--proxy-client-key-file={pki}/front-proxy-client.key",
            "--requestheader-allowed-names=front-proxy-client",
            f"--requestheader-client-ca-file={pki}/front-proxy-ca.crt",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            f"--secure-port={_BIND_PORT}",
            f"--service-account-issuer=https://kubernetes.default.svc.{opts.dns_domain}",
            f"--service-account-key-file={pki}/sa.pub",
            f"--service-account-signing-key-file={pki}/sa.key",
            f"--service-cluster-ip-range={opts.service_subnet}",
            f"--tls-cert-file={pki}/apiserver.crt",
            f"--tls-private-key-file={pki}/apiserver.key",
        ]
        volumes = {"ca-certs": ("/etc/ssl/certs", "DirectoryOrCreate", True),
                   "k8s-certs": (pki, "DirectoryOrCreate", True)}
        if opts.external_etcd:
            # kubeadm mounts the directories of external etcd files outside the cert dir.
            volumes["etcd-certs-0"] = (_EXTERNAL_ETCD_DIR, "DirectoryOrCreate", True)
        return _pod(
            "kube-apiserver", command, self._image("kube-apiserver"),
            annotations={"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint":
                         _host_port(addr, _BIND_PORT)},
            probes=_probes(addr, "HTTPS", live="/livez", ready="/readyz", startup="/livez"),
            port=_BIND_PORT, requests={"cpu": "250m"}, volumes=volumes,
        )

    def _controller_manager_manifest(self) -> dict[str, Any]:
        opts, pki, conf = self.opts, _CERT_DIR, "/etc/kubernetes/controller-manager.conf"
        # External CA: kubeadm blanks the signing flags (controlplane/manifests.go).
        signing_cert = "" if opts.external_ca else f"{pki}/ca.crt"
        signing_key = "" if opts.external_ca else f"{pki}/ca.key"
        command = ["kube-controller-manager"]
        if opts.pod_subnet is not None:
            command.append("--allocate-node-cidrs=true")
        command += [
            f"--authentication-kubeconfig={conf}",
            f"--authorization-kubeconfig={conf}",
            "--bind-address=127.0.0.1",
            f"--client-ca-file={pki}/ca.crt",
        ]
        if opts.pod_subnet is not None:
            command.append(f"--cluster-cidr={opts.pod_subnet}")
        command += [
            f"--cluster-name={opts.cluster_name}",
            f"--cluster-signing-cert-file={signing_cert}",
            f"--cluster-signing-key-file={signing_key}",
            "--controllers=*,bootstrapsigner,tokencleaner",
            f"--kubeconfig={conf}",
            "--leader-elect=true",
            f"--requestheader-client-ca-file={pki}/front-proxy-ca.crt",
            f"--root-ca-file={pki}/ca.crt",
            f"--service-account-private-key-file={pki}/sa.key",
            f"--service-cluster-ip-range={opts.service_subnet}",
            "--use-service-account-credentials=true",
        ]
        flexvolume = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
        return _pod(
            "kube-controller-manager", command, self._image("kube-controller-manager"),
            probes=_probes("127.0.0.1", "HTTPS", live="/healthz", startup="/healthz"),
            port=10257, requests={"cpu": "200m"},
            volumes={
                "ca-certs": ("/etc/ssl/certs", "DirectoryOrCreate", True),
                "flexvolume-dir": (flexvolume, "DirectoryOrCreate", False),
                "k8s-certs": (pki, "DirectoryOrCreate", True),
                "kubeconfig": (conf, "FileOrCreate", True),
            },
        )

    def _scheduler_manifest(self) -> dict[str, Any]:
        conf = "/etc/kubernetes/scheduler.conf"
        command = [
            "kube-scheduler",
            f"--authentication-kubeconfig={conf}",
            f"--authorization-kubeconfig={conf}",
            "--bind-address=127.0.0.1",
            f"--kubeconfig={conf}",
            "--leader-elect=true",
        ]
        return _pod(
            "kube-scheduler", command, self._image("kube-scheduler"),
            probes=_probes("127.0.0.1", "HTTPS", live="/livez", ready="/readyz", startup="/livez"),
            port=10259, requests={"cpu": "100m"},
            volumes={"kubeconfig": (conf, "FileOrCreate", True)},
        )

    def _etcd_manifest(self) -> dict[str, Any]:
        addr, name, pki = self.node.address, self.node.name, _CERT_DIR
        client_url = f"https://{_host_port(addr, 2379)}"
        peer_url = f"https://{_host_port(addr, 2380)}"
        # A joining member lists the members before it and itself, and joins
        # the existing cluster (kubeadm's etcd phase for `join --control-plane`).
        members = ",".join(
            f"{n.name}=https://{_host_port(n.address, 2380)}"
            for n in self.opts.nodes[: self.index + 1]
        )
        command = [
            "etcd",
            f"--advertise-client-urls={client_url}",
            f"--cert-file={pki}/etcd/server.crt",
            "--client-cert-auth=true",
            "--data-dir=/var/lib/etcd",
            "--feature-gates=InitialCorruptCheck=true",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={members}",
            *(["--initial-cluster-state=existing"] if self.index > 0 else []),
            f"--key-file={pki}/etcd/server.key",
            f"--listen-client-urls=https://127.0.0.1:2379,{client_url}",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            f"--listen-peer-urls={peer_url}",
            f"--name={name}",
            f"--peer-cert-file={pki}/etcd/peer.crt",
            "--peer-client-cert-auth=true",
            f"--peer-key-file={pki}/etcd/peer.key",
            f"--peer-trusted-ca-file={pki}/etcd/ca.crt",
            "--snapshot-count=10000",
            f"--trusted-ca-file={pki}/etcd/ca.crt",
            "--watch-progress-notify-interval=5s",
        ]
        pod = _pod(
            "etcd", command, self._image("etcd"),
            annotations={"kubeadm.kubernetes.io/etcd.advertise-client-urls": client_url},
            probes=_probes("127.0.0.1", "HTTP", live="/livez", ready="/readyz", startup="/readyz"),
            port=2381, requests={"cpu": "100m", "memory": "100Mi"},
            volumes={
                "etcd-certs": (f"{pki}/etcd", "DirectoryOrCreate", False),
                "etcd-data": ("/var/lib/etcd", "DirectoryOrCreate", False),
            },
        )
        # etcd's mounts are not sorted: data first, then certificates (etcd/local.go).
        pod["spec"]["containers"][0]["volumeMounts"].reverse()
        return pod

    # ---- kubeadm config

    def _config(self) -> bytes:
        opts = self.opts
        if opts.version >= _V131_V1BETA4:
            api = "kubeadm.k8s.io/v1beta4"
        elif opts.version >= _V122_V1BETA3:
            api = "kubeadm.k8s.io/v1beta3"
        else:
            api = "kubeadm.k8s.io/v1beta2"
        init = {
            "apiVersion": api,
            "kind": "InitConfiguration",
            "localAPIEndpoint": {"advertiseAddress": self.node.address, "bindPort": _BIND_PORT},
            "nodeRegistration": {"name": self.node.name, "criSocket": _CRI_SOCKET},
        }
        cluster: dict[str, Any] = {
            "apiVersion": api,
            "kind": "ClusterConfiguration",
            "kubernetesVersion": opts.image_tag,
            "clusterName": opts.cluster_name,
        }
        if opts.control_plane_endpoint is not None:
            cluster["controlPlaneEndpoint"] = opts.control_plane_endpoint
        networking = {"dnsDomain": opts.dns_domain, "serviceSubnet": opts.service_subnet}
        if opts.pod_subnet is not None:
            networking["podSubnet"] = opts.pod_subnet
        cluster["networking"] = networking
        if opts.external_etcd:
            cluster["etcd"] = {"external": {
                "endpoints": [_EXTERNAL_ETCD_ENDPOINT],
                "caFile": f"{_EXTERNAL_ETCD_DIR}/ca.crt",
                "certFile": f"{_EXTERNAL_ETCD_DIR}/apiserver-etcd-client.crt",
                "keyFile": f"{_EXTERNAL_ETCD_DIR}/apiserver-etcd-client.key",
            }}
        if api.endswith("v1beta4"):
            # Only what differs from kubeadm's defaults, as a user would write it.
            if opts.key_algorithm != "RSA-2048":
                cluster["encryptionAlgorithm"] = opts.key_algorithm
            if opts.validity != _DEFAULT_VALIDITY:
                cluster["certificateValidityPeriod"] = _go_duration(opts.validity)
            if opts.ca_validity != _DEFAULT_CA_VALIDITY:
                cluster["caCertificateValidityPeriod"] = _go_duration(opts.ca_validity)
        elif opts.key_algorithm == "ECDSA-P256":
            cluster["featureGates"] = {"PublicKeysECDSA": True}
        return _dump(init, sort_keys=False) + b"---\n" + _dump(cluster, sort_keys=False)


def _probes(host: str, scheme: str, *, live: str, startup: str, ready: str | None = None
            ) -> dict[str, Any]:
    """kubeadm's liveness, readiness and startup probes (staticpod/utils.go)."""
    probes = {
        "livenessProbe": _probe(host, live, scheme, failures=8, period=10, initial_delay=10),
        "startupProbe": _probe(host, startup, scheme, failures=24, period=10, initial_delay=10),
    }
    if ready is not None:
        probes["readinessProbe"] = _probe(host, ready, scheme, failures=3, period=1)
    return probes


def _probe(host: str, path: str, scheme: str, *, failures: int, period: int,
           initial_delay: int | None = None) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "failureThreshold": failures,
        "httpGet": {"host": host, "path": path, "port": "probe-port", "scheme": scheme},
        "periodSeconds": period,
        "timeoutSeconds": 15,
    }
    if initial_delay is not None:
        probe["initialDelaySeconds"] = initial_delay
    return probe


def _pod(
    component: str,
    command: list[str],
    image: str,
    *,
    probes: Mapping[str, Any],
    port: int,
    requests: Mapping[str, str],
    volumes: Mapping[str, tuple[str, str, bool]],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A static pod as kubeadm's ComponentPod writes it (keys are sorted when dumped)."""
    metadata: dict[str, Any] = {
        "labels": {"component": component, "tier": "control-plane"},
        "name": component,
        "namespace": "kube-system",
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    mounts: list[dict[str, Any]] = []
    host_paths: list[dict[str, Any]] = []
    for name in sorted(volumes):  # kubeadm's VolumeMapToSlice sorts by name
        path, kind, read_only = volumes[name]
        mount: dict[str, Any] = {"mountPath": path, "name": name}
        if read_only:
            mount["readOnly"] = True
        mounts.append(mount)
        host_paths.append({"hostPath": {"path": path, "type": kind}, "name": name})
    container = {
        "command": command,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        **probes,
        "name": component,
        "ports": [{"containerPort": port, "name": "probe-port", "protocol": "TCP"}],
        "resources": {"requests": dict(requests)},
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [container],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": host_paths,
        },
        "status": {},
    }
