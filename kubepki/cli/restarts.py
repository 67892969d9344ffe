"""``kubepki restarts`` and ``kubepki verify-served``: no renewed file left unused.

``restarts plan`` shows which components must restart (or be verified) after a
change, in order; ``restarts apply`` carries the plan out with ``--apply``
(dry run otherwise) and then checks that every component uses what is on
disk; ``verify-served`` compares the certificates components serve with the
files. See docs/restarts.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from kubepki.cli._common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_WARNING,
    add_node_options,
    add_output_option,
    emit,
    node_from_args,
)
from kubepki.cli._exit import exit_status
from kubepki.cli._output import Output
from kubepki.errors import RestartError

if TYPE_CHECKING:
    from kubepki.node import Node
    from kubepki.restarts import RestartPlan, RestartReport, RestartSource, RestartStep, Runtime

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")

RESTARTS_EXAMPLES = """\
examples:
  kubepki restarts plan --changed front-proxy-client        # what renewing it needs
  kubepki restarts plan --from-renewal renewal.json -o json
  kubepki restarts plan --detect --policy minimal           # what is stale now
  kubepki restarts apply --changed apiserver-etcd-client    # the plan only (dry run)
  kubepki restarts apply --changed apiserver-etcd-client --apply
  kubepki restarts apply --detect --method docker --docker-host unix:///var/run/docker.sock --apply
  kubepki restarts apply --detect --method cri --apply     # containerd or CRI-O, found from its socket

exit status: 0 the plan was shown or applied and verified, 1 applied but some
endpoint could not be checked, 2 a step failed or something is still stale
afterwards, 3 --detect observed no running component (nothing could be judged)
or kubepki could not run (bad arguments)."""

VERIFY_EXAMPLES = """\
examples:
  kubepki verify-served                                     # etcd, kube-apiserver, kubelet where they listen
  kubepki verify-served --host 10.0.0.11 --port kube-apiserver=6443 -o json

exit status: 0 every endpoint serves its on-disk certificate, 1 some could not
be reached, 2 one serves another certificate, 3 nothing could be compared (no
endpoint answered, or none has an on-disk certificate) or kubepki could not run."""


def parse_port(text: str) -> tuple[str, int]:
    """``COMPONENT=PORT`` for ``--port``."""
    name, sep, value = text.partition("=")
    if not sep or name not in COMPONENTS or not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(
            f"expected COMPONENT=PORT with COMPONENT one of {', '.join(COMPONENTS)}: {text!r}")
    return name, int(value)


def _endpoint_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("observing")
    g.add_argument("--proc", default="/proc", metavar="DIR",
                   help="the node's /proc (default /proc; e.g. /host/proc in a pod with hostPID)")
    g.add_argument("--host", default=None,
                   help="where the components' TLS endpoints are reached (default: the address their "
                        "flags bind, else 127.0.0.1)")
    g.add_argument("--port", type=parse_port, action="append", default=[], metavar="COMPONENT=PORT",
                   help="a component's TLS port (default: from its flags, manifest or kubelet config, else "
                        "2379, 6443, 10257, 10259, 10250); repeatable")
    g.add_argument("--docker-host", metavar="URL",
                   help="a Docker engine to observe (and, with --method docker, to restart through); "
                        "e.g. unix:///var/run/docker.sock")
    g.add_argument("--runtime-endpoint", metavar="URL",
                   help="a CRI runtime socket to observe (and, with --method cri, to restart through), as "
                        "reached from here; e.g. unix:///run/containerd/containerd.sock (default with "
                        "--method cri: found from the sockets under --root, then /)")


def register(sub: Any) -> None:
    """Add ``restarts`` (with ``plan`` and ``apply``) and ``verify-served``."""
    p = sub.add_parser("restarts", help="plan and apply the restarts changed files need, then verify",
                       description=__doc__, epilog=RESTARTS_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="restarts_action", metavar="ACTION", parser_class=type(p))
    for name, helptext in (("plan", "show the restarts a change needs"),
                           ("apply", "carry the plan out (dry run unless --apply)")):
        a = actions.add_parser(name, help=helptext, description=helptext, epilog=RESTARTS_EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        add_node_options(a)
        src = a.add_mutually_exclusive_group(required=True)
        src.add_argument("--changed", nargs="+", metavar="NAME", help="catalog names whose files changed")
        src.add_argument("--from-renewal", metavar="FILE",
                         help="a renewal or restore result as JSON ({\"changed\": [...]}: "
                              "kubepki renew, certs or restore --apply -o json)")
        src.add_argument("--detect", action="store_true", help="restart what is found stale now")
        a.add_argument("--policy", choices=("safe", "minimal"), default="safe",
                       help="safe: restart every reader (default); minimal: rely on hot reloads and verify")
        a.add_argument("--method", choices=("manifest", "docker", "cri"), default="manifest",
                       help="how static pods are restarted (default manifest); the kubelet uses systemctl "
                            "when systemd runs it on this node, else a signal to its process")
        a.add_argument("--max-wait", type=float, default=None, metavar="SECONDS",
                       help="with --policy minimal: the longest to wait for a component to pick a file up by "
                            "itself (default: as long as it takes, at most 5 minutes); longer ones are restarted")
        _endpoint_options(a)
        add_output_option(a)
        if name == "apply":
            a.add_argument("--apply", action="store_true", help="really restart (default: show the plan only)")
            a.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                           help="limit for each wait (default: stop 90, start 120, serve 60)")
            a.add_argument("--backup-dir", metavar="DIR",
                           help="where the backup taken first goes (default /var/backups/kubepki under --root)")
            a.add_argument("--no-backup", action="store_true", help="do not back the node up first")
            a.set_defaults(func=run_apply)
        else:
            a.set_defaults(func=run_plan)
    p.set_defaults(func=lambda args: _usage(p))

    v = sub.add_parser("verify-served", help="compare the certificates components serve with those on disk",
                       description="Connect to each component's TLS endpoint and compare the certificate it "
                                   "serves with the one on disk.",
                       epilog=VERIFY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(v)
    v.add_argument("--host", default=None,
                   help="where the endpoints are reached (default: the address the flags bind, else 127.0.0.1)")
    v.add_argument("--port", type=parse_port, action="append", default=[], metavar="COMPONENT=PORT",
                   help="check this component on this port (repeatable; default: every component with an "
                        "on-disk serving certificate, on the port its manifest or kubelet config names)")
    v.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="per connection (default 5)")
    add_output_option(v)
    v.set_defaults(func=run_verify)


# The library says what to do in its own terms; the command line names the flag that does it.
_FLAG_HINTS = (
    ("name the kubelet's with an endpoint", "--runtime-endpoint"),
    ("no container runtime socket found", "--runtime-endpoint"),
    ("cannot reach the Docker engine", "--docker-host"),
    ("no kubelet process of the node", "--proc"),
)


def _error(message: str) -> None:
    hints = [flag for phrase, flag in _FLAG_HINTS if phrase in message]
    if hints:
        message += f" ({', '.join(dict.fromkeys(hints))})"
    print(f"kubepki: error: {' '.join(message.split())}", file=sys.stderr)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_ERROR


def _runtime(args: argparse.Namespace) -> Runtime | None:
    if args.runtime_endpoint is not None and args.method != "docker":
        from kubepki.restarts.methods import runtime_for

        return runtime_for(args.runtime_endpoint)
    if args.method == "cri":
        if not args.detect:
            return None  # apply_restarts finds the runtime when it restarts something
        from kubepki.restarts.methods import detect_runtime

        return detect_runtime(args.root)
    if args.docker_host is None and args.method != "docker":
        return None
    from kubepki.restarts.methods import DockerRuntime

    return DockerRuntime(args.docker_host)


def _source(args: argparse.Namespace, runtime: Runtime | None) -> RestartSource:
    """--changed, --from-renewal or --detect as the planner's typed source."""
    from kubepki.restarts import Changed, FromDetection, FromRenewal

    if args.changed is not None:
        return Changed(args.changed)
    if args.from_renewal is not None:
        return FromRenewal(args.from_renewal)
    return FromDetection(proc=args.proc, runtime=runtime, served_host=args.host, ports=dict(args.port))


def _plan(args: argparse.Namespace, node: Node, runtime: Runtime | None) -> RestartPlan:
    from kubepki.restarts import plan_restarts

    return plan_restarts(node, _source(args, runtime), policy=args.policy, method=args.method,
                         max_wait=args.max_wait, proc=args.proc)


def _close(runtime: Runtime | None) -> None:
    close = getattr(runtime, "close", None)
    if close is not None:
        close()


def run_plan(args: argparse.Namespace) -> int:
    """Show the plan."""
    node = node_from_args(args)
    runtime = _runtime(args) if args.detect else None
    try:
        plan = _plan(args, node, runtime)
    finally:
        _close(runtime)
    _show(args, plan)
    return exit_status(plan)


def _show(args: argparse.Namespace, report: RestartPlan | RestartReport) -> None:
    if args.output == "json":
        emit(report.to_json())
    else:
        Output.from_args(args).report(report)


def run_apply(args: argparse.Namespace) -> int:
    """Show the plan, or with ``--apply`` carry it out and verify."""
    node = node_from_args(args)
    runtime = _runtime(args)
    try:
        return _apply(args, node, runtime)
    finally:
        _close(runtime)


def _apply(args: argparse.Namespace, node: Node, runtime: Runtime | None) -> int:
    from kubepki.restarts import Timeouts, apply_restarts

    plan = _plan(args, node, runtime if args.detect else None)
    if plan.outcome.value == "incomplete":  # Outcome.INCOMPLETE; _report is not imported to parse
        _show(args, plan)
        _error("nothing was observed running on this node: nothing restarted (--proc and the runtime options "
               "say where to look)")
        return exit_status(plan)
    if not args.apply:
        _show(args, plan)
        if args.output != "json":
            Output.from_args(args).result("\ndry run: nothing was restarted; add --apply to carry the plan out")
        return exit_status(plan)

    def progress(step: RestartStep, message: str) -> None:
        print(f"kubepki: {step.component.value}: {message}", file=sys.stderr, flush=True)

    try:
        report = apply_restarts(
            plan,
            progress=progress if args.output == "table" and not getattr(args, "quiet", False) else None,
            timeout=Timeouts() if args.timeout is None else args.timeout, runtime=runtime, proc=args.proc,
            served_host=args.host, ports=dict(args.port),
            take_backup=not args.no_backup, backup_dir=args.backup_dir,
        )
    except RestartError as exc:
        _error(str(exc))
        return EXIT_PROBLEM
    _show(args, report)
    if report.failed is not None:
        _error(f"{report.failed.step.component.value}: {report.failed.error}")
    elif report.remaining:
        _error(f"still stale after the restarts: "
               f"{', '.join(dict.fromkeys(s.component.value for s in report.remaining))}")
    elif report.unchecked:
        _error("could not check " + "; ".join(c.message for c in report.unchecked)
               + " (--host and --port name the endpoints)")
    return exit_status(report)


def run_verify(args: argparse.Namespace) -> int:
    """Compare served certificates with the on-disk ones."""
    from kubepki.restarts import CheckStatus, verify_served

    node = node_from_args(args)
    ports = dict(args.port)
    checks = verify_served(node, host=args.host, ports=ports, components=list(ports) or None,
                           timeout=args.timeout)
    if args.output == "json":
        emit(json.dumps({"node": node.profile.name, "host": args.host,
                         "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        from kubepki.inspection import go_tabwriter

        lines = ["COMPONENT\tENDPOINT\tSTATUS\tDETAIL"]
        for c in checks:
            lines.append("\t".join([c.component.value if c.component else "?",
                                    f"{c.served.host}:{c.served.port}", c.status.value, c.message]))
        emit(go_tabwriter(lines) if checks else "no component with an on-disk serving certificate to check")
    if any(c.status is CheckStatus.MISMATCH for c in checks):
        return EXIT_PROBLEM
    if not any(c.status is CheckStatus.MATCH for c in checks):
        # Nothing was compared (no endpoint answered, or none to check): not "all well" and not a warning.
        _error("nothing was checked: " + ("no endpoint served a certificate to compare"
                                          if checks else "no component with an on-disk serving certificate"))
        return EXIT_ERROR
    if any(c.status is not CheckStatus.MATCH for c in checks):
        return EXIT_WARNING
    return EXIT_OK
