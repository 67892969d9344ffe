"""Auto-renew a whole cluster: :func:`kubepki.auto_renew` node by node, each proven before the next.

Each node runs the single-node operation *on itself*: a local root through
:func:`kubepki.auto_renew` in this process, a node reached over SSH by running
``kubepki auto-renew`` on the node (:class:`RemoteAutoRenewRequest`). So each node's
backup, renewal, restarts, proof and rollback happen where its keys are: the
rollback restores the node's own archive on the node, and no private key is ever
copied to the controlling machine (docs/security.md). The first node that does not
come out renewed and proven (or with nothing due) stops the run: the nodes after it
are left untouched, so at most one node is ever being restarted, and a failed node
has already rolled itself back to its backup. Nodes before it stay renewed: each was
proven on its own.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki._clock import iso
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki.autorenew import DEFAULT_WITHIN, AutoRenewResult, RunStatus, auto_renew
from kubepki.cluster._cluster import Cluster, HealthCheck
from kubepki.cluster._remote import RemoteRun
from kubepki.errors import ConfigError, KubepkiError
from kubepki.node import HISTORY_PATH, CommandRunner, LocalPaths, Node

__all__ = ["ClusterAutoRenewResult", "RemoteAutoRenewReport", "RemoteAutoRenewRequest", "cluster_auto_renew"]


@attrs.frozen(kw_only=True)
class RemoteAutoRenewRequest:
    """What one node is asked to do: ``kubepki auto-renew`` with these settings, run on the node."""

    root: str
    within: dt.timedelta
    renew_all: bool = False
    policy: str = "minimal"
    method: str = "manifest"
    apply: bool = False
    #: A path on the node (None: the node's default, /var/backups/kubepki under its root).
    backup_dir: str | None = None
    #: A path on the node; None: no history.
    history: str | None = str(HISTORY_PATH)
    now: dt.datetime | None = None
    #: Extra options of the remote ``kubepki auto-renew``, passed as they are.
    options: tuple[str, ...] = ()

    def argv(self, command: Sequence[str]) -> list[str]:
        """The remote command line; ``command`` is how kubepki is started there."""
        argv = [*command, "auto-renew", "--root", self.root, "--within", f"{int(self.within.total_seconds())}s",
                "--policy", self.policy, "--method", self.method, "-o", "json"]
        if self.renew_all:
            argv.append("--all")
        if self.backup_dir is not None:
            argv += ["--backup-dir", self.backup_dir]
        argv += ["--history", self.history] if self.history is not None else ["--no-history"]
        if self.now is not None:
            argv += ["--now", iso(self.now)]
        argv += list(self.options)
        if self.apply:
            argv.append("--apply")
        return argv


@attrs.frozen(kw_only=True)
class RemoteAutoRenewReport(RemoteRun):
    """What ``kubepki auto-renew`` reported when run on a node over SSH (its :attr:`output`: the
    AutoRenewResult)."""

    @property
    def status(self) -> str | None:
        """The remote run's status (``renewed``, ``nothing-due``, ``rolled-back``...), None when unknown."""
        value = (self.output or {}).get("status")
        return value if isinstance(value, str) else None

    @property
    def ok(self) -> bool:
        """True when the remote run exited 0 and said ok (nothing due, planned, or renewed and proven)."""
        return self.exit_status == 0 and (self.output or {}).get("ok") is True

    @property
    def failure(self) -> str | None:
        """Why it failed, from the remote result or its standard error."""
        if self.ok:
            return None
        said = (self.output or {}).get("failure")
        if isinstance(said, str) and said:
            return said
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else f"exited {self.exit_status}"

    @property
    def renewed(self) -> tuple[str, ...]:
        """The catalog names the remote run renewed (and kept)."""
        names = (self.output or {}).get("renewed") or []
        return tuple(str(n) for n in names) if isinstance(names, list) else ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node": self.node, "command": self.command, "exit_status": self.exit_status, "ok": self.ok,
                "status": self.status, "failure": self.failure,
                "output": dict(self.output) if self.output is not None else None}


NodeAutoRenew = AutoRenewResult | RemoteAutoRenewReport


def _status(r: NodeAutoRenew) -> str | None:
    return r.status


def _ok(r: NodeAutoRenew) -> bool:
    return r.ok if isinstance(r, RemoteAutoRenewReport) else r.outcome is Outcome.OK


def _failure(r: NodeAutoRenew) -> str | None:
    return r.failure


def _detail(r: NodeAutoRenew) -> str:
    """What the node's run found or did, in a few words."""
    if not _ok(r):
        return _failure(r) or "failed"
    if isinstance(r, RemoteAutoRenewReport):
        return f"renewed {', '.join(r.renewed)}" if r.renewed else ""
    if r.status == RunStatus.NOTHING_DUE:
        return ""
    restarts = [s.component.value for s in r.restart_plan.restarts] if r.restart_plan is not None else []
    did = "renewed" if r.status == RunStatus.RENEWED else "due"
    return f"{len(r.due)} item(s) {did}; restarts: {', '.join(restarts) or 'none'}"


@attrs.frozen(kw_only=True)
class ClusterAutoRenewResult(Report):
    """What :func:`cluster_auto_renew` did, node by node, and where it stopped."""

    apply: bool
    #: Every node's label, in the order they are handled.
    nodes: tuple[str, ...]
    #: Each handled node's result (:class:`~kubepki.AutoRenewResult` for a local root,
    #: :class:`RemoteAutoRenewReport` over SSH), in order.
    results: Mapping[str, NodeAutoRenew] = attrs.field(factory=dict)
    #: Seconds each node took to pass ``health`` after its run (only when a check was given).
    healthy_after: Mapping[str, float] = attrs.field(factory=dict)
    #: The node where it stopped (None: every node was handled and came out ok).
    failed: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every node came out ok (nothing due, planned, or renewed and proven)."""
        return self.failed is None

    @property
    def outcome(self) -> Outcome:
        """Failed unless :attr:`ok`."""
        return Outcome.OK if self.ok else Outcome.FAILED

    @property
    def not_attempted(self) -> tuple[str, ...]:
        """Nodes left untouched because an earlier node failed."""
        return tuple(n for n in self.nodes if n not in self.results and n != self.failed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": "ClusterAutoRenewResult",
            "apply": self.apply,
            "ok": self.ok,
            "nodes": list(self.nodes),
            "failed": self.failed,
            "error": self.error,
            "not_attempted": list(self.not_attempted),
            "healthy_after": dict(self.healthy_after),
            "results": {k: v.to_dict() for k, v in self.results.items()},
        }

    def rows(self) -> Table:
        """One row per node: its run's status, or why it stopped, or not attempted."""
        rows: list[list[Cell | str]] = []
        for label in self.nodes:
            r = self.results.get(label)
            if r is not None:
                tone = "ok" if _ok(r) else "error"
                why = _detail(r)
                when = self.healthy_after.get(label)
                if when is not None:
                    why = f"{why}; healthy after {when:.1f} s"
                rows.append([label, Cell(_status(r) or ("ok" if _ok(r) else "failed"), tone), why])
            elif label == self.failed:
                rows.append([label, Cell("failed", "error"), self.error or ""])
            else:
                rows.append([label, Cell("not attempted", "dim"), ""])
        mode = "apply" if self.apply else "dry run"
        return Table(f"kubepki cluster auto-renew ({mode}): {self.outcome.value}", ("node", "status", "detail"), rows)

    def blocks(self) -> list[Block]:
        """The table, then where it stopped."""
        out: list[Block] = [self.rows()]
        if self.failed is not None:
            out.append(Line([Cell(f"stopped at {self.failed}", "error"), f": {self.error}"]))
            if self.not_attempted:
                out.append(Line([f"not attempted: {', '.join(self.not_attempted)}"]))
        elif not self.apply:
            out.append(Line(["dry run: nothing was written; add --apply to renew node by node"]))
        return out

    def table(self) -> str:
        """The table, then where it stopped."""
        return self.text()


def _run_remote(node: Node, request: RemoteAutoRenewRequest, command: Sequence[str],
                timeout: float) -> RemoteAutoRenewReport:
    fs = node.fs
    if not isinstance(fs, CommandRunner):
        raise ConfigError(f"{fs.describe()} is neither a local root nor able to run commands: "
                          "kubepki cannot auto-renew it where its keys are")
    return RemoteAutoRenewReport.from_result(node.profile.name, fs.run(request.argv(command), timeout=timeout))


def cluster_auto_renew(
    cluster: Cluster | Sequence[Node | str | os.PathLike[str]],
    *,
    within: dt.timedelta = DEFAULT_WITHIN,
    renew_all: bool = False,
    policy: str = "minimal",
    method: str = "manifest",
    apply: bool = False,
    backup_dir: str | None = None,
    history: str | PurePosixPath | None = HISTORY_PATH,
    now: dt.datetime | None = None,
    proc: str | os.PathLike[str] = "/proc",
    timeout: float | None = None,
    health_wait: float = 120.0,
    wait: float = 0.0,
    command: Sequence[str] = ("kubepki",),
    options: Sequence[str] = (),
    remote_timeout: float = 1800.0,
    health: HealthCheck | None = None,
    health_timeout: float = 300.0,
    poll: float = 2.0,
) -> ClusterAutoRenewResult:
    """:func:`kubepki.auto_renew` on every node of ``cluster`` in its order, each proven before the next.

    A local root runs :func:`kubepki.auto_renew` here; a node reached over SSH runs
    ``command`` (how kubepki is started there) ``auto-renew`` on the node, with
    ``options`` appended, for at most ``remote_timeout`` seconds, so its backup and
    its rollback stay on the node. ``within``, ``renew_all``, ``policy``, ``method``,
    ``backup_dir`` and ``history`` (paths on each node), ``now``, ``proc``,
    ``timeout`` (seconds per restart wait), ``health_wait`` and ``wait`` are
    :func:`kubepki.auto_renew`'s. Without ``apply`` every node is planned and
    nothing is written. With it, a node that is not renewed and proven (or has
    nothing due) stops the run: it has rolled itself back, and the nodes after it
    are not touched. ``health(label, node)``, when given, must also return True
    within ``health_timeout`` seconds (polled every ``poll``) after a node renewed
    something, before the next node starts; a node that never does stops the run
    too, left as its own run left it (renewed, and proven by its own checks).

    Raises :class:`~kubepki.ConfigError` for bad arguments (checked on the first
    node before anything is written).
    """
    cluster = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    if not isinstance(within, dt.timedelta) or within <= dt.timedelta(0):
        raise ConfigError(f"within must be a positive timedelta, not {within!r}")
    if policy not in ("minimal", "safe"):
        raise ConfigError(f"unknown restart policy {policy!r} (known: minimal, safe)")
    if method not in ("manifest", "docker", "cri"):
        raise ConfigError(f"unknown restart method {method!r} (known: manifest, docker, cri)")
    if history is not None and not PurePosixPath(history).is_absolute():
        raise ConfigError(f"history must be an absolute node path, not {str(history)!r}")
    labels = tuple(cluster.labels)
    results: dict[str, NodeAutoRenew] = {}
    healthy: dict[str, float] = {}
    failed: str | None = None
    error: str | None = None
    hist = str(history) if history is not None else None
    for label in labels:
        node = cluster[label]
        try:
            result = _one(node, apply=apply, within=within, renew_all=renew_all, policy=policy, method=method,
                          backup_dir=backup_dir, history=hist, now=now, proc=proc, timeout=timeout,
                          health_wait=health_wait, wait=wait, command=command, options=options,
                          remote_timeout=remote_timeout)
        except KubepkiError as exc:  # this node could not be run: it stops an applied roll like a failure
            failed, error = label, f"{type(exc).__name__}: {exc}"
            if apply:
                break
            continue
        results[label] = result
        if not _ok(result):
            failed = failed or label
            error = error or _failure(result) or "failed"
            if apply:
                break
            continue
        if apply and health is not None and _status(result) == RunStatus.RENEWED:
            problem = _await_health(health, label, node, health_timeout=health_timeout, poll=poll)
            if isinstance(problem, str):
                failed, error = label, problem
                break
            healthy[label] = problem
    return ClusterAutoRenewResult(apply=apply, nodes=labels, results=results, healthy_after=healthy,
                                  failed=failed, error=error)


def _one(node: Node, *, apply: bool, within: dt.timedelta, renew_all: bool, policy: str, method: str,
         backup_dir: str | None, history: str | None, now: dt.datetime | None, proc: str | os.PathLike[str],
         timeout: float | None, health_wait: float, wait: float, command: Sequence[str], options: Sequence[str],
         remote_timeout: float) -> NodeAutoRenew:
    """One node's run: here for a local root (or any dry run), on the node over SSH."""
    fs = node.fs
    if not apply or isinstance(fs, LocalPaths):
        # A dry run reads the node (locally or over SSH) and writes nothing: it runs here. backup_dir is a
        # node path; auto_renew takes a local root's as a path of this machine.
        where = fs.host_path(PurePosixPath(backup_dir)) if backup_dir and isinstance(fs, LocalPaths) else None
        return auto_renew(node, within=within, renew_all=renew_all, policy=policy, method=method, apply=apply,
                          backup_dir=where, history=PurePosixPath(history) if history else None, now=now,
                          proc=proc, timeout=timeout, health_wait=health_wait, wait=wait)
    remote_options = [*(["--proc", os.fspath(proc)] if os.fspath(proc) != "/proc" else []),
                      *(["--timeout", f"{timeout:g}"] if timeout is not None else []),
                      "--health-wait", f"{health_wait:g}", *(["--wait", f"{wait:g}"] if wait else []), *options]
    request = RemoteAutoRenewRequest(root=str(node.root), within=within, renew_all=renew_all, policy=policy,
                                     method=method, apply=True, backup_dir=backup_dir, history=history, now=now,
                                     options=tuple(remote_options))
    return _run_remote(node, request, command, remote_timeout)


def _await_health(health: Callable[[str, Node], bool], label: str, node: Node, *, health_timeout: float,
                  poll: float) -> float | str:
    """Seconds until ``health`` said True, or why it never did."""
    start = time.monotonic()
    last = "not healthy yet"
    while True:
        try:
            if health(label, node):
                return time.monotonic() - start
        except (KubepkiError, OSError) as exc:
            last = str(exc)
        if time.monotonic() - start >= health_timeout:
            return f"not healthy within {health_timeout:g} s after its renewal ({last})"
        time.sleep(poll)
