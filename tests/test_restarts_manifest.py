"""The manifest method, staleness and verification against real processes.

A test kubelet (tests/services.py) runs the static pods of a node tree as local
processes: etcd is the real ``/usr/bin/etcd`` (Debian's etcd-server 3.4) serving
the tree's etcd certificates on 127.0.0.1; kube-apiserver, kube-controller-manager
and kube-scheduler, whose binaries cannot be installed here, are real TLS servers
(tests/fake_component.py) that read their certificate once, at start. Every
restart below is a real process stopping and starting, every served certificate
a real TLS handshake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography import x509

import kubepki
from kubepki.catalog import Component
from kubepki.cli import main
from kubepki.errors import RestartError
from kubepki.node._node import Node
from kubepki.restarts._observe import ProcScanner
from kubepki.restarts._restarts import (
    HELD_MANIFESTS_DIR,
    Action,
    Changed,
    FromDetection,
    FromRenewal,
    RestartStep,
    StaleKind,
    StepStatus,
    Timeouts,
    apply_restarts,
    detect,
    plan_restarts,
)
from kubepki.restarts._served import CheckStatus, check_served, fetch_served_certificate
from tests.kubeadm_trees import materialize
from tests.services import (
    TestKubelet,
    der,
    free_port,
    pid_alive,
    reissue,
    require_etcd,
    self_signed_pair,
    start_fake,
    stop_process,
    touch_later,
    wait_for,
)

UTC = dt.timezone.utc
FAST = Timeouts(stop=15, start=20, serve=10, poll=0.05)


@attrs.define
class Cluster:
    """A node tree with its static pods running under the test kubelet."""

    root: Path
    node: Node
    kubelet: TestKubelet
    observer: ProcScanner

    @property
    def ports(self) -> dict[Component, int]:
        """The TLS ports the test kubelet gave etcd and kube-apiserver."""
        return {Component.ETCD: self.kubelet.ports["etcd"],
                Component.KUBE_APISERVER: self.kubelet.ports["kube-apiserver"]}

    @property
    def manifests(self) -> Path:
        """The manifests directory on the local filesystem."""
        return self.root / "etc/kubernetes/manifests"

    def serving(self, component: Component) -> bool:
        """True once ``component`` serves its on-disk certificate."""
        check = check_served(self.node, component, port=self.ports[component], timeout=1)
        return check.status is CheckStatus.MATCH


@contextlib.contextmanager
def _run(root: Path, work: Path, **kwargs: object) -> Iterator[Cluster]:
    """Start the test kubelet on ``root``; stop it, and check no process is left, on leaving."""
    require_etcd()
    kubelet = TestKubelet(root, work, **kwargs)  # type: ignore[arg-type]
    started: list[int] = []
    with kubelet:
        cluster = Cluster(root=root, node=Node(root), kubelet=kubelet,
                          observer=ProcScanner(match=lambda i: kubelet.owns(i.argv)))
        wait_for("etcd to serve", lambda: cluster.serving(Component.ETCD), timeout=30)
        wait_for("kube-apiserver to serve", lambda: cluster.serving(Component.KUBE_APISERVER))
        wait_for("4 components", lambda: len(cluster.observer.instances()) == 4)
        yield cluster
        started = kubelet.pids()
    assert not [p for p in started if pid_alive(p)], "the test kubelet left processes behind"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A kubepki demo node (kubeadm 1.34 shape, issued yesterday) with its static pods running."""
    demo = kubepki.testing.build_node(tmp_path / "n", issued_at=dt.datetime.now(UTC) - dt.timedelta(days=1))
    with _run(demo.root, tmp_path / "work") as running:
        yield running


def _pid(cluster: Cluster, component: Component) -> int | None:
    return cluster.kubelet.pid(component.value)


# --------------------------------------------------------------------------- etcd


def test_etcd_34_serves_a_renewed_certificate_without_restart(tmp_path: Path) -> None:
    """Real etcd on a real kubeadm tree's certificates hands out a renewed etcd/server.crt on the next handshake."""
    root = materialize("single-full", tmp_path / "n")
    with _run(root, tmp_path / "work") as cluster:
        pid = _pid(cluster, Component.ETCD)
        port = cluster.ports[Component.ETCD]
        before = fetch_served_certificate("127.0.0.1", port)
        assert before.der == der(_load(root / "etc/kubernetes/pki/etcd/server.crt"))
        new = reissue(root, "etcd/server", "etcd/ca")
        after = fetch_served_certificate("127.0.0.1", port)
        assert after.der == der(new) != before.der
        assert _pid(cluster, Component.ETCD) == pid
        assert cluster.kubelet.starts["etcd"] == 1


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --------------------------------------------------------------------------- detection


def test_fresh_node_is_not_stale(cluster: Cluster) -> None:
    """Right after start every component runs, serves its on-disk certificate and nothing is stale."""
    found = detect(cluster.node, observer=cluster.observer)
    assert sorted(i.component.value for i in found.instances) == [
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    assert [(c.component, c.status) for c in found.served] == [
        (Component.ETCD, CheckStatus.MATCH), (Component.KUBE_APISERVER, CheckStatus.MATCH)]
    assert found.stale == ()


def test_rewritten_file_makes_its_reader_stale(cluster: Cluster) -> None:
    """controller-manager.conf written after the start: KCM stale, restart needed; nobody else."""
    touch_later(cluster.root / "etc/kubernetes/controller-manager.conf")
    stale = kubepki.detect_stale(cluster.node, observer=cluster.observer)
    assert [(s.component, s.kind, s.restart_needed) for s in stale] == [
        (Component.KUBE_CONTROLLER_MANAGER, StaleKind.STARTED_BEFORE_WRITE, True)]
    assert {r.flag for r in stale[0].reasons} == {"--kubeconfig", "--authentication-kubeconfig",
                                                  "--authorization-kubeconfig"}
    assert "written" in stale[0].reasons[0].detail


def test_served_mismatch_is_stale_and_planned_even_under_minimal(cluster: Cluster) -> None:
    """A renewed apiserver.crt the server has not loaded: served mismatch, restart in either policy."""
    reissue(cluster.root, "apiserver", "ca")
    found = detect(cluster.node, observer=cluster.observer)
    kinds = {(s.component, s.kind, s.restart_needed) for s in found.stale}
    assert kinds == {(Component.KUBE_APISERVER, StaleKind.STARTED_BEFORE_WRITE, False),
                     (Component.KUBE_APISERVER, StaleKind.SERVED_MISMATCH, True)}
    plan = plan_restarts(cluster.node, FromDetection(observer=cluster.observer), policy="minimal")
    assert [(s.component, s.action) for s in plan.steps] == [(Component.KUBE_APISERVER, Action.RESTART)]
    assert plan.source == "detect" and plan.changed == ("apiserver",)


# --------------------------------------------------------------------------- the manifest method


def test_manifest_method_restarts_the_reader_and_verifies(cluster: Cluster) -> None:
    """front-proxy-client renewed: kube-apiserver is restarted by moving its manifest; nothing stale remains."""
    reissue(cluster.root, "front-proxy-client", "front-proxy-ca")
    old_pid = _pid(cluster, Component.KUBE_APISERVER)
    plan = plan_restarts(cluster.node, Changed(["front-proxy-client"]))
    heard: list[tuple[str, str]] = []

    def progress(step: RestartStep, message: str) -> None:
        heard.append((step.component.value, message))

    report = apply_restarts(plan, observer=cluster.observer, timeout=FAST, progress=progress)
    assert report.ok, report.table()
    (outcome,) = report.outcomes
    assert outcome.status is StepStatus.DONE
    assert outcome.before is not None and outcome.after is not None and outcome.after > outcome.before
    assert outcome.served is not None and outcome.served.status is CheckStatus.MATCH
    assert _pid(cluster, Component.KUBE_APISERVER) not in (None, old_pid)
    assert cluster.kubelet.starts == {"etcd": 1, "kube-apiserver": 2, "kube-controller-manager": 1,
                                      "kube-scheduler": 1}
    assert (cluster.manifests / "kube-apiserver.yaml").is_file()
    assert not (cluster.root / "etc/kubernetes" / HELD_MANIFESTS_DIR).exists()
    messages = [m for _, m in heard]
    assert any(m.startswith("moving /etc/kubernetes/manifests/kube-apiserver.yaml") for m in messages)
    assert "kube-apiserver stopped" in messages
    assert report.verification is not None and report.remaining == ()
    assert "every component uses what is on disk" in report.table()
    # A backup of the node was taken before anything moved, and it verifies.
    assert report.backup is not None
    assert report.backup.startswith(str(cluster.root / "var/backups/kubepki"))
    assert messages[0].startswith("backed up the node to ")
    from kubepki.backups._backups import verify_backup

    assert verify_backup(report.backup).ok


def test_renewal_result_to_verified_restart(cluster: Cluster) -> None:
    """kubepki's own renewal of apiserver and front-proxy-client, then its result planned, applied, verified."""
    renewal = pytest.importorskip("kubepki.renewal._renewal")
    result = renewal.apply_renewal(renewal.plan_renewal(cluster.node, ["apiserver", "front-proxy-client"]),
                                   take_backup=False)
    assert not cluster.serving(Component.KUBE_APISERVER)
    plan = plan_restarts(cluster.node, FromRenewal(result))
    assert [s.component for s in plan.restarts] == [Component.KUBE_APISERVER]
    report = apply_restarts(plan, observer=cluster.observer, timeout=FAST)
    assert report.ok, report.table()
    assert cluster.serving(Component.KUBE_APISERVER)


def test_minimal_policy_relies_on_etcds_hot_reload(cluster: Cluster) -> None:
    """etcd-server renewed under minimal: a verify step, proven by the served certificate; etcd keeps running."""
    pid = _pid(cluster, Component.ETCD)
    reissue(cluster.root, "etcd/server", "etcd/ca")
    plan = plan_restarts(cluster.node, Changed(["etcd-server"]), policy="minimal")
    assert [(s.component, s.action) for s in plan.steps] == [(Component.ETCD, Action.VERIFY)]
    report = apply_restarts(plan, observer=cluster.observer, timeout=FAST)
    assert report.ok, report.table()
    assert report.outcomes[0].status is StepStatus.VERIFIED
    assert _pid(cluster, Component.ETCD) == pid and cluster.kubelet.starts["etcd"] == 1
    assert report.verification is not None
    assert [s.component for s in report.verification.relying_on_reload] == [Component.ETCD]
    assert any(line.endswith("(its served certificate matches the disk)") for line in report.verification.lines())


def test_minimal_verify_fails_for_a_component_that_does_not_reload(cluster: Cluster) -> None:
    """Negative control: apiserver.crt renewed under minimal, the server keeps the old one, the verify fails."""
    reissue(cluster.root, "apiserver", "ca")
    plan = plan_restarts(cluster.node, Changed(["apiserver"]), policy="minimal")
    report = apply_restarts(plan, observer=cluster.observer, timeout=attrs.evolve(FAST, serve=1.0))
    assert not report.ok
    failed = report.failed
    assert failed is not None and failed.step.component is Component.KUBE_APISERVER
    assert "serves a certificate" in (failed.error or "") and "other than /etc/kubernetes/pki/apiserver.crt" in (
        failed.error or "")
    assert cluster.kubelet.starts["kube-apiserver"] == 1


def test_component_keeping_its_old_certificate_fails_and_is_reported_stale(tmp_path: Path) -> None:
    """Negative control: a server that serves its old certificate even after a restart fails the step."""
    demo = kubepki.testing.build_node(tmp_path / "n", issued_at=dt.datetime.now(UTC) - dt.timedelta(days=1))
    pki = demo.root / "etc/kubernetes/pki"
    keep = tmp_path / "old"
    keep.mkdir()
    for name in ("apiserver.crt", "apiserver.key"):
        shutil.copy(pki / name, keep / name)
    extra = {"kube-apiserver": [f"--kubepki-test-serve={keep / 'apiserver.crt'},{keep / 'apiserver.key'}"]}
    with _run(demo.root, tmp_path / "work", extra_args=extra) as cluster:
        reissue(cluster.root, "apiserver", "ca")
        plan = plan_restarts(cluster.node, Changed(["apiserver", "scheduler.conf"]))
        report = apply_restarts(plan, observer=cluster.observer, timeout=attrs.evolve(FAST, serve=1.5))
        assert [o.status for o in report.outcomes] == [StepStatus.FAILED, StepStatus.NOT_RUN]
        assert "other than /etc/kubernetes/pki/apiserver.crt" in (report.outcomes[0].error or "")
        assert cluster.kubelet.starts["kube-apiserver"] == 2  # it was restarted, in vain
        assert (cluster.manifests / "kube-apiserver.yaml").is_file()
        assert cluster.kubelet.starts["kube-scheduler"] == 1
        stale = kubepki.detect_stale(cluster.node, observer=cluster.observer)
        assert [(s.component, s.kind) for s in stale] == [(Component.KUBE_APISERVER, StaleKind.SERVED_MISMATCH)]
        assert "stopped at kube-apiserver" in report.table()


def test_stop_timeout_puts_the_manifest_back_and_stops(cluster: Cluster) -> None:
    """A kubelet that does not react: the wait times out, the manifest goes back, later steps do not run."""
    pid = _pid(cluster, Component.KUBE_APISERVER)
    plan = plan_restarts(cluster.node, Changed(["sa"]))
    assert [s.component for s in plan.restarts] == [Component.KUBE_APISERVER, Component.KUBE_CONTROLLER_MANAGER]
    cluster.kubelet.paused.set()
    report = apply_restarts(plan, observer=cluster.observer, timeout=attrs.evolve(FAST, stop=0.5))
    cluster.kubelet.paused.clear()
    assert [o.status for o in report.outcomes] == [StepStatus.FAILED, StepStatus.NOT_RUN]
    assert "timed out after 0.5s waiting for kube-apiserver to stop" in (report.outcomes[0].error or "")
    assert "moving kube-apiserver.yaml back" in report.outcomes[0].messages
    assert (cluster.manifests / "kube-apiserver.yaml").is_file()
    assert not (cluster.root / "etc/kubernetes" / HELD_MANIFESTS_DIR).exists()
    assert report.verification is None and not report.ok
    # The node is as it was: the same kube-apiserver process keeps running.
    assert _pid(cluster, Component.KUBE_APISERVER) == pid
    assert cluster.kubelet.starts["kube-apiserver"] == 1


def test_interrupted_run_is_finished_first(cluster: Cluster) -> None:
    """A manifest left in the holding directory by a crash is put back before anything else."""
    held = cluster.root / "etc/kubernetes" / HELD_MANIFESTS_DIR
    held.mkdir()
    (cluster.manifests / "kube-scheduler.yaml").rename(held / "kube-scheduler.yaml")
    wait_for("the scheduler to stop", lambda: _pid(cluster, Component.KUBE_SCHEDULER) is None)
    plan = plan_restarts(cluster.node, Changed(["scheduler.conf"]))
    report = apply_restarts(plan, observer=cluster.observer, timeout=FAST)
    assert report.ok, report.table()
    assert "putting back kube-scheduler.yaml, held since an interrupted run" in report.outcomes[0].messages
    assert (cluster.manifests / "kube-scheduler.yaml").is_file() and not held.exists()


def test_held_copy_beside_a_live_manifest_is_refused(cluster: Cluster) -> None:
    """Two copies of a manifest: kubepki will not overwrite either; the step fails and says so."""
    held = cluster.root / "etc/kubernetes" / HELD_MANIFESTS_DIR
    held.mkdir()
    shutil.copy(cluster.manifests / "kube-scheduler.yaml", held / "kube-scheduler.yaml")
    report = apply_restarts(plan_restarts(cluster.node, Changed(["scheduler.conf"])), observer=cluster.observer,
                            timeout=FAST)
    assert report.outcomes[0].status is StepStatus.FAILED
    assert "compare them and remove the held copy" in (report.outcomes[0].error or "")
    assert cluster.kubelet.starts["kube-scheduler"] == 1


# --------------------------------------------------------------------------- the kubelet


def test_kubelet_restart_goes_through_the_injected_restarter(cluster: Cluster, tmp_path: Path) -> None:
    """kubelet.crt renewed: restarted via kubelet_restart (a stand-in: no systemd here), the new one served.

    Negative control first: kubelet.conf rewritten after the start is the kubelet's own business (its TLS
    bootstrap writes it, docs/realcluster-findings.md H1): nothing is stale.
    """
    root = cluster.root
    port = free_port()
    args = [f"--kubeconfig={root}/etc/kubernetes/kubelet.conf", f"--port={port}",
            f"--tls-cert-file={root}/var/lib/kubelet/pki/kubelet.crt",
            f"--tls-private-key-file={root}/var/lib/kubelet/pki/kubelet.key"]
    procs = [start_fake(tmp_path / "bin", "kubelet", args, tmp_path / "kubelet.log")]

    def restart() -> None:
        stop_process(procs[-1])
        procs.append(start_fake(tmp_path / "bin", "kubelet", args, tmp_path / "kubelet.log"))

    try:
        wait_for("the kubelet to serve", lambda: check_served(
            cluster.node, "kubelet", port=port, timeout=1).status is CheckStatus.MATCH)
        touch_later(root / "etc/kubernetes/kubelet.conf")
        assert kubepki.detect_stale(cluster.node, observer=cluster.observer) == []
        pki = root / "var/lib/kubelet/pki"
        self_signed_pair(pki / "kubelet.crt", pki / "kubelet.key", "cp1@renewed")
        stale = kubepki.detect_stale(cluster.node, observer=cluster.observer)
        assert [(s.component, s.kind, s.restart_needed) for s in stale] == [
            (Component.KUBELET, StaleKind.STARTED_BEFORE_WRITE, True),
            (Component.KUBELET, StaleKind.SERVED_MISMATCH, True)]
        plan = plan_restarts(cluster.node, FromDetection(observer=cluster.observer))
        # A node in a temp dir is not the machine whose systemd is PID 1: its kubelet is signalled.
        assert [(s.component, s.method.value) for s in plan.restarts] == [(Component.KUBELET, "signal")]

        def broken() -> None:
            raise RestartError("systemctl restart kubelet failed (exit 1): Unit kubelet.service not found.")

        report = apply_restarts(plan, observer=cluster.observer, timeout=FAST, kubelet_restart=broken)
        assert report.outcomes[0].status is StepStatus.FAILED
        assert "Unit kubelet.service not found" in (report.outcomes[0].error or "")
        report = apply_restarts(plan, observer=cluster.observer, timeout=FAST, kubelet_restart=restart)
        assert report.ok, report.table()
        assert len(procs) == 2 and procs[0].poll() is not None
        served = report.outcomes[0].served
        assert served is not None and served.path == "/var/lib/kubelet/pki/kubelet.crt"
    finally:
        for proc in procs:
            stop_process(proc)


# --------------------------------------------------------------------------- the command line


def test_cli_detect_apply_and_verify_served(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    """`verify-served` exits 2 on a stale certificate, `restarts apply --detect --apply` fixes it, then 0."""
    root = str(cluster.root)
    ports = [f"--port=etcd={cluster.ports[Component.ETCD]}",
             f"--port=kube-apiserver={cluster.ports[Component.KUBE_APISERVER]}"]
    assert main(["verify-served", "--root", root, *ports]) == 0
    assert "match" in capsys.readouterr().out
    reissue(cluster.root, "apiserver", "ca")
    assert main(["verify-served", "--root", root, *ports, "-o", "json"]) == 2
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert [c["status"] for c in checks] == ["match", "mismatch"]
    code = main(["restarts", "apply", "--root", root, "--detect", "--policy", "minimal", "--apply",
                 "--timeout", "20", "-o", "json"])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(out)
    assert data["ok"] and [o["component"] for o in data["outcomes"]] == ["kube-apiserver"]
    assert main(["verify-served", "--root", root, *ports]) == 0
    capsys.readouterr()
