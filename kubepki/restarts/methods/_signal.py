"""The ``signal`` restart method: stop the node's kubelet process and let its supervisor start the next.

For a kubelet not run by the node's own systemd (a node in a mount namespace, a
kind-style node whose systemd is not PID 1 here, a kubelet under a supervisor
loop), the kubelet process of *this* node is found through node-scoped process
detection (its flags name this node's files, see
:class:`~kubepki.restarts.ProcScanner`), sent SIGTERM, and kubepki waits for a
kubelet process that started later. It refuses, before signalling anything,
when nothing would start the kubelet again: a kubelet whose parent is PID 1
(the init of its PID namespace, which does not restart its children unless it
is systemd with a unit, the ``systemd`` method), or a ``/proc`` of another PID
namespace, where the PIDs seen are not the ones this process can signal.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from kubepki.catalog import Component
from kubepki.errors import RestartError
from kubepki.node import Node
from kubepki.restarts import Instance, Method, RestartContext, Runtime

__all__ = ["SIGNAL_METHOD", "SignalMethod", "parent_of"]


def parent_of(pid: int, proc: str | os.PathLike[str] = "/proc") -> tuple[int, str] | None:
    """(parent PID, parent's ``comm``) of ``pid`` as ``proc`` shows it; None when it is gone."""
    base = Path(proc)
    try:
        stat = (base / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    close = stat.rfind(b")")
    fields = stat[close + 2 :].split()
    if close < 0 or len(fields) < 2 or not fields[1].isdigit():
        return None
    ppid = int(fields[1])
    try:
        comm = (base / str(ppid) / "comm").read_text().strip() if ppid > 0 else "none"
    except OSError:
        comm = "unknown"
    return ppid, comm


def _own_pid_namespace(proc: str | os.PathLike[str]) -> bool:
    try:
        return os.readlink(Path(proc) / "self") == str(os.getpid())
    except OSError:
        return False


class SignalMethod:
    """Restart the kubelet by signalling its process; its supervisor starts the next one."""

    def __repr__(self) -> str:
        return "SignalMethod()"

    @property
    def method(self) -> Method:
        """:attr:`Method.SIGNAL <kubepki.restarts.Method.SIGNAL>`."""
        return Method.SIGNAL

    def describe(self, component: Component) -> str:
        """The dry-run words."""
        return "by sending SIGTERM to this node's kubelet process (its supervisor starts the next one)"

    def default_runtime(self, node: Node) -> Runtime | None:
        """None: the kubelet's supervisor does the work."""
        return None

    def restart(self, ctx: RestartContext, component: Component, before: Instance | None) -> Instance:
        """Signal this node's kubelet process and wait for a kubelet process that started later."""
        if component is not Component.KUBELET:
            raise RestartError(f"the signal method restarts the kubelet, not {component.value}")
        if ctx.kubelet_restart is not None:
            ctx.say("restarting the kubelet with the given restarter")
            ctx.kubelet_restart()
            return ctx.wait_started_after(component, before)
        pid = self._target(ctx, before)
        ctx.say(f"sending SIGTERM to the kubelet (pid {pid})")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # gone meanwhile: its supervisor starts the next one all the same
        except OSError as exc:
            raise RestartError(f"cannot signal the kubelet (pid {pid}): {exc.strerror or exc}") from None
        ctx.wait(f"the kubelet (pid {pid}) to exit", ctx.timeouts.stop,
                 lambda: all(i.pid != pid for i in ctx.instances(component)))
        try:
            return ctx.wait_started_after(component, before)
        except RestartError as exc:
            raise RestartError(f"{exc}: the kubelet's supervisor did not start a new one") from None

    @staticmethod
    def _target(ctx: RestartContext, before: Instance | None) -> int:
        """The PID to signal, or RestartError saying why nothing should be signalled."""
        if before is None or before.pid is None:
            raise RestartError(f"no kubelet process of the node at {ctx.node.root} was observed, so there is "
                               "nothing to signal; restart the kubelet with the node's service manager")
        if not _own_pid_namespace(ctx.proc):
            raise RestartError(f"{ctx.proc} shows another PID namespace than this process's, so its kubelet "
                               f"(pid {before.pid}) cannot be signalled from here")
        parent = parent_of(before.pid, ctx.proc)
        if parent is None:
            raise RestartError(f"the kubelet (pid {before.pid}) is gone; nothing to signal")
        ppid, comm = parent
        if ppid <= 1:
            raise RestartError(
                f"refusing to stop the kubelet (pid {before.pid}): its parent is PID {ppid} ({comm}), which "
                "is not a systemd with a kubelet unit on this node, so nothing would start the kubelet "
                "again; restart it with the node's service manager")
        ctx.say(f"the kubelet's parent is {comm} (pid {ppid}); it is expected to start the next kubelet")
        return before.pid


#: The ``signal`` restart method.
SIGNAL_METHOD = SignalMethod()
