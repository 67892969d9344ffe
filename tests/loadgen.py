"""A load generator for the real cluster: requests kept flowing through four channels, counted per phase.

It is the instrument of issue 19 item 4: a CA rotation on the real cluster
(tests/realcluster.py) is measured by the requests that fail while it runs.
Each channel behaves like the real client it stands for, and each request is
made on a NEW connection, so what is judged is the trust and the certificates
in use at that moment, never a connection set up before a change:

- :data:`ADMIN` (``admin.conf``): kubectl. The node's admin.conf is read before
  each request; its ``certificate-authority-data`` (every certificate in it)
  is the trust, its client certificate is presented;
  ``GET /api/v1/namespaces/kube-system/pods``.
- :data:`AGGREGATED` (front-proxy): ``GET /apis/<group>/<version>`` through
  the kube-apiserver with admin.conf, proxied to :class:`AggregatedServer`,
  which trusts front-proxy client certificates the way a generic apiserver
  does: from ``requestheader-client-ca-file`` (and its allowed names) in the
  ``kube-system/extension-apiserver-authentication`` ConfigMap, re-read every
  few seconds.
- :data:`KUBELET` (apiserver → kubelet): ``GET pods/<static pod>/log?tailLines=1``
  through the apiserver with admin.conf; the apiserver presents
  apiserver-kubelet-client to the kubelet.
- :data:`SERVICE_ACCOUNT`: an in-cluster client. A ServiceAccount's token from
  the TokenRequest API, requested again before 80 % of its lifetime as the
  kubelet does; the trust is the ``kube-root-ca.crt`` ConfigMap re-read every
  few seconds, as the kubelet refreshes a projected volume; the server name
  verified is ``kubernetes.default.svc``; a SelfSubjectReview must name the
  ServiceAccount. It connects to the apiserver's own address: the
  ``kubernetes`` Service's ClusterIP is not routed on these nodes (no
  kube-proxy).

:class:`LoadGenerator` is the context manager; :class:`Tally` the per-phase
accounting; :class:`Report` what it returns. Every request loop stops by
itself after ``limit`` seconds, and every address it talks to is on this
machine.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import http.server
import ipaddress
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.realcluster import LOOPBACK, RealCluster

ADMIN = "admin.conf"
AGGREGATED = "aggregated-api"
KUBELET = "kubelet-logs"
SERVICE_ACCOUNT = "serviceaccount-token"
#: Every channel, in the order the report lists them.
CHANNELS = (ADMIN, AGGREGATED, KUBELET, SERVICE_ACCOUNT)
#: How much of a failed answer's body a failure keeps.
BODY_HEAD = 200
#: The ServiceAccount the token channel uses (created and deleted by the load generator).
SERVICE_ACCOUNT_NAME = "kubepki-loadgen"
#: The API group the aggregated channel's APIService serves.
LOADGEN_GROUP = "loadgen.kubepki.test"
#: The server name an in-cluster client verifies (the `kubernetes` Service's DNS name, in kubeadm's SANs).
IN_CLUSTER_NAME = "kubernetes.default.svc"
EXTENSION_AUTH_CM = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


class RequestFailed(Exception):
    """A request got an answer other than the one its client expects; the message is the cause."""


def cause_of(exc: BaseException) -> str:
    """The cause a failure records: a :class:`RequestFailed`'s message, else the exception's type and text."""
    if isinstance(exc, RequestFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def http_cause(status: int, body: bytes) -> str:
    """A failed HTTP answer as a cause: the status and the head of the body."""
    head = " ".join(body[:BODY_HEAD].decode("utf-8", errors="replace").split())  # one line per failure
    more = "…" if len(body) > BODY_HEAD else ""
    return f"HTTP {status}: {head}{more}"


def expect(status: int, body: bytes, want: int | Sequence[int] = 200) -> bytes:
    """``body`` when ``status`` is one of ``want``; otherwise :class:`RequestFailed` with :func:`http_cause`."""
    wanted = (want,) if isinstance(want, int) else tuple(want)
    if status not in wanted:
        raise RequestFailed(http_cause(status, body))
    return body


# --------------------------------------------------------------------------------------
# The accounting


@attrs.frozen
class Counts:
    """Requests of one channel in one phase that succeeded and that failed."""

    ok: int = 0
    failed: int = 0


@attrs.frozen
class Failure:
    """One failed request: when it was sent (seconds since the epoch), its phase, its channel, its cause."""

    at: float
    phase: str
    channel: str
    cause: str


@attrs.frozen
class Report:
    """Per phase (in the order they were first entered), per channel: the counts; and every failure."""

    channels: tuple[str, ...]
    counts: Mapping[str, Mapping[str, Counts]]
    failures: tuple[Failure, ...]

    @property
    def phases(self) -> tuple[str, ...]:
        """The phase labels, in the order they were first entered."""
        return tuple(self.counts)

    def _select(self, phase: str | None, channel: str | None) -> list[Counts]:
        if phase is not None and phase not in self.counts:
            raise KeyError(f"no phase {phase!r} (phases: {list(self.counts)})")
        if channel is not None and channel not in self.channels:
            raise KeyError(f"no channel {channel!r} (channels: {list(self.channels)})")
        return [c for p, row in self.counts.items() if phase in (None, p)
                for ch, c in row.items() if channel in (None, ch)]

    def ok(self, *, phase: str | None = None, channel: str | None = None) -> int:
        """Successful requests, in one phase and/or channel or in all."""
        return sum(c.ok for c in self._select(phase, channel))

    def failed(self, *, phase: str | None = None, channel: str | None = None) -> int:
        """Failed requests, in one phase and/or channel or in all."""
        return sum(c.failed for c in self._select(phase, channel))

    def failures_of(self, *, phase: str | None = None, channel: str | None = None) -> list[Failure]:
        """The failures of one phase and/or channel, in the order they were sent."""
        self._select(phase, channel)
        return [f for f in self.failures if phase in (None, f.phase) and channel in (None, f.channel)]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {"phases": {p: {ch: attrs.asdict(c) for ch, c in row.items()} for p, row in self.counts.items()},
                "failures": [attrs.asdict(f) for f in self.failures]}

    def text(self) -> str:
        """A table of ok/failed per phase and channel, then every failure with its time and cause."""
        width = max([len("phase"), *(len(p) for p in self.counts)])
        lines = ["  ".join(["phase".ljust(width), *(ch.rjust(max(len(ch), 9)) for ch in self.channels)])]
        for phase, row in self.counts.items():
            cells = [f"{row[ch].ok}/{row[ch].failed}".rjust(max(len(ch), 9)) for ch in self.channels]
            lines.append("  ".join([phase.ljust(width), *cells]))
        lines.append(f"(ok/failed; {len(self.failures)} failures)")
        for f in self.failures:
            stamp = dt.datetime.fromtimestamp(f.at, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
            lines.append(f"{stamp} [{f.phase}] {f.channel}: {f.cause}")
        return "\n".join(lines)


class Tally:
    """Thread-safe counts per phase label and channel, and every failure.

    A request counts in the phase that was current when it was SENT (take the
    label with :meth:`current` before the request, give it to :meth:`ok` or
    :meth:`fail` after), so a switch never moves a request that was already
    under way. Entering a label again adds to its counts.
    """

    def __init__(self, channels: Sequence[str], phase: str = "start",
                 clock: Callable[[], float] = time.time) -> None:
        if not channels or len(set(channels)) != len(channels):
            raise ValueError(f"channels must be distinct and not empty: {list(channels)}")
        self.channels = tuple(channels)
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, list[int]]] = {}
        self._failures: list[Failure] = []
        self._phase = ""
        self.phase(phase)

    def phase(self, label: str) -> None:
        """Make ``label`` the current phase (requests sent from now on count there)."""
        if not label:
            raise ValueError("a phase label must not be empty")
        with self._lock:
            self._counts.setdefault(label, {ch: [0, 0] for ch in self.channels})
            self._phase = label

    def current(self) -> str:
        """The current phase label."""
        with self._lock:
            return self._phase

    def _row(self, phase: str, channel: str) -> list[int]:
        if channel not in self.channels:
            raise KeyError(f"no channel {channel!r}")
        if phase not in self._counts:
            raise KeyError(f"no phase {phase!r}")
        return self._counts[phase][channel]

    def ok(self, channel: str, phase: str) -> None:
        """Count a successful request of ``channel`` sent in ``phase``."""
        with self._lock:
            self._row(phase, channel)[0] += 1

    def fail(self, channel: str, phase: str, cause: str, at: float | None = None) -> None:
        """Count a failed request of ``channel`` sent in ``phase`` at ``at`` (default: now), with its cause."""
        when = self._clock() if at is None else at
        with self._lock:
            self._row(phase, channel)[1] += 1
            self._failures.append(Failure(when, phase, channel, cause))

    def report(self) -> Report:
        """A snapshot: later requests do not change it."""
        with self._lock:
            counts = {p: {ch: Counts(*row[ch]) for ch in self.channels} for p, row in self._counts.items()}
            failures = tuple(sorted(self._failures, key=lambda f: f.at))
        return Report(self.channels, counts, failures)


# --------------------------------------------------------------------------------------
# Clients


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically with mode 0600 (it holds a private key)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _client_context(cadata: str, *, cert_and_key: bytes | None = None, key_dir: Path | None = None,
                    name: str = "client") -> ssl.SSLContext:
    """A TLS client context trusting exactly the PEM certificates in ``cadata`` (no system roots)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=cadata)
    if cert_and_key is not None:
        assert key_dir is not None
        # ssl loads a client pair from a file only: one per content, private to this load generator
        path = key_dir / f"{name}-{hashlib.sha256(cert_and_key).hexdigest()[:16]}.pem"
        if not path.exists():
            _write_private(path, cert_and_key)
        ctx.load_cert_chain(str(path))
    return ctx


def https(host: str, port: int, ctx: ssl.SSLContext, path: str, *, method: str = "GET", body: Any = None,
          server_name: str | None = None, headers: Mapping[str, str] | None = None,
          timeout: float = 5.0) -> tuple[int, bytes]:
    """One request on a new TLS connection to ``host:port``, verifying ``server_name`` (default ``host``)."""
    hdrs = {"Accept": "application/json", "Connection": "close", **(headers or {})}
    data: bytes | None = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=server_name or host)
    except BaseException:
        raw.close()
        raise
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = tls  # the connection is ours, made above: http.client does not reconnect
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@attrs.frozen
class _KubeconfigClient:
    host: str
    port: int
    context: ssl.SSLContext


class Kubeconfig:
    """A kubeconfig with embedded data, read again before every request, as kubectl reads it per run.

    The current context's cluster gives the server and the trust (every
    certificate in ``certificate-authority-data``); its user the client
    certificate. ``connect`` overrides where to connect (for a server URL the
    host cannot reach), the server name verified staying the URL's host.
    """

    def __init__(self, path: Path, key_dir: Path, *, connect: tuple[str, int] | None = None) -> None:
        self.path = path
        self.key_dir = key_dir
        self.connect = connect
        self._cache: dict[str, tuple[_KubeconfigClient, str]] = {}
        self._lock = threading.Lock()

    def client(self) -> tuple[_KubeconfigClient, str]:
        """The (host, port, TLS context) and the server name to verify, from the file as it is now."""
        data = self.path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None:
            return cached
        made = self._parse(data)
        with self._lock:
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[digest] = made
        return made

    def _parse(self, data: bytes) -> tuple[_KubeconfigClient, str]:
        try:
            conf = yaml.safe_load(data)
            current = conf.get("current-context")
            contexts = {c["name"]: c["context"] for c in conf["contexts"]}
            ctx = contexts[current] if current in contexts else next(iter(contexts.values()))
            cluster = {c["name"]: c["cluster"] for c in conf["clusters"]}[ctx["cluster"]]
            user = {u["name"]: u["user"] for u in conf["users"]}[ctx["user"]]
            cadata = base64.b64decode(cluster["certificate-authority-data"]).decode()
            pair = (base64.b64decode(user["client-certificate-data"]) + b"\n"
                    + base64.b64decode(user["client-key-data"]))
            url = urllib.parse.urlsplit(cluster["server"])
            name, port = url.hostname or "", url.port or 443
            context = _client_context(cadata, cert_and_key=pair, key_dir=self.key_dir, name=self.path.name)
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration, RecursionError, yaml.YAMLError,
                ssl.SSLError) as exc:  # a kubeconfig kubectl could not use either: a failed request, with why
            raise RequestFailed(f"{self.path}: not a usable kubeconfig ({type(exc).__name__}: {exc})") from exc
        host, port = self.connect or (name, port)
        return _KubeconfigClient(host, port, context), name

    def request(self, path: str, method: str = "GET", body: Any = None, *,
                headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
        """One request on a new connection with the file's trust and client certificate as they are now."""
        client, name = self.client()
        return https(client.host, client.port, client.context, path, method=method, body=body, server_name=name,
                     headers=headers, timeout=timeout)


class Refreshed:
    """A value fetched again every ``every`` seconds in a thread of its own, the last good one kept
    while a fetch fails (as an informer's cache or a projected volume keeps its content)."""

    def __init__(self, what: str, fetch: Callable[[], Any], every: float, *, limit: float = 3600.0) -> None:
        self.what = what
        self._fetch = fetch
        self.every = every
        self._value: Any = None
        self.error = ""
        self.fetched_at = 0.0
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit
        self._lock = threading.Lock()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name=f"refresh {what}", daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        """Fetch now; keep the previous value if the fetch fails."""
        try:
            value = self._fetch()
        except Exception as exc:  # any failure keeps the last good value; the cause is kept for messages
            with self._lock:
                self.error = cause_of(exc)
            return
        with self._lock:
            self._value, self.error, self.fetched_at = value, "", time.time()

    def get(self) -> Any:
        """The last value fetched; :class:`RequestFailed` if there never was one."""
        with self._lock:
            if self._value is None:
                raise RequestFailed(f"no {self.what} yet: {self.error}")
            return self._value

    def _loop(self) -> None:
        while not self._stop.wait(self.every) and time.monotonic() < self._deadline:
            self.refresh()

    def close(self) -> None:
        """Stop refreshing."""
        self._stop.set()
        self._thread.join(10)


def admin_conf(cluster: RealCluster, key_dir: Path) -> Kubeconfig:
    """The node's admin.conf (host path under ``cluster.root``), connected where the host reaches the API."""
    return Kubeconfig(cluster.root / "etc/kubernetes/admin.conf", key_dir,
                      connect=(cluster.address, cluster.ports.apiserver))


def configmap_value(admin: Kubeconfig, namespace: str, name: str, key: str, *, timeout: float = 5.0) -> str:
    """``data[key]`` of a ConfigMap, read with ``admin``."""
    status, body = admin.request(f"/api/v1/namespaces/{namespace}/configmaps/{name}", timeout=timeout)
    value = json.loads(expect(status, body)).get("data", {}).get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestFailed(f"ConfigMap {namespace}/{name} has no {key}")
    return value


# --------------------------------------------------------------------------------------
# The aggregated API server


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def self_signed_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new CA, unknown to the cluster."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def leaf(ca: x509.Certificate, ca_key: Any, cn: str, *, server: bool = False, dns: Sequence[str] = (),
         ips: Sequence[str] = ()) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client (or server) certificate signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if dns or ips:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


@attrs.frozen
class RequestHeaderTrust:
    """What a generic apiserver takes from extension-apiserver-authentication: the CA bundle that front-proxy
    client certificates must chain to, and the common names allowed (empty: any)."""

    ca_pem: str
    allowed_names: tuple[str, ...] = ()

    @classmethod
    def from_configmap(cls, data: Mapping[str, Any]) -> RequestHeaderTrust:
        """From the ConfigMap's ``data``; :class:`RequestFailed` when it has no requestheader CA."""
        ca = data.get("requestheader-client-ca-file")
        if not isinstance(ca, str) or "BEGIN CERTIFICATE" not in ca:
            raise RequestFailed("extension-apiserver-authentication has no requestheader-client-ca-file")
        raw = data.get("requestheader-allowed-names") or "[]"
        try:
            names = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RequestFailed(f"requestheader-allowed-names is not a JSON list of names: {str(raw)[:80]!r}")
        return cls(ca, tuple(names))


class AggregatedServer:
    """A loopback TLS server standing in for an aggregated API server of ``group``/v1alpha1.

    Its trust for front-proxy client certificates is ``trust()``, fetched
    again every ``refresh`` seconds (a real one watches
    extension-apiserver-authentication); each handshake uses the trust of the
    moment, and a certificate that does not chain to it fails the handshake.
    A verified certificate whose CN is not allowed gets 401. It records the
    serial of each client certificate (:attr:`serials`) and why each failed
    handshake failed (:attr:`failures`), and closes every connection, so each
    request the apiserver proxies is a new handshake.
    """

    def __init__(self, tmp: Path, group: str, trust: Callable[[], RequestHeaderTrust], *,
                 refresh: float = 3.0, version: str = "v1alpha1") -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        ca, ca_key = self_signed_ca(f"kubepki-{group}-server-ca")
        cert, key = leaf(ca, ca_key, "localhost", server=True, dns=["localhost"], ips=[LOOPBACK])
        #: the CA of the certificate it serves (what a client of it trusts)
        self.server_ca_pem = _pem(ca).decode()
        (tmp / "srv.crt").write_bytes(_pem(cert))
        _write_private(tmp / "srv.key", _key_pem(key))
        self._srv = (str(tmp / "srv.crt"), str(tmp / "srv.key"))
        self.group, self.version = group, version
        self.serials: list[int] = []
        #: (when, why) of each handshake that failed (an expired front-proxy-client, say)
        self.failures: list[tuple[float, str]] = []
        self._contexts: dict[RequestHeaderTrust, ssl.SSLContext] = {}
        self.trust = Refreshed("front-proxy trust (extension-apiserver-authentication)", trust, refresh)
        outer = self
        discovery = f"/apis/{group}/{version}"

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                der = self.connection.getpeercert(binary_form=True)
                allowed = getattr(self.connection, "kubepki_allowed", ())
                cn = ""
                if der:
                    peer = x509.load_der_x509_certificate(der)
                    outer.serials.append(peer.serial_number)
                    cns = peer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                    cn = str(cns[0].value) if cns else ""
                if not der or (allowed and cn not in allowed):
                    status, body = 401, json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                    "code": 401, "message": f"front-proxy CN {cn!r} not allowed"})
                elif self.path.split("?")[0] == discovery:
                    status, body = 200, json.dumps({"kind": "APIResourceList", "apiVersion": "v1",
                                                    "groupVersion": f"{group}/{version}", "resources": []})
                else:
                    status, body = 404, '{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}'
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                raw, addr = super().get_request()
                raw.settimeout(10)
                try:  # the handshake, with the trust of this moment: record why it failed
                    current = outer.trust.get()
                    tls = outer._context(current).wrap_socket(raw, server_side=True)
                except (OSError, RequestFailed) as exc:
                    outer.failures.append((time.time(), str(exc)))
                    raw.close()
                    raise OSError(str(exc)) from exc
                tls.kubepki_allowed = current.allowed_names  # type: ignore[attr-defined]
                return tls, addr

        self.httpd = Server((LOOPBACK, 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"aggregated {group}", daemon=True)
        self.thread.start()

    def _context(self, trust: RequestHeaderTrust) -> ssl.SSLContext:
        ctx = self._contexts.get(trust)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self._srv)
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cadata=trust.ca_pem)
            self._contexts = {trust: ctx}  # the previous trust's context is not needed any more
        return ctx

    @property
    def path(self) -> str:
        """The discovery path of the group version it serves, as clients ask the apiserver for it."""
        return f"/apis/{self.group}/{self.version}"

    def close(self) -> None:
        """Stop serving and refreshing."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.trust.close()


def extension_auth_trust(admin: Kubeconfig, *, timeout: float = 5.0) -> Callable[[], RequestHeaderTrust]:
    """A trust source for :class:`AggregatedServer`: extension-apiserver-authentication read with ``admin``."""

    def fetch() -> RequestHeaderTrust:
        status, body = admin.request(EXTENSION_AUTH_CM, timeout=timeout)
        return RequestHeaderTrust.from_configmap(json.loads(expect(status, body)).get("data") or {})

    return fetch


@contextlib.contextmanager
def aggregated_api(cluster: RealCluster, tmp: Path, group: str, service: str, *,
                   refresh: float = 3.0) -> Iterator[AggregatedServer]:
    """An APIService ``v1alpha1.<group>`` served by an :class:`AggregatedServer` through an ExternalName
    Service ``kube-system/<service>`` for ``localhost`` (the apiserver's default, non-endpoint routing
    resolves it to 127.0.0.1); both deleted at the end. The objects are made with admin.conf."""
    admin = admin_conf(cluster, tmp)
    server = AggregatedServer(tmp, group, extension_auth_trust(admin), refresh=refresh)
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": "kube-system"},
           "spec": {"type": "ExternalName", "externalName": "localhost",
                    "ports": [{"port": server.port, "protocol": "TCP"}]}}
    apisvc = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
              "metadata": {"name": f"v1alpha1.{group}"},
              "spec": {"group": group, "version": "v1alpha1", "insecureSkipTLSVerify": True,
                       "groupPriorityMinimum": 1000, "versionPriority": 15,
                       "service": {"namespace": "kube-system", "name": service, "port": server.port}}}
    try:
        expect(*admin.request("/api/v1/namespaces/kube-system/services", "POST", svc), 201)
        expect(*admin.request("/apis/apiregistration.k8s.io/v1/apiservices", "POST", apisvc), 201)
        yield server
    finally:
        for path in (f"/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.{group}",
                     f"/api/v1/namespaces/kube-system/services/{service}"):
            with contextlib.suppress(OSError, http.client.HTTPException, RequestFailed):
                admin.request(path, "DELETE")
        server.close()


# --------------------------------------------------------------------------------------
# The ServiceAccount token, as the kubelet keeps it


def _rfc3339(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class ServiceAccountToken:
    """A TokenRequest token of ``namespace/name``, requested again once 80 % of its lifetime has passed
    (the kubelet's rule); a failed renewal keeps the token it has, as the kubelet does."""

    def __init__(self, admin: Kubeconfig, namespace: str, name: str, *, lifetime: int = 600,
                 timeout: float = 5.0) -> None:
        self.admin, self.namespace, self.name = admin, namespace, name
        self.lifetime, self.timeout = lifetime, timeout
        self._token = ""
        self._issued = self._expires = 0.0
        self.renewals = 0
        self._lock = threading.Lock()

    def _request(self) -> None:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": self.lifetime}}
        status, data = self.admin.request(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{self.name}/token", "POST", body,
            timeout=self.timeout)
        answer = json.loads(expect(status, data, (200, 201)))
        self._token = str(answer["status"]["token"])
        self._issued, self._expires = time.time(), _rfc3339(answer["status"]["expirationTimestamp"])
        self.renewals += 1

    def get(self) -> str:
        """The token to send now, renewed first when due."""
        with self._lock:
            now = time.time()
            # the kubelet's rule: past 80 % of the lifetime, or older than 24 h
            due = (not self._token or now >= self._issued + 0.8 * (self._expires - self._issued)
                   or now - self._issued > 24 * 3600)
            if due:
                try:
                    self._request()
                except Exception:
                    if not self._token:
                        raise
            return self._token


# --------------------------------------------------------------------------------------
# The load generator


Channel = Callable[[], None]


class LoadGenerator:
    """Requests kept flowing through the real cluster on every channel until stopped, counted per phase.

    Entering sets up what the channels need (the aggregated API server and its
    APIService, the ServiceAccount), waits until every channel has answered
    once (not counted), then starts one thread per channel making about
    ``rate`` requests a second, each on a new connection with a ``timeout``.
    :meth:`phase` switches the label requests count under; :meth:`report`
    returns the counts and failures so far. Leaving stops the threads and
    deletes what was set up. The loops also stop by themselves after
    ``limit`` seconds.
    """

    def __init__(self, cluster: RealCluster, workdir: Path | None = None, *, rate: float = 5.0,
                 channels: Sequence[str] = CHANNELS, phase: str = "start", timeout: float = 5.0,
                 refresh: float = 3.0, limit: float = 3600.0, log_pod: str | None = None,
                 namespace: str = "default", group: str = LOADGEN_GROUP, warmup: float = 120.0) -> None:
        unknown = set(channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; known: {list(CHANNELS)}")
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.cluster = cluster
        self.rate, self.timeout, self.refresh, self.limit, self.warmup = rate, timeout, refresh, limit, warmup
        self.namespace, self.group = namespace, group
        #: the static pod whose log the kubelet channel reads: etcd's, which neither a ca nor a front-proxy-ca
        #: rotation restarts (a restarting container's log is unavailable for a moment, whatever the trust)
        self.log_pod = log_pod or f"etcd-{cluster.node_name}"
        self.tally = Tally([c for c in CHANNELS if c in channels], phase)
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="kubepki-loadgen-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        self.admin = admin_conf(cluster, self.workdir)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last: dict[str, tuple[float, bool]] = {}
        self._last_lock = threading.Lock()
        self._exit = contextlib.ExitStack()
        self.server: AggregatedServer | None = None
        self.token: ServiceAccountToken | None = None
        self.root_ca: Refreshed | None = None
        self.channels: dict[str, Channel] = {}

    # ---------------------------------------------------------------- the channels

    def _admin_request(self) -> None:
        expect(*self.admin.request("/api/v1/namespaces/kube-system/pods?limit=1", timeout=self.timeout))

    def _aggregated_request(self) -> None:
        assert self.server is not None
        expect(*self.admin.request(self.server.path, timeout=self.timeout))

    def _kubelet_request(self) -> None:
        path = f"/api/v1/namespaces/kube-system/pods/{self.log_pod}/log?tailLines=1"
        expect(*self.admin.request(path, timeout=self.timeout))

    def _service_account_request(self) -> None:
        assert self.token is not None and self.root_ca is not None
        ctx = self.root_ca.get()
        token = self.token.get()
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        status, data = https(self.cluster.address, self.cluster.ports.apiserver, ctx,
                             "/apis/authentication.k8s.io/v1/selfsubjectreviews", method="POST", body=body,
                             server_name=IN_CLUSTER_NAME, headers={"Authorization": f"Bearer {token}"},
                             timeout=self.timeout)
        answer = json.loads(expect(status, data, 201))
        user = answer.get("status", {}).get("userInfo", {}).get("username")
        want = f"system:serviceaccount:{self.namespace}:{SERVICE_ACCOUNT_NAME}"
        if user != want:
            raise RequestFailed(f"SelfSubjectReview names {user!r}, not {want!r}")

    def _root_ca_context(self) -> ssl.SSLContext:
        return _client_context(configmap_value(self.admin, self.namespace, "kube-root-ca.crt", "ca.crt",
                                               timeout=self.timeout))

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> LoadGenerator:
        try:
            self._setup()
            self._wait_first_answers()
        except BaseException:
            self._exit.close()
            raise
        deadline = time.monotonic() + self.limit
        for i, name in enumerate(self.tally.channels):
            thread = threading.Thread(target=self._loop, args=(name, self.channels[name], deadline, i),
                                      name=f"loadgen {name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _setup(self) -> None:
        wanted = self.tally.channels
        if ADMIN in wanted:
            self.channels[ADMIN] = self._admin_request
        if AGGREGATED in wanted:
            self.server = self._exit.enter_context(aggregated_api(
                self.cluster, self.workdir / "aggregated", self.group, "kubepki-loadgen", refresh=self.refresh))
            self.channels[AGGREGATED] = self._aggregated_request
        if KUBELET in wanted:
            self.channels[KUBELET] = self._kubelet_request
        if SERVICE_ACCOUNT in wanted:
            sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT_NAME}}
            expect(*self.admin.request(f"/api/v1/namespaces/{self.namespace}/serviceaccounts", "POST", sa),
                   (201, 409))
            self._exit.callback(self._delete_service_account)
            self.token = ServiceAccountToken(self.admin, self.namespace, SERVICE_ACCOUNT_NAME, timeout=self.timeout)
            self.root_ca = Refreshed(f"kube-root-ca.crt of {self.namespace}", self._root_ca_context, self.refresh,
                                     limit=self.limit)
            self._exit.callback(self.root_ca.close)
            self.channels[SERVICE_ACCOUNT] = self._service_account_request

    def _delete_service_account(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException, RequestFailed):
            self.admin.request(f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{SERVICE_ACCOUNT_NAME}",
                               "DELETE")

    def _wait_first_answers(self) -> None:
        deadline = time.monotonic() + self.warmup
        for name, channel in self.channels.items():
            while True:
                try:
                    channel()
                    break
                except Exception as exc:  # not counted: the channel is not up yet
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"load generator: channel {name} never answered within "
                                           f"{self.warmup:.0f}s: {cause_of(exc)}") from exc
                    time.sleep(0.5)

    def _loop(self, name: str, channel: Channel, deadline: float, index: int) -> None:
        interval = 1.0 / self.rate
        # spread the channels over the interval, so their handshakes do not all land at once
        if self._stop.wait(interval * index / max(1, len(self.channels))):
            return
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            phase, sent = self.tally.current(), time.time()
            try:
                channel()
            except Exception as exc:  # every failure is counted with its cause, whatever it is
                self.tally.fail(name, phase, cause_of(exc), sent)
                ok = False
            else:
                self.tally.ok(name, phase)
                ok = True
            with self._last_lock:
                self._last[name] = (time.monotonic(), ok)
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def phase(self, label: str) -> None:
        """Count the requests sent from now on under ``label``."""
        self.tally.phase(label)

    def report(self) -> Report:
        """The counts per phase and channel, and every failure, so far."""
        return self.tally.report()

    def wait_all_ok(self, timeout: float = 120.0) -> None:
        """Wait until every channel's latest request, sent after this call, succeeded."""
        since = time.monotonic()
        deadline = since + timeout
        while True:
            with self._last_lock:
                last = dict(self._last)
            if all(name in last and last[name][0] > since and last[name][1] for name in self.channels):
                return
            if time.monotonic() > deadline:
                bad = [n for n in self.channels if not (n in last and last[n][0] > since and last[n][1])]
                raise TimeoutError(f"channels not answering within {timeout:.0f}s: {bad}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the request loops (idempotent); what was set up stays until the context is left."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout * 3 + 5)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._exit.close()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
