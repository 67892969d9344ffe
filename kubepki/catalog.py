"""The catalog: every certificate, CA, key pair and kubeconfig of a kubeadm node.

This module is data. Each :class:`CatalogEntry` says where kubeadm puts an
artifact, who signs it, what its subject, usages and SANs must be, whether it is
shared by all control-plane nodes, which components read it (and whether they
pick up a new file by themselves), whether ``kubeadm certs renew`` renews it and
which kubeadm versions have it. The facts and their sources are in the project's
reference notes on kubeadm (``cmd/kubeadm/app/phases/certs/certlist.go``,
``phases/kubeconfig/kubeconfig.go``, ``phases/controlplane/manifests.go``).

>>> from kubepki import catalog
>>> catalog.get("front-proxy-client").signer
'front-proxy-ca'
>>> [e.name for e in catalog.entries(version="1.28") if e.name.endswith(".conf")]
['admin.conf', 'controller-manager.conf', 'scheduler.conf', 'kubelet.conf']
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping

import attrs

from kubepki.errors import UnknownItemError
from kubepki.versions import OLDEST, KubeVersion, as_version

__all__ = [
    "CATALOG",
    "CLIENT_CERT_CHECK_PERIOD",
    "CatalogEntry",
    "CatalogFile",
    "Component",
    "Consumer",
    "ExtendedKeyUsage",
    "FileRole",
    "KeyUsage",
    "Kind",
    "Location",
    "NodeRole",
    "Reload",
    "SanRule",
    "Scope",
    "SubjectRule",
    "Versioned",
    "by_component",
    "by_role",
    "by_scope",
    "entries",
    "get",
    "names",
]


class Kind(str, enum.Enum):
    """What an artifact is; the values are those of kubepki's JSON output."""

    CA = "ca"
    CERTIFICATE = "certificate"
    KUBECONFIG = "kubeconfig"
    KEYPAIR = "keypair"
    KUBELET = "kubelet"


class Scope(str, enum.Enum):
    """Whether an artifact is the same on every control-plane node."""

    #: Copied between control-plane nodes (kubeadm's ``copycerts``): CAs and ``sa``.
    SHARED = "shared"
    #: Generated on each node; must be renewed on each node.
    NODE = "node"


class NodeRole(str, enum.Enum):
    """What a node is in its cluster; decides which artifacts it has.

    kubeadm's topologies (kubeadm docs, "Options for Highly Available topology"):
    ``kubeadm init``/``join --control-plane`` make control-plane nodes, ``kubeadm
    join`` makes workers, and the external-etcd topology has nodes that run only
    etcd (kubeadm docs, "Set up a High Availability etcd cluster with kubeadm").
    """

    CONTROL_PLANE = "control-plane"
    WORKER = "worker"
    ETCD = "etcd"


_ALL_ROLES = frozenset(NodeRole)


class Location(str, enum.Enum):
    """The kubeadm directory an artifact's path is relative to."""

    CERT_DIR = "cert_dir"  # certificatesDir, /etc/kubernetes/pki
    KUBECONFIG_DIR = "kubeconfig_dir"  # /etc/kubernetes
    KUBELET_PKI_DIR = "kubelet_pki_dir"  # /var/lib/kubelet/pki


class FileRole(str, enum.Enum):
    """What one file of an artifact holds."""

    CERT = "cert"
    KEY = "key"
    PUBLIC_KEY = "public_key"
    KUBECONFIG = "kubeconfig"
    CERT_AND_KEY = "cert_and_key"  # the kubelet's rotated client PEM


class Component(str, enum.Enum):
    """Who reads an artifact: a control-plane daemon or a per-invocation client."""

    ETCD = "etcd"
    KUBE_APISERVER = "kube-apiserver"
    KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
    KUBE_SCHEDULER = "kube-scheduler"
    KUBELET = "kubelet"
    KUBECTL = "kubectl"  # and any other user copying admin.conf
    KUBEADM = "kubeadm"
    ETCDCTL = "etcdctl"

    @property
    def is_daemon(self) -> bool:
        """True for long-running components that may need a restart."""
        return self in _DAEMONS


_DAEMONS = frozenset(
    {
        Component.ETCD,
        Component.KUBE_APISERVER,
        Component.KUBE_CONTROLLER_MANAGER,
        Component.KUBE_SCHEDULER,
        Component.KUBELET,
    }
)


class Reload(str, enum.Enum):
    """How a component picks up a changed file."""

    #: Watched with fsnotify plus a one-minute resync (k8s.io/apiserver dynamiccertificates).
    HOT_FSNOTIFY = "hot-fsnotify"
    #: Re-read on every new TLS handshake (etcd's transport.TLSInfo).
    HOT_HANDSHAKE = "hot-handshake"
    #: client-go re-reads client certificate files given as paths every 5 minutes
    #: (``CertCallbackRefreshDuration``, counted from the process start) and closes its
    #: pooled connections when they changed: picked up within 5 minutes, not at once.
    CLIENT_FILE_RELOAD = "client-file-reload"
    #: Re-read at every new connection, never by itself: connections open when the
    #: file changed keep the old certificate until they close (kube-apiserver's etcd
    #: client, measured on 1.28.4: long-lived gRPC connections kept it for minutes).
    PER_CONNECTION = "per-connection"
    #: Read once at start: the component must be restarted.
    RESTART = "restart"
    #: Read each time a client runs (kubectl, kubeadm, etcdctl).
    PER_INVOCATION = "per-invocation"
    #: The kubelet rotates and reloads it itself.
    KUBELET_MANAGED = "kubelet-managed"

    @property
    def needs_restart(self) -> bool:
        """True when only a restart makes the component use the new file."""
        return self is Reload.RESTART

    @property
    def pickup_delay(self) -> dt.timedelta | None:
        """How long the component may take to pick a new file up by itself; None when it does so at once or never.

        :attr:`CLIENT_FILE_RELOAD`: :data:`CLIENT_CERT_CHECK_PERIOD`.
        """
        return CLIENT_CERT_CHECK_PERIOD if self is Reload.CLIENT_FILE_RELOAD else None


#: How often client-go checks the client certificate files it was given
#: (``CertCallbackRefreshDuration`` in k8s.io/client-go/transport/cert_rotation.go).
CLIENT_CERT_CHECK_PERIOD = dt.timedelta(minutes=5)


class KeyUsage(str, enum.Enum):
    """X.509 key usages kubeadm sets (names as in ``cryptography``'s ``KeyUsage``)."""

    DIGITAL_SIGNATURE = "digital_signature"
    KEY_ENCIPHERMENT = "key_encipherment"
    KEY_CERT_SIGN = "key_cert_sign"


class ExtendedKeyUsage(str, enum.Enum):
    """Extended key usages kubeadm sets."""

    SERVER_AUTH = "serverAuth"
    CLIENT_AUTH = "clientAuth"


@attrs.frozen(kw_only=True)
class Versioned:
    """A value that holds for kubeadm versions ``since`` (inclusive) to ``until`` (exclusive)."""

    value: str
    since: KubeVersion = OLDEST
    until: KubeVersion | None = None

    def applies(self, version: KubeVersion) -> bool:
        """True when this value holds for ``version``."""
        return self.since <= version and (self.until is None or version < self.until)


@attrs.frozen(kw_only=True)
class SubjectRule:
    """The subject kubeadm gives a certificate.

    ``common_name`` may contain ``{node_name}``. ``organizations`` lists each
    organisation with the versions it applies to (the 1.29 changes of KEP-4214).
    """

    common_name: str
    organizations: tuple[Versioned, ...] = ()

    def organizations_for(self, version: KubeVersion) -> tuple[str, ...]:
        """The organisations kubeadm ``version`` writes."""
        return tuple(o.value for o in self.organizations if o.applies(version))

    def render_cn(self, node_name: str | None) -> str | None:
        """The expected CN on a node, or None when it needs an unknown node name."""
        if "{node_name}" in self.common_name:
            if node_name is None:
                return None
            return self.common_name.format(node_name=node_name)
        return self.common_name


@attrs.frozen(kw_only=True)
class SanRule:
    """Subject alternative names kubeadm puts into a certificate.

    Templates may use ``{node_name}``, ``{dns_domain}``, ``{service_vip}`` and
    ``{advertise_address}``; a template whose value is unknown on a node is not
    checked. ``from_config`` names the kubeadm config fields that add more SANs.
    """

    dns: tuple[str, ...] = ()
    ip: tuple[str, ...] = ()
    from_config: tuple[str, ...] = ()
    #: True when the SANs are only what this rule renders (CAs: DNS = CN).
    fixed: bool = False

    @property
    def empty(self) -> bool:
        """True when kubeadm writes no SAN extension."""
        return not (self.dns or self.ip or self.from_config)

    def render(self, values: Mapping[str, str | None]) -> tuple[set[str], set[str]]:
        """The DNS names and IPs that must be present, given known node ``values``."""

        def fill(templates: tuple[str, ...]) -> set[str]:
            out: set[str] = set()
            for template in templates:
                try:
                    text = template.format_map(_Strict(values))
                except KeyError:
                    continue
                out.add(text)
            return out

        return fill(self.dns), fill(self.ip)


class _Strict(dict[str, str]):
    """format_map helper: unknown or None values raise KeyError."""

    def __init__(self, values: Mapping[str, str | None]) -> None:
        super().__init__({k: v for k, v in values.items() if v is not None})

    def __missing__(self, key: str) -> str:
        raise KeyError(key)


@attrs.frozen(kw_only=True)
class Consumer:
    """A component that reads an artifact through a flag, and how it reloads it."""

    component: Component
    #: The flag or config field, as in kubeadm's static pod manifests.
    flag: str
    reload: Reload
    #: The kubeadm/Kubernetes version from which ``reload`` holds; older ones restart.
    since: KubeVersion = OLDEST
    note: str = ""

    def reload_for(self, version: KubeVersion) -> Reload:
        """The reload behaviour of ``version`` (hot reloads arrived over time)."""
        return self.reload if version >= self.since else Reload.RESTART


@attrs.frozen(kw_only=True)
class CatalogFile:
    """One file of an artifact, relative to the artifact's :class:`Location`."""

    path: str
    role: FileRole
    #: The mode kubeadm creates the file with.
    mode: int


@attrs.frozen(kw_only=True)
class CatalogEntry:
    """Everything kubepki knows about one kubeadm artifact."""

    #: kubeadm's name (``kubeadm certs renew <name>``, ``check-expiration`` rows).
    name: str
    kind: Kind
    location: Location
    files: tuple[CatalogFile, ...]
    #: The catalog name of the CA that signs it; for a CA its own name; None when
    #: kubeadm's CAs do not sign it (``sa``, the kubelet's self-signed ``kubelet.crt``).
    signer: str | None
    scope: Scope
    subject: SubjectRule | None = None
    key_usages: frozenset[KeyUsage] = frozenset()
    extended_key_usages: frozenset[ExtendedKeyUsage] = frozenset()
    sans: SanRule = SanRule()
    consumers: tuple[Consumer, ...] = ()
    #: True when ``kubeadm certs renew`` renews it.
    renewable: bool = False
    #: True when kubepki reports its absence as a problem (exit status 2).
    required: bool = True
    #: True for the etcd entries, which external etcd drops.
    local_etcd_only: bool = False
    since: KubeVersion = OLDEST
    until: KubeVersion | None = None
    #: kubeadm's long name, used in its renew messages.
    long_name: str = ""
    description: str = ""
    #: The node roles that have this artifact.
    roles: frozenset[NodeRole] = frozenset({NodeRole.CONTROL_PLANE})
    #: Roles that hold only the certificate of a CA, not its key: ``kubeadm join`` fetches
    #: ``ca.crt`` alone onto a worker, and etcd nodes other than the one that made the etcd
    #: CA get ``etcd/ca.crt`` alone. A key found there is still checked.
    cert_only_on: frozenset[NodeRole] = frozenset()

    @property
    def path(self) -> str:
        """The main file's path relative to the entry's :class:`Location`."""
        return self.files[0].path

    def file(self, role: FileRole) -> CatalogFile | None:
        """The file with ``role``, or None."""
        return next((f for f in self.files if f.role is role), None)

    @property
    def is_ca(self) -> bool:
        """True for the three CAs."""
        return self.kind is Kind.CA

    def applies(
        self,
        version: KubeVersion | str,
        *,
        external_etcd: bool = False,
        role: NodeRole | str = NodeRole.CONTROL_PLANE,
    ) -> bool:
        """True when kubeadm ``version`` writes this entry on a node of ``role`` (with local or external etcd).

        ``external_etcd`` drops the etcd entries from control-plane nodes only: an etcd node
        of the external-etcd topology is where they are.
        """
        v = as_version(version)
        r = NodeRole(role)
        if r not in self.roles:
            return False
        if external_etcd and self.local_etcd_only and r is NodeRole.CONTROL_PLANE:
            return False
        return self.since <= v and (self.until is None or v < self.until)

    def key_expected(self, role: NodeRole | str) -> bool:
        """False when nodes of ``role`` hold only this CA's certificate."""
        return NodeRole(role) not in self.cert_only_on

    def consumers_of(self, component: Component) -> tuple[Consumer, ...]:
        """This entry's consumers that are ``component``."""
        return tuple(c for c in self.consumers if c.component is component)


def _v(text: str) -> KubeVersion:
    return KubeVersion.parse(text)


_V129 = _v("1.29")
_LEAF_KU = frozenset({KeyUsage.DIGITAL_SIGNATURE, KeyUsage.KEY_ENCIPHERMENT})
_CA_KU = _LEAF_KU | {KeyUsage.KEY_CERT_SIGN}
_SERVER = frozenset({ExtendedKeyUsage.SERVER_AUTH})
_CLIENT = frozenset({ExtendedKeyUsage.CLIENT_AUTH})
_BOTH = _SERVER | _CLIENT
_MASTERS_BEFORE_129 = Versioned(value="system:masters", until=_V129)
_CLUSTER_ADMINS_FROM_129 = Versioned(value="kubeadm:cluster-admins", since=_V129)
#: The kubelet's identity in its client and serving certificates (the Node authorizer's).
_NODE_SUBJECT = SubjectRule(common_name="system:node:{node_name}", organizations=(Versioned(value="system:nodes"),))


def _pair(base: str) -> tuple[CatalogFile, ...]:
    return (
        CatalogFile(path=f"{base}.crt", role=FileRole.CERT, mode=0o644),
        CatalogFile(path=f"{base}.key", role=FileRole.KEY, mode=0o600),
    )


def _conf(name: str) -> tuple[CatalogFile, ...]:
    return (CatalogFile(path=name, role=FileRole.KUBECONFIG, mode=0o600),)


def _ca(name: str, base: str, cn: str, consumers: tuple[Consumer, ...], **kw: object) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        kind=Kind.CA,
        location=Location.CERT_DIR,
        files=_pair(base),
        signer=name,
        scope=Scope.SHARED,
        subject=SubjectRule(common_name=cn),
        key_usages=_CA_KU,
        # kubeadm's CA helper puts the CN in as the only DNS SAN.
        sans=SanRule(dns=(cn,), fixed=True),
        consumers=consumers,
        **kw,  # type: ignore[arg-type]
    )


_KA, _KCM, _SCHED, _ETCD, _KUBELET = (
    Component.KUBE_APISERVER,
    Component.KUBE_CONTROLLER_MANAGER,
    Component.KUBE_SCHEDULER,
    Component.ETCD,
    Component.KUBELET,
)
_PER_INVOCATION_USERS = (
    Consumer(component=Component.KUBECTL, flag="--kubeconfig", reload=Reload.PER_INVOCATION,
             note="copies such as ~/.kube/config must be refreshed by hand"),
    Consumer(component=Component.KUBEADM, flag="--kubeconfig", reload=Reload.PER_INVOCATION),
)


def _kubeconfig_consumers(component: Component) -> tuple[Consumer, ...]:
    # Embedded client certificates are static in client-go (transport.go: "Treat
    # cert as static if either key or cert was data"), so the component restarts.
    return tuple(
        Consumer(component=component, flag=flag, reload=Reload.RESTART,
                 note="embedded client certificate: static until restart")
        for flag in ("--kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig")
    )


_APISERVER_SANS = SanRule(
    dns=(
        "{node_name}",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.{dns_domain}",
    ),
    ip=("{service_vip}", "{advertise_address}"),
    from_config=("controlPlaneEndpoint", "apiServer.certSANs"),
)


def _etcd_sans(field: str) -> SanRule:
    return SanRule(
        dns=("{node_name}", "localhost"),
        ip=("{advertise_address}", "127.0.0.1", "::1"),
        from_config=(field,),
    )


#: Every artifact of a kubeadm control-plane node, in kubeadm's order.
CATALOG: tuple[CatalogEntry, ...] = (
    _ca(
        "ca", "ca", "kubernetes",
        (
            Consumer(component=_KA, flag="--client-ca-file", reload=Reload.HOT_FSNOTIFY, since=_v("1.17")),
            Consumer(component=_KCM, flag="--client-ca-file", reload=Reload.HOT_FSNOTIFY, since=_v("1.17")),
            Consumer(component=_KCM, flag="--cluster-signing-cert-file", reload=Reload.HOT_FSNOTIFY,
                     since=_v("1.19"), note="with --cluster-signing-key-file (ca.key)"),
            Consumer(component=_KCM, flag="--root-ca-file", reload=Reload.RESTART,
                     note="read when the root CA publisher and token controller start"),
            Consumer(component=_KUBELET, flag="authentication.x509.clientCAFile",
                     reload=Reload.HOT_FSNOTIFY),
        ),
        long_name="self-signed Kubernetes CA to provision identities for other Kubernetes components",
        description="The cluster CA; signs the API server, its kubelet client and every kubeconfig.",
        roles=frozenset({NodeRole.CONTROL_PLANE, NodeRole.WORKER}),
        cert_only_on=frozenset({NodeRole.WORKER}),
    ),
    CatalogEntry(
        name="apiserver",
        kind=Kind.CERTIFICATE,
        location=Location.CERT_DIR,
        files=_pair("apiserver"),
        signer="ca",
        scope=Scope.NODE,
        subject=SubjectRule(common_name="kube-apiserver"),
        key_usages=_LEAF_KU,
        extended_key_usages=_SERVER,
        sans=_APISERVER_SANS,
        consumers=(
            Consumer(component=_KA, flag="--tls-cert-file", reload=Reload.HOT_FSNOTIFY, since=_v("1.17"),
                     note="with --tls-private-key-file; served per TLS handshake"),
        ),
        renewable=True,
        long_name="certificate for serving the Kubernetes API",
        description="The API server's serving certificate.",
    ),
    CatalogEntry(
        name="apiserver-kubelet-client",
        kind=Kind.CERTIFICATE,
        location=Location.CERT_DIR,
        files=_pair("apiserver-kubelet-client"),
        signer="ca",
        scope=Scope.NODE,
        subject=SubjectRule(
            common_name="kube-apiserver-kubelet-client",
            organizations=(_MASTERS_BEFORE_129, _CLUSTER_ADMINS_FROM_129),
        ),
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=(
            Consumer(component=_KA, flag="--kubelet-client-certificate",
                     reload=Reload.CLIENT_FILE_RELOAD, since=_v("1.19"),
                     note="with --kubelet-client-key; the pooled connection to each kubelet switches at "
                          "client-go's next 5-minute check"),
        ),
        renewable=True,
        long_name="certificate for the API server to connect to kubelet",
        description="The API server's client certificate towards kubelets (logs, exec).",
    ),
    _ca(
        "front-proxy-ca", "front-proxy-ca", "front-proxy-ca",
        (
            Consumer(component=_KA, flag="--requestheader-client-ca-file",
                     reload=Reload.HOT_FSNOTIFY, since=_v("1.17")),
            Consumer(component=_KCM, flag="--requestheader-client-ca-file",
                     reload=Reload.HOT_FSNOTIFY, since=_v("1.17")),
        ),
        long_name="self-signed CA to provision identities for front proxy",
        description="Signs the front-proxy client that aggregated APIs trust.",
    ),
    CatalogEntry(
        name="front-proxy-client",
        kind=Kind.CERTIFICATE,
        location=Location.CERT_DIR,
        files=_pair("front-proxy-client"),
        signer="front-proxy-ca",
        scope=Scope.NODE,
        subject=SubjectRule(common_name="front-proxy-client"),
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=(
            Consumer(component=_KA, flag="--proxy-client-cert-file", reload=Reload.HOT_FSNOTIFY,
                     since=_v("1.20"),
                     note="with --proxy-client-key-file; aggregated APIs fail with x509 errors "
                          "when a stale one expires"),
        ),
        renewable=True,
        long_name="certificate for the front proxy client",
        description="The API server's client certificate towards aggregated APIs.",
    ),
    _ca(
        "etcd-ca", "etcd/ca", "etcd-ca",
        (
            Consumer(component=_ETCD, flag="--trusted-ca-file", reload=Reload.RESTART),
            Consumer(component=_ETCD, flag="--peer-trusted-ca-file", reload=Reload.RESTART),
            Consumer(component=_KA, flag="--etcd-cafile", reload=Reload.RESTART),
        ),
        local_etcd_only=True,
        long_name="self-signed CA to provision identities for etcd",
        description="The etcd CA; signs etcd's serving, peer and client certificates.",
        roles=frozenset({NodeRole.CONTROL_PLANE, NodeRole.ETCD}),
        cert_only_on=frozenset({NodeRole.ETCD}),
    ),
    CatalogEntry(
        name="etcd-server",
        kind=Kind.CERTIFICATE,
        location=Location.CERT_DIR,
        files=_pair("etcd/server"),
        signer="etcd-ca",
        scope=Scope.NODE,
        subject=SubjectRule(common_name="{node_name}"),
        key_usages=_LEAF_KU,
        extended_key_usages=_BOTH,
        sans=_etcd_sans("etcd.local.serverCertSANs"),
        consumers=(
            Consumer(component=_ETCD, flag="--cert-file", reload=Reload.HOT_HANDSHAKE,
                     note="with --key-file; re-read on each new TLS handshake"),
        ),
        renewable=True,
        local_etcd_only=True,
        long_name="certificate for serving etcd",
        description="etcd's serving certificate for clients.",
        roles=frozenset({NodeRole.CONTROL_PLANE, NodeRole.ETCD}),
    ),
    CatalogEntry(
        name="etcd-peer",
        kind=Kind.CERTIFICATE,
        location=Location.CERT_DIR,
        files=_pair("etcd/peer"),
        signer="etcd-ca",
        scope=Scope.NODE,
        subject=SubjectRule(common_name="{node_name}"),
        key_usages=_LEAF_KU,
        extended_key_usages=_BOTH,
        sans=_etcd_sans("etcd.local.peerCertSANs"),
        consumers=(
            Consumer(component=_ETCD, flag="--peer-cert-file", reload=Reload.HOT_HANDSHAKE,
                     note="with --peer-key-file; re-read on each new TLS handshake"),
        ),
        renewable=True,
        local_etcd_only=True,
        long_name="certificate for etcd nodes to communicate with each other",
        description="etcd's certificate between members.",
        roles=frozenset({NodeRole.CONTROL_PLANE, NodeRole.ETCD}),
    ),
    CatalogEntry(
        name="etcd-healthcheck-client",
        kind=Kind.CERTIFICATE,
        location=Location.CERT_DIR,
        files=_pair("etcd/healthcheck-client"),
        signer="etcd-ca",
        scope=Scope.NODE,
        subject=SubjectRule(
            common_name="kube-etcd-healthcheck-client",
            organizations=(_MASTERS_BEFORE_129,),
        ),
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=(
            # The probes use plain HTTP on 127.0.0.1:2381, not this certificate.
            Consumer(component=Component.KUBEADM, flag="etcd client", reload=Reload.PER_INVOCATION),
            Consumer(component=Component.ETCDCTL, flag="--cert", reload=Reload.PER_INVOCATION),
        ),
        renewable=True,
        local_etcd_only=True,
        long_name="certificate for liveness probes to healthcheck etcd",
        description="Client certificate for kubeadm's etcd client and etcdctl.",
        roles=frozenset({NodeRole.CONTROL_PLANE, NodeRole.ETCD}),
    ),
    CatalogEntry(
        name="apiserver-etcd-client",
        kind=Kind.CERTIFICATE,
        location=Location.CERT_DIR,
        files=_pair("apiserver-etcd-client"),
        signer="etcd-ca",
        scope=Scope.NODE,
        subject=SubjectRule(
            common_name="kube-apiserver-etcd-client",
            organizations=(_MASTERS_BEFORE_129,),
        ),
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=(
            # Re-read at each new handshake, but gRPC connections to etcd live long and are
            # never re-established for a new file (measured on 1.28.4; older not measured).
            Consumer(component=_KA, flag="--etcd-certfile", reload=Reload.PER_CONNECTION, since=_v("1.28"),
                     note="with --etcd-keyfile; new connections use the new file, open ones keep the old one"),
        ),
        renewable=True,
        local_etcd_only=True,
        long_name="certificate the apiserver uses to access etcd",
        description="The API server's client certificate towards etcd.",
    ),
    CatalogEntry(
        name="sa",
        kind=Kind.KEYPAIR,
        location=Location.CERT_DIR,
        files=(
            CatalogFile(path="sa.key", role=FileRole.KEY, mode=0o600),
            CatalogFile(path="sa.pub", role=FileRole.PUBLIC_KEY, mode=0o600),
        ),
        signer=None,
        scope=Scope.SHARED,
        consumers=(
            Consumer(component=_KA, flag="--service-account-key-file", reload=Reload.RESTART,
                     note="sa.pub"),
            Consumer(component=_KA, flag="--service-account-signing-key-file",
                     reload=Reload.RESTART, note="sa.key"),
            Consumer(component=_KCM, flag="--service-account-private-key-file",
                     reload=Reload.RESTART, note="sa.key"),
        ),
        long_name="service account token signing key pair",
        description="Signs and verifies service account tokens; no certificate, no expiry.",
    ),
    CatalogEntry(
        name="admin.conf",
        kind=Kind.KUBECONFIG,
        location=Location.KUBECONFIG_DIR,
        files=_conf("admin.conf"),
        signer="ca",
        scope=Scope.NODE,
        subject=SubjectRule(
            common_name="kubernetes-admin",
            organizations=(_MASTERS_BEFORE_129, _CLUSTER_ADMINS_FROM_129),
        ),
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=_PER_INVOCATION_USERS,
        renewable=True,
        long_name="certificate embedded in the kubeconfig file for the admin to use and for "
                  "kubeadm itself",
        description="The administrators' kubeconfig (group kubeadm:cluster-admins from 1.29).",
    ),
    CatalogEntry(
        name="super-admin.conf",
        kind=Kind.KUBECONFIG,
        location=Location.KUBECONFIG_DIR,
        files=_conf("super-admin.conf"),
        signer="ca",
        scope=Scope.NODE,
        subject=SubjectRule(
            common_name="kubernetes-super-admin",
            organizations=(Versioned(value="system:masters", since=_V129),),
        ),
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=_PER_INVOCATION_USERS,
        renewable=True,
        # Written only by `kubeadm init`, never on joined nodes or upgraded clusters.
        required=False,
        since=_V129,
        long_name="certificate embedded in the kubeconfig file for the super-admin",
        description="Break-glass system:masters kubeconfig (KEP-4214); only on the init node.",
    ),
    CatalogEntry(
        name="controller-manager.conf",
        kind=Kind.KUBECONFIG,
        location=Location.KUBECONFIG_DIR,
        files=_conf("controller-manager.conf"),
        signer="ca",
        scope=Scope.NODE,
        subject=SubjectRule(common_name="system:kube-controller-manager"),
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=_kubeconfig_consumers(_KCM),
        renewable=True,
        long_name="certificate embedded in the kubeconfig file for the controller manager to use",
        description="kube-controller-manager's kubeconfig.",
    ),
    CatalogEntry(
        name="scheduler.conf",
        kind=Kind.KUBECONFIG,
        location=Location.KUBECONFIG_DIR,
        files=_conf("scheduler.conf"),
        signer="ca",
        scope=Scope.NODE,
        subject=SubjectRule(common_name="system:kube-scheduler"),
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=_kubeconfig_consumers(_SCHED),
        renewable=True,
        long_name="certificate embedded in the kubeconfig file for the scheduler manager to use",
        description="kube-scheduler's kubeconfig.",
    ),
    CatalogEntry(
        name="kubelet.conf",
        kind=Kind.KUBECONFIG,
        location=Location.KUBECONFIG_DIR,
        files=_conf("kubelet.conf"),
        signer="ca",
        scope=Scope.NODE,
        subject=_NODE_SUBJECT,
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=(
            Consumer(component=_KUBELET, flag="--kubeconfig", reload=Reload.KUBELET_MANAGED,
                     note="when it points at kubelet-client-current.pem; embedded data never "
                          "rotates (kubernetes/kubeadm#1753)"),
        ),
        # kubeadm delegates it to the kubelet's own rotation (manager.go NewManager).
        renewable=False,
        long_name="certificate embedded in the kubeconfig file for the kubelet to use",
        description="The kubelet's kubeconfig; points at the rotated client PEM since 1.17.",
        roles=frozenset({NodeRole.CONTROL_PLANE, NodeRole.WORKER}),
    ),
    CatalogEntry(
        name="kubelet-client-current.pem",
        kind=Kind.KUBELET,
        location=Location.KUBELET_PKI_DIR,
        files=(CatalogFile(path="kubelet-client-current.pem", role=FileRole.CERT_AND_KEY,
                           mode=0o600),),
        signer="ca",
        scope=Scope.NODE,
        subject=_NODE_SUBJECT,
        key_usages=_LEAF_KU,
        extended_key_usages=_CLIENT,
        consumers=(
            Consumer(component=_KUBELET, flag="kubelet.conf client-certificate",
                     reload=Reload.KUBELET_MANAGED, note="rotated by the kubelet itself"),
        ),
        # Only where kubelet.conf points at it (kubelet-finalize, kubeadm >= 1.17).
        required=False,
        long_name="the kubelet's rotated client certificate (symlink to kubelet-client-<time>.pem)",
        description="The kubelet's client certificate, rotated by the kubelet.",
        roles=frozenset({NodeRole.CONTROL_PLANE, NodeRole.WORKER}),
    ),
    CatalogEntry(
        name="kubelet-server-current.pem",
        kind=Kind.KUBELET,
        location=Location.KUBELET_PKI_DIR,
        files=(CatalogFile(path="kubelet-server-current.pem", role=FileRole.CERT_AND_KEY, mode=0o600),),
        # kube-controller-manager's kubernetes.io/kubelet-serving signer uses --cluster-signing-cert-file,
        # which kubeadm sets to ca.crt.
        signer="ca",
        scope=Scope.NODE,
        subject=_NODE_SUBJECT,
        key_usages=_LEAF_KU,
        extended_key_usages=_SERVER,
        # The kubelet asks for its hostname and its Node addresses (certificate_manager.go); checked by CSR
        # approval, not here.
        consumers=(
            Consumer(component=_KUBELET, flag="serverTLSBootstrap", reload=Reload.KUBELET_MANAGED,
                     note="requested by CSR and rotated by the kubelet; served per TLS handshake"),
        ),
        # Only with serverTLSBootstrap: true (or --rotate-server-certificates), and once its CSR is approved.
        required=False,
        long_name="the kubelet's serving certificate from a CSR (symlink to kubelet-server-<time>.pem)",
        description="The kubelet's serving certificate, signed by the cluster CA (serverTLSBootstrap).",
        roles=frozenset({NodeRole.CONTROL_PLANE, NodeRole.WORKER}),
    ),
    CatalogEntry(
        name="kubelet.crt",
        kind=Kind.KUBELET,
        location=Location.KUBELET_PKI_DIR,
        files=_pair("kubelet"),
        signer=None,
        scope=Scope.NODE,
        consumers=(
            Consumer(component=_KUBELET, flag="tlsCertFile", reload=Reload.RESTART,
                     note="self-signed; regenerated only when missing"),
        ),
        # Absent with serverTLSBootstrap (kubelet-server-current.pem instead).
        required=False,
        long_name="the kubelet's self-signed serving certificate",
        description="The kubelet's serving certificate (self-signed, one year, never rotated).",
        roles=_ALL_ROLES,
    ),
)

_BY_NAME: dict[str, CatalogEntry] = {e.name: e for e in CATALOG}


def names() -> tuple[str, ...]:
    """Every catalog name, in catalog order."""
    return tuple(_BY_NAME)


def get(name: str) -> CatalogEntry:
    """The entry called ``name``; raises :class:`~kubepki.UnknownItemError` otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise UnknownItemError(f"unknown catalog item {name!r} (known: {known})", name=name) from None


def entries(
    *,
    version: KubeVersion | str | None = None,
    external_etcd: bool = False,
    kinds: Iterable[Kind] | None = None,
    role: NodeRole | str | None = None,
) -> tuple[CatalogEntry, ...]:
    """The entries that apply to kubeadm ``version`` (all versions when None) on a node of ``role``.

    ``role`` None means every role; the entries of a control plane include every other role's.

    >>> from kubepki import catalog
    >>> [e.name for e in catalog.entries(version="1.28", role="worker")]
    ['ca', 'kubelet.conf', 'kubelet-client-current.pem', 'kubelet-server-current.pem', 'kubelet.crt']
    """
    wanted = frozenset(kinds) if kinds is not None else None
    r = NodeRole(role) if role is not None else None
    out = []
    for entry in CATALOG:
        if wanted is not None and entry.kind not in wanted:
            continue
        if r is not None and r not in entry.roles:
            continue
        if version is not None and not entry.applies(version, external_etcd=external_etcd,
                                                      role=r or NodeRole.CONTROL_PLANE):
            continue
        on_control_plane = r in (None, NodeRole.CONTROL_PLANE)
        if version is None and external_etcd and entry.local_etcd_only and on_control_plane:
            continue
        out.append(entry)
    return tuple(out)


def by_role(role: NodeRole | str) -> tuple[CatalogEntry, ...]:
    """The entries nodes of ``role`` have (every version)."""
    r = NodeRole(role)
    return tuple(e for e in CATALOG if r in e.roles)


def by_component(component: Component | str) -> tuple[CatalogEntry, ...]:
    """The entries that ``component`` reads."""
    comp = Component(component)
    return tuple(e for e in CATALOG if any(c.component is comp for c in e.consumers))


def by_scope(scope: Scope | str) -> tuple[CatalogEntry, ...]:
    """The entries of ``scope`` (``shared`` or ``node``)."""
    sc = Scope(scope)
    return tuple(e for e in CATALOG if e.scope is sc)
