"""``kubepki kubelet clean-up``: remove the dated certificates the kubelet's rotation left behind."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kubepki.cli._common import (
    EXIT_OK,
    EXIT_PROBLEM,
    add_node_options,
    add_now_option,
    add_output_option,
    emit,
    error,
    node_from_args,
)
from kubepki.cli._output import Output
from kubepki.cli.renew import _backup_dir, _backup_options, _wait
from kubepki.errors import BackupError, RenewalError

DESCRIPTION = ("The kubelet's own certificates. clean-up lists the dated kubelet-client-<time>.pem and "
               "kubelet-server-<time>.pem files that no -current symlink names (each holds a private key), and "
               "with --apply removes them after a backup; the files the symlinks name are never touched.")
EXAMPLES = """\
examples:
  kubepki kubelet clean-up                   # what would be removed (nothing is, without --apply)
  kubepki kubelet clean-up --apply           # back up into /var/backups/kubepki, then remove them
  kubepki kubelet clean-up -o json           # the plan for review or automation"""


def register(sub: Any) -> None:
    """Add the ``kubelet`` command and its ``clean-up`` sub-command."""
    p = sub.add_parser("kubelet", help="the kubelet's own certificates (clean-up)", description=DESCRIPTION,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = p.add_subparsers(dest="kubelet_command", metavar="COMMAND", required=True)
    c = inner.add_parser("clean-up", help="remove the dated kubelet certificates no -current symlink names",
                         description=DESCRIPTION, epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(c)
    add_now_option(c)
    add_output_option(c)
    c.add_argument("--apply", action="store_true", help="remove the files (default: only show the plan)")
    _backup_options(c)
    c.set_defaults(func=run_cleanup)


def run_cleanup(args: argparse.Namespace) -> int:
    """Show the clean-up plan, or with --apply carry it out."""
    from kubepki.renewal import apply_kubelet_cleanup, plan_kubelet_cleanup

    node = node_from_args(args)
    out = Output.from_args(args)
    plan = plan_kubelet_cleanup(node, now=args.now)
    if not args.apply:
        if args.output == "json":
            emit(json.dumps(plan.to_dict(), indent=2))
        else:
            out.info(plan.text())
        return EXIT_OK
    backup_dir = _backup_dir(args)
    try:
        result = apply_kubelet_cleanup(plan, backup_dir=backup_dir, take_backup=backup_dir is not None,
                                       wait=_wait(args), backup_on_node=False)
    except (RenewalError, BackupError) as exc:
        error(str(exc))
        return EXIT_PROBLEM
    if args.output == "json":
        emit(json.dumps({"plan": plan.to_dict(), "result": result.to_dict()}, indent=2))
    else:
        out.info(result.text())
    return EXIT_OK
