"""``kubepki csr list|approve``: the kubelets' CSRs over the live API."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kubepki.cli._common import add_now_option, add_output_option, emit, parse_within
from kubepki.cli._exit import exit_status, json_document
from kubepki.cli._output import Output

DESCRIPTION = ("The kubelets' CertificateSigningRequests. list shows the pending ones and those of the last day; "
               "approve approves the pending kubernetes.io/kubelet-serving CSRs that are safe — requested by "
               "system:node:NAME for CN system:node:NAME and O system:nodes, SANs only the Node's own addresses, "
               "usages digital signature and server auth (key encipherment for RSA keys) — and refuses the rest "
               "with the reason. approve is a dry run without --apply.")
EXAMPLES = """\
examples:
  kubepki csr list --kubeconfig /etc/kubernetes/admin.conf
  kubepki csr approve --kubeconfig /etc/kubernetes/admin.conf            # what would be approved
  kubepki csr approve --kubeconfig /etc/kubernetes/admin.conf --apply    # approve them
  kubepki csr approve csr-7xk2p --apply                                  # only that one

exit status: list 1 while a CSR is pending; approve 2 when a CSR was refused or an approval failed."""


def _api_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig of the cluster (default $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    add_now_option(p)
    add_output_option(p)


def register(sub: Any) -> None:
    """Add ``csr list`` and ``csr approve``."""
    p = sub.add_parser("csr", help="the kubelets' CSRs: list, approve the safe serving ones",
                       description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = p.add_subparsers(dest="csr_command", metavar="COMMAND", required=True)
    ls = inner.add_parser("list", help="pending and recent kubelet CSRs, with what approve would do",
                          description=DESCRIPTION, epilog=EXAMPLES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _api_options(ls)
    ls.add_argument("--recent", type=parse_within, default="24h", metavar="DURATION",
                    help="also list CSRs created this recently (default 24h)")
    ls.set_defaults(func=run_list)
    ap = inner.add_parser("approve", help="approve the safe pending kubelet-serving CSRs (dry run by default)",
                          description=DESCRIPTION, epilog=EXAMPLES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="NAME", help="only these CSRs (default: every pending one)")
    _api_options(ap)
    ap.add_argument("--apply", action="store_true", help="approve them (default: only say what would be approved)")
    ap.set_defaults(func=run_approve)


def run_list(args: argparse.Namespace) -> int:
    """List the kubelet CSRs."""
    from kubepki.objects import list_kubelet_csrs

    report = list_kubelet_csrs(args.kubeconfig, context=args.context, now=args.now, recent=args.recent)
    if args.output == "json":
        emit(json.dumps(json_document(report), indent=2))
    else:
        Output.from_args(args).info(report.text())
    return exit_status(report)


def run_approve(args: argparse.Namespace) -> int:
    """Approve (or show what would be approved)."""
    from kubepki.objects import approve_kubelet_csrs

    report = approve_kubelet_csrs(args.kubeconfig, args.names or None, context=args.context, apply=args.apply,
                                  now=args.now)
    if args.output == "json":
        emit(json.dumps(json_document(report), indent=2))
    else:
        Output.from_args(args).info(report.text())
    return exit_status(report)
