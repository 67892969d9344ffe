"""The three ratios of issue 20, each against the floor of the work it must do.

Absolute times drift on shared machines, so each figure is a ratio of two things
measured side by side, interleaved, best of many runs::

    python benchmarks/bench_ratios.py               # all three
    python benchmarks/bench_ratios.py --only inspect

- ``inspect``: ``kubepki.inspect(root)`` on kubeadm's ``single-full`` tree vs the raw
  work: parse every certificate, verify its signature against its CA, match its key,
  and decode the kubeconfigs (YAML, base64, their certificates and keys). Target <= 1.25.
- ``check``: the CPU time (user + system) of ``python -m kubepki check`` as a process
  vs ``python -c "import cryptography.x509"``, the floor every Python tool pays.
  Target <= 1.3.
- ``renew``: ``renew all`` (plan + apply, no backup) on kubeadm's ``single`` tree
  (RSA-2048, 11 keys) vs generating its 11 RSA-2048 keys one after the other.
  Target <= 0.8 on 2 cores.
- ``imports`` (``--only imports``, not in the default run): the CPU time of ``import kubepki``
  (target < 10 ms), ``import kubepki.inspection`` (< 100 ms) and of loading the inspection
  itself (``from kubepki.inspection import inspect``), each in a fresh process.

Processes run with kubepki's bytecode compiled first, as an installed package has it
(with ``PYTHONDONTWRITEBYTECODE`` set, a changed module would otherwise be compiled
again by every process, some 4 ms each).
"""

from __future__ import annotations

import argparse
import base64
import compileall
import datetime as dt
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

import kubepki  # noqa: E402
from kubepki.cli import exit_status  # noqa: E402
from tests.kubeadm_trees import materialize  # noqa: E402

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def raw_inspection(root: Path) -> int:
    """The work inspecting a node cannot avoid, written straight against cryptography."""
    pki = root / "etc/kubernetes/pki"
    cas = {name: x509.load_pem_x509_certificate((pki / f"{name}.crt").read_bytes())
           for name in ("ca", "front-proxy-ca", "etcd/ca")}
    done = 0
    for crt in sorted(pki.rglob("*.crt")):
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        issuer = next((ca for ca in cas.values() if ca.subject == cert.issuer), None)
        if issuer is not None:
            cert.verify_directly_issued_by(issuer)
        key_path = crt.with_suffix(".key")
        if key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
            assert key.public_key().public_bytes(*_SPKI) == cert.public_key().public_bytes(*_SPKI)
        done += 1
    sa = serialization.load_pem_private_key((pki / "sa.key").read_bytes(), None, unsafe_skip_rsa_key_validation=True)
    assert sa.public_key().public_bytes(*_SPKI) == serialization.load_pem_public_key(
        (pki / "sa.pub").read_bytes()).public_bytes(*_SPKI)
    for conf in sorted((root / "etc/kubernetes").glob("*.conf")):
        doc = yaml.load(conf.read_bytes(), Loader=_LOADER)  # noqa: S506 - the C safe loader
        ca = x509.load_pem_x509_certificate(
            base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]))
        user = doc["users"][0]["user"]
        if "client-certificate-data" in user:
            cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
            key = serialization.load_pem_private_key(base64.b64decode(user["client-key-data"]), None,
                                                      unsafe_skip_rsa_key_validation=True)
        else:  # kubelet.conf points at the kubelet's rotated PEM
            link = root / user["client-certificate"].lstrip("/")
            target = os.readlink(link) if link.is_symlink() else str(link)  # absolute: re-rooted
            pem = (root / target.lstrip("/") if target.startswith("/") else link.parent / target).read_bytes()
            cert = x509.load_pem_x509_certificate(pem)
            key = serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
        cert.verify_directly_issued_by(ca)
        assert key.public_key().public_bytes(*_SPKI) == cert.public_key().public_bytes(*_SPKI)
        done += 1
    return done


def _interleaved(a: Callable[[], object], b: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Best wall times of ``a`` and ``b``, run alternately so drift hits both."""
    best_a = best_b = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        a()
        best_a = min(best_a, time.perf_counter() - start)
        start = time.perf_counter()
        b()
        best_b = min(best_b, time.perf_counter() - start)
    return best_a, best_b


def inspect_ratio(rounds: int = 100) -> tuple[float, float]:
    """(kubepki.inspect, raw work) seconds for one node, fresh ``Node`` each time."""
    with tempfile.TemporaryDirectory() as tmp:
        root = materialize("single-full", Path(tmp) / "n")
        inv = kubepki.inspect(root, now=NOW)
        assert exit_status(inv) == 0
        raw_inspection(root)
        return _interleaved(lambda: kubepki.inspect(root, now=NOW), lambda: raw_inspection(root), rounds)


def _cpu(argv: list[str]) -> float:
    """User + system CPU seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=False, capture_output=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _compiled() -> None:
    """kubepki's bytecode, written now if stale (see the module's docstring)."""
    compileall.compile_dir(REPO / "kubepki", quiet=1)


def check_ratio(rounds: int = 10) -> tuple[float, float]:
    """(``kubepki check`` process, ``import cryptography.x509`` process) best CPU seconds."""
    _compiled()
    with tempfile.TemporaryDirectory() as tmp:
        root = materialize("single-full", Path(tmp) / "n")
        check = [sys.executable, "-m", "kubepki", "check", "--root", str(root), "--now", NOW.isoformat()]
        floor = [sys.executable, "-c", "import cryptography.x509"]
        best_k = best_f = float("inf")
        for _ in range(rounds):
            best_k = min(best_k, _cpu(check))
            best_f = min(best_f, _cpu(floor))
        return best_k, best_f


#: The imports of item 5, each timed inside a fresh interpreter (its own CPU time, not the start-up's).
IMPORTS = ("import kubepki", "import kubepki.inspection", "from kubepki.inspection import inspect")


def import_times(rounds: int = 10) -> dict[str, float]:
    """Best CPU seconds of each statement of :data:`IMPORTS`, alone in a fresh process."""
    _compiled()
    best = dict.fromkeys(IMPORTS, float("inf"))
    for _ in range(rounds):
        for stmt in IMPORTS:
            code = f"import time\nstart = time.process_time()\n{stmt}\nprint(time.process_time() - start)"
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
            best[stmt] = min(best[stmt], float(out))
    return best


def _serial_keys(count: int = 11) -> None:
    for _ in range(count):
        rsa.generate_private_key(public_exponent=65537, key_size=2048)


def renew_ratio(rounds: int = 7, workers: int | None = None) -> tuple[float, float]:
    """(renew all in-process, 11 serial RSA-2048 keys) median seconds: RSA key times vary widely."""
    with tempfile.TemporaryDirectory() as tmp:
        template = materialize("single", Path(tmp) / "template")
        renew, serial = [], []
        for i in range(rounds):
            root = Path(tmp) / f"run{i}"
            shutil.copytree(template, root, symlinks=True)
            start = time.perf_counter()
            plan = kubepki.plan_renewal(root)
            result = kubepki.apply_renewal(plan, take_backup=False, workers=workers)
            renew.append(time.perf_counter() - start)
            assert len(result.changed) == 11
            start = time.perf_counter()
            _serial_keys()
            serial.append(time.perf_counter() - start)
        renew.sort()
        serial.sort()
        return renew[len(renew) // 2], serial[len(serial) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["inspect", "check", "renew", "imports"], action="append")
    parser.add_argument("--workers", type=int, default=None, help="renewal's key workers")
    only = set(parser.parse_args().only or ["inspect", "check", "renew"])
    workers = parser.parse_args().workers
    rows = []
    if "inspect" in only:
        k, f = inspect_ratio()
        rows.append(("inspect(root), one node vs raw work", f"{k * 1e3:.2f} ms", f"{f * 1e3:.2f} ms", k / f, "<= 1.25"))
    if "check" in only:
        k, f = check_ratio()
        rows.append(("`kubepki check` CPU vs `import cryptography.x509`", f"{k * 1e3:.0f} ms",
                     f"{f * 1e3:.0f} ms", k / f, "<= 1.3"))
    if "renew" in only:
        k, f = renew_ratio(workers=workers)
        rows.append((f"renew all RSA-2048 vs 11 serial keys ({os.cpu_count()} CPUs)", f"{k:.2f} s", f"{f:.2f} s",
                     k / f, "<= 0.8"))
    if "imports" in only:
        for stmt, seconds in import_times().items():
            limit = {"import kubepki": "< 10 ms", "import kubepki.inspection": "< 100 ms"}.get(stmt, "")
            rows.append((f"`{stmt}` CPU", f"{seconds * 1e3:.1f} ms", "", float("nan"), limit))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'kubepki':>9}  {'floor':>9}  {'ratio':>5}  target")
    for name, k_s, f_s, ratio, target in rows:
        shown = "" if math.isnan(ratio) else f"{ratio:5.2f}"  # NaN: a time, not a ratio
        print(f"{name:<{width}}  {k_s:>9}  {f_s:>9}  {shown:>5}  {target}")


if __name__ == "__main__":
    main()
