"""The node lock leaves no file behind, and a holder never shares it with a late opener.

Real ``flock(2)`` locks between threads of this process (each with its own open
file description, as two kubepki processes have), on a real directory.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import pytest

import kubepki
from kubepki.errors import LockError
from kubepki.node import Node, node_lock
from tests.services import wait_for

UTC = dt.timezone.utc


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A demo node."""
    return kubepki.testing.build_node(tmp_path / "n", issued_at=dt.datetime(2026, 1, 1, tzinfo=UTC)).as_node()


def _lock_file(node: Node) -> Path:
    return node.root / "etc/kubernetes/.kubepki.lock"


def _open_on(path: Path) -> int:
    """How many file descriptors of this process are open on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            pass
    return count


def test_a_released_lock_leaves_no_file(node: Node) -> None:
    """The lock file exists while the lock is held (negative control) and is gone once it is released."""
    with node_lock(node):
        assert _lock_file(node).is_file()
    assert not _lock_file(node).exists()
    with node_lock(node):  # and it can be taken again
        assert _lock_file(node).is_file()
    assert not _lock_file(node).exists()


def test_a_waiter_on_the_removed_file_takes_the_current_one(node: Node) -> None:
    """A waiter that opened the file before its holder removed it does not hold an orphan lock.

    After the first holder lets go, the waiter has the lock on the file the path names, so a
    third writer is refused (it would succeed if the waiter held the removed inode).
    """
    path = _lock_file(node)
    inside, leave, errors = threading.Event(), threading.Event(), []

    def waiter() -> None:
        try:
            with node_lock(node, wait=30, poll=0.01):
                held = os.stat(path)
                inside.set()
                leave.wait(30)
                assert os.stat(path).st_ino == held.st_ino
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            inside.set()

    with node_lock(node):
        thread = threading.Thread(target=waiter)
        thread.start()
        wait_for("the waiter to open the lock file", lambda: _open_on(path) == 2)
    wait_for("the waiter to hold the lock", inside.is_set)
    try:
        assert errors == []
        assert path.is_file()
        with pytest.raises(LockError, match="another kubepki"), node_lock(node):
            pass
    finally:
        leave.set()
        thread.join(30)
    assert errors == [] and not path.exists()


def test_the_lock_is_keyed_on_the_node_not_on_a_directory_flag(node: Node, tmp_path: Path) -> None:
    """Two writers told different kubeconfig directories for one node exclude each other (they did not when
    the lock lived in the kubeconfig directory); control: another node's lock is independent."""
    moved = node.root / "srv/kubeconfigs"
    moved.mkdir(parents=True)
    other_view = Node(node.root, kubeconfig_dir="/srv/kubeconfigs")
    with node_lock(node):
        with pytest.raises(LockError, match="another kubepki"), node_lock(other_view):
            pass
        assert not (moved / ".kubepki.lock").exists()
        elsewhere = kubepki.testing.build_node(tmp_path / "other").as_node()
        with node_lock(elsewhere):  # control: a different node is not locked
            pass


def test_the_lock_creates_missing_parents_with_explicit_modes(tmp_path: Path) -> None:
    """Under umask 000 a missing /etc/kubernetes is created 0755, not 0777; control: the lock still works."""
    root = tmp_path / "bare"
    root.mkdir()
    old = os.umask(0)
    try:
        with node_lock(Node(root)):
            assert (root / "etc/kubernetes/.kubepki.lock").is_file()
    finally:
        os.umask(old)
    for directory in (root / "etc", root / "etc/kubernetes"):
        assert directory.stat().st_mode & 0o777 == 0o755, directory
