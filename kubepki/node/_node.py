"""A kubeadm node: a filesystem root plus kubeadm's directories, and what it tells.

>>> import kubepki
>>> node = kubepki.Node("/host")                    # a privileged pod's view of its host
>>> str(node.path_of(kubepki.catalog.get("etcd-ca")))
'/etc/kubernetes/pki/etcd/ca.crt'

Discovery (:meth:`Node.profile`) reads the static pod manifests and a kubeadm
config file when present, so a non-default ``certificatesDir``, external etcd,
the key algorithm, the Kubernetes version and the node name are known without
the caller naming them. Whatever it had to assume is listed in ``notes``.
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import attrs

from kubepki import catalog as _catalog
from kubepki._args import local_path
from kubepki.catalog import CatalogEntry, FileRole, Location, NodeRole
from kubepki.errors import ConfigError, KubepkiError, NodeError, ParseError
from kubepki.node._fs import Connection, LocalFS, LocalPaths, NodeFS, read_optional
from kubepki.node._kubeadm_config import KubeadmConfig, parse_kubeadm_config
from kubepki.node._kubelet import KubeletSettings, read_kubelet_settings
from kubepki.node._manifests import MANIFEST_FILES, StaticPodManifest, parse_manifest
from kubepki.versions import ASSUMED, NEWEST, KubeVersion

__all__ = ["DEFAULT_DIRS", "Node", "NodeProfile", "normal_path"]

#: kubeadm's default directories on a node.
DEFAULT_DIRS: Mapping[str, str] = {
    "cert_dir": "/etc/kubernetes/pki",
    "kubeconfig_dir": "/etc/kubernetes",
    "kubelet_pki_dir": "/var/lib/kubelet/pki",
    "manifests_dir": "/etc/kubernetes/manifests",
}

#: Where kubeadm config files are commonly kept on a node (Cluster API uses /run/kubeadm).
CONFIG_CANDIDATES = (
    "/etc/kubernetes/kubeadm-config.yaml",
    "/etc/kubernetes/kubeadm.yaml",
    "/run/kubeadm/kubeadm.yaml",
    "/kubeadm-config.yaml",
)


@attrs.frozen(kw_only=True)
class NodeProfile:
    """What discovery learned about a node, and where each fact came from."""

    name: str | None
    name_source: str
    kubernetes_version: KubeVersion
    version_source: str
    cert_dir: PurePosixPath
    kubeconfig_dir: PurePosixPath
    kubelet_pki_dir: PurePosixPath
    manifests_dir: PurePosixPath
    external_etcd: bool
    #: What the node is in its cluster: decides which catalog items it has.
    role: NodeRole = NodeRole.CONTROL_PLANE
    #: Where :attr:`role` came from: ``given``, the evidence discovery found, or ``assumed``.
    role_source: str = ASSUMED
    #: The configured key algorithm (``encryptionAlgorithm``), None when not configured.
    key_algorithm: str | None
    config: KubeadmConfig | None
    manifests: Mapping[str, StaticPodManifest]
    #: Assumptions and problems met during discovery, in plain words.
    notes: tuple[str, ...] = ()
    #: The kubelet's configuration file and kubeadm's flags for it (defaults when absent).
    kubelet: KubeletSettings = attrs.field(factory=KubeletSettings)

    def entries(self) -> tuple[CatalogEntry, ...]:
        """The catalog entries this node has: its version, etcd mode and role."""
        return _catalog.entries(version=self.kubernetes_version, external_etcd=self.external_etcd, role=self.role)

    def has(self, entry: CatalogEntry) -> bool:
        """True when this node has ``entry`` (see :meth:`entries`)."""
        return entry.applies(self.kubernetes_version, external_etcd=self.external_etcd, role=self.role)

    def san_values(self) -> dict[str, str | None]:
        """Values for the catalog's SAN templates."""
        cfg = self.config
        advertise = cfg.advertise_address if cfg else None
        if advertise is None:
            api = self.manifests.get("kube-apiserver")
            advertise = api.flags.get("advertise-address") if api else None
        if advertise is None and "etcd" in self.manifests:  # an etcd node: its first client URL's host
            urls = self.manifests["etcd"].flags.get("advertise-client-urls", "")
            host = urlsplit(urls.split(",")[0]).hostname if urls else None
            advertise = host or None
        return {
            "node_name": self.name,
            "dns_domain": (cfg.dns_domain if cfg and cfg.dns_domain else "cluster.local"),
            "service_vip": cfg.service_vip if cfg else _service_vip_from(self.manifests),
            "advertise_address": advertise,
        }


def _service_vip_from(manifests: Mapping[str, StaticPodManifest]) -> str | None:
    api = manifests.get("kube-apiserver")
    if api is None or "service-cluster-ip-range" not in api.flags:
        return None
    return KubeadmConfig(service_subnet=api.flags["service-cluster-ip-range"]).service_vip


@attrs.frozen(kw_only=True, init=False)
class Node:
    """One kubeadm node reached through a filesystem root.

    ``root`` is where the node's ``/`` is (``/`` itself on the node, ``/host`` in a
    privileged pod, a temporary directory in tests). Directory arguments are node
    paths; None means "discover, else kubeadm's default". ``config`` is a kubeadm
    config file on the local machine (as ``kubeadm --config`` takes it). ``role``
    (``control-plane``, ``worker``, ``etcd``) overrides the discovered
    :attr:`NodeProfile.role`.
    """

    root: Path
    fs: NodeFS = attrs.field(eq=False)
    cert_dir: PurePosixPath | None
    kubeconfig_dir: PurePosixPath | None
    kubelet_pki_dir: PurePosixPath | None
    manifests_dir: PurePosixPath | None
    config: Path | None
    name: str | None
    role: NodeRole | None

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        *,
        cert_dir: str | None = None,
        kubeconfig_dir: str | None = None,
        kubelet_pki_dir: str | None = None,
        manifests_dir: str | None = None,
        config: str | os.PathLike[str] | None = None,
        name: str | None = None,
        fs: NodeFS | None = None,
        role: NodeRole | str | None = None,
    ) -> None:
        def opt(value: str | None, what: str) -> PurePosixPath | None:
            if value is None:
                return None
            if not isinstance(value, str | PurePosixPath):
                raise ConfigError(f"{what} must be a str, not {type(value).__name__}")
            p = PurePosixPath(value)
            if not p.is_absolute():
                raise ConfigError(f"{what} must be an absolute path on the node: {value!r}")
            return normal_path(p)

        if isinstance(root, Node):
            raise ConfigError("root is a Node already: pass it as it is (or its root)")
        local_root = local_path(root, "root")
        self.__attrs_init__(
            root=local_root,
            fs=fs if fs is not None else LocalFS(local_root),
            cert_dir=opt(cert_dir, "cert_dir"),
            kubeconfig_dir=opt(kubeconfig_dir, "kubeconfig_dir"),
            kubelet_pki_dir=opt(kubelet_pki_dir, "kubelet_pki_dir"),
            manifests_dir=opt(manifests_dir, "manifests_dir"),
            config=local_path(config, "config") if config is not None else None,
            name=name,
            role=_role(role),
        )

    @classmethod
    def coerce(cls, node: Node | str | os.PathLike[str]) -> Node:
        """A node as given, or a local node rooted at a path."""
        return node if isinstance(node, Node) else cls(node)

    def check_root(self) -> None:
        """Raise :class:`~kubepki.NodeError` when the root cannot be read.

        A local root must be a readable directory; a remote node must answer
        (connection, host key) and have its root as a directory.
        """
        if isinstance(self.fs, LocalPaths):
            root = self.fs.host_path("/")
            if not root.is_dir():
                raise NodeError(f"node root {str(root)!r} is not a directory", path=str(root))
            if not os.access(root, os.R_OK | os.X_OK):
                raise NodeError(f"node root {str(root)!r} is not readable", path=str(root))
            return
        if isinstance(self.fs, Connection):
            self.fs.connect()  # raises NodeError (HostKeyError, unreachable) with a clear message
        st = self.fs.stat(PurePosixPath("/"))
        if st is None or not st.is_dir:
            raise NodeError(f"node root {self.fs.describe()} is not a directory", path=self.fs.describe())

    @functools.cached_property
    def profile(self) -> NodeProfile:
        """Discover the node's directories, version, etcd mode and name (cached)."""
        return _discover(self)

    def dir_for(self, location: Location) -> PurePosixPath:
        """The node directory of a catalog :class:`~kubepki.catalog.Location`."""
        p = self.profile
        return {
            Location.CERT_DIR: p.cert_dir,
            Location.KUBECONFIG_DIR: p.kubeconfig_dir,
            Location.KUBELET_PKI_DIR: p.kubelet_pki_dir,
        }[location]

    def path_of(self, entry: CatalogEntry | str, role: FileRole | None = None) -> PurePosixPath:
        """The node path of ``entry``'s main file, or of its file with ``role``.

        The kubelet's serving pair is where its configuration's ``tlsCertFile`` and
        ``tlsPrivateKeyFile`` say, when they are set (the kubelet then makes no kubelet.crt).
        """
        e = _catalog.get(entry) if isinstance(entry, str) else entry
        f = e.files[0] if role is None else e.file(role)
        if f is None:
            raise ConfigError(f"{e.name} has no {role} file", name=e.name)
        if e.name == "kubelet.crt":
            kubelet = self.profile.kubelet
            given = kubelet.tls_private_key_file if f.role is FileRole.KEY else kubelet.tls_cert_file
            if given and given.startswith("/") and kubelet.tls_cert_file and kubelet.tls_private_key_file:
                return normal_path(given)
        return self.dir_for(e.location) / f.path

    def read(self, path: PurePosixPath, *, limit: int | None = None) -> bytes:
        """The bytes of a node file (see :meth:`kubepki.node._fs.NodeFS.read_bytes`)."""
        return self.fs.read_bytes(path, limit=limit)


def normal_path(path: str | PurePosixPath) -> PurePosixPath:
    """``path`` with ``.``, ``..`` and repeated slashes resolved lexically, as Go's ``filepath.Clean``.

    Every directory kubepki is given or discovers goes through this once, so that a
    ``--cert-dir /etc/kubernetes/x/../pki`` names the same files (and the same backup
    members) as ``/etc/kubernetes/pki``.
    """
    cleaned = posixpath.normpath(str(path))
    if cleaned.startswith("//"):  # POSIX keeps a leading "//"; Go and the kernel do not tell it apart
        cleaned = "/" + cleaned.lstrip("/")
    return PurePosixPath(cleaned)


def _role(value: NodeRole | str | None) -> NodeRole | None:
    if value is None or isinstance(value, NodeRole):
        return value
    try:
        return NodeRole(value)
    except ValueError:
        known = ", ".join(r.value for r in NodeRole)
        raise ConfigError(f"unknown node role {value!r} (known: {known})") from None


#: Files only a control-plane node has (besides its manifests): they tell a control plane whose
#: manifests are moved out for a restart (kubeadm's documented procedure) from a worker. Not ca.key:
#: a worker someone copied it to is still a worker (and the cluster check says the key should go).
_CONTROL_PLANE_FILES = (("cert_dir", "apiserver.crt"), ("kubeconfig_dir", "controller-manager.conf"),
                        ("kubeconfig_dir", "scheduler.conf"), ("cert_dir", "sa.key"),
                        ("cert_dir", "front-proxy-ca.crt"), ("cert_dir", "apiserver-kubelet-client.crt"))
_ETCD_FILES = (("cert_dir", "etcd/server.crt"), ("cert_dir", "etcd/peer.crt"))
_WORKER_FILES = (("kubeconfig_dir", "kubelet.conf"), ("kubeconfig_dir", "bootstrap-kubelet.conf"))


def _discover_role(
    node: Node, manifests: Mapping[str, StaticPodManifest], dirs: Mapping[str, PurePosixPath],
    notes: list[str],
) -> tuple[NodeRole, str]:
    """The node's role: given, else from its manifests, else from the files only that role has."""
    if node.role is not None:
        return node.role, "given"

    def found(files: tuple[tuple[str, str], ...]) -> str | None:
        for where, rel in files:
            path = dirs[where] / rel
            try:
                if node.fs.stat(path) is not None:
                    return str(path)
            except NodeError as exc:
                notes.append(f"could not look at {path}: {exc.message}")
        return None

    if "kube-apiserver" in manifests:
        return NodeRole.CONTROL_PLANE, "kube-apiserver manifest"
    cp_file = found(_CONTROL_PLANE_FILES)
    if cp_file is not None:
        return NodeRole.CONTROL_PLANE, cp_file
    if "etcd" in manifests:
        return NodeRole.ETCD, "etcd manifest without kube-apiserver"
    etcd_file = found(_ETCD_FILES)
    if etcd_file is not None:
        return NodeRole.ETCD, etcd_file
    worker_file = found(_WORKER_FILES)
    if worker_file is not None:
        return NodeRole.WORKER, f"{worker_file} without control-plane files"
    notes.append("node role unknown (no manifests, no control-plane, etcd or kubelet files): assuming "
                 "control-plane")
    return NodeRole.CONTROL_PLANE, ASSUMED


def _read_optional(node: Node, path: PurePosixPath, notes: list[str]) -> bytes | None:
    return read_optional(node.fs, path, notes)


def _discover(node: Node) -> NodeProfile:  # noqa: C901, PLR0912, PLR0915  -- discovery's sources in priority order
    notes: list[str] = []
    config: KubeadmConfig | None = None
    if node.config is not None:
        try:
            data = node.config.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read kubeadm config {str(node.config)!r}: {exc.strerror}",
                              path=str(node.config)) from None
        config = parse_kubeadm_config(data, path=str(node.config))
    else:
        for candidate in CONFIG_CANDIDATES:
            data_opt = _read_optional(node, PurePosixPath(candidate), notes)
            if data_opt is None:
                continue
            try:
                config = parse_kubeadm_config(data_opt, path=candidate)
            except ConfigError as exc:
                notes.append(f"ignored {candidate}: {exc.message}")
                continue
            notes.append(f"read kubeadm config {candidate}")
            break

    manifests_dir = node.manifests_dir or PurePosixPath(DEFAULT_DIRS["manifests_dir"])
    manifests: dict[str, StaticPodManifest] = {}
    for component, filename in MANIFEST_FILES.items():
        path = manifests_dir / filename
        raw = _read_optional(node, path, notes)
        if raw is None:
            continue
        try:
            manifests[component] = parse_manifest(raw, path=str(path))
        except ParseError as exc:
            notes.append(f"ignored manifest {path}: {exc.message}")

    # The cert dir: explicit > manifest flags > config > default.
    cert_dir = node.cert_dir
    if cert_dir is None:
        api = manifests.get("kube-apiserver")
        flag = api.flags.get("client-ca-file") if api else None
        etcd = manifests.get("etcd")
        etcd_ca = etcd.flags.get("trusted-ca-file") if etcd else None
        if flag:
            cert_dir = PurePosixPath(flag).parent
        elif etcd_ca and PurePosixPath(etcd_ca).parent.name == "etcd":  # an etcd-only node: <cert dir>/etcd/ca.crt
            cert_dir = PurePosixPath(etcd_ca).parent.parent
        elif config and config.certificates_dir:
            cert_dir = PurePosixPath(config.certificates_dir)
        else:
            cert_dir = PurePosixPath(DEFAULT_DIRS["cert_dir"])

    # External etcd: the config says so, or an API server runs without an etcd manifest.
    external_etcd = bool(config and config.external_etcd)
    if not external_etcd and "kube-apiserver" in manifests and "etcd" not in manifests:
        servers = manifests["kube-apiserver"].flags.get("etcd-servers", "")
        if servers and not any(h in servers for h in ("127.0.0.1", "[::1]", "localhost")):
            external_etcd = True
            notes.append("external etcd: kube-apiserver talks to etcd elsewhere and there is no etcd manifest")

    kubeconfig_dir = node.kubeconfig_dir or PurePosixPath(DEFAULT_DIRS["kubeconfig_dir"])
    kubelet = read_kubelet_settings(node.fs)
    notes.extend(kubelet.notes)
    kubelet_pki_dir = node.kubelet_pki_dir
    if kubelet_pki_dir is None and kubelet.cert_dir and kubelet.cert_dir.startswith("/"):
        kubelet_pki_dir = PurePosixPath(kubelet.cert_dir)  # the kubelet's --cert-dir
    kubelet_pki_dir = kubelet_pki_dir or PurePosixPath(DEFAULT_DIRS["kubelet_pki_dir"])
    role, role_source = _discover_role(node, manifests, {"cert_dir": cert_dir, "kubeconfig_dir": kubeconfig_dir},
                                       notes)

    version, version_source = _version(config, manifests)
    if version_source == ASSUMED:
        notes.append(f"Kubernetes version unknown (no manifests, no kubeadm config): assuming {version}")

    name, name_source = _node_name(node, config, manifests, node.kubeconfig_dir, cert_dir)
    if name is None:
        notes.append("node name unknown: SAN and CN checks that need it are skipped")

    key_algorithm = config.key_algorithm if config else None
    cert_dir, kubeconfig_dir = normal_path(cert_dir), normal_path(kubeconfig_dir)
    kubelet_pki_dir, manifests_dir = normal_path(kubelet_pki_dir), normal_path(manifests_dir)
    return NodeProfile(
        name=name,
        name_source=name_source,
        kubernetes_version=version,
        version_source=version_source,
        cert_dir=cert_dir,
        kubeconfig_dir=kubeconfig_dir,
        kubelet_pki_dir=kubelet_pki_dir,
        manifests_dir=manifests_dir,
        external_etcd=external_etcd,
        role=role,
        role_source=role_source,
        key_algorithm=key_algorithm,
        config=config,
        manifests=manifests,
        notes=tuple(notes),
        kubelet=kubelet,
    )


def _version(
    config: KubeadmConfig | None, manifests: Mapping[str, StaticPodManifest]
) -> tuple[KubeVersion, str]:
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        m = manifests.get(component)
        if m is not None and m.image_version is not None:
            return m.image_version, f"{component} image tag"
    if config is not None and config.kubernetes_version is not None:
        return config.kubernetes_version, "kubeadm config"
    return NEWEST, ASSUMED


def _node_name(
    node: Node,
    config: KubeadmConfig | None,
    manifests: Mapping[str, StaticPodManifest],
    kubeconfig_dir: PurePosixPath | None,
    cert_dir: PurePosixPath,
) -> tuple[str | None, str]:
    if node.name:
        return node.name, "given"
    if config is not None and config.node_name:
        return config.node_name, "kubeadm config"
    etcd = manifests.get("etcd")
    if etcd is not None and etcd.flags.get("name"):
        return etcd.flags["name"], "etcd manifest --name"
    # Certificates that carry the node name: kubelet.conf's CN, then etcd's CN.
    from kubepki.pki import (
        load_certificate,
        parse_kubeconfig,  # local: keeps discovery cheap
    )

    kdir = kubeconfig_dir or PurePosixPath(DEFAULT_DIRS["kubeconfig_dir"])
    candidates: list[tuple[PurePosixPath, str]] = [
        (kdir / "kubelet.conf", "kubelet.conf"),
        (cert_dir / "etcd/server.crt", "etcd/server.crt"),
        (PurePosixPath(DEFAULT_DIRS["kubelet_pki_dir"]) / "kubelet-client-current.pem",
         "kubelet-client-current.pem"),
    ]
    for path, label in candidates:
        try:
            if node.fs.stat(path) is None:
                continue
            data = node.fs.read_bytes(path, limit=1 << 20)
            if label == "kubelet.conf":
                kc = parse_kubeconfig(data, path=str(path))
                cred = kc.client_certificate
                if cred is None:
                    continue
                data = cred.data if cred.data is not None else node.fs.read_bytes(cred.file, limit=1 << 20)  # type: ignore[arg-type]
            cert = load_certificate(data, path=str(path))
        except KubepkiError:
            continue
        cns = [str(a.value) for a in cert.subject if a.oid.dotted_string == "2.5.4.3"]
        if not cns:
            continue
        cn = cns[0]
        if label == "etcd/server.crt":
            return cn, "etcd server certificate CN"
        if cn.startswith("system:node:"):
            return cn.removeprefix("system:node:"), f"{label} CN"
    return None, "unknown"
