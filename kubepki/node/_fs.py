"""How kubepki reaches a node's files: a root directory, paths as seen on the node.

A node path is an absolute POSIX path as the node sees it (``/etc/kubernetes/pki/ca.crt``).
:class:`LocalFS` maps it under a root directory (``/`` on the node itself, ``/host`` in
a privileged pod, a temporary directory in tests) and resolves symlinks as the node
would: an absolute link target is taken relative to the root, and ``..`` stops at
the root as it does in a chroot, so nothing resolves to a place outside the root.

Writes are atomic: a temporary file in the same directory, created with
``O_EXCL | O_NOFOLLOW``, written, fsynced, renamed over the target, then the
directory is fsynced. A crash leaves either the old or the new file.

:class:`NodeFS` is everything kubepki's operations do to a node's files, so
inspection, backup, renewal and the node lock work the same on a local root and
on a node reached over SSH (:class:`kubepki.node._ssh.SSHFS`). Every path argument is a
node path; parents are resolved inside the root, and the last component is
never followed by the operations that create, replace or remove it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import secrets
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

import attrs

from kubepki.errors import LockError, NodeError, node_error

__all__ = [
    "CommandResult", "CommandRunner", "Connection", "FileStat", "LocalFS", "LocalPaths", "NodeFS",
    "NotRegularFile", "atomic_write", "file_type", "makedirs", "node_path", "open_regular", "read_optional",
    "read_regular", "rename_noreplace", "write_exclusive",
]

_MAX_LINKS = 40


def file_type(mode: int) -> str:
    """What a non-regular file is, in a message's words (``a FIFO``, ``a directory``...)."""
    for test, what in ((stat_mod.S_ISFIFO, "a FIFO"), (stat_mod.S_ISDIR, "a directory"),
                       (stat_mod.S_ISSOCK, "a socket"), (stat_mod.S_ISCHR, "a character device"),
                       (stat_mod.S_ISBLK, "a block device"), (stat_mod.S_ISLNK, "a symbolic link")):
        if test(mode):
            return what
    return "not a regular file"  # pragma: no cover - every other type is listed above


class NotRegularFile(OSError):
    """A local path that is not a regular file (a FIFO would block a plain open or read)."""


def open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """The local file ``path`` opened for reading when it is a regular file; :class:`NotRegularFile` otherwise.

    ``O_NONBLOCK`` makes opening a FIFO return at once; the type is then read from the
    open descriptor (no race with a rename), and only a regular file is handed back.
    Every file of this machine kubepki reads on a user's word (an archive, a result's
    JSON, a certificate handed back) is opened this way.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, f"{file_type(st.st_mode)}, not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], *, limit: int) -> bytes:
    """The bytes of the local regular file ``path``, at most ``limit``; :class:`NotRegularFile` for anything
    else, ``OSError`` (``EFBIG``) when it is larger."""
    with open_regular(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", os.fspath(path))
    return data


def node_path(path: str | PurePosixPath) -> PurePosixPath:
    """Normalise ``path`` to an absolute node path; refuses relative paths."""
    p = PurePosixPath(path)
    if not p.is_absolute():
        raise NodeError(f"node paths must be absolute: {str(path)!r}", path=str(path))
    return p


def read_optional(fs: NodeFS, path: PurePosixPath, notes: list[str], *, limit: int = 1 << 20) -> bytes | None:
    """The bytes of an optional regular file of the node; None when it is absent, and a note when it cannot
    be used (unreadable, not a regular file — a FIFO would block a plain read —, over ``limit``)."""
    try:
        found = fs.read_file(path, limit=limit)
    except NodeError as exc:
        notes.append(f"could not read {path}: {exc.message}")
        return None
    if found is None:
        return None
    st, _link, data = found
    if data is None:
        notes.append(f"ignored {path}: " + ("not a regular file" if not st.is_file else f"larger than {limit} bytes"))
    return data


@attrs.frozen(kw_only=True)
class FileStat:
    """What kubepki needs to know of a file's metadata."""

    size: int
    mode: int  # permission bits only
    uid: int
    gid: int
    mtime: float
    is_symlink: bool = False
    is_dir: bool = False
    is_file: bool = True
    #: Device and inode, None when the transport does not tell (SFTP): two paths naming one
    #: file (a hard link) have the same pair.
    dev: int | None = None
    ino: int | None = None


@runtime_checkable
class NodeFS(Protocol):
    """Access to one node's files by node path (local directory, SSH, ...)."""

    def describe(self) -> str:
        """A short description for messages (``/host``, ``ssh://cp1``)."""
        ...

    def read_bytes(self, path: PurePosixPath, *, limit: int | None = None) -> bytes:
        """The file's bytes; :class:`NodeError` when absent or unreadable."""
        ...

    def stat(self, path: PurePosixPath, *, follow: bool = True) -> FileStat | None:
        """The file's metadata, or None when it does not exist."""
        ...

    def read_file(
        self, path: PurePosixPath, *, limit: int
    ) -> tuple[FileStat, str | None, bytes | None] | None:
        """Metadata, symlink target and bytes (None when not a regular file or over
        ``limit``) of ``path``; None when it does not exist."""
        ...

    def readlink(self, path: PurePosixPath) -> str | None:
        """A symlink's target as stored, or None when ``path`` is not a symlink."""
        ...

    def listdir(self, path: PurePosixPath) -> list[str]:
        """Names in a directory (empty when it does not exist)."""
        ...

    def write_atomic(
        self, path: PurePosixPath, data: bytes, *, mode: int, uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Replace ``path`` atomically with ``data``."""
        ...

    def resolve(self, path: PurePosixPath, *, follow_last: bool = True) -> PurePosixPath:
        """``path`` with its symlinks resolved inside the root, as a node path."""
        ...

    def write_new(
        self, path: PurePosixPath, data: bytes, *, mode: int, uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Create ``path`` with ``data`` (mode set from the start), fsynced.

        Fails with a :class:`NodeError` whose ``errno`` is ``EEXIST`` when
        anything, a symlink included, is at ``path`` already (``O_EXCL``).
        """
        ...

    def symlink(self, target: str, path: PurePosixPath) -> None:
        """Create a symlink at ``path`` pointing to ``target`` (stored as given)."""
        ...

    def rename(self, src: PurePosixPath, dst: PurePosixPath, *, replace: bool = True) -> None:
        """Rename ``src`` to ``dst`` atomically; with ``replace`` False, fail (``EEXIST``)
        rather than replace an existing ``dst``."""
        ...

    def unlink(self, path: PurePosixPath) -> bool:
        """Remove a file or symlink; False when there was nothing to remove."""
        ...

    def mkdir(self, path: PurePosixPath, *, mode: int = 0o755) -> bool:
        """Create one directory with exactly ``mode``; False when it exists already."""
        ...

    def chown(self, path: PurePosixPath, uid: int, gid: int, *, follow: bool = True) -> None:
        """Change the owner of ``path`` (of the link itself when ``follow`` is False)."""
        ...

    def chmod(self, path: PurePosixPath, mode: int) -> None:
        """Set the permission bits of what ``path`` names (symlinks followed inside the root)."""
        ...

    def set_mtime(self, path: PurePosixPath, mtime: float, *, follow: bool = True) -> None:
        """Set the access and modification times of ``path`` to ``mtime``."""
        ...

    def fsync_dir(self, path: PurePosixPath) -> None:
        """Make renames in a directory durable (best effort)."""
        ...

    def can_chown(self) -> bool:
        """True when files can be given any owner (kubepki runs as root on the node)."""
        ...

    def lock(self, path: PurePosixPath, *, wait: float = 0.0,
             poll: float = 0.05) -> AbstractContextManager[None]:
        """Hold an exclusive lock on the node, keyed by ``path``, for a ``with`` block.

        ``wait`` is how many seconds to wait for another holder; raises
        :class:`~kubepki.LockError` when the lock stays taken.
        """
        ...


@attrs.frozen(kw_only=True)
class CommandResult:
    """What a command run on the node returned."""

    command: str
    exit_status: int
    stdout: bytes = attrs.field(repr=False)
    stderr: bytes = attrs.field(repr=False)

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_status == 0

    def text(self) -> str:
        """Standard output as text (UTF-8, undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------
# Capabilities beyond NodeFS: what some filesystems can do and others cannot. Code asks
# ``isinstance(fs, LocalPaths)`` rather than which class it is.


@runtime_checkable
class LocalPaths(Protocol):
    """A filesystem whose files are files of this machine (:class:`LocalFS`).

    Code that needs a real local path (``os`` calls, ``/proc``, a manifest's mtime seen
    by the local kubelet) works only through these.
    """

    def host_path(self, path: PurePosixPath | str, *, follow_last: bool = True) -> Path:
        """The local path of node ``path``, symlinks resolved inside the root."""
        ...


@runtime_checkable
class Connection(Protocol):
    """A filesystem reached over a connection (SSH) that can be opened early and closed."""

    def connect(self) -> object:
        """Open the connection now; raises :class:`NodeError` (host key, login, unreachable)."""
        ...

    def close(self) -> None:
        """Close the connection; the next use opens a new one."""
        ...


@runtime_checkable
class CommandRunner(Protocol):
    """A filesystem whose node can run commands (SSH)."""

    def run(self, command: str | Sequence[str], *, timeout: float | None = None,
            stdin: bytes | None = None, check: bool = False) -> CommandResult:
        """Run ``command`` on the node (a shell line, or arguments to quote) and wait for it."""
        ...


def makedirs(fs: NodeFS, path: PurePosixPath, *,
             mode_for: Callable[[PurePosixPath], int] | None = None) -> None:
    """Create ``path`` and its missing parents through ``fs``.

    Each directory created gets ``mode_for(directory)`` (default 0755). A parent
    that exists but is not a directory raises :class:`NodeError`.
    """
    for directory in (*reversed(path.parents), path):
        if directory == PurePosixPath("/"):
            continue
        st = fs.stat(directory)
        if st is not None:
            if not st.is_dir:
                raise NodeError(f"{directory}: exists and is not a directory", path=str(directory))
            continue
        fs.mkdir(directory, mode=mode_for(directory) if mode_for is not None else 0o755)


class LocalFS:
    """A node whose filesystem is a local directory."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)
        self._root_str = str(self.root).rstrip("/")
        # The directories resolved during a read-only pass (:meth:`reading`), per thread.
        self._memo = threading.local()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Within the block, this thread resolves each directory above a path once.

        For a read-only pass over many files (an inspection): a file's parents are
        otherwise resolved inside the root, one ``lstat`` per component, for every
        file. The last component of every path is still resolved anew. A directory
        swapped for a symlink during the block is not looked at again, so the open
        follows the new link: the race every resolve-then-open has (the same swap
        between one file's resolution and its open), for the block's length (an
        inspection: milliseconds) rather than one file's. Blocks nest; other
        threads are not affected.
        """
        outer = getattr(self._memo, "dirs", None)
        if outer is None:
            self._memo.dirs = {}
        try:
            yield
        finally:
            if outer is None:
                self._memo.dirs = None

    def __repr__(self) -> str:
        return f"LocalFS({str(self.root)!r})"

    def describe(self) -> str:
        """The root directory."""
        return str(self.root)

    def host_path(self, path: PurePosixPath | str, *, follow_last: bool = True) -> Path:
        """The local path of node ``path``, symlinks resolved inside the root."""
        return Path(self._local(str(node_path(path)), follow_last=follow_last))

    def _local(self, path: str, *, follow_last: bool = True) -> str:
        """Resolve node ``path`` (absolute, as a string) to a local path string.

        Plain strings and ``os.lstat`` keep this cheap: it runs for every file read.
        """
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self._root_str or "/"
        dirs: dict[str, tuple[tuple[str, ...], int]] | None = getattr(self._memo, "dirs", None)
        parent = "/".join(parts[:-1])
        known = dirs.get(parent) if dirs is not None else None
        if known is None:
            done, hops = self._walk(parts[:-1], [], 0, follow_last=True)
            if dirs is not None:
                dirs[parent] = (tuple(done), hops)
        else:
            done, hops = list(known[0]), known[1]
        done, _ = self._walk(parts[-1:], done, hops, follow_last=follow_last)
        return self._root_str + "/" + "/".join(done) if done else (self._root_str or "/")

    def _walk(self, parts: list[str], done: list[str], hops: int, *,
              follow_last: bool) -> tuple[list[str], int]:
        """Resolve ``parts`` below the already resolved ``done`` (``hops`` links followed so far)."""
        root = self._root_str
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()  # the root's parent is the root
                continue
            if not parts and not follow_last:
                done.append(part)
                break
            local = root + "/" + "/".join((*done, part))
            try:
                is_link = stat_mod.S_ISLNK(os.lstat(local).st_mode)
            except (FileNotFoundError, NotADirectoryError):
                is_link = False
            except OSError as exc:
                raise _node_error(exc, "/" + "/".join((*done, part))) from None
            if not is_link:
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_LINKS:
                shown = "/" + "/".join((*done, part))
                raise NodeError(f"too many levels of symbolic links at {shown}", path=shown)
            target = os.readlink(local)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
        return done, hops

    def read_bytes(self, path: PurePosixPath, *, limit: int | None = None) -> bytes:
        """The file's bytes, at most ``limit`` + 1 of them when ``limit`` is given."""
        local = self._local(str(path))
        try:
            with open(local, "rb") as fh:
                return fh.read(-1 if limit is None else limit + 1)
        except OSError as exc:
            raise _node_error(exc, path) from None

    def stat(self, path: PurePosixPath, *, follow: bool = True) -> FileStat | None:
        """Metadata of ``path`` (of the link itself when ``follow`` is False)."""
        local = self._local(str(path), follow_last=follow)
        try:
            st = os.stat(local) if follow else os.lstat(local)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _node_error(exc, path) from None
        return FileStat(
            size=st.st_size,
            mode=stat_mod.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime=st.st_mtime,
            is_symlink=stat_mod.S_ISLNK(st.st_mode),
            is_dir=stat_mod.S_ISDIR(st.st_mode),
            is_file=stat_mod.S_ISREG(st.st_mode),
            dev=st.st_dev,
            ino=st.st_ino,
        )

    def read_file(
        self, path: PurePosixPath, *, limit: int
    ) -> tuple[FileStat, str | None, bytes | None] | None:
        """Metadata, symlink target and bytes (None when over ``limit``) in one pass.

        Returns None when the file does not exist.
        """
        link_local = self._local(str(path), follow_last=False)
        try:
            lst = os.lstat(link_local)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _node_error(exc, path) from None
        target = None
        local = link_local
        if stat_mod.S_ISLNK(lst.st_mode):
            target = os.readlink(link_local)
            local = self._local(str(path))
        try:
            fd = os.open(local, os.O_RDONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _node_error(exc, path) from None
        try:
            st = os.fstat(fd)
            info = FileStat(
                size=st.st_size, mode=stat_mod.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                mtime=st.st_mtime, is_symlink=target is not None, is_dir=stat_mod.S_ISDIR(st.st_mode),
                is_file=stat_mod.S_ISREG(st.st_mode), dev=st.st_dev, ino=st.st_ino,
            )
            if not info.is_file or st.st_size > limit:
                return info, target, None
            chunks = []
            remaining = limit + 1
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            return info, target, b"".join(chunks)
        except OSError as exc:
            raise _node_error(exc, path) from None
        finally:
            os.close(fd)

    def readlink(self, path: PurePosixPath) -> str | None:
        """The symlink's stored target, or None when not a symlink."""
        local = self._local(str(path), follow_last=False)
        try:
            return os.readlink(local)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return None
            raise _node_error(exc, path) from None

    def listdir(self, path: PurePosixPath) -> list[str]:
        """Sorted names in the directory; empty when it does not exist."""
        local = self.host_path(path)
        try:
            return sorted(os.listdir(local))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise _node_error(exc, path) from None

    def write_atomic(
        self, path: PurePosixPath, data: bytes, *, mode: int, uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Atomically replace ``path``; a symlink at ``path`` is replaced, never followed."""
        local = self.host_path(path, follow_last=False)
        atomic_write(local, data, mode=mode, uid=uid, gid=gid, node_path=str(path))

    def resolve(self, path: PurePosixPath, *, follow_last: bool = True) -> PurePosixPath:
        """The node path ``path`` leads to, symlinks resolved inside the root."""
        local = self._local(str(node_path(path)), follow_last=follow_last)
        rel = local[len(self._root_str):].lstrip("/")
        return PurePosixPath("/" + rel)

    def write_new(
        self, path: PurePosixPath, data: bytes, *, mode: int, uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Create ``path`` ``O_EXCL | O_NOFOLLOW`` with ``mode``, write and fsync it.

        The owner is changed only when it differs from the process's, so an
        unprivileged run can still write files it owns.
        """
        local = self._local(str(path), follow_last=False)
        try:
            write_exclusive(local, data, mode=mode,
                            uid=None if uid == os.geteuid() else uid,
                            gid=None if gid == os.getegid() else gid)
        except OSError as exc:
            raise _node_error(exc, path) from None

    def symlink(self, target: str, path: PurePosixPath) -> None:
        """``symlink(2)``; the target is stored as given, resolved only when followed."""
        try:
            os.symlink(target, self._local(str(path), follow_last=False))
        except OSError as exc:
            raise _node_error(exc, path) from None

    def rename(self, src: PurePosixPath, dst: PurePosixPath, *, replace: bool = True) -> None:
        """``rename(2)``; without ``replace``, ``link(2)`` then ``unlink(2)`` so nothing is replaced."""
        a = self._local(str(src), follow_last=False)
        b = self._local(str(dst), follow_last=False)
        try:
            if replace:
                os.replace(a, b)
            else:
                rename_noreplace(a, b)
        except OSError as exc:
            raise _node_error(exc, dst if exc.errno == errno.EEXIST else src) from None

    def unlink(self, path: PurePosixPath) -> bool:
        """Remove a file or symlink (never what a symlink points at)."""
        try:
            os.unlink(self._local(str(path), follow_last=False))
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _node_error(exc, path) from None
        return True

    def mkdir(self, path: PurePosixPath, *, mode: int = 0o755) -> bool:
        """``mkdir(2)`` then ``chmod(2)`` (the umask may have narrowed the mode)."""
        local = self._local(str(path))
        try:
            os.mkdir(local, mode)
        except FileExistsError:
            if not os.path.isdir(local):
                raise NodeError(f"{path}: exists and is not a directory", path=str(path)) from None
            return False
        except OSError as exc:
            raise _node_error(exc, path) from None
        try:
            os.chmod(local, mode)
        except OSError as exc:
            raise _node_error(exc, path) from None
        return True

    def chown(self, path: PurePosixPath, uid: int, gid: int, *, follow: bool = True) -> None:
        """``chown(2)``, or ``lchown(2)`` when ``follow`` is False."""
        try:
            os.chown(self._local(str(path), follow_last=follow), uid, gid, follow_symlinks=follow)
        except OSError as exc:
            raise _node_error(exc, path) from None

    def chmod(self, path: PurePosixPath, mode: int) -> None:
        """``chmod(2)`` on the file ``path`` leads to inside the root (never a symlink's target outside it)."""
        try:
            os.chmod(self._local(str(path)), mode)
        except OSError as exc:
            raise _node_error(exc, path) from None

    def set_mtime(self, path: PurePosixPath, mtime: float, *, follow: bool = True) -> None:
        """``utime(2)`` (``lutimes`` when ``follow`` is False)."""
        try:
            os.utime(self._local(str(path), follow_last=follow), (mtime, mtime), follow_symlinks=follow)
        except OSError as exc:
            raise _node_error(exc, path) from None

    def fsync_dir(self, path: PurePosixPath) -> None:
        """fsync the directory (best effort)."""
        fsync_dir(Path(self._local(str(path))))

    def can_chown(self) -> bool:
        """True when running as root."""
        return hasattr(os, "geteuid") and os.geteuid() == 0

    def lock(self, path: PurePosixPath, *, wait: float = 0.0,
             poll: float = 0.05) -> AbstractContextManager[None]:
        """``flock(2)`` on ``path``; the kernel drops it when the holder dies."""
        return _flock(self, path, wait=wait, poll=poll)


@contextlib.contextmanager
def _flock(fs: LocalFS, path: PurePosixPath, *, wait: float, poll: float) -> Iterator[None]:
    """Hold ``flock(2)`` on the lock file; the holder removes the file before it lets go.

    So a finished run leaves nothing behind. Another opener may have opened the
    file just before it was removed and then get the lock on an inode no path
    names any more; it therefore checks, once it holds the lock, that the path
    still names the inode it locked, and starts over when not.
    """
    makedirs(fs, path.parent)  # inside the root, explicit modes whatever the umask
    lock_path = fs.host_path(path, follow_last=False)
    deadline = time.monotonic() + wait
    while True:
        fd = _open_lock(lock_path)
        try:
            _acquire(fd, lock_path, deadline=deadline, poll=poll)
            if _names(lock_path, fd):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a file its last holder had removed: take the current one
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        yield
    finally:
        with contextlib.suppress(OSError):
            if _names(lock_path, fd):
                os.unlink(lock_path)  # while still holding the lock: nobody else holds this inode
        os.close(fd)  # closing releases the flock


def _open_lock(lock_path: Path) -> int:
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NodeError(f"cannot create lock file {lock_path}: {exc.strerror}", path=str(lock_path)) from None


def _acquire(fd: int, lock_path: Path, *, deadline: float, poll: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise NodeError(f"cannot lock {lock_path}: {exc.strerror}", path=str(lock_path)) from None
            if time.monotonic() >= deadline:
                raise LockError(
                    f"another kubepki is writing to this node (lock {lock_path} is held); "
                    "try again when it has finished", path=str(lock_path),
                ) from None
            time.sleep(poll)


def _names(lock_path: Path, fd: int) -> bool:
    """Does ``lock_path`` still name the file open as ``fd``?"""
    try:
        on_disk = os.stat(lock_path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def atomic_write(
    target: Path, data: bytes, *, mode: int, uid: int | None = None, gid: int | None = None,
    node_path: str | None = None,
) -> None:
    """Write ``data`` to ``target`` through a fsynced temporary file and a rename.

    The temporary file is created ``O_EXCL | O_NOFOLLOW`` with ``mode`` from the
    start, so a key is never readable by others, not even for a moment. On any
    error the temporary file is removed and ``target`` is untouched.
    """
    shown = node_path or str(target)
    directory = target.parent
    tmp = directory / f".{target.name}.kubepki-{secrets.token_hex(6)}.tmp"
    try:
        write_exclusive(tmp, data, mode=mode, uid=uid, gid=gid)
        try:
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise _node_error(exc, shown) from None
    fsync_dir(directory)


def write_exclusive(path: str | os.PathLike[str], data: bytes, *, mode: int, uid: int | None = None,
                    gid: int | None = None) -> None:
    """Create the local file ``path`` with ``data``: mode (and owner) from the start, fsynced.

    Nothing at ``path`` (a symlink included) is ever opened or replaced
    (``O_EXCL | O_NOFOLLOW``): that is :class:`FileExistsError`. ``uid``/``gid`` None
    keep the process's. On any error the file is removed and the ``OSError`` raised.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename the local file ``src`` to ``dst`` unless something is at ``dst`` (:class:`FileExistsError`).

    ``link(2)`` then ``unlink(2)``, so nothing is replaced even by a racing writer; on
    filesystems without hard links, a check then ``rename(2)``.
    """
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it survives a crash (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _node_error(exc: OSError, path: PurePosixPath | str) -> NodeError:
    return node_error(exc, str(path))
