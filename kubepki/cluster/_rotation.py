"""What every rotation shares: the phases, a planned change, the state and undo records on the nodes, and
writing one node's changes and putting them back (the CA rotation in ``_rotate``, the service-account key
pair in ``_rotate_sa``).

A rotation keeps its state on the nodes themselves: a JSON record beside the material it rotates
(``<prefix>.json``, 0600, written atomically), and before a phase changes a node, that node's undo record
(``<prefix>-undo-<phase>.json``, 0600: it holds the replaced files, keys among them), which an abort replays.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import enum
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki._crash import checkpoint as _checkpoint
from kubepki._report import Cell, Table
from kubepki.catalog import NodeRole
from kubepki.errors import ConfigError
from kubepki.node import Node, node_lock

_MAX = 1 << 20


class Phase(str, enum.Enum):
    """A phase of the rotation, in order."""

    PREPARE = "prepare"
    TRUST_BOTH = "trust-both"
    REISSUE = "reissue"
    DROP_OLD = "drop-old"


#: The phases in the order they are applied.
PHASES: tuple[Phase, ...] = tuple(Phase)
_PHASE_NAMES = frozenset(p.value for p in PHASES)


@attrs.frozen(kw_only=True)
class RotationChange:
    """One file a phase writes or removes on one node."""

    node: str
    path: str
    #: ``create``, ``write`` (an existing file, its mode and owner kept) or ``remove``.
    action: str
    why: str
    data: bytes | None = attrs.field(default=None, repr=False, eq=False)
    #: The mode of a created file.
    mode: int = 0o644
    #: The SHA-256 (hex) of the file the change was planned from (``write``, ``remove``); a ``create``'s
    #: path must not exist. Apply refuses a plan whose files moved since (another writer).
    planned_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (never the bytes: they may be a key)."""
        return {"node": self.node, "path": self.path, "action": self.action, "why": self.why}


def next_phase(phase: Phase | None, applying: Phase | None) -> Phase | None:
    """The phase ``next`` plans: the unfinished one, else the one after the last verified; None when done."""
    if applying is not None:
        return applying
    if phase is None:
        return Phase.PREPARE
    i = PHASES.index(phase)
    return PHASES[i + 1] if i + 1 < len(PHASES) else None


def phase_table(title: str, phase: Phase | None, applying: Phase | None) -> Table:
    """One row per phase: verified, in progress, next or to do."""
    done = PHASES.index(phase) if phase else -1
    rows = []
    for i, p in enumerate(PHASES):
        state, tone = (("verified", "ok") if i <= done else ("in progress", "warning") if p is applying
                       else ("next", "dim") if p is next_phase(phase, applying) else ("to do", "dim"))
        rows.append([Cell(p.value, strong=True), Cell(state, tone, badge=True)])
    return Table(title, ("PHASE", "STATE"), rows)


def change_table(title: str, changes: Sequence[RotationChange]) -> Table:
    """One row per change."""
    return Table(title, ("NODE", "ACTION", "PATH", "WHY"),
                 [[Cell(c.node, strong=True), Cell(c.action), Cell(c.path), Cell(c.why)] for c in changes])


@attrs.frozen
class Site:
    """One node of a rotation and where the rotation keeps its files on it (``directory``, ``prefix``)."""

    label: str
    node: Node

    @property
    def control_plane(self) -> bool:
        return self.node.profile.role is NodeRole.CONTROL_PLANE

    @property
    def directory(self) -> PurePosixPath:
        raise NotImplementedError

    @property
    def prefix(self) -> str:
        raise NotImplementedError

    def beside(self, name: str) -> PurePosixPath:
        return self.directory / name

    @property
    def state(self) -> PurePosixPath:
        return self.beside(f"{self.prefix}.json")

    def undo(self, phase: Phase) -> PurePosixPath:
        return self.beside(f"{self.prefix}-undo-{phase.value}.json")

    def read(self, path: PurePosixPath) -> bytes | None:
        """The file's bytes, None when it does not exist; a ConfigError for anything but a regular file."""
        found = self.node.fs.read_file(path, limit=_MAX)
        if found is None:
            return None
        if found[2] is None:
            raise ConfigError(f"{self.label}:{path} is not a regular file (or too large)", path=str(path))
        return found[2]

    def write(self, path: PurePosixPath, data: bytes, mode: int) -> None:
        """Write atomically: an existing file keeps its mode and owner, a new one gets ``mode``."""
        st = self.node.fs.stat(path)
        chown = self.node.fs.can_chown()
        if st is not None:
            self.node.fs.write_atomic(path, data, mode=st.mode, uid=st.uid if chown else None,
                                      gid=st.gid if chown else None)
        else:
            self.node.fs.write_atomic(path, data, mode=mode)


@contextlib.contextmanager
def locked(sites: Sequence[Site]) -> Iterator[None]:
    """Hold every node's lock (a :class:`~kubepki.LockError` when one is taken)."""
    with contextlib.ExitStack() as locks:
        for site in sites:
            locks.enter_context(node_lock(site.node))
        yield


# --------------------------------------------------------------------------------------
# The state record


def read_record(site: Site, *, kind: str, what: str,
                check: Callable[[dict[str, Any]], list[str]]) -> dict[str, Any] | None:
    """The node's state record (None when absent), refused with a ConfigError unless it is a ``kind``
    record whose fields are what apply writes (the shared ones here, the rotation's own by ``check``)."""
    data = site.read(site.state)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        raise ConfigError(f"{site.label}:{site.state} is not a rotation record (not JSON)",
                          path=str(site.state)) from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise ConfigError(f"{site.label}:{site.state} is not a {what} record", path=str(site.state))
    bad = [k for k in ("phase", "applying")
           if doc.get(k) is not None and (not isinstance(doc.get(k), str) or doc.get(k) not in _PHASE_NAMES)]
    if not isinstance(doc.get("history", []), list) or not all(isinstance(h, dict) for h in doc.get("history", [])):
        bad.append("history")
    bad += check(doc)
    if bad:
        raise ConfigError(f"{site.label}:{site.state} is a damaged rotation record ({', '.join(bad)})",
                          path=str(site.state))
    return doc


def phase_of(value: Any) -> Phase | None:
    """The phase a record names (read_record checked it is a phase's name)."""
    return None if value is None else Phase(value)


def merge(records: dict[str, dict[str, Any]], *, old: str, what: str,
          olds: str) -> tuple[Phase | None, Phase | None, dict[str, Any]]:
    """(verified phase, phase under way, the record that got furthest) of the nodes' records; refused when
    they name different old material (``old``: its field; ``what`` the rotation, ``olds`` the material)."""

    def rank(r: dict[str, Any]) -> tuple[int, int]:
        p, a = phase_of(r.get("phase")), phase_of(r.get("applying"))
        return (PHASES.index(p) if p else -1, PHASES.index(a) if a else -1)

    best = max(records.values(), key=rank)
    if len({r.get(old) for r in records.values()}) > 1:
        raise ConfigError(f"the nodes' {what} rotation records name different old {olds}: {sorted(records)}")
    phase, applying = phase_of(best.get("phase")), phase_of(best.get("applying"))
    if any(rank(r) != rank(best) for r in records.values()):
        # a run killed while saving the records: the phase verified on every node is the lowest, and the
        # furthest any record got is under way (next re-applies it, idempotent; abort undoes it)
        verified = min(rank(r)[0] for r in records.values())
        furthest = max(max(rank(r)) for r in records.values())
        phase = PHASES[verified] if verified >= 0 else None
        applying = PHASES[furthest] if furthest > verified else None
    return phase, applying, best


def save_record(site: Site, doc: dict[str, Any]) -> None:
    site.write(site.state, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n", 0o600)


def history(record: dict[str, Any] | None, **entry: Any) -> list[dict[str, Any]]:
    """The record's history with ``entry`` appended."""
    return [*((record or {}).get("history") or []), entry]


def require_next(next_phase: Phase | None, planned: Phase) -> None:
    """Refuse a plan made for another phase than the rotation's next one."""
    if next_phase is not planned:
        raise ConfigError(f"the plan is for {planned.value}, but the rotation's next phase is "
                          f"{next_phase.value if next_phase else 'none (done)'}: plan again")


# --------------------------------------------------------------------------------------
# Applying a phase's changes


def check_fresh(sites: Sequence[Site], changes: Sequence[RotationChange]) -> None:
    """Refuse a plan one of whose files changed since it was made: it would overwrite that change."""
    by_label = {s.label: s for s in sites}
    for ch in changes:
        site = by_label.get(ch.node)
        if site is None or ch.action == "record":
            continue
        current = site.read(PurePosixPath(ch.path))
        digest = hashlib.sha256(current).hexdigest() if current is not None else None
        if digest != ch.planned_from:
            raise ConfigError(f"{ch.node}:{ch.path} changed since the plan was made: plan again", path=ch.path)


def apply_node(site: Site, phase: Phase, changes: Sequence[RotationChange], *, kind: str, tag: str) -> None:
    """Write the node's undo record of ``phase`` (a resumed phase keeps the first), then each of its
    changes atomically, a crash checkpoint ``<tag>:file`` after each."""
    changes = [c for c in changes if c.node == site.label]
    if not changes:
        return
    if any(c.action == "record" and c.path == str(site.undo(phase)) for c in changes) \
            and site.node.fs.stat(site.undo(phase)) is None:
        # the first record holds the files as they were before the phase
        files = []
        for ch in (c for c in changes if c.action != "record"):
            path = PurePosixPath(ch.path)
            st = site.node.fs.stat(path)
            before = site.read(path) if st is not None else None
            files.append({"path": ch.path, "before": base64.b64encode(before).decode() if before is not None else None,
                          "mode": st.mode if st else None, "uid": st.uid if st else None,
                          "gid": st.gid if st else None})
        undo = {"kind": kind, "phase": phase.value, "files": files}
        site.node.fs.write_atomic(site.undo(phase), json.dumps(undo).encode(), mode=0o600)
    for ch in changes:
        if ch.action == "record":
            continue
        path = PurePosixPath(ch.path)
        if ch.action == "remove":
            site.node.fs.unlink(path)
        elif ch.data is not None:
            site.write(path, ch.data, ch.mode)
        _checkpoint(f"{tag}:file")
    site.node.fs.fsync_dir(site.directory)


# --------------------------------------------------------------------------------------
# Undoing a phase


@attrs.frozen
class Undo:
    """One file as it was before a phase (``before`` None: it did not exist)."""

    path: PurePosixPath
    before: bytes | None
    mode: int
    uid: int | None
    gid: int | None


def read_undo(site: Site, phase: Phase, *, kind: str) -> list[Undo] | None:
    """The node's undo record of ``phase``, every entry checked before one is used; None when absent."""
    path = site.undo(phase)
    data = site.read(path)
    if data is None:
        return None
    out = []
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("kind") != kind or doc.get("phase") != phase.value:
            raise ValueError("not an undo record of this phase")
        if not isinstance(doc.get("files"), list):
            raise ValueError("no list of files")
        for entry in doc["files"]:
            node_path = PurePosixPath(entry["path"])
            before = entry["before"]
            if not node_path.is_absolute() or (before is not None and not isinstance(before, str)):
                raise ValueError("an entry's path or content")
            ints = [entry[k] for k in ("mode", "uid", "gid")]
            if before is not None and not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                              for i in ints):
                raise ValueError("an entry's mode or owner")
            out.append(Undo(node_path, base64.b64decode(before, validate=True) if before is not None else None,
                            ints[0] if before is not None else 0, ints[1], ints[2]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"{site.label}:{path} is a damaged undo record ({exc}): restore the backup taken "
                          "before the phase", path=str(path)) from None
    return out


def abort_target(applying: Phase | None, phase: Phase | None, *, old: str) -> tuple[Phase, Phase | None]:
    """(the phase an abort undoes, the verified phase it returns to); refused once drop-old has started."""
    target = applying or phase or Phase.PREPARE  # a record exists: prepare at least started
    if target is Phase.DROP_OLD:
        # drop-old removes the undo records holding the old material: from its start, forward is the only way
        raise ConfigError(f"drop-old has started: the old {old} is being dropped; finish it with next --apply, "
                          "or restore the backups to go back")
    return target, (PHASES[PHASES.index(target) - 1] if target is not Phase.PREPARE else None)


def rewind(undos: dict[str, list[Undo] | None], record: dict[str, Any], *, undo_sites: Sequence[Site],
           record_sites: Sequence[Site], target: Phase, previous: Phase | None, when: dt.datetime, tag: str,
           reset: dict[str, Any], drop: Sequence[str] = ()) -> None:
    """Put every file of each node's undo record back (last first, modes and owners too, a checkpoint
    ``<tag>:undone`` after each), remove the undo records, then rewrite the state records at ``previous``
    (``reset`` fields set, ``drop`` fields removed; none: the records go). The records come last: an abort
    killed before that point is simply run again."""
    for site in undo_sites:
        undo = undos.get(site.label)
        if undo is None:
            continue
        chown = site.node.fs.can_chown()
        for entry in reversed(undo):
            if entry.before is None:
                site.node.fs.unlink(entry.path)
            else:
                site.node.fs.write_atomic(entry.path, entry.before, mode=entry.mode,
                                          uid=entry.uid if chown else None, gid=entry.gid if chown else None)
            _checkpoint(f"{tag}:undone")
        site.node.fs.unlink(site.undo(target))
    for site in record_sites:
        if previous is None:
            site.node.fs.unlink(site.state)
            continue
        doc = {k: v for k, v in record.items() if k not in drop}
        doc.update({"phase": previous.value, "applying": None, **reset})
        doc["history"] = history(record, phase=target.value, event="aborted", at=when.isoformat())
        save_record(site, doc)
