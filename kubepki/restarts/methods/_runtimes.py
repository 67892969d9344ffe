"""Which container runtime a node's kubelet uses, found from the sockets on the node.

kubeadm finds the CRI socket by looking for the known ones (containerd, CRI-O,
cri-dockerd) and refuses to guess when it finds several (kubeadm's
``DetectCRISocket``). :func:`detect_runtime` does the same for kubepki, with
what a node tells beyond the sockets:

1. an ``endpoint`` given by the caller wins;
2. else the kubelet's own setting, ``containerRuntimeEndpoint`` in
   ``/var/lib/kubelet/config.yaml`` or ``--container-runtime-endpoint`` in
   ``/var/lib/kubelet/kubeadm-flags.env`` (kubeadm writes one of them), when its
   socket is there;
3. else cri-dockerd's socket means Docker Engine: kubepki then prefers its
   Docker driver on ``/var/run/docker.sock`` (it sees cri-dockerd's names and
   labels directly), and speaks CRI to cri-dockerd only when the Docker socket
   is not mounted. containerd's socket beside Docker's is Docker's own
   containerd, not the kubelet's runtime;
4. else exactly one of containerd and CRI-O;
5. else Docker's socket alone (a cluster before Kubernetes 1.24, dockershim).

Sockets are looked for under the node's ``root`` (``/host`` in a privileged pod
that mounts the host), then under ``/`` (a pod that mounts only the runtime's
socket at its usual path). ``/var/run`` is read as ``/run``, as it is a symlink
to it on current distributions (and an absolute one, which would leave the root).

>>> try:
...     detect_runtime("/nonexistent-node-root", host=False)
... except RestartError as exc:
...     print(str(exc).split(":")[0])
no container runtime socket found under /nonexistent-node-root
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import attrs

from kubepki.errors import RestartError
from kubepki.restarts import Runtime
from kubepki.restarts.methods._cri import (
    CONTAINERD_ENDPOINT,
    CRI_DOCKERD_ENDPOINT,
    CRIO_ENDPOINT,
    CRIRuntime,
    socket_path,
)

__all__ = ["DOCKER_ENDPOINT", "KNOWN_SOCKETS", "RuntimeSocket", "detect_runtime", "find_sockets", "runtime_for"]

#: The Docker Engine API socket.
DOCKER_ENDPOINT = "unix:///var/run/docker.sock"

#: The sockets looked for, by kind, in the order kubeadm lists the CRI ones.
KNOWN_SOCKETS: tuple[tuple[str, str], ...] = (
    ("containerd", CONTAINERD_ENDPOINT),
    ("cri-o", CRIO_ENDPOINT),
    ("cri-dockerd", CRI_DOCKERD_ENDPOINT),
    ("docker", DOCKER_ENDPOINT),
)



@attrs.frozen(kw_only=True)
class RuntimeSocket:
    """A runtime socket found on the node."""

    #: ``containerd``, ``cri-o``, ``cri-dockerd`` or ``docker``.
    kind: str
    #: The endpoint as the node names it (``unix:///run/containerd/containerd.sock``).
    endpoint: str
    #: Where the socket is reached from here (under the root, or under ``/``).
    path: Path

    @property
    def local_endpoint(self) -> str:
        """The endpoint to connect to from here: ``unix://`` + :attr:`path`."""
        return f"unix://{self.path}"


def _roots(root: str | os.PathLike[str], host: bool) -> list[Path]:
    roots = [Path(root)]
    if host and Path(root).resolve() != Path("/"):
        roots.append(Path("/"))
    return roots


def _candidates(base: Path, node_path: PurePosixPath) -> list[Path]:
    """Where a node path may be reached under ``base``: as it is, and with /var/run read as /run."""
    rel = node_path.relative_to("/")
    out = [base / rel]
    parts = rel.parts
    if parts[:2] == ("var", "run"):
        out.insert(0, base.joinpath("run", *parts[2:]))
    elif parts[:1] == ("run",):
        out.append(base.joinpath("var", "run", *parts[1:]))
    # Never follow var/run when it is a symlink: an absolute one leads outside the root.
    return [p for p in out if not (base / "var/run").is_symlink() or not str(p).startswith(str(base / "var/run"))]


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def _locate(roots: Sequence[Path], node_path: PurePosixPath) -> Path | None:
    for base in roots:
        for candidate in _candidates(base, node_path):
            if _is_socket(candidate):
                return candidate
    return None


def find_sockets(root: str | os.PathLike[str] = "/", *, host: bool = True) -> tuple[RuntimeSocket, ...]:
    """The known runtime sockets present under ``root`` (then ``/`` when ``host``), in :data:`KNOWN_SOCKETS` order."""
    roots = _roots(root, host)
    found = []
    for kind, endpoint in KNOWN_SOCKETS:
        path = _locate(roots, PurePosixPath(str(socket_path(endpoint))))
        if path is not None:
            found.append(RuntimeSocket(kind=kind, endpoint=endpoint, path=path))
    return tuple(found)


def kubelet_endpoint(root: str | os.PathLike[str] = "/") -> str | None:
    """The runtime endpoint the node's kubelet is configured with, if its files say so."""
    from kubepki.node import LocalFS, read_kubelet_settings

    return read_kubelet_settings(LocalFS(Path(root))).container_runtime_endpoint


def _kind(endpoint: str) -> str:
    name = socket_path(endpoint).name
    return {"containerd.sock": "containerd", "crio.sock": "cri-o", "cri-dockerd.sock": "cri-dockerd",
            "docker.sock": "docker"}.get(name, "cri")


def runtime_for(endpoint: str | os.PathLike[str], *, namespace: str | None = "kube-system",
                timeout: float = 10.0) -> Runtime:
    """The driver for ``endpoint``: the Docker driver for a ``docker.sock``, else a :class:`CRIRuntime`."""
    text = os.fspath(endpoint)
    path = socket_path(text)
    if path.name == "docker.sock":
        from kubepki.restarts.methods._docker import DockerRuntime

        return DockerRuntime(f"unix://{path}", namespace=namespace, timeout=timeout)
    return CRIRuntime(path, namespace=namespace, timeout=timeout)


def detect_runtime(
    root: str | os.PathLike[str] = "/",
    *,
    endpoint: str | os.PathLike[str] | None = None,
    host: bool = True,
    namespace: str | None = "kube-system",
    timeout: float = 10.0,
) -> Runtime:
    """The runtime driver for the node at ``root``, chosen as the module docstring says.

    Nothing is connected to: the first call on the returned driver does that,
    and says clearly if the runtime refuses. Raises
    :class:`~kubepki.RestartError` listing every path looked at when no socket
    is found, and naming them when containerd and CRI-O are both there.
    """
    if endpoint is not None:
        return runtime_for(endpoint, namespace=namespace, timeout=timeout)
    roots = _roots(root, host)
    configured = kubelet_endpoint(root)
    if configured is not None and configured.startswith(("unix:", "/")):
        path = _locate(roots, PurePosixPath(str(socket_path(configured))))
        if path is not None:
            if _kind(configured) == "cri-dockerd":
                docker = _locate(roots, PurePosixPath(str(socket_path(DOCKER_ENDPOINT))))
                if docker is not None:
                    return runtime_for(docker, namespace=namespace, timeout=timeout)
            return runtime_for(path, namespace=namespace, timeout=timeout)
    found = {s.kind: s for s in find_sockets(root, host=host)}
    if "cri-dockerd" in found:
        chosen = found.get("docker") or found["cri-dockerd"]
        return runtime_for(chosen.path, namespace=namespace, timeout=timeout)
    cri = [found[k] for k in ("containerd", "cri-o") if k in found]
    if len(cri) > 1:
        raise RestartError("several container runtime sockets found: "
                           + ", ".join(str(s.path) for s in cri)
                           + "; name the kubelet's with an endpoint")
    if cri:
        return runtime_for(cri[0].path, namespace=namespace, timeout=timeout)
    if "docker" in found:
        return runtime_for(found["docker"].path, namespace=namespace, timeout=timeout)
    looked = [str(p) for base in roots for _, e in KNOWN_SOCKETS
              for p in _candidates(base, PurePosixPath(str(socket_path(e))))]
    raise RestartError(f"no container runtime socket found under {', '.join(str(r) for r in roots)}: "
                       f"looked for {', '.join(dict.fromkeys(looked))}",
                       path=str(root))
