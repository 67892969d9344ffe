"""Time helpers shared by every package: the ``now=`` argument and RFC 3339 text.

Every function that reads the clock takes ``now=`` and passes it through :func:`utc`, so
all of them accept the same values and refuse the same mistakes.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from kubepki.errors import ConfigError

__all__ = ["iso", "utc"]


def utc(now: dt.datetime | None, *, what: str = "now") -> dt.datetime:
    """``now`` as a timezone-aware UTC datetime; the current time when it is None.

    A naive datetime is refused rather than guessed at (local time or UTC?): it raises
    :class:`~kubepki.ConfigError`, as does anything that is not a datetime. ``what``
    names the argument in the message.
    """
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    if not isinstance(now, dt.datetime):
        raise ConfigError(f"{what} must be a datetime, not {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ConfigError(f"{what} must be timezone-aware (UTC), not a naive datetime")
    return now.astimezone(dt.timezone.utc)


def iso(when: dt.datetime, *, timespec: Literal["seconds", "milliseconds", "auto"] = "seconds") -> str:
    """RFC 3339 text of ``when`` in UTC with a ``Z`` (``2025-01-31T12:00:00Z``).

    ``timespec`` is :meth:`datetime.isoformat`'s: whole seconds by default,
    ``milliseconds``, or ``auto`` (microseconds when there are any).
    """
    return when.astimezone(dt.timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")
