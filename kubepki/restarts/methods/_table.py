"""Which implementation carries out each restart :class:`~kubepki.restarts.Method`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kubepki.errors import ConfigError
from kubepki.restarts import Method, RestartMethod
from kubepki.restarts.methods._cri import CRI_METHOD
from kubepki.restarts.methods._docker import DOCKER_METHOD
from kubepki.restarts.methods._manifest import MANIFEST_METHOD
from kubepki.restarts.methods._signal import SIGNAL_METHOD
from kubepki.restarts.methods._systemd import SYSTEMD_METHOD

__all__ = ["METHODS", "restart_method"]

#: Every method that restarts something, by :class:`~kubepki.restarts.Method`.
METHODS: Mapping[Method, RestartMethod] = MappingProxyType({
    Method.MANIFEST: MANIFEST_METHOD,
    Method.DOCKER: DOCKER_METHOD,
    Method.CRI: CRI_METHOD,
    Method.SYSTEMD: SYSTEMD_METHOD,
    Method.SIGNAL: SIGNAL_METHOD,
})


def restart_method(method: Method | str) -> RestartMethod:
    """The implementation of ``method``; :class:`~kubepki.ConfigError` for one that restarts nothing."""
    try:
        return METHODS[Method(method)]
    except (ValueError, KeyError):
        known = ", ".join(m.value for m in METHODS)
        raise ConfigError(f"{method!r} is not a restart method (known: {known})") from None
