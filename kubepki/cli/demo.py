"""``kubepki demo DIR``: write a kubeadm-faithful demo cluster to explore or test with."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from kubepki.cli._common import add_deprecated, add_jobs_option
from kubepki.cli._output import Output
from kubepki.errors import ConfigError

DESCRIPTION = 'Write a kubeadm-faithful demo cluster (one root directory per node) to explore or test with.'
EXAMPLES = """\
examples:
  kubepki demo /tmp/cluster                    # one node, issued 300 days ago
  kubepki demo /tmp/ha --nodes 3               # three control-plane nodes
  kubepki demo /tmp/old --age 350d             # leaves expire in about two weeks
  kubepki check --root /tmp/cluster/cp1"""


def register(sub: Any) -> None:
    """Add the ``demo`` sub-command."""
    from kubepki.cli._common import parse_within

    p = sub.add_parser("demo", help="write a demo kubeadm cluster (one directory per node)",
                       description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", metavar="DIR", help="directory to create the nodes' roots in")
    p.add_argument("--nodes", type=int, default=1, help="control-plane nodes (default 1)")
    p.add_argument("--kubernetes-version", dest="version", default="1.34", metavar="VERSION",
                   help="kubeadm/Kubernetes version (default 1.34)")
    add_deprecated(p, "--version", dest="version", replacement="--kubernetes-version", metavar="VERSION")
    p.add_argument("--key-algorithm", default="RSA-2048",
                   choices=("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384"))
    p.add_argument("--age", type=parse_within, default=None, metavar="DURATION",
                   help="how long ago the certificates were issued (default 300d)")
    p.add_argument("--external-ca", action="store_true", help="no ca.key (external CA mode)")
    p.add_argument("--external-etcd", action="store_true", help="no local etcd certificates")
    add_jobs_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the demo cluster and list its node roots."""
    from kubepki import testing

    if args.nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    dest = Path(args.dest)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest} exists and is not empty", path=str(dest))
    age = args.age if args.age is not None else testing.DEMO_AGE
    out = Output.from_args(args)
    with out.status(f"Writing {args.nodes} demo node{'s' if args.nodes > 1 else ''} to {dest}…"):
        cluster = testing.build_cluster(
            dest, nodes=args.nodes, version=args.version, key_algorithm=args.key_algorithm,
            issued_at=dt.datetime.now(dt.timezone.utc) - age, external_ca=args.external_ca,
            external_etcd=args.external_etcd, jobs=args.jobs,
        )
    out.info("\n".join(f"{node.name}\t{node.address}\t{node.root}" for node in cluster.nodes))
    return 0
