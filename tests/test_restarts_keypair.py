"""Staleness of the service-account key pair's readers: sa.key and sa.pub are one catalog item read by
different flags, so each reader is judged by the file its flag names (found by the real rotation of
``--sa`` on the real cluster: after trust-both rewrote sa.pub and restarted kube-apiserver, the final
check called kube-controller-manager stale, which reads only sa.key).

Real processes on this machine stand for the components (their argv is kube-controller-manager's and
kube-apiserver's; nothing else of them is looked at); the node is a ``kubepki.testing`` tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubepki import testing
from kubepki.restarts import ProcScanner, detect

PKI = "etc/kubernetes/pki"


@pytest.fixture
def components() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    flags = {"kube-controller-manager": "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
             "kube-apiserver": "--service-account-key-file=/etc/kubernetes/pki/sa.pub"}
    procs = {name: subprocess.Popen(["bash", "-c", f'exec -a {name} "$0" -c "import time; time.sleep(120)" {flag}',
                                     sys.executable]) for name, flag in flags.items()}
    try:
        yield procs
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def _stale(root: Path, procs: dict[str, subprocess.Popen[bytes]]) -> set[str]:
    pids = {p.pid for p in procs.values()}
    observer = ProcScanner(match=lambda i: i.pid in pids)
    found = detect(root, observer=observer, served=False)
    return {s.component.value for s in found.stale if any(r.name == "sa" for r in s.reasons)}


def test_each_reader_of_the_pair_is_judged_by_its_own_file(tmp_path: Path,
                                                          components: dict[str, subprocess.Popen[bytes]]) -> None:
    root = testing.build_node(tmp_path / "n").root
    time.sleep(1.0)  # the processes started before the files below are "written"
    past = time.time() - 3600
    for name in ("sa.key", "sa.pub"):
        os.utime(root / PKI / name, (past, past))
    assert _stale(root, components) == set()  # control: both files older than both processes
    now = time.time()
    os.utime(root / PKI / "sa.pub", (now, now))
    assert _stale(root, components) == {"kube-apiserver"}  # sa.pub is kube-apiserver's, not KCM's
    os.utime(root / PKI / "sa.key", (now, now))
    assert _stale(root, components) == {"kube-apiserver", "kube-controller-manager"}
