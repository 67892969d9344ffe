"""The ``manifest`` restart method: move a static pod's manifest out and back (kubeadm's documented way).

The kubelet runs every file in its manifests directory and stops a pod whose
file disappears. The manifest goes to :data:`~kubepki.restarts.HELD_MANIFESTS_DIR`
beside that directory (same filesystem, so each move is one atomic rename, and
never inside it, where the kubelet would run it), comes back as soon as the
component is gone (always, in a ``finally``), and the kubelet starts a new
instance. A manifest left held by an interrupted run is put back first.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath

from kubepki.catalog import Component
from kubepki.errors import KubepkiError, RestartError
from kubepki.node import MANIFEST_FILES, LocalPaths, Node, fsync_dir
from kubepki.restarts import HELD_MANIFESTS_DIR, Instance, Method, RestartContext, Runtime

__all__ = ["MANIFEST_METHOD", "ManifestMethod"]


class ManifestMethod:
    """Restart a static pod by moving its manifest out of the manifests directory and back."""

    def __repr__(self) -> str:
        return "ManifestMethod()"

    @property
    def method(self) -> Method:
        """:attr:`Method.MANIFEST <kubepki.restarts.Method.MANIFEST>`."""
        return Method.MANIFEST

    def describe(self, component: Component) -> str:
        """The dry-run words."""
        return "by moving its static pod manifest out and back"

    def default_runtime(self, node: Node) -> Runtime | None:
        """None: the kubelet does the work."""
        return None

    def restart(self, ctx: RestartContext, component: Component, before: Instance | None) -> Instance:
        """Hold the manifest until ``component`` is gone, put it back, wait for the new instance."""
        node = ctx.node
        filename = MANIFEST_FILES.get(component.value)
        if filename is None:
            raise RestartError(f"{component.value} is not a static pod", name=component.value)
        manifests_dir = node.profile.manifests_dir
        manifest = _local(node, manifests_dir / filename)
        held_dir = _local(node, manifests_dir.parent / HELD_MANIFESTS_DIR)
        held = held_dir / filename
        if not manifest.exists() and held.exists():
            # A run stopped between moving the manifest out and back: finish it first.
            ctx.say(f"putting back {filename}, held since an interrupted run")
            _move(held, manifest)
        elif held.exists():
            raise RestartError(f"{held} already exists beside {manifest}; compare them and remove the held copy",
                               path=str(held))
        if not manifest.exists():
            raise RestartError(f"no static pod manifest {manifests_dir / filename}",
                               path=str(manifests_dir / filename))
        try:
            held_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise RestartError(f"cannot create {held_dir}: {exc.strerror or exc}", path=str(held_dir)) from None
        if held_dir.stat().st_dev != manifest.parent.stat().st_dev:
            raise RestartError(f"{held_dir} is not on the filesystem of {manifest.parent}", path=str(held_dir))
        ctx.say(f"moving {manifests_dir / filename} to {manifests_dir.parent / HELD_MANIFESTS_DIR}")
        _move(manifest, held)
        try:
            ctx.say(f"waiting for {component.value} to stop")
            ctx.wait(f"{component.value} to stop", ctx.timeouts.stop, lambda: not ctx.instances(component))
            ctx.say(f"{component.value} stopped")
        finally:
            _forget_exits(ctx, component)
            ctx.say(f"moving {filename} back")
            _move(held, manifest)
            with contextlib.suppress(OSError):
                held_dir.rmdir()
        return ctx.wait_started_after(component, before)


#: The ``manifest`` restart method.
MANIFEST_METHOD = ManifestMethod()


def _forget_exits(ctx: RestartContext, component: Component) -> None:
    """Remove ``component``'s exited containers before its manifest goes back, when the node's runtime is at hand.

    A static pod put back keeps its UID, so the kubelet's crash back-off (keyed on the pod and the
    container, and applied while an *exited* container of that name is there: doBackOff in
    kuberuntime_manager.go) still holds its start after a component that exited by itself — a
    kube-controller-manager that lost its lease — for up to 300 s; without exited containers it
    starts at once, as the cri method relies on. The runtime is the one given, else a socket under
    the node's own root; none found: the kubelet's back-off is simply waited out.
    """
    runtime, made = ctx.runtime, False
    if runtime is None:
        from kubepki.restarts.methods._runtimes import detect_runtime

        try:
            runtime, made = detect_runtime(ctx.node.root, host=False), True
        except KubepkiError:
            return
    try:
        for dead in runtime.containers(include_stopped=True):
            if dead.component is component and dead.state == "exited":
                ctx.say(f"removing the exited container {dead.name} ({dead.id[:12]}) the kubelet's back-off "
                        "would count")
                runtime.remove(dead.id)
    except KubepkiError as exc:  # a runtime that does not answer, or its own garbage collection first: not fatal
        ctx.say(f"could not remove {component.value}'s exited containers: {exc}")
    finally:
        close = getattr(runtime, "close", None) if made else None
        if close is not None:
            close()


def _local(node: Node, path: PurePosixPath) -> Path:
    if not isinstance(node.fs, LocalPaths):
        raise RestartError(f"the manifest method needs a local node root, not {node.fs.describe()}")
    return node.fs.host_path(path, follow_last=False)


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise RestartError(f"cannot move {src} to {dst}: {exc.strerror or exc}", path=str(src)) from None
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)
