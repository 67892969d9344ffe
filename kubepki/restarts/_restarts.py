"""Restarts: no renewed file left unused.

A renewed file helps nobody until the component that reads it has loaded it,
and static pods do not restart through ``kubectl delete pod``. The classic
outage: ``front-proxy-client`` renewed, kube-apiserver never restarted, and
aggregated APIs fail with "x509: certificate has expired or is not yet valid".
This module closes that gap in three steps, each a separate call:

1. :func:`detect` / :func:`detect_stale` observe the node: which component
   instances run and since when (:mod:`kubepki.restarts._observe`), which files they read
   and when those were last written (the catalog's consumers and
   :func:`kubepki.inspect`), and which certificate each TLS endpoint serves
   (:mod:`kubepki.restarts._served`).
2. :func:`plan_restarts` turns a renewal result, a list of changed catalog
   names, or detected staleness into an immutable :class:`RestartPlan`: per
   node, ordered steps for etcd, kube-apiserver, kube-controller-manager,
   kube-scheduler and the kubelet, each with the files that caused it.
3. :func:`apply_restarts` carries the plan out (dry-run by default), one step at
   a time, stops at the first failure, and finally verifies that nothing stale
   remains; the :class:`RestartReport` says what was done and what was checked.

>>> import datetime as dt, tempfile
>>> from kubepki import testing
>>> demo = testing.build_node(tempfile.mkdtemp(), issued_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
>>> plan = plan_restarts(demo.as_node(), changed=["front-proxy-client", "admin.conf"])
>>> [(s.component.value, s.action.value, s.method.value) for s in plan.steps]
[('kube-apiserver', 'restart', 'manifest'), ('kubectl', 'note', 'none'), ('kubeadm', 'note', 'none')]
>>> [(s.component.value, s.action.value) for s in plan_restarts(
...     demo.as_node(), changed=["front-proxy-client"], policy="minimal").steps]
[('kube-apiserver', 'verify')]

Policies. ``safe`` (the default) restarts every daemon that reads a changed
file. ``minimal`` restarts only where the catalog says the component reads the
file once (:attr:`~kubepki.Reload.RESTART`) and turns the rest into ``verify``
steps: the component is expected to reload by itself, and the served
certificate proves it where it can be observed. Files read per invocation
(``admin.conf``, ``super-admin.conf``, the etcd healthcheck client) never cause
a restart, only a note. The kubelet is restarted only for ``kubelet.conf`` and
the files it reads at start; its rotated client certificate is its own business.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import html
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from kubepki import catalog as _catalog
from kubepki._args import instance
from kubepki._clock import utc as _utc
from kubepki.catalog import CatalogEntry, Component, Consumer, Kind, Reload
from kubepki.errors import ConfigError, KubepkiError, NodeError, RestartError
from kubepki.node import MANIFEST_FILES, LocalFS, Node, fsync_dir
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
    DEFAULT_PORTS,
    SERVING_FLAGS,
    CheckStatus,
    Ports,
    ServedCheck,
    check_served,
    endpoint_port,
    serving_cert_path,
)

__all__ = [
    "HELD_MANIFESTS_DIR",
    "Action",
    "Detection",
    "Method",
    "Policy",
    "Reason",
    "RestartPlan",
    "RestartReport",
    "RestartStep",
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
    "systemctl_restart_kubelet",
]

#: Where the manifest method holds a manifest while its pod is stopped: beside the
#: manifests directory (so on the same filesystem, and a rename is atomic), never
#: inside it, since the kubelet runs every file it finds there.
HELD_MANIFESTS_DIR = "kubepki-held-manifests"

_STATIC_PODS = frozenset(MANIFEST_FILES)
_USERS = (Component.KUBECTL, Component.KUBEADM, Component.ETCDCTL)
_CA_EMBEDDING = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf")


class Policy(str, enum.Enum):
    """How eagerly a plan restarts."""

    #: Restart every daemon that reads a changed file.
    SAFE = "safe"
    #: Restart only daemons that read a changed file once at start; verify the rest.
    MINIMAL = "minimal"


class Action(str, enum.Enum):
    """What a step does."""

    RESTART = "restart"
    #: Check that the component picked the file up by itself.
    VERIFY = "verify"
    #: Nothing to run; something for a person to know or do.
    NOTE = "note"


class Method(str, enum.Enum):
    """How a step restarts its component."""

    #: Move the static pod manifest out and back (kubeadm's documented way).
    MANIFEST = "manifest"
    #: Remove the container so the kubelet creates the next attempt.
    DOCKER = "docker"
    #: Stop the container through the CRI (containerd, CRI-O) so the kubelet starts the next attempt.
    CRI = "cri"
    #: ``systemctl restart kubelet``.
    SYSTEMD = "systemd"
    #: Verify and note steps restart nothing.
    NONE = "none"


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

    def __str__(self) -> str:
        return f"{self.name} ({self.flag}, {self.reload.value})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "flag": self.flag, "reload": self.reload.value,
                "paths": list(self.paths), "detail": self.detail}


@attrs.frozen(kw_only=True)
class RestartStep:
    """One step of a plan: restart, verify or note, for one component of one node."""

    node: str | None
    component: Component
    action: Action
    method: Method
    reasons: tuple[Reason, ...]
    #: Plain words for a person (what to do for a note, what a verify relies on).
    note: str = ""

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
        written after the start is proof only when the component reads it once
        (or it is ``kubelet.conf``); for a file the component reloads by itself it
        is expected, and the served certificate is the evidence that counts.
        """
        if self.kind is StaleKind.SERVED_MISMATCH:
            return True
        return any(r.reload.needs_restart or r.name == "kubelet.conf" for r in self.reasons)

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
        out = [f"running: {i.component.value} ({i.source} {i.ident}) since {_iso(i.started_at)}"
               for i in self.instances]
        out += [f"served: {c.status.value}: {c.message}" for c in self.served]
        matched = {c.component for c in self.served if c.status is CheckStatus.MATCH}
        for s in self.stale:
            if s.restart_needed:
                out.append(f"STALE: {s.message}")
            else:
                seen = " (its served certificate matches the disk)" if s.component in matched else ""
                out.append(f"relies on reload: {s.message}{seen}")
        out += [f"note: {n}" for n in self.notes]
        return out


# --------------------------------------------------------------------------------------
# Detection


def _observer(proc: str | os.PathLike[str], observer: Observer | None, runtime: Runtime | None) -> Observer:
    base: Observer = observer if observer is not None else ProcScanner(proc)
    if runtime is None or runtime is base:
        return base
    return CombinedObserver(base, runtime)


def _applicable(node: Node) -> list[CatalogEntry]:
    p = node.profile
    return list(_catalog.entries(version=p.kubernetes_version, external_etcd=p.external_etcd))


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
    served_host: str = "127.0.0.1",
    ports: Ports | None = None,
    served: bool = True,
    timeout: float = 3.0,
) -> Detection:
    """Observe ``node``'s components and compare them with its files.

    Instances come from ``observer`` (default: a :class:`~kubepki.restarts._observe.ProcScanner`
    on ``proc``) plus ``runtime`` when given. A component is stale when it started
    before the newest write of a file it reads (modification times as
    :func:`kubepki.inspect` reports them, allowing for the start time's
    precision), or when its TLS endpoint on ``served_host`` serves a certificate
    other than the one on disk. Ports come from ``ports``, else the running
    instance's flags, else the manifest's, else
    :data:`~kubepki.restarts._served.DEFAULT_PORTS`. Served certificates are checked for
    components seen running and for those named in ``ports``.
    """
    node = Node.coerce(node)
    return _detect(node, proc=proc, observer=observer, runtime=runtime, served_host=served_host, ports=ports,
                   served=served, timeout=timeout)


def _detect(
    node: Node,
    *,
    proc: str | os.PathLike[str],
    observer: Observer | None,
    runtime: Runtime | None,
    served_host: str,
    ports: Ports | None,
    served: bool,
    timeout: float,
) -> Detection:
    from kubepki.inspection import inspect

    profile = node.profile
    version = profile.kubernetes_version
    obs = _observer(proc, observer, runtime)
    instances = tuple(sorted(obs.instances(), key=lambda i: (COMPONENT_ORDER.index(i.component), i.started_at)))
    overrides = {Component(k): v for k, v in (ports or {}).items()}
    entries = _applicable(node)
    inv = inspect(node, names=[e.name for e in entries])
    mtimes: dict[str, list[tuple[str, float]]] = {}
    for item in inv:
        mtimes[item.name] = [(f.path, f.mtime) for f in item.files
                             if f.exists and f.mtime is not None and f.role != "referenced"]

    stale: list[Staleness] = []
    notes: list[str] = []
    for inst in instances:
        reasons: list[Reason] = []
        for entry in entries:
            for consumer in entry.consumers_of(inst.component):
                reload = consumer.reload_for(version)
                if reload is Reload.PER_INVOCATION:
                    continue
                if reload is Reload.KUBELET_MANAGED and entry.name != "kubelet.conf":
                    continue  # the kubelet writes its rotated certificate itself
                if not _reads(inst, consumer):
                    continue
                files = mtimes.get(entry.name, [])
                if not files:
                    continue
                path, newest = max(files, key=lambda f: f[1])
                if inst.started_at.timestamp() + inst.precision < newest:
                    written = dt.datetime.fromtimestamp(newest, tz=dt.timezone.utc)
                    reasons.append(Reason(
                        name=entry.name, flag=consumer.flag, reload=reload, paths=(path,),
                        detail=f"{path} written {_iso(written)}, after the start at {_iso(inst.started_at)}",
                    ))
        if reasons:
            names = ", ".join(dict.fromkeys(r.name for r in reasons))
            stale.append(Staleness(
                node=profile.name, component=inst.component, kind=StaleKind.STARTED_BEFORE_WRITE,
                reasons=tuple(reasons), instance=inst,
                message=f"{inst.component.value} ({inst.source} {inst.ident}) started at "
                        f"{_iso(inst.started_at)}, before {names} was last written",
            ))

    checks: list[ServedCheck] = []
    if served:
        seen: dict[Component, Instance] = {}
        for inst in instances:
            seen.setdefault(inst.component, inst)
        for comp in COMPONENT_ORDER:
            inst_opt = seen.get(comp)
            if inst_opt is None and comp not in overrides:
                continue
            flags = inst_opt.flags if inst_opt is not None else None
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
            port = _port(node, comp, flags, overrides)
            check = check_served(node, comp, host=served_host, port=port, timeout=timeout, flags=flags)
            checks.append(check)
            if check.status is CheckStatus.MISMATCH:
                stale.append(Staleness(
                    node=profile.name, component=comp, kind=StaleKind.SERVED_MISMATCH,
                    reasons=(_serving_reason(node, comp, str(cert_path), check.message),),
                    instance=inst_opt, message=check.message,
                ))
    return Detection(node=profile.name, instances=instances, served=tuple(checks), stale=tuple(stale),
                     notes=tuple(notes))


def detect_stale(
    node: Node | str | os.PathLike[str],
    *,
    proc: str | os.PathLike[str] = "/proc",
    served_host: str = "127.0.0.1",
    ports: Ports | None = None,
    runtime: Runtime | None = None,
    observer: Observer | None = None,
    timeout: float = 3.0,
) -> list[Staleness]:
    """The staleness :func:`detect` finds on ``node`` (see there for the arguments)."""
    node = Node.coerce(node)
    return list(detect(node, proc=proc, served_host=served_host, ports=ports, runtime=runtime,
                       observer=observer, timeout=timeout).stale)


def _port(node: Node, comp: Component, flags: Mapping[str, str] | None,
          overrides: Mapping[Component, int]) -> int:
    if comp in overrides:
        return overrides[comp]
    manifest = node.profile.manifests.get(comp.value)
    for source in (flags, manifest.flags if manifest else None):
        if source:
            found = endpoint_port(comp, source)
            if found is not None:
                return found
    return DEFAULT_PORTS[comp]


def _serving_reason(node: Node, comp: Component, path: str, detail: str) -> Reason:
    version = node.profile.kubernetes_version
    flag = f"--{SERVING_FLAGS[comp]}"
    for entry in _applicable(node):
        if any(str(node.dir_for(entry.location) / f.path) == path for f in entry.files):
            consumer = next(iter(entry.consumers_of(comp)), None)
            reload = consumer.reload_for(version) if consumer else Reload.RESTART
            return Reason(name=entry.name, flag=consumer.flag if consumer else flag, reload=reload,
                          paths=(path,), detail=detail)
    return Reason(name=path, flag=flag, reload=Reload.RESTART, paths=(path,), detail=detail)


# --------------------------------------------------------------------------------------
# Planning


@attrs.frozen(kw_only=True)
class RestartPlan:
    """The restarts one change needs on one node: an immutable, printable value."""

    node: str | None
    root: str
    kubernetes_version: str
    policy: Policy
    method: Method
    #: ``changed``, ``renewal`` or ``detect``.
    source: str
    #: The catalog names that changed (or were found stale).
    changed: tuple[str, ...]
    steps: tuple[RestartStep, ...]
    notes: tuple[str, ...] = ()
    #: The staleness a ``detect`` plan was made from.
    stale: tuple[Staleness, ...] = ()
    planned_at: dt.datetime

    def __iter__(self) -> Iterator[RestartStep]:
        return iter(self.steps)

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
            "source": self.source,
            "changed": list(self.changed),
            "planned_at": _iso(self.planned_at),
            "steps": [s.to_dict() for s in self.steps],
            "notes": list(self.notes),
            "stale": [s.to_dict() for s in self.stale],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        """The steps as an aligned text table, then the notes."""
        from kubepki.inspection import go_tabwriter

        head = (f"restart plan for node {self.node or '?'} (Kubernetes {self.kubernetes_version}, "
                f"policy {self.policy.value}, method {self.method.value}, from {self.source})")
        lines = ["#\tNODE\tCOMPONENT\tACTION\tMETHOD\tREASONS"]
        for index, s in enumerate(self.steps, 1):
            lines.append("\t".join([str(index), s.node or "?", s.component.value, s.action.value,
                                    s.method.value, s.describe()]))
        text = head + "\n\n" + (go_tabwriter(lines) if self.steps else "nothing to restart\n")
        extra = [f"{s.component.value}: {s.note}" for s in self.steps if s.note] + list(self.notes)
        if extra:
            text += "\nnotes:\n" + "".join(f"  - {n}\n" for n in extra)
        return text

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>" + "".join(f'<td style="text-align:left;vertical-align:top">{c}</td>' for c in (
                str(i), html.escape(s.node or "?"), f"<b>{html.escape(s.component.value)}</b>",
                html.escape(s.action.value), html.escape(s.method.value),
                "<br>".join(html.escape(g) for g in _group_reasons(s.reasons)), html.escape(s.note),
            )) + "</tr>"
            for i, s in enumerate(self.steps, 1)
        )
        header = "".join(f'<th style="text-align:left">{h}</th>'
                         for h in ("#", "node", "component", "action", "method", "reasons", "note"))
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        caption = html.escape(f"kubepki restart plan — node {self.node or '?'}, policy {self.policy.value}, "
                              f"method {self.method.value}, from {self.source}")
        return (f'<table class="kubepki"><caption style="text-align:left">{caption}</caption>'
                f"<thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
                + (f"<ul>{notes}</ul>" if notes else ""))


_USER_NOTES = {
    Component.KUBECTL: "read on each kubectl run: no restart; refresh copies such as ~/.kube/config "
                       "(cp /etc/kubernetes/admin.conf ~/.kube/config)",
    Component.KUBEADM: "read on each kubeadm run: no restart",
    Component.ETCDCTL: "read on each etcdctl run: no restart; refresh copies used by scripts",
}
_KUBELET_NOTE = "the kubelet rotates and reloads kubelet-client-current.pem itself: no restart"


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
    if method not in (Method.MANIFEST, Method.DOCKER, Method.CRI):
        raise ConfigError(f"unknown restart method {value!r} (known: manifest, docker, cri)")
    return method


def _renewal_fields(renewal: Any) -> tuple[list[str], list[str], str | None, str | None]:
    """(changed names, written paths, node, where) from a renewal result, mapping or JSON file."""
    where = None
    if isinstance(renewal, str | os.PathLike):
        where = os.fspath(renewal)
        try:
            data: Any = json.loads(Path(where).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read renewal result {where!r}: {exc.strerror or exc}", path=where) from None
        except ValueError as exc:
            raise ConfigError(f"renewal result {where!r} is not JSON: {exc}", path=where) from None
    else:
        data = renewal
    if isinstance(data, Mapping):
        changed, files = data.get("changed"), data.get("files", ())
        node = data.get("node") or data.get("node_name")
    elif hasattr(data, "changed"):
        changed, files = data.changed, getattr(data, "files", ())
        node = getattr(data, "node", None) or getattr(data, "node_name", None)
    else:
        raise ConfigError(f"{where or 'renewal'}: expected a renewal result with 'changed'", path=where)
    if isinstance(changed, str) or not isinstance(changed, Iterable):
        raise ConfigError(f"{where or 'renewal'}: 'changed' must be a list of catalog names", path=where)
    names = [str(n) for n in changed]
    paths = [str(f) for f in (files or ())] if not isinstance(files, str) else [files]
    node_name = node if isinstance(node, str) else getattr(node, "name", None)
    return names, paths, node_name, where


def _names_for_paths(node: Node, paths: Iterable[str]) -> list[str]:
    by_path = {str(node.dir_for(e.location) / f.path): e.name for e in _catalog.CATALOG for f in e.files}
    return [by_path[p] for p in paths if p in by_path]


@attrs.define
class _Demands:
    """Reasons gathered per component before they become steps."""

    restart: dict[Component, list[Reason]] = attrs.Factory(dict)
    verify: dict[Component, list[Reason]] = attrs.Factory(dict)
    note: dict[Component, list[Reason]] = attrs.Factory(dict)

    def add(self, kind: str, comp: Component, reason: Reason) -> None:
        bucket = getattr(self, kind).setdefault(comp, [])
        if reason not in bucket:
            bucket.append(reason)


def action_for(component: Component, reload: Reload, name: str, policy: Policy | str, *,
               proven: bool = False) -> Action:
    """What a plan does when ``component`` reads artifact ``name`` (reloading it as ``reload``).

    Non-daemons and per-invocation reads: a note. Kubelet-managed files: a note,
    except ``kubelet.conf`` itself, which the kubelet reads at start. Otherwise
    ``safe`` restarts, and ``minimal`` restarts only what is read once at start
    (or what ``proven`` stale, such as a served mismatch) and verifies the rest.
    """
    pol = _as_policy(policy)
    if not component.is_daemon or reload is Reload.PER_INVOCATION:
        return Action.NOTE
    if reload is Reload.KUBELET_MANAGED:
        # kubeadm hands kubelet.conf to the kubelet; a new one is read at start only.
        return Action.RESTART if name == "kubelet.conf" else Action.NOTE
    if proven or pol is Policy.SAFE or reload.needs_restart:
        return Action.RESTART
    return Action.VERIFY


def _demand(d: _Demands, policy: Policy, comp: Component, reason: Reason, *, entry_name: str,
            proven: bool = False) -> None:
    """File one reason under restart, verify or note."""
    action = action_for(comp, reason.reload, entry_name, policy, proven=proven)
    d.add(action.value, comp, reason)


def _paths(node: Node, entry: CatalogEntry) -> tuple[str, ...]:
    return tuple(str(node.dir_for(entry.location) / f.path) for f in entry.files)


def plan_restarts(
    node: Node | str | os.PathLike[str],
    *,
    changed: Iterable[str] | None = None,
    renewal: Any = None,
    detect: bool = False,
    policy: Policy | str = Policy.SAFE,
    method: Method | str = Method.MANIFEST,
    now: dt.datetime | None = None,
    observer: Observer | None = None,
    proc: str | os.PathLike[str] = "/proc",
    runtime: Runtime | None = None,
    served_host: str = "127.0.0.1",
    ports: Ports | None = None,
    timeout: float = 3.0,
) -> RestartPlan:
    """Plan the restarts ``node`` needs, from exactly one source.

    - ``changed``: catalog names whose files changed (``["apiserver", "admin.conf"]``);
    - ``renewal``: a renewal result (any object with ``.changed`` and optionally
      ``.node`` or ``.node_name`` and ``.files``, such as
      :class:`kubepki.RenewalResult`), a mapping with those keys, or the path of a
      JSON file holding one (``kubepki renew ... -o json``); written files that
      are not named in ``changed`` are mapped to their catalog names;
    - ``detect=True``: what :func:`detect` finds stale now (``observer``, ``proc``,
      ``runtime``, ``served_host``, ``ports`` and ``timeout`` are passed on). A
      served mismatch is restarted under either policy: it proves the component
      did not reload.

    ``method`` (``manifest``, ``docker`` or ``cri``) is how static pods will be restarted;
    the kubelet always goes through systemd. Raises :class:`~kubepki.ConfigError`
    for no or several sources, unknown names, policies or methods, and a renewal
    result made for another node.
    """
    node = Node.coerce(node)
    sources = [changed is not None, renewal is not None, bool(detect)]
    if sum(sources) != 1:
        raise ConfigError("plan_restarts needs exactly one of changed=, renewal= or detect=True")
    pol, meth = _as_policy(policy), _as_method(method)
    profile = node.profile
    version = profile.kubernetes_version
    when = _utc(now)
    demands = _Demands()
    notes: list[str] = []
    stale: tuple[Staleness, ...] = ()

    if detect:
        source = "detect"
        found = _detect(node, proc=proc, observer=observer, runtime=runtime, served_host=served_host,
                        ports=ports, served=True, timeout=timeout)
        stale = found.stale
        names: list[str] = []
        for s in stale:
            for r in s.reasons:
                names.append(r.name)
                _demand(demands, pol, s.component, r, entry_name=r.name,
                        proven=s.kind is StaleKind.SERVED_MISMATCH)
        notes.extend(found.notes)
        if not found.instances:
            notes.append("no running control-plane component was observed; check --proc and the runtime")
        names = list(dict.fromkeys(names))
    else:
        if changed is not None:
            source = "changed"
            if isinstance(changed, str):
                changed = [changed]
            names = list(dict.fromkeys(changed))
        else:
            source = "renewal"
            names, paths, renewal_node, where = _renewal_fields(renewal)
            if renewal_node and profile.name and renewal_node != profile.name:
                raise ConfigError(f"the renewal result is for node {renewal_node!r}, not {profile.name!r}",
                                  node=renewal_node, path=where)
            names = list(dict.fromkeys([*names, *_names_for_paths(node, paths)]))
        for name in names:
            entry = _catalog.get(name)  # UnknownItemError (a ConfigError) for typos
            if not entry.applies(version, external_etcd=profile.external_etcd):
                notes.append(f"{name} does not apply to this node (Kubernetes {version}"
                             f"{', external etcd' if profile.external_etcd else ''}): ignored")
                continue
            for consumer in entry.consumers:
                reason = Reason(name=name, flag=consumer.flag, reload=consumer.reload_for(version),
                                paths=_paths(node, entry))
                _demand(demands, pol, consumer.component, reason, entry_name=name)
            notes.extend(_change_notes(entry, version))

    steps = _steps(node, profile.name, demands, meth, pol)
    return RestartPlan(
        node=profile.name, root=str(node.root), kubernetes_version=str(version), policy=pol, method=meth,
        source=source, changed=tuple(names), steps=tuple(steps), notes=tuple(dict.fromkeys(notes)),
        stale=stale, planned_at=when,
    )


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


def _steps(node: Node, node_name: str | None, d: _Demands, method: Method, policy: Policy) -> list[RestartStep]:
    steps: list[RestartStep] = []
    for comp in COMPONENT_ORDER:
        restart, verify = d.restart.get(comp, []), d.verify.get(comp, [])
        if restart:
            how = Method.SYSTEMD if comp is Component.KUBELET else method
            note = ""
            if how is Method.MANIFEST and comp.value in _STATIC_PODS and comp.value not in node.profile.manifests:
                note = f"no static pod manifest for {comp.value} was found on this node"
            steps.append(RestartStep(node=node_name, component=comp, action=Action.RESTART, method=how,
                                     reasons=tuple(restart + verify), note=note))
        elif verify:
            reloads = ", ".join(dict.fromkeys(r.reload.value for r in verify))
            steps.append(RestartStep(node=node_name, component=comp, action=Action.VERIFY, method=Method.NONE,
                                     reasons=tuple(verify),
                                     note=f"relies on {reloads} reload ({policy.value} policy)"))
    kubelet_notes = d.note.get(Component.KUBELET, [])
    if kubelet_notes:
        steps.append(RestartStep(node=node_name, component=Component.KUBELET, action=Action.NOTE,
                                 method=Method.NONE, reasons=tuple(kubelet_notes), note=_KUBELET_NOTE))
    for comp in _USERS:
        reasons = d.note.get(comp, [])
        if reasons:
            steps.append(RestartStep(node=node_name, component=comp, action=Action.NOTE, method=Method.NONE,
                                     reasons=tuple(reasons), note=_USER_NOTES[comp]))
    return steps


# --------------------------------------------------------------------------------------
# Execution


@attrs.frozen(kw_only=True)
class Timeouts:
    """How long each wait of a restart may take, in seconds."""

    #: Until the old instance is gone. The kubelet looks at the manifests directory
    #: every 20 s (``fileCheckFrequency``), then grants the pod its grace period.
    stop: float = 90.0
    #: Until a new instance runs.
    start: float = 120.0
    #: Until the endpoint serves the on-disk certificate (restart and verify steps).
    serve: float = 60.0
    #: Pause between two looks.
    poll: float = 0.2

    @classmethod
    def coerce(cls, value: Timeouts | float | int) -> Timeouts:
        """A :class:`Timeouts`, or one number of seconds for every wait."""
        if isinstance(value, Timeouts):
            return value
        seconds = float(value)
        if seconds <= 0:
            raise ConfigError(f"timeouts must be positive, not {value!r}")
        return cls(stop=seconds, start=seconds, serve=seconds, poll=min(0.2, seconds / 10))


class StepStatus(str, enum.Enum):
    """What became of a step."""

    #: Dry run: what would be done.
    PLANNED = "planned"
    #: Restarted, running again, serving the on-disk certificate where it serves one.
    DONE = "done"
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
class RestartReport:
    """What :func:`apply_restarts` did and what it checked afterwards."""

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
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        """What was done, step by step, then what was checked."""
        from kubepki.inspection import go_tabwriter

        title = "dry run: nothing was changed" if self.dry_run else "restarts applied"
        lines = ["#\tCOMPONENT\tACTION\tMETHOD\tSTATUS\tDETAIL"]
        for i, o in enumerate(self.outcomes, 1):
            detail = o.error or (o.messages[-1] if o.messages else o.step.describe())
            lines.append("\t".join([str(i), o.step.component.value, o.step.action.value, o.step.method.value,
                                    o.status.value, detail]))
        text = f"{title} on node {self.node or '?'} (policy {self.plan.policy.value})\n\n"
        text += go_tabwriter(lines) if self.outcomes else "no steps\n"
        if self.verification is not None:
            text += "\nverification:\n" + "".join(f"  {line}\n" for line in self.verification.lines())
            text += ("\nresult: every component uses what is on disk\n" if not self.remaining
                     else f"\nresult: {len(self.remaining)} component(s) still stale\n")
        elif self.failed is not None:
            text += f"\nresult: stopped at {self.failed.step.component.value}: {self.failed.error}\n"
        return text

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>" + "".join(f'<td style="text-align:left;vertical-align:top">{html.escape(c)}</td>' for c in (
                o.step.component.value, o.step.action.value, o.step.method.value, o.status.value,
                o.error or "; ".join(o.messages),
            )) + "</tr>"
            for o in self.outcomes
        )
        header = "".join(f'<th style="text-align:left">{h}</th>'
                         for h in ("component", "action", "method", "status", "detail"))
        checks = ""
        if self.verification is not None:
            checks = "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in self.verification.lines()) + "</ul>"
        caption = html.escape(f"kubepki restarts — node {self.node or '?'}: "
                              f"{'dry run' if self.dry_run else ('ok' if self.ok else 'NOT ok')}")
        return (f'<table class="kubepki"><caption style="text-align:left">{caption}</caption>'
                f"<thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>{checks}")


Progress = Callable[[RestartStep, str], object]


def systemctl_restart_kubelet() -> None:
    """``systemctl restart kubelet``; :class:`~kubepki.RestartError` when it cannot be done."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise RestartError("systemctl not found: restart the kubelet with this node's service manager")
    try:
        done = subprocess.run([systemctl, "restart", "kubelet"], capture_output=True, text=True, timeout=120,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RestartError(f"systemctl restart kubelet failed: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise RestartError(f"systemctl restart kubelet failed (exit {done.returncode}): "
                           f"{why[0] if why else 'no output'}")


@attrs.define
class _Run:
    """State shared by the steps of one apply."""

    node: Node
    observer: Observer
    runtime: Runtime | None
    kubelet_restart: Callable[[], None]
    timeouts: Timeouts
    progress: Progress | None
    served_host: str
    ports: dict[Component, int]
    step: RestartStep | None = None
    messages: list[str] = attrs.Factory(list)

    def say(self, text: str) -> None:
        self.messages.append(text)
        if self.progress is not None and self.step is not None:
            self.progress(self.step, text)

    def instances(self, comp: Component) -> list[Instance]:
        try:
            return [i for i in self.observer.instances() if i.component is comp]
        except NodeError as exc:
            raise RestartError(f"cannot observe {comp.value}: {exc}") from None

    def newest(self, comp: Component) -> Instance | None:
        found = self.instances(comp)
        return max(found, key=lambda i: i.started_at) if found else None

    def wait(self, what: str, seconds: float, check: Callable[[], Any]) -> Any:
        """Poll ``check`` until it returns something truthy; RestartError after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise RestartError(f"timed out after {seconds:g}s waiting for {what}")
            time.sleep(self.timeouts.poll)

    def wait_started_after(self, comp: Component, before: Instance | None) -> Instance:
        def fresh() -> Instance | None:
            inst = self.newest(comp)
            if inst is None or (before is not None and inst.started_at <= before.started_at):
                return None
            return inst

        self.say(f"waiting for {comp.value} to run again")
        inst: Instance = self.wait(f"{comp.value} to run again", self.timeouts.start, fresh)
        self.say(f"{comp.value} runs again ({inst.source} {inst.ident}, started {_iso(inst.started_at)})")
        return inst

    def wait_served(self, comp: Component, inst: Instance | None) -> ServedCheck | None:
        """Wait until ``comp`` serves its on-disk certificate; None when it serves none from disk."""
        flags = inst.flags if inst is not None else None
        path = serving_cert_path(self.node, comp, flags)
        if path is None or self.node.fs.stat(path) is None:
            return None
        port = _port(self.node, comp, flags, self.ports)
        self.say(f"waiting for {comp.value} to serve {path} on {self.served_host}:{port}")
        last: list[ServedCheck] = []

        def matches() -> bool:
            check = check_served(self.node, comp, host=self.served_host, port=port, flags=flags,
                                 timeout=min(5.0, self.timeouts.serve))
            last[:] = [check]
            return check.status is CheckStatus.MATCH

        try:
            self.wait(f"{comp.value} to serve {path}", self.timeouts.serve, matches)
        except RestartError as exc:
            detail = f" ({last[0].message})" if last else ""
            raise RestartError(f"{exc}{detail}") from None
        self.say(last[0].message)
        return last[0]


def apply_restarts(
    plan: RestartPlan,
    node: Node | str | os.PathLike[str],
    *,
    dry_run: bool = True,
    progress: Progress | None = None,
    timeout: Timeouts | float = Timeouts(),
    runtime: Runtime | None = None,
    kubelet_restart: Callable[[], None] | None = None,
    observer: Observer | None = None,
    proc: str | os.PathLike[str] = "/proc",
    served_host: str = "127.0.0.1",
    ports: Ports | None = None,
    take_backup: bool = True,
    backup_dir: str | os.PathLike[str] | None = None,
) -> RestartReport:
    """Carry ``plan`` out on ``node``, step by step; dry-run unless ``dry_run=False``.

    Before the first step a backup of the node (PKI, kubeconfigs and the static pod
    manifests the manifest method moves) goes to ``backup_dir`` (default
    :data:`~kubepki.backups._backups.DEFAULT_BACKUP_DIR` on the node), unless
    ``take_backup=False``.

    Restart steps use the plan's method: ``manifest`` moves the static pod
    manifest to :data:`HELD_MANIFESTS_DIR` beside the manifests directory, waits
    until the component is gone, moves it back (always, in a ``finally``), waits
    until a new instance runs and, where it serves TLS from a file, until it
    serves the on-disk certificate; ``docker`` removes the container (``runtime``,
    default a :class:`~kubepki.restarts.methods._docker.DockerRuntime` from ``DOCKER_HOST``)
    and waits for the kubelet's next attempt; ``cri`` stops the container through
    the CRI (``runtime``, default the one :func:`kubepki.restarts.methods._runtimes.detect_runtime`
    finds from the sockets on the node) and waits for the next attempt with a
    later start time. The kubelet is restarted with
    ``kubelet_restart`` (default :func:`systemctl_restart_kubelet`). Verify steps
    wait until the component serves the on-disk certificate, where that can be
    seen. ``progress(step, message)`` hears about every phase.

    The first failing step stops the run; its error is in the report (nothing is
    raised for it). After the last step, :func:`detect` checks that nothing
    stale remains. Raises :class:`~kubepki.ConfigError` for a plan made for
    another node and :class:`~kubepki.LockError` when another kubepki writes to
    the node.
    """
    instance(plan, RestartPlan, "plan", "from plan_restarts")
    node = Node.coerce(node)
    if plan.node and node.profile.name and plan.node != node.profile.name:
        raise ConfigError(f"the plan is for node {plan.node!r}, not {node.profile.name!r}", node=plan.node)
    timeouts = Timeouts.coerce(timeout)
    if dry_run:
        outcomes = tuple(
            StepOutcome(step=s, status=StepStatus.NOTED if s.action is Action.NOTE else StepStatus.PLANNED,
                        messages=(_dry_message(s),))
            for s in plan.steps
        )
        return RestartReport(node=plan.node, plan=plan, dry_run=True, outcomes=outcomes)
    backup_path = None
    if take_backup and any(s.action is Action.RESTART for s in plan.steps):
        from kubepki.backups import backup, default_backup_dir

        dest = Path(backup_dir) if backup_dir is not None else default_backup_dir(node)
        dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        backup_path = str(backup(node, dest).path)
        if progress is not None:
            progress(plan.steps[0], f"backed up the node to {backup_path}")
    owned: Any = None  # a runtime made here, closed at the end
    if runtime is None and any(s.method is Method.DOCKER for s in plan.steps):
        from kubepki.restarts.methods import DockerRuntime

        runtime = owned = DockerRuntime()
    if runtime is None and any(s.method is Method.CRI for s in plan.steps):
        from kubepki.restarts.methods import detect_runtime

        runtime = owned = detect_runtime(node.root)
    try:
        report = _apply(plan, node, timeouts=timeouts, progress=progress, runtime=runtime,
                        kubelet_restart=kubelet_restart, observer=observer, proc=proc, served_host=served_host,
                        ports=ports)
        return attrs.evolve(report, backup=backup_path)
    finally:
        if owned is not None:
            owned.close()


def _apply(
    plan: RestartPlan,
    node: Node,
    *,
    timeouts: Timeouts,
    progress: Progress | None,
    runtime: Runtime | None,
    kubelet_restart: Callable[[], None] | None,
    observer: Observer | None,
    proc: str | os.PathLike[str],
    served_host: str,
    ports: Ports | None,
) -> RestartReport:
    from kubepki.node import node_lock

    run = _Run(
        node=node, observer=_observer(proc, observer, runtime), runtime=runtime,
        kubelet_restart=kubelet_restart or systemctl_restart_kubelet, timeouts=timeouts, progress=progress,
        served_host=served_host, ports={Component(k): v for k, v in (ports or {}).items()},
    )
    results: list[StepOutcome] = []
    with node_lock(node):
        for index, step in enumerate(plan.steps):
            outcome = _run_step(run, step)
            results.append(outcome)
            if outcome.status is StepStatus.FAILED:
                results.extend(StepOutcome(step=s, status=StepStatus.NOT_RUN) for s in plan.steps[index + 1 :])
                return RestartReport(node=plan.node, plan=plan, dry_run=False, outcomes=tuple(results))
    verification = detect(node, observer=run.observer, served_host=served_host, ports=run.ports,
                          timeout=min(5.0, timeouts.serve))
    return RestartReport(node=plan.node, plan=plan, dry_run=False, outcomes=tuple(results),
                         verification=verification)


def _dry_message(step: RestartStep) -> str:
    if step.action is Action.NOTE:
        return step.note
    if step.action is Action.VERIFY:
        return f"would check that {step.component.value} picked up {', '.join(step.names)}"
    how = {Method.MANIFEST: "by moving its static pod manifest out and back",
           Method.DOCKER: "by removing its container", Method.SYSTEMD: "with systemctl restart kubelet",
           Method.CRI: "by stopping its container (the kubelet starts the next attempt)"}
    return f"would restart {step.component.value} {how.get(step.method, '')}".rstrip()


def _run_step(run: _Run, step: RestartStep) -> StepOutcome:
    run.step, run.messages = step, []
    started = time.monotonic()
    before: Instance | None = None
    after: Instance | None = None
    served: ServedCheck | None = None
    try:
        if step.action is Action.NOTE:
            run.say(step.note)
            return StepOutcome(step=step, status=StepStatus.NOTED, messages=tuple(run.messages))
        if step.action is Action.VERIFY:
            inst = run.newest(step.component)
            served = _verify_step(run, step, inst)
            status = StepStatus.VERIFIED if served is not None else StepStatus.UNVERIFIABLE
            return StepOutcome(step=step, status=status, messages=tuple(run.messages), served=served,
                               after=inst.started_at if inst else None, seconds=time.monotonic() - started)
        before = run.newest(step.component)
        if step.method is Method.MANIFEST:
            after = _restart_manifest(run, step.component, before)
        elif step.method is Method.DOCKER:
            after = _restart_docker(run, step.component, before)
        elif step.method is Method.CRI:
            after = _restart_cri(run, step.component, before)
        elif step.method is Method.SYSTEMD:
            run.say("systemctl restart kubelet")
            run.kubelet_restart()
            after = run.wait_started_after(step.component, before)
        else:
            raise RestartError(f"a restart step cannot use method {step.method.value}")
        served = run.wait_served(step.component, after)
    except KubepkiError as exc:
        return StepOutcome(step=step, status=StepStatus.FAILED, messages=tuple(run.messages), error=str(exc),
                           before=before.started_at if before else None,
                           after=after.started_at if after else None, served=served,
                           seconds=time.monotonic() - started)
    return StepOutcome(step=step, status=StepStatus.DONE, messages=tuple(run.messages),
                       before=before.started_at if before else None, after=after.started_at if after else None,
                       served=served, seconds=time.monotonic() - started)


def _verify_step(run: _Run, step: RestartStep, inst: Instance | None) -> ServedCheck | None:
    comp = step.component
    flags = inst.flags if inst is not None else None
    serving = serving_cert_path(run.node, comp, flags)
    if serving is not None and any(str(serving) in r.paths for r in step.reasons):
        return run.wait_served(comp, inst)
    run.say(f"{comp.value} is expected to reload {', '.join(step.names)} by itself; "
            "this cannot be observed from outside")
    return None


def _local(node: Node, path: PurePosixPath) -> Path:
    if not isinstance(node.fs, LocalFS):
        raise RestartError(f"the manifest method needs a local node root, not {node.fs.describe()}")
    return node.fs.host_path(path, follow_last=False)


def _restart_manifest(run: _Run, comp: Component, before: Instance | None) -> Instance:
    node = run.node
    filename = MANIFEST_FILES.get(comp.value)
    if filename is None:
        raise RestartError(f"{comp.value} is not a static pod", name=comp.value)
    manifests_dir = node.profile.manifests_dir
    manifest = _local(node, manifests_dir / filename)
    held_dir = _local(node, manifests_dir.parent / HELD_MANIFESTS_DIR)
    held = held_dir / filename
    if not manifest.exists() and held.exists():
        # A run stopped between moving the manifest out and back: finish it first.
        run.say(f"putting back {filename}, held since an interrupted run")
        _move(held, manifest)
    elif held.exists():
        raise RestartError(f"{held} already exists beside {manifest}; compare them and remove the held copy",
                           path=str(held))
    if not manifest.exists():
        raise RestartError(f"no static pod manifest {manifests_dir / filename}", path=str(manifests_dir / filename))
    try:
        held_dir.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise RestartError(f"cannot create {held_dir}: {exc.strerror or exc}", path=str(held_dir)) from None
    if held_dir.stat().st_dev != manifest.parent.stat().st_dev:
        raise RestartError(f"{held_dir} is not on the filesystem of {manifest.parent}", path=str(held_dir))
    run.say(f"moving {manifests_dir / filename} to {manifests_dir.parent / HELD_MANIFESTS_DIR}")
    _move(manifest, held)
    try:
        run.say(f"waiting for {comp.value} to stop")
        run.wait(f"{comp.value} to stop", run.timeouts.stop, lambda: not run.instances(comp))
        run.say(f"{comp.value} stopped")
    finally:
        run.say(f"moving {filename} back")
        _move(held, manifest)
        with contextlib.suppress(OSError):
            held_dir.rmdir()
    return run.wait_started_after(comp, before)


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise RestartError(f"cannot move {src} to {dst}: {exc.strerror or exc}", path=str(src)) from None
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def _restart_docker(run: _Run, comp: Component, before: Instance | None) -> Instance:
    runtime = run.runtime
    if runtime is None:
        raise RestartError("the docker method needs a container runtime")
    current = [c for c in runtime.containers() if c.component is comp and c.running]
    if not current:
        raise RestartError(f"no running {comp.value} container found in {runtime.name}", name=comp.value)
    old = max(current, key=lambda c: c.started_at or dt.datetime.min.replace(tzinfo=dt.timezone.utc))
    run.say(f"removing container {old.name} ({old.id[:12]})")
    runtime.remove(old.id)

    def replacement() -> Instance | None:
        for c in runtime.containers():
            if (c.running and c.id != old.id and c.same_pod_container(old) and c.started_at is not None
                    and (old.started_at is None or c.started_at > old.started_at)):
                inst = c.as_instance(runtime.name)
                if inst is not None:
                    return inst
        return None

    run.say(f"waiting for the kubelet to start the next {comp.value} container")
    inst: Instance = run.wait(f"a new {comp.value} container", run.timeouts.start, replacement)
    run.say(f"{comp.value} runs again in {inst.name} (started {_iso(inst.started_at)})")
    return inst


def _restart_cri(run: _Run, comp: Component, before: Instance | None) -> Instance:
    """Stop the container (CRI StopContainer); the kubelet starts the next attempt in the same pod.

    A runtime without ``stop`` (the Docker driver, which auto-detection picks on
    cri-dockerd nodes) removes the container instead, to the same effect.
    """
    runtime = run.runtime
    if runtime is None:
        raise RestartError("the cri method needs a container runtime")
    current = [c for c in runtime.containers() if c.component is comp and c.running]
    if not current:
        raise RestartError(f"no running {comp.value} container found in {runtime.name}", name=comp.value)
    old = max(current, key=lambda c: c.started_at or dt.datetime.min.replace(tzinfo=dt.timezone.utc))
    stop = getattr(runtime, "stop", None)
    if callable(stop):
        run.say(f"stopping container {old.name} ({old.id[:12]})")
        stop(old.id)
    else:
        run.say(f"removing container {old.name} ({old.id[:12]})")
        runtime.remove(old.id)

    def next_attempt() -> Instance | None:
        for c in runtime.containers():
            if (c.running and c.id != old.id and c.same_pod_container(old) and c.started_at is not None
                    and (old.started_at is None or c.started_at > old.started_at)):
                inst = c.as_instance(runtime.name)
                if inst is not None:
                    return inst
        return None

    run.say(f"waiting for the kubelet to start the next {comp.value} container")
    inst: Instance = run.wait(f"the next {comp.value} container", run.timeouts.start, next_attempt)
    run.say(f"{comp.value} runs again in {inst.name} (started {_iso(inst.started_at)})")
    return inst
