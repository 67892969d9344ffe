"""benchmarks/bench_downtime.py's prober: its gap arithmetic, and the prober itself against a real TLS
server that demands the admin.conf client certificate of a kubepki.testing node (no real cluster)."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import shutil
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, strategies as st

from kubepki.testing import build_node

REPO = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_downtime", REPO / "benchmarks" / "bench_downtime.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bd = _load()


def _probes(outcomes: str, step: float = 0.05, took: float = 0.01) -> list[Any]:
    """Probes sent every ``step`` seconds from 0; ``outcomes`` is one character each: ``+`` ok, ``-`` failed."""
    return [bd.Probe(i * step, i * step + took, c == "+", "" if c == "+" else "refused")
            for i, c in enumerate(outcomes)]


# --------------------------------------------------------------------------------------
# The arithmetic


def test_all_answered_is_no_downtime() -> None:
    d = bd.downtime(_probes("++++++"))
    assert (d.unanswered, d.longest, d.failed, d.probes, d.recovered) == (0.0, 0.0, 0, 6, True)
    assert bd.gaps(_probes("++++++")) == []


def test_gaps_run_from_the_first_failure_to_the_next_answer() -> None:
    # sent at 0, .05, ... .30: failures at .05 and .10 (answered again at .15), at .25 (answered at .30)
    probes = _probes("+--++-+")
    assert bd.gaps(probes) == [(pytest.approx(0.05), pytest.approx(0.15)), (pytest.approx(0.25), pytest.approx(0.30))]
    d = bd.downtime(probes)
    assert d.unanswered == pytest.approx(0.15) and d.longest == pytest.approx(0.10)
    assert (d.failed, d.probes, d.recovered) == (3, 7, True)


def test_a_gap_still_open_at_the_end_ends_with_the_last_probe_and_is_not_recovered() -> None:
    d = bd.downtime(_probes("++---"))
    # from the first failure's sending (.10) to the last probe's end (.20 + .01)
    assert d.unanswered == pytest.approx(0.11) and d.longest == pytest.approx(0.11)
    assert (d.failed, d.recovered) == (3, False)


def test_a_run_that_starts_unanswered_counts_from_its_first_probe() -> None:
    d = bd.downtime(_probes("--+"))
    assert d.unanswered == pytest.approx(0.10) and d.recovered


def test_order_of_the_records_does_not_matter() -> None:
    probes = _probes("+-+--+")
    assert bd.downtime(list(reversed(probes))) == bd.downtime(probes)


def test_no_probe_is_nothing_answered() -> None:
    d = bd.downtime([])
    assert (d.unanswered, d.longest, d.failed, d.probes, d.recovered) == (0.0, 0.0, 0, 0, False)


@given(st.lists(st.tuples(st.floats(0.001, 5.0), st.floats(0.0, 3.0), st.booleans()), max_size=60))
def test_gap_arithmetic_invariants(steps: list[tuple[float, float, bool]]) -> None:
    """Any probe record: the gaps are disjoint, ordered and inside the record; the longest is at most the
    sum; there is downtime exactly when a probe failed; the last probe decides recovery."""
    probes, t = [], 0.0
    for gap, took, ok in steps:
        t += gap
        probes.append(bd.Probe(t, t + took, ok, "" if ok else "x"))
    spans = bd.gaps(probes)
    d = bd.downtime(probes)
    ends = [p.end for p in probes]
    for (s1, e1), (s2, _) in itertools.pairwise(spans):
        assert s1 <= e1 <= s2
    for s, e in spans:
        assert probes[0].start <= s <= e <= max(ends)
    assert 0.0 <= d.longest <= d.unanswered + 1e-9
    assert (d.failed > 0) == bool(spans)
    assert d.failed == sum(not p.ok for p in probes) and d.probes == len(probes)
    assert d.recovered == (bool(probes) and probes[-1].ok)


# --------------------------------------------------------------------------------------
# The prober against a real TLS server


class _Readyz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok" if self.path == "/readyz" else b"not found"
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server:
    """``/readyz`` over TLS on 127.0.0.1, serving the node's apiserver pair and requiring a client
    certificate signed by its CA; :meth:`down` closes the port for a while, as a restart would."""

    def __init__(self, root: Path) -> None:
        pki = root / "etc/kubernetes/pki"
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
        self.ctx.load_verify_locations(pki / "ca.crt")
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def up(self) -> None:
        httpd = HTTPServer(("127.0.0.1", self.port), _Readyz)
        httpd.socket = self.ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._httpd = None


@contextlib.contextmanager
def _served(root: Path) -> Iterator[_Server]:
    server = _Server(root)
    server.up()
    try:
        yield server
    finally:
        server.down()


def _prober(root: Path, port: int, scratch: Path) -> Any:  # bench_downtime.Prober
    scratch.mkdir(exist_ok=True)
    creds = bd.Credentials(root / "etc/kubernetes/admin.conf", root / "etc/kubernetes/pki/ca.crt", scratch)
    return bd.Prober("127.0.0.1", port, creds, interval=0.05, timeout=1.0)


@pytest.fixture(scope="module")
def node_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 127.0.0.1 in the apiserver's SANs, as the real-cluster harness puts it
    return build_node(tmp_path_factory.mktemp("bd"), first_address="127.0.0.1").root


def test_prober_sees_an_outage_and_only_it(node_root: Path, tmp_path: Path) -> None:
    """The server closes its port for 0.6 s between two healthy stretches: one gap of about 0.6 s
    (± one 50 ms probe interval and the server's 20 ms poll). Control: the same prober against
    the same server without the outage records no failure."""
    with _served(node_root) as server:
        with _prober(node_root, server.port, tmp_path / "a") as control:
            time.sleep(1.0)
        quiet = bd.downtime(control.probes)
        assert quiet.failed == 0 and quiet.probes >= 10 and quiet.recovered
        with _prober(node_root, server.port, tmp_path / "b") as prober:
            time.sleep(0.5)
            server.down()
            time.sleep(0.6)
            server.up()
            time.sleep(0.5)
    d = bd.downtime(prober.probes)
    assert len(bd.gaps(prober.probes)) == 1, prober.probes
    assert 0.45 <= d.unanswered <= 0.8 and d.longest == d.unanswered and d.recovered, d
    assert all("Error" in p.error for p in prober.probes if not p.ok)


def test_prober_rereads_admin_conf_for_every_probe(node_root: Path, tmp_path: Path) -> None:
    """admin.conf replaced by another cluster's (a client certificate the server's CA did not sign)
    makes the next probes fail, and putting it back makes them pass: the file is read for each
    probe, not once. A half-written admin.conf keeps the last pair and counts as unreadable rather
    than as the server's failure."""
    other = build_node(tmp_path / "other", first_address="127.0.0.1", fresh_keys=True).root  # another CA key
    conf = node_root / "etc/kubernetes/admin.conf"
    saved = conf.read_bytes()
    try:
        with _served(node_root) as server:
            creds_dir = tmp_path / "c"
            creds_dir.mkdir()
            creds = bd.Credentials(conf, node_root / "etc/kubernetes/pki/ca.crt", creds_dir)
            prober = bd.Prober("127.0.0.1", server.port, creds, timeout=1.0)
            assert prober.probe_once().ok  # control: the node's own pair is accepted
            shutil.copyfile(other / "etc/kubernetes/admin.conf", conf)
            refused = prober.probe_once()
            assert not refused.ok and refused.error, refused
            conf.write_bytes(saved)
            assert prober.probe_once().ok
            conf.write_bytes(saved[: len(saved) // 2])  # caught mid-write
            half = prober.probe_once()
            assert half.ok and creds.unreadable == 1, half
            conf.write_bytes(saved)
            assert prober.probe_once().ok and creds.unreadable == 1
    finally:
        conf.write_bytes(saved)


def test_credentials_that_never_could_be_read_fail_the_probe(tmp_path: Path) -> None:
    """No pair ever read (admin.conf missing): the probe fails with the reason, it does not raise."""
    creds = bd.Credentials(tmp_path / "admin.conf", tmp_path / "ca.crt", tmp_path)
    probe = bd.Prober("127.0.0.1", 9, creds, timeout=0.5).probe_once()
    assert not probe.ok and "FileNotFoundError" in probe.error
