"""``kubepki auto-renew`` and ``kubepki history``: unattended renewal with proof, and its record."""

from __future__ import annotations

import argparse
import json
from pathlib import PurePosixPath
from typing import Any

from kubepki.cli._common import (
    EXIT_OK,
    EXIT_PROBLEM,
    add_auto_renew_restart_options,
    add_node_options,
    add_now_option,
    add_output_option,
    emit,
    error,
    node_from_args,
    parse_within,
)
from kubepki.cli._output import Output

DESCRIPTION = (
    "Renew every renewable certificate that expires within --within, restart exactly what needs it, prove the "
    "new files are in use (served certificates equal the files, restarted components started after the "
    "change, every affected component answers its own health probe), and roll back from the backup taken "
    "first when the proof fails. Without --apply only the plan is shown; nothing due writes nothing.")
EXAMPLES = """\
examples:
  kubepki auto-renew                          # what is due and what would be done (nothing is written)
  kubepki auto-renew --apply                  # renew, restart, verify; roll back on failure
  kubepki auto-renew --within 30d --all --apply --policy safe
  kubepki auto-renew --apply --method cri -o json
  kubepki history                             # what earlier runs did

exit status: 0 nothing due, the plan shown, or renewed and verified; 2 the plan
refuses an item, or the run failed (rolled back, or the rollback failed too:
the output says which); 3 kubepki could not run."""

HISTORY_EXAMPLES = """\
examples:
  kubepki history                 # the last 20 runs on this node
  kubepki history -n 1 -o json    # the newest run's JSON line

exit status: 0 the last run succeeded (or there is none), 2 it failed, 3 the
history could not be read."""


def register(sub: Any) -> None:
    """Add ``auto-renew`` and ``history``."""
    from kubepki.cli._common import DEFAULT_BACKUP_DIR, DEFAULT_RENEW_WITHIN as DEFAULT_WITHIN
    from kubepki.cli.restarts import _endpoint_options

    p = sub.add_parser("auto-renew", help="renew what is due, restart, verify, roll back on failure",
                       description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(p)
    add_now_option(p)
    p.add_argument("--within", type=parse_within, default=DEFAULT_WITHIN, metavar="DURATION",
                   help=f"renew what expires within this (default {DEFAULT_WITHIN.days}d; e.g. 30d, 720h)")
    p.add_argument("--all", dest="renew_all", action="store_true",
                   help="once anything is due, renew every item together (keeps them aligned, as kubeadm advises)")
    add_auto_renew_restart_options(p)
    p.add_argument("--apply", action="store_true", help="really renew and restart (default: show the plan)")
    p.add_argument("--backup-dir", metavar="DIR",
                   help=f"where the backup taken first goes (default {DEFAULT_BACKUP_DIR} under --root)")
    p.add_argument("--history", default=None, metavar="NODE_PATH",
                   help="the node's history file (default /var/lib/kubepki/history.jsonl)")
    p.add_argument("--no-history", action="store_true", help="do not record the run")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="limit for each restart wait (default: stop 90, start 330 — the kubelet's longest "
                        "crash back-off —, serve 60)")
    p.add_argument("--health-wait", type=float, default=120.0, metavar="SECONDS",
                   help="how long the restarted components may take to answer their health probes (default 120)")
    p.add_argument("--health-host", default=None, metavar="HOST",
                   help="reach the health probes at this host instead of the manifests' own")
    p.add_argument("--event", action="store_true",
                   help="record a run that did something as an Event on the node's Node object")
    p.add_argument("--event-kubeconfig", metavar="FILE",
                   help="credentials for --event (default: the pod's service account in a pod, else "
                        "/etc/kubernetes/admin.conf under --root)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another kubepki writing to the node (default: fail)")
    _endpoint_options(p)
    add_output_option(p)
    p.set_defaults(func=run_auto_renew)

    h = sub.add_parser("history", help="what earlier auto-renew runs did on this node",
                       description="The node's run history, newest last.", epilog=HISTORY_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(h)
    h.add_argument("--history", default=None, metavar="NODE_PATH",
                   help="the history file (default /var/lib/kubepki/history.jsonl)")
    h.add_argument("-n", "--last", type=int, default=20, metavar="N", help="show the last N runs (default 20)")
    add_output_option(h)
    h.set_defaults(func=run_history)


def _runtime(args: argparse.Namespace) -> Any:
    if args.runtime_endpoint is not None and args.method != "docker":
        from kubepki.restarts.methods import runtime_for

        return runtime_for(args.runtime_endpoint)
    if args.method == "docker" or args.docker_host is not None:
        from kubepki.restarts.methods import DockerRuntime

        return DockerRuntime(args.docker_host)
    return None


def _event_client(args: argparse.Namespace) -> Any:
    """The API client --event posts with (built before the run: a bad kubeconfig stops it before any write)."""
    import os
    from pathlib import Path

    from kubepki.objects import KubeClient

    if args.event_kubeconfig:
        return KubeClient.from_kubeconfig(args.event_kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return KubeClient.in_cluster()
    return KubeClient.from_kubeconfig(Path(args.root) / "etc/kubernetes/admin.conf")


def run_auto_renew(args: argparse.Namespace) -> int:
    """Plan, or with --apply run, one auto-renewal."""
    from kubepki.autorenew import auto_renew
    from kubepki.cli._exit import exit_status
    from kubepki.node import HISTORY_PATH

    node = node_from_args(args)
    history = None if args.no_history else PurePosixPath(args.history) if args.history else HISTORY_PATH
    runtime = _runtime(args)
    client = _event_client(args) if args.event and args.apply else None
    try:
        result = auto_renew(
            node, within=args.within, renew_all=args.renew_all, policy=args.policy, method=args.method,
            apply=args.apply, backup_dir=args.backup_dir, history=history, now=args.now, runtime=runtime,
            proc=args.proc, served_host=args.host, ports=dict(args.port) or None, health_host=args.health_host,
            timeout=args.timeout, health_wait=args.health_wait, wait=args.wait, event=client)
    finally:
        if client is not None:
            client.close()
        close = getattr(runtime, "close", None)
        if close is not None:
            close()
    if args.output == "json":
        emit(json.dumps(result.to_dict(), indent=2))
    else:
        Output.from_args(args).report(result)
    if result.failure:
        error(result.failure)
    return exit_status(result)


def run_history(args: argparse.Namespace) -> int:
    """Show the node's history."""
    from kubepki.node import HISTORY_PATH, read_history

    node = node_from_args(args)
    path = PurePosixPath(args.history) if args.history else HISTORY_PATH
    found = read_history(node.fs, path)
    if found.problem is not None:
        error(f"cannot read the history {path}: {found.problem}")
        return 3
    records = list(found.records)[-args.last:] if args.last > 0 else []
    if args.output == "json":
        emit(json.dumps({"history": str(path), "skipped_lines": found.skipped, "runs": records}, indent=2))
    else:
        lines = [_line(r) for r in records] or [f"no runs recorded in {path}"]
        if found.skipped:
            lines.append(f"({found.skipped} line(s) that are not JSON objects were skipped)")
        emit("\n".join(lines))
    last = found.last
    return EXIT_OK if last is None or last.get("ok") is True else EXIT_PROBLEM


def _line(record: dict[str, Any] | Any) -> str:
    when = str(record.get("started_at", "?"))
    status = str(record.get("status", "?"))
    renewed = record.get("renewed") or []
    restarted = record.get("restarted") or []
    down = record.get("apiserver_unanswered_seconds")
    total = (record.get("durations") or {}).get("total")
    parts = [when, status.upper(), f"renewed {len(renewed)}", "restarted " + (",".join(restarted) or "none")]
    if isinstance(total, int | float):
        parts.append(f"{total:.1f}s")
    if isinstance(down, int | float):
        parts.append(f"apiserver down {down:.1f}s")
    if record.get("failure"):
        parts.append(f"failure: {record['failure']}")
    return "  ".join(parts)
