"""Helpers of the reliability and security suites: demo trees, snapshots, the CLI, faults.

tests/test_hostile_input.py, test_damaged_trees.py, test_faults.py,
test_file_safety.py and test_secrets_never_leak.py share these. Faults are real
ones on this machine: a tmpfs mounted for the test, a read-only bind mount, a
process that gives up root; each context manager undoes what it did, and skips
the test (with the reason) where the machine does not allow it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest

import kubepki
from kubepki import testing
from kubepki.cli import main

REPO = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc
#: The time the suites evaluate at; demo trees are issued DEMO_AGE before it (healthy).
NOW = dt.datetime(2027, 1, 1, tzinfo=UTC)
NOW_ARG = "2027-01-01T00:00:00Z"
ISSUED = NOW - testing.DEMO_AGE
PKI = "etc/kubernetes/pki"
#: The exit statuses the CLI documents (kubepki.cli): 0 ok, 1 warnings, 2 problems, 3 could not run.
DOCUMENTED = frozenset({0, 1, 2, 3})


def demo(dest: Path, *, algorithm: str = "ECDSA-P256", defects: Sequence[testing.Defect] = (),
         issued_at: dt.datetime = ISSUED, **options: object) -> Path:
    """A one-node demo cluster under ``dest`` (keys from the process-wide pool); its root."""
    node = testing.build_node(dest, key_algorithm=algorithm, issued_at=issued_at, defects=defects,
                              **options)  # type: ignore[arg-type]
    return node.root


def copy_tree(src: Path, dest: Path) -> Path:
    """A copy of a node root, symlinks kept as symlinks, modes and times kept."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


@attrs.frozen
class Entry:
    """One path of a snapshot: what it is and everything a write would change."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    content: str  # SHA-256 of a file, a symlink's target, "" for a directory


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path under ``root`` (relative), with its type, mode, owner, mtime (files) and content."""
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind, content = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, content = "dir", ""
            else:
                kind, content = "file", hashlib.sha256(path.read_bytes()).hexdigest()
            # A directory's mtime moves with any file made and removed in it: its entries say more.
            mtime = 0 if kind == "dir" else st.st_mtime_ns
            out[str(path.relative_to(root))] = Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid,
                                                      st.st_gid, mtime, content)
    return out


def changes(before: dict[str, Entry], after: dict[str, Entry], *,
            ignore: tuple[str, ...] = (".kubepki.lock", ".filler")) -> list[str]:
    """Paths added, removed or changed between two snapshots (the node lock's file and fillers aside)."""
    return sorted(p for p in before.keys() | after.keys()
                  if before.get(p) != after.get(p) and Path(p).name not in ignore)


@attrs.frozen
class CliRun:
    """What one run of the command line did."""

    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"kubepki {' '.join(self.argv)} -> {self.code}\nstderr: {self.err!r}\nstdout: {self.out[:2000]!r}"


def run_cli(argv: Sequence[str]) -> CliRun:
    """``kubepki ARGV`` in this process (kubepki.cli.main), its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own exits
            code = exc.code if isinstance(exc.code, int) else 3
    return CliRun(tuple(argv), code, out.getvalue(), err.getvalue())


def run_process(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> CliRun:
    """``python -m kubepki ARGV`` as a real process."""
    full = {k: v for k, v in os.environ.items() if k != "KUBEPKI_TEST_CRASH_AT"}
    full.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "kubepki", *argv], cwd=REPO, env=full,
                          capture_output=True, text=True, check=False, timeout=timeout)
    return CliRun(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def assert_clean(run: CliRun, codes: frozenset[int] | set[int] = DOCUMENTED) -> None:
    """A documented exit status; at most one line on stderr per error, and no traceback."""
    assert run.code in codes, str(run)
    assert "Traceback" not in run.err and "Traceback" not in run.out, str(run)
    errors = [ln for ln in run.err.splitlines() if ln.startswith("kubepki: error:")]
    assert len(errors) <= 1, str(run)
    assert "unexpected" not in run.err, str(run)  # main()'s wording for a bug it caught
    if run.code == 3 or (run.code == 2 and run.err and not run.out):
        assert errors, str(run)  # a failure says why


def key_mismatches(root: Path, *, now: dt.datetime = NOW) -> list[str]:
    """Catalog items whose certificate and key do not belong together (kubepki.inspect)."""
    inv = kubepki.inspect(root, now=now)
    return sorted({item.name for item, finding in inv.findings if finding.code == "key-mismatch"})


def leftovers(root: Path) -> list[str]:
    """kubepki's temporary, staged and journal files under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".tmp", ".kubepki-new")) or p.name == ".kubepki-renewal.json")


# --------------------------------------------------------------------------------------
# Real faults


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


def _umount(path: Path) -> None:
    for flags in ([], ["-l"]):  # lazy as a last resort, so no mount outlives the test
        done = subprocess.run(["umount", *flags, str(path)], capture_output=True, check=False)
        if done.returncode == 0:
            return


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (created) for the block; skips where not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        _umount(path)


def fill(directory: Path, *, leave: int = 0) -> None:
    """Fill the filesystem of ``directory`` until at most ``leave`` bytes are free."""
    with open(directory / ".filler", "wb") as fh:
        chunk = bytes(4096)
        while True:
            free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
            if free <= leave:
                break
            try:
                fh.write(chunk[: max(1, min(len(chunk), free - leave))])
                fh.flush()
            except OSError:
                break


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted read-only onto itself for the block; skips where not allowed."""
    done = _mount("--bind", str(path), str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        done = _mount("-o", "remount,bind,ro", str(path))
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
        yield path
    finally:
        _umount(path)


def needs_root() -> None:
    """Skip unless running as root (the suites drop privileges or mount)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")


def world_readable(top: Path) -> None:
    """Let an unprivileged user read and traverse everything under ``top`` (not write)."""
    top.chmod(0o755)
    for dirpath, _dirs, files in os.walk(top):
        os.chmod(dirpath, 0o755)  # noqa: S103 - the unprivileged reader must traverse
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(0o644)


def shared_tmp(prefix: str) -> Path:
    """A directory others may traverse (pytest's tmp dirs are 0700): for privilege drops."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def as_nobody(action: Callable[[], str], *, uid: int = 65534, gid: int = 65534) -> str:
    """Run ``action`` in a forked child as ``uid``/``gid``; the text it returned, or its exception.

    The interpreter lives under /root, which nobody may execute: fork, never exec.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                text = action()
            except BaseException as exc:  # reported to the parent, which judges it
                text = f"{type(exc).__name__}: {exc}"
            os.write(write_end, text.encode())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()
