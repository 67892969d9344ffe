"""Where kubepki's writers keep their journals on a node.

Renewal (floor 7) and restore (floor 6) each journal their commit beside the
certificates, and each must see the other's: a backup refuses a tree whose
renewal was interrupted, and a restore supersedes that renewal. The names live
here, below both, so neither imports the other.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from kubepki.node._node import Node

__all__ = [
    "RENEWAL_JOURNAL_NAME", "RENEWAL_STAGED_SUFFIX", "RESTORE_JOURNAL_NAME", "renewal_journal_path",
    "renewal_staged_path", "restore_journal_path",
]

#: The renewal journal's name in the node's cert dir (see :mod:`kubepki.renewal`).
RENEWAL_JOURNAL_NAME = ".kubepki-renewal.json"
#: A renewal stages each new file as ``.<name>`` + this suffix beside its target.
RENEWAL_STAGED_SUFFIX = ".kubepki-new"
#: The restore journal's name in the node's cert dir (see :mod:`kubepki.backups`).
RESTORE_JOURNAL_NAME = ".kubepki-restore.json"


def renewal_journal_path(node: Node) -> PurePosixPath:
    """The node path of ``node``'s renewal journal (present only while a renewal commits)."""
    return node.profile.cert_dir / RENEWAL_JOURNAL_NAME


def renewal_staged_path(target: PurePosixPath) -> PurePosixPath:
    """Where a renewal stages the new content of ``target``."""
    return target.parent / f".{target.name}{RENEWAL_STAGED_SUFFIX}"


def restore_journal_path(node: Node) -> PurePosixPath:
    """The node path of ``node``'s restore journal (present only while a restore commits)."""
    return node.profile.cert_dir / RESTORE_JOURNAL_NAME
