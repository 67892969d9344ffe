"""The Docker engine as a container runtime: clusters on Docker through cri-dockerd.

Since Kubernetes 1.24 the kubelet reaches Docker through cri-dockerd, which
names containers ``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`` and labels
them with ``io.kubernetes.container.name``, ``io.kubernetes.pod.name``,
``io.kubernetes.pod.namespace`` and ``io.kubernetes.pod.uid`` (cri-dockerd's
``core/naming.go``; the labels are the kubelet's ``pkg/kubelet/types/labels.go``).

:class:`DockerRuntime` lists those containers with their state and ``StartedAt``,
stops and removes them; :data:`DOCKER_METHOD` restarts a component through it. It is the only kubepki
module that uses the ``docker`` SDK, and it imports it only when a method runs,
so ``import kubepki`` never loads it. Every SDK or connection error becomes a
:class:`~kubepki.RestartError`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from kubepki.errors import RestartError
from kubepki.node import Node
from kubepki.restarts import ContainerInfo, Instance, Method, Runtime
from kubepki.restarts.methods._container import (
    LABEL_CONTAINER,
    LABEL_NAMESPACE,
    LABEL_POD,
    LABEL_POD_UID,
    ContainerMethod,
)

__all__ = ["DOCKER_METHOD", "DockerRuntime", "docker_container_info", "parse_docker_time", "parse_kubelet_name"]


_NAME_RE = re.compile(r"^/?k8s_(?P<container>[^_]+)_(?P<pod>[^_]+)_(?P<ns>[^_]+)_(?P<uid>[^_]+)_(?P<attempt>\d+)$")
_TIME_RE = re.compile(r"^(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)$")


def parse_docker_time(text: str | None) -> dt.datetime | None:
    """Docker's RFC 3339 times with nanoseconds, as UTC; None for Go's zero time or garbage."""
    if not text:
        return None
    m = _TIME_RE.match(text)
    if m is None:
        return None
    frac = (m.group("frac") or "")[:6].ljust(6, "0")
    zone = "+00:00" if m.group("zone") == "Z" else m.group("zone")
    when = dt.datetime.fromisoformat(f"{m.group('base')}.{frac}{zone}").astimezone(dt.timezone.utc)
    if when.year <= 1:
        return None  # "0001-01-01T00:00:00Z": never started
    return when


def parse_kubelet_name(name: str) -> dict[str, str] | None:
    """The parts of a cri-dockerd container name, or None when it is not one."""
    m = _NAME_RE.match(name)
    return m.groupdict() if m else None


class DockerRuntime:
    """A Docker engine reached through its API socket.

    ``base_url`` is the engine's address (``unix:///var/run/docker.sock``); None
    reads ``DOCKER_HOST`` like the ``docker`` command. ``namespace`` limits the
    containers to one pod namespace (None: all). ``stop_timeout`` is the grace
    period a stopped container gets before it is killed (the kubelet's default
    for a pod is 30). Pass ``client`` to reuse a ``docker.APIClient``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        namespace: str | None = "kube-system",
        timeout: float = 30.0,
        stop_timeout: int = 30,
        client: Any = None,
    ) -> None:
        self.base_url = base_url
        self.namespace = namespace
        self.timeout = timeout
        self.stop_timeout = stop_timeout
        self._client = client

    def __repr__(self) -> str:
        return f"DockerRuntime({self.base_url!r})"

    @property
    def name(self) -> str:
        """``docker``."""
        return "docker"

    def _errors(self) -> tuple[type[BaseException], ...]:
        import docker.errors
        import requests.exceptions

        return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)

    def _api(self) -> Any:
        if self._client is None:
            import docker

            self._probe()
            try:
                if self.base_url is None:
                    self._client = docker.from_env(timeout=int(self.timeout)).api
                else:
                    self._client = docker.APIClient(base_url=self.base_url, version="auto",
                                                    timeout=int(self.timeout))
            except self._errors() as exc:
                raise RestartError(f"cannot reach the Docker engine at {self.base_url or 'DOCKER_HOST'}: "
                                   f"{_short(exc)}") from None
        return self._client

    def __enter__(self) -> DockerRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _probe(self) -> None:
        """Fail early, with the address, when a unix socket engine is not there.

        The SDK would leave the socket of a failed connection open (it never
        closes a socket whose ``connect`` raised).
        """
        url = self.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if not url.startswith("unix://"):
            return
        path = url[len("unix://") :]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(min(self.timeout, 5.0))
            try:
                sock.connect(path)
            except OSError as exc:
                raise RestartError(f"cannot reach the Docker engine at {url}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the connection to the engine (it is opened again when needed)."""
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def containers(self, *, include_stopped: bool = False) -> Sequence[ContainerInfo]:
        """The containers the kubelet created (labelled by it), sandboxes included."""
        api = self._api()
        labels = [LABEL_CONTAINER]
        if self.namespace is not None:
            labels.append(f"{LABEL_NAMESPACE}={self.namespace}")
        try:
            listed = api.containers(all=include_stopped, filters={"label": labels})
        except self._errors() as exc:
            raise RestartError(f"cannot list Docker containers: {_short(exc)}") from None
        out: list[ContainerInfo] = []
        for summary in listed:
            info = self._inspect(str(summary.get("Id", "")))
            if info is not None and (include_stopped or info.running):
                out.append(info)
        out.sort(key=lambda c: (c.name, c.started_at or dt.datetime.min.replace(tzinfo=dt.timezone.utc)))
        return tuple(out)

    def container(self, container_id: str) -> ContainerInfo | None:
        """One container by id or name, or None when it does not exist."""
        return self._inspect(container_id)

    def _inspect(self, container_id: str) -> ContainerInfo | None:
        import docker.errors

        api = self._api()
        try:
            data = api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None  # removed between listing and inspecting
        except self._errors() as exc:
            raise RestartError(f"cannot inspect Docker container {container_id[:12]}: {_short(exc)}") from None
        return docker_container_info(data)

    def instances(self) -> Sequence[Instance]:
        """Running containers of the five daemons, as :class:`~kubepki.restarts._observe.Instance` values."""
        out = []
        for c in self.containers():
            inst = c.as_instance(self.name)
            if inst is not None:
                out.append(inst)
        return out

    def stop(self, container_id: str, *, timeout: int | None = None) -> None:
        """Stop a container: SIGTERM, then SIGKILL after ``timeout`` seconds (default :attr:`stop_timeout`).

        Stopping a stopped or absent container is not an error.
        """
        import docker.errors

        api = self._api()
        grace = self.stop_timeout if timeout is None else timeout
        try:
            api.stop(container_id, timeout=grace)
        except docker.errors.NotFound:
            return
        except self._errors() as exc:
            raise RestartError(f"cannot stop Docker container {container_id[:12]}: {_short(exc)}") from None

    def remove(self, container_id: str) -> None:
        """Stop and remove a container; one already gone is not an error."""
        import docker.errors

        api = self._api()
        try:
            api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            return
        except self._errors() as exc:
            raise RestartError(f"cannot remove Docker container {container_id[:12]}: {_short(exc)}") from None


def docker_container_info(data: Mapping[str, Any]) -> ContainerInfo:
    """A :class:`~kubepki.restarts._observe.ContainerInfo` from ``docker inspect`` output."""
    config = data.get("Config") or {}
    state = data.get("State") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    name = str(data.get("Name", "")).lstrip("/")
    parts = parse_kubelet_name(name) or {}
    attempt_text = parts.get("attempt")
    argv = tuple(str(a) for a in [data.get("Path") or "", *(data.get("Args") or [])] if a)
    return ContainerInfo(
        id=str(data.get("Id", "")),
        name=name,
        container_name=labels.get(LABEL_CONTAINER) or parts.get("container", ""),
        pod_name=labels.get(LABEL_POD) or parts.get("pod"),
        namespace=labels.get(LABEL_NAMESPACE) or parts.get("ns"),
        pod_uid=labels.get(LABEL_POD_UID) or parts.get("uid"),
        attempt=int(attempt_text) if attempt_text is not None else None,
        state=str(state.get("Status", "unknown")),
        started_at=parse_docker_time(state.get("StartedAt")),
        labels=labels,
        argv=argv,
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _DockerMethod(ContainerMethod):
    """The ``docker`` restart method: through the engine at ``DOCKER_HOST`` unless a runtime is given."""

    def default_runtime(self, node: Node) -> Runtime | None:
        """A :class:`DockerRuntime` from ``DOCKER_HOST`` (the node's own engine)."""
        return DockerRuntime()


#: The ``docker`` restart method (see :class:`~kubepki.restarts.methods.ContainerMethod`).
DOCKER_METHOD = _DockerMethod(Method.DOCKER, "docker")
