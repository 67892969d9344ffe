"""The parts of a kubeadm configuration file that shape a node's PKI.

Reads ``InitConfiguration``, ``JoinConfiguration`` and ``ClusterConfiguration``
documents (``kubeadm.k8s.io/v1beta3`` and ``v1beta4``) from one multi-document
YAML file. Unknown kinds and fields are ignored, as kubeadm ignores them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

import attrs

from kubepki.errors import ConfigError, ParseError, redacted
from kubepki.pki import KEY_ALGORITHMS, load_documents
from kubepki.versions import KubeVersion

__all__ = ["KubeadmConfig", "parse_duration", "parse_kubeadm_config"]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}
#: kubeadm's ``encryptionAlgorithm`` values (v1beta4; ECDSA-P384 from 1.34).
ENCRYPTION_ALGORITHMS = KEY_ALGORITHMS


def parse_duration(text: str) -> dt.timedelta:
    """Parse a Go duration (``8760h0m0s``, ``720h``, ``1m``, ``90s``) or days (``30d``).

    Raises :class:`~kubepki.ConfigError` for anything else, including negative values.
    """
    s = str(text).strip()
    if re.fullmatch(r"\d+d", s):
        try:
            return dt.timedelta(days=int(s[:-1]))
        except (OverflowError, ValueError):  # beyond timedelta, or too many digits for int()
            raise ConfigError(f"duration out of range: {redacted(text)}") from None
    if not s or s.startswith("-") or _DURATION_RE.sub("", s) != "":
        raise ConfigError(f"not a duration: {redacted(text)} (use e.g. 30d, 720h or 8760h0m0s)")
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_RE.findall(s))
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:
        raise ConfigError(f"duration out of range: {redacted(text)}") from None


@attrs.frozen(kw_only=True)
class KubeadmConfig:
    """The PKI-relevant fields of a kubeadm configuration."""

    path: str | None = None
    api_version: str | None = None
    kubernetes_version: KubeVersion | None = None
    certificates_dir: str | None = None
    node_name: str | None = None
    advertise_address: str | None = None
    bind_port: int | None = None
    control_plane_endpoint: str | None = None
    dns_domain: str | None = None
    service_subnet: str | None = None
    cert_sans: tuple[str, ...] = ()
    external_etcd: bool = False
    etcd_server_cert_sans: tuple[str, ...] = ()
    etcd_peer_cert_sans: tuple[str, ...] = ()
    encryption_algorithm: str | None = None
    certificate_validity: dt.timedelta | None = None
    ca_certificate_validity: dt.timedelta | None = None
    feature_gates: Mapping[str, bool] = attrs.field(factory=dict)

    @property
    def control_plane_host(self) -> str | None:
        """The host part of ``controlPlaneEndpoint`` (an IP or DNS name)."""
        ep = self.control_plane_endpoint
        if not ep:
            return None
        if ep.startswith("["):  # [::1]:6443
            return ep[1 : ep.index("]")] if "]" in ep else None
        if ep.count(":") == 1:
            return ep.split(":", 1)[0]
        return ep

    @property
    def service_vip(self) -> str | None:
        """The first IP of ``serviceSubnet`` (the ``kubernetes`` Service), if parseable."""
        if not self.service_subnet:
            return None
        first = self.service_subnet.split(",")[0].strip()
        try:
            return str(next(iter(ipaddress.ip_network(first, strict=False).hosts())))
        except (ValueError, StopIteration):
            return None

    @property
    def key_algorithm(self) -> str | None:
        """The configured key algorithm: ``encryptionAlgorithm`` or the ECDSA feature gate."""
        if self.encryption_algorithm:
            return self.encryption_algorithm
        if self.feature_gates.get("PublicKeysECDSA"):
            return "ECDSA-P256"
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def parse_kubeadm_config(data: bytes, *, path: str | None = None) -> KubeadmConfig:
    """Parse a kubeadm config file's bytes.

    Raises :class:`~kubepki.ConfigError` when it is not YAML, holds no kubeadm
    document, or a PKI field has a wrong type or value.
    """
    try:
        docs = load_documents(data, path=path, error=ParseError)
    except ParseError as exc:
        raise ConfigError(f"kubeadm config: {exc.message}", path=path) from None
    fields: dict[str, Any] = {"path": path}
    seen = False
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        api = doc.get("apiVersion")
        kind = doc.get("kind")
        if not (isinstance(api, str) and api.startswith("kubeadm.k8s.io/")):
            continue
        seen = True
        fields.setdefault("api_version", api)
        if kind in ("InitConfiguration", "JoinConfiguration"):
            reg = _map(doc.get("nodeRegistration"))
            if _str(reg.get("name")):
                fields["node_name"] = reg["name"]
            endpoint = _map(doc.get("localAPIEndpoint"))
            if kind == "JoinConfiguration":
                endpoint = _map(_map(doc.get("controlPlane")).get("localAPIEndpoint"))
            if _str(endpoint.get("advertiseAddress")):
                fields["advertise_address"] = endpoint["advertiseAddress"]
            if isinstance(endpoint.get("bindPort"), int):
                fields["bind_port"] = endpoint["bindPort"]
        elif kind == "ClusterConfiguration":
            _cluster_fields(doc, fields, path)
    if not seen:
        raise ConfigError("no kubeadm.k8s.io configuration document found", path=path)
    return KubeadmConfig(**fields)


def _cluster_fields(doc: Mapping[str, Any], fields: dict[str, Any], path: str | None) -> None:
    version = _str(doc.get("kubernetesVersion"))
    if version and version not in ("stable", "latest") and not version.startswith(("stable-", "latest-")):
        fields["kubernetes_version"] = KubeVersion.parse(version)
    for key, name in (
        ("certificatesDir", "certificates_dir"),
        ("controlPlaneEndpoint", "control_plane_endpoint"),
    ):
        if _str(doc.get(key)):
            fields[name] = doc[key]
    net = _map(doc.get("networking"))
    if _str(net.get("dnsDomain")):
        fields["dns_domain"] = net["dnsDomain"]
    if _str(net.get("serviceSubnet")):
        fields["service_subnet"] = net["serviceSubnet"]
    fields["cert_sans"] = _strs(_map(doc.get("apiServer")).get("certSANs"))
    etcd = _map(doc.get("etcd"))
    fields["external_etcd"] = bool(etcd.get("external"))
    local = _map(etcd.get("local"))
    fields["etcd_server_cert_sans"] = _strs(local.get("serverCertSANs"))
    fields["etcd_peer_cert_sans"] = _strs(local.get("peerCertSANs"))
    algo = doc.get("encryptionAlgorithm")
    if algo is not None:
        if algo not in ENCRYPTION_ALGORITHMS:
            raise ConfigError(
                f"unknown encryptionAlgorithm {redacted(algo)} (known: {', '.join(ENCRYPTION_ALGORITHMS)})",
                path=path,
            )
        fields["encryption_algorithm"] = algo
    for key, name in (
        ("certificateValidityPeriod", "certificate_validity"),
        ("caCertificateValidityPeriod", "ca_certificate_validity"),
    ):
        value = doc.get(key)
        if value is not None:
            try:
                fields[name] = parse_duration(str(value))
            except ConfigError as exc:
                raise ConfigError(f"{key}: {exc.message}", path=path) from None
    gates = _map(doc.get("featureGates"))
    fields["feature_gates"] = {k: v for k, v in gates.items() if isinstance(k, str) and isinstance(v, bool)}
