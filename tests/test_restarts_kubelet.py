"""Endpoints from the node's own files, checks that could not be made, and restarting the kubelet.

Real processes throughout (tests/fake_component.py, real TLS servers on 127.0.0.1
serving the node's certificates): etcd, kube-apiserver and the kubelet listen
on the ports the node's static pod manifests and ``/var/lib/kubelet/config.yaml``
name, never kubeadm's defaults. The kubelet runs under a real supervisor (a
shell loop), or orphaned, with no supervisor. Only systemd as PID 1 cannot run
here: that branch of the kubelet method is shown with a /proc tree made for it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

import kubepki
from kubepki.catalog import Component
from kubepki.cli import main
from kubepki.node import Node
from kubepki.restarts import (
    Changed,
    FromDetection,
    Instance,
    Method,
    ProcScanner,
    ReasonKind,
    StaleKind,
    StepStatus,
    Timeouts,
    apply_restarts,
    detect,
    plan_restarts,
    verify_served,
)
from kubepki.restarts.methods import kubelet_method
from tests.services import (
    FAKE_COMPONENT,
    component_bin,
    free_port,
    pid_alive,
    self_signed_pair,
    start_fake,
    stop_process,
    touch_later,
    wait_for,
)

UTC = dt.timezone.utc
FAST = Timeouts(stop=15, start=20, serve=10, poll=0.05)


@attrs.define
class Ports:
    etcd: int
    apiserver: int
    kubelet: int


def _set_ports(root: Path, ports: Ports) -> None:
    """Make the node's manifests and kubelet config name ``ports`` (as a kubeadm config with custom ports does)."""
    manifests = root / "etc/kubernetes/manifests"
    api = manifests / "kube-apiserver.yaml"
    api.write_text(api.read_text().replace("--secure-port=6443", f"--secure-port={ports.apiserver}"))
    etcd = manifests / "etcd.yaml"
    etcd.write_text(etcd.read_text().replace("--listen-client-urls=https://127.0.0.1:2379",
                                             f"--listen-client-urls=https://127.0.0.1:{ports.etcd}"))
    (root / "var/lib/kubelet/config.yaml").write_text(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        f"address: 0.0.0.0\nport: {ports.kubelet}\n")


def _kubelet_args(root: Path, port: int) -> list[str]:
    return [f"--kubeconfig={root}/etc/kubernetes/kubelet.conf", f"--config={root}/var/lib/kubelet/config.yaml",
            f"--secure-port={port}", f"--tls-cert-file={root}/var/lib/kubelet/pki/kubelet.crt",
            f"--tls-private-key-file={root}/var/lib/kubelet/pki/kubelet.key"]


@attrs.define
class Running:
    node: Node
    root: Path
    ports: Ports
    bin_dir: Path
    log: Path
    procs: dict[str, subprocess.Popen[bytes]]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """A demo node on its own ports with etcd and kube-apiserver serving its files; stopped by PID."""
    demo = kubepki.testing.build_node(tmp_path / "n", issued_at=dt.datetime.now(UTC) - dt.timedelta(days=1))
    root = demo.root
    ports = Ports(etcd=free_port(), apiserver=free_port(), kubelet=free_port())
    _set_ports(root, ports)
    pki = root / "etc/kubernetes/pki"
    bin_dir, log = tmp_path / "bin", tmp_path / "components.log"
    procs = {
        "etcd": start_fake(bin_dir, "etcd", [f"--cert-file={pki}/etcd/server.crt", f"--secure-port={ports.etcd}",
                                             f"--kubepki-test-serve={pki}/etcd/server.crt,{pki}/etcd/server.key"],
                           log),
        "kube-apiserver": start_fake(bin_dir, "kube-apiserver", [
            f"--secure-port={ports.apiserver}", f"--tls-cert-file={pki}/apiserver.crt",
            f"--tls-private-key-file={pki}/apiserver.key"], log),
    }
    node = demo.as_node()
    try:
        for comp in ("etcd", "kube-apiserver"):
            wait_for(f"{comp} to serve", _serves(node, comp))
        yield Running(node=node, root=root, ports=ports, bin_dir=bin_dir, log=log, procs=procs)
    finally:
        for proc in procs.values():
            stop_process(proc)


def _serves(node: Node, component: str) -> Callable[[], bool]:
    return lambda: bool(verify_served(node, components=[component], timeout=1)[0].matches)


def _supervised_kubelet(r: Running) -> subprocess.Popen[bytes]:
    """A kubelet under a shell loop that starts it again whenever it exits (a supervisor)."""
    with open(r.log, "ab") as out:
        return subprocess.Popen(["sh", "-c", 'while :; do "$@"; sleep 0.1; done', "sh",
                                 str(component_bin(r.bin_dir, "kubelet")), str(FAKE_COMPONENT),
                                 *_kubelet_args(r.root, r.ports.kubelet)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _kubelets(node: Node) -> list[int]:
    return [i.pid or 0 for i in ProcScanner(node=node).instances() if i.component is Component.KUBELET]


# --------------------------------------------------------------------------------------
# Endpoints


def test_verify_served_uses_the_nodes_ports(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    """No --port: each endpoint is where the manifests and config.yaml say; all match, exit 0.

    Negative control: with the kubelet down, its endpoint is unavailable and the exit status is 1.
    """
    r = running
    r.procs["kubelet"] = start_fake(r.bin_dir, "kubelet", _kubelet_args(r.root, r.ports.kubelet), r.log)
    wait_for("the kubelet to serve", _serves(r.node, "kubelet"))
    assert main(["verify-served", "--root", str(r.root), "-o", "json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert [(c["component"], c["served"]["port"], c["status"]) for c in checks] == [
        ("etcd", r.ports.etcd, "match"), ("kube-apiserver", r.ports.apiserver, "match"),
        ("kubelet", r.ports.kubelet, "match")]
    stop_process(r.procs["kubelet"])
    assert main(["verify-served", "--root", str(r.root)]) == 1
    out = capsys.readouterr().out
    assert f"127.0.0.1:{r.ports.kubelet}" in out and "unavailable" in out


def test_nothing_observed_or_compared_is_not_all_well(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    """With etcd and kube-apiserver running, ``restarts plan --detect`` observes them and exits 0 and
    ``verify-served`` compares them (control); once every component is stopped (by PID), the plan observed
    nothing and ``verify-served`` compared nothing: both exit 3 and say so, not 0 ("nothing to restart") or 1."""
    r = running
    assert main(["restarts", "plan", "--detect", "--root", str(r.root), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["observed"] >= 2
    assert main(["verify-served", "--root", str(r.root)]) == 1  # the kubelet is not running: partly checked
    capsys.readouterr()
    for proc in r.procs.values():
        stop_process(proc)
    assert main(["restarts", "plan", "--detect", "--root", str(r.root)]) == 3
    out, err = capsys.readouterr()
    assert "nothing observed" in out and "nothing was observed running" not in err  # plan: shown, not an error
    assert main(["restarts", "apply", "--detect", "--root", str(r.root), "--apply"]) == 3
    assert "nothing was observed running" in capsys.readouterr().err
    assert main(["verify-served", "--root", str(r.root)]) == 3
    assert "nothing was checked" in capsys.readouterr().err


def test_an_unreachable_endpoint_is_never_reported_verified(running: Running,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """After the steps, an endpoint that cannot be reached makes the result 'could not check', exit 1.

    Negative control: the same apply with every endpoint reachable says every component uses what is on
    disk, exit 0.
    """
    r = running
    plan = plan_restarts(r.node, Changed(["front-proxy-client"]), policy="minimal")
    closed = free_port()
    report = apply_restarts(plan, ports={"etcd": closed}, timeout=FAST)
    assert report.ok and not report.verified
    assert [c.component for c in report.unchecked] == [Component.ETCD]
    assert f"could not check 1 endpoint(s): etcd: connection to 127.0.0.1:{closed} refused" in report.table()
    assert "every component uses what is on disk" not in report.table()
    assert json.loads(report.to_json())["verified"] is False
    argv = ["restarts", "apply", "--root", str(r.root), "--changed", "front-proxy-client", "--policy", "minimal",
            "--apply", "--no-backup", "--timeout", "10"]
    assert main([*argv, "--port", f"etcd={closed}"]) == 1
    assert "could not check" in capsys.readouterr().err
    assert main(argv) == 0
    assert "every component uses what is on disk" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# The kubelet


def test_kubelet_method_follows_what_runs_the_kubelet(tmp_path: Path) -> None:
    """systemd only when PID 1 is systemd with this root and a kubelet unit there; else a signal.

    systemd cannot run as PID 1 here, so that branch reads a /proc tree made for it (a symlink for
    /proc/1/root); the host's own /proc is read for the other branch.
    """
    node = kubepki.testing.build_node(tmp_path / "n", issued_at=dt.datetime(2026, 1, 1, tzinfo=UTC)).as_node()
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1/comm").write_text("systemd\n")
    (proc / "1/root").symlink_to(node.root)
    assert kubelet_method(node, proc) == (Method.SIGNAL, f"no kubelet unit is installed under {node.root}")
    unit = node.root / "usr/lib/systemd/system/kubelet.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/kubelet\n")
    assert kubelet_method(node, proc)[0] is Method.SYSTEMD
    (proc / "1/root").unlink()
    (proc / "1/root").symlink_to("/")  # systemd of another root: never asked for this node
    assert kubelet_method(node, proc)[0] is Method.SIGNAL
    if Path("/proc/1/comm").read_text().strip() != "systemd":
        method, why = kubelet_method(node)
        assert method is Method.SIGNAL and "not systemd" in why


def test_signal_method_restarts_a_supervised_kubelet(running: Running) -> None:
    """kubelet.conf renewed on a node without systemd: the kubelet process of this node gets SIGTERM, its
    supervisor starts the next one, and it serves kubelet.crt again on its configured port."""
    r = running
    r.procs["kubelet"] = supervisor = _supervised_kubelet(r)
    first = wait_for("the kubelet", lambda: _kubelets(r.node))
    plan = plan_restarts(r.node, Changed(["kubelet.conf"]))
    assert [(s.component, s.method) for s in plan.restarts] == [(Component.KUBELET, Method.SIGNAL)]
    report = apply_restarts(plan, timeout=FAST, take_backup=False)
    assert report.ok, report.table()
    outcome = report.outcomes[0]
    assert outcome.status is StepStatus.DONE and outcome.served is not None and outcome.served.matches
    assert outcome.served.served.port == r.ports.kubelet
    assert any(m.startswith(f"sending SIGTERM to the kubelet (pid {first[0]})") for m in outcome.messages)
    assert _kubelets(r.node) not in ([], first) and supervisor.poll() is None


def test_a_kubelet_nothing_would_restart_is_not_stopped(running: Running) -> None:
    """Negative control: an orphaned kubelet (parent PID 1) is refused before any signal; it keeps running."""
    r = running
    launcher = subprocess.run(
        ["sh", "-c", '"$@" </dev/null >/dev/null 2>&1 & echo $!', "sh", str(component_bin(r.bin_dir, "kubelet")),
         str(FAKE_COMPONENT), *_kubelet_args(r.root, r.ports.kubelet)],
        capture_output=True, text=True, check=True, start_new_session=True)
    pid = int(launcher.stdout.strip())
    try:
        wait_for("the orphaned kubelet", lambda: _kubelets(r.node) == [pid])
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if ppid != 1:
            pytest.skip(f"orphans are adopted by a subreaper (pid {ppid}) here, not by PID 1")
        report = apply_restarts(plan_restarts(r.node, Changed(["kubelet.conf"])), timeout=FAST,
                                take_backup=False)
        assert report.outcomes[0].status is StepStatus.FAILED
        assert "refusing to stop the kubelet" in (report.outcomes[0].error or "")
        assert "nothing would start the kubelet again" in (report.outcomes[0].error or "")
        assert pid_alive(pid) and _kubelets(r.node) == [pid]
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
        wait_for("the orphan to exit", lambda: not pid_alive(pid))


def test_a_wait_step_ends_at_once_for_a_component_started_after_the_write(running: Running) -> None:
    """kube-apiserver started after apiserver-kubelet-client was written: it read the new file at start, so
    the minimal plan's wait step is done without waiting (its bound is 5 minutes)."""
    plan = plan_restarts(running.node, Changed(["apiserver-kubelet-client"]), policy="minimal")
    assert [(s.action.value, s.wait_seconds) for s in plan.steps] == [("wait", 305.0)]
    report = apply_restarts(plan, timeout=FAST)
    assert report.ok, report.table()
    outcome = report.outcomes[0]
    assert outcome.status is StepStatus.WAITED and outcome.after is not None
    assert "it uses the new files" in outcome.messages[-1]
    assert not any(m.startswith("waiting ") for m in outcome.messages)


# --------------------------------------------------------------------------------------
# Files the kubelet writes itself (docs/realcluster-findings.md H1)


def _instance(node: Node, component: Component) -> Instance:
    return wait_for(f"{component.value} observed", lambda: next(
        (i for i in ProcScanner(node=node).instances() if i.component is component), None))


def _past_start(inst: Instance) -> None:
    """Wait until a write now is after ``inst``'s start beyond the start time's precision."""
    time.sleep(max(0.0, inst.started_at.timestamp() + inst.precision + 0.05 - time.time()))


def _written_after(path: Path, inst: Instance) -> bool:
    """True when detection sees ``path`` as written after ``inst`` started (beyond the start's precision)."""
    return path.stat().st_mtime > inst.started_at.timestamp() + inst.precision


@pytest.fixture
def bootstrapped(running: Running, tmp_path: Path) -> tuple[Running, Instance]:
    """A kubelet that, like one `kubeadm join` started, wrote kubelet.conf and kubelet.crt/key after its start.

    The real kubelet's TLS bootstrap writes kubelet.conf and it self-signs its serving pair ~0.2 s after it
    starts (H1). The fake serves a pair made before it started (--kubepki-test-serve), and that pair is
    written to kubelet.crt/key once it runs; kubelet.conf is rewritten then too.
    """
    r = running
    made = tmp_path / "made"
    made.mkdir()
    self_signed_pair(made / "kubelet.crt", made / "kubelet.key", "kpk-node@1")
    r.procs["kubelet"] = start_fake(r.bin_dir, "kubelet", [
        *_kubelet_args(r.root, r.ports.kubelet), f"--kubepki-test-serve={made}/kubelet.crt,{made}/kubelet.key"],
        r.log)
    inst = _instance(r.node, Component.KUBELET)
    wait_for("the kubelet to listen", lambda: verify_served(r.node, components=["kubelet"], timeout=1)[0]
             .served.ok)
    _past_start(inst)
    pki = r.root / "var/lib/kubelet/pki"
    for name in ("kubelet.key", "kubelet.crt"):
        (pki / name).write_bytes((made / name).read_bytes())
    touch_later(r.root / "etc/kubernetes/kubelet.conf")
    for path in (pki / "kubelet.crt", pki / "kubelet.key", r.root / "etc/kubernetes/kubelet.conf"):
        assert _written_after(path, inst), path
    return r, inst


def test_a_kubelet_serving_the_pair_it_wrote_after_its_start_is_not_stale(
        bootstrapped: tuple[Running, Instance]) -> None:
    """kubelet.conf (kubelet-managed) and kubelet.crt/key (served as on disk) written after the start: not stale.

    Negative control in the same detection: scheduler.conf, which kube-scheduler reads once at start, written
    after the scheduler started still makes the scheduler stale (a restart).
    """
    r, _ = bootstrapped
    conf = f"{r.root}/etc/kubernetes/scheduler.conf"
    r.procs["kube-scheduler"] = start_fake(r.bin_dir, "kube-scheduler", [
        f"--kubeconfig={conf}", f"--authentication-kubeconfig={conf}", f"--authorization-kubeconfig={conf}"],
        r.log)
    scheduler = _instance(r.node, Component.KUBE_SCHEDULER)
    _past_start(scheduler)
    touch_later(r.root / "etc/kubernetes/scheduler.conf")
    assert _written_after(r.root / "etc/kubernetes/scheduler.conf", scheduler)
    found = detect(r.node)
    assert [(c.component, c.status.value) for c in found.served if c.component is Component.KUBELET] == [
        (Component.KUBELET, "match")]
    assert [(s.component, s.kind, s.restart_needed) for s in found.stale] == [
        (Component.KUBE_SCHEDULER, StaleKind.STARTED_BEFORE_WRITE, True)]
    assert {r.name for r in found.stale[0].reasons} == {"scheduler.conf"}
    plan = plan_restarts(r.node, FromDetection())
    assert [s.component for s in plan.restarts] == [Component.KUBE_SCHEDULER]


def test_a_kubelet_serving_an_older_certificate_than_its_file_is_stale(
        bootstrapped: tuple[Running, Instance]) -> None:
    """Negative control: kubelet.crt rewritten once more with a new pair while the kubelet serves the one before:
    stale by its served certificate and by the time of kubelet.crt (restart needed); kubelet.conf is never a
    reason."""
    r, _ = bootstrapped
    pki = r.root / "var/lib/kubelet/pki"
    self_signed_pair(pki / "kubelet.crt", pki / "kubelet.key", "kpk-node@2")
    stale = [s for s in detect(r.node).stale if s.component is Component.KUBELET]
    assert sorted((s.kind.value, s.restart_needed) for s in stale) == [
        ("served-mismatch", True), ("started-before-write", True)]
    assert {(x.name, x.kind) for s in stale for x in s.reasons} == {
        ("kubelet.crt", ReasonKind.SERVED_MISMATCH), ("kubelet.crt", ReasonKind.WRITTEN_AFTER_START)}
    plan = plan_restarts(r.node, FromDetection())
    assert [s.component for s in plan.restarts] == [Component.KUBELET]


def test_an_unreachable_kubelet_keeps_the_time_rule_for_its_serving_pair(
        bootstrapped: tuple[Running, Instance]) -> None:
    """Negative control: with the kubelet's endpoint out of reach nothing proves the pair is in use, so kubelet.crt
    written after the start makes it stale; kubelet.conf still does not (kubelet-managed)."""
    r, _ = bootstrapped
    found = detect(r.node, ports={"kubelet": free_port()})
    assert [c.component for c in found.unchecked] == [Component.KUBELET]
    stale = [s for s in found.stale if s.component is Component.KUBELET]
    assert [(s.kind, s.restart_needed) for s in stale] == [(StaleKind.STARTED_BEFORE_WRITE, True)]
    assert {x.name for x in stale[0].reasons} == {"kubelet.crt"}
