"""The ``systemd`` restart method, and how the kubelet of a node is restarted at all.

kubeadm's packages run the kubelet as the systemd unit ``kubelet.service``, so
``systemctl restart kubelet`` is the usual way. But it restarts the kubelet of
the machine whose systemd answers, and a node given as a directory (``--root``:
a node's filesystem in a mount namespace, a privileged pod's ``/host``) is not
necessarily that machine. :func:`kubelet_method` therefore looks at what runs
the kubelet on *that* node: systemd only when PID 1 is systemd, its root is the
node's root and a kubelet unit is installed there; otherwise the ``signal``
method (:mod:`kubepki.restarts.methods._signal`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from kubepki.catalog import Component
from kubepki.errors import RestartError
from kubepki.node import LocalPaths, Node
from kubepki.restarts import Instance, Method, RestartContext, Runtime

__all__ = ["KUBELET_UNITS", "SYSTEMD_METHOD", "SystemdMethod", "kubelet_method", "systemctl_restart_kubelet"]

#: Where a kubelet unit is installed (kubeadm's deb and rpm packages, or by hand).
KUBELET_UNITS = (
    "etc/systemd/system/kubelet.service",
    "usr/lib/systemd/system/kubelet.service",
    "lib/systemd/system/kubelet.service",
)


def systemctl_restart_kubelet(*, mount_namespace: str | os.PathLike[str] | None = None) -> None:
    """``systemctl restart kubelet``; :class:`~kubepki.RestartError` when it cannot be done.

    With ``mount_namespace`` (a ``/proc/<pid>/ns/mnt`` file) systemctl runs in
    that mount namespace through ``nsenter``: the host's systemd seen from a
    privileged pod.
    """
    argv: list[str]
    if mount_namespace is not None:
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            raise RestartError("nsenter not found: it is needed to reach the node's systemd from here")
        argv = [nsenter, f"--mount={os.fspath(mount_namespace)}", "--", "systemctl", "restart", "kubelet"]
    else:
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            raise RestartError("systemctl not found: restart the kubelet with this node's service manager")
        argv = [systemctl, "restart", "kubelet"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RestartError(f"systemctl restart kubelet failed: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise RestartError(f"systemctl restart kubelet failed (exit {done.returncode}): "
                           f"{why[0] if why else 'no output'}")


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _init_name(proc: str | os.PathLike[str]) -> str | None:
    try:
        return (Path(proc) / "1" / "comm").read_text().strip()
    except OSError:
        return None


def kubelet_method(node: Node, proc: str | os.PathLike[str] = "/proc") -> tuple[Method, str]:
    """How the kubelet of ``node`` is restarted, and why: SYSTEMD or SIGNAL.

    SYSTEMD when PID 1 of ``proc`` is systemd, its root directory is the node's
    root (the same directory, by device and inode) and a kubelet unit
    (:data:`KUBELET_UNITS`) is installed under that root. Otherwise SIGNAL: the
    node's kubelet process is signalled and whatever supervises it starts the
    next one (refused at apply time when nothing would).
    """
    if not isinstance(node.fs, LocalPaths):
        return Method.SIGNAL, f"{node.fs.describe()} is not a local root: systemd cannot be asked from here"
    root = node.fs.host_path("/")
    init = _init_name(proc)
    if init != "systemd":
        return Method.SIGNAL, f"PID 1 is {init or 'unknown'}, not systemd"
    if not _same_file(Path(proc) / "1" / "root", root):
        return Method.SIGNAL, f"{root} is not the root of the machine whose systemd is PID 1"
    if not any((root / unit).exists() for unit in KUBELET_UNITS):
        return Method.SIGNAL, f"no kubelet unit is installed under {root}"
    return Method.SYSTEMD, f"systemd is PID 1 of {root} and a kubelet unit is installed there"


class SystemdMethod:
    """Restart the kubelet with ``systemctl restart kubelet`` on the node's own systemd."""

    def __repr__(self) -> str:
        return "SystemdMethod()"

    @property
    def method(self) -> Method:
        """:attr:`Method.SYSTEMD <kubepki.restarts.Method.SYSTEMD>`."""
        return Method.SYSTEMD

    def describe(self, component: Component) -> str:
        """The dry-run words."""
        return "with systemctl restart kubelet"

    def default_runtime(self, node: Node) -> Runtime | None:
        """None: systemd does the work."""
        return None

    def restart(self, ctx: RestartContext, component: Component, before: Instance | None) -> Instance:
        """Ask the node's systemd to restart the kubelet; wait for a kubelet that started later."""
        if component is not Component.KUBELET:
            raise RestartError(f"the systemd method restarts the kubelet, not {component.value}")
        if ctx.kubelet_restart is not None:
            ctx.say("restarting the kubelet with the given restarter")
            ctx.kubelet_restart()
            return ctx.wait_started_after(component, before)
        method, why = kubelet_method(ctx.node, ctx.proc)
        if method is not Method.SYSTEMD:
            raise RestartError(f"the kubelet of {ctx.node.root} is not systemd's to restart here: {why}")
        ctx.say("systemctl restart kubelet")
        root = ctx.node.fs.host_path("/") if isinstance(ctx.node.fs, LocalPaths) else Path("/")
        namespace = None if _same_file(root, "/") else Path(ctx.proc) / "1" / "ns" / "mnt"
        systemctl_restart_kubelet(mount_namespace=namespace)
        return ctx.wait_started_after(component, before)


#: The ``systemd`` restart method.
SYSTEMD_METHOD = SystemdMethod()


