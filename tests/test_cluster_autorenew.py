"""``cluster_auto_renew`` / ``kubepki cluster auto-renew`` and ``kubepki cluster restarts apply`` on real demo trees.

No component runs on a demo tree, so an applied run's restarts fail: that is the failure path,
and the run must stop at the first node that fails, judged by the files: the failed node rolled
back to its backup's bytes, every later node untouched, byte for byte. Over SSH (a real sshd per
node) the node's own kubepki does its run where its keys are: the backup is on the node.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kubepki
from kubepki import testing
from kubepki.autorenew import RunStatus
from kubepki.cli import build_parser
from kubepki.cli.autorenew import run_auto_renew as run_node_auto_renew
from kubepki.cluster import (
    Cluster,
    ClusterAutoRenewResult,
    RemoteAutoRenewReport,
    RemoteAutoRenewRequest,
    cluster_auto_renew,
)
from kubepki.errors import ConfigError
from tests import sshd
from tests._hardening import changes, run_cli, snapshot
from tests.services import reissue

UTC = dt.timezone.utc
FAST = {"timeout": 1.0, "health_wait": 0.5}


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _due_cluster(tmp_path: Path, nodes: int = 3) -> testing.DemoCluster:
    """A demo cluster whose leaves were issued 320 days ago: everything is due within 60 days."""
    return testing.build_cluster(tmp_path / "c", nodes=nodes, issued_at=_now() - dt.timedelta(days=320))


def _pki(root: Path) -> dict[str, object]:
    """Type, mode and content of every file of the kubeadm directories (a restore keeps mtimes to the
    microsecond only), the node lock's file aside."""
    return {p: (e.kind, e.mode, e.content) for p, e in snapshot(root / "etc/kubernetes").items()
            if not p.endswith(".kubepki.lock")}


def _node_args(demo: testing.DemoCluster) -> list[str]:
    return [a for n in demo.nodes for a in ("--node", f"{n.name}={n.root}")]


def test_plan_path_plans_every_node_and_writes_nothing(tmp_path: Path) -> None:
    """Without apply: every node planned (all due, their restarts named), no file of any node changed."""
    demo = _due_cluster(tmp_path)
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    result = cluster_auto_renew(Cluster([n.as_node() for n in demo.nodes]))
    assert result.ok and result.failed is None and list(result.results) == ["cp1", "cp2", "cp3"]
    for label, r in result.results.items():
        assert r.status == RunStatus.PLANNED and "apiserver" in {d.name for d in r.due}
        assert changes(before[label], snapshot(demo.node(label).root)) == []
    assert "dry run: nothing was written" in result.text()


def test_apply_stops_at_the_first_failing_node(tmp_path: Path) -> None:
    """Applied: cp1's restarts cannot succeed (no kubelet), so cp1 is rolled back to its backup's bytes and
    the run stops there; cp2 and cp3 are not touched at all (every file as it was)."""
    demo = _due_cluster(tmp_path)
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    pki_before = _pki(demo.node("cp1").root)
    empty = tmp_path / "proc"
    empty.mkdir()
    result = cluster_auto_renew(Cluster([n.as_node() for n in demo.nodes]), apply=True, proc=empty, **FAST)
    assert (result.failed, result.not_attempted) == ("cp1", ("cp2", "cp3"))
    assert list(result.results) == ["cp1"] and result.outcome.value == "failed"
    first = result.results["cp1"]
    assert first.status in (RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED) and first.backup
    cp1 = demo.node("cp1").root
    assert _pki(cp1) == pki_before  # the rollback put every byte back (the node lock's file aside)
    assert (cp1 / "var/lib/kubepki/history.jsonl").is_file()
    for label in ("cp2", "cp3"):
        assert changes(before[label], snapshot(demo.node(label).root)) == []
    doc = json.loads(result.to_json())
    assert doc["kind"] == "ClusterAutoRenewResult" and doc["not_attempted"] == ["cp2", "cp3"]


def test_a_node_with_nothing_due_lets_the_next_one_run(tmp_path: Path) -> None:
    """Control: the run stops at the first node that *fails*, not the first node. cp1 has nothing due
    (ok, nothing written), so cp2 runs and fails, and cp3 is untouched."""
    demo = testing.build_cluster(tmp_path / "c", nodes=3, issued_at=_now() - dt.timedelta(days=1))
    for label in ("cp2", "cp3"):
        root = demo.node(label).root
        reissue(root, "apiserver", "ca", now=_now() - dt.timedelta(days=340))
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    empty = tmp_path / "proc"
    empty.mkdir()
    result = cluster_auto_renew(Cluster([n.as_node() for n in demo.nodes]), apply=True, proc=empty,
                                history=None, **FAST)
    assert result.results["cp1"].status == RunStatus.NOTHING_DUE
    assert (result.failed, result.not_attempted) == ("cp2", ("cp3",))
    assert changes(before["cp1"], snapshot(demo.node("cp1").root)) == []
    assert changes(before["cp3"], snapshot(demo.node("cp3").root)) == []


def _healthcheck_client_due(tmp_path: Path) -> testing.DemoCluster:
    """Two fresh nodes whose etcd-healthcheck-client only is due: under ``minimal`` nothing restarts for it
    (etcdctl and the probes read it per run), so an applied run can succeed on a demo tree."""
    demo = testing.build_cluster(tmp_path / "c", nodes=2, issued_at=_now() - dt.timedelta(days=1))
    for n in demo.nodes:
        reissue(n.root, "etcd/healthcheck-client", "etcd/ca", now=_now() - dt.timedelta(days=340))
    return demo


def test_each_node_is_proven_before_the_next(tmp_path: Path) -> None:
    """The success path: cp1 renewed and passing ``health`` while cp2 still has its old certificate; then cp2.
    Control: a cp1 that never passes ``health`` stops the run there, cp2 untouched."""
    demo = _healthcheck_client_due(tmp_path)
    cert = "etc/kubernetes/pki/etcd/healthcheck-client.crt"
    old = {n.name: (n.root / cert).read_bytes() for n in demo.nodes}
    seen: list[tuple[str, bool]] = []

    def health(label: str, _node: kubepki.Node) -> bool:
        renewed = {n.name: (n.root / cert).read_bytes() != old[n.name] for n in demo.nodes}
        seen.append((label, renewed["cp2"]))
        return True

    result = cluster_auto_renew(Cluster([n.as_node() for n in demo.nodes]), apply=True, health=health, poll=0.01,
                                history=None, **FAST)
    assert result.ok, result.text()
    assert [r.status for r in result.results.values()] == [RunStatus.RENEWED, RunStatus.RENEWED]
    assert seen == [("cp1", False), ("cp2", True)] and list(result.healthy_after) == ["cp1", "cp2"]
    assert all((n.root / cert).read_bytes() != old[n.name] for n in demo.nodes)

    demo = _healthcheck_client_due(tmp_path / "again")
    before = snapshot(demo.node("cp2").root)
    result = cluster_auto_renew(Cluster([n.as_node() for n in demo.nodes]), apply=True, history=None,
                                health=lambda label, _node: label != "cp1", health_timeout=0.1, poll=0.01, **FAST)
    assert (result.failed, result.not_attempted) == ("cp1", ("cp2",))
    assert "not healthy within" in (result.error or "")
    assert changes(before, snapshot(demo.node("cp2").root)) == []


def test_bad_arguments_are_config_errors_before_anything(tmp_path: Path) -> None:
    demo = _due_cluster(tmp_path, nodes=2)
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    nodes = [n.as_node() for n in demo.nodes]
    for kwargs in ({"policy": "all"}, {"method": "ssh"}, {"within": dt.timedelta(0)}, {"history": "rel/h"}):
        with pytest.raises(ConfigError):
            cluster_auto_renew(nodes, apply=True, **kwargs)  # type: ignore[arg-type]
    assert all(changes(before[n.name], snapshot(n.root)) == [] for n in demo.nodes)


def test_cli_cluster_auto_renew(tmp_path: Path) -> None:
    """The command: a dry run exits 0 and writes nothing; --apply exits 2, stopped at cp1, cp2 untouched."""
    demo = _due_cluster(tmp_path, nodes=2)
    args = _node_args(demo)
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    run = run_cli(["cluster", "auto-renew", *args])
    assert run.code == 0 and "cp1" in run.out and "planned" in run.out, run
    assert all(changes(before[n.name], snapshot(n.root)) == [] for n in demo.nodes)
    empty = tmp_path / "proc"
    empty.mkdir()
    run = run_cli(["cluster", "auto-renew", *args, "--apply", "--restart-timeout", "1", "--health-wait", "0.5",
                   "--proc", str(empty), "--no-history", "-o", "json"])
    assert run.code == 2, run
    doc = json.loads(run.out)
    assert doc["failed"] == "cp1" and doc["not_attempted"] == ["cp2"]
    assert "stopped at cp1" in run.err
    assert changes(before["cp2"], snapshot(demo.node("cp2").root)) == []


def test_remote_request_is_kubepkis_own_command_line() -> None:
    """The command a node is asked to run parses with kubepki's parser as auto-renew, with every setting."""
    when = dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    request = RemoteAutoRenewRequest(root="/host", within=dt.timedelta(days=30), renew_all=True, policy="safe",
                                     method="cri", apply=True, backup_dir="/backups", history=None, now=when,
                                     options=("--timeout", "5"))
    argv = request.argv(["kubepki"])
    args = build_parser().parse_args(argv[1:])
    assert args.func is run_node_auto_renew
    assert (args.root, args.within, args.renew_all, args.policy, args.method, args.apply) == (
        "/host", dt.timedelta(days=30), True, "safe", "cri", True)
    assert (args.backup_dir, args.no_history, args.now, args.timeout, args.output) == (
        "/backups", True, when, 5.0, "json")
    dry = RemoteAutoRenewRequest(root="/", within=dt.timedelta(hours=1)).argv(["kubepki"])
    parsed = build_parser().parse_args(dry[1:])
    assert parsed.apply is False and parsed.history == str(kubepki.node.HISTORY_PATH) and not parsed.no_history


# -- over SSH -------------------------------------------------------------------------------

ssh = pytest.mark.skipif(sshd.SKIP_REASON is not None, reason=sshd.SKIP_REASON or "")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Fleet]:
    if sshd.SKIP_REASON is not None:
        pytest.skip(sshd.SKIP_REASON)
    f = sshd.start_fleet(tmp_path_factory.mktemp("sshd"), 2)
    try:
        yield f
    finally:
        f.stop()


@ssh
def test_over_ssh_each_node_runs_on_itself_and_the_first_failure_stops(fleet: sshd.Fleet, tmp_path: Path) -> None:
    """Over SSH the node's own kubepki auto-renews it: the backup is on the node (under its root), the failed
    node is rolled back to its bytes there, and the second node is untouched."""
    demo = _due_cluster(tmp_path, nodes=2)
    known = fleet.known_hosts(tmp_path / "known_hosts")
    targets = {n.name: f"ssh://root@127.0.0.1:{s.port}{n.root}" for n, s in zip(demo.nodes, fleet.servers,
                                                                                 strict=True)}
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    pki_before = _pki(demo.node("cp1").root)
    empty = tmp_path / "proc"
    empty.mkdir()
    # kubepki as the node starts it: this checkout's, whether or not it is installed
    command = ("env", f"PYTHONPATH={Path(kubepki.__file__).parents[1]}", sys.executable, "-m", "kubepki")
    with Cluster.from_targets(targets, key=fleet.client_key, known_hosts=known) as cluster:
        planned = cluster_auto_renew(cluster)  # a dry run reads each node over SSH and writes nothing
        assert planned.ok and {r.status for r in planned.results.values()} == {RunStatus.PLANNED}
        assert all(changes(before[n.name], snapshot(n.root)) == [] for n in demo.nodes)
        result = cluster_auto_renew(cluster, apply=True, proc=empty, command=command, remote_timeout=300, **FAST)
    assert isinstance(result, ClusterAutoRenewResult)
    assert (result.failed, result.not_attempted) == ("cp1", ("cp2",))
    remote = result.results["cp1"]
    assert isinstance(remote, RemoteAutoRenewReport) and remote.exit_status == 2
    assert remote.status in (RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED)
    assert shlex.split(remote.command)[:len(command) + 1] == [*command, "auto-renew"]
    cp1 = demo.node("cp1").root
    backup = str((remote.output or {})["backup"])
    assert backup.startswith(str(cp1 / "var/backups/kubepki"))  # on the node, never on this machine
    assert _pki(cp1) == pki_before
    assert changes(before["cp2"], snapshot(demo.node("cp2").root)) == []


# -- cluster restarts apply -----------------------------------------------------------------


def test_cli_cluster_restarts_apply_dry_run_restarts_nothing(tmp_path: Path) -> None:
    """A dry run: each node's plan in order, every node 'ok', no file of any node changed; its JSON has the
    plan and each node's report. Control: the plan does restart kube-scheduler on every node."""
    demo = _due_cluster(tmp_path)
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    run = run_cli(["cluster", "restarts", "apply", *_node_args(demo), "--changed", "scheduler.conf"])
    assert run.code == 0, run
    assert run.out.index("1. cp1") < run.out.index("2. cp2") < run.out.index("3. cp3")
    assert "dry run: nothing was restarted" in run.out
    run = run_cli(["cluster", "restarts", "apply", *_node_args(demo), "--changed", "scheduler.conf", "-o", "json"])
    doc = json.loads(run.out)
    assert run.code == 0 and doc["dry_run"] is True and doc["ok"] is True
    assert list(doc["reports"]) == ["cp1", "cp2", "cp3"]
    assert [[s["component"] for s in t["plan"]["steps"] if s["action"] == "restart"]
            for t in doc["plan"]["order"]] == [["kube-scheduler"]] * 3
    assert all(changes(before[n.name], snapshot(n.root)) == [] for n in demo.nodes)


def test_cli_cluster_restarts_apply_stops_at_the_first_failing_node(tmp_path: Path) -> None:
    """--apply: no kubelet restarts cp1's kube-scheduler, so the roll stops at cp1 (exit 2), its manifest put
    back; cp2 and cp3 are not touched."""
    demo = _due_cluster(tmp_path)
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    manifests = _pki(demo.node("cp1").root)
    empty = tmp_path / "proc"
    empty.mkdir()
    run = run_cli(["cluster", "restarts", "apply", *_node_args(demo), "--changed", "scheduler.conf", "--apply",
                   "--no-backup", "--proc", str(empty), "--restart-timeout", "1", "-o", "json"])
    assert run.code == 2, run
    doc = json.loads(run.out)
    assert (doc["failed"], doc["not_attempted"]) == ("cp1", ["cp2", "cp3"])
    assert "kube-scheduler" in doc["error"]
    assert _pki(demo.node("cp1").root) == manifests
    for label in ("cp2", "cp3"):
        assert changes(before[label], snapshot(demo.node(label).root)) == []


@ssh
def test_cli_cluster_restarts_apply_over_ssh_runs_on_the_node(fleet: sshd.Fleet, tmp_path: Path) -> None:
    """Over SSH the command runs `kubepki restarts apply` on each node (--remote-command): a dry run plans
    kube-scheduler there; --apply fails at cp1 (no kubelet), and cp2 is not touched."""
    demo = _due_cluster(tmp_path, nodes=2)
    known = fleet.known_hosts(tmp_path / "known_hosts")
    args = [a for n, s in zip(demo.nodes, fleet.servers, strict=True)
            for a in ("--node", f"{n.name}=ssh://root@127.0.0.1:{s.port}{n.root}")]
    args += ["--identity", str(fleet.client_key), "--known-hosts", str(known), "--remote-command",
             shlex.join(["env", f"PYTHONPATH={Path(kubepki.__file__).parents[1]}", sys.executable, "-m", "kubepki"])]
    before = {n.name: snapshot(n.root) for n in demo.nodes}
    run = run_cli(["cluster", "restarts", "apply", *args, "--changed", "scheduler.conf", "-o", "json"])
    assert run.code == 0, run
    doc = json.loads(run.out)
    remote = doc["reports"]["cp1"]
    assert remote["exit_status"] == 0 and remote["output"]["steps"][0]["component"] == "kube-scheduler"
    assert "restarts apply" in remote["command"] and "--apply" not in remote["command"]
    assert all(changes(before[n.name], snapshot(n.root)) == [] for n in demo.nodes)
    empty = tmp_path / "proc"
    empty.mkdir()
    run = run_cli(["cluster", "restarts", "apply", *args, "--changed", "scheduler.conf", "--apply", "--no-backup",
                   "--proc", str(empty), "--restart-timeout", "1", "-o", "json"])
    assert run.code == 2, run
    doc = json.loads(run.out)
    assert (doc["failed"], doc["not_attempted"]) == ("cp1", ["cp2"])
    assert changes(before["cp2"], snapshot(demo.node("cp2").root)) == []
