"""Whole clusters: three demo nodes, each served by its own sshd, inspected, renewed and rolled."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

import kubepki
from kubepki import testing
from kubepki.cli import exit_status, json_document, main
from kubepki.cluster._cluster import (
    CLUSTER_CODES,
    Cluster,
    ClusterRenewalResult,
    RemoteRestartReport,
    apply_cluster_renewal,
    apply_cluster_restarts,
    inspect_cluster,
    plan_cluster_renewal,
    plan_cluster_restarts,
    ssh_restart,
)
from kubepki.errors import ConfigError, RenewalError
from kubepki.inspection._findings import Severity
from tests import sshd
from tests.leaks import key_needles, scan_for_keys

pytestmark = pytest.mark.skipif(sshd.SKIP_REASON is not None, reason=sshd.SKIP_REASON or "")

WHEN = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
DUE = WHEN + dt.timedelta(days=340)
SHARED_FILES = ("pki/ca.crt", "pki/ca.key", "pki/front-proxy-ca.crt", "pki/front-proxy-ca.key",
                "pki/etcd/ca.crt", "pki/etcd/ca.key", "pki/sa.key", "pki/sa.pub")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Fleet]:
    """Three sshd servers, one per node, stopped with their children at the module's end."""
    f = sshd.start_fleet(tmp_path_factory.mktemp("sshd"), 3)
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def known_hosts(fleet: sshd.Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """known_hosts with the three servers' keys."""
    return fleet.known_hosts(tmp_path_factory.mktemp("kh") / "known_hosts")


Build = Callable[..., tuple[testing.DemoCluster, Cluster]]


@pytest.fixture
def build(fleet: sshd.Fleet, known_hosts: Path, tmp_path: Path) -> Iterator[Build]:
    """Build a 3-node demo under tmp_path/served and reach node i through server i over SSH."""
    made: list[Cluster] = []

    def make(**kwargs: object) -> tuple[testing.DemoCluster, Cluster]:
        options: dict[str, object] = {"nodes": 3, "issued_at": WHEN}
        options.update(kwargs)
        demo = testing.build_cluster(tmp_path / "served", **options)  # type: ignore[arg-type]
        targets = {n.name: f"ssh://root@127.0.0.1:{s.port}{n.root}"
                   for n, s in zip(demo.nodes, fleet.servers, strict=True)}
        cluster = Cluster.from_targets(targets, key=fleet.client_key, known_hosts=known_hosts)
        made.append(cluster)
        return demo, cluster

    yield make
    for cluster in made:
        cluster.close()


def digests(demo: testing.DemoCluster, rel: str) -> list[str]:
    """SHA-256 of /etc/kubernetes/<rel> on each node."""
    return [hashlib.sha256((n.root / "etc/kubernetes" / rel).read_bytes()).hexdigest() for n in demo.nodes]


# -- inspection -----------------------------------------------------------------------------


def test_mismatched_ca_is_a_critical_finding(build: Build) -> None:
    """Acceptance: a planted CA of its own on cp2 is reported as shared-mismatch, cp2 at fault."""
    _demo, cluster = build(defects=[testing.Defect(testing.DefectKind.MISMATCHED_SHARED_CA, "ca", node="cp2")])
    inv = inspect_cluster(cluster, now=WHEN)
    (finding,) = inv.findings
    assert (finding.code, finding.severity, finding.item, finding.nodes) == (
        "shared-mismatch", Severity.CRITICAL, "ca", ("cp2",))
    assert "ca.crt" in finding.message and "ca.key" in finding.message
    assert exit_status(inv) == 2
    assert inv.nodes == ("cp1", "cp2", "cp3")
    assert inv.targets["cp2"].startswith("ssh://root@127.0.0.1:")


def test_clean_cluster_has_no_cluster_findings(build: Build) -> None:
    """Negative control: identical shared material, per-node certificates: nothing to report."""
    _demo, cluster = build()
    inv = inspect_cluster(cluster, now=WHEN)
    assert inv.findings == ()
    assert inv.errors == {}
    assert exit_status(inv) == 0
    assert [label for label, _ in inv] == ["cp1", "cp2", "cp3"]
    assert inv["cp3"]["etcd-server"].facts is not None
    assert inv["cp3"]["etcd-server"].facts.common_name == "cp3"


@pytest.mark.parametrize("name", ["front-proxy-ca", "etcd-ca", "sa"])
def test_every_kind_of_shared_material_is_compared(build: Build, name: str) -> None:
    """A mismatched front-proxy CA, etcd CA or sa pair is found like the root CA."""
    _demo, cluster = build(defects=[testing.Defect(testing.DefectKind.MISMATCHED_SHARED_CA, name, node="cp3")])
    inv = inspect_cluster(cluster, now=WHEN)
    assert [(f.code, f.item, f.nodes) for f in inv.findings] == [("shared-mismatch", name, ("cp3",))]


def test_copied_node_certificate_is_reported(build: Build) -> None:
    """cp1's apiserver pair copied to cp2 gives duplicated-node-certificate naming both."""
    demo, cluster = build()
    for suffix in ("crt", "key"):
        shutil.copyfile(demo.node("cp1").path(f"/etc/kubernetes/pki/apiserver.{suffix}"),
                        demo.node("cp2").path(f"/etc/kubernetes/pki/apiserver.{suffix}"))
    inv = inspect_cluster(cluster, now=WHEN)
    dup = inv.findings_for("duplicated-node-certificate")
    assert [(f.item, f.nodes, f.severity) for f in dup] == [("apiserver", ("cp1", "cp2"), Severity.ERROR)]
    assert inv["cp2"]["apiserver"].has("missing-san")  # the copy names cp1, not cp2
    assert not inv.findings_for("shared-mismatch")


def test_missing_shared_file_is_reported(build: Build) -> None:
    """front-proxy-ca.key absent on cp3 only gives node-missing-shared for cp3."""
    demo, cluster = build()
    demo.node("cp3").path("/etc/kubernetes/pki/front-proxy-ca.key").unlink()
    inv = inspect_cluster(cluster, now=WHEN)
    assert [(f.code, f.item, f.nodes) for f in inv.findings] == [
        ("node-missing-shared", "front-proxy-ca", ("cp3",))]


def test_external_ca_everywhere_is_consistent(build: Build) -> None:
    """ca.key absent on every node (external CA) is not a finding."""
    _demo, cluster = build(external_ca=True)
    assert inspect_cluster(cluster, now=WHEN).findings == ()


def test_unreachable_node_does_not_stop_the_others(build: Build, fleet: sshd.Fleet, tmp_path: Path) -> None:
    """A node with a wrong host key is node-unreachable; the two others are inspected."""
    demo, _ = build()
    wrong = fleet.known_hosts(tmp_path / "kh-wrong", wrong=[1])
    targets = {n.name: f"ssh://root@127.0.0.1:{s.port}{n.root}" for n, s in zip(demo.nodes, fleet.servers, strict=True)}
    with Cluster.from_targets(targets, key=fleet.client_key, known_hosts=wrong) as cluster:
        inv = inspect_cluster(cluster, now=WHEN)
    assert list(inv.errors) == ["cp2"] and "host key" in inv.errors["cp2"]
    assert [(f.code, f.nodes) for f in inv.findings] == [("node-unreachable", ("cp2",))]
    assert sorted(inv.inventories) == ["cp1", "cp3"]
    assert exit_status(inv) == 2
    with pytest.raises(KeyError, match="could not be inspected"):
        inv["cp2"]


def test_views_table_json_and_html(build: Build) -> None:
    """The table has a column per node and marks the odd one; JSON and HTML carry the same."""
    _demo, cluster = build(defects=[testing.Defect(testing.DefectKind.MISMATCHED_SHARED_CA, "ca", node="cp2")])
    inv = inspect_cluster(cluster, now=WHEN)
    table = inv.table()
    header = table.splitlines()[0].split()
    assert header == ["ITEM", "SCOPE", "cp1", "cp2", "cp3"]
    ca_row = next(line for line in table.splitlines() if line.startswith("ca "))
    assert ca_row.split() == ["ca", "shared", "ok", "10y", "ok", "10y", "*", "ok", "10y"]
    assert "CRITICAL shared-mismatch" in table
    doc = json_document(inv)
    assert doc["exit_code"] == 2
    assert [n["label"] for n in doc["nodes"]] == ["cp1", "cp2", "cp3"]
    assert doc["findings"][0]["code"] == "shared-mismatch"
    assert set(doc["inventories"]) == {"cp1", "cp2", "cp3"}
    html = inv._repr_html_()
    assert all(f"<th>{n}</th>" in html for n in ("cp1", "cp2", "cp3"))
    assert "shared-mismatch" in html
    assert "outcome=failed" in repr(inv)
    assert set(CLUSTER_CODES) == {"shared-mismatch", "node-missing-shared", "duplicated-node-certificate",
                                  "node-unreachable", "shared-key-off-control-plane"}


def test_local_roots_make_a_cluster_too(tmp_path: Path) -> None:
    """Local node roots work as cluster nodes, labelled by their discovered names."""
    demo = testing.build_cluster(tmp_path / "nodes", nodes=2, issued_at=WHEN)
    inv = inspect_cluster([n.root for n in demo.nodes], now=WHEN)
    assert inv.nodes == ("cp1", "cp2")
    assert exit_status(inv) == 0
    with pytest.raises(ConfigError, match="workers"):
        inspect_cluster([n.root for n in demo.nodes], workers=0)
    with pytest.raises(ConfigError, match="unique"):
        Cluster([n.root for n in demo.nodes], labels=["a", "a"])


# -- renewal --------------------------------------------------------------------------------


def test_cluster_renewal_renews_each_node_and_keeps_shared_material(build: Build, tmp_path: Path) -> None:
    """Acceptance: every node is backed up, then renewed with its own names; CAs and sa stay identical."""
    demo, cluster = build()
    shared_before = {rel: digests(demo, rel) for rel in SHARED_FILES}
    old_keys = set().union(*(key_needles(n.root) for n in demo.nodes))
    plan = plan_cluster_renewal(cluster, now=DUE)
    assert plan.changes_anything and not plan.blockers
    assert [len(p.work) for _, p in plan] == [11, 10, 10]  # super-admin.conf on cp1 only
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plan.plans = ()  # type: ignore[misc]
    result = apply_cluster_renewal(plan, backup_dir="/var/lib/kubepki/backups", force_invalid_times=True)
    assert result.ok and result.failed is None
    assert list(result.backups) == ["cp1", "cp2", "cp3"]
    for node in demo.nodes:
        backup = result.backups[node.name]
        assert backup.on_node and kubepki.verify_backup(node.root / str(backup.path).lstrip("/")).ok
    assert result.changed["cp2"] == tuple(sorted(s.name for s in plan["cp2"].work))
    for rel in SHARED_FILES:
        before, after = shared_before[rel], digests(demo, rel)
        assert after == before and len(set(after)) == 1, rel
    after = inspect_cluster(cluster, now=DUE)
    assert after.findings == ()
    # Only what kubeadm never renews is left expiring: the kubelet's own certificates.
    expiring = {i.name for _label, inv in after for i in inv if i.status.value not in ("ok", "missing")}
    assert expiring == {"kubelet.conf", "kubelet-client-current.pem", "kubelet.crt"}
    for label in ("cp1", "cp2", "cp3"):
        etcd = after[label]["etcd-peer"]
        assert etcd.facts is not None and etcd.facts.common_name == label
        assert etcd.not_after is not None and etcd.not_after > DUE + dt.timedelta(days=300)
    new_keys = set().union(*(key_needles(n.root) for n in demo.nodes)) - old_keys
    assert len(new_keys) == 31
    assert scan_for_keys(sorted(new_keys), exclude=[tmp_path / "served"]) == []


def test_renewing_what_is_not_due_changes_nothing(build: Build) -> None:
    """With expiring_within and fresh certificates the plan writes nothing anywhere (idempotent)."""
    demo, cluster = build()
    plan = plan_cluster_renewal(cluster, expiring_within=dt.timedelta(days=30), now=WHEN)
    assert not plan.changes_anything
    before = digests(demo, "pki/apiserver.crt")
    result = apply_cluster_renewal(plan, backup_dir="/var/lib/kubepki/backups", force_invalid_times=True)
    assert result.ok and result.changed == {} and result.backups == {}
    assert digests(demo, "pki/apiserver.crt") == before
    assert "Nothing to renew" in plan.table()


def test_mismatched_shared_material_blocks_renewal(build: Build) -> None:
    """Differing CAs block applying (nothing written) unless explicitly allowed."""
    demo, cluster = build(defects=[testing.Defect(testing.DefectKind.MISMATCHED_SHARED_CA, "ca", node="cp2")])
    plan = plan_cluster_renewal(cluster, ["apiserver"], now=DUE)
    assert [f.code for f in plan.blockers] == ["shared-mismatch"]
    assert exit_status(plan) == 2
    before = digests(demo, "pki/apiserver.crt")
    with pytest.raises(RenewalError, match="refusing to renew"):
        apply_cluster_renewal(plan, backup_dir="/var/lib/kubepki/backups", force_invalid_times=True)
    assert digests(demo, "pki/apiserver.crt") == before
    result = apply_cluster_renewal(plan, take_backup=False, allow_shared_mismatch=True,
                                   force_invalid_times=True)
    assert result.ok and set(result.changed) == {"cp1", "cp2", "cp3"}


def test_renewal_stops_at_the_first_failing_node(build: Build) -> None:
    """A node changed since planning stops the run there: earlier nodes done, later ones untouched."""
    demo, cluster = build()
    plan = plan_cluster_renewal(cluster, ["front-proxy-client"], now=DUE)
    cp2 = demo.node("cp2").path("/etc/kubernetes/pki/front-proxy-client.crt")
    cp2.write_bytes(cp2.read_bytes() + b"\n")
    before = digests(demo, "pki/front-proxy-client.crt")
    result = apply_cluster_renewal(plan, backup_dir="/var/lib/kubepki/backups", force_invalid_times=True)
    assert (result.failed, result.phase, result.not_attempted) == ("cp2", "renewal", ("cp3",))
    assert "changed since the plan" in (result.error or "")
    assert list(result.backups) == ["cp1", "cp2", "cp3"]  # every node backed up first
    after = digests(demo, "pki/front-proxy-client.crt")
    assert (after[0] != before[0], after[1:]) == (True, before[1:])
    assert exit_status(result) == 2 and not result.ok
    assert "FAILED (renewal)" in result.table()
    with pytest.raises(RenewalError, match="stopped at cp2"):
        result.raise_for_failure()


def test_failed_backup_renews_nothing(build: Build) -> None:
    """When one node's backup cannot be written, no node is renewed."""
    demo, cluster = build()
    blocker = demo.node("cp3").path("/var/lib/kubepki")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the backup directory should be")
    plan = plan_cluster_renewal(cluster, ["apiserver"], now=DUE)
    before = digests(demo, "pki/apiserver.crt")
    result = apply_cluster_renewal(plan, backup_dir="/var/lib/kubepki/backups", force_invalid_times=True)
    assert (result.failed, result.phase, result.results) == ("cp3", "backup", {})
    assert digests(demo, "pki/apiserver.crt") == before


def test_cluster_plan_views(build: Build) -> None:
    """The cluster plan prints one column per node and serialises every node's plan."""
    _demo, cluster = build()
    plan = plan_cluster_renewal(cluster, ["apiserver", "admin.conf"], now=DUE)
    table = plan.table()
    assert table.splitlines()[2].split() == ["ITEM", "cp1", "cp2", "cp3"]
    assert "apiserver" in table and "renew" in table
    doc = json.loads(plan.to_json())
    assert doc["changes_anything"] is True
    assert set(doc["plans"]) == {"cp1", "cp2", "cp3"}
    assert "cp1" in repr(plan)


# -- restarts -------------------------------------------------------------------------------


def _renewed(cluster: Cluster, names: tuple[str, ...]) -> ClusterRenewalResult:
    """A ClusterRenewalResult naming ``names`` on every node (as apply_cluster_renewal returns)."""
    plan = plan_cluster_renewal(cluster, list(names), now=DUE)
    return apply_cluster_renewal(plan, take_backup=False, force_invalid_times=True)


def test_rolling_restart_plan_goes_one_node_at_a_time(build: Build) -> None:
    """Acceptance: the plan orders the nodes one at a time, in the cluster's stable order."""
    _demo, cluster = build()
    result = _renewed(cluster, ("apiserver-etcd-client", "etcd-server"))
    plan = plan_cluster_restarts(cluster, result)
    assert plan.nodes == ("cp1", "cp2", "cp3")
    assert [turn.position for turn in plan] == [1, 2, 3]
    for turn in plan:
        components = {s.component.value for s in turn.plan.restarts}
        assert components >= {"etcd", "kube-apiserver"}, turn.label
    text = plan.table()
    assert text.index("1. cp1") < text.index("2. cp2") < text.index("3. cp3")
    assert "then wait until cp1 is healthy" in text
    again = plan_cluster_restarts(cluster, {"cp3": ["etcd-server"], "cp1": ["etcd-server"]})
    assert again.nodes == ("cp1", "cp2", "cp3") and not list(again.order[1].plan.restarts)
    reordered = plan_cluster_restarts(cluster, ["etcd-server"], order=["cp3", "cp1", "cp2"])
    assert reordered.nodes == ("cp3", "cp1", "cp2")
    with pytest.raises(ConfigError, match="every node once"):
        plan_cluster_restarts(cluster, ["etcd-server"], order=["cp1", "cp2"])
    assert json.loads(plan.to_json())["order"][0]["node"] == "cp1"


def test_rolling_restart_waits_for_health_and_stops_at_first_failure(build: Build) -> None:
    """Nodes restart only once the previous is healthy; an unhealthy one stops the roll (dry-run: no kubelet)."""
    _demo, cluster = build()
    plan = plan_cluster_restarts(cluster, ["apiserver"])
    events: list[str] = []

    def restart(node_plan: kubepki.RestartPlan, node: kubepki.Node) -> kubepki.RestartReport:
        label = cluster.label(node)
        events.append(f"restart {label}")
        return kubepki.apply_restarts(node_plan, node=node, dry_run=True)

    def healthy(label: str, _node: kubepki.Node) -> bool:
        events.append(f"health {label}")
        return True

    report = apply_cluster_restarts(plan, health=healthy, dry_run=False, restart=restart, poll=0.01)
    assert report.ok and list(report.reports) == ["cp1", "cp2", "cp3"]
    assert events == ["restart cp1", "health cp1", "restart cp2", "health cp2", "restart cp3", "health cp3"]

    events.clear()

    def cp2_never_healthy(label: str, _node: kubepki.Node) -> bool:
        events.append(f"health {label}")
        return label != "cp2"

    report = apply_cluster_restarts(plan, health=cp2_never_healthy, dry_run=False, restart=restart,
                                    poll=0.01, health_timeout=0.1)
    assert (report.failed, report.not_attempted) == ("cp2", ("cp3",))
    assert "not healthy within" in (report.error or "")
    assert "restart cp3" not in events
    assert exit_status(report) == 2


def test_rolling_restart_over_ssh_runs_kubepki_on_each_node(build: Build, tmp_path: Path) -> None:
    """Over SSH kubepki restarts each node on the node itself; the first failure (no kubelet here) stops the roll."""
    demo, cluster = build()
    plan = plan_cluster_restarts(cluster, ["scheduler.conf"])
    command = (sys.executable, "-m", "kubepki")
    calls: list[str] = []

    def healthy(label: str, _node: kubepki.Node) -> bool:
        calls.append(label)
        return True

    dry = apply_cluster_restarts(plan, health=healthy, restart=ssh_restart(command, dry_run=True))
    assert dry.ok and list(dry.reports) == ["cp1", "cp2", "cp3"] and calls == []
    first = dry.reports["cp1"]
    assert isinstance(first, RemoteRestartReport) and first.output is not None
    assert first.output["steps"][0]["component"] == "kube-scheduler"
    assert str(demo.node("cp1").root) in first.command

    empty_proc = tmp_path / "proc"
    empty_proc.mkdir()
    run = ssh_restart(command, dry_run=False, timeout=120,
                      options=("--proc", str(empty_proc), "--timeout", "1", "--no-backup"))
    report = apply_cluster_restarts(plan, health=healthy, dry_run=False, restart=run, poll=0.01)
    assert (report.failed, report.not_attempted) == ("cp1", ("cp2", "cp3"))
    assert "kube-scheduler" in (report.error or "")
    assert calls == []
    for node in demo.nodes:  # the manifest method always puts the manifest back
        assert node.path("/etc/kubernetes/manifests/kube-scheduler.yaml").is_file()
    assert json.loads(report.to_json())["reports"]["cp1"]["exit_status"] == 2


# -- the command line -----------------------------------------------------------------------


def _node_args(demo: testing.DemoCluster, fleet: sshd.Fleet, known_hosts: Path) -> list[str]:
    args = []
    for node, server in zip(demo.nodes, fleet.servers, strict=True):
        args += ["--node", f"{node.name}=ssh://root@127.0.0.1:{server.port}{node.root}"]
    return [*args, "--identity", str(fleet.client_key), "--known-hosts", str(known_hosts)]


def test_cli_cluster_check(build: Build, fleet: sshd.Fleet, known_hosts: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki cluster check` over SSH: exit 2 and the finding for a mismatched CA, JSON on request."""
    demo, _ = build(defects=[testing.Defect(testing.DefectKind.MISMATCHED_SHARED_CA, "etcd-ca", node="cp1")])
    args = _node_args(demo, fleet, known_hosts)
    code = main(["cluster", "check", *args, "--now", "2026-11-28T00:00:00Z"])
    out = capsys.readouterr().out
    assert code == 2
    assert "shared-mismatch" in out and out.splitlines()[0].split()[2:] == ["cp1", "cp2", "cp3"]
    code = main(["cluster", "check", *args, "--now", "2026-11-28T00:00:00Z", "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and doc["findings"][0]["nodes"] == ["cp1"]


def test_cli_cluster_renew_plan_then_apply(build: Build, fleet: sshd.Fleet, known_hosts: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki cluster renew` shows the plan; --apply backs up and renews every node over SSH."""
    demo, _ = build(issued_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=350))
    args = _node_args(demo, fleet, known_hosts)
    before = digests(demo, "pki/apiserver.crt")
    assert main(["cluster", "renew", "apiserver", *args, "--expiring-within", "30d"]) == 0
    assert "renew" in capsys.readouterr().out
    assert digests(demo, "pki/apiserver.crt") == before
    assert main(["cluster", "renew", "apiserver", *args, "--expiring-within", "30d", "--apply", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and set(doc["backups"]) == {"cp1", "cp2", "cp3"}
    after = digests(demo, "pki/apiserver.crt")
    assert all(a != b for a, b in zip(after, before, strict=True))
    for node in demo.nodes:
        assert list(node.path("/var/backups/kubepki").glob("kubepki-backup-*.tar.gz"))
    assert main(["cluster", "renew", "apiserver", *args, "--expiring-within", "30d"]) == 0
    assert "Nothing to renew on any node" in capsys.readouterr().out


def test_cli_cluster_restarts_plan(build: Build, fleet: sshd.Fleet, known_hosts: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki cluster restarts plan --from-renewal` reads the renewal JSON and rolls node by node."""
    demo, cluster = build()
    result = _renewed(cluster, ("scheduler.conf",))
    saved = tmp_path / "renewal.json"
    saved.write_text(result.to_json())
    args = _node_args(demo, fleet, known_hosts)
    assert main(["cluster", "restarts", "plan", *args, "--from-renewal", str(saved)]) == 0
    out = capsys.readouterr().out
    assert out.index("1. cp1") < out.index("2. cp2") < out.index("3. cp3")
    assert "kube-scheduler" in out


def test_cli_refuses_bad_node_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A --node that is neither ssh:// nor a directory is a usage error (exit 3)."""
    assert main(["cluster", "check", "--node", f"cp1={tmp_path / 'absent'}"]) == 3
    assert "neither an ssh:// URL nor a directory" in capsys.readouterr().err


def test_labels_of_local_nodes_do_not_depend_on_what_ran_before(tmp_path: Path) -> None:
    """Two Clusters of the same local roots label them alike (the nodes' own names), whether or not
    discovery ran first, so a renewal result planned on one feeds the restarts planned on the other."""
    demo = kubepki.testing.build_cluster(tmp_path / "c", nodes=["cp1", "cp2"])
    roots = [str(n.root) for n in demo.nodes]
    fresh = kubepki.Cluster(roots).labels
    result = kubepki.apply_cluster_renewal(kubepki.plan_cluster_renewal(roots, "front-proxy-client"),
                                           take_backup=False)
    assert fresh == kubepki.Cluster(roots).labels == tuple(result.results) == ("cp1", "cp2")
    plan = kubepki.plan_cluster_restarts(roots, result, method="manifest")
    assert [t.label for t in plan.order] == ["cp1", "cp2"]
    # negative control: labels given explicitly are kept, and a result for other labels is refused
    with pytest.raises(kubepki.ConfigError, match="no node 'cp1'"):
        kubepki.plan_cluster_restarts(kubepki.Cluster(roots, labels=["a", "b"]), result)
