"""Renewal benchmarks: ``renew all`` on one node, RSA-2048 and ECDSA-P256.

Run as a script for a table of all figures::

    python benchmarks/bench_renewal.py              # 7 repetitions of each
    python benchmarks/bench_renewal.py --repeat 3

or through pytest-benchmark (``python -m pytest benchmarks/bench_renewal.py``).

The RSA tree is a copy of the real kubeadm tree ``single`` (tests/fixtures), so the
figure compares with ``kubeadm certs renew all`` on the same files: about 2 s on
this kind of machine, nearly all of it RSA key generation. The target is half of
that. The ECDSA tree is a demo tree (``kubepki.testing``) with ECDSA-P256 CAs and
leaves. Each run gets a fresh copy of its tree; copying is not timed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kubepki  # noqa: E402
from kubepki import testing  # noqa: E402
from tests.kubeadm_trees import materialize  # noqa: E402

NOW = dt.datetime(2027, 9, 1, 12, 0, tzinfo=dt.timezone.utc)
#: ``kubeadm certs renew all`` on the ``single`` tree (RSA-2048), seconds.
KUBEADM_SECONDS = 2.0


def make_tree(kind: str, dest: Path) -> Path:
    """A node root of ``kind`` (``RSA-2048``: kubeadm's single; ``ECDSA-P256``: a demo tree)."""
    if kind == "RSA-2048":
        return materialize("single", dest)
    return testing.build_node(dest, key_algorithm="ECDSA-P256",
                              issued_at=NOW - dt.timedelta(days=300)).root


def in_process(root: Path, *, workers: int | None = None, backup: Path | None = None) -> None:
    """plan_renewal + apply_renewal of everything, as an embedding program would."""
    plan = kubepki.plan_renewal(root, now=NOW)
    result = kubepki.apply_renewal(plan, take_backup=backup is not None, backup_dir=backup,
                                   workers=workers)
    assert len(result.changed) == 11


def whole_process(root: Path) -> None:
    """``python -m kubepki renew all --apply --no-backup``, interpreter start-up included."""
    subprocess.run([sys.executable, "-m", "kubepki", "renew", "all", "--root", str(root),
                    "--now", NOW.isoformat(), "--apply", "--no-backup"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def _times(kind: str, run: Callable[[Path], None], repeat: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        template = make_tree(kind, Path(tmp) / "template")
        times = []
        for i in range(repeat):
            root = Path(tmp) / f"run{i}"
            shutil.copytree(template, root, symlinks=True)
            start = time.perf_counter()
            run(root)
            times.append(time.perf_counter() - start)
        return times


def table(repeat: int) -> str:
    """Every figure as a text table."""
    cases: list[tuple[str, str, Callable[[Path], None]]] = [
        ("RSA-2048", "in-process", in_process),
        ("RSA-2048", "in-process, 1 worker", lambda r: in_process(r, workers=1)),
        ("RSA-2048", "in-process, with backup", lambda r: in_process(r, backup=r / "bk")),
        ("RSA-2048", "whole process", whole_process),
        ("ECDSA-P256", "in-process", in_process),
        ("ECDSA-P256", "whole process", whole_process),
    ]
    rows = [f"{'tree':<11} {'how':<26} {'best':>8} {'median':>8}   vs kubeadm (2 s)"]
    for kind, how, run in cases:
        t = _times(kind, run, repeat)
        best, median = min(t), statistics.median(t)
        rows.append(f"{kind:<11} {how:<26} {best:8.3f} {median:8.3f}   "
                    f"{median / KUBEADM_SECONDS:5.0%} of kubeadm's time")
    rows.append(f"(seconds; {repeat} runs each; {os.cpu_count()} CPUs; target: RSA-2048 "
                f"renew all in at most {KUBEADM_SECONDS / 2:.1f} s)")
    return "\n".join(rows)


# ------------------------------------------------------------------ pytest-benchmark


@pytest.fixture(params=["RSA-2048", "ECDSA-P256"])
def trees(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Path]:
    """A factory of fresh copies of one tree kind."""
    template = make_tree(request.param, tmp_path / "template")
    counter = iter(range(10_000))

    def fresh() -> Path:
        dest = tmp_path / f"run{next(counter)}"
        shutil.copytree(template, dest, symlinks=True)
        return dest

    return fresh


def test_renew_all_in_process(benchmark, trees) -> None:  # type: ignore[no-untyped-def]
    """renew all, in-process, no backup."""
    benchmark.pedantic(in_process, setup=lambda: ((trees(),), {}), rounds=5)


def test_renew_all_whole_process(benchmark, trees) -> None:  # type: ignore[no-untyped-def]
    """renew all as a process."""
    benchmark.pedantic(whole_process, setup=lambda: ((trees(),), {}), rounds=3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    print(table(parser.parse_args().repeat))
