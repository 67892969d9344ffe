"""Probing endpoints: real TLS servers on 127.0.0.1 that serve certificates by SNI."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kubepki.cli import exit_status, main
from kubepki.errors import ConfigError
from kubepki.inspection._findings import Status
from kubepki.objects.probe import fetch_chain, parse_endpoint, probe
from kubepki.pki import _tls as tls_module
from tests.test_cluster_objects import DAY, NOW, PKI, key_pem, pem

FULL_CHAIN = sys.version_info >= (3, 13) or (hasattr(getattr(ssl, "_ssl", None), "_SSLSocket") and hasattr(
    ssl._ssl._SSLSocket, "get_unverified_chain"))  # type: ignore[attr-defined]


class TLSServer:
    """A TLS server on 127.0.0.1 that picks its certificate chain by SNI, in a thread.

    ``chains`` maps a server name (or "" for clients that send none, or an unknown
    name) to (chain PEM, key PEM); each connection only does the handshake.
    """

    def __init__(self, tmp: Path, chains: Mapping[str, tuple[bytes, bytes]]) -> None:
        self.contexts: dict[str, ssl.SSLContext] = {}
        for i, (name, (chain, key)) in enumerate(chains.items()):
            path = tmp / f"server-{i}.pem"
            path.write_bytes(chain + key)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(path)
            self.contexts[name] = ctx
        self.default = self.contexts[""]
        self.default.sni_callback = self._pick
        self.seen: list[str | None] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _pick(self, sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        self.seen.append(name)
        if name in self.contexts:
            sock.context = self.contexts[name]

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                with self.default.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        """Stop accepting and close the socket."""
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def pki() -> PKI:
    """The PKI the servers' certificates come from."""
    return PKI("probe")


@pytest.fixture
def server(tmp_path: Path, pki: PKI) -> Iterator[TLSServer]:
    """A server with a good chain for a.example.test, an expired one for b, a reversed one for c."""
    good = pki.leaf("a.example.test", key=0)
    expired = pki.leaf("b.example.test", key=1, not_before=NOW - 400 * DAY, not_after=NOW - 2 * DAY)
    reversed_leaf = pki.leaf("c.example.test", key=2)
    default = pki.leaf("default.example.test", key=3, ips=["127.0.0.1"])
    srv = TLSServer(tmp_path, {
        "": (pem(default, pki.intermediate), key_pem(pki.leaf_keys[3])),
        "a.example.test": (pem(good, pki.intermediate, pki.root), key_pem(pki.leaf_keys[0])),
        "b.example.test": (pem(expired, pki.intermediate), key_pem(pki.leaf_keys[1])),
        # OpenSSL sends the first certificate as the leaf: put the intermediate after the root.
        "c.example.test": (pem(reversed_leaf, pki.root, pki.intermediate), key_pem(pki.leaf_keys[2])),
    })
    yield srv
    srv.close()


def test_good_chain_by_sni(server: TLSServer) -> None:
    """The SNI name picks the chain; it is read whole and is ok."""
    inv = probe([f"127.0.0.1:{server.port}"], server_name="a.example.test", now=NOW)
    item = inv.items[0]
    assert item.name == f"127.0.0.1:{server.port}" and item.key == "a.example.test"
    assert item.status is Status.OK, item.findings
    assert item.facts is not None and item.facts.common_name == "a.example.test"
    if FULL_CHAIN:
        assert [c.common_name for c in item.chain] == ["a.example.test", "probe-intermediate-ca",
                                                       "probe-root-ca"]
        assert inv.notes == ()
    assert "a.example.test" in server.seen
    assert exit_status(inv) == 0 and inv.source == "probe"


def test_expired_certificate_behind_another_name(server: TLSServer) -> None:
    """Another SNI name on the same port serves an expired certificate: exit 2."""
    inv = probe([f"127.0.0.1:{server.port}"], server_name="b.example.test", now=NOW)
    assert inv.items[0].status is Status.EXPIRED and exit_status(inv) == 2


def test_no_sni_for_ip_addresses(server: TLSServer) -> None:
    """An IP address sends no SNI and gets the default certificate, whose IP SANs name it."""
    inv = probe([f"127.0.0.1:{server.port}"], now=NOW)
    item = inv.items[0]
    assert item.facts is not None and item.facts.common_name == "default.example.test"
    assert item.key == "" and item.status is Status.OK
    assert None in server.seen


def test_hostname_mismatch(server: TLSServer) -> None:
    """A name the server has no certificate for gets the default one: hostname-mismatch."""
    inv = probe([f"127.0.0.1:{server.port}"], server_name="unknown.example.test", now=NOW)
    item = inv.items[0]
    assert [f.code for f in item.findings] == ["hostname-mismatch"]
    assert item.status is Status.INVALID


def test_host_name_is_sent_as_sni(server: TLSServer) -> None:
    """A host name endpoint sends itself as SNI (localhost resolves to the server)."""
    inv = probe([f"localhost:{server.port}"], now=NOW)
    assert inv.items[0].key == "localhost" and "localhost" in server.seen
    assert inv.items[0].has("hostname-mismatch")


@pytest.mark.skipif(not FULL_CHAIN, reason="this Python reads only the served leaf")
def test_served_chain_out_of_order(server: TLSServer) -> None:
    """A server sending root before intermediate gives chain-order (warning)."""
    inv = probe([f"127.0.0.1:{server.port}"], server_name="c.example.test", now=NOW)
    item = inv.items[0]
    assert [f.code for f in item.findings] == ["chain-order"] and item.status is Status.WARNING
    assert exit_status(inv) == 1


def test_leaf_only_fallback(server: TLSServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any chain API only the leaf is checked, and the inventory notes it."""
    monkeypatch.setattr(tls_module, "_chain_of",
                        lambda sock: ([sock.getpeercert(binary_form=True)], False))
    inv = probe([f"127.0.0.1:{server.port}"], server_name="a.example.test", now=NOW)
    assert len(inv.items[0].chain) == 1 and inv.items[0].status is Status.OK
    assert any("only leaf certificates" in n for n in inv.notes)


def test_unreachable_endpoint_is_an_invalid_item(server: TLSServer) -> None:
    """A closed port is an unreachable item beside a good one (negative control)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    inv = probe([f"127.0.0.1:{port}", f"127.0.0.1:{server.port}"], server_name="a.example.test", now=NOW,
                timeout=2)
    bad, good = inv.items
    assert [f.code for f in bad.findings] == ["unreachable"] and bad.status is Status.INVALID
    assert bad.facts is None and good.status is Status.OK
    assert exit_status(inv) == 2


def test_plain_tcp_server_fails_the_handshake() -> None:
    """A server that is not TLS gives unreachable with the handshake's reason."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]

    def answer() -> None:
        conn, _ = sock.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        inv = probe([f"127.0.0.1:{port}"], now=NOW, timeout=2)
    finally:
        thread.join(5)
        sock.close()
    assert inv.items[0].has("unreachable")
    assert "TLS" in inv.items[0].findings[0].message


def test_fetch_chain_returns_der(server: TLSServer) -> None:
    """fetch_chain gives DER certificates and the TLS version."""
    served = fetch_chain("127.0.0.1", server.port, server_name="a.example.test")
    assert served.certificates[0][:1] == b"\x30" and served.tls_version in ("TLSv1.2", "TLSv1.3")
    assert "certificates" not in repr(served)


@pytest.mark.parametrize(("text", "expected"), [
    ("example.com:8443", ("example.com", 8443)),
    ("example.com", ("example.com", 443)),
    ("[::1]:6443", ("::1", 6443)),
    ("[::1]", ("::1", 443)),
    ("https://example.com:9443/healthz", ("example.com", 9443)),
    ("10.0.0.1:443", ("10.0.0.1", 443)),
])
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    """Endpoints are host:port, [v6]:port, a bare host or an https URL."""
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["", ":443", "host:port", "host:0", "host:70000", "::1:443", "[::1", "http://x",
                                  "[::1]x"])
def test_bad_endpoints_raise_before_connecting(text: str) -> None:
    """Malformed endpoints are ConfigError, and nothing is contacted."""
    with pytest.raises(ConfigError):
        probe([text], now=NOW)


def test_cli_probe(server: TLSServer, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki probe` prints an ENDPOINT table and exits with the inventory's status."""
    code = main(["probe", f"127.0.0.1:{server.port}", "--server-name", "a.example.test",
                 "--now", "2026-12-01T00:00:00Z"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert out.split()[:6] == ["ENDPOINT", "SERVER", "NAME", "EXPIRES", "RESIDUAL", "TIME"]
    code = main(["probe", f"127.0.0.1:{server.port}", "--server-name", "b.example.test",
                 "--now", "2026-12-01T00:00:00Z", "-o", "json"])
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert code == 2 and data["items"][0]["status"] == "expired"
    assert data["items"][0]["object_kind"] == "Endpoint" and data["items"][0]["namespace"] is None


def test_cli_probe_bad_endpoint_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed endpoint is one line on stderr and exit 3."""
    code = main(["probe", "nope:port"])
    _, err = capsys.readouterr()
    assert code == 3 and err.startswith("kubepki: error:") and err.count("\n") == 1


def test_expiry_window_is_checked_against_now(server: TLSServer) -> None:
    """Probing 'in the future' reports the good chain as expiring."""
    inv = probe([f"127.0.0.1:{server.port}"], server_name="a.example.test", now=NOW + 50 * DAY)
    assert inv.items[0].has("expiring")
    assert inv.items[0].residual_seconds == int((NOW + 60 * DAY - (NOW + 50 * DAY)).total_seconds())

