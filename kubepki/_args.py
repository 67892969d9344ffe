"""Checks of public arguments, so that a wrong type is a :class:`~kubepki.ConfigError`.

Entry points call these where a value of the wrong kind would otherwise fail deep
inside with a bare ``TypeError`` or ``AttributeError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from kubepki.errors import ConfigError

__all__ = ["instance", "local_path"]

_T = TypeVar("_T")


def local_path(value: object, what: str) -> Path:
    """``value`` (a ``str`` or ``os.PathLike``) as a local :class:`~pathlib.Path`; else ConfigError."""
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str):
            if "\0" in path:
                raise ConfigError(f"{what} contains a NUL byte: {path!r}")
            return Path(path)
    raise ConfigError(f"{what} must be a path (str or os.PathLike), not {type(value).__name__}")


def instance(value: object, cls: type[_T], what: str, hint: str = "") -> _T:
    """``value`` when it is a ``cls``; else ConfigError naming ``what`` (and ``hint``, how to get one)."""
    if not isinstance(value, cls):
        more = f" ({hint})" if hint else ""
        raise ConfigError(f"{what} must be a {cls.__name__}{more}, not {type(value).__name__}")
    return value
