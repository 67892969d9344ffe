"""kubepki's command line: a thin layer over the public API.

Each command lives in a module of this package named after it and registers its
sub-parser in :data:`COMMANDS`. Exit statuses: 0 all well, 1 warnings only,
2 something expired, invalid or missing (or an operation failed), 3 kubepki
could not run (bad arguments, unreadable root). Errors are one line on stderr;
``--debug`` shows the traceback.

The global options ``--no-color``, ``-q/--quiet`` and ``--debug`` are accepted
before the command and after it (``kubepki check --demo -q``); see
:mod:`kubepki.cli._output` for what they change.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from kubepki._version import __version__
from kubepki.cli import _common
from kubepki.cli._common import error
from kubepki.errors import KubepkiError

__all__ = ["EXIT_ERROR", "build_parser", "exit_status", "json_document", "main", "plain_text"]

EXIT_ERROR = _common.EXIT_ERROR

#: The command modules of this package (``register(subparsers)`` sets ``func`` on each
#: parser), with the top-level commands each registers. A command line names one of
#: them, so :func:`main` imports and registers that module alone: ``kubepki check``
#: never loads renewal or backups. tests/test_cli_lazy.py checks the names against
#: the full parser.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("check", ("check",)),
    ("demo", ("demo",)),
    ("metrics", ("metrics",)),
    ("backup", ("backup", "restore")),
    ("secrets", ("secrets", "probe")),
    ("renew", ("renew", "certs")),
    ("restarts", ("restarts", "verify-served")),
    ("cluster", ("cluster",)),
    ("kubelet", ("kubelet",)),
    ("csr", ("csr",)),
    ("permissions", ("permissions",)),
    ("autorenew", ("auto-renew", "history")),
    # Last: the completion script describes every command registered before it.
    ("completion", ("completion",)),
)


def __getattr__(name: str) -> object:
    # exit_status and json_document live in _exit, which loads the report classes (attrs):
    # imported when asked for, so building the parser does not pay for them (PEP 562).
    if name in ("exit_status", "json_document"):
        from kubepki.cli import _exit

        return getattr(_exit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"kubepki.cli.{name}")


EXAMPLES = """\
examples:
  kubepki check --demo                       # try it: a built-in demo cluster
  kubepki demo /tmp/cluster                  # write a demo node to explore
  kubepki check --root /tmp/cluster/cp1      # inspect it (on a real node: sudo kubepki check)
  kubepki renew all --root /tmp/cluster/cp1  # what renewing would do; add --apply to do it
  kubepki COMMAND --help                     # each command's options and examples
  source <(kubepki completion bash)          # tab completion for this shell

exit status: 0 all well, 1 warnings only, 2 something expired, invalid or missing
(or an operation failed), 3 kubepki could not run."""


class _Parser(argparse.ArgumentParser):
    """kubepki's parsers: one error line, exit status 3, and no abbreviated options.

    An abbreviation silently picks a neighbouring option (``--recreate`` was
    ``--recreate-missing``), so every option must be spelt out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        """The help, as plain text: docstrings' reST markup (````x````, ``:func:`x```) removed."""
        return plain_text(super().format_help())

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"kubepki: error: {message} (see --help)\n")


_ROLE = re.compile(r":[\w:.-]+:`(~?)([^`<]*?)\s*(?:<[^>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def plain_text(text: str) -> str:
    """``text`` (a docstring, a help) without reST inline markup: roles and double backticks."""

    def role(m: re.Match[str]) -> str:
        target = m.group(2)
        return target.rsplit(".", 1)[-1] if m.group(1) else target

    return _LITERAL.sub(r"\1", _ROLE.sub(role, text))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full argument parser; with ``command`` (a top-level command's name), only that command's."""
    modules = [m for m, names in COMMANDS if command is None or command in names]
    parser = _Parser(
        prog="kubepki",
        description="Inspect, back up, renew and roll out the certificates of kubeadm clusters.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kubepki {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in modules:
        _module(module).register(sub)
    for sub_parser in _descendants(parser):
        _global_options(sub_parser, top=False)
    return parser


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--no-color``, ``--quiet``, ``--debug``: on the top parser, and again on each command.

    On a command their default is SUPPRESS, so ``kubepki --debug check`` is not
    undone by the ``check`` parser's own default.
    """
    taken = set(parser._option_string_actions)  # a command that defines one of them keeps its own
    options = [
        (("--no-color",), "no colour (also: NO_COLOR=1; FORCE_COLOR=1 forces it into pipes)"),
        (("-q", "--quiet"), "print only results and problems; the exit status says the rest"),
        (("--debug",), "show tracebacks on errors"),
    ]
    if all(taken.isdisjoint(flags) for flags, _ in options):
        g = parser if top else parser.add_argument_group("global options")
        default: Any = False if top else argparse.SUPPRESS
        for flags, text in options:
            g.add_argument(*flags, action="store_true", default=default, help=text)


def _descendants(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every sub-command's parser, depth first, each once (aliases share parsers)."""
    out: list[argparse.ArgumentParser] = []
    for action in parser._actions:  # argparse has no public way to walk sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                if child not in out:
                    out.append(child)
                    out.extend(c for c in _descendants(child) if c not in out)
    return out


def _command(argv: Sequence[str]) -> str | None:
    """The top-level command ``argv`` names, when it is one (else None: the full parser answers)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):  # the global options before a command take no values
            return word if any(word in names for _, names in COMMANDS) else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser(_command(sys.argv[1:] if argv is None else argv))
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
        error(str(exc))
        return getattr(exc, "exit_status", EXIT_ERROR)
    except KeyboardInterrupt:
        print("kubepki: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file or device kubepki was not prepared for
        if args.debug:
            raise
        error(str(exc))
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line, the traceback on request
        if args.debug:
            raise
        error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_ERROR
