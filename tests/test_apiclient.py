"""Live mode against a loopback HTTPS stand-in for the API server.

No real API server can run here (no container runtime, no network), so these
tests use a small HTTPS server on 127.0.0.1 that answers the list endpoints
kubepki calls — with ``limit``/``continue`` paging, items without ``kind`` as the
API server sends them, and Status bodies for errors — from objects generated
with kubepki.testing's keys. It requires a client certificate signed by its CA,
or (in the token variant) a known bearer token.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import stat
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubepki.cli import exit_status, main
from kubepki.errors import ConfigError, KubeconfigError
from kubepki.inspection._findings import Status
from kubepki.objects import _apiclient as apiclient
from kubepki.objects._apiclient import APIError, InsecureSkipTLSVerifyWarning, KubeClient, check_live
from tests.test_cluster_objects import (
    NOW,
    PKI,
    apiservice,
    configmap,
    issue,
    key_pem,
    pem,
    secret,
    tls_secret,
    webhook_configuration,
)

TOKEN = "kubepki-test-token-6f1c2a9e0d4b"  # the known token every output is searched for


class APIStub(ThreadingHTTPServer):
    """Serves list endpoints from ``objects`` (resource plural -> objects) over HTTPS."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext, objects: Mapping[str, list[dict[str, Any]]], *,
                 token: str | None = None, forbidden: frozenset[str] = frozenset()) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.objects = objects
        self.token = token
        self.forbidden = forbidden
        self.requests: list[tuple[str, dict[str, str], bool, bool]] = []  # path, query, client cert?, token?
        #: POSTs received (path, body), and the statuses to answer them with, in turn (then 201).
        self.posts: list[tuple[str, bytes]] = []
        self.post_statuses: list[int] = []
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """https://127.0.0.1:PORT."""
        return f"https://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        """Shut the server down."""
        self.shutdown()
        self.server_close()
        self.thread.join(5)


_ROUTES = {
    "/api/v1/secrets": ("secrets", "SecretList"),
    "/api/v1/configmaps": ("configmaps", "ConfigMapList"),
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": (
        "mutatingwebhookconfigurations", "MutatingWebhookConfigurationList"),
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations": (
        "validatingwebhookconfigurations", "ValidatingWebhookConfigurationList"),
    "/apis/apiregistration.k8s.io/v1/apiservices": ("apiservices", "APIServiceList"),
}


class _Handler(BaseHTTPRequestHandler):
    server: APIStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                          "reason": reason, "code": code})

    def do_POST(self) -> None:
        """Record a create; answer with the next configured status (429 with Retry-After 0), else 201."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append((self.path, body))
        status = self.server.post_statuses.pop(0) if self.server.post_statuses else 201
        if status == 429:
            data = b'{"kind":"Status","code":429,"message":"too many requests"}'
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._send(status, {**json.loads(body), "metadata": {"name": "made", "namespace": "default"}})

    def do_GET(self) -> None:
        """Answer a list request."""
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        has_cert = bool(self.connection.getpeercert())
        auth = self.headers.get("Authorization", "")
        has_token = self.server.token is not None and auth == f"Bearer {self.server.token}"
        self.server.requests.append((parts.path, query, has_cert, has_token))
        if not has_cert and not has_token:
            self._status(401, "Unauthorized", "Unauthorized")
            return
        path, namespace = parts.path, None
        if path.startswith("/api/v1/namespaces/"):
            _, _, _, _, namespace, plural = path.split("/")
            path = f"/api/v1/{plural}"
        if path not in _ROUTES:
            self._status(404, "NotFound", "the server could not find the requested resource")
            return
        plural, list_kind = _ROUTES[path]
        if plural in self.server.forbidden:
            self._status(403, "Forbidden", f'{plural} is forbidden: User "viewer" cannot list resource '
                                           f'"{plural}" at the cluster scope')
            return
        objects = [o for o in self.server.objects.get(plural, [])
                   if namespace is None or o["metadata"].get("namespace") == namespace]
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or len(objects) or 1)
        page = objects[start:start + limit]
        more = start + limit < len(objects)
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        # As the API server: kind, apiVersion and metadata before the items.
        self._send(200, {"kind": list_kind, "apiVersion": "v1",
                         "metadata": {"resourceVersion": "100", **({"continue": str(start + limit)} if more else {})},
                         "items": items})


def _server_context(pki: PKI, tmp: Path, *, require_cert: bool, names: tuple[str, ...] = ()) -> ssl.SSLContext:
    serving = issue("kube-apiserver", pki.leaf_keys[2], (pki.intermediate, pki.intermediate_key),
                    dns=names or ("kubernetes", "localhost"), ips=() if names else ("127.0.0.1",))
    path = tmp / "apiserver.pem"
    path.write_bytes(pem(serving, pki.intermediate) + key_pem(pki.leaf_keys[2]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(path)
    ctx.load_verify_locations(cadata=pem(pki.root).decode())
    ctx.verify_mode = ssl.CERT_REQUIRED if require_cert else ssl.CERT_OPTIONAL
    return ctx


@pytest.fixture(scope="module")
def pki() -> PKI:
    """The cluster's CA (root and intermediate) and keys."""
    return PKI("cluster")


@pytest.fixture(scope="module")
def objects(pki: PKI) -> dict[str, list[dict[str, Any]]]:
    """Ten TLS Secrets (one with a wrong key), a CA ConfigMap, a webhook and an APIService."""
    secrets = [tls_secret(f"web-{i}", pem(pki.leaf(f"web-{i}.example.test"), pki.intermediate),
                          key_pem(pki.leaf_keys[0 if i != 7 else 1]), pem(pki.root), namespace=f"ns-{i % 2}")
               for i in range(10)]
    secrets.append(secret("db", {"password": TOKEN.encode()}, namespace="ns-0"))
    return {
        "secrets": secrets,
        "configmaps": [configmap("kube-root-ca.crt", {"ca.crt": pem(pki.root).decode()}, namespace=f"ns-{i}")
                       for i in range(2)],
        "validatingwebhookconfigurations": [webhook_configuration("ValidatingWebhookConfiguration", "policy",
                                                                  {"v.example.test": pem(pki.root)})],
        "mutatingwebhookconfigurations": [],
        "apiservices": [apiservice("v1beta1.metrics.k8s.io", pem(pki.root))],
    }


@pytest.fixture
def api(tmp_path: Path, pki: PKI, objects: dict[str, list[dict[str, Any]]]) -> Iterator[APIStub]:
    """The API stand-in, requiring a client certificate."""
    stub = APIStub(_server_context(pki, tmp_path, require_cert=True), objects)
    yield stub
    stub.stop()


@pytest.fixture
def token_api(tmp_path: Path, pki: PKI, objects: dict[str, list[dict[str, Any]]]) -> Iterator[APIStub]:
    """The API stand-in, taking a bearer token (client certificates optional)."""
    stub = APIStub(_server_context(pki, tmp_path, require_cert=False), objects, token=TOKEN)
    yield stub
    stub.stop()


def b64(data: bytes) -> str:
    """Base64 for kubeconfig *-data fields."""
    return base64.b64encode(data).decode()


def admin_credentials(pki: PKI) -> tuple[bytes, bytes]:
    """A kubernetes-admin client certificate (signed by the root) and its key."""
    cert = issue("kubernetes-admin", pki.leaf_keys[3], (pki.root, pki.root_key),
                 usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return pem(cert), key_pem(pki.leaf_keys[3])


def write_kubeconfig(path: Path, server: str, user: Mapping[str, Any], *, cluster: Mapping[str, Any] | None = None,
                     ca: bytes | None = None, context: str = "admin@kubernetes") -> Path:
    """A kubeconfig with one context, as kubeadm writes admin.conf."""
    clus: dict[str, Any] = {"server": server, **(cluster or {})}
    if ca is not None:
        clus["certificate-authority-data"] = b64(ca)
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
           "clusters": [{"name": "kubernetes", "cluster": clus}],
           "contexts": [{"name": context, "context": {"cluster": "kubernetes", "user": "admin"}}],
           "users": [{"name": "admin", "user": dict(user)}], "preferences": {}}
    path.write_text(yaml.safe_dump(doc))
    return path


def embedded_user(pki: PKI) -> dict[str, str]:
    """client-certificate-data and client-key-data, as in admin.conf."""
    cert, key = admin_credentials(pki)
    return {"client-certificate-data": b64(cert), "client-key-data": b64(key)}


# --------------------------------------------------------------------------------------


def test_client_certificate_embedded_with_paging(tmp_path: Path, api: APIStub, pki: PKI) -> None:
    """admin.conf-style embedded credentials: every resource is listed page by page and checked."""
    kc = write_kubeconfig(tmp_path / "admin.conf", api.url, embedded_user(pki), ca=pem(pki.root))
    inv = check_live(kc, now=NOW, page_size=3)
    secret_pages = [q for p, q, _, _ in api.requests if p == "/api/v1/secrets"]
    assert [q.get("continue") for q in secret_pages] == [None, "3", "6", "9"]
    assert all(q["limit"] == "3" for q in secret_pages)
    assert all(has_cert for _, _, has_cert, _ in api.requests)
    names = {i.name for i in inv}
    assert {f"ns-{i % 2}/web-{i}/tls.crt" for i in range(10)} <= names
    assert "ns-0/kube-root-ca.crt/ca.crt" in names
    assert "/policy/webhooks[v.example.test].clientConfig.caBundle" in names
    assert "/v1beta1.metrics.k8s.io/spec.caBundle" in names
    assert inv["ns-1/web-7/tls.crt"].has("key-mismatch")
    assert exit_status(inv) == 2 and inv.source == api.url
    assert inv.objects == {"Secret": 11, "ConfigMap": 2, "ValidatingWebhookConfiguration": 1, "APIService": 1}


def test_embedded_credentials_never_touch_the_disk(tmp_path: Path, api: APIStub, pki: PKI,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With memfd_create, no temporary file or directory is created for the client key."""
    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("a temporary directory was created")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    kc = write_kubeconfig(tmp_path / "admin.conf", api.url, embedded_user(pki), ca=pem(pki.root))
    assert len(check_live(kc, now=NOW)) > 0


def test_tmpfs_fallback_removes_its_file(tmp_path: Path, api: APIStub, pki: PKI,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Without memfd_create, the key goes through a 0600 file in a 0700 dir that is gone afterwards."""
    created: list[str] = []
    real = tempfile.mkdtemp

    def spy(*args: Any, **kwargs: Any) -> str:
        path = str(real(*args, **kwargs))
        created.append(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        return path

    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    kc = write_kubeconfig(tmp_path / "admin.conf", api.url, embedded_user(pki), ca=pem(pki.root))
    assert len(check_live(kc, now=NOW)) > 0
    assert len(created) == 1 and not os.path.exists(created[0])
    if os.path.isdir("/dev/shm"):
        assert created[0].startswith("/dev/shm/")


def test_client_certificate_files_relative_to_kubeconfig(tmp_path: Path, api: APIStub, pki: PKI) -> None:
    """client-certificate/client-key/certificate-authority files resolve against the kubeconfig's dir."""
    cert, key = admin_credentials(pki)
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki/admin.crt").write_bytes(cert)
    (tmp_path / "pki/admin.key").write_bytes(key)
    (tmp_path / "pki/ca.crt").write_bytes(pem(pki.root))
    kc = write_kubeconfig(tmp_path / "admin.conf", api.url,
                          {"client-certificate": "pki/admin.crt", "client-key": "pki/admin.key"},
                          cluster={"certificate-authority": "pki/ca.crt"})
    with KubeClient.from_kubeconfig(kc) as client:
        assert client.auth == "client-certificate"
        assert [o["metadata"]["name"] for o in client.list(apiclient.RESOURCES[1])] == ["kube-root-ca.crt"] * 2


def test_no_credentials_fail(tmp_path: Path, api: APIStub, pki: PKI) -> None:
    """Without a client certificate the handshake is refused: APIError, not a traceback."""
    kc = write_kubeconfig(tmp_path / "anon.conf", api.url, {}, ca=pem(pki.root))
    with pytest.raises(APIError, match=r"cannot reach|TLS"):
        check_live(kc, now=NOW)


def test_wrong_ca_fails_verification(tmp_path: Path, api: APIStub, pki: PKI) -> None:
    """A kubeconfig trusting another CA refuses the server (negative control of the CA)."""
    stranger = PKI("stranger")
    kc = write_kubeconfig(tmp_path / "admin.conf", api.url, embedded_user(pki), ca=pem(stranger.root))
    with pytest.raises(APIError, match="TLS verification"):
        check_live(kc, now=NOW)


def test_insecure_skip_tls_verify_warns(tmp_path: Path, api: APIStub, pki: PKI) -> None:
    """insecure-skip-tls-verify works, with a warning and a note."""
    kc = write_kubeconfig(tmp_path / "admin.conf", api.url, embedded_user(pki),
                          cluster={"insecure-skip-tls-verify": True})
    with pytest.warns(InsecureSkipTLSVerifyWarning):
        inv = check_live(kc, now=NOW)
    assert any("insecure-skip-tls-verify" in n for n in inv.notes)


def test_tls_server_name(tmp_path: Path, pki: PKI, objects: dict[str, list[dict[str, Any]]]) -> None:
    """tls-server-name is sent and verified; without it the IP does not match (negative control)."""
    stub = APIStub(_server_context(pki, tmp_path, require_cert=True, names=("api.internal.test",)), objects)
    try:
        kc = write_kubeconfig(tmp_path / "a.conf", stub.url, embedded_user(pki), ca=pem(pki.root),
                              cluster={"tls-server-name": "api.internal.test"})
        assert len(check_live(kc, now=NOW)) > 0
        kc = write_kubeconfig(tmp_path / "b.conf", stub.url, embedded_user(pki), ca=pem(pki.root))
        with pytest.raises(APIError, match="TLS verification"):
            check_live(kc, now=NOW)
    finally:
        stub.stop()


def test_bearer_token_and_token_file(tmp_path: Path, token_api: APIStub, pki: PKI) -> None:
    """token and tokenFile authenticate; the token is sent, never shown."""
    kc = write_kubeconfig(tmp_path / "t.conf", token_api.url, {"token": TOKEN}, ca=pem(pki.root))
    with KubeClient.from_kubeconfig(kc) as client:
        assert client.auth == "token" and TOKEN not in repr(client)
    inv = check_live(kc, now=NOW)
    assert all(has_token for *_, has_token in token_api.requests)
    (tmp_path / "token").write_text(TOKEN + "\n")
    kc = write_kubeconfig(tmp_path / "f.conf", token_api.url, {"tokenFile": "token", "token": "stale"},
                          ca=pem(pki.root))
    assert len(check_live(kc, now=NOW)) == len(inv)
    assert TOKEN not in inv.to_json() and TOKEN not in inv.table()


def test_wrong_token_is_401(tmp_path: Path, token_api: APIStub, pki: PKI) -> None:
    """A rejected token is an APIError with status 401 that does not repeat the token."""
    kc = write_kubeconfig(tmp_path / "t.conf", token_api.url, {"token": "wrong-" + TOKEN}, ca=pem(pki.root))
    with pytest.raises(APIError) as info:
        check_live(kc, now=NOW)
    assert info.value.status == 401 and "Unauthorized" in str(info.value)
    assert TOKEN not in str(info.value)


def _plugin(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "plugin.py"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys, base64\n{body}\n")
    script.chmod(0o755)
    return script


def test_exec_plugin_token(tmp_path: Path, token_api: APIStub, pki: PKI) -> None:
    """An exec plugin's ExecCredential token is used; args, env and KUBERNETES_EXEC_INFO reach it."""
    script = _plugin(tmp_path, (
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert info['spec']['interactive'] is False and info['spec']['cluster']['server'].startswith('https')\n"
        "assert sys.argv[1:] == ['get-token', '--cluster', 'k'] and os.environ['PLUGIN_MODE'] == 'test'\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',"
        f" 'status': {{'token': {TOKEN!r}}}}}))"))
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script),
                     "args": ["get-token", "--cluster", "k"], "env": [{"name": "PLUGIN_MODE", "value": "test"}],
                     "provideClusterInfo": True, "interactiveMode": "Never"}}
    kc = write_kubeconfig(tmp_path / "e.conf", token_api.url, user, ca=pem(pki.root))
    inv = check_live(kc, now=NOW)
    assert len(inv) > 0 and TOKEN not in inv.to_json()


def test_exec_plugin_client_certificate(tmp_path: Path, api: APIStub, pki: PKI) -> None:
    """An exec plugin may return clientCertificateData/clientKeyData (PEM)."""
    cert, key = admin_credentials(pki)
    _plugin(tmp_path, (  # run as ./plugin.py: relative to the kubeconfig's directory
        f"cert = base64.b64decode({b64(cert)!r}).decode(); key = base64.b64decode({b64(key)!r}).decode()\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',"
        " 'status': {'clientCertificateData': cert, 'clientKeyData': key}}))"))
    kc = write_kubeconfig(tmp_path / "e.conf", api.url, {"exec": {"command": "./plugin.py"}}, ca=pem(pki.root))
    with KubeClient.from_kubeconfig(kc) as client:
        assert client.auth == "exec"
    assert len(check_live(kc, now=NOW)) > 0


@pytest.mark.parametrize(("body", "message"), [
    ("sys.stderr.write('error: you must be logged in\\n'); sys.exit(4)", "exit status 4: error: you must be"),
    ("print('not json')", "not JSON"),
    ("print(json.dumps({'kind': 'ExecCredential', 'status': {}}))", "neither a token"),
    ("import time; time.sleep(30)", "did not finish within 0.5 s"),
])
def test_exec_plugin_failures(tmp_path: Path, pki: PKI, body: str, message: str) -> None:
    """Failing, silent, empty and hanging plugins give one clear APIError."""
    script = _plugin(tmp_path, body)
    kc = write_kubeconfig(tmp_path / "e.conf", "https://127.0.0.1:1", {"exec": {"command": str(script)}},
                          ca=pem(pki.root))
    with pytest.raises(APIError, match=re.escape(message)):
        KubeClient.from_kubeconfig(kc, exec_timeout=0.5)


def test_exec_plugin_not_found_shows_install_hint(tmp_path: Path, pki: PKI) -> None:
    """A missing plugin names itself and its installHint."""
    user = {"exec": {"command": "kubepki-no-such-plugin", "installHint": "install it from example.test"}}
    kc = write_kubeconfig(tmp_path / "e.conf", "https://127.0.0.1:1", user, ca=pem(pki.root))
    with pytest.raises(APIError, match=re.escape("not found; install it from example.test")):
        KubeClient.from_kubeconfig(kc)


def test_namespace_lists_only_that_namespace(tmp_path: Path, api: APIStub, pki: PKI) -> None:
    """-n lists namespaced paths only, and no cluster-scoped resources."""
    kc = write_kubeconfig(tmp_path / "admin.conf", api.url, embedded_user(pki), ca=pem(pki.root))
    inv = check_live(kc, now=NOW, namespace="ns-1")
    assert {p for p, *_ in api.requests} == {"/api/v1/namespaces/ns-1/secrets", "/api/v1/namespaces/ns-1/configmaps"}
    assert {i.namespace for i in inv} == {"ns-1"}


def test_forbidden_cluster_resources_are_skipped(tmp_path: Path, pki: PKI,
                                                 objects: dict[str, list[dict[str, Any]]]) -> None:
    """403 on webhooks/APIServices becomes a note; 403 on secrets is an error."""
    stub = APIStub(_server_context(pki, tmp_path, require_cert=True), objects,
                   forbidden=frozenset({"apiservices", "validatingwebhookconfigurations"}))
    try:
        kc = write_kubeconfig(tmp_path / "admin.conf", stub.url, embedded_user(pki), ca=pem(pki.root))
        inv = check_live(kc, now=NOW)
        assert sum("skipped" in n for n in inv.notes) == 2 and "APIService" not in inv.objects
        stub.forbidden = frozenset({"secrets"})
        with pytest.raises(APIError, match="403 Forbidden") as info:
            check_live(kc, now=NOW)
        assert info.value.status == 403
    finally:
        stub.stop()


def test_context_selection_and_kubeconfig_env(tmp_path: Path, api: APIStub, pki: PKI,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """$KUBECONFIG files are merged; context= picks a context that is not the current one."""
    good = write_kubeconfig(tmp_path / "good.conf", api.url, embedded_user(pki), ca=pem(pki.root), context="good")
    doc = yaml.safe_load(good.read_text())
    other = {"apiVersion": "v1", "kind": "Config", "current-context": "broken",
             "contexts": [{"name": "broken", "context": {"cluster": "nowhere", "user": "admin"}}],
             "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}}], "users": []}
    (tmp_path / "first.conf").write_text(yaml.safe_dump(other))
    (tmp_path / "second.conf").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "first.conf"), str(tmp_path / "missing"),
                                                      str(tmp_path / "second.conf")]))
    assert len(check_live(context="good", now=NOW)) > 0
    with pytest.raises(APIError, match="cannot reach"):
        check_live(now=NOW, timeout=2)  # the current context of the first file
    with pytest.raises(KubeconfigError, match="context 'absent' not found"):
        check_live(context="absent", now=NOW)


@pytest.mark.parametrize(("user", "cluster", "error", "message"), [
    ({"auth-provider": {"name": "oidc"}}, {}, KubeconfigError, "auth-provider"),
    ({"username": "a", "password": "b"}, {}, KubeconfigError, "basic authentication"),
    ({"client-certificate-data": "AAAA"}, {}, KubeconfigError, "without its key"),
    ({"client-certificate-data": "AAAA", "client-key-data": "AAAA"}, {}, KubeconfigError, "cannot be loaded"),
    ({"token": "x"}, {"proxy-url": "http://proxy:3128"}, KubeconfigError, "proxy-url"),
    ({"token": "x"}, {"server": "http://127.0.0.1:8080"}, ConfigError, "https://"),
    ({"exec": {"command": "x", "interactiveMode": "Always"}}, {}, KubeconfigError, "terminal"),
])
def test_unsupported_or_broken_kubeconfigs(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any],
                                           error: type[Exception], message: str) -> None:
    """What the client does not support or cannot use is a clear error before any request."""
    kc = write_kubeconfig(tmp_path / "k.conf", cluster.pop("server", "https://127.0.0.1:1"), user,
                          cluster=cluster)
    with pytest.raises(error, match=message):
        KubeClient.from_kubeconfig(kc)


def test_missing_kubeconfig_is_config_error(tmp_path: Path) -> None:
    """A kubeconfig path that does not exist is a ConfigError."""
    with pytest.raises(ConfigError, match="does not exist"):
        check_live(tmp_path / "nope.conf", now=NOW)


def test_cli_live(tmp_path: Path, token_api: APIStub, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki secrets check --kubeconfig` reads the live cluster; no output holds a secret."""
    kc = write_kubeconfig(tmp_path / "t.conf", token_api.url, {"token": TOKEN}, ca=pem(pki.root))
    for output in ("table", "json"):
        code = main(["secrets", "check", "--kubeconfig", str(kc), "--now", "2026-12-01", "-o", output,
                     "--page-size", "4"])
        out, err = capsys.readouterr()
        assert code == 2 and err == ""
        for text in (out, err):
            assert "PRIVATE KEY" not in text and TOKEN not in text
    data = json.loads(out)
    item = next(i for i in data["items"] if i["name"] == "ns-1/web-7/tls.crt")
    assert item["status"] == Status.INVALID.value and item["findings"][0]["code"] == "key-mismatch"


def test_cli_live_errors_are_one_line(tmp_path: Path, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable API server is exit 3 with one line on stderr."""
    kc = write_kubeconfig(tmp_path / "t.conf", "https://127.0.0.1:1", {"token": TOKEN}, ca=pem(pki.root))
    code = main(["secrets", "check", "--kubeconfig", str(kc), "--timeout", "2"])
    out, err = capsys.readouterr()
    assert code == 3 and out == "" and err.startswith("kubepki: error: cannot reach") and err.count("\n") == 1
    assert TOKEN not in err


def test_cli_prints_the_insecure_warning(tmp_path: Path, api: APIStub, pki: PKI,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """With insecure-skip-tls-verify the CLI says so on stderr, in one line, and still checks."""
    kc = write_kubeconfig(tmp_path / "admin.conf", api.url, embedded_user(pki),
                          cluster={"insecure-skip-tls-verify": True})
    code = main(["secrets", "check", "--kubeconfig", str(kc), "--now", "2026-12-01"])
    out, err = capsys.readouterr()
    assert code == 2 and "note: insecure-skip-tls-verify" in out
    assert err == "kubepki: warning: insecure-skip-tls-verify: the API server's certificate is not verified\n"


def test_post_json_creates_and_retries_with_the_same_body(tmp_path: Path, api: APIStub, pki: PKI) -> None:
    """A create answered 429 is sent again with its own body (it once went out with the 429's error body);
    control: a create answered 201 at once is sent once."""
    from kubepki.objects import KubeClient

    kc = write_kubeconfig(tmp_path / "admin.conf", api.url, embedded_user(pki), ca=pem(pki.root))
    event = {"apiVersion": "v1", "kind": "Event", "reason": "KubepkiCertificatesRenewed"}
    api.post_statuses = [429]
    with KubeClient.from_kubeconfig(kc) as client:
        made = client.post_json("/api/v1/namespaces/default/events", event)
        assert made["metadata"]["name"] == "made" and made["reason"] == "KubepkiCertificatesRenewed"
        assert [json.loads(b) for _, b in api.posts] == [event, event]
        api.posts.clear()
        client.post_json("/api/v1/namespaces/default/events", event)
        assert len(api.posts) == 1
