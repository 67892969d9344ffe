"""How kubepki reaches a node's files: a root directory, paths as seen on the node.

A node path is an absolute POSIX path as the node sees it (``/etc/kubernetes/pki/ca.crt``).
:class:`LocalFS` maps it under a root directory (``/`` on the node itself, ``/host`` in
a privileged pod, a temporary directory in tests) and resolves symlinks as the node
would: an absolute link target is taken relative to the root, and ``..`` stops at
the root as it does in a chroot, so nothing resolves to a place outside the root.

Writes are atomic: a temporary file in the same directory, created with
``O_EXCL | O_NOFOLLOW``, written, fsynced, renamed over the target, then the
directory is fsynced. A crash leaves either the old or the new file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat as stat_mod
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

import attrs

from kubepki.errors import NodeError

__all__ = ["FileStat", "LocalFS", "NodeFS", "atomic_write", "node_path"]

_MAX_LINKS = 40


def node_path(path: str | PurePosixPath) -> PurePosixPath:
    """Normalise ``path`` to an absolute node path; refuses relative paths."""
    p = PurePosixPath(path)
    if not p.is_absolute():
        raise NodeError(f"node paths must be absolute: {str(path)!r}", path=str(path))
    return p


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


class LocalFS:
    """A node whose filesystem is a local directory."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)
        self._root_str = str(self.root).rstrip("/")

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
        root = self._root_str
        parts = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
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
        return root + "/" + "/".join(done) if done else (root or "/")

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
                is_file=stat_mod.S_ISREG(st.st_mode),
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
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as exc:
        raise _node_error(exc, shown) from None
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _node_error(exc, shown) from None
    fsync_dir(directory)


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
    reason = {
        errno.ENOENT: "does not exist",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOSPC: "no space left on device",
        errno.EROFS: "read-only filesystem",
        errno.ELOOP: "refusing to follow a symbolic link",
        errno.EISDIR: "is a directory",
        errno.ENOTDIR: "a parent is not a directory",
        errno.EDQUOT: "disk quota exceeded",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    err = NodeError(f"{path}: {reason}", path=str(path))
    err.errno = exc.errno
    return err

