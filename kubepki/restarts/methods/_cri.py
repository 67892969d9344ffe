"""Container runtimes reached through the CRI: containerd and CRI-O, without ``crictl``.

Since Kubernetes 1.24 the kubelet drives containerd or CRI-O through the
Container Runtime Interface (``runtime.v1``, gRPC on a unix socket), and kubeadm
uses ``crictl`` for every runtime (kubeadm PR #107317). :class:`CRIRuntime`
speaks that API itself, from the subset of ``k8s.io/cri-api``'s ``api.proto``
kept in :mod:`kubepki.restarts.methods._cri_api`, so kubepki needs only the runtime's socket: it
works inside a privileged pod that mounts ``/run/containerd/containerd.sock``
and nothing else.

It lists the containers the kubelet created (labelled ``io.kubernetes.*`` by
the kubelet's ``pkg/kubelet/types/labels.go``) with their state, start time,
attempt and command line, stops one (:meth:`CRIRuntime.stop`) and removes it
(:meth:`CRIRuntime.remove`); :data:`CRI_METHOD` restarts a component through it.

``grpcio`` and ``protobuf`` come with the ``cri`` extra (``pip install
'kubepki[cri]'``) and are imported only when a call is made, so neither
``import kubepki`` nor importing this module loads them. Every gRPC failure
becomes a :class:`~kubepki.RestartError` whose one-line message names the
socket: absent, not a socket, refusing connections, too slow, or not a CRI
runtime at all.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs

from kubepki.errors import ConfigError, RestartError
from kubepki.node import Node
from kubepki.restarts import ContainerInfo, Instance, Method, Runtime, component_from_name
from kubepki.restarts.methods._container import (
    LABEL_CONTAINER,
    LABEL_NAMESPACE,
    LABEL_POD,
    LABEL_POD_UID,
    ContainerMethod,
)

if TYPE_CHECKING:  # pragma: no cover - types only; the module is imported when a call is made
    from kubepki.restarts.methods._cri_api import api_pb2

__all__ = [
    "CONTAINERD_ENDPOINT",
    "CRIO_ENDPOINT",
    "CRI_DOCKERD_ENDPOINT",
    "CRI_METHOD",
    "CRIRuntime",
    "CRIVersion",
    "socket_path",
]

#: containerd's default CRI endpoint (kubeadm's default since 1.24).
CONTAINERD_ENDPOINT = "unix:///run/containerd/containerd.sock"
#: CRI-O's default endpoint.
CRIO_ENDPOINT = "unix:///var/run/crio/crio.sock"
#: cri-dockerd's default endpoint (Docker Engine behind the CRI, Mirantis/cri-dockerd).
CRI_DOCKERD_ENDPOINT = "unix:///var/run/cri-dockerd.sock"

#: The CRI version kubepki asks for in ``Version`` (the kubelet sends the same).
API_VERSION = "v1"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_NAMES = {"containerd.sock": "containerd", "crio.sock": "cri-o", "cri-dockerd.sock": "cri-dockerd"}
# runtime.v1 ContainerState numbers -> the state words ContainerInfo uses (as Docker's).
_STATES = {0: "created", 1: "running", 2: "exited", 3: "unknown"}
_CONTAINER_RUNNING = 1
_SANDBOX_READY = 0
# Large enough for a full ListContainers of a busy node with verbose statuses.
_MAX_MESSAGE = 64 * 1024 * 1024


def socket_path(endpoint: str | os.PathLike[str]) -> Path:
    """The socket file of a CRI endpoint: ``unix:///run/x.sock``, ``unix:/run/x.sock`` or ``/run/x.sock``.

    Raises :class:`~kubepki.ConfigError` for other schemes (``tcp://``,
    ``npipe://``) and relative paths: on Linux the kubelet reaches its runtime
    through a unix socket only.
    """
    text = os.fspath(endpoint)
    if text.startswith("unix://"):
        text = text[len("unix://"):]
    elif text.startswith("unix:"):
        text = text[len("unix:"):]
    elif "://" in text:
        raise ConfigError(f"not a unix socket endpoint: {os.fspath(endpoint)!r} (expected unix:///path/to.sock)")
    if not text.startswith("/"):
        raise ConfigError(f"a CRI endpoint needs an absolute socket path: {os.fspath(endpoint)!r}")
    return Path(text)


@attrs.frozen(kw_only=True)
class CRIVersion:
    """What a runtime answers to ``Version``."""

    #: The CRI API version it speaks (``v1``).
    version: str
    #: ``containerd``, ``cri-o``, ``docker``...
    runtime_name: str
    #: The runtime's own version (``1.6.20~ds1``).
    runtime_version: str
    #: The runtime's CRI API version (``v1``).
    runtime_api_version: str

    def __str__(self) -> str:
        return f"{self.runtime_name} {self.runtime_version} (CRI {self.runtime_api_version})"

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"version": self.version, "runtime_name": self.runtime_name,
                "runtime_version": self.runtime_version, "runtime_api_version": self.runtime_api_version}


def _modules() -> tuple[Any, ModuleType, Any]:
    """``grpc``, ``api_pb2`` and ``api_pb2_grpc``, or RestartError saying which extra to install.

    grpc and the generated service stubs carry no types, so they are loaded by
    name and used as Any; the messages are typed by ``api_pb2.pyi``.
    """
    try:
        grpc = importlib.import_module("grpc")
        from kubepki.restarts.methods._cri_api import api_pb2

        api_pb2_grpc = importlib.import_module("kubepki.restarts.methods._cri_api.api_pb2_grpc")
    except ImportError as exc:
        raise RestartError(f"the CRI client needs grpcio and protobuf ({exc}): "
                           "pip install 'kubepki[cri]'") from None
    return grpc, api_pb2, api_pb2_grpc


class CRIRuntime:
    """A container runtime reached through its CRI socket (containerd, CRI-O, cri-dockerd).

    ``endpoint`` is the runtime's socket (``unix:///run/containerd/containerd.sock``,
    the default, or :data:`CRIO_ENDPOINT`...). ``namespace`` limits containers to
    one pod namespace (None: all). ``timeout`` bounds every call, in seconds;
    ``stop_timeout`` is the grace period a stopped container gets before it is
    killed (the kubelet's default for a pod is 30). ``name`` is what messages and
    :attr:`Instance.source <kubepki.restarts._observe.Instance.source>` call the runtime;
    by default it comes from the socket's name (``containerd``, ``cri-o``), else
    ``cri``.

    The connection opens on the first call and is reused; :meth:`close` (or a
    ``with`` block) closes it. Nothing is checked when constructing, so a
    runtime that is not up yet can be named.
    """

    def __init__(
        self,
        endpoint: str | os.PathLike[str] = CONTAINERD_ENDPOINT,
        *,
        namespace: str | None = "kube-system",
        timeout: float = 10.0,
        stop_timeout: int = 30,
        name: str | None = None,
    ) -> None:
        self.socket = socket_path(endpoint)
        #: The endpoint as gRPC takes it: ``unix:///path``.
        self.endpoint = f"unix://{self.socket}"
        self.namespace = namespace
        self.timeout = timeout
        self.stop_timeout = stop_timeout
        self._name = name or _NAMES.get(self.socket.name, "cri")
        self._channel: Any = None
        self._stub: Any = None

    def __repr__(self) -> str:
        return f"CRIRuntime({self.endpoint!r})"

    @property
    def name(self) -> str:
        """``containerd``, ``cri-o``, ``cri-dockerd`` or ``cri`` (see the class)."""
        return self._name

    def __enter__(self) -> CRIRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (it opens again on the next call)."""
        if self._channel is not None:
            try:
                self._channel.close()
            finally:
                self._channel = self._stub = None

    # -- calls -----------------------------------------------------------------------

    def _runtime_stub(self) -> Any:
        if self._stub is None:
            grpc, _, api_pb2_grpc = _modules()
            self._channel = grpc.insecure_channel(self.endpoint, options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                # A unix socket needs no DNS; keep the authority out of the path.
                ("grpc.default_authority", "localhost"),
                # gRPC shares connections between channels to one target, and one that
                # failed waits out a reconnect back-off even for a new channel: keep ours
                # private, and the back-off short (a local runtime restarts in seconds).
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ])
            self._stub = api_pb2_grpc.RuntimeServiceStub(self._channel)
        return self._stub

    def _call(self, method: str, request: Any, *, timeout: float | None = None, missing_ok: bool = False) -> Any:
        """``RuntimeService/<method>(request)``; RestartError for every failure, None for NOT_FOUND if allowed."""
        grpc, _, _ = _modules()
        limit = timeout if timeout is not None else self.timeout
        for retry in (True, False):
            try:
                return getattr(self._runtime_stub(), method)(request, timeout=limit)
            except grpc.RpcError as exc:
                code, details = _status(exc)
                if missing_ok and code is grpc.StatusCode.NOT_FOUND:
                    return None
                if retry and code is grpc.StatusCode.UNAVAILABLE:
                    # A channel that failed once waits out its reconnect back-off even when
                    # the runtime is back (restarted meanwhile): try once on a new channel.
                    self.close()
                    continue
                raise self._error(method, code, details, limit) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, method: str, code: Any, details: str, timeout: float) -> RestartError:
        grpc, _, _ = _modules()
        where = self.endpoint
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None):
            problem = self.socket_problem()
            if problem is not None:
                return RestartError(problem, path=str(self.socket))
        if code is grpc.StatusCode.UNAVAILABLE:
            message = (f"the container runtime at {where} refuses connections ({_first_line(details)}); "
                       f"is {self._what()} running?")
        elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
            message = f"the container runtime at {where} did not answer {method} within {timeout:g}s"
        elif code is grpc.StatusCode.UNIMPLEMENTED:
            message = (f"{where} does not serve the CRI runtime.v1 {method} call: is it a CRI runtime "
                       "with the CRI enabled (containerd: \"cri\" must not be in disabled_plugins)?")
        else:
            name = code.name if code is not None else "error"
            message = f"CRI {method} on {where} failed: {name}: {_first_line(details)}"
        return RestartError(message, path=str(self.socket))

    def socket_problem(self) -> str | None:
        """Why the socket cannot be used, seen from the filesystem; None when it is a socket."""
        try:
            st = self.socket.stat()
        except FileNotFoundError:
            return (f"no container runtime socket at {self.socket}: is {self._what()} running, "
                    "and is the socket mounted here?")
        except OSError as exc:
            return f"cannot use the container runtime socket {self.socket}: {exc.strerror or exc}"
        if not stat.S_ISSOCK(st.st_mode):
            return f"{self.socket} is not a socket, so no container runtime listens there"
        if not os.access(self.socket, os.R_OK | os.W_OK):
            return f"no permission to use the container runtime socket {self.socket} (run as root)"
        return None

    def _what(self) -> str:
        return self.name if self.name != "cri" else "the container runtime"

    # -- observing -------------------------------------------------------------------

    def version(self) -> CRIVersion:
        """The runtime's name, version and CRI API version; RestartError when it cannot be reached."""
        _, pb, _ = _modules()
        answer: api_pb2.VersionResponse = self._call("Version", pb.VersionRequest(version=API_VERSION))
        return CRIVersion(version=answer.version, runtime_name=answer.runtime_name,
                          runtime_version=answer.runtime_version, runtime_api_version=answer.runtime_api_version)

    def _selector(self, labels: Mapping[str, str] | None) -> dict[str, str]:
        selector = dict(labels or {})
        if self.namespace is not None:
            selector.setdefault(LABEL_NAMESPACE, self.namespace)
        return selector

    def pod_sandboxes(self, *, include_stopped: bool = False,
                      labels: Mapping[str, str] | None = None) -> tuple[ContainerInfo, ...]:
        """The pod sandboxes, as containers named ``POD`` (the kubelet's infra container name).

        A ready sandbox has the state ``running``, one not ready ``exited``; the
        start time is the sandbox's creation time (the CRI reports no other).
        ``labels`` must all match (the CRI's label selector).
        """
        _, pb, _ = _modules()
        filt = pb.PodSandboxFilter(label_selector=self._selector(labels))
        if not include_stopped:
            filt.state.CopyFrom(pb.PodSandboxStateValue(state=_SANDBOX_READY))
        answer: api_pb2.ListPodSandboxResponse = self._call("ListPodSandbox", pb.ListPodSandboxRequest(filter=filt))
        out = [sandbox_info(s) for s in answer.items]
        out.sort(key=_order)
        return tuple(out)

    def containers(self, *, include_stopped: bool = False, labels: Mapping[str, str] | None = None,
                   sandboxes: bool = True) -> Sequence[ContainerInfo]:
        """The containers the kubelet created (labelled by it), with their sandboxes unless ``sandboxes=False``.

        Start times come from ``ContainerStatus``; for the five daemons the
        status is verbose, which gives the command line. ``labels`` must all
        match. A container removed while listing is left out.
        """
        _, pb, _ = _modules()
        filt = pb.ContainerFilter(label_selector=self._selector(labels))
        if not include_stopped:
            filt.state.CopyFrom(pb.ContainerStateValue(state=_CONTAINER_RUNNING))
        answer: api_pb2.ListContainersResponse = self._call("ListContainers", pb.ListContainersRequest(filter=filt))
        out: list[ContainerInfo] = []
        for listed in answer.containers:
            if LABEL_CONTAINER not in listed.labels:
                continue  # not the kubelet's (crictl run, another client)
            verbose = component_from_name(listed.labels[LABEL_CONTAINER]) is not None
            info = self._status(listed.id, verbose=verbose)
            if info is not None and (include_stopped or info.running):
                out.append(info)
        if sandboxes:
            out.extend(self.pod_sandboxes(include_stopped=include_stopped, labels=labels))
        out.sort(key=_order)
        return tuple(out)

    def container(self, container_id: str) -> ContainerInfo | None:
        """One container by id (verbose status), or None when the runtime has no such container."""
        return self._status(container_id, verbose=True)

    def _status(self, container_id: str, *, verbose: bool) -> ContainerInfo | None:
        _, pb, _ = _modules()
        answer: api_pb2.ContainerStatusResponse | None = self._call(
            "ContainerStatus", pb.ContainerStatusRequest(container_id=container_id, verbose=verbose), missing_ok=True)
        if answer is None or not answer.status.id:
            return None
        return cri_container_info(answer.status, argv=argv_from_info(answer.info))

    def instances(self) -> Sequence[Instance]:
        """Running containers of the five daemons, as :class:`~kubepki.restarts._observe.Instance` values."""
        out = []
        for c in self.containers(sandboxes=False):
            inst = c.as_instance(self.name)
            if inst is not None:
                out.append(inst)
        return out

    # -- acting ----------------------------------------------------------------------

    def stop(self, container_id: str, *, timeout: int | None = None) -> None:
        """Stop a container, killing it after ``timeout`` seconds (default :attr:`stop_timeout`).

        The kubelet sees the container exit and starts the next attempt in the
        same sandbox (subject to its back-off while the exited container is
        there). Stopping a stopped or absent container is not an error.
        """
        _, pb, _ = _modules()
        grace = self.stop_timeout if timeout is None else timeout
        self._call("StopContainer", pb.StopContainerRequest(container_id=container_id, timeout=grace),
                   timeout=grace + self.timeout, missing_ok=True)

    def remove(self, container_id: str) -> None:
        """Stop, then remove a container; one already gone is not an error."""
        _, pb, _ = _modules()
        self.stop(container_id)
        self._call("RemoveContainer", pb.RemoveContainerRequest(container_id=container_id), missing_ok=True)

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop every container of a pod sandbox and the sandbox itself; idempotent."""
        _, pb, _ = _modules()
        self._call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id),
                   timeout=self.stop_timeout + self.timeout, missing_ok=True)

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove a pod sandbox with its containers, stopping them first; idempotent."""
        _, pb, _ = _modules()
        self._call("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                   timeout=self.stop_timeout + self.timeout, missing_ok=True)


def _status(exc: BaseException) -> tuple[Any, str]:
    """(grpc.StatusCode or None, details) of a gRPC error."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    try:
        return (code() if callable(code) else None), str((details() if callable(details) else None) or exc)
    except Exception:  # an error object that cannot describe itself
        return None, str(exc)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "no details"


def _order(c: ContainerInfo) -> tuple[str, dt.datetime]:
    return c.name, c.started_at or _EPOCH


def from_nanoseconds(ns: int) -> dt.datetime | None:
    """A CRI timestamp (nanoseconds since the epoch) as UTC, to the microsecond; None for 0 (not set)."""
    if ns <= 0:
        return None
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def _kubelet_name(container: str, labels: Mapping[str, str], attempt: int) -> str:
    pod, ns, uid = labels.get(LABEL_POD), labels.get(LABEL_NAMESPACE), labels.get(LABEL_POD_UID)
    if pod and ns and uid:
        # The names cri-dockerd and CRI-O give; containerd keeps the same parts without "k8s_".
        return f"k8s_{container}_{pod}_{ns}_{uid}_{attempt}"
    return container


def cri_container_info(status: api_pb2.ContainerStatus, *, argv: Sequence[str] = ()) -> ContainerInfo:
    """A :class:`~kubepki.restarts._observe.ContainerInfo` from a CRI ``ContainerStatus``."""
    labels = dict(status.labels)
    container = labels.get(LABEL_CONTAINER) or status.metadata.name
    attempt = int(status.metadata.attempt)
    return ContainerInfo(
        id=status.id,
        name=_kubelet_name(container, labels, attempt),
        container_name=container,
        pod_name=labels.get(LABEL_POD),
        namespace=labels.get(LABEL_NAMESPACE),
        pod_uid=labels.get(LABEL_POD_UID),
        attempt=attempt,
        state=_STATES.get(int(status.state), "unknown"),
        started_at=from_nanoseconds(status.started_at),
        labels=labels,
        argv=tuple(argv),
    )


def sandbox_info(sandbox: api_pb2.PodSandbox) -> ContainerInfo:
    """A pod sandbox as a :class:`~kubepki.restarts._observe.ContainerInfo` named ``POD``."""
    labels = dict(sandbox.labels)
    meta = sandbox.metadata
    attempt = int(meta.attempt)
    full = {LABEL_POD: meta.name, LABEL_NAMESPACE: meta.namespace, LABEL_POD_UID: meta.uid, **labels}
    return ContainerInfo(
        id=sandbox.id,
        name=_kubelet_name("POD", full, attempt),
        container_name="POD",
        pod_name=full[LABEL_POD] or None,
        namespace=full[LABEL_NAMESPACE] or None,
        pod_uid=full[LABEL_POD_UID] or None,
        attempt=attempt,
        state="running" if int(sandbox.state) == _SANDBOX_READY else "exited",
        started_at=from_nanoseconds(sandbox.created_at),
        labels=labels,
    )


def argv_from_info(info: Mapping[str, str]) -> tuple[str, ...]:
    """The command line from a verbose ``ContainerStatus``'s ``info``; () when it is not there.

    containerd and CRI-O both put a JSON object under ``info`` whose
    ``runtimeSpec.process.args`` is the OCI process; containerd's also holds the
    CRI ``config`` (``command`` then ``args``), used when the spec is absent.
    """
    text = info.get("info")
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(data, dict):
        return ()
    spec = data.get("runtimeSpec")
    process = spec.get("process") if isinstance(spec, dict) else None
    args = process.get("args") if isinstance(process, dict) else None
    if isinstance(args, list) and args:
        return tuple(str(a) for a in args)
    config = data.get("config")
    if isinstance(config, dict):
        parts = [*(config.get("command") or []), *(config.get("args") or [])]
        return tuple(str(a) for a in parts)
    return ()


class _CRIMethod(ContainerMethod):
    """The ``cri`` restart method: through the runtime found from the node's sockets unless one is given."""

    def default_runtime(self, node: Node) -> Runtime | None:
        """The runtime :func:`~kubepki.restarts.methods.detect_runtime` finds under the node's root."""
        from kubepki.restarts.methods import detect_runtime

        return detect_runtime(node.root)


#: The ``cri`` restart method (see :class:`~kubepki.restarts.methods.ContainerMethod`).
CRI_METHOD = _CRIMethod(Method.CRI, "the CRI")
