"""Backup and restore benchmarks.

Run as a script for a table of all figures::

    python benchmarks/bench_backup.py               # one node, then 100 nodes
    python benchmarks/bench_backup.py --nodes 20

or through pytest-benchmark
(``python -m pytest benchmarks/bench_backup.py --benchmark-only``). Trees are
copies of the real kubeadm tree ``single-full`` (tests/fixtures): 33 files, the
kubelet's symlink and the static pod manifests, as a real kubeadm wrote them.

"restore" means a full restore onto a damaged node: the archive is read and
checked, the node compared, a backup of the current state taken and verified,
the node locked, and the damaged files written atomically and read back.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubepki.backups import _backups as backups  # noqa: E402
from tests.kubeadm_trees import materialize  # noqa: E402


def _best(fn: Callable[[], object], repeat: int = 7) -> float:
    """Best wall time of one call, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _trees(base: Path, count: int) -> list[Path]:
    first = materialize("single-full", base / "node0000")
    roots = [first]
    for i in range(1, count):
        dest = base / f"node{i:04d}"
        shutil.copytree(first, dest, symlinks=True)
        roots.append(dest)
    return roots


def damage(root: Path) -> None:
    """What the restore has to repair: a key overwritten, a certificate deleted."""
    (root / "etc/kubernetes/pki/apiserver.key").write_bytes(b"damaged\n")
    (root / "etc/kubernetes/pki/ca.crt").unlink(missing_ok=True)


def restore_damaged(archive: Path, root: Path, pre: Path) -> backups.RestoreResult:
    """Damage ``root`` and restore it from ``archive``, taking a backup into ``pre``."""
    damage(root)
    return backups.restore(archive, root, dry_run=False, accept_changed=True, backup_dir=pre)


def report(nodes: int) -> None:
    """Measure everything and print a table."""
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        roots = _trees(base / "roots", nodes)
        one = roots[0]
        out = base / "out"
        t = _best(lambda: backups.backup(one, out), repeat=15)
        info = backups.backup(one, out)
        rows.append((f"backup one node ({info.items} files -> {info.size / 1024:.1f} KiB)",
                     f"{t * 1e3:.1f} ms"))
        t = _best(lambda: backups.verify_backup(info.path), repeat=15)
        rows.append(("verify one archive", f"{t * 1e3:.1f} ms"))
        t = _best(lambda: backups.plan_restore(info.path, one), repeat=15)
        rows.append(("plan a restore of one node (nothing to do)", f"{t * 1e3:.1f} ms"))
        pre = base / "pre"
        t = _best(lambda: restore_damaged(info.path, one, pre), repeat=15)
        rows.append(("restore one damaged node (pre-backup, 2 files written)", f"{t * 1e3:.1f} ms"))
        shutil.rmtree(out)
        shutil.rmtree(pre)

        start = time.perf_counter()
        archives = [backups.backup(root, out / root.name).path for root in roots]
        t_all = time.perf_counter() - start
        rows.append((f"back up {nodes} nodes' trees",
                     f"{t_all:.2f} s ({t_all / nodes * 1e3:.1f} ms/node)"))
        start = time.perf_counter()
        for archive, root in zip(archives, roots, strict=True):
            restore_damaged(archive, root, pre / root.name)
        t_all = time.perf_counter() - start
        rows.append((f"restore {nodes} damaged nodes' trees",
                     f"{t_all:.2f} s ({t_all / nodes * 1e3:.1f} ms/node)"))
        start = time.perf_counter()
        listed = sum(len(backups.list_backups(out / root.name)) for root in roots)
        t_all = time.perf_counter() - start
        rows.append((f"list {listed} backups (manifests only)", f"{t_all * 1e3:.0f} ms"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  result")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


# pytest-benchmark entry points -----------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fresh copy of `single-full`."""
    return materialize("single-full", tmp_path / "n")


@pytest.fixture
def hundred(tmp_path: Path) -> list[Path]:
    """100 copies of `single-full`."""
    return _trees(tmp_path / "roots", 100)


def test_bench_backup_one_node(benchmark: Callable[..., object], tree: Path, tmp_path: Path) -> None:
    """One node's backup: walk, read, hash, tar.gz, atomic write."""
    info = benchmark(lambda: backups.backup(tree, tmp_path / "out"))
    assert info.items == 33  # type: ignore[attr-defined]


def test_bench_restore_one_node(benchmark: Callable[..., object], tree: Path, tmp_path: Path) -> None:
    """One damaged node restored, with the backup of its state before."""
    archive = backups.backup(tree, tmp_path / "out").path
    result = benchmark(lambda: restore_damaged(archive, tree, tmp_path / "pre"))
    assert len(result.written) == 2  # type: ignore[attr-defined]


def test_bench_backup_100_nodes(benchmark: Callable[..., object], hundred: list[Path],
                                tmp_path: Path) -> None:
    """100 nodes' trees backed up one after the other."""
    def run() -> int:
        return len([backups.backup(root, tmp_path / "out" / root.name) for root in hundred])

    assert benchmark.pedantic(run, rounds=3, iterations=1) == 100  # type: ignore[attr-defined]


def test_bench_restore_100_nodes(benchmark: Callable[..., object], hundred: list[Path],
                                 tmp_path: Path) -> None:
    """100 damaged nodes' trees restored one after the other."""
    archives = [backups.backup(root, tmp_path / "out" / root.name).path for root in hundred]

    def run() -> int:
        for archive, root in zip(archives, hundred, strict=True):
            restore_damaged(archive, root, tmp_path / "pre" / root.name)
        return len(archives)

    assert benchmark.pedantic(run, rounds=3, iterations=1) == 100  # type: ignore[attr-defined]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    report(parser.parse_args().nodes)
