"""Fixing what the CIS Kubernetes Benchmark findings name: chmod and chown, planned first, never looser.

The plan takes each file and directory a benchmark file rule failed on (see
:mod:`kubepki.inspection._cis`) and says the mode and owner that make it pass: the
current mode without the bits the rule disallows, so a stricter mode is never
loosened, and the owner the rule names. Applying it holds the node's lock, checks
that every file still has the mode and owner the plan saw, writes an undo record
(JSON, on the node, before anything changes) and then changes exactly those files
through the node's filesystem (local or SSH). :func:`plan_permissions_undo` turns a
record back into a plan that restores the previous modes and owners.

The benchmark's TLS flags are not changed here: kubeadm owns the manifests and the
kubelet's configuration, and the findings say which kubeadm configuration field sets each.

>>> import tempfile, kubepki
>>> from kubepki.permissions import plan_permissions
>>> node = kubepki.testing.build_node(tempfile.mkdtemp())
>>> [c.path for c in plan_permissions(node.root).changes]
['/var/lib/kubelet/config.yaml']
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki._clock import iso, utc as _utc
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki.errors import ConfigError, NodeError, RenewalError
from kubepki.node import Node, makedirs, node_lock

__all__ = ["DEFAULT_UNDO_DIR", "PermissionChange", "PermissionsPlan", "PermissionsResult", "apply_permissions",
           "plan_permissions", "plan_permissions_undo"]

#: Where the undo record goes on the node unless told otherwise (beside kubepki's backups).
DEFAULT_UNDO_DIR = "/var/backups/kubepki"
_RECORD_KIND = "kubepki-permissions-undo"
_LIMIT = 1 << 20


@attrs.frozen(kw_only=True)
class PermissionChange:
    """One file or directory: its mode and owner now, and after the change."""

    #: Node path the finding names.
    path: str
    #: The file it leads to (symlinks resolved inside the root): what is changed.
    target: str
    #: The benchmark ids that asked for it.
    cis: tuple[str, ...]
    mode_before: int
    mode_after: int
    uid_before: int
    gid_before: int
    uid_after: int
    gid_after: int

    @property
    def commands(self) -> tuple[str, ...]:
        """The shell commands that make the change (what a person would run on the node)."""
        out = []
        if (self.uid_after, self.gid_after) != (self.uid_before, self.gid_before):
            out.append(f"chown {self.uid_after}:{self.gid_after} {self.target}")
        if self.mode_after != self.mode_before:
            out.append(f"chmod {format(self.mode_after, '04o')} {self.target}")
        return tuple(out)

    def reversed(self) -> PermissionChange:
        """The change that puts back the mode and owner it found."""
        return attrs.evolve(self, mode_before=self.mode_after, mode_after=self.mode_before,
                            uid_before=self.uid_after, gid_before=self.gid_after,
                            uid_after=self.uid_before, gid_after=self.gid_before)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (modes as octal strings)."""
        return {"path": self.path, "target": self.target, "cis": list(self.cis),
                "mode_before": format(self.mode_before, "04o"), "mode_after": format(self.mode_after, "04o"),
                "owner_before": f"{self.uid_before}:{self.gid_before}",
                "owner_after": f"{self.uid_after}:{self.gid_after}", "commands": list(self.commands)}

    @classmethod
    def from_dict(cls, data: Any) -> PermissionChange:
        """A change from :meth:`to_dict`'s form; :class:`~kubepki.ConfigError` when it is not one."""
        try:
            ub, gb = (int(x) for x in str(data["owner_before"]).split(":"))
            ua, ga = (int(x) for x in str(data["owner_after"]).split(":"))
            change = cls(path=str(data["path"]), target=str(data["target"]),
                         cis=tuple(str(c) for c in data["cis"]),
                         mode_before=int(str(data["mode_before"]), 8), mode_after=int(str(data["mode_after"]), 8),
                         uid_before=ub, gid_before=gb, uid_after=ua, gid_after=ga)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a permissions undo record entry: {exc}") from None
        if not change.target.startswith("/") or not all(0 <= m <= 0o7777 for m in (change.mode_before,
                                                                                 change.mode_after)):
            raise ConfigError(f"not a permissions undo record entry: {change.target!r}")
        return change


@attrs.frozen(kw_only=True)
class PermissionsPlan(Report):
    """The chmod and chown a fix (or an undo) would make, for review."""

    node: Node = attrs.field(repr=False)
    changes: tuple[PermissionChange, ...]
    #: True for a plan from an undo record: it puts modes back, so it may loosen them.
    restore: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The plan as in kubepki's JSON output."""
        return {"restore": self.restore, "changes": [c.to_dict() for c in self.changes], "notes": list(self.notes)}

    def rows(self) -> Table:
        """One row per file."""
        title = "permissions undo plan" if self.restore else "permissions fix plan"
        return Table(title, ("CIS", "FILE", "NOW", "AFTER", "COMMAND"),
                     [[Cell(", ".join(c.cis)), Cell(c.target),
                       Cell(f"{format(c.mode_before, '04o')} {c.uid_before}:{c.gid_before}"),
                       Cell(f"{format(c.mode_after, '04o')} {c.uid_after}:{c.gid_after}", "ok"),
                       Cell("; ".join(c.commands))] for c in self.changes])

    def blocks(self) -> Sequence[Block]:
        """The table, the notes and what applying would do."""
        out: list[Block] = [self.rows()]
        out += [Line([f"note: {n}"]) for n in self.notes]
        out.append(Line([f"{len(self.changes)} change(s). Nothing has been changed (--apply changes them)."]))
        return out


@attrs.frozen(kw_only=True)
class PermissionsResult(Report):
    """What applying a plan changed, and where the record that undoes it is."""

    changes: tuple[PermissionChange, ...]
    #: Node path of the undo record (None when nothing changed).
    undo_record: str | None

    @property
    def outcome(self) -> Outcome:
        """Always ok: a file changed since the plan stops the fix with RenewalError instead."""
        return Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """The result as in kubepki's JSON output."""
        return {"changes": [c.to_dict() for c in self.changes], "undo_record": self.undo_record}

    def rows(self) -> Table:
        """One row per changed file."""
        return Table("permissions changed", ("FILE", "BEFORE", "AFTER"),
                     [[Cell(c.target), Cell(f"{format(c.mode_before, '04o')} {c.uid_before}:{c.gid_before}"),
                       Cell(f"{format(c.mode_after, '04o')} {c.uid_after}:{c.gid_after}")] for c in self.changes])

    def blocks(self) -> Sequence[Block]:
        """The table and how to undo it."""
        how = (f"undo record: {self.undo_record} (`kubepki permissions undo {self.undo_record} --apply` puts "
               "the previous modes and owners back)" if self.undo_record else "nothing changed")
        return [self.rows(), Line([how])]


def plan_permissions(node: Node | str | os.PathLike[str], *, now: dt.datetime | None = None) -> PermissionsPlan:
    """Plan the chmod and chown that make ``node``'s benchmark file rules pass (see the module docstring).

    A file several rules name gets the bits none of them allows removed; an owner two rules
    disagree on is left alone and said in ``notes``. A rule whose owner does not exist on the
    node (``etcd`` for 1.1.12 on a kubeadm node, whose etcd runs as root) changes nothing.
    """
    from kubepki.inspection import inspect

    n = Node.coerce(node)
    report = inspect(n, now=now).cis
    assert report is not None  # noqa: S101 - inspect always evaluates the benchmark
    wanted: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for result in report.results:
        for f in result.files:
            if f.ok or not f.exists or f.mode is None or f.uid is None or f.gid is None:
                continue
            entry = wanted.setdefault(f.path, {"mode": f.mode, "uid": f.uid, "gid": f.gid, "ids": [],
                                               "to_mode": f.mode, "owner": None})
            entry["ids"].append(result.id)
            if f.fix_mode is not None:
                entry["to_mode"] &= f.fix_mode
            if f.fix_owner is not None:
                if entry["owner"] not in (None, f.fix_owner):
                    notes.append(f"{f.path}: the benchmark's rules ask for different owners; its owner is left")
                    entry["owner"] = "conflict"
                elif entry["owner"] is None:
                    entry["owner"] = f.fix_owner
    changes = []
    for path, e in sorted(wanted.items()):
        owner = e["owner"] if isinstance(e["owner"], tuple) else (e["uid"], e["gid"])
        if e["to_mode"] == e["mode"] and owner == (e["uid"], e["gid"]):
            continue
        target = str(n.fs.resolve(PurePosixPath(path)))
        changes.append(PermissionChange(path=path, target=target, cis=tuple(dict.fromkeys(e["ids"])),
                                        mode_before=e["mode"], mode_after=e["to_mode"], uid_before=e["uid"],
                                        gid_before=e["gid"], uid_after=owner[0], gid_after=owner[1]))
    if changes and not n.fs.can_chown() and any(c.commands and c.commands[0].startswith("chown") for c in changes):
        notes.append("kubepki is not root on the node: the chown changes will fail")
    return PermissionsPlan(node=n, changes=tuple(changes), notes=tuple(notes))


def plan_permissions_undo(node: Node | str | os.PathLike[str], record: str | PurePosixPath) -> PermissionsPlan:
    """The plan that puts back what the undo record (a node path) says a fix changed.

    Raises :class:`~kubepki.ConfigError` when the record is not one kubepki wrote, and
    :class:`~kubepki.NodeError` when it cannot be read.
    """
    n = Node.coerce(node)
    path = PurePosixPath(record)
    found = n.fs.read_file(path, limit=_LIMIT)
    if found is None or found[2] is None:
        raise NodeError(f"{path}: no undo record there (or not a regular file)", path=str(path))
    try:
        doc = json.loads(found[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a permissions undo record: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != _RECORD_KIND or not isinstance(doc.get("changes"), list):
        raise ConfigError(f"{path} is not a permissions undo record")
    changes = tuple(PermissionChange.from_dict(c).reversed() for c in doc["changes"])
    return PermissionsPlan(node=n, changes=changes, restore=True,
                           notes=(f"from {path}, written {doc.get('written', 'at an unknown time')}",))


def apply_permissions(
    plan: PermissionsPlan,
    *,
    undo_record: str | PurePosixPath | None = None,
    wait: float = 0.0,
    now: dt.datetime | None = None,
) -> PermissionsResult:
    """Make ``plan``'s changes: hold the node's lock, re-check every file, write the undo record, then change.

    ``undo_record`` is the node path of the record (default: a new file in
    :data:`DEFAULT_UNDO_DIR`); it is written before anything changes, atomically, mode 0600.
    Raises :class:`~kubepki.RenewalError`, changing nothing, when a file's mode or owner
    changed since the plan; :class:`~kubepki.ConfigError` when a fix plan would loosen a mode.
    """
    node = plan.node
    for c in plan.changes:
        if not plan.restore and c.mode_after & ~c.mode_before:
            raise ConfigError(f"{c.target}: the plan would loosen {format(c.mode_before, '04o')} to "
                              f"{format(c.mode_after, '04o')}; kubepki never loosens a mode")
    if not plan.changes:
        return PermissionsResult(changes=(), undo_record=None)
    when = _utc(now)
    with node_lock(node, wait=wait):
        for c in plan.changes:
            st = node.fs.stat(PurePosixPath(c.target))
            if st is None or (st.mode, st.uid, st.gid) != (c.mode_before, c.uid_before, c.gid_before):
                now_is = "gone" if st is None else f"{format(st.mode, '04o')} {st.uid}:{st.gid}"
                raise RenewalError(f"{c.target} changed since the plan was made (now {now_is}): plan again",
                                   path=c.target)
        record = PurePosixPath(undo_record) if undo_record is not None else PurePosixPath(
            DEFAULT_UNDO_DIR) / f"kubepki-permissions-{when.strftime('%Y%m%dT%H%M%SZ')}.json"
        _write_record(node, record, plan, when)
        done = []
        for c in plan.changes:
            target = PurePosixPath(c.target)
            if (c.uid_after, c.gid_after) != (c.uid_before, c.gid_before):
                node.fs.chown(target, c.uid_after, c.gid_after)
            if c.mode_after != c.mode_before or (c.uid_after, c.gid_after) != (c.uid_before, c.gid_before):
                node.fs.chmod(target, c.mode_after)  # chown(2) may clear set-id bits: the mode is set last
            done.append(c)
    return PermissionsResult(changes=tuple(done), undo_record=str(record))


def _write_record(node: Node, record: PurePosixPath, plan: PermissionsPlan, when: dt.datetime) -> None:
    """The undo record: what each file was, so the change can be reversed; never replaces a file."""
    doc = {"kind": _RECORD_KIND, "written": iso(when), "node": node.fs.describe(), "restore": plan.restore,
           "changes": [c.to_dict() for c in plan.changes]}
    makedirs(node.fs, record.parent, mode_for=lambda _d: 0o700)
    if node.fs.stat(record, follow=False) is not None:
        raise NodeError(f"{record}: an undo record is there already; give another path", path=str(record))
    node.fs.write_atomic(record, json.dumps(doc, indent=2).encode() + b"\n", mode=0o600)
