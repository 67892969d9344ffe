"""Inspection benchmarks.

Run as a script for a table of all figures::

    python benchmarks/bench_inspection.py            # 1,000 nodes
    python benchmarks/bench_inspection.py --nodes 200
    python benchmarks/bench_inspection.py --scale     # ms/node for 1, 100 and 1,000 nodes

or through pytest-benchmark (``python -m pytest benchmarks/bench_inspection.py``).
Trees are copies of the real kubeadm tree ``single-full`` (tests/fixtures), so every
figure is measured on files a real kubeadm wrote.
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
from kubepki.cli import exit_status  # noqa: E402
from kubepki.pki import _certs as pki  # noqa: E402
from tests.kubeadm_trees import materialize  # noqa: E402

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def _best(fn: Callable[[], object], repeat: int = 7, number: int = 1) -> float:
    """Best wall time per call in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def _trees(base: Path, count: int) -> list[Path]:
    first = materialize("single-full", base / "node0000")
    roots = [first]
    for i in range(1, count):
        dest = base / f"node{i:04d}"
        shutil.copytree(first, dest, symlinks=True)
        roots.append(dest)
    return roots


def _pairs(root: Path) -> list[tuple[bytes, bytes, bytes]]:
    """(cert, key, signer cert) bytes of every signed leaf in a tree."""
    pkidir = root / "etc/kubernetes/pki"
    out = []
    for name, signer in [("apiserver", "ca"), ("apiserver-kubelet-client", "ca"),
                         ("front-proxy-client", "front-proxy-ca"), ("apiserver-etcd-client", "etcd/ca"),
                         ("etcd/server", "etcd/ca"), ("etcd/peer", "etcd/ca"),
                         ("etcd/healthcheck-client", "etcd/ca")]:
        out.append(((pkidir / f"{name}.crt").read_bytes(), (pkidir / f"{name}.key").read_bytes(),
                    (pkidir / f"{signer}.crt").read_bytes()))
    return out


def check_certificates(pairs: list[tuple[bytes, bytes, bytes]]) -> int:
    """Parse, verify the signature against the signer and match the key, for each pair."""
    ok = 0
    for cert_pem, key_pem, ca_pem in pairs:
        cert = pki.load_certificate(cert_pem)
        ca = pki.load_certificate(ca_pem)
        key = pki.load_private_key(key_pem)
        if pki.signed_by(cert, ca) and pki.public_key_der(key) == pki.public_key_der(cert.public_key()):  # type: ignore[arg-type]
            ok += 1
    return ok


def import_time(module: str = "kubepki") -> float:
    """Median seconds `import <module>` takes, from `python -X importtime` (cumulative, own line)."""
    samples = []
    for _ in range(7):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], check=True,
                             cwd=REPO, capture_output=True, text=True).stderr
        line = next(ln for ln in err.splitlines() if ln.rstrip().endswith(f"| {module}"))
        samples.append(int(line.split("|")[1]) / 1e6)
    return statistics.median(samples)


def process_vs_openssl(root: Path) -> tuple[float, float, int]:
    """`kubepki check` as a process vs `openssl x509 -noout -enddate` once per certificate file."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kubepki_t = _best(lambda: subprocess.run(
        [sys.executable, "-m", "kubepki", "check", "--root", str(root), "-o", "json"],
        check=False, capture_output=True, env=env), repeat=5)
    files = sorted(str(p) for p in (root / "etc/kubernetes/pki").rglob("*.crt"))

    def shell() -> None:
        for f in files:
            subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", f], check=True, capture_output=True)

    return kubepki_t, _best(shell, repeat=5), len(files)


def report(nodes: int) -> None:
    """Measure everything and print a table."""
    with tempfile.TemporaryDirectory() as tmp:
        roots = _trees(Path(tmp), nodes)
        one = roots[0]
        rows: list[tuple[str, str, str]] = []
        t_one = _best(lambda: kubepki.inspect(kubepki.Node(one), now=NOW), repeat=30)
        rows.append(("inspect one node, in-process (fresh Node)", f"{t_one * 1e3:.2f} ms", "< 10 ms"))
        node = kubepki.Node(one)
        node.profile  # noqa: B018 - discovery once
        t_warm = _best(lambda: kubepki.inspect(node, now=NOW), repeat=30)
        rows.append(("inspect one node, in-process (discovery cached)", f"{t_warm * 1e3:.2f} ms", ""))
        start = time.perf_counter()
        certs = 0
        for root in roots:
            inv = kubepki.inspect(kubepki.Node(root), now=NOW)
            certs += sum(1 for item in inv if item.facts is not None)
        t_all = time.perf_counter() - start
        rows.append((f"inspect {nodes} nodes' trees", f"{t_all:.2f} s ({t_all / nodes * 1e3:.2f} ms/node)", ""))
        rows.append(("  certificates inspected per second (full inspection)", f"{certs / t_all:,.0f}/s", ""))
        pairs = _pairs(one) * 200
        t_pairs = _best(lambda: check_certificates(pairs), repeat=3)
        rows.append(("certificate checks per second (parse + signature + key match)",
                     f"{len(pairs) / t_pairs:,.0f}/s", ">= 8,000/s"))
        k_t, o_t, n_files = process_vs_openssl(one)
        rows.append(("`kubepki check` as a process", f"{k_t * 1e3:.0f} ms", ""))
        rows.append((f"shell: openssl x509 -enddate x {n_files} files", f"{o_t * 1e3:.0f} ms", ""))
        rows.append(("`import kubepki` (-X importtime, cumulative)", f"{import_time() * 1e3:.1f} ms", "< 150 ms"))
        rows.append(("`import kubepki.inspection._inventory` (what inspect() loads)",
                     f"{import_time('kubepki.inspection._inventory') * 1e3:.1f} ms", ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'result':<28}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<28}  {target}")


# pytest-benchmark entry points -----------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize("single-full", tmp_path_factory.mktemp("bench") / "n")


def test_bench_inspect_one_node(benchmark: Callable[..., object], tree: Path) -> None:
    """One full node, in-process, discovery included."""
    inv = benchmark(lambda: kubepki.inspect(kubepki.Node(tree), now=NOW))
    assert exit_status(inv) == 0  # type: ignore[attr-defined]


def test_bench_certificate_checks(benchmark: Callable[..., object], tree: Path) -> None:
    """Parse + signature + key match for the seven signed leaves."""
    pairs = _pairs(tree)
    assert benchmark(lambda: check_certificates(pairs)) == len(pairs)


def scale(counts: tuple[int, ...] = (1, 100, 1000)) -> None:
    """ms/node for inspecting 1, 100 and 1,000 nodes' trees, a fresh Node each (discovery included)."""
    with tempfile.TemporaryDirectory() as tmp:
        roots = _trees(Path(tmp), max(counts))
        for root in roots:  # the page cache warm for every tree, as on a node inspected before
            kubepki.inspect(kubepki.Node(root), now=NOW)
        print(f"{'nodes':>6}  {'total':>9}  {'ms/node':>8}  {'certificates/s':>14}")
        for count in counts:
            best = float("inf")
            certs = 0
            for _ in range(max(1, 300 // count)):
                start = time.perf_counter()
                certs = 0
                for root in roots[:count]:
                    inv = kubepki.inspect(kubepki.Node(root), now=NOW)
                    certs += sum(1 for item in inv if item.facts is not None)
                best = min(best, time.perf_counter() - start)
            print(f"{count:>6}  {best:>7.2f} s  {best / count * 1e3:>8.2f}  {certs / best:>14,.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--scale", action="store_true", help="only the 1 / 100 / 1,000 nodes table")
    cli_args = parser.parse_args()
    if cli_args.scale:
        scale()
    else:
        report(cli_args.nodes)
