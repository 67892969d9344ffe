"""``kubepki cluster``: every node at once, over SSH or local roots.

Each ``--node NAME=TARGET`` is one node, its role discovered (control plane, worker,
etcd node): ``ssh://user@host:port/root`` (the node's ``/`` is ``root`` on that server;
``/`` on a real node) or a local directory holding a node's files. ``--worker`` and
``--etcd`` take the same and say the role. Host keys are always checked against
``--known-hosts`` (default ``~/.ssh/known_hosts``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubepki.cli._common import (  # DEFAULT_BACKUP_DIR: each node's backup, a node path as for one node
    DEFAULT_BACKUP_DIR,
    EXIT_OK,
    add_attribute_options,
    add_now_option,
    add_output_option,
    emit,
    parse_within,
)
from kubepki.cli._exit import exit_status, json_document
from kubepki.errors import ConfigError

if TYPE_CHECKING:
    from kubepki.cluster import Cluster

_KEY_ALGORITHMS = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")

EXAMPLES = """\
examples:
  kubepki cluster check --node cp1=ssh://root@10.0.0.11/ --node cp2=ssh://root@10.0.0.12/ \\
      --node cp3=ssh://root@10.0.0.13/ --identity ~/.ssh/kubepki
  kubepki cluster check --node cp1=/srv/nodes/cp1 --node cp2=/srv/nodes/cp2 -o json
  kubepki cluster renew all --node ... --expiring-within 30d          # the plan
  kubepki cluster renew all --node ... --expiring-within 30d --apply  # back up all, renew each
  kubepki cluster restarts plan --node ... --from-renewal renewal.json

exit status: 0 all well, 1 warnings only, 2 something expired, invalid, differing
between nodes or failed, 3 kubepki could not run (bad arguments, unreachable setup)."""


def parse_node(text: str) -> tuple[str, str]:
    """``NAME=TARGET`` (or a bare target) for ``--node``."""
    name, sep, target = text.partition("=")
    if not sep:
        name, target = "", text
    if not target or (sep and not name):
        raise argparse.ArgumentTypeError(f"expected NAME=ssh://user@host:port/root or NAME=DIR: {text!r}")
    return name, target


def _role_node(role: str | None) -> Any:
    def parse(text: str) -> tuple[str, str, str | None]:
        name, target = parse_node(text)
        return name, target, role
    return parse


def _connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("nodes")
    g.add_argument("--node", dest="nodes", type=_role_node(None), action="append", default=[],
                   metavar="NAME=TARGET",
                   help="a node, its role discovered: NAME=ssh://user@host:port/root/path or NAME=DIR; "
                        "repeat for each node (restarts roll in this order)")
    g.add_argument("--worker", dest="nodes", type=_role_node("worker"), action="append", metavar="NAME=TARGET",
                   help="a worker node (as --node, with the role given)")
    g.add_argument("--etcd", dest="nodes", type=_role_node("etcd"), action="append", metavar="NAME=TARGET",
                   help="an etcd node of an external-etcd topology (as --node, with the role given)")
    g.add_argument("--identity", "-i", metavar="KEY",
                   help="SSH private key file (default: the SSH agent and ~/.ssh/id_*)")
    g.add_argument("--known-hosts", metavar="FILE",
                   help="known_hosts file to check host keys against (default ~/.ssh/known_hosts)")
    g.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="SSH connect timeout (default 10)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="nodes handled at once (default: all, up to 16)")


def register(sub: Any) -> None:
    """Add ``cluster`` with ``check``, ``renew`` and ``restarts plan``."""
    p = sub.add_parser("cluster", help="inspect, renew and roll restarts across control-plane nodes",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="cluster_action", metavar="ACTION", parser_class=type(p))

    check = actions.add_parser("check", help="inspect every node and compare them",
                               description="Inspect every node concurrently; report shared material "
                                           "that differs between nodes and certificates copied "
                                           "between them.", epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_options(check)
    add_now_option(check)
    check.add_argument("--warn-within", type=parse_within, metavar="DURATION",
                       help="warn about items expiring within this (default 30d)")
    add_output_option(check)
    check.set_defaults(func=run_check)

    renew = actions.add_parser("renew", help="plan (or with --apply, do) the renewal on every node",
                               description="Plan the renewal on every node; with --apply back up "
                                           "every node first, then renew node by node, stopping at "
                                           "the first failure.", epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    renew.add_argument("names", nargs="*", default=["all"], metavar="NAME",
                       help="items to renew (apiserver, admin.conf...) or 'all' (default)")
    _connection_options(renew)
    add_now_option(renew)
    renew.add_argument("--expiring-within", type=parse_within, metavar="DURATION",
                       help="only items expiring within this (e.g. 30d)")
    renew.add_argument("--validity", type=parse_within, metavar="DURATION",
                       help="validity of new certificates (default: each node's kubeadm config, else 365d)")
    renew.add_argument("--key-algorithm", choices=_KEY_ALGORITHMS,
                       help="key algorithm of new keys (default: each item's current one)")
    add_attribute_options(renew)
    renew.add_argument("--apply", action="store_true", help="carry the plan out (default: only show it)")
    renew.add_argument("--force-invalid-times", action="store_true",
                       help="write certificates even when they are not valid at the real time (e.g. with --now)")
    renew.add_argument("--backup-dir", default=DEFAULT_BACKUP_DIR, metavar="NODE_DIR",
                       help=f"directory ON EACH NODE for its backup (default {DEFAULT_BACKUP_DIR}); "
                            "private keys never leave the nodes")
    renew.add_argument("--no-backup", action="store_true", help="do not back the nodes up first")
    renew.add_argument("--allow-shared-mismatch", action="store_true",
                       help="renew even though CAs or sa differ between nodes")
    renew.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait this long for another kubepki writing to a node (default: fail)")
    add_output_option(renew)
    renew.set_defaults(func=run_renew)

    restarts = actions.add_parser("restarts", help="plan rolling restarts, one node at a time",
                                  description="Plan the restarts a renewal needs, rolled one node at a time.",
                                  epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r_actions = restarts.add_subparsers(dest="restarts_action", metavar="ACTION", parser_class=type(p))
    plan = r_actions.add_parser("plan", help="show the rolling restart plan", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_options(plan)
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--changed", nargs="+", metavar="NAME",
                        help="catalog names changed on every node")
    source.add_argument("--from-renewal", metavar="FILE",
                        help="the JSON of `kubepki cluster renew --apply -o json`")
    plan.add_argument("--policy", choices=("safe", "minimal"), default="safe",
                      help="safe: restart every reader; minimal: only those that never reload")
    plan.add_argument("--method", metavar="METHOD", help="how to restart static pods (default: manifest)")
    add_output_option(plan)
    plan.set_defaults(func=run_restarts_plan)
    for parser, name in ((p, "cluster"), (restarts, "cluster restarts")):
        parser.set_defaults(func=_usage(parser, name))


def _usage(parser: argparse.ArgumentParser, name: str) -> Any:
    def run(_args: argparse.Namespace) -> int:
        parser.print_help()
        raise ConfigError(f"kubepki {name} needs an action (see --help)")
    return run


def _cluster(args: argparse.Namespace) -> Cluster:
    from kubepki.cluster import Cluster

    if not args.nodes:
        raise ConfigError("name the nodes: --node NAME=TARGET (and --worker, --etcd), once per node")
    labels = [name for name, _, _ in args.nodes]
    if all(labels) and len(set(labels)) != len(labels):
        raise ConfigError(f"node names must be unique: {labels}")
    for _name, target, _role in args.nodes:
        if not target.startswith("ssh://") and not Path(target).is_dir():
            raise ConfigError(f"{target!r} is neither an ssh:// URL nor a directory", path=target)
    targets: dict[str, str] | list[str] = ({name: target for name, target, _ in args.nodes} if all(labels)
                                           else [target for _, target, _ in args.nodes])
    return Cluster.from_targets(targets, key=args.identity, known_hosts=args.known_hosts,
                                timeout=args.timeout, roles=[role for _, _, role in args.nodes])


def run_check(args: argparse.Namespace) -> int:
    """Inspect every node; exit with the cluster's status."""
    from kubepki.cluster import inspect_cluster
    from kubepki.inspection import DEFAULT_WARN_WITHIN

    with _cluster(args) as cluster:
        inv = inspect_cluster(cluster, now=args.now, warn_within=args.warn_within or DEFAULT_WARN_WITHIN,
                              workers=args.workers)
    emit(json.dumps(json_document(inv), indent=2) if args.output == "json" else inv.table())
    return exit_status(inv)


def run_renew(args: argparse.Namespace) -> int:
    """Plan the cluster's renewal; with --apply, back up every node and renew each."""
    from kubepki.cluster import apply_cluster_renewal, plan_cluster_renewal

    with _cluster(args) as cluster:
        plan = plan_cluster_renewal(cluster, args.names, expiring_within=args.expiring_within,
                                    validity=args.validity, key_algorithm=args.key_algorithm,
                                    now=args.now, reissue=args.reissue,
                                    keep_attributes=args.keep_attributes, workers=args.workers)
        if not args.apply:
            emit(plan.to_json() if args.output == "json" else plan.table())
            return exit_status(plan)
        result = apply_cluster_renewal(plan, backup_dir=None if args.no_backup else args.backup_dir,
                                       take_backup=not args.no_backup, backup_on_node=True,
                                       allow_shared_mismatch=args.allow_shared_mismatch,
                                       wait=args.wait, workers=args.workers,
                                       force_invalid_times=args.force_invalid_times)
    emit(result.to_json() if args.output == "json" else result.table())
    return exit_status(result)


def _changed_from(path: str) -> dict[str, list[str]]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", path=path) from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise ConfigError(f"{path} is not the JSON of `kubepki cluster renew --apply -o json`", path=path)
    return {label: list(r.get("changed") or []) for label, r in results.items() if isinstance(r, dict)}


def run_restarts_plan(args: argparse.Namespace) -> int:
    """Show the rolling restart plan."""
    from kubepki.cluster import plan_cluster_restarts

    changed: dict[str, list[str]] | list[str] = (_changed_from(args.from_renewal) if args.from_renewal
                                                 else list(args.changed))
    with _cluster(args) as cluster:
        plan = plan_cluster_restarts(cluster, changed, policy=args.policy, method=args.method)
    emit(plan.to_json() if args.output == "json" else plan.table())
    return EXIT_OK
