"""The packaging in deploy/: systemd units, Kubernetes manifests, the Grafana dashboard, the Containerfile.

The systemd units are checked by the real ``systemd-analyze verify``, the alert rules by the real
``promtool``, the dashboard's and rules' queries against a real exposition, and every command line
(ExecStart, container args) by kubepki's own argument parser, so a renamed option cannot leave a unit
that fails at 3 a.m. The manifests also go through the real kube-apiserver's server-side dry run in
tests/test_realcluster.py::test_deploy_manifests_pass_server_side_dry_run.
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubepki.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SYSTEMD = DEPLOY / "systemd"
UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="needs systemd-analyze (Debian's systemd package)")


def _verify(directory: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", *(f"./{n}" for n in names)], cwd=directory,
                          capture_output=True, text=True, check=False, timeout=60)


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  -- systemd keys are case-sensitive
    parser.read(SYSTEMD / name)
    return parser


def test_the_four_units_are_there() -> None:
    """The auto-renew and metrics services, each with its timer."""
    assert UNITS == ["kubepki-auto-renew.service", "kubepki-auto-renew.timer", "kubepki-metrics.service",
                     "kubepki-metrics.timer"]


@needs_systemd
def test_systemd_analyze_verify_accepts_them_without_a_word(tmp_path: Path) -> None:
    """``systemd-analyze verify`` exits 0 and prints nothing (a warning is a mistake too).
    Controls: a misspelt calendar fails, a misspelt service type is warned about."""
    for name in UNITS:
        shutil.copy(SYSTEMD / name, tmp_path / name)
    run = _verify(tmp_path, *UNITS)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == "", run
    timer = (SYSTEMD / "kubepki-auto-renew.timer").read_text().replace("OnCalendar=daily", "OnCalendar=dailyy")
    (tmp_path / "bad.timer").write_text(timer.replace("Unit=kubepki-auto-renew.service", "Unit=bad.service"))
    shutil.copy(SYSTEMD / "kubepki-auto-renew.service", tmp_path / "bad.service")
    assert _verify(tmp_path, "bad.timer").returncode != 0
    service = (SYSTEMD / "kubepki-auto-renew.service").read_text().replace("Type=oneshot", "Type=oneshott")
    (tmp_path / "bad.service").write_text(service)
    assert "Failed to parse service type" in _verify(tmp_path, "bad.service").stderr


def test_the_auto_renew_timer_is_daily_randomized_and_persistent() -> None:
    """Daily, at a random moment within an hour, catching up after downtime; it starts the service."""
    timer = _unit("kubepki-auto-renew.timer")["Timer"]
    assert timer["OnCalendar"] == "daily" and timer["Persistent"] == "true"
    assert timer["RandomizedDelaySec"] == "1h" and timer["Unit"] == "kubepki-auto-renew.service"
    metrics = _unit("kubepki-metrics.timer")["Timer"]
    assert metrics["Unit"] == "kubepki-metrics.service" and metrics["OnUnitActiveSec"] == "15min"


@pytest.mark.parametrize("service", ["kubepki-auto-renew.service", "kubepki-metrics.service"])
def test_exec_start_is_a_kubepki_command_line(service: str) -> None:
    """ExecStart parses with kubepki's own parser (control: a misspelt option does not)."""
    argv = shlex.split(_unit(service)["Service"]["ExecStart"])
    assert argv[:2] == ["/usr/bin/env", "kubepki"]
    parser = build_parser()
    args = parser.parse_args(argv[2:])
    assert callable(args.func)
    if service.startswith("kubepki-auto-renew"):
        assert args.apply and args.root == "/"
    with pytest.raises(SystemExit):
        parser.parse_args([*argv[2:], "--no-such-option"])


# -- Kubernetes ----------------------------------------------------------------------------

KUBERNETES = DEPLOY / "kubernetes"


def manifests() -> list[dict[str, Any]]:
    """Every object of deploy/kubernetes, in file order (namespace first)."""
    order = ["namespace.yaml", "rbac.yaml", "metrics-daemonset.yaml", "auto-renew-daemonset.yaml",
             "servicemonitor.yaml", "prometheusrule.yaml"]
    assert sorted(order) == sorted(p.name for p in KUBERNETES.glob("*.yaml"))
    return [d for name in order for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _pod(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = _one("DaemonSet", name)["spec"]["template"]["spec"]
    return spec


def test_every_object_is_labelled_and_namespaced() -> None:
    """Each object carries app.kubernetes.io/part-of: kubepki; the namespaced ones live in kubepki-system."""
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for doc in manifests():
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubepki", doc["metadata"]
        assert (doc["metadata"].get("namespace") == "kubepki-system") == (doc["kind"] not in cluster_scoped), doc


def test_the_metrics_daemonset_runs_everywhere_read_only() -> None:
    """Every node (a blanket toleration), every hostPath mount read-only, no host namespaces, no capability;
    its command line is kubepki's. Control: the auto-renew pod's mounts are not all read-only."""
    pod = _pod("kubepki-metrics")
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert not any(pod.get(k) for k in ("hostPID", "hostNetwork", "hostIPC"))
    (container,) = pod["containers"]
    assert all(m.get("readOnly") is True for m in container["volumeMounts"])
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    args = build_parser().parse_args(container["args"])
    assert args.root == "/host" and args.serve.endswith(":9842")
    assert container["ports"][0]["containerPort"] == 9842
    assert not all(m.get("readOnly") for m in _pod("kubepki-auto-renew")["containers"][0]["volumeMounts"])


def test_the_auto_renew_daemonset_is_pinned_and_minimal() -> None:
    """Control-plane nodes only, their taint tolerated; hostPID (start times) and hostNetwork (health probes);
    not privileged, capabilities CHOWN and FOWNER only; the looped command is a kubepki auto-renew --apply."""
    pod = _pod("kubepki-auto-renew")
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} \
        in pod["tolerations"]
    assert pod["hostPID"] is True and pod["hostNetwork"] is True
    (container,) = pod["containers"]
    ctx = container["securityContext"]
    assert not ctx.get("privileged") and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    (line,) = [t for t in container["args"][0].splitlines() if t.strip().startswith("kubepki ")]
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert args.func.__name__ == "run_auto_renew" and args.apply and args.root == "/host"
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/host/etc/kubernetes", "/host/var/lib/kubelet/pki", "/host/var/backups/kubepki",
            "/host/var/lib/kubepki"} <= mounted


def test_rbac_covers_events_and_kubelet_serving_csrs_only() -> None:
    """Events and Nodes (read) for --event; CSRs: read, approval, and the kubelet-serving signer only."""
    rules = _one("ClusterRole", "kubepki")["rules"]
    def allows(group: str, resource: str, verb: str, name: str | None = None) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   and (name is None or name in r.get("resourceNames", [name])) for r in rules)
    assert allows("", "events", "create") and allows("", "nodes", "get")
    assert allows("certificates.k8s.io", "certificatesigningrequests/approval", "update")
    assert allows("certificates.k8s.io", "signers", "approve", "kubernetes.io/kubelet-serving")
    assert not allows("certificates.k8s.io", "signers", "approve", "kubernetes.io/kube-apiserver-client")
    assert not allows("", "secrets", "get") and not allows("", "nodes", "update")
    binding = _one("ClusterRoleBinding", "kubepki")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kubepki", "namespace": "kubepki-system"}]


def test_the_service_monitor_scrapes_the_metrics_service() -> None:
    """The ServiceMonitor selects the Service's labels and names its port."""
    monitor = _one("ServiceMonitor", "kubepki-metrics")["spec"]
    service = _one("Service", "kubepki-metrics")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}


def _rule_groups() -> dict[str, Any]:
    return {"groups": _one("PrometheusRule", "kubepki")["spec"]["groups"]}


def test_the_prometheus_rule_thresholds() -> None:
    """Warning at 28 days, critical at 14, and an alert on a failed last auto-renew."""
    rules = {r["alert"]: r for g in _rule_groups()["groups"] for r in g["rules"]}
    assert "kubepki_certificate_seconds_left < 28 * 86400" in rules["KubepkiCertificateExpiresSoon"]["expr"]
    assert rules["KubepkiCertificateExpiresSoon"]["labels"]["severity"] == "warning"
    assert rules["KubepkiCertificateExpiresVerySoon"]["expr"] == "kubepki_certificate_seconds_left < 14 * 86400"
    assert rules["KubepkiCertificateExpiresVerySoon"]["labels"]["severity"] == "critical"
    assert rules["KubepkiAutoRenewFailed"]["expr"] == "kubepki_auto_renew_last_run_success == 0"


PROMTOOL_TEST = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'kubepki_certificate_seconds_left{node="cp1",name="apiserver",path="/a.crt",signer="ca"}'
        values: '1728000x180'
      - series: 'kubepki_certificate_seconds_left{node="cp1",name="etcd-peer",path="/p.crt",signer="etcd-ca"}'
        values: '864000x180'
      - series: 'kubepki_certificate_seconds_left{node="cp1",name="ca",path="/ca.crt",signer=""}'
        values: '2592000x180'
      - series: 'kubepki_auto_renew_last_run_success{node="cp1",status="rolled-back"}'
        values: '0x180'
    alert_rule_test:
      - eval_time: 2h
        alertname: KubepkiCertificateExpiresSoon
        exp_alerts:
          - exp_labels: {severity: warning, node: cp1, name: apiserver, path: /a.crt, signer: ca}
            exp_annotations:
              summary: "apiserver on cp1 expires in 20d 0h 0m 0s"
              description: "/a.crt (signed by ca) expires within 28 days; kubepki auto-renew
                renews it within 60 days of its end, so this means auto-renew is not running or failing."
      - eval_time: 2h
        alertname: KubepkiCertificateExpiresVerySoon
        exp_alerts:
          - exp_labels: {severity: critical, node: cp1, name: etcd-peer, path: /p.crt, signer: etcd-ca}
            exp_annotations:
              summary: "etcd-peer on cp1 expires in 10d 0h 0m 0s"
              description: "/p.crt (signed by etcd-ca) expires within 14 days, or has expired.
                Run sudo kubepki auto-renew --apply on cp1."
      - eval_time: 2h
        alertname: KubepkiAutoRenewFailed
        exp_alerts:
          - exp_labels: {severity: critical, node: cp1, status: rolled-back}
            exp_annotations:
              summary: "the last kubepki auto-renew on cp1 failed (rolled-back)"
              description: "sudo kubepki history on cp1 says what failed and whether the rollback
                brought the node back."
"""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Prometheus's promtool")
def test_promtool_checks_the_rule_and_fires_each_alert_for_its_case(tmp_path: Path) -> None:
    """promtool accepts the PrometheusRule's groups; its unit test fires each alert only for its case (30 days
    left: nothing; 20: warning; 10: critical)."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rule_groups()))
    (tmp_path / "test.yaml").write_text(PROMTOOL_TEST)
    for argv in (["promtool", "check", "rules", "rules.yaml"], ["promtool", "test", "rules", "test.yaml"]):
        run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr


def _exported(tmp_path: Path) -> set[str]:
    """The series a real exposition holds for a demo node with findings and one recorded auto-renew run."""
    pytest.importorskip("prometheus_client")
    import kubepki
    from kubepki import metrics
    from kubepki.restarts import Timeouts

    # expiring in 25 days (findings), and a run that renewed, restarted nothing here and rolled back
    issued = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=340)
    root = kubepki.testing.build_node(tmp_path / "n", issued_at=issued).root
    kubepki.auto_renew(root, apply=True, backup_dir=tmp_path / "b", timeout=Timeouts.coerce(1), health_wait=0.5)
    run = metrics.last_run(root)
    assert run is not None
    return set(re.findall(r"^(kubepki_\w+)\{", metrics.exposition([kubepki.inspect(root), run]), re.M))


def test_alerts_and_dashboard_use_series_kubepki_exports(tmp_path: Path) -> None:
    """Every series the PrometheusRule and the Grafana dashboard query is in a real exposition."""
    exported = _exported(tmp_path)
    rules = {m for g in _rule_groups()["groups"] for r in g["rules"] for m in re.findall(r"kubepki_\w+", r["expr"])}
    dashboard = json.loads((DEPLOY / "grafana/kubepki-dashboard.json").read_text())
    queried = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"kubepki_\w+", t["expr"])}
    queried |= set(re.findall(r"kubepki_\w+", json.dumps(dashboard["templating"])))
    assert rules and queried
    assert rules <= exported, rules - exported
    assert queried <= exported, queried - exported
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))


def test_the_containerfile_installs_from_what_it_copies(tmp_path: Path) -> None:
    """The Containerfile's COPY lines are enough to build kubepki: a wheel built here from a directory holding
    only those files contains the package and the ``kubepki`` entry point, and runs (no container engine can
    pull its python base image here, so the image build itself is not run). The wheel is built, never
    installed: installing it would replace this machine's kubepki."""
    text = (DEPLOY / "Containerfile").read_text()
    copies = [line.split()[1:-1] for line in text.splitlines() if line.startswith("COPY ") and "--from" not in line]
    src = tmp_path / "src"
    src.mkdir()
    repo = DEPLOY.parent
    for names in copies:
        for name in names:
            target = src / name
            if (repo / name).is_dir():
                shutil.copytree(repo / name, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(repo / name, target)
    assert "ENTRYPOINT [\"kubepki\"]" in text and "'.[metrics]'" in text
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), "."], cwd=src, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("kubepki-*.whl")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
        entry_points = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "kubepki = kubepki.cli:main" in (unpacked / entry_points).read_text()
    assert (unpacked / "kubepki/py.typed").is_file()
    run = subprocess.run([sys.executable, "-m", "kubepki", "--version"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(unpacked)}, cwd=tmp_path, check=False)
    assert run.returncode == 0 and run.stdout.startswith("kubepki "), run
    where = subprocess.run([sys.executable, "-c", "import kubepki; print(kubepki.__file__)"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(unpacked)}, cwd=tmp_path,
                           check=True).stdout.strip()
    assert Path(where).is_relative_to(unpacked), where  # the wheel's kubepki ran, not this checkout's
