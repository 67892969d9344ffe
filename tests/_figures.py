"""Figures of the reliability and security suites, printed at the end of a test run.

The hostile-input, damaged-tree, fault, file-safety and secret-scanning tests count
what they do here (:func:`count`); a pytest plugin (registered in ``tests/conftest.py``)
prints the totals after the run, and writes them as JSON to ``$KUBEPKI_FIGURES``
when that is set. ``python tests/_figures.py FILE...`` adds up such JSON files (one
per CI shard, say) and prints the table.

The counters:

- ``inputs tried``: parser calls on generated or mutated bytes, and CLI runs on
  damaged trees;
- ``faults injected``: real faults on this machine (a full disk, a read-only mount,
  permission denied, a held lock, a planted symlink);
- ``crashes survived``: processes SIGKILLed mid-write, after which the node was
  checked and a re-run completed;
- ``outputs scanned`` / ``secrets found``: texts searched for private key material,
  and what was found (the tests fail unless it is zero).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The counters, in the order the table shows them.
NAMES = ("inputs tried", "faults injected", "crashes survived", "outputs scanned", "secrets found")

FIGURES: Counter[str] = Counter()


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to counter ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise ValueError(f"unknown counter {name!r}")
    FIGURES[name] += n


def table(figures: Counter[str]) -> str:
    """The figures as a Markdown table."""
    rows = ["| figure | count |", "|---|---:|"]
    rows += [f"| {name} | {figures[name]} |" for name in NAMES]
    return "\n".join(rows)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures when the run counted anything; save them to $KUBEPKI_FIGURES."""
    if not FIGURES:
        return
    terminalreporter.section("kubepki reliability and security figures")
    terminalreporter.write_line(table(FIGURES))
    target = os.environ.get("KUBEPKI_FIGURES")
    if target:
        Path(target).write_text(json.dumps({n: FIGURES[n] for n in NAMES}, indent=1) + "\n")


def aggregate(paths: Iterable[str]) -> Counter[str]:
    """The sum of figure files written through $KUBEPKI_FIGURES."""
    total: Counter[str] = Counter()
    for path in paths:
        total.update({k: int(v) for k, v in json.loads(Path(path).read_text()).items() if k in NAMES})
    return total


if __name__ == "__main__":
    sys.stdout.write(table(aggregate(sys.argv[1:])) + "\n")
