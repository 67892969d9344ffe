"""``kubepki permissions fix`` / ``undo``: the chmod and chown the CIS benchmark findings name."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kubepki.cli._common import (
    EXIT_OK,
    EXIT_PROBLEM,
    add_node_options,
    add_output_option,
    emit,
    error,
    node_from_args,
)
from kubepki.cli._output import Output
from kubepki.errors import RenewalError

DESCRIPTION = ("The modes and owners of the files the CIS Kubernetes Benchmark names (kubepki check --benchmark). "
               "fix shows the chmod and chown that make its file rules pass, never loosening a stricter mode; with "
               "--apply it records the previous modes and owners in an undo record on the node, then changes "
               "exactly those files. undo puts a record's modes and owners back. TLS flags are not changed: "
               "their findings say which kubeadm configuration field sets each.")
EXAMPLES = """\
examples:
  kubepki permissions fix                    # the plan: what would change (nothing does, without --apply)
  kubepki permissions fix --apply            # change it; the undo record goes to /var/backups/kubepki
  kubepki permissions undo /var/backups/kubepki/kubepki-permissions-20261207T120000Z.json --apply"""


def register(sub: Any) -> None:
    """Add the ``permissions`` command and its ``fix`` and ``undo`` sub-commands."""
    p = sub.add_parser("permissions", help="fix the modes and owners the CIS benchmark findings name",
                       description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = p.add_subparsers(dest="permissions_command", metavar="COMMAND", required=True)
    fix = inner.add_parser("fix", help="chmod/chown what the benchmark's file rules fail on (plan by default)",
                           description=DESCRIPTION, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    undo = inner.add_parser("undo", help="put back the modes and owners an undo record names (plan by default)",
                            description=DESCRIPTION, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    undo.add_argument("record", metavar="RECORD", help="the undo record's path on the node")
    for c in (fix, undo):
        add_node_options(c)
        add_output_option(c)
        c.add_argument("--apply", action="store_true", help="make the changes (default: only show the plan)")
        c.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait this long for another kubepki writing to the node (default: fail)")
    fix.add_argument("--undo-record", metavar="PATH",
                     help="the undo record's path on the node (default: a new file in /var/backups/kubepki)")
    fix.set_defaults(func=run)
    undo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Show the plan, or with --apply carry it out."""
    from kubepki.permissions import apply_permissions, plan_permissions, plan_permissions_undo

    node = node_from_args(args)
    out = Output.from_args(args)
    undo = args.permissions_command == "undo"
    plan = plan_permissions_undo(node, args.record) if undo else plan_permissions(node)
    if not args.apply:
        if args.output == "json":
            emit(json.dumps(plan.to_dict(), indent=2))
        else:
            out.report(plan)
        return EXIT_OK
    if args.output != "json":
        out.report(plan, answer=False)  # the plan first, then what was done
    try:
        result = apply_permissions(plan, undo_record=None if undo else args.undo_record, wait=args.wait)
    except RenewalError as exc:
        error(str(exc))
        return EXIT_PROBLEM
    if args.output == "json":
        emit(json.dumps({"plan": plan.to_dict(), "result": result.to_dict()}, indent=2))
    else:
        out.report(result)
    return EXIT_OK
