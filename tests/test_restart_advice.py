"""Every apply says what it implies: renew, the certs writes and restore --apply print kubepki's own
restart plan for exactly what they wrote (never kubeadm's blanket line), and the command that applies it.

Each printed command is parsed by kubepki's own parser and run (as a dry run, which plans and
restarts nothing), and must plan the very steps that were printed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kubepki import testing
from kubepki.cli import build_parser, main
from kubepki.cli.restarts import run_apply
from kubepki.errors import ConfigError
from kubepki.restarts import FromRenewal, plan_restarts
from tests.kubeadm_trees import config_path, materialize
from tests.test_cli_renew import _sign

NOW = "2027-09-01T12:00:00Z"
PKI = "etc/kubernetes/pki"
FAST = ("--key-algorithm", "ECDSA-P256")
BLANKET = "kube-scheduler and etcd"
STATIC_PODS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A kubeadm-faithful control-plane node, its certificates issued now."""
    return testing.build_node(tmp_path / "cp1").root


def _command(out: str) -> str | None:
    lines = [line.removeprefix("To restart them: ") for line in out.splitlines()
             if line.startswith("To restart them: ")]
    assert len(lines) <= 1, out
    return lines[0] if lines else None


def _steps(plan: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["component"], s["action"]) for s in plan["steps"]]


def _runs_the_same_plan(command: str, expected: list[tuple[str, str]], capsys: pytest.CaptureFixture[str]) -> None:
    """``command`` parses with kubepki's parser as ``restarts apply --apply``; its dry run plans ``expected``."""
    argv = shlex.split(command)
    assert argv[0] == "kubepki"
    args = build_parser().parse_args(argv[1:])
    assert args.func is run_apply and args.apply is True and args.policy == "safe"
    dry = [a for a in argv[1:] if a != "--apply"]
    code, out, err = run_cli(capsys, *dry, "-o", "json")
    assert (code, err) == (0, ""), err
    assert _steps(json.loads(out)) == expected


def test_front_proxy_client_restarts_the_apiserver_only(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """renew front-proxy-client: kube-apiserver only, not kubeadm's four; the command plans the same."""
    code, out, err = run_cli(capsys, "renew", "front-proxy-client", "--root", str(demo), "--apply", "--no-backup",
                             *FAST)
    assert (code, err) == (0, "")
    assert BLANKET not in out and "You must restart" not in out
    assert "kubepki's plan, policy safe" in out
    restarts = [line.split()[1] for line in out.splitlines() if line.startswith("  restart ")]
    assert restarts == ["kube-apiserver"]
    command = _command(out)
    assert command is not None and "--changed front-proxy-client --root" in command
    _runs_the_same_plan(command, [("kube-apiserver", "restart")], capsys)
    # JSON carries the same plan and command
    code, out, _ = run_cli(capsys, "renew", "front-proxy-client", "--root", str(demo), "--apply", "--no-backup",
                           "-o", "json", *FAST)
    doc = json.loads(out)
    assert code == 0 and doc["changed"] == ["front-proxy-client"]
    assert doc["restarts"]["restart"] == ["kube-apiserver"] and doc["restarts"]["policy"] == "safe"
    assert doc["restarts"]["command"] == command and _steps(doc["restarts"]["plan"]) == [("kube-apiserver", "restart")]


def test_renew_all_restarts_the_four_static_pods(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """renew all: the four static pods (what kubeadm says for this case), and notes for kubectl and etcdctl."""
    code, out, _ = run_cli(capsys, "renew", "all", "--root", str(demo), "--apply", "--no-backup", "-o", "json", *FAST)
    doc = json.loads(out)
    assert code == 0 and doc["restarts"]["restart"] == STATIC_PODS
    assert doc["restarts"]["changed"] == doc["changed"]
    expected = _steps(doc["restarts"]["plan"])
    assert [c for c, a in expected if a == "restart"] == STATIC_PODS
    assert ("kubectl", "note") in expected and ("kubelet", "restart") not in expected
    _runs_the_same_plan(doc["restarts"]["command"], expected, capsys)


def test_kubelet_conf_restarts_the_kubelet_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """certs switch-kubelet-conf writes kubelet.conf: the kubelet only, no static pod."""
    root = materialize("single", tmp_path / "node")
    config = str(config_path("single"))
    code, out, err = run_cli(capsys, "certs", "switch-kubelet-conf", "--root", str(root), "--config", config,
                             "--now", NOW, "--apply", "--force-invalid-times", "--no-backup")
    assert (code, err) == (0, ""), out
    assert BLANKET not in out
    restarts = [line.split()[1] for line in out.splitlines() if line.startswith("  restart ")]
    assert restarts == ["kubelet"]
    command = _command(out)
    assert command is not None and f"--config {config}" in command
    _runs_the_same_plan(command, [("kubelet", "restart")], capsys)


def test_super_admin_conf_needs_no_restart(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """certs create-super-admin: no component reads super-admin.conf, so nothing needs a restart and no command."""
    (demo / "etc/kubernetes/super-admin.conf").unlink()
    code, out, err = run_cli(capsys, "certs", "create-super-admin", "--root", str(demo), "--apply", "--no-backup",
                             *FAST)
    assert (code, err) == (0, "")
    assert (demo / "etc/kubernetes/super-admin.conf").is_file()
    assert "nothing needs a restart" in out and BLANKET not in out
    assert _command(out) is None and "  restart " not in out
    # renewing it (the renew path) needs none either, in the JSON too
    code, out, _ = run_cli(capsys, "renew", "super-admin.conf", "--root", str(demo), "--apply", "--no-backup",
                           "-o", "json", *FAST)
    doc = json.loads(out)
    assert code == 0 and doc["changed"] == ["super-admin.conf"]
    assert doc["restarts"]["needed"] is False and doc["restarts"]["command"] is None
    assert doc["restarts"]["restart"] == []


def test_nothing_written_says_so(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """create-super-admin where it exists writes nothing: nothing needs a restart, and no command."""
    code, out, _ = run_cli(capsys, "certs", "create-super-admin", "--root", str(demo), "--apply", "--no-backup")
    assert code == 0 and "Nothing was written." in out
    assert "nothing was written, so nothing needs a restart" in out and _command(out) is None


def test_install_signed_restarts_what_reads_the_installed_pairs(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """certs install-signed front-proxy-client + scheduler.conf: kube-apiserver and kube-scheduler, nothing else."""
    root = materialize("single-full", tmp_path / "node")
    out_dir = tmp_path / "csr"
    code, _, _ = run_cli(capsys, "renew", "--csr", str(out_dir), "front-proxy-client", "scheduler.conf",
                         "--root", str(root), *FAST)
    assert code == 0
    for name, ca in (("front-proxy-client", "front-proxy-ca"), ("scheduler.conf", "ca")):
        (out_dir / f"{name}.crt").write_bytes(_sign(
            (out_dir / f"{name}.csr").read_bytes(), (root / PKI / f"{ca}.crt").read_bytes(),
            (root / PKI / f"{ca}.key").read_bytes()))
    code, out, err = run_cli(capsys, "certs", "install-signed", str(out_dir), "--root", str(root), "--now", NOW,
                             "--no-backup", "--force-invalid-times", "-o", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert sorted(doc["changed"]) == ["front-proxy-client", "scheduler.conf"]
    assert doc["restarts"]["restart"] == ["kube-apiserver", "kube-scheduler"]
    _runs_the_same_plan(doc["restarts"]["command"], _steps(doc["restarts"]["plan"]), capsys)


def test_restore_prints_its_plan_and_its_json_feeds_restarts_plan(demo: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """restore --apply of front-proxy-client: kube-apiserver only; `restarts plan --from-renewal` takes its JSON."""
    backups = tmp_path / "backups"
    code, _, _ = run_cli(capsys, "backup", "--root", str(demo), "--backup-dir", str(backups))
    assert code == 0
    (archive,) = backups.iterdir()
    code, _, _ = run_cli(capsys, "renew", "front-proxy-client", "--root", str(demo), "--apply", "--no-backup", *FAST)
    assert code == 0
    code, out, err = run_cli(capsys, "restore", str(archive), "--root", str(demo), "--apply", "--accept-changed",
                             "--no-backup")
    assert (code, err) == (0, ""), out
    assert BLANKET not in out
    restarts = [line.split()[1] for line in out.splitlines() if line.startswith("  restart ")]
    assert restarts == ["kube-apiserver"]
    command = _command(out)
    assert command is not None
    _runs_the_same_plan(command, [("kube-apiserver", "restart")], capsys)

    # The JSON: changed names the catalog items written, and restarts plan reads it.
    run_cli(capsys, "renew", "front-proxy-client", "--root", str(demo), "--apply", "--no-backup", *FAST)
    code, out, _ = run_cli(capsys, "restore", str(archive), "--root", str(demo), "--apply", "--accept-changed",
                           "--no-backup", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["kind"] == "RestoreResult" and doc["changed"] == ["front-proxy-client"]
    assert doc["node"] == "cp1" and doc["restarts"]["restart"] == ["kube-apiserver"]
    saved = tmp_path / "restore.json"
    saved.write_text(out)
    code, out, err = run_cli(capsys, "restarts", "plan", "--from-renewal", str(saved), "--root", str(demo),
                             "-o", "json")
    assert (code, err) == (0, "")
    plan = json.loads(out)
    assert plan["source"] == "renewal" and plan["changed"] == ["front-proxy-client"]
    assert _steps(plan) == _steps(doc["restarts"]["plan"])
    # A restore's JSON from before it carried "changed": its written paths are mapped to names.
    old = {k: v for k, v in doc.items() if k not in ("changed", "node", "kind", "restarts")}
    saved.write_text(json.dumps(old))
    code, out, _ = run_cli(capsys, "restarts", "plan", "--from-renewal", str(saved), "--root", str(demo), "-o", "json")
    assert code == 0 and json.loads(out)["changed"] == ["front-proxy-client"]


def test_restore_json_of_another_node_or_without_changes_is_refused(demo: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Negative controls: a restore result of another node, and a document with neither changed nor written."""
    saved = tmp_path / "restore.json"
    saved.write_text(json.dumps({"kind": "RestoreResult", "node": "cp9", "changed": ["front-proxy-client"],
                                 "written": []}))
    code, _, err = run_cli(capsys, "restarts", "plan", "--from-renewal", str(saved), "--root", str(demo))
    assert code == 3 and "cp9" in err
    saved.write_text(json.dumps({"plan": {"node": "cp1"}}))
    code, _, err = run_cli(capsys, "restarts", "plan", "--from-renewal", str(saved), "--root", str(demo))
    assert code == 3 and "changed" in err


def test_restore_of_nothing_needs_no_restart(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A restore onto a node that matches its backup writes nothing: changed is empty, nothing needs a restart."""
    backups = tmp_path / "backups"
    run_cli(capsys, "backup", "--root", str(demo), "--backup-dir", str(backups))
    (archive,) = backups.iterdir()
    code, out, _ = run_cli(capsys, "restore", str(archive), "--root", str(demo), "--apply", "--no-backup",
                           "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["written"] == [] and doc["changed"] == []
    assert doc["restarts"]["needed"] is False and doc["restarts"]["command"] is None


def test_recover_restarts_the_static_pods_and_the_kubelet(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """certs recover renews everything and gives the kubelet a new client certificate: five restarts."""
    code, out, err = run_cli(capsys, "certs", "recover", "--root", str(demo), "--now", "2029-01-01T00:00:00Z",
                             "--apply", "--no-backup", "--force-invalid-times", "-o", "json", *FAST)
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert "kubelet.conf" in doc["changed"]
    assert doc["restarts"]["restart"] == [*STATIC_PODS, "kubelet"]
    _runs_the_same_plan(doc["restarts"]["command"], _steps(doc["restarts"]["plan"]), capsys)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.sampled_from(["front-proxy-client", "RestoreResult", "cp1", "/etc/kubernetes/pki/ca.crt"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["kind", "node", "changed", "written", "files", "plan", "node_name"]), inner, max_size=5),
    max_leaves=12))
def test_any_result_json_gives_a_plan_or_a_config_error(demo: Path, tmp_path: Path, doc: object) -> None:
    """A renewal or restore result is untrusted JSON: `restarts plan --from-renewal` plans from it or refuses
    it with a ConfigError, never a traceback."""
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(doc))
    try:
        plan = plan_restarts(demo, FromRenewal(str(saved)))
    except ConfigError:
        return
    assert isinstance(doc, dict)
    assert set(plan.changed) <= {"front-proxy-client", "ca"}
