"""LocalFS: node paths resolve under the root, symlinks included; writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from kubepki.errors import NodeError
from kubepki.node._fs import LocalFS, atomic_write


def test_absolute_symlink_is_taken_relative_to_the_root(tmp_path: Path) -> None:
    """/var/x -> /etc/y inside the root reads <root>/etc/y, never the host's /etc/y."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/y").write_bytes(b"inside")
    (tmp_path / "var").mkdir()
    os.symlink("/etc/y", tmp_path / "var/x")
    fs = LocalFS(tmp_path)
    assert fs.read_bytes(PurePosixPath("/var/x")) == b"inside"
    assert fs.readlink(PurePosixPath("/var/x")) == "/etc/y"


@pytest.mark.parametrize("target", ["../../../../etc/passwd", "/../../etc/passwd", "../../.."])
def test_dotdot_stops_at_the_root(tmp_path: Path, target: str) -> None:
    """A link climbing out of the root stays inside it, as in a chroot."""
    (tmp_path / "a").mkdir()
    os.symlink(target, tmp_path / "a/link")
    fs = LocalFS(tmp_path)
    resolved = fs.host_path("/a/link")
    assert str(resolved).startswith(str(tmp_path))
    assert fs.stat(PurePosixPath("/a/link")) is None or str(resolved) == str(tmp_path)


def test_symlink_loop_is_a_node_error(tmp_path: Path) -> None:
    """Loops give a NodeError, not a hang or RecursionError."""
    os.symlink("/b", tmp_path / "a")
    os.symlink("/a", tmp_path / "b")
    with pytest.raises(NodeError, match="too many levels"):
        LocalFS(tmp_path).read_bytes(PurePosixPath("/a"))


def test_missing_and_unreadable(tmp_path: Path) -> None:
    """Absent files stat as None and read as NodeError; errors name the node path."""
    fs = LocalFS(tmp_path)
    assert fs.stat(PurePosixPath("/nope")) is None
    assert fs.read_file(PurePosixPath("/nope"), limit=10) is None
    with pytest.raises(NodeError, match="/nope"):
        fs.read_bytes(PurePosixPath("/nope"))


def test_atomic_write_keeps_no_temp_and_sets_mode(tmp_path: Path) -> None:
    """The file appears whole with the requested mode; no temporary file remains."""
    target = tmp_path / "k.key"
    target.write_bytes(b"old")
    target.chmod(0o644)
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["k.key"]


def test_write_through_planted_symlink_replaces_the_link(tmp_path: Path) -> None:
    """A symlink planted at the target is replaced, never written through."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink(str(outside), root / "etc/ca.crt")
    LocalFS(root).write_atomic(PurePosixPath("/etc/ca.crt"), b"cert", mode=0o644)
    assert outside.read_bytes() == b"precious"
    assert not (root / "etc/ca.crt").is_symlink()
    assert (root / "etc/ca.crt").read_bytes() == b"cert"


def test_write_failure_leaves_nothing(tmp_path: Path) -> None:
    """A write into a missing directory fails with NodeError and leaves no file."""
    with pytest.raises(NodeError):
        atomic_write(tmp_path / "missing" / "f", b"x", mode=0o600)
    assert list(tmp_path.iterdir()) == []
