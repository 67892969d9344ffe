"""Options and helpers shared by the commands."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kubepki.errors import ConfigError

if TYPE_CHECKING:
    from kubepki.node import Node

#: The values of :class:`kubepki.NodeRole`, spelt out so that building the parser imports
#: neither the catalog nor attrs (tests/test_cli_lazy.py checks they agree).
ROLES = ("control-plane", "worker", "etcd")
#: :data:`kubepki.inspection.DEFAULT_WARN_WITHIN`, spelt out for the same reason.
DEFAULT_WARN_WITHIN = dt.timedelta(days=30)
#: :data:`kubepki.backups.DEFAULT_BACKUP_DIR`, spelt out: the backups' module loads the node's.
DEFAULT_BACKUP_DIR = "/var/backups/kubepki"
#: :data:`kubepki.autorenew.DEFAULT_WITHIN`, spelt out: the auto-renew module loads renewal's.
DEFAULT_RENEW_WITHIN = dt.timedelta(days=60)

EXIT_OK = 0
EXIT_WARNING = 1
EXIT_PROBLEM = 2
EXIT_ERROR = 3


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that reads a node takes."""
    g = parser.add_argument_group("node")
    g.add_argument("--root", default="/", metavar="DIR",
                   help="the node's filesystem root (default /; e.g. /host in a privileged pod)")
    g.add_argument("--cert-dir", metavar="DIR", help="certificate directory on the node "
                   "(default: discovered, else /etc/kubernetes/pki)")
    g.add_argument("--kubeconfig-dir", metavar="DIR", help="kubeconfig directory on the node "
                   "(default /etc/kubernetes)")
    g.add_argument("--config", metavar="KUBEADM_CONFIG", help="a kubeadm configuration file "
                   "(default: discovered on the node, if any)")
    g.add_argument("--role", choices=ROLES, help="what the node is: decides "
                   "which certificates it must have (default: discovered from its manifests and files)")


def add_attribute_options(parser: argparse.ArgumentParser) -> None:
    """``--reissue`` and ``--keep-attributes``: what to do with a CN or SANs the node's findings call wrong."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--reissue", action="store_true",
                   help="issue the named items afresh from this node's kubeadm rules (CN, SANs), "
                        "discarding the current ones (as kubeadm init phase certs); fixes a "
                        "certificate copied from another node")
    g.add_argument("--keep-attributes", action="store_true",
                   help="renew even when the node's findings call the current CN or SANs wrong "
                        "(another node's CN, a missing node SAN), copying them as kubeadm certs renew does")


class _Deprecated(argparse.Action):
    """An old spelling of an option: works as the new one, and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, *, replacement: str, note: str = "",
                 **kwargs: object) -> None:
        self.replacement, self.note = replacement, note
        super().__init__(option_strings, dest, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        note = f" ({self.note})" if self.note else ""
        print(f"kubepki: warning: {option_string} is deprecated and goes in the next release; "
              f"use {self.replacement}{note}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def add_deprecated(parser: argparse.ArgumentParser, old: str, *, dest: str, replacement: str,
                   flag: bool = False, note: str = "", metavar: str | None = None) -> None:
    """Accept ``old`` as a hidden, deprecated spelling of the option that stores into ``dest``."""
    if flag:
        parser.add_argument(old, dest=dest, nargs=0, action=_Deprecated, replacement=replacement,
                            note=note, help=argparse.SUPPRESS)
    else:
        parser.add_argument(old, dest=dest, action=_Deprecated, replacement=replacement, note=note,
                            metavar=metavar, help=argparse.SUPPRESS)


def add_now_option(parser: argparse.ArgumentParser) -> None:
    """``--now``: the time to evaluate at."""
    parser.add_argument("--now", type=parse_now, metavar="ISO8601",
                        help="evaluate as of this time (default: the current time; UTC if no zone)")


def add_jobs_option(parser: argparse.ArgumentParser) -> None:
    """``--jobs N``: threads that generate new keys."""
    parser.add_argument("--jobs", type=parse_jobs, default=None, metavar="N",
                        help="generate new keys on N threads (default: one per CPU; RSA key generation "
                             "runs in parallel)")


def parse_jobs(text: str) -> int:
    """Parse ``--jobs``: a positive number of threads."""
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"not a positive number of threads: {text!r}")
    return jobs


def add_output_option(parser: argparse.ArgumentParser) -> None:
    """``-o table|json``."""
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table",
                        help="output format (default: table)")


def parse_now(text: str) -> dt.datetime:
    """Parse ``--now``; naive times are UTC."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def parse_within(text: str) -> dt.timedelta:
    """Parse a duration option such as ``30d`` or ``720h``."""
    from kubepki.node import parse_duration  # on use: kubepki.node brings YAML and cryptography

    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def node_from_args(args: argparse.Namespace) -> Node:
    """The node the node options describe; checks the root exists."""
    from kubepki.node import Node

    root = Path(args.root)
    config = getattr(args, "config", None)
    if config is not None and not Path(config).is_file():
        raise ConfigError(f"kubeadm config {config!r} does not exist or is not a file", path=config)
    node = Node(root, cert_dir=args.cert_dir, kubeconfig_dir=args.kubeconfig_dir, config=config,
                role=getattr(args, "role", None))
    node.check_root()
    return node


def emit(text: str) -> None:
    """Write command output to stdout."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def error(message: str) -> None:
    """``kubepki: error: <message>`` on stderr, always on one line."""
    print(f"kubepki: error: {' '.join(str(message).split())}", file=sys.stderr)


def add_auto_renew_restart_options(parser: argparse.ArgumentParser) -> None:
    """``--policy`` and ``--method`` as auto-renew takes them, on one node and on a cluster."""
    parser.add_argument("--policy", choices=("minimal", "safe"), default="minimal",
                        help="minimal: restart only what does not reload by itself, and verify (default); "
                             "safe: restart every reader")
    parser.add_argument("--method", choices=("manifest", "docker", "cri"), default="manifest",
                        help="how static pods are restarted (default manifest)")
