"""``kubepki check``: inspect a node's certificates, keys and kubeconfigs."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
from typing import TYPE_CHECKING, Any

from kubepki.cli._common import (
    DEFAULT_WARN_WITHIN,
    add_node_options,
    add_now_option,
    add_output_option,
    node_from_args,
    parse_within,
)
from kubepki.cli._exit import exit_status, json_document
from kubepki.cli._output import Output

if TYPE_CHECKING:
    from kubepki.inspection import Inventory

DESCRIPTION = "Inspect a node's certificates, keys and kubeconfigs: kubeadm's expiry tables, then kubepki's findings."
EXAMPLES = """\
examples:
  kubepki check                           # this node, as root
  kubepki check --root /host -o json      # from a privileged pod with / mounted at /host
  kubepki check --demo                    # a built-in demo cluster
  kubepki check --now 2027-11-01 --warn-within 60d
  kubepki check -q || alert               # quiet: only the findings, and only if there are any
  kubepki check --benchmark               # the CIS Kubernetes Benchmark view: PASS/WARN/FAIL per id

exit status: 0 all well, 1 warnings only, 2 anything expired, invalid or a
required item missing, 3 kubepki could not run."""


def register(sub: Any) -> None:
    """Add the ``check`` sub-command."""
    p = sub.add_parser("check", help="inspect a node's PKI (like kubeadm certs check-expiration)",
                       description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(p)
    add_now_option(p)
    p.add_argument("--warn-within", type=parse_within, default=DEFAULT_WARN_WITHIN, metavar="DURATION",
                   help="warn about items expiring within this (default 30d; e.g. 60d, 720h)")
    add_output_option(p)
    p.add_argument("--demo", action="store_true",
                   help="check a temporary built-in demo cluster instead of a node")
    p.add_argument("--benchmark", action="store_true",
                   help="show the CIS Kubernetes Benchmark view (kube-bench's ids and verdicts, the files looked "
                        "at) instead of the expiry tables")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Inspect and print; the exit status follows the inventory."""
    from kubepki.inspection import inspect  # here, not at the top: the parser is built without it

    # What is loaded now lives as long as the process: the collections the inspection triggers need
    # not scan it again each time (a tenth of the command's CPU, docs/performance.md).
    gc.freeze()
    out = Output.from_args(args)
    if args.demo:
        import tempfile  # here: only the demo needs it (it loads shutil and random)

        from kubepki import testing

        now = args.now or dt.datetime.now(dt.timezone.utc)
        with tempfile.TemporaryDirectory(prefix="kubepki-demo-") as tmp:
            with out.status("Building a demo cluster…"):
                demo = testing.build_node(tmp, issued_at=now - testing.DEMO_AGE)
            inv = inspect(demo.as_node(), now=now, warn_within=args.warn_within)
            return _report(inv, args.output, out, benchmark=args.benchmark)
    node = node_from_args(args)
    return _report(inspect(node, now=args.now, warn_within=args.warn_within), args.output, out,
                   benchmark=args.benchmark)


def _report(inv: Inventory, output: str, out: Output, *, benchmark: bool = False) -> int:
    from kubepki._report import Outcome, render_text
    from kubepki.inspection import findings_blocks

    if benchmark and inv.cis is not None:
        # The benchmark view; the exit status is the inventory's, which carries the same findings.
        if output == "json":
            out.result(json.dumps({**inv.cis.to_dict(), "exit_code": exit_status(inv)}, indent=2))
        else:
            out.report(inv.cis)
        return exit_status(inv)
    if output == "json":
        out.result(json.dumps(json_document(inv), indent=2))
    elif not out.quiet:
        out.report(inv)
    elif inv.outcome is not Outcome.OK:
        # --quiet: the findings are the answer (without the blank line before them); the tables are the context.
        out.result(*render_text(findings_blocks(inv)[1:]))
    return exit_status(inv)
