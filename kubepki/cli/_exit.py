"""The command line's exit statuses, computed here from what a report says.

Library objects say how things went (:class:`kubepki._report.Outcome`: ok, warning,
failed, incomplete); only the command line turns that into a number: 0 all well,
1 warnings only, 2 something expired, invalid, required and missing, refused or
failed, 3 kubepki could not run (bad arguments, an unreadable root: raised errors,
see :func:`kubepki.cli.main`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from kubepki.cli._common import EXIT_ERROR, EXIT_OK, EXIT_PROBLEM, EXIT_WARNING

if TYPE_CHECKING:
    from kubepki._report import Outcome

__all__ = ["EXIT_STATUS", "exit_status", "json_document"]

#: The exit status of each outcome, by its value (``Outcome.OK.value``...): the report
#: classes (attrs) stay unimported until a command has a report to judge.
EXIT_STATUS: Mapping[str, int] = {
    "ok": EXIT_OK,
    "warning": EXIT_WARNING,
    "failed": EXIT_PROBLEM,
    "incomplete": EXIT_ERROR,
}


class _Judged(Protocol):
    @property
    def outcome(self) -> Outcome: ...


def exit_status(report: _Judged) -> int:
    """The exit status a command gives for ``report`` (an inventory, plan or result)."""
    return EXIT_STATUS[report.outcome.value]


def json_document(report: Any) -> dict[str, Any]:
    """``report.to_dict()`` with the ``exit_code`` the command exits with (docs/json.md).

    The field goes where the documented output has it: before ``items`` (node and
    object inventories) or after ``now`` (a cluster, whose nodes get theirs too).
    """
    doc: dict[str, Any] = report.to_dict()
    code = exit_status(report)
    nodes = doc.get("nodes")
    inventories = getattr(report, "inventories", None)
    if isinstance(nodes, list) and inventories is not None:
        doc["nodes"] = [
            _inserted(node, "exit_code", exit_status(inventories[node["label"]])
                      if node["label"] in inventories else EXIT_PROBLEM, after="error")
            for node in nodes
        ]
    return _inserted(doc, "exit_code", code, before="items", after="now")


def _inserted(doc: dict[str, Any], key: str, value: Any, *, before: str = "", after: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    placed = False
    for k, v in doc.items():
        if k == before and not placed:
            out[key] = value
            placed = True
        out[k] = v
        if k == after and before not in doc and not placed:
            out[key] = value
            placed = True
    if not placed:
        out[key] = value
    return out
