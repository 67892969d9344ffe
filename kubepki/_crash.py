"""The crash-test hook of kubepki's writers (renewal, restore).

A writer calls :func:`checkpoint` between durable steps. ``KUBEPKI_TEST_CRASH_AT=N``
makes the process SIGKILL itself at its Nth checkpoint, so tests can check that a
node is consistent after a crash at every step; without the variable this only counts.
Only tests set it; never set it otherwise.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ENV", "checkpoint", "passed"]

#: The environment variable crash tests set (see the module docstring).
CRASH_ENV = "KUBEPKI_TEST_CRASH_AT"

_count = [0]


def checkpoint(label: str) -> None:
    """A point where a crash test may kill the process; ``label`` says which step is done."""
    _count[0] += 1
    at = os.environ.get(CRASH_ENV)
    if at is not None and at.isdigit() and int(at) == _count[0]:
        os.kill(os.getpid(), signal.SIGKILL)


def passed() -> int:
    """How many checkpoints this process has passed."""
    return _count[0]
