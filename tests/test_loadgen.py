"""The load generator (tests/loadgen.py) can fail: it counts failures where the cluster fails and nowhere else.

The plain tests check the per-phase accounting and the two clients that
re-read their trust (a kubeconfig read before each request, the aggregated
API server's requestheader trust re-fetched) against real TLS servers on
loopback. The realcluster tests run the instrument against the real cluster:
idle (no failure, successes on every channel), the apiserver taken away
(failures on every channel through it), and one channel's trust broken on
purpose (failures on that channel's readers only); each puts back what it
changed and waits until every channel answers again.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import http.server
import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.loadgen import (
    ADMIN,
    AGGREGATED,
    BODY_HEAD,
    CHANNELS,
    KUBELET,
    SERVICE_ACCOUNT,
    AggregatedServer,
    Counts,
    Kubeconfig,
    LoadGenerator,
    Refreshed,
    Report,
    RequestFailed,
    RequestHeaderTrust,
    ServiceAccountToken,
    Tally,
    cause_of,
    expect,
    http_cause,
    leaf,
    self_signed_ca,
)
from tests.realcluster import RealCluster, wait_until

# --------------------------------------------------------------------------------------
# The accounting


def test_tally_counts_each_request_in_the_phase_it_was_sent_in() -> None:
    clock = iter(range(100, 200))
    tally = Tally(["a", "b"], "idle", clock=lambda: float(next(clock)))
    sent = tally.current()
    tally.ok("a", sent)
    tally.phase("trust-both")  # a switch while a request is under way
    tally.fail("b", sent, "HTTP 503: down")  # ... counts where it was sent
    tally.ok("a", tally.current())
    tally.fail("a", tally.current(), "ConnectionRefusedError: refused")
    tally.phase("idle")  # entering a label again adds to it
    tally.ok("b", tally.current())
    report = tally.report()
    assert report.phases == ("idle", "trust-both")
    assert report.counts["idle"] == {"a": Counts(1, 0), "b": Counts(1, 1)}
    assert report.counts["trust-both"] == {"a": Counts(1, 1), "b": Counts(0, 0)}
    assert (report.ok(), report.failed()) == (3, 2)
    assert report.failed(phase="idle") == 1 and report.failed(channel="a") == 1
    assert report.failed(phase="trust-both", channel="b") == 0  # negative control beside the positive
    assert [(f.at, f.phase, f.channel, f.cause) for f in report.failures] == [
        (100.0, "idle", "b", "HTTP 503: down"), (101.0, "trust-both", "a", "ConnectionRefusedError: refused")]
    assert [f.channel for f in report.failures_of(phase="trust-both")] == ["a"]


def test_tally_report_is_a_snapshot_and_names_are_checked() -> None:
    tally = Tally(["a"], "p1")
    report = tally.report()
    tally.ok("a", "p1")
    tally.fail("a", "p1", "x", at=5.0)
    assert report.ok() == 0 and report.failures == ()
    assert tally.report().counts["p1"]["a"] == Counts(1, 1)
    with pytest.raises(KeyError):
        tally.ok("nope", "p1")
    with pytest.raises(KeyError):
        tally.fail("a", "never-entered", "x")
    with pytest.raises(KeyError):
        tally.report().failed(phase="never-entered")
    with pytest.raises(KeyError):
        tally.report().ok(channel="nope")
    with pytest.raises(ValueError, match="empty"):
        tally.phase("")
    with pytest.raises(ValueError, match="distinct"):
        Tally(["a", "a"])
    with pytest.raises(ValueError, match="distinct"):
        Tally([])


def test_tally_counts_exactly_under_threads() -> None:
    tally = Tally(["a", "b"], "p")
    per_thread = 400

    def work(channel: str) -> None:
        for i in range(per_thread):
            if i % 4:
                tally.ok(channel, tally.current())
            else:
                tally.fail(channel, tally.current(), f"cause {i}")

    threads = [threading.Thread(target=work, args=(ch,)) for ch in ("a", "b") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = tally.report()
    assert report.counts["p"]["a"] == Counts(4 * per_thread * 3 // 4, 4 * per_thread // 4)
    assert report.counts["p"]["b"] == report.counts["p"]["a"]
    assert len(report.failures) == report.failed() == 2 * per_thread


def test_report_text_and_dict_name_every_phase_channel_and_failure() -> None:
    tally = Tally(["admin.conf", "sa"], "prepare", clock=lambda: 1_700_000_000.25)
    tally.ok("admin.conf", "prepare")
    tally.phase("reissue")
    tally.fail("sa", "reissue", "HTTP 401: Unauthorized")
    report = tally.report()
    text = report.text()
    assert "prepare" in text and "reissue" in text and "admin.conf" in text
    assert "22:13:20.250 [reissue] sa: HTTP 401: Unauthorized" in text
    assert "(ok/failed; 1 failures)" in text
    assert report.to_dict() == {
        "phases": {"prepare": {"admin.conf": {"ok": 1, "failed": 0}, "sa": {"ok": 0, "failed": 0}},
                   "reissue": {"admin.conf": {"ok": 0, "failed": 0}, "sa": {"ok": 0, "failed": 1}}},
        "failures": [{"at": 1_700_000_000.25, "phase": "reissue", "channel": "sa",
                      "cause": "HTTP 401: Unauthorized"}]}
    assert Report(("a",), {"p": {"a": Counts()}}, ()).text().endswith("(ok/failed; 0 failures)")


def test_causes_keep_the_status_and_the_head_of_the_body() -> None:
    assert http_cause(503, b"service unavailable") == "HTTP 503: service unavailable"
    assert http_cause(503, b"error trying to reach service: tls\n\n") == "HTTP 503: error trying to reach service: tls"
    long = http_cause(500, b"x" * (BODY_HEAD + 50))
    assert long == f"HTTP 500: {'x' * BODY_HEAD}…"
    assert http_cause(401, b"\xff\xfe") == "HTTP 401: \ufffd\ufffd"
    assert expect(200, b"fine") == b"fine"
    assert expect(409, b"exists", (201, 409)) == b"exists"
    with pytest.raises(RequestFailed, match=r"^HTTP 403: forbidden$"):
        expect(403, b"forbidden")
    assert cause_of(RequestFailed("HTTP 404: x")) == "HTTP 404: x"
    assert cause_of(ConnectionRefusedError(111, "Connection refused")) == \
        "ConnectionRefusedError: [Errno 111] Connection refused"


def test_load_generator_refuses_unknown_channels_and_rates() -> None:
    with pytest.raises(ValueError, match="unknown channels"):
        LoadGenerator(None, channels=["telnet"])  # type: ignore[arg-type]  # refused before it is used
    with pytest.raises(ValueError, match="positive"):
        LoadGenerator(None, rate=0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# The clients that re-read their trust, against real TLS on loopback


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _pair_pem(cert: x509.Certificate, key: Any) -> tuple[bytes, bytes]:
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _write_kubeconfig(path: Path, server: str, ca_pem: str, cert: bytes, key: bytes) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    cluster = {"server": server, "certificate-authority-data": b64(ca_pem.encode())}
    conf = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "k", "cluster": cluster}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            "users": [{"name": "u", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(conf))
    os.replace(tmp, path)


class _Switch:
    """The trust an AggregatedServer fetches, switched by the test."""

    def __init__(self, trust: RequestHeaderTrust) -> None:
        self.trust = trust

    def __call__(self) -> RequestHeaderTrust:
        return self.trust


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[AggregatedServer, _Switch, Path, tuple[bytes, bytes]]]:
    """An AggregatedServer on loopback trusting front-proxy CA A, refreshed every 0.2 s, and a kubeconfig
    for it with a front-proxy-client certificate from A."""
    ca_a, key_a = self_signed_ca("front-proxy-ca-a")
    switch = _Switch(RequestHeaderTrust(_pem(ca_a), ("front-proxy-client",)))
    server = AggregatedServer(tmp_path / "srv", "unit.kubepki.test", switch, refresh=0.2)
    client = _pair_pem(*leaf(ca_a, key_a, "front-proxy-client"))
    conf = tmp_path / "client.conf"
    _write_kubeconfig(conf, f"https://127.0.0.1:{server.port}", server.server_ca_pem, *client)
    try:
        yield server, switch, conf, client
    finally:
        server.close()


def test_kubeconfig_is_read_before_every_request(
        tmp_path: Path, local_server: tuple[AggregatedServer, _Switch, Path, tuple[bytes, bytes]]) -> None:
    server, _, conf, client = local_server
    kc = Kubeconfig(conf, tmp_path / "keys")
    (tmp_path / "keys").mkdir()
    assert kc.request(server.path)[0] == 200
    other, _ = self_signed_ca("some-other-ca")
    # a bundle: every certificate in certificate-authority-data is trusted
    _write_kubeconfig(conf, f"https://127.0.0.1:{server.port}", _pem(other) + server.server_ca_pem, *client)
    assert kc.request(server.path)[0] == 200
    _write_kubeconfig(conf, f"https://127.0.0.1:{server.port}", _pem(other), *client)
    with pytest.raises(ssl.SSLCertVerificationError):
        kc.request(server.path)
    _write_kubeconfig(conf, f"https://127.0.0.1:{server.port}", server.server_ca_pem, *client)
    assert kc.request(server.path)[0] == 200
    for path in (tmp_path / "keys").iterdir():  # the client pair, written for ssl, is private
        assert path.stat().st_mode & 0o777 == 0o600
    conf.write_text("clusters: [not, a, kubeconfig")
    with pytest.raises(RequestFailed, match="not a usable kubeconfig"):
        kc.request(server.path)
    # base64 that is no PEM, as CA data or as the client pair: refused by ssl, a failed request all the same
    _write_kubeconfig(conf, f"https://127.0.0.1:{server.port}", "not a certificate", *client)
    with pytest.raises(RequestFailed, match=r"not a usable kubeconfig \(SSLError"):
        kc.request(server.path)
    _write_kubeconfig(conf, f"https://127.0.0.1:{server.port}", server.server_ca_pem, b"no cert", b"no key")
    with pytest.raises(RequestFailed, match=r"not a usable kubeconfig \(SSLError"):
        kc.request(server.path)


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                                    max_size=4), max_leaves=12)
_FIELDS = st.sampled_from(["current-context", "contexts", "clusters", "users", "server",
                           "certificate-authority-data", "client-certificate-data", "client-key-data"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_kubeconfig_is_a_failed_request_with_its_cause(tmp_path: Path, data: st.DataObject) -> None:
    """Untrusted bytes where the kubeconfig should be (whole files, or a valid one with a field replaced):
    :class:`RequestFailed` naming the file, never another exception."""
    ca, ca_key = self_signed_ca("fuzz-ca")
    conf = tmp_path / "fuzz.conf"
    _write_kubeconfig(conf, "https://127.0.0.1:1", _pem(ca), *_pair_pem(*leaf(ca, ca_key, "admin")))
    Kubeconfig(conf, tmp_path).client()  # the control: as written, it loads
    good = yaml.safe_load(conf.read_text())
    if data.draw(st.booleans()):
        conf.write_bytes(data.draw(st.binary(max_size=300)))
    else:
        field, value = data.draw(_FIELDS), data.draw(_JSONISH)
        for holder in (good, good["clusters"][0]["cluster"], good["users"][0]["user"]):
            if field in holder:
                holder[field] = value
        conf.write_text(yaml.safe_dump(good))
    message = ""
    try:
        Kubeconfig(conf, tmp_path).client()  # a change kubectl would shrug off may still load
    except RequestFailed as exc:
        message = str(exc)
    assert not message or message.startswith(f"{conf}: not a usable kubeconfig"), message


@settings(max_examples=200, deadline=None)
@given(ca=st.one_of(st.just("-----BEGIN CERTIFICATE-----\nx\n"), _JSONISH), names=_JSONISH)
def test_requestheader_trust_from_any_configmap_data(ca: Any, names: Any) -> None:
    """Whatever extension-apiserver-authentication holds: a trust, or :class:`RequestFailed` (the server then
    keeps the trust it had)."""
    try:
        trust = RequestHeaderTrust.from_configmap({"requestheader-client-ca-file": ca,
                                                   "requestheader-allowed-names": names})
    except RequestFailed:
        return
    assert trust.ca_pem == ca and all(isinstance(n, str) for n in trust.allowed_names)


def test_requestheader_trust_reads_the_allowed_names() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
    data = {"requestheader-client-ca-file": pem, "requestheader-allowed-names": '["front-proxy-client"]'}
    assert RequestHeaderTrust.from_configmap(data) == RequestHeaderTrust(pem, ("front-proxy-client",))
    assert RequestHeaderTrust.from_configmap({"requestheader-client-ca-file": pem}).allowed_names == ()
    with pytest.raises(RequestFailed, match="no requestheader-client-ca-file"):
        RequestHeaderTrust.from_configmap({"client-ca-file": pem})
    with pytest.raises(RequestFailed, match="not a JSON list"):
        RequestHeaderTrust.from_configmap({**data, "requestheader-allowed-names": '{"a": 1}'})


def test_aggregated_server_takes_the_trust_of_the_moment(
        tmp_path: Path, local_server: tuple[AggregatedServer, _Switch, Path, tuple[bytes, bytes]]) -> None:
    server, switch, conf, client = local_server
    (tmp_path / "keys").mkdir()
    kc = Kubeconfig(conf, tmp_path / "keys")
    assert kc.request(server.path)[0] == 200
    assert server.failures == []
    assert server.serials[-1] == x509.load_pem_x509_certificate(client[0]).serial_number
    ca_b, key_b = self_signed_ca("front-proxy-ca-b")
    switch.trust = RequestHeaderTrust(_pem(ca_b), ("front-proxy-client",))

    def refused() -> bool:
        try:
            kc.request(server.path)
        except (OSError, http.client.HTTPException):
            return True
        return False

    wait_until("the server to refuse CA A's client", refused, 5, 0.05)
    # TLS 1.3: the client may see the server's alert before the server's thread has recorded why
    wait_until("the server's reason", lambda: any("certificate verify failed" in why for _, why in server.failures),
               5, 0.05)
    # CA B's client is accepted, by the same running server; a CN not allowed gets 401
    allowed = tmp_path / "b.conf"
    _write_kubeconfig(allowed, f"https://127.0.0.1:{server.port}", server.server_ca_pem,
                      *_pair_pem(*leaf(ca_b, key_b, "front-proxy-client")))
    assert Kubeconfig(allowed, tmp_path / "keys").request(server.path)[0] == 200
    not_allowed = tmp_path / "c.conf"
    _write_kubeconfig(not_allowed, f"https://127.0.0.1:{server.port}", server.server_ca_pem,
                      *_pair_pem(*leaf(ca_b, key_b, "someone-else")))
    status, body = Kubeconfig(not_allowed, tmp_path / "keys").request(server.path)
    assert status == 401 and b"someone-else" in body
    assert Kubeconfig(allowed, tmp_path / "keys").request("/apis/unit.kubepki.test/v1alpha1/x")[0] == 404


def test_refreshed_keeps_the_last_good_value() -> None:
    values: list[Any] = [1]

    def fetch() -> Any:
        value = values[0]
        if isinstance(value, Exception):
            raise value
        return value

    r = Refreshed("number", fetch, 0.05)
    try:
        assert r.get() == 1
        values[0] = 2
        wait_until("the new value", lambda: r.get() == 2, 5, 0.02)
        values[0] = OSError("apiserver down")
        wait_until("a failed fetch", lambda: r.error, 5, 0.02)
        assert r.get() == 2 and r.error == "OSError: apiserver down"
    finally:
        r.close()
    values[0] = RequestFailed("HTTP 404: no such ConfigMap")
    never = Refreshed("nothing", fetch, 10)
    try:
        with pytest.raises(RequestFailed, match="no nothing yet: HTTP 404"):
            never.get()
    finally:
        never.close()


class _TokenServer:
    """A loopback TLS server answering TokenRequests for default/sa with tokens t1, t2, … that live
    ``lifetime`` seconds (or 500 while :attr:`broken`), recording each requested expirationSeconds."""

    def __init__(self, tmp: Path, lifetime: float) -> None:
        ca, ca_key = self_signed_ca("token-server-ca")
        cert, key = leaf(ca, ca_key, "localhost", server=True, ips=["127.0.0.1"])
        crt_pem, key_pem = _pair_pem(cert, key)
        (tmp / "token-srv.pem").write_bytes(crt_pem + key_pem)
        self.ca_pem = _pem(ca)
        self.broken = False
        self.requested: list[int] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.broken or self.path != "/api/v1/namespaces/default/serviceaccounts/sa/token":
                    status, data = 500, b"broken"
                else:
                    outer.requested.append(body["spec"]["expirationSeconds"])
                    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=lifetime)
                    data = json.dumps({"status": {"token": f"t{len(outer.requested)}",
                                                  "expirationTimestamp": expires.isoformat()}}).encode()
                    status = 201
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tmp / "token-srv.pem"))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_service_account_token_is_renewed_past_80_percent_of_its_lifetime(tmp_path: Path) -> None:
    server = _TokenServer(tmp_path, lifetime=2.0)
    try:
        ca, ca_key = self_signed_ca("client-ca")
        conf = tmp_path / "admin.conf"
        _write_kubeconfig(conf, f"https://127.0.0.1:{server.port}", server.ca_pem,
                          *_pair_pem(*leaf(ca, ca_key, "kubernetes-admin")))
        token = ServiceAccountToken(Kubeconfig(conf, tmp_path), "default", "sa", lifetime=600)
        assert token.get() == "t1"
        assert token.get() == "t1" and token.renewals == 1  # not due before 80 % (1.6 s) of its life
        time.sleep(1.7)
        assert token.get() == "t2" and token.renewals == 2
        server.broken = True
        time.sleep(1.7)
        assert token.get() == "t2" and token.renewals == 2  # a failed renewal keeps the token it has
        server.broken = False
        assert token.get() == "t3"  # ... and is tried again on the next request
        assert server.requested == [600, 600, 600]
        server.broken = True
        with pytest.raises(RequestFailed, match="HTTP 500: broken"):  # no token at all: the request fails
            ServiceAccountToken(Kubeconfig(conf, tmp_path), "default", "sa").get()
    finally:
        server.close()


# --------------------------------------------------------------------------------------
# The real cluster


THROUGH_APISERVER = (ADMIN, AGGREGATED, KUBELET, SERVICE_ACCOUNT)
READS_ADMIN_CONF = (ADMIN, AGGREGATED, KUBELET)


def _write_back(path: Path, data: bytes, st: os.stat_result) -> None:
    """Put ``data`` back at ``path`` atomically with its old mode and times."""
    tmp = path.with_name(f".{path.name}.kubepki-loadgen.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, st.st_mode & 0o777)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _hold_until_failing(lg: LoadGenerator, phase: str, channels: tuple[str, ...], timeout: float) -> None:
    wait_until(f"failures on {channels} in {phase}",
               lambda: all(lg.report().failed(phase=phase, channel=ch) for ch in channels), timeout, 0.2)
    time.sleep(1.0)


def _assert_clean(report: Report, phase: str, channels: tuple[str, ...] = CHANNELS) -> None:
    for ch in channels:
        assert report.failed(phase=phase, channel=ch) == 0, report.text()
        assert report.ok(phase=phase, channel=ch) > 0, report.text()


@pytest.mark.realcluster
def test_idle_cluster_no_request_fails(real_cluster: RealCluster, tmp_path: Path) -> None:
    """Negative control: 20 s of load on the healthy, idle cluster: no failure on any channel, and each
    made requests (about 5 a second each)."""
    with LoadGenerator(real_cluster, tmp_path / "lg", phase="idle") as lg:
        time.sleep(20)
    report = lg.report()
    print(report.text())
    _assert_clean(report, "idle")
    for ch in CHANNELS:
        assert report.ok(phase="idle", channel=ch) >= 50, report.text()  # new connections, ~5/s, 20 s
    assert lg.token is not None and lg.token.renewals == 1  # a 600 s token is not due yet


@pytest.mark.realcluster
def test_foreign_front_proxy_client_fails_the_aggregated_channel_only(real_cluster: RealCluster,
                                                                     tmp_path: Path) -> None:
    """One channel's trust broken on purpose: front-proxy-client.crt/.key re-issued by a CA the aggregated
    server does not trust (the apiserver reloads it hot) — requests through the aggregated API fail, those of
    every other channel do not; with the original pair back every channel answers again."""
    c = real_cluster
    crt, key = c.pki / "front-proxy-client.crt", c.pki / "front-proxy-client.key"
    saved = [(p, p.read_bytes(), p.stat()) for p in (key, crt)]
    with LoadGenerator(c, tmp_path / "lg", phase="before") as lg:
        time.sleep(3)
        foreign, foreign_key = self_signed_ca("kubepki-loadgen-foreign-front-proxy-ca")
        cert, cert_key = leaf(foreign, foreign_key, "front-proxy-client")
        lg.phase("broken")
        try:
            cert_pem, key_pem = _pair_pem(cert, cert_key)
            _write_back(key, key_pem, saved[0][2])
            _write_back(crt, cert_pem, saved[1][2])
            _hold_until_failing(lg, "broken", (AGGREGATED,), 60)
        finally:
            for path, data, st in saved:
                _write_back(path, data, st)
        lg.phase("restoring")
        lg.wait_all_ok(150)
        lg.phase("after")
        time.sleep(3)
    report = lg.report()
    print(report.text())
    _assert_clean(report, "before")
    assert report.failed(phase="broken", channel=AGGREGATED) > 0
    for ch in (ADMIN, KUBELET, SERVICE_ACCOUNT):
        assert report.failed(phase="broken", channel=ch) == 0, report.text()
        assert report.ok(phase="broken", channel=ch) > 0, report.text()
    assert all(f.cause.startswith("HTTP 503") for f in report.failures_of(channel=AGGREGATED)), report.text()
    _assert_clean(report, "after")


@pytest.mark.realcluster
def test_admin_conf_trust_broken_fails_its_readers_only(real_cluster: RealCluster, tmp_path: Path) -> None:
    """One client's trust broken on purpose: admin.conf's certificate-authority-data replaced by another CA
    (then restored from a copy) — the channels that read admin.conf (kubectl, and kubectl through the
    aggregated API and to the kubelet) fail with a verification error; the ServiceAccount channel, which
    trusts kube-root-ca.crt, does not."""
    c = real_cluster
    path = c.root / "etc/kubernetes/admin.conf"
    original, st = path.read_bytes(), path.stat()
    conf = yaml.safe_load(original)
    other, _ = self_signed_ca("kubepki-loadgen-other-ca")
    conf["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(_pem(other).encode()).decode()
    with LoadGenerator(c, tmp_path / "lg", phase="before") as lg:
        time.sleep(3)
        lg.phase("broken")
        try:
            _write_back(path, yaml.safe_dump(conf).encode(), st)
            _hold_until_failing(lg, "broken", READS_ADMIN_CONF, 30)
        finally:
            _write_back(path, original, st)
        lg.phase("restoring")
        lg.wait_all_ok(60)
        lg.phase("after")
        time.sleep(3)
    assert path.read_bytes() == original
    report = lg.report()
    print(report.text())
    _assert_clean(report, "before")
    for ch in READS_ADMIN_CONF:
        causes = {f.cause for f in report.failures_of(phase="broken", channel=ch)}
        assert causes, report.text()
        assert all("certificate verify failed" in cause for cause in causes), causes
    assert report.failed(phase="broken", channel=SERVICE_ACCOUNT) == 0, report.text()
    assert report.ok(phase="broken", channel=SERVICE_ACCOUNT) > 0, report.text()
    _assert_clean(report, "after")


@pytest.mark.realcluster
def test_apiserver_outage_fails_every_channel_through_it(real_cluster: RealCluster, tmp_path: Path) -> None:
    """Positive control: the kube-apiserver's manifest moved out of the manifests directory (the kubelet
    stops it) and back; every channel goes through the apiserver, so each counts failures while it is away,
    none before, and none once it is healthy again."""
    c = real_cluster
    with LoadGenerator(c, tmp_path / "lg", phase="before") as lg:
        time.sleep(3)
        lg.phase("outage")
        c.restart_static_pod("kube-apiserver")
        c.wait_pods_ready()
        lg.phase("restoring")
        lg.wait_all_ok(150)
        lg.phase("after")
        time.sleep(3)
    report = lg.report()
    print(report.text())
    _assert_clean(report, "before")
    for ch in THROUGH_APISERVER:
        assert report.failed(phase="outage", channel=ch) > 0, report.text()
    refused = [f for f in report.failures_of(phase="outage", channel=ADMIN) if "Connection refused" in f.cause]
    assert refused, report.text()
    _assert_clean(report, "after")
