"""CA rotations on the real kubeadm v1.28.4 cluster while requests keep flowing (issue 19 item 4).

``front-proxy-ca`` then ``ca`` are rotated through all four phases by kubepki's API, restarts
included (rolled by kubepki: the static pods by their manifests, the kubelet by the harness, which
runs it without systemd), while :class:`tests.loadgen.LoadGenerator` keeps requests flowing through
admin.conf, an aggregated API (front-proxy), kubelet logs (apiserver -> kubelet) and a
ServiceAccount token, each on a new connection, counted per phase. Between phases the test waits for
what the how-to says to wait for (the ``extension-apiserver-authentication`` and ``kube-root-ca.crt``
ConfigMaps carrying the phase's CAs). Judged from outside, after the end: the kube-apiserver serves a
certificate the new CA signed, the aggregated API received a front-proxy-client certificate the new
front-proxy CA signed, admin.conf trusting the new CA alone works, ``kube-root-ca.crt`` holds the new CA
alone, and the old CAs are in no trust file. The failed requests of every phase and their causes are
printed as figures.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import http.client
import json
import ssl
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from kubepki.cluster import (
    PHASES,
    Cluster,
    Phase,
    abort_rotation,
    apply_rotation,
    check_trust,
    plan_rotation,
    rotation_status,
)
from kubepki.errors import ConfigError
from kubepki.node import Node
from kubepki.pki import load_certificates, signed_by
from tests.loadgen import ADMIN, KUBELET, SERVICE_ACCOUNT, LoadGenerator, configmap_value, expect
from tests.realcluster import RealCluster

pytestmark = pytest.mark.realcluster

_SHA256 = hashes.SHA256()
CA_FILES = {"ca": "ca.crt", "front-proxy-ca": "front-proxy-ca.crt", "etcd-ca": "etcd/ca.crt"}


def _report(request: pytest.FixtureRequest, text: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            for line in text.splitlines():
                reporter.write_line(f"[figure] {line}")


def _pems(text: str) -> list[x509.Certificate]:
    return load_certificates(text.encode())


def _kubelet_restarting(cause: str) -> bool:
    """The answers kube-apiserver gives for pods/log while the kubelet restarts: the stopping kubelet
    drops the connection (``read tcp``, or ``unexpected EOF`` mid-answer), its port is closed (``dial tcp``),
    then the new kubelet has not registered the pod yet (404)."""
    return any(s in cause for s in ("read tcp", "unexpected EOF", "dial tcp", "could not find the requested resource"))


def _webhook_with_the_cluster_ca(c: RealCluster, ca: x509.Certificate) -> str:
    """A ValidatingWebhookConfiguration whose caBundle is the cluster CA (for a resource nothing creates)."""
    body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "kubepki-rotation-test"},
            "webhooks": [{"name": "never.kubepki.test", "failurePolicy": "Ignore", "sideEffects": "None",
                          "admissionReviewVersions": ["v1"],
                          "clientConfig": {"url": "https://127.0.0.1:1/never",
                                           "caBundle": base64.b64encode(ca.public_bytes(Encoding.PEM)).decode()},
                          "rules": [{"operations": ["CREATE"], "apiGroups": ["kubepki.test"], "apiVersions": ["v1"],
                                     "resources": ["nothings"]}]}]}
    path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    r = c.api(path, "POST", body)
    assert r.status == 201, r.data[:300]
    return f"{path}/kubepki-rotation-test"


def _await_published(lg: LoadGenerator, namespace: str, name: str, key: str, *, want: list[x509.Certificate],
                     rotated: set[bytes], timeout: float) -> None:
    """Wait until a ConfigMap publishes, of the rotation's CAs (``rotated`` fingerprints), exactly ``want``.
    Other CAs it holds are not the rotation's: kube-apiserver keeps every CA it ever loaded in
    extension-apiserver-authentication (an earlier test's extra front-proxy CA, say), and kubepki keeps them."""
    deadline = time.monotonic() + timeout
    wanted = {c.fingerprint(_SHA256) for c in want}
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = _pems(configmap_value(lg.admin, namespace, name, key))
        except Exception as exc:  # a read that fails now is retried
            last = exc
        if isinstance(last, list) and {c.fingerprint(_SHA256) for c in last} & (rotated | wanted) == wanted:
            return
        time.sleep(1)
    raise AssertionError(f"{namespace}/{name} {key} does not carry the phase's {len(want)} CAs after {timeout:.0f} s: "
                         f"last {last!r}")


def _settle(c: RealCluster, lg: LoadGenerator, ca: str, phase: Phase, rotated: set[bytes]) -> None:
    """Wait for what the how-to says to wait for after ``phase`` before the next one."""
    want = load_certificates((c.pki / CA_FILES[ca]).read_bytes())
    if ca == "front-proxy-ca":  # kube-apiserver republishes --requestheader-client-ca-file (E5, E8)
        _await_published(lg, "kube-system", "extension-apiserver-authentication", "requestheader-client-ca-file",
                         want=want, rotated=rotated, timeout=60)
    if ca == "ca":  # KCM (restarted) published --root-ca-file everywhere: kubepki waited for it
        lagging = _root_ca_lagging(lg, want=want, rotated=rotated)
        assert lagging == [], f"kube-root-ca.crt lags in {lagging} after {ca} {phase.value}"
    time.sleep(2 * lg.refresh + 1)  # the readers' own refresh (a real aggregated server watches: faster)


def _root_ca_lagging(lg: LoadGenerator, *, want: list[x509.Certificate], rotated: set[bytes]) -> list[str]:
    """The active namespaces whose kube-root-ca.crt, read now through admin.conf, does not carry of the
    rotation's CAs exactly ``want``."""
    wanted = {c.fingerprint(_SHA256) for c in want}
    namespaces = json.loads(expect(*lg.admin.request("/api/v1/namespaces")))["items"]
    active = {n["metadata"]["name"] for n in namespaces if n.get("status", {}).get("phase") == "Active"}
    maps = json.loads(expect(*lg.admin.request("/api/v1/configmaps?fieldSelector=metadata.name%3Dkube-root-ca.crt")))
    carried = {m["metadata"]["namespace"] for m in maps["items"]
               if {x.fingerprint(_SHA256) for x in _pems(m["data"]["ca.crt"])} & (rotated | wanted) == wanted}
    assert active, "no namespace listed"
    return sorted(active - carried)


def test_reissue_is_refused_while_kube_root_ca_crt_lacks_the_new_ca(real_cluster: RealCluster) -> None:
    """trust-both without restarts: kube-controller-manager reads --root-ca-file at start only, so it keeps
    publishing the old CA alone in every namespace's kube-root-ca.crt, and reissue is refused with nothing
    written. Aborting both phases (no restarts either) leaves the cluster as it was."""
    c = real_cluster
    c.wait_ready(120)
    c.wait_pods_ready(300)
    cluster = Cluster([Node(c.root)], labels=[c.node_name])
    admin_conf = str(c.root / "etc/kubernetes/admin.conf")
    files = ("ca.crt", "ca.key")
    before = {f: (c.pki / f).read_bytes() for f in files}
    published = c.api("/api/v1/namespaces/default/configmaps/kube-root-ca.crt").json()["data"]["ca.crt"]
    assert _pems(published) == load_certificates(before["ca.crt"])
    try:
        for phase in (Phase.PREPARE, Phase.TRUST_BOTH):
            result = apply_rotation(plan_rotation(cluster), backup_dir="/var/backups/kubepki-rotation",
                                    kubeconfig=admin_conf)
            assert result.ok, (phase, result.problems)
        lag = result.objects.root_ca if result.objects is not None else None
        assert lag is not None and lag.namespaces >= 4 and set(lag.lagging) == set(_active_namespaces(c))
        bundle = (c.pki / "ca.crt").read_bytes()
        plan = plan_rotation(cluster)
        assert plan.phase is Phase.REISSUE
        with pytest.raises(ConfigError, match=r"kube-root-ca\.crt in \d+ of \d+ namespaces .* does not carry the "
                                              r"new CA yet"):
            apply_rotation(plan, backup_dir="/var/backups/kubepki-rotation", kubeconfig=admin_conf)
        assert (c.pki / "ca.crt").read_bytes() == bundle  # nothing written
        assert rotation_status(cluster).next_phase is Phase.REISSUE
        # judged from the API server: the old CA alone, as kube-controller-manager published it at its start
        assert c.api("/api/v1/namespaces/default/configmaps/kube-root-ca.crt").json()["data"]["ca.crt"] == published
    finally:
        for _ in range(2):
            if rotation_status(cluster).active:
                assert abort_rotation(cluster, kubeconfig=admin_conf).ok
    assert {f: (c.pki / f).read_bytes() for f in files} == before
    assert not rotation_status(cluster).active


def _active_namespaces(c: RealCluster) -> list[str]:
    return [n["metadata"]["name"] for n in c.api("/api/v1/namespaces").json()["items"]
            if n.get("status", {}).get("phase") == "Active"]


def test_rotating_front_proxy_ca_and_ca_under_load(real_cluster: RealCluster, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    c = real_cluster
    c.wait_ready(120)
    c.wait_pods_ready(300)
    cluster = Cluster([Node(c.root)], labels=[c.node_name])
    assert check_trust(cluster).broken == ()
    old = {ca: load_certificates((c.pki / CA_FILES[ca]).read_bytes())[0] for ca in ("ca", "front-proxy-ca")}
    admin_conf = str(c.root / "etc/kubernetes/admin.conf")  # loopback (controlPlaneEndpoint); read at each use
    timings: list[str] = []
    webhook = _webhook_with_the_cluster_ca(c, old["ca"])
    try:
        with LoadGenerator(c, tmp_path / "lg", phase="idle") as lg:
            time.sleep(5)
            for ca in ("front-proxy-ca", "ca"):
                for phase in PHASES:
                    lg.phase(f"{ca} {phase.value}")
                    started = time.monotonic()
                    plan = plan_rotation(cluster, ca=ca)
                    assert plan.phase is phase
                    result = apply_rotation(plan, backup_dir="/var/backups/kubepki-rotation", restart=True,
                                            runner=c.restart_runner(), health_timeout=300, kubeconfig=admin_conf)
                    assert result.ok, (ca, phase, result.problems)
                    applied = time.monotonic() - started
                    rotated = {x.fingerprint(_SHA256) for x in [old[ca], *load_certificates(plan.new_ca_pem)]}
                    _settle(c, lg, ca, phase, rotated)
                    waited = (f", of which {result.pods_waited:.0f} s waiting for the pods' kube-root-ca.crt"
                              if result.pods_waited is not None else "")
                    timings.append(f"{ca} {phase.value}: applied and restarted in {applied:.1f} s "
                                   f"({', '.join(plan.restarts.get(c.node_name, ())) or 'no restart'}{waited}), "
                                   f"settled after {time.monotonic() - started:.1f} s")
                    if ca == "ca" and phase is Phase.REISSUE:
                        assert result.pods_waited is not None  # kubepki looked before the new CA signed
                assert rotation_status(cluster, ca=ca).next_phase is None
            lg.phase("after")
            time.sleep(10)
            report = lg.report()
            received = list(lg.server.serials) if lg.server is not None else []
    finally:
        c.extract_admin()  # the harness's own admin pair: re-issued by the new CA
        bundle = c.api(webhook).json()["webhooks"][0]["clientConfig"]["caBundle"]
        c.api(webhook, "DELETE")
    _report(request, "CA rotation under load (single node):\n" + "\n".join(timings) + "\n" + report.text())

    _judge(c, cluster, old, received, tmp_path)
    # the live objects followed: a webhook's caBundle and cluster-info carry the new CA alone
    assert load_certificates(base64.b64decode(bundle)) == load_certificates((c.pki / "ca.crt").read_bytes())
    info = yaml.safe_load(c.api("/api/v1/namespaces/kube-public/configmaps/cluster-info").json()["data"]["kubeconfig"])
    assert load_certificates(base64.b64decode(info["clusters"][0]["cluster"]["certificate-authority-data"])) == \
        load_certificates((c.pki / "ca.crt").read_bytes())
    assert all(report.ok(channel=ch) > 0 for ch in report.channels)
    # what failed: only kubelet-logs, only while the kubelet restarted (ca's trust-both, reissue and
    # drop-old restart it: its kubeconfig's CA, its client certificate), each outage about a second
    others = [f for f in report.failures_of() if f.channel != KUBELET]
    assert others == [], others
    for phase in report.phases:
        kubelet = report.failures_of(phase=phase, channel=KUBELET)
        restarts_kubelet = phase in ("ca trust-both", "ca reissue", "ca drop-old")
        assert len(kubelet) <= (10 if restarts_kubelet else 0), (phase, kubelet)
        assert all(_kubelet_restarting(f.cause) for f in kubelet), kubelet


def _judge(c: RealCluster, cluster: Cluster, old: dict[str, x509.Certificate], received: list[int],
           tmp_path: Path) -> None:
    """From outside: what the components serve, present and publish is the new CAs'."""
    new = {ca: load_certificates((c.pki / CA_FILES[ca]).read_bytes()) for ca in old}
    assert all(len(v) == 1 and v[0] != old[ca] for ca, v in new.items())
    served = c.served_certificate(c.ports.apiserver)
    assert signed_by(served, new["ca"][0]) and not signed_by(served, old["ca"])
    ctx = ssl.create_default_context(cadata=new["ca"][0].public_bytes(Encoding.PEM).decode())  # the new CA alone
    admin = yaml.safe_load((c.root / "etc/kubernetes/admin.conf").read_text())["users"][0]["user"]
    certfile, keyfile = tmp_path / "a.crt", tmp_path / "a.key"
    certfile.write_bytes(base64.b64decode(admin["client-certificate-data"]))
    keyfile.write_bytes(base64.b64decode(admin["client-key-data"]))
    keyfile.chmod(0o600)
    ctx.load_cert_chain(str(certfile), str(keyfile))
    conn = http.client.HTTPSConnection(c.address, c.ports.apiserver, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/namespaces/kube-public/configmaps/kube-root-ca.crt")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, body[:200]
    assert _pems(json.loads(body)["data"]["ca.crt"]) == new["ca"]
    # the aggregated API's last client certificate: front-proxy-client, which the new front-proxy CA signed
    proxy_client = load_certificates((c.pki / "front-proxy-client.crt").read_bytes())[0]
    assert signed_by(proxy_client, new["front-proxy-ca"][0])
    assert received and received[-1] == proxy_client.serial_number
    assert check_trust(cluster).broken == ()


def test_rotating_etcd_ca_on_one_control_plane(real_cluster: RealCluster, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    """etcd-ca: each phase restarts etcd and kube-apiserver (--etcd-cafile is read at start, E4b); on one
    control plane the API is away while they restart, which the load generator counts (reported, and
    bounded to those restarts). Judged from outside at the end: etcd serves a certificate the new etcd
    CA signed and refuses a client certificate of the old one; kube-apiserver reaches etcd (/readyz)."""
    c = real_cluster
    c.wait_ready(120)
    c.wait_pods_ready(300)
    cluster = Cluster([Node(c.root)], labels=[c.node_name])
    old_ca = load_certificates((c.pki / "etcd/ca.crt").read_bytes())[0]
    old_client = (c.pki / "etcd/healthcheck-client.crt").read_bytes(), (c.pki / "etcd/healthcheck-client.key")
    old_client_copy = tmp_path / "old-healthcheck.crt"
    old_client_copy.write_bytes(old_client[0])
    timings = []
    with LoadGenerator(c, tmp_path / "lg", phase="idle", channels=(ADMIN, SERVICE_ACCOUNT)) as lg:
        time.sleep(3)
        for phase in PHASES:
            lg.phase(f"etcd-ca {phase.value}")
            started = time.monotonic()
            plan = plan_rotation(cluster, ca="etcd-ca")
            # kubepki's own runner (no kubelet restart here): its check that the components run passes
            result = apply_rotation(plan, backup_dir="/var/backups/kubepki-rotation", restart=True,
                                    health_timeout=300)
            assert result.ok, (phase, result.problems)
            c.wait_ready(120)
            timings.append(f"etcd-ca {phase.value}: {time.monotonic() - started:.1f} s "
                           f"({', '.join(plan.restarts.get(c.node_name, ())) or 'no restart'})")
            lg.wait_all_ok(120)
        lg.phase("after")
        time.sleep(5)
        report = lg.report()
    causes = collections.Counter((f.phase, f.channel, f.cause.split(":")[0]) for f in report.failures_of())
    _report(request, "etcd-ca rotation under load (single node):\n" + "\n".join(timings) + "\n"
            + report.text().split("\n(ok/failed")[0] + "\nfailures by phase, channel and cause:\n"
            + "\n".join(f"{n:5d}  {p} {ch} {cause}" for (p, ch, cause), n in sorted(causes.items())))
    new_ca = load_certificates((c.pki / "etcd/ca.crt").read_bytes())
    assert len(new_ca) == 1 and new_ca[0] != old_ca
    served = c.served_certificate(c.ports.etcd_client)
    assert signed_by(served, new_ca[0]) and not signed_by(served, old_ca)
    assert _etcd_health(c, c.pki / "etcd/healthcheck-client.crt", c.pki / "etcd/healthcheck-client.key") == 200
    assert _etcd_health(c, old_client_copy, old_client[1]) != 200  # etcd trusts the old CA no more
    assert c.readyz()
    assert check_trust(cluster).broken == ()
    # what failed: only while etcd and kube-apiserver restarted, in the phases that restart them
    assert report.failed(phase="idle") == 0 and report.failed(phase="etcd-ca prepare") == 0
    assert report.failed(phase="after") == 0
    c.wait_pods_ready(300)


def _etcd_health(c: RealCluster, cert: Path, key: Path) -> int | str:
    """GET /health on etcd's client port with this client pair: the status, or why it failed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cert), str(key))
    conn = http.client.HTTPSConnection(c.address, c.ports.etcd_client, context=ctx, timeout=10)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
