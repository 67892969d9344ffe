"""Restarts: no renewed file left unused.

A renewed file helps nobody until the component that reads it has loaded it,
and static pods do not restart through ``kubectl delete pod``. The classic
outage: ``front-proxy-client`` renewed, kube-apiserver never restarted, and
aggregated APIs fail with "x509: certificate has expired or is not yet valid".
This module closes that gap in three steps, each a separate call:

1. :func:`detect` / :func:`detect_stale` observe the node: which component
   instances of *this* node run and since when (:class:`~kubepki.restarts.ProcScanner`,
   a container runtime), which files they read and when those were last written
   (the catalog's consumers and :func:`kubepki.inspect`), and which certificate
   each TLS endpoint serves (:func:`~kubepki.restarts.check_served`).
2. :func:`plan_restarts` turns one source — :class:`Changed` catalog names, a
   :class:`FromRenewal` result, or :class:`FromDetection` (what is stale now) —
   into an immutable :class:`RestartPlan`: per node, ordered steps for etcd,
   kube-apiserver, kube-controller-manager, kube-scheduler and the kubelet,
   each with the files that caused it.
3. :func:`apply_restarts` carries the plan out on the node it was made for, one
   step at a time, stops at the first failure, and finally verifies that
   nothing stale remains; the :class:`RestartReport` says what was done and what
   was checked (and what could not be).

>>> import datetime as dt, tempfile
>>> from kubepki import testing
>>> demo = testing.build_node(tempfile.mkdtemp(), issued_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
>>> plan = plan_restarts(demo.as_node(), Changed(["front-proxy-client", "admin.conf"]))
>>> [(s.component.value, s.action.value, s.method.value) for s in plan.steps]
[('kube-apiserver', 'restart', 'manifest'), ('kubectl', 'note', 'none'), ('kubeadm', 'note', 'none')]
>>> [(s.component.value, s.action.value) for s in plan_restarts(
...     demo.as_node(), Changed(["front-proxy-client"]), policy="minimal").steps]
[('kube-apiserver', 'verify')]

Policies. ``safe`` (the default) restarts every daemon that reads a changed
file. ``minimal`` restarts only where the catalog says the component reads the
file once (:attr:`~kubepki.Reload.RESTART`). A file the component picks up by
itself within a known delay (:attr:`~kubepki.Reload.CLIENT_FILE_RELOAD`: at
client-go's next 5-minute check) becomes a bounded ``wait`` step, or a restart
when the caller will not wait that long (``max_wait``). The rest become
``verify`` steps: the component is expected to reload by itself, and the
served certificate proves it where it can be observed. Files read per
invocation (``admin.conf``, ``super-admin.conf``, the etcd healthcheck client)
never cause a restart, only a note. The kubelet is restarted only for
``kubelet.conf`` and the files it reads at start; its rotated client
certificate is its own business.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import attrs

from kubepki import catalog as _catalog
from kubepki._args import instance
from kubepki._clock import utc as _utc
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki.catalog import CatalogEntry, Component, Consumer, Kind, Reload
from kubepki.errors import ConfigError, KubepkiError
from kubepki.node import MANIFEST_FILES, Node, read_regular
from kubepki.restarts._context import (
    HELD_MANIFESTS_DIR,
    Method,
    Progress,
    RestartContext,
    Timeouts,
)
from kubepki.restarts._observe import (
    COMPONENT_ORDER,
    CombinedObserver,
    Instance,
    Observer,
    ProcScanner,
    Runtime,
    _iso,
)
from kubepki.restarts._served import (
    SERVING_FLAGS,
    CheckStatus,
    Ports,
    ServedCheck,
    check_served,
    serving_cert_path,
    serving_endpoint,
)
from kubepki.restarts.methods import kubelet_method, restart_method, systemctl_restart_kubelet

__all__ = [
    "HELD_MANIFESTS_DIR",
    "Action",
    "Changed",
    "Detection",
    "FromDetection",
    "FromRenewal",
    "Method",
    "Policy",
    "Progress",
    "Reason",
    "ReasonKind",
    "RestartPlan",
    "RestartReport",
    "RestartSource",
    "RestartStep",
    "SourceKind",
    "StaleKind",
    "Staleness",
    "StepOutcome",
    "StepStatus",
    "Timeouts",
    "action_for",
    "apply_restarts",
    "detect",
    "detect_stale",
    "plan_restarts",
    "reload_deadline",
    "systemctl_restart_kubelet",
]

_STATIC_PODS = frozenset(MANIFEST_FILES)
_USERS = (Component.KUBECTL, Component.KUBEADM, Component.ETCDCTL)
_CA_EMBEDDING = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf")
# After client-go's periodic check closes the old connection, the next request reconnects at once.
_RELOAD_MARGIN = dt.timedelta(seconds=5)


class Policy(str, enum.Enum):
    """How eagerly a plan restarts."""

    #: Restart every daemon that reads a changed file.
    SAFE = "safe"
    #: Restart only daemons that read a changed file once at start; wait for or verify the rest.
    MINIMAL = "minimal"


class Action(str, enum.Enum):
    """What a step does."""

    RESTART = "restart"
    #: Wait, for a bounded time, until the component picks the file up by itself.
    WAIT = "wait"
    #: Check that the component picked the file up by itself.
    VERIFY = "verify"
    #: Nothing to run; something for a person to know or do.
    NOTE = "note"


class ReasonKind(str, enum.Enum):
    """Where a reason comes from."""

    #: The caller named the artifact as changed.
    CHANGED = "changed"
    #: A renewal result wrote it.
    RENEWED = "renewed"
    #: Detected: the component started before the file's last write.
    WRITTEN_AFTER_START = "written-after-start"
    #: Detected: the component serves a certificate other than the file.
    SERVED_MISMATCH = "served-mismatch"


@attrs.frozen(kw_only=True)
class Reason:
    """Why a step exists: one catalog artifact read by the step's component through one flag."""

    #: The catalog name (``front-proxy-client``), or a node path outside the catalog.
    name: str
    #: The consumer's flag or config field (``--proxy-client-cert-file``).
    flag: str
    #: How the component picks the artifact up on this node's Kubernetes version.
    reload: Reload
    #: The artifact's node paths.
    paths: tuple[str, ...] = ()
    #: What was observed, for detected reasons.
    detail: str = ""
    kind: ReasonKind = ReasonKind.CHANGED

    def __str__(self) -> str:
        return f"{self.name} ({self.flag}, {self.reload.value})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "flag": self.flag, "reload": self.reload.value,
                "paths": list(self.paths), "detail": self.detail, "kind": self.kind.value}


@attrs.frozen(kw_only=True)
class RestartStep:
    """One step of a plan: restart, wait, verify or note, for one component of one node."""

    node: str | None
    component: Component
    action: Action
    method: Method
    reasons: tuple[Reason, ...]
    #: Plain words for a person (what to do for a note, what a verify or wait relies on).
    note: str = ""
    #: For a wait step: the longest the component may take to pick the files up, in seconds.
    wait_seconds: float | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The distinct catalog names behind this step, in order."""
        return tuple(dict.fromkeys(r.name for r in self.reasons))

    def describe(self) -> str:
        """The reasons grouped per artifact: ``apiserver: --tls-cert-file (hot-fsnotify)``."""
        return "; ".join(_group_reasons(self.reasons))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "node": self.node,
            "component": self.component.value,
            "action": self.action.value,
            "method": self.method.value,
            "reasons": [r.to_dict() for r in self.reasons],
            "note": self.note,
            "wait_seconds": self.wait_seconds,
        }


def _group_reasons(reasons: Sequence[Reason]) -> list[str]:
    groups: dict[tuple[str, Reload], list[str]] = {}
    for r in reasons:
        flags = groups.setdefault((r.name, r.reload), [])
        if r.flag not in flags:
            flags.append(r.flag)
    return [f"{name}: {', '.join(flags)} ({reload.value})" for (name, reload), flags in groups.items()]


class StaleKind(str, enum.Enum):
    """Why a component is stale."""

    #: It started before the newest write of a file it reads.
    STARTED_BEFORE_WRITE = "started-before-write"
    #: It serves a certificate other than the one on disk.
    SERVED_MISMATCH = "served-mismatch"


@attrs.frozen(kw_only=True)
class Staleness:
    """A component instance that may not use what is on disk."""

    node: str | None
    component: Component
    kind: StaleKind
    reasons: tuple[Reason, ...]
    message: str
    instance: Instance | None = None

    @property
    def restart_needed(self) -> bool:
        """True when only a restart fixes it.

        A served mismatch proves the component kept the old certificate. A file
        written after the start is proof only when the component reads it once;
        for a file the component reloads by itself it is expected, and the served
        certificate is the evidence that counts.
        """
        if self.kind is StaleKind.SERVED_MISMATCH:
            return True
        return any(r.reload.needs_restart for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "node": self.node,
            "component": self.component.value,
            "kind": self.kind.value,
            "restart_needed": self.restart_needed,
            "message": self.message,
            "reasons": [r.to_dict() for r in self.reasons],
            "instance": self.instance.to_dict() if self.instance else None,
        }


@attrs.frozen(kw_only=True)
class Detection:
    """What :func:`detect` observed and compared on one node."""

    node: str | None
    #: Every component instance seen.
    instances: tuple[Instance, ...]
    #: Every served-certificate comparison made.
    served: tuple[ServedCheck, ...]
    #: Every staleness found, whether a restart is needed or not.
    stale: tuple[Staleness, ...]
    notes: tuple[str, ...] = ()

    @property
    def restart_needed(self) -> tuple[Staleness, ...]:
        """The staleness that only a restart fixes."""
        return tuple(s for s in self.stale if s.restart_needed)

    @property
    def relying_on_reload(self) -> tuple[Staleness, ...]:
        """Files written after a start that the component is expected to reload by itself."""
        return tuple(s for s in self.stale if not s.restart_needed)

    @property
    def unchecked(self) -> tuple[ServedCheck, ...]:
        """The served-certificate comparisons that could not be made (endpoint unreachable, no file)."""
        return tuple(c for c in self.served if c.matches is None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "node": self.node,
            "instances": [i.to_dict() for i in self.instances],
            "served": [c.to_dict() for c in self.served],
            "stale": [s.to_dict() for s in self.stale],
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """One line per instance, comparison and staleness, for reports."""
        return [text for text, _ in self.toned_lines()]

    def toned_lines(self) -> list[tuple[str, str | None]]:
        """:meth:`lines`, each with the tone it is shown in (see :data:`kubepki._report.TONES`)."""
        out: list[tuple[str, str | None]] = [
            (f"running: {i.component.value} ({i.source} {i.ident}) since {_iso(i.started_at)}", "dim")
            for i in self.instances]
        out += [(f"served: {c.status.value}: {c.message}", _CHECK_TONES[c.status]) for c in self.served]
        matched = {c.component for c in self.served if c.status is CheckStatus.MATCH}
        for s in self.stale:
            if s.restart_needed:
                out.append((f"STALE: {s.message}", "error"))
            else:
                seen = " (its served certificate matches the disk)" if s.component in matched else ""
                out.append((f"relies on reload: {s.message}{seen}", "ok" if seen else "warning"))
        out += [(f"note: {n}", "info") for n in self.notes]
        return out


_CHECK_TONES = {CheckStatus.MATCH: "ok", CheckStatus.MISMATCH: "error", CheckStatus.UNAVAILABLE: "warning",
                CheckStatus.NO_DISK_CERTIFICATE: "warning"}


# --------------------------------------------------------------------------------------
# Detection


def _observer(node: Node, proc: str | os.PathLike[str], observer: Observer | None,
              runtime: Runtime | None) -> Observer:
    """``observer``, else this node's processes in ``proc``; plus ``runtime``'s containers when given."""
    base: Observer = observer if observer is not None else ProcScanner(proc, node=node)
    if runtime is None or runtime is base:
        return base
    return CombinedObserver(base, runtime)


def _applicable(node: Node) -> list[CatalogEntry]:
    p = node.profile
    return list(p.entries())


def _reads(instance: Instance, consumer: Consumer) -> bool:
    """Whether ``instance`` reads the consumer's file: by its flags when known."""
    if not consumer.flag.startswith("--") or not instance.flags:
        return True  # config-file fields, or a runtime that shows no flags
    return bool(instance.flags.get(consumer.flag[2:]))


def detect(
    node: Node | str | os.PathLike[str],
    *,
    proc: str | os.PathLike[str] = "/proc",
    observer: Observer | None = None,
    runtime: Runtime | None = None,
    served_host: str | None = None,
    ports: Ports | None = None,
    served: bool = True,
    timeout: float = 3.0,
) -> Detection:
    """Observe ``node``'s components and compare them with its files.

    Instances come from ``observer`` (default: a :class:`~kubepki.restarts.ProcScanner`
    on ``proc`` that keeps only the processes of this node, see there) plus
    ``runtime`` when given. A component is stale when it started before the
    newest write of a file it reads (modification times as
    :func:`kubepki.inspect` reports them, allowing for the start time's
    precision), or when its TLS endpoint serves a certificate other than the one
    on disk. Files the kubelet manages itself (``kubelet-managed``: ``kubelet.conf``,
    its rotated client certificate) never count by their modification time, nor
    does a serving pair read once at start that the endpoint is seen serving.
    Endpoints are those :func:`~kubepki.restarts.serving_endpoint` finds
    (the running instance's flags, the manifests, the kubelet's configuration);
    ``served_host`` and ``ports`` override them. Served certificates are checked
    for components seen running and for those named in ``ports``; an endpoint
    that cannot be reached is listed in :attr:`Detection.unchecked`.
    """
    node = Node.coerce(node)
    return _detect(node, FromDetection(proc=proc, observer=observer, runtime=runtime, served_host=served_host,
                                       ports=ports, timeout=timeout), served=served)


def _detect(node: Node, how: FromDetection, *, served: bool = True) -> Detection:
    obs = _observer(node, how.proc, how.observer, how.runtime)
    instances = tuple(sorted(obs.instances(), key=lambda i: (COMPONENT_ORDER.index(i.component), i.started_at)))
    notes = [f"not this node's or not readable: {why}" for why in getattr(obs, "skipped", ())]
    checks: list[ServedCheck] = []
    served_stale: list[Staleness] = []
    if served:
        checks, served_stale, served_notes = _served_checks(node, instances, how)
        notes += served_notes
    # A serving file the endpoint is seen serving is in use, whatever its mtime says.
    in_use = {c.component: c.path for c in checks if c.status is CheckStatus.MATCH and c.path}
    times = _file_times(node) if instances else {}
    stale = [s for inst in instances
             for s in _written_after_start(node, inst, times=times, serving=in_use.get(inst.component))]
    stale += served_stale
    return Detection(node=node.profile.name, instances=instances, served=tuple(checks), stale=tuple(stale),
                     notes=tuple(notes))


def _file_times(node: Node) -> dict[str, list[tuple[str, float]]]:
    """Per catalog name, the (path, mtime) of each of its files on the node."""
    from kubepki.inspection import inspect

    inv = inspect(node, names=[e.name for e in _applicable(node)])
    return {item.name: [(f.path, f.mtime) for f in item.files
                        if f.exists and f.mtime is not None and f.role != "referenced"] for item in inv}


def _written_after_start(node: Node, inst: Instance, *, times: Mapping[str, list[tuple[str, float]]],
                         serving: str | None = None) -> list[Staleness]:
    """The staleness of ``inst``: files it reads that were written after it started.

    ``serving`` is the node path of the serving certificate ``inst``'s endpoint was
    seen serving: its pair needs no restart whatever its modification time says.
    """
    version = node.profile.kubernetes_version
    mtimes = times
    reasons: list[Reason] = []
    for entry in _applicable(node):
        served_now = serving is not None and serving in _paths(node, entry)
        for consumer in entry.consumers_of(inst.component):
            reload = consumer.reload_for(version)
            if reload in (Reload.PER_INVOCATION, Reload.KUBELET_MANAGED):
                # The kubelet writes these itself after it starts: kubelet.conf in its TLS bootstrap
                # (pkg/kubelet/certificate/bootstrap LoadClientCert), the client PEM when it rotates it.
                continue
            if served_now and reload.needs_restart:
                # Read once at start, yet served: the component wrote it itself (the kubelet self-signs
                # kubelet.crt when none exists, cmd/kubelet/app/server.go InitializeTLS) or it was
                # rewritten unchanged. A hot-reloaded pair stays listed as relying on reload, proven so.
                continue
            files = mtimes.get(entry.name, [])
            if entry.kind is Kind.KEYPAIR and (named := inst.flags.get(consumer.flag[2:])):
                # sa.key and sa.pub are one item read by different flags: kube-controller-manager's
                # --service-account-private-key-file reads sa.key alone, so a newer sa.pub is not its
                files = [f for f in files if f[0] == named]
            if not files or not _reads(inst, consumer):
                continue
            path, newest = max(files, key=lambda f: f[1])
            if inst.started_at.timestamp() + inst.precision < newest:
                written = dt.datetime.fromtimestamp(newest, tz=dt.timezone.utc)
                reasons.append(Reason(
                    name=entry.name, flag=consumer.flag, reload=reload, paths=(path,),
                    kind=ReasonKind.WRITTEN_AFTER_START,
                    detail=f"{path} written {_iso(written)}, after the start at {_iso(inst.started_at)}",
                ))
    if not reasons:
        return []
    names = ", ".join(dict.fromkeys(r.name for r in reasons))
    return [Staleness(
        node=node.profile.name, component=inst.component, kind=StaleKind.STARTED_BEFORE_WRITE,
        reasons=tuple(reasons), instance=inst,
        message=f"{inst.component.value} ({inst.source} {inst.ident}) started at "
                f"{_iso(inst.started_at)}, before {names} was last written",
    )]


def _served_checks(node: Node, instances: Sequence[Instance], how: FromDetection,
                   ) -> tuple[list[ServedCheck], list[Staleness], list[str]]:
    """Each running (or named) component's served certificate against its file."""
    overrides = {Component(k): v for k, v in (how.ports or {}).items()}
    seen: dict[Component, Instance] = {}
    for inst in instances:
        seen.setdefault(inst.component, inst)
    checks: list[ServedCheck] = []
    stale: list[Staleness] = []
    notes: list[str] = []
    for comp in COMPONENT_ORDER:
        running = seen.get(comp)
        if running is None and comp not in overrides:
            continue
        flags = running.flags if running is not None else None
        cert_path = serving_cert_path(node, comp, flags)
        if cert_path is None:
            continue
        try:
            if node.fs.stat(cert_path) is None:
                notes.append(f"{comp.value}: no serving certificate at {cert_path} to compare with")
                continue
        except KubepkiError as exc:
            notes.append(f"{comp.value}: {exc}")
            continue
        host, port = serving_endpoint(node, comp, flags, host=how.served_host, port=overrides.get(comp))
        check = check_served(node, comp, host=host, port=port, timeout=how.timeout, flags=flags)
        checks.append(check)
        if check.status is CheckStatus.MISMATCH:
            stale.append(Staleness(
                node=node.profile.name, component=comp, kind=StaleKind.SERVED_MISMATCH,
                reasons=(_serving_reason(node, comp, str(cert_path), check.message),),
                instance=running, message=check.message,
            ))
    return checks, stale, notes


def detect_stale(
    node: Node | str | os.PathLike[str],
    *,
    proc: str | os.PathLike[str] = "/proc",
    served_host: str | None = None,
    ports: Ports | None = None,
    runtime: Runtime | None = None,
    observer: Observer | None = None,
    timeout: float = 3.0,
) -> list[Staleness]:
    """The staleness :func:`detect` finds on ``node`` (see there for the arguments)."""
    node = Node.coerce(node)
    return list(detect(node, proc=proc, served_host=served_host, ports=ports, runtime=runtime,
                       observer=observer, timeout=timeout).stale)


def _serving_reason(node: Node, comp: Component, path: str, detail: str) -> Reason:
    version = node.profile.kubernetes_version
    flag = f"--{SERVING_FLAGS[comp]}"
    for entry in _applicable(node):
        if any(str(node.dir_for(entry.location) / f.path) == path for f in entry.files):
            consumer = next(iter(entry.consumers_of(comp)), None)
            reload = consumer.reload_for(version) if consumer else Reload.RESTART
            return Reason(name=entry.name, flag=consumer.flag if consumer else flag, reload=reload,
                          paths=(path,), detail=detail, kind=ReasonKind.SERVED_MISMATCH)
    return Reason(name=path, flag=flag, reload=Reload.RESTART, paths=(path,), detail=detail,
                  kind=ReasonKind.SERVED_MISMATCH)


# --------------------------------------------------------------------------------------
# Sources


class SourceKind(str, enum.Enum):
    """Which kind of source a plan was made from."""

    CHANGED = "changed"
    RENEWAL = "renewal"
    DETECT = "detect"


def _names(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(dict.fromkeys(str(n) for n in value))


@attrs.frozen
class Changed:
    """Source: catalog names whose files changed (``Changed(["apiserver", "admin.conf"])``)."""

    names: tuple[str, ...] = attrs.field(converter=_names)


class RenewalLike(Protocol):
    """Anything with the catalog names a renewal changed (such as :class:`kubepki.RenewalResult`)."""

    @property
    def changed(self) -> Iterable[str]:
        """The catalog names written."""
        ...


@attrs.frozen
class FromRenewal:
    """Source: what a renewal (or a restore) changed.

    ``result`` is an object with ``.changed`` (and optionally ``.node`` or
    ``.node_name`` and ``.files``, such as :class:`kubepki.RenewalResult`, or
    ``.written`` and ``.plan``, such as :class:`kubepki.backups.RestoreResult`), a
    mapping with those keys, or the path of a JSON file holding one (``kubepki
    renew ... -o json``, ``kubepki restore FILE --apply -o json``). Written files
    not named in ``changed`` are mapped to their catalog names.
    """

    result: RenewalLike | Mapping[str, Any] | str | os.PathLike[str]


@attrs.frozen(kw_only=True)
class FromDetection:
    """Source: what :func:`detect` finds stale now, observed as :func:`detect` describes.

    A served mismatch is restarted under either policy: it proves the component
    did not reload.
    """

    proc: str | os.PathLike[str] = "/proc"
    observer: Observer | None = None
    runtime: Runtime | None = None
    served_host: str | None = None
    ports: Ports | None = None
    timeout: float = 3.0


#: The one source :func:`plan_restarts` plans from.
RestartSource = Changed | FromRenewal | FromDetection


# --------------------------------------------------------------------------------------
# Planning


@attrs.frozen(kw_only=True)
class RestartPlan(Report):
    """The restarts one change needs on one node: an immutable, printable value.

    Its :attr:`outcome` is ok (a plan only says what is to be done), or incomplete for a
    ``detect`` plan that observed no running component.
    """

    #: The node the plan was made for; :func:`apply_restarts` acts on it.
    target: Node = attrs.field(eq=False, repr=False)
    node: str | None
    root: str
    kubernetes_version: str
    policy: Policy
    method: Method
    #: ``changed``, ``renewal`` or ``detect``.
    source: SourceKind
    #: The catalog names that changed (or were found stale).
    changed: tuple[str, ...]
    steps: tuple[RestartStep, ...]
    notes: tuple[str, ...] = ()
    #: The staleness a ``detect`` plan was made from.
    stale: tuple[Staleness, ...] = ()
    planned_at: dt.datetime
    #: The longest the caller accepted to wait for a component's own reload (None: as long as it takes).
    max_wait: float | None = None
    #: How many running component instances a ``detect`` plan observed (None for the other sources).
    observed: int | None = None

    def __iter__(self) -> Iterator[RestartStep]:
        return iter(self.steps)

    @property
    def outcome(self) -> Outcome:
        """Ok (a plan only says what is to be done), except a ``detect`` plan that observed nothing: incomplete,
        since "nothing to restart" would only mean kubepki could not look."""
        return Outcome.INCOMPLETE if self.observed == 0 else Outcome.OK

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        def names(action: Action) -> str:
            return ",".join(s.component.value for s in self.steps if s.action is action) or "-"

        return (f"<RestartPlan node={self.node!r} policy={self.policy.value} method={self.method.value} "
                f"restart={names(Action.RESTART)} verify={names(Action.VERIFY)} "
                f"notes={sum(s.action is Action.NOTE for s in self.steps) + len(self.notes)}>")

    @property
    def restarts(self) -> tuple[RestartStep, ...]:
        """The restart steps, in order."""
        return tuple(s for s in self.steps if s.action is Action.RESTART)

    @property
    def waits(self) -> tuple[RestartStep, ...]:
        """The wait steps, in order."""
        return tuple(s for s in self.steps if s.action is Action.WAIT)

    @property
    def verifies(self) -> tuple[RestartStep, ...]:
        """The verify steps, in order."""
        return tuple(s for s in self.steps if s.action is Action.VERIFY)

    def step(self, component: Component | str) -> RestartStep | None:
        """The restart or verify step of ``component``, if any."""
        comp = Component(component)
        return next((s for s in self.steps if s.component is comp and s.action is not Action.NOTE), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see ``docs/restarts.md``)."""
        return {
            "node": self.node,
            "root": self.root,
            "kubernetes_version": self.kubernetes_version,
            "policy": self.policy.value,
            "method": self.method.value,
            "source": self.source.value,
            "max_wait": self.max_wait,
            "changed": list(self.changed),
            "planned_at": _iso(self.planned_at),
            "steps": [s.to_dict() for s in self.steps],
            "notes": list(self.notes),
            "stale": [s.to_dict() for s in self.stale],
            "observed": self.observed,
        }

    def rows(self) -> Table:
        """One row per step (its reasons one per line, its note), then the plan's own notes."""
        rows: list[list[Cell | str]] = [
            [str(i), s.node or "?", Cell(s.component.value, strong=True), Cell(s.action.value, _ACTION_TONES[s.action]),
             s.method.value, "\n".join(_group_reasons(s.reasons)), s.note]
            for i, s in enumerate(self.steps, 1)]
        rows += [["", self.node or "?", "", Cell("note", "info"), "", "", n] for n in self.notes]
        return Table(self._heading(), ("#", "NODE", "COMPONENT", "ACTION", "METHOD", "REASONS", "NOTE"), rows)

    def blocks(self) -> list[Block]:
        """The heading, the steps as a table (reasons on one line), then every note."""
        table = self.rows()
        steps = [(*r[:5], Cell("; ".join(r[5].text.split("\n")))) for r in table.rows[:len(self.steps)]]
        out: list[Block] = [Line([table.title]), Line([])]
        out.append(attrs.evolve(table, title="", columns=table.columns[:6], rows=steps) if steps
                   else Line([Cell("nothing observed: nothing could be judged stale", "warning")])
                   if self.observed == 0 else Line(["nothing to restart"]))
        extra = [f"{s.component.value}: {s.note}" for s in self.steps if s.note] + list(self.notes)
        if extra:
            out += [Line([]), Line(["notes:"]), *(Line([f"  - {n}"]) for n in extra)]
        return out

    def _heading(self) -> str:
        from kubepki.versions import describe_version  # the profile the plan was made from, cached

        version = describe_version(self.kubernetes_version, self.target.profile.version_source)
        return (f"restart plan for node {self.node or '?'} ({version}, "
                f"policy {self.policy.value}, method {self.method.value}, from {self.source.value})")

    def table(self) -> str:
        """The steps as an aligned text table, then the notes."""
        return self.text()


_ACTION_TONES = {Action.RESTART: "strong", Action.WAIT: "info", Action.VERIFY: "info", Action.NOTE: "dim"}


_USER_NOTES = {
    Component.KUBECTL: "read on each kubectl run: no restart; refresh copies such as ~/.kube/config "
                       "(cp /etc/kubernetes/admin.conf ~/.kube/config)",
    Component.KUBEADM: "read on each kubeadm run: no restart",
    Component.ETCDCTL: "read on each etcdctl run: no restart; refresh copies used by scripts",
}
_KUBELET_NOTE = "the kubelet rotates and reloads kubelet-client-current.pem itself: no restart"
_PLANNED_METHODS = (Method.MANIFEST, Method.DOCKER, Method.CRI)


def _as_policy(value: Policy | str) -> Policy:
    try:
        return Policy(value)
    except ValueError:
        raise ConfigError(f"unknown restart policy {value!r} (known: safe, minimal)") from None


def _as_method(value: Method | str) -> Method:
    try:
        method = Method(value)
    except ValueError:
        method = Method.NONE
    if method not in _PLANNED_METHODS:
        raise ConfigError(f"unknown restart method {value!r} for static pods "
                          f"(known: {', '.join(m.value for m in _PLANNED_METHODS)})")
    return method


#: The largest renewal or restore result read from a file (one is a few KiB per item).
_MAX_RESULT = 16 << 20


def _renewal_fields(renewal: Any) -> tuple[list[str], list[str], str | None, str | None]:
    """(changed names, written paths, node, where) from a renewal result, mapping or JSON file."""
    where = None
    if isinstance(renewal, str | os.PathLike):
        where = os.fspath(renewal)
        try:
            data: Any = json.loads(read_regular(where, limit=_MAX_RESULT))  # a FIFO is refused, never read
        except OSError as exc:
            raise ConfigError(f"cannot read renewal result {where!r}: {exc.strerror or exc}", path=where) from None
        except ValueError as exc:
            raise ConfigError(f"renewal result {where!r} is not JSON: {exc}", path=where) from None
    else:
        data = renewal
    if isinstance(data, Mapping):
        changed, files = data.get("changed"), data.get("files", ())
        node = data.get("node") or data.get("node_name")
        if data.get("kind") == "RestoreResult" or (changed is None and "written" in data):
            # A restore's JSON (kubepki restore --apply -o json): its written paths count as changed too,
            # and a restore printed before it carried "changed" names its node in its plan.
            files = data.get("written", ())
            changed = () if changed is None else changed
            plan = data.get("plan")
            node = node or (plan.get("node") if isinstance(plan, Mapping) else None)
    elif hasattr(data, "changed"):
        changed = data.changed
        files = getattr(data, "files", None) or getattr(data, "written", ())
        node = getattr(data, "node", None) or getattr(data, "node_name", None)
        plan = getattr(data, "plan", None)
        node = node or getattr(plan, "node_name", None)
    else:
        raise ConfigError(f"{where or 'renewal'}: expected a renewal or restore result with 'changed'", path=where)
    if isinstance(changed, str | Mapping) or not isinstance(changed, Iterable):
        raise ConfigError(f"{where or 'renewal'}: 'changed' must be a list of catalog names", path=where)
    names = list(changed)
    files = [files] if isinstance(files, str) else files or ()
    if isinstance(files, Mapping) or not isinstance(files, Iterable):
        raise ConfigError(f"{where or 'renewal'}: 'files' and 'written' must be lists of node paths", path=where)
    paths = list(files)
    if not all(isinstance(n, str) for n in names) or not all(isinstance(p, str) for p in paths):
        # JSON is untrusted input: a number or an object where a name or a path belongs is refused, not str()-ed
        raise ConfigError(f"{where or 'renewal'}: catalog names and paths must be strings", path=where)
    node_name = node if isinstance(node, str) else getattr(node, "name", None)
    return names, paths, node_name, where


def _names_for_paths(node: Node, paths: Iterable[str]) -> list[str]:
    by_path = {str(node.dir_for(e.location) / f.path): e.name for e in _catalog.CATALOG for f in e.files}
    return [by_path[p] for p in paths if p in by_path]


@attrs.define
class _Demands:
    """Reasons gathered per action and component before they become steps."""

    by_action: dict[Action, dict[Component, list[Reason]]] = attrs.Factory(
        lambda: {action: {} for action in Action})

    def add(self, action: Action, comp: Component, reason: Reason) -> None:
        bucket = self.by_action[action].setdefault(comp, [])
        if reason not in bucket:
            bucket.append(reason)

    def get(self, action: Action, comp: Component) -> list[Reason]:
        return self.by_action[action].get(comp, [])


def action_for(component: Component, reload: Reload, name: str, policy: Policy | str, *,
               proven: bool = False, max_wait: float | None = None) -> Action:
    """What a plan does when ``component`` reads artifact ``name`` (reloading it as ``reload``).

    Non-daemons and per-invocation reads: a note. Kubelet-managed files: a note,
    except ``kubelet.conf`` itself, which the kubelet reads at start. Otherwise
    ``safe`` restarts, and ``minimal`` restarts what is read once at start (or
    what is ``proven`` stale, such as a served mismatch); a file picked up
    within a known delay (:attr:`Reload.pickup_delay <kubepki.Reload.pickup_delay>`)
    is waited for, unless ``max_wait`` (seconds) is shorter, which restarts; the
    rest is verified.
    """
    pol = _as_policy(policy)
    if not component.is_daemon or reload is Reload.PER_INVOCATION:
        return Action.NOTE
    if reload is Reload.KUBELET_MANAGED:
        # kubeadm hands kubelet.conf to the kubelet; a new one is read at start only.
        return Action.RESTART if name == "kubelet.conf" else Action.NOTE
    if proven or pol is Policy.SAFE or reload.needs_restart:
        return Action.RESTART
    delay = reload.pickup_delay
    if delay is not None:
        return Action.WAIT if max_wait is None or max_wait >= delay.total_seconds() else Action.RESTART
    return Action.VERIFY


def reload_deadline(started_at: dt.datetime | None, written_at: dt.datetime, period: dt.timedelta, *,
                    now: dt.datetime | None = None) -> dt.datetime:
    """When a component that checks its files every ``period`` uses a file written at ``written_at``.

    client-go's check runs every ``period`` counted from the process start, so
    the file is used after the first check following the write (plus a few
    seconds to reconnect). A process that started after the write read it at
    start: ``now``. An unknown start time means a whole period from ``now``.
    """
    when = _utc(now)
    if started_at is None:
        return when + period + _RELOAD_MARGIN
    if written_at <= started_at:
        return when
    checks = math.ceil((written_at - started_at) / period)
    return started_at + checks * period + _RELOAD_MARGIN


def _paths(node: Node, entry: CatalogEntry) -> tuple[str, ...]:
    return tuple(str(node.dir_for(entry.location) / f.path) for f in entry.files)


def plan_restarts(
    node: Node | str | os.PathLike[str],
    source: RestartSource,
    *,
    policy: Policy | str = Policy.SAFE,
    method: Method | str = Method.MANIFEST,
    max_wait: float | None = None,
    proc: str | os.PathLike[str] | None = None,
    now: dt.datetime | None = None,
) -> RestartPlan:
    """Plan the restarts ``node`` needs after ``source``: :class:`Changed`, :class:`FromRenewal` or detection.

    :class:`FromDetection` plans from what :func:`detect` finds stale now.

    ``method`` (``manifest``, ``docker`` or ``cri``) is how static pods will be
    restarted. The kubelet's method comes from what runs it on this node
    (:func:`~kubepki.restarts.methods.kubelet_method`, looking at ``proc``,
    default the detection source's or ``/proc``): ``systemd`` or ``signal``.
    ``max_wait`` is how many seconds the caller accepts waiting for a component
    to pick a file up by itself under ``minimal`` (None: as long as it takes,
    at most 5 minutes); a longer pickup becomes a restart, and the step's note
    says why.

    Raises :class:`~kubepki.ConfigError` for a source of another type, unknown
    names, policies or methods, and a renewal result made for another node.
    """
    node = Node.coerce(node)
    if not isinstance(source, Changed | FromRenewal | FromDetection):
        raise ConfigError(f"plan_restarts needs a Changed, FromRenewal or FromDetection source, "
                          f"not {type(source).__name__}")
    if max_wait is not None and max_wait < 0:
        raise ConfigError(f"max_wait must be zero or more seconds, not {max_wait!r}")
    pol, meth = _as_policy(policy), _as_method(method)
    when = _utc(now)
    demands = _Demands()
    notes: list[str] = []
    stale: tuple[Staleness, ...] = ()
    observed: int | None = None
    if isinstance(source, FromDetection):
        kind = SourceKind.DETECT
        names, stale, observed = _plan_detected(node, source, demands, policy=pol, max_wait=max_wait, notes=notes)
    else:
        kind = SourceKind.CHANGED if isinstance(source, Changed) else SourceKind.RENEWAL
        names = _source_names(node, source)
        reason_kind = ReasonKind.CHANGED if isinstance(source, Changed) else ReasonKind.RENEWED
        _plan_named(node, names, reason_kind, demands, policy=pol, max_wait=max_wait, notes=notes)
    where = proc if proc is not None else (source.proc if isinstance(source, FromDetection) else "/proc")
    steps = _steps(node, demands, method=meth, policy=pol, max_wait=max_wait, proc=where)
    return RestartPlan(
        target=node, node=node.profile.name, root=str(node.root),
        kubernetes_version=str(node.profile.kubernetes_version), policy=pol, method=meth, source=kind,
        changed=tuple(names), steps=tuple(steps), notes=tuple(dict.fromkeys(notes)), stale=stale,
        planned_at=when, max_wait=max_wait, observed=observed,
    )


def _source_names(node: Node, source: Changed | FromRenewal) -> list[str]:
    if isinstance(source, Changed):
        return list(source.names)
    names, paths, renewal_node, where = _renewal_fields(source.result)
    name = node.profile.name
    if renewal_node and name and renewal_node != name:
        raise ConfigError(f"the renewal result is for node {renewal_node!r}, not {name!r}",
                          node=renewal_node, path=where)
    return list(dict.fromkeys([*names, *_names_for_paths(node, paths)]))


def _plan_detected(node: Node, source: FromDetection, demands: _Demands, *, policy: Policy,
                   max_wait: float | None, notes: list[str]) -> tuple[list[str], tuple[Staleness, ...], int]:
    found = _detect(node, source)
    names: list[str] = []
    for s in found.stale:
        for r in s.reasons:
            names.append(r.name)
            action = action_for(s.component, r.reload, r.name, policy, max_wait=max_wait,
                                proven=s.kind is StaleKind.SERVED_MISMATCH)
            demands.add(action, s.component, r)
    notes.extend(found.notes)
    if not found.instances:
        notes.append("no running control-plane component of this node was observed: check the proc "
                     "directory and the container runtime given")
    return list(dict.fromkeys(names)), found.stale, len(found.instances)


def _plan_named(node: Node, names: Sequence[str], kind: ReasonKind, demands: _Demands, *, policy: Policy,
                max_wait: float | None, notes: list[str]) -> None:
    profile = node.profile
    version = profile.kubernetes_version
    for name in names:
        entry = _catalog.get(name)  # UnknownItemError (a ConfigError) for typos
        if not profile.has(entry):
            notes.append(f"{name} does not apply to this node (a {profile.role.value} node, Kubernetes {version}"
                         f"{', external etcd' if profile.external_etcd else ''}): ignored")
            continue
        for consumer in entry.consumers:
            reason = Reason(name=name, flag=consumer.flag, reload=consumer.reload_for(version),
                            paths=_paths(node, entry), kind=kind)
            demands.add(action_for(consumer.component, reason.reload, name, policy, max_wait=max_wait),
                        consumer.component, reason)
        notes.extend(_change_notes(entry, version))


def _change_notes(entry: CatalogEntry, version: Any) -> list[str]:
    if entry.name == "ca":
        confs = [n for n in _CA_EMBEDDING if _catalog.get(n).applies(version)]
        return [f"{', '.join(confs)} embed ca.crt: they trust the old CA until it is re-embedded "
                "(kubeadm certs renew re-embeds it, kubernetes/kubeadm#2027; kubelet.conf is not renewed "
                "by kubeadm); every certificate the old CA signed must be reissued"]
    if entry.kind is Kind.CA:
        return [f"every certificate the old {entry.name} signed must be reissued and rolled out too"]
    if entry.name == "sa":
        return ["service account tokens signed with the old sa.key stop validating once kube-apiserver "
                "runs with the new sa.pub; sa.key and sa.pub must be identical on every control-plane node"]
    return []


def _delay_words(reasons: Sequence[Reason]) -> tuple[float, str]:
    """The longest pickup delay among ``reasons`` (seconds) and the artifacts behind it."""
    delays = [(r.reload.pickup_delay.total_seconds(), r.name) for r in reasons if r.reload.pickup_delay]
    seconds = max((d for d, _ in delays), default=0.0)
    return seconds, ", ".join(dict.fromkeys(n for d, n in delays if d == seconds))


def _restart_note(node: Node, comp: Component, how: Method, restart: Sequence[Reason],
                  max_wait: float | None) -> str:
    notes = []
    if how is Method.MANIFEST and comp.value in _STATIC_PODS and comp.value not in node.profile.manifests:
        notes.append(f"no static pod manifest for {comp.value} was found on this node")
    delayed = [r for r in restart if r.reload.pickup_delay is not None and not r.reload.needs_restart]
    if delayed and max_wait is not None:
        seconds, names = _delay_words(delayed)
        notes.append(f"restart rather than wait up to {seconds:g}s for {comp.value} to pick up {names} by itself "
                     f"(max_wait {max_wait:g}s)")
    return "; ".join(notes)


def _steps(node: Node, d: _Demands, *, method: Method, policy: Policy, max_wait: float | None,
           proc: str | os.PathLike[str]) -> list[RestartStep]:
    node_name = node.profile.name
    steps: list[RestartStep] = []
    for comp in COMPONENT_ORDER:
        restart, wait, verify = (d.get(Action.RESTART, comp), d.get(Action.WAIT, comp),
                                 d.get(Action.VERIFY, comp))
        if restart:
            how = kubelet_method(node, proc)[0] if comp is Component.KUBELET else method
            steps.append(RestartStep(node=node_name, component=comp, action=Action.RESTART, method=how,
                                     reasons=tuple(restart + wait + verify),
                                     note=_restart_note(node, comp, how, restart, max_wait)))
        elif wait:
            seconds, names = _delay_words(wait)
            steps.append(RestartStep(
                node=node_name, component=comp, action=Action.WAIT, method=Method.NONE,
                reasons=tuple(wait + verify), wait_seconds=seconds + _RELOAD_MARGIN.total_seconds(),
                note=f"{comp.value} picks up {names} by itself within {seconds:g}s (client-go re-reads client "
                     f"certificate files every {seconds / 60:g} minutes, CertCallbackRefreshDuration): "
                     "applying waits for that instead of restarting"))
        elif verify:
            reloads = ", ".join(dict.fromkeys(r.reload.value for r in verify))
            note = f"relies on {reloads} reload ({policy.value} policy)"
            per_connection = [r.name for r in verify if r.reload is Reload.PER_CONNECTION]
            if per_connection:
                note += (f"; {', '.join(dict.fromkeys(per_connection))}: new connections use the new file, "
                         "connections open now keep the old one until they close (a restart closes them)")
            steps.append(RestartStep(node=node_name, component=comp, action=Action.VERIFY, method=Method.NONE,
                                     reasons=tuple(verify), note=note))
    kubelet_notes = d.get(Action.NOTE, Component.KUBELET)
    if kubelet_notes:
        steps.append(RestartStep(node=node_name, component=Component.KUBELET, action=Action.NOTE,
                                 method=Method.NONE, reasons=tuple(kubelet_notes), note=_KUBELET_NOTE))
    for comp in _USERS:
        reasons = d.get(Action.NOTE, comp)
        if reasons:
            steps.append(RestartStep(node=node_name, component=comp, action=Action.NOTE, method=Method.NONE,
                                     reasons=tuple(reasons), note=_USER_NOTES[comp]))
    return steps


# --------------------------------------------------------------------------------------
# Execution


class StepStatus(str, enum.Enum):
    """What became of a step."""

    #: Dry run: what would be done.
    PLANNED = "planned"
    #: Restarted, running again, serving the on-disk certificate where it serves one.
    DONE = "done"
    #: A wait step whose component has passed its periodic reload since the files were written.
    WAITED = "waited"
    #: A verify step whose served certificate matches.
    VERIFIED = "verified"
    #: A verify step with nothing observable: the reload is taken on trust.
    UNVERIFIABLE = "unverifiable"
    #: A note.
    NOTED = "noted"
    FAILED = "failed"
    #: Not run because an earlier step failed.
    NOT_RUN = "not-run"


@attrs.frozen(kw_only=True)
class StepOutcome:
    """What happened to one step."""

    step: RestartStep
    status: StepStatus
    messages: tuple[str, ...] = ()
    error: str | None = None
    #: Start time of the instance before and after the restart.
    before: dt.datetime | None = None
    after: dt.datetime | None = None
    served: ServedCheck | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "component": self.step.component.value,
            "action": self.step.action.value,
            "method": self.step.method.value,
            "status": self.status.value,
            "messages": list(self.messages),
            "error": self.error,
            "started_before": _iso(self.before) if self.before else None,
            "started_after": _iso(self.after) if self.after else None,
            "served": self.served.to_dict() if self.served else None,
            "seconds": round(self.seconds, 3),
        }


@attrs.frozen(kw_only=True)
class RestartReport(Report):
    """What :func:`apply_restarts` did and what it checked afterwards.

    Its :attr:`outcome` is failed when a step failed or something is still
    stale, a warning when an endpoint could not be checked, else ok.
    """

    node: str | None
    plan: RestartPlan = attrs.field(repr=False)
    dry_run: bool
    outcomes: tuple[StepOutcome, ...]
    #: The final check, None in a dry run or after a failed step.
    verification: Detection | None = None
    #: The backup taken before the first step (local path), None when none was taken.
    backup: str | None = None

    @property
    def failed(self) -> StepOutcome | None:
        """The step that failed, if one did."""
        return next((o for o in self.outcomes if o.status is StepStatus.FAILED), None)

    @property
    def remaining(self) -> tuple[Staleness, ...]:
        """Staleness that only a restart fixes, still there after the last step."""
        return self.verification.restart_needed if self.verification is not None else ()

    @property
    def ok(self) -> bool:
        """True when no step failed and nothing stale remains."""
        return self.failed is None and not self.remaining

    @property
    def unchecked(self) -> tuple[ServedCheck, ...]:
        """Endpoints the final check could not compare (unreachable, no file): nothing is known of them."""
        return self.verification.unchecked if self.verification is not None else ()

    @property
    def verified(self) -> bool:
        """True when :attr:`ok` and every endpoint of the final check was compared."""
        return self.ok and self.verification is not None and not self.unchecked

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.status.value] = counts.get(o.status.value, 0) + 1
        summary = " ".join(f"{k}={v}" for k, v in counts.items())
        return f"<RestartReport node={self.node!r} dry_run={self.dry_run} ok={self.ok} {summary}>"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "node": self.node,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "backup": self.backup,
            "plan": self.plan.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
            "verification": self.verification.to_dict() if self.verification else None,
            "remaining": [s.to_dict() for s in self.remaining],
            "unchecked": [c.to_dict() for c in self.unchecked],
            "verified": self.verified,
        }

    @property
    def outcome(self) -> Outcome:
        """Failed unless :attr:`ok`; a warning when an endpoint could not be checked (nothing is known of it)."""
        if not self.ok:
            return Outcome.FAILED
        return Outcome.WARNING if self.unchecked else Outcome.OK

    def rows(self) -> Table:
        """One row per step, then one per check of the final verification and the result."""
        rows: list[list[Cell | str]] = []
        for i, o in enumerate(self.outcomes, 1):
            detail = o.error or (o.messages[-1] if o.messages else o.step.describe())
            rows.append([str(i), Cell(o.step.component.value, strong=True), o.step.action.value,
                         o.step.method.value, Cell(o.status.value, _STATUS_TONES[o.status], badge=True), detail])
        checks = self.verification.toned_lines() if self.verification is not None else []
        rows += [["", "", "check", "", Cell(text.partition(": ")[0], tone), text.partition(": ")[2]]
                 for text, tone in checks]
        result = self._result()
        if result is not None:
            rows.append(["", "", "result", "", Cell(self.outcome.value, _OUTCOME_TONES[self.outcome], badge=True),
                         result[0]])
        title = "dry run: nothing was changed" if self.dry_run else "restarts applied"
        return Table(f"{title} on node {self.node or '?'} (policy {self.plan.policy.value})",
                     ("#", "COMPONENT", "ACTION", "METHOD", "STATUS", "DETAIL"), rows)

    def blocks(self) -> list[Block]:
        """What was done, step by step, then what was checked and the result."""
        table = self.rows()
        steps = table.rows[:len(self.outcomes)]
        out: list[Block] = [Line([table.title]), Line([]),
                            attrs.evolve(table, title="", rows=steps) if steps else Line(["no steps"])]
        if self.verification is not None:
            out += [Line([]), Line(["verification:"]),
                    *(Line(["  ", Cell(text, tone)]) for text, tone in self.verification.toned_lines())]
        result = self._result()
        if result is not None:
            out += [Line([]), Line(["result: ", Cell(*result)])]
        return out

    def _result(self) -> tuple[str, str] | None:
        """The result line and its tone: after the verification, or where a failed step stopped the run."""
        if self.verification is None:
            if self.failed is None:
                return None
            return f"stopped at {self.failed.step.component.value}: {self.failed.error}", "error"
        if self.remaining:
            return f"{len(self.remaining)} component(s) still stale", "error"
        if self.unchecked:
            return (f"could not check {len(self.unchecked)} endpoint(s): "
                    + "; ".join(c.message for c in self.unchecked)), "warning"
        return "every component uses what is on disk", "ok"

    def table(self) -> str:
        """What was done, step by step, then what was checked."""
        return self.text()


_STATUS_TONES = {
    StepStatus.PLANNED: "info", StepStatus.DONE: "ok", StepStatus.WAITED: "ok", StepStatus.VERIFIED: "ok",
    StepStatus.UNVERIFIABLE: "warning", StepStatus.NOTED: "dim", StepStatus.FAILED: "error",
    StepStatus.NOT_RUN: "dim",
}
_OUTCOME_TONES = {Outcome.OK: "ok", Outcome.WARNING: "warning", Outcome.FAILED: "error",
                  Outcome.INCOMPLETE: "missing"}


_DEFAULT_TIMEOUTS = Timeouts()


def apply_restarts(
    plan: RestartPlan,
    *,
    node: Node | str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    timeout: Timeouts | float = _DEFAULT_TIMEOUTS,
    runtime: Runtime | None = None,
    kubelet_restart: Callable[[], None] | None = None,
    observer: Observer | None = None,
    proc: str | os.PathLike[str] = "/proc",
    served_host: str | None = None,
    ports: Ports | None = None,
    take_backup: bool = True,
    backup_dir: str | os.PathLike[str] | None = None,
) -> RestartReport:
    """Carry ``plan`` out on the node it was made for, step by step.

    ``node`` (a :class:`~kubepki.Node` or a root path) replaces the plan's own
    node, for a node reached another way; it must be the same node. With
    ``dry_run=True`` nothing happens and the report says what would.

    Before the first restart a backup of the node (PKI, kubeconfigs and the
    static pod manifests the manifest method moves) goes to ``backup_dir``
    (default :func:`~kubepki.backups.default_backup_dir` on the node), unless
    ``take_backup=False``.

    Each restart step uses its method's implementation (:data:`~kubepki.restarts.methods.METHODS`):
    ``manifest`` holds the static pod manifest until the component is gone;
    ``docker`` and ``cri`` stop the container gracefully and remove it, through
    ``runtime`` (default: the node's Docker engine from ``DOCKER_HOST``, or the
    CRI runtime found from the node's sockets); ``systemd`` and ``signal``
    restart the kubelet (``kubelet_restart``, when given, instead). Each then
    waits for a new instance (``observer``, default this node's processes in
    ``proc``, plus ``runtime``) and, where the component serves TLS from a file,
    until it serves the on-disk certificate. Wait steps wait until the component
    has picked its files up by itself (:func:`reload_deadline`); verify steps
    wait until the served certificate matches, where that can be seen.
    ``progress(step, message)`` hears about every phase.

    The first failing step stops the run; its error is in the report (nothing is
    raised for it). After the last step, :func:`detect` checks that nothing
    stale remains, and the report lists every endpoint it could not reach.
    Raises :class:`~kubepki.ConfigError` for another node than the plan's and
    :class:`~kubepki.LockError` when another kubepki writes to the node.
    """
    instance(plan, RestartPlan, "plan", "from plan_restarts")
    target = plan.target if node is None else Node.coerce(node)
    if plan.node and target.profile.name and plan.node != target.profile.name:
        raise ConfigError(f"the plan is for node {plan.node!r}, not {target.profile.name!r}", node=plan.node)
    timeouts = Timeouts.coerce(timeout)
    if dry_run:
        outcomes = tuple(
            StepOutcome(step=s, status=StepStatus.NOTED if s.action is Action.NOTE else StepStatus.PLANNED,
                        messages=(_dry_message(s),))
            for s in plan.steps
        )
        return RestartReport(node=plan.node, plan=plan, dry_run=True, outcomes=outcomes)
    backup_path = _backup_first(plan, target, progress, take_backup=take_backup, backup_dir=backup_dir)
    owned: Runtime | None = None  # a runtime made here, closed at the end
    if runtime is None:
        for meth in dict.fromkeys(s.method for s in plan.restarts):
            runtime = owned = restart_method(meth).default_runtime(target)
            if runtime is not None:
                break
    ctx = RestartContext(
        node=target, observer=_observer(target, proc, observer, runtime), runtime=runtime, timeouts=timeouts,
        progress=progress, served_host=served_host, ports={Component(k): v for k, v in (ports or {}).items()},
        proc=proc, kubelet_restart=kubelet_restart,
    )
    try:
        return attrs.evolve(_apply(plan, ctx), backup=backup_path)
    finally:
        if owned is not None:
            owned.close()


def _backup_first(plan: RestartPlan, node: Node, progress: Progress | None, *, take_backup: bool,
                  backup_dir: str | os.PathLike[str] | None) -> str | None:
    if not take_backup or not plan.restarts:
        return None
    from kubepki.backups import backup, default_backup_dir

    dest = Path(backup_dir) if backup_dir is not None else default_backup_dir(node)
    path = str(backup(node, dest).path)  # creates dest and its parents 0700, whatever the umask
    if progress is not None:
        progress(plan.steps[0], f"backed up the node to {path}")
    return path


def _apply(plan: RestartPlan, ctx: RestartContext) -> RestartReport:
    from kubepki.node import node_lock

    results: list[StepOutcome] = []
    with node_lock(ctx.node):
        for index, step in enumerate(plan.steps):
            outcome = _run_step(ctx, step)
            results.append(outcome)
            if outcome.status is StepStatus.FAILED:
                results.extend(StepOutcome(step=s, status=StepStatus.NOT_RUN) for s in plan.steps[index + 1 :])
                return RestartReport(node=plan.node, plan=plan, dry_run=False, outcomes=tuple(results))
    verification = _detect(ctx.node, FromDetection(observer=ctx.observer, proc=ctx.proc, served_host=ctx.served_host,
                                                   ports=ctx.ports, timeout=min(5.0, ctx.timeouts.serve)))
    return RestartReport(node=plan.node, plan=plan, dry_run=False, outcomes=tuple(results),
                         verification=verification)


def _dry_message(step: RestartStep) -> str:
    if step.action is Action.NOTE:
        return step.note
    if step.action is Action.VERIFY:
        return f"would check that {step.component.value} picked up {', '.join(step.names)}"
    if step.action is Action.WAIT:
        return (f"would wait up to {step.wait_seconds or 0:g}s for {step.component.value} to pick up "
                f"{', '.join(step.names)} by itself")
    try:
        how = restart_method(step.method).describe(step.component)
    except ConfigError:
        how = ""
    return f"would restart {step.component.value} {how}".rstrip()


def _run_step(ctx: RestartContext, step: RestartStep) -> StepOutcome:
    ctx.step, ctx.messages = step, []
    started = time.monotonic()
    before: Instance | None = None
    after: Instance | None = None
    served: ServedCheck | None = None

    def outcome(status: StepStatus, error: str | None = None) -> StepOutcome:
        return StepOutcome(step=step, status=status, messages=tuple(ctx.messages), error=error,
                           before=before.started_at if before else None, after=after.started_at if after else None,
                           served=served, seconds=time.monotonic() - started)

    try:
        if step.action is Action.NOTE:
            ctx.say(step.note)
            return outcome(StepStatus.NOTED)
        if step.action is Action.WAIT:
            after = _wait_step(ctx, step)
            return outcome(StepStatus.WAITED)
        if step.action is Action.VERIFY:
            after = ctx.newest(step.component)
            served = _verify_step(ctx, step, after)
            return outcome(StepStatus.VERIFIED if served is not None else StepStatus.UNVERIFIABLE)
        before = ctx.newest(step.component)
        after = restart_method(step.method).restart(ctx, step.component, before)
        served = ctx.wait_served(step.component, after)
    except KubepkiError as exc:
        return outcome(StepStatus.FAILED, str(exc))
    return outcome(StepStatus.DONE)


def _verify_step(ctx: RestartContext, step: RestartStep, inst: Instance | None) -> ServedCheck | None:
    comp = step.component
    flags = inst.flags if inst is not None else None
    serving = serving_cert_path(ctx.node, comp, flags)
    if serving is not None and any(str(serving) in r.paths for r in step.reasons):
        return ctx.wait_served(comp, inst)
    ctx.say(f"{comp.value} is expected to reload {', '.join(step.names)} by itself; "
            "this cannot be observed from outside")
    return None


def _wait_step(ctx: RestartContext, step: RestartStep) -> Instance | None:
    """Wait until the component's periodic check has picked the step's files up."""
    comp = step.component
    inst = ctx.newest(comp)
    period = max((r.reload.pickup_delay for r in step.reasons if r.reload.pickup_delay is not None),
                 default=_catalog.CLIENT_CERT_CHECK_PERIOD)
    written = [st.mtime for r in step.reasons for p in r.paths
               if (st := ctx.node.fs.stat(PurePosixPath(p))) is not None]
    now = dt.datetime.now(dt.timezone.utc)
    written_at = dt.datetime.fromtimestamp(max(written), tz=dt.timezone.utc) if written else now
    deadline = reload_deadline(inst.started_at if inst is not None else None, written_at, period, now=now)
    seconds = min(max(0.0, (deadline - now).total_seconds()), step.wait_seconds or 0.0)
    if seconds <= 0:
        ctx.say(f"{comp.value} started after {', '.join(step.names)} was written: it uses the new files")
        return inst
    ctx.say(f"waiting {seconds:.0f}s, until {_iso(deadline)}, for {comp.value}'s periodic check to pick up "
            f"{', '.join(step.names)} (not observable from outside)")
    time.sleep(seconds)
    ctx.say(f"{comp.value} has passed its check since {', '.join(step.names)} was written")
    return inst
