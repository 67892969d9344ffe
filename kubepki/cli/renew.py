"""``kubepki renew`` and ``kubepki certs``: renew as kubeadm does, plan first.

``kubepki renew NAME... | all`` shows the plan; ``--apply`` carries it out (a
backup first, the node's lock, crash-safe writes). ``--csr DIR`` writes keys and
CSRs for an external CA instead, and ``kubepki certs install-signed DIR``
installs what it signed. ``kubepki renew --resume`` completes a renewal that was
interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubepki.catalog import CATALOG
from kubepki.cli._common import (
    DEFAULT_BACKUP_DIR,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PROBLEM,
    add_attribute_options,
    add_jobs_option,
    add_node_options,
    add_now_option,
    add_output_option,
    emit,
    error,
    node_from_args,
    parse_within,
)
from kubepki.cli._exit import exit_status
from kubepki.cli._output import Output
from kubepki.cli._restart_advice import RestartAdvice, restart_advice
from kubepki.cli.completion import suggest
from kubepki.errors import BackupError, ConfigError, NodeError, RenewalError

#: Where backups go by default, as a node path (under ``--root``).
_KEY_ALGORITHMS = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")

RENEW_EXAMPLES = """\
examples:
  kubepki renew all                              # show what would be renewed
  kubepki renew all --apply                      # renew (backup in /var/backups/kubepki)
  kubepki renew all --expiring-within 30d --apply
  kubepki renew apiserver admin.conf --validity 90d --apply
  kubepki renew all --key-algorithm ECDSA-P256 -o json
  kubepki renew --csr /tmp/csrs all              # keys and CSRs for an external CA
  kubepki certs install-signed /tmp/csrs         # install what it signed
  kubepki renew --resume                         # finish a renewal that was interrupted

Certificates are written only when they are valid at the real time and the plan's
time is at most --max-plan-age (1h) behind it; --now is for looking ahead, and
applying with it needs --force-invalid-times when the certificates would not be valid now.

exit status: 0 plan shown or renewal done, 2 something refused or failed (an item,
a stale plan, certificates not valid at the real time), 3 bad arguments or kubepki
could not run."""

INSTALL_EXAMPLES = """\
examples:
  kubepki renew --csr /root/csrs all             # first: keys and CSRs for the external CA
  kubepki certs install-signed /root/csrs        # then: install each <name>.crt it signed

exit status: 0 installed, 2 a certificate failed a check (the others are installed),
3 bad arguments or kubepki could not run."""

SWITCH_EXAMPLES = """\
examples:
  kubepki certs switch-kubelet-conf              # the plan
  kubepki certs switch-kubelet-conf --apply      # then: systemctl restart kubelet"""

SUPER_ADMIN_EXAMPLES = """\
examples:
  kubepki certs create-super-admin               # the plan
  kubepki certs create-super-admin --apply --validity 90d"""

KUBECONFIG_USER_EXAMPLES = """\
examples:
  kubepki certs kubeconfig-user --client-name jane --org devs --validity 30d > jane.conf
  kubepki certs kubeconfig-user --client-name ci --server https://cp.example.test:6443 > ci.conf"""

CERTS_EXAMPLES = """\
examples:
  kubepki certs install-signed /tmp/csrs
  kubepki certs switch-kubelet-conf              # plan; add --apply to do it
  kubepki certs recover                          # a node off for longer than its certificates lasted
  kubepki certs create-super-admin --apply       # clusters upgraded to 1.29+
  kubepki certs kubeconfig-user --client-name jane --org devs --validity 30d > jane.conf"""


INSTALL_SIGNED_DESCRIPTION = """\
Install the <name>.crt + <name>.key pairs found in DIR (signed by an external CA
from the CSRs of renew --csr)."""
SWITCH_DESCRIPTION = """\
Point a kubelet.conf that embeds its client certificate at kubelet-client-current.pem,
the certificate the kubelet rotates (kubernetes/kubeadm#1753)."""
RECOVER_DESCRIPTION = """\
Bring back a node whose certificates expired while it was switched off: renew every
item kubeadm certs renew all renews, and give the kubelet a client certificate
straight from ca when its own has expired (it cannot rotate an expired one),
kubelet.conf pointing at it. Then restart what changed: kubepki restarts apply
--from-renewal FILE --apply (the static pods and the kubelet)."""
RECOVER_EXAMPLES = """\
examples:
  kubepki certs recover                                   # the plan
  kubepki certs recover --apply -o json > recovered.json  # back up, renew, new kubelet certificate
  kubepki restarts apply --from-renewal recovered.json --apply"""
SUPER_ADMIN_DESCRIPTION = """\
Create super-admin.conf on a node that has none (clusters upgraded to 1.29+, KEP-4214)."""
KUBECONFIG_USER_DESCRIPTION = """\
Write a kubeconfig for a user (CN) in groups (O), signed by the node's cluster CA,
as kubeadm kubeconfig user does."""

def register(sub: Any) -> None:
    """Add the ``renew`` and ``certs`` sub-commands."""
    p = sub.add_parser("renew", help="renew certificates and kubeconfigs like kubeadm certs renew",
                       description=__doc__, epilog=RENEW_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    suggest(p.add_argument("names", nargs="*", metavar="NAME",
                           help="items to renew (apiserver, admin.conf...) or 'all'"),
            ["all", *(e.name for e in CATALOG if e.renewable)])
    add_node_options(p)
    add_now_option(p)
    p.add_argument("--expiring-within", type=parse_within, metavar="DURATION",
                   help="only items expiring within this (e.g. 30d, 720h)")
    _issue_options(p)
    p.add_argument("--recreate-missing", action="store_true",
                   help="re-issue missing or unusable items from kubeadm's rules "
                        "(as kubeadm init phase certs)")
    add_attribute_options(p)
    _apply_options(p)
    p.add_argument("--csr", metavar="DIR",
                   help="write <name>.key and <name>.csr per item into DIR instead of renewing")
    p.add_argument("--resume", action="store_true",
                   help="only complete a renewal that was interrupted")
    add_output_option(p)
    p.set_defaults(func=run_renew)

    c = sub.add_parser("certs", help="install signed certificates, fix kubelet.conf, "
                       "create super-admin.conf, issue kubeconfigs",
                       description="Certificate operations beyond kubeadm certs renew.",
                       epilog=CERTS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = c.add_subparsers(dest="certs_action", metavar="ACTION")
    inst = actions.add_parser("install-signed", help="install <name>.crt + <name>.key pairs "
                              "signed by an external CA", description=INSTALL_SIGNED_DESCRIPTION,
                              epilog=INSTALL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    inst.add_argument("dir", metavar="DIR", help="directory with <name>.crt and <name>.key")
    add_node_options(inst)
    add_now_option(inst)
    _force_option(inst)
    _backup_options(inst)
    add_output_option(inst)
    inst.set_defaults(func=run_install)

    sw = actions.add_parser("switch-kubelet-conf", help="point an embedding kubelet.conf at "
                            "kubelet-client-current.pem (kubernetes/kubeadm#1753)",
                            description=SWITCH_DESCRIPTION, epilog=SWITCH_EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(sw)
    add_now_option(sw)
    _issue_options(sw)
    _apply_options(sw)
    add_output_option(sw)
    sw.set_defaults(func=run_switch)

    _register_recover(actions)

    sa = actions.add_parser("create-super-admin", help="create super-admin.conf on a cluster "
                            "upgraded to 1.29+ (KEP-4214)", description=SUPER_ADMIN_DESCRIPTION,
                            epilog=SUPER_ADMIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(sa)
    add_now_option(sa)
    _issue_options(sa)
    _apply_options(sa)
    add_output_option(sa)
    sa.set_defaults(func=run_super_admin)

    ku = actions.add_parser("kubeconfig-user", help="print a kubeconfig for any client name and "
                            "organisations (as kubeadm kubeconfig user)",
                            description=KUBECONFIG_USER_DESCRIPTION, epilog=KUBECONFIG_USER_EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ku.add_argument("--client-name", required=True, help="the certificate's CN (the user name)")
    ku.add_argument("--org", action="append", default=[], metavar="ORG",
                    help="an organisation (group); repeat for several")
    ku.add_argument("--server", metavar="URL", help="API server URL (default: controlPlaneEndpoint)")
    add_node_options(ku)
    add_now_option(ku)
    _issue_options(ku)
    _force_option(ku)
    ku.set_defaults(func=run_kubeconfig_user)
    c.set_defaults(func=lambda args: _missing_action(c))


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_ERROR


def _issue_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--validity", type=parse_within, metavar="DURATION",
                   help="validity of new certificates (default: the kubeadm config's "
                        "certificateValidityPeriod, else 365d); clamped to the CA's expiry")
    p.add_argument("--key-algorithm", choices=_KEY_ALGORITHMS,
                   help="key algorithm of new keys (default: each item's current one)")


def _backup_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backup-dir", metavar="DIR",
                   help=f"where to put the backup taken first (default {DEFAULT_BACKUP_DIR} "
                        "on the node, under --root)")
    p.add_argument("--no-backup", action="store_true", help="do not take a backup first")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another kubepki writing to the node (default: fail)")


def _force_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force-invalid-times", action="store_true",
                   help="write certificates even when they are not valid at the real time "
                        "(expired or not yet valid, e.g. with --now) or the plan's time is older "
                        "than --max-plan-age; refused without it")


def _apply_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--apply", action="store_true", help="carry the plan out (default: only show it)")
    add_jobs_option(p)
    _force_option(p)
    p.add_argument("--max-plan-age", type=parse_within, metavar="DURATION", default=None,
                   help="refuse to apply when the plan's time (--now, else the time of planning) is "
                        "further behind the real clock than this (default 1h): its certificates "
                        "would be back-dated by that much")
    _backup_options(p)


def _backup_dir(args: argparse.Namespace) -> Path | None:
    if args.no_backup:
        return None
    if args.backup_dir:
        return Path(args.backup_dir)
    return Path(args.root) / DEFAULT_BACKUP_DIR.lstrip("/")


def _refused(exc: Exception) -> int:
    error(str(exc))
    return EXIT_PROBLEM


def run_renew(args: argparse.Namespace) -> int:
    """Plan (and with --apply, carry out) a renewal; or write CSRs; or resume."""
    from kubepki import renewal

    if args.resume and (args.names or args.csr):
        raise ConfigError("--resume takes no names and no --csr")
    if not args.names and not args.resume and not args.csr:
        raise ConfigError("name the items to renew, or 'all' (see kubepki renew --help)")
    node = node_from_args(args)
    out = Output.from_args(args)
    try:
        if args.resume:
            result = renewal.resume_renewal(node, wait=_wait(args), now=args.now)
            advice = restart_advice(args, node, result.changed if result else ())
            if args.output == "json":
                emit(json.dumps({**(result.to_dict() if result else {"resumed": []}),
                                 "restarts": advice.to_dict()}, indent=2))
            elif result is None:
                out.info("No interrupted renewal to complete.")
            else:
                out.info(f"Completed the interrupted renewal of: {', '.join(result.resumed) or 'nothing'}\n\n"
                         + "\n".join(advice.lines()))
            return EXIT_OK
        if args.csr:
            with out.status(f"Writing keys and CSRs into {args.csr}…"):
                paths = renewal.write_csrs(node, args.csr, args.names or ("all",),
                                           key_algorithm=args.key_algorithm, workers=args.jobs)
            if args.output == "json":
                emit(json.dumps({"written": [str(p) for p in paths]}, indent=2))
            else:
                out.info("\n".join(str(p) for p in paths))
            return EXIT_OK
        resumed: tuple[str, ...] = ()
        if args.apply:
            # A renewal interrupted earlier is finished before the node is looked at.
            earlier = renewal.resume_renewal(node, wait=_wait(args))
            resumed = earlier.resumed if earlier is not None else ()
        plan = renewal.plan_renewal(
            node, args.names, expiring_within=args.expiring_within, validity=args.validity,
            key_algorithm=args.key_algorithm, now=args.now, recreate_missing=args.recreate_missing,
            reissue=args.reissue, keep_attributes=args.keep_attributes,
        )
        return _plan_or_apply(plan, args, resumed=resumed)
    except (RenewalError, BackupError) as exc:
        return _refused(exc)


def _wait(args: argparse.Namespace) -> float:
    return float(getattr(args, "wait", 0.0))


def _plan_or_apply(plan: Any, args: argparse.Namespace, *, resumed: tuple[str, ...] = ()) -> int:
    import attrs

    from kubepki import renewal

    out = Output.from_args(args)
    if not args.apply:
        if args.output == "json":
            emit(plan.to_json())
        else:
            out.report(plan)
        return EXIT_OK  # a plan shown is an answer, refused steps included
    first = "backing up first" if not args.no_backup else "no backup"
    try:
        with out.status(f"Renewing {len(plan.work)} item(s) on {plan.node_name or plan.root} ({first})…"):
            result = renewal.apply_renewal(
                plan, backup_dir=_backup_dir(args), take_backup=not args.no_backup, wait=_wait(args),
                force_invalid_times=args.force_invalid_times, workers=getattr(args, "jobs", None),
                max_plan_age=args.max_plan_age if args.max_plan_age is not None else renewal.DEFAULT_MAX_PLAN_AGE,
            )
    except NodeError as exc:
        return _refused(exc)
    if resumed:
        result = attrs.evolve(result, resumed=tuple(sorted({*resumed, *result.resumed})))
    advice = restart_advice(args, plan.node, (*result.changed, *result.resumed))
    if args.output == "json":
        # The result at the top (what `kubepki restart` and other consumers read), the plan inside.
        emit(json.dumps({**result.to_dict(), "restarts": advice.to_dict(), "plan": plan.to_dict()}, indent=2))
    else:
        _report(out, result, advice)
    return exit_status(result)


def _report(out: Output, result: Any, advice: RestartAdvice) -> None:
    """A run's report, then the restarts it implies: with --quiet, only when something was refused."""
    out.report(result, answer=not result.ok)
    (out.result if not result.ok else out.info)("\n" + "\n".join(advice.lines()))


def run_install(args: argparse.Namespace) -> int:
    """Install signed certificates handed back by an external CA."""
    from kubepki import renewal

    node = node_from_args(args)
    out = Output.from_args(args)
    try:
        with out.status(f"Checking and installing the certificates in {args.dir}…"):
            result = renewal.install_signed(node, args.dir, now=args.now,
                                            take_backup=not args.no_backup,
                                            backup_dir=_backup_dir(args), wait=_wait(args),
                                            force_invalid_times=args.force_invalid_times)
    except (RenewalError, BackupError, NodeError) as exc:
        return _refused(exc)
    advice = restart_advice(args, node, result.changed)
    if args.output == "json":
        emit(json.dumps({**result.to_dict(), "restarts": advice.to_dict()}, indent=2))
    else:
        _report(out, result, advice)
    return exit_status(result)


def _register_recover(actions: Any) -> None:
    rc = actions.add_parser("recover", help="renew a node whose certificates expired while it was off, "
                            "the kubelet's client certificate included", description=RECOVER_DESCRIPTION,
                            epilog=RECOVER_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_node_options(rc)
    add_now_option(rc)
    _issue_options(rc)
    _apply_options(rc)
    add_output_option(rc)
    rc.set_defaults(func=run_recover)


def run_recover(args: argparse.Namespace) -> int:
    """Plan (and with --apply, do) the recovery of an expired node."""
    from kubepki import renewal

    return _run_explicit(args, renewal.plan_recovery)


def run_switch(args: argparse.Namespace) -> int:
    """Plan (and with --apply, do) the kubelet.conf switch."""
    from kubepki import renewal

    return _run_explicit(args, renewal.switch_kubelet_conf)


def run_super_admin(args: argparse.Namespace) -> int:
    """Plan (and with --apply, do) creating super-admin.conf."""
    from kubepki import renewal

    return _run_explicit(args, renewal.create_super_admin)


def _run_explicit(args: argparse.Namespace, planner: Callable[..., Any]) -> int:
    """Plan one of the explicit operations (never part of "all"), then show or apply it."""
    node = node_from_args(args)
    try:
        plan = planner(node, validity=args.validity, key_algorithm=args.key_algorithm, now=args.now)
        return _plan_or_apply(plan, args)
    except (RenewalError, BackupError) as exc:
        return _refused(exc)


def run_kubeconfig_user(args: argparse.Namespace) -> int:
    """Print a kubeconfig for --client-name and --org."""
    from kubepki import renewal

    node = node_from_args(args)
    try:
        data = renewal.issue_kubeconfig(
            node, args.client_name, tuple(args.org), validity=args.validity, now=args.now,
            server=args.server, key_algorithm=args.key_algorithm,
            force_invalid_times=args.force_invalid_times,
        )
    except RenewalError as exc:
        return _refused(exc)
    sys.stdout.write(data.decode())
    return EXIT_OK

