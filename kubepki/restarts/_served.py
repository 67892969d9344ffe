"""The certificate a component serves, compared with the one on disk.

A renewed serving certificate helps only once the component hands it out. This
module connects with TLS to a component's endpoint, takes the leaf certificate
it presents and compares its DER bytes with the file on disk. Verification is
off on purpose: the question is "is it the same certificate", not "do I trust
it", and an expired or not-yet-trusted certificate must still be read.

>>> check = fetch_served_certificate("127.0.0.1", 1, timeout=0.5)
>>> check.status.value
'refused'

Network problems are results, not exceptions: a refused connection, a timeout
or a failed handshake come back as a :class:`ServedCertificate` whose
:attr:`~ServedCertificate.status` says so.

Servers that require a client certificate (etcd's ``--client-cert-auth``) still
show theirs: with TLS 1.3 the client has the server's certificate before it
answers the server's certificate request. A TLS 1.2-only server that requires a
client certificate ends the handshake first and reports ``tls-error``.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import attrs

from kubepki import catalog as _catalog
from kubepki.catalog import Component
from kubepki.errors import ConfigError, KubepkiError, ParseError
from kubepki.node import KUBELET_CONFIG, Node, read_kubelet_config

__all__ = [
    "DEFAULT_PORTS",
    "KUBELET_CONFIG",
    "SERVING_FLAGS",
    "CheckStatus",
    "Ports",
    "ServedCertificate",
    "ServedCheck",
    "ServedStatus",
    "check_served",
    "compare_served",
    "endpoint_port",
    "fetch_served_certificate",
    "kubelet_config",
    "serving_cert_path",
    "serving_endpoint",
    "to_node_path",
    "verify_served",
]

#: Ports per component, keyed by :class:`~kubepki.Component` or its name.
Ports = Mapping[Component, int] | Mapping[str, int]

#: Where kubeadm's components listen by default (``--secure-port``,
#: ``--listen-client-urls``, the kubelet's ``port``).
DEFAULT_PORTS: Mapping[Component, int] = {
    Component.ETCD: 2379,
    Component.KUBE_APISERVER: 6443,
    Component.KUBELET: 10250,
    Component.KUBE_CONTROLLER_MANAGER: 10257,
    Component.KUBE_SCHEDULER: 10259,
}

#: The flag naming a component's serving certificate. kubeadm sets it for etcd and
#: the API server; kube-controller-manager and kube-scheduler serve a self-signed
#: certificate made in memory unless ``--tls-cert-file`` is added by hand.
SERVING_FLAGS: Mapping[Component, str] = {
    Component.ETCD: "cert-file",
    Component.KUBE_APISERVER: "tls-cert-file",
    Component.KUBE_CONTROLLER_MANAGER: "tls-cert-file",
    Component.KUBE_SCHEDULER: "tls-cert-file",
    Component.KUBELET: "tls-cert-file",
}

# Without a flag, the catalog entry that holds the serving certificate.
_SERVING_ENTRIES: Mapping[Component, str] = {
    Component.ETCD: "etcd-server",
    Component.KUBE_APISERVER: "apiserver",
    Component.KUBELET: "kubelet.crt",
}


class ServedStatus(str, enum.Enum):
    """What happened when kubepki asked an endpoint for its certificate."""

    #: A certificate was received.
    OK = "ok"
    #: Nothing listens there.
    REFUSED = "refused"
    #: No answer in time.
    TIMEOUT = "timeout"
    #: The address cannot be reached or resolved.
    UNREACHABLE = "unreachable"
    #: The handshake failed before a certificate was seen.
    TLS_ERROR = "tls-error"


@attrs.frozen(kw_only=True)
class ServedCertificate:
    """The leaf certificate an endpoint presented, or why there is none."""

    host: str
    port: int
    server_name: str | None
    status: ServedStatus
    der: bytes | None = attrs.field(default=None, repr=False)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when a certificate was received."""
        return self.status is ServedStatus.OK and self.der is not None

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the DER bytes (hex), as ``openssl x509 -fingerprint -sha256`` without colons."""
        return hashlib.sha256(self.der).hexdigest() if self.der is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the fingerprint, not the bytes)."""
        return {
            "host": self.host,
            "port": self.port,
            "server_name": self.server_name,
            "status": self.status.value,
            "sha256": self.sha256,
            "error": self.error,
        }


def fetch_served_certificate(
    host: str,
    port: int,
    *,
    server_name: str | None = None,
    timeout: float = 5.0,
) -> ServedCertificate:
    """Connect to ``host:port`` with TLS and return the leaf certificate it presents.

    ``server_name`` is sent as SNI (default: ``host`` unless it is an IP address,
    for which TLS forbids SNI). Never raises for network or TLS problems; see
    :class:`ServedStatus`.
    """
    from kubepki.pki import fetch_tls_chain

    sni = server_name if server_name is not None else (None if _is_ip(host) else host)

    def result(status: ServedStatus, der: bytes | None = None, error: str | None = None) -> ServedCertificate:
        return ServedCertificate(host=host, port=port, server_name=sni, status=status, der=der, error=error)

    try:
        der = fetch_tls_chain(host, port, server_name=server_name, timeout=timeout).leaf
    except ConnectionRefusedError:
        return result(ServedStatus.REFUSED, error=f"connection to {host}:{port} refused")
    except TimeoutError:
        return result(ServedStatus.TIMEOUT, error=f"no answer from {host}:{port} within {timeout:g}s")
    except ssl.SSLError as exc:
        return result(ServedStatus.TLS_ERROR, error=f"TLS handshake with {host}:{port} failed: "
                      f"{exc.reason or exc}")
    except OSError as exc:
        if exc.errno == errno.ECONNRESET:
            return result(ServedStatus.TLS_ERROR, error=f"{host}:{port} reset the connection")
        return result(ServedStatus.UNREACHABLE, error=f"cannot reach {host}:{port}: {exc.strerror or exc}")
    if not der:
        return result(ServedStatus.TLS_ERROR, error=f"{host}:{port} presented no certificate")
    return result(ServedStatus.OK, der=der)


class CheckStatus(str, enum.Enum):
    """The outcome of comparing a served certificate with the one on disk."""

    MATCH = "match"
    MISMATCH = "mismatch"
    #: No certificate was received (see :attr:`ServedCheck.served`).
    UNAVAILABLE = "unavailable"
    #: There is no certificate on disk to compare with.
    NO_DISK_CERTIFICATE = "no-disk-certificate"


@attrs.frozen(kw_only=True)
class ServedCheck:
    """A served certificate next to the on-disk one it should be."""

    component: Component | None
    served: ServedCertificate
    #: The on-disk certificate's node path, if known.
    path: str | None
    disk_sha256: str | None
    status: CheckStatus
    message: str

    @property
    def matches(self) -> bool | None:
        """True or False when compared, None when one side was unavailable."""
        if self.status is CheckStatus.MATCH:
            return True
        if self.status is CheckStatus.MISMATCH:
            return False
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "component": self.component.value if self.component else None,
            "status": self.status.value,
            "path": self.path,
            "disk_sha256": self.disk_sha256,
            "served": self.served.to_dict(),
            "message": self.message,
        }


def _der_of(data: bytes, path: str | None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    from kubepki.pki import load_certificate

    return load_certificate(data, path=path).public_bytes(serialization.Encoding.DER)


def compare_served(
    served: ServedCertificate,
    disk: bytes | None,
    *,
    path: str | None = None,
    component: Component | None = None,
) -> ServedCheck:
    """Compare ``served`` with ``disk`` (PEM or DER bytes of a certificate file, or None).

    The first certificate of a PEM file counts (a served chain's leaf is compared
    with the file's leaf).
    """
    what = component.value if component else f"{served.host}:{served.port}"
    disk_der: bytes | None = None
    problem = None
    if disk is not None:
        try:
            disk_der = _der_of(disk, path)
        except ParseError as exc:
            problem = exc.message
    disk_sha = hashlib.sha256(disk_der).hexdigest() if disk_der is not None else None

    def out(status: CheckStatus, message: str) -> ServedCheck:
        return ServedCheck(component=component, served=served, path=path, disk_sha256=disk_sha,
                           status=status, message=message)

    if not served.ok:
        return out(CheckStatus.UNAVAILABLE, f"{what}: {served.error}")
    if disk_der is None:
        return out(CheckStatus.NO_DISK_CERTIFICATE,
                   f"{what}: no certificate on disk to compare with" + (f" ({problem})" if problem else ""))
    if served.der == disk_der:
        return out(CheckStatus.MATCH, f"{what} serves {path or 'the on-disk certificate'}")
    return out(CheckStatus.MISMATCH, f"{what} on {served.host}:{served.port} serves a certificate "
               f"(sha256 {served.sha256}) other than {path or 'the one on disk'} (sha256 {disk_sha})")


def serving_cert_path(
    node: Node, component: Component | str, flags: Mapping[str, str] | None = None
) -> PurePosixPath | None:
    """The node path of ``component``'s serving certificate, or None when it serves an in-memory one.

    ``flags`` are the running process's flags, if known; else the static pod
    manifest's; else, for the kubelet, ``kubelet-server-current.pem`` when it
    exists (``serverTLSBootstrap``); else the catalog's default path. A flag value under a node root
    other than ``/`` is mapped back to a node path.
    """
    comp = Component(component)
    flag = SERVING_FLAGS.get(comp)
    for source in (flags, _manifest_flags(node, comp)):
        if source and flag and source.get(flag):
            return to_node_path(node, source[flag])
    if comp is Component.KUBELET:
        configured = kubelet_config(node, flags).get("tlsCertFile")
        if isinstance(configured, str) and configured.startswith("/"):
            return to_node_path(node, configured)
        # serverTLSBootstrap: the kubelet serves its rotated certificate, not kubelet.crt.
        rotated = node.profile.kubelet_pki_dir / "kubelet-server-current.pem"
        try:
            if node.fs.stat(rotated) is not None:
                return rotated
        except KubepkiError:
            pass
    name = _SERVING_ENTRIES.get(comp)
    if name is None:
        return None
    entry = _catalog.get(name)
    profile = node.profile
    if not profile.has(entry):
        return None
    return node.path_of(entry)


def _manifest_flags(node: Node, component: Component) -> Mapping[str, str] | None:
    manifest = node.profile.manifests.get(component.value)
    return manifest.flags if manifest is not None else None


def to_node_path(node: Node, value: str) -> PurePosixPath:
    """A path a process names, as a node path.

    Processes on the node name node paths. When the node's root is a directory
    other than ``/`` and the value lies under it (a process started with paths
    inside that directory), the root prefix is removed.
    """
    root = str(node.root).rstrip("/")
    if root and value.startswith(root + "/"):
        return PurePosixPath("/" + value[len(root) + 1 :])
    return PurePosixPath(value)


def check_served(
    node: Node,
    component: Component | str,
    *,
    host: str | None = None,
    port: int | None = None,
    server_name: str | None = None,
    timeout: float = 5.0,
    flags: Mapping[str, str] | None = None,
) -> ServedCheck:
    """Fetch ``component``'s served certificate and compare it with its on-disk one.

    ``host`` and ``port`` default to the endpoint :func:`serving_endpoint` finds
    on the node (``flags`` are the running instance's, when known).
    """
    comp = Component(component)
    if comp not in DEFAULT_PORTS:
        raise ConfigError(f"{comp.value} serves no TLS endpoint kubepki knows of", name=comp.value)
    the_host, the_port = serving_endpoint(node, comp, flags, host=host, port=port)
    path = serving_cert_path(node, comp, flags)
    disk: bytes | None = None
    if path is not None:
        try:
            if node.fs.stat(path) is not None:
                disk = node.fs.read_bytes(path, limit=1 << 20)
        except KubepkiError:
            disk = None
    served = fetch_served_certificate(the_host, the_port, server_name=server_name, timeout=timeout)
    return compare_served(served, disk, path=str(path) if path is not None else None, component=comp)


def verify_served(
    node: Node | str | os.PathLike[str],
    *,
    host: str | None = None,
    ports: Ports | None = None,
    components: Iterable[Component | str] | None = None,
    server_name: str | None = None,
    timeout: float = 5.0,
) -> tuple[ServedCheck, ...]:
    """:func:`check_served` for each component (default: those with an on-disk serving certificate).

    Each endpoint is the one the node's static pod manifests and kubelet
    configuration name (:func:`serving_endpoint`); ``host`` and ``ports`` (per
    component) override them. ``node`` is a :class:`~kubepki.Node` or a root path.
    """
    node = Node.coerce(node)
    node.check_root()
    overrides = {Component(k): v for k, v in (ports or {}).items()}
    if components is None:
        wanted = [c for c in DEFAULT_PORTS if _has_serving_file(node, c)]
    else:
        wanted = [Component(c) for c in components]
    return tuple(
        check_served(node, c, host=host, port=overrides.get(c), server_name=server_name, timeout=timeout)
        for c in wanted
    )


def endpoint_port(component: Component | str, flags: Mapping[str, str]) -> int | None:
    """The TLS port ``component``'s flags name, or None when they name none.

    ``--secure-port`` for the API server, controller-manager and scheduler; for
    etcd the first loopback URL of ``--listen-client-urls`` (else the first URL);
    ``--port`` for the kubelet.
    """
    found = _flag_endpoint(Component(component), flags)
    return found[1] if found is not None else None


# Addresses that mean "every interface": connect through loopback instead.
_UNSPECIFIED = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - compared, never bound
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _flag_endpoint(comp: Component, flags: Mapping[str, str]) -> tuple[str | None, int] | None:
    """(host or None, port) from a component's flags, None when they name no port."""
    if comp is Component.ETCD:
        found: list[tuple[bool, str | None, int]] = []
        for url in (u.strip() for u in flags.get("listen-client-urls", "").split(",")):
            try:
                parts = urlsplit(url)
                port = parts.port
            except ValueError:
                continue
            if url and port is not None:
                found.append((parts.hostname in _LOOPBACK_NAMES, parts.hostname, port))
        found.sort(key=lambda f: not f[0])  # loopback first, else the order given
        if not found:
            return None
        host = found[0][1]
        return (None if host is None or host in _UNSPECIFIED else host), found[0][2]
    value = flags.get("port" if comp is Component.KUBELET else "secure-port")
    if not value or not value.isdigit():
        return None
    address = flags.get("address" if comp is Component.KUBELET else "bind-address", "")
    return (None if address in _UNSPECIFIED else address), int(value)


def kubelet_config(node: Node, flags: Mapping[str, str] | None = None) -> Mapping[str, Any]:
    """The kubelet's configuration file as a mapping; empty when it is absent or unreadable.

    The file is the one ``--config`` names in ``flags`` (the running kubelet's),
    else in ``kubeadm-flags.env``, else :data:`KUBELET_CONFIG` (as discovery reads it:
    :attr:`kubepki.NodeProfile.kubelet`).
    """
    named = (flags or {}).get("config")
    if not named:
        return node.profile.kubelet.config
    _path, data = read_kubelet_config(node.fs, to_node_path(node, named))
    return data or {}


def serving_endpoint(
    node: Node,
    component: Component | str,
    flags: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
) -> tuple[str, int]:
    """Where ``component`` serves TLS on ``node``: ``(host, port)``.

    ``host`` and ``port`` win when given. Otherwise the running instance's
    ``flags``, then the static pod manifest's (``--secure-port`` and
    ``--bind-address``; etcd's ``--listen-client-urls``), then for the kubelet
    its configuration file (``port:`` and ``address:``, see
    :func:`kubelet_config`), then :data:`DEFAULT_PORTS`. An address meaning
    "every interface" is reached on ``127.0.0.1``.
    """
    comp = Component(component)
    found: tuple[str | None, int] | None = None
    for source in (flags, _manifest_flags(node, comp)):
        if source:
            found = _flag_endpoint(comp, source)
            if found is not None:
                break
    if found is None and comp is Component.KUBELET:
        config = kubelet_config(node, flags)
        value = config.get("port")
        if isinstance(value, int) and 0 < value < 65536:
            address = config.get("address")
            found = (address if isinstance(address, str) and address not in _UNSPECIFIED else None), value
    the_port = port if port is not None else (found[1] if found is not None else DEFAULT_PORTS[comp])
    the_host = host if host is not None else (found[0] if found is not None and found[0] else "127.0.0.1")
    return the_host, the_port


def _has_serving_file(node: Node, component: Component) -> bool:
    path = serving_cert_path(node, component)
    try:
        return path is not None and node.fs.stat(path) is not None
    except KubepkiError:
        return True  # unreadable: let the check say so


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True
