"""SSHFS against real OpenSSH servers on 127.0.0.1: reads, writes, the lock, renewal, restore."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pytest

import kubepki
from kubepki import testing
from kubepki.cli import exit_status
from kubepki.errors import LockError, NodeError
from kubepki.node._fs import LocalFS, makedirs
from kubepki.node._lock import node_lock
from kubepki.node._node import Node
from kubepki.node._ssh import SSHFS, HostKeyError, ssh_node
from tests import sshd
from tests.leaks import key_needles, scan_for_keys

pytestmark = pytest.mark.skipif(sshd.SKIP_REASON is not None, reason=sshd.SKIP_REASON or "")

WHEN = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
DUE = WHEN + dt.timedelta(days=340)
P = PurePosixPath
#: Opens an SSHFS on the first test server with ``root`` (and options).
Connector = Callable[..., SSHFS]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Fleet]:
    """Two sshd servers for this module, stopped (with their children) at its end."""
    f = sshd.start_fleet(tmp_path_factory.mktemp("sshd"), 2)
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def known_hosts(fleet: sshd.Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A known_hosts file with the servers' real host keys."""
    return fleet.known_hosts(tmp_path_factory.mktemp("kh") / "known_hosts")


@pytest.fixture
def connect(fleet: sshd.Fleet, known_hosts: Path) -> Iterator[Connector]:
    """Open SSHFS objects on the first server; every one is closed after the test."""
    opened: list[SSHFS] = []

    def make(root: Path | str, **kwargs: object) -> SSHFS:
        options: dict[str, object] = {"key": fleet.client_key, "known_hosts": known_hosts}
        options.update(kwargs)
        fs = SSHFS("127.0.0.1", fleet.servers[0].port, "root", root=str(root), **options)  # type: ignore[arg-type]
        opened.append(fs)
        return fs

    yield make
    for fs in opened:
        fs.close()


@pytest.fixture
def demo(tmp_path: Path) -> testing.DemoNode:
    """A one-node kubeadm tree issued at WHEN."""
    return testing.build_node(tmp_path / "nodes", issued_at=WHEN)


def _node(connect: Connector, root: Path) -> Node:
    return Node(root, fs=connect(root))


def _without_mtimes(doc: object) -> object:
    """The inventory dict with file mtimes dropped (SFTP v3 carries whole seconds)."""
    if isinstance(doc, dict):
        return {k: _without_mtimes(v) for k, v in doc.items() if k not in ("mtime", "root")}
    if isinstance(doc, list):
        return [_without_mtimes(v) for v in doc]
    return doc


# -- reading --------------------------------------------------------------------------------


def test_inspection_over_ssh_equals_local_inspection(connect: Connector, demo: testing.DemoNode) -> None:
    """Every item, finding and file digest is the same over SSH as through the local root."""
    remote = kubepki.inspect(_node(connect, demo.root), now=WHEN)
    local = kubepki.inspect(demo.root, now=WHEN)
    assert _without_mtimes(remote.to_dict()) == _without_mtimes(local.to_dict())
    assert remote.node == "cp1"
    assert exit_status(remote) == 0


def test_inspection_over_ssh_sees_damage(connect: Connector, tmp_path: Path) -> None:
    """A planted defect is found over SSH as locally (and a clean item stays clean)."""
    demo = testing.build_node(tmp_path / "n", issued_at=WHEN,
                              defects=[testing.Defect(testing.DefectKind.KEY_MISMATCH, "apiserver")])
    inv = kubepki.inspect(_node(connect, demo.root), now=WHEN)
    assert inv["apiserver"].has("key-mismatch")
    assert not inv["front-proxy-client"].findings


def test_absolute_symlink_resolves_inside_the_remote_root(connect: Connector, tmp_path: Path) -> None:
    """/var/x -> /etc/y inside the root reads <root>/etc/y on the server, never the server's /etc/y."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/y").write_bytes(b"inside")
    (tmp_path / "var").mkdir()
    os.symlink("/etc/y", tmp_path / "var/x")
    fs = connect(tmp_path)
    assert fs.read_bytes(P("/var/x")) == b"inside"
    assert fs.readlink(P("/var/x")) == "/etc/y"
    assert fs.resolve(P("/var/x")) == P("/etc/y")
    st, target, data = fs.read_file(P("/var/x"), limit=100)
    assert (st.is_symlink, target, data) == (True, "/etc/y", b"inside")


@pytest.mark.parametrize("target", ["../../../../etc/passwd", "/../../etc/passwd"])
def test_dotdot_stops_at_the_remote_root(connect: Connector, tmp_path: Path, target: str) -> None:
    """A link climbing out of the root stays inside it, as in a chroot (the server's passwd is not read)."""
    (tmp_path / "a").mkdir()
    os.symlink(target, tmp_path / "a/link")
    fs = connect(tmp_path)
    assert fs.resolve(P("/a/link")) == P("/etc/passwd")
    assert fs.stat(P("/a/link")) is None
    with pytest.raises(NodeError, match="does not exist"):
        fs.read_bytes(P("/a/link"))


def test_symlink_loop_is_a_node_error(connect: Connector, tmp_path: Path) -> None:
    """A loop gives NodeError, as on a local root."""
    os.symlink("/b", tmp_path / "a")
    os.symlink("/a", tmp_path / "b")
    with pytest.raises(NodeError, match="too many levels"):
        connect(tmp_path).read_bytes(P("/a"))


def test_missing_files_and_directories(connect: Connector, tmp_path: Path) -> None:
    """Absent paths stat as None, list as empty and read as NodeError naming the node path."""
    fs = connect(tmp_path)
    assert fs.stat(P("/nope")) is None
    assert fs.read_file(P("/nope"), limit=10) is None
    assert fs.listdir(P("/nope")) == []
    assert fs.readlink(P("/nope")) is None
    with pytest.raises(NodeError, match="/nope") as info:
        fs.read_bytes(P("/nope"))
    assert info.value.errno == errno.ENOENT


def test_root_that_is_not_a_directory_is_refused(connect: Connector, tmp_path: Path) -> None:
    """A root that does not exist on the server fails on first use, with the path."""
    fs = connect(tmp_path / "absent")
    with pytest.raises(NodeError, match="absent"):
        fs.stat(P("/etc"))


# -- host keys and logins ---------------------------------------------------------------------


def test_wrong_host_key_is_refused(fleet: sshd.Fleet, tmp_path: Path, demo: testing.DemoNode) -> None:
    """A server whose key differs from known_hosts is refused with HostKeyError; the right key connects."""
    wrong = fleet.known_hosts(tmp_path / "wrong", wrong=[0])
    fs = SSHFS("127.0.0.1", fleet.servers[0].port, key=fleet.client_key, known_hosts=wrong, root=str(demo.root))
    with pytest.raises(HostKeyError, match="does not match") as info:
        fs.connect()
    assert info.value.expected is not None and info.value.fingerprint != info.value.expected
    assert isinstance(info.value, NodeError)
    right = fleet.known_hosts(tmp_path / "right")
    with SSHFS("127.0.0.1", fleet.servers[0].port, key=fleet.client_key, known_hosts=right,
               root=str(demo.root)) as ok:
        assert ok.stat(P("/etc/kubernetes/pki/ca.crt")) is not None


def test_unknown_host_is_refused(fleet: sshd.Fleet, tmp_path: Path) -> None:
    """A server missing from known_hosts is refused, never trusted on first use."""
    empty = tmp_path / "empty"
    empty.write_text("")
    fs = SSHFS("127.0.0.1", fleet.servers[1].port, key=fleet.client_key, known_hosts=empty)
    with pytest.raises(HostKeyError, match="not in known_hosts") as info:
        fs.connect()
    assert info.value.expected is None
    assert empty.read_text() == ""


def test_wrong_client_key_is_a_login_error(fleet: sshd.Fleet, known_hosts: Path, tmp_path: Path) -> None:
    """A key the server does not accept gives NodeError (EACCES), not a host key error."""
    other = sshd.keygen(tmp_path / "other")
    fs = SSHFS("127.0.0.1", fleet.servers[0].port, key=other, known_hosts=known_hosts)
    with pytest.raises(NodeError, match="login refused") as info:
        fs.connect()
    assert not isinstance(info.value, HostKeyError)
    assert info.value.errno == errno.EACCES


def test_nothing_listening_is_a_node_error(fleet: sshd.Fleet, known_hosts: Path) -> None:
    """A closed port gives NodeError naming the address."""
    fs = SSHFS("127.0.0.1", sshd.free_port(), key=fleet.client_key, known_hosts=known_hosts, timeout=3)
    with pytest.raises(NodeError, match=r"cannot connect to 127\.0\.0\.1"):
        fs.connect()


def test_ssh_node_parses_urls(fleet: sshd.Fleet, known_hosts: Path, demo: testing.DemoNode) -> None:
    """ssh://user@host:port/root gives a Node whose files are read under that root."""
    node = ssh_node(f"ssh://root@127.0.0.1:{fleet.servers[0].port}{demo.root}", key=fleet.client_key,
                    known_hosts=known_hosts)
    try:
        assert node.fs.describe() == f"ssh://root@127.0.0.1:{fleet.servers[0].port}{demo.root}"
        assert node.profile.name == "cp1"
    finally:
        node.fs.close()  # type: ignore[attr-defined]


# -- writing ----------------------------------------------------------------------------------


def test_write_atomic_sets_mode_and_leaves_no_temporary(connect: Connector, tmp_path: Path) -> None:
    """The file appears whole with the requested mode; no temporary file remains."""
    (tmp_path / "k.key").write_bytes(b"old")
    (tmp_path / "k.key").chmod(0o644)
    fs = connect(tmp_path)
    fs.write_atomic(P("/k.key"), b"new" * 20000, mode=0o600)
    assert (tmp_path / "k.key").read_bytes() == b"new" * 20000
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["k.key"]


def test_write_through_planted_symlink_replaces_the_link(connect: Connector, tmp_path: Path) -> None:
    """A symlink planted at the target is replaced, never written through."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink(str(outside), root / "etc/ca.crt")
    connect(root).write_atomic(P("/etc/ca.crt"), b"cert", mode=0o644)
    assert outside.read_bytes() == b"precious"
    assert not (root / "etc/ca.crt").is_symlink()
    assert (root / "etc/ca.crt").read_bytes() == b"cert"


def test_write_new_is_exclusive(connect: Connector, tmp_path: Path) -> None:
    """write_new creates with the mode from the start and refuses an existing name (EEXIST)."""
    fs = connect(tmp_path)
    fs.write_new(P("/a"), b"1", mode=0o600)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600
    with pytest.raises(NodeError) as info:
        fs.write_new(P("/a"), b"2", mode=0o600)
    assert info.value.errno == errno.EEXIST
    assert (tmp_path / "a").read_bytes() == b"1"


def test_rename_with_and_without_replacing(connect: Connector, tmp_path: Path) -> None:
    """rename(replace=False) never replaces (EEXIST); the default replaces atomically."""
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    fs = connect(tmp_path)
    with pytest.raises(NodeError) as info:
        fs.rename(P("/a"), P("/b"), replace=False)
    assert info.value.errno == errno.EEXIST
    assert (tmp_path / "b").read_bytes() == b"b"
    fs.rename(P("/a"), P("/c"), replace=False)
    fs.rename(P("/c"), P("/b"))
    assert sorted(os.listdir(tmp_path)) == ["b"]
    assert (tmp_path / "b").read_bytes() == b"a"


def test_mkdir_symlink_unlink_and_times(connect: Connector, tmp_path: Path) -> None:
    """Directories get exactly their mode; symlinks are stored as given; times set without following."""
    fs = connect(tmp_path)
    makedirs(fs, P("/x/y/z"), mode_for=lambda d: 0o700 if d.name == "y" else 0o755)
    assert (tmp_path / "x/y").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "x/y/z").stat().st_mode & 0o777 == 0o755
    assert fs.mkdir(P("/x"), mode=0o755) is False
    fs.symlink("/x/y", P("/link"))
    assert os.readlink(tmp_path / "link") == "/x/y"
    fs.set_mtime(P("/link"), 1_000_000_000, follow=False)
    assert (tmp_path / "link").lstat().st_mtime == 1_000_000_000
    assert (tmp_path / "x/y").stat().st_mtime != 1_000_000_000
    assert fs.unlink(P("/link")) is True
    assert fs.unlink(P("/link")) is False
    assert fs.can_chown() is True  # the servers log in as root


def test_run_commands_and_timeouts(connect: Connector, tmp_path: Path) -> None:
    """run() returns status and output; check= raises; a command past its timeout is ended."""
    fs = connect(tmp_path)
    done = fs.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.exit_status, done.stdout, done.stderr) == (3, b"out\n", b"err\n")
    assert fs.run("cat", stdin=b"in").stdout == b"in"
    with pytest.raises(NodeError, match="exited 3"):
        fs.run("exit 3", check=True)
    with pytest.raises(NodeError, match="did not finish"):
        fs.run("sleep 5", timeout=0.3)


def test_works_inside_a_running_event_loop(connect: Connector, demo: testing.DemoNode) -> None:
    """paramiko is synchronous: inspecting from inside a running asyncio loop (Jupyter) works."""
    node = _node(connect, demo.root)

    async def inside() -> int:
        return exit_status(kubepki.inspect(node, now=WHEN))

    assert asyncio.run(inside()) == 0


def test_import_kubepki_ssh_does_not_import_paramiko() -> None:
    """paramiko is loaded by the first connection, not by importing kubepki or kubepki.node._ssh."""
    code = "import sys, kubepki, kubepki.node._ssh, kubepki.cluster._cluster; print('paramiko' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the node lock ----------------------------------------------------------------------------


def test_remote_lock_and_local_lock_exclude_each_other(connect: Connector, demo: testing.DemoNode) -> None:
    """flock over SSH is the kernel lock a local kubepki takes: each blocks the other, then frees it."""
    remote = _node(connect, demo.root)
    local = demo.as_node()
    with node_lock(remote), pytest.raises(LockError, match="another kubepki"), node_lock(local):
        pass
    with node_lock(local), pytest.raises(LockError, match="another kubepki"), node_lock(remote):
        pass


def test_remote_lock_is_released(connect: Connector, demo: testing.DemoNode) -> None:
    """After the with block (and after a dropped connection) the lock is free again."""
    remote = _node(connect, demo.root)
    with node_lock(remote):
        pass
    with node_lock(demo.as_node()):
        pass
    fs = remote.fs
    with node_lock(remote):
        fs.close()  # type: ignore[attr-defined]  # the session ends: the node's kernel drops the lock
        with node_lock(demo.as_node(), wait=5):
            pass


def test_second_remote_holder_waits_then_fails(connect: Connector, demo: testing.DemoNode) -> None:
    """Two SSH connections: the second fails after its wait while the first holds the lock."""
    first, second = _node(connect, demo.root), _node(connect, demo.root)
    with node_lock(first), pytest.raises(LockError), node_lock(second, wait=0.3):
        pass


# -- renewal and restore over SSH -------------------------------------------------------------


def test_remote_renewal_keeps_keys_off_the_controller(connect: Connector, tmp_path: Path) -> None:
    """Renewal over SSH writes new keys and the backup on the node only; the controller's tmp dirs hold none."""
    demo = testing.build_node(tmp_path / "served", issued_at=WHEN)
    node = _node(connect, demo.root)
    before = {p: p.read_bytes() for p in (demo.root / "etc/kubernetes/pki").glob("*.key")}
    old_keys = key_needles(demo.root)
    plan = kubepki.plan_renewal(node, now=DUE)
    result = kubepki.apply_renewal(plan, backup_dir="/var/lib/kubepki/backups", force_invalid_times=True)
    assert set(result.changed) >= {"apiserver", "etcd-peer", "admin.conf"}
    assert result.backup_on_node and str(result.backup).startswith("/var/lib/kubepki/backups/")
    archive = demo.root / str(result.backup).lstrip("/")
    assert archive.stat().st_mode & 0o777 == 0o600
    assert kubepki.verify_backup(archive).ok
    after = kubepki.inspect(demo.as_node(), now=DUE)
    assert after["apiserver"].not_after is not None and after["apiserver"].not_after > DUE
    assert (demo.root / "etc/kubernetes/pki/apiserver.key").read_bytes() != before[
        demo.root / "etc/kubernetes/pki/apiserver.key"]
    assert (demo.root / "etc/kubernetes/pki/ca.key").read_bytes() == before[demo.root / "etc/kubernetes/pki/ca.key"]
    # Only keys generated by this renewal: demo trees share pooled keys with other trees.
    needles = sorted(key_needles(demo.root) - old_keys)
    assert len(needles) == 11
    assert scan_for_keys(needles, exclude=[tmp_path / "served"]) == []
    # Negative control: the scan does find a key written outside the served root.
    leak = tmp_path / "leak.pem"
    shutil.copyfile(demo.root / "etc/kubernetes/pki/apiserver.key", leak)
    assert scan_for_keys(needles, exclude=[tmp_path / "served"]) == [str(leak)]


def test_remote_renewal_journal_is_resumed(connect: Connector, tmp_path: Path) -> None:
    """A journal left "committing" on the node is completed over SSH before anything else."""
    demo = testing.build_node(tmp_path / "n", issued_at=WHEN)
    node = _node(connect, demo.root)
    pki = demo.root / "etc/kubernetes/pki"
    # Stage a copy of the current pair as an interrupted run would have left it.
    for name in ("front-proxy-client.crt", "front-proxy-client.key"):
        shutil.copyfile(pki / name, pki / f".{name}.kubepki-new")
    journal = {"version": 1, "state": "committing", "started": "2026-11-28T00:00:00Z", "pid": 1, "groups": [
        {"name": "front-proxy-client", "check": "pair", "files": [
            {"staged": f"/etc/kubernetes/pki/.{n}.kubepki-new", "target": f"/etc/kubernetes/pki/{n}", "role": r}
            for n, r in (("front-proxy-client.key", "key"), ("front-proxy-client.crt", "cert"))]}]}
    (pki / ".kubepki-renewal.json").write_text(json.dumps(journal))
    done = kubepki.resume_renewal(node)
    assert done is not None and done.resumed == ("front-proxy-client",)
    assert not (pki / ".kubepki-renewal.json").exists()
    assert not list(pki.glob(".*kubepki-new"))


def test_restore_over_ssh(connect: Connector, tmp_path: Path) -> None:
    """A restore plan applied over SSH puts files and symlinks back with their modes and times."""
    demo = testing.build_node(tmp_path / "n", issued_at=WHEN)
    info = kubepki.backup(demo.as_node(), tmp_path / "backups", now=WHEN)
    crt = demo.root / "etc/kubernetes/pki/apiserver.crt"
    good = crt.read_bytes()
    crt.write_bytes(b"damaged")
    link = demo.root / "var/lib/kubelet/pki/kubelet-client-current.pem"
    target = os.readlink(link)
    link.unlink()
    node = _node(connect, demo.root)
    plan = kubepki.plan_restore(info.path, node)
    assert {s.path for s in plan.changes} == {"/etc/kubernetes/pki/apiserver.crt",
                                             "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    result = kubepki.apply_restore(plan, accept_changed=True, take_backup=False)
    assert len(result.written) == 2
    assert crt.read_bytes() == good
    assert os.readlink(link) == target
    assert hashlib.sha256(crt.read_bytes()).hexdigest() == next(
        s.backup_sha256 for s in plan.steps if s.path.endswith("apiserver.crt"))
    assert not kubepki.plan_restore(info.path, demo.as_node()).changes


def test_local_fs_still_satisfies_the_protocol(tmp_path: Path) -> None:
    """LocalFS and SSHFS both implement every NodeFS operation."""
    from kubepki.node._fs import NodeFS

    assert isinstance(LocalFS(tmp_path), NodeFS)
    assert isinstance(SSHFS("127.0.0.1"), NodeFS)
