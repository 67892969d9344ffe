"""Real faults on this machine: full disks, read-only mounts, no permission, kills, two writers.

Each fault is real: a small tmpfs mounted for the test and filled, a read-only bind
mount of the node's certificate directory, a process that gives up root (forked:
the interpreter under /root is not executable by nobody), ``python -m kubepki``
processes SIGKILLed at every write checkpoint (the ``KUBEPKI_TEST_CRASH_AT`` hook of
kubepki._crash, shared by renewal and restore), and two processes writing to one node.

After every fault: the command failed with a documented exit status and one clear
line (or succeeded), nothing was half-written (the node's files are as before, no
temporary or staged file is left), every certificate still matches its key, and
once the fault is gone a re-run completes. Mounts are undone in finalizers; the
tests skip, saying why, where mounting is not permitted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509

import kubepki
from kubepki import _crash
from kubepki.node._lock import node_lock
from kubepki.node._node import Node
from kubepki.pki._certs import load_private_key, public_key_der
from kubepki.renewal import _renewal as renewal
from tests import _figures
from tests._hardening import (
    NOW_ARG,
    PKI,
    REPO,
    CliRun,
    Entry,
    as_nobody,
    assert_clean,
    changes,
    copy_tree,
    demo,
    fill,
    key_mismatches,
    leftovers,
    needs_root,
    read_only,
    run_cli,
    run_process,
    shared_tmp,
    snapshot,
    tmpfs,
    world_readable,
)

RENEW = ["renew", "all", "--now", NOW_ARG, "--apply", "--force-invalid-times"]


def fault() -> None:
    _figures.count("faults injected")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A demo node, and an archive of it taken before it was renewed (so restoring changes every pair)."""
    tmp = tmp_path_factory.mktemp("faults")
    root = demo(tmp / "node")
    archive = Path(json.loads(run_cli(["backup", "--root", str(root), "--backup-dir", str(tmp / "archives"),
                                       "-o", "json"]).out)["path"])
    assert run_cli([*RENEW, "--root", str(root), "--no-backup"]).code == 0
    return root, archive


@pytest.fixture
def node(base: tuple[Path, Path], tmp_path: Path) -> Path:
    """A fresh copy of the renewed demo node."""
    return copy_tree(base[0], tmp_path / "node")


def restore_argv(archive: Path, root: Path, *extra: str) -> list[str]:
    return ["restore", str(archive), "--root", str(root), "--apply", "--accept-changed", *extra]


def assert_untouched(root: Path, before: dict[str, Entry], run: CliRun) -> None:
    """The failed command left the node exactly as it was, pairs matching, no temporary files."""
    assert changes(before, snapshot(root)) == [], run
    assert leftovers(root) == [], run
    assert key_mismatches(root) == [], run


@contextlib.contextmanager
def cert_dir_on_tmpfs(root: Path, size: str) -> Iterator[Path]:
    """The node's certificate directory moved onto a fresh tmpfs of ``size`` (modes and times kept)."""
    pki = root / PKI
    saved = root.parent / "pki-saved"
    shutil.copytree(pki, saved, symlinks=True)
    with tmpfs(pki, size):
        shutil.copytree(saved, pki, symlinks=True, dirs_exist_ok=True)
        os.chmod(pki, 0o755)  # noqa: S103 - kubeadm's mode for the cert dir
        yield pki


# --------------------------------------------------------------------------------------
# Disk full


def test_renewal_backup_to_a_full_disk(node: Path, tmp_path: Path) -> None:
    """The backup taken before a renewal does not fit: exit 2, no space left, nothing renewed."""
    needs_root()
    with tmpfs(tmp_path / "full", "256k") as full:
        fill(full)
        before = snapshot(node)
        fault()
        run = run_cli([*RENEW, "--root", str(node), "--backup-dir", str(full)])
        assert_clean(run, {2})
        assert "no space left on device" in run.err, run
        assert sorted(os.listdir(full)) == [".filler"], run
        assert_untouched(node, before, run)


@pytest.mark.parametrize("room", [0, 8 << 10, 40 << 10, 1 << 20], ids=["none", "8KiB", "40KiB", "1MiB"])
def test_renewal_with_the_cert_dir_on_a_full_disk(node: Path, room: int) -> None:
    """ENOSPC while writing the journal or staging: nothing replaced, nothing left; with room, it completes."""
    needs_root()
    with cert_dir_on_tmpfs(node, "2m") as pki:
        fill(pki, leave=room)
        before = snapshot(node)
        fault()
        run = run_cli([*RENEW, "--root", str(node), "--no-backup"])
        assert_clean(run, {0, 2})
        if run.code == 2:
            assert "no space left on device" in run.err, run
            assert_untouched(node, before, run)
        else:
            assert key_mismatches(node) == [] and leftovers(node) == []
        (pki / ".filler").unlink()
        again = run_cli([*RENEW, "--root", str(node), "--no-backup"])
        assert again.code == 0, again
        assert key_mismatches(node) == [] and leftovers(node) == []


def test_backup_to_a_full_disk(node: Path, tmp_path: Path) -> None:
    """``kubepki backup`` onto a full disk: exit 2, one line saying so, no archive or temporary file."""
    needs_root()
    with tmpfs(tmp_path / "full", "256k") as full:
        fill(full)
        fault()
        run = run_cli(["backup", "--root", str(node), "--backup-dir", str(full)])
        assert_clean(run, {2})
        assert "no space left on device" in run.err, run
        assert sorted(os.listdir(full)) == [".filler"]


def test_pre_restore_backup_to_a_full_disk(base: tuple[Path, Path], node: Path, tmp_path: Path) -> None:
    """The backup of the current state does not fit: no file restored."""
    needs_root()
    with tmpfs(tmp_path / "full", "256k") as full:
        fill(full)
        before = snapshot(node)
        fault()
        run = run_cli(restore_argv(base[1], node, "--backup-dir", str(full)))
        assert_clean(run, {2})
        assert "no file restored" in run.err and "no space left on device" in run.err, run
        assert_untouched(node, before, run)


@pytest.mark.parametrize("room", [0, 4 << 10, 8 << 10, 24 << 10, 1 << 20],
                         ids=["none", "4KiB", "8KiB", "24KiB", "1MiB"])
@pytest.mark.parametrize("missing", [None, "apiserver.crt"], ids=["all-present", "a-certificate-missing"])
def test_restore_with_the_cert_dir_on_a_full_disk(base: tuple[Path, Path], node: Path, room: int,
                                                  missing: str | None) -> None:
    """ENOSPC at any point of a restore: nothing replaced (never a certificate without its key); then it completes.

    With a certificate missing, restoring it takes space for good: writing file by file
    would stop between that certificate and its key.
    """
    needs_root()
    if missing:
        (node / PKI / missing).unlink()
    with cert_dir_on_tmpfs(node, "2m") as pki:
        fill(pki, leave=room)
        before = snapshot(node)
        fault()
        run = run_cli(restore_argv(base[1], node, "--no-backup"))
        assert_clean(run, {0, 2})
        if run.code == 2:
            assert "no file restored" in run.err and "no space left on device" in run.err, run
            assert changes(before, snapshot(node)) == [], run
            assert leftovers(node) == [], run
        assert key_mismatches(node) == [], run
        (pki / ".filler").unlink()
        again = run_cli(restore_argv(base[1], node, "--no-backup"))
        assert again.code == 0, again
        plan = kubepki.plan_restore(base[1], node)
        assert not plan.changes and key_mismatches(node) == [] and leftovers(node) == []


# --------------------------------------------------------------------------------------
# Read-only filesystem


def test_read_only_cert_dir(base: tuple[Path, Path], node: Path, tmp_path: Path) -> None:
    """Renew, restore and backup against a read-only mount: exit 2, one clear line, nothing partial."""
    needs_root()
    pki = node / PKI
    with read_only(pki):
        before = snapshot(node)
        for argv in ([*RENEW, "--root", str(node), "--no-backup"],
                     [*RENEW, "--root", str(node), "--backup-dir", str(tmp_path / "b")],
                     restore_argv(base[1], node, "--no-backup"),
                     restore_argv(base[1], node, "--backup-dir", str(tmp_path / "b"))):
            fault()
            run = run_cli(argv)
            assert_clean(run, {2})
            assert "read-only" in run.err, run
            assert_untouched(node, before, run)
    with read_only(tmp_path / "b"):
        fault()
        run = run_cli(["backup", "--root", str(node), "--backup-dir", str(tmp_path / "b")])
        assert_clean(run, {2})
        assert "read-only" in run.err, run
    assert run_cli([*RENEW, "--root", str(node), "--no-backup"]).code == 0


# --------------------------------------------------------------------------------------
# Permission denied


@pytest.fixture
def shared_node(base: tuple[Path, Path]) -> Iterator[tuple[Path, Path]]:
    """A copy of the node and archive that nobody (65534) may read but not write."""
    needs_root()
    top = shared_tmp("kubepki-perm-")
    try:
        root = copy_tree(base[0], top / "node")
        archive = top / base[1].name
        shutil.copy2(base[1], archive)
        world_readable(top)
        yield root, archive
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize("writable", ["nothing", "kubeconfig-dir"])
def test_permission_denied(shared_node: tuple[Path, Path], writable: str) -> None:
    """As an unprivileged user: renew and restore fail with permission denied, and change nothing."""
    root, archive = shared_node
    if writable == "kubeconfig-dir":  # the lock can be taken, kubeconfigs staged, the cert dir not written
        os.chown(root / "etc/kubernetes", 65534, 65534)
    before = snapshot(root)
    for argv in ([*RENEW, "--root", str(root), "--no-backup"],
                 ["restore", str(archive), "--root", str(root), "--apply", "--accept-changed", "--no-backup"]):
        fault()
        text = as_nobody(lambda argv=argv: json.dumps(_cli_as_json(argv)))
        doc = json.loads(text)
        run = CliRun(tuple(doc["argv"]), doc["code"], doc["out"], doc["err"])
        assert_clean(run, {2, 3})
        assert "permission denied" in run.err.lower(), run
        assert changes(before, snapshot(root)) == [], run
        assert leftovers(root) == [], run
    assert key_mismatches(root) == []


def _cli_as_json(argv: list[str]) -> dict[str, object]:
    run = run_cli(argv)
    return {"argv": list(run.argv), "code": run.code, "out": run.out, "err": run.err}


# --------------------------------------------------------------------------------------
# Crashes: SIGKILL at every checkpoint


def _staged_temps(root: Path) -> list[Path]:
    return list(root.rglob(".*.kubepki-*.tmp"))


def _matches(cert: bytes, key: bytes) -> bool:
    try:
        return public_key_der(load_private_key(key)) == public_key_der(
            x509.load_pem_x509_certificate(cert).public_key())  # type: ignore[arg-type]
    except ValueError:
        return False


def assert_restore_consistent(root: Path, where: str) -> None:
    """Every pair matches, unless a staged file beside it (the restore's next rename) completes it."""
    for name in key_mismatches(root):
        entry = kubepki.catalog.get(name)
        cert_path = root / Node(root).path_of(entry, kubepki.catalog.FileRole.CERT).relative_to("/")
        key_path = root / Node(root).path_of(entry, kubepki.catalog.FileRole.KEY).relative_to("/")
        completions = [p for p in _staged_temps(root) if p.name.startswith((f".{key_path.name}.",
                                                                             f".{cert_path.name}."))]
        assert any(_matches(cert_path.read_bytes(), p.read_bytes())
                   or _matches(p.read_bytes(), key_path.read_bytes()) for p in completions), (where, name)
    for temp in _staged_temps(root):  # a staged key is as private as the key it stands for
        if ".key.kubepki-" in temp.name:
            assert temp.stat().st_mode & 0o077 == 0, (where, temp)


def _checkpoints(archive: Path, root: Path) -> int:
    """How many checkpoints one uninterrupted restore passes (counted in this process)."""
    before = _crash.passed()
    assert run_cli(restore_argv(archive, root, "--no-backup")).code == 0
    return _crash.passed() - before


def _killed_at(argv: list[str], at: int) -> int:
    env = {k: v for k, v in os.environ.items() if k != renewal.CRASH_ENV}
    env[renewal.CRASH_ENV] = str(at)
    proc = subprocess.run([sys.executable, "-m", "kubepki", *argv], cwd=REPO, env=env, capture_output=True,
                          check=False, timeout=120)
    return proc.returncode


def test_restore_killed_at_every_checkpoint(base: tuple[Path, Path], tmp_path: Path) -> None:
    """SIGKILL of ``kubepki restore --apply`` at checkpoint N = 1..all: consistent after it, complete after a re-run."""
    archive = base[1]
    count = _checkpoints(archive, copy_tree(base[0], tmp_path / "count"))
    # the journal (staging), one per staged file, the commit, one per restored file, the journal's removal
    staged = (count - 3) // 2
    assert count == 2 * staged + 3 and staged >= 10, count
    original = snapshot(base[0])
    roots = {n: copy_tree(base[0], tmp_path / f"n{n}") for n in range(1, count + 2)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = dict(zip(roots, pool.map(lambda n: _killed_at(restore_argv(archive, roots[n], "--no-backup"), n),
                                         roots), strict=True))
    for n, root in roots.items():
        where = f"restore killed at checkpoint {n} of {count}"
        if n <= count:
            assert codes[n] == -signal.SIGKILL, where
            _figures.count("crashes survived")
            assert_restore_consistent(root, where)
            if n <= staged + 2:  # killed before the first rename: no file of the node was replaced
                assert [c for c in changes(original, snapshot(root))
                        if not c.endswith((".tmp", ".kubepki-restore.json"))] == [], where
        else:
            assert codes[n] == 0, where
        again = run_cli(restore_argv(archive, root, "--no-backup"))
        assert again.code == 0, (where, again)
        assert key_mismatches(root) == [], where
        assert not kubepki.plan_restore(archive, root).changes, where


@pytest.mark.parametrize("at", [1, 2, 3, 10, 20, 21, 22, 30, 40, 41, 99])
def test_renewal_with_backup_killed(base: tuple[Path, Path], tmp_path: Path, at: int) -> None:
    """SIGKILL of ``kubepki renew all --apply`` (backup first) at checkpoint N: consistent, then completed."""
    from tests.test_renewal_crash import assert_consistent

    root = copy_tree(base[0], tmp_path / "node")
    code = _killed_at([*RENEW, "--root", str(root), "--backup-dir", str(tmp_path / "b"),
                       "--key-algorithm", "ECDSA-P256"], at)
    where = f"renewal killed at checkpoint {at}"
    if code == -signal.SIGKILL:
        _figures.count("crashes survived")
        assert_consistent(root, where)
    else:
        assert code == 0 and at > 40, (where, code)
    again = run_cli([*RENEW, "--root", str(root), "--no-backup"])
    assert again.code == 0, again
    assert key_mismatches(root) == [] and leftovers(root) == []


# --------------------------------------------------------------------------------------
# Two writers


def test_the_lock_refuses_a_second_writer(base: tuple[Path, Path], node: Path) -> None:
    """While another holds the node's lock, renew and restore refuse: exit 2, one line naming the lock."""
    before = snapshot(node)
    with node_lock(Node(node)):
        for argv in ([*RENEW, "--root", str(node), "--no-backup"], restore_argv(base[1], node, "--no-backup")):
            fault()
            run = run_process(argv)
            assert_clean(run, {2})
            assert "another kubepki is writing to this node" in run.err, run
    assert changes(before, snapshot(node)) == []
    assert run_cli([*RENEW, "--root", str(node), "--no-backup"]).code == 0


def _start(argv: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != renewal.CRASH_ENV}
    return subprocess.Popen([sys.executable, "-m", "kubepki", *argv], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[str], argv: list[str]) -> CliRun:
    out, err = proc.communicate(timeout=120)
    return CliRun(tuple(argv), proc.returncode, out, err)


@pytest.mark.parametrize("pair", ["renew-renew", "renew-restore", "restore-restore"])
def test_two_writers_at_once(base: tuple[Path, Path], node: Path, pair: str) -> None:
    """Two processes started together on one node: each succeeds or is refused cleanly; pairs always match."""
    argvs = {"renew": [*RENEW, "--root", str(node), "--no-backup", "--key-algorithm", "RSA-2048"],
             "restore": restore_argv(base[1], node, "--no-backup")}
    first, second = (argvs[p] for p in pair.split("-"))
    for _attempt in range(2):
        fault()
        procs = [_start(first), _start(second)]
        runs = [_finish(p, a) for p, a in zip(procs, (first, second), strict=True)]
        for run in runs:
            assert_clean(run, {0, 2})
            if run.code == 2:
                assert ("another kubepki is writing to this node" in run.err
                        or "changed since the plan was made" in run.err), run
        assert any(r.code == 0 for r in runs), runs
        assert key_mismatches(node) == [] and leftovers(node) == []


def test_a_waiting_writer_goes_second(node: Path) -> None:
    """With --wait, the second renewal waits for the lock and then completes."""
    argv = [*RENEW, "--root", str(node), "--no-backup", "--wait", "60"]
    fault()
    with node_lock(Node(node)):
        proc = _start(argv)
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting for the lock
    run = _finish(proc, argv)
    assert_clean(run, {0})
    assert key_mismatches(node) == []
