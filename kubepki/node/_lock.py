"""One writer per node: an exclusive lock every mutating operation takes.

The lock is keyed on the node, not on a directory flag: it is always
``/etc/kubernetes/.kubepki.lock`` inside the node's root (kubeadm's fixed
``KubernetesDir``, cmd/kubeadm/app/constants), whatever ``--kubeconfig-dir`` or
``--cert-dir`` say, so two writers given different directories for one node still
exclude each other. It is taken through the node's filesystem (:meth:`kubepki.node._fs.NodeFS.lock`), so two
kubepki processes (or threads) renewing or restoring the same node cannot
interleave, wherever they run:

- a local root (:class:`~kubepki.node._fs.LocalFS`) takes ``flock(2)`` on the file;
- a node over SSH (:class:`~kubepki.node._ssh.SSHFS`) runs ``flock(1)`` on the same
  file on the node, held by an SSH session for the ``with`` block.

Both are the same kernel lock on the node, so a kubepki running on the node
(the Ansible module, a cron job) and one driving it over SSH exclude each
other. The kernel drops the lock when its holder dies (for SSH: when the
session's connection goes away), so a crashed run never leaves the node locked
and no stale-lock timeout is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import PurePosixPath

from kubepki.node._node import Node

__all__ = ["LOCK_NAME", "LOCK_PATH", "node_lock"]

LOCK_NAME = ".kubepki.lock"
#: Where the lock lives on every node (inside its root).
LOCK_PATH = PurePosixPath("/etc/kubernetes") / LOCK_NAME


@contextlib.contextmanager
def node_lock(node: Node, *, wait: float = 0.0, poll: float = 0.05) -> Iterator[None]:
    """Hold ``node``'s write lock for the ``with`` block.

    ``wait`` is how many seconds to wait for another holder (0: fail at once).
    Raises :class:`~kubepki.LockError` when the lock stays taken, and
    :class:`~kubepki.NodeError` when the lock file cannot be created.
    """
    with node.fs.lock(LOCK_PATH, wait=wait, poll=poll):
        yield
