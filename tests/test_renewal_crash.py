"""Crash safety: kill ``kubepki renew all --apply`` anywhere; never a mismatched pair.

The renewing process is a real ``python -m kubepki`` killed with SIGKILL, either
at each of its write checkpoints in turn (the ``KUBEPKI_TEST_CRASH_AT`` test hook
that only ``kubepki._crash.checkpoint`` reads) or at random moments. After each
kill the node must hold, for every certificate, either its old or its new pair,
a mismatch being allowed only for a pair the journal lists as being committed
(whose staged file then completes it). A re-run must finish the job.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from cryptography import x509

import kubepki
from kubepki import _crash
from kubepki.cli import exit_status, main
from kubepki.pki._certs import load_private_key, public_key_der
from kubepki.renewal import _renewal as renewal
from tests.kubeadm_trees import materialize

REPO = Path(__file__).resolve().parents[1]
NOW = "2027-09-01T12:00:00Z"
PKI = "etc/kubernetes/pki"
KCONF = "etc/kubernetes"
PAIRS = ("apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client",
         "etcd/server", "etcd/peer", "etcd/healthcheck-client")
PAIR_NAMES = dict(zip(PAIRS, ("apiserver", "apiserver-kubelet-client", "front-proxy-client",
                              "apiserver-etcd-client", "etcd-server", "etcd-peer",
                              "etcd-healthcheck-client"), strict=True))
CONFS = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf")
#: NOW is the fixtures' time, which the real clock has not reached: applying at it is forced.
ARGS = ["renew", "all", "--now", NOW, "--apply", "--force-invalid-times", "--no-backup",
        "--key-algorithm", "ECDSA-P256"]


def _matches(cert_pem: bytes, key_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return public_key_der(load_private_key(key_pem)) == public_key_der(cert.public_key())  # type: ignore[arg-type]


def _pairs(root: Path) -> dict[str, tuple[bytes, bytes]]:
    """Every (certificate, key) on the node, by catalog name."""
    out = {}
    for base in PAIRS:
        out[PAIR_NAMES[base]] = ((root / PKI / f"{base}.crt").read_bytes(),
                                 (root / PKI / f"{base}.key").read_bytes())
    for conf in CONFS:
        user = yaml.safe_load((root / KCONF / conf).read_bytes())["users"][0]["user"]
        out[conf] = (base64.b64decode(user["client-certificate-data"]),
                     base64.b64decode(user["client-key-data"]))
    return out


def _staged_files(root: Path) -> list[Path]:
    return list(root.rglob(f"*{renewal.STAGED_SUFFIX}"))


def assert_consistent(root: Path, where: str) -> None:
    """Old or new pairs only; a mismatch only for a pair the committed journal completes."""
    journal_path = root / PKI / renewal.JOURNAL_NAME
    journal = json.loads(journal_path.read_text()) if journal_path.exists() else None
    for name, (cert, key) in _pairs(root).items():
        if _matches(cert, key):
            continue
        assert journal is not None and journal["state"] == "committing", (where, name)
        group = next(g for g in journal["groups"] if g["name"] == name)
        staged_cert = next(f for f in group["files"] if f["role"] == "cert")["staged"]
        staged = root / staged_cert.lstrip("/")
        assert staged.exists(), (where, name)
        assert _matches(staged.read_bytes(), key), (where, name)  # the key went first
    if journal is None:
        assert not _staged_files(root), where


def rerun_and_check(root: Path, original: dict[str, tuple[bytes, bytes]], where: str) -> None:
    """A second run (as the CLI does it: resume, plan, apply) completes the job."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*ARGS, "--root", str(root)]) == 0, where
    after = _pairs(root)
    for name, (cert, key) in after.items():
        assert _matches(cert, key), (where, name)
        old = x509.load_pem_x509_certificate(original[name][0])
        new = x509.load_pem_x509_certificate(cert)
        assert new.serial_number != old.serial_number, (where, name)
        assert key != original[name][1], (where, name)
    assert not (root / PKI / renewal.JOURNAL_NAME).exists(), where
    assert not _staged_files(root), where
    inv = kubepki.inspect(root, now=kubepki.cli._common.parse_now(NOW))
    assert exit_status(inv) == 0, (where, [(i.name, f.code) for i, f in inv.findings if f.severity.rank])


def _run(root: Path, crash_at: int | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != renewal.CRASH_ENV}
    if crash_at is not None:
        env[renewal.CRASH_ENV] = str(crash_at)
    proc = subprocess.run([sys.executable, "-m", "kubepki", *ARGS, "--root", str(root)],
                          cwd=REPO, env=env, capture_output=True, check=False, timeout=120)
    return proc.returncode


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real kubeadm tree single-full (every pair and kubeconfig, kubelet.conf on the PEM)."""
    return materialize("single-full", tmp_path_factory.mktemp("crash") / "base")


def _copy(base: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(base, dest, symlinks=True)
    return dest


def _checkpoints(base: Path, tmp_path: Path) -> int:
    """How many checkpoints one uninterrupted run passes (counted in-process)."""
    root = _copy(base, tmp_path / "count")
    before = _crash.passed()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*ARGS, "--root", str(root)]) == 0
    return _crash.passed() - before


@pytest.mark.slow
def test_kill_at_every_checkpoint(base: Path, tmp_path: Path) -> None:
    """SIGKILL at checkpoint N = 1..all: consistent after the kill, complete after a re-run."""
    count = _checkpoints(base, tmp_path)
    # 1 journal (staging) + 18 staged files + 1 commit + 18 renames + 1 journal removal.
    assert count == 39
    original = _pairs(base)
    roots = {n: _copy(base, tmp_path / f"n{n}") for n in range(1, count + 2)}
    with ThreadPoolExecutor(max_workers=3) as pool:
        codes = dict(zip(roots, pool.map(lambda n: _run(roots[n], n), roots), strict=True))
    for n, root in roots.items():
        where = f"crash at checkpoint {n}"
        if n <= count:
            assert codes[n] == -signal.SIGKILL, where
            assert_consistent(root, where)
            if n <= 19:  # before the commit: nothing on disk changed
                assert _pairs(root) == original, where
        else:
            assert codes[n] == 0, "a run past the last checkpoint completes"
        rerun_and_check(root, original, where)


@pytest.mark.slow
def test_kill_at_random_moments(base: Path, tmp_path: Path) -> None:
    """A few real SIGKILLs at random times (RSA keys, so the run lasts a while)."""
    original = _pairs(base)
    rng = random.Random()  # noqa: S311 - timing jitter, not cryptography
    for i in range(4):
        root = _copy(base, tmp_path / f"r{i}")
        delay = rng.uniform(0.15, 0.9)
        env = {k: v for k, v in os.environ.items() if k != renewal.CRASH_ENV}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubepki", "renew", "all", "--now", NOW, "--apply", "--force-invalid-times",
             "--no-backup", "--root", str(root)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        where = f"random kill after {delay:.3f}s (exit {proc.returncode})"
        assert_consistent(root, where)
        rerun_and_check(root, original, where)
