"""Backups: archive layout, round trips, hostile and damaged archives, plans, retention."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import kubepki
from kubepki.backups import _backups as backups
from kubepki.errors import (
    BackupError,
    ConfigError,
    KubepkiError,
    LockError,
    RenewalError,
    UnknownItemError,
    UnsafeArchiveError,
)
from kubepki.node._lock import node_lock
from tests.kubeadm_trees import PKI_SCENARIOS, materialize

UTC = dt.timezone.utc
ISSUED = dt.datetime(2026, 11, 1, tzinfo=UTC)
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="owners can only be set as root")

# --------------------------------------------------------------------------------------
# Helpers


def snapshot(top: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under ``top``: type, mode, owner, mtime and content or link target."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            s = path.lstat()
            if stat.S_ISLNK(s.st_mode):
                detail: Any = os.readlink(path)
            elif stat.S_ISREG(s.st_mode):
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                detail = None
            rel = str(path.relative_to(top))
            out[rel] = (stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid,
                        s.st_mtime_ns, detail)
    return out


def node_files(root: Path) -> dict[str, tuple[Any, ...]]:
    """The node's files as a round trip must restore them (not directories, not mtimes)."""
    return {
        rel: (kind, mode, uid, gid, detail)
        for rel, (kind, mode, uid, gid, _mtime, detail) in snapshot(root).items()
        if not stat.S_ISDIR(kind) and not rel.endswith(".kubepki.lock")
        and not rel.startswith("var/backups")
    }


def member_names(archive: Path) -> list[str]:
    """The member names of an archive, in order."""
    with tarfile.open(archive, "r:gz") as tf:
        return tf.getnames()


def read_manifest(archive: Path) -> dict[str, Any]:
    """The archive's manifest document."""
    with tarfile.open(archive, "r:gz") as tf:
        fh = tf.extractfile(backups.MANIFEST_NAME)
        assert fh is not None
        doc: dict[str, Any] = json.loads(fh.read())
        return doc


def reg(name: str, data: bytes = b"data\n", mode: int = 0o600) -> tuple[tarfile.TarInfo, bytes]:
    """A regular-file member."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, 1_790_000_000
    return ti, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    """A member of another type (symlink, hard link, device, FIFO, directory)."""
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime = kind, linkname, 0o644, 1_790_000_000
    return ti, None


def entry_for(ti: tarfile.TarInfo, data: bytes | None) -> dict[str, Any]:
    """The manifest entry a faithful backup would record for a member."""
    link = ti.type == tarfile.SYMTYPE
    return {
        "path": "/" + ti.name,
        "type": "symlink" if link else "file",
        "size": 0 if link or data is None else len(data),
        "sha256": None if link or data is None else hashlib.sha256(data).hexdigest(),
        "mode": "0777" if link else format(ti.mode, "04o"),
        "uid": 0,
        "gid": 0,
        "mtime": float(ti.mtime),
        "kind": "other",
        "catalog_name": None,
        "link_target": ti.linkname if link else None,
    }


def manifest_doc(members: Sequence[tuple[tarfile.TarInfo, bytes | None]], /,
                 **over: Any) -> dict[str, Any]:
    """A well-formed manifest listing ``members`` (``over`` replaces top-level keys)."""
    doc: dict[str, Any] = {
        "format": backups.FORMAT,
        "kubepki_version": kubepki.__version__,
        "node": "cp1",
        "created": "2026-11-28T12:00:00Z",
        "cert_dir": "/etc/kubernetes/pki",
        "kubeconfig_dir": "/etc/kubernetes",
        "kubelet_pki_dir": "/var/lib/kubelet/pki",
        "manifests_dir": "/etc/kubernetes/manifests",
        "config_file": None,
        "members": [entry_for(ti, data) for ti, data in members],
        "skipped": [],
    }
    doc.update(over)
    return doc


def craft(path: Path, members: Sequence[tuple[tarfile.TarInfo, bytes | None]], *,
          manifest: dict[str, Any] | bytes | None = None, with_manifest: bool = True,
          manifest_last: bool = False) -> Path:
    """Write a tar.gz by hand: a manifest (faithful unless given) and ``members``."""
    if with_manifest and manifest is None:
        manifest = manifest_doc(members)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        entries: list[tuple[tarfile.TarInfo, bytes | None]] = list(members)
        if with_manifest:
            raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
            mi, md = reg(backups.MANIFEST_NAME, raw)
            if manifest_last:
                entries.append((mi, md))
            else:
                entries.insert(0, (mi, md))
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def rewrite(archive: Path, dest: Path, change: dict[str, bytes]) -> Path:
    """Copy an archive, replacing some members' bytes but keeping its manifest."""
    buf = io.BytesIO()
    with tarfile.open(archive, "r:gz") as src, tarfile.open(fileobj=buf, mode="w") as out:
        for ti in src.getmembers():
            data = src.extractfile(ti).read() if ti.isreg() else None  # type: ignore[union-attr]
            if ti.name in change:
                data = change[ti.name]
                ti.size = len(data)
            out.addfile(ti, io.BytesIO(data) if data is not None else None)
    dest.write_bytes(gzip.compress(buf.getvalue()))
    return dest


@pytest.fixture
def single(tmp_path: Path) -> Path:
    """The real `single` kubeadm tree."""
    return materialize("single-full", tmp_path / "root")


@pytest.fixture
def archive(single: Path, tmp_path: Path) -> Path:
    """A fresh backup of the `single-full` tree, kept outside the root."""
    return backups.backup(single, tmp_path / "archives").path


def damage(root: Path) -> None:
    """Overwrite a key, delete a certificate and an etcd key, loosen a mode, drop a symlink."""
    pki = root / "etc/kubernetes/pki"
    (pki / "apiserver.key").write_bytes(b"not a key\n")
    (pki / "ca.crt").unlink()
    (pki / "etcd/peer.key").unlink()
    (pki / "front-proxy-client.crt").chmod(0o666)
    if IS_ROOT:
        os.chown(pki / "sa.key", 1234, 1234)
    link = root / "var/lib/kubelet/pki/kubelet-client-current.pem"
    if link.is_symlink():
        link.unlink()


# --------------------------------------------------------------------------------------
# The archive


def test_archive_is_private_named_and_manifest_first(single: Path, tmp_path: Path) -> None:
    """The archive is 0600, named after node and UTC time, with the manifest first."""
    when = dt.datetime(2026, 11, 28, 10, 15, 0, tzinfo=UTC)
    info = backups.backup(single, tmp_path / "out", now=when)
    assert info.path.name == "kubepki-backup-cp1-20261128T101500Z.tar.gz"
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert info.size == info.path.stat().st_size
    names = member_names(info.path)
    assert names[0] == backups.MANIFEST_NAME
    assert "etc/kubernetes/pki/ca.crt" in names and "etc/kubernetes/pki/etcd/ca.key" in names
    assert not any(n.startswith("/") or ".." in n for n in names)
    assert sorted(os.listdir(tmp_path / "out")) == [info.path.name]  # no temporary left


def test_manifest_records_every_file_as_on_disk(single: Path, tmp_path: Path) -> None:
    """Each manifest entry has the file's size, SHA-256, mode, owner, mtime and kind."""
    info = backups.backup(single, tmp_path / "out")
    doc = read_manifest(info.path)
    assert doc["format"] == backups.FORMAT
    assert doc["kubepki_version"] == kubepki.__version__
    assert doc["node"] == "cp1"
    assert doc["created"].endswith("Z")
    assert doc["cert_dir"] == "/etc/kubernetes/pki"
    assert str(tmp_path) not in json.dumps(doc)  # no machine paths
    assert len(doc["members"]) == info.items == len(member_names(info.path)) - 1
    for e in doc["members"]:
        local = single / e["path"].lstrip("/")
        s = local.lstat()
        assert (e["uid"], e["gid"]) == (s.st_uid, s.st_gid)
        assert e["mtime"] == pytest.approx(s.st_mtime)
        if e["type"] == "symlink":
            assert e["link_target"] == os.readlink(local)
            continue
        assert e["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
        assert e["size"] == s.st_size
        assert int(e["mode"], 8) == stat.S_IMODE(s.st_mode)
    by_path = {e["path"]: e for e in doc["members"]}
    assert by_path["/etc/kubernetes/pki/apiserver.key"]["catalog_name"] == "apiserver"
    assert by_path["/etc/kubernetes/pki/apiserver.key"]["mode"] == "0600"
    assert by_path["/etc/kubernetes/pki/etcd/ca.crt"]["kind"] == "ca"
    assert by_path["/etc/kubernetes/manifests/etcd.yaml"]["kind"] == "manifest"
    link = by_path["/var/lib/kubelet/pki/kubelet-client-current.pem"]
    assert link["type"] == "symlink" and link["link_target"].startswith("/var/lib/kubelet/pki/")


@pytest.mark.parametrize("scenario", PKI_SCENARIOS)
def test_backup_covers_the_whole_tree(scenario: str, tmp_path: Path) -> None:
    """Every file of a real kubeadm tree is in its backup, and the backup verifies."""
    root = materialize(scenario, tmp_path / "root")
    info = backups.backup(root, tmp_path / "out")
    archived = {e["path"].lstrip("/") for e in read_manifest(info.path)["members"]}
    assert archived == set(node_files(root))
    report = backups.verify_backup(info.path)
    assert report.ok, report.problems
    assert report.info is not None and report.info.items == len(archived)


def test_extra_files_are_kept_and_specials_skipped(single: Path, tmp_path: Path) -> None:
    """Unknown files in the cert dir and extra *.conf are kept; a FIFO is skipped and recorded."""
    (single / "etc/kubernetes/pki/notes.txt").write_text("operator notes\n")
    (single / "etc/kubernetes/pki/old").mkdir()
    (single / "etc/kubernetes/pki/old/ca.crt").write_text("old\n")
    (single / "etc/kubernetes/extra.conf").write_text("x\n")
    (single / "etc/kubernetes/not-a-kubeconfig.txt").write_text("x\n")
    os.mkfifo(single / "etc/kubernetes/pki/pipe")
    info = backups.backup(single, tmp_path / "out")
    paths = {e["path"] for e in read_manifest(info.path)["members"]}
    assert {"/etc/kubernetes/pki/notes.txt", "/etc/kubernetes/pki/old/ca.crt",
            "/etc/kubernetes/extra.conf"} <= paths
    assert "/etc/kubernetes/not-a-kubeconfig.txt" not in paths
    assert "/etc/kubernetes/pki/pipe" not in paths
    assert info.skipped == ("/etc/kubernetes/pki/pipe: not a regular file or symlink",)
    assert backups.verify_backup(info.path).info.skipped == info.skipped  # type: ignore[union-attr]


def test_kubepki_transient_files_are_not_backed_up(single: Path, tmp_path: Path) -> None:
    """A renewal journal, staged files and temporaries are left out (and say so)."""
    pki = single / "etc/kubernetes/pki"
    transient = [".apiserver.crt.kubepki-new", ".ca.key.kubepki-0a1b2c3d4e5f.tmp"]
    for name in transient:
        (pki / name).write_text("x\n")
    (pki / ".hidden-but-ours").write_text("operator file\n")
    (pki / ".ca.key.kubepki-0a1b2c3d4e5f").write_text("not ours: no .tmp\n")
    info = backups.backup(single, tmp_path / "out")
    paths = {e["path"] for e in read_manifest(info.path)["members"]}
    assert "/etc/kubernetes/pki/.hidden-but-ours" in paths
    assert "/etc/kubernetes/pki/.ca.key.kubepki-0a1b2c3d4e5f" in paths
    assert not paths & {f"/etc/kubernetes/pki/{n}" for n in transient}
    # A renewal's staged file belongs to its journal: skipped. A dead writer's temporary is swept
    # under the lock before reading (it may hold a key), so it is not even skipped.
    assert [s.split(":")[0] for s in info.skipped] == ["/etc/kubernetes/pki/.apiserver.crt.kubepki-new"]
    assert (pki / ".apiserver.crt.kubepki-new").exists()
    assert not (pki / ".ca.key.kubepki-0a1b2c3d4e5f.tmp").exists()


def test_existing_archive_is_never_overwritten(single: Path, tmp_path: Path) -> None:
    """Two backups in the same second get distinct names; the first is untouched."""
    when = dt.datetime(2026, 11, 28, 10, 15, tzinfo=UTC)
    first = backups.backup(single, tmp_path / "out", now=when)
    before = first.path.read_bytes()
    (single / "etc/kubernetes/pki/ca.crt").write_text("changed\n")
    second = backups.backup(single, tmp_path / "out", now=when)
    assert second.path.name == "kubepki-backup-cp1-20261128T101500Z-1.tar.gz"
    assert first.path.read_bytes() == before


def test_same_tree_same_time_same_bytes(single: Path, tmp_path: Path) -> None:
    """Archives are reproducible: no temporary name or wall-clock time inside."""
    when = dt.datetime(2026, 11, 28, 10, 15, tzinfo=UTC)
    a = backups.backup(single, tmp_path / "a", now=when)
    b = backups.backup(single, tmp_path / "b", now=when)
    assert a.path.read_bytes() == b.path.read_bytes()


def test_archive_name_sanitises_node() -> None:
    """Odd node names are made safe; an unknown name is `unknown`."""
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert backups.archive_name("cp 1/../x", when) == "kubepki-backup-cp_1_.._x-20260102T030405Z.tar.gz"
    assert backups.archive_name(None, when) == "kubepki-backup-unknown-20260102T030405Z.tar.gz"
    assert backups.archive_name("..", when) == "kubepki-backup-unknown-20260102T030405Z.tar.gz"


def test_naive_now_is_refused(single: Path, tmp_path: Path) -> None:
    """`now` must be timezone-aware."""
    with pytest.raises(ConfigError, match="timezone-aware"):
        backups.backup(single, tmp_path / "out", now=dt.datetime(2026, 1, 1))


def test_empty_node_is_refused(tmp_path: Path) -> None:
    """A root without kubeadm files gives an error, not an empty archive."""
    (tmp_path / "root").mkdir()
    with pytest.raises(BackupError, match="nothing to back up"):
        backups.backup(tmp_path / "root", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_destination_inside_cert_dir_is_refused(single: Path) -> None:
    """Backups inside a backed-up directory would be backed up again."""
    with pytest.raises(ConfigError, match="cert dir"):
        backups.backup(single, single / "etc/kubernetes/pki/backups")
    assert not (single / "etc/kubernetes/pki/backups").exists()


# --------------------------------------------------------------------------------------
# Round trips


@needs_root
@pytest.mark.parametrize("scenario", PKI_SCENARIOS)
def test_round_trip_real_trees(scenario: str, tmp_path: Path) -> None:
    """Back up, damage, restore: every file byte-identical with its mode, owner and links."""
    root = materialize(scenario, tmp_path / "root")
    os.chown(root / "etc/kubernetes/pki/sa.key", 0, 0)
    before = node_files(root)
    info = backups.backup(root, tmp_path / "out")
    damage(root)
    assert node_files(root) != before
    result = backups.restore(info.path, root, dry_run=False, accept_changed=True)
    assert node_files(root) == before
    assert "etc/kubernetes/pki/ca.crt" in {p.lstrip("/") for p in result.written}
    keys = [rel for rel in before if rel.endswith(".key")]
    assert keys and all(before[k][1] == 0o600 for k in keys)
    again = backups.plan_restore(info.path, root)
    assert not again.changes


@needs_root
def test_round_trip_owner_is_restored(single: Path, tmp_path: Path) -> None:
    """A file's recorded owner comes back, not root's."""
    key = single / "etc/kubernetes/pki/front-proxy-client.key"
    os.chown(key, 4321, 8765)
    info = backups.backup(single, tmp_path / "out")
    os.chown(key, 0, 0)
    key.write_bytes(b"x")
    # An owner that is neither root nor the file's current one widens access: accepted explicitly.
    with pytest.raises(BackupError, match=r"owner 4321:8765 is neither root.*accept_permissions=True"):
        backups.restore(info.path, single, dry_run=False, accept_changed=True)
    assert key.read_bytes() == b"x"
    backups.restore(info.path, single, dry_run=False, accept_changed=True, accept_permissions=True)
    s = key.stat()
    assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (4321, 8765, 0o600)


def test_round_trip_demo_tree(tmp_path: Path) -> None:
    """A demo tree (manifests, kubeadm config, kubelet PKI) survives damage and restore."""
    from kubepki import testing

    demo = testing.build_node(tmp_path / "demo", issued_at=ISSUED)
    before = node_files(demo.root)
    info = backups.backup(demo.as_node(), tmp_path / "out")
    paths = {e["path"] for e in read_manifest(info.path)["members"]}
    assert "/etc/kubernetes/kubeadm-config.yaml" in paths
    damage(demo.root)
    (demo.root / "etc/kubernetes/manifests/kube-apiserver.yaml").write_text("broken\n")
    backups.restore(info.path, demo.as_node(), dry_run=False, accept_changed=True)
    assert node_files(demo.root) == before
    link = demo.root / "var/lib/kubelet/pki/kubelet-client-current.pem"
    assert link.is_symlink()


def test_round_trip_demo_cluster(tmp_path: Path) -> None:
    """Every node of a three-node demo cluster restores its own files."""
    from kubepki import testing

    cluster = testing.build_cluster(tmp_path / "c", nodes=3, issued_at=ISSUED)
    for demo in cluster.nodes:
        before = node_files(demo.root)
        info = backups.backup(demo.as_node(), tmp_path / "out")
        assert info.node == demo.name
        shutil.rmtree(demo.root / "etc/kubernetes/pki")
        backups.restore(info.path, demo.as_node(), dry_run=False)
        assert node_files(demo.root) == before


def test_restore_onto_a_wiped_node_recreates_directories(single: Path, tmp_path: Path) -> None:
    """With everything deleted, restore creates the directories with kubeadm's modes."""
    before = node_files(single)
    info = backups.backup(single, tmp_path / "out")
    shutil.rmtree(single / "etc")
    shutil.rmtree(single / "var")
    plan = backups.plan_restore(info.path, single)
    assert {s.action for s in plan.steps} == {kubepki.RestoreAction.CREATE}
    assert not plan.needs_acceptance
    result = backups.restore(info.path, single, dry_run=False)
    assert node_files(single) == before
    assert stat.S_IMODE((single / "etc/kubernetes/manifests").stat().st_mode) == 0o700
    assert stat.S_IMODE((single / "etc/kubernetes/pki/etcd").stat().st_mode) == 0o755
    assert result.pre_restore_backup is not None  # an (empty) record of the state before


# --------------------------------------------------------------------------------------
# Plans


def test_plan_says_create_replace_unchanged(single: Path, archive: Path) -> None:
    """Deleted files are created, altered ones replaced, the rest left alone."""
    damage(single)
    plan = backups.plan_restore(archive, single)
    by_path = {s.path: s for s in plan.steps}
    assert by_path["/etc/kubernetes/pki/ca.crt"].action is kubepki.RestoreAction.CREATE
    assert by_path["/etc/kubernetes/pki/apiserver.key"].action is kubepki.RestoreAction.REPLACE
    assert by_path["/etc/kubernetes/pki/apiserver.key"].detail == "content differs"
    mode_only = by_path["/etc/kubernetes/pki/front-proxy-client.crt"]
    assert mode_only.action is kubepki.RestoreAction.REPLACE
    assert mode_only.detail == "mode 0666, the backup's 0644"
    assert not mode_only.changed_since_backup  # the content is the backup's
    assert by_path["/etc/kubernetes/pki/ca.key"].action is kubepki.RestoreAction.UNCHANGED
    link = by_path["/var/lib/kubelet/pki/kubelet-client-current.pem"]
    assert link.action is kubepki.RestoreAction.CREATE and link.type == "symlink"


def test_plan_writes_nothing(single: Path, archive: Path, tmp_path: Path) -> None:
    """Planning (and restore's default dry run) changes no file anywhere."""
    damage(single)
    before = snapshot(tmp_path)
    plan = backups.restore(archive, single)
    assert isinstance(plan, kubepki.RestorePlan)
    assert plan.changes
    assert snapshot(tmp_path) == before


def test_plan_renders(single: Path, archive: Path) -> None:
    """A plan has a table, a repr, JSON-ready to_dict and HTML."""
    damage(single)
    plan = backups.plan_restore(archive, single)
    text = str(plan)
    assert text.splitlines()[1].split() == ["ACTION", "PATH", "DETAIL"]
    assert "CHANGED SINCE THE BACKUP" in text
    assert plan.summary() in text
    assert repr(plan).startswith("<RestorePlan kubepki-backup-cp1-")
    doc = json.loads(json.dumps(plan.to_dict()))
    assert doc["counts"] == plan.counts()
    assert doc["steps"][0]["mode"] in ("0600", "0644")
    html = plan._repr_html_()
    assert html.startswith('<table class="kubepki">') and "apiserver.key" in html


def test_changed_since_backup_needs_acceptance(single: Path, archive: Path, tmp_path: Path) -> None:
    """A file modified after the backup is flagged; applying refuses until accepted."""
    (single / "etc/kubernetes/pki/apiserver.crt").write_text("renewed since\n")
    plan = backups.plan_restore(archive, single)
    assert [s.path for s in plan.changed_since_backup] == ["/etc/kubernetes/pki/apiserver.crt"]
    assert plan.needs_acceptance
    before = snapshot(tmp_path)
    with pytest.raises(BackupError, match=r"restore refused: /etc/kubernetes/pki/apiserver\.crt"):
        backups.restore(archive, single, dry_run=False)
    assert snapshot(tmp_path) == before
    backups.restore(archive, single, dry_run=False, accept_changed=True)
    assert not backups.plan_restore(archive, single).changes


def test_deleted_files_need_no_acceptance(single: Path, archive: Path) -> None:
    """Negative control: restoring deleted files discards nothing, so no acceptance."""
    (single / "etc/kubernetes/pki/apiserver.crt").unlink()
    plan = backups.plan_restore(archive, single)
    assert not plan.needs_acceptance
    result = backups.restore(archive, single, dry_run=False)
    assert result.written == ("/etc/kubernetes/pki/apiserver.crt",)


def test_changed_file_is_flagged_despite_a_future_backup_clock(single: Path, tmp_path: Path) -> None:
    """A backup whose clock ran ahead cannot hide a later change (recorded mtimes differ)."""
    info = backups.backup(single, tmp_path / "out", now=dt.datetime(2030, 1, 1, tzinfo=UTC))
    (single / "etc/kubernetes/pki/apiserver.crt").write_text("changed\n")
    plan = backups.plan_restore(info.path, single)
    assert [s.path for s in plan.changed_since_backup] == ["/etc/kubernetes/pki/apiserver.crt"]


def test_only_restores_exactly_the_named_entries(single: Path, archive: Path) -> None:
    """`only=["apiserver"]` touches apiserver.crt and .key and nothing else."""
    damage(single)
    (single / "etc/kubernetes/pki/apiserver.crt").unlink()
    plan = backups.plan_restore(archive, single, only=["apiserver"])
    assert [s.path for s in plan.steps] == ["/etc/kubernetes/pki/apiserver.crt",
                                             "/etc/kubernetes/pki/apiserver.key"]
    result = backups.restore(archive, single, only=["apiserver"], dry_run=False,
                             accept_changed=True)
    assert set(result.written) == {s.path for s in plan.steps}
    assert not (single / "etc/kubernetes/pki/ca.crt").exists()  # not asked for


def test_only_brings_a_symlinks_target(single: Path, archive: Path) -> None:
    """Restoring kubelet-client-current.pem brings back the PEM it points at."""
    pki = single / "var/lib/kubelet/pki"
    for p in pki.iterdir():
        p.unlink()
    plan = backups.plan_restore(archive, single, only=["kubelet-client-current.pem"])
    assert len(plan.steps) == 2
    backups.restore(archive, single, only=["kubelet-client-current.pem"], dry_run=False)
    assert (pki / "kubelet-client-current.pem").is_symlink()
    assert kubepki.inspect(single)["kubelet-client-current.pem"].status.value != "missing"


def test_only_rejects_unknown_and_absent_names(single: Path, archive: Path) -> None:
    """An unknown catalog name, or one the backup lacks, is an error."""
    with pytest.raises(UnknownItemError, match="nope"):
        backups.plan_restore(archive, single, only=["nope"])
    with pytest.raises(BackupError, match=r"no file of kubelet\.crt"):
        backups.plan_restore(archive, single, only=["kubelet.crt"])


def test_pre_restore_backup_holds_the_state_before(single: Path, archive: Path, tmp_path: Path) -> None:
    """Applying first backs up the damaged state, which verifies and holds the damage."""
    damage(single)
    result = backups.restore(archive, single, dry_run=False, accept_changed=True)
    pre = result.pre_restore_backup
    assert pre is not None and pre.path.parent == archive.parent and pre.path != archive
    assert backups.verify_backup(pre.path).ok
    entries = {e["path"]: e for e in read_manifest(pre.path)["members"]}
    assert entries["/etc/kubernetes/pki/apiserver.key"]["sha256"] == hashlib.sha256(
        b"not a key\n").hexdigest()
    elsewhere = backups.restore(archive, single, dry_run=False, backup_dir=tmp_path / "pre")
    assert elsewhere.pre_restore_backup is None  # nothing to change, nothing backed up


def test_take_backup_false_writes_no_archive(single: Path, archive: Path) -> None:
    """With take_backup=False no new archive appears."""
    damage(single)
    backups.restore(archive, single, dry_run=False, accept_changed=True, take_backup=False)
    assert os.listdir(archive.parent) == [archive.name]


def test_stale_plan_is_refused(single: Path, archive: Path) -> None:
    """A plan made before the node changed is not applied."""
    (single / "etc/kubernetes/pki/ca.crt").unlink()
    plan = backups.plan_restore(archive, single)
    (single / "etc/kubernetes/pki/apiserver.crt").unlink()
    with pytest.raises(BackupError, match="changed since the plan was made"):
        backups.apply_restore(plan)
    assert not (single / "etc/kubernetes/pki/ca.crt").exists()


def test_archive_changed_after_planning_is_refused(single: Path, archive: Path, tmp_path: Path) -> None:
    """Swapping the archive between plan and apply is caught."""
    (single / "etc/kubernetes/pki/ca.crt").unlink()
    plan = backups.plan_restore(archive, single)
    other = backups.backup(single, tmp_path / "other").path
    shutil.copyfile(other, archive)
    with pytest.raises(BackupError, match="changed since the plan was made"):
        backups.apply_restore(plan)


def test_foreign_node_needs_acceptance(tmp_path: Path) -> None:
    """Restoring cp2's backup onto cp1 is flagged and refused unless accepted."""
    cp1 = materialize("ha-cp1", tmp_path / "cp1")
    cp2 = materialize("ha-cp2", tmp_path / "cp2")
    info = backups.backup(cp2, tmp_path / "out")
    plan = backups.plan_restore(info.path, cp1)
    assert plan.foreign
    assert "the backup is of node cp2, this node is cp1" in plan.needs_acceptance
    with pytest.raises(BackupError, match="restore refused"):
        backups.apply_restore(plan)


def test_directory_in_the_way_is_an_error(single: Path, archive: Path) -> None:
    """A directory where the backup has a file stops the plan with a clear message."""
    (single / "etc/kubernetes/pki/ca.crt").unlink()
    (single / "etc/kubernetes/pki/ca.crt").mkdir()
    with pytest.raises(BackupError, match="is a directory on the node"):
        backups.plan_restore(archive, single)


def test_restore_holds_the_node_lock(single: Path, archive: Path, tmp_path: Path) -> None:
    """While another writer holds the lock, applying fails and writes nothing."""
    damage(single)
    node = kubepki.Node(single)
    plan = backups.plan_restore(archive, node)
    with node_lock(node):
        before = snapshot(tmp_path)
        with pytest.raises(LockError):
            backups.apply_restore(plan, accept_changed=True)
        assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------
# Hostile archives: refused before anything is written, inside or outside the root

FILE = "etc/kubernetes/pki/ca.crt"
HOSTILE: dict[str, Any] = {
    "dotdot": lambda: [reg("etc/kubernetes/../../../outside/pwned")],
    "dotdot-leading": lambda: [reg("../outside/pwned")],
    "absolute": lambda: [reg("/etc/kubernetes/pki/ca.crt")],
    "not-normalised": lambda: [reg("etc/kubernetes/./pki/ca.crt")],
    "double-slash": lambda: [reg("etc//kubernetes/pki/ca.crt")],
    "symlink-out-of-root": lambda: [special(FILE, tarfile.SYMTYPE, "../../../../outside/target")],
    "symlink-then-file": lambda: [special("etc/kubernetes/pki/etcd", tarfile.SYMTYPE, "/outside"),
                                  reg("etc/kubernetes/pki/etcd/ca.crt")],
    "hardlink-inside": lambda: [reg("etc/kubernetes/pki/ca.key"),
                                special(FILE, tarfile.LNKTYPE, "etc/kubernetes/pki/ca.key")],
    "hardlink-outside": lambda: [special(FILE, tarfile.LNKTYPE, "../../../outside/sentinel")],
    "char-device": lambda: [special("etc/kubernetes/pki/null", tarfile.CHRTYPE)],
    "block-device": lambda: [special("etc/kubernetes/pki/sda", tarfile.BLKTYPE)],
    "fifo": lambda: [special("etc/kubernetes/pki/pipe", tarfile.FIFOTYPE)],
    "directory": lambda: [special("etc/kubernetes/pki/dir", tarfile.DIRTYPE)],
    "duplicate": lambda: [reg(FILE, b"one\n"), reg(FILE, b"two\n")],
    "symlink-as-cert-dir": lambda: [special("etc/kubernetes/pki", tarfile.SYMTYPE, "/outside")],
    "outside-kubeadm-dirs": lambda: [reg("etc/passwd", b"root::0:0::/:/bin/sh\n")],
    "control-char": lambda: [reg("etc/kubernetes/pki/ca\n.crt")],
}


@pytest.fixture
def victim(tmp_path: Path) -> tuple[Path, Path]:
    """A real kubeadm root and a sentinel directory beside it."""
    root = materialize("single", tmp_path / "root")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "sentinel").write_text("keep me\n")
    return root, tmp_path


def assert_refused(path: Path, root: Path, top: Path, *, unsafe: bool = True,
                   match: str | None = None) -> None:
    """Planning and applying raise, verify reports, and no file anywhere changed."""
    expected = UnsafeArchiveError if unsafe else BackupError
    before = snapshot(top)
    with pytest.raises(expected, match=match) as caught:
        backups.plan_restore(path, root)
    if not unsafe:
        assert type(caught.value) is BackupError
    with pytest.raises(expected, match=match):
        backups.restore(path, root, dry_run=False, accept_changed=True)
    report = backups.verify_backup(path)
    assert not report.ok and report.unsafe is unsafe
    assert report.problems
    assert snapshot(top) == before


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused(case: str, victim: tuple[Path, Path]) -> None:
    """Traversal, absolute names, links out, devices, duplicates: nothing written anywhere."""
    root, top = victim
    members = HOSTILE[case]()
    path = craft(top / "archives" / f"{case}.tar.gz", members)
    assert_refused(path, root, top)


def test_hostile_messages_name_the_member(victim: tuple[Path, Path]) -> None:
    """The error names the offending member and what is wrong with it."""
    root, top = victim
    path = craft(top / "a.tar.gz", [reg("../outside/pwned")])
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./outside/pwned'"):
        backups.plan_restore(path, root)
    path = craft(top / "b.tar.gz", HOSTILE["hardlink-outside"]())
    with pytest.raises(UnsafeArchiveError, match="hard link"):
        backups.plan_restore(path, root)


def test_member_not_in_manifest_is_refused(victim: tuple[Path, Path]) -> None:
    """A member smuggled in beside a faithful manifest is refused."""
    root, top = victim
    listed = [reg(FILE)]
    path = craft(top / "a.tar.gz", [*listed, reg("etc/kubernetes/pki/extra.key")],
                 manifest=manifest_doc(listed))
    assert_refused(path, root, top, match="not listed in the manifest")


def test_paths_outside_kubeadm_dirs_are_refused(victim: tuple[Path, Path]) -> None:
    """A self-consistent archive aimed at /etc/cron.d verifies but is not restored."""
    root, top = victim
    members = [reg("etc/cron.d/job", b"* * * * * root sh\n")]
    path = craft(top / "a.tar.gz", members, manifest=manifest_doc(members, cert_dir="/etc/cron.d"))
    assert backups.verify_backup(path).ok
    before = snapshot(top)
    with pytest.raises(UnsafeArchiveError, match="not inside the node's kubeadm directories"):
        backups.restore(path, root, dry_run=False, accept_changed=True)
    assert snapshot(top) == before


@pytest.mark.parametrize(("field", "value", "match"), [
    ("mode", "4755", "set-user-ID"),
    ("path", "/etc/kubernetes/pki/../../../outside/x", r"'\.\.'"),
    ("type", "hardlink", "not 'file' or 'symlink'"),
    ("size", 1 << 40, "out of bounds"),
])
def test_hostile_manifest_entries_are_refused(victim: tuple[Path, Path], field: str, value: Any,
                                              match: str) -> None:
    """Set-user-ID modes, traversal and unknown types in the manifest are refused."""
    root, top = victim
    members = [reg(FILE)]
    doc = manifest_doc(members)
    doc["members"][0][field] = value
    path = craft(top / "a.tar.gz", members, manifest=doc)
    assert_refused(path, root, top, match=match)


def test_oversized_member_is_refused(victim: tuple[Path, Path]) -> None:
    """A member above MAX_MEMBER_SIZE is refused before its data is used."""
    root, top = victim
    path = craft(top / "a.tar.gz", [reg(FILE, bytes(backups.MAX_MEMBER_SIZE + 1))])
    assert_refused(path, root, top, match="more than 16.0 MiB")


def test_total_size_bound(victim: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Members that add up past MAX_TOTAL_SIZE are refused."""
    root, top = victim
    monkeypatch.setattr(backups, "MAX_TOTAL_SIZE", 1000)
    members = [reg(f"etc/kubernetes/pki/f{i}", bytes(400)) for i in range(3)]
    path = craft(top / "a.tar.gz", members)
    assert_refused(path, root, top, match="add up to more than")


def test_decompression_bomb_is_refused(victim: tuple[Path, Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive that inflates past the bound is refused while inflating."""
    root, top = victim
    monkeypatch.setattr(backups, "_MAX_TAR", 1 << 20)
    path = top / "bomb.tar.gz"
    path.write_bytes(gzip.compress(bytes(8 << 20)))
    assert len(path.read_bytes()) < 64 * 1024
    assert_refused(path, root, top, match="decompression bomb")


def test_too_many_members_is_refused(victim: tuple[Path, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """More members than MAX_MEMBERS are refused."""
    root, top = victim
    monkeypatch.setattr(backups, "MAX_MEMBERS", 3)
    members = [reg(f"etc/kubernetes/pki/f{i}") for i in range(6)]
    path = craft(top / "a.tar.gz", members, manifest=manifest_doc(members[:3]))
    assert_refused(path, root, top, match="more than 3 members")


# --------------------------------------------------------------------------------------
# Damaged archives: a clear error naming the problem, nothing written


def test_truncated_archive(archive: Path, single: Path, tmp_path: Path) -> None:
    """An archive cut short says it is truncated."""
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert_refused(cut, single, tmp_path, unsafe=False, match="truncated")


def test_corrupted_archive(archive: Path, single: Path, tmp_path: Path) -> None:
    """Flipped bytes in the compressed stream are reported as damage."""
    data = bytearray(archive.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    assert_refused(bad, single, tmp_path, unsafe=False, match="damaged|truncated")


def test_not_an_archive(single: Path, tmp_path: Path) -> None:
    """Random bytes and an empty file are reported, not crashed on."""
    (tmp_path / "random.tar.gz").write_bytes(os.urandom(2048))
    assert_refused(tmp_path / "random.tar.gz", single, tmp_path, unsafe=False,
                   match="not a valid gzip")
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    assert_refused(tmp_path / "empty.tar.gz", single, tmp_path, unsafe=False, match="empty")
    (tmp_path / "plain.tar.gz").write_bytes(gzip.compress(b"hello, not a tar" * 100))
    assert_refused(tmp_path / "plain.tar.gz", single, tmp_path, unsafe=False, match="tar")


def test_member_hash_mismatch(archive: Path, single: Path, tmp_path: Path) -> None:
    """A member altered after the backup (same size) is named in the error."""
    name = "etc/kubernetes/pki/apiserver.key"
    original = (single / name).read_bytes()
    altered = rewrite(archive, tmp_path / "altered.tar.gz", {name: bytes(len(original))})
    assert_refused(altered, single, tmp_path, unsafe=False,
                   match=f"member '{name}': SHA-256 does not match")
    report = backups.verify_backup(altered)
    assert report.problems == (f"member '{name}': SHA-256 does not match the manifest "
                               "(damaged or altered)",)


def test_missing_manifest(archive: Path, single: Path, tmp_path: Path) -> None:
    """An archive without its manifest is refused as damaged."""
    members = [reg(FILE)]
    path = craft(tmp_path / "a.tar.gz", members, with_manifest=False)
    assert_refused(path, single, tmp_path, unsafe=False, match="missing manifest")


def test_manifest_not_first(single: Path, tmp_path: Path) -> None:
    """The manifest must be the first member."""
    path = craft(tmp_path / "a.tar.gz", [reg(FILE)], manifest_last=True)
    assert_refused(path, single, tmp_path, unsafe=False, match="not the first member")


@pytest.mark.parametrize(("manifest", "match"), [
    (b"{not json", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps(manifest_doc([reg(FILE)], format=99)).encode(), "newer kubepki"),
    (json.dumps(manifest_doc([reg(FILE)], created="yesterday")).encode(), "ISO 8601"),
    (json.dumps(manifest_doc([reg(FILE)], members="all")).encode(), "'members' has the wrong type"),
    (json.dumps({k: v for k, v in manifest_doc([reg(FILE)]).items() if k != "node"}).encode(),
     "'node' is missing"),
])
def test_malformed_manifest(single: Path, tmp_path: Path, manifest: bytes, match: str) -> None:
    """Invalid JSON, wrong types, missing keys and newer formats are named."""
    path = craft(tmp_path / "a.tar.gz", [reg(FILE)], manifest=manifest)
    assert_refused(path, single, tmp_path, unsafe=False, match=match)


def test_manifest_entry_without_member(single: Path, tmp_path: Path) -> None:
    """A file the manifest lists but the archive lacks is reported missing."""
    members = [reg(FILE)]
    doc = manifest_doc([*members, reg("etc/kubernetes/pki/ca.key")])
    path = craft(tmp_path / "a.tar.gz", members, manifest=doc)
    assert_refused(path, single, tmp_path, unsafe=False,
                   match="'etc/kubernetes/pki/ca.key': missing from the archive")


def test_verify_reports_an_unopenable_file(tmp_path: Path) -> None:
    """verify_backup reports a missing file as a problem instead of raising."""
    report = backups.verify_backup(tmp_path / "nope.tar.gz")
    assert not report.ok
    assert report.problems == ("cannot read the archive: does not exist",)
    assert "PROBLEMS FOUND" in report.table()


def test_verify_report_renders(archive: Path) -> None:
    """A report has a table, a repr, to_dict and HTML."""
    report = backups.verify_backup(archive)
    assert report.ok and not report.unsafe and report.table().splitlines()[0].endswith(": OK")
    assert repr(report) == f"<VerifyReport {archive.name} ok=True problems=0>"
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["backup"]["node"] == "cp1" and len(doc["members"]) == doc["backup"]["items"]
    assert report._repr_html_().startswith('<table class="kubepki">')


# --------------------------------------------------------------------------------------
# Destinations that cannot be written


def no_final_archive(directory: Path) -> bool:
    """Neither a finished archive nor a temporary file is in ``directory``."""
    return not directory.exists() or not [
        n for n in os.listdir(directory) if n.startswith(("kubepki-backup", ".kubepki-backup"))]


def test_destination_under_a_file(single: Path, tmp_path: Path) -> None:
    """A destination whose parent is a regular file gives a clear error."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackupError, match="not a directory"):
        backups.backup(single, tmp_path / "file" / "backups")
    with pytest.raises(BackupError, match="exists and is not a directory"):
        backups.backup(single, tmp_path / "file")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, nearly full."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mnt / "filler").write_bytes(bytes(40 * 1024))
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_no_space_left(single: Path, tiny_fs: Path) -> None:
    """ENOSPC is reported as such, and no archive or temporary file is left."""
    with pytest.raises(BackupError, match="no space left on device"):
        backups.backup(single, tiny_fs)
    assert os.listdir(tiny_fs) == ["filler"]


def test_no_space_for_the_pre_restore_backup(single: Path, archive: Path, tiny_fs: Path) -> None:
    """When the pre-restore backup cannot be written, no file is restored."""
    damage(single)
    before = node_files(single)
    with pytest.raises(BackupError, match=r"no file restored.*no space left on device"):
        backups.restore(archive, single, dry_run=False, accept_changed=True, backup_dir=tiny_fs)
    assert node_files(single) == before
    assert os.listdir(tiny_fs) == ["filler"]


@needs_root
def test_permission_denied(single: Path) -> None:
    """A destination the user may not write to says permission denied (as nobody)."""
    shared = Path(tempfile.mkdtemp(prefix="kubepki-nobody-"))
    try:
        shared.chmod(0o755)
        shutil.copytree(single, shared / "root", symlinks=True)
        for dirpath, dirnames, filenames in os.walk(shared):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if not p.is_symlink():
                    p.chmod(0o755 if p.is_dir() else 0o644)
        # nobody may take the node's lock (a backup holds it) but not write the destination
        (shared / "root/etc/kubernetes").chmod(0o777)
        dest = shared / "locked"
        dest.mkdir(mode=0o755)  # root's: nobody may not create files in it
        message = as_nobody(lambda: backups.backup(shared / "root", dest))
        assert "permission denied" in message, message
        assert no_final_archive(dest)
    finally:
        shutil.rmtree(shared)


def as_nobody(action: Any) -> str:
    """Run ``action`` in a forked child as uid/gid 65534; the BackupError text it raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                action()
                text = "no error"
            except BackupError as exc:
                text = str(exc)
            except BaseException as exc:  # reported to the parent, which fails the test
                text = f"{type(exc).__name__}: {exc}"
            os.write(write_end, text.encode())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _pid, status = os.waitpid(pid, 0)
    assert status == 0
    return b"".join(chunks).decode()


# --------------------------------------------------------------------------------------
# Listing and retention


def test_list_backups_newest_first_skipping_foreign(single: Path, tmp_path: Path) -> None:
    """Listing shows node, time, size and items, newest first; foreign files are skipped."""
    out = tmp_path / "out"
    times = [dt.datetime(2026, 11, d, tzinfo=UTC) for d in (1, 3, 2)]
    made = [backups.backup(single, out, now=t) for t in times]
    (out / "kubepki-backup-cp9-20261105T000000Z.tar.gz").write_bytes(b"garbage")
    (out / "notes.txt").write_text("x")
    listed = backups.list_backups(out)
    assert [i.created for i in listed] == sorted(times, reverse=True)
    assert {i.path for i in listed} == {m.path for m in made}
    first = listed[0]
    assert (first.node, first.items, first.size) == ("cp1", made[0].items, first.path.stat().st_size)
    assert repr(first).startswith("<BackupInfo kubepki-backup-cp1-20261103T000000Z.tar.gz")


def test_list_backups_of_a_missing_directory(tmp_path: Path) -> None:
    """Listing a directory that does not exist is a ConfigError."""
    with pytest.raises(ConfigError, match="does not exist"):
        backups.list_backups(tmp_path / "nope")


def test_prune_keeps_newest_per_node(tmp_path: Path) -> None:
    """Pruning keeps the newest N of each node and never touches foreign files."""
    cp1 = materialize("ha-cp1", tmp_path / "cp1")
    cp2 = materialize("ha-cp2", tmp_path / "cp2")
    out = tmp_path / "out"
    for day in (1, 2, 3):
        backups.backup(cp1, out, now=dt.datetime(2026, 11, day, tzinfo=UTC))
    backups.backup(cp2, out, now=dt.datetime(2026, 10, 1, tzinfo=UTC))
    foreign = out / "kubepki-backup-cp1-20200101T000000Z.tar.gz"
    foreign.write_bytes(b"not ours")
    would = backups.prune_backups(out, keep=2, dry_run=True)
    assert [p.name for p in would] == ["kubepki-backup-cp1-20261101T000000Z.tar.gz"]
    assert would[0].exists()
    removed = backups.prune_backups(out, keep=1)
    assert sorted(p.name for p in removed) == ["kubepki-backup-cp1-20261101T000000Z.tar.gz",
                                               "kubepki-backup-cp1-20261102T000000Z.tar.gz"]
    assert sorted(i.node or "" for i in backups.list_backups(out)) == ["cp1", "cp2"]
    assert foreign.exists()


@pytest.mark.parametrize("keep", [0, -1])
def test_prune_refuses_to_keep_nothing(tmp_path: Path, keep: int) -> None:
    """keep must be at least 1."""
    with pytest.raises(ConfigError, match="at least 1"):
        backups.prune_backups(tmp_path, keep=keep)


# --------------------------------------------------------------------------------------
# The package surface


def test_public_names() -> None:
    """The backup API is importable from kubepki itself."""
    for name in ("backup", "verify_backup", "restore", "plan_restore", "apply_restore",
                 "list_backups", "prune_backups", "BackupInfo", "VerifyReport", "RestorePlan",
                 "RestoreStep", "RestoreResult", "RestoreAction", "BackupMember"):
        assert name in kubepki.__all__
        assert getattr(kubepki, name) is getattr(backups, name)


# --------------------------------------------------------------------------------------
# Property: arbitrary archives never write outside the root, never raise foreign errors

_SEGMENTS = ["etc", "kubernetes", "pki", "etcd", "var", "lib", "kubelet", "ca.crt", "..", ".",
             "", "outside", "x"]
_VALID = ["etc/kubernetes/pki/ca.crt", "etc/kubernetes/pki/etcd", "etc/kubernetes/pki/etcd/x",
          "var/lib/kubelet/pki/kubelet-client-current.pem", "etc/kubernetes/admin.conf",
          "etc/kubernetes/manifests/etcd.yaml"]
_names = st.one_of(
    st.sampled_from(_VALID),
    st.sampled_from(_VALID),
    st.sampled_from(["/etc/kubernetes/pki/ca.key", "../outside/x", "etc/kubernetes",
                     "etc/kubernetes/pki"]),
    st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=6).map("/".join),
)
_targets = st.sampled_from(["/outside", "../../../../outside/x", "ca.crt", "/etc/kubernetes/pki",
                            "..", "", "/", "etcd/../../../../x", "../pki/ca.crt"])
_types = st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE,
                          tarfile.CHRTYPE, tarfile.FIFOTYPE, tarfile.REGTYPE, tarfile.SYMTYPE])


@st.composite
def _archives(draw: st.DrawFn) -> tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        name, kind = draw(_names), draw(_types)
        if kind == tarfile.REGTYPE:
            members.append(reg(name, draw(st.binary(max_size=64)),
                               draw(st.sampled_from([0o600, 0o644, 0o4755, 0o777]))))
        else:
            members.append(special(name, kind, draw(_targets)))
    return members, draw(st.sampled_from(["faithful", "faithful", "drop-one", "none"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_archives())
def test_property_arbitrary_archives_stay_inside_the_root(
        case: tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]) -> None:
    """Whatever the members, nothing outside the root changes and only KubepkiErrors escape."""
    members, manifest_kind = case
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        root = top / "root"
        (root / "etc/kubernetes/pki").mkdir(parents=True)
        (top / "outside").mkdir()
        (top / "outside" / "sentinel").write_text("keep\n")
        manifest = manifest_doc(members[1:] if manifest_kind == "drop-one" else members)
        path = craft(top / "a.tar.gz", members, manifest=manifest,
                     with_manifest=manifest_kind != "none")
        outside_before = {k: v for k, v in snapshot(top).items() if not k.startswith("root")}
        try:
            backups.restore(path, root, dry_run=False, accept_changed=True, take_backup=False)
        except KubepkiError:
            pass
        report = backups.verify_backup(path)
        assert isinstance(report.ok, bool)
        outside_after = {k: v for k, v in snapshot(top).items() if not k.startswith("root")}
        assert outside_after == outside_before
        allowed = ("root/etc/kubernetes", "root/var/lib/kubelet/pki")
        for rel, (kind, *_rest, detail) in snapshot(top).items():
            if not rel.startswith("root/") or stat.S_ISDIR(kind):
                continue
            assert rel.startswith(allowed), rel
            assert stat.S_ISREG(kind) or stat.S_ISLNK(kind), rel
            if stat.S_ISLNK(kind):
                assert not escapes(PurePosixPath("/", rel).parent.relative_to("/root"), detail), rel


def escapes(base: PurePosixPath, target: str) -> bool:
    """True when symlink ``target`` in node directory ``base`` climbs above the root."""
    parts = [] if target.startswith("/") else list(PurePosixPath("/", base).parts[1:])
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not parts:
                return True
            parts.pop()
        elif part not in ("/", "."):
            parts.append(part)
    return False


# --------------------------------------------------------------------------------------
# Where a restore writes: resolved on the node, from kubeadm's layout, never a symlink to a dir

CRON = "etc/cron.d/evil"
JOB = b"* * * * * root sh -c 'id > /tmp/pwned'\n"


def assert_refused_here(path: Path, root: Path | kubepki.Node, top: Path, *, match: str) -> None:
    """Planning and applying onto this node raise UnsafeArchiveError and nothing anywhere changes
    (the archive may verify: what makes it unsafe is where it would land on this node)."""
    before = snapshot(top)
    with pytest.raises(UnsafeArchiveError, match=match):
        backups.plan_restore(path, root)
    with pytest.raises(UnsafeArchiveError, match=match):
        backups.restore(path, root, dry_run=False, accept_changed=True, accept_permissions=True)
    assert snapshot(top) == before


def test_a_symlink_on_the_node_is_not_written_through(victim: tuple[Path, Path]) -> None:
    """Archive A left pki/evil -> /; archive B (no symlink) writes pki/evil/etc/cron.d/evil: refused.

    The member passes every lexical check; only resolving its parents on the node shows that it
    lands in <root>/etc/cron.d.
    """
    root, top = victim
    (root / "etc/kubernetes/pki/evil").symlink_to("/")
    members = [reg(f"etc/kubernetes/pki/evil/{CRON}", JOB)]
    path = craft(top / "b.tar.gz", members)
    assert backups.verify_backup(path).ok  # self-consistent: only the node says where it leads
    assert_refused_here(path, root, top, match=r"leads to /etc/cron\.d on the node, outside /etc/kubernetes/pki")
    assert not (root / CRON).exists()
    # Control: a real directory of that name is the cert dir's own; the same archive restores into it.
    (root / "etc/kubernetes/pki/evil").unlink()
    (root / "etc/kubernetes/pki/evil").mkdir()
    backups.restore(path, root, dry_run=False, take_backup=False)
    assert (root / "etc/kubernetes/pki/evil" / CRON).read_bytes() == JOB
    assert not (root / CRON).exists()


@pytest.mark.parametrize("target", ["/", "..", "../..", "/etc", "etcd", "/etc/kubernetes/pki/etcd/", "."])
def test_a_restore_never_creates_a_symlink_to_a_directory(victim: tuple[Path, Path], target: str) -> None:
    """A symlink member that leads to a directory (of the node, or of the archive) is refused."""
    root, top = victim
    members = [special("etc/kubernetes/pki/evil", tarfile.SYMTYPE, target)]
    path = craft(top / "a.tar.gz", members)
    assert_refused_here(path, root, top, match="a directory")
    assert not (root / "etc/kubernetes/pki/evil").is_symlink()


def test_a_symlink_to_a_directory_the_archive_makes_is_refused(victim: tuple[Path, Path]) -> None:
    """A link to a path the archive itself fills with files is a directory too."""
    root, top = victim
    members = [special("etc/kubernetes/pki/evil", tarfile.SYMTYPE, "newdir"), reg("etc/kubernetes/pki/newdir/x.crt")]
    assert_refused_here(craft(top / "a.tar.gz", members), root, top, match="a directory")


def test_a_symlink_to_a_file_is_restored(victim: tuple[Path, Path]) -> None:
    """Control: links to files (kubelet-client-current.pem's kind) are restored as links."""
    root, top = victim
    members = [special("etc/kubernetes/pki/ca-link.crt", tarfile.SYMTYPE, "ca.crt")]
    backups.restore(craft(top / "a.tar.gz", members), root, dry_run=False, take_backup=False)
    assert os.readlink(root / "etc/kubernetes/pki/ca-link.crt") == "ca.crt"


def _point_api_server_at(root: Path, flag: str) -> None:
    """A kube-apiserver static pod manifest naming ``--client-ca-file=<flag>``."""
    manifest = root / "etc/kubernetes/manifests/kube-apiserver.yaml"
    manifest.parent.mkdir(mode=0o700, exist_ok=True)
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver, namespace: kube-system}\nspec:\n"
        "  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.34.1\n"
        f"    command: [kube-apiserver, --client-ca-file={flag}]\n")


@pytest.mark.parametrize(("flag", "cert_dir"), [("/ca.crt", "/etc"), ("/etc/cron.d/ca.crt", "/etc/cron.d"),
                                                 ("/srv/x/ca.crt", "/srv/x")])
def test_a_manifest_flag_does_not_widen_where_a_restore_writes(victim: tuple[Path, Path], flag: str,
                                                               cert_dir: str) -> None:
    """A restored manifest naming --client-ca-file=/ca.crt made discovery's cert dir "/"; the
    next archive could then write /etc/cron.d. The flag alone names no place to write."""
    root, top = victim
    _point_api_server_at(root, flag)
    assert str(kubepki.Node(root).profile.cert_dir) == str(PurePosixPath(flag).parent)
    name = CRON if cert_dir != "/srv/x" else "srv/x/ca.crt"
    members = [reg(name, JOB)]
    path = craft(top / "a.tar.gz", members, manifest=manifest_doc(members, cert_dir=cert_dir))
    assert_refused_here(path, root, top, match="not inside the node's kubeadm directories")
    plan_notes = backups.plan_restore(craft(top / "ok.tar.gz", [reg("etc/kubernetes/pki/x.crt")]), root).notes
    assert any("static pod manifests name the cert dir" in n for n in plan_notes)


def test_kubeadm_config_and_the_operator_name_the_cert_dir(victim: tuple[Path, Path]) -> None:
    """Controls: certificatesDir in kubeadm's config, or the operator's cert_dir, is written;
    a system directory never is, whoever names it."""
    root, top = victim
    members = [reg("srv/pki/ca.crt", b"x\n", 0o644)]
    path = craft(top / "a.tar.gz", members, manifest=manifest_doc(members, cert_dir="/srv/pki"))
    with pytest.raises(UnsafeArchiveError):
        backups.plan_restore(path, root)
    backups.restore(path, kubepki.Node(root, cert_dir="/srv/pki"), dry_run=False, take_backup=False)
    assert (root / "srv/pki/ca.crt").read_bytes() == b"x\n"
    (root / "srv/pki/ca.crt").unlink()
    (root / "etc/kubernetes/kubeadm-config.yaml").write_text(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncertificatesDir: /srv/pki\n")
    backups.restore(path, root, dry_run=False, take_backup=False)
    assert (root / "srv/pki/ca.crt").read_bytes() == b"x\n"
    cron = [reg(CRON, JOB)]
    hostile = craft(top / "c.tar.gz", cron, manifest=manifest_doc(cron, cert_dir="/etc/cron.d"))
    for node in (kubepki.Node(root, cert_dir="/etc/cron.d"), kubepki.Node(root, cert_dir="/")):
        with pytest.raises(UnsafeArchiveError, match="not inside"):
            backups.plan_restore(hostile, node)
    assert not (root / CRON).exists()


def test_a_loose_mode_needs_acceptance(single: Path, tmp_path: Path) -> None:
    """A backup that gives a key 0666 (or a certificate 0666) is not restored without a word."""
    pki = single / "etc/kubernetes/pki"
    (pki / "apiserver.key").chmod(0o666)
    (pki / "apiserver.crt").chmod(0o640)  # tighter than kubeadm's 0644: no risk
    archive = backups.backup(single, tmp_path / "out").path
    (pki / "apiserver.key").chmod(0o600)
    (pki / "apiserver.crt").chmod(0o600)
    plan = backups.plan_restore(archive, single)
    risky = {s.path: s.permission_risk for s in plan.steps if s.permission_risk}
    assert risky == {"/etc/kubernetes/pki/apiserver.key": "mode 0666 is looser than kubeadm's 0600"}
    assert plan.permission_risks == ("/etc/kubernetes/pki/apiserver.key: mode 0666 is looser than kubeadm's 0600",)
    assert "WIDENS ACCESS" in plan.table()
    with pytest.raises(BackupError, match=r"looser than kubeadm's 0600.*accept_permissions=True"):
        backups.apply_restore(plan, accept_changed=True)
    assert stat.S_IMODE((pki / "apiserver.key").stat().st_mode) == 0o600
    backups.apply_restore(plan, accept_permissions=True)
    assert stat.S_IMODE((pki / "apiserver.key").stat().st_mode) == 0o666
    assert stat.S_IMODE((pki / "apiserver.crt").stat().st_mode) == 0o640


def test_an_extra_private_key_gets_kubeadms_key_mode(victim: tuple[Path, Path]) -> None:
    """Files kubeadm does not know: 0644 is fine for a certificate, not for a private key."""
    root, top = victim
    members = [reg("etc/kubernetes/pki/extra.crt", b"cert\n", 0o644),
               reg("etc/kubernetes/pki/extra.key", b"-----BEGIN PRIVATE KEY-----\nx\n", 0o644)]
    plan = backups.plan_restore(craft(top / "a.tar.gz", members), root)
    assert [(s.path, s.permission_risk) for s in plan.steps] == [
        ("/etc/kubernetes/pki/extra.crt", None),
        ("/etc/kubernetes/pki/extra.key", "mode 0644 is looser than kubeadm's 0600")]


# --------------------------------------------------------------------------------------
# One writer at a time: backups hold the lock, refuse a half-renewed tree, verify pairs

REPO = Path(__file__).resolve().parents[1]
PKI = "etc/kubernetes/pki"
PAIRS = ("apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client",
         "etcd/server", "etcd/peer", "etcd/healthcheck-client")


def pairs_match(root: Path) -> dict[str, bool]:
    """For every catalog pair of the cert dir and every kubeconfig: do certificate and key match?"""
    import base64

    import yaml
    from cryptography import x509

    from kubepki.pki import load_private_key, public_key_der

    def match(cert: bytes, key: bytes) -> bool:
        return public_key_der(x509.load_pem_x509_certificate(cert).public_key()) == \
            public_key_der(load_private_key(key))  # type: ignore[arg-type]

    out = {b: match((root / PKI / f"{b}.crt").read_bytes(), (root / PKI / f"{b}.key").read_bytes()) for b in PAIRS}
    for conf in ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"):
        user = yaml.safe_load((root / "etc/kubernetes" / conf).read_bytes())["users"][0]["user"]
        out[conf] = match(base64.b64decode(user["client-certificate-data"]),
                          base64.b64decode(user["client-key-data"]))
    return out


def kubepki_child(*args: str, crash_at: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m kubepki ARGS`` in a child, SIGKILLed at its checkpoint ``crash_at``."""
    from kubepki._crash import CRASH_ENV

    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = str(crash_at)
    return subprocess.run([sys.executable, "-m", "kubepki", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, check=False, timeout=timeout)


def kubepki_temporaries(top: Path) -> list[Path]:
    """kubepki's staged and temporary files, journals included, anywhere under ``top``."""
    return sorted(p for p in top.rglob(".*") if p.name.endswith((".tmp", ".kubepki-new", ".json"))
                  and ".kubepki" in p.name)


def test_backup_holds_the_node_lock(single: Path, tmp_path: Path) -> None:
    """While another writer holds the lock, a backup fails and writes nothing; a caller that holds
    the lock itself (a renewal's backup first) says so and is not locked out by its own lock."""
    node = kubepki.Node(single)
    with node_lock(node):
        with pytest.raises(LockError, match="another kubepki is writing"):
            backups.backup(node, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        info = backups.backup(node, tmp_path / "out", lock_held=True)
    assert backups.verify_backup(info.path).ok
    backups.backup(node, tmp_path / "out")  # control: free again


def test_backup_refuses_an_unfinished_renewal(single: Path, tmp_path: Path) -> None:
    """A renewal journal means a pair may be half-renamed: no backup is taken of that."""
    journal = single / PKI / ".kubepki-renewal.json"
    journal.write_text('{"version": 1, "state": "committing", "groups": []}\n')
    with pytest.raises(BackupError, match=r"a renewal of this node was interrupted.*renew --resume"):
        backups.backup(single, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    journal.unlink()
    assert backups.backup(single, tmp_path / "out").items  # control


def _other_key(root: Path) -> bytes:
    return (root / PKI / "front-proxy-client.key").read_bytes()


def test_verify_finds_a_mismatched_pair(single: Path, tmp_path: Path) -> None:
    """An archive whose hashes all match but whose apiserver.crt sits beside another key (a backup
    taken mid-renewal) does not verify and is not restored; the same for a kubeconfig."""
    import base64

    import yaml

    good = backups.backup(single, tmp_path / "good").path
    assert backups.verify_backup(good).ok  # control
    (single / PKI / "apiserver.key").write_bytes(_other_key(single))
    conf = single / "etc/kubernetes/admin.conf"
    doc = yaml.safe_load(conf.read_text())
    doc["users"][0]["user"]["client-key-data"] = base64.b64encode(_other_key(single)).decode()
    conf.write_text(yaml.safe_dump(doc))
    bad = backups.backup(single, tmp_path / "bad").path
    report = backups.verify_backup(bad)
    assert not report.ok and not report.unsafe
    assert [p.split(":")[0] for p in report.problems] == [
        "/etc/kubernetes/pki/apiserver.crt and /etc/kubernetes/pki/apiserver.key",
        "/etc/kubernetes/admin.conf (its embedded client certificate and key)"]
    assert all("does not match the private key" in p for p in report.problems)
    # The node holds that same broken pair: a plan writes nothing of it, so it is not refused.
    assert backups.plan_restore(bad, single).changes == ()
    backups.restore(good, single, dry_run=False, accept_changed=True, take_backup=False)
    with pytest.raises(BackupError, match="would install a broken pair"):
        backups.plan_restore(bad, single)
    with pytest.raises(BackupError, match=r"apiserver\.crt and .*apiserver\.key: the certificate does not match"):
        backups.plan_restore(bad, single, only=["apiserver"])  # it would write the wrong key back
    with pytest.raises(BackupError, match=r"admin\.conf \(its embedded"):
        backups.plan_restore(bad, single, only=["admin.conf"])
    assert backups.plan_restore(bad, single, only=["front-proxy-client"]).changes == ()  # the rest restores


def test_verify_follows_the_kubelets_current_pem(single: Path, tmp_path: Path) -> None:
    """kubelet-client-current.pem is a symlink to a PEM with both halves: they must match too."""
    link = single / "var/lib/kubelet/pki/kubelet-client-current.pem"
    pem = link.parent / PurePosixPath(os.readlink(link)).name  # an absolute node path
    data = pem.read_bytes()
    cert = data[: data.index(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----\n")]
    pem.write_bytes(cert + _other_key(single))
    report = backups.verify_backup(backups.backup(single, tmp_path / "out").path)
    assert len(report.problems) == 1 and pem.name in report.problems[0], report.problems


def _renewed_and_killed(root: Path) -> dict[str, Any]:
    """Kill a real ``kubepki renew all --apply`` between the renames of its commit; its journal."""
    for n in range(22, 40):
        shutil.copytree(root, root.with_name("try"), symlinks=True)
        done = kubepki_child("renew", "all", "--apply", "--no-backup", "--key-algorithm", "ECDSA-P256",
                             "--root", str(root.with_name("try")), crash_at=n)
        assert done.returncode == -signal.SIGKILL, done.stderr
        journal = root.with_name("try") / PKI / ".kubepki-renewal.json"
        if journal.exists() and json.loads(journal.read_text())["state"] == "committing" and \
                not all(pairs_match(root.with_name("try")).values()):
            shutil.rmtree(root)
            root.with_name("try").rename(root)
            return dict(json.loads((root / PKI / ".kubepki-renewal.json").read_text()))
        shutil.rmtree(root.with_name("try"))
    raise AssertionError("no checkpoint left a half-renamed pair")


def test_restore_supersedes_a_killed_renewal(single: Path, tmp_path: Path) -> None:
    """After a renewal killed mid-commit, restoring the backup taken before it clears its journal
    and staged files with the restore, so later renewals run; a backup refuses the tree before."""
    archive = backups.backup(single, tmp_path / "archives").path
    journal = _renewed_and_killed(single)
    assert journal["state"] == "committing"
    with pytest.raises(BackupError, match="renewal of this node was interrupted"):
        backups.backup(single, tmp_path / "refused")
    plan = backups.plan_restore(archive, single)
    assert plan.supersedes[-1] == "/etc/kubernetes/pki/.kubepki-renewal.json"
    assert any("a renewal of this node was interrupted" in n for n in plan.notes)
    result = backups.apply_restore(plan, accept_changed=True)
    assert result.pre_restore_backup is not None  # the broken state is kept, as it was
    assert not kubepki_temporaries(single)
    assert all(pairs_match(single).values())
    assert backups.plan_restore(archive, single).changes == ()
    done = kubepki_child("renew", "all", "--apply", "--no-backup", "--key-algorithm", "ECDSA-P256",
                         "--root", str(single))
    assert done.returncode == 0, done.stderr
    assert all(pairs_match(single).values())


def _hand_journal(root: Path, state: str, targets: Sequence[str]) -> None:
    files = [{"staged": str(PurePosixPath(t).parent / f".{PurePosixPath(t).name}.kubepki-new"), "target": t,
              "role": "cert"} for t in targets]
    for f in files:
        (root / f["staged"].lstrip("/")).write_text("staged\n")
    (root / PKI / ".kubepki-renewal.json").write_text(json.dumps(
        {"version": 1, "state": state, "groups": [{"name": "apiserver", "check": "pair", "files": files}]}))


def test_a_partial_restore_cannot_supersede_a_committed_renewal(single: Path, archive: Path) -> None:
    """Restoring only front-proxy-client leaves the half-renewed apiserver as it is: refused;
    the whole backup supersedes it; a journal still staging is superseded by any restore."""
    _hand_journal(single, "committing", ["/etc/kubernetes/pki/apiserver.crt"])
    with pytest.raises(BackupError, match=r"names /etc/kubernetes/pki/apiserver.crt, which this restore does "
                                          r"not write \(only= leaves it out\).*renew --resume"):
        backups.plan_restore(archive, single, only=["front-proxy-client"])
    plan = backups.plan_restore(archive, single)
    assert plan.changes == () and plan.supersedes == (
        "/etc/kubernetes/pki/.apiserver.crt.kubepki-new", "/etc/kubernetes/pki/.kubepki-renewal.json")
    backups.apply_restore(plan)
    assert not kubepki_temporaries(single)
    _hand_journal(single, "staging", ["/etc/kubernetes/pki/apiserver.crt"])
    backups.restore(archive, single, only=["front-proxy-client"], dry_run=False)
    assert not kubepki_temporaries(single)


# --------------------------------------------------------------------------------------
# The restore's own journal: killed at every checkpoint, finished by the next writer


@pytest.fixture
def renewed(single: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An archive of the tree, then the tree renewed (every pair differs from the archive)."""
    archive = backups.backup(single, tmp_path / "archives").path
    done = kubepki_child("renew", "all", "--apply", "--no-backup", "--key-algorithm", "ECDSA-P256",
                         "--root", str(single))
    assert done.returncode == 0, done.stderr
    return single, archive


def _pki_state(root: Path) -> dict[str, tuple[Any, ...]]:
    return {k: v for k, v in node_files(root).items() if k.startswith(("etc/", "var/lib"))}


def test_kill_a_restore_at_every_checkpoint(renewed: tuple[Path, Path], tmp_path: Path) -> None:
    """SIGKILL the restore at checkpoint N = 1..all: pairs match after the kill but for one the
    journal completes; the next backup (or restore) finishes or undoes it, cleaning every staged file."""
    from concurrent.futures import ThreadPoolExecutor

    from kubepki import _crash

    root, archive = renewed
    args = ("restore", str(archive), "--apply", "--accept-changed", "--no-backup")
    renewed_state = _pki_state(root)
    count_root = tmp_path / "count"
    shutil.copytree(root, count_root, symlinks=True)
    before = _crash.passed()
    backups.restore(archive, count_root, dry_run=False, accept_changed=True, take_backup=False)
    count = _crash.passed() - before
    restored_state = _pki_state(count_root)
    files = len(backups.plan_restore(archive, root).changes)
    assert count == 1 + files + 1 + files + 1  # journal, staged files, commit, renames, journal removal
    roots = {n: tmp_path / f"n{n}" for n in range(1, count + 1)}
    for r in roots.values():
        shutil.copytree(root, r, symlinks=True)
    with ThreadPoolExecutor(max_workers=3) as pool:
        codes = dict(zip(roots, pool.map(lambda n: kubepki_child(*args, "--root", str(roots[n]),
                                                                  crash_at=n).returncode, roots), strict=True))
    for n, r in roots.items():
        where = f"killed at checkpoint {n}"
        assert codes[n] == -signal.SIGKILL, where
        journal = r / PKI / ".kubepki-restore.json"
        state = json.loads(journal.read_text())["state"] if journal.exists() else None
        mismatched = [k for k, ok in pairs_match(r).items() if not ok]
        assert not mismatched or state == "committing", (where, mismatched)
        # the next writer: a backup (odd N) or the restore again (even N)
        if n % 2:
            done = kubepki_child("backup", "--root", str(r), "--backup-dir", str(tmp_path / f"b{n}"))
            assert done.returncode == 0, (where, done.stderr)
            # before the commit nothing changed; after it (or once the journal is gone) all did
            expected = restored_state if state == "committing" or n == count else renewed_state
            assert _pki_state(r) == expected, where
        done = kubepki_child(*args, "--root", str(r))
        assert done.returncode == 0, (where, done.stderr)
        assert _pki_state(r) == restored_state, where
        assert not kubepki_temporaries(r), where
        assert all(pairs_match(r).values()), where


def test_a_renewal_finishes_an_interrupted_restore(renewed: tuple[Path, Path]) -> None:
    """A renewal is a writer too: under its lock it completes the restore before writing anything; a plan
    made on the half-restored tree is then refused as stale, and ``renew --apply`` (which finishes the
    restore before planning) renews in one run."""
    root, archive = renewed
    plan = backups.plan_restore(archive, root)
    files = len(plan.changes)
    first_cert = next(i for i, s in enumerate(plan.changes) if s.path.endswith(".crt"))
    # killed just after the commit renamed a certificate, before its key
    done = kubepki_child("restore", str(archive), "--apply", "--accept-changed", "--no-backup", "--root", str(root),
                         crash_at=1 + files + 1 + first_cert + 1)
    assert done.returncode == -signal.SIGKILL
    assert not all(pairs_match(root).values())
    # A plan made on the half-restored tree: applying it finishes the restore, then refuses the stale plan.
    stale = kubepki.plan_renewal(root)
    with pytest.raises(RenewalError, match="plan again"):
        kubepki.apply_renewal(stale, take_backup=False, force_invalid_times=True)
    assert not kubepki_temporaries(root)
    assert all(pairs_match(root).values())
    assert backups.plan_restore(archive, root).changes == ()
    # The command line finishes an interrupted restore before it plans: one run renews.
    kubepki.apply_renewal(kubepki.plan_renewal(root), take_backup=False)  # the tree differs from the archive again
    plan = backups.plan_restore(archive, root)
    files = len(plan.changes)
    first_cert = next(i for i, s in enumerate(plan.changes) if s.path.endswith(".crt"))
    done = kubepki_child("restore", str(archive), "--apply", "--accept-changed", "--no-backup", "--root", str(root),
                         crash_at=1 + files + 1 + first_cert + 1)
    assert done.returncode == -signal.SIGKILL and not all(pairs_match(root).values())
    done = kubepki_child("renew", "all", "--apply", "--no-backup", "--key-algorithm", "ECDSA-P256", "--root",
                         str(root))
    assert done.returncode == 0, done.stderr
    assert all(pairs_match(root).values()) and not kubepki_temporaries(root)


def test_a_damaged_restore_journal_is_refused_not_guessed(single: Path, tmp_path: Path) -> None:
    """A journal naming files outside the kubeadm dirs (or unreadable) is a clear error; nothing moves."""
    journal = single / PKI / ".kubepki-restore.json"
    journal.write_text(json.dumps({"version": 1, "state": "committing", "files": [
        {"target": "/etc/cron.d/evil", "staged": "/etc/cron.d/.evil.kubepki-0123456789ab.tmp", "type": "file",
         "sha256": "0" * 64, "link_target": None}], "remove": []}))
    before = node_files(single)
    with pytest.raises(BackupError, match=r"restore journal .* is damaged \(/etc/cron.d/evil is outside"):
        backups.backup(single, tmp_path / "out")
    assert node_files(single) == before
    journal.write_text("{")
    with pytest.raises(BackupError, match="is damaged"):
        backups.resume_restore(single)
    journal.unlink()
    assert backups.resume_restore(single) == ()  # control


# --------------------------------------------------------------------------------------
# What a backup directory may hold: FIFOs, odd names, killed writers' temporaries, umask 000

def child_python(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python under ``timeout`` (a hang is a failure, not a stuck test run)."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=timeout)


def test_a_fifo_at_an_archive_path_is_an_error_not_a_hang(single: Path, tmp_path: Path) -> None:
    """verify, restore, list and prune never open a FIFO (opening one for reading blocks)."""
    backups_dir = tmp_path / "backups"
    real = backups.backup(single, backups_dir).path
    fifo = backups_dir / "kubepki-backup-cp1-20261101T000000Z.tar.gz"
    os.mkfifo(fifo)
    code = (
        "import sys, kubepki\n"
        "from kubepki.backups import verify_backup, plan_restore, list_backups, prune_backups\n"
        "from kubepki.errors import BackupError\n"
        "fifo, root, d = sys.argv[1:]\n"
        "r = verify_backup(fifo); print('verify', r.ok, r.problems)\n"
        "try:\n    plan_restore(fifo, root)\nexcept BackupError as e:\n    print('restore', e.message)\n"
        "print('list', [i.path.name for i in list_backups(d)])\n"
        "print('prune', [p.name for p in prune_backups(d, 1, dry_run=True)])\n"
    )
    done = child_python(code, str(fifo), str(single), str(backups_dir))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "verify False ('cannot read the archive: a FIFO, not a regular file',)"
    assert lines[1].endswith("cannot read the archive: a FIFO, not a regular file")
    assert lines[2] == f"list [{real.name!r}]"  # the FIFO is no backup; the archive beside it is
    assert lines[3] == "prune []"
    cli = kubepki_child("backup", "verify", str(fifo), timeout=30)
    assert cli.returncode == 2 and "a FIFO, not a regular file" in cli.stdout + cli.stderr


def test_a_non_utf8_name_is_skipped_named_and_does_not_block(single: Path, tmp_path: Path) -> None:
    """One file (or directory) name that is not UTF-8 under the PKI: the backup is taken, the
    name is listed escaped in what was skipped, and the manifest stays valid JSON."""
    pki = os.fsencode(single / PKI)
    with open(pki + b"/stray-\xff.crt", "wb") as fh:
        fh.write(b"x\n")
    os.mkdir(pki + b"/dir-\xfe")
    with open(pki + b"/dir-\xfe/inside.crt", "wb") as fh:
        fh.write(b"y\n")
    info = backups.backup(single, tmp_path / "out")
    assert sorted(info.skipped) == [
        "/etc/kubernetes/pki/dir-\\xfe: directory name cannot be stored safely (name is not valid UTF-8); not "
        "backed up",
        "/etc/kubernetes/pki/stray-\\xff.crt: name cannot be stored safely (name is not valid UTF-8)"]
    report = backups.verify_backup(info.path)
    assert report.ok and report.info is not None and report.info.skipped == info.skipped
    assert "/etc/kubernetes/pki/ca.key" in {m.path for m in report.members}
    cli = kubepki_child("backup", "--root", str(single), "--backup-dir", str(tmp_path / "cli"))
    assert cli.returncode == 0, cli.stderr
    assert "skipped /etc/kubernetes/pki/stray-\\xff.crt" in cli.stdout + cli.stderr


def test_a_non_utf8_symlink_target_is_skipped(single: Path, tmp_path: Path) -> None:
    """A symlink whose target is not UTF-8 cannot be recorded faithfully: skipped and named."""
    os.symlink(b"\xff-target", os.fsencode(single / PKI / "odd-link.crt"))
    info = backups.backup(single, tmp_path / "out")
    assert info.skipped == ("/etc/kubernetes/pki/odd-link.crt: symlink target is not valid UTF-8",)


def test_a_killed_backup_leaves_no_keys_behind(single: Path, tmp_path: Path) -> None:
    """SIGKILLed after writing its temporary archive (every private key in it): prune lists and
    removes it, a later backup removes it too; a live writer's temporary is never touched."""
    dest = tmp_path / "backups"
    done = kubepki_child("backup", "--root", str(single), "--backup-dir", str(dest), crash_at=1)
    assert done.returncode == -signal.SIGKILL
    (stale,) = dest.iterdir()
    assert stale.name.startswith(".kubepki-backup-") and stale.name.endswith(".tmp")
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600 and stale.read_bytes()[:2] == b"\x1f\x8b"
    assert backups.list_backups(dest) == []
    assert backups.prune_backups(dest, 1, dry_run=True) == [stale]
    assert stale.exists()
    # a live writer: the same kind of file, flock()ed by this process
    import fcntl

    live = dest / ".kubepki-backup-cp1-20261101T000000Z.tar.gz.0123456789ab.tmp"
    live.write_bytes(b"\x1f\x8b live")
    with open(live, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        assert backups.prune_backups(dest, 1) == [stale]
        assert not stale.exists() and live.exists()
        crashed = kubepki_child("backup", "--root", str(single), "--backup-dir", str(dest), crash_at=1)
        assert crashed.returncode == -signal.SIGKILL
        info = backups.backup(single, dest)  # a later backup clears what a dead writer left
        assert sorted(p.name for p in dest.iterdir()) == sorted([info.path.name, live.name])
    live.unlink()


def test_backup_directories_are_0700_whatever_the_umask(single: Path, tmp_path: Path) -> None:
    """Under umask 000 every directory kubepki creates for backups is 0700, parents included."""
    old = os.umask(0)
    try:
        info = backups.backup(single, tmp_path / "a" / "b" / "c")
        backups.backup(single, PurePosixPath("/var/backups/x/y"), on_node=True)
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a/b", tmp_path / "a/b/c"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for d in ("var/backups", "var/backups/x", "var/backups/x/y"):
        assert stat.S_IMODE((single / d).stat().st_mode) == 0o700, d
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600


def test_a_mode_the_node_has_now_is_no_widening(single: Path, tmp_path: Path) -> None:
    """An operator's 0640 key, kept by renewals, restores without acceptance; 0644 over it does not."""
    key = single / PKI / "apiserver.key"
    key.chmod(0o640)
    archive = backups.backup(single, tmp_path / "out").path
    key.write_bytes(_other_key(single))
    plan = backups.plan_restore(archive, single)
    assert plan.permission_risks == ()
    key.chmod(0o600)
    assert backups.plan_restore(archive, single).permission_risks == (
        "/etc/kubernetes/pki/apiserver.key: mode 0640 is looser than kubeadm's 0600",)
    key.chmod(0o604)
    assert backups.plan_restore(archive, single).permission_risks == (
        "/etc/kubernetes/pki/apiserver.key: mode 0640 is looser than kubeadm's 0600 and the node's 0604",)


def test_a_cert_dir_of_slash_is_not_walked(single: Path, tmp_path: Path) -> None:
    """--client-ca-file=/ca.crt makes discovery's cert dir "/": the backup does not archive the
    whole root (the same widening a restore refuses), it says so; the operator's cert dir works."""
    (single / "etc/shadow").write_text("root:$6$secret:::\n")
    _point_api_server_at(single, "/ca.crt")
    info = backups.backup(single, tmp_path / "out")
    assert "/: directory not backed up: too close to the root (name the node's directories if discovery is " \
           "wrong)" in info.skipped
    paths = {m.path for m in backups.verify_backup(info.path).members}
    assert "/etc/shadow" not in paths and "/etc/kubernetes/pki/ca.key" not in paths
    named = backups.backup(kubepki.Node(single, cert_dir="/etc/kubernetes/pki"), tmp_path / "named")
    assert "/etc/kubernetes/pki/ca.key" in {m.path for m in backups.verify_backup(named.path).members}


def _journal_like(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function, not a lambda: hypothesis reads an extend lambda's source to check it recurses, and
    # the source of a lambda spread over lines beside another lambda is not always found.
    keys = ["version", "state", "files", "remove", "target", "staged", "type", "sha256", "link_target", "groups"]
    return st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(keys), inner, max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20), _journal_like,
    max_leaves=12).map(lambda doc: json.dumps(doc).encode())))
def test_hostile_journals_are_refused_not_followed(single: Path, raw: bytes) -> None:
    """Whatever bytes a restore or renewal journal holds: a result or a BackupError, and no file moves."""
    journal = single / PKI / ".kubepki-restore.json"
    renewal_journal = single / PKI / ".kubepki-renewal.json"
    before = node_files(single)
    journal.write_bytes(raw)
    try:
        backups.resume_restore(single)
    except BackupError:
        pass
    journal.unlink(missing_ok=True)
    after = {k: v for k, v in node_files(single).items() if not k.endswith(".kubepki-restore.json")}
    assert after == before
    renewal_journal.write_bytes(raw)
    archive = single.parent / "hyp-archive.tar.gz"
    if not archive.exists():
        renewal_journal.rename(single.parent / "held")
        backups.backup(single, single.parent / "hyp").path.rename(archive)
        (single.parent / "held").rename(renewal_journal)
    try:
        plan = backups.plan_restore(archive, single)
    except BackupError:
        pass
    else:
        assert plan.supersedes[-1] == "/etc/kubernetes/pki/.kubepki-renewal.json"
    renewal_journal.unlink()


def test_a_restarts_backup_first_makes_no_0777_parents(single: Path, tmp_path: Path) -> None:
    """kubepki restarts' backup first goes through backup(): its directories are 0700 under umask 000."""
    from kubepki.restarts import Changed, plan_restarts
    from kubepki.restarts._restarts import _backup_first

    node = kubepki.Node(single)
    plan = plan_restarts(node, Changed(["apiserver"]), now=ISSUED)
    assert plan.restarts
    old = os.umask(0)
    try:
        path = _backup_first(plan, node, None, take_backup=True, backup_dir=tmp_path / "r" / "s")
    finally:
        os.umask(old)
    assert path is not None and backups.verify_backup(path).ok
    assert [stat.S_IMODE(d.stat().st_mode) for d in (tmp_path / "r", tmp_path / "r/s")] == [0o700, 0o700]


def test_a_restored_kubeadm_config_that_moves_the_cert_dir_needs_acceptance(victim: tuple[Path, Path]) -> None:
    """Archive A's kubeadm config with certificatesDir /opt/evil would let archive B write there: A is
    restored only when accepted; the same config naming the current cert dir needs nothing."""
    root, top = victim
    moved = [reg("etc/kubernetes/kubeadm-config.yaml", b"apiVersion: kubeadm.k8s.io/v1beta4\n"
                 b"kind: ClusterConfiguration\ncertificatesDir: /opt/evil\n")]
    config = "/etc/kubernetes/kubeadm-config.yaml"
    path = craft(top / "a.tar.gz", moved, manifest=manifest_doc(moved, config_file=config))
    plan = backups.plan_restore(path, root)
    assert plan.permission_risks == ("/etc/kubernetes/kubeadm-config.yaml: it sets certificatesDir '/opt/evil' "
                                     "(the cert dir here is /etc/kubernetes/pki): later restores would write there",)
    with pytest.raises(BackupError, match="accept_permissions=True"):
        backups.apply_restore(plan)
    assert not (root / "etc/kubernetes/kubeadm-config.yaml").exists()
    same = [reg("etc/kubernetes/kubeadm-config.yaml", b"apiVersion: kubeadm.k8s.io/v1beta4\n"
                b"kind: ClusterConfiguration\ncertificatesDir: /etc/kubernetes/pki\n")]
    ok = craft(top / "b.tar.gz", same, manifest=manifest_doc(same, config_file=config))
    assert backups.plan_restore(ok, root).permission_risks == ()


@pytest.mark.parametrize("cert_dir", ["/var/lib/kubelet", "/etc/default", "/var/lib/etcd/member"])
def test_directories_that_run_things_are_never_a_cert_dir(victim: tuple[Path, Path], cert_dir: str) -> None:
    """The kubelet's own directory (config.yaml), /etc/default (its flags), etcd's data: never written."""
    root, top = victim
    members = [reg(f"{cert_dir.lstrip('/')}/config.yaml", b"staticPodPath: /tmp\n")]
    path = craft(top / "a.tar.gz", members, manifest=manifest_doc(members, cert_dir=cert_dir))
    assert_refused_here(path, kubepki.Node(root, cert_dir=cert_dir), top, match="not inside")
