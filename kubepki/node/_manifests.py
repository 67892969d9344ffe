"""Static pod manifests: which component, which image version, which files its flags name."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from kubepki.errors import ConfigError, ManifestError
from kubepki.pki import load_one
from kubepki.versions import KubeVersion

__all__ = ["HTTPProbe", "StaticPodManifest", "parse_manifest"]

#: The manifest files kubeadm writes, by component.
MANIFEST_FILES = {
    "etcd": "etcd.yaml",
    "kube-apiserver": "kube-apiserver.yaml",
    "kube-controller-manager": "kube-controller-manager.yaml",
    "kube-scheduler": "kube-scheduler.yaml",
}


@attrs.frozen(kw_only=True)
class HTTPProbe:
    """One ``httpGet`` probe of a static pod's container, as the kubelet runs it."""

    #: ``readiness``, ``startup`` or ``liveness``.
    kind: str
    #: None: the pod's IP, which for a host-network static pod is the node's (kubeadm always sets it).
    host: str | None
    port: int
    path: str
    #: ``HTTP`` or ``HTTPS`` (the kubelet does not verify the server's certificate).
    scheme: str

    @property
    def url(self) -> str:
        """The URL the kubelet would GET (``host`` None shown as 127.0.0.1)."""
        host = self.host or "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme.lower()}://{shown}:{self.port}{self.path}"


@attrs.frozen(kw_only=True)
class StaticPodManifest:
    """One static pod manifest, reduced to what kubepki uses."""

    path: str | None
    #: The pod's ``component`` label, else its name (``kube-apiserver``, ``etcd``...).
    component: str
    image: str | None
    #: ``--flag=value`` arguments of the first container (flags without a value map to "").
    flags: Mapping[str, str]
    #: hostPath volumes: volume name -> host path.
    host_paths: Mapping[str, str]
    #: The 1-based line of the manifest where each flag of :attr:`flags` is written (for messages).
    flag_lines: Mapping[str, int] = attrs.field(factory=dict)
    #: ``runAsUser`` and ``runAsGroup`` of the first container (else the pod's): None runs as the image's
    #: user, root for kubeadm's images (kubeadm sets them only with its RootlessControlPlane gate).
    run_as: tuple[int | None, int | None] = (None, None)
    #: The first container's HTTP probes by kind (``readiness``, ``startup``, ``liveness``).
    probes: Mapping[str, HTTPProbe] = attrs.field(factory=dict)

    def health_probe(self) -> HTTPProbe | None:
        """The probe that says the component is serving: readiness, else startup, else liveness."""
        return next((self.probes[k] for k in ("readiness", "startup", "liveness") if k in self.probes), None)

    @property
    def image_version(self) -> KubeVersion | None:
        """The Kubernetes version in the image tag (control-plane images only)."""
        if not self.image or self.component == "etcd" or ":" not in self.image.rsplit("/", 1)[-1]:
            return None
        tag = self.image.rsplit(":", 1)[1].split("@", 1)[0]
        try:
            return KubeVersion.parse(tag)
        except ConfigError:
            return None


def parse_manifest(data: bytes, *, path: str | None = None) -> StaticPodManifest:
    """Parse a static pod manifest; raises :class:`~kubepki.ManifestError` when malformed."""
    doc = load_one(data, path=path, error=ManifestError)
    if not isinstance(doc, dict) or doc.get("kind") != "Pod":
        raise ManifestError("not a Pod manifest", path=path)
    meta = _map(doc.get("metadata"))
    spec = _map(doc.get("spec"))
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        raise ManifestError("the Pod has no containers", path=path)
    container = containers[0]
    labels = _map(meta.get("labels"))
    component = labels.get("component") or meta.get("name") or container.get("name")
    if not isinstance(component, str):
        raise ManifestError("cannot tell which component the Pod runs", path=path)
    args = [a for a in (_list(container.get("command")) + _list(container.get("args"))) if isinstance(a, str)]
    flags: dict[str, str] = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            flags[name] = value
    host_paths: dict[str, str] = {}
    for vol in _list(spec.get("volumes")):
        if isinstance(vol, dict) and isinstance(vol.get("name"), str):
            hp = _map(vol.get("hostPath")).get("path")
            if isinstance(hp, str):
                host_paths[vol["name"]] = hp
    image = container.get("image")
    return StaticPodManifest(
        flag_lines=_flag_lines(data, flags),
        run_as=_run_as(_map(spec.get("securityContext")), _map(container.get("securityContext"))),
        path=path,
        component=component,
        image=image if isinstance(image, str) else None,
        flags=flags,
        host_paths=host_paths,
        probes=_probes(container),
    )


def _probes(container: Mapping[str, Any]) -> dict[str, HTTPProbe]:
    """The container's ``httpGet`` probes; a named port (kubeadm's ``probe-port``) is looked up in the
    container's ``ports``. A probe whose port cannot be told is left out."""
    named = {p["name"]: p.get("containerPort") for p in _list(container.get("ports"))
             if isinstance(p, dict) and isinstance(p.get("name"), str)}
    out: dict[str, HTTPProbe] = {}
    for kind in ("readiness", "startup", "liveness"):
        get = _map(_map(container.get(f"{kind}Probe")).get("httpGet"))
        port = get.get("port")
        if isinstance(port, str):
            port = int(port) if port.isdigit() else named.get(port)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            continue
        path, host, scheme = get.get("path", "/"), get.get("host"), get.get("scheme", "HTTP")
        if not isinstance(path, str) or not path.startswith("/") or scheme not in ("HTTP", "HTTPS"):
            continue
        out[kind] = HTTPProbe(kind=kind, host=host if isinstance(host, str) and host else None, port=port,
                              path=path, scheme=scheme)
    return out


def _run_as(pod: Mapping[str, Any], container: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """The container's user and group ids: its own securityContext wins over the pod's (as the kubelet does)."""
    def pick(key: str) -> int | None:
        for ctx in (container, pod):
            value = ctx.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None
    return pick("runAsUser"), pick("runAsGroup")


#: ``--name`` as :func:`_flag_lines` reads it: ``\w`` is ``str.isalnum()`` or ``_``, so a name is the
#: letters, digits, ``-``, ``_`` and ``.`` after the dashes, up to its end.
_FLAG = re.compile(r"--([\w.-]*)")


def _flag_lines(data: bytes, flags: Mapping[str, str]) -> dict[str, int]:
    """Where each flag is written: the first line holding ``--name`` followed by ``=``, a quote or its end."""
    lines = data.decode("utf-8", "replace").splitlines()
    out: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if "--" not in text:
            continue
        for m in _FLAG.finditer(text):
            name, end = m.group(1), m.end()
            if name in flags and name not in out and (end == len(text) or text[end] in "=\"' "):
                out[name] = number
    return out


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
