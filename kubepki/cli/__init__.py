"""kubepki's command line: a thin layer over the public API.

Each command lives in a module of this package named after it and registers its
sub-parser in :data:`COMMANDS`. Exit statuses: 0 all well, 1 warnings only,
2 something expired, invalid or missing (or an operation failed), 3 kubepki
could not run (bad arguments, unreadable root). Errors are one line on stderr;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from kubepki._version import __version__
from kubepki.cli import _common, check, demo, metrics
from kubepki.errors import KubepkiError

__all__ = ["EXIT_ERROR", "main"]

EXIT_ERROR = _common.EXIT_ERROR

#: Modules with ``register(subparsers)``; each sets ``func`` on its parser.
COMMANDS = [check, demo, metrics]
COMMANDS.append(__import__("kubepki.cli.backup", fromlist=["register"]))  # backup, restore
COMMANDS.append(__import__("kubepki.cli.renew", fromlist=["register"]))  # renew, certs


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"kubepki: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(
        prog="kubepki",
        description="Inspect, back up, renew and roll out the certificates of kubeadm clusters.",
        epilog="Example: kubepki check --demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kubepki {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return func(args)
    except KubepkiError as exc:
        if args.debug:
            raise
        print(f"kubepki: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_status", EXIT_ERROR)
    except KeyboardInterrupt:
        print("kubepki: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
