"""Prometheus exposition of inventories, for node_exporter's textfile collector or a scrape.

Needs the optional ``prometheus_client`` package (``pip install 'kubepki[metrics]'``);
it is imported only here, when metrics are asked for.

Series (labels ``node``, ``role``, ``name``, ``path``, ``signer``, ``kind``, plus ``namespace``,
``object_kind``, ``object`` and ``key`` for items found in cluster objects; ``role`` is the
node's role, ``control-plane``, ``worker`` or ``etcd``, and empty for cluster objects):

- ``kubepki_certificate_expiry_timestamp_seconds``: NotAfter as a Unix time.
- ``kubepki_certificate_not_before_timestamp_seconds``: NotBefore as a Unix time.
- ``kubepki_certificate_seconds_left``: NotAfter minus the inspection time (negative when expired).
- ``kubepki_certificate_valid``: 1 when the item is usable now (status ok or warning), else 0.
- ``kubepki_item_status``: 1 for the item's current status, 0 for the others (label ``status``).
- ``kubepki_item_error``: 1 when the item is expired, invalid or a required item is missing.
- ``kubepki_findings``: findings per item, code and severity.
- ``kubepki_inspection_timestamp_seconds`` and ``kubepki_inspection_exit_code`` per source.
- From a node's auto-renew history (:func:`last_run` as a source): ``kubepki_auto_renew_last_run_timestamp_seconds``,
  ``kubepki_auto_renew_last_run_success`` (1 renewed, verified or nothing due; 0 failed),
  ``kubepki_auto_renew_last_run_rolled_back`` and
  ``kubepki_auto_renew_last_run_apiserver_unanswered_seconds`` (labels ``node``, ``status``).

>>> import datetime as dt, tempfile, kubepki
>>> from kubepki import metrics, testing
>>> when = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
>>> inv = kubepki.inspect(testing.build_node(tempfile.mkdtemp(), issued_at=when).root, now=when)
>>> text = metrics.exposition([inv])
>>> 'kubepki_certificate_seconds_left{' in text
True
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from kubepki.errors import ConfigError, NodeError
from kubepki.inspection import Status

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["InventoryLike", "LastRun", "exposition", "last_run", "registry", "serve", "write_textfile"]

_BASE_LABELS = ("node", "role", "name", "path", "signer", "kind")
_OBJECT_LABELS = ("namespace", "object_kind", "object", "key")
_STATUSES = tuple(s.value for s in Status)


class InventoryLike(Protocol):
    """What the exporter needs: a time and items with ``to_dict()`` (node or cluster objects)."""

    @property
    def now(self) -> dt.datetime:
        """When the source was inspected."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON form with ``items``."""
        ...


@attrs.frozen
class LastRun:
    """A node's newest auto-renew run (its history line), as a metrics source beside its inventory."""

    node: str
    record: Mapping[str, Any]
    now: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """No items; the run under ``last_run``."""
        return {"node": self.node, "items": [], "last_run": dict(self.record)}


def last_run(node: Any) -> LastRun | None:
    """The newest run in ``node``'s history (a :class:`~kubepki.Node` or a root), None when it has none."""
    from kubepki.node import Node, read_history

    n = Node.coerce(node)
    record = read_history(n.fs).last
    if record is None:
        return None
    return LastRun(node=str(record.get("node") or n.profile.name or ""), record=record,
                   now=dt.datetime.now(dt.timezone.utc))


def _check_inventories(inventories: object) -> None:
    if isinstance(inventories, str | bytes) or not isinstance(inventories, Sequence):
        raise ConfigError(f"inventories must be a sequence of inventories, not {type(inventories).__name__}")
    for inv in inventories:
        if not callable(getattr(inv, "to_dict", None)) or not isinstance(getattr(inv, "now", None), dt.datetime):
            raise ConfigError(f"not an inventory (from inspect, inspect_cluster or check_objects): "
                              f"{type(inv).__name__}")


def _prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError:
        raise ConfigError(
            "metrics need the prometheus_client package: pip install 'kubepki[metrics]'"
        ) from None
    return prometheus_client


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _Collector:
    """A prometheus_client collector over inventories produced by ``source`` at scrape time."""

    def __init__(self, source: Callable[[], Sequence[InventoryLike]]) -> None:
        self._source = source

    def describe(self) -> list[Any]:
        return []  # collected lazily; nothing to describe up front

    def collect(self) -> Iterator[Any]:
        core = _prometheus().core
        inventories = self._source()
        labels = _BASE_LABELS + _OBJECT_LABELS
        fam: dict[str, Any] = {
            "expiry": core.GaugeMetricFamily(
                "kubepki_certificate_expiry_timestamp_seconds", "NotAfter of the certificate (Unix time).",
                labels=labels),
            "not_before": core.GaugeMetricFamily(
                "kubepki_certificate_not_before_timestamp_seconds", "NotBefore of the certificate (Unix time).",
                labels=labels),
            "left": core.GaugeMetricFamily(
                "kubepki_certificate_seconds_left", "Seconds until NotAfter at inspection time.",
                labels=labels),
            "valid": core.GaugeMetricFamily(
                "kubepki_certificate_valid", "1 when the item is usable now (status ok or warning).",
                labels=labels),
            "status": core.GaugeMetricFamily(
                "kubepki_item_status", "1 for the item's current status.", labels=(*labels, "status")),
            "error": core.GaugeMetricFamily(
                "kubepki_item_error", "1 when the item is expired, invalid or required and missing.",
                labels=labels),
            "findings": core.GaugeMetricFamily(
                "kubepki_findings", "Findings on the item by code and severity.",
                labels=(*labels, "code", "severity")),
            "when": core.GaugeMetricFamily(
                "kubepki_inspection_timestamp_seconds", "When the source was inspected (Unix time).",
                labels=("node", "role", "source")),
            "exit": core.GaugeMetricFamily(
                "kubepki_inspection_exit_code", "kubepki check's exit status for the source (0, 1 or 2).",
                labels=("node", "role", "source")),
        }
        runs = _run_families(core)
        for inv in inventories:
            data = inv.to_dict()
            if "last_run" in data:
                _add_run(runs, str(data.get("node") or ""), data["last_run"])
                continue
            node = str(data.get("node") or "")
            role = str(data.get("role") or "")
            source = str(data.get("root") or data.get("source") or "")
            fam["when"].add_metric([node, role, source], inv.now.timestamp())
            outcome = getattr(inv, "outcome", None)
            if outcome is not None:
                # kubepki check exits with the outcome's rank (kubepki.cli.exit_status); test_metrics ties them
                fam["exit"].add_metric([node, role, source], float(outcome.rank))
            for item in data.get("items", []):
                values = [
                    node, role, str(item.get("name") or ""), str(item.get("path") or ""),
                    str(item.get("signer") or ""), str(item.get("kind") or ""),
                    str(item.get("namespace") or ""), str(item.get("object_kind") or ""),
                    str(item.get("object") or ""), str(item.get("key") or ""),
                ]
                expiry = _epoch(item.get("not_after"))
                if expiry is not None:
                    fam["expiry"].add_metric(values, expiry)
                    fam["left"].add_metric(values, float(item.get("residual_seconds") or 0))
                not_before = _epoch(item.get("not_before"))
                if not_before is not None:
                    fam["not_before"].add_metric(values, not_before)
                status = item.get("status")
                fam["valid"].add_metric(values, 1.0 if status in ("ok", "warning") else 0.0)
                for s in _STATUSES:
                    fam["status"].add_metric([*values, s], 1.0 if s == status else 0.0)
                error = status in ("expired", "invalid") or (status == "missing" and item.get("required", True))
                fam["error"].add_metric(values, 1.0 if error else 0.0)
                counts: dict[tuple[str, str], int] = {}
                for f in item.get("findings", []):
                    key = (f["code"], f["severity"])
                    counts[key] = counts.get(key, 0) + 1
                for (code, severity), n in sorted(counts.items()):
                    fam["findings"].add_metric([*values, code, severity], float(n))
        yield from fam.values()
        yield from (f for f in runs.values() if f.samples)


def _run_families(core: Any) -> dict[str, Any]:
    labels = ("node", "status")
    return {
        "when": core.GaugeMetricFamily("kubepki_auto_renew_last_run_timestamp_seconds",
                                       "When the last auto-renew run finished (Unix time).", labels=labels),
        "success": core.GaugeMetricFamily("kubepki_auto_renew_last_run_success",
                                          "1 when the last auto-renew run succeeded (or had nothing due).",
                                          labels=labels),
        "rolled_back": core.GaugeMetricFamily("kubepki_auto_renew_last_run_rolled_back",
                                              "1 when the last auto-renew run rolled its renewal back.",
                                              labels=labels),
        "down": core.GaugeMetricFamily("kubepki_auto_renew_last_run_apiserver_unanswered_seconds",
                                       "Seconds the kube-apiserver did not answer during the last run.",
                                       labels=labels),
    }


def _add_run(fam: dict[str, Any], node: str, run: Mapping[str, Any]) -> None:
    values = [node, str(run.get("status") or "")]
    try:
        when = _epoch(run.get("finished_at") if isinstance(run.get("finished_at"), str) else None)
    except ValueError:  # a history line someone edited
        when = None
    if when is not None:
        fam["when"].add_metric(values, when)
    fam["success"].add_metric(values, 1.0 if run.get("ok") is True else 0.0)
    fam["rolled_back"].add_metric(values, 1.0 if run.get("rolled_back") is True else 0.0)
    down = run.get("apiserver_unanswered_seconds")
    if isinstance(down, int | float) and not isinstance(down, bool):
        fam["down"].add_metric(values, float(down))


def registry(source: Sequence[InventoryLike] | Callable[[], Sequence[InventoryLike]]) -> CollectorRegistry:
    """A prometheus_client registry exposing ``source`` (inventories, or a callable giving them)."""
    if not callable(source):
        _check_inventories(source)
    prom = _prometheus()
    reg = prom.CollectorRegistry(auto_describe=False)
    getter = source if callable(source) else (lambda: source)
    reg.register(_Collector(getter))
    return reg  # type: ignore[no-any-return]


def exposition(inventories: Sequence[InventoryLike]) -> str:
    """The Prometheus text exposition of ``inventories``."""
    prom = _prometheus()
    return prom.generate_latest(registry(inventories)).decode()  # type: ignore[no-any-return]


def write_textfile(path: str | os.PathLike[str], inventories: Sequence[InventoryLike]) -> Path:
    """Write the exposition atomically for node_exporter's textfile collector (mode 0644)."""
    from kubepki.node import atomic_write

    target = Path(path)
    if not target.parent.is_dir():
        raise NodeError(f"{target.parent} is not a directory", path=str(target.parent))
    atomic_write(target, exposition(inventories).encode(), mode=0o644)
    return target


def serve(
    address: str,
    source: Callable[[], Sequence[InventoryLike]],
    *,
    cache_seconds: float = 30.0,
    stop: threading.Event | None = None,
) -> tuple[str, int]:
    """Serve ``/metrics`` on ``address`` (``HOST:PORT``), re-inspecting at most every ``cache_seconds``.

    Returns the bound (host, port); the server runs in a daemon thread until ``stop`` is
    set (or the process ends).
    """
    prom = _prometheus()
    host, _, port_text = address.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"not HOST:PORT: {address!r}") from None
    lock = threading.Lock()
    cache: dict[str, Any] = {"at": -1e9, "value": ()}

    def cached() -> Sequence[InventoryLike]:
        with lock:
            if time.monotonic() - cache["at"] >= cache_seconds:
                cache["value"] = tuple(source())
                cache["at"] = time.monotonic()
            return cache["value"]  # type: ignore[no-any-return]

    try:
        server, _thread = prom.start_http_server(port, addr=host or "127.0.0.1", registry=registry(cached))
    except OSError as exc:
        raise NodeError(f"cannot listen on {address}: {exc.strerror}") from None
    if stop is not None:
        def shutdown() -> None:
            stop.wait()
            server.shutdown()
            server.server_close()

        threading.Thread(target=shutdown, daemon=True).start()
    bound = server.server_address
    return str(bound[0]), int(bound[1])

