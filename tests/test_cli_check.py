"""`kubepki check`: output formats, exit statuses, node options and error handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubepki.cli import exit_status, main
from tests.kubeadm_trees import config_path, materialize

NOW_FRESH = "2026-12-01T00:00:00Z"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_table_output_and_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A healthy kubeadm tree exits 0 with kubeadm's table."""
    root = materialize("single-full", tmp_path / "n")
    code, out, err = run_cli(capsys, "check", "--root", str(root), "--now", NOW_FRESH)
    assert code == 0, out + err
    assert out.startswith("CERTIFICATE                  EXPIRES")
    assert "CERTIFICATE AUTHORITY   EXPIRES" in out
    assert err == ""


def test_warning_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Items expiring within --warn-within give exit 1 and a FINDINGS section."""
    root = materialize("single-full", tmp_path / "n")
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--now", "2027-11-01T00:00:00Z")
    assert code == 1
    assert "expiring" in out
    code, _, _ = run_cli(capsys, "check", "--root", str(root), "--now", "2027-11-01", "--warn-within", "7d")
    assert code == 0


def test_expired_exit_2_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Expired items give exit 2; JSON has the documented fields."""
    root = materialize("expired", tmp_path / "n")
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--config", str(config_path("expired")),
                           "--now", NOW_FRESH, "-o", "json")
    assert code == 2
    data = json.loads(out)
    assert set(data) >= {"now", "node", "items"}
    assert data["now"] == "2026-12-01T00:00:00Z"
    assert data["node"] == "cp1"
    item = next(i for i in data["items"] if i["name"] == "apiserver")
    assert set(item) >= {"name", "kind", "path", "signer", "scope", "not_before", "not_after",
                         "residual_seconds", "status", "externally_managed", "findings"}
    assert item["status"] == "expired"
    assert item["path"] == "/etc/kubernetes/pki/apiserver.crt"
    assert item["kind"] == "certificate"
    assert item["scope"] == "node"
    assert item["residual_seconds"] < 0
    assert {"code": "expired", "severity": "error"}.items() <= item["findings"][0].items()
    kinds = {i["name"]: i["kind"] for i in data["items"]}
    assert (kinds["ca"], kinds["admin.conf"], kinds["sa"]) == ("ca", "kubeconfig", "keypair")
    sa = next(i for i in data["items"] if i["name"] == "sa")
    assert sa["not_after"] is None
    assert sa["scope"] == "shared"


def test_missing_required_item_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A deleted apiserver.crt is reported as !MISSING! and exits 2."""
    root = materialize("single-full", tmp_path / "n")
    (root / "etc/kubernetes/pki/apiserver.crt").unlink()
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--now", NOW_FRESH)
    assert code == 2
    assert "!MISSING! apiserver" in out


def test_cert_dir_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--cert-dir points at a non-default certificate directory."""
    root = materialize("single", tmp_path / "n")
    (root / "srv").mkdir()
    (root / "etc/kubernetes/pki").rename(root / "srv/pki")
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--now", NOW_FRESH, "-o", "json")
    assert code == 2
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--cert-dir", "/srv/pki", "--now", NOW_FRESH,
                           "-o", "json")
    assert code in (0, 1)
    assert json.loads(out)["cert_dir"] == "/srv/pki"


def test_certificates_dir_discovered_from_config_on_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kubeadm config on the node with certificatesDir is found without options."""
    root = materialize("single", tmp_path / "n")
    (root / "srv").mkdir()
    (root / "etc/kubernetes/pki").rename(root / "srv/pki")
    cfg = config_path("single").read_text() + "certificatesDir: /srv/pki\n"
    (root / "etc/kubernetes/kubeadm-config.yaml").write_text(cfg)
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--now", NOW_FRESH, "-o", "json")
    data = json.loads(out)
    assert data["cert_dir"] == "/srv/pki"
    assert code in (0, 1)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["check", "--now", "yesterday"], "not an ISO 8601 time"),
        (["check", "--warn-within", "soon"], "not a duration"),
        (["check", "-o", "xml"], "invalid choice"),
        (["check", "--root", "/nonexistent/root"], "is not a directory"),
        (["check", "--config", "/nonexistent.yaml"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_one_line_exit_3(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Argument errors and unreadable roots: one line on stderr, exit 3, no traceback."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits on usage errors
        code = exc.code  # type: ignore[assignment]
    assert code == 3
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_kubeadm_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kubeadm config that is not YAML is a clear error, not a traceback."""
    root = materialize("single", tmp_path / "n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("{{{")
    code, _, err = run_cli(capsys, "check", "--root", str(root), "--config", str(bad))
    assert code == 3
    assert "kubeadm config" in err
    assert "Traceback" not in err


def test_python_dash_m_runs_as_a_process(tmp_path: Path) -> None:
    """`python -m kubepki check` works as a whole process, stdout JSON, status 0."""
    root = materialize("single-full", tmp_path / "n")
    proc = subprocess.run(
        [sys.executable, "-m", "kubepki", "check", "--root", str(root), "--now", NOW_FRESH, "-o", "json"],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["node"] == "cp1"


def test_unreadable_file_is_a_finding_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory where a certificate should be gives a finding on that item only."""
    root = materialize("single-full", tmp_path / "n")
    crt = root / "etc/kubernetes/pki/front-proxy-client.crt"
    crt.unlink()
    crt.mkdir()
    code, out, _ = run_cli(capsys, "check", "--root", str(root), "--now", NOW_FRESH, "-o", "json")
    assert code == 2
    items = {i["name"]: i for i in json.loads(out)["items"]}
    assert items["front-proxy-client"]["status"] == "invalid"
    assert items["front-proxy-client"]["findings"][0]["code"] == "unreadable"
    assert items["apiserver"]["status"] == "ok"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_permission_denied_is_an_unreadable_finding() -> None:
    """A key that the (unprivileged) caller may not read is `unreadable`; the rest is inspected."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="kubepki-perm-"))  # pytest's tmp dirs are 0700
    try:
        _check_as_nobody(base)
    finally:
        shutil.rmtree(base)


def _check_as_nobody(base: Path) -> None:
    base.chmod(0o755)
    root = materialize("single-full", base / "n")
    for dirpath, _dirs, files in os.walk(base):
        os.chmod(dirpath, 0o755)  # noqa: S103 - the unprivileged reader must traverse
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                p.chmod(0o644)
    (root / "etc/kubernetes/pki/apiserver.key").chmod(0o600)
    # The interpreter lives under /root, which nobody may execute: fork instead of exec.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges, inspect, send the JSON back
        status = 99
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            import kubepki

            inv = kubepki.inspect(root, now=kubepki.cli._common.parse_now(NOW_FRESH))
            os.write(write_end, inv.to_json().encode())
            status = exit_status(inv)
        except BaseException as exc:  # report to the parent instead of dying silently
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        output = fh.read()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 2, output
    items = {i["name"]: i for i in json.loads(output)["items"]}
    codes = [f["code"] for f in items["apiserver"]["findings"]]
    assert "unreadable" in codes
    assert "permission denied" in items["apiserver"]["findings"][0]["message"]
    # Readable: its only findings are the benchmark's about the mode this test gave it (0644 on a key).
    assert {f["code"] for f in items["front-proxy-client"]["findings"]} == {"cis-file-mode"}
