"""What the command line prints: colour, ``--quiet`` and spinners.

Output is plain text unless colour is wanted, which is decided in this order:

1. ``--no-color``: never;
2. ``NO_COLOR`` set to anything non-empty (https://no-color.org): never;
3. ``FORCE_COLOR`` set to anything non-empty: always, even into a pipe;
4. ``TERM=dumb``: never;
5. otherwise when standard output is a terminal.

Colour only marks what is already written in words (a status, a severity, an
action), so nothing is lost without it, and it uses the terminal's own basic
colours, which the user's theme keeps readable on light and dark backgrounds.

``--quiet`` drops what is said *about* the work — progress, hints, the report of
an action that succeeded — but never the answer to a question: a plan, a list,
JSON, metrics, a kubeconfig. ``kubepki check -q`` prints nothing when all is
well and only the findings otherwise, so the exit status carries the verdict.

rich (the ``cli`` extra) draws the colours and the spinners. It is imported
here only, and only once colour or a spinner is actually wanted; without it the
output is plain and there is no spinner.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time a command imports its reports itself; the parser needs none
    from kubepki._report import Report, Span

__all__ = [
    "STYLES",
    "Output",
    "color_wanted",
]

#: The reports' tones (kubepki._report.TONES) -> rich styles; the HTML tables use the same tones.
STYLES: Mapping[str, str] = {
    "ok": "green",
    "warning": "yellow",
    "error": "bold red",
    "missing": "magenta",
    "info": "cyan",
    "dim": "dim",
    "strong": "bold",
}


def _set(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "") != ""


def color_wanted(stream: IO[str], *, no_color: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """Whether text written to ``stream`` should be coloured (see the module's rules)."""
    env = os.environ if environ is None else environ
    if no_color or _set(env, "NO_COLOR"):
        return False
    if _set(env, "FORCE_COLOR"):
        return True
    if env.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def _rich_console(stream: IO[str], *, color: bool) -> Any:
    """A rich Console writing to ``stream``, or None when rich is not installed."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(
        file=stream, force_terminal=color or None, no_color=not color,
        color_system="standard" if color else None, highlight=False, markup=False,
        emoji=False, soft_wrap=True,
    )


class Output:
    """Where a command's text goes, coloured or not, and what ``--quiet`` keeps."""

    def __init__(self, *, color: bool = False, quiet: bool = False, spinner: bool = False) -> None:
        self.color = color
        self.quiet = quiet
        self.spinner = spinner

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Output:
        """The output the global options (``--no-color``, ``--quiet``) ask for."""
        quiet = bool(getattr(args, "quiet", False))
        no_color = bool(getattr(args, "no_color", False))
        spinner = (not quiet and os.environ.get("TERM") != "dumb" and _isatty(sys.stderr))
        return cls(color=color_wanted(sys.stdout, no_color=no_color), quiet=quiet, spinner=spinner)

    def result(self, text: str, spans: Sequence[Span] = ()) -> None:
        """Print the answer to what was asked: shown even with ``--quiet``."""
        self._write(text, spans)

    def info(self, text: str, spans: Sequence[Span] = ()) -> None:
        """Print a report or a hint: left out with ``--quiet``."""
        if not self.quiet:
            self._write(text, spans)

    def report(self, report: Report, *, answer: bool = True) -> None:
        """Print ``report``'s text, coloured by its cells' tones; ``answer=False`` is left out with ``--quiet``."""
        text, spans = report.styled()
        (self.result if answer else self.info)(text, spans)

    def _write(self, text: str, spans: Sequence[Span]) -> None:
        if not text.endswith("\n"):
            text += "\n"
        stream = sys.stdout  # looked up now: tests and callers may have replaced it
        if self.color and spans:
            console = _rich_console(stream, color=True)
            if console is not None:
                from rich.text import Text

                styled = Text(text, end="")
                for start, end, style in spans:
                    styled.stylize(STYLES[style], start, end)
                console.print(styled, end="")
                stream.flush()
                return
        stream.write(text)

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner with ``message`` on standard error while the block runs.

        Only on a terminal, without ``--quiet``, and when rich is installed;
        otherwise nothing is shown.
        """
        console = _rich_console(sys.stderr, color=self.color) if self.spinner else None
        if console is None:
            yield
            return
        with console.status(message, spinner="dots"):
            yield
