"""``kube-root-ca.crt`` through a rotation of ``ca``: what pods trust the API server by.

kube-controller-manager writes its ``--root-ca-file`` into every namespace's ``kube-root-ca.crt`` when it
starts, and every pod's service-account volume projects it. ``reissue`` lets the new CA sign what
kube-apiserver serves, so it is refused while a namespace lacks the new CA, and it waits for the kubelets
to refresh the pods' copies. The real cluster shows the refusal (tests/test_rotate_ca_realcluster.py:
trust-both without restarts leaves kube-controller-manager publishing the old CA) and the wait; here a
loopback HTTPS stand-in for the API server holds ConfigMaps a real kube-controller-manager would rewrite
at once (one namespace stale, one terminating, one with garbage), and unit-sized demo clusters stand
for the nodes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kubepki import testing
from kubepki.cluster import POD_REFRESH, Phase, apply_rotation, plan_rotation, rotation_status
from kubepki.cluster._rotate_objects import root_ca_lag, sync_objects
from kubepki.errors import ConfigError
from kubepki.objects import KubeClient
from kubepki.pki import load_certificates
from tests.rotation_trees import BACKUPS, PKI, changed, cluster, copy_cluster, trees
from tests.test_apiclient import _Handler as _JSONHandler  # its quiet log and JSON answers

TOKEN = "kubepki-root-ca-test-token"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
#: The demo clusters' certificates are issued a day before NOW (the rotation's checks run at NOW).
ISSUED = NOW - dt.timedelta(days=1)


class FakeAPI(ThreadingHTTPServer):
    """Namespaces, ConfigMaps (by namespace and name), empty webhook and APIService lists, over HTTPS."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext, ca_pem: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ca_pem = ca_pem  # what its serving certificate chains to
        self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.namespaces: dict[str, str] = {}  # name -> phase
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.lists = 0  # kube-root-ca.crt lists answered
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def root_ca(self, namespace: str, pem: bytes | str, *, written: dt.datetime = NOW) -> None:
        """Put ``kube-root-ca.crt`` into ``namespace`` as kube-controller-manager would, written at ``written``."""
        self.namespaces.setdefault(namespace, "Active")
        data = pem.decode() if isinstance(pem, bytes) else pem
        self.configmaps[(namespace, "kube-root-ca.crt")] = {
            "metadata": {"name": "kube-root-ca.crt", "namespace": namespace, "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update",
                 "time": written.strftime("%Y-%m-%dT%H:%M:%SZ")}]},
            "data": {"ca.crt": data}}

    def kubeadm_objects(self, ca_pem: bytes) -> None:
        """kube-public/cluster-info as kubeadm writes it, extension-apiserver-authentication as kube-apiserver."""
        info = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": {
            "certificate-authority-data": base64.b64encode(ca_pem).decode(), "server": "https://127.0.0.1:6443"}}]}
        self.configmaps[("kube-public", "cluster-info")] = {
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": yaml.safe_dump(info)}}
        self.configmaps[("kube-system", "extension-apiserver-authentication")] = {
            "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
            "data": {"client-ca-file": ca_pem.decode()}}

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class _Handler(_JSONHandler):
    server: FakeAPI  # type: ignore[assignment]

    def _list(self, items: list[dict[str, Any]]) -> None:
        self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})

    def do_GET(self) -> None:
        """Answer the reads of a rotation's object sync."""
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"kind": "Status", "code": 401, "message": "Unauthorized"})
            return
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        segments = parts.path.strip("/").split("/")
        if parts.path == "/api/v1/namespaces":
            self._list([{"metadata": {"name": n}, "status": {"phase": p}} for n, p in self.server.namespaces.items()])
        elif parts.path == "/api/v1/configmaps":
            name = query.get("fieldSelector", "").removeprefix("metadata.name=")
            self.server.lists += name == "kube-root-ca.crt"
            self._list([cm for (_, n), cm in self.server.configmaps.items() if not name or n == name])
        elif segments[:3] == ["api", "v1", "namespaces"] and len(segments) == 6 and segments[4] == "configmaps":
            cm = self.server.configmaps.get((segments[3], segments[5]))
            self._send(200, cm) if cm is not None else self._send(404, {"kind": "Status", "code": 404,
                                                                         "message": "not found"})
        elif parts.path.startswith("/apis/"):
            self._list([])
        else:
            self._send(404, {"kind": "Status", "code": 404, "message": "not found"})

    def do_PUT(self) -> None:
        """Store a ConfigMap."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        segments = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        self.server.configmaps[(segments[3], segments[5])] = body
        self._send(200, body)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> testing.DemoCluster:
    return testing.build_cluster(tmp_path_factory.mktemp("rootca"), nodes=1, workers=1, issued_at=ISSUED)


@pytest.fixture
def api(pristine: testing.DemoCluster, tmp_path: Path) -> Iterator[FakeAPI]:
    serving = testing.build_cluster(tmp_path / "serving", nodes=1).first.root / PKI  # any CA and a serving pair
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(serving / "apiserver.crt", serving / "apiserver.key")
    server = FakeAPI(ctx, (serving / "ca.crt").read_bytes())
    yield server
    server.stop()


def _kubeconfig(path: Path, api: FakeAPI) -> Path:
    ca = api.ca_pem
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "admin",
        "clusters": [{"name": "k", "cluster": {"server": f"https://127.0.0.1:{api.server_address[1]}",
                                                "certificate-authority-data": base64.b64encode(ca).decode(),
                                                "tls-server-name": "kubernetes"}}],
        "contexts": [{"name": "admin", "context": {"cluster": "k", "user": "admin"}}],
        "users": [{"name": "admin", "user": {"token": TOKEN}}]}))
    return path


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _three(root: Path) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """The cluster CA, and two other CAs standing for the new one and for a CA not in the rotation."""
    return tuple(load_certificates((root / PKI / f).read_bytes())[0]  # type: ignore[return-value]
                 for f in ("ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"))


def test_root_ca_lag_names_each_namespace_behind(api: FakeAPI, pristine: testing.DemoCluster, tmp_path: Path) -> None:
    old, new, other = _three(pristine.first.root)
    api.root_ca("default", _pem(old, new), written=NOW - dt.timedelta(seconds=30))
    api.root_ca("kube-system", _pem(new, old, other), written=NOW)  # a CA not the rotation's is not judged
    api.root_ca("stale", _pem(old))
    api.root_ca("garbage", "not a certificate")
    api.namespaces["empty"] = "Active"  # no ConfigMap yet
    api.namespaces["going"] = "Terminating"  # the publisher skips it: so does kubepki
    with KubeClient.from_kubeconfig(_kubeconfig(tmp_path / "kc", api)) as client:
        lag = root_ca_lag(client, want=[old, new], rotated=[old, new])
        assert (lag.namespaces, lag.lagging, lag.ok) == (5, ("empty", "garbage", "stale"), False)
        assert lag.updated_at == NOW
        assert "3 of 5 namespaces (empty, garbage, stale)" in lag.describe()
        # negative control: the same ConfigMaps judged against the old CA alone
        assert root_ca_lag(client, want=[old], rotated=[old, new]).lagging == ("default", "empty", "garbage",
                                                                                 "kube-system")
        for ns in ("stale", "garbage", "empty"):
            api.root_ca(ns, _pem(old, new), written=NOW - dt.timedelta(seconds=5))
        lag = root_ca_lag(client, want=[old, new], rotated=[old, new])
        assert (lag.lagging, lag.ok, lag.updated_at) == ((), True, NOW)


def _to_trust_both(roots: dict[str, Path]) -> None:
    c = cluster(roots)
    for _ in range(2):
        assert apply_rotation(plan_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW).ok
    assert rotation_status(c).next_phase is Phase.REISSUE


def test_reissue_is_refused_while_a_namespace_lacks_the_new_ca(api: FakeAPI, pristine: testing.DemoCluster,
                                                              tmp_path: Path) -> None:
    roots = copy_cluster(pristine, tmp_path / "n")
    _to_trust_both(roots)
    c = cluster(roots)
    bundle = (roots["cp1"] / PKI / "ca.crt").read_bytes()
    api.kubeadm_objects(bundle)
    old = load_certificates(bundle)[0]
    api.root_ca("default", bundle, written=NOW - dt.timedelta(hours=1))
    api.root_ca("team-a", _pem(old))  # kube-controller-manager not restarted since trust-both
    before = trees(roots)
    plan = plan_rotation(c, now=NOW)
    with pytest.raises(ConfigError, match=r"kube-root-ca.crt in 1 of 2 namespaces \(team-a\) does not carry the "
                                          r"new CA yet.*restart it"):
        apply_rotation(plan, backup_dir=BACKUPS, now=NOW, kubeconfig=_kubeconfig(tmp_path / "kc", api))
    assert changed(before, trees(roots)) == {n: set() for n in roots}  # nothing written, no backup
    assert rotation_status(c).next_phase is Phase.REISSUE
    # an API kubepki cannot read is no "all well" either
    with pytest.raises(ConfigError, match=r"could not read kube-root-ca\.crt"):
        apply_rotation(plan, backup_dir=BACKUPS, now=NOW, kubeconfig=_kubeconfig(tmp_path / "kc2", api).with_name(
            "missing"))
    # positive control: published everywhere an hour ago, so the pods' copies are old enough: no wait
    api.root_ca("team-a", bundle, written=NOW - dt.timedelta(hours=1))
    result = apply_rotation(plan, backup_dir=BACKUPS, now=NOW, kubeconfig=_kubeconfig(tmp_path / "kc", api))
    assert result.ok, result.problems
    assert result.pods_waited == 0
    assert result.objects is not None and result.objects.root_ca is not None
    # after reissue the ConfigMaps still carry old + new (kube-controller-manager not restarted here): reported
    assert result.objects.root_ca.ok
    assert rotation_status(c).next_phase is Phase.DROP_OLD


def test_reissue_waits_out_the_kubelets_refresh_of_the_pods_copies(api: FakeAPI, pristine: testing.DemoCluster,
                                                                  tmp_path: Path) -> None:
    roots = copy_cluster(pristine, tmp_path / "n")
    _to_trust_both(roots)
    bundle = (roots["cp1"] / PKI / "ca.crt").read_bytes()
    api.kubeadm_objects(bundle)
    written = NOW - dt.timedelta(seconds=POD_REFRESH - 2)  # published 88 s before "now": 2 s to go
    api.root_ca("default", bundle, written=written)
    plan = plan_rotation(cluster(roots), now=NOW)
    started = time.monotonic()
    result = apply_rotation(plan, backup_dir=BACKUPS, now=NOW, kubeconfig=_kubeconfig(tmp_path / "kc", api))
    assert time.monotonic() - started >= 2
    assert result.ok, result.problems
    assert result.pods_waited == pytest.approx(2)
    assert "waited 2 s for the kubelets to refresh the pods' copies" in result.table()
    assert result.to_dict()["podsWaitedSeconds"] == 2


def test_other_phases_report_a_lag_without_waiting_when_nothing_restarts(api: FakeAPI, pristine: testing.DemoCluster,
                                                                        tmp_path: Path) -> None:
    """trust-both with --no-restart: kube-controller-manager still publishes the old CA; that is said, the
    phase is verified (its files are right), and reissue is what refuses."""
    roots = copy_cluster(pristine, tmp_path / "n")
    c = cluster(roots)
    assert apply_rotation(plan_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW).ok  # prepare
    old = load_certificates((roots["cp1"] / PKI / "ca.crt").read_bytes())[0]
    api.kubeadm_objects(_pem(old))
    api.root_ca("default", _pem(old))
    api.lists = 0
    result = apply_rotation(plan_rotation(c, now=NOW), backup_dir=BACKUPS, now=NOW,
                            kubeconfig=_kubeconfig(tmp_path / "kc", api))
    assert result.ok, result.problems
    assert api.lists == 1  # looked once, did not wait
    assert result.objects is not None and result.objects.root_ca is not None
    assert result.objects.root_ca.lagging == ("default",)
    assert "kube-root-ca.crt in 1 of 1 namespaces (default): not the CA file's certificates yet" in result.table()
    assert result.to_dict()["objects"]["rootCA"] == {"namespaces": 1, "lagging": ["default"], "ok": False}
    assert result.pods_waited is None


def test_after_restarts_the_publication_is_waited_for_and_its_absence_is_a_problem(
        api: FakeAPI, pristine: testing.DemoCluster, tmp_path: Path) -> None:
    """What apply does after restarting kube-controller-manager (``publish_wait``): here the stand-in
    publishes 1.5 s later, as a restarted kube-controller-manager would; then one that never does."""
    old, new, _ = _three(pristine.first.root)
    api.kubeadm_objects(_pem(old, new))
    api.root_ca("default", _pem(old))
    kubeconfig = _kubeconfig(tmp_path / "kc", api)
    publisher = threading.Timer(1.5, api.root_ca, ("default", _pem(old, new)))
    publisher.start()
    try:
        synced = sync_objects(kubeconfig, ca="ca", want=[old, new], rotated=[old, new], publish_wait=30)
    finally:
        publisher.cancel()
    assert synced.problems == ()
    assert synced.root_ca is not None and synced.root_ca.ok
    assert 1.5 <= synced.waited < 30
    # negative control: nothing publishes the new CA; the wait ends in a problem
    synced = sync_objects(kubeconfig, ca="ca", want=[new], rotated=[old, new], publish_wait=1.5)
    assert synced.root_ca is not None and synced.root_ca.lagging == ("default",)
    assert [p for p in synced.problems if "kube-root-ca.crt" in p] == [
        "kube-root-ca.crt in 1 of 1 namespaces (default) does not carry the CA file's certificates after 2 s: "
        "kube-controller-manager publishes its --root-ca-file there when it starts"]
    # other CAs have no kube-root-ca.crt to wait for
    assert sync_objects(kubeconfig, ca="front-proxy-ca", want=[new], rotated=[old, new]).root_ca is None


def test_cli_refuses_reissue_with_one_line_and_exit_3(api: FakeAPI, pristine: testing.DemoCluster, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from kubepki.cli import main
    from tests.test_rotate_ca import cli

    roots = copy_cluster(pristine, tmp_path / "n")
    _to_trust_both(roots)
    old = load_certificates((roots["cp1"] / PKI / "ca.crt").read_bytes())[0]
    api.root_ca("default", _pem(old))
    kubeconfig = str(_kubeconfig(tmp_path / "kc", api))
    assert main(cli(roots, "plan")) == 0
    assert "reissue is refused while one lacks the new CA" in capsys.readouterr().out
    assert main(cli(roots, "next", "--no-restart", "--apply", "--kubeconfig", kubeconfig)) == 3
    err = capsys.readouterr().err
    assert "kube-root-ca.crt in 1 of 1 namespaces (default) does not carry the new CA yet" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert rotation_status(cluster(roots)).next_phase is Phase.REISSUE
