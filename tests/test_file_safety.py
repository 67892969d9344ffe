"""File safety: private modes, kept owners, no write through a planted symlink, safe temporary files, refused signers.

- Keys kubepki creates are 0600 from their first byte; archives are 0600 in a 0700
  directory, whatever the umask; renewing and restoring keep each file's mode and
  owner (tested on files owned by 1000:1000 with unusual modes).
- A symlink planted where kubepki writes (a key, a kubeconfig, the journal, a staged
  file, the lock, an archive's name in the backup directory) is replaced or refused,
  never written through: the file it points at, outside the node's root, is unchanged.
- Every file kubepki creates is opened ``O_CREAT | O_EXCL | O_NOFOLLOW`` (the lock file,
  which is reopened on purpose, ``O_NOFOLLOW``), and no existing file is ever opened for
  writing in place: a Python audit hook records every ``open`` of a whole renewal,
  restore and backup.
- A renewal refuses to sign with a CA whose key does not match its certificate, and to
  re-sign a certificate that another CA issued; certificates handed in for
  installation must have been issued by the node's CA.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import kubepki
from kubepki.errors import SignerError
from kubepki.node._fs import LocalFS
from kubepki.pki import _issuing as issuing
from kubepki.pki._certs import load_certificate, load_private_key
from kubepki.renewal import _renewal as renewal
from kubepki.testing import Defect, DefectKind
from tests import _figures
from tests._hardening import (
    NOW,
    NOW_ARG,
    PKI,
    assert_clean,
    copy_tree,
    demo,
    key_mismatches,
    leftovers,
    needs_root,
    run_cli,
    run_process,
)

RENEW = ["renew", "all", "--now", NOW_ARG, "--apply", "--force-invalid-times"]
KCONF = "etc/kubernetes"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy demo node."""
    return demo(tmp_path_factory.mktemp("safety") / "node")


@pytest.fixture
def node(base: Path, tmp_path: Path) -> Path:
    """A fresh copy of it."""
    return copy_tree(base, tmp_path / "node")


def _archive(root: Path, dest: Path) -> Path:
    run = run_cli(["backup", "--root", str(root), "--backup-dir", str(dest), "-o", "json"])
    assert run.code == 0, run
    return Path(json.loads(run.out)["path"])


# --------------------------------------------------------------------------------------
# Modes and owners


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_new_keys_are_0600_whatever_the_umask(node: Path, tmp_path: Path) -> None:
    """Keys created from nothing (recreate-missing, CSR mode, super-admin.conf) are 0600; certificates 0644."""
    (node / PKI / "apiserver.key").unlink()
    (node / PKI / "apiserver.crt").unlink()
    (node / KCONF / "super-admin.conf").unlink()
    with umask(0):
        run = run_cli(["renew", "apiserver", "--recreate-missing", "--root", str(node), "--now", NOW_ARG,
                       "--apply", "--force-invalid-times", "--no-backup"])
        assert run.code == 0, run
        run = run_cli(["certs", "create-super-admin", "--root", str(node), "--now", NOW_ARG, "--apply",
                       "--force-invalid-times", "--no-backup"])
        assert run.code == 0, run
        run = run_cli(["renew", "--csr", str(tmp_path / "csr"), "all", "--root", str(node)])
        assert run.code == 0, run
    assert mode(node / PKI / "apiserver.key") == 0o600
    assert mode(node / PKI / "apiserver.crt") == 0o644
    assert mode(node / KCONF / "super-admin.conf") == 0o600
    keys = sorted((tmp_path / "csr").glob("*.key"))
    assert keys and all(mode(k) == 0o600 for k in keys)


def test_staged_keys_are_0600(node: Path) -> None:
    """Killed after staging (the commit checkpoint), every staged key is 0600 and every staged file root's."""
    env = {renewal.CRASH_ENV: "20"}  # 1 journal + 18 staged files + 1 commit
    run = run_process([*RENEW, "--root", str(node), "--no-backup"], env=env)
    assert run.code == -9, run
    _figures.count("crashes survived")
    staged = sorted(node.rglob(f"*{renewal.STAGED_SUFFIX}"))
    assert len(staged) == 18
    for path in staged:
        target = path.with_name(path.name[1:].removesuffix(renewal.STAGED_SUFFIX))
        assert mode(path) == mode(target), path
        if target.suffix in (".key", ".conf"):
            assert mode(path) == 0o600, path
    assert run_cli(["renew", "--resume", "--root", str(node)]).code == 0


def test_archives_are_0600_in_a_0700_directory(node: Path, tmp_path: Path) -> None:
    """Every archive (backup, pre-renewal, pre-restore) is 0600 in a 0700 directory, even with umask 0."""
    with umask(0):
        archive = _archive(node, tmp_path / "made")
        run = run_cli([*RENEW, "--root", str(node), "--backup-dir", str(tmp_path / "renewal")])
        assert run.code == 0, run
        run = run_cli(["restore", str(archive), "--root", str(node), "--apply", "--accept-changed",
                       "--backup-dir", str(tmp_path / "restore")])
        assert run.code == 0, run
    for directory in ("made", "renewal", "restore"):
        archives = list((tmp_path / directory).iterdir())
        assert archives and all(mode(a) == 0o600 for a in archives), directory
        assert mode(tmp_path / directory) == 0o700


def _own(root: Path, uid: int, gid: int) -> dict[str, tuple[int, int, int]]:
    """Give every file under ``root`` to uid:gid with an unusual mode; the modes and owners."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            os.chown(path, uid, gid)
            path.chmod(0o640 if path.suffix in (".key", ".conf") else 0o604)
            out[str(path.relative_to(root))] = (uid, gid, mode(path))
    return out


def _owners(root: Path, names: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    out = {}
    for rel in names:
        st = (root / rel).lstat()
        out[rel] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return out


def test_renewal_and_restore_keep_modes_and_owners(node: Path, tmp_path: Path) -> None:
    """Files owned by 1000:1000 with modes 0640/0604 keep both through a renewal and a restore."""
    needs_root()
    expected = _own(node, 1000, 1000)
    archive = _archive(node, tmp_path / "archives")
    run = run_cli([*RENEW, "--root", str(node), "--no-backup"])
    assert run.code == 0, run
    assert _owners(node, expected) == expected
    run = run_cli(["restore", str(archive), "--root", str(node), "--apply", "--accept-changed", "--no-backup"])
    assert run.code == 0, run
    assert _owners(node, expected) == expected
    assert not kubepki.plan_restore(archive, node).changes


# --------------------------------------------------------------------------------------
# Planted symlinks


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the node's root, standing for /etc/passwd."""
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    path.chmod(0o644)
    return path


def _plant(link: Path, victim: Path, how: str) -> None:
    if link.exists() or link.is_symlink():
        link.unlink()
    if how == "absolute":
        os.symlink(str(victim), link)  # the host's path: inside the root it names another file
    else:
        os.symlink("../" * 20 + str(victim).lstrip("/"), link)  # climbs out, as far as it can
    _figures.count("faults injected")


def _untouched(victim: Path) -> None:
    assert victim.read_bytes() == b"root:x:0:0:root:/root:/bin/bash\n"
    assert mode(victim) == 0o644


@pytest.mark.parametrize("how", ["absolute", "relative"])
@pytest.mark.parametrize("rel", [f"{PKI}/apiserver.key", f"{PKI}/apiserver.crt", f"{KCONF}/admin.conf",
                                 f"{PKI}/.apiserver.key{renewal.STAGED_SUFFIX}", f"{PKI}/{renewal.JOURNAL_NAME}"])
def test_renewal_never_writes_through_a_planted_symlink(node: Path, victim: Path, rel: str, how: str) -> None:
    """A symlink to a file outside the root at a key, a kubeconfig, a staged file or the journal: outside unchanged."""
    _plant(node / rel, victim, how)
    run = run_cli([*RENEW, "--root", str(node), "--no-backup"])
    assert_clean(run, {0, 2})
    _untouched(victim)
    if (node / rel).is_symlink():  # kept, as kubeadm's own links are: followed inside the root only
        assert str(LocalFS(node).host_path("/" + rel)).startswith(f"{node}/")


def test_a_planted_lock_symlink_is_refused(node: Path, victim: Path) -> None:
    """The lock file replaced by a symlink: the renewal refuses (O_NOFOLLOW) and truncates nothing."""
    _plant(node / KCONF / ".kubepki.lock", victim, "absolute")
    os.symlink(str(victim), node / KCONF / ".kubepki.lock.tmp")  # no effect: never opened
    run = run_cli([*RENEW, "--root", str(node), "--no-backup"])
    assert_clean(run, {2, 3})
    assert "lock" in run.err, run
    _untouched(victim)


@pytest.mark.parametrize("how", ["absolute", "relative"])
@pytest.mark.parametrize("rel", [f"{PKI}/apiserver.key", f"{KCONF}/admin.conf", f"{PKI}/etcd/ca.key"])
def test_restore_never_writes_through_a_planted_symlink(node: Path, victim: Path, tmp_path: Path, rel: str,
                                                        how: str) -> None:
    """A symlink planted where a restore writes is replaced by the backed-up file; the outside file is unchanged."""
    archive = _archive(node, tmp_path / "archives")
    _plant(node / rel, victim, how)
    run = run_cli(["restore", str(archive), "--root", str(node), "--apply", "--accept-changed", "--no-backup"])
    assert_clean(run, {0})
    _untouched(victim)
    assert not (node / rel).is_symlink()
    assert key_mismatches(node) == []


def test_backup_never_writes_through_a_planted_symlink(node: Path, victim: Path, tmp_path: Path) -> None:
    """A symlink at the archive's predictable name in the destination: a new name is taken, the link left alone."""
    dest = tmp_path / "archives"
    dest.mkdir(mode=0o700)
    for suffix in ("", "-1", "-2"):
        _plant(dest / f"kubepki-backup-cp1-{NOW.strftime('%Y%m%dT%H%M%SZ')}{suffix}.tar.gz", victim, "absolute")
    info = kubepki.backup(node, dest, now=NOW)
    _untouched(victim)
    assert info.path.name.endswith("-3.tar.gz") and not info.path.is_symlink()
    assert mode(info.path) == 0o600


# --------------------------------------------------------------------------------------
# Temporary files: O_EXCL | O_NOFOLLOW, and never a write in place

_opens: list[tuple[str, int]] = []
_recording = threading.local()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and getattr(_recording, "on", False):
        path, _mode, flags = (*args, None, None)[:3]
        if isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR):
            _opens.append((str(path), flags))


import sys  # noqa: E402 - next to the hook it installs

sys.addaudithook(_audit)


@contextlib.contextmanager
def recording_opens() -> Iterator[list[tuple[str, int]]]:
    _opens.clear()
    _recording.on = True
    try:
        yield _opens
    finally:
        _recording.on = False


def test_every_created_file_is_o_excl_o_nofollow(node: Path, tmp_path: Path) -> None:
    """Renewal, restore and backup open files for writing only to create them, O_EXCL | O_NOFOLLOW."""
    archive = _archive(node, tmp_path / "archives")
    with recording_opens() as opens:
        assert run_cli([*RENEW, "--root", str(node), "--backup-dir", str(tmp_path / "b")]).code == 0
        assert run_cli(["restore", str(archive), "--root", str(node), "--apply", "--accept-changed",
                        "--backup-dir", str(tmp_path / "b")]).code == 0
        assert run_cli(["renew", "--csr", str(tmp_path / "csr"), "all", "--root", str(node)]).code == 0
    roots = (str(node), str(tmp_path))
    written = [(p, f) for p, f in opens if p.startswith(roots)]
    assert len(written) > 40, written  # the hook saw the work
    for path, flags in written:
        assert flags & os.O_NOFOLLOW, path
        if Path(path).name == ".kubepki.lock":
            continue  # reopened on purpose; only ever flock'ed and given a pid
        assert flags & os.O_CREAT and flags & os.O_EXCL, path
        assert not flags & os.O_TRUNC, path
    assert leftovers(node) == []


def test_audit_of_opens_sees_an_unsafe_write(tmp_path: Path) -> None:
    """Negative control: a plain open for writing is recorded without O_EXCL or O_NOFOLLOW."""
    with recording_opens() as opens:
        (tmp_path / "x").write_bytes(b"x")
    ((path, flags),) = opens
    assert path.endswith("x") and not flags & os.O_EXCL and not flags & os.O_NOFOLLOW


# --------------------------------------------------------------------------------------
# Signers that must not sign


def test_ca_key_not_matching_its_certificate_is_refused(tmp_path: Path) -> None:
    """ca.key of another pair: every leaf the CA signs is refused; nothing it signs is written."""
    root = demo(tmp_path / "n", defects=[Defect(DefectKind.KEY_MISMATCH, "ca")])
    plan = kubepki.plan_renewal(root, "all", now=NOW)
    refused = {s.name: s.reason for s in plan.refused}
    assert refused.get("apiserver") == "signer-key-mismatch", refused
    assert refused.get("admin.conf") == "signer-key-mismatch", refused
    before = (root / PKI / "apiserver.crt").read_bytes()
    run = run_cli([*RENEW, "--root", str(root), "--no-backup"])
    assert_clean(run, {2})
    assert (root / PKI / "apiserver.crt").read_bytes() == before
    ca = load_certificate((root / PKI / "ca.crt").read_bytes())
    wrong = load_private_key((root / PKI / "ca.key").read_bytes())
    with pytest.raises(SignerError, match="does not match"):
        issuing.Signer.from_key("ca", ca, wrong)
    with pytest.raises(SignerError, match="does not match"):
        issuing.Signer.from_key("ca", ca, ec.generate_private_key(ec.SECP256R1()))


def test_certificate_issued_by_another_ca_is_not_resigned(tmp_path: Path) -> None:
    """apiserver.crt from an unrelated CA with the same name: refused (wrong-signer), left as it is."""
    root = demo(tmp_path / "n", defects=[Defect(DefectKind.WRONG_SIGNER, "apiserver")])
    plan = kubepki.plan_renewal(root, ["apiserver"], now=NOW)
    (step,) = plan.steps
    assert step.refused and step.reason == "wrong-signer", step
    before = {p: (root / PKI / p).read_bytes() for p in ("apiserver.crt", "apiserver.key")}
    run = run_cli(["renew", "apiserver", "--root", str(root), "--now", NOW_ARG, "--apply", "--no-backup",
                   "--force-invalid-times"])
    assert_clean(run, {2})
    assert "wrong-signer" in run.out or "not issued" in run.out or "REFUSED" in run.out, run
    assert {p: (root / PKI / p).read_bytes() for p in before} == before


def test_install_signed_refuses_a_foreign_issuer(node: Path, tmp_path: Path) -> None:
    """A certificate handed in for installation that another CA signed is refused; the node keeps its own."""
    foreign = demo(tmp_path / "foreign", name="other")
    incoming = tmp_path / "signed"
    incoming.mkdir()
    for suffix in (".crt", ".key"):
        (incoming / f"apiserver{suffix}").write_bytes((foreign / PKI / f"apiserver{suffix}").read_bytes())
    before = (node / PKI / "apiserver.crt").read_bytes()
    run = run_cli(["certs", "install-signed", str(incoming), "--root", str(node), "--now", NOW_ARG, "--no-backup"])
    assert_clean(run, {2})
    assert (node / PKI / "apiserver.crt").read_bytes() == before
    assert key_mismatches(node) == []
