"""Benchmarks of ``kubepki secrets check`` on large kubectl outputs.

Run as a script for a table of time and memory::

    python benchmarks/bench_secrets.py                       # 10,000 TLS Secrets, RSA-2048
    python benchmarks/bench_secrets.py --secrets 2000 --key-algorithm ECDSA-P256

or through pytest-benchmark (``python -m pytest benchmarks/bench_secrets.py``).

Each Secret is a distinct ``kubernetes.io/tls`` Secret as cert-manager writes it:
``tls.crt`` (leaf + intermediate), ``tls.key`` and ``ca.crt``, in 50 namespaces,
generated with the helpers of tests/test_cluster_objects.py (keys from
kubepki.testing's pool). Every measurement runs in a fresh process, so "max RSS"
is that process's own high-water mark (the import of kubepki and cryptography
included, shown separately as the baseline); "tracemalloc peak" counts Python
allocations only (cryptography's Rust objects are not traced).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubepki.cli import exit_status  # noqa: E402
from kubepki.objects._objects import check_objects  # noqa: E402
from tests.test_cluster_objects import NOW, PKI, many_tls_secrets, write_json_list, write_yaml_list  # noqa: E402


def generate(directory: Path, count: int, algorithm: str) -> tuple[Path, Path, float]:
    """Write ``count`` Secrets as kubectl JSON and YAML; return both paths and the generation time."""
    start = time.perf_counter()
    pki = PKI("bench", algorithm)
    secrets = list(many_tls_secrets(pki, count))
    elapsed = time.perf_counter() - start
    json_path, yaml_path = directory / "secrets.json", directory / "secrets.yaml"
    with json_path.open("w") as out:
        write_json_list(out, secrets)
    with yaml_path.open("w") as out:
        write_yaml_list(out, secrets)
    return json_path, yaml_path, elapsed


def _peak_rss() -> float:
    """This process's peak RSS in bytes: VmHWM, which, unlike ru_maxrss, a child does not inherit."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def worker(mode: str, path: str) -> dict[str, float]:
    """Run one measurement in this process (called in a fresh subprocess)."""
    from cryptography import x509  # noqa: F401

    import kubepki.objects._apiclient  # noqa: F401 - the baseline includes everything a check imports

    out: dict[str, float] = {"base_rss": _peak_rss()}
    if mode == "baseline":
        return out
    if mode.endswith("traced"):
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    if mode.startswith("naive"):
        # What a non-streaming reader does: the whole document, then every value decoded.
        import base64

        doc = json.loads(Path(path).read_bytes())
        decoded = [{k: base64.b64decode(v) for k, v in item["data"].items()} for item in doc["items"]]
        out["items"] = float(len(decoded))
    else:
        inv = check_objects(Path(path), now=NOW)
        out["items"] = float(len(inv))
        out["exit_code"] = float(exit_status(inv))
    out["wall"] = time.perf_counter() - wall
    out["cpu"] = time.process_time() - cpu
    if mode.endswith("traced"):
        out["traced_peak"] = float(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    out["max_rss"] = _peak_rss()
    return out


def _measure(mode: str, path: Path | str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--worker", mode, str(path)], capture_output=True,
                          text=True, check=True, cwd=REPO)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def report(count: int, algorithm: str) -> None:
    """Generate, measure and print a table."""
    with tempfile.TemporaryDirectory(prefix="kubepki-bench-") as tmp:
        json_path, yaml_path, gen = generate(Path(tmp), count, algorithm)
        base = _measure("baseline", "-")["base_rss"]
        rows = [("generate the Secrets (not kubepki)", f"{gen:.1f} s", "", "", "")]
        for label, mode, path in (("check, kubectl -o json", "check", json_path),
                                  ("check, kubectl -o yaml", "check", yaml_path)):
            timed = _measure(mode, path)
            traced = _measure(mode + "-traced", path)
            rows.append((f"{label} ({_mib(path.stat().st_size)})",
                         f"{timed['wall']:.2f} s ({timed['wall'] / count * 1e3:.2f} ms/Secret)",
                         f"{timed['cpu']:.2f} s", _mib(traced["traced_peak"]),
                         f"{_mib(timed['max_rss'])} ({_mib(timed['max_rss'] - base)} above baseline)"))
        naive = _measure("naive-traced", json_path)
        rows.append(("for comparison: json.load + decode all (no checks)", f"{naive['wall']:.2f} s", "",
                     _mib(naive["traced_peak"]), _mib(naive["max_rss"])))
    print(f"{count:,} kubernetes.io/tls Secrets, {algorithm} keys; baseline RSS after imports {_mib(base)}")
    header = ("measurement", "wall time", "CPU", "tracemalloc peak", "max RSS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# pytest-benchmark entry points -----------------------------------------------------------


@pytest.fixture(scope="module")
def secrets_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 TLS Secrets as kubectl JSON."""
    path, _, _ = generate(tmp_path_factory.mktemp("bench"), 1000, "ECDSA-P256")
    return path


def test_bench_check_1000_secrets(benchmark: Callable[..., object], secrets_json: Path) -> None:
    """Stream, decode and check 1,000 TLS Secrets."""
    inv = benchmark(lambda: check_objects(secrets_json, now=NOW))
    assert len(inv) == 2000  # type: ignore[arg-type]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=10_000)
    parser.add_argument("--key-algorithm", default="RSA-2048")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
    else:
        report(args.secrets, args.key_algorithm)

