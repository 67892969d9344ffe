"""`kubepki secrets check` offline: input forms, output formats, exit statuses and errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubepki.cli import main
from tests.test_cluster_objects import (
    DAY,
    NOW,
    PKI,
    apiservice,
    configmap,
    key_pem,
    kubectl_list,
    pem,
    secret,
    tls_secret,
    write_yaml_list,
)

AT = "2026-12-01T00:00:00Z"
PASSWORD = "hunter2-but-much-longer-so-a-leak-would-show"


@pytest.fixture(scope="module")
def pki() -> PKI:
    """Certificates for the inputs."""
    return PKI("cli")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, objects: list[dict[str, Any]], *, yaml_format: bool = False) -> Path:
    """kubectl -o json (or -o yaml) output of ``objects`` at ``path``."""
    if yaml_format:
        out = io.StringIO()
        write_yaml_list(out, objects)
        path.write_text(out.getvalue())
    else:
        path.write_text(json.dumps(kubectl_list(objects), indent=4))
    return path


def healthy(pki: PKI) -> list[dict[str, Any]]:
    """A TLS Secret with ca.crt, the root CA ConfigMap and an APIService: all ok."""
    return [tls_secret("web", pem(pki.leaf(), pki.intermediate), key_pem(pki.leaf_keys[0]), pem(pki.root),
                       namespace="shop"),
            configmap("kube-root-ca.crt", {"ca.crt": pem(pki.root).decode()}, namespace="kube-system"),
            apiservice("v1beta1.metrics.k8s.io", pem(pki.root)),
            secret("db", {"password": PASSWORD.encode()}, namespace="shop")]


def test_table_and_exit_0(tmp_path: Path, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    """A healthy input exits 0 with the NAMESPACE OBJECT KEY table, sorted."""
    code, out, err = run(capsys, "secrets", "check", "-f", str(write(tmp_path / "o.json", healthy(pki))),
                         "--now", AT)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "OBJECT", "KEY", "EXPIRES", "RESIDUAL", "TIME", "STATUS"]
    assert [ln.split()[:3] for ln in lines[1:5]] == [
        ["-", "apiservice/v1beta1.metrics.k8s.io", "spec.caBundle"],
        ["kube-system", "configmap/kube-root-ca.crt", "ca.crt"],
        ["shop", "secret/web", "ca.crt"],
        ["shop", "secret/web", "tls.crt"],
    ]
    assert "FINDINGS" not in out


def test_json_fields_like_check(tmp_path: Path, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    """-o json items carry kubepki check's item fields plus namespace, object and key."""
    code, out, _ = run(capsys, "secrets", "check", "-f", str(write(tmp_path / "o.json", healthy(pki))),
                       "--now", AT, "-o", "json")
    data = json.loads(out)
    assert code == 0 and data["exit_code"] == 0 and data["now"] == AT
    item = next(i for i in data["items"] if i["name"] == "shop/web/tls.crt")
    assert set(item) >= {"name", "kind", "path", "signer", "scope", "not_before", "not_after", "residual_seconds",
                         "status", "externally_managed", "findings", "namespace", "object", "key"}
    assert (item["kind"], item["status"], item["namespace"], item["object"], item["key"]) == (
        "keypair", "ok", "shop", "web", "tls.crt")


@pytest.mark.parametrize("case", [
    ("2027-01-25", (), 1),           # 5 days before the leaves expire
    ("2027-01-25", ("--warn-within", "72h"), 0),
    ("2027-02-05", (), 2),           # expired
])
def test_exit_statuses_follow_time(tmp_path: Path, pki: PKI, capsys: pytest.CaptureFixture[str],
                                   case: tuple[str, tuple[str, ...], int]) -> None:
    """Exit 1 for expiring, 0 with a shorter --warn-within, 2 once expired."""
    when, extra, status = case
    path = write(tmp_path / "o.json", healthy(pki))
    code, out, _ = run(capsys, "secrets", "check", "-f", str(path), "--now", when, *extra)
    assert code == status
    if status:
        assert "FINDINGS" in out


def test_invalid_items_exit_2_with_findings(tmp_path: Path, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong key and damaged base64 give exit 2 and lines in FINDINGS."""
    broken = tls_secret("web", pem(pki.leaf()), key_pem(pki.leaf_keys[1]), namespace="shop")
    damaged = tls_secret("api", pem(pki.leaf()), key_pem(pki.leaf_keys[0]), namespace="shop")
    damaged["data"]["tls.crt"] = "@@@" + damaged["data"]["tls.crt"]
    code, out, _ = run(capsys, "secrets", "check", "-f", str(write(tmp_path / "o.json", [broken, damaged])),
                       "--now", AT)
    assert code == 2
    assert "key-mismatch" in out and "bad-base64" in out
    assert "secret/web tls.crt -n shop" in out


def test_yaml_and_stdin(tmp_path: Path, pki: PKI, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """-f reads YAML too, and -f - reads standard input."""
    path = write(tmp_path / "o.yaml", healthy(pki), yaml_format=True)
    code, from_file, _ = run(capsys, "secrets", "check", "-f", str(path), "--now", AT, "-o", "json")
    assert code == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    code, from_stdin, _ = run(capsys, "secrets", "check", "-f", "-", "--now", AT, "-o", "json")
    assert code == 0
    assert json.loads(from_stdin)["items"] == json.loads(from_file)["items"]
    assert json.loads(from_stdin)["source"] == "<stdin>"


def test_namespace_option(tmp_path: Path, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    """-n keeps one namespace."""
    code, out, _ = run(capsys, "secrets", "check", "-f", str(write(tmp_path / "o.json", healthy(pki))),
                       "--now", AT, "-n", "kube-system", "-o", "json")
    assert code == 0 and [i["name"] for i in json.loads(out)["items"]] == ["kube-system/kube-root-ca.crt/ca.crt"]


def test_no_secret_in_any_output(tmp_path: Path, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither "PRIVATE KEY" nor a Secret's value appears in table, JSON or stderr, even for broken keys."""
    key = key_pem(pki.leaf_keys[0])
    objects = [*healthy(pki), tls_secret("cut", pem(pki.leaf()), key[:100], namespace="shop"),
               secret("combined", {"tls.pem": pem(pki.leaf()) + key_pem(pki.leaf_keys[2])}, namespace="shop")]
    path = write(tmp_path / "o.json", objects)
    for output in ("table", "json"):
        _, out, err = run(capsys, "secrets", "check", "-f", str(path), "--now", AT, "-o", output)
        for text in (out, err):
            assert "PRIVATE KEY" not in text and PASSWORD not in text
            assert key.decode().splitlines()[1] not in text


@pytest.mark.parametrize(("argv", "message"), [
    (("secrets", "check", "-f", "/nonexistent/objects.json"), "cannot read /nonexistent/objects.json"),
    (("secrets", "check", "-f", "BROKEN"), "not valid JSON"),
    (("secrets", "check", "-f", "x", "--kubeconfig", "y"), "not allowed with argument"),
    (("secrets", "check", "--page-size", "0"), "must be at least 1"),
    (("secrets", "check", "--now", "yesterday"), "not an ISO 8601 time"),
    (("secrets",), "needs an action"),
])
def test_errors_exit_3_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...],
                                     message: str) -> None:
    """Bad arguments and unreadable input: exit 3, a short message on stderr, no traceback."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"items": [{"kind": "Secret",')
    argv = tuple(str(broken) if a == "BROKEN" else a for a in argv)
    try:
        code, out, err = run(capsys, *argv)
    except SystemExit as exc:  # argparse errors exit through the parser
        code = int(exc.code or 0)
        out, err = capsys.readouterr()
    assert code == 3 and out == ""
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("kubepki: error:")


def test_real_stdin_in_a_subprocess(tmp_path: Path, pki: PKI) -> None:
    """`python -m kubepki secrets check -f -` reads a pipe and exits with the inventory's status."""
    leaf = pki.leaf(not_after=NOW + 3 * DAY)
    data = json.dumps(kubectl_list([tls_secret("web", pem(leaf), key_pem(pki.leaf_keys[0]))]))
    proc = subprocess.run([sys.executable, "-m", "kubepki", "secrets", "check", "-f", "-", "--now", AT],
                          input=data, capture_output=True, text=True, check=False, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1, proc.stderr
    assert "expiring" in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize(("given", "said"), [
    ("", "no objects in <stdin>"),
    (json.dumps(kubectl_list([])), "no objects in <stdin>"),
    (json.dumps(kubectl_list([secret("db", {"password": PASSWORD.encode()}, namespace="shop")])),
     "1 object(s) read from <stdin>, none carries a certificate"),
])
def test_nothing_checked_is_not_all_well(given: str, said: str, pki: PKI) -> None:
    """Empty input (a kubectl that failed before writing), an empty list, or objects without a certificate:
    exit 3 and a note saying nothing was checked; control: a healthy TLS Secret through the same pipe exits 0."""
    def pipe(data: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubepki", "secrets", "check", "-f", "-", "--now", AT,
                               "-o", "json"], input=data, capture_output=True, text=True, check=False, timeout=60,
                              cwd=Path(__file__).resolve().parents[1])

    proc = pipe(given)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 3 and doc["items"] == []
    assert f"nothing checked: {said}" in doc["notes"]
    control = pipe(json.dumps(kubectl_list(healthy(pki))))
    assert control.returncode == 0, control.stderr
    assert not any(n.startswith("nothing checked") for n in json.loads(control.stdout)["notes"])
