"""The Ansible module and playbook, run by a real ansible-playbook against three sshd-served nodes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubepki import testing
from tests import sshd

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = REPO / "ansible/playbooks/renew-ha.yml"
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")
_REASON = sshd.SKIP_REASON or (
    None if os.access(ANSIBLE_PLAYBOOK, os.X_OK) else "needs ansible-playbook (pip install ansible-core)")

pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

SHARED = ("pki/ca.crt", "pki/ca.key", "pki/front-proxy-ca.key", "pki/etcd/ca.key", "pki/sa.key")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Fleet]:
    """Three sshd servers standing for three control-plane hosts."""
    f = sshd.start_fleet(tmp_path_factory.mktemp("sshd"), 3)
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> testing.DemoCluster:
    """Three nodes whose leaves expire in about 15 days (issued 350 days ago)."""
    issued = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=350)
    return testing.build_cluster(tmp_path_factory.mktemp("nodes"), nodes=3, issued_at=issued)


def _inventory(path: Path, fleet: sshd.Fleet, cluster: testing.DemoCluster) -> Path:
    hosts = {
        node.name: {"ansible_host": "127.0.0.1", "ansible_port": server.port, "kubepki_root": str(node.root)}
        for node, server in zip(cluster.nodes, fleet.servers, strict=True)
    }
    doc = {"control_plane": {"hosts": hosts, "vars": {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(fleet.client_key),
        # The module runs on the "node": this machine, with this Python and this checkout.
        "ansible_python_interpreter": sys.executable,
        "kubepki_environment": {"PYTHONPATH": str(REPO)},
        # No kubelet or static pods run here: restarting and verify-served are left out.
        "kubepki_restart": False,
    }}}
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def run_playbook(tmp: Path, fleet: sshd.Fleet, cluster: testing.DemoCluster, *args: str,
                 known_hosts: Path | None = None) -> tuple[int, dict[str, Any], str]:
    """ansible-playbook with the json callback; (exit status, parsed output, stderr)."""
    tmp.mkdir(parents=True, exist_ok=True)
    kh = known_hosts or fleet.known_hosts(tmp / "known_hosts")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({
        "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"),
        "ANSIBLE_LIBRARY": str(REPO / "ansible/library"),
        "ANSIBLE_STDOUT_CALLBACK": "kubepki_json",
        "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "tests/ansible_plugins"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        # No ControlMaster: nothing keeps running after the playbook; host keys from our file only.
        "ANSIBLE_SSH_ARGS": (f"-o ControlMaster=no -o UserKnownHostsFile={kh} -o GlobalKnownHostsFile=/dev/null "
                             "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOME": str(tmp / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    })
    inventory = _inventory(tmp / "inventory.yml", fleet, cluster)
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(PLAYBOOK), *args],
                          capture_output=True, text=True, env=env, cwd=REPO / "ansible", timeout=300, check=False)
    try:
        out = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        pytest.fail(f"ansible-playbook printed no JSON (status {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.returncode, out, done.stderr


def task_results(out: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """Per host, the result of the task called ``name`` (with its ``status``)."""
    return {t["host"]: {**t["result"], "status": t["status"]} for t in out["tasks"] if t["task"] == name}


def digests(cluster: testing.DemoCluster, rel: str) -> list[str]:
    """SHA-256 of /etc/kubernetes/<rel> on each node."""
    return [hashlib.sha256((n.root / "etc/kubernetes" / rel).read_bytes()).hexdigest() for n in cluster.nodes]


RENEW = "Back up the node, then renew what is due (check mode - the plan)"


def test_playbook_check_mode_then_apply_then_idempotent(fleet: sshd.Fleet, cluster: testing.DemoCluster,
                                                        tmp_path: Path) -> None:
    """Acceptance: --check changes nothing but reports the plan; applying renews; a re-run changes nothing."""
    leaves = ("pki/apiserver.crt", "pki/etcd/peer.key", "admin.conf")
    before = {rel: digests(cluster, rel) for rel in leaves + SHARED}

    code, out, err = run_playbook(tmp_path / "check", fleet, cluster, "--check")
    assert code == 0, err
    planned = task_results(out, RENEW)
    assert sorted(planned) == ["cp1", "cp2", "cp3"]
    assert all(r["changed"] for r in planned.values())
    assert "apiserver" in planned["cp2"]["changed_items"]
    assert planned["cp1"]["plan"]["kind"] == "RenewalPlan"
    assert "result" not in planned["cp1"]
    assert {rel: digests(cluster, rel) for rel in leaves + SHARED} == before
    assert not any(n.path("/var/backups/kubepki").exists() for n in cluster.nodes)

    code, out, err = run_playbook(tmp_path / "apply", fleet, cluster)
    assert code == 0, err
    renewed = task_results(out, RENEW)
    assert all(r["changed"] and r["result"]["ok"] for r in renewed.values())
    for rel in leaves:
        after = digests(cluster, rel)
        assert all(a != b for a, b in zip(after, before[rel], strict=True)), rel
    for rel in SHARED:
        assert digests(cluster, rel) == before[rel] and len(set(before[rel])) == 1, rel
    for node in cluster.nodes:
        backup = renewed[node.name]["backup"]
        assert node.path(backup).is_file(), backup
    assert out["stats"]["cp3"]["changed"] == 1

    code, out, err = run_playbook(tmp_path / "again", fleet, cluster)
    assert code == 0, err
    again = task_results(out, RENEW)
    assert not any(r["changed"] for r in again.values())
    assert all(stats["changed"] == 0 for stats in out["stats"].values())


def test_wrong_host_key_stops_the_play(fleet: sshd.Fleet, cluster: testing.DemoCluster, tmp_path: Path) -> None:
    """A host whose key is not the known one is unreachable and the rolling play goes no further."""
    tmp_path.mkdir(exist_ok=True)
    wrong = fleet.known_hosts(tmp_path / "known_hosts_wrong", wrong=[0])
    code, out, _err = run_playbook(tmp_path / "run", fleet, cluster, "--check", known_hosts=wrong)
    assert code != 0
    first = task_results(out, "Inspect the node before renewing")["cp1"]
    assert first.get("unreachable") and "host key" in first["msg"].lower()
    assert {t["host"] for t in out["tasks"]} == {"cp1"}  # cp2 and cp3 never started


def test_the_playbook_takes_workers_too(fleet: sshd.Fleet, tmp_path: Path) -> None:
    """Two control planes and a worker in the play (issue 14): the worker is checked as a worker (no error,
    no control-plane file missing) and nothing is renewed on it — the kubelet rotates its own certificate —
    while the control planes are renewed (control)."""
    issued = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=350)
    mixed = testing.build_cluster(tmp_path / "nodes", nodes=2, workers=1, issued_at=issued)
    worker = mixed.node("w1")
    before = hashlib.sha256(worker.path("/etc/kubernetes/kubelet.conf").read_bytes()).hexdigest()
    code, out, err = run_playbook(tmp_path / "run", fleet, mixed)
    assert code == 0, err
    inspected = task_results(out, "Inspect the node before renewing")
    assert inspected["w1"]["role"] == "worker" and inspected["cp1"]["role"] == "control-plane"
    assert [f for f in inspected["w1"]["findings"] if f["severity"] in ("error", "critical")] == []
    renewed = task_results(out, RENEW)
    assert not renewed["w1"]["changed"] and renewed["w1"]["changed_items"] == []
    assert renewed["cp1"]["changed"] and renewed["cp2"]["changed"]
    assert hashlib.sha256(worker.path("/etc/kubernetes/kubelet.conf").read_bytes()).hexdigest() == before
