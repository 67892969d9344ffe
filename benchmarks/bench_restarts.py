"""Restart planning and observation benchmarks.

Run as a script for a table (``python benchmarks/bench_restarts.py``) or through
pytest-benchmark (``python -m pytest benchmarks/bench_restarts.py``). The node is
the real kubeadm tree ``single-full``; /proc is this machine's; the TLS endpoint
is a real server on 127.0.0.1 serving the tree's apiserver certificate.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubepki import catalog  # noqa: E402
from kubepki.node._node import Node  # noqa: E402
from kubepki.restarts._observe import ProcScanner  # noqa: E402
from kubepki.restarts._restarts import Changed, detect, plan_restarts  # noqa: E402
from kubepki.restarts._served import fetch_served_certificate  # noqa: E402
from tests.kubeadm_trees import materialize  # noqa: E402


@contextlib.contextmanager
def tls_server(root: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 serving the tree's apiserver.crt until the block ends."""
    pki = root / "etc/kubernetes/pki"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
    stop = threading.Event()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join()
        srv.close()


def _node(base: Path) -> Node:
    return Node(materialize("single-full", base / "n"))


def test_plan_all_items(benchmark: Any, tmp_path: Path) -> None:
    """Planning a restart for every catalog item at once (both policies)."""
    node = _node(tmp_path)
    names = list(catalog.names())
    benchmark(lambda: (plan_restarts(node, Changed(names)), plan_restarts(node, Changed(names), policy="minimal")))


def test_scan_proc(benchmark: Any) -> None:
    """One scan of this machine's /proc."""
    benchmark(ProcScanner().processes)


def test_fetch_served_certificate(benchmark: Any, tmp_path: Path) -> None:
    """One TLS handshake to fetch a served certificate."""
    node = _node(tmp_path)
    with tls_server(node.root) as port:
        benchmark(lambda: fetch_served_certificate("127.0.0.1", port))


def test_detect(benchmark: Any, tmp_path: Path) -> None:
    """Staleness detection on a node (inspection, /proc scan; nothing serves)."""
    node = _node(tmp_path)
    benchmark(lambda: detect(node, served=False))


def _best(fn: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Print one line per figure."""
    with tempfile.TemporaryDirectory() as tmp:
        node = _node(Path(tmp))
        names = list(catalog.names())
        rows = [
            ("plan every catalog item (safe)", _best(lambda: plan_restarts(node, Changed(names)))),
            ("scan /proc", _best(ProcScanner().processes)),
            ("detect (no TLS)", _best(lambda: detect(node, served=False))),
        ]
        with tls_server(node.root) as port:
            rows.append(("fetch a served certificate", _best(lambda: fetch_served_certificate("127.0.0.1", port))))
    for label, seconds in rows:
        print(f"{label:<34} {seconds * 1000:8.2f} ms")


if __name__ == "__main__":
    main()
