"""Nodes over SSH: the node filesystem interface over SFTP, commands over exec.

>>> from kubepki.node._ssh import SSHFS, ssh_node
>>> fs = SSHFS("10.0.0.11", user="root", key="~/.ssh/id_ed25519", root="/")
>>> fs.describe()
'ssh://root@10.0.0.11:22/'
>>> node = ssh_node("ssh://root@10.0.0.12:22/", key="~/.ssh/id_ed25519")   # doctest: +SKIP
>>> kubepki.inspect(node)                                                    # doctest: +SKIP

:class:`SSHFS` implements :class:`kubepki.node._fs.NodeFS` with paramiko, which is
synchronous (no event loop of its own), so it works unchanged inside Jupyter's.
Like :class:`~kubepki.node._fs.LocalFS` it has a ``root``: the directory on the
server that stands for the node's ``/`` (``/`` on a real node; a directory per
node when one server holds several node trees). Symlinks are resolved inside
that root on the server side, with the same algorithm as ``LocalFS``, through
SFTP ``lstat`` and ``readlink``.

Security:

- Host key checking is always on: the server's key must be in ``known_hosts``
  (default ``~/.ssh/known_hosts`` and ``/etc/ssh/ssh_known_hosts``); an unknown
  or different key raises :class:`HostKeyError` before anything is sent.
- Private keys read from the node (a CA key to sign with) and keys generated for
  it stay in this process's memory and are written to the node over SFTP only;
  kubepki never writes them on the controlling machine's disk. Backups of a
  remote node are written on the node (``backup(..., on_node=True)``).
- Writes are atomic as on a local root: a temporary name created exclusively
  (``O_EXCL``) with the final mode from the start, written, fsynced through
  OpenSSH's ``fsync@openssh.com``, then renamed over the target with
  ``posix-rename@openssh.com``.
- The node lock is ``flock(1)`` on the node's lock file, held by an SSH session
  for as long as the lock is: the same kernel lock a kubepki running on the node
  takes, dropped by the node's kernel when the session ends, even when this
  process dies (see :mod:`kubepki.node._lock`).

``import kubepki`` and ``import kubepki.node._ssh`` do not import paramiko; the first
connection does.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import secrets
import shlex
import socket
import stat as stat_mod
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from kubepki.errors import ConfigError, HostKeyError, LockError, NodeError, os_reason
from kubepki.node._fs import CommandResult, FileStat, node_path

if TYPE_CHECKING:  # pragma: no cover - paramiko is imported on first connection
    import paramiko

    from kubepki.node._node import Node

__all__ = ["SSHFS", "HostKeyError", "ssh_node"]

_MAX_LINKS = 40
_CHUNK = 32768  # SFTP's usual largest read and write
# flock(1)'s exit status when the lock is held elsewhere (-E); 127 is "command not found".
_LOCK_CONFLICT = 75
_NOT_FOUND = 127


def _fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a key."""
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _host_label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _transport_class() -> Any:
    """paramiko's Transport preferring AES-GCM.

    With CTR or CBC ciphers paramiko checks every packet's MAC in pure Python,
    byte by byte, which makes SFTP CPU-bound; GCM's tag is checked inside
    OpenSSL. OpenSSH has offered ``aes*-gcm@openssh.com`` since 6.2; the other
    ciphers stay as fallbacks for servers that do not.
    """
    import paramiko

    defaults: tuple[str, ...] = getattr(paramiko.Transport, "_preferred_ciphers", ())

    class _Transport(paramiko.Transport):
        _preferred_ciphers = (
            "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", *(c for c in defaults if "gcm" not in c),
        )

    return _Transport


def _policy(host: str, port: int) -> Any:
    """A paramiko host key policy that refuses unknown servers with :class:`HostKeyError`."""
    import paramiko

    class _Refuse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            raise HostKeyError(
                f"host key of {_host_label(host, port)} ({key.get_name()} {_fingerprint(key)}) is not "
                "in known_hosts; add it after checking it out of band (ssh-keyscan prints it)",
                host=host, port=port, fingerprint=_fingerprint(key),
            )

    return _Refuse()


class SSHFS:
    """A node's files over SFTP, with ``root`` standing for the node's ``/``.

    ``key`` is a private key file (or a ``paramiko.PKey``) for public-key login;
    None uses the SSH agent and ``~/.ssh/id_*``. ``known_hosts`` is a known_hosts
    file; None uses ``~/.ssh/known_hosts`` and ``/etc/ssh/ssh_known_hosts``.
    ``timeout`` bounds connecting, ``command_timeout`` each :meth:`run`.
    The connection opens on first use (:meth:`connect` opens it now) and is
    shared by the threads using this object; :meth:`close` ends it.

    Raises :class:`HostKeyError` for an unknown or changed host key and
    :class:`~kubepki.NodeError` when the server cannot be reached, the login is
    refused or ``root`` is not a directory on the server.
    """

    def __init__(
        self,
        host: str,
        port: int = 22,
        user: str = "root",
        key: str | os.PathLike[str] | paramiko.PKey | None = None,
        known_hosts: str | os.PathLike[str] | None = None,
        *,
        root: str = "/",
        timeout: float = 10.0,
        command_timeout: float = 60.0,
        path_cache_seconds: float = 5.0,
    ) -> None:
        if not host:
            raise NodeError("an SSH node needs a host")
        if importlib.util.find_spec("paramiko") is None:  # found, not imported: that waits for a connection
            raise ConfigError("nodes over SSH need paramiko: pip install 'paramiko>=3.2'")
        self.host = host
        self.port = int(port)
        self.user = user
        self.key = key
        self.known_hosts = Path(os.path.expanduser(os.fspath(known_hosts))) if known_hosts is not None else None
        self.root = str(node_path(root))
        self._root_str = self.root.rstrip("/")
        self.timeout = timeout
        self.command_timeout = command_timeout
        self.path_cache_seconds = path_cache_seconds
        self._lock = threading.RLock()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        # Remote directories seen to be real directories (not symlinks), with when.
        self._dirs: dict[str, float] = {}
        self._is_root: bool | None = None

    def __repr__(self) -> str:
        return f"SSHFS({self.describe()!r})"

    def describe(self) -> str:
        """``ssh://user@host:port/root``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}:{self.port}{self.root}"

    # -- the connection ---------------------------------------------------------------

    def connect(self) -> SSHFS:
        """Open the connection and the SFTP session now (no-op when open)."""
        self._sftp_client()
        return self

    def close(self) -> None:
        """Close the connection; the next use opens a new one."""
        with self._lock:
            sftp, client = self._sftp, self._client
            self._sftp = self._client = None
            self._dirs.clear()
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def __enter__(self) -> SSHFS:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        client = self._client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    def _ssh_client(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is not None and self.connected:
                return self._client
            self._sftp = None
            self._client = self._open()
            return self._client

    def _open(self) -> paramiko.SSHClient:
        import paramiko

        label = _host_label(self.host, self.port)
        client = paramiko.SSHClient()
        try:
            if self.known_hosts is not None:
                client.load_host_keys(str(self.known_hosts))
            else:
                client.load_system_host_keys()
                with contextlib.suppress(OSError):
                    client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
        except (OSError, paramiko.SSHException, ValueError) as exc:  # UnicodeDecodeError: not text
            client.close()
            raise NodeError(f"cannot read known_hosts {self.known_hosts}: {exc}",
                            path=str(self.known_hosts)) from None
        client.set_missing_host_key_policy(_policy(self.host, self.port))
        kwargs: dict[str, Any] = {"allow_agent": self.key is None, "look_for_keys": self.key is None}
        if isinstance(self.key, paramiko.PKey):
            kwargs["pkey"] = self.key
        elif self.key is not None:
            kwargs["key_filename"] = os.path.expanduser(os.fspath(self.key))
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            # SSH requests are small and answered one by one: without TCP_NODELAY, Nagle's
            # algorithm and delayed ACKs add tens of milliseconds to each exchange.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kwargs["sock"] = sock
            kwargs["transport_factory"] = _transport_class()
            client.connect(self.host, port=self.port, username=self.user, timeout=self.timeout,
                           banner_timeout=self.timeout, auth_timeout=self.timeout, **kwargs)
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            got, expected = _fingerprint(exc.key), _fingerprint(exc.expected_key)
            raise HostKeyError(
                f"host key of {label} does not match known_hosts: the server offered "
                f"{exc.key.get_name()} {got}, known_hosts has {expected}; refusing to connect "
                "(a reinstalled server, or someone in between)",
                host=self.host, port=self.port, fingerprint=got, expected=expected,
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            err = NodeError(f"{self.user}@{label}: login refused ({exc})")
            err.errno = errno.EACCES
            raise err from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            err = NodeError(f"cannot connect to {label}: {reason or type(exc).__name__}")
            err.errno = exc.errno if isinstance(exc, OSError) else errno.EIO
            raise err from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        return client

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._lock:
            client = self._ssh_client()
            if self._sftp is None:
                try:
                    self._sftp = client.open_sftp()
                except Exception as exc:
                    raise NodeError(f"{self.describe()}: no SFTP session ({exc})") from None
                self._check_root(self._sftp)
            return self._sftp

    def _check_root(self, sftp: paramiko.SFTPClient) -> None:
        try:
            st = sftp.stat(self.root)
        except OSError as exc:
            raise self._error(exc, self.root, what="node root") from None
        if not stat_mod.S_ISDIR(st.st_mode or 0):
            raise NodeError(f"node root {self.root!r} on {_host_label(self.host, self.port)} is not a "
                            "directory", path=self.root)

    # -- errors -------------------------------------------------------------------------

    def _error(self, exc: BaseException, path: PurePosixPath | str, *, what: str = "") -> NodeError:
        """A NodeError naming the node path, from an SFTP or connection error."""
        shown = f"{what} {path}".strip()
        if isinstance(exc, NodeError):
            return exc
        code = exc.errno if isinstance(exc, OSError) else None
        if isinstance(exc, OSError) and code is not None:
            reason = os_reason(exc)
        elif isinstance(exc, OSError):
            text = exc.strerror or (str(exc.args[0]) if exc.args else "")
            reason = f"failed ({text or 'SFTP failure'})"
        else:
            reason = f"connection to {_host_label(self.host, self.port)} failed ({exc or type(exc).__name__})"
            code = errno.EIO
        err = NodeError(f"{shown}: {reason}", path=str(path))
        err.errno = code
        return err

    @contextlib.contextmanager
    def _sftp_call(self, path: PurePosixPath | str) -> Iterator[paramiko.SFTPClient]:
        """The SFTP client, with errors mapped onto NodeError naming ``path``."""
        import paramiko

        with self._lock:
            sftp = self._sftp_client()
            try:
                yield sftp
            except (OSError, paramiko.SSHException, EOFError) as exc:
                if not isinstance(exc, OSError):
                    self._drop()
                raise self._error(exc, path) from None

    def _drop(self) -> None:
        """Forget a broken connection so that the next call reconnects."""
        sftp, client = self._sftp, self._client
        self._sftp = self._client = None
        for closable in (sftp, client):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()

    # -- paths --------------------------------------------------------------------------

    def _remote(self, path: str, *, follow_last: bool = True) -> str:  # noqa: C901, PLR0912  -- path resolution one component at a time (symlinks, '..', the root)
        """Resolve node ``path`` to a path on the server, symlinks resolved inside the root.

        The algorithm of :meth:`kubepki.node._fs.LocalFS._local`: an absolute link target
        starts again at the root, ``..`` stops at the root. Directories seen to be
        real directories are remembered for ``path_cache_seconds``, and forgotten
        whenever this object changes a name on the node.
        """
        root = self._root_str
        parts = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        now = time.monotonic()
        sftp = self._sftp_client()
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            if not parts and not follow_last:
                done.append(part)
                break
            remote = root + "/" + "/".join((*done, part))
            seen = self._dirs.get(remote)
            if seen is not None and now - seen < self.path_cache_seconds:
                done.append(part)
                continue
            try:
                mode = sftp.lstat(remote).st_mode or 0
            except FileNotFoundError:
                mode = 0
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    mode = 0
                else:
                    raise self._error(exc, "/" + "/".join((*done, part))) from None
            if not stat_mod.S_ISLNK(mode):
                if stat_mod.S_ISDIR(mode) and parts:
                    self._dirs[remote] = now
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_LINKS:
                shown = "/" + "/".join((*done, part))
                raise NodeError(f"too many levels of symbolic links at {shown}", path=shown)
            target = sftp.readlink(remote) or ""
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
        return root + "/" + "/".join(done) if done else (root or "/")

    def _resolved(self, path: PurePosixPath | str, *, follow_last: bool = True) -> str:
        import paramiko

        with self._lock:
            try:
                return self._remote(str(node_path(path)), follow_last=follow_last)
            except (paramiko.SSHException, EOFError) as exc:
                self._drop()
                raise self._error(exc, path) from None

    def _changed(self) -> None:
        self._dirs.clear()

    def resolve(self, path: PurePosixPath, *, follow_last: bool = True) -> PurePosixPath:
        """The node path ``path`` leads to, symlinks resolved inside the root."""
        remote = self._resolved(path, follow_last=follow_last)
        return PurePosixPath("/" + remote[len(self._root_str):].lstrip("/"))

    # -- reading ------------------------------------------------------------------------

    @staticmethod
    def _file_stat(st: paramiko.SFTPAttributes, *, is_symlink: bool | None = None) -> FileStat:
        mode = st.st_mode or 0
        return FileStat(
            size=st.st_size or 0, mode=stat_mod.S_IMODE(mode), uid=st.st_uid or 0, gid=st.st_gid or 0,
            mtime=float(st.st_mtime or 0),
            is_symlink=stat_mod.S_ISLNK(mode) if is_symlink is None else is_symlink,
            is_dir=stat_mod.S_ISDIR(mode), is_file=stat_mod.S_ISREG(mode),
        )

    @staticmethod
    def _read(sftp: paramiko.SFTPClient, remote: str, size: int | None, limit: int | None) -> bytes:
        """Read ``remote``: ``size`` bytes when known (one request for a small file), else to
        the end or ``limit`` + 1 bytes."""
        with sftp.open(remote, "rb") as fh:
            if size is not None and (limit is None or size <= limit):
                return fh.read(size) if size else b""
            return fh.read(-1 if limit is None else limit + 1)

    def read_bytes(self, path: PurePosixPath, *, limit: int | None = None) -> bytes:
        """The file's bytes, at most ``limit`` + 1 of them when ``limit`` is given."""
        remote = self._resolved(path)
        with self._sftp_call(path) as sftp:
            return self._read(sftp, remote, None, limit)

    def stat(self, path: PurePosixPath, *, follow: bool = True) -> FileStat | None:
        """Metadata of ``path`` (of the link itself when ``follow`` is False)."""
        remote = self._resolved(path, follow_last=follow)
        with self._sftp_call(path) as sftp:
            try:
                st = sftp.stat(remote) if follow else sftp.lstat(remote)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
            return self._file_stat(st)

    def read_file(
        self, path: PurePosixPath, *, limit: int
    ) -> tuple[FileStat, str | None, bytes | None] | None:
        """Metadata, symlink target and bytes (None when not a file or over ``limit``).

        Returns None when the file does not exist.
        """
        link_remote = self._resolved(path, follow_last=False)
        with self._sftp_call(path) as sftp:
            try:
                lst = sftp.lstat(link_remote)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
            target = None
            remote = link_remote
            st = lst
            if stat_mod.S_ISLNK(lst.st_mode or 0):
                target = sftp.readlink(link_remote) or ""
                remote = self._remote(str(path))
                try:
                    st = sftp.stat(remote)
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        return None
                    raise
            info = self._file_stat(st, is_symlink=target is not None)
            if not info.is_file or info.size > limit:
                return info, target, None
            try:
                data = self._read(sftp, remote, info.size, limit)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
            return info, target, data

    def readlink(self, path: PurePosixPath) -> str | None:
        """The symlink's stored target, or None when not a symlink."""
        remote = self._resolved(path, follow_last=False)
        with self._sftp_call(path) as sftp:
            try:
                if not stat_mod.S_ISLNK(sftp.lstat(remote).st_mode or 0):
                    return None
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
            return sftp.readlink(remote) or ""

    def listdir(self, path: PurePosixPath) -> list[str]:
        """Sorted names in the directory; empty when it does not exist."""
        remote = self._resolved(path)
        with self._sftp_call(path) as sftp:
            try:
                return sorted(sftp.listdir(remote))
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return []
                raise

    # -- writing ------------------------------------------------------------------------

    def _create(self, sftp: paramiko.SFTPClient, remote: str, mode: int) -> paramiko.SFTPFile:
        """Open ``remote`` for writing, created O_EXCL with ``mode`` from the start.

        paramiko's ``open(..., "x")`` sends no permissions, so the file would be
        created 0666 minus the server's umask and a key readable by others for a
        moment; the OPEN request is built here with the mode in its attributes.
        """
        import paramiko
        from paramiko import sftp as proto

        attributes = paramiko.SFTPAttributes()
        attributes.st_mode = mode
        flags = proto.SFTP_FLAG_WRITE | proto.SFTP_FLAG_CREATE | proto.SFTP_FLAG_EXCL
        client: Any = sftp  # the request helpers are private; OpenSSH and paramiko have had them for years
        kind, msg = client._request(proto.CMD_OPEN, remote, flags, attributes)
        if kind != proto.CMD_HANDLE:
            raise OSError(errno.EIO, "the server sent no file handle")
        return paramiko.SFTPFile(sftp, msg.get_binary(), "wb")

    @staticmethod
    def _fsync(sftp: paramiko.SFTPClient, fh: paramiko.SFTPFile) -> None:
        from paramiko import sftp as proto

        fh.flush()
        client: Any = sftp
        client._request(proto.CMD_EXTENDED, "fsync@openssh.com", fh.handle)

    def _exists_error(self, sftp: paramiko.SFTPClient, remote: str, path: PurePosixPath | str,
                      exc: OSError) -> NodeError:
        """SFTP v3 reports EEXIST as a plain failure: tell it apart by looking."""
        if exc.errno is None:
            try:
                sftp.lstat(remote)
            except OSError:
                pass
            else:
                err = NodeError(f"{path}: exists already", path=str(path))
                err.errno = errno.EEXIST
                return err
        return self._error(exc, path)

    def _write_new(self, sftp: paramiko.SFTPClient, remote: str, path: PurePosixPath | str, data: bytes,
                   *, mode: int, uid: int | None, gid: int | None) -> None:
        try:
            fh = self._create(sftp, remote, mode)
        except OSError as exc:
            raise self._exists_error(sftp, remote, path, exc) from None
        try:
            with fh:
                view = memoryview(data)
                for start in range(0, len(view), _CHUNK):
                    fh.write(bytes(view[start:start + _CHUNK]))
                fh.chmod(mode)  # the server's umask may have narrowed it
                if uid is not None or gid is not None:
                    st = fh.stat()
                    want_uid = (st.st_uid or 0) if uid is None else uid
                    want_gid = (st.st_gid or 0) if gid is None else gid
                    if (st.st_uid, st.st_gid) != (want_uid, want_gid):
                        fh.chown(want_uid, want_gid)
                self._fsync(sftp, fh)
        except BaseException:
            with contextlib.suppress(Exception):
                sftp.remove(remote)
            raise

    def write_new(
        self, path: PurePosixPath, data: bytes, *, mode: int, uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Create ``path`` exclusively with ``mode``, write, fsync (``EEXIST`` when present)."""
        remote = self._resolved(path, follow_last=False)
        with self._sftp_call(path) as sftp:
            self._write_new(sftp, remote, path, data, mode=mode, uid=uid, gid=gid)

    def write_atomic(
        self, path: PurePosixPath, data: bytes, *, mode: int, uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Atomically replace ``path``; a symlink at ``path`` is replaced, never followed."""
        remote = self._resolved(path, follow_last=False)
        parent, _, name = remote.rpartition("/")
        tmp = f"{parent}/.{name}.kubepki-{secrets.token_hex(6)}.tmp"
        with self._sftp_call(path) as sftp:
            self._write_new(sftp, tmp, path, data, mode=mode, uid=uid, gid=gid)
            try:
                sftp.posix_rename(tmp, remote)
            except BaseException:
                with contextlib.suppress(Exception):
                    sftp.remove(tmp)
                raise
            self._changed()
        self._fsync_remote_dir(parent or "/")

    def symlink(self, target: str, path: PurePosixPath) -> None:
        """Create a symlink at ``path`` pointing to ``target`` (stored as given)."""
        remote = self._resolved(path, follow_last=False)
        with self._sftp_call(path) as sftp:
            try:
                sftp.symlink(target, remote)
            except OSError as exc:
                raise self._exists_error(sftp, remote, path, exc) from None
            self._changed()

    def rename(self, src: PurePosixPath, dst: PurePosixPath, *, replace: bool = True) -> None:
        """``posix-rename@openssh.com``; without ``replace``, SFTP's own rename, which
        OpenSSH does with ``link(2)`` and never lets replace an existing name."""
        a = self._resolved(src, follow_last=False)
        b = self._resolved(dst, follow_last=False)
        with self._sftp_call(src) as sftp:
            try:
                if replace:
                    sftp.posix_rename(a, b)
                else:
                    sftp.rename(a, b)
            except OSError as exc:
                if not replace:
                    raise self._exists_error(sftp, b, dst, exc) from None
                raise
            self._changed()

    def unlink(self, path: PurePosixPath) -> bool:
        """Remove a file or symlink; False when absent."""
        remote = self._resolved(path, follow_last=False)
        with self._sftp_call(path) as sftp:
            try:
                sftp.remove(remote)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return False
                raise
            self._changed()
            return True

    def mkdir(self, path: PurePosixPath, *, mode: int = 0o755) -> bool:
        """Create one directory with exactly ``mode``; False when it exists already."""
        remote = self._resolved(path)
        with self._sftp_call(path) as sftp:
            try:
                sftp.mkdir(remote, mode)
            except OSError as exc:
                try:
                    st = sftp.stat(remote)
                except OSError:
                    raise self._error(exc, path) from None
                if not stat_mod.S_ISDIR(st.st_mode or 0):
                    raise NodeError(f"{path}: exists and is not a directory", path=str(path)) from None
                return False
            sftp.chmod(remote, mode)
            self._changed()
            return True

    def _lsetstat(self, sftp: paramiko.SFTPClient, remote: str, attributes: paramiko.SFTPAttributes) -> None:
        """SETSTAT on the link itself (``lsetstat@openssh.com``, OpenSSH 8.0+)."""
        from paramiko import sftp as proto

        client: Any = sftp
        client._request(proto.CMD_EXTENDED, "lsetstat@openssh.com", remote, attributes)

    def chown(self, path: PurePosixPath, uid: int, gid: int, *, follow: bool = True) -> None:
        """Change the owner (of the link itself when ``follow`` is False)."""
        import paramiko

        remote = self._resolved(path, follow_last=follow)
        with self._sftp_call(path) as sftp:
            if follow:
                sftp.chown(remote, uid, gid)
                return
            attributes = paramiko.SFTPAttributes()
            attributes.st_uid, attributes.st_gid = uid, gid
            self._lsetstat(sftp, remote, attributes)

    def chmod(self, path: PurePosixPath, mode: int) -> None:
        """Set the permission bits of what ``path`` leads to (symlinks resolved inside the root)."""
        remote = self._resolved(path)
        with self._sftp_call(path) as sftp:
            sftp.chmod(remote, mode)

    def set_mtime(self, path: PurePosixPath, mtime: float, *, follow: bool = True) -> None:
        """Set the access and modification times (of the link itself when ``follow`` is False)."""
        import paramiko

        remote = self._resolved(path, follow_last=follow)
        with self._sftp_call(path) as sftp:
            if follow:
                sftp.utime(remote, (mtime, mtime))
                return
            attributes = paramiko.SFTPAttributes()
            attributes.st_atime = attributes.st_mtime = int(mtime)
            self._lsetstat(sftp, remote, attributes)

    def _fsync_remote_dir(self, remote: str) -> None:
        """fsync a directory on the server: OpenSSH opens directories like files (best effort)."""
        with self._lock, contextlib.suppress(Exception):
            sftp = self._sftp_client()
            with sftp.open(remote, "r") as fh:
                self._fsync(sftp, fh)

    def fsync_dir(self, path: PurePosixPath) -> None:
        """Make renames in a directory durable (best effort)."""
        try:
            remote = self._resolved(path)
        except NodeError:
            return
        self._fsync_remote_dir(remote)

    # -- commands -------------------------------------------------------------------------

    def run(self, command: str | Sequence[str], *, timeout: float | None = None,
            stdin: bytes | None = None, check: bool = False) -> CommandResult:
        """Run ``command`` on the node (a shell line, or arguments to quote) and wait for it.

        ``timeout`` (default ``command_timeout``) bounds the whole run: the
        session is closed when it passes and :class:`~kubepki.NodeError` raised.
        With ``check``, a non-zero exit status raises :class:`~kubepki.NodeError` too.
        """
        import paramiko

        line = command if isinstance(command, str) else shlex.join(command)
        limit = self.command_timeout if timeout is None else timeout
        try:
            transport = self._ssh_client().get_transport()
            if transport is None:
                raise paramiko.SSHException("no transport")
            channel = transport.open_session(timeout=self.timeout)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            with self._lock:
                self._drop()
            raise self._error(exc, line, what="running") from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + limit
        try:
            channel.exec_command(line)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.exit_status_ready() and not channel.recv_ready() \
                        and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise NodeError(f"{self.describe()}: {line!r} did not finish within {limit:g} s")
                time.sleep(0.002)
            status = channel.recv_exit_status()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            if isinstance(exc, NodeError):
                raise
            raise self._error(exc, line, what="running") from None
        finally:
            channel.close()
        result = CommandResult(command=line, exit_status=status, stdout=bytes(out), stderr=bytes(err))
        if check and not result.ok:
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise NodeError(f"{self.describe()}: {line!r} exited {status}"
                            + (f": {detail[-1]}" if detail else ""))
        return result

    def can_chown(self) -> bool:
        """True when the SSH user is root on the node (``id -u``)."""
        if self._is_root is None:
            try:
                self._is_root = self.run("id -u", timeout=self.timeout).text().strip() == "0"
            except NodeError:
                self._is_root = self.user == "root"
        return self._is_root

    # -- the node lock ------------------------------------------------------------------

    def lock(self, path: PurePosixPath, *, wait: float = 0.0,
             poll: float = 0.05) -> AbstractContextManager[None]:
        """``flock(1)`` on ``path`` on the node, held by an SSH session for the ``with`` block."""
        return self._flock(path, wait=wait)

    @contextlib.contextmanager
    def _flock(self, path: PurePosixPath, *, wait: float) -> Iterator[None]:  # noqa: C901, PLR0912, PLR0915  -- one exchange of the remote lock protocol
        import paramiko

        from kubepki.node._fs import makedirs

        makedirs(self, path.parent)
        remote = self._resolved(path, follow_last=False)
        with self._sftp_call(path) as sftp:
            try:
                if stat_mod.S_ISLNK(sftp.lstat(remote).st_mode or 0):
                    raise NodeError(f"{path}: refusing to follow a symbolic link", path=str(path))
            except FileNotFoundError:
                pass
        timing = "-n" if wait <= 0 else f"-w {wait:g}"
        # The lock is held on fd 9 while `cat` waits for the end of its input, which comes when
        # the lock is released here or when this session ends for any reason; the holder then
        # removes the file. A waiter that got the lock on a file removed meanwhile (the path
        # names another inode, or none) starts over, as the local lock does.
        script = (f'F={shlex.quote(remote)}; while :; do exec 9>>"$F" || exit 1; '
                  f"flock -x {timing} -E {_LOCK_CONFLICT} 9 || exit $?; "
                  '[ "$(stat -Lc %d:%i /proc/self/fd/9 2>/dev/null)" = "$(stat -c %d:%i "$F" 2>/dev/null)" ] '
                  '&& break; exec 9>&-; done; echo locked; cat >/dev/null; '
                  '[ "$(stat -Lc %d:%i /proc/self/fd/9)" = "$(stat -c %d:%i "$F" 2>/dev/null)" ] && rm -f "$F"; '
                  "exit 0")
        line = f"exec sh -c {shlex.quote(script)}"
        shown = f"{self.describe().rstrip('/')}{path}"
        try:
            transport = self._ssh_client().get_transport()
            if transport is None:
                raise paramiko.SSHException("no transport")
            channel = transport.open_session(timeout=self.timeout)
            channel.exec_command(line)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._error(exc, path, what="locking") from None
        try:
            got = bytearray()
            deadline = time.monotonic() + max(wait, 0) + self.timeout
            while b"locked\n" not in got:
                if channel.recv_ready():
                    got += channel.recv(64)
                    continue
                if channel.exit_status_ready():
                    status = channel.recv_exit_status()
                    err = channel.recv_stderr(4096).decode("utf-8", "replace").strip()
                    if status == _LOCK_CONFLICT:
                        raise LockError(f"another kubepki is writing to this node (lock {shown} is held); "
                                        "try again when it has finished", path=str(path))
                    if status == _NOT_FOUND:
                        raise NodeError(f"{self.describe()}: flock(1) is not available on the node, so "
                                        "kubepki cannot lock it (install util-linux)", path=str(path))
                    raise NodeError(f"cannot lock {shown}: flock exited {status}"
                                    + (f" ({err})" if err else ""), path=str(path))
                if time.monotonic() > deadline:
                    raise LockError(f"no answer from flock on {shown} within "
                                    f"{max(wait, 0) + self.timeout:g} s", path=str(path))
                time.sleep(0.002)
        except BaseException:
            channel.close()
            raise
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                channel.shutdown_write()
                end = time.monotonic() + self.timeout
                while not channel.exit_status_ready() and time.monotonic() < end:
                    time.sleep(0.002)
            channel.close()


def _parse_target(target: str) -> tuple[str | None, str, int | None, str | None]:
    """``ssh://user@host:port/root``, ``user@host`` or ``host`` -> (user, host, port, root)."""
    if not isinstance(target, str):
        raise ConfigError(f"an SSH target must be a str (ssh://user@host:port/root), not {type(target).__name__}")
    if "://" in target:
        parts = urllib.parse.urlsplit(target)
        if parts.scheme != "ssh" or not parts.hostname:
            raise NodeError(f"not an ssh:// URL with a host: {target!r}")
        try:
            port = parts.port
        except ValueError:
            raise NodeError(f"bad port in {target!r}") from None
        root = urllib.parse.unquote(parts.path) or None
        user = urllib.parse.unquote(parts.username) if parts.username else None
        return user, parts.hostname, port, root
    user, _, host = target.rpartition("@")
    return user or None, host, None, None


def ssh_node(
    target: str,
    *,
    key: str | os.PathLike[str] | paramiko.PKey | None = None,
    known_hosts: str | os.PathLike[str] | None = None,
    user: str | None = None,
    port: int | None = None,
    root: str | None = None,
    name: str | None = None,
    cert_dir: str | None = None,
    kubeconfig_dir: str | None = None,
    timeout: float = 10.0,
    command_timeout: float = 60.0,
    role: str | None = None,
) -> Node:
    """A :class:`~kubepki.Node` reached over SSH.

    ``target`` is ``ssh://user@host:port/root/path`` (user root, port 22 and root
    ``/`` when left out), ``user@host`` or ``host``; the keyword arguments
    override what it says. ``name`` is the node's name when discovery should not
    be trusted to find it, ``role`` its role (``control-plane``, ``worker``, ``etcd``) when
    discovery should not decide it. Nothing is connected until the node is used.
    """
    from kubepki.node._node import Node

    t_user, host, t_port, t_root = _parse_target(target)
    fs = SSHFS(host, port or t_port or 22, user or t_user or "root", key=key, known_hosts=known_hosts,
               root=root or t_root or "/", timeout=timeout, command_timeout=command_timeout)
    return Node(fs.root, fs=fs, name=name, cert_dir=cert_dir, kubeconfig_dir=kubeconfig_dir, role=role)
