"""Restarting a node by running kubepki on it: the request, its command line and its report.

A node's static pods are restarted by that node's kubelet, so a rolling restart over
SSH runs kubepki *on* the node. This module is the one place that knows how: a typed
:class:`RemoteRestartRequest` becomes the remote command line, and the remote report's
JSON becomes a :class:`RemoteRestartReport`. Nothing else in the library builds
command lines or parses what a remote kubepki printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from kubepki.errors import ConfigError
from kubepki.node import CommandResult, CommandRunner, Node

if TYPE_CHECKING:
    from kubepki.restarts import RestartPlan

__all__ = ["RemoteRestartReport", "RemoteRestartRequest", "RemoteRun", "ssh_restart"]


@attrs.frozen(kw_only=True)
class RemoteRestartRequest:
    """What a node is asked to restart: the inputs of its :class:`~kubepki.RestartPlan`.

    The remote kubepki plans again from these on the node (the plan depends on what
    runs there) and, unless ``dry_run``, carries the plan out. ``options`` are extra
    command-line options for the remote kubepki, passed as they are.
    """

    root: str
    changed: tuple[str, ...]
    policy: str
    method: str
    dry_run: bool = True
    options: tuple[str, ...] = ()

    @classmethod
    def for_plan(cls, plan: RestartPlan, node: Node, *, dry_run: bool,
                 options: Sequence[str] = ()) -> RemoteRestartRequest:
        """The request that repeats ``plan`` on ``node``."""
        return cls(root=str(node.root), changed=tuple(plan.changed), policy=plan.policy.value,
                   method=plan.method.value, dry_run=dry_run, options=tuple(options))

    def argv(self, command: Sequence[str]) -> list[str]:
        """The remote command line; ``command`` is how kubepki is started there."""
        argv = [*command, "restarts", "apply", "--root", self.root, "--changed", *self.changed,
                "--policy", self.policy, "--method", self.method, "-o", "json", *self.options]
        if not self.dry_run:
            argv.append("--apply")
        return argv


_Run = TypeVar("_Run", bound="RemoteRun")


@attrs.frozen(kw_only=True)
class RemoteRun:
    """What a kubepki command run on a node over SSH with ``-o json`` reported."""

    node: str | None
    command: str
    exit_status: int
    #: The JSON the remote kubepki printed, None when it printed none.
    output: Mapping[str, Any] | None = attrs.field(repr=False)
    stderr: str = ""

    @classmethod
    def from_result(cls: type[_Run], node: str | None, result: CommandResult) -> _Run:
        """The report of a finished remote run: its exit status and the JSON it printed."""
        try:
            output = json.loads(result.stdout) if result.stdout.strip() else None
        except ValueError:
            output = None
        return cls(node=node, command=result.command, exit_status=result.exit_status,
                   output=output if isinstance(output, dict) else None,
                   stderr=result.stderr.decode("utf-8", "replace"))


@attrs.frozen(kw_only=True)
class RemoteRestartReport(RemoteRun):
    """What ``kubepki restarts apply`` reported when run on a node over SSH (its :attr:`output`: the
    RestartReport, or the plan in a dry run)."""

    @property
    def ok(self) -> bool:
        """True when the remote run exited 0 (every step done and verified)."""
        return self.exit_status == 0

    @property
    def error(self) -> str | None:
        """Why it failed, from the remote report or its standard error."""
        if self.ok:
            return None
        outcomes = (self.output or {}).get("outcomes") or []
        failed = next((o for o in outcomes if isinstance(o, dict) and o.get("status") == "failed"), None)
        if failed is not None:
            return f"{failed.get('component')}: {failed.get('error')}"
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else f"exited {self.exit_status}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node": self.node, "command": self.command, "exit_status": self.exit_status, "ok": self.ok,
                "error": self.error, "output": dict(self.output) if self.output is not None else None}


def ssh_restart(
    command: Sequence[str] = ("kubepki",),
    *,
    options: Sequence[str] = (),
    dry_run: bool = True,
    timeout: float = 900.0,
) -> Callable[[RestartPlan, Node], RemoteRestartReport]:
    """A ``restart`` for :func:`~kubepki.apply_cluster_restarts` that runs kubepki on the node.

    Static pods are restarted by the node's own kubelet, so the restart happens on
    the node: a :class:`RemoteRestartRequest` for the node's plan, run through the
    node's :class:`~kubepki.node.CommandRunner` (SSH). ``command`` is how kubepki is
    started there (``["python3", "-m", "kubepki"]``...); ``options`` are extra options
    of ``kubepki restarts apply`` (``--timeout 60``, ``--proc /host/proc``). Raises
    :class:`~kubepki.ConfigError` for a node that cannot run commands.
    """

    def restart(plan: RestartPlan, node: Node) -> RemoteRestartReport:
        if not isinstance(node.fs, CommandRunner):
            raise ConfigError(f"{node.fs.describe()} cannot run commands; restart it with apply_restarts")
        if not plan.changed:
            return RemoteRestartReport(node=plan.node, command="", exit_status=0, output=plan.to_dict())
        request = RemoteRestartRequest.for_plan(plan, node, dry_run=dry_run, options=options)
        return RemoteRestartReport.from_result(plan.node, node.fs.run(request.argv(command), timeout=timeout))

    return restart
