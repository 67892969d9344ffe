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
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubepki.cli._common import (  # DEFAULT_BACKUP_DIR: each node's backup, a node path as for one node
    DEFAULT_BACKUP_DIR,
    EXIT_OK,
    add_attribute_options,
    add_auto_renew_restart_options,
    add_now_option,
    add_output_option,
    emit,
    error,
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
  kubepki cluster trust --node ... --worker ...    # does every TLS edge's each side trust the other?
  kubepki cluster renew all --node ... --expiring-within 30d          # the plan
  kubepki cluster renew all --node ... --expiring-within 30d --apply  # back up all, renew each
  kubepki cluster restarts plan --node ... --from-renewal renewal.json
  kubepki cluster restarts apply --node ... --from-renewal renewal.json          # dry run
  kubepki cluster restarts apply --node ... --from-renewal renewal.json --apply  # one node at a time
  kubepki cluster auto-renew --node ...                      # what is due on each node
  kubepki cluster auto-renew --node ... --apply              # node by node, each proven before the next

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
    """Add ``cluster`` with ``check``, ``renew``, ``restarts plan``, ``restarts apply`` and ``auto-renew``."""
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
    _register_trust(actions)
    _register_rotate_ca(actions)

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
    _register_restarts_apply(r_actions)
    _register_auto_renew(actions)
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


RESTARTS_APPLY_DESCRIPTION = """\
Carry the rolling restart plan out, one node at a time (a dry run unless --apply): each node's
restarts (on the node itself over SSH: kubepki restarts apply runs there and verifies), then the
node must be healthy before the next starts; the first node that fails stops the roll."""

AUTO_RENEW_DESCRIPTION = """\
kubepki auto-renew on every node in order: each node renews what is due, restarts, proves it and
rolls itself back on failure, where its keys are (over SSH kubepki auto-renew runs on the node, with
its backup on the node). The first node that is not renewed and proven stops the run; the nodes after
it are not touched. Without --apply every node is planned and nothing is written."""


def _remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remote-command", default="kubepki", metavar="COMMAND",
                   help="how kubepki is started on nodes reached over SSH (default kubepki; e.g. "
                        "'python3 -m kubepki')")
    p.add_argument("--proc", default="/proc", metavar="DIR",
                   help="each node's /proc, as seen where kubepki runs for it (default /proc)")
    p.add_argument("--restart-timeout", type=float, default=None, metavar="SECONDS",
                   help="limit for each restart wait on a node (default: stop 90, start 120, serve 60)")


def _register_restarts_apply(r_actions: Any) -> None:
    a = r_actions.add_parser("apply", help="roll the restarts, one node at a time (dry run unless --apply)",
                             description=RESTARTS_APPLY_DESCRIPTION, epilog=EXAMPLES,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_options(a)
    source = a.add_mutually_exclusive_group(required=True)
    source.add_argument("--changed", nargs="+", metavar="NAME", help="catalog names changed on every node")
    source.add_argument("--from-renewal", metavar="FILE",
                        help="the JSON of `kubepki cluster renew --apply -o json`")
    a.add_argument("--policy", choices=("safe", "minimal"), default="safe",
                   help="safe: restart every reader (default); minimal: only those that never reload")
    a.add_argument("--method", choices=("manifest", "docker", "cri"), default=None,
                   help="how to restart static pods (default: manifest)")
    a.add_argument("--apply", action="store_true", help="really restart (default: show what would be done)")
    a.add_argument("--health-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long each node may take to be healthy after its restarts (default 300)")
    a.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                   help="how often a node's health is asked (default 2)")
    a.add_argument("--no-backup", action="store_true", help="do not back each node up before its restarts")
    _remote_options(a)
    add_output_option(a)
    a.set_defaults(func=run_restarts_apply)


def _register_auto_renew(actions: Any) -> None:
    from kubepki.cli._common import DEFAULT_RENEW_WITHIN as DEFAULT_WITHIN  # the parser loads no renewal

    p = actions.add_parser("auto-renew", help="auto-renew node by node, each proven before the next",
                           description=AUTO_RENEW_DESCRIPTION, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_options(p)
    add_now_option(p)
    p.add_argument("--within", type=parse_within, default=DEFAULT_WITHIN, metavar="DURATION",
                   help=f"renew what expires within this (default {DEFAULT_WITHIN.days}d)")
    p.add_argument("--all", dest="renew_all", action="store_true",
                   help="once anything is due on a node, renew every item of it together")
    add_auto_renew_restart_options(p)
    p.add_argument("--apply", action="store_true", help="really renew and restart (default: show the plans)")
    p.add_argument("--backup-dir", default=None, metavar="NODE_DIR",
                   help=f"directory ON EACH NODE for its backup (default {DEFAULT_BACKUP_DIR}); "
                        "private keys never leave the nodes")
    p.add_argument("--history", default=None, metavar="NODE_PATH",
                   help="each node's history file (default /var/lib/kubepki/history.jsonl)")
    p.add_argument("--no-history", action="store_true", help="do not record the runs")
    p.add_argument("--health-wait", type=float, default=120.0, metavar="SECONDS",
                   help="how long a node's restarted components may take to answer their health probes "
                        "(default 120)")
    p.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another kubepki writing to a node (default: fail)")
    _remote_options(p)
    add_output_option(p)
    p.set_defaults(func=run_auto_renew)


def _restart_for(args: argparse.Namespace) -> Any:
    """Each node's restarts: apply_restarts here for a local root, kubepki on the node over SSH."""
    from kubepki.cluster import ssh_restart
    from kubepki.node import LocalPaths
    from kubepki.restarts import Timeouts, apply_restarts

    dry_run = not args.apply
    options = ["--proc", args.proc] if args.proc != "/proc" else []
    if args.restart_timeout is not None:
        options += ["--timeout", f"{args.restart_timeout:g}"]
    if args.no_backup:
        options.append("--no-backup")
    remote = ssh_restart(shlex.split(args.remote_command), options=options, dry_run=dry_run)

    def restart(plan: Any, node: Any) -> Any:
        if isinstance(node.fs, LocalPaths):
            return apply_restarts(plan, node=node, dry_run=dry_run, proc=args.proc,
                                  timeout=Timeouts() if args.restart_timeout is None else args.restart_timeout,
                                  take_backup=not args.no_backup)
        return remote(plan, node)

    return restart


def _health_for(plan: Any) -> Any:
    """A node is healthy when every component its plan touches answers its own health probe (a local
    root); over SSH the node's own kubepki restarts apply has already waited for its components and
    verified what they serve, and the probes' addresses (often 127.0.0.1) are the node's own."""
    from kubepki.node import LocalPaths
    from kubepki.restarts import check_health

    components = {turn.label: [s.component for s in turn.plan.steps if s.action.value in ("restart", "wait")]
                  for turn in plan}

    def health(label: str, node: Any) -> bool:
        if not isinstance(node.fs, LocalPaths) or not components.get(label):
            return True
        return all(h.healthy is not False for h in check_health(node, components[label], timeout=3.0))

    return health


def run_restarts_apply(args: argparse.Namespace) -> int:
    """Roll the restarts one node at a time (a dry run unless --apply)."""
    from kubepki.cluster import apply_cluster_restarts, plan_cluster_restarts

    changed: dict[str, list[str]] | list[str] = (_changed_from(args.from_renewal) if args.from_renewal
                                                 else list(args.changed))
    with _cluster(args) as cluster:
        plan = plan_cluster_restarts(cluster, changed, policy=args.policy, method=args.method)
        report = apply_cluster_restarts(plan, health=_health_for(plan), dry_run=not args.apply,
                                        health_timeout=args.health_timeout, poll=args.poll,
                                        restart=_restart_for(args))
    if args.output == "json":
        emit(json.dumps({**report.to_dict(), "plan": plan.to_dict()}, indent=2))
    else:
        emit(plan.table() + "\n" + report.table())
        if not args.apply:
            emit("dry run: nothing was restarted; add --apply to roll the restarts")
    return exit_status(report)


def run_auto_renew(args: argparse.Namespace) -> int:
    """Auto-renew every node in order; with --apply, stop at the first node that fails."""
    from kubepki.cluster import cluster_auto_renew
    from kubepki.node import HISTORY_PATH

    history = None if args.no_history else (args.history or str(HISTORY_PATH))
    with _cluster(args) as cluster:
        result = cluster_auto_renew(
            cluster, within=args.within, renew_all=args.renew_all, policy=args.policy, method=args.method,
            apply=args.apply, backup_dir=args.backup_dir, history=history, now=args.now, proc=args.proc,
            timeout=args.restart_timeout, health_wait=args.health_wait, wait=args.lock_wait,
            command=shlex.split(args.remote_command))
    emit(result.to_json() if args.output == "json" else result.table())
    if result.failed is not None:
        error(f"stopped at {result.failed}: {result.error}")
    return exit_status(result)


TRUST_DESCRIPTION = """\
Every TLS connection of the cluster, judged from the files each side loads: every kubeconfig on
every node -> the kube-apiservers, kube-apiserver -> etcd, -> every kubelet, -> aggregated APIs
(front-proxy), etcd peer <-> peer, etcd's healthcheck client -> etcd. For each: is the client's
certificate issued by a CA the server trusts (client-auth), and the server's by one the client
trusts (server-auth)? Bundles of several CAs are understood; expired certificates and missing
clientAuth/serverAuth usages are broken too."""

TRUST_EPILOG = """examples:
  kubepki cluster trust --node cp1=ssh://root@10.0.0.11/ --node cp2=ssh://root@10.0.0.12/ \\
      --node cp3=ssh://root@10.0.0.13/ --worker w1=ssh://root@10.0.0.21/ --identity ~/.ssh/kubepki
  kubepki cluster trust --node cp1=/srv/nodes/cp1 --node cp2=/srv/nodes/cp2 --problems
  kubepki cluster trust --node ... -o json     # every edge, both directions, with the files judged

exit status: 0 every edge trusted, 2 an edge is broken, 3 an edge or a node could not be judged
(a file missing or unreadable, a node unreachable) or kubepki could not run."""


def _register_trust(actions: Any) -> None:
    t = actions.add_parser("trust", help="check that every TLS edge's two sides trust each other",
                           description=TRUST_DESCRIPTION, epilog=TRUST_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_options(t)
    add_now_option(t)
    t.add_argument("--problems", action="store_true",
                   help="list only the edges that are broken or could not be judged (JSON lists all)")
    add_output_option(t)
    t.set_defaults(func=run_trust)


def run_trust(args: argparse.Namespace) -> int:
    """Judge every TLS edge of the cluster; exit 2 when one is broken, 3 when one could not be judged."""
    from kubepki.cluster import check_trust

    with _cluster(args) as cluster:
        report = check_trust(cluster, now=args.now, workers=args.workers)
    if args.output == "json":
        emit(json.dumps(json_document(report), indent=2))
    else:
        emit(report.table(problems_only=args.problems))
    return exit_status(report)


ROTATE_DESCRIPTION = """\
Rotate a kubeadm CA (--ca ca, front-proxy-ca or etcd-ca; --sa for the service-account key pair) on
every node, in four phases, each planned, then applied with `next --apply`, its restarts rolled node
by node (each node healthy before the next), and verified (every TLS edge still trusted) before the next:

  prepare     a new CA staged beside the old one on every node holding its key; nothing in use changes
  trust-both  the CA file becomes old + new (the old first: it still signs); for ca, every kubeconfig's
              certificate-authority-data too, and KCM's --cluster-signing-cert-file moves to a
              one-certificate copy (kubernetes/kubeadm#1350)
  reissue     the new CA signs: the bundle turns (new first), the key and the signing copy are the new
              CA's, and every certificate the old CA signed is re-signed over its own key
  drop-old    the CA file and the kubeconfigs hold the new CA alone; KCM signs from ca.crt again

What restarts is what --policy says for the files each phase changes (minimal: only what does not
reload by itself; kube-apiserver reloads ca.crt and front-proxy-ca.crt, so rotating them restarts no
kube-apiserver). Wait between phases for what reloads late (the plan's notes; client-go's 5-minute
certificate check). With --kubeconfig, each phase of ca waits for kube-root-ca.crt in every namespace
after its restarts, and reissue is refused while a namespace lacks the new CA, then waits for the
kubelets to refresh the pods' copies. --no-restart applies the file changes only
and lists the restarts (node directories with no running components). The state is on the nodes, so
status and next resume anywhere; abort undoes the latest phase, until drop-old starts."""

ROTATE_EPILOG = """\
examples:
  kubepki cluster rotate-ca status --node cp1=/srv/cp1 --node cp2=/srv/cp2 --worker w1=/srv/w1
  kubepki cluster rotate-ca plan --node ...                          # the next phase's changes, restarts
  kubepki cluster rotate-ca next --node ... --apply                  # back up, apply, restart, verify
  kubepki cluster rotate-ca next --node ... --ca etcd-ca --apply     # the etcd CA
  kubepki cluster rotate-ca next --node ... --no-restart --apply     # files only: the plan lists restarts
  kubepki cluster rotate-ca abort --node ... --apply                 # undo the latest phase

exit status: 0 verified (or nothing to report), 2 a check or a restart failed after apply, 3 kubepki
could not run (bad arguments, a phase out of order, files not in kubeadm's layout)."""


def _register_rotate_ca(actions: Any) -> None:
    from kubepki.cli._common import add_auto_renew_restart_options

    p = actions.add_parser("rotate-ca", help="rotate a CA (or the sa key pair) phase by phase, both trusted between",
                           description=ROTATE_DESCRIPTION, epilog=ROTATE_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="rotate_action", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=_usage(p, "cluster rotate-ca"))
    for name, helptext, func in (
            ("plan", "show the next phase's changes and restarts on every node", run_rotate_next),
            ("next", "show (with --apply: carry out, restart and verify) the next phase", run_rotate_next),
            ("status", "where the rotation stands, from the records on the nodes", run_rotate_status),
            ("abort", "undo the latest phase (with --apply), back to the previous verified one", run_rotate_abort)):
        a = sub.add_parser(name, help=helptext, description=ROTATE_DESCRIPTION, epilog=ROTATE_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _connection_options(a)
        a.add_argument("--ca", choices=_ROTATION_CAS, default="ca",
                       help="the CA to rotate: ca (the cluster CA, default), front-proxy-ca or etcd-ca")
        _add_sa_options(a, name)
        if name in ("plan", "next", "abort"):
            a.add_argument("--no-restart", action="store_true",
                           help="change the files only and list the restarts a running node needs "
                                "(node directories with no running components)")
            add_auto_renew_restart_options(a)
            a.add_argument("--health-timeout", type=float, default=300.0, metavar="SECONDS",
                           help="how long each node may take to be healthy after its restarts (default 300)")
            a.add_argument("--kubeconfig", metavar="FILE",
                           help="also bring the live objects in step through this API (kube-public/cluster-info, "
                                "webhook and APIService caBundles carrying the CA; for ca, kube-root-ca.crt in "
                                "every namespace is waited for, and reissue refused while one lacks the new CA); "
                                "read at that moment, so admin.conf of a node root works through the rotation")
        if name in ("plan", "next"):
            a.add_argument("--again", action="store_true",
                           help="after a finished rotation of this CA, start another (prepare)")
            a.add_argument("--new-ca-cert", metavar="FILE", help="prepare: the new CA's certificate (PEM)")
            a.add_argument("--new-ca-key", metavar="FILE", help="prepare: the new CA's private key (PEM)")
        if name == "next":
            a.add_argument("--apply", action="store_true", help="carry the phase out (default: only show it)")
            a.add_argument("--backup-dir", default=DEFAULT_BACKUP_DIR, metavar="NODE_DIR",
                           help=f"directory ON EACH NODE for its backup (default {DEFAULT_BACKUP_DIR})")
        if name == "abort":
            a.add_argument("--apply", action="store_true", help="undo the phase (default: only say which)")
        add_output_option(a)
        a.set_defaults(func=func, rotate_action=name)


#: The CAs ``--ca`` takes (kubepki.cluster.ROTATION_CAS, spelled here so that the parser loads no rotation code).
_ROTATION_CAS = ("ca", "front-proxy-ca", "etcd-ca")


def _read_local(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    from kubepki.node import read_regular

    try:
        return read_regular(path, limit=1 << 20)
    except OSError as exc:
        raise ConfigError(f"{what} {path!r} cannot be read: {exc.strerror or exc}", path=path) from None


def _emit_report(args: argparse.Namespace, report: Any) -> int:
    emit(json.dumps(json_document(report), indent=2) if args.output == "json" else report.table()
         if hasattr(report, "table") else report.text())
    return exit_status(report)


def run_rotate_next(args: argparse.Namespace) -> int:
    """Plan the rotation's next phase; with ``next --apply``, back up, apply and verify it."""
    if getattr(args, "sa", False):
        return _run_sa_next(args)
    from kubepki.cluster import apply_rotation, plan_rotation

    with _cluster(args) as cluster:
        plan = plan_rotation(cluster, ca=args.ca, new_ca_cert=_read_local(args.new_ca_cert, "--new-ca-cert"),
                             new_ca_key=_read_local(args.new_ca_key, "--new-ca-key"), policy=args.policy,
                             method=args.method, again=args.again)
        if args.rotate_action == "plan" or not args.apply:
            return _emit_report(args, plan)
        result = apply_rotation(plan, backup_dir=args.backup_dir, restart=not args.no_restart,
                                health_timeout=args.health_timeout, kubeconfig=args.kubeconfig)
    if args.output != "json":
        emit(plan.table())
    return _emit_report(args, result)


def run_rotate_status(args: argparse.Namespace) -> int:
    """Where the rotation stands."""
    if getattr(args, "sa", False):
        return _run_sa_status(args)
    from kubepki.cluster import rotation_status

    with _cluster(args) as cluster:
        status = rotation_status(cluster, ca=args.ca)
    return _emit_report(args, status)


def run_rotate_abort(args: argparse.Namespace) -> int:
    """Undo the latest phase (with --apply)."""
    if getattr(args, "sa", False):
        return _run_sa_abort(args)
    from kubepki.cluster import abort_rotation, rotation_status

    with _cluster(args) as cluster:
        if not args.apply:
            status = rotation_status(cluster, ca=args.ca)
            latest = status.applying or status.phase
            emit(f"abort would undo {latest.value} of {args.ca}" if latest
                 else f"no rotation of {args.ca} under way: nothing to abort")
            return EXIT_OK
        result = abort_rotation(cluster, ca=args.ca, restart=not args.no_restart, policy=args.policy,
                                method=args.method, health_timeout=args.health_timeout, kubeconfig=args.kubeconfig)
    return _emit_report(args, result)


# --------------------------------------------------------------------------------------
# rotate-ca --sa: the service-account key pair (kubepki.cluster._rotate_sa)


def _add_sa_options(a: argparse.ArgumentParser, action: str) -> None:
    """``--sa`` (rotate sa.key/sa.pub instead of a CA) and, for plan and next, ``--force``."""
    a.add_argument("--sa", action="store_true",
                   help="rotate the service-account key pair (sa.key, sa.pub) instead of a CA")
    if action in ("plan", "next"):
        a.add_argument("--force", action="store_true",
                       help="--sa drop-old: drop the old key before the longest token lifetime has passed "
                            "(tokens it signed get 401)")


def _run_sa_next(args: argparse.Namespace) -> int:
    from kubepki.cluster import apply_sa_rotation, plan_sa_rotation

    if args.new_ca_cert or args.new_ca_key:
        raise ConfigError("--new-ca-cert/--new-ca-key are for a CA; --sa generates the new key pair")
    with _cluster(args) as cluster:
        plan = plan_sa_rotation(cluster, force=args.force)
        if args.rotate_action == "plan" or not args.apply:
            return _emit_report(args, plan)
        result = apply_sa_rotation(plan, backup_dir=args.backup_dir, restart=not args.no_restart, policy=args.policy,
                                   method=args.method, health_timeout=args.health_timeout)
    if args.output != "json":
        emit(plan.table())
    return _emit_report(args, result)


def _run_sa_status(args: argparse.Namespace) -> int:
    from kubepki.cluster import sa_rotation_status

    with _cluster(args) as cluster:
        status = sa_rotation_status(cluster)
    return _emit_report(args, status)


def _run_sa_abort(args: argparse.Namespace) -> int:
    from kubepki.cluster import abort_sa_rotation, sa_rotation_status

    with _cluster(args) as cluster:
        if not args.apply:
            status = sa_rotation_status(cluster)
            latest = status.applying or status.phase
            emit(f"abort would undo {latest.value} (sa)" if latest else "no rotation of sa under way: nothing to abort")
            return EXIT_OK
        result = abort_sa_rotation(cluster, restart=not args.no_restart, policy=args.policy, method=args.method,
                                   health_timeout=args.health_timeout)
    return _emit_report(args, result)
