"""The node's run history: one JSON object per line, newest last, kept on the node.

``kubepki auto-renew --apply`` appends one line per run to
``/var/lib/kubepki/history.jsonl`` (inside the node's root, through its filesystem,
so an SSH node keeps its own); ``kubepki history`` and the metrics read it back.
The file is rewritten atomically (temporary file, fsync, rename, 0600) with its
oldest lines dropped past :data:`HISTORY_KEEP`, so a killed run never leaves half
a line and the file never grows without bound. Lines that are not JSON objects
(an editor, a disk error) are skipped when reading and counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki.errors import NodeError
from kubepki.node._fs import NodeFS, makedirs, read_optional

__all__ = ["HISTORY_KEEP", "HISTORY_PATH", "History", "append_history", "read_history"]

#: Where the history lives on a node.
HISTORY_PATH = PurePosixPath("/var/lib/kubepki/history.jsonl")
#: How many runs are kept.
HISTORY_KEEP = 1000
#: The largest history file read (a line is a few KiB).
_LIMIT = 16 << 20


@attrs.frozen(kw_only=True)
class History:
    """The runs recorded on a node, oldest first."""

    path: PurePosixPath
    records: tuple[Mapping[str, Any], ...] = ()
    #: Lines that were not JSON objects.
    skipped: int = 0
    #: Why the file could not be read (None: read, or absent).
    problem: str | None = None

    @property
    def last(self) -> Mapping[str, Any] | None:
        """The newest run, if any."""
        return self.records[-1] if self.records else None


def read_history(fs: NodeFS, path: PurePosixPath = HISTORY_PATH) -> History:
    """The history at ``path`` on the node; empty when there is none. Never raises for its content."""
    notes: list[str] = []
    data = read_optional(fs, path, notes, limit=_LIMIT)
    if data is None:
        return History(path=path, problem=notes[0] if notes else None)
    records: list[Mapping[str, Any]] = []
    skipped = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return History(path=path, records=tuple(records), skipped=skipped)


def append_history(fs: NodeFS, record: Mapping[str, Any], path: PurePosixPath = HISTORY_PATH) -> None:
    """Add ``record`` as the newest line of the history at ``path`` (created 0600 in a 0700 directory).

    Raises :class:`~kubepki.NodeError` when the file cannot be written, or when
    something that is not a regular file is in its place.
    """
    makedirs(fs, path.parent, mode_for=lambda d: 0o700 if d == path.parent else 0o755)
    st = fs.stat(path, follow=False)
    if st is not None and not st.is_file:
        raise NodeError(f"{path}: not a regular file; the history is not written", path=str(path))
    kept = [json.dumps(r, sort_keys=True) for r in read_history(fs, path).records][-(HISTORY_KEEP - 1):]
    kept.append(json.dumps(dict(record), sort_keys=True, default=str))
    fs.write_atomic(path, ("\n".join(kept) + "\n").encode(), mode=0o600)
