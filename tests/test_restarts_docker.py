"""The docker method against a real Docker engine.

The session starts Debian's ``dockerd`` on its own socket, data root and exec
root (no iptables, no bridge; containers use ``--network none`` or the host
network), imports images built offline from busybox-static (and, for etcd, the
host's etcd binary with its libraries), and plays the kubelet: when a
component's container is removed, it creates the next attempt with the
kubelet's labels and cri-dockerd's names. Without dockerd these tests skip with
the reason; set ``KUBEPKI_REQUIRE_DOCKER=1`` (CI does) to make that a failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest

import kubepki
from kubepki.catalog import Component
from kubepki.cli import main
from kubepki.errors import RestartError
from kubepki.node._node import Node
from kubepki.restarts._restarts import (
    Action,
    Changed,
    FromDetection,
    Method,
    StaleKind,
    StepStatus,
    Timeouts,
    apply_restarts,
    detect,
    plan_restarts,
)
from kubepki.restarts._served import CheckStatus
from kubepki.restarts.methods._docker import DockerRuntime, parse_docker_time, parse_kubelet_name
from tests.services import (
    DOCKERD,
    ETCD,
    DockerEngine,
    DockerKubelet,
    PodSpec,
    free_port,
    manifest_command,
    reissue,
    rewrite_arg,
    touch_later,
    wait_for,
)

UTC = dt.timezone.utc
FAST = Timeouts(stop=15, start=20, serve=15, poll=0.05)


def _unavailable(reason: str) -> None:
    if os.environ.get("KUBEPKI_REQUIRE_DOCKER") == "1":
        pytest.fail(f"KUBEPKI_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """A Docker engine of our own, with the busybox image imported; stopped by PID at the end."""
    if DOCKERD is None:
        _unavailable("dockerd is not installed (Debian: apt-get install docker.io)")
    eng = DockerEngine(tmp_path_factory.mktemp("docker"))
    try:
        eng.start()
        eng.import_busybox()
    except RuntimeError as exc:
        eng.stop()
        _unavailable(f"no Docker engine here: {exc}")
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture
def runtime(engine: DockerEngine) -> Iterator[DockerRuntime]:
    """kubepki's Docker driver on the test engine."""
    rt = DockerRuntime(engine.url)
    yield rt
    rt.close()


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A demo node issued yesterday."""
    return kubepki.testing.build_node(tmp_path / "n", issued_at=dt.datetime.now(UTC) - dt.timedelta(days=1)).as_node()


def test_runtime_sees_the_kubelets_containers(engine: DockerEngine, runtime: DockerRuntime) -> None:
    """Labels, cri-dockerd names, state and StartedAt of kubelet containers; sandboxes are not components."""
    pods = [PodSpec("kube-scheduler"), PodSpec("kube-controller-manager", uid="fedcba9876543210")]
    with engine.client() as api:
        sandbox = api.create_container(
            engine.IMAGE, command=["sleep", "3600"], name="k8s_POD_kube-scheduler-cp1_kube-system_0123456789abcdef_0",
            labels={"io.kubernetes.container.name": "POD", "io.kubernetes.pod.name": "kube-scheduler-cp1",
                    "io.kubernetes.pod.namespace": "kube-system", "kubepki-test": "1"},
            host_config=api.create_host_config(network_mode="none"))
        api.start(sandbox["Id"])
        unrelated = api.create_container(engine.IMAGE, command=["sleep", "3600"], name="not-a-kubelet-container",
                                         host_config=api.create_host_config(network_mode="none"))
        api.start(unrelated["Id"])
    try:
        with DockerKubelet(engine, pods):
            containers = runtime.containers()
            assert sorted(c.container_name for c in containers) == ["POD", "kube-controller-manager",
                                                                   "kube-scheduler"]
            sched = next(c for c in containers if c.container_name == "kube-scheduler")
            assert sched.name == "k8s_kube-scheduler_kube-scheduler-cp1_kube-system_0123456789abcdef_0"
            assert (sched.pod_name, sched.namespace, sched.pod_uid, sched.attempt) == (
                "kube-scheduler-cp1", "kube-system", "0123456789abcdef", 0)
            assert sched.running and sched.state == "running" and sched.argv == ("sleep", "3600")
            assert sched.started_at is not None and sched.started_at.tzinfo is not None
            assert abs((dt.datetime.now(UTC) - sched.started_at).total_seconds()) < 60
            assert sorted(i.component.value for i in runtime.instances()) == [
                "kube-controller-manager", "kube-scheduler"]
            assert all(i.source == "docker" and i.container_id for i in runtime.instances())
            with engine.client() as api:
                api.stop(sched.id, timeout=0)
            assert "kube-scheduler-cp1" not in {c.pod_name for c in runtime.containers() if c.component}
            stopped = [c for c in runtime.containers(include_stopped=True) if c.id == sched.id]
            assert stopped and stopped[0].state == "exited" and not stopped[0].running
    finally:
        with engine.client() as api:
            for cid in (sandbox["Id"], unrelated["Id"]):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_container(cid, force=True)


def test_docker_method_restarts_a_stale_scheduler(engine: DockerEngine, runtime: DockerRuntime, node: Node) -> None:
    """scheduler.conf rewritten after the container started: detected, planned, removed, recreated, verified."""
    with DockerKubelet(engine, [PodSpec("kube-scheduler"), PodSpec("kube-controller-manager")]) as kubelet:
        first = next(c for c in runtime.containers() if c.container_name == "kube-scheduler")
        touch_later(node.root / "etc/kubernetes/scheduler.conf")
        found = detect(node, observer=runtime)
        assert [(s.component, s.kind, s.restart_needed) for s in found.stale] == [
            (Component.KUBE_SCHEDULER, StaleKind.STARTED_BEFORE_WRITE, True)]
        plan = plan_restarts(node, FromDetection(observer=runtime), method="docker")
        assert [(s.component, s.action, s.method) for s in plan.steps] == [
            (Component.KUBE_SCHEDULER, Action.RESTART, Method.DOCKER)]
        heard: list[str] = []
        report = apply_restarts(plan, runtime=runtime, observer=runtime, timeout=FAST,
                                progress=lambda _step, message: heard.append(message))
        assert report.ok, report.table()
        assert report.outcomes[0].status is StepStatus.DONE
        now = next(c for c in runtime.containers() if c.container_name == "kube-scheduler")
        assert now.id != first.id and now.attempt == 1 and kubelet.attempts["kube-scheduler-cp1"] == 1
        assert now.started_at is not None and first.started_at is not None and now.started_at > first.started_at
        assert runtime.container(first.id) is None
        assert any(m.startswith("removing container k8s_kube-scheduler_kube-scheduler-cp1") for m in heard)
        assert report.verification is not None and report.verification.stale == ()
        assert kubelet.attempts["kube-controller-manager-cp1"] == 0


def test_real_etcd_in_docker_restarted_and_serving_the_renewed_certificate(
        engine: DockerEngine, runtime: DockerRuntime, node: Node, tmp_path: Path) -> None:
    """etcd from the node's manifest in a host-network container: renewed server cert, docker restart, served."""
    if ETCD is None:
        pytest.skip("etcd is not installed (Debian: apt-get install etcd-server)")
    image = engine.import_etcd()
    client, peer, metrics = free_port(), free_port(), free_port()
    _, command = manifest_command(node.root / "etc/kubernetes/manifests/etcd.yaml")
    args = [a for a in (rewrite_arg("etcd", arg, root=None, url_ports={2379: client, 2380: peer, 2381: metrics})
                        for arg in command[1:]) if a is not None]
    pki = node.root / "etc/kubernetes/pki/etcd"
    data = tmp_path / "etcd-data"
    data.mkdir(mode=0o700)
    spec = PodSpec("etcd", command=("/usr/bin/etcd", *args), image=image, network="host",
                   binds=(f"{pki}:/etc/kubernetes/pki/etcd:ro", f"{data}:/var/lib/etcd"))
    with DockerKubelet(engine, [spec]):
        found = wait_for("etcd to serve", lambda: (d := detect(node, observer=runtime)).served and
                         d.served[0].status is CheckStatus.MATCH and d, timeout=30)
        assert found.served[0].served.port == client  # the port came from the container's flags
        first = runtime.containers()[0]
        reissue(node.root, "etcd/server", "etcd/ca")
        plan = plan_restarts(node, Changed(["etcd-server"]), method="docker")
        report = apply_restarts(plan, runtime=runtime, observer=runtime, timeout=FAST)
        assert report.ok, report.table()
        served = report.outcomes[0].served
        assert served is not None and served.status is CheckStatus.MATCH
        assert served.path == "/etc/kubernetes/pki/etcd/server.crt"
        assert runtime.containers()[0].id != first.id


def test_docker_method_fails_when_the_kubelet_does_not_recreate(engine: DockerEngine, runtime: DockerRuntime,
                                                                node: Node) -> None:
    """No new attempt appears: the step times out and later steps do not run."""
    with DockerKubelet(engine, [PodSpec("kube-scheduler")]) as kubelet:
        kubelet.paused.set()
        plan = plan_restarts(node, Changed(["scheduler.conf", "kubelet.conf"]), method="docker")
        report = apply_restarts(plan, runtime=runtime, observer=runtime,
                                timeout=Timeouts(stop=1, start=1, serve=1, poll=0.05))
        assert [o.status for o in report.outcomes] == [StepStatus.FAILED, StepStatus.NOT_RUN]
        assert "timed out after 1s waiting for a new kube-scheduler container" in (report.outcomes[0].error or "")
        kubelet.paused.clear()


def test_docker_method_without_a_container_fails(engine: DockerEngine, runtime: DockerRuntime, node: Node) -> None:
    """A component with no running container cannot be restarted this way; the report says which."""
    plan = plan_restarts(node, Changed(["controller-manager.conf"]), method="docker")
    report = apply_restarts(plan, runtime=runtime, observer=runtime, timeout=FAST)
    assert report.outcomes[0].status is StepStatus.FAILED
    assert "no running kube-controller-manager container found in docker" in (report.outcomes[0].error or "")


def test_cli_apply_with_docker(engine: DockerEngine, node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki restarts apply --method docker --docker-host ... --apply` restarts and verifies; exit 0."""
    with DockerKubelet(engine, [PodSpec("kube-scheduler")]) as kubelet:
        code = main(["restarts", "apply", "--root", str(node.root), "--changed", "scheduler.conf",
                     "--method", "docker", "--docker-host", engine.url, "--apply", "--timeout", "20", "-o", "json"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert json.loads(out)["outcomes"][0]["status"] == "done"
        assert kubelet.attempts["kube-scheduler-cp1"] == 1


def test_unreachable_engine_is_a_restart_error(tmp_path: Path) -> None:
    """An engine that is not there gives RestartError with the address, not a docker or requests exception."""
    rt = DockerRuntime(f"unix://{tmp_path}/absent.sock")
    with pytest.raises(RestartError, match="cannot reach the Docker engine"):
        rt.containers()


def test_cli_unreachable_engine_exits_2(node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI reports an unreachable engine as a failed step, in one line on stderr, and exits 2."""
    code = main(["restarts", "apply", "--root", str(node.root), "--changed", "scheduler.conf", "--method", "docker",
                 "--docker-host", f"unix://{tmp_path}/absent.sock", "--apply"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(
        "kubepki: error: kube-scheduler: cannot reach the Docker engine at unix://")
    assert "Traceback" not in err


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-28T15:24:57.830664211Z", dt.datetime(2026, 11, 28, 15, 24, 57, 830664, tzinfo=UTC)),
    ("2026-11-28T15:24:57Z", dt.datetime(2026, 11, 28, 15, 24, 57, tzinfo=UTC)),
    ("2026-11-28T16:24:57.5+01:00", dt.datetime(2026, 11, 28, 15, 24, 57, 500000, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", None),
    ("", None),
    ("yesterday", None),
])
def test_parse_docker_time(text: str, expected: dt.datetime | None) -> None:
    """Docker's nanosecond RFC 3339 times become UTC datetimes; the zero time means never started."""
    assert parse_docker_time(text) == expected


def test_parse_kubelet_name() -> None:
    """cri-dockerd's k8s_<container>_<pod>_<namespace>_<uid>_<attempt>, with or without the leading slash."""
    assert parse_kubelet_name("/k8s_etcd_etcd-cp1_kube-system_abc_3") == {
        "container": "etcd", "pod": "etcd-cp1", "ns": "kube-system", "uid": "abc", "attempt": "3"}
    assert parse_kubelet_name("k8s_etcd_etcd-cp1_kube-system_abc") is None
    assert parse_kubelet_name("some-container") is None
