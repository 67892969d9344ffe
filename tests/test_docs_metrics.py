"""docs/metrics.md: its alert rules parse, name real series, and fire when they should."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import kubepki
from kubepki import testing

PAGE = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
NOW = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)

#: promtool unit test: 15 days left warns, 3 days pages, a CA with years left is quiet.
PROMTOOL_TEST = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'kubepki_certificate_seconds_left{node="cp1",name="apiserver",path="/a.crt",signer="ca"}'
        values: '1296000x180'
      - series: 'kubepki_certificate_seconds_left{node="cp1",name="etcd-peer",path="/p.crt",signer="etcd-ca"}'
        values: '259200x180'
      - series: 'kubepki_certificate_seconds_left{node="cp1",name="ca",path="/ca.crt",signer=""}'
        values: '283824000x180'
      - series: 'kubepki_item_error{node="cp1",name="front-proxy-client",path="/f.crt",signer="front-proxy-ca"}'
        values: '1x180'
      - series: 'kubepki_item_error{node="cp1",name="apiserver",path="/a.crt",signer="ca"}'
        values: '0x180'
      - series: 'kubepki_auto_renew_last_run_success{node="cp1",status="rolled-back"}'
        values: '0x180'
      - series: 'kubepki_auto_renew_last_run_success{node="cp2",status="renewed"}'
        values: '1x180'
    alert_rule_test:
      - eval_time: 2h
        alertname: KubepkiCertificateExpiresSoon
        exp_alerts:
          - exp_labels: {severity: warning, node: cp1, name: apiserver, path: /a.crt, signer: ca}
            exp_annotations:
              summary: "apiserver on cp1 expires in 15d 0h 0m 0s"
              description: "/a.crt (signed by ca) expires within 30 days.
                Renew it: kubepki renew apiserver --apply, then restart what reads it."
      - eval_time: 2h
        alertname: KubepkiCertificateExpiresVerySoon
        exp_alerts:
          - exp_labels: {severity: critical, node: cp1, name: etcd-peer, path: /p.crt, signer: etcd-ca}
            exp_annotations:
              summary: "etcd-peer on cp1 expires in 3d 0h 0m 0s"
              description: "/p.crt (signed by etcd-ca) expires within 7 days,
                or has expired (the time left is negative)."
      - eval_time: 2h
        alertname: KubepkiItemError
        exp_alerts:
          - exp_labels: {severity: critical, node: cp1, name: front-proxy-client, path: /f.crt, signer: front-proxy-ca}
            exp_annotations:
              summary: "front-proxy-client on cp1 is expired, invalid or missing"
              description: "sudo kubepki check on cp1 lists the findings for /f.crt."
      - eval_time: 2h
        alertname: KubepkiAutoRenewFailed
        exp_alerts:
          - exp_labels: {severity: critical, node: cp1, status: rolled-back}
            exp_annotations:
              summary: "the last kubepki auto-renew on cp1 failed (rolled-back)"
              description: "sudo kubepki history on cp1 says what failed and whether the rollback
                brought the node back."
"""


def _rules() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    docs = [yaml.safe_load(b) for b in blocks]
    found = [d for d in docs if isinstance(d, dict) and "groups" in d]
    assert len(found) == 1
    return found[0]


def test_rules_use_the_thresholds_of_the_page() -> None:
    """Warning at 30 days, critical at 7, an alert on kubepki_item_error == 1."""
    rules = {r["alert"]: r for g in _rules()["groups"] for r in g["rules"]}
    assert "kubepki_certificate_seconds_left < 30 * 86400" in rules["KubepkiCertificateExpiresSoon"]["expr"]
    assert rules["KubepkiCertificateExpiresSoon"]["labels"]["severity"] == "warning"
    assert rules["KubepkiCertificateExpiresVerySoon"]["expr"] == "kubepki_certificate_seconds_left < 7 * 86400"
    assert rules["KubepkiCertificateExpiresVerySoon"]["labels"]["severity"] == "critical"
    assert rules["KubepkiItemError"]["expr"] == "kubepki_item_error == 1"


def test_rules_name_series_kubepki_exports(tmp_path: Path) -> None:
    """Every series an expression uses is in a real exposition (a renamed series would break alerts)."""
    pytest.importorskip("prometheus_client")
    from kubepki import metrics

    root = testing.build_node(tmp_path, issued_at=NOW).root
    inv = kubepki.inspect(root, now=NOW)
    kubepki.auto_renew(root, apply=True, now=NOW)  # nothing due: one line in the node's history
    run = metrics.last_run(root)
    assert run is not None
    exposed = set(re.findall(r"^(kubepki_\w+)\{", metrics.exposition([inv, run]), re.M))
    used = {m for g in _rules()["groups"] for r in g["rules"] for m in re.findall(r"kubepki_\w+", r["expr"])}
    assert used
    assert used <= exposed, used - exposed


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Prometheus's promtool")
def test_promtool_accepts_and_fires_them(tmp_path: Path) -> None:
    """promtool checks the rules, and its unit test sees each alert fire for its case only."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules()), encoding="utf-8")
    (tmp_path / "test.yaml").write_text(PROMTOOL_TEST, encoding="utf-8")
    check = subprocess.run(["promtool", "check", "rules", "rules.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(["promtool", "test", "rules", "test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert test.returncode == 0, test.stdout + test.stderr
