"""Lazy re-exports for kubepki's packages (PEP 562).

A package's ``__init__`` names which private module defines each public name; the
module is imported on first use, so importing a package (and ``import kubepki``)
stays cheap and a package never imports more of kubepki than the caller touches.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Callable, Mapping
from typing import Any


def load(name: str) -> Any:
    """``importlib.import_module(name)`` with the cyclic garbage collector paused meanwhile.

    Loading an implementation creates thousands of long-lived objects (classes,
    functions, the catalog); each collection they trigger scans them all and frees
    nothing, about a tenth of loading the inspection (docs/performance.md). The
    collector's state is put back afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        if enabled:
            gc.enable()


def attach(
    package: str, exports: Mapping[str, tuple[str, ...]], submodules: tuple[str, ...] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Return ``__getattr__``, ``__dir__`` and ``__all__`` for *package*.

    *exports* maps a module (relative to the package, e.g. ``"_node"``) to the public
    names it defines; *submodules* are public modules loaded on attribute access.
    """
    where = {name: module for module, names in exports.items() for name in names}
    names = sorted({*where, *submodules})
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name in submodules:
            value: Any = load(f"{package}.{name}")
        elif name in where:
            value = getattr(load(f"{package}.{where[name]}"), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__, names
