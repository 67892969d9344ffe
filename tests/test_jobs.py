"""``--jobs`` / ``jobs=``: how many threads generate new keys (renewal, CSRs, demo trees).

The threads are observed by wrapping the real key generator (it still generates
every key): the set of threads it ran on is what ``jobs`` bounds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import kubepki
from kubepki import cli, pki, testing
from kubepki.errors import ConfigError
from tests.kubeadm_trees import materialize


@pytest.fixture
def key_threads(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The idents of the threads kubepki.pki.generate_key ran on (the real function runs)."""
    seen: set[int] = set()
    for module in (pki, testing):  # renewal's generator, and the demo trees' own
        real: Callable[[str], Any] = module.generate_key

        def spy(algorithm: str, real: Callable[[str], Any] = real) -> Any:
            seen.add(threading.get_ident())
            return real(algorithm)

        monkeypatch.setattr(module, "generate_key", spy)
    monkeypatch.setattr(testing, "_POOLS", {})  # an empty shared pool: the build generates its keys
    return seen


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_renew_all_jobs_bounds_the_key_threads(tmp_path: Path, key_threads: set[int], jobs: str) -> None:
    root = materialize("single", tmp_path / "n")
    before = (root / "etc/kubernetes/pki/apiserver.key").read_bytes()
    assert cli.main(["renew", "all", "--root", str(root), "--apply", "--no-backup", "--jobs", jobs, "-q"]) == 0
    assert (root / "etc/kubernetes/pki/apiserver.key").read_bytes() != before  # renewed, new keys
    assert 1 <= len(key_threads) <= int(jobs)
    if jobs == "3":  # control: more than one thread when allowed (11 RSA keys keep 3 threads busy)
        assert len(key_threads) > 1
    inv = kubepki.inspect(root)
    assert not [f for item in inv for f in item.findings if f.code in ("key-mismatch", "wrong-signer")]


def test_renew_csr_jobs(tmp_path: Path, key_threads: set[int]) -> None:
    root = materialize("single", tmp_path / "n")
    assert cli.main(["renew", "all", "--root", str(root), "--csr", str(tmp_path / "csrs"), "--jobs", "1",
                     "-q"]) == 0
    assert len(list((tmp_path / "csrs").glob("*.csr"))) >= 7
    assert len(key_threads) == 1


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_jobs_must_be_a_positive_integer(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = materialize("single", tmp_path / "n")
    before = sorted(p.read_bytes() for p in (root / "etc/kubernetes/pki").glob("*.key"))
    for argv in (["renew", "all", "--root", str(root), "--apply", "--jobs", bad],
                 ["demo", str(tmp_path / "demo"), "--jobs", bad]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == cli.EXIT_ERROR
        assert "positive number of threads" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in (root / "etc/kubernetes/pki").glob("*.key")) == before
    assert not (tmp_path / "demo").exists()


def test_demo_jobs(tmp_path: Path, key_threads: set[int]) -> None:
    dest = tmp_path / "demo"
    # ECDSA keys are generated inline (they take microseconds): RSA shows the threads.
    assert cli.main(["demo", str(dest), "--nodes", "2", "--jobs", "1", "-q"]) == 0
    assert (dest / "cp2/etc/kubernetes/pki/apiserver.key").is_file()
    assert len(key_threads) == 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_builders_take_jobs(tmp_path: Path, key_threads: set[int], jobs: int) -> None:
    node = testing.build_node(tmp_path / str(jobs), fresh_keys=True, jobs=jobs)
    assert kubepki.cli.exit_status(kubepki.inspect(node.as_node())) == 0
    assert 1 <= len(key_threads) <= jobs
    if jobs == 2:  # control: a build's dozen RSA keys keep two threads busy
        assert len(key_threads) == 2


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_builders_refuse_bad_jobs_before_writing(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigError, match="positive number of threads"):
        testing.build_cluster(tmp_path / "c", jobs=bad)
    assert not (tmp_path / "c").exists()
    testing.build_cluster(tmp_path / "ok", jobs=None)  # control: the default builds
    assert (tmp_path / "ok/cp1/etc/kubernetes/pki/ca.crt").is_file()
