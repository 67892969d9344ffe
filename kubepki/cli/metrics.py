"""``kubepki metrics``: Prometheus exposition of a node's inventory."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from kubepki.cli._common import DEFAULT_WARN_WITHIN, add_node_options, node_from_args, parse_within
from kubepki.cli._output import Output

DESCRIPTION = "Prometheus metrics of a node's certificates: print them, write a textfile, or serve /metrics."
EXAMPLES = """\
examples:
  kubepki metrics                                              # print the exposition
  kubepki metrics --textfile /var/lib/node_exporter/textfile/kubepki.prom
  kubepki metrics --serve 127.0.0.1:9842                       # scrape endpoint, /metrics
  kubepki metrics --objects secrets.json                       # plus TLS Secrets and CA bundles

Alert on kubepki_certificate_seconds_left < 30 * 86400 (warning), < 7 * 86400
(critical) and kubepki_item_error == 1 (see docs/metrics.md)."""


def register(sub: Any) -> None:
    """Add the ``metrics`` sub-command."""
    p = sub.add_parser("metrics", help="Prometheus metrics of a node's certificates",
                       description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(p)
    p.add_argument("--warn-within", type=parse_within, default=DEFAULT_WARN_WITHIN, metavar="DURATION",
                   help="threshold for the warning status (default 30d)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--textfile", metavar="PATH", help="write atomically to PATH (node_exporter textfile)")
    g.add_argument("--serve", metavar="HOST:PORT", help="serve /metrics on HOST:PORT until interrupted")
    p.add_argument("--objects", action="append", default=[], metavar="FILE",
                   help="also export certificates found in `kubectl get secrets,configmaps -A -o json` output "
                        "(repeatable)")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="also export certificates found in the live cluster's Secrets, ConfigMaps, webhooks "
                        "and APIServices")
    p.add_argument("--cache", type=float, default=30.0, metavar="SECONDS",
                   help="with --serve: re-inspect at most this often (default 30)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print, write or serve the metrics."""
    from kubepki import metrics
    from kubepki.inspection import inspect

    node = node_from_args(args)
    out = Output.from_args(args)

    def current() -> list[Any]:
        found: list[Any] = [inspect(node, warn_within=args.warn_within)]
        if args.objects or args.kubeconfig:
            from kubepki.objects import check_live, check_objects

            found += [check_objects(Path(f), warn_within=args.warn_within) for f in args.objects]
            if args.kubeconfig:
                found.append(check_live(args.kubeconfig, warn_within=args.warn_within))
        run = metrics.last_run(node)  # the node's last auto-renew, when it has a history
        if run is not None:
            found.append(run)
        return found

    if args.serve:
        stop = threading.Event()
        host, port = metrics.serve(args.serve, current, cache_seconds=args.cache, stop=stop)
        out.info(f"serving http://{host}:{port}/metrics")
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            stop.set()
        return 0
    inventories = current()
    if args.textfile:
        metrics.write_textfile(args.textfile, inventories)
        return 0
    out.result(metrics.exposition(inventories))
    return 0
