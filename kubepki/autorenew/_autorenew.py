"""Unattended renewal with proof: renew what is due, restart what needs it, verify, roll back on failure.

:func:`auto_renew` is the one operation a timer or a DaemonSet runs on a node:

1. plan the renewal of every renewable item expiring within ``within`` (``renew_all``:
   every item together once one is due, as kubeadm's advice keeps them aligned);
   nothing due is exit 0 with nothing written;
2. with ``apply``: back up, renew (:func:`~kubepki.apply_renewal`), plan the restarts
   of exactly what was written (:func:`~kubepki.plan_restarts`, ``minimal`` policy by
   default) and apply them (:func:`~kubepki.apply_restarts`);
3. verify: every served certificate equals its file, every restarted component
   started after the files changed, and every affected component answers its own
   health probe (:func:`~kubepki.restarts.check_health`, as the kubelet asks);
4. on any failure, restore the backup, restart again, verify again, and say so.

Each applied run appends one line to the node's history (:mod:`kubepki.node._history`),
including the seconds the kube-apiserver did not answer its health probe while
kubepki restarted things.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki._clock import iso, utc
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki._version import __version__
from kubepki.catalog import Component
from kubepki.errors import ConfigError, KubepkiError, NodeError
from kubepki.node import HISTORY_PATH, LocalPaths, Node, append_history

__all__ = ["DEFAULT_WITHIN", "AutoRenewResult", "DueItem", "RunStatus", "Verification", "auto_renew", "node_event"]

#: Renew what expires within this (kubeadm's leaves live a year; two months leaves time to notice a failure).
DEFAULT_WITHIN = dt.timedelta(days=60)
#: How long a restarted component may take to answer its health probe.
_HEALTH_WAIT = 120.0
#: How long a restarted component may take to run again (see auto_renew: the kubelet's back-off).
_START_WAIT = 330.0


class RunStatus:
    """What an auto-renew run came to (the ``status`` of its JSON and history line)."""

    NOTHING_DUE = "nothing-due"
    PLANNED = "planned"
    RENEWED = "renewed"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"
    REFUSED = "refused"


@attrs.frozen(kw_only=True)
class DueItem:
    """One item the run found due."""

    name: str
    not_after: dt.datetime | None
    #: Renewed because ``renew_all`` keeps the items aligned, not because it was due itself.
    aligned: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "not_after": iso(self.not_after) if self.not_after else None,
                "aligned": self.aligned}


@attrs.frozen(kw_only=True)
class Verification:
    """What the checks after the restarts found."""

    #: Served certificates equal the files (the restart report's final check).
    served_ok: bool
    #: Restarted components whose new instance did not start after the files changed.
    not_restarted: tuple[str, ...] = ()
    health: tuple[Any, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "served_ok": self.served_ok, "not_restarted": list(self.not_restarted),
                "health": [h.to_dict() for h in self.health], "problems": list(self.problems)}


@attrs.frozen(kw_only=True)
class AutoRenewResult(Report):
    """One auto-renew run on one node: what was due, done, verified and undone."""

    node: str | None
    root: str
    started_at: dt.datetime
    finished_at: dt.datetime
    apply: bool
    within: dt.timedelta
    renew_all: bool
    policy: str
    method: str
    status: str
    due: tuple[DueItem, ...] = ()
    #: The renewal plan (None when nothing was due).
    renewal_plan: Any = attrs.field(default=None, repr=False)
    #: The restarts planned for what the renewal writes.
    restart_plan: Any = attrs.field(default=None, repr=False)
    renewal: Any = attrs.field(default=None, repr=False)
    restarts: Any = attrs.field(default=None, repr=False)
    verification: Verification | None = None
    #: What went wrong first (None: nothing).
    failure: str | None = None
    rolled_back: bool = False
    rollback_restarts: Any = attrs.field(default=None, repr=False)
    rollback_verification: Verification | None = None
    backup: str | None = None
    #: Seconds per phase: plan, renew, restart, verify, rollback, total.
    durations: Mapping[str, float] = attrs.field(factory=dict)
    #: Seconds the kube-apiserver did not answer its health probe while kubepki restarted things
    #: (None: it was not watched, e.g. nothing was restarted or there is no apiserver here).
    apiserver_unanswered_seconds: float | None = None
    history: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def outcome(self) -> Outcome:
        """Ok when nothing was due, the plan was shown, or the renewal was verified; failed otherwise."""
        if self.status in (RunStatus.NOTHING_DUE, RunStatus.PLANNED, RunStatus.RENEWED):
            return Outcome.OK
        return Outcome.FAILED

    @property
    def restarted(self) -> tuple[str, ...]:
        """The components the run restarted."""
        if self.restarts is None:
            return ()
        return tuple(dict.fromkeys(o.step.component.value for o in self.restarts.outcomes
                                   if o.step.action.value == "restart" and o.status.value == "done"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; also the run's history line."""
        renewal = self.renewal
        return {
            "kind": "AutoRenewResult",
            "kubepki_version": __version__,
            "node": self.node,
            "root": self.root,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "apply": self.apply,
            "status": self.status,
            "ok": self.outcome is Outcome.OK,
            "within_seconds": int(self.within.total_seconds()),
            "renew_all": self.renew_all,
            "policy": self.policy,
            "method": self.method,
            "due": [d.to_dict() for d in self.due],
            "renewed": list(renewal.changed) if renewal is not None else [],
            "planned_restarts": [s.component.value for s in self.restart_plan.restarts]
            if self.restart_plan is not None else [],
            "restarted": list(self.restarted),
            "verification": self.verification.to_dict() if self.verification else None,
            "failure": self.failure,
            "rolled_back": self.rolled_back,
            "rollback_verification": self.rollback_verification.to_dict() if self.rollback_verification else None,
            "backup": self.backup,
            "durations": {k: round(v, 3) for k, v in self.durations.items()},
            "apiserver_unanswered_seconds": (round(self.apiserver_unanswered_seconds, 3)
                                             if self.apiserver_unanswered_seconds is not None else None),
            "history": self.history,
            "notes": list(self.notes),
        }

    def rows(self) -> Table:
        """One row per due item, then one per phase."""
        rows: list[list[Cell | str]] = [[d.name, "due" if not d.aligned else "aligned",
                                         d.not_after.strftime("%b %d, %Y %H:%M UTC") if d.not_after else "-"]
                                        for d in self.due]
        return Table(self._heading(), ("ITEM", "WHY", "EXPIRES"), rows)

    def blocks(self) -> Sequence[Block]:
        """The heading, the due items, the restarts, the checks and what came of it."""
        out: list[Block] = [Line([self._heading()])]
        if not self.due:
            out.append(Line([Cell(f"nothing is due within {_days(self.within)}: nothing written", "ok")]))
            return [*out, *self._notes()]
        out += [Line([]), attrs.evolve(self.rows(), title="")]
        if self.restart_plan is not None:
            planned = [s.component.value for s in self.restart_plan.restarts]
            out.append(Line([f"restarts ({self.policy}): " + (", ".join(planned) if planned
                                                               else "none (the components reload by themselves)")]))
        if self.verification is not None:
            out.append(Line(["checks:"]))
            out += _check_lines(self.verification)
        if self.rollback_verification is not None:
            out.append(Line(["after the rollback:"]))
            out += _check_lines(self.rollback_verification)
        tone = "ok" if self.outcome is Outcome.OK else "error"
        out.append(Line([Cell(_verdict(self), tone)]))
        return [*out, *self._notes()]

    def _notes(self) -> list[Block]:
        return [Line([f"note: {n}"]) for n in self.notes]

    def _heading(self) -> str:
        mode = "apply" if self.apply else "dry run"
        return (f"auto-renew on node {self.node or '?'} ({mode}, within {_days(self.within)}, "
                f"policy {self.policy}, method {self.method})")


def _check_lines(v: Verification) -> list[Block]:
    """Each health answer, then each other problem (the unhealthy ones are not said twice)."""
    said = {h.message for h in v.health}
    lines: list[Block] = [Line([Cell(f"  {h.message}", "ok" if h.healthy else "error")]) for h in v.health]
    return lines + [Line([Cell(f"  {p}", "error")]) for p in v.problems if p not in said]


def _days(delta: dt.timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g}d"


def _verdict(r: AutoRenewResult) -> str:
    if r.status == RunStatus.PLANNED:
        return "dry run: nothing was written; add --apply to renew, restart and verify"
    if r.status == RunStatus.RENEWED:
        down = (f"; the kube-apiserver did not answer for {r.apiserver_unanswered_seconds:.1f} s"
                if r.apiserver_unanswered_seconds else "")
        return f"renewed, restarted and verified (backup {r.backup}){down}"
    if r.status == RunStatus.ROLLED_BACK:
        return f"FAILED: {r.failure}; rolled back to {r.backup}, and the node serves the old certificates again"
    if r.status == RunStatus.ROLLBACK_FAILED:
        return f"FAILED: {r.failure}; the rollback to {r.backup} did not verify either: the node needs a person"
    return f"FAILED: {r.failure}"


class _ApiserverWatch:
    """Probe the kube-apiserver's health in a thread; add up the time it did not answer."""

    def __init__(self, node: Node, *, host: str | None, interval: float = 0.25) -> None:
        from kubepki.restarts import health_url

        self._node, self._host, self._interval = node, host, interval
        self.watched = health_url(node, Component.KUBE_APISERVER, host=host) is not None
        self.unanswered = 0.0
        #: Whether it answered the first probe (None: not watched, or not asked yet).
        self.initially_healthy: bool | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubepki-apiserver-watch", daemon=True)

    def __enter__(self) -> _ApiserverWatch:
        if self.watched:
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self.watched:
            self._thread.join(10)

    def _run(self) -> None:
        from kubepki.restarts import check_health

        down_since: float | None = None
        while not self._stop.is_set():
            (check,) = check_health(self._node, [Component.KUBE_APISERVER], host=self._host, timeout=1.0)
            now = time.monotonic()
            if self.initially_healthy is None:
                self.initially_healthy = bool(check.healthy)
            if check.healthy:
                if down_since is not None:
                    self.unanswered += now - down_since
                    down_since = None
            elif down_since is None:
                down_since = now
            self._stop.wait(self._interval)
        if down_since is not None:
            self.unanswered += time.monotonic() - down_since


def _components_of(plan: Any) -> list[Component]:
    """Every component a restart plan touches (restart, wait or verify)."""
    return list(dict.fromkeys(s.component for s in plan.steps if s.action.value in ("restart", "wait", "verify")))


def _verify(node: Node, report: Any, files_written: dt.datetime | None, *, host: str | None,
            health_wait: float) -> Verification:
    """Served == files, restarted components started after ``files_written``, every touched component healthy."""
    from kubepki.restarts import check_health

    problems: list[str] = []
    if report.failed is not None:
        problems.append(f"{report.failed.step.component.value}: {report.failed.error}")
    problems += [f"{s.component.value} still serves or uses the old files" for s in report.remaining]
    late: list[str] = []
    for o in report.outcomes:
        restarted = o.step.action.value == "restart" and o.status.value == "done"
        if restarted and files_written is not None and (o.after is None or o.after < files_written):
            late.append(o.step.component.value)
    problems += [f"{c}: no instance started after the files changed" for c in late]
    components = _components_of(report.plan)
    deadline = time.monotonic() + health_wait
    health: tuple[Any, ...] = ()
    while components:
        health = check_health(node, components, host=host, timeout=3.0)
        if all(h.healthy is not False for h in health) or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    problems += [h.message for h in health if h.healthy is False]
    return Verification(served_ok=report.ok, not_restarted=tuple(late), health=health, problems=tuple(problems))


def auto_renew(  # noqa: PLR0915  -- one operation's options, phase after phase
    node: Node | str | os.PathLike[str],
    *,
    within: dt.timedelta = DEFAULT_WITHIN,
    renew_all: bool = False,
    policy: str = "minimal",
    method: str = "manifest",
    apply: bool = False,
    backup_dir: str | os.PathLike[str] | None = None,
    history: str | PurePosixPath | None = HISTORY_PATH,
    now: dt.datetime | None = None,
    runtime: Any = None,
    proc: str | os.PathLike[str] = "/proc",
    served_host: str | None = None,
    ports: Mapping[Any, int] | None = None,
    health_host: str | None = None,
    timeout: Any = None,
    health_wait: float = _HEALTH_WAIT,
    wait: float = 0.0,
    after_renewal: Callable[[Any], object] | None = None,
    event: Any = None,
) -> AutoRenewResult:
    """Renew what is due on ``node``, restart what needs it, verify, and roll back if it does not verify.

    Without ``apply`` only the plan is made (renewal and restarts) and nothing is
    written. With it: a backup into ``backup_dir`` (default ``/var/backups/kubepki``
    under the node's root), the renewal, the restarts (``policy``, ``method``,
    ``runtime``, ``proc``, ``served_host``, ``ports``, ``timeout`` as for
    :func:`~kubepki.apply_restarts`, except that a component may take 330 s to run again by
    default: the kubelet's longest crash back-off), then the checks; a failed check restores the
    backup, restarts again and checks again. ``history`` (a node path; None: none)
    gets one JSON line per applied run. ``health_host`` replaces the health probes'
    own host. ``after_renewal(result)`` runs between the renewal and the restarts
    (a hook for tests and site checks: an exception it raises is a failure that is
    rolled back). ``now`` is the clock the due dates are judged by. ``event`` (a
    :class:`~kubepki.objects.KubeClient`) records an applied run that did something
    as a Kubernetes Event on the node's Node object (``kubectl describe node``).

    Raises :class:`~kubepki.ConfigError` for bad arguments and a node that is not a
    local root when ``apply`` is set (the rollback restores from a local archive).
    """
    from kubepki.backups import DEFAULT_BACKUP_DIR
    from kubepki.renewal import apply_renewal, plan_renewal
    from kubepki.restarts import Changed, Timeouts, plan_restarts

    n = Node.coerce(node)
    if not isinstance(within, dt.timedelta) or within <= dt.timedelta(0):
        raise ConfigError(f"within must be a positive timedelta, not {within!r}")
    if apply and not isinstance(n.fs, LocalPaths):
        raise ConfigError("auto-renew --apply runs on the node itself (a local root, e.g. --root /): its rollback "
                          "restores a local archive")
    clock = utc(now)
    started_at, t0 = utc(None), time.monotonic()
    durations: dict[str, float] = {}
    notes: list[str] = []
    made = functools.partial(AutoRenewResult, node=n.profile.name, root=str(n.root), started_at=started_at,
                             apply=apply, within=within, renew_all=renew_all, policy=policy, method=method)

    due_plan = plan_renewal(n, "all", expiring_within=within, now=clock)
    due_names = {s.name for s in due_plan.work}
    if not due_names:
        result = made(finished_at=utc(None), status=RunStatus.NOTHING_DUE,
                                 renewal_plan=due_plan, durations={"total": time.monotonic() - t0},
                                 notes=tuple(due_plan.notes))
        return _recorded(n, result, history, None)
    plan = plan_renewal(n, "all", now=clock) if renew_all else due_plan
    due = tuple(DueItem(name=s.name, not_after=s.old_not_after, aligned=s.name not in due_names) for s in plan.work)
    restart_plan = plan_restarts(n, Changed(tuple(s.name for s in plan.work)), policy=policy, method=method)
    durations["plan"] = time.monotonic() - t0
    if plan.refused:
        result = made(finished_at=utc(None), status=RunStatus.REFUSED, due=due,
                                 renewal_plan=plan, restart_plan=restart_plan, durations=durations,
                                 failure="the renewal plan refuses " + ", ".join(s.name for s in plan.refused),
                                 notes=tuple(plan.notes))
        return _recorded(n, result, history, event) if apply else result
    if not apply:
        return made(finished_at=utc(None), status=RunStatus.PLANNED, due=due,
                               renewal_plan=plan, restart_plan=restart_plan, durations=durations,
                               notes=tuple(plan.notes))

    # An unattended run waits out the kubelet's crash back-off rather than roll back because of it: a
    # static pod restarted through its manifest keeps its UID, so a component that exited by itself
    # earlier (a lost lease) starts only when its back-off ends, up to MaxContainerBackOff, 300 s
    # (pkg/kubelet/kubelet.go), plus the kubelet's 20 s look at the manifests.
    timeouts = Timeouts(start=_START_WAIT) if timeout is None else Timeouts.coerce(timeout)
    fs = n.fs
    if backup_dir is None and isinstance(fs, LocalPaths):
        where: str | os.PathLike[str] = fs.host_path(PurePosixPath(DEFAULT_BACKUP_DIR))
    else:
        where = backup_dir if backup_dir is not None else DEFAULT_BACKUP_DIR
    phase = time.monotonic()
    renewal = apply_renewal(plan, backup_dir=where, wait=wait)
    durations["renew"] = time.monotonic() - phase
    backup = str(renewal.backup) if renewal.backup is not None else None
    watch = _ApiserverWatch(n, host=health_host)
    with watch:
        restart_plan, restarts, verification, failure = _restart_and_verify(
            n, renewal, after_renewal, restart_plan, policy=policy, method=method, timeouts=timeouts,
            runtime=runtime, proc=proc, served_host=served_host, ports=ports, health_host=health_host,
            health_wait=health_wait, durations=durations)
        status = RunStatus.RENEWED
        rollback_restarts = rollback_verification = None
        if failure is not None:
            phase = time.monotonic()
            rollback_restarts, rollback_verification, said = _roll_back(
                n, backup, renewal, policy=policy, method=method, timeouts=timeouts, runtime=runtime, proc=proc,
                served_host=served_host, ports=ports, health_host=health_host, health_wait=health_wait)
            notes += said
            durations["rollback"] = time.monotonic() - phase
            ok = rollback_verification is not None and rollback_verification.ok
            status = RunStatus.ROLLED_BACK if ok else RunStatus.ROLLBACK_FAILED
    durations["total"] = time.monotonic() - t0
    if watch.initially_healthy is False:
        notes.append("the kube-apiserver did not answer its health probe when the run started: the seconds it "
                     "did not answer include that time")
    result = made(
        finished_at=utc(None), status=status, due=due, renewal_plan=plan, restart_plan=restart_plan,
        renewal=renewal, restarts=restarts, verification=verification, failure=failure,
        rolled_back=failure is not None and rollback_restarts is not None, rollback_restarts=rollback_restarts,
        rollback_verification=rollback_verification, backup=backup, durations=durations,
        apiserver_unanswered_seconds=watch.unanswered if watch.watched else None,
        notes=(*plan.notes, *notes))
    return _recorded(n, result, history, event)


def _restart_and_verify(n: Node, renewal: Any, after_renewal: Callable[[Any], object] | None, planned: Any, *,
                        policy: str, method: str, timeouts: Any, runtime: Any, proc: str | os.PathLike[str],
                        served_host: str | None, ports: Mapping[Any, int] | None, health_host: str | None,
                        health_wait: float, durations: dict[str, float]) -> tuple[Any, Any, Verification | None,
                                                                                   str | None]:
    """The hook, the restarts of what ``renewal`` wrote, and the checks: (plan, report, verification, failure)."""
    from kubepki.restarts import FromRenewal, apply_restarts, plan_restarts

    restart_plan, restarts, verification = planned, None, None
    try:
        if after_renewal is not None:
            after_renewal(renewal)
        phase = time.monotonic()
        restart_plan = plan_restarts(n, FromRenewal(renewal), policy=policy, method=method, proc=proc)
        restarts = apply_restarts(restart_plan, timeout=timeouts, runtime=runtime, proc=proc,
                                  served_host=served_host, ports=ports, take_backup=False)
        durations["restart"] = time.monotonic() - phase
        phase = time.monotonic()
        verification = _verify(n, restarts, renewal.finished_at, host=health_host, health_wait=health_wait)
        durations["verify"] = time.monotonic() - phase
    except KubepkiError as exc:
        return restart_plan, restarts, verification, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a hook's or a method's failure must still be rolled back
        return restart_plan, restarts, verification, f"unexpected {type(exc).__name__}: {exc}"
    if verification.ok:
        return restart_plan, restarts, verification, None
    more = len(verification.problems) - 1
    return restart_plan, restarts, verification, verification.problems[0] + (
        f" (and {more} more problem(s))" if more else "")


def _roll_back(n: Node, backup: str | None, renewal: Any, *, policy: str, method: str, timeouts: Any,
               runtime: Any, proc: str | os.PathLike[str], served_host: str | None, ports: Mapping[Any, int] | None,
               health_host: str | None, health_wait: float) -> tuple[Any, Verification | None, list[str]]:
    """Restore ``backup``, restart what the renewal changed, verify again."""
    from kubepki.backups import restore
    from kubepki.restarts import Changed, apply_restarts, plan_restarts

    if backup is None:
        return None, None, ["no backup was taken: nothing to roll back to"]
    try:
        restore(backup, n, only=list(renewal.changed), dry_run=False, accept_changed=True, take_backup=False)
        written = utc(None)
        plan = plan_restarts(n, Changed(tuple(renewal.changed)), policy=policy, method=method, proc=proc)
        report = apply_restarts(plan, timeout=timeouts, runtime=runtime, proc=proc, served_host=served_host,
                                ports=ports, take_backup=False)
    except KubepkiError as exc:
        return None, Verification(served_ok=False, problems=(f"rollback: {type(exc).__name__}: {exc}",)), []
    return report, _verify(n, report, written, host=health_host, health_wait=health_wait), []


#: The Event reason and type of each status.
_EVENTS = {
    RunStatus.RENEWED: ("KubepkiCertificatesRenewed", "Normal"),
    RunStatus.ROLLED_BACK: ("KubepkiRenewalRolledBack", "Warning"),
    RunStatus.ROLLBACK_FAILED: ("KubepkiRenewalFailed", "Warning"),
    RunStatus.REFUSED: ("KubepkiRenewalRefused", "Warning"),
}


def node_event(result: AutoRenewResult, node_uid: str | None = None) -> dict[str, Any] | None:
    """The core/v1 Event that says what ``result`` did, on its Node (None: nothing to say, e.g. nothing due)."""
    if result.status not in _EVENTS or not result.node:
        return None
    reason, kind = _EVENTS[result.status]
    if result.status == RunStatus.RENEWED:
        message = (f"kubepki renewed {len(result.renewal.changed)} certificate(s), restarted "
                   f"{', '.join(result.restarted) or 'nothing'} and verified them in use (backup {result.backup})")
    else:
        message = f"kubepki auto-renew {result.status}: {result.failure}"
    when = iso(result.finished_at, timespec="seconds")
    involved: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "name": result.node}
    if node_uid:
        involved["uid"] = node_uid
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{result.node}.kubepki-", "namespace": "default"},
        "involvedObject": involved, "reason": reason, "type": kind, "message": message[:1024],
        "source": {"component": "kubepki", "host": result.node}, "reportingComponent": "kubepki",
        "reportingInstance": result.node, "firstTimestamp": when, "lastTimestamp": when, "count": 1,
    }


def _post_event(client: Any, result: AutoRenewResult) -> str | None:
    """Post the run's Event; what went wrong, or None."""
    from urllib.parse import quote

    if node_event(result) is None:
        return None
    try:
        uid = client.get_json(f"/api/v1/nodes/{quote(str(result.node), safe='')}").get("metadata", {}).get("uid")
        client.post_json("/api/v1/namespaces/default/events", node_event(result, uid if isinstance(uid, str) else None))
    except KubepkiError as exc:
        return f"the Event was not recorded: {exc}"
    return None


def _recorded(n: Node, result: AutoRenewResult, history: str | PurePosixPath | None,
              event: Any) -> AutoRenewResult:
    """``result`` with its history line appended (applied runs only) and its Event posted; a history or an
    Event that cannot be written is a note."""
    if not result.apply:
        return result
    if event is not None:
        said = _post_event(event, result)
        if said is not None:
            result = attrs.evolve(result, notes=(*result.notes, said))
    if history is None:
        return result
    path = PurePosixPath(history)
    if not path.is_absolute():
        raise ConfigError(f"history must be an absolute node path, not {str(history)!r}")
    recorded = attrs.evolve(result, history=str(path))
    try:
        append_history(n.fs, recorded.to_dict(), path)
    except NodeError as exc:
        return attrs.evolve(result, notes=(*result.notes, f"the history was not written: {exc.message}"))
    return recorded
