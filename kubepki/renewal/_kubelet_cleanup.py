"""Removing the dated certificates the kubelet's rotation leaves behind, planned first and backed up.

Each rotation writes ``kubelet-client-<time>.pem`` (``kubelet-server-<time>.pem`` for the
serving certificate) and points ``kubelet-client-current.pem`` at it; the earlier files
stay, each with a private key, for ever (k8s.io/client-go/util/certificate's file
store never deletes them). The plan lists the dated files that no ``-current``
symlink names, with what they hold, for review; applying it takes a backup, holds the
node's lock, re-checks each file and both symlinks, and removes only those files.

>>> import tempfile, kubepki
>>> node = kubepki.testing.build_node(tempfile.mkdtemp(), role="worker")
>>> kubepki.plan_kubelet_cleanup(node.root).files
()
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki._clock import iso, utc as _utc
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki.errors import ConfigError, NodeError, ParseError, RenewalError
from kubepki.node import LocalPaths, Node, node_lock, rotated_pems
from kubepki.pki import load_certificate

__all__ = ["KubeletCleanupFile", "KubeletCleanupPlan", "KubeletCleanupResult", "apply_kubelet_cleanup",
           "plan_kubelet_cleanup"]

_LIMIT = 1 << 20


@attrs.frozen(kw_only=True)
class KubeletCleanupFile:
    """One dated file the plan removes."""

    #: Node path.
    path: str
    sha256: str
    #: NotAfter of the certificate it holds; None when it holds no readable certificate.
    not_after: dt.datetime | None
    #: Why it is safe to remove: no ``-current`` symlink names it.
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": self.path, "sha256": self.sha256,
                "not_after": iso(self.not_after) if self.not_after else None, "reason": self.reason}


@attrs.frozen(kw_only=True)
class KubeletCleanupPlan(Report):
    """The dated kubelet certificates a clean-up would remove, and the ones it keeps."""

    node: Node = attrs.field(repr=False)
    pki_dir: str
    now: dt.datetime
    #: The files to remove, oldest first.
    files: tuple[KubeletCleanupFile, ...]
    #: What each ``-current`` symlink names (link name → target as stored); never removed.
    kept: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The plan as in kubepki's JSON output."""
        return {"pki_dir": self.pki_dir, "now": iso(self.now), "files": [f.to_dict() for f in self.files],
                "kept": [{"link": link, "target": target} for link, target in self.kept],
                "notes": list(self.notes)}

    def rows(self) -> Table:
        """One row per file to remove."""
        rows = [[Cell(f.path), Cell(iso(f.not_after) if f.not_after else "no certificate",
                                    "dim" if f.not_after and f.not_after < self.now else None), Cell(f.reason)]
                for f in self.files]
        return Table(f"kubelet clean-up plan for {self.pki_dir}", ("FILE", "NOT AFTER", "WHY"), rows)

    def blocks(self) -> Sequence[Block]:
        """The table, what is kept, the notes and what applying would do."""
        out: list[Block] = [self.rows()]
        out += [Line([f"kept: {link} -> {target}"]) for link, target in self.kept]
        out += [Line([f"note: {n}"]) for n in self.notes]
        out.append(Line([f"{len(self.files)} file(s) to remove. Nothing has been removed."]))
        return out


@attrs.frozen(kw_only=True)
class KubeletCleanupResult(Report):
    """What applying a clean-up did."""

    removed: tuple[str, ...]
    backup: str | None

    @property
    def outcome(self) -> Outcome:
        """Always ok: a file that changed since the plan stops the clean-up with RenewalError instead."""
        return Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """The result as in kubepki's JSON output."""
        return {"removed": list(self.removed), "backup": self.backup}

    def rows(self) -> Table:
        """One row per removed file."""
        return Table("kubelet clean-up", ("REMOVED",), [[Cell(p)] for p in self.removed])

    def blocks(self) -> Sequence[Block]:
        """The table and where the backup is."""
        return [self.rows(), Line([f"backup: {self.backup}" if self.backup else "no backup taken"])]


def plan_kubelet_cleanup(node: Node | str | os.PathLike[str], *, now: dt.datetime | None = None) -> KubeletCleanupPlan:
    """Plan removing the dated kubelet certificates that no ``-current`` symlink names.

    A ``-current`` file that is not a symlink (the kubelet writes symlinks; something else
    wrote this one) keeps every dated file of its kind: kubepki cannot tell which one is in use
    (see :func:`kubepki.node.rotated_pems`).
    """
    n = Node.coerce(node)
    n.check_root()
    when = _utc(now)
    pki = n.profile.kubelet_pki_dir
    found = rotated_pems(n.fs, pki)
    files = []
    for shown in found.stale:
        path = PurePosixPath(shown)
        data = n.fs.read_bytes(path, limit=_LIMIT)
        try:
            not_after: dt.datetime | None = load_certificate(data, path=shown).not_valid_after_utc
        except ParseError:
            not_after = None
        kind = path.name.split("-")[1]
        files.append(KubeletCleanupFile(path=shown, sha256=hashlib.sha256(data).hexdigest(), not_after=not_after,
                                        reason=f"no {kind}-current symlink names it"))
    return KubeletCleanupPlan(node=n, pki_dir=str(pki), now=when, files=tuple(files), kept=found.kept,
                              notes=found.notes)


def apply_kubelet_cleanup(
    plan: KubeletCleanupPlan,
    *,
    backup_dir: str | os.PathLike[str] | None = None,
    take_backup: bool = True,
    wait: float = 0.0,
    now: dt.datetime | None = None,
    backup_on_node: bool | None = None,
) -> KubeletCleanupResult:
    """Remove ``plan``'s files: back up first, hold the node's lock, and re-check everything.

    Raises :class:`~kubepki.RenewalError`, removing nothing, when a ``-current`` symlink
    points elsewhere than at planning or a planned file changed; :class:`~kubepki.BackupError`
    when the backup fails. ``backup_dir`` as for :func:`kubepki.apply_renewal`.
    """
    if take_backup and backup_dir is None:
        raise ConfigError("backup_dir is required (or pass take_backup=False)")
    node = plan.node
    pki = PurePosixPath(plan.pki_dir)
    with node_lock(node, wait=wait):
        if rotated_pems(node.fs, pki).kept != plan.kept:
            raise RenewalError("a kubelet-*-current.pem symlink changed since the plan was made (the kubelet "
                               "rotated): plan again", path=plan.pki_dir)
        for f in plan.files:
            try:
                data = node.fs.read_bytes(PurePosixPath(f.path), limit=_LIMIT)
            except NodeError as exc:
                raise RenewalError(f"{f.path} changed since the plan was made ({exc.message}): plan again",
                                   path=f.path) from None
            if hashlib.sha256(data).hexdigest() != f.sha256:
                raise RenewalError(f"{f.path} changed since the plan was made: plan again", path=f.path)
        backup_path = None
        if take_backup and plan.files:
            from kubepki.backups import backup

            assert backup_dir is not None  # noqa: S101 - checked above
            # as apply_renewal: a remote node's keys stay on the node unless the caller says otherwise
            on_node = backup_on_node if backup_on_node is not None else not isinstance(node.fs, LocalPaths)
            backup_path = backup(node, backup_dir, now=now, on_node=on_node, lock_held=True).path
        removed = []
        for f in plan.files:
            node.fs.unlink(PurePosixPath(f.path))
            removed.append(f.path)
    return KubeletCleanupResult(removed=tuple(removed), backup=str(backup_path) if backup_path else None)
