"""`kubepki renew` and `kubepki certs`: plans, applying, CSR mode, exit statuses, errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import kubepki
from kubepki.cli import main
from kubepki.node._lock import node_lock
from kubepki.node._node import Node
from kubepki.pki._certs import load_private_key
from tests.kubeadm_trees import config_path, materialize
from tests.test_renewal import ALL, digests

REPO = Path(__file__).resolve().parents[1]
NOW = "2027-09-01T12:00:00Z"
PKI = "etc/kubernetes/pki"
FAST = ("--key-algorithm", "ECDSA-P256")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A private copy of the real kubeadm tree single-full."""
    return materialize("single-full", tmp_path / "node")


def test_plan_is_shown_and_nothing_written(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --apply: the plan, exit 0, no file touched."""
    before = digests(root)
    code, out, err = run_cli(capsys, "renew", "all", "--root", str(root), "--now", NOW)
    assert (code, err) == (0, "")
    assert out.startswith("Renewal plan for cp1")
    assert "ITEM" in out and "super-admin.conf" in out and "Nothing has been written." in out
    assert digests(root) == before
    code, out, _ = run_cli(capsys, "renew", "apiserver", "--root", str(root), "--now", NOW,
                           "--validity", "90d", "-o", "json")
    data = json.loads(out)
    assert code == 0 and [s["name"] for s in data["steps"]] == ["apiserver"]
    assert data["not_after"] == "2027-11-30T12:00:00Z" and data["validity_source"] == "argument"


def test_apply_backs_up_renews_and_check_is_ok(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--apply: a backup under --root, kubeadm's messages, and `kubepki check` all ok."""
    code, out, err = run_cli(capsys, "renew", "all", "--root", str(root), "--now", NOW, "--apply",
                             "--force-invalid-times", *FAST)
    assert (code, err) == (0, "")
    assert "certificate for serving the Kubernetes API renewed" in out
    # kubepki's restart plan for what was written, not kubeadm's blanket line (tests/test_restart_advice.py)
    assert "Done renewing certificates." in out and "kube-scheduler and etcd" not in out
    assert out.rstrip().splitlines()[-1].startswith("To restart them: kubepki restarts apply --changed ")
    backups = list((root / "var/backups/kubepki").iterdir())
    assert len(backups) == 1 and backups[0].name.endswith(".tar.gz")
    assert f"Backup: {backups[0]}" in out
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--now", NOW)
    assert code == 0, out


def test_apply_json_lists_plan_and_result(root: Path, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    """-o json with --apply prints the result with the plan inside; --backup-dir is honoured."""
    code, out, _ = run_cli(capsys, "renew", "all", "--root", str(root), "--now", NOW, "--apply",
                           "--force-invalid-times", "--backup-dir", str(tmp_path / "bk"), "--expiring-within", "100d",
                           "-o", "json", *FAST)
    data = json.loads(out)
    assert code == 0
    assert data["kind"] == "RenewalResult" and data["changed"] == list(ALL)
    assert data["backup"].startswith(str(tmp_path / "bk"))
    assert data["plan"]["summary"]["renew"] == 11
    code, out, _ = run_cli(capsys, "renew", "all", "--root", str(root), "--now", NOW,
                           "--expiring-within", "100d", "-o", "json")
    assert {s["reason"] for s in json.loads(out)["steps"]} == {"not-expiring"}


def run_any(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Like run_cli, but argparse's own errors (SystemExit) count too."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["renew", "--root", "{root}"], "name the items to renew"),
        (["renew", "apisrever", "--root", "{root}"], "unknown catalog item 'apisrever'"),
        (["renew", "ca", "--root", "{root}"], "is a CA"),
        (["renew", "kubelet.conf", "--root", "{root}"], "kubelet rotates"),
        (["renew", "all", "apiserver", "--root", "{root}"], "cannot be combined"),
        (["renew", "all", "--key-algorithm", "DSA"], "invalid choice"),
        (["renew", "all", "--validity", "forever"], "not a duration"),
        (["renew", "all", "--resume", "--root", "{root}"], "--resume takes no names"),
        (["renew", "all", "--root", "/nonexistent"], "is not a directory"),
        (["certs", "install-signed", "/nonexistent", "--root", "{root}"], "is not a directory"),
    ],
)
def test_bad_arguments_exit_3(root: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                              message: str) -> None:
    """Bad arguments: exit 3, one line on stderr, no traceback."""
    code, _, err = run_any(capsys, *(a.format(root=root) for a in argv))
    assert code == 3
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_certs_without_an_action_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki certs` alone prints its help on stderr and exits 3."""
    code, _, err = run_any(capsys, "certs")
    assert code == 3 and "install-signed" in err


def test_refused_items_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong signer is shown as REFUSED (plan: exit 0) and makes --apply exit 2."""
    from kubepki import testing

    root = testing.build_node(tmp_path, key_algorithm="ECDSA-P256",
                              issued_at=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
                              defects=[testing.Defect("wrong-signer", "front-proxy-client")]).root
    code, out, _ = run_cli(capsys, "renew", "all", "--root", str(root), "--now", NOW)
    assert code == 0 and "REFUSED" in out
    code, out, _ = run_cli(capsys, "renew", "all", "--root", str(root), "--now", NOW, "--apply",
                           "--force-invalid-times", "--no-backup")
    assert code == 2
    assert "not issued by the front-proxy-ca CA" in out


def test_lock_held_exit_2_with_a_message(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second renewal while another holds the lock fails clearly."""
    with node_lock(Node(root)):
        code, _, err = run_cli(capsys, "renew", "apiserver", "--root", str(root), "--now", NOW,
                                 "--apply", "--no-backup", "--wait", "0.1")
    assert code == 2
    assert err.startswith("kubepki: error: another kubepki is writing to this node")
    assert len(err.strip().splitlines()) == 1


def test_changed_node_since_plan_is_refused_by_the_api_not_the_cli(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI plans and applies at once, so a resume is all it can meet: nothing to resume."""
    code, out, _ = run_cli(capsys, "renew", "--resume", "--root", str(root))
    assert (code, out.strip()) == (0, "No interrupted renewal to complete.")


def _sign(csr_pem: bytes, ca_cert: bytes, ca_key: bytes) -> bytes:
    csr = x509.load_pem_x509_csr(csr_pem)
    ca = x509.load_pem_x509_certificate(ca_cert)
    now = dt.datetime(2027, 9, 1, tzinfo=dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject)
               .public_key(csr.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=90)))
    for ext in csr.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    key = load_private_key(ca_key)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def test_csr_then_install_signed(root: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """renew --csr DIR writes keys and CSRs; certs install-signed DIR installs the signed ones."""
    out_dir = tmp_path / "csr"
    code, out, _ = run_cli(capsys, "renew", "--csr", str(out_dir), "front-proxy-client",
                           "scheduler.conf", "--root", str(root), *FAST)
    assert code == 0
    assert sorted(Path(p).name for p in out.split()) == [
        "front-proxy-client.csr", "front-proxy-client.key", "scheduler.conf.csr",
        "scheduler.conf.key"]
    for name, ca in (("front-proxy-client", "front-proxy-ca"), ("scheduler.conf", "ca")):
        (out_dir / f"{name}.crt").write_bytes(_sign(
            (out_dir / f"{name}.csr").read_bytes(), (root / PKI / f"{ca}.crt").read_bytes(),
            (root / PKI / f"{ca}.key").read_bytes()))
    code, out, err = run_cli(capsys, "certs", "install-signed", str(out_dir), "--root", str(root),
                             "--now", NOW, "--no-backup", "--force-invalid-times")
    assert (code, err) == (0, ""), out
    assert "certificate for the front proxy client installed" in out
    assert (root / PKI / "front-proxy-client.crt").read_bytes() == (
        out_dir / "front-proxy-client.crt").read_bytes()
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--now", NOW)
    assert code == 0, out


def test_certs_switch_super_admin_and_kubeconfig_user(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The explicit operations: plan by default, --apply to do them."""
    root = materialize("ha-cp2", tmp_path / "node")
    config = str(config_path("ha-cp2"))
    (root / "etc/kubernetes/super-admin.conf").unlink()
    code, out, _ = run_cli(capsys, "certs", "switch-kubelet-conf", "--root", str(root),
                           "--config", config, "--now", NOW)
    assert code == 0 and "switch" in out
    code, out, _ = run_cli(capsys, "certs", "switch-kubelet-conf", "--root", str(root),
                           "--config", config, "--now", NOW, "--apply", "--force-invalid-times", "--no-backup")
    assert code == 0, out
    assert (root / "var/lib/kubelet/pki/kubelet-client-current.pem").is_symlink()
    code, out, _ = run_cli(capsys, "certs", "create-super-admin", "--root", str(root),
                           "--config", config, "--now", NOW, "--apply", "--force-invalid-times", "--no-backup", *FAST)
    assert code == 0, out
    assert (root / "etc/kubernetes/super-admin.conf").exists()
    code, out, _ = run_cli(capsys, "certs", "kubeconfig-user", "--client-name", "jane",
                           "--org", "devs", "--root", str(root), "--config", config,
                           "--now", NOW, "--validity", "7d", "--force-invalid-times", *FAST)
    assert code == 0
    doc = yaml.safe_load(out)
    assert doc["users"][0]["name"] == "jane"
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--config", config, "--now", NOW)
    assert code == 0, out


def test_whole_process_exit_statuses(root: Path) -> None:
    """As a process: a bad name exits 3 with one line and no traceback; a plan exits 0."""
    proc = subprocess.run([sys.executable, "-m", "kubepki", "renew", "nope", "--root", str(root)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith("kubepki: error: unknown catalog item 'nope'")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "kubepki", "renew", "all", "--root", str(root),
                           "--now", NOW, "-o", "json"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["summary"]["renew"] == 11


def test_resume_after_a_kill_mid_commit(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """kubepki renew --resume completes a run killed between a key's and its cert's rename."""
    import os
    import signal

    from kubepki.renewal import _renewal as renewal

    # Checkpoints: staging journal, 18 staged files, commit, admin.conf renamed, apiserver.key.
    env = {**os.environ, renewal.CRASH_ENV: "22"}
    proc = subprocess.run([sys.executable, "-m", "kubepki", "renew", "all", "--root", str(root),
                           "--now", NOW, "--apply", "--force-invalid-times", "--no-backup", *FAST],
                          cwd=REPO, env=env, capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL
    journal = json.loads((root / PKI / renewal.JOURNAL_NAME).read_text())
    assert journal["state"] == "committing"
    cert = x509.load_pem_x509_certificate((root / PKI / "apiserver.crt").read_bytes())
    key = load_private_key((root / PKI / "apiserver.key").read_bytes())
    assert key.public_key() != cert.public_key()  # the one window, named in the journal
    code, out, _ = run_cli(capsys, "renew", "--resume", "--root", str(root))
    assert code == 0
    assert out.startswith("Completed the interrupted renewal of: apiserver, apiserver-etcd-client")
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--now", NOW)
    assert code == 0, out


def test_the_command_suggested_for_an_embedded_kubelet_conf_fixes_it(tmp_path: Path) -> None:
    """`renew` skips kubelet.conf and names a command for an embedded one; running that command (on the
    node, with --apply) removes the kubelet-client-embedded finding. Negative control: the finding is there
    before it runs, and a plain `renew kubelet.conf --apply` does not remove it."""
    import re

    from kubepki import testing
    from kubepki.testing import Defect, DefectKind

    demo = testing.build_node(tmp_path / "n", defects=[Defect(DefectKind.EMBEDDED_KUBELET_CONF, "kubelet.conf")])
    root = str(demo.root)

    def codes() -> set[str]:
        return {f.code for f in kubepki.inspect(root)["kubelet.conf"].findings}

    assert "kubelet-client-embedded" in codes()
    plan = subprocess.run([sys.executable, "-m", "kubepki", "renew", "kubelet.conf", "--root", root, "--apply",
                           "--no-backup"], capture_output=True, text=True, check=False)
    assert "kubelet-client-embedded" in codes(), plan.stdout
    suggested = re.search(r"`(kubepki [^`]+)`", plan.stdout + plan.stderr)
    assert suggested, plan.stdout + plan.stderr
    argv = suggested.group(1).split()[1:]
    run = subprocess.run([sys.executable, "-m", "kubepki", *argv, "--root", root, "--apply", "--no-backup"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kubelet-client-embedded" not in codes()


# ------------------------------------------ the real clock, loops, FIFOs, umask (the adversarial review)


def _live(tmp_path: Path) -> Path:
    """A demo node issued 330 days before the real clock."""
    from kubepki import testing

    issued = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=330)
    return testing.build_node(tmp_path / "live", issued_at=issued, key_algorithm="ECDSA-P256").root


def _at(delta: dt.timedelta) -> str:
    return (dt.datetime.now(dt.timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_apply_at_a_now_off_the_real_clock_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--now ahead (not yet valid) or 2h behind (a stale plan) with --apply: exit 2 with the reason, nothing
    written; --force-invalid-times or --max-plan-age lets it through; the real time (control) exits 0."""
    root = _live(tmp_path)
    before = digests(root)
    base = ("renew", "apiserver", "--root", str(root), "--apply", "--no-backup")
    code, _, err = run_cli(capsys, *base, "--now", _at(dt.timedelta(days=30)))
    assert code == 2 and err.startswith("kubepki: error: refusing to write certificates that are not valid at "
                                        "the real time"), err
    assert "--force-invalid-times" in err
    code, _, err = run_cli(capsys, *base, "--now", _at(-dt.timedelta(hours=2)))
    assert code == 2 and "behind the real clock" in err and "--max-plan-age" in err, err
    assert digests(root) == before
    code, _, err = run_cli(capsys, *base, "--now", _at(-dt.timedelta(hours=2)), "--max-plan-age", "3h")
    assert (code, err) == (0, "")
    code, _, err = run_cli(capsys, *base, "--now", _at(dt.timedelta(days=30)), "--force-invalid-times")
    assert (code, err) == (0, "")
    code, _, err = run_cli(capsys, *base)
    assert (code, err) == (0, "")
    code, _, err = run_cli(capsys, "certs", "kubeconfig-user", "--client-name", "jane", "--root", str(root),
                           "--now", _at(dt.timedelta(days=30)), *FAST)
    assert code == 2 and "not valid at the real time" in err


def test_a_symlink_loop_at_one_item_exits_2_not_3(tmp_path: Path) -> None:
    """`renew all --apply` with a looping apiserver.crt: exit 2 naming it, the other items renewed; negative
    control: without the loop, exit 0."""
    root = _live(tmp_path)
    crt = root / PKI / "apiserver.crt"
    crt.unlink()
    os.symlink("apiserver.crt", crt)
    argv = [sys.executable, "-m", "kubepki", "renew", "all", "--root", str(root), "--apply", "--no-backup"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr == ""
    assert "too many levels of symbolic links at /etc/kubernetes/pki/apiserver.crt" in proc.stdout
    assert "certificate for serving the Kubernetes API renewed" not in proc.stdout
    assert "certificate the apiserver uses to access etcd renewed" in proc.stdout
    control = _live(tmp_path / "again")
    argv[argv.index(str(root))] = str(control)
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _kubepki(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """kubepki in a child process that must finish within a minute (a blocking open would not)."""
    return subprocess.run([sys.executable, "-m", "kubepki", *argv, "--root", str(root)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_a_fifo_at_the_journal_hangs_no_command(tmp_path: Path, kind: str) -> None:
    """A FIFO (or a directory, or a symlink) at <cert dir>/.kubepki-renewal.json: check, renew (plan), renew
    --apply and --resume all finish; the plan says so, applying and resuming refuse (exit 2) and it is left
    alone; negative control: once it is removed, --apply renews."""
    import shutil
    import stat

    from kubepki.renewal import _renewal as renewal

    root = _live(tmp_path)
    fifo = root / PKI / renewal.JOURNAL_NAME
    if kind == "fifo":
        os.mkfifo(fifo)
    elif kind == "directory":
        fifo.mkdir()
    else:
        (tmp_path / "elsewhere.json").write_text('{"version": 1, "state": "staging", "groups": []}')
        os.symlink(tmp_path / "elsewhere.json", fifo)
    check = _kubepki(root, "check")
    assert "Traceback" not in check.stderr and check.returncode in (0, 1), check.stdout + check.stderr
    plan = _kubepki(root, "renew", "all")
    assert plan.returncode == 0 and f"/{PKI}/{renewal.JOURNAL_NAME} is not a regular file" in plan.stdout
    for argv in (("renew", "all", "--apply", "--no-backup"), ("renew", "--resume")):
        run = _kubepki(root, *argv)
        assert run.returncode == 2, (argv, run.stdout + run.stderr)
        assert "renewal journal" in run.stderr and "is not a regular file" in run.stderr, argv
    mode = os.lstat(fifo).st_mode
    assert {"fifo": stat.S_ISFIFO, "directory": stat.S_ISDIR, "symlink": stat.S_ISLNK}[kind](mode)
    shutil.rmtree(fifo) if kind == "directory" else fifo.unlink()
    assert _kubepki(root, "renew", "all", "--apply", "--no-backup").returncode == 0  # control


def test_a_fifo_at_a_staged_path_hangs_nothing_and_is_never_put_in_place(tmp_path: Path) -> None:
    """A committed journal whose staged certificate is a FIFO: --resume and renew --apply refuse (exit 2) without
    opening it, apiserver.crt untouched; negative control: a regular staged pair is completed."""
    from kubepki.renewal import _renewal as renewal

    root = _live(tmp_path)
    crt, key = root / PKI / "apiserver.crt", root / PKI / "apiserver.key"
    old = crt.read_bytes()
    staged_crt, staged_key = root / PKI / ".apiserver.crt.kubepki-new", root / PKI / ".apiserver.key.kubepki-new"
    journal = {"version": 1, "state": "committing", "started": "2026-12-01T00:00:00Z", "pid": 1,
               "groups": [{"name": "apiserver", "check": "pair", "files": [
                   {"staged": f"/{PKI}/.apiserver.key.kubepki-new", "target": f"/{PKI}/apiserver.key", "role": "key"},
                   {"staged": f"/{PKI}/.apiserver.crt.kubepki-new", "target": f"/{PKI}/apiserver.crt",
                    "role": "cert"}]}]}
    (root / PKI / renewal.JOURNAL_NAME).write_text(json.dumps(journal))
    os.mkfifo(staged_crt)
    for argv in (("renew", "--resume"), ("renew", "all", "--apply", "--no-backup")):
        run = _kubepki(root, *argv)
        assert run.returncode == 2, (argv, run.stdout + run.stderr)
        assert f"/{PKI}/.apiserver.crt.kubepki-new is not a regular file" in run.stderr, argv
    assert crt.read_bytes() == old and not crt.is_symlink()
    staged_crt.unlink()
    staged_crt.write_bytes(old)
    staged_key.write_bytes(key.read_bytes())
    run = _kubepki(root, "renew", "--resume")
    assert run.returncode == 0 and "Completed the interrupted renewal of: apiserver" in run.stdout, run.stderr
    assert crt.read_bytes() == old and not (root / PKI / renewal.JOURNAL_NAME).exists()


def test_install_signed_never_opens_a_fifo(root: Path, tmp_path: Path) -> None:
    """A FIFO handed back as <name>.crt is refused (exit 2, not a regular file), in a child under a timeout."""
    signed = tmp_path / "signed"
    signed.mkdir()
    os.mkfifo(signed / "front-proxy-client.crt")
    (signed / "front-proxy-client.key").write_bytes((root / PKI / "front-proxy-client.key").read_bytes())
    run = _kubepki(root, "certs", "install-signed", str(signed), "--no-backup")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "front-proxy-client.crt is a FIFO, not a regular file" in run.stdout


def test_csr_directories_are_0700_whatever_the_umask(root: Path, tmp_path: Path) -> None:
    """renew --csr a/b/csrs under umask 000: every directory made is 0700, every file 0600; an existing parent
    (negative control) keeps its mode."""
    tmp_path.chmod(0o755)
    out = tmp_path / "a" / "b" / "csrs"
    code = ("import os, sys; os.umask(0); from kubepki.cli import main; "
            f"sys.exit(main(['renew', '--csr', {str(out)!r}, 'apiserver', '--root', {str(root)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    for d in (tmp_path / "a", tmp_path / "a" / "b", out):
        assert d.stat().st_mode & 0o777 == 0o700, d
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o600}
    assert tmp_path.stat().st_mode & 0o777 == 0o755

