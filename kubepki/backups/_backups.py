"""Backups of a node's PKI: one verifiable archive, restored through a reviewed plan.

kubeadm overwrites certificates in place and never keeps a copy, so kubepki does:
:func:`backup` writes everything the catalog knows on a node into one ``tar.gz``,
:func:`verify_backup` checks an archive against the manifest inside it,
:func:`plan_restore` says what a restore would change and :func:`restore` (or
:func:`apply_restore`) does it, file by file, atomically.

What goes in comes from the catalog and the node's discovered profile: the whole
cert dir (``etcd/`` and files kubeadm does not know, too), the catalog's kubeconfigs
and any other ``*.conf`` beside them, the kubelet's PKI dir (symlinks kept as
symlinks), the static pod manifests and the kubeadm config file discovery found on
the node. Member names are node paths without the leading slash; the first member,
``kubepki-manifest.json``, lists every file with its size, SHA-256, mode, owner,
mtime, kind and catalog name (see ``docs/backup.md``).

Archives are untrusted input when read back. Every member is checked before
anything is written: absolute names, ``..``, names that are not normalised,
duplicates, hard links, devices and FIFOs, symlinks that lead out of the root,
members under a symlink member, members the manifest does not list (or the
reverse), sizes above :data:`MAX_MEMBER_SIZE` / :data:`MAX_TOTAL_SIZE`, and
paths outside the node's kubeadm directories are refused with
:class:`~kubepki.UnsafeArchiveError`; damage (truncation, corruption, a hash
that does not match, a missing manifest) with :class:`~kubepki.BackupError`.
``tarfile``'s extraction is never used: kubepki writes each file itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import errno
import fcntl
import gzip
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat as stat_mod
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, overload

import attrs

from kubepki import catalog as _catalog
from kubepki._args import instance, local_path
from kubepki._clock import iso, utc as _utc
from kubepki._crash import checkpoint
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki._version import __version__
from kubepki.errors import (
    BackupError,
    ConfigError,
    KubepkiError,
    NodeError,
    UnsafeArchiveError,
    os_reason,
    quoted,
    scrub,
)
from kubepki.node import (
    CONFIG_CANDIDATES,
    DEFAULT_DIRS,
    RENEWAL_JOURNAL_NAME,
    RENEWAL_STAGED_SUFFIX,
    RESTORE_JOURNAL_NAME,
    FileStat,
    LocalPaths,
    Node,
    NodeFS,
    NotRegularFile,
    fsync_dir,
    makedirs,
    node_lock,
    open_regular,
    rename_noreplace,
    renewal_journal_path,
    renewal_staged_path,
    restore_journal_path,
)

__all__ = [
    "ARCHIVE_PREFIX",
    "DEFAULT_BACKUP_DIR",
    "FORMAT",
    "MANIFEST_NAME",
    "MAX_MEMBERS",
    "MAX_MEMBER_SIZE",
    "MAX_TOTAL_SIZE",
    "BackupInfo",
    "BackupMember",
    "RestoreAction",
    "RestorePlan",
    "RestoreResult",
    "RestoreStep",
    "VerifyReport",
    "apply_restore",
    "archive_name",
    "backup",
    "default_backup_dir",
    "list_backups",
    "plan_restore",
    "prune_backups",
    "restore",
    "resume_restore",
    "verify_backup",
]

#: Version of the archive layout and manifest schema; readers refuse newer ones.
FORMAT = 1
#: The manifest's member name; always the archive's first member.
MANIFEST_NAME = "kubepki-manifest.json"
#: Archive file names: ``kubepki-backup-<node>-<YYYYmmddTHHMMSSZ>[-N].tar.gz``.
ARCHIVE_PREFIX = "kubepki-backup-"
_SUFFIX = ".tar.gz"
#: Largest file kept in (and accepted from) an archive; bigger files are skipped.
MAX_MEMBER_SIZE = 16 << 20
#: Largest total of member sizes; bounds memory and defuses decompression bombs.
MAX_TOTAL_SIZE = 64 << 20
#: Most members an archive may have.
MAX_MEMBERS = 4096
#: Where kubepki keeps the backups it takes before changing a node (a node path).
DEFAULT_BACKUP_DIR = "/var/backups/kubepki"
_MAX_MANIFEST = 4 << 20
# Tar headers add 512 bytes per member plus PAX records; leave room for them.
_MAX_TAR = MAX_TOTAL_SIZE + _MAX_MANIFEST + (MAX_MEMBERS + 1) * 3 * 512 + (1 << 20)
_NAME_RE = re.compile(
    r"^kubepki-backup-(?P<node>[A-Za-z0-9._-]+)-(?P<ts>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.tar\.gz$"
)
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MODE_RE = re.compile(r"^[0-7]{3,4}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# kubepki's own transient files: the node lock, the renewal journal and staged files
# (kubepki.renewal._renewal) and atomic writes' temporaries. Restoring a journal would make
# `kubepki renew --resume` replay an old renewal, so none of them is backed up.
_TRANSIENT = re.compile(
    "^" + re.escape(".kubepki.lock") + "$|^" + re.escape(RENEWAL_JOURNAL_NAME) + "$|^"
    + re.escape(RESTORE_JOURNAL_NAME) + "$|" + re.escape(RENEWAL_STAGED_SUFFIX) + "$|"
    + r"^\..*\.kubepki-[0-9a-f]+\.tmp$"
)
# A backup's temporary archive: ``.<final name>.<12 hex>.tmp`` beside where it will appear.
_TMP_RE = re.compile(r"^\.(?P<name>kubepki-backup-[A-Za-z0-9._-]+-\d{8}T\d{6}Z(?:-\d+)?\.tar\.gz)"
                     r"\.[0-9a-f]{12}\.tmp$")
_FILE, _SYMLINK = "file", "symlink"

# mkdir(2) and listing: EEXIST and ENOTDIR are about the destination itself.
_DIR_REASONS = {errno.ENOTDIR: "not a directory", errno.EEXIST: "exists and is not a directory"}


def _reason(exc: OSError) -> str:
    return os_reason(exc, _DIR_REASONS)


def _iso(when: dt.datetime) -> str:
    return iso(when, timespec="auto")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} MiB"  # pragma: no cover - the loop always returns


# --------------------------------------------------------------------------------------
# Results


@attrs.frozen(kw_only=True)
class BackupMember:
    """One file of a backup as its manifest records it."""

    #: The node path (``/etc/kubernetes/pki/ca.crt``).
    path: str
    #: ``file`` or ``symlink``.
    type: str
    size: int
    #: SHA-256 of the content (None for symlinks).
    sha256: str | None
    mode: int
    uid: int
    gid: int
    mtime: float
    #: The catalog kind (``ca``, ``certificate``...), ``manifest``, ``config`` or ``other``.
    kind: str
    catalog_name: str | None
    link_target: str | None = None

    @property
    def member_name(self) -> str:
        """The name inside the tar archive."""
        return self.path[1:]

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (mode as an octal string)."""
        return {
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "sha256": self.sha256,
            "mode": format(self.mode, "04o"),
            "uid": self.uid,
            "gid": self.gid,
            "mtime": self.mtime,
            "kind": self.kind,
            "catalog_name": self.catalog_name,
            "link_target": self.link_target,
        }


@attrs.frozen(kw_only=True)
class BackupInfo(Report):
    """One backup archive: whose, when, how big (what :func:`list_backups` returns)."""

    path: Path
    #: The node's name when the backup was taken (None when discovery did not know it).
    node: str | None
    created: dt.datetime
    #: The archive's size in bytes.
    size: int
    #: How many files and symlinks it holds.
    items: int
    kubepki_version: str
    #: Files left out, as ``path: reason`` (too big, not a file or symlink...).
    skipped: tuple[str, ...] = ()
    #: True when ``path`` is a path on the node (``backup(..., on_node=True)``), not a
    #: path on the machine kubepki runs on.
    on_node: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": str(self.path),
            "on_node": self.on_node,
            "node": self.node,
            "created": _iso(self.created),
            "size": self.size,
            "items": self.items,
            "kubepki_version": self.kubepki_version,
            "skipped": list(self.skipped),
        }

    def __repr__(self) -> str:
        return (f"<BackupInfo {self.path.name} node={self.node!r} created={iso(self.created)} "
                f"items={self.items} size={self.size}>")

    def rows(self) -> Table:
        """One row: node, creation time, items, size and kubepki version."""
        return Table(f"kubepki backup {self.path.name}", ("node", "created", "items", "size", "kubepki"),
                     [(self.node or "?", iso(self.created), str(self.items), _size(self.size),
                       self.kubepki_version)])


@attrs.frozen(kw_only=True)
class VerifyReport(Report):
    """What :func:`verify_backup` found: ``ok`` or a list of problems."""

    path: Path
    ok: bool
    #: One line per problem, naming the member concerned.
    problems: tuple[str, ...] = ()
    #: True when a problem makes the archive unsafe (hostile), not merely damaged.
    unsafe: bool = False
    #: The manifest's summary; None when the manifest could not be read.
    info: BackupInfo | None = None
    members: tuple[BackupMember, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": str(self.path),
            "ok": self.ok,
            "unsafe": self.unsafe,
            "problems": list(self.problems),
            "backup": self.info.to_dict() if self.info else None,
            "members": [m.to_dict() for m in self.members],
        }

    @property
    def outcome(self) -> Outcome:
        """Failed when the archive has problems."""
        return Outcome.OK if self.ok else Outcome.FAILED

    def rows(self) -> Table:
        """The verdict as the title, one row per problem."""
        verdict = "OK" if self.ok else "problems found"
        return Table(f"kubepki backup {self.path.name}: {verdict}", ("problem",),
                     [[Cell(p, "error")] for p in self.problems])

    def blocks(self) -> list[Block]:
        """A verdict line, the backup's summary and the problems, one per line."""
        out: list[Block] = [Line([f"{self.path}: ", Cell("OK", "ok") if self.ok else Cell("PROBLEMS FOUND", "error")])]
        if self.info is not None:
            i = self.info
            out.append(Line([f"  node {i.node or 'unknown'}, created {iso(i.created)}, {i.items} items, "
                             f"{_size(i.size)}, kubepki {i.kubepki_version}"]))
            out += [Line([f"  skipped when taken: {s}"]) for s in i.skipped]
        out += [Line(["  ", Cell(f"- {p}", "error")]) for p in self.problems]
        return out

    def table(self) -> str:
        """A verdict line, the backup's summary and the problems, one per line."""
        return self.text().removesuffix("\n")

    def __repr__(self) -> str:
        return f"<VerifyReport {self.path.name} ok={self.ok} problems={len(self.problems)}>"


class RestoreAction(str, enum.Enum):
    """What a restore does to one file."""

    #: Absent on the node: it will be created.
    CREATE = "create"
    #: Present but different in content, file type, mode or owner; it will be replaced.
    REPLACE = "replace"
    #: Identical to the backup: left alone.
    UNCHANGED = "unchanged"


@attrs.frozen(kw_only=True)
class RestoreStep:
    """One file of a restore plan."""

    path: str
    action: RestoreAction
    #: ``file`` or ``symlink`` (what the backup holds).
    type: str
    kind: str
    catalog_name: str | None
    #: The mode, owner and mtime the file is restored with.
    mode: int
    uid: int
    gid: int
    mtime: float
    #: True when the node's file was modified after the backup was taken, so
    #: restoring discards that change; applying then needs ``accept_changed``.
    changed_since_backup: bool = False
    #: Why this action, in plain words (``absent``, ``content differs``...).
    detail: str = ""
    backup_sha256: str | None = None
    current_sha256: str | None = None
    link_target: str | None = None
    #: Why the mode or owner the backup records would widen access (a mode looser than
    #: kubeadm's, an owner other than root or the node's); applying then needs
    #: ``accept_permissions``. None when it would not.
    permission_risk: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "action": self.action.value,
            "type": self.type,
            "kind": self.kind,
            "catalog_name": self.catalog_name,
            "mode": format(self.mode, "04o"),
            "uid": self.uid,
            "gid": self.gid,
            "changed_since_backup": self.changed_since_backup,
            "detail": self.detail,
            "backup_sha256": self.backup_sha256,
            "current_sha256": self.current_sha256,
            "link_target": self.link_target,
            "permission_risk": self.permission_risk,
        }


@attrs.frozen(kw_only=True)
class RestorePlan(Report):
    """What restoring an archive onto a node would do; nothing has been written.

    Apply it with :func:`apply_restore`. The plan is derived from the archive and
    the node's files as they are now, so planning again after a partial restore
    resumes where it stopped.
    """

    archive: Path
    #: SHA-256 of the archive file; applying refuses an archive changed since.
    archive_sha256: str
    node: Node = attrs.field(eq=False, repr=False)
    #: The node's name according to discovery.
    node_name: str | None
    #: The node the backup was taken on.
    backup_node: str | None
    created: dt.datetime
    only: tuple[str, ...] | None
    steps: tuple[RestoreStep, ...]
    notes: tuple[str, ...] = ()
    #: Node paths of the interrupted renewal this restore supersedes (its staged files, then
    #: its journal), removed with the restore's writes; empty when no renewal was interrupted.
    supersedes: tuple[str, ...] = ()

    @property
    def changes(self) -> tuple[RestoreStep, ...]:
        """The steps that write something."""
        return tuple(s for s in self.steps if s.action is not RestoreAction.UNCHANGED)

    @property
    def changed_since_backup(self) -> tuple[RestoreStep, ...]:
        """The steps that would discard a change made after the backup."""
        return tuple(s for s in self.steps if s.changed_since_backup)

    @property
    def foreign(self) -> bool:
        """True when the backup was taken on another node (both names known)."""
        return (self.backup_node is not None and self.node_name is not None
                and self.backup_node != self.node_name)

    @property
    def permission_risks(self) -> tuple[str, ...]:
        """The steps whose mode or owner would widen access, one line each (see
        :attr:`RestoreStep.permission_risk`); applying them needs ``accept_permissions=True``."""
        return tuple(f"{s.path}: {s.permission_risk}" for s in self.steps if s.permission_risk)

    @property
    def needs_acceptance(self) -> tuple[str, ...]:
        """Why applying needs accepting, empty when it does not: changes made after the backup
        and a backup of another node (``accept_changed=True``), then the
        :attr:`permission_risks` (``accept_permissions=True``)."""
        out = [f"{s.path} was modified after the backup was taken" for s in self.changed_since_backup]
        if self.foreign:
            out.append(f"the backup is of node {self.backup_node}, this node is {self.node_name}")
        return (*out, *self.permission_risks)

    def counts(self) -> dict[str, int]:
        """How many steps have each action."""
        out = {a.value: 0 for a in RestoreAction}
        for s in self.steps:
            out[s.action.value] += 1
        return out

    def summary(self) -> str:
        """One line: how many files are created, replaced and left alone."""
        c = self.counts()
        changed = len(self.changed_since_backup)
        extra = f" ({changed} changed since the backup)" if changed else ""
        return (f"{c['create']} to create, {c['replace']} to replace{extra}, "
                f"{c['unchanged']} unchanged")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "archive": str(self.archive),
            "archive_sha256": self.archive_sha256,
            "node": self.node_name,
            "backup_node": self.backup_node,
            "created": _iso(self.created),
            "only": list(self.only) if self.only is not None else None,
            "counts": self.counts(),
            "needs_acceptance": list(self.needs_acceptance),
            "permission_risks": list(self.permission_risks),
            "supersedes": list(self.supersedes),
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.steps],
        }

    def rows(self) -> Table:
        """One row per file: the action, the path and why."""
        return Table(f"kubepki restore plan — {self.archive.name}: {self.summary()}", ("action", "path", "detail"),
                     [[Cell(s.action.value, _ACTION_TONE[s.action]), s.path, _detail(s)] for s in self.steps])

    def blocks(self) -> list[Block]:
        """Where from and onto, the table, a summary line and the notes."""
        head = (f"Restore {self.archive.name} (node {self.backup_node or 'unknown'}, taken "
                f"{iso(self.created)}) onto node {self.node_name or 'unknown'} "
                f"at {self.node.fs.describe()}")
        table = attrs.evolve(self.rows(), title="", columns=("ACTION", "PATH", "DETAIL"), header_tone=None)
        return [Line([head]), table, Line([self.summary()]), *(Line([f"note: {n}"]) for n in self.notes)]

    def table(self) -> str:
        """The plan as an aligned table with a header and a summary line."""
        return self.text().removesuffix("\n")

    def __repr__(self) -> str:
        return f"<RestorePlan {self.archive.name} onto {self.node_name!r}: {self.summary()}>"


_ACTION_TONE = {RestoreAction.CREATE: "ok", RestoreAction.REPLACE: "warning", RestoreAction.UNCHANGED: "dim"}


def _detail(step: RestoreStep) -> Cell:
    risk = f"; WIDENS ACCESS: {step.permission_risk}" if step.permission_risk else ""
    if step.changed_since_backup:
        return Cell(f"{step.detail}; CHANGED SINCE THE BACKUP{risk}", "error")
    return Cell(f"{step.detail}{risk}", "error" if risk else None)


@attrs.frozen(kw_only=True)
class RestoreResult(Report):
    """What :func:`apply_restore` wrote."""

    plan: RestorePlan
    #: Node paths written, in order.
    written: tuple[str, ...]
    #: The backup of the node's state taken just before writing (None when skipped).
    pre_restore_backup: BackupInfo | None

    @property
    def changed(self) -> tuple[str, ...]:
        """The catalog names whose files were written, sorted: what restart planning consumes
        (``kubepki.plan_restarts(node, FromRenewal(result))``). Files of no catalog item (static pod
        manifests, the kubeadm configuration) are in :attr:`written` only."""
        written = set(self.written)
        return tuple(sorted({s.catalog_name for s in self.plan.steps if s.catalog_name and s.path in written}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``node`` and ``changed`` are what ``kubepki restarts plan --from-renewal`` reads."""
        return {
            "kind": "RestoreResult",
            "node": self.plan.node_name,
            "changed": list(self.changed),
            "plan": self.plan.to_dict(),
            "written": list(self.written),
            "pre_restore_backup": (self.pre_restore_backup.to_dict()
                                   if self.pre_restore_backup else None),
        }

    def rows(self) -> Table:
        """One row per file written."""
        return Table(f"kubepki restore — {len(self.written)} file(s) written", ("written",),
                     [(p,) for p in self.written])

    def blocks(self) -> list[Block]:
        """What was written, and where the state before it went."""
        out: list[Block] = [Line([f"Restored {len(self.written)} file(s) from {self.plan.archive.name} "
                                  f"onto node {self.plan.node_name or 'unknown'}"])]
        out += [Line([f"  wrote {p}"]) for p in self.written]
        if self.pre_restore_backup is not None:
            out.append(Line([f"The state before the restore is in {self.pre_restore_backup.path}"]))
        return out

    def table(self) -> str:
        """What was written, and where the state before it went."""
        return self.text().removesuffix("\n")

    def __repr__(self) -> str:
        return f"<RestoreResult {self.plan.archive.name}: {len(self.written)} written>"


# --------------------------------------------------------------------------------------
# Names and paths


def archive_name(node: str | None, when: dt.datetime) -> str:
    """``kubepki-backup-<node>-<YYYYmmddTHHMMSSZ>.tar.gz`` for ``node`` at ``when``.

    The node name keeps letters, digits, ``.``, ``_`` and ``-`` (others become
    ``_``); an unknown or empty name gives ``unknown``.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", node or "").lstrip(".-")[:63]
    stamp = _utc(when).strftime("%Y%m%dT%H%M%SZ")
    return f"{ARCHIVE_PREFIX}{clean or 'unknown'}-{stamp}{_SUFFIX}"


def _printable(name: str) -> str:
    """``name`` as messages and the manifest can carry it: bytes that are not UTF-8 (file
    names come from the OS with ``surrogateescape``) as ``\\xNN`` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not an acceptable relative member name, or None."""
    if not name:
        return "empty name"
    if _CONTROL.search(name):
        return "control characters in the name"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if name.startswith("/"):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' in the path"
    if name == "." or os.path.normpath(name) != name or name.startswith("./"):
        return "path is not normalised"
    return None


def _lexical(path: PurePosixPath) -> PurePosixPath | None:
    """``path`` with ``.`` and ``..`` folded; None when ``..`` climbs above ``/``."""
    parts: list[str] = []
    for part in path.parts[1:]:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath("/", *parts)


def _link_problem(path: str, target: str) -> str | None:
    """Why a symlink at node ``path`` to ``target`` is refused, or None."""
    if not target:
        return "symlink with an empty target"
    if _CONTROL.search(target):
        return "control characters in the symlink target"
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        return "symlink target is not valid UTF-8"
    base = PurePosixPath(path).parent
    t = PurePosixPath(target)
    if _lexical(t if t.is_absolute() else base / t) is None:
        return f"symlink to {quoted(target)} points outside the root"
    return None


def _link_destination(path: str, target: str) -> str | None:
    base = PurePosixPath(path).parent
    t = PurePosixPath(target)
    resolved = _lexical(t if t.is_absolute() else base / t)
    return str(resolved) if resolved is not None else None


def _inside(path: str, dirs: Iterable[PurePosixPath]) -> bool:
    """True when normalised ``path`` lies inside one of ``dirs`` and is none of them."""
    names = [str(d) for d in dirs]
    return path not in names and any(path.startswith(d.rstrip("/") + "/") for d in names)


# --------------------------------------------------------------------------------------
# The manifest


@attrs.frozen(kw_only=True)
class _Manifest:
    format: int
    kubepki_version: str
    node: str | None
    created: dt.datetime
    cert_dir: str
    kubeconfig_dir: str
    kubelet_pki_dir: str
    manifests_dir: str
    config_file: str | None
    members: tuple[BackupMember, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> bytes:
        doc = {
            "format": self.format,
            "kubepki_version": self.kubepki_version,
            "node": self.node,
            "created": _iso(self.created),
            "cert_dir": self.cert_dir,
            "kubeconfig_dir": self.kubeconfig_dir,
            "kubelet_pki_dir": self.kubelet_pki_dir,
            "manifests_dir": self.manifests_dir,
            "config_file": self.config_file,
            "members": [m.to_dict() for m in self.members],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }
        return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")

    def dirs(self) -> tuple[PurePosixPath, ...]:
        return tuple(PurePosixPath(d) for d in (self.cert_dir, self.kubeconfig_dir,
                                                  self.kubelet_pki_dir, self.manifests_dir))

    def info(self, path: Path, size: int, *, on_node: bool = False) -> BackupInfo:
        return BackupInfo(
            path=path, node=self.node, created=self.created, size=size,
            items=len(self.members), kubepki_version=self.kubepki_version,
            skipped=tuple(f"{p}: {r}" for p, r in self.skipped), on_node=on_node,
        )


class _Invalid(Exception):
    """A manifest that does not follow the schema (internal; mapped to problems)."""

    def __init__(self, message: str, *, unsafe: bool = False) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.unsafe = unsafe


def _field(doc: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise _Invalid(f"{where}: '{key}' is missing")
    value = doc[key]
    # bool is an int subclass; JSON true is never a valid number here.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _Invalid(f"{where}: '{key}' has the wrong type (bool)")
    if not isinstance(value, types):
        raise _Invalid(f"{where}: '{key}' has the wrong type ({type(value).__name__})")
    return value


def _node_dir(value: str, where: str, key: str) -> str:
    problem = _name_problem(value[1:]) if value.startswith("/") else "not an absolute path"
    if value == "/" or problem is not None:
        raise _Invalid(f"{where}: '{key}' {quoted(value)} is not a usable node path"
                       f"{'' if problem is None else f' ({problem})'}", unsafe=True)
    return value


def _parse_manifest(data: bytes) -> _Manifest:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Invalid("manifest is not a JSON object")
    where = "manifest"
    fmt = _field(doc, "format", int, where)
    if fmt != FORMAT:
        newer = " (written by a newer kubepki)" if fmt > FORMAT else ""
        raise _Invalid(f"manifest format {fmt} is not supported (this kubepki reads {FORMAT}){newer}")
    version = _field(doc, "kubepki_version", str, where)
    node = _field(doc, "node", (str, type(None)), where)
    created_text = _field(doc, "created", str, where)
    try:
        created = dt.datetime.fromisoformat(created_text.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(f"manifest: 'created' {quoted(created_text)} is not an ISO 8601 time") from None
    if created.tzinfo is None:
        raise _Invalid(f"manifest: 'created' {quoted(created_text)} has no time zone")
    dirs = {k: _node_dir(_field(doc, k, str, where), where, k)
            for k in ("cert_dir", "kubeconfig_dir", "kubelet_pki_dir", "manifests_dir")}
    config_file = _field(doc, "config_file", (str, type(None)), where)
    if config_file is not None:
        _node_dir(config_file, where, "config_file")
    raw_members = _field(doc, "members", list, where)
    if len(raw_members) > MAX_MEMBERS:
        raise _Invalid(f"manifest lists {len(raw_members)} members (at most {MAX_MEMBERS})",
                       unsafe=True)
    roots = [PurePosixPath(d) for d in dirs.values()]
    members: list[BackupMember] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_members):
        m = _parse_member(raw, f"manifest member #{index}")
        if m.path in seen:
            raise _Invalid(f"manifest lists {m.path} twice", unsafe=True)
        seen.add(m.path)
        if not _inside(m.path, roots) and m.path != config_file:
            raise _Invalid(f"manifest member {m.path} is not inside the directories the backup "
                           "records", unsafe=True)
        members.append(m)
    # Informational only: malformed records are dropped rather than refused.
    raw_skipped = doc.get("skipped", [])
    skipped = tuple(
        (r["path"], r["reason"]) for r in (raw_skipped if isinstance(raw_skipped, list) else [])
        if isinstance(r, dict) and isinstance(r.get("path"), str) and isinstance(r.get("reason"), str)
    )
    return _Manifest(
        format=fmt, kubepki_version=version, node=node, created=created.astimezone(dt.timezone.utc),
        cert_dir=dirs["cert_dir"], kubeconfig_dir=dirs["kubeconfig_dir"],
        kubelet_pki_dir=dirs["kubelet_pki_dir"], manifests_dir=dirs["manifests_dir"],
        config_file=config_file, members=tuple(members), skipped=skipped,
    )


def _parse_member(raw: object, where: str) -> BackupMember:  # noqa: C901, PLR0912  -- one check per manifest field, in the manifest's order
    if not isinstance(raw, dict):
        raise _Invalid(f"{where} is not a JSON object")
    path = _field(raw, "path", str, where)
    problem = _name_problem(path[1:]) if path.startswith("/") else "not an absolute path"
    if problem is not None:
        raise _Invalid(f"{where}: path {quoted(path)}: {problem}", unsafe=True)
    where = f"manifest member {path}"
    kind_of = _field(raw, "type", str, where)
    if kind_of not in (_FILE, _SYMLINK):
        raise _Invalid(f"{where}: type {quoted(kind_of)} is not 'file' or 'symlink'", unsafe=True)
    size = _field(raw, "size", int, where)
    if not 0 <= size <= MAX_MEMBER_SIZE:
        raise _Invalid(f"{where}: size {size} is out of bounds (0 to {MAX_MEMBER_SIZE})",
                       unsafe=True)
    sha = _field(raw, "sha256", (str, type(None)), where)
    if kind_of == _FILE and (sha is None or not _SHA_RE.match(sha)):
        raise _Invalid(f"{where}: 'sha256' is not a hex SHA-256")
    mode_text = _field(raw, "mode", str, where)
    if not _MODE_RE.match(mode_text):
        raise _Invalid(f"{where}: mode {quoted(mode_text)} is not an octal mode")
    mode = int(mode_text, 8)
    if mode & ~0o777:
        raise _Invalid(f"{where}: mode {mode_text} has set-user-ID, set-group-ID or sticky bits",
                       unsafe=True)
    uid = _field(raw, "uid", int, where)
    gid = _field(raw, "gid", int, where)
    if not (0 <= uid < 1 << 32 and 0 <= gid < 1 << 32):
        raise _Invalid(f"{where}: uid/gid out of range")
    mtime = _field(raw, "mtime", (int, float), where)
    if not math.isfinite(mtime) or not 0 <= mtime < 1 << 40:
        raise _Invalid(f"{where}: mtime {quoted(mtime)} is out of range")
    kind = _field(raw, "kind", str, where)
    catalog_name = _field(raw, "catalog_name", (str, type(None)), where)
    target = raw.get("link_target")
    if kind_of == _SYMLINK:
        if not isinstance(target, str):
            raise _Invalid(f"{where}: a symlink needs a string 'link_target'")
        link_problem = _link_problem(path, target)
        if link_problem is not None:
            raise _Invalid(f"{where}: {link_problem}", unsafe=True)
    elif target is not None:
        raise _Invalid(f"{where}: a file has no 'link_target'")
    return BackupMember(
        path=path, type=kind_of, size=size, sha256=sha, mode=mode, uid=uid, gid=gid,
        mtime=float(mtime), kind=kind, catalog_name=catalog_name,
        link_target=target if kind_of == _SYMLINK else None,
    )


# --------------------------------------------------------------------------------------
# Reading archives (untrusted input)


@attrs.frozen
class _Problem:
    message: str
    unsafe: bool = False
    #: A certificate beside a key that is not its own (the archive is intact otherwise).
    pair: bool = False


@attrs.define
class _Scan:
    path: Path
    size: int = 0
    sha256: str = ""
    manifest: _Manifest | None = None
    data: dict[str, bytes] = attrs.Factory(dict)
    problems: list[_Problem] = attrs.Factory(list)
    #: The member paths of each certificate/key pair that does not match, with its problem.
    mismatched: list[tuple[frozenset[str], str]] = attrs.Factory(list)

    def add(self, message: str, *, unsafe: bool = False, pair: bool = False) -> None:
        self.problems.append(_Problem(scrub(message), unsafe, pair))

    @property
    def unsafe(self) -> bool:
        return any(p.unsafe for p in self.problems)

    def raise_for_problems(self) -> None:
        """Raise for the first problem; a mismatched pair only stops a restore that writes it."""
        problems = [p for p in self.problems if not p.pair]
        if not problems:
            return
        ordered = sorted(problems, key=lambda p: not p.unsafe)
        first = ordered[0]
        more = len(ordered) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''}; see `kubepki backup verify`)" \
            if more else ""
        cls = UnsafeArchiveError if first.unsafe else BackupError
        raise cls(f"{self.path}: {first.message}{tail}", path=str(self.path))


def _read_raw(scan: _Scan) -> bytes | None:
    limit = _MAX_TAR + (1 << 20)
    try:
        with open_regular(scan.path) as fh:
            raw = fh.read(limit + 1)
    except NotRegularFile as exc:
        scan.add(f"cannot read the archive: {exc.strerror}")
        return None
    except OSError as exc:
        scan.add(f"cannot read the archive: {_reason(exc)}")
        return None
    scan.size = len(raw)
    scan.sha256 = hashlib.sha256(raw).hexdigest()
    if len(raw) > limit:
        scan.add(f"the archive is larger than {_size(limit)}", unsafe=True)
        return None
    return raw


def _gunzip(scan: _Scan, raw: bytes) -> bytes | None:
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") as gz:
            while chunk := gz.read(1 << 20):
                out += chunk
                if len(out) > _MAX_TAR:
                    scan.add(f"decompresses to more than {_size(_MAX_TAR)} "
                             "(decompression bomb?)", unsafe=True)
                    return None
    except EOFError:
        scan.add("truncated: the compressed data ends early")
        return None
    except (gzip.BadGzipFile, zlib.error) as exc:
        scan.add(f"damaged: not a valid gzip stream ({exc})")
        return None
    except OSError as exc:
        scan.add(f"damaged: {exc}")
        return None
    if not raw:
        scan.add("empty file")
        return None
    return bytes(out)


def _members(scan: _Scan, tf: tarfile.TarFile) -> list[tarfile.TarInfo] | None:
    members: list[tarfile.TarInfo] = []
    while True:
        try:
            ti = tf.next()
        # tarfile raises assorted types on malformed headers (ReadError, ValueError,
        # UnicodeError, struct.error...); all of them mean "damaged" here.
        except Exception as exc:
            after = f" after member {quoted(members[-1].name)}" if members else ""
            scan.add(f"damaged tar data{after}: {exc}")
            return None
        if ti is None:
            return members
        members.append(ti)
        if len(members) > MAX_MEMBERS + 1:
            scan.add(f"more than {MAX_MEMBERS} members", unsafe=True)
            return None


def _member_bytes(scan: _Scan, tf: tarfile.TarFile, ti: tarfile.TarInfo) -> bytes | None:
    try:
        fh = tf.extractfile(ti)
        data = fh.read() if fh is not None else None
    except Exception as exc:  # as in _members: any failure is damage
        scan.add(f"member {quoted(ti.name)}: cannot read its data ({exc})")
        return None
    if data is None or len(data) != ti.size:
        scan.add(f"member {quoted(ti.name)}: truncated data")
        return None
    return data


def _scan(path: str | os.PathLike[str], *, keep_data: bool) -> _Scan:
    """Read and check an archive completely; every problem found is recorded, none raised."""
    scan = _Scan(local_path(path, "the archive's path"))
    raw = _read_raw(scan)
    if raw is None:
        return scan
    tar_bytes = _gunzip(scan, raw)
    if tar_bytes is None:
        return scan
    try:
        tf = tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:")  # noqa: SIM115
    except Exception as exc:  # see _members
        scan.add(f"damaged: not a tar archive ({exc})")
        return scan
    with tf:
        members = _members(scan, tf)
        if members is None:
            return scan
        _check_members(scan, tf, members, keep_data=keep_data)
    return scan


def _manifest_of(scan: _Scan, tf: tarfile.TarFile,
                 members: list[tarfile.TarInfo]) -> _Manifest | None:
    """The manifest: the first member, a small regular file of valid JSON."""
    manifest_at = [i for i, ti in enumerate(members) if ti.name == MANIFEST_NAME]
    manifest: _Manifest | None = None
    if not manifest_at:
        scan.add(f"missing manifest: the archive has no {MANIFEST_NAME}")
    elif len(manifest_at) > 1:
        scan.add(f"duplicate member {MANIFEST_NAME!r}", unsafe=True)
    elif manifest_at[0] != 0:
        scan.add(f"{MANIFEST_NAME} is not the first member")
    else:
        ti = members[0]
        if ti.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            scan.add(f"member {MANIFEST_NAME!r} is not a regular file", unsafe=True)
        elif ti.size > _MAX_MANIFEST:
            scan.add(f"member {MANIFEST_NAME!r} is larger than {_size(_MAX_MANIFEST)}", unsafe=True)
        else:
            data = _member_bytes(scan, tf, ti)
            if data is not None:
                try:
                    manifest = _parse_manifest(data)
                except _Invalid as exc:
                    scan.add(exc.message, unsafe=exc.unsafe)
    return manifest


@attrs.define
class _Members:
    """The members seen so far: every name, the regular files and the symlinks."""

    seen: set[str] = attrs.field(factory=set)
    files: dict[str, tarfile.TarInfo] = attrs.field(factory=dict)
    links: dict[str, tarfile.TarInfo] = attrs.field(factory=dict)
    total: int = 0


def _check_members(scan: _Scan, tf: tarfile.TarFile, members: list[tarfile.TarInfo], *,
                   keep_data: bool) -> None:
    # 1. Every member but the manifest, on its own: name, type, size, link target.
    found = _Members()
    for ti in members:
        if ti.name != MANIFEST_NAME and not _admit(scan, found, ti):
            return
    # 2. Nothing may sit under another member (the symlink-then-file attack).
    _check_nesting(scan, found)
    # 3. The manifest, checked after the members so that errors name members first.
    manifest = _manifest_of(scan, tf, members)
    if manifest is None or scan.unsafe:
        return
    scan.manifest = manifest

    # 4. The manifest and the members must match one for one, hashes included.
    listed = {m.member_name: m for m in manifest.members}
    for name in sorted(found.seen - listed.keys()):
        scan.add(f"member {quoted(name)} is not listed in the manifest", unsafe=True)
    if scan.unsafe:
        return
    for name, m in listed.items():
        _check_listed(scan, tf, found, name, m, keep_data=True)
    # 5. Intact is not enough: a backup taken mid-renewal holds a certificate beside another
    # key, with matching hashes. Every pair must belong together.
    if not scan.problems:
        _check_pairs(scan, manifest)
    if not keep_data:
        scan.data.clear()


def _admit(scan: _Scan, found: _Members, ti: tarfile.TarInfo) -> bool:
    """Record member ``ti`` in ``found`` or its problem in ``scan``; False once the members add up to too much."""
    name = ti.name
    shown = f"member {quoted(name)}"
    problem = _name_problem(name)
    if problem is not None:
        scan.add(f"{shown}: {problem}", unsafe=True)
        return True
    if name in found.seen:
        scan.add(f"duplicate {shown}", unsafe=True)
        return True
    found.seen.add(name)
    if ti.issym():
        link_problem = _link_problem("/" + name, ti.linkname)
        if link_problem is not None:
            scan.add(f"{shown}: {link_problem}", unsafe=True)
        else:
            found.links[name] = ti
    elif ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        if ti.size > MAX_MEMBER_SIZE:
            scan.add(f"{shown}: {ti.size} bytes, more than {_size(MAX_MEMBER_SIZE)}", unsafe=True)
            return True
        found.total += ti.size
        if found.total > MAX_TOTAL_SIZE:
            scan.add(f"members add up to more than {_size(MAX_TOTAL_SIZE)}", unsafe=True)
            return False
        found.files[name] = ti
    else:
        scan.add(f"{shown}: {_refused_type(ti)}", unsafe=True)
    return True


def _refused_type(ti: tarfile.TarInfo) -> str:
    """Why a member that is neither a file nor a symlink is refused."""
    if ti.islnk():
        return f"hard link to {quoted(ti.linkname)}"
    if ti.ischr() or ti.isblk():
        return "device file"
    if ti.isfifo():
        return "FIFO"
    what = "a directory" if ti.isdir() else f"type {quoted(ti.type)}"
    return f"{what}; backups hold only files and symlinks"


def _check_nesting(scan: _Scan, found: _Members) -> None:
    for name in sorted(found.seen):
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in found.links:
                scan.add(f"member {quoted(name)} lies under the symlink member {quoted(parent)}", unsafe=True)
            elif parent in found.files:
                scan.add(f"member {quoted(name)} lies under the file member {quoted(parent)}", unsafe=True)


def _check_listed(scan: _Scan, tf: tarfile.TarFile, found: _Members, name: str, m: BackupMember, *,
                  keep_data: bool) -> None:
    """Member ``name`` against its manifest entry ``m``: type, link target, size and SHA-256."""
    shown = f"member {quoted(name)}"
    if name not in found.seen:
        scan.add(f"{shown}: missing from the archive (the manifest lists it)")
    elif m.type == _SYMLINK:
        if name not in found.links:
            scan.add(f"{shown}: the manifest says symlink, the archive holds a file")
        elif found.links[name].linkname != m.link_target:
            scan.add(f"{shown}: symlink target {quoted(found.links[name].linkname)} differs from the "
                     f"manifest's {quoted(m.link_target)}")
    elif name not in found.files:
        scan.add(f"{shown}: the manifest says file, the archive holds a symlink")
    elif found.files[name].size != m.size:
        scan.add(f"{shown}: {found.files[name].size} bytes, the manifest says {m.size}")
    else:
        data = _member_bytes(scan, tf, found.files[name])
        if data is None:
            return
        if hashlib.sha256(data).hexdigest() != m.sha256:
            scan.add(f"{shown}: SHA-256 does not match the manifest (damaged or altered)")
        elif keep_data:
            scan.data[m.path] = data


def _follow(manifest: _Manifest, path: str) -> str:
    """Where the archive's symlink at ``path`` leads inside the archive (a few hops at most)."""
    links = {m.path: m.link_target for m in manifest.members if m.type == _SYMLINK}
    for _hop in range(8):
        target = links.get(path)
        if target is None:
            return path
        dest = _link_destination(path, target)
        if dest is None:
            return path
        path = dest
    return path


def _pairs_of(manifest: _Manifest) -> list[tuple[tuple[str, ...], str, str]]:
    """(the member paths involved, certificate path, key path) of every catalog pair the
    archive holds; a symlink (kubelet-client-current.pem) is involved with its target."""
    dirs = {_catalog.Location.CERT_DIR: manifest.cert_dir,
            _catalog.Location.KUBECONFIG_DIR: manifest.kubeconfig_dir,
            _catalog.Location.KUBELET_PKI_DIR: manifest.kubelet_pki_dir}
    out = []
    for entry in _catalog.CATALOG:
        base = PurePosixPath(dirs[entry.location])
        files = {f.role: _follow(manifest, str(base / f.path)) for f in entry.files}
        involved = (*(str(base / f.path) for f in entry.files), *files.values())
        if _catalog.FileRole.CERT in files and _catalog.FileRole.KEY in files:
            out.append((involved, files[_catalog.FileRole.CERT], files[_catalog.FileRole.KEY]))
        elif _catalog.FileRole.CERT_AND_KEY in files:
            both = files[_catalog.FileRole.CERT_AND_KEY]
            out.append((involved, both, both))
    return out


def _check_pairs(scan: _Scan, manifest: _Manifest) -> None:
    """Every certificate/key pair in the archive (catalog pairs, the kubelet's PEMs, the
    kubeconfigs' embedded credentials) must share its public key."""
    from kubepki.pki import CERT_PARSE_ERRORS, load_certificate, load_private_key, parse_kubeconfig, public_key_der

    unreadable: tuple[type[Exception], ...] = (KubepkiError, *CERT_PARSE_ERRORS)

    def public(cert_pem: bytes, key_pem: bytes) -> tuple[bytes, bytes] | None:
        try:
            cert_key = load_certificate(cert_pem).public_key()
            return public_key_der(cert_key), public_key_der(load_private_key(key_pem))  # type: ignore[arg-type]
        except unreadable:
            return None  # not a pair kubepki can read: the hashes vouch for it being as it was

    checked: list[tuple[tuple[str, ...], str, bytes, bytes]] = []
    for involved, cert_path, key_path in _pairs_of(manifest):
        cert_pem, key_pem = scan.data.get(cert_path), scan.data.get(key_path)
        if cert_pem is not None and key_pem is not None:
            checked.append((involved, f"{cert_path} and {key_path}" if cert_path != key_path else cert_path,
                            cert_pem, key_pem))
    kdir = PurePosixPath(manifest.kubeconfig_dir)
    for m in manifest.members:
        p = PurePosixPath(m.path)
        if m.type != _FILE or p.parent != kdir or p.suffix != ".conf" or m.path not in scan.data:
            continue
        try:
            kc = parse_kubeconfig(scan.data[m.path], path=m.path)
        except KubepkiError:
            continue
        cert, key = kc.client_certificate, kc.client_key
        if cert is not None and key is not None and cert.data is not None and key.data is not None:
            checked.append(((m.path,), f"{m.path} (its embedded client certificate and key)", cert.data,
                            key.data))
    for involved, what, cert_pem, key_pem in checked:
        keys = public(cert_pem, key_pem)
        if keys is not None and keys[0] != keys[1]:
            message = (f"{what}: the certificate does not match the private key (taken during a "
                       "renewal?); restoring it would install a broken pair")
            scan.add(message, pair=True)
            scan.mismatched.append((frozenset(involved), scrub(message)))


def verify_backup(path: str | os.PathLike[str]) -> VerifyReport:
    """Check an archive completely: readable, safe, every member present and intact.

    Never raises for what it finds, an archive that cannot be opened included:
    each problem becomes a line of :attr:`VerifyReport.problems` naming the member
    concerned, and ``unsafe`` tells hostile archives from damaged ones.
    """
    scan = _scan(path, keep_data=False)
    m = scan.manifest
    return VerifyReport(
        path=scan.path,
        ok=not scan.problems,
        problems=tuple(p.message for p in scan.problems),
        unsafe=scan.unsafe,
        info=m.info(scan.path, scan.size) if m is not None else None,
        members=m.members if m is not None else (),
    )


def _load(path: str | os.PathLike[str]) -> _Scan:
    scan = _scan(path, keep_data=True)
    scan.raise_for_problems()
    return scan


# --------------------------------------------------------------------------------------
# Creating archives


@attrs.frozen
class _Found:
    member: BackupMember
    data: bytes | None


class _Collector:
    """Walks the node's kubeadm directories and reads every file to archive."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.fs = node.fs
        self.found: dict[str, _Found] = {}
        self.skipped: list[tuple[str, str]] = []
        self.total = 0
        self.known: dict[str, _catalog.CatalogEntry] = {}
        for entry in _catalog.CATALOG:
            base = node.dir_for(entry.location)
            for f in entry.files:
                self.known.setdefault(str(base / f.path), entry)

    def walk(self, directory: PurePosixPath, kind: str, *, recursive: bool,
             pattern: str | None = None) -> None:
        for name in self._listdir(directory):
            if pattern is not None and not name.endswith(pattern):
                continue
            path = directory / name
            st = self._stat(path)
            if st is not None and st.is_dir and not st.is_symlink:
                if recursive:
                    problem = _name_problem(str(path)[1:])
                    if problem is not None:  # one note for the whole directory, not one per file
                        self.skipped.append((_printable(str(path)), f"directory name cannot be stored "
                                                                    f"safely ({problem}); not backed up"))
                        continue
                    self.walk(path, kind, recursive=True)
                continue
            self.add(path, kind, st)

    def tree(self, directory: PurePosixPath, kind: str) -> None:
        """Walk ``directory`` recursively, unless it is one no kubeadm directory can be: a
        manifest naming ``--client-ca-file=/ca.crt`` makes discovery's cert dir ``/``, and
        walking it would archive the whole root (and fail on its size)."""
        problem = _dir_problem(directory)
        if problem is not None:
            self.skipped.append((_printable(str(directory)), f"directory not backed up: {problem} (name the "
                                                             "node's directories if discovery is wrong)"))
            return
        self.walk(directory, kind, recursive=True)

    def add(self, path: PurePosixPath, kind: str, st: FileStat | None = None) -> None:  # noqa: C901, PLR0912  -- one case per file type met while collecting a backup
        key = str(path)
        if key in self.found:
            return
        problem = _name_problem(key[1:])
        if problem is not None:
            # A stray odd name must not stop a renewal's backup-first; the skipped list shows it.
            self.skipped.append((_printable(key), f"name cannot be stored safely ({problem})"))
            return
        if _TRANSIENT.search(path.name):
            self.skipped.append((key, "kubepki's own transient file (lock, journal, staged or "
                                      "temporary file)"))
            return
        st = st if st is not None else self._stat(path)
        if st is None:
            return  # vanished, or never there
        entry = self.known.get(key)
        kind = entry.kind.value if entry is not None else kind
        name = entry.name if entry is not None else None
        if st.is_symlink:
            target = self._readlink(path)
            if target is None:
                return
            problem = _link_problem(key, target)
            if problem is not None:
                self.skipped.append((key, problem))
                return
            member = BackupMember(path=key, type=_SYMLINK, size=0, sha256=None, mode=0o777,
                                  uid=st.uid, gid=st.gid, mtime=st.mtime, kind=kind,
                                  catalog_name=name, link_target=target)
            self._keep(member, None)
            return
        if not st.is_file:
            self.skipped.append((key, "not a regular file or symlink"))
            return
        if st.size > MAX_MEMBER_SIZE:
            self.skipped.append((key, f"larger than {_size(MAX_MEMBER_SIZE)}"))
            return
        try:
            # read_file opens without blocking and reads only a regular file: a FIFO swapped in
            # after the stat above is skipped, not waited on.
            found = self.fs.read_file(path, limit=MAX_MEMBER_SIZE)
        except NodeError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise BackupError(f"cannot read {key}: {exc.message}", path=key) from None
        if found is None:
            return  # vanished
        now_st, _target, data = found
        if now_st.is_symlink:
            self.skipped.append((key, "replaced by a symlink while being read"))
            return
        if data is None:
            self.skipped.append((key, "not a regular file or symlink" if not now_st.is_file
                                 else f"larger than {_size(MAX_MEMBER_SIZE)}"))
            return
        if len(data) > MAX_MEMBER_SIZE:
            self.skipped.append((key, f"larger than {_size(MAX_MEMBER_SIZE)}"))
            return
        self.total += len(data)
        if self.total > MAX_TOTAL_SIZE:
            raise BackupError(f"the files to back up add up to more than {_size(MAX_TOTAL_SIZE)}; "
                              f"remove what does not belong in {self.node.profile.cert_dir}")
        member = BackupMember(
            path=key, type=_FILE, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
            mode=st.mode & 0o777, uid=st.uid, gid=st.gid, mtime=st.mtime, kind=kind,
            catalog_name=name,
        )
        self._keep(member, data)

    def _keep(self, member: BackupMember, data: bytes | None) -> None:
        if len(self.found) >= MAX_MEMBERS:
            raise BackupError(f"more than {MAX_MEMBERS} files to back up")
        self.found[member.path] = _Found(member, data)

    def _listdir(self, directory: PurePosixPath) -> list[str]:
        try:
            return self.fs.listdir(directory)
        except NodeError as exc:
            shown = _printable(str(directory))
            raise BackupError(f"cannot list {shown}: {_printable(exc.message)}", path=shown) from None

    def _stat(self, path: PurePosixPath) -> FileStat | None:
        try:
            return self.fs.stat(path, follow=False)
        except NodeError as exc:
            shown = _printable(str(path))
            raise BackupError(f"cannot read {shown}: {_printable(exc.message)}", path=shown) from None

    def _readlink(self, path: PurePosixPath) -> str | None:
        try:
            return self.fs.readlink(path)
        except NodeError as exc:
            raise BackupError(f"cannot read {path}: {exc.message}", path=str(path)) from None


def _collect(node: Node, when: dt.datetime) -> tuple[_Manifest, list[_Found]]:
    profile = node.profile
    c = _Collector(node)
    c.tree(profile.cert_dir, "other")
    # The catalog's kubeconfigs, then whatever other *.conf an operator keeps there.
    for entry in _catalog.CATALOG:
        if entry.location is _catalog.Location.KUBECONFIG_DIR:
            for f in entry.files:
                c.add(profile.kubeconfig_dir / f.path, "kubeconfig")
    c.walk(profile.kubeconfig_dir, "kubeconfig", recursive=False, pattern=".conf")
    c.tree(profile.kubelet_pki_dir, "other")
    c.tree(profile.manifests_dir, "manifest")
    config_file: str | None = None
    # A config given with --config lives on the local machine, not on the node.
    if node.config is None and profile.config is not None and profile.config.path:
        config_file = str(PurePosixPath(profile.config.path))
        c.add(PurePosixPath(config_file), "config")
    found = [c.found[k] for k in sorted(c.found)]
    manifest = _Manifest(
        format=FORMAT, kubepki_version=__version__, node=profile.name, created=when,
        cert_dir=str(profile.cert_dir), kubeconfig_dir=str(profile.kubeconfig_dir),
        kubelet_pki_dir=str(profile.kubelet_pki_dir), manifests_dir=str(profile.manifests_dir),
        config_file=config_file, members=tuple(f.member for f in found),
        skipped=tuple(c.skipped),
    )
    return manifest, found


def _tar_bytes(manifest: _Manifest, found: Sequence[_Found], when: dt.datetime) -> bytes:
    buf = io.BytesIO()
    stamp = int(when.timestamp())
    # No file name in the gzip header (it would be the temporary name) and a fixed
    # mtime: the same tree at the same time gives the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=stamp, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
        doc = manifest.to_json()
        ti = tarfile.TarInfo(MANIFEST_NAME)
        ti.size, ti.mode, ti.mtime = len(doc), 0o600, stamp
        tf.addfile(ti, io.BytesIO(doc))
        for f in found:
            m = f.member
            ti = tarfile.TarInfo(m.member_name)
            ti.mode, ti.uid, ti.gid, ti.mtime = m.mode, m.uid, m.gid, int(m.mtime)
            if m.type == _SYMLINK:
                ti.type, ti.linkname = tarfile.SYMTYPE, m.link_target or ""
                tf.addfile(ti)
            else:
                assert f.data is not None  # noqa: S101 - files always carry data
                ti.size = len(f.data)
                tf.addfile(ti, io.BytesIO(f.data))
    return buf.getvalue()


def _check_dest(node: Node, dest: Path) -> None:
    """Refuse a destination inside a directory that is itself backed up or watched."""
    if not isinstance(node.fs, LocalPaths):
        return
    try:
        real = dest.resolve()
    except OSError:
        return
    p = node.profile
    for what, d in (("cert dir", p.cert_dir), ("kubelet PKI dir", p.kubelet_pki_dir),
                    ("static pod manifests dir", p.manifests_dir)):
        try:
            host = node.fs.host_path(d).resolve()
        except (KubepkiError, OSError):
            continue
        if real == host or host in real.parents:
            raise ConfigError(f"refusing to write backups into the node's {what} {d}: they "
                              "would be backed up again (or read by the kubelet)", path=str(dest))


def _write_error(exc: OSError, dest: Path) -> BackupError:
    return BackupError(f"cannot write a backup to {dest}: {_reason(exc)}", path=str(dest))


def _publish(tmp: Path, dest: Path, name: str) -> Path:
    """Give ``tmp`` its final name without ever replacing an existing file."""
    stem = name[: -len(_SUFFIX)]
    for n in range(1000):
        final = dest / (name if n == 0 else f"{stem}-{n}{_SUFFIX}")
        try:
            rename_noreplace(tmp, final)  # no race with another writer
        except FileExistsError:
            continue
        return final
    raise BackupError(f"too many backups named {name} in {dest}", path=str(dest))


def _private_dirs(dest: Path) -> None:
    """Create ``dest`` and each missing parent 0700, whatever the umask (``mkdir -p`` would
    give the parents ``0777 & ~umask``: 0777 under umask 000)."""
    missing: list[Path] = []
    d = dest
    while not d.exists() and not d.is_symlink() and d != d.parent:
        missing.append(d)
        d = d.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # another writer made it: its mode is its own
        os.chmod(directory, 0o700)
    if not dest.is_dir():  # mkdir(2)'s words for a destination that is a file
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dest))


# Temporary archives are flock(2)ed by their writer from creation to close, so a temporary
# that can be locked belongs to a writer that died (the kernel dropped its lock). An empty one
# may be a writer between its open and its flock: it holds no keys and waits for its age.
_STALE_EMPTY_AGE = 120.0


def _stale_temporaries(directory: Path, *, remove: bool) -> list[Path]:
    """The temporary archives in ``directory`` left by killed backups (removed with ``remove``)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    out = []
    for name in names:
        if not _TMP_RE.match(name):
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                continue
            if st.st_size == 0 and dt.datetime.now().timestamp() - st.st_mtime < _STALE_EMPTY_AGE:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            on_disk = os.lstat(path)
            if (on_disk.st_dev, on_disk.st_ino) != (st.st_dev, st.st_ino):
                continue
            if remove:
                os.unlink(path)  # while holding the lock
            out.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    if out and remove:
        fsync_dir(directory)
    return out


def _write_temporary(tmp: Path, data: bytes) -> int:
    """Create ``tmp`` 0600 (keys inside: never readable by others), flock it, write and fsync it;
    returns the descriptor, still locked (see :func:`_stale_temporaries`)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.fchmod(fd, 0o600)  # the umask may have narrowed it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        os.close(fd)
        raise
    return fd


def _write_archive(dest: Path, name: str, data: bytes) -> Path:
    try:
        _private_dirs(dest)
    except OSError as exc:
        raise _write_error(exc, dest) from None
    _stale_temporaries(dest, remove=True)
    tmp = dest / f".{name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = _write_temporary(tmp, data)
    except OSError as exc:
        raise _write_error(exc, dest) from None
    try:
        checkpoint("archive written")
        final = _publish(tmp, dest, name)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(exc, dest) from None
        raise
    finally:
        os.close(fd)
    fsync_dir(dest)
    return final


def _check_dest_on_node(node: Node, dest: PurePosixPath) -> None:
    """:func:`_check_dest` for a destination on the node, compared as node paths."""
    try:
        real = node.fs.resolve(dest)
    except KubepkiError:
        return
    p = node.profile
    for what, d in (("cert dir", p.cert_dir), ("kubelet PKI dir", p.kubelet_pki_dir),
                    ("static pod manifests dir", p.manifests_dir)):
        try:
            resolved = node.fs.resolve(d)
        except KubepkiError:
            continue
        if real == resolved or resolved in real.parents:
            raise ConfigError(f"refusing to write backups into the node's {what} {d}: they "
                              "would be backed up again (or read by the kubelet)", path=str(dest))


def _stale_on_node(fs: NodeFS, dest: PurePosixPath, name: str) -> None:
    """Remove the temporary archives a killed backup of this node left in ``dest`` on the node.

    The caller holds the node's lock, and only holders of it write this node's backups on the
    node, so every temporary named for this node belongs to a writer that is gone.
    """
    ours = _NAME_RE.match(name)
    assert ours is not None  # noqa: S101 - archive_name's names match
    with contextlib.suppress(NodeError):
        for entry in fs.listdir(dest):
            m = _TMP_RE.match(entry)
            final = _NAME_RE.match(m.group("name")) if m else None
            if final is not None and final.group("node") == ours.group("node"):
                fs.unlink(dest / entry)


def _write_archive_on_node(fs: NodeFS, dest: PurePosixPath, name: str, data: bytes) -> PurePosixPath:
    """:func:`_write_archive` through the node's filesystem: 0600 from the start, never replacing."""
    def error(exc: NodeError) -> BackupError:
        return BackupError(f"cannot write a backup to {dest} on {fs.describe()}: {exc.message}",
                           path=str(dest))

    try:
        makedirs(fs, dest, mode_for=lambda _d: 0o700)
    except NodeError as exc:
        raise error(exc) from None
    _stale_on_node(fs, dest, name)
    tmp = dest / f".{name}.{secrets.token_hex(6)}.tmp"
    stem = name[: -len(_SUFFIX)]
    try:
        fs.write_new(tmp, data, mode=0o600)  # private keys inside: never readable by others
        checkpoint("archive written")
        for n in range(1000):
            final = dest / (name if n == 0 else f"{stem}-{n}{_SUFFIX}")
            try:
                fs.rename(tmp, final, replace=False)
            except NodeError as exc:
                if exc.errno == errno.EEXIST or fs.stat(final, follow=False) is not None:
                    continue
                raise
            fs.fsync_dir(dest)
            return final
    except NodeError as exc:
        with contextlib.suppress(NodeError):
            fs.unlink(tmp)
        raise error(exc) from None
    with contextlib.suppress(NodeError):
        fs.unlink(tmp)
    raise BackupError(f"too many backups named {name} in {dest}", path=str(dest))


def backup(node: Node | str | os.PathLike[str], dest: str | os.PathLike[str], *,
           now: dt.datetime | None = None, on_node: bool = False, lock_held: bool = False,
           lock_wait: float = 0.0) -> BackupInfo:
    """Write one archive of everything kubepki knows on ``node`` into directory ``dest``.

    ``node`` is a :class:`~kubepki.Node` or a root path; ``dest`` is created (0700)
    when missing; ``now`` (tz-aware, default the current time) is the time recorded
    and put in the name. The archive is created 0600 through a fsynced temporary
    file and appears under its final name only when complete; an existing archive
    is never replaced (a ``-1``, ``-2``... suffix is added).

    With ``on_node``, ``dest`` is a directory on the node (a node path, under the
    node's root) and the archive is written through the node's filesystem: a
    node reached over SSH keeps its private keys on the node, and nothing is
    written on the machine kubepki runs on. The result's ``on_node`` says so;
    verify or restore such an archive on the node itself.

    The backup holds the node's lock (:func:`~kubepki.node.node_lock`, waiting up
    to ``lock_wait`` seconds), so it never reads a pair half-way through a
    renewal or a restore; an operation that holds the lock already (a renewal's
    backup first) says so with ``lock_held``. Under the lock it first finishes a
    restore that was interrupted (see :func:`resume_restore`), and it refuses a
    tree whose renewal was interrupted: its certificates and keys may not match.
    Stale temporary archives of killed backups in ``dest`` are removed.

    Raises :class:`~kubepki.BackupError` when there is nothing to back up, a
    renewal was interrupted, or the archive cannot be written (the message says
    why: no space left on device, permission denied...),
    :class:`~kubepki.LockError` when another kubepki writes to the node,
    :class:`~kubepki.ConfigError` for a destination inside a backed-up directory
    and :class:`~kubepki.NodeError` for an unreadable root.
    """
    n = Node.coerce(node)
    when = _utc(now)
    where = local_path(dest, "dest")
    n.check_root()
    with _held(n, lock_held=lock_held, wait=lock_wait):
        _settle_restore(n)
        journal = renewal_journal_path(n)
        try:
            pending = n.fs.stat(journal, follow=False) is not None
        except NodeError as exc:
            raise BackupError(f"cannot look for the renewal journal {journal}: {exc.message}",
                              path=str(journal)) from None
        if pending:
            raise BackupError(
                f"no backup taken: a renewal of this node was interrupted (its journal {journal} is "
                "still there), so a certificate and its key may not match on disk; finish it first "
                "(kubepki renew --resume) or restore the backup taken before it", path=str(journal))
        if on_node:
            return _backup_on_node(n, PurePosixPath(where), when)
        return _backup(n, where, when, allow_empty=False)


def _held(node: Node, *, lock_held: bool, wait: float) -> contextlib.AbstractContextManager[None]:
    """The node's lock, unless the caller holds it already.

    A root without a kubeconfig dir holds nothing kubepki writes but a restore onto a wiped
    node, which creates the dir when it takes the lock; locking would create that dir in a
    root given by mistake, so such a root is read unlocked.
    """
    if lock_held:
        return contextlib.nullcontext()
    try:
        st = node.fs.stat(node.profile.kubeconfig_dir)
    except NodeError:
        st = None
    if st is None or not st.is_dir:
        return contextlib.nullcontext()
    return node_lock(node, wait=wait)


def _collect_some(node: Node, when: dt.datetime, *, allow_empty: bool) -> tuple[_Manifest, list[_Found]]:
    node.check_root()
    manifest, found = _collect(node, when)
    if not found and not allow_empty:
        p = node.profile
        raise BackupError(f"nothing to back up on {node.fs.describe()}: no files in {p.cert_dir}, "
                          f"{p.kubeconfig_dir}, {p.kubelet_pki_dir} or {p.manifests_dir} "
                          "(is the root right?)")
    return manifest, found


def _backup(node: Node, dest: Path, when: dt.datetime, *, allow_empty: bool) -> BackupInfo:
    manifest, found = _collect_some(node, when, allow_empty=allow_empty)
    _check_dest(node, dest)
    data = _tar_bytes(manifest, found, when)
    final = _write_archive(dest, archive_name(manifest.node, when), data)
    return manifest.info(final, len(data))


def _backup_on_node(node: Node, dest: PurePosixPath, when: dt.datetime) -> BackupInfo:
    if not dest.is_absolute():
        raise ConfigError(f"a backup directory on the node must be an absolute node path: {str(dest)!r}",
                          path=str(dest))
    manifest, found = _collect_some(node, when, allow_empty=False)
    _check_dest_on_node(node, dest)
    data = _tar_bytes(manifest, found, when)
    final = _write_archive_on_node(node.fs, dest, archive_name(manifest.node, when), data)
    return manifest.info(Path(str(final)), len(data), on_node=True)


# --------------------------------------------------------------------------------------
# Listing and retention


def _read_info(path: Path) -> BackupInfo | None:
    """The manifest summary of one archive, decompressing only its beginning."""
    try:
        with open_regular(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            size = os.fstat(raw.fileno()).st_size
            head = gz.read(_MAX_MANIFEST + 64 * 1024)  # bounded: PAX headers included
        with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as tf:
            ti = tf.next()
            if ti is None or ti.name != MANIFEST_NAME or not ti.isreg() or ti.size > _MAX_MANIFEST:
                return None
            fh = tf.extractfile(ti)
            if fh is None:
                return None
            manifest = _parse_manifest(fh.read())
    # Foreign or damaged files are skipped whatever tarfile or gzip raise on them.
    except Exception:
        return None
    return manifest.info(path, size)


def list_backups(directory: str | os.PathLike[str]) -> list[BackupInfo]:
    """The kubepki backups in ``directory``, newest first.

    Only files named like kubepki archives whose manifest reads are listed;
    others (foreign, unreadable, damaged) are skipped. This reads each archive's
    manifest only: use :func:`verify_backup` to check one completely. Raises
    :class:`~kubepki.ConfigError` when ``directory`` is not a readable directory.
    """
    d = local_path(directory, "directory")
    try:
        names = sorted(os.listdir(d))
    except OSError as exc:
        raise ConfigError(f"cannot list backups in {d}: {_reason(exc)}", path=str(d)) from None
    out = []
    for name in names:
        if not _NAME_RE.match(name):
            continue
        path = d / name
        if not path.is_file():
            continue
        info = _read_info(path)
        if info is not None:
            out.append(info)
    out.sort(key=lambda i: (i.created, i.path.name), reverse=True)
    return out


def prune_backups(directory: str | os.PathLike[str], keep: int, *,
                  dry_run: bool = False) -> list[Path]:
    """Remove all but the newest ``keep`` backups of each node in ``directory``.

    Counting per node means a directory shared by several nodes never loses a
    node's last backups to another node's newer ones. Only archives that
    :func:`list_backups` recognises are ever removed, and the temporary archives
    that killed backups left behind (they hold every private key; a temporary
    whose writer is alive is left alone). Returns the removed paths (those that
    would be, with ``dry_run``). ``keep`` must be at least 1.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"keep must be at least 1 (got {keep!r}): pruning never removes "
                          "every backup")
    per_node: dict[str | None, int] = {}
    doomed: list[Path] = []
    for info in list_backups(directory):
        seen = per_node.get(info.node, 0)
        per_node[info.node] = seen + 1
        if seen >= keep:
            doomed.append(info.path)
    stale = _stale_temporaries(local_path(directory, "directory"), remove=not dry_run)
    if not dry_run:
        for path in doomed:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BackupError(f"cannot remove {path}: {_reason(exc)}", path=str(path)) from None
        if doomed:
            fsync_dir(Path(directory))
    return doomed + stale


# --------------------------------------------------------------------------------------
# Restoring


# Where a restore may write. The node's discovered directories are not enough: discovery reads
# the static pod manifests, which a restore writes, so one archive could point the cert dir at
# "/" (--client-ca-file=/ca.crt) for the next to write anywhere. The directories come from the
# operator, kubeadm's config and kubeadm's layout, and never lie in a system directory.
_SYSTEM_DIRS = tuple(PurePosixPath(d) for d in (
    "/bin", "/boot", "/dev", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/sbin",
    "/sys", "/usr", "/etc/apt", "/etc/containerd", "/etc/cron.d", "/etc/cron.daily", "/etc/cron.hourly",
    "/etc/cron.monthly", "/etc/cron.weekly", "/etc/crio", "/etc/default", "/etc/docker", "/etc/init.d",
    "/etc/ld.so.conf.d", "/etc/logrotate.d", "/etc/modprobe.d", "/etc/modules-load.d", "/etc/pam.d",
    "/etc/polkit-1", "/etc/profile.d", "/etc/rc.d", "/etc/security", "/etc/ssh", "/etc/sudoers.d",
    "/etc/sysconfig", "/etc/sysctl.d", "/etc/systemd", "/etc/tmpfiles.d", "/etc/udev", "/etc/update-motd.d",
    "/etc/xdg", "/run/systemd", "/var/lib/containerd", "/var/lib/docker", "/var/lib/etcd", "/var/spool/cron",
))
# Directories that hold a kubeadm directory but must not be one: the kubelet's own (its
# config.yaml and flags decide what it runs), and the roots of /var.
_NOT_THEMSELVES = tuple(PurePosixPath(d) for d in ("/var/lib", "/var/lib/kubelet", "/var/log", "/var/spool"))


def _dir_problem(d: PurePosixPath) -> str | None:
    """Why a restore must not write into ``d``, or None."""
    if len(d.parts) < 3:  # "/", "/etc", "/pki"
        return "too close to the root"
    if d in _NOT_THEMSELVES:
        return f"{d} itself holds more than certificates"
    for system in _SYSTEM_DIRS:
        if d == system or system in d.parents:
            return f"inside the system directory {system}"
    return None


@attrs.frozen
class _Where:
    """The directories a restore may write into, as node paths and as they resolve."""

    dirs: tuple[PurePosixPath, ...]
    real: tuple[PurePosixPath, ...]
    configs: frozenset[str]
    manifests_dir: PurePosixPath
    notes: tuple[str, ...]
    #: The cert dir a restore writes; None when the operator's kubeadm config (not the node's) says.
    cert_dir: PurePosixPath | None = None

    def container(self, path: str) -> int | None:
        """The index of the (innermost) directory ``path`` lies in, lexically."""
        best: int | None = None
        for i, d in enumerate(self.dirs):
            if _inside(path, (d,)) and (best is None or len(d.parts) > len(self.dirs[best].parts)):
                best = i
        return best


def _allowed(node: Node) -> _Where:
    """Where a restore onto ``node`` may write (see :data:`_SYSTEM_DIRS`)."""
    p = node.profile
    configured = p.config.certificates_dir if p.config is not None else None
    wanted = {
        "cert dir": node.cert_dir or PurePosixPath(configured or DEFAULT_DIRS["cert_dir"]),
        "kubeconfig dir": node.kubeconfig_dir or PurePosixPath(DEFAULT_DIRS["kubeconfig_dir"]),
        # The kubelet's --cert-dir is read from its flags, which no restore writes.
        "kubelet PKI dir": node.kubelet_pki_dir or p.kubelet_pki_dir,
        "static pod manifests dir": node.manifests_dir or PurePosixPath(DEFAULT_DIRS["manifests_dir"]),
    }
    notes: list[str] = []
    if p.cert_dir != wanted["cert dir"]:
        notes.append(f"the static pod manifests name the cert dir {p.cert_dir}, kubeadm's config and "
                     f"layout {wanted['cert dir']}: restoring into {wanted['cert dir']} only (name the "
                     "cert dir to restore into another)")
    dirs: list[PurePosixPath] = []
    real: list[PurePosixPath] = []
    for what, d in wanted.items():
        try:
            resolved = node.fs.resolve(d)
        except NodeError as exc:
            notes.append(f"not restoring into the {what} {d}: {exc.message}")
            continue
        problem = _dir_problem(d) or _dir_problem(resolved)
        if problem is not None:
            notes.append(f"not restoring into the {what} {d}"
                         f"{f' (it resolves to {resolved})' if resolved != d else ''}: {problem}")
            continue
        dirs.append(d)
        real.append(resolved)
    return _Where(dirs=tuple(dirs), real=tuple(real), configs=frozenset(CONFIG_CANDIDATES),
                  manifests_dir=wanted["static pod manifests dir"], notes=tuple(notes),
                  cert_dir=wanted["cert dir"] if node.config is None and node.cert_dir is None else None)


def _place_problem(fs: NodeFS, where: _Where, path: str) -> str | None:
    """Why the node path ``path`` is not a place a restore may write, or None.

    The lexical check is not enough: a symlink on the node (left by an earlier restore, say
    ``pki/evil -> /``) would carry a write through it. Every parent is resolved on the node
    and must stay inside the directory the path names.
    """
    index = where.container(path)
    shown = ", ".join(str(d) for d in where.dirs) or "none"
    if index is None and path not in where.configs:
        return f"is not inside the node's kubeadm directories ({shown})"
    parent = PurePosixPath(path).parent
    try:
        real_parent = fs.resolve(parent)
    except NodeError as exc:
        return f"its directory cannot be resolved on the node: {exc.message}"
    if index is None:  # a kubeadm config file: its directory may not be redirected
        if real_parent == parent or any(real_parent == r or r in real_parent.parents for r in where.real):
            return None
        return f"its directory {parent} leads to {real_parent} on the node"
    real_dir = where.real[index]
    if real_parent != real_dir and real_dir not in real_parent.parents:
        return (f"its directory {parent} leads to {real_parent} on the node, outside "
                f"{where.dirs[index]} (a symlink on the node)")
    return None


def _select(manifest: _Manifest, only: Iterable[str] | None) -> tuple[
        tuple[BackupMember, ...], tuple[str, ...] | None]:
    if only is None:
        return manifest.members, None
    if isinstance(only, str):
        only = [only]
    names = tuple(dict.fromkeys(only))
    if not names:
        raise ConfigError("only= names no catalog item")
    for n in names:
        _catalog.get(n)  # UnknownItemError for names the catalog does not know
    by_path = {m.path: m for m in manifest.members}
    chosen = {m.path: m for m in manifest.members if m.catalog_name in names}
    for n in names:
        if not any(m.catalog_name == n for m in chosen.values()):
            raise BackupError(f"the backup holds no file of {n}", name=n)
    # A selected symlink brings the file it points at when the backup holds it
    # (kubelet-client-current.pem -> kubelet-client-<time>.pem).
    for m in list(chosen.values()):
        if m.type == _SYMLINK and m.link_target is not None:
            dest = _link_destination(m.path, m.link_target)
            if dest in by_path:
                chosen.setdefault(dest, by_path[dest])
    return tuple(m for m in manifest.members if m.path in chosen), names


def _read_node_file(node: Node, m: BackupMember) -> bytes | None:
    """A regular file's bytes on the node, never opening anything else (a FIFO would block)."""
    try:
        found = node.fs.read_file(PurePosixPath(m.path), limit=MAX_MEMBER_SIZE)
    except NodeError as exc:
        raise BackupError(f"cannot read {m.path} on the node: {exc.message}", path=m.path) from None
    return found[2] if found is not None else None


def _step(node: Node, m: BackupMember, created: dt.datetime, as_root: bool) -> RestoreStep:  # noqa: C901, PLR0912  -- one case per file type and node state: the restore table of docs/backup.md
    path = PurePosixPath(m.path)
    create = RestoreStep(
        path=m.path, action=RestoreAction.CREATE, type=m.type, kind=m.kind,
        catalog_name=m.catalog_name, mode=m.mode, uid=m.uid, gid=m.gid, mtime=m.mtime,
        detail="absent", backup_sha256=m.sha256, link_target=m.link_target,
    )
    try:
        st = node.fs.stat(path, follow=False)
    except NodeError as exc:
        raise BackupError(f"cannot read {m.path} on the node: {exc.message}", path=m.path) from None
    if st is None:
        return create
    if st.is_dir and not st.is_symlink:
        raise BackupError(f"{m.path} is a directory on the node, the backup has a {m.type} there; "
                          "move it away first", path=m.path)
    current_sha: str | None = None
    reasons: list[str] = []
    try:
        if st.is_symlink:
            target = node.fs.readlink(path)
            if m.type == _FILE:
                reasons.append("a symlink on the node")
            elif target != m.link_target:
                reasons.append(f"symlink to {target}, the backup's to {m.link_target}")
        elif not st.is_file:
            reasons.append("not a regular file on the node")
        else:
            data = _read_node_file(node, m)
            current_sha = hashlib.sha256(data).hexdigest() if data is not None else None
            if m.type == _SYMLINK:
                reasons.append("a file on the node, the backup has a symlink")
            elif current_sha != m.sha256:
                reasons.append("content differs")
    except NodeError as exc:
        raise BackupError(f"cannot read {m.path} on the node: {exc.message}", path=m.path) from None
    content_differs = bool(reasons)
    if m.type == _FILE and not st.is_symlink:
        if st.mode != m.mode:
            reasons.append(f"mode {st.mode:04o}, the backup's {m.mode:04o}")
        if as_root and (st.uid, st.gid) != (m.uid, m.gid):
            reasons.append(f"owner {st.uid}:{st.gid}, the backup's {m.uid}:{m.gid}")
    if not reasons:
        return attrs.evolve(create, action=RestoreAction.UNCHANGED, detail="identical",
                            current_sha256=current_sha)
    # Modified after the backup: newer than the backup, or not the mtime it
    # recorded (a clock set wrong when the backup was taken cannot hide a change).
    changed = content_differs and (st.mtime > created.timestamp()
                                   or abs(st.mtime - m.mtime) > 1e-3)
    return attrs.evolve(create, action=RestoreAction.REPLACE, detail="; ".join(reasons),
                        changed_since_backup=changed, current_sha256=current_sha)


def _ceiling(node: Node, where: _Where, m: BackupMember, data: bytes | None) -> int:
    """The loosest mode kubeadm gives the file at ``m.path``: the catalog's, 0600 for what
    holds secrets (manifests, kubeconfigs, kubeadm configs, any private key), else 0644."""
    for entry in _catalog.CATALOG:
        base = node.dir_for(entry.location)
        for f in entry.files:
            if str(base / f.path) == m.path:
                return f.mode
    p = PurePosixPath(m.path)
    secret = (_inside(m.path, (where.manifests_dir,)) or m.path in where.configs
              or (p.suffix == ".conf" and p.parent == (node.kubeconfig_dir or
                                                       PurePosixPath(DEFAULT_DIRS["kubeconfig_dir"])))
              or (data is not None and b"PRIVATE KEY" in data))
    return 0o600 if secret else 0o644


def _owner_of_place(fs: NodeFS, path: PurePosixPath) -> tuple[int, int] | None:
    """The owner of the file at ``path``, else of its nearest existing directory."""
    for p in (path, *path.parents):
        with contextlib.suppress(NodeError):
            st = fs.stat(p, follow=p != path)
            if st is not None:
                return st.uid, st.gid
    return None


def _permission_risk(node: Node, where: _Where, m: BackupMember, data: bytes | None,
                     as_root: bool) -> str | None:
    """Why restoring ``m`` would widen access, or None: a mode with bits neither kubeadm's mode
    nor the node's file has, an owner other than root or the file's (its directory's) current one."""
    out = []
    if m.type == _FILE:
        ceiling = _ceiling(node, where, m, data)
        try:
            now = node.fs.stat(PurePosixPath(m.path), follow=False)
        except NodeError:
            now = None
        # bits the file has now are no widening: a node kept 0640 by its operator restores as it is
        allowed = ceiling | (now.mode if now is not None and now.is_file and not now.is_symlink else 0)
        if m.mode & ~allowed:
            also = f" and the node's {now.mode:04o}" if allowed != ceiling and now is not None else ""
            out.append(f"mode {m.mode:04o} is looser than kubeadm's {ceiling:04o}{also}")
    if as_root:
        current = _owner_of_place(node.fs, PurePosixPath(m.path))
        uids = {0} | ({current[0]} if current else set())
        gids = {0} | ({current[1]} if current else set())
        if m.uid not in uids or m.gid not in gids:
            known = f"{current[0]}:{current[1]}" if current else "0:0"
            out.append(f"owner {m.uid}:{m.gid} is neither root nor the node's {known}")
    moved = _moves_cert_dir(where, m, data)
    if moved is not None:
        out.append(moved)
    return "; ".join(out) or None


def _moves_cert_dir(where: _Where, m: BackupMember, data: bytes | None) -> str | None:
    """Why restoring the kubeadm config ``m`` changes where later restores write, or None.

    The node's kubeadm config names the cert dir a restore may write (see :func:`_allowed`), and
    an archive can hold that config: restoring one with another ``certificatesDir`` moves it for
    every later archive, so it is accepted explicitly, as a widened mode is.
    """
    if where.cert_dir is None or data is None or m.path not in where.configs:
        return None
    from kubepki.node import parse_kubeadm_config

    try:
        wanted = parse_kubeadm_config(data, path=m.path).certificates_dir
    except KubepkiError:
        return None
    if wanted and PurePosixPath(wanted) != where.cert_dir:
        return (f"it sets certificatesDir {quoted(wanted)} (the cert dir here is {where.cert_dir}): later "
                "restores would write there")
    return None


def _symlink_problem(fs: NodeFS, where: _Where, m: BackupMember, members: Iterable[str]) -> str | None:
    """Why the symlink ``m`` must not be created: a link to a directory would let a later
    archive write through it (parents are resolved, but a restore never makes one)."""
    assert m.link_target is not None  # noqa: S101 - symlink members carry a target
    dest = _link_destination(m.path, m.link_target)
    if dest is None:
        return f"symlink to {quoted(m.link_target)} points outside the root"
    under = dest.rstrip("/") + "/"
    for other in (*members, *(str(d) for d in where.dirs)):
        if other.startswith(under) or (other == dest and other not in members):
            return f"symlink to {quoted(m.link_target)}: a directory (it holds {other})"
    try:
        st = fs.stat(PurePosixPath(m.path).parent / m.link_target)
    except NodeError:
        st = None
    if st is not None and st.is_dir:
        return f"symlink to {quoted(m.link_target)}: a directory on the node"
    return None


def _renewal_staged_in(fs: NodeFS, where: _Where) -> list[PurePosixPath]:
    """Every renewal-staged file in the kubeadm directories (for a journal that cannot be read)."""
    out = []
    for d in (*where.dirs, *(d / "etcd" for d in where.dirs)):
        with contextlib.suppress(NodeError):
            out += [d / n for n in fs.listdir(d) if n.startswith(".") and n.endswith(RENEWAL_STAGED_SUFFIX)]
    return out


def _superseded(node: Node, where: _Where, steps: Sequence[RestoreStep],
                only: tuple[str, ...] | None) -> tuple[str, ...]:
    """The interrupted renewal this restore supersedes: its staged files and journal, to
    remove with the restore's own writes (else every later renewal stops on the journal)."""
    fs = node.fs
    journal = renewal_journal_path(node)
    try:
        found = fs.read_file(journal, limit=_MAX_MANIFEST)
    except NodeError as exc:
        raise BackupError(f"cannot read the renewal journal {journal}: {exc.message}", path=str(journal)) from None
    if found is None:
        return ()
    targets: list[str] | None = None
    state: object = None
    try:
        doc = json.loads(found[2] or b"")
        state = doc["state"]
        targets = [f["target"] for g in doc["groups"] for f in g["files"]]
        if not all(isinstance(t, str) and t.startswith("/") and _name_problem(t[1:]) is None for t in targets):
            targets = None
    except (ValueError, KeyError, TypeError, RecursionError):
        targets = None
    if targets is None:
        if only is not None:
            raise BackupError(f"the renewal journal {journal} is damaged and names no files: restore "
                              "the whole backup (without only=) to supersede it", path=str(journal))
        staged = _renewal_staged_in(fs, where)
    else:
        restored = {s.path for s in steps}
        outside = [t for t in targets if where.container(t) is None]
        if outside:
            raise BackupError(f"the renewal journal {journal} names {outside[0]}, outside the "
                              "kubeadm directories; refusing to touch it", path=str(journal))
        missing = [t for t in targets if t not in restored]
        if state != "staging" and missing:
            raise BackupError(
                f"a renewal of this node was interrupted and its journal {journal} names "
                f"{missing[0]}, which this restore does not write"
                f"{' (only= leaves it out)' if only is not None else ' (the backup lacks it)'}: "
                "finish the renewal first (kubepki renew --resume) or restore the whole backup "
                "taken before it", path=missing[0])
        staged = [renewal_staged_path(PurePosixPath(t)) for t in targets]
    with contextlib.suppress(NodeError):
        staged += [journal.parent / n for n in fs.listdir(journal.parent)
                   if n.startswith(f".{RENEWAL_JOURNAL_NAME}.kubepki-") and n.endswith(".tmp")]
    present = []
    for p in dict.fromkeys(staged):
        with contextlib.suppress(NodeError):
            if fs.stat(p, follow=False) is not None:
                present.append(str(p))
    return (*present, str(journal))


def _plan(scan: _Scan, node: Node, only: Iterable[str] | None) -> RestorePlan:
    manifest = scan.manifest
    assert manifest is not None  # noqa: S101 - _load raised otherwise
    node.check_root()
    where = _allowed(node)
    fs = node.fs
    members = manifest.members
    paths = [m.path for m in members]
    for m in members:
        problem = _place_problem(fs, where, m.path)
        if problem is None and m.type == _SYMLINK:
            problem = _symlink_problem(fs, where, m, paths)
        if problem is not None:
            hint = ("; if the node's cert dir differs, name it (the node's cert_dir)"
                    if "kubeadm directories" in problem else "")
            raise UnsafeArchiveError(f"{scan.path}: member {quoted(m.member_name)} {problem}{hint}",
                                     path=m.path)
    chosen, names = _select(manifest, only)
    as_root = fs.can_chown()
    steps = []
    for m in chosen:
        s = _step(node, m, manifest.created, as_root)
        if s.action is not RestoreAction.UNCHANGED:
            broken = [why for paths, why in scan.mismatched if m.path in paths]
            if broken:  # a pair the node already holds as it is (unchanged) is not installed again
                raise BackupError(f"{scan.path}: {broken[0]}; restore other items (only=) or another backup",
                                  path=m.path)
            s = attrs.evolve(s, permission_risk=_permission_risk(node, where, m, scan.data.get(m.path), as_root))
        steps.append(s)
    notes = list(where.notes)
    node_name = node.profile.name
    if manifest.node is not None and node_name is not None and manifest.node != node_name:
        notes.append(f"the backup is of node {manifest.node}, this node is {node_name}")
    if not as_root and any(s.action is not RestoreAction.UNCHANGED for s in steps):
        notes.append("not running as root: owners are not restored")
    supersedes = _superseded(node, where, steps, names)
    if supersedes:
        notes.append(f"a renewal of this node was interrupted: its journal {supersedes[-1]} and "
                     f"{len(supersedes) - 1} staged file(s) are removed with this restore")
    with contextlib.suppress(NodeError):
        if fs.stat(restore_journal_path(node), follow=False) is not None:
            notes.append(f"a restore was interrupted (journal {restore_journal_path(node)}): applying "
                         "finishes it first")
    return RestorePlan(
        archive=scan.path, archive_sha256=scan.sha256, node=node, node_name=node_name,
        backup_node=manifest.node, created=manifest.created, only=names, steps=tuple(steps),
        notes=tuple(notes), supersedes=supersedes,
    )


def plan_restore(path: str | os.PathLike[str], node: Node | str | os.PathLike[str], *,
                 only: Iterable[str] | None = None) -> RestorePlan:
    """What restoring the archive at ``path`` onto ``node`` would do; writes nothing.

    The archive is checked completely first. ``only`` restricts the restore to the
    files of some catalog entries (``["apiserver"]`` means ``apiserver.crt`` and
    ``apiserver.key``). Each step says whether the file would be created, replaced
    or left alone, and flags files modified after the backup was taken and modes
    or owners that would widen access.

    A restore writes only inside the node's kubeadm directories as the operator,
    kubeadm's config and kubeadm's layout name them (never a system directory),
    with every parent resolved on the node; it never creates a symlink to a
    directory. An interrupted renewal is superseded: its journal and staged files
    are removed with the restore, once the restore writes every file it names.

    Raises :class:`~kubepki.UnsafeArchiveError` for a hostile archive (or one whose
    paths lie outside the node's kubeadm directories), :class:`~kubepki.BackupError`
    for a damaged one (a certificate beside another key included) or an interrupted
    renewal it cannot supersede, :class:`~kubepki.UnknownItemError` for an unknown name.
    """
    return _plan(_load(path), Node.coerce(node), only)


def _same(a: RestorePlan, b: RestorePlan) -> bool:
    def key(p: RestorePlan) -> list[tuple[str, str, str | None, bool, str, str | None]]:
        return [(s.path, s.action.value, s.current_sha256, s.changed_since_backup, s.detail, s.permission_risk)
                for s in p.steps]

    return key(a) == key(b) and a.supersedes == b.supersedes


# -- the restore journal -------------------------------------------------------------------
#
# As a renewal's: every file is staged beside its target, the journal says "committing", the
# renames follow, then the superseded renewal's files go, then the journal. Before the commit a
# crash leaves the node as it was (the next writer deletes the staged files); after it, the
# next writer (restore, backup, renewal) checks each staged file against the journal's SHA-256
# and renames what is left, so a certificate and its key differ only until then.

_RESTORE_STAGED_RE = re.compile(r"^\..+\.kubepki-[0-9a-f]{12}\.tmp$")


def _staged_for(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    return p.parent / f".{p.name}.kubepki-{secrets.token_hex(6)}.tmp"


def _write_restore_journal(fs: NodeFS, journal: PurePosixPath, state: str, archive: Path, *,
                           files: Sequence[tuple[RestoreStep, PurePosixPath]], remove: Sequence[str]) -> None:
    doc = {
        "version": 1, "state": state, "pid": os.getpid(), "archive": str(archive),
        "files": [{"target": s.path, "staged": str(staged), "type": s.type, "sha256": s.backup_sha256,
                   "link_target": s.link_target} for s, staged in files],
        "remove": list(remove),
    }
    fs.write_atomic(journal, json.dumps(doc, indent=1).encode() + b"\n", mode=0o600)


def _remove(fs: NodeFS, path: PurePosixPath) -> None:
    with contextlib.suppress(NodeError):
        if fs.unlink(path):
            fs.fsync_dir(path.parent)


def _stage(fs: NodeFS, step: RestoreStep, data: bytes | None, staged: PurePosixPath, as_root: bool) -> None:
    """Write a file's restored content (or symlink) at ``staged``: mode, owner, mtime from the start."""
    try:
        if step.type == _FILE:
            assert data is not None  # noqa: S101 - files always carry data
            fs.write_new(staged, data, mode=step.mode, uid=step.uid if as_root else None,
                         gid=step.gid if as_root else None)
        else:
            fs.symlink(step.link_target or "", staged)
            if as_root:
                fs.chown(staged, step.uid, step.gid, follow=False)
        with contextlib.suppress(NodeError):  # the content and mode are what matters
            fs.set_mtime(staged, step.mtime, follow=False)
    except NodeError as exc:
        raise NodeError(f"{step.path}: {exc.message.removeprefix(f'{exc.path}: ')}", path=step.path) from None


def _matches(fs: NodeFS, path: PurePosixPath, kind: str, sha: str | None, link: str | None) -> bool:
    """Does ``path`` hold what the journal says (the content's SHA-256, or the link target)?"""
    if kind == _SYMLINK:
        return fs.readlink(path) == link
    found = fs.read_file(path, limit=MAX_MEMBER_SIZE)
    if found is None or found[0].is_symlink or found[2] is None:
        return False
    return hashlib.sha256(found[2]).hexdigest() == sha


def _check_written(fs: NodeFS, step: RestoreStep) -> None:
    if not _matches(fs, PurePosixPath(step.path), step.type, step.backup_sha256, step.link_target):
        raise BackupError(f"{step.path} does not read back as restored", path=step.path)


def _ensure_parents(fs: NodeFS, path: PurePosixPath, manifests_dir: PurePosixPath) -> None:
    # kubeadm's modes: directories 0755, the static pod manifests dir 0700.
    try:
        makedirs(fs, path.parent, mode_for=lambda d: 0o700 if d == manifests_dir else 0o755)
    except NodeError as exc:
        raise NodeError(exc.message, path=exc.path) from None


def _commit_restore(node: Node, where: _Where, plan: RestorePlan, scan: _Scan,  # noqa: C901, PLR0912  -- stage, commit, rename, supersede: the journal's order
                    pre: BackupInfo | None) -> list[str]:
    fs = node.fs
    as_root = fs.can_chown()
    todo = plan.changes
    ordered = [s for s in todo if s.type == _FILE] + [s for s in todo if s.type == _SYMLINK]
    files = [(s, _staged_for(s.path)) for s in ordered]
    journal = restore_journal_path(node)
    dirs = sorted({PurePosixPath(s.path).parent for s in ordered} | {journal.parent})
    try:
        for s in ordered:
            problem = _place_problem(fs, where, s.path)
            if problem is not None:
                raise UnsafeArchiveError(f"no file restored: {s.path} {problem}", path=s.path)
            _ensure_parents(fs, PurePosixPath(s.path), where.manifests_dir)
        _ensure_parents(fs, journal, where.manifests_dir)
        _write_restore_journal(fs, journal, "staging", plan.archive, files=files, remove=plan.supersedes)
    except NodeError as exc:
        raise BackupError(f"no file restored: {exc.message}", path=exc.path) from None
    checkpoint("journal-staging")
    # Every file is staged before any is replaced: a full disk, a read-only mount or a
    # permission error then stops the restore with nothing changed, never between a
    # certificate and its key.
    try:
        for s, staged in files:
            if s.type == _SYMLINK:
                problem = _symlink_problem(fs, where, BackupMember(
                    path=s.path, type=_SYMLINK, size=0, sha256=None, mode=s.mode, uid=s.uid, gid=s.gid,
                    mtime=s.mtime, kind=s.kind, catalog_name=s.catalog_name, link_target=s.link_target), ())
                if problem is not None:
                    raise UnsafeArchiveError(f"no file restored: {s.path}: {problem}", path=s.path)
            _stage(fs, s, scan.data.get(s.path), staged, as_root)
            checkpoint(f"staged {s.path}")
        for d in dirs:
            fs.fsync_dir(d)
        _write_restore_journal(fs, journal, "committing", plan.archive, files=files, remove=plan.supersedes)
    except BaseException as exc:
        for _s, staged in files:
            _remove(fs, staged)
        _remove(fs, journal)
        if isinstance(exc, NodeError):
            raise BackupError(f"no file restored: {exc.message}", path=exc.path) from None
        raise
    checkpoint("journal-committing")
    written: list[str] = []
    for s, staged in files:
        try:
            fs.rename(staged, PurePosixPath(s.path))  # atomic: the old file until this instant
            _check_written(fs, s)
        except (NodeError, BackupError) as exc:
            saved = f"; the state before the restore is in {pre.path}" if pre else ""
            raise BackupError(
                f"restore stopped at {s.path}: {exc.message}; {len(written)} of {len(files)} files "
                f"were written; the journal {journal} lets the next kubepki restore, backup or renewal "
                f"finish it{saved}", path=s.path) from None
        written.append(s.path)
        checkpoint(f"restored {s.path}")
    for p in plan.supersedes:
        _remove(fs, PurePosixPath(p))
        checkpoint(f"superseded {p}")
    for d in dirs:
        fs.fsync_dir(d)
    _remove(fs, journal)
    checkpoint("journal-removed")
    return written


@attrs.frozen
class _JournalFile:
    target: PurePosixPath
    staged: PurePosixPath
    type: str
    sha256: str | None
    link_target: str | None


def _parse_restore_journal(node: Node, where: _Where,
                           raw: bytes) -> tuple[str, list[_JournalFile], list[PurePosixPath]]:
    """The journal's state, files and paths to remove; ValueError naming what is wrong."""
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("version") != 1 or doc.get("state") not in ("staging", "committing"):
        raise ValueError("unknown version or state")
    files: list[_JournalFile] = []
    for e in doc["files"]:
        target, staged, kind = e["target"], e["staged"], e["type"]
        if not (isinstance(target, str) and isinstance(staged, str) and target.startswith("/")
                and _name_problem(target[1:]) is None):
            raise ValueError(f"bad target {quoted(target)}")
        t, st = PurePosixPath(target), PurePosixPath(staged)
        if st.parent != t.parent or not _RESTORE_STAGED_RE.match(st.name) or not st.name.startswith(f".{t.name}."):
            raise ValueError(f"staged name {quoted(staged)} is not beside {target}")
        if where.container(target) is None and target not in where.configs:
            raise ValueError(f"{target} is outside the kubeadm directories")
        if kind == _FILE and not (isinstance(e["sha256"], str) and _SHA_RE.match(e["sha256"])):
            raise ValueError(f"no SHA-256 for {target}")
        if kind == _SYMLINK and not isinstance(e["link_target"], str):
            raise ValueError(f"no link target for {target}")
        if kind not in (_FILE, _SYMLINK):
            raise ValueError(f"type {quoted(kind)}")
        files.append(_JournalFile(t, st, kind, e["sha256"] if kind == _FILE else None,
                                  e["link_target"] if kind == _SYMLINK else None))
    renewal = renewal_journal_path(node)
    remove: list[PurePosixPath] = []
    for r in doc["remove"]:
        p = PurePosixPath(r) if isinstance(r, str) else None
        ok = p is not None and (
            p == renewal
            or (p.parent == renewal.parent and p.name.startswith(f".{RENEWAL_JOURNAL_NAME}.kubepki-"))
            or (p.name.startswith(".") and p.name.endswith(RENEWAL_STAGED_SUFFIX)
                and where.container(str(p)) is not None and _name_problem(str(p)[1:]) is None))
        if not ok or p is None:
            raise ValueError(f"refusing to remove {quoted(r)}")
        remove.append(p)
    return doc["state"], files, remove


def _settle_restore(node: Node) -> list[str]:  # noqa: C901, PLR0912  -- the journal's recovery cases, in commit order
    """Finish (after its commit) or undo (before it) an interrupted restore; the caller holds
    the node's lock. Returns the paths it put in place."""
    fs = node.fs
    journal = restore_journal_path(node)
    with contextlib.suppress(NodeError):  # a journal write killed inside write_atomic leaves this
        for name in fs.listdir(journal.parent):
            if name.startswith(f".{RESTORE_JOURNAL_NAME}.kubepki-") and name.endswith(".tmp"):
                _remove(fs, journal.parent / name)
    try:
        found = fs.read_file(journal, limit=_MAX_MANIFEST)
    except NodeError as exc:
        raise BackupError(f"cannot read the restore journal {journal}: {exc.message}", path=str(journal)) from None
    if found is None:
        _sweep(node)
        return []
    try:
        state, files, remove = _parse_restore_journal(node, _allowed(node), found[2] or b"")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BackupError(f"the restore journal {journal} is damaged ({scrub(str(exc))}): restore the same backup "
                          "again after deleting it", path=str(journal)) from None
    present = {f.target: fs.stat(f.staged, follow=False) is not None for f in files}
    if state == "staging":
        for f in files:
            _remove(fs, f.staged)
        _remove(fs, journal)
        _sweep(node)
        return []
    for f in files:  # every file is checked before any is renamed
        where_from = f.staged if present[f.target] else f.target
        if not _matches(fs, where_from, f.type, f.sha256, f.link_target):
            raise BackupError(f"cannot finish the interrupted restore: {where_from} does not hold what "
                              f"the journal {journal} records; restore the backup again", path=str(where_from))
    completed = []
    for f in files:
        if present[f.target]:
            fs.rename(f.staged, f.target)
            completed.append(str(f.target))
            checkpoint(f"resumed {f.target}")
    for p in remove:
        _remove(fs, p)
    for d in sorted({f.target.parent for f in files}):
        fs.fsync_dir(d)
    _remove(fs, journal)
    _sweep(node)
    return completed


def _sweep(node: Node) -> None:
    """Remove the temporaries killed kubepki writers left in the kubeadm directories.

    ``.<name>.kubepki-<12 hex>.tmp`` is only ever a restore's staged file or an atomic
    write's temporary (a key among them); the caller holds the node's lock and any journal
    is settled, so none of them is still needed. A renewal's ``.kubepki-new`` files
    belong to its journal and are left to it.
    """
    fs = node.fs
    where = _allowed(node)
    for d in dict.fromkeys((*where.dirs, *(d / "etcd" for d in where.dirs))):
        with contextlib.suppress(NodeError):
            for name in fs.listdir(d):
                if _RESTORE_STAGED_RE.match(name) and name != RESTORE_JOURNAL_NAME:
                    st = fs.stat(d / name, follow=False)
                    if st is not None and not st.is_dir:
                        _remove(fs, d / name)


def resume_restore(node: Node | str | os.PathLike[str], *, wait: float = 0.0,
                   lock_held: bool = False) -> tuple[str, ...]:
    """Finish a restore that was interrupted (killed, power loss); the paths it put in place.

    Holds the node's lock (unless ``lock_held``: the caller holds it). Files staged
    before the interrupted restore committed are deleted (nothing had been
    replaced); after its commit, each remaining staged file is checked against
    the SHA-256 its journal records and renamed into place, and the renewal it
    superseded is cleared. :func:`apply_restore`, :func:`backup` and renewals do
    this first on their own; empty when no restore was interrupted.
    """
    n = Node.coerce(node)
    n.check_root()
    if not _restore_pending(n):
        return ()  # nothing to do: not even the lock is taken (it would touch the kubeconfig dir)
    with contextlib.nullcontext() if lock_held else node_lock(n, wait=wait):
        return tuple(_settle_restore(n))


def _restore_pending(node: Node) -> bool:
    """True when a restore journal, or a temporary of one, is on the node."""
    journal = restore_journal_path(node)
    try:
        return node.fs.stat(journal, follow=False) is not None or any(
            n.startswith(f".{RESTORE_JOURNAL_NAME}.kubepki-") for n in node.fs.listdir(journal.parent))
    except NodeError:
        return True  # let the settling say what is wrong


def _refuse_unaccepted(plan: RestorePlan, accept_changed: bool, accept_permissions: bool) -> None:
    risks = plan.permission_risks
    changed = [r for r in plan.needs_acceptance if r not in risks]
    reasons = ([] if accept_changed else changed) + ([] if accept_permissions else list(risks))
    if not reasons:
        return
    more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
    which = [flag for flag, wanted in (("accept_changed=True", not accept_changed and changed),
                                       ("accept_permissions=True", not accept_permissions and risks)) if wanted]
    raise BackupError(f"restore refused: {reasons[0]}{more}; review the plan, then accept it "
                      f"({' and '.join(which)})")


def apply_restore(plan: RestorePlan, *, accept_changed: bool = False, accept_permissions: bool = False,
                  take_backup: bool = True, backup_dir: str | os.PathLike[str] | None = None,
                  now: dt.datetime | None = None, lock_wait: float = 0.0) -> RestoreResult:
    """Carry out ``plan``: write each file atomically with its recorded mode and owner.

    Refuses (:class:`~kubepki.BackupError`, nothing written) when the plan flags
    files modified after the backup or a backup of another node, unless
    ``accept_changed``, and modes looser than kubeadm's or owners other than root
    or the node's, unless ``accept_permissions``. Holding the node lock, it
    finishes an interrupted restore, re-reads the archive and the node and
    refuses when either changed since the plan was made; takes a backup of the
    current state into ``backup_dir`` (default: the archive's directory) and
    verifies it, unless ``take_backup`` is False; then journals the restore:
    stages every file and symlink beside its target (so a write that fails
    changes nothing), commits the journal, renames each into place (read back
    after writing), removes the interrupted renewal the plan supersedes and drops
    the journal. A crash after the commit is finished by the next restore,
    backup or renewal (:func:`resume_restore`). Missing directories are created
    (0755, the manifests dir 0700); owners are restored when running as root on
    the node. Every write goes through the node's filesystem (a local root or
    SSH); the archive and ``backup_dir`` are on this machine.
    """
    instance(plan, RestorePlan, "plan", "from plan_restore")
    node = plan.node
    _refuse_unaccepted(plan, accept_changed, accept_permissions)
    when = _utc(now)
    with node_lock(node, wait=lock_wait):
        completed = _settle_restore(node)
        scan = _load(plan.archive)
        if scan.sha256 != plan.archive_sha256:
            raise BackupError(f"{plan.archive} changed since the plan was made; plan again",
                              path=str(plan.archive))
        fresh = _plan(scan, node, plan.only)
        if not _same(plan, fresh):
            first = "; an interrupted restore was finished first" if completed else ""
            raise BackupError(f"the node's files changed since the plan was made{first}; plan again")
        pre: BackupInfo | None = None
        if take_backup and fresh.changes:
            where = Path(backup_dir) if backup_dir is not None else plan.archive.parent
            try:
                pre = _backup(node, where, when, allow_empty=True)
            except BackupError as exc:
                raise BackupError(f"no file restored: the backup of the current state failed "
                                  f"({exc.message}); free space, choose another backup_dir "
                                  "or skip it (take_backup=False)",
                                  path=exc.path) from None
            # A backup that cannot be restored is no backup; a mismatched pair in it is the
            # state being replaced (a killed renewal), recorded as it was.
            damage = [p for p in _scan(pre.path, keep_data=False).problems if not p.pair]
            if damage:
                raise BackupError(f"no file restored: the backup of the current state "
                                  f"{pre.path} does not verify: {damage[0].message}",
                                  path=str(pre.path))
            checkpoint("backup")
        written = (_commit_restore(node, _allowed(node), fresh, scan, pre)
                   if fresh.changes or fresh.supersedes else [])
    return RestoreResult(plan=fresh, written=tuple(written), pre_restore_backup=pre)


@overload
def restore(path: str | os.PathLike[str], node: Node | str | os.PathLike[str], *,
            only: Iterable[str] | None = ..., dry_run: Literal[True] = ...,
            accept_changed: bool = ..., accept_permissions: bool = ..., take_backup: bool = ...,
            backup_dir: str | os.PathLike[str] | None = ...,
            now: dt.datetime | None = ...) -> RestorePlan: ...
@overload
def restore(path: str | os.PathLike[str], node: Node | str | os.PathLike[str], *,
            only: Iterable[str] | None = ..., dry_run: Literal[False],
            accept_changed: bool = ..., accept_permissions: bool = ..., take_backup: bool = ...,
            backup_dir: str | os.PathLike[str] | None = ...,
            now: dt.datetime | None = ...) -> RestoreResult: ...
@overload
def restore(path: str | os.PathLike[str], node: Node | str | os.PathLike[str], *,
            only: Iterable[str] | None = ..., dry_run: bool,
            accept_changed: bool = ..., accept_permissions: bool = ..., take_backup: bool = ...,
            backup_dir: str | os.PathLike[str] | None = ...,
            now: dt.datetime | None = ...) -> RestorePlan | RestoreResult: ...


def restore(path: str | os.PathLike[str], node: Node | str | os.PathLike[str], *,
            only: Iterable[str] | None = None, dry_run: bool = True,
            accept_changed: bool = False, accept_permissions: bool = False, take_backup: bool = True,
            backup_dir: str | os.PathLike[str] | None = None,
            now: dt.datetime | None = None) -> RestorePlan | RestoreResult:
    """Restore the archive at ``path`` onto ``node``; by default only plan it.

    With ``dry_run`` (the default) this is :func:`plan_restore`; otherwise an
    interrupted restore is finished first (:func:`resume_restore`) and the plan
    is applied with :func:`apply_restore` (see there for ``accept_changed``,
    ``accept_permissions``, ``take_backup``, ``backup_dir`` and ``now``) and a :class:`RestoreResult`
    returned.
    """
    if not dry_run:  # an interrupted restore is finished first, so the plan sees the node as it is
        resume_restore(node)
    plan = plan_restore(path, node, only=only)
    if dry_run:
        return plan
    return apply_restore(plan, accept_changed=accept_changed, accept_permissions=accept_permissions,
                         take_backup=take_backup, backup_dir=backup_dir, now=now)


def default_backup_dir(node: Node) -> Path:
    """The local directory of :data:`DEFAULT_BACKUP_DIR` on ``node`` (under its root)."""
    if isinstance(node.fs, LocalPaths):
        return node.fs.host_path(PurePosixPath(DEFAULT_BACKUP_DIR))
    return node.root / DEFAULT_BACKUP_DIR.lstrip("/")
