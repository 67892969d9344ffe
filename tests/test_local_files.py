"""Files of this machine that kubepki reads on a user's word are opened only when they are regular files.

One opener (``kubepki.node.open_regular``): a FIFO given where a file is expected is refused at once,
never read (a plain read blocks until a writer comes). Real FIFOs; the commands run in child processes
under a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kubepki
from kubepki.node import NotRegularFile, read_regular

REPO = Path(__file__).resolve().parent.parent


def test_read_regular_reads_files_and_refuses_the_rest(tmp_path: Path) -> None:
    """A regular file is read (control); a FIFO and a directory are NotRegularFile naming what they are; a
    file over the limit is EFBIG."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"abc")
    assert read_regular(plain, limit=3) == b"abc"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile, match="a FIFO"):
        read_regular(fifo, limit=10)
    with pytest.raises(NotRegularFile, match="a directory"):
        read_regular(tmp_path, limit=10)
    with pytest.raises(OSError, match="larger than 2 bytes") as caught:
        read_regular(plain, limit=2)
    assert caught.value.errno == errno.EFBIG


def _kubepki(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubepki", *argv], capture_output=True, text=True, timeout=60,
                          check=False, cwd=REPO)


def test_a_fifo_as_a_renewal_result_hangs_no_command(tmp_path: Path) -> None:
    """``restarts plan --from-renewal FIFO`` exits 3 at once naming it; control: the same result as a regular
    file plans the restarts."""
    root = kubepki.testing.build_node(tmp_path / "n").root
    fifo = tmp_path / "renewal.json"
    os.mkfifo(fifo)
    run = _kubepki("restarts", "plan", "--from-renewal", str(fifo), "--root", str(root))
    assert run.returncode == 3 and "a FIFO, not a regular file" in run.stderr, run
    fifo.unlink()
    fifo.write_text(json.dumps({"changed": ["front-proxy-client"]}))
    run = _kubepki("restarts", "plan", "--from-renewal", str(fifo), "--root", str(root), "-o", "json")
    assert run.returncode == 0, run
    assert [s["component"] for s in json.loads(run.stdout)["steps"] if s["action"] == "restart"] == [
        "kube-apiserver"]
