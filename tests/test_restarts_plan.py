"""Restart planning: policies from the catalog, sources, the plan value, dry runs and the CLI.

Nothing here starts a process; the tests that restart real processes are in
test_restarts_manifest.py and test_restarts_docker.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import attrs
import pytest

import kubepki
from kubepki import catalog
from kubepki._report import Outcome, Report
from kubepki.catalog import Component, Reload
from kubepki.cli import main
from kubepki.cli._exit import exit_status
from kubepki.errors import ConfigError, RestartError, UnknownItemError
from kubepki.node._node import Node
from kubepki.restarts._observe import COMPONENT_ORDER
from kubepki.restarts._restarts import (
    Action,
    Changed,
    Detection,
    FromRenewal,
    Method,
    Policy,
    RestartPlan,
    RestartReport,
    StepOutcome,
    StepStatus,
    action_for,
    apply_restarts,
    plan_restarts,
    systemctl_restart_kubelet,
)
from kubepki.restarts._served import CheckStatus, ServedCertificate, ServedCheck, ServedStatus
from kubepki.restarts.methods import kubelet_method
from tests.kubeadm_trees import materialize

UTC = dt.timezone.utc
ISSUED = dt.datetime(2026, 1, 1, tzinfo=UTC)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "restarts.md"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Node:
    """A kubeadm 1.34 demo node with manifests (read only in this module)."""
    return kubepki.testing.build_node(tmp_path_factory.mktemp("demo"), issued_at=ISSUED).as_node()


def _daemon_consumers(name: str) -> list[catalog.Consumer]:
    return [c for c in catalog.get(name).consumers if c.component.is_daemon]


def _expected(name: str, policy: Policy, version: kubepki.KubeVersion) -> dict[Component, Action]:
    """What the issue asks for, straight from the catalog, per daemon."""
    out: dict[Component, Action] = {}
    for c in _daemon_consumers(name):
        reload = c.reload_for(version)
        if reload is Reload.KUBELET_MANAGED:
            action = Action.RESTART if name == "kubelet.conf" else None
        elif policy is Policy.SAFE or reload is Reload.RESTART:
            action = Action.RESTART
        elif reload.pickup_delay is not None:
            action = Action.WAIT  # picked up by itself within a known delay: waited for
        else:
            action = Action.VERIFY
        if action is None:
            continue
        rank = [Action.VERIFY, Action.WAIT, Action.RESTART]
        if c.component not in out or rank.index(action) > rank.index(out[c.component]):
            out[c.component] = action
    return out


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize("name", catalog.names())
def test_each_catalog_item_restarts_what_the_catalog_says(demo: Node, name: str, policy: Policy) -> None:
    """Every daemon consumer restarts (safe) or restarts only if it reads once (minimal)."""
    plan = plan_restarts(demo, Changed([name]), policy=policy)
    got = {s.component: s.action for s in plan.steps if s.action is not Action.NOTE}
    assert got == _expected(name, policy, demo.profile.kubernetes_version)
    for step in plan.steps:
        assert step.names == (name,)
        assert step.node == "cp1"
        if step.action is Action.RESTART:
            assert step.method is (kubelet_method(demo)[0] if step.component is Component.KUBELET
                                   else Method.MANIFEST)
        else:
            assert step.method is Method.NONE


def test_steps_follow_the_restart_order(demo: Node) -> None:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet — whatever the input order."""
    changed = ["kubelet.crt", "scheduler.conf", "controller-manager.conf", "apiserver", "etcd-ca"]
    plan = plan_restarts(demo, Changed(changed))
    assert [s.component for s in plan.restarts] == list(COMPONENT_ORDER)
    assert plan.changed == tuple(changed)


def test_reasons_name_the_files_and_flags(demo: Node) -> None:
    """A step lists the artifact, the consumer flag, the reload mode and the node paths."""
    plan = plan_restarts(demo, Changed(["front-proxy-client"]))
    (step,) = plan.steps
    (reason,) = step.reasons
    assert (reason.name, reason.flag, reason.reload) == (
        "front-proxy-client", "--proxy-client-cert-file", Reload.HOT_FSNOTIFY)
    assert reason.paths == ("/etc/kubernetes/pki/front-proxy-client.crt",
                            "/etc/kubernetes/pki/front-proxy-client.key")
    assert "front-proxy-client: --proxy-client-cert-file (hot-fsnotify)" in step.describe()


def test_per_invocation_files_only_note(demo: Node) -> None:
    """admin.conf restarts nothing; the note says to refresh ~/.kube/config."""
    plan = plan_restarts(demo, Changed(["admin.conf", "super-admin.conf"]))
    assert not plan.restarts and not plan.verifies
    kubectl = next(s for s in plan.steps if s.component is Component.KUBECTL)
    assert kubectl.action is Action.NOTE
    assert "~/.kube/config" in kubectl.note


def test_kubelet_conf_restarts_kubelet_but_rotation_does_not(demo: Node) -> None:
    """kubelet.conf itself restarts the kubelet through systemd; its rotated PEM is only a note."""
    plan = plan_restarts(demo, Changed(["kubelet.conf"]), policy="minimal")
    assert [(s.component, s.action, s.method) for s in plan.steps] == [
        (Component.KUBELET, Action.RESTART, kubelet_method(demo)[0])]
    plan = plan_restarts(demo, Changed(["kubelet-client-current.pem"]))
    assert [(s.component, s.action) for s in plan.steps] == [(Component.KUBELET, Action.NOTE)]


@pytest.mark.parametrize("ca", ["ca", "front-proxy-ca", "etcd-ca", "sa"])
def test_ca_change_restarts_every_consumer_and_notes_it(demo: Node, ca: str) -> None:
    """A CA or sa change restarts every daemon consumer (safe) and says what else must follow."""
    plan = plan_restarts(demo, Changed([ca]))
    assert {s.component for s in plan.restarts} == {c.component for c in _daemon_consumers(ca)}
    assert plan.notes
    if ca == "ca":
        assert "controller-manager.conf" in plan.notes[0] and "embed ca.crt" in plan.notes[0]


def test_minimal_keeps_restart_only_consumers(demo: Node) -> None:
    """Under minimal, ca restarts kube-controller-manager (--root-ca-file) and verifies the rest."""
    plan = plan_restarts(demo, Changed(["ca"]), policy=Policy.MINIMAL)
    actions = {s.component: s.action for s in plan.steps}
    assert actions == {Component.KUBE_APISERVER: Action.VERIFY, Component.KUBE_CONTROLLER_MANAGER: Action.RESTART,
                       Component.KUBELET: Action.VERIFY}
    kcm = plan.step("kube-controller-manager")
    assert kcm is not None
    assert {r.reload for r in kcm.reasons} == {Reload.RESTART, Reload.HOT_FSNOTIFY}


@pytest.mark.parametrize(("reload", "name", "policy", "expected"), [
    (Reload.RESTART, "sa", "minimal", Action.RESTART),
    (Reload.HOT_HANDSHAKE, "etcd-server", "minimal", Action.VERIFY),
    (Reload.HOT_HANDSHAKE, "etcd-server", "safe", Action.RESTART),
    (Reload.HOT_FSNOTIFY, "apiserver", "minimal", Action.VERIFY),
    (Reload.KUBELET_MANAGED, "kubelet.conf", "minimal", Action.RESTART),
    (Reload.KUBELET_MANAGED, "kubelet-client-current.pem", "safe", Action.NOTE),
    (Reload.PER_INVOCATION, "admin.conf", "safe", Action.NOTE),
])
def test_action_for(reload: Reload, name: str, policy: str, expected: Action) -> None:
    """The decision table in one function."""
    comp = Component.KUBELET if name.startswith("kubelet") else Component.KUBE_APISERVER
    assert action_for(comp, reload, name, policy) is expected


def test_proven_staleness_restarts_even_under_minimal() -> None:
    """A served mismatch proves no hot reload happened: restart."""
    assert action_for(Component.ETCD, Reload.HOT_HANDSHAKE, "etcd-server", "minimal", proven=True) is Action.RESTART
    assert action_for(Component.KUBECTL, Reload.PER_INVOCATION, "admin.conf", "minimal", proven=True) is Action.NOTE


def test_docker_method(demo: Node) -> None:
    """With method docker, static pods restart through the runtime and the kubelet by its own node's method."""
    plan = plan_restarts(demo, Changed(["scheduler.conf", "kubelet.conf"]), method="docker")
    assert [(s.component, s.method) for s in plan.restarts] == [
        (Component.KUBE_SCHEDULER, Method.DOCKER), (Component.KUBELET, kubelet_method(demo)[0])]


@pytest.mark.parametrize("source", [None, ["ca"], "ca", {"changed": ["ca"]}])
def test_exactly_one_typed_source(demo: Node, source: object) -> None:
    """Anything but a Changed, FromRenewal or FromDetection is a ConfigError (negative control: Changed works)."""
    with pytest.raises(ConfigError, match="needs a Changed, FromRenewal or FromDetection source"):
        plan_restarts(demo, source)  # type: ignore[arg-type]
    assert plan_restarts(demo, Changed(["ca"])).changed == ("ca",)


def test_bad_arguments(demo: Node) -> None:
    """Unknown names, policies and methods are refused with the known values listed."""
    with pytest.raises(UnknownItemError, match="front-proxy-client"):
        plan_restarts(demo, Changed(["front-proxy"]))
    with pytest.raises(ConfigError, match="safe, minimal"):
        plan_restarts(demo, Changed(["ca"]), policy="eager")
    with pytest.raises(ConfigError, match="manifest, docker"):
        plan_restarts(demo, Changed(["ca"]), method="systemd")
    with pytest.raises(ConfigError, match="timezone-aware"):
        plan_restarts(demo, Changed(["ca"]), now=dt.datetime(2026, 1, 1))


@attrs.frozen
class _Result:
    """The shape of a renewal result as kubepki.renewal._renewal's RenewalResult has it."""

    changed: tuple[str, ...]
    files: tuple[str, ...] = ()
    node_name: str | None = None


def test_from_renewal_object_mapping_and_json_file(demo: Node, tmp_path: Path) -> None:
    """A renewal result object, its mapping and its JSON file give the same plan."""
    result = _Result(changed=("apiserver-etcd-client", "admin.conf"), node_name="cp1")
    a = plan_restarts(demo, FromRenewal(result), now=ISSUED)
    b = plan_restarts(demo, FromRenewal({"changed": list(result.changed), "node": "cp1"}), now=ISSUED)
    path = tmp_path / "renewal.json"
    path.write_text(json.dumps({"kind": "RenewalResult", "node": "cp1", "changed": list(result.changed),
                                "files": []}))
    c = plan_restarts(demo, FromRenewal(str(path)), now=ISSUED)
    assert a.steps == b.steps == c.steps
    assert a.source == "renewal"
    assert [s.component for s in a.restarts] == [Component.KUBE_APISERVER]


def test_renewal_files_map_to_catalog_names(demo: Node) -> None:
    """Written files not listed under changed still count, by their catalog path."""
    plan = plan_restarts(demo, FromRenewal(_Result(changed=(), files=("/etc/kubernetes/scheduler.conf",))))
    assert plan.changed == ("scheduler.conf",)
    assert [s.component for s in plan.restarts] == [Component.KUBE_SCHEDULER]


def test_renewal_for_another_node_or_malformed_is_refused(demo: Node, tmp_path: Path) -> None:
    """A result for cp2 cannot plan cp1's restarts; broken JSON files are ConfigErrors."""
    with pytest.raises(ConfigError, match="cp2"):
        plan_restarts(demo, FromRenewal(_Result(changed=("ca",), node_name="cp2")))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        plan_restarts(demo, FromRenewal(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        plan_restarts(demo, FromRenewal(tmp_path / "absent.json"))
    with pytest.raises(ConfigError, match="list of catalog names"):
        plan_restarts(demo, FromRenewal({"changed": "ca"}))


def test_items_that_do_not_apply_are_ignored_with_a_note(tmp_path: Path) -> None:
    """super-admin.conf on 1.28 and etcd-server with external etcd restart nothing."""
    old = kubepki.testing.build_node(tmp_path / "old", version="1.28", issued_at=ISSUED).as_node()
    plan = plan_restarts(old, Changed(["super-admin.conf"]))
    assert not plan.steps and "does not apply" in plan.notes[0]
    ext = kubepki.testing.build_node(tmp_path / "ext", external_etcd=True, issued_at=ISSUED).as_node()
    plan = plan_restarts(ext, Changed(["etcd-server"]))
    assert not plan.steps and "external etcd" in plan.notes[0]


def test_plan_on_a_real_kubeadm_tree(tmp_path: Path) -> None:
    """On a tree kubeadm wrote, names, version and node come from its real manifests."""
    node = Node(materialize("single-full", tmp_path / "n"))
    plan = plan_restarts(node, Changed(["etcd-server", "apiserver-etcd-client", "controller-manager.conf"]),
                         policy="minimal")
    assert plan.node == "cp1"
    # apiserver-etcd-client is re-read at every new connection (measured on 1.28.4): verified, not restarted.
    assert [(s.component, s.action) for s in plan.steps] == [
        (Component.ETCD, Action.VERIFY), (Component.KUBE_APISERVER, Action.VERIFY),
        (Component.KUBE_CONTROLLER_MANAGER, Action.RESTART)]
    assert "new connections use the new file" in plan.steps[1].note
    assert all(not s.note for s in plan.restarts)  # every manifest is there


def test_missing_manifest_is_said_in_the_plan(tmp_path: Path) -> None:
    """Without a manifest to move, the restart step says so (apply would fail on it)."""
    demo = kubepki.testing.build_node(tmp_path / "n", issued_at=ISSUED)
    (demo.root / "etc/kubernetes/manifests/kube-scheduler.yaml").unlink()
    plan = plan_restarts(demo.as_node(), Changed(["scheduler.conf"]))
    assert "no static pod manifest" in plan.restarts[0].note


def test_plan_is_an_immutable_printable_value(demo: Node) -> None:
    """Frozen, JSON with the documented step fields, a table and notebook HTML."""
    plan = plan_restarts(demo, Changed(["front-proxy-client", "admin.conf"]), now=ISSUED)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plan.policy = Policy.MINIMAL  # type: ignore[misc]
    assert isinstance(plan.steps, tuple)
    data = json.loads(plan.to_json())
    assert data["planned_at"] == "2026-01-01T00:00:00.000Z"
    assert {"node", "component", "action", "method", "reasons"} <= set(data["steps"][0])
    assert data["steps"][0] == {
        "node": "cp1", "component": "kube-apiserver", "action": "restart", "method": "manifest",
        "reasons": [{"name": "front-proxy-client", "flag": "--proxy-client-cert-file", "reload": "hot-fsnotify",
                     "paths": ["/etc/kubernetes/pki/front-proxy-client.crt",
                               "/etc/kubernetes/pki/front-proxy-client.key"], "detail": "", "kind": "changed"}],
        "note": "", "wait_seconds": None,
    }
    table = plan.table()
    assert re.search(r"^1 +cp1 +kube-apiserver +restart +manifest +front-proxy-client", table, re.M)
    assert str(plan) == table
    assert "<table" in plan._repr_html_() and "kube-apiserver" in plan._repr_html_()
    assert repr(plan).startswith("<RestartPlan node='cp1' policy=safe method=manifest restart=kube-apiserver")
    assert len(plan) == len(list(plan)) == 3
    assert isinstance(plan, RestartPlan)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    """apply_restarts without dry_run=False reports what it would do and touches no file."""
    demo = kubepki.testing.build_node(tmp_path / "n", issued_at=ISSUED)
    manifests = demo.root / "etc/kubernetes/manifests"
    before = {p.name: p.stat().st_mtime_ns for p in manifests.iterdir()}
    node = demo.as_node()
    plan = plan_restarts(node, Changed(["ca", "admin.conf"]))
    report = apply_restarts(plan, dry_run=True)
    assert report.dry_run and report.ok and report.verification is None
    assert [o.status for o in report.outcomes] == [StepStatus.PLANNED] * 3 + [StepStatus.NOTED] * 2
    assert "would restart kube-apiserver by moving its static pod manifest" in report.outcomes[0].messages[0]
    assert {p.name: p.stat().st_mtime_ns for p in manifests.iterdir()} == before
    assert not (demo.root / "etc/kubernetes/kubepki-held-manifests").exists()
    assert json.loads(report.to_json())["dry_run"] is True
    assert "dry run: nothing was changed" in report.table()


def test_plans_and_reports_are_reports_with_an_outcome(demo: Node) -> None:
    """On the one report base: text from blocks (== table()), HTML from rows, an outcome and its exit status.

    A plan and a dry run are ok (0); a report whose verification could not reach an endpoint is a warning (1);
    negative controls: a failed step, and a verification that still finds a component stale, are failed (2).
    """
    plan = plan_restarts(demo, Changed(["front-proxy-client", "ca"]), now=ISSUED)
    dry = apply_restarts(plan, dry_run=True)
    for report in (plan, dry):
        assert isinstance(report, Report) and report.outcome is Outcome.OK and exit_status(report) == 0
        assert str(report) == report.table() == report.text() == report.styled()[0]
        assert '<table class="kubepki">' in report._repr_html_()
    assert "admin.conf, super-admin.conf" in plan._repr_html_()  # the plan's notes are rows of the HTML
    refused = ServedCertificate(host="127.0.0.1", port=1, server_name=None, status=ServedStatus.REFUSED,
                                error="connection to 127.0.0.1:1 refused")
    unchecked = ServedCheck(component=Component.ETCD, served=refused, path=None, disk_sha256=None,
                            status=CheckStatus.UNAVAILABLE, message="etcd: connection to 127.0.0.1:1 refused")
    done = tuple(StepOutcome(step=s, status=StepStatus.DONE) for s in plan.steps)
    warned = RestartReport(node="cp1", plan=plan, dry_run=False, outcomes=done,
                           verification=Detection(node="cp1", instances=(), served=(unchecked,), stale=()))
    assert warned.ok and not warned.verified
    assert warned.outcome is Outcome.WARNING and exit_status(warned) == 1
    assert "result: could not check 1 endpoint(s): etcd: connection to 127.0.0.1:1 refused" in warned.text()
    assert (warned.text().index("could not check"), "warning") in [
        (start, tone) for start, _, tone in warned.styled()[1]]
    failed = attrs.evolve(warned, verification=None, outcomes=(
        StepOutcome(step=plan.steps[0], status=StepStatus.FAILED, error="it broke"),
        *(StepOutcome(step=s, status=StepStatus.NOT_RUN) for s in plan.steps[1:])))
    assert failed.outcome is Outcome.FAILED and exit_status(failed) == 2
    assert failed.text().endswith("result: stopped at kube-apiserver: it broke\n")
    stale = kubepki.restarts.Staleness(node="cp1", component=Component.KUBE_SCHEDULER,
                                       kind=kubepki.restarts.StaleKind.SERVED_MISMATCH, reasons=(), message="old")
    still = attrs.evolve(warned, verification=Detection(node="cp1", instances=(), served=(), stale=(stale,)))
    assert still.remaining and still.outcome is Outcome.FAILED and exit_status(still) == 2
    assert "STALE: old" in still.text() and "1 component(s) still stale" in still.text()
    assert json.loads(still.to_json())["ok"] is False


def test_plan_for_another_node_is_refused(tmp_path: Path) -> None:
    """A plan made on cp1 is not applied to cp2."""
    cluster = kubepki.testing.build_cluster(tmp_path / "c", nodes=2, issued_at=ISSUED)
    plan = plan_restarts(cluster.node("cp1").as_node(), Changed(["apiserver"]))
    with pytest.raises(ConfigError, match="cp1"):
        apply_restarts(plan, node=cluster.node("cp2").as_node())


def test_systemctl_absent_is_a_restart_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without systemctl on PATH, restarting the kubelet says so."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RestartError, match="systemctl not found"):
        systemctl_restart_kubelet()


@pytest.mark.skipif(shutil.which("systemctl") is None or Path("/run/systemd/system").exists(),
                    reason="needs systemctl without a running systemd (would restart a real kubelet)")
def test_systemctl_without_systemd_is_a_restart_error() -> None:
    """The real systemctl on a machine without systemd fails with one clear line."""
    with pytest.raises(RestartError, match="systemctl restart kubelet failed"):
        systemctl_restart_kubelet()


# ----------------------------------------------------------------------------- CLI


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_plan_table_and_json(demo: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """`restarts plan --changed` prints the table, or the JSON with steps; exit 0."""
    code, out, err = run_cli(capsys, "restarts", "plan", "--root", str(demo.root), "--changed",
                             "front-proxy-client", "admin.conf")
    assert code == 0, err
    assert "kube-apiserver" in out and "~/.kube/config" in out
    code, out, _ = run_cli(capsys, "restarts", "plan", "--root", str(demo.root), "--changed", "etcd-server",
                           "--policy", "minimal", "-o", "json")
    assert code == 0
    assert [(s["component"], s["action"]) for s in json.loads(out)["steps"]] == [("etcd", "verify")]


def test_cli_apply_without_apply_is_a_dry_run(demo: Node, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`restarts apply` without --apply shows the plan and restarts nothing."""
    renewal = tmp_path / "renewal.json"
    renewal.write_text(json.dumps({"changed": ["scheduler.conf"], "node": "cp1"}))
    code, out, _ = run_cli(capsys, "restarts", "apply", "--root", str(demo.root), "--from-renewal", str(renewal),
                           "--method", "docker")
    assert code == 0
    assert "kube-scheduler" in out and "docker" in out and "add --apply" in out


def run_any(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Like run_cli, also for argparse's errors (SystemExit)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("argv", "message"), [
    (["restarts", "plan", "ROOT", "--changed", "nope"], "unknown catalog item 'nope'"),
    (["restarts", "plan", "ROOT"], "one of the arguments --changed --from-renewal --detect is required"),
    (["restarts", "plan", "ROOT", "--changed", "ca", "--detect"], "not allowed with argument"),
    (["restarts", "plan", "ROOT", "--changed", "ca", "--policy", "eager"], "invalid choice"),
    (["restarts", "apply", "ROOT", "--changed"], "expected at least one argument"),
    (["verify-served", "ROOT", "--port", "etcd=http"], "expected COMPONENT=PORT"),
    (["restarts", "plan", "--root", "/nonexistent", "--changed", "ca"], "is not a directory"),
])
def test_cli_bad_arguments_exit_3(demo: Node, capsys: pytest.CaptureFixture[str], argv: list[str],
                                  message: str) -> None:
    """Bad arguments exit 3 with one line on stderr and no traceback."""
    args = [a for x in argv for a in (["--root", str(demo.root)] if x == "ROOT" else [x])]
    code, _, err = run_any(capsys, *args)
    assert code == 3
    assert message in err
    assert err.count("\n") == 1, err


def test_cli_restarts_without_action_shows_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki restarts` alone prints its usage and exits 3."""
    code, _, err = run_any(capsys, "restarts")
    assert code == 3
    assert "usage: kubepki restarts" in err


# ----------------------------------------------------------------------------- docs


def policy_table(node: Node) -> str:
    """The docs' policy table, regenerated from the catalog through the planner."""
    lines = ["| changed | safe | minimal | no restart, only a note |", "|---|---|---|---|"]

    def cell(plan: RestartPlan) -> str:
        parts = [f"{s.action.value} {s.component.value}" for s in plan.steps if s.action is not Action.NOTE]
        return ", ".join(parts) or "—"

    for name in catalog.names():
        safe = plan_restarts(node, Changed([name]))
        minimal = plan_restarts(node, Changed([name]), policy="minimal")
        notes = ", ".join(s.component.value for s in safe.steps if s.action is Action.NOTE) or "—"
        lines.append(f"| `{name}` | {cell(safe)} | {cell(minimal)} | {notes} |")
    return "\n".join(lines)


def test_docs_policy_table_matches_the_catalog(demo: Node) -> None:
    """docs/restarts.md shows the policy table the planner derives from the catalog (no drift)."""
    text = DOCS.read_text()
    start, end = "<!-- policy-table:start -->\n", "\n<!-- policy-table:end -->"
    assert start in text and end in text
    shown = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert shown == policy_table(demo), "regenerate with tests.test_restarts_plan.policy_table"


# ----------------------------------------------------------------------------- reloads measured on 1.28.4


def test_kubelet_client_is_waited_for_under_minimal(demo: Node) -> None:
    """apiserver-kubelet-client switches at client-go's 5-minute check: a bounded wait, said in text and JSON.

    Negative controls: safe restarts; a caller who will not wait that long (max_wait) gets a restart, and
    the step's note says why.
    """
    plan = plan_restarts(demo, Changed(["apiserver-kubelet-client"]), policy="minimal")
    (step,) = plan.steps
    assert (step.component, step.action, step.method) == (Component.KUBE_APISERVER, Action.WAIT, Method.NONE)
    assert step.wait_seconds == 305.0 and "CertCallbackRefreshDuration" in step.note
    assert json.loads(plan.to_json())["steps"][0]["wait_seconds"] == 305.0
    assert re.search(r"kube-apiserver +wait +none", plan.table())
    assert [s.action for s in plan_restarts(demo, Changed(["apiserver-kubelet-client"])).steps] == [Action.RESTART]
    hurried = plan_restarts(demo, Changed(["apiserver-kubelet-client"]), policy="minimal", max_wait=60)
    assert [s.action for s in hurried.steps] == [Action.RESTART]
    assert "rather than wait up to 300s" in hurried.steps[0].note and "max_wait 60s" in hurried.steps[0].note
    assert json.loads(hurried.to_json())["max_wait"] == 60
    patient = plan_restarts(demo, Changed(["apiserver-kubelet-client"]), policy="minimal", max_wait=300)
    assert [s.action for s in patient.steps] == [Action.WAIT]
    with pytest.raises(ConfigError, match="max_wait"):
        plan_restarts(demo, Changed(["ca"]), max_wait=-1)


def test_etcd_client_is_read_per_connection(demo: Node, tmp_path: Path) -> None:
    """apiserver-etcd-client: re-read at every new connection on 1.28+ (verify under minimal, restart under safe);
    older versions, not measured, keep the restart."""
    assert catalog.get("apiserver-etcd-client").consumers[0].reload_for(demo.profile.kubernetes_version) \
        is Reload.PER_CONNECTION
    assert [s.action for s in plan_restarts(demo, Changed(["apiserver-etcd-client"]), policy="minimal").steps] \
        == [Action.VERIFY]
    assert [s.action for s in plan_restarts(demo, Changed(["apiserver-etcd-client"])).steps] == [Action.RESTART]
    old = kubepki.testing.build_node(tmp_path / "old", version="1.27", issued_at=ISSUED).as_node()
    assert [s.action for s in plan_restarts(old, Changed(["apiserver-etcd-client"]), policy="minimal").steps] \
        == [Action.RESTART]


def test_reload_deadline_counts_checks_from_the_process_start() -> None:
    """The first 5-minute check after the write, counted from the start; at once for a later start."""
    from kubepki.restarts import reload_deadline

    start = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    period = catalog.CLIENT_CERT_CHECK_PERIOD
    margin = dt.timedelta(seconds=5)
    written = start + dt.timedelta(minutes=7)
    assert reload_deadline(start, written, period, now=written) == start + 2 * period + margin
    assert reload_deadline(start, start + period, period, now=written) == start + period + margin
    assert reload_deadline(written, start, period, now=written) == written  # started after the write
    assert reload_deadline(None, start, period, now=written) == written + period + margin
