"""``kubepki secrets check`` and ``kubepki probe``: certificates beyond kubeadm's files."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import TYPE_CHECKING, Any

from kubepki.cli._common import (
    DEFAULT_WARN_WITHIN,
    EXIT_ERROR,
    add_now_option,
    add_output_option,
    emit,
    parse_within,
)
from kubepki.cli._exit import exit_status, json_document

if TYPE_CHECKING:
    from kubepki.objects import ObjectInventory

SECRETS_EXAMPLES = """\
examples:
  kubectl get secrets,configmaps -A -o json | kubepki secrets check -f -
  kubectl get secrets,configmaps,mutatingwebhookconfigurations,validatingwebhookconfigurations,apiservices \\
      -A -o yaml > objects.yaml && kubepki secrets check -f objects.yaml
  kubepki secrets check --kubeconfig /etc/kubernetes/admin.conf          # the live cluster
  kubepki secrets check -n ingress-nginx -o json                          # $KUBECONFIG, one namespace

Secret values are never printed: only facts about certificates and findings.
exit status: 0 all well, 1 warnings only, 2 anything expired or invalid, 3 nothing
was checked (no object carrying a certificate in the input) or kubepki could not
run (bad arguments, unreadable input, API server unreachable or refusing)."""

PROBE_EXAMPLES = """\
examples:
  kubepki probe ingress.example.com:443
  kubepki probe 10.0.0.10:443 --server-name shop.example.com
  kubepki probe api.example.com:6443 etcd.example.com:2379 -o json

exit status: 0 all well, 1 warnings only, 2 anything expired or invalid or an endpoint
unreachable, 3 kubepki could not run (bad arguments)."""


def register(sub: Any) -> None:
    """Add ``secrets`` (with its action ``check``) and ``probe``."""
    secrets = sub.add_parser(
        "secrets", help="check certificates in Secrets, ConfigMaps, webhooks and APIServices",
        description="Check the TLS certificates and CA bundles that cluster objects hold, from\n"
                    "kubectl output or from a running API server.",
        epilog=SECRETS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    secrets.set_defaults(func=_no_action(secrets))
    actions = secrets.add_subparsers(dest="action", metavar="ACTION", title="actions")
    check = actions.add_parser(
        "check", help="check every certificate of the objects (as `kubepki check` does files)",
        description="Check kubernetes.io/tls Secrets (tls.crt against tls.key and ca.crt), CA bundles\n"
                    "in any Secret or ConfigMap key, webhook and APIService caBundles. Reads kubectl's\n"
                    "-o json or -o yaml output with -f, else lists the objects from the API server of\n"
                    "--kubeconfig (default $KUBECONFIG or ~/.kube/config).",
        epilog=SECRETS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = check.add_mutually_exclusive_group()
    source.add_argument("-f", "--filename", metavar="FILE",
                        help="kubectl -o json/-o yaml output to read ('-' for standard input)")
    source.add_argument("--kubeconfig", metavar="FILE",
                        help="kubeconfig of the cluster to read live (default $KUBECONFIG or ~/.kube/config)")
    check.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    check.add_argument("-n", "--namespace", metavar="NS",
                       help="only this namespace (then no cluster-scoped webhooks or APIServices)")
    check.add_argument("--page-size", type=_positive, default=500, metavar="N",
                       help="objects per API request when reading live (default 500)")
    check.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                       help="network timeout when reading live (default 30)")
    _common_options(check)
    check.set_defaults(func=run_check)

    probe = sub.add_parser(
        "probe", help="fetch and check the certificate chains that TLS endpoints serve",
        description="Connect to each HOST:PORT (with SNI), read the chain it serves without trusting\n"
                    "it, and check it like a certificate file: expiry, order, signatures, host name.",
        epilog=PROBE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe.add_argument("endpoints", nargs="+", metavar="HOST:PORT",
                       help="endpoints to probe (port 443 when left out; [ADDRESS]:PORT for IPv6)")
    probe.add_argument("--server-name", metavar="NAME",
                       help="the name to send as SNI and check the certificate against (default: each host)")
    probe.add_argument("--timeout", type=_seconds, default=5.0, metavar="SECONDS",
                       help="connect and handshake timeout per endpoint (default 5)")
    _common_options(probe)
    probe.set_defaults(func=run_probe)


def _common_options(parser: argparse.ArgumentParser) -> None:
    add_now_option(parser)
    parser.add_argument("--warn-within", type=parse_within, default=DEFAULT_WARN_WITHIN, metavar="DURATION",
                        help="warn about certificates expiring within this (default 30d; e.g. 60d, 720h)")
    add_output_option(parser)


def _no_action(parser: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace) -> int:
        print(f"kubepki: error: {parser.prog} needs an action: check (see --help)", file=sys.stderr)
        return EXIT_ERROR

    return run


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def run_check(args: argparse.Namespace) -> int:
    """Check objects from a file, standard input or the live cluster; the exit status follows the items."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.filename is not None:
            from kubepki.objects import check_objects

            source: Any = sys.stdin.buffer if args.filename == "-" else args.filename
            inv = check_objects(source, now=args.now, warn_within=args.warn_within, namespace=args.namespace)
            if args.filename == "-":
                import attrs

                inv = attrs.evolve(inv, source="<stdin>")
        else:
            from kubepki.objects import check_live

            inv = check_live(args.kubeconfig, context=args.context, namespace=args.namespace, now=args.now,
                             warn_within=args.warn_within, page_size=args.page_size, timeout=args.timeout)
    for w in caught:
        print(f"kubepki: warning: {w.message}", file=sys.stderr)
    return _report(inv, args.output, quiet=args.quiet)


def run_probe(args: argparse.Namespace) -> int:
    """Probe the endpoints; the exit status follows the items."""
    from kubepki.objects.probe import probe

    inv = probe(args.endpoints, now=args.now, timeout=args.timeout, server_name=args.server_name,
                warn_within=args.warn_within)
    return _report(inv, args.output, quiet=args.quiet)


def _report(inv: ObjectInventory, output: str, *, quiet: bool = False) -> int:
    if output == "json":
        emit(json.dumps(json_document(inv), indent=2))
    elif quiet:  # as check -q: only the findings (without the blank line before them), if any
        from kubepki._report import Line, render_text

        blocks = inv.blocks()[1:]
        while blocks and isinstance(blocks[0], Line) and not any(c.text for c in blocks[0].cells):
            blocks = blocks[1:]
        if any(isinstance(b, Line) and b.cells and b.cells[0].text == "FINDINGS" for b in blocks):
            emit(render_text(blocks)[0])
    else:
        text = inv.table()
        if inv.notes:
            text += "\n" + "\n".join(f"note: {n}" for n in inv.notes) + "\n"
        emit(text)
    return exit_status(inv)
