"""Is a component healthy? Asked the way the kubelet asks: the static pod's own HTTP probe.

kubeadm gives every control-plane pod HTTP probes (kube-apiserver ``/readyz`` and
``/livez``, kube-controller-manager ``/healthz``, kube-scheduler and etcd
``/readyz``/``/livez`` on etcd's metrics port); the kubelet itself answers on its
``healthzBindAddress:healthzPort``. :func:`check_health` GETs the readiness probe
(else the startup, else the liveness one) as the kubelet would — HTTPS without
verifying the server's certificate, 200–399 is healthy
(pkg/probe/http/http.go) — so "healthy" means what it means to the cluster, not
what kubepki thinks of the files.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Iterable
from typing import Any

import attrs

from kubepki.catalog import Component
from kubepki.node import Node

__all__ = ["HealthCheck", "check_health", "health_url"]

#: The kubelet's defaults (KubeletConfiguration healthzBindAddress, healthzPort).
_KUBELET_HEALTHZ = ("127.0.0.1", 10248)


@attrs.frozen(kw_only=True)
class HealthCheck:
    """One component's health probe and its answer."""

    component: Component
    #: What was asked (None: the component has no HTTP probe kubepki can run).
    url: str | None
    #: True when it answered 200–399, False when it answered otherwise or not at all, None when not asked.
    healthy: bool | None
    status: int | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def message(self) -> str:
        """One line for a person."""
        if self.url is None:
            return f"{self.component.value}: no health probe to ask ({self.error})"
        if self.healthy:
            return f"{self.component.value}: healthy ({self.url} answered {self.status})"
        answer = f"answered {self.status}" if self.status is not None else self.error
        return f"{self.component.value}: not healthy ({self.url} {answer})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"component": self.component.value, "url": self.url, "healthy": self.healthy,
                "status": self.status, "error": self.error, "seconds": round(self.seconds, 3)}


def health_url(node: Node, component: Component | str, *,
               host: str | None = None) -> tuple[str, str, int, str] | None:
    """Where the kubelet probes ``component`` on ``node``: (scheme, host, port, path), or None without a probe.

    ``host`` replaces the probe's own host (an advertise address reached another way).
    """
    comp = Component(component)
    if comp is Component.KUBELET:
        config = node.profile.kubelet.config
        port = config.get("healthzPort", _KUBELET_HEALTHZ[1])
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            return None  # healthzPort 0 disables the endpoint
        address = config.get("healthzBindAddress") or _KUBELET_HEALTHZ[0]
        if address in ("0.0.0.0", "::"):  # noqa: S104  -- a wildcard bind is reached on loopback
            address = "127.0.0.1"
        return "http", host or str(address), port, "/healthz"
    manifest = node.profile.manifests.get(comp.value)
    probe = manifest.health_probe() if manifest is not None else None
    if probe is None:
        return None
    return probe.scheme.lower(), host or probe.host or "127.0.0.1", probe.port, probe.path


def check_health(node: Node, components: Iterable[Component | str], *, host: str | None = None,
                 timeout: float = 5.0) -> tuple[HealthCheck, ...]:
    """Ask each of ``components`` on ``node`` for its health, once, as the kubelet's probe does.

    Never raises for the network: a refused or timed-out probe is an unhealthy result.
    """
    out = []
    for component in components:
        comp = Component(component)
        where = health_url(node, comp, host=host)
        if where is None:
            out.append(HealthCheck(component=comp, url=None, healthy=None,
                                   error="its manifest or kubelet configuration names none"))
            continue
        out.append(_probe(comp, *where, timeout=timeout))
    return tuple(out)


def _probe(comp: Component, scheme: str, host: str, port: int, path: str, *, timeout: float) -> HealthCheck:
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{port}{path}"
    started = time.monotonic()
    conn: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # as the kubelet's prober: health, not identity
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "kubepki-health", "Accept": "*/*"})
        response = conn.getresponse()
        response.read(4096)
        status = response.status
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        return HealthCheck(component=comp, url=url, healthy=False, error=str(exc) or type(exc).__name__,
                           seconds=time.monotonic() - started)
    finally:
        conn.close()
    return HealthCheck(component=comp, url=url, healthy=200 <= status < 400, status=status,
                       seconds=time.monotonic() - started)
