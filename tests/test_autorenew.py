"""``auto_renew`` and ``kubepki auto-renew`` / ``kubepki history`` on real demo trees.

The trees are real files; no component runs here, so an applied run's restarts
cannot succeed: that is the rollback path, judged by the files on disk (the
backup's bytes are back) and by the history line. The success path, with real
components that must come back, is proven on the real kubeadm cluster
(tests/test_realcluster.py::test_auto_renew_*). The health probes are real HTTP
requests to real servers on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import pytest
import yaml

import kubepki
from kubepki._report import Outcome
from kubepki.autorenew import RunStatus, auto_renew
from kubepki.catalog import Component
from kubepki.errors import ConfigError
from kubepki.node import HISTORY_KEEP, HISTORY_PATH, Node, append_history, read_history
from kubepki.restarts import Timeouts, check_health
from tests._hardening import changes, run_cli, snapshot
from tests.services import free_port, reissue

UTC = dt.timezone.utc
FAST = Timeouts(stop=1, start=1, serve=1, poll=0.05)


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


@pytest.fixture
def due(tmp_path: Path) -> Path:
    """A demo node whose leaves were issued 320 days ago: all eleven expire within 60 days."""
    return kubepki.testing.build_node(tmp_path / "due", issued_at=_now() - dt.timedelta(days=320)).root


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """A demo node issued yesterday: nothing is due."""
    return kubepki.testing.build_node(tmp_path / "fresh", issued_at=_now() - dt.timedelta(days=1)).root


def _pki(root: Path) -> dict[str, object]:
    """The kubeadm directories' snapshot (what a renewal or a restore would change)."""
    return dict(snapshot(root / "etc/kubernetes"))


RENEWABLE = {"admin.conf", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client",
             "controller-manager.conf", "etcd-healthcheck-client", "etcd-peer", "etcd-server",
             "front-proxy-client", "scheduler.conf", "super-admin.conf"}


def test_nothing_due_writes_nothing(fresh: Path, due: Path, tmp_path: Path) -> None:
    """Nothing due: ok, no backup, no PKI change, and an applied run records one line saying so.
    Control: the due tree's dry run plans all eleven items."""
    before = snapshot(fresh)
    result = auto_renew(fresh, apply=True, backup_dir=tmp_path / "b")
    assert result.status == RunStatus.NOTHING_DUE and result.outcome is Outcome.OK
    assert not (tmp_path / "b").exists()
    assert [p for p in changes(before, snapshot(fresh)) if not p.startswith("var/lib/kubepki")] == []
    (line,) = read_history(Node(fresh).fs).records
    assert line["status"] == "nothing-due" and line["ok"] is True and line["renewed"] == []
    planned = auto_renew(due)
    assert planned.status == RunStatus.PLANNED and {d.name for d in planned.due} == RENEWABLE


def test_dry_run_plans_renewal_and_restarts_and_writes_nothing(due: Path) -> None:
    """The plan names the due items and the restarts each policy needs; nothing is written, no history."""
    before = snapshot(due)
    minimal = auto_renew(due)
    safe = auto_renew(due, policy="safe")
    assert changes(before, snapshot(due)) == []
    assert not (due / HISTORY_PATH.relative_to("/")).exists()
    restarts = {p: [s.component.value for s in r.restart_plan.restarts] for p, r in
                (("minimal", minimal), ("safe", safe))}
    # minimal relies on the reloads the catalog records (apiserver serving cert, etcd per connection...)
    assert set(restarts["minimal"]) < set(restarts["safe"])
    assert {"kube-controller-manager", "kube-scheduler"} <= set(restarts["minimal"])
    assert set(restarts["safe"]) >= {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    doc = minimal.to_dict()
    assert doc["status"] == "planned" and doc["ok"] is True and doc["renewed"] == []
    assert "dry run: nothing was written" in minimal.text()


def test_within_and_all(fresh: Path) -> None:
    """One item expiring in 25 days: only it is due; ``renew_all`` renews the rest with it (aligned).
    Control: a ``within`` shorter than its 25 days finds nothing due."""
    reissue(fresh, "apiserver", "ca", now=_now() - dt.timedelta(days=340))
    one = auto_renew(fresh)
    assert [(d.name, d.aligned) for d in one.due] == [("apiserver", False)]
    together = auto_renew(fresh, renew_all=True)
    assert {d.name for d in together.due} == RENEWABLE
    assert {d.name for d in together.due if not d.aligned} == {"apiserver"}
    assert auto_renew(fresh, within=dt.timedelta(days=20)).status == RunStatus.NOTHING_DUE


def test_a_failed_restart_is_rolled_back(due: Path, tmp_path: Path) -> None:
    """No kubelet runs the static pods here, so the restarts fail: the backup is restored (every file of the
    kubeadm directories has its bytes of before, the manifests are all back), the run fails, and the history
    says so, with the backup's path. Control: the renewal did write new certificates before the rollback."""
    before = _pki(due)
    old_cert = (due / "etc/kubernetes/pki/apiserver.crt").read_bytes()
    serials: list[bytes] = []

    def look(_result: object) -> None:
        serials.append((due / "etc/kubernetes/pki/apiserver.crt").read_bytes())

    result = auto_renew(due, apply=True, backup_dir=tmp_path / "b", timeout=FAST, health_wait=0.5,
                        after_renewal=look)
    assert serials and serials[0] != old_cert  # control: renewed, then rolled back
    assert result.outcome is Outcome.FAILED
    assert result.status == RunStatus.ROLLBACK_FAILED  # nothing runs here: the rollback cannot verify either
    assert result.failure and result.backup and Path(result.backup).is_file()
    assert result.rolled_back
    after = _pki(due)
    files = [p for p, e in before.items() if e.kind == "file"]  # type: ignore[attr-defined]
    assert [p for p in files if after.get(p) is None or after[p].content != before[p].content] == []  # type: ignore[attr-defined]
    assert (due / "etc/kubernetes/pki/apiserver.crt").read_bytes() == old_cert
    (line,) = read_history(Node(due).fs).records
    assert line["status"] == "rollback-failed" and line["ok"] is False and line["rolled_back"] is True
    assert set(line["renewed"]) == RENEWABLE and line["backup"] == result.backup
    assert line["durations"]["total"] > 0 and "rollback" in line["durations"]


def test_a_failing_hook_is_rolled_back(due: Path, tmp_path: Path) -> None:
    """An exception from ``after_renewal`` (a site check) is a failure: nothing is restarted, the files are
    restored; control: without the hook the same run gets to the restarts."""
    old_cert = (due / "etc/kubernetes/pki/apiserver.crt").read_bytes()

    def refuse(_result: object) -> None:
        raise RuntimeError("the site check says no")

    result = auto_renew(due, apply=True, backup_dir=tmp_path / "b", timeout=FAST, health_wait=0.5,
                        after_renewal=refuse)
    assert result.failure == "unexpected RuntimeError: the site check says no"
    assert result.restarts is None and result.rolled_back
    assert (due / "etc/kubernetes/pki/apiserver.crt").read_bytes() == old_cert


def test_apply_over_ssh_is_refused_before_anything(due: Path) -> None:
    """The rollback restores a local archive: a node that is not a local root is refused with apply."""
    from kubepki.node import ssh_node

    node = ssh_node("ssh://root@127.0.0.1:1")
    with pytest.raises(ConfigError, match="runs on the node itself"):
        auto_renew(node, apply=True)


# -- health -----------------------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        code = self.answers.get(self.path, 404)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"no")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 that answers /readyz 200 and /livez 500."""
    _Health.answers = {"/readyz": 200, "/livez": 500}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _set_probe(root: Path, component: str, port: int, path: str) -> None:
    manifest = root / f"etc/kubernetes/manifests/{component}.yaml"
    text = manifest.read_text()
    text = text.replace("containerPort: 2381", f"containerPort: {port}")
    text = text.replace("path: /readyz", f"path: {path}")
    manifest.write_text(text)


def _edit_manifest(root: Path, component: str, edit: Callable[[dict[str, Any]], None]) -> None:
    path = root / f"etc/kubernetes/manifests/{component}.yaml"
    doc = yaml.safe_load(path.read_text())
    edit(doc["spec"]["containers"][0])
    path.write_text(yaml.safe_dump(doc))


def _probe_at(port: int, path: str) -> Callable[[dict[str, Any]], None]:
    def edit(container: dict[str, Any]) -> None:
        container["ports"] = [{"containerPort": port, "name": "probe-port", "protocol": "TCP"}]
        container["readinessProbe"]["httpGet"]["path"] = path
    return edit


@pytest.mark.parametrize(("path", "healthy"), [("/readyz", True), ("/livez", False), ("/nowhere", False)])
def test_health_asks_the_manifest_probe(fresh: Path, health_server: int, path: str, healthy: bool) -> None:
    """etcd's readiness probe (kubeadm: http://127.0.0.1:2381/readyz, a named port) pointed at a real server:
    200 is healthy, 500 and 404 are not; a port nothing listens on is unhealthy, with the error."""
    _edit_manifest(fresh, "etcd", _probe_at(health_server, path))
    (check,) = check_health(Node(fresh), [Component.ETCD])
    assert check.url == f"http://127.0.0.1:{health_server}{path}"
    assert check.healthy is healthy
    _edit_manifest(fresh, "etcd", _probe_at(free_port(), path))
    (down,) = check_health(Node(fresh), [Component.ETCD])
    assert down.healthy is False and down.status is None and down.error


def test_health_without_a_probe_is_unknown_not_healthy(fresh: Path) -> None:
    """A manifest without probes: nothing to ask, ``healthy`` None (never True); control: the demo's etcd has one."""
    assert check_health(Node(fresh), [Component.ETCD])[0].url is not None

    def drop(container: dict[str, Any]) -> None:
        for kind in ("readinessProbe", "startupProbe", "livenessProbe"):
            container.pop(kind, None)

    _edit_manifest(fresh, "etcd", drop)
    (check,) = check_health(Node(fresh), [Component.ETCD])
    assert check.url is None and check.healthy is None and "names none" in check.message


# -- history ------------------------------------------------------------------------------


def test_history_is_bounded_atomic_and_private(fresh: Path) -> None:
    """Lines past HISTORY_KEEP drop the oldest; the file is 0600 in a 0700 directory; a line that is not JSON
    is skipped and counted, never fatal."""
    fs = Node(fresh).fs
    path = PurePosixPath("/var/lib/kubepki/h.jsonl")
    local = fresh / "var/lib/kubepki/h.jsonl"
    for i in range(3):
        append_history(fs, {"i": i}, path)
    assert [r["i"] for r in read_history(fs, path).records] == [0, 1, 2]
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert stat.S_IMODE(local.parent.stat().st_mode) == 0o700
    with local.open("a") as fh:
        fh.write("not json\n[1, 2]\n")
    found = read_history(fs, path)
    assert found.skipped == 2 and len(found.records) == 3
    local.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(HISTORY_KEEP)))
    append_history(fs, {"i": "new"}, path)
    records = read_history(fs, path).records
    assert len(records) == HISTORY_KEEP and records[0]["i"] == 1 and records[-1]["i"] == "new"


def test_a_fifo_at_the_history_path_does_not_hang(fresh: Path) -> None:
    """A FIFO where the history goes: reading says why, writing is refused, and the run is still reported."""
    local = fresh / HISTORY_PATH.relative_to("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(local)
    found = read_history(Node(fresh).fs)
    assert found.records == () and found.problem and "not a regular file" in found.problem
    result = auto_renew(fresh, apply=True)
    assert result.status == RunStatus.NOTHING_DUE
    assert any("the history was not written" in n for n in result.notes)


# -- the command line -----------------------------------------------------------------------


def test_cli_exit_statuses_and_history(fresh: Path, due: Path, tmp_path: Path) -> None:
    """auto-renew: nothing due 0, a dry run 0 (the plan), a failed apply 2 with the failure on stderr;
    history: the runs, newest last, and 2 while the last one failed."""
    run = run_cli(["auto-renew", "--root", str(fresh)])
    assert run.code == 0 and "nothing is due within 60d" in run.out, run
    run = run_cli(["auto-renew", "--root", str(due), "-o", "json"])
    assert run.code == 0 and json.loads(run.out)["status"] == "planned", run
    run = run_cli(["auto-renew", "--root", str(due), "--apply", "--timeout", "1", "--health-wait", "0.5",
                   "--backup-dir", str(tmp_path / "b")])
    assert run.code == 2 and "kubepki: error:" in run.err and "FAILED" in run.out, run
    hist = run_cli(["history", "--root", str(due)])
    assert hist.code == 2 and "ROLLBACK-FAILED" in hist.out, hist
    hist = run_cli(["history", "--root", str(due), "-o", "json", "-n", "1"])
    assert [r["status"] for r in json.loads(hist.out)["runs"]] == ["rollback-failed"]
    assert run_cli(["history", "--root", str(fresh)]).code == 0  # no runs: nothing failed


def test_metrics_expose_the_last_run(fresh: Path, due: Path, tmp_path: Path) -> None:
    """``kubepki metrics`` carries the node's last run: success 0 and rolled_back 1 after the failed run;
    control: 1 and 0 after a run with nothing due; no auto-renew series on a node with no history."""
    pytest.importorskip("prometheus_client")
    assert "kubepki_auto_renew" not in run_cli(["metrics", "--root", str(fresh)]).out
    auto_renew(fresh, apply=True)
    auto_renew(due, apply=True, backup_dir=tmp_path / "b", timeout=FAST, health_wait=0.5)
    good = run_cli(["metrics", "--root", str(fresh)]).out
    bad = run_cli(["metrics", "--root", str(due)]).out
    assert 'kubepki_auto_renew_last_run_success{node="cp1",status="nothing-due"} 1.0' in good
    assert 'kubepki_auto_renew_last_run_rolled_back{node="cp1",status="nothing-due"} 0.0' in good
    assert 'kubepki_auto_renew_last_run_success{node="cp1",status="rollback-failed"} 0.0' in bad
    assert 'kubepki_auto_renew_last_run_rolled_back{node="cp1",status="rollback-failed"} 1.0' in bad


def test_node_event_says_what_a_run_did(due: Path, fresh: Path, tmp_path: Path) -> None:
    """A failed run is a Warning Event on its Node naming the failure; a run with nothing due has none."""
    from kubepki.autorenew import node_event

    failed = auto_renew(due, apply=True, backup_dir=tmp_path / "b", timeout=FAST, health_wait=0.5, history=None)
    event = node_event(failed, "uid-1")
    assert event is not None
    assert event["type"] == "Warning" and event["reason"] == "KubepkiRenewalFailed"
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "cp1", "uid": "uid-1"}
    assert failed.failure is not None and failed.failure[:100] in event["message"]
    assert node_event(auto_renew(fresh, apply=True, history=None)) is None
