"""kubepki's CRI client against a real containerd, and the ``cri`` restart method.

The session starts Debian's ``containerd`` with its CRI plugin on its own socket
and directories (:mod:`tests.containerd`), imports a pause and a busybox image
built offline, and plays the kubelet through the CRI: one host-network sandbox
per static pod, and when a pod's container stops, the next attempt with the
kubelet's labels. Error mapping is checked against real gRPC servers on unix
sockets too (one that serves nothing, one that is slow, one that refuses).
Without containerd these tests skip with the reason; set
``KUBEPKI_REQUIRE_CONTAINERD=1`` to make that a failure.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kubepki
from kubepki.catalog import Component
from kubepki.cli import main
from kubepki.errors import ConfigError, RestartError
from kubepki.node._node import Node
from kubepki.restarts import ContainerInfo
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
from kubepki.restarts.methods._cri import CRIRuntime, argv_from_info, from_nanoseconds, socket_path
from kubepki.restarts.methods._docker import DockerRuntime
from kubepki.restarts.methods._runtimes import detect_runtime, find_sockets
from tests.containerd import Containerd, CRIKubelet, CRIPod, missing_tools
from tests.services import touch_later, wait_for

UTC = dt.timezone.utc
FAST = Timeouts(stop=15, start=20, serve=15, poll=0.05)
SCHEDULER = CRIPod("kube-scheduler")
CONTROLLER_MANAGER = CRIPod("kube-controller-manager", uid="fedcba9876543210")


def _unavailable(reason: str) -> None:
    if os.environ.get("KUBEPKI_REQUIRE_CONTAINERD") == "1":
        pytest.fail(f"KUBEPKI_REQUIRE_CONTAINERD=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A containerd of our own with the test images imported; stopped by PID at the end."""
    why = missing_tools()
    if why is not None:
        _unavailable(why)
    ctrd = Containerd(tmp_path_factory.mktemp("containerd"))
    try:
        ctrd.start()
    except RuntimeError as exc:
        ctrd.stop()
        _unavailable(f"no containerd here: {exc}")
    try:
        yield ctrd
    finally:
        ctrd.stop()


@pytest.fixture
def runtime(containerd: Containerd) -> Iterator[CRIRuntime]:
    """kubepki's CRI driver on the test containerd."""
    with CRIRuntime(containerd.endpoint, stop_timeout=10) as rt:
        yield rt


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A demo node issued yesterday."""
    return kubepki.testing.build_node(tmp_path / "n", issued_at=dt.datetime.now(UTC) - dt.timedelta(days=1)).as_node()


def _one(runtime: CRIRuntime, container: str) -> Any:
    found = [c for c in runtime.containers() if c.container_name == container]
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------------------
# Observing


def test_version_names_containerd(runtime: CRIRuntime) -> None:
    """Version answers containerd's name and version and CRI v1; the driver is named after the socket."""
    version = runtime.version()
    assert (version.runtime_name, version.runtime_api_version) == ("containerd", "v1")
    assert version.runtime_version and version.to_dict()["runtime_name"] == "containerd"
    assert str(version).startswith("containerd ")
    assert runtime.name == "containerd"  # from the socket's name
    assert CRIRuntime("unix:///var/run/crio/crio.sock").name == "cri-o"
    assert CRIRuntime("/run/k3s/containerd/k3s.sock").name == "cri"
    assert CRIRuntime("/run/k3s/containerd/k3s.sock", name="k3s").name == "k3s"


def test_lists_labelled_control_plane_containers(containerd: Containerd, runtime: CRIRuntime) -> None:
    """Labels, names, attempts, states, start times and argv of kubelet containers; others are left out."""
    other_ns = CRIPod("kube-proxy", uid="abcdefabcdef0000", namespace="kube-proxy")
    with CRIKubelet(containerd, [SCHEDULER, CONTROLLER_MANAGER]), CRIKubelet(containerd, [other_ns]):
        containers = runtime.containers()
        assert sorted(c.container_name for c in containers) == ["POD", "POD", "kube-controller-manager",
                                                               "kube-scheduler"]
        sched = _one(runtime, "kube-scheduler")
        assert sched.name == "k8s_kube-scheduler_kube-scheduler-cp1_kube-system_0123456789abcdef_0"
        assert (sched.pod_name, sched.namespace, sched.pod_uid, sched.attempt) == (
            "kube-scheduler-cp1", "kube-system", "0123456789abcdef", 0)
        assert sched.running and sched.state == "running"
        assert sched.started_at is not None and sched.started_at.tzinfo is UTC
        assert abs((dt.datetime.now(UTC) - sched.started_at).total_seconds()) < 60
        assert sched.argv[:2] == ("/bin/sh", "-c") and "--kubeconfig=/etc/kubernetes/scheduler.conf" in sched.argv
        pods = {c.pod_name: c for c in containers if c.container_name == "POD"}
        assert set(pods) == {"kube-scheduler-cp1", "kube-controller-manager-cp1"}
        assert pods["kube-scheduler-cp1"].name == "k8s_POD_kube-scheduler-cp1_kube-system_0123456789abcdef_0"
        assert all(p.running and p.component is None for p in pods.values())
        instances = runtime.instances()
        assert sorted(i.component.value for i in instances) == ["kube-controller-manager", "kube-scheduler"]
        assert all(i.source == "containerd" and i.container_id for i in instances)
        by_comp = {i.component: i for i in instances}
        assert by_comp[Component.KUBE_SCHEDULER].flags["kubeconfig"] == "/etc/kubernetes/scheduler.conf"
        assert by_comp[Component.KUBE_SCHEDULER].started_at == sched.started_at
        # Negative control: another namespace is seen only without the namespace filter.
        everywhere = CRIRuntime(containerd.endpoint, namespace=None)
        assert "kube-proxy" in {c.container_name for c in everywhere.containers()}
        everywhere.close()


def test_label_filters_select_one_pod(containerd: Containerd, runtime: CRIRuntime) -> None:
    """A label selector narrows containers and sandboxes to one pod; a selector nothing matches gives none."""
    with CRIKubelet(containerd, [SCHEDULER, CONTROLLER_MANAGER]):
        only = runtime.containers(labels={"io.kubernetes.pod.name": "kube-scheduler-cp1"})
        assert sorted(c.container_name for c in only) == ["POD", "kube-scheduler"]
        assert [c.container_name for c in runtime.containers(labels={"io.kubernetes.pod.name": "kube-scheduler-cp1"},
                                                             sandboxes=False)] == ["kube-scheduler"]
        tiers = runtime.pod_sandboxes(labels={"tier": "control-plane"})
        assert sorted(s.pod_name or "" for s in tiers) == ["kube-controller-manager-cp1", "kube-scheduler-cp1"]
        assert runtime.containers(labels={"io.kubernetes.pod.name": "etcd-cp1"}) == ()
        assert runtime.pod_sandboxes(labels={"tier": "node"}) == ()


def test_stop_then_remove(containerd: Containerd, runtime: CRIRuntime) -> None:
    """stop() leaves an exited container with its start time; remove() deletes it; both are idempotent."""
    with CRIKubelet(containerd, [SCHEDULER]) as kubelet:
        kubelet.paused.set()
        first = _one(runtime, "kube-scheduler")
        runtime.stop(first.id)
        stopped = runtime.container(first.id)
        assert stopped is not None and stopped.state == "exited" and not stopped.running
        assert stopped.started_at == first.started_at
        assert "kube-scheduler" not in {c.container_name for c in runtime.containers()}
        assert first.id in {c.id for c in runtime.containers(include_stopped=True)}
        runtime.stop(first.id)  # already stopped: not an error
        runtime.remove(first.id)
        assert runtime.container(first.id) is None
        runtime.remove(first.id)  # already gone: not an error
        runtime.stop(first.id)
        kubelet.paused.clear()
        again = wait_for("the next attempt", lambda: [c for c in runtime.containers()
                                                      if c.container_name == "kube-scheduler"])
        # With no container left, the kubelet counts attempts from the pod's log directory.
        assert again[0].id != first.id and again[0].attempt == 1


# --------------------------------------------------------------------------------------
# Restarting


def test_cri_method_restarts_a_stale_scheduler(containerd: Containerd, runtime: CRIRuntime, node: Node) -> None:
    """scheduler.conf rewritten after the start: detected, planned, stopped, next attempt started, verified."""
    with CRIKubelet(containerd, [SCHEDULER, CONTROLLER_MANAGER]) as kubelet:
        first = _one(runtime, "kube-scheduler")
        touch_later(node.root / "etc/kubernetes/scheduler.conf")
        found = detect(node, observer=runtime)
        assert [(s.component, s.kind, s.restart_needed) for s in found.stale] == [
            (Component.KUBE_SCHEDULER, StaleKind.STARTED_BEFORE_WRITE, True)]
        plan = plan_restarts(node, FromDetection(observer=runtime), method="cri")
        assert [(s.component, s.action, s.method) for s in plan.steps] == [
            (Component.KUBE_SCHEDULER, Action.RESTART, Method.CRI)]
        assert "by stopping its container" in apply_restarts(plan, dry_run=True).outcomes[0].messages[0]
        heard: list[str] = []
        report = apply_restarts(plan, runtime=runtime, observer=runtime, timeout=FAST,
                                progress=lambda _step, message: heard.append(message))
        assert report.ok, report.table()
        outcome = report.outcomes[0]
        assert outcome.status is StepStatus.DONE
        now = _one(runtime, "kube-scheduler")
        assert now.id != first.id and now.attempt == 1 and kubelet.attempts["kube-scheduler-cp1"] == 1
        assert now.started_at is not None and first.started_at is not None and now.started_at > first.started_at
        assert outcome.before == first.started_at and outcome.after == now.started_at
        # Stopped gracefully, then removed: no exited container is left to feed the kubelet's back-off.
        assert runtime.container(first.id) is None
        assert any(m.startswith("stopping container k8s_kube-scheduler_kube-scheduler-cp1") for m in heard)
        assert any(m.startswith("removing container k8s_kube-scheduler_kube-scheduler-cp1") for m in heard)
        assert report.verification is not None and report.verification.stale == ()
        assert kubelet.attempts["kube-controller-manager-cp1"] == 0


def test_cri_restarts_in_a_row_do_not_feed_the_kubelets_back_off(
        containerd: Containerd, runtime: CRIRuntime, node: Node) -> None:
    """Three cri restarts in a row under a kubelet that backs off like the real one: none is held back
    beyond the moment its stopped container is removed.

    The test kubelet applies CrashLoopBackOff to exited containers (30 s, doubling); the start
    timeout is shorter, so a restart that left an exited container behind would fail. A kubelet
    sync that falls between the stop and the removal (milliseconds; longer on a loaded machine)
    may see the exited container once and hold that start back until the removal, as the real
    kubelet would until its next PLEG event: counted, but it must not cost the restart its start.
    """
    with CRIKubelet(containerd, [SCHEDULER], backoff=30) as kubelet:
        seen = {_one(runtime, "kube-scheduler").id}
        for _ in range(3):
            plan = plan_restarts(node, Changed(["scheduler.conf"]), method="cri")
            report = apply_restarts(plan, runtime=runtime, observer=runtime, timeout=FAST, take_backup=False)
            assert report.ok, report.table()
            seen.add(_one(runtime, "kube-scheduler").id)
        assert len(seen) == 4  # each restart started a new container within FAST.start, under the 30 s back-off
        assert kubelet.attempts["kube-scheduler-cp1"] == 3
        current = _one(runtime, "kube-scheduler").id
        assert [c for c in seen - {current} if runtime.container(c) is not None] == []  # no exited one is left


def test_stopping_without_removing_feeds_the_back_off(containerd: Containerd, runtime: CRIRuntime) -> None:
    """Negative control: two plain stops in a row leave exited containers, and the second start is held back."""
    with CRIKubelet(containerd, [SCHEDULER], backoff=30) as kubelet:
        first = _one(runtime, "kube-scheduler")
        runtime.stop(first.id, timeout=1)
        second = wait_for("the first restart", lambda: [c for c in runtime.containers()
                                                        if c.container_name == "kube-scheduler"])[0]
        assert second.id != first.id and kubelet.held_back == {}
        runtime.stop(second.id, timeout=1)
        wait_for("the back-off to hold the next start", lambda: kubelet.held_back.get("kube-scheduler-cp1"))
        assert "kube-scheduler" not in {c.container_name for c in runtime.containers()}


def test_cri_method_waits_for_a_component_in_the_kubelets_back_off(
        containerd: Containerd, runtime: CRIRuntime, node: Node) -> None:
    """A scheduler that exited by itself and sits in the kubelet's back-off is waited for, not given up on;
    the container the kubelet then starts reads the renewed file, so nothing is stopped.

    Negative control: test_cri_method_without_a_container_fails (a component never run here still fails).
    """
    with CRIKubelet(containerd, [SCHEDULER], backoff=3) as kubelet:
        first = _one(runtime, "kube-scheduler")
        runtime.stop(first.id, timeout=1)  # the first exit restarts at once and arms the back-off
        second = wait_for("the first restart", lambda: [c for c in runtime.containers()
                                                        if c.container_name == "kube-scheduler"])[0]
        runtime.stop(second.id, timeout=1)  # as leader election lost while kube-apiserver restarted
        wait_for("the back-off to hold the next start", lambda: kubelet.held_back.get("kube-scheduler-cp1"))
        touch_later(node.root / "etc/kubernetes/scheduler.conf")
        plan = plan_restarts(node, Changed(["scheduler.conf"]), method="cri")
        report = apply_restarts(plan, runtime=runtime, observer=runtime, timeout=FAST, take_backup=False)
        assert report.ok, report.table()
        messages = report.outcomes[0].messages
        assert any("waiting for the kubelet to start the next one" in m for m in messages)
        assert any(m.endswith("nothing to stop") for m in messages)
        assert not any(m.startswith("stopping container") for m in messages)
        third = _one(runtime, "kube-scheduler")
        assert third.id not in (first.id, second.id) and kubelet.attempts["kube-scheduler-cp1"] == 2


def test_cri_method_fails_when_the_kubelet_does_not_start_the_next_attempt(
        containerd: Containerd, runtime: CRIRuntime, node: Node) -> None:
    """No next attempt: the step times out naming what it waited for, and later steps do not run."""
    with CRIKubelet(containerd, [SCHEDULER]) as kubelet:
        kubelet.paused.set()
        plan = plan_restarts(node, Changed(["scheduler.conf", "kubelet.conf"]), method="cri")
        report = apply_restarts(plan, runtime=runtime, observer=runtime,
                                timeout=Timeouts(stop=1, start=1, serve=1, poll=0.05))
        assert [o.status for o in report.outcomes] == [StepStatus.FAILED, StepStatus.NOT_RUN]
        assert "timed out after 1s waiting for a new kube-scheduler container" in (report.outcomes[0].error or "")


def test_cri_method_without_a_container_fails(containerd: Containerd, runtime: CRIRuntime, node: Node) -> None:
    """A component with no running container cannot be restarted this way; the report says where it looked."""
    plan = plan_restarts(node, Changed(["controller-manager.conf"]), method="cri")
    report = apply_restarts(plan, runtime=runtime, observer=runtime, timeout=FAST)
    assert report.outcomes[0].status is StepStatus.FAILED
    assert "no running kube-controller-manager container found in containerd" in (report.outcomes[0].error or "")


def test_cli_apply_with_cri(containerd: Containerd, node: Node, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki restarts apply --method cri --runtime-endpoint ... --apply` restarts and verifies; exit 0."""
    # As in a pod without hostPID: a /proc with no processes, so only the CRI shows the components
    # (and no scheduler another test runs on this machine is taken for ours).
    proc = tmp_path / "proc"
    proc.mkdir()
    for name in ("stat", "uptime"):
        (proc / name).write_text(Path("/proc", name).read_text())
    with CRIKubelet(containerd, [SCHEDULER]) as kubelet:
        code = main(["restarts", "apply", "--root", str(node.root), "--changed", "scheduler.conf", "--method", "cri",
                     "--runtime-endpoint", containerd.endpoint, "--proc", str(proc), "--apply", "--timeout", "20",
                     "-o", "json"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert json.loads(out)["outcomes"][0]["status"] == "done"
        assert kubelet.attempts["kube-scheduler-cp1"] == 1


def test_cli_cri_without_a_socket_exits_2(node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A runtime endpoint with no socket is reported in one line naming it, exit 2, no traceback."""
    code = main(["restarts", "apply", "--root", str(node.root), "--changed", "scheduler.conf", "--method", "cri",
                 "--runtime-endpoint", f"unix://{tmp_path}/absent.sock", "--apply"])
    err = capsys.readouterr().err
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("kubepki: error: ")
    assert last.endswith(f"no container runtime socket at {tmp_path}/absent.sock: "
                         "is the container runtime running, and is the socket mounted here?")
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------
# Errors: every gRPC failure becomes one clear RestartError naming the socket


def test_wrong_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    """A socket that does not exist: RestartError naming it, with .path, and no gRPC exception."""
    rt = CRIRuntime(tmp_path / "containerd.sock")
    with pytest.raises(RestartError, match=r"^no container runtime socket at .*/containerd\.sock: is containerd "
                                           r"running, and is the socket mounted here\?$") as info:
        rt.version()
    assert info.value.path == str(tmp_path / "containerd.sock")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    """A regular file where the socket should be is named as not a socket."""
    (tmp_path / "crio.sock").write_text("")
    with pytest.raises(RestartError, match=r"crio\.sock is not a socket"):
        CRIRuntime(tmp_path / "crio.sock").containers()


def test_a_socket_nobody_accepts_on_refuses(tmp_path: Path) -> None:
    """A socket file left by a runtime that died (bound, not listening): "refuses connections"."""
    path = tmp_path / "containerd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        with pytest.raises(RestartError, match=rf"^the container runtime at unix://{path} refuses connections "
                                               r"\(.*\); is containerd running\?$"):
            CRIRuntime(path).version()


def test_stopped_containerd_is_a_clear_error(tmp_path: Path) -> None:
    """A containerd stopped cleanly removes its socket; one killed leaves it refusing: both are one clear line."""
    if missing_tools() is not None:
        _unavailable(str(missing_tools()))
    ctrd = Containerd(tmp_path / "c")
    try:
        ctrd.start()
        rt = CRIRuntime(ctrd.endpoint)
        assert rt.version().runtime_name == "containerd"
        ctrd.pause()  # SIGTERM
        with pytest.raises(RestartError, match=r"^no container runtime socket at .*/containerd\.sock: "
                                               r"is containerd running"):
            rt.version()
        ctrd.resume()
        assert rt.version().runtime_name == "containerd"  # the same driver reconnects
        assert ctrd.proc is not None
        ctrd.proc.kill()  # SIGKILL: the socket file stays
        ctrd.proc.wait(10)
        assert ctrd.socket.exists()
        with pytest.raises(RestartError, match=r"refuses connections .*; is containerd running\?$"):
            rt.containers()
        rt.close()
    finally:
        ctrd.stop()


@pytest.fixture
def grpc_server(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start real gRPC servers on unix sockets with the given generic handlers; stopped at the end."""
    grpc = pytest.importorskip("grpc")
    servers: list[Any] = []

    def start(handlers: dict[str, Any] | None = None) -> str:
        path = tmp_path / f"server{len(servers)}.sock"
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        if handlers:
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("runtime.v1.RuntimeService",
                                                                                  handlers),))
        server.add_insecure_port(f"unix://{path}")
        server.start()
        servers.append(server)
        return f"unix://{path}"

    yield start
    for server in servers:
        server.stop(None).wait(5)


def _handler(behaviour: Callable[[Any, Any], Any]) -> Any:
    import grpc

    from kubepki.restarts.methods._cri_api import api_pb2

    return grpc.unary_unary_rpc_method_handler(behaviour, request_deserializer=api_pb2.VersionRequest.FromString,
                                               response_serializer=api_pb2.VersionResponse.SerializeToString)


def test_not_a_cri_server_is_unimplemented(grpc_server: Callable[..., str]) -> None:
    """A gRPC server without runtime.v1 (containerd with its CRI plugin disabled) is named as such."""
    endpoint = grpc_server()
    with pytest.raises(RestartError, match=r"does not serve the CRI runtime.v1 Version call: is it a CRI runtime "
                                           r"with the CRI enabled"):
        CRIRuntime(endpoint).version()


def test_a_slow_runtime_is_a_deadline(grpc_server: Callable[..., str]) -> None:
    """No answer within the timeout: "did not answer Version within 0.3s", not a gRPC exception."""
    endpoint = grpc_server({"Version": _handler(lambda _req, _ctx: time.sleep(2))})
    with pytest.raises(RestartError, match=r"did not answer Version within 0\.3s$"):
        CRIRuntime(endpoint, timeout=0.3).version()


def test_other_status_codes_keep_the_details(grpc_server: Callable[..., str]) -> None:
    """Any other status is named with its code and the server's message, on one line."""
    import grpc

    def deny(_req: Any, ctx: Any) -> Any:
        ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "not for you\nsecond line")

    endpoint = grpc_server({"Version": _handler(deny)})
    with pytest.raises(RestartError) as info:
        CRIRuntime(endpoint).version()
    assert str(info.value) == f"CRI Version on {endpoint} failed: PERMISSION_DENIED: not for you"


def test_a_good_answer_from_a_plain_grpc_server(grpc_server: Callable[..., str]) -> None:
    """Positive control for the error servers: the same server answering Version is read correctly."""
    from kubepki.restarts.methods._cri_api import api_pb2

    answer = api_pb2.VersionResponse(version="0.1.0", runtime_name="fake", runtime_version="9",
                                     runtime_api_version="v1")
    endpoint = grpc_server({"Version": _handler(lambda _req, _ctx: answer)})
    assert str(CRIRuntime(endpoint).version()) == "fake 9 (CRI v1)"


# --------------------------------------------------------------------------------------
# Auto-detection


def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    return s


@pytest.mark.parametrize(("present", "expected"), [
    (["run/containerd/containerd.sock"], ("cri", "containerd.sock")),
    (["run/crio/crio.sock"], ("cri", "crio.sock")),
    (["var/run/crio/crio.sock"], ("cri", "crio.sock")),
    (["run/cri-dockerd.sock", "run/docker.sock", "run/containerd/containerd.sock"], ("docker", "docker.sock")),
    (["run/cri-dockerd.sock", "run/containerd/containerd.sock"], ("cri", "cri-dockerd.sock")),
    (["run/docker.sock"], ("docker", "docker.sock")),
])
def test_detect_runtime_from_sockets(tmp_path: Path, present: list[str], expected: tuple[str, str]) -> None:
    """The sockets present pick the driver: containerd or CRI-O over CRI, Docker's driver for cri-dockerd."""
    sockets = [_listen(tmp_path / p) for p in present]
    try:
        rt = detect_runtime(tmp_path, host=False)
        kind, name = expected
        if kind == "docker":
            assert isinstance(rt, DockerRuntime) and rt.base_url == f"unix://{tmp_path}/run/{name}"
        else:
            assert isinstance(rt, CRIRuntime) and rt.socket.name == name and rt.socket.is_relative_to(tmp_path)
    finally:
        for s in sockets:
            s.close()


def test_detect_runtime_refuses_to_guess_and_reads_the_kubelet_config(tmp_path: Path) -> None:
    """containerd and CRI-O both there: an error naming both, unless the kubelet's config names one."""
    sockets = [_listen(tmp_path / "run/containerd/containerd.sock"), _listen(tmp_path / "run/crio/crio.sock")]
    try:
        with pytest.raises(RestartError, match=r"several container runtime sockets found: .*containerd\.sock, "
                                               r".*crio\.sock; name the kubelet's with an endpoint"):
            detect_runtime(tmp_path, host=False)
        config = tmp_path / "var/lib/kubelet/config.yaml"
        config.parent.mkdir(parents=True)
        config.write_text("kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///var/run/crio/crio.sock\n")
        rt = detect_runtime(tmp_path, host=False)
        assert isinstance(rt, CRIRuntime) and rt.socket == tmp_path / "run/crio/crio.sock"
        config.unlink()
        (config.parent / "kubeadm-flags.env").write_text(
            'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock"\n')
        rt = detect_runtime(tmp_path, host=False)
        assert isinstance(rt, CRIRuntime) and rt.socket == tmp_path / "run/containerd/containerd.sock"
        assert [s.kind for s in find_sockets(tmp_path, host=False)] == ["containerd", "cri-o"]
    finally:
        for s in sockets:
            s.close()


def test_detect_runtime_lists_what_it_looked_for(tmp_path: Path) -> None:
    """No socket at all: one error that lists every path looked at; a plain file does not count."""
    (tmp_path / "run/containerd").mkdir(parents=True)
    (tmp_path / "run/containerd/containerd.sock").write_text("not a socket")
    with pytest.raises(RestartError) as info:
        detect_runtime(tmp_path, host=False)
    message = str(info.value)
    assert message.startswith(f"no container runtime socket found under {tmp_path}: looked for ")
    for path in ("run/containerd/containerd.sock", "run/crio/crio.sock", "var/run/crio/crio.sock",
                 "run/cri-dockerd.sock", "run/docker.sock"):
        assert f"{tmp_path}/{path}" in message


def test_detected_runtime_reaches_the_real_containerd(containerd: Containerd, tmp_path: Path) -> None:
    """A node root whose containerd.sock leads to the test containerd: detected, and it answers."""
    (tmp_path / "run/containerd").mkdir(parents=True)
    (tmp_path / "run/containerd/containerd.sock").symlink_to(containerd.socket)
    rt = detect_runtime(tmp_path, host=False)
    assert isinstance(rt, CRIRuntime) and rt.name == "containerd"
    assert rt.version().runtime_name == "containerd"
    explicit = detect_runtime(tmp_path, endpoint=containerd.endpoint)
    assert isinstance(explicit, CRIRuntime) and explicit.socket == containerd.socket


# --------------------------------------------------------------------------------------
# Parsing and packaging


@pytest.mark.parametrize(("endpoint", "path"), [
    ("unix:///run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
    ("unix:/var/run/crio/crio.sock", "/var/run/crio/crio.sock"),
    ("/var/run/cri-dockerd.sock", "/var/run/cri-dockerd.sock"),
])
def test_socket_path(endpoint: str, path: str) -> None:
    """The endpoint forms the kubelet accepts on Linux name a socket file."""
    assert socket_path(endpoint) == Path(path)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:2375", "npipe:////./pipe/containerd", "run/x.sock",
                                      "unix://relative.sock"])
def test_socket_path_rejects_other_endpoints(endpoint: str) -> None:
    """TCP, named pipes and relative paths are configuration errors, not connection failures."""
    with pytest.raises(ConfigError):
        socket_path(endpoint)


@pytest.mark.parametrize(("info", "argv"), [
    ({"info": json.dumps({"runtimeSpec": {"process": {"args": ["etcd", "--name=cp1"]}},
                          "config": {"command": ["ignored"]}})}, ("etcd", "--name=cp1")),
    ({"info": json.dumps({"config": {"command": ["kube-apiserver"], "args": ["--secure-port=6443"]}})},
     ("kube-apiserver", "--secure-port=6443")),
    ({"info": "{not json"}, ()),
    ({"info": "[]"}, ()),
    ({}, ()),
])
def test_argv_from_verbose_info(info: dict[str, str], argv: tuple[str, ...]) -> None:
    """The command line comes from runtimeSpec.process.args, else the CRI config; garbage gives ()."""
    assert argv_from_info(info) == argv


def test_from_nanoseconds() -> None:
    """CRI nanosecond timestamps become UTC datetimes to the microsecond; 0 means not set."""
    assert from_nanoseconds(1_764_343_497_830_664_211) == dt.datetime(2025, 11, 28, 15, 24, 57, 830664, tzinfo=UTC)
    assert from_nanoseconds(0) is None


def test_import_kubepki_loads_no_grpc() -> None:
    """`import kubepki` and importing the CRI modules load neither grpc nor protobuf (only a call does)."""
    code = ("import sys, kubepki, kubepki.restarts.methods._cri, kubepki.restarts.methods._runtimes\n"
            "import kubepki.restarts._restarts\n"
            "bad = sorted(m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'google.protobuf')))\n"
            "print(bad)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent.parent)
    assert done.stdout.strip() == "[]"


def _after_an_earlier_exit(runtime: CRIRuntime, kubelet: CRIKubelet) -> tuple[ContainerInfo, ContainerInfo]:
    """The scheduler exited once by itself (as after a lost leader election): the kubelet restarted it at once
    and keeps the exited container, which arms its back-off. Returns (the exited one, the running one)."""
    first = _one(runtime, "kube-scheduler")
    runtime.stop(first.id, timeout=1)
    second = wait_for("the restart after the exit", lambda: [c for c in runtime.containers()
                                                             if c.container_name == "kube-scheduler"])[0]
    assert kubelet.held_back == {}
    return first, second


def test_cri_restart_removes_the_earlier_exited_containers_the_back_off_counts(
        containerd: Containerd, runtime: CRIRuntime, node: Node) -> None:
    """The kubelet backs off on any exited container of that name in the pod (doBackOff), not only the newest:
    a cri restart after an earlier exit removes that dead container too, so the next start is not held back
    (seen on the real kubelet: 60 s restarts of kube-controller-manager after leader-election exits)."""
    with CRIKubelet(containerd, [SCHEDULER], backoff=60) as kubelet:
        exited, running = _after_an_earlier_exit(runtime, kubelet)
        plan = plan_restarts(node, Changed(["scheduler.conf"]), method="cri")
        report = apply_restarts(plan, runtime=runtime, observer=runtime, timeout=FAST, take_backup=False)
        # The next container started within FAST's start timeout (20 s), well inside the 60 s back-off the
        # earlier exit armed: it was not held back. (Between kubepki's stop and its removals the kubelet may
        # poll once and see exited containers — the real kubelet logs one CrashLoopBackOff line then — so
        # kubelet.held_back is not asserted empty.)
        assert report.ok, report.table()
        assert runtime.container(exited.id) is None and runtime.container(running.id) is None
        assert any(m.startswith("removing the exited container") for m in report.outcomes[0].messages)
        assert _one(runtime, "kube-scheduler").id not in (exited.id, running.id)


def test_an_earlier_exited_container_left_behind_holds_the_next_start_back(
        containerd: Containerd, runtime: CRIRuntime) -> None:
    """Negative control: stopping and removing only the running container, with the earlier exited one left,
    and the kubelet holds the next start back."""
    with CRIKubelet(containerd, [SCHEDULER], backoff=60) as kubelet:
        exited, running = _after_an_earlier_exit(runtime, kubelet)
        runtime.stop(running.id, timeout=1)
        runtime.remove(running.id)
        assert runtime.container(exited.id) is not None
        wait_for("the back-off to hold the next start", lambda: kubelet.held_back.get("kube-scheduler-cp1"))
        assert "kube-scheduler" not in {c.container_name for c in runtime.containers()}
