"""What a restart method works with: the node, its observers, the waits and the step's messages.

A restart method (``kubepki.restarts.methods``) implements :class:`RestartMethod`
and gets a :class:`RestartContext` for each step; it stops the component its own
way and returns the instance that runs afterwards. Waiting, observing and
reporting are the context's, so every method waits and speaks alike.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from kubepki._clock import iso
from kubepki.catalog import Component
from kubepki.errors import ConfigError, NodeError, RestartError
from kubepki.node import Node
from kubepki.restarts._observe import Instance, Observer, Runtime
from kubepki.restarts._served import CheckStatus, ServedCheck, check_served, serving_cert_path, serving_endpoint

if TYPE_CHECKING:  # pragma: no cover - types only
    from kubepki.restarts._restarts import RestartStep

__all__ = ["HELD_MANIFESTS_DIR", "Method", "Progress", "RestartContext", "RestartMethod", "Timeouts"]

#: Where the manifest method holds a manifest while its pod is stopped: beside the
#: manifests directory (so on the same filesystem, and a rename is atomic), never
#: inside it, since the kubelet runs every file it finds there.
HELD_MANIFESTS_DIR = "kubepki-held-manifests"


class Method(str, enum.Enum):
    """How a step restarts its component."""

    #: Move the static pod manifest out and back (kubeadm's documented way).
    MANIFEST = "manifest"
    #: Stop, then remove the container through Docker so the kubelet creates the next one.
    DOCKER = "docker"
    #: Stop, then remove the container through the CRI (containerd, CRI-O) so the kubelet creates the next one.
    CRI = "cri"
    #: ``systemctl restart kubelet`` on a node whose PID 1 is systemd with a kubelet unit.
    SYSTEMD = "systemd"
    #: Signal the node's kubelet process; whatever supervises it starts a new one.
    SIGNAL = "signal"
    #: Verify, wait and note steps restart nothing.
    NONE = "none"


@attrs.frozen(kw_only=True)
class Timeouts:
    """How long each wait of a restart may take, in seconds."""

    #: Until the old instance is gone. The kubelet looks at the manifests directory
    #: every 20 s (``fileCheckFrequency``), then grants the pod its grace period.
    stop: float = 90.0
    #: Until a new instance runs.
    start: float = 120.0
    #: Until the endpoint serves the on-disk certificate (restart and verify steps).
    serve: float = 60.0
    #: Pause between two looks.
    poll: float = 0.2

    @classmethod
    def coerce(cls, value: Timeouts | float | int) -> Timeouts:
        """A :class:`Timeouts`, or one number of seconds for every wait."""
        if isinstance(value, Timeouts):
            return value
        seconds = float(value)
        if seconds <= 0:
            raise ConfigError(f"timeouts must be positive, not {value!r}")
        return cls(stop=seconds, start=seconds, serve=seconds, poll=min(0.2, seconds / 10))


#: ``progress(step, message)``: hears about every phase of an apply.
Progress = Callable[["RestartStep", str], object]


@runtime_checkable
class RestartMethod(Protocol):
    """One way of restarting a component (see ``kubepki.restarts.methods``)."""

    @property
    def method(self) -> Method:
        """The :class:`Method` this implements."""
        ...

    def describe(self, component: Component) -> str:
        """How the component would be restarted, for a dry run (``by moving its static pod manifest…``)."""
        ...

    def default_runtime(self, node: Node) -> Runtime | None:
        """The container runtime to restart through when the caller gives none (None: needs none)."""
        ...

    def restart(self, ctx: RestartContext, component: Component, before: Instance | None) -> Instance:
        """Restart ``component`` (``before`` is its newest instance, if seen); return the new instance.

        Raises :class:`~kubepki.RestartError` when it cannot be done or the new
        instance does not appear in time.
        """
        ...


@attrs.define
class RestartContext:
    """State shared by the steps of one apply: what a :class:`RestartMethod` works with."""

    node: Node
    observer: Observer
    runtime: Runtime | None
    timeouts: Timeouts
    progress: Progress | None = None
    #: Where TLS endpoints are reached; None: where the node's flags say (else 127.0.0.1).
    served_host: str | None = None
    ports: Mapping[Component, int] = attrs.Factory(dict)
    #: The node's ``/proc`` (process methods read it).
    proc: str | os.PathLike[str] = "/proc"
    #: The caller's own way of restarting the kubelet, if any.
    kubelet_restart: Callable[[], None] | None = None
    step: RestartStep | None = None
    messages: list[str] = attrs.Factory(list)

    def say(self, text: str) -> None:
        """Record a message for the current step and tell ``progress``."""
        self.messages.append(text)
        if self.progress is not None and self.step is not None:
            self.progress(self.step, text)

    def instances(self, comp: Component) -> list[Instance]:
        """The running instances of ``comp``; RestartError when they cannot be observed."""
        try:
            return [i for i in self.observer.instances() if i.component is comp]
        except NodeError as exc:
            raise RestartError(f"cannot observe {comp.value}: {exc}") from None

    def newest(self, comp: Component) -> Instance | None:
        """The instance of ``comp`` that started last, if any runs."""
        found = self.instances(comp)
        return max(found, key=lambda i: i.started_at) if found else None

    def wait(self, what: str, seconds: float, check: Callable[[], Any]) -> Any:
        """Poll ``check`` until it returns something truthy; RestartError after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise RestartError(f"timed out after {seconds:g}s waiting for {what}")
            time.sleep(self.timeouts.poll)

    def wait_started_after(self, comp: Component, before: Instance | None) -> Instance:
        """Wait until an instance of ``comp`` runs that started after ``before``."""
        def fresh() -> Instance | None:
            inst = self.newest(comp)
            if inst is None or (before is not None and inst.started_at <= before.started_at):
                return None
            return inst

        self.say(f"waiting for {comp.value} to run again")
        inst: Instance = self.wait(f"{comp.value} to run again", self.timeouts.start, fresh)
        self.say(f"{comp.value} runs again ({inst.source} {inst.ident}, started "
                 f"{iso(inst.started_at, timespec='milliseconds')})")
        return inst

    def endpoint(self, comp: Component, inst: Instance | None) -> tuple[str, int]:
        """Where ``comp`` serves TLS, from the caller's overrides, then the instance's and node's flags."""
        return serving_endpoint(self.node, comp, inst.flags if inst is not None else None,
                                host=self.served_host, port=self.ports.get(comp))

    def wait_served(self, comp: Component, inst: Instance | None) -> ServedCheck | None:
        """Wait until ``comp`` serves its on-disk certificate; None when it serves none from disk."""
        flags = inst.flags if inst is not None else None
        path = serving_cert_path(self.node, comp, flags)
        if path is None or self.node.fs.stat(path) is None:
            return None
        host, port = self.endpoint(comp, inst)
        self.say(f"waiting for {comp.value} to serve {path} on {host}:{port}")
        last: list[ServedCheck] = []

        def matches() -> bool:
            check = check_served(self.node, comp, host=host, port=port, flags=flags,
                                 timeout=min(5.0, self.timeouts.serve))
            last[:] = [check]
            return check.status is CheckStatus.MATCH

        try:
            self.wait(f"{comp.value} to serve {path}", self.timeouts.serve, matches)
        except RestartError as exc:
            detail = f" ({last[0].message})" if last else ""
            raise RestartError(f"{exc}{detail}") from None
        self.say(last[0].message)
        return last[0]
