"""`kubepki backup` and `kubepki restore`: command lines, output, exit statuses, errors."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kubepki.backups import _backups as backups
from kubepki.cli import main
from tests.kubeadm_trees import materialize

OK, PROBLEM, ERROR = 0, 2, 3


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (status, stdout, stderr); argparse exits count too."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else ERROR
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The real `single-full` kubeadm tree."""
    return materialize("single-full", tmp_path / "root")


@pytest.fixture
def archive(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """One backup made through the CLI into tmp/out."""
    code, _, err = run_cli(capsys, "backup", "--root", str(root), "--backup-dir", str(tmp_path / "out"))
    assert code == OK, err
    (path,) = (tmp_path / "out").iterdir()
    return path


def files_of(top: Path) -> dict[str, bytes]:
    """Content of every regular file under ``top`` (symlinks as their target)."""
    out: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            p = Path(dirpath) / name
            out[str(p.relative_to(top))] = (os.readlink(p).encode() if p.is_symlink()
                                            else p.read_bytes())
    return out


def test_backup_to_dir(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki backup --root R --backup-dir DIR` writes one archive and says where."""
    code, out, err = run_cli(capsys, "backup", "--root", str(root), "--backup-dir", str(tmp_path / "out"))
    assert code == OK and err == ""
    (path,) = (tmp_path / "out").iterdir()
    # gzip's output size varies with the tar headers (mtimes): take the archive's own size.
    size = f"{path.stat().st_size / 1024:.1f} KiB"
    assert out.splitlines() == [f"Backed up node cp1: 33 files, {size}", f"  {path}"]


def test_backup_default_destination_is_under_the_root(root: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Without --backup-dir the archive goes to /var/backups/kubepki on the node."""
    code, out, _ = run_cli(capsys, "backup", "--root", str(root))
    assert code == OK
    (path,) = (root / "var/backups/kubepki").iterdir()
    assert str(path) in out


@pytest.mark.parametrize("argv", [
    ["backup", "create", "--root", "{root}", "--backup-dir", "{out}"],
    ["backup", "--root", "{root}", "create", "--backup-dir", "{out}"],
    ["backup", "--backup-dir", "{out}", "--root", "{root}", "create"],
])
def test_backup_create_spellings(argv: list[str], root: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`backup create` takes the options before or after the action."""
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *(a.format(root=root, out=out) for a in argv))
    assert code == OK, err
    assert len(list(out.iterdir())) == 1


def test_backup_json(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o json` prints the backup's summary."""
    code, out, _ = run_cli(capsys, "backup", "--root", str(root), "--backup-dir", str(tmp_path), "-o", "json")
    assert code == OK
    doc = json.loads(out)
    assert doc["node"] == "cp1" and doc["items"] == 33 and Path(doc["path"]).is_file()


def test_backup_list(archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki backup list DIR` shows time, node, items, size and file."""
    code, out, _ = run_cli(capsys, "backup", "list", str(archive.parent))
    assert code == OK
    head, row = out.splitlines()
    assert head.split() == ["CREATED", "NODE", "ITEMS", "SIZE", "FILE"]
    assert row.split()[1:3] == ["cp1", "33"] and row.endswith(archive.name)
    code, out, _ = run_cli(capsys, "backup", "list", str(archive.parent), "-o", "json")
    assert code == OK and json.loads(out)[0]["path"] == str(archive)
    code, out, _ = run_cli(capsys, "backup", "list", str(tmp_path / "root"))
    assert code == OK and out.startswith("no kubepki backups in")


def test_backup_verify_ok(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki backup verify FILE` exits 0 for a sound archive."""
    code, out, _ = run_cli(capsys, "backup", "verify", str(archive))
    assert code == OK
    assert out.startswith(f"{archive}: OK")
    code, out, _ = run_cli(capsys, "backup", "verify", str(archive), "-o", "json")
    assert code == OK and json.loads(out)["ok"] is True


def test_backup_verify_problems_exit_2(archive: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A truncated, a missing and a hostile archive all exit 2 with the problem named."""
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:1000])
    code, out, _ = run_cli(capsys, "backup", "verify", str(cut))
    assert code == PROBLEM and "PROBLEMS FOUND" in out and "truncated" in out
    code, out, _ = run_cli(capsys, "backup", "verify", str(tmp_path / "nope.tar.gz"))
    assert code == PROBLEM and "does not exist" in out
    hostile = hostile_archive(tmp_path / "hostile.tar.gz")
    code, out, _ = run_cli(capsys, "backup", "verify", str(hostile), "-o", "json")
    assert code == PROBLEM
    doc = json.loads(out)
    assert doc["unsafe"] is True and any("'..'" in p for p in doc["problems"])


def hostile_archive(path: Path) -> Path:
    """An archive whose only member climbs out of the root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"pwned\n"
        ti = tarfile.TarInfo("../../outside/pwned")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def test_backup_prune(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki backup prune DIR --keep N` only says what would go; --apply removes them."""
    out = tmp_path / "out"
    for day in (1, 2, 3):
        backups.backup(root, out, now=dt.datetime(2026, 11, day, tzinfo=dt.timezone.utc))
    code, text, _ = run_cli(capsys, "backup", "prune", str(out), "--keep", "2")
    assert code == OK and text.startswith("would remove") and len(list(out.iterdir())) == 3
    code, text, _ = run_cli(capsys, "backup", "prune", str(out), "--keep", "1", "--apply")
    assert code == OK and "2 backup(s) removed" in text
    assert [p.name for p in out.iterdir()] == ["kubepki-backup-cp1-20261103T000000Z.tar.gz"]


def test_restore_shows_the_plan_and_writes_nothing(root: Path, archive: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki restore FILE --root R` prints the plan and changes nothing."""
    (root / "etc/kubernetes/pki/ca.crt").unlink()
    before = files_of(tmp_path)
    code, out, err = run_cli(capsys, "restore", str(archive), "--root", str(root))
    assert code == OK and err == ""
    assert "create      /etc/kubernetes/pki/ca.crt" in out
    assert "Dry run: nothing was written." in out
    assert f"To restore: kubepki restore {archive} --apply" in out
    assert files_of(tmp_path) == before


def test_restore_only(root: Path, archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--only NAME...` limits the plan to those catalog items."""
    code, out, _ = run_cli(capsys, "restore", str(archive), "--root", str(root),
                           "--only", "apiserver", "sa", "-o", "json")
    assert code == OK
    paths = [s["path"] for s in json.loads(out)["steps"]]
    assert paths == ["/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/apiserver.key",
                     "/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/sa.pub"]


def test_restore_apply_refused_then_accepted(root: Path, archive: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A changed file makes --apply exit 2 until --accept-changed; then it is restored."""
    key = root / "etc/kubernetes/pki/apiserver.key"
    original = key.read_bytes()
    key.write_bytes(b"changed\n")
    code, out, _ = run_cli(capsys, "restore", str(archive), "--root", str(root))
    assert code == OK and "--apply --accept-changed" in out and "CHANGED SINCE THE BACKUP" in out
    before = files_of(tmp_path)
    code, _, err = run_cli(capsys, "restore", str(archive), "--root", str(root), "--apply")
    assert code == PROBLEM
    assert err.startswith("kubepki: error: restore refused: /etc/kubernetes/pki/apiserver.key")
    assert files_of(tmp_path) == before
    code, out, err = run_cli(capsys, "restore", str(archive), "--root", str(root), "--apply",
                             "--accept-changed")
    assert code == OK, err
    assert key.read_bytes() == original
    assert "wrote /etc/kubernetes/pki/apiserver.key" in out
    assert "The state before the restore is in" in out
    assert len(list(archive.parent.iterdir())) == 2


def test_restore_apply_without_backup(root: Path, archive: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`--no-backup` skips the backup of the current state."""
    (root / "etc/kubernetes/pki/ca.crt").unlink()
    code, out, _ = run_cli(capsys, "restore", str(archive), "--root", str(root), "--apply",
                           "--no-backup", "-o", "json")
    assert code == OK
    doc = json.loads(out)
    assert doc["written"] == ["/etc/kubernetes/pki/ca.crt"] and doc["pre_restore_backup"] is None
    assert list(archive.parent.iterdir()) == [archive]


def test_restore_hostile_archive_exit_2(root: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A hostile archive is refused with exit 2, one line on stderr, nothing written."""
    path = hostile_archive(tmp_path / "hostile.tar.gz")
    before = files_of(tmp_path)
    code, out, err = run_cli(capsys, "restore", str(path), "--root", str(root), "--apply",
                             "--accept-changed")
    assert code == PROBLEM and out == ""
    assert err.count("\n") == 1 and "'..' in the path" in err
    assert files_of(tmp_path) == before


@pytest.mark.parametrize("argv", [
    ["restore", "{archive}", "--root", "{root}", "--only", "nope"],
    ["restore", "{archive}", "--root", "{tmp}/missing"],
    ["backup", "--root", "{tmp}/missing"],
    ["backup", "list"],
    ["backup", "list", "{tmp}/missing"],
    ["backup", "prune", "{tmp}", "--keep", "0"],
    ["backup", "bogus"],
    ["restore"],
])
def test_bad_arguments_exit_3(argv: list[str], root: Path, archive: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments, unknown names and unreadable roots exit 3 with one error line."""
    args = [a.format(archive=archive, root=root, tmp=tmp_path) for a in argv]
    code, _, err = run_cli(capsys, *args)
    assert code == ERROR
    assert err.startswith("kubepki: error:") or "usage:" in err


def test_unwritable_destination_exit_2(root: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A destination under a regular file: exit 2, the reason on stderr, no archive."""
    (tmp_path / "file").write_text("x")
    code, out, err = run_cli(capsys, "backup", "--root", str(root), "--backup-dir",
                             str(tmp_path / "file" / "sub"))
    assert code == PROBLEM and out == ""
    assert err == f"kubepki: error: cannot write a backup to {tmp_path}/file/sub: not a directory\n"


def test_help_lists_the_actions(capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki backup --help` shows the four command lines."""
    with pytest.raises(SystemExit) as caught:
        main(["backup", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for line in ("kubepki backup [--root DIR] [--backup-dir DIR]", "kubepki backup list DIR",
                 "kubepki backup verify FILE", "kubepki backup prune DIR --keep N"):
        assert line in out


def test_entry_point_end_to_end(root: Path, tmp_path: Path) -> None:
    """`python -m kubepki` backs up, verifies and restores as a real process would."""
    def kubepki(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubepki", *argv], capture_output=True,
                              text=True, check=False, cwd=Path(__file__).resolve().parents[1])

    done = kubepki("backup", "--root", str(root), "--backup-dir", str(tmp_path / "out"))
    assert done.returncode == OK, done.stderr
    (path,) = (tmp_path / "out").iterdir()
    assert kubepki("backup", "verify", str(path)).returncode == OK
    (root / "etc/kubernetes/pki/etcd/ca.key").unlink()
    done = kubepki("restore", str(path), "--root", str(root), "--only", "etcd-ca", "--apply")
    assert done.returncode == OK, done.stderr
    assert (root / "etc/kubernetes/pki/etcd/ca.key").stat().st_mode & 0o777 == 0o600


def test_restore_a_mode_that_widens_access_needs_accept_permissions(root: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The plan marks a key restored 0666 and the hint adds --accept-permissions; applying without it is
    refused (exit 2, nothing written), with it the restore runs."""
    key = root / "etc/kubernetes/pki/apiserver.key"
    key.chmod(0o666)
    code, _, err = run_cli(capsys, "backup", "--root", str(root), "--backup-dir", str(tmp_path / "out"))
    assert code == OK, err
    (archive,) = (tmp_path / "out").iterdir()
    key.chmod(0o600)
    code, out, _ = run_cli(capsys, "restore", str(archive), "--root", str(root))
    assert code == OK
    assert "WIDENS ACCESS: mode 0666 is looser than kubeadm's 0600" in out
    assert "--apply --accept-permissions --root" in out and "--accept-changed" not in out
    code, _, err = run_cli(capsys, "restore", str(archive), "--root", str(root), "--apply", "--no-backup")
    assert code == PROBLEM and "accept_permissions=True" in err
    assert os.stat(key).st_mode & 0o777 == 0o600
    code, _, err = run_cli(capsys, "restore", str(archive), "--root", str(root), "--apply", "--no-backup",
                           "--accept-permissions")
    assert code == OK, err
    assert os.stat(key).st_mode & 0o777 == 0o666


def test_backup_while_another_kubepki_writes_exit_2(root: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A backup waits for no one: the lock is held elsewhere, it says so and exits 2."""
    import kubepki
    from kubepki.node import node_lock

    with node_lock(kubepki.Node(root)):
        code, _, err = run_cli(capsys, "backup", "--root", str(root), "--backup-dir", str(tmp_path / "out"))
    assert code == PROBLEM and "another kubepki is writing to this node" in err
    assert not (tmp_path / "out").exists()
