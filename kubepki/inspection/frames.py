"""pandas DataFrames of what kubepki returns, for notebooks and ad-hoc analysis.

Needs pandas (``pip install 'kubepki[notebook]'``); it is imported only when a
frame is asked for. Frames are built from each object's ``to_dict()`` — the
JSON output — so a column means what the same field means in ``-o json``:

- one row per item of an :class:`~kubepki.Inventory` (or of several: one per
  node, stacked), per step of a :class:`~kubepki.RenewalPlan`,
  :class:`~kubepki.RestorePlan` or restart plan, per member of a
  :class:`~kubepki.VerifyReport`, per item of a :class:`~kubepki.RenewalResult`
  (written, skipped or refused), per file a :class:`~kubepki.RestoreResult`
  wrote, and per backup of a list of :class:`~kubepki.BackupInfo`;
- a ``node`` column first, whenever the source names its node;
- nested objects flattened one level (``certificate.common_name``); findings as
  the list of their codes; ISO 8601 times as timezone-aware UTC timestamps.

>>> import datetime as dt, tempfile, kubepki
>>> from kubepki import testing
>>> when = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
>>> inv = kubepki.inspect(testing.build_node(tempfile.mkdtemp(), issued_at=when).root, now=when)
>>> df = inv.to_dataframe()                          # doctest: +SKIP
>>> df.loc[df.status != "ok", ["name", "status", "findings"]]   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kubepki.errors import ConfigError

__all__ = ["rows", "to_dataframe"]

#: The keys of a ``to_dict()`` that hold its rows, tried in this order.
ROW_KEYS = ("items", "steps", "members", "outcomes", "checks")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _pandas() -> Any:
    try:
        # pandas has no inline type annotations; as Any it needs no stubs for mypy.
        return importlib.import_module("pandas")
    except ImportError:
        raise ConfigError("DataFrames need pandas: pip install 'kubepki[notebook]'") from None


def _as_dict(obj: object) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if not callable(to_dict):
        raise ConfigError(f"cannot make a DataFrame of {type(obj).__name__}: it has no to_dict()")
    data = to_dict()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{type(obj).__name__}.to_dict() did not return a mapping")
    return dict(data)


def _codes(value: Any) -> Any:
    """Findings (a list of dicts with ``code``) become the list of their codes."""
    if isinstance(value, list) and value and all(isinstance(v, Mapping) and "code" in v for v in value):
        return [v["code"] for v in value]
    return value


def _rows_of(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows one ``to_dict()`` stands for."""
    node = data.get("node")
    if data.get("kind") == "RenewalResult":
        out = [{"name": n, "result": "written", "reason": None, "message": ""} for n in data["changed"]]
        out += [{"name": s["name"], "result": "refused" if s["refused"] else "skipped",
                 "reason": s["reason"], "message": s["message"]} for s in data["skipped"]]
        return [{"node": node, **r} for r in out]
    if "written" in data and "plan" in data:  # a RestoreResult
        plan = data["plan"]
        return [{"node": plan.get("node"), "path": p, "result": "written"} for p in data["written"]]
    for key in ROW_KEYS:
        value = data.get(key)
        if isinstance(value, list):
            return [{"node": node, **row} if "node" in data and "node" not in row else dict(row)
                    for row in value]
    return [dict(data)]


def _node_first(row: dict[str, Any]) -> dict[str, Any]:
    if "node" not in row:
        return row
    return {"node": row["node"], **{k: v for k, v in row.items() if k != "node"}}


def rows(obj: object) -> list[dict[str, Any]]:
    """The rows :func:`to_dataframe` makes of ``obj``, as plain dicts (no pandas needed).

    ``obj`` is anything with a ``to_dict()`` (or such a mapping), or an iterable of
    them — several inventories, the list :func:`kubepki.list_backups` returns.
    Nested objects are flattened one level (``certificate.common_name``) and
    findings become their codes. Raises :class:`~kubepki.ConfigError` for anything else.
    """
    items: Iterable[object]
    if isinstance(obj, Mapping) or callable(getattr(obj, "to_dict", None)):
        items = [obj]
    elif isinstance(obj, Iterable) and not isinstance(obj, str | bytes):
        items = list(obj)
    else:
        raise ConfigError(f"cannot make a DataFrame of {type(obj).__name__}: it has no to_dict()")
    raw = [_node_first(row) for item in items for row in _rows_of(_as_dict(item))]
    nested = {key for row in raw for key, value in row.items() if isinstance(value, Mapping)}
    out: list[dict[str, Any]] = []
    for row in raw:
        flat: dict[str, Any] = {}
        for key, value in row.items():
            if key in nested:  # one level down: certificate.common_name; None adds nothing
                for sub, inner in (value or {}).items():
                    flat[f"{key}.{sub}"] = _codes(inner)
            else:
                flat[key] = _codes(value)
        out.append(flat)
    return out


def to_dataframe(obj: object) -> Any:
    """A :class:`pandas.DataFrame` of ``obj``, one row per item, step or backup.

    See the module's description for the rows and columns of each kind of
    object. Raises :class:`~kubepki.ConfigError` when pandas is not installed
    or ``obj`` is nothing kubepki knows how to tabulate.
    """
    pd = _pandas()
    frame = pd.DataFrame(rows(obj))
    for column in frame.columns:
        values = frame[column].dropna()
        if len(values) and all(isinstance(v, str) and _TIME.match(v) for v in values):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
