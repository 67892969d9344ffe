"""Which control-plane components run on a node, since when, and with which flags.

Two views, one shape. :class:`ProcScanner` reads ``/proc`` (runtime-neutral: it
sees static pods under containerd, CRI-O or Docker alike, and the kubelet
itself); a container runtime driver such as
:class:`kubepki.restarts.methods._docker.DockerRuntime` lists the containers the kubelet
created. Both answer :meth:`Observer.instances` with :class:`Instance` values,
so the restart code waits for "kube-apiserver gone" or "etcd started after T"
without knowing where the answer came from.

>>> scanner = ProcScanner("/proc")
>>> all(i.component.is_daemon for i in scanner.instances())
True

Start times come from ``/proc/<pid>/stat`` field 22 (clock ticks since boot) plus
the boot time ``btime`` of ``/proc/stat``. ``btime`` has whole seconds only, so it
is refined with ``/proc/uptime`` when that agrees with it; :attr:`Instance.precision`
says how exact the result is, and staleness checks only call a process stale
when it started before a write by more than that.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

import attrs

from kubepki._clock import iso
from kubepki.catalog import Component
from kubepki.errors import KubepkiError, NodeError
from kubepki.node import Node

__all__ = [
    "COMPONENT_ORDER",
    "CombinedObserver",
    "ContainerInfo",
    "Instance",
    "Observer",
    "ProcScanner",
    "Runtime",
    "component_from_name",
    "parse_flags",
    "scan_processes",
]

#: The daemons kubepki restarts, in the order it restarts them: storage first,
#: then the API server that needs it, then its clients, then the kubelet.
COMPONENT_ORDER: tuple[Component, ...] = (
    Component.ETCD,
    Component.KUBE_APISERVER,
    Component.KUBE_CONTROLLER_MANAGER,
    Component.KUBE_SCHEDULER,
    Component.KUBELET,
)

# /proc/<pid>/comm holds at most 15 characters (TASK_COMM_LEN - 1).
_COMM_LEN = 15
_BY_NAME: Mapping[str, Component] = {c.value: c for c in COMPONENT_ORDER}
_BY_COMM: Mapping[str, Component] = {c.value[:_COMM_LEN]: c for c in COMPONENT_ORDER}
# `btime` is whole seconds; /proc/uptime has hundredths.
_BTIME_PRECISION = 1.0
_UPTIME_PRECISION = 0.02


def component_from_name(name: str) -> Component | None:
    """The daemon a program or container name stands for (``kube-apiserver`` -> KUBE_APISERVER).

    Accepts a path (its basename counts) and the 15-character ``comm`` form
    (``kube-controller``).
    """
    base = name.rsplit("/", 1)[-1]
    return _BY_NAME.get(base) or _BY_COMM.get(base)


def parse_flags(argv: Iterable[str]) -> dict[str, str]:
    """``--name=value`` arguments as ``{name: value}``; bare ``--flag`` maps to ``""``.

    Only the ``=`` form carries a value, as in kubeadm's manifests: ``--flag value``
    cannot be told from a boolean flag followed by a positional argument.
    """
    flags: dict[str, str] = {}
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, _, value = arg[2:].partition("=")
            flags[name] = value
    return flags


@attrs.frozen(kw_only=True)
class Instance:
    """One running instance of a component: a process or a container."""

    component: Component
    #: When it started (UTC).
    started_at: dt.datetime
    #: ``proc`` or the runtime's name (``docker``).
    source: str
    #: ``pid 1234`` or a short container id, for messages.
    ident: str
    pid: int | None = None
    container_id: str | None = None
    #: The container's name, for runtime instances.
    name: str | None = None
    argv: tuple[str, ...] = ()
    #: ``--name=value`` flags from the command line (see :func:`parse_flags`).
    flags: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    #: How many seconds ``started_at`` may be early by.
    precision: float = 0.0

    def files(self) -> dict[str, str]:
        """The flags whose value is an absolute path: ``{flag: path}``."""
        return {k: v for k, v in self.flags.items() if v.startswith("/")}

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "component": self.component.value,
            "started_at": _iso(self.started_at),
            "source": self.source,
            "ident": self.ident,
            "pid": self.pid,
            "container_id": self.container_id,
            "name": self.name,
            "files": self.files(),
        }


@runtime_checkable
class Observer(Protocol):
    """Something that can tell which component instances run now."""

    def instances(self) -> Sequence[Instance]:
        """The running instances of the five daemons (any order)."""
        ...


@attrs.frozen(kw_only=True)
class ContainerInfo:
    """A container the kubelet created, as a runtime reports it."""

    id: str
    #: The runtime's name for it (``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``).
    name: str
    #: The ``io.kubernetes.container.name`` label (``etcd``, ``POD`` for sandboxes).
    container_name: str
    pod_name: str | None
    namespace: str | None
    pod_uid: str | None
    #: The restart attempt from the name's last field, when present.
    attempt: int | None
    #: The runtime's state word (``running``, ``exited``, ``created``...).
    state: str
    started_at: dt.datetime | None
    labels: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    argv: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        """True while the container runs."""
        return self.state == "running"

    @property
    def component(self) -> Component | None:
        """The daemon this container runs, if it is one of the five."""
        return component_from_name(self.container_name)

    def same_pod_container(self, other: ContainerInfo) -> bool:
        """True when ``other`` is an attempt of the same container of the same pod."""
        return (self.container_name, self.pod_name, self.namespace) == (
            other.container_name, other.pod_name, other.namespace)

    def as_instance(self, source: str) -> Instance | None:
        """This container as an :class:`Instance`, when it runs one of the daemons."""
        component = self.component
        if component is None or not self.running or self.started_at is None:
            return None
        return Instance(
            component=component, started_at=self.started_at, source=source,
            ident=self.id[:12], container_id=self.id, name=self.name, argv=self.argv,
            flags=parse_flags(self.argv[1:]),
        )


@runtime_checkable
class Runtime(Observer, Protocol):
    """A container runtime the kubelet drives (Docker through cri-dockerd, ...)."""

    @property
    def name(self) -> str:
        """A short name for messages and :attr:`Instance.source` (``docker``)."""
        ...

    def containers(self, *, include_stopped: bool = False) -> Sequence[ContainerInfo]:
        """The containers the kubelet created (sandboxes included)."""
        ...

    def stop(self, container_id: str, *, timeout: int | None = None) -> None:
        """Stop a container gracefully: SIGTERM, then SIGKILL after ``timeout`` seconds (the runtime's default).

        Stopping a stopped or absent container is not an error; raises
        :class:`~kubepki.RestartError` when the runtime refuses.
        """
        ...

    def remove(self, container_id: str) -> None:
        """Remove a container, stopping it first, so the kubelet creates the next attempt.

        Raises :class:`~kubepki.RestartError` when the runtime refuses.
        """
        ...

    def close(self) -> None:
        """Close the connection to the runtime (it opens again when needed)."""
        ...


class ProcScanner:
    """The five daemons as processes in a ``/proc`` tree, optionally only those of one node.

    ``proc`` may be a host's ``/proc`` mounted elsewhere (``/host/proc`` in a pod
    with ``hostPID``). With ``node``, a process counts only when it belongs to
    that node: when a regular file its flags name, looked up through the
    process's own root (``/proc/PID/root``, so through its mount namespace) and
    working directory, is the same file (device and inode) as the node's file
    at that path under the node's root. A program name alone never makes a
    process the node's: another cluster on the same host, in its own mount
    namespace, names the same paths and different files. Processes that could
    not be looked into are listed in :attr:`skipped`; those of another node in
    :attr:`foreign`. ``match`` narrows the result further (tests use it to see
    only their own processes). ``clock`` is the wall clock used to refine the
    boot time from ``/proc/uptime``.
    """

    def __init__(
        self,
        proc: str | os.PathLike[str] = "/proc",
        *,
        node: Node | str | os.PathLike[str] | None = None,
        match: Callable[[Instance], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.proc = Path(proc)
        self.node = Node.coerce(node) if node is not None else None
        self.match = match
        self.clock = clock
        #: Why processes of the last scan could not be told apart (``pid 12 (etcd): ...``).
        self.skipped: tuple[str, ...] = ()
        #: The PIDs of the last scan that belong to another node.
        self.foreign: tuple[int, ...] = ()
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __repr__(self) -> str:
        where = f", node={str(self.node.root)!r}" if self.node is not None else ""
        return f"ProcScanner({str(self.proc)!r}{where})"

    def boot_time(self) -> tuple[float, float]:
        """The boot time as a UNIX timestamp, and how many seconds it may be early by.

        Raises :class:`~kubepki.NodeError` when ``stat`` under the proc root is unreadable.
        """
        try:
            text = (self.proc / "stat").read_text()
        except OSError as exc:
            raise NodeError(f"cannot read {self.proc / 'stat'}: {exc.strerror or exc}",
                            path=str(self.proc / "stat")) from None
        btime = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("btime ")), None)
        if btime is None:
            raise NodeError(f"{self.proc / 'stat'} has no btime line", path=str(self.proc / "stat"))
        try:
            uptime = float((self.proc / "uptime").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return float(btime), _BTIME_PRECISION
        refined = self.clock() - uptime
        # Use the finer value only when it agrees with btime (same kernel, sane clock).
        if btime - _UPTIME_PRECISION <= refined < btime + 1 + _UPTIME_PRECISION:
            return refined, _UPTIME_PRECISION
        return float(btime), _BTIME_PRECISION

    def processes(self) -> tuple[Instance, ...]:
        """Every running process of the five daemons, by pid."""
        boot, precision = self.boot_time()
        out: list[Instance] = []
        try:
            names = os.listdir(self.proc)
        except OSError as exc:
            raise NodeError(f"cannot list {self.proc}: {exc.strerror or exc}", path=str(self.proc)) from None
        skipped: list[str] = []
        foreign: list[int] = []
        node_files: dict[str, tuple[int, int] | None] = {}
        for entry in names:
            if not entry.isdigit():
                continue
            found = self._process(int(entry), boot, precision)
            if found is None or (self.match is not None and not self.match(found)):
                continue
            if self.node is not None:
                verdict = _belongs(self.proc, found, self.node, node_files)
                if verdict is not True:
                    if verdict is False:
                        foreign.append(found.pid or 0)
                    else:
                        skipped.append(f"pid {found.pid} ({found.component.value}): {verdict}")
                    continue
            out.append(found)
        out.sort(key=lambda i: (i.pid or 0))
        self.skipped, self.foreign = tuple(skipped), tuple(sorted(foreign))
        return tuple(out)

    def instances(self) -> Sequence[Instance]:
        """The same as :meth:`processes` (the :class:`Observer` interface)."""
        return self.processes()

    def _process(self, pid: int, boot: float, precision: float) -> Instance | None:
        base = self.proc / str(pid)
        try:
            stat = (base / "stat").read_bytes()
            cmdline = (base / "cmdline").read_bytes()
        except OSError:
            return None  # gone meanwhile, or not ours to read
        # The comm field is in parentheses and may itself hold spaces or parentheses.
        close = stat.rfind(b")")
        if close < 0:
            return None
        comm = stat[stat.find(b"(") + 1 : close].decode(errors="replace")
        fields = stat[close + 2 :].split()
        if len(fields) < 20 or fields[0] in (b"Z", b"X"):
            return None  # malformed, or a zombie waiting for its parent
        argv = tuple(a.decode(errors="replace") for a in cmdline.split(b"\0") if a)
        if not argv:
            return None  # kernel threads
        component = component_from_name(argv[0]) or _BY_COMM.get(comm)
        if component is None:
            return None
        started = boot + int(fields[19]) / self._hz  # field 22: starttime in clock ticks
        return Instance(
            component=component,
            started_at=dt.datetime.fromtimestamp(started, tz=dt.timezone.utc),
            source="proc",
            ident=f"pid {pid}",
            pid=pid,
            argv=argv,
            flags=parse_flags(argv[1:]),
            precision=precision,
        )


def scan_processes(proc: str | os.PathLike[str] = "/proc", *,
                   node: Node | str | os.PathLike[str] | None = None) -> tuple[Instance, ...]:
    """The daemons running on the machine whose ``/proc`` is at ``proc`` (only ``node``'s, when given)."""
    return ProcScanner(proc, node=node).processes()


# Symbolic links followed while looking a path up inside a process's root (the kernel's MAXSYMLINKS).
_MAX_LINKS = 40


def _lookup(root: Path, start: Path, value: str) -> os.stat_result | None:
    """``stat`` of ``value`` as the process whose root is ``root`` (and cwd ``start``) sees it.

    The kernel resolves ``/proc/PID/root`` into the process's own mount tree;
    absolute symbolic links met on the way are resolved against that root too
    (a plain ``os.stat`` would resolve them against this process's root).
    """
    parts = [p for p in value.split("/") if p and p != "."]
    current = root if value.startswith("/") else start
    links = 0
    while parts:
        part = parts.pop(0)
        current = current.parent if part == ".." and current != root else current / part
        try:
            st = os.lstat(current)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                return None
            try:
                target = os.readlink(current)
            except OSError:
                return None
            parts = [p for p in target.split("/") if p and p != "."] + parts
            current = root if target.startswith("/") else current.parent
    try:
        return os.stat(current)
    except OSError:
        return None


def _node_file(node: Node, value: str, cache: dict[str, tuple[int, int] | None]) -> tuple[int, int] | None:
    """(device, inode) of the node's regular file at the path a process names; None when there is none."""
    if value not in cache:
        from kubepki.restarts._served import to_node_path

        try:
            st = os.stat(node.fs.host_path(to_node_path(node, value)))  # type: ignore[attr-defined]
        except (OSError, KubepkiError):
            st = None
        cache[value] = (st.st_dev, st.st_ino) if st is not None and stat.S_ISREG(st.st_mode) else None
    return cache[value]


def _node_dirs(node: Node) -> tuple[PurePosixPath, ...]:
    """The directories kubeadm's files of ``node`` live in (certificates, kubeconfigs, manifests, the kubelet's)."""
    p = node.profile
    return (p.cert_dir, p.kubeconfig_dir, p.manifests_dir, p.kubelet_pki_dir, PurePosixPath("/var/lib/kubelet"))


def _in_node_dirs(node: Node, named: str, own: tuple[PurePosixPath, ...]) -> bool:
    """Does the path a process names (a node path, or a host path under the node's root) lie in ``own``?"""
    from kubepki.restarts._served import to_node_path

    try:
        path = to_node_path(node, named)
    except KubepkiError:
        return False
    return any(path.is_relative_to(d) for d in own)


def _belongs(proc: Path, inst: Instance, node: Node, cache: dict[str, tuple[int, int] | None]) -> bool | str:
    """True when ``inst`` names one of ``node``'s files, False when it names others; else why it cannot be told."""
    from kubepki.node import LocalPaths

    if not isinstance(node.fs, LocalPaths):
        return True  # no local inodes to compare with: the caller chose this /proc
    base = proc / str(inst.pid)
    root, cwd = base / "root", base / "cwd"
    try:
        os.stat(root)
    except OSError as exc:
        return f"cannot look into {root}: {exc.strerror or exc}"
    compared = False
    own = _node_dirs(node)
    for value in inst.flags.values():
        if not value or "://" in value or "," in value or "=" in value:
            continue
        theirs = _lookup(root, cwd, value)
        if theirs is None or not stat.S_ISREG(theirs.st_mode):
            continue
        named = value if value.startswith("/") else _absolute(cwd, value)
        if named is None:
            continue
        compared = True
        # A file outside the node's kubeadm directories is never the node's, even when this mount
        # namespace sees it too (a /tmp path is the same file in every namespace that does not hide /tmp).
        if not _in_node_dirs(node, named, own):
            continue
        if _node_file(node, named, cache) == (theirs.st_dev, theirs.st_ino):
            return True
        if value.startswith("/") and _mounted_from_node(base, value, node):
            return True
    return False if compared else "its flags name no file to tell its node by"


def _unescape(field: str) -> str:
    """A mountinfo path field: spaces, tabs, newlines and backslashes are octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts(path: Path) -> list[tuple[str, str, str]]:
    """(device major:minor, root within that filesystem, mount point) of each line of a mountinfo file."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 5:
            out.append((fields[2], _unescape(fields[3]), _unescape(fields[4])))
    return out


def _source(mounts: list[tuple[str, str, str]], path: str) -> tuple[str, str] | None:
    """(device, path within its filesystem) of ``path`` in the mount table ``mounts`` (the longest mount point)."""
    best: tuple[str, str, str] | None = None
    for dev, root, point in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[2])):
            best = (dev, root, point)
    if best is None:
        return None
    dev, root, point = best
    rest = path[len(point.rstrip("/")):] if point != "/" else path
    return dev, (root.rstrip("/") + rest) or "/"


def _mounted_from_node(base: Path, value: str, node: Node) -> bool:
    """Is ``value`` a file bind mount, in the process's mount table, of the node's file at that path?

    kubeadm's static pods mount single files (``scheduler.conf``, ``controller-manager.conf``), and a
    file bind mount pins the inode it was made with: once the file is replaced (a renewal's atomic
    rename) the container still sees the old inode, which no path names any more, and only the
    mount table still says where it came from (its root then ends in ``//deleted``).
    """
    from kubepki.node import LocalPaths
    from kubepki.restarts._served import to_node_path

    theirs = next(((dev, root) for dev, root, point in _mounts(base / "mountinfo") if point == value), None)
    if theirs is None or not isinstance(node.fs, LocalPaths):
        return False
    dev, root = theirs
    root = root.removesuffix("//deleted")
    try:
        local = os.path.realpath(node.fs.host_path(to_node_path(node, value)))
    except (OSError, KubepkiError):
        return False
    return _source(_mounts(Path("/proc/self/mountinfo")), local) == (dev, root)


def _absolute(cwd: Path, value: str) -> str | None:
    """A relative path a process names, made absolute with its working directory (as the kernel shows it)."""
    try:
        where = os.readlink(cwd)
    except OSError:
        return None
    return os.path.normpath(os.path.join(where, value)) if where.startswith("/") else None


class CombinedObserver:
    """Several observers seen as one (for instance ``/proc`` plus Docker)."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def __repr__(self) -> str:
        return f"CombinedObserver{self.observers!r}"

    def instances(self) -> Sequence[Instance]:
        """Every observer's instances, in order."""
        return [i for o in self.observers for i in o.instances()]


def _iso(when: dt.datetime) -> str:
    return iso(when, timespec="milliseconds")
