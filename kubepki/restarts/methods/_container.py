"""Restarting a static pod's container through its runtime, without feeding the kubelet's back-off.

The kubelet restarts a container that exited, but it backs off: each exit it
finds within five minutes of the previous one doubles the wait (10 s, 20 s,
40 s… up to 300 s; ``doBackOff`` in kubelet ``kuberuntime_manager.go``), and on a
real kubelet a few restarts in a row took 55–79 s. The back-off is keyed on
the *exited* container's status: a container that is gone has none, and the
kubelet starts the next one at once. So :class:`ContainerMethod` stops the
container gracefully (SIGTERM and the grace period, so the component shuts
down cleanly), removes it and the pod's earlier exited containers of that
component (the kubelet counts any of them), and then waits on the kubelet's own
state: a new container of the same pod, running, started after the stop.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePosixPath

from kubepki._clock import iso
from kubepki.catalog import Component
from kubepki.errors import KubepkiError, RestartError
from kubepki.node import Node
from kubepki.restarts import ContainerInfo, Instance, Method, RestartContext, Runtime

__all__ = ["LABEL_CONTAINER", "LABEL_NAMESPACE", "LABEL_POD", "LABEL_POD_UID", "ContainerMethod"]

# The kubelet's labels on every container it creates (pkg/kubelet/types/labels.go).
LABEL_CONTAINER = "io.kubernetes.container.name"
LABEL_POD = "io.kubernetes.pod.name"
LABEL_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# Container start times come from the runtime's clock with microseconds at best.
_CLOCK_SLACK = dt.timedelta(milliseconds=1)


class ContainerMethod:
    """Restart a component by stopping and removing its container (see the module docs).

    ``method`` is the :class:`~kubepki.restarts.Method` this stands for and
    ``what`` names the runtime in dry-run messages. Subclasses say which runtime
    to use when the caller gives none (:meth:`default_runtime`).
    """

    def __init__(self, method: Method, what: str) -> None:
        self._method = method
        self._what = what

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._method.value!r})"

    @property
    def method(self) -> Method:
        """The method this implements."""
        return self._method

    def describe(self, component: Component) -> str:
        """The dry-run words."""
        return (f"by stopping its container gracefully and removing it through {self._what} "
                "(the kubelet starts the next one)")

    def default_runtime(self, node: Node) -> Runtime | None:
        """None: the caller must give a runtime."""
        return None

    def restart(self, ctx: RestartContext, component: Component, before: Instance | None) -> Instance:
        """Stop and remove the newest running container of ``component``; wait for the kubelet's next one."""
        runtime = ctx.runtime
        if runtime is None:
            raise RestartError(f"the {self._method.value} method needs a container runtime")
        current = [c for c in runtime.containers() if c.component is component and c.running]
        if not current:
            current = self._between_attempts(ctx, runtime, component)
            fresh = _started_after_write(ctx, current)
            if fresh is not None:
                return fresh
        old = max(current, key=lambda c: c.started_at or _EPOCH)
        stopped_at = dt.datetime.now(dt.timezone.utc) - _CLOCK_SLACK
        ctx.say(f"stopping container {old.name} ({old.id[:12]}) gracefully")
        runtime.stop(old.id)
        # An exited container is what the kubelet's back-off counts; a removed one is not. The kubelet
        # looks at *every* exited container of that name in the pod (doBackOff takes the first exited
        # status it finds), so the dead ones it keeps for `logs --previous` (an earlier exit after a
        # lost leader election, say) go too, or the next start still waits out the back-off.
        ctx.say(f"removing container {old.name} ({old.id[:12]})")
        runtime.remove(old.id)
        for dead in runtime.containers(include_stopped=True):
            # exited only: a container the kubelet has just created for the next start is not dead
            if dead.id != old.id and dead.state == "exited" and dead.same_pod_container(old):
                ctx.say(f"removing the exited container {dead.name} ({dead.id[:12]}) the kubelet's back-off "
                        "would count (its logs go with it)")
                try:
                    runtime.remove(dead.id)
                except KubepkiError as exc:  # the kubelet's own garbage collection may race us: not fatal
                    ctx.say(f"could not remove {dead.id[:12]}: {exc}")

        def replacement() -> Instance | None:
            for c in runtime.containers():
                if _is_next(c, old, stopped_at):
                    inst = c.as_instance(runtime.name)
                    if inst is not None:
                        return inst
            return None

        ctx.say(f"waiting for the kubelet to start a new {component.value} container")
        inst: Instance = ctx.wait(f"a new {component.value} container", ctx.timeouts.start, replacement)
        ctx.say(f"{component.value} runs again in {inst.name} (started "
                f"{iso(inst.started_at, timespec='milliseconds')})")
        return inst


    @staticmethod
    def _between_attempts(ctx: RestartContext, runtime: Runtime, component: Component) -> list[ContainerInfo]:
        """Wait for the kubelet to start a component that exited by itself and sits in its back-off.

        kube-controller-manager and kube-scheduler exit when they lose their leader lease, as they do
        while kube-apiserver restarts; the kubelet starts them again after its back-off. Only a
        component the runtime has never run here is an error.
        """
        if not any(c.component is component for c in runtime.containers(include_stopped=True)):
            raise RestartError(f"no running {component.value} container found in {runtime.name}",
                               name=component.value)
        ctx.say(f"no {component.value} container runs now: waiting for the kubelet to start the next one "
                "(it may be in its back-off)")

        def running() -> list[ContainerInfo]:
            return [c for c in runtime.containers() if c.component is component and c.running]

        found: list[ContainerInfo] = ctx.wait(f"the kubelet to start {component.value} again",
                                              ctx.timeouts.start, running)
        return found


def _started_after_write(ctx: RestartContext, current: list[ContainerInfo]) -> Instance | None:
    """The newest container as an instance when it started after every file of the step was written."""
    newest = max(current, key=lambda c: c.started_at or _EPOCH)
    if newest.started_at is None or ctx.step is None:
        return None
    written = [st.mtime for r in ctx.step.reasons for p in r.paths
               if (st := ctx.node.fs.stat(PurePosixPath(p))) is not None]
    if not written or newest.started_at.timestamp() <= max(written):
        return None
    inst = newest.as_instance(ctx.runtime.name if ctx.runtime is not None else "runtime")
    if inst is not None:
        ctx.say(f"{inst.component.value} started again in {inst.name} after its files were written: it reads "
                "them already, nothing to stop")
    return inst


def _is_next(c: ContainerInfo, old: ContainerInfo, stopped_at: dt.datetime) -> bool:
    """Is ``c`` the kubelet's next container for ``old``'s pod: another id, running, started after the stop?"""
    if not c.running or c.id == old.id or not c.same_pod_container(old) or c.started_at is None:
        return False
    if old.pod_uid and c.pod_uid and old.pod_uid != c.pod_uid:
        return False
    return c.started_at >= stopped_at and (old.started_at is None or c.started_at > old.started_at)
