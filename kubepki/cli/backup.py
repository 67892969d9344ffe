"""``kubepki backup`` and ``kubepki restore``: archive a node's PKI, check it, put it back."""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubepki.catalog import CATALOG
from kubepki.cli._common import (
    DEFAULT_BACKUP_DIR,
    EXIT_OK,
    EXIT_PROBLEM,
    add_deprecated,
    add_node_options,
    emit,
    error,
    node_from_args,
)
from kubepki.cli._exit import exit_status
from kubepki.cli._output import Output
from kubepki.cli._restart_advice import restart_advice
from kubepki.cli.completion import suggest
from kubepki.errors import BackupError, LockError

#: Where ``kubepki backup`` writes without ``--backup-dir``: a node path, under ``--root``.

DEFAULT_DEST = DEFAULT_BACKUP_DIR.lstrip("/")

BACKUP_EXAMPLES = f"""\
command lines:
  kubepki backup [--root DIR] [--backup-dir DIR]   write a new archive (same as `backup create`)
  kubepki backup list DIR                          the backups in DIR, newest first
  kubepki backup verify FILE                       check an archive completely
  kubepki backup prune DIR --keep N [--apply]      keep the newest N backups of each node

examples:
  kubepki backup                                     # this node, into /{DEFAULT_DEST}
  kubepki backup --root /host --backup-dir /backups  # from a privileged pod
  kubepki backup verify /backups/kubepki-backup-cp1-20261128T101500Z.tar.gz

exit status: 0 done (verify: the archive is sound), 2 the backup failed or verify
found problems, 3 kubepki could not run (bad arguments, unreadable root)."""

CREATE_EXAMPLES = """\
examples:
  kubepki backup create                       # this node, into /var/backups/kubepki
  kubepki backup create --root /host --backup-dir /backups -o json"""

LIST_EXAMPLES = """\
examples:
  kubepki backup list /var/backups/kubepki
  kubepki backup list /backups -o json | jq '.[0].path'     # the newest"""

VERIFY_EXAMPLES = """\
examples:
  kubepki backup verify /backups/kubepki-backup-cp1-20261128T101500Z.tar.gz
  kubepki backup verify FILE -q && echo sound               # quiet: problems only

exit status: 0 the archive is sound, 2 problems found, 3 kubepki could not run."""

PRUNE_EXAMPLES = """\
examples:
  kubepki backup prune /var/backups/kubepki --keep 5           # what would go
  kubepki backup prune /var/backups/kubepki --keep 5 --apply   # remove it"""

RESTORE_EXAMPLES = """\
examples:
  kubepki restore FILE                          # show the plan only
  kubepki restore FILE --only apiserver         # just apiserver.crt and apiserver.key
  kubepki restore FILE --apply                  # back up the current state, then restore
  kubepki restore FILE --apply --accept-changed # also discard changes made after the backup
  kubepki restore FILE --apply --accept-permissions  # also restore modes/owners that widen access

exit status: 0 planned or restored, 2 the archive is damaged or unsafe, or the
restore was refused or failed, 3 kubepki could not run (bad arguments, an unknown
--only name, unreadable root)."""

_Run = Callable[[argparse.Namespace], int]


def register(sub: Any) -> None:
    """Add the ``backup`` (with its actions) and ``restore`` sub-commands."""
    _register_backup(sub)
    _register_restore(sub)


def _output_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("-o", "--output", choices=("table", "json"),
                        default=argparse.SUPPRESS if default is None else default,
                        help="output format (default: table)")


def _register_backup(sub: Any) -> None:
    p = sub.add_parser(
        "backup", help="back up a node's PKI into one archive; list, verify or prune backups",
        description="Back up everything kubepki knows on a node (cert dir, kubeconfigs, the "
                    "kubelet's PKI, static pod manifests, kubeadm config) into one tar.gz "
                    "archive with a manifest of hashes; list, verify and prune archives.",
        usage="kubepki backup [create] [options] | list DIR | verify FILE | prune DIR --keep N",
        epilog=BACKUP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _create_options(p)
    _output_option(p, "table")
    p.set_defaults(func=_guarded(_run_create), output="table")
    actions = p.add_subparsers(dest="action", metavar="ACTION", title="actions",
                               prog="kubepki backup")

    create = actions.add_parser("create", help="write a new archive (the default action)",
                                description="Write a new archive of the node's PKI.",
                                epilog=CREATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _create_options(create)
    _output_option(create, None)
    # Options given before `create` (kubepki backup --root /host create) must not be
    # reset to this parser's defaults, so it has none of its own.
    for action in create._actions:  # argparse offers no public way to do this
        if action.dest != "help":
            action.default = argparse.SUPPRESS

    lst = actions.add_parser("list", help="list the backups in a directory, newest first",
                             description="List kubepki backups in DIR: node, time, items, size.",
                             epilog=LIST_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    lst.add_argument("directory", metavar="DIR")
    _output_option(lst, None)
    lst.set_defaults(func=_guarded(_run_list))

    verify = actions.add_parser("verify", help="check an archive: safe, complete, hashes match",
                                description="Check every member of an archive against its "
                                            "manifest; exit status 2 when anything is wrong.",
                                epilog=VERIFY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("file", metavar="FILE")
    _output_option(verify, None)
    verify.set_defaults(func=_guarded(_run_verify))

    prune = actions.add_parser("prune", help="remove all but the newest N backups of each node",
                               description="Remove all but the newest N backups of each node "
                                           "in DIR; files that are not kubepki backups are "
                                           "never touched.",
                              epilog=PRUNE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    prune.add_argument("directory", metavar="DIR")
    prune.add_argument("--keep", type=_positive, required=True, metavar="N",
                       help="how many backups of each node to keep (at least 1)")
    prune.add_argument("--apply", action="store_true",
                       help="remove them (default: only say what would be removed)")
    add_deprecated(prune, "--dry-run", dest="dry_run_flag", replacement="nothing: prune previews unless --apply",
                   flag=True)
    _output_option(prune, None)
    prune.set_defaults(func=_guarded(_run_prune))


def _create_options(p: argparse.ArgumentParser) -> None:
    add_node_options(p)
    p.add_argument("--backup-dir", dest="to", metavar="DIR",
                   help=f"directory for the archive (default: /{DEFAULT_DEST} under --root)")
    add_deprecated(p, "--to", dest="to", replacement="--backup-dir", metavar="DIR")


def _register_restore(sub: Any) -> None:
    p = sub.add_parser(
        "restore", help="restore a node's PKI from a backup (shows the plan unless --apply)",
        description="Restore files from a kubepki backup onto a node. Without --apply only "
                    "the plan is shown: which files would be created, replaced or left alone.",
        epilog=RESTORE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="the backup archive")
    add_node_options(p)
    suggest(p.add_argument("--only", action="extend", nargs="+", metavar="NAME",
                           help="restore only these catalog items, e.g. apiserver admin.conf "
                                "(give them after FILE)"),
            (e.name for e in CATALOG))
    p.add_argument("--apply", action="store_true", help="write the files (default: plan only)")
    p.add_argument("--accept-changed", action="store_true",
                   help="apply even when files were modified after the backup or the backup "
                        "is of another node (those changes are discarded)")
    p.add_argument("--accept-permissions", action="store_true",
                   help="apply even when the backup gives a file a mode looser than kubeadm's or an "
                        "owner other than root or the file's own (the plan marks them WIDENS ACCESS)")
    p.add_argument("--no-backup", dest="take_backup", action="store_false",
                   help="do not back up the current state before writing")
    p.add_argument("--backup-dir", metavar="DIR",
                   help="where the backup of the current state goes (default: FILE's directory)")
    _output_option(p, "table")
    p.set_defaults(func=_guarded(_run_restore))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1: pruning never removes every backup")
    return value


def _guarded(run: _Run) -> _Run:
    """Backup failures, and a restore refused because another kubepki holds the node's lock,
    are "an operation failed" (2, as for renew), not "could not run" (3)."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (BackupError, LockError) as exc:
            if getattr(args, "debug", False):
                raise
            error(str(exc))
            return EXIT_PROBLEM

    guarded.__doc__ = run.__doc__
    return guarded


def _json(doc: object) -> None:
    emit(json.dumps(doc, indent=2))


def _run_create(args: argparse.Namespace) -> int:
    """Write one archive of the node given by the node options."""
    from kubepki.backups import backup

    node = node_from_args(args)
    out = Output.from_args(args)
    dest = Path(args.to) if args.to else node.root / DEFAULT_DEST
    with out.status(f"Backing up {node.fs.describe()} into {dest}…"):
        info = backup(node, dest)
    if args.output == "json":
        _json(info.to_dict())
        return EXIT_OK
    lines = [f"Backed up node {info.node or 'unknown'}: {info.items} files, {_size(info.size)}",
             f"  {info.path}"]
    lines += [f"  skipped {s}" for s in info.skipped]
    out.info("\n".join(lines))
    return EXIT_OK


def _run_list(args: argparse.Namespace) -> int:
    """Print the backups in a directory."""
    from kubepki.backups import list_backups
    from kubepki.inspection import go_tabwriter

    infos = list_backups(args.directory)
    if args.output == "json":
        _json([i.to_dict() for i in infos])
        return EXIT_OK
    if not infos:
        emit(f"no kubepki backups in {args.directory}")
        return EXIT_OK
    rows = ["CREATED\tNODE\tITEMS\tSIZE\tFILE"]
    rows += [f"{i.created.strftime('%Y-%m-%dT%H:%M:%SZ')}\t{i.node or 'unknown'}\t{i.items}\t"
             f"{_size(i.size)}\t{i.path.name}" for i in infos]
    emit(go_tabwriter(rows))
    return EXIT_OK


def _run_verify(args: argparse.Namespace) -> int:
    """Verify one archive; 2 when it has problems."""
    from kubepki.backups import verify_backup

    out = Output.from_args(args)
    with out.status(f"Verifying {args.file}…"):
        report = verify_backup(args.file)
    if args.output == "json":
        _json(report.to_dict())
    else:
        out.report(report, answer=not report.ok)
    return exit_status(report)


def _run_prune(args: argparse.Namespace) -> int:
    """Remove old backups."""
    from kubepki.backups import prune_backups

    dry_run = not args.apply
    removed = prune_backups(args.directory, args.keep, dry_run=dry_run)
    if args.output == "json":
        _json({"removed": [str(p) for p in removed], "dry_run": dry_run, "keep": args.keep})
        return EXIT_OK
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {p}" for p in removed]
    lines.append(f"{len(removed)} backup(s) {verb}; the newest {args.keep} of each node kept"
                 + ("; add --apply to remove them" if dry_run and removed else ""))
    # A dry run is a question (its answer is shown even with --quiet); pruning is an action.
    (Output.from_args(args).result if dry_run else Output.from_args(args).info)("\n".join(lines))
    return EXIT_OK


def _run_restore(args: argparse.Namespace) -> int:
    """Plan a restore; with --apply, carry it out."""
    from kubepki.backups import apply_restore, plan_restore, resume_restore

    node = node_from_args(args)
    out = Output.from_args(args)
    if args.apply:  # finish an interrupted restore first: the plan then shows the node as it is
        finished = resume_restore(node)
        if finished and args.output != "json":  # JSON output stays one document
            out.info("\n".join(f"finished the interrupted restore of {p}" for p in finished))
    plan = plan_restore(args.file, node, only=args.only)
    if not args.apply:
        if args.output == "json":
            _json(plan.to_dict())
            return EXIT_OK
        hint = ["Dry run: nothing was written."]
        if not plan.changes and not plan.supersedes:
            hint.append("Nothing to restore: the node's files match the backup.")
        else:
            cmd = f"kubepki restore {shlex.quote(args.file)} --apply"
            risks = plan.permission_risks
            if len(plan.needs_acceptance) > len(risks):
                cmd += " --accept-changed"
                hint.append("Files marked CHANGED SINCE THE BACKUP were modified after it was "
                            "taken; restoring discards those changes.")
            if risks:
                cmd += " --accept-permissions"
                hint.append("Files marked WIDENS ACCESS would get a mode looser than kubeadm's or "
                            "another owner; review them before accepting.")
            hint.append(f"To restore: {cmd}{_same_target(args)}")
        out.report(plan)
        out.info("\n" + "\n".join(hint))
        return EXIT_OK
    if args.output == "table":
        out.report(plan, answer=False)
    with out.status(f"Restoring {len(plan.changes)} file(s) onto {node.fs.describe()}…"):
        result = apply_restore(plan, accept_changed=args.accept_changed,
                               accept_permissions=args.accept_permissions, take_backup=args.take_backup,
                               backup_dir=args.backup_dir)
    advice = restart_advice(args, node, result.changed)
    if args.output == "json":
        _json({**result.to_dict(), "restarts": advice.to_dict()})
    else:
        out.info(result.table() + "\n\n" + "\n".join(advice.lines()))
    return EXIT_OK


def _same_target(args: argparse.Namespace) -> str:
    """The options that chose the node and the files, to repeat in the hint's command."""
    out = ""
    for option, value in (("--root", args.root if args.root != "/" else None), ("--cert-dir", args.cert_dir),
                          ("--kubeconfig-dir", args.kubeconfig_dir), ("--config", args.config),
                          ("--role", getattr(args, "role", None))):
        if value:
            out += f" {option} {shlex.quote(value)}"
    if args.only:
        out += " --only " + " ".join(shlex.quote(n) for n in args.only)
    return out


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"
