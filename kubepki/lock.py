"""One writer per node: an advisory lock every mutating operation takes.

The lock is ``flock(2)`` on ``<kubeconfig dir>/.kubepki.lock`` inside the node's
root, so two kubepki processes (or threads) renewing or restoring the same node
cannot interleave. The kernel drops the lock when its holder dies, so a crashed
run never leaves the node locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator

from kubepki.errors import LockError, NodeError
from kubepki.fs import LocalFS
from kubepki.node import Node

__all__ = ["LOCK_NAME", "node_lock"]

LOCK_NAME = ".kubepki.lock"


@contextlib.contextmanager
def node_lock(node: Node, *, wait: float = 0.0, poll: float = 0.05) -> Iterator[None]:
    """Hold ``node``'s write lock for the ``with`` block.

    ``wait`` is how many seconds to wait for another holder (0: fail at once).
    Raises :class:`~kubepki.LockError` when the lock stays taken.
    """
    if not isinstance(node.fs, LocalFS):
        yield  # remote nodes lock on their side
        return
    lock_path = node.fs.host_path(node.profile.kubeconfig_dir / LOCK_NAME, follow_last=False)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NodeError(f"cannot create lock file {lock_path}: {exc.strerror}", path=str(lock_path)) from None
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise NodeError(f"cannot lock {lock_path}: {exc.strerror}", path=str(lock_path)) from None
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"another kubepki is writing to this node (lock {lock_path} is held); "
                        "try again when it has finished", path=str(lock_path),
                    ) from None
                time.sleep(poll)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the flock
