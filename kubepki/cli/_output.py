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
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from kubepki.inspection import Severity, Status

if TYPE_CHECKING:
    from kubepki.inspection import Inventory

__all__ = [
    "STYLES",
    "Output",
    "Span",
    "color_wanted",
    "inventory_spans",
    "plan_spans",
    "renewal_result_spans",
    "restore_spans",
    "verify_spans",
]

#: A coloured stretch of text: start and end offsets and a :data:`STYLES` key.
Span = tuple[int, int, str]

#: Style names -> rich styles. The statuses match the HTML tables (kubepki.inspection._render).
STYLES: Mapping[str, str] = {
    "ok": "green",
    "warning": "yellow",
    "error": "bold red",
    "missing": "magenta",
    "info": "cyan",
    "dim": "dim",
    "strong": "bold",
}

_STATUS_STYLE = {
    Status.OK: "ok",
    Status.WARNING: "warning",
    Status.EXPIRED: "error",
    Status.INVALID: "error",
    Status.MISSING: "missing",
}
_SEVERITY_STYLE = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.ERROR: "error",
    Severity.CRITICAL: "error",
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


# --------------------------------------------------------------------------------------
# What to colour in each command's text output


def _spans(text: str, pattern: str, style_of: Mapping[str, str], group: int = 1) -> list[Span]:
    out: list[Span] = []
    for match in re.finditer(pattern, text, flags=re.MULTILINE):
        style = style_of.get(match.group(group))
        if style is not None:
            out.append((match.start(group), match.end(group), style))
    return out


_RESIDUAL = re.compile(r"\d{2}:\d{2} UTC\s+(\S+)")
_HEADERS = r"^(CERTIFICATE(?: AUTHORITY)?\s.*|FINDINGS)$"


def inventory_spans(text: str, inv: Inventory) -> list[Span]:
    """``kubepki check``'s tables: each item's time left in its status colour,
    ``!MISSING!``/``!INVALID!`` markers, headers, and the findings' severities."""
    status = {item.name: item.status for item in inv.items}
    out: list[Span] = [(m.start(1), m.end(1), "strong") for m in re.finditer(_HEADERS, text, re.MULTILINE)]
    offset = 0
    in_findings = False
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        if stripped == "FINDINGS":
            in_findings = True
        elif in_findings:
            word = stripped.split(" ", 1)[0].lower()
            if word in {s.value for s in Severity}:
                out.append((offset, offset + len(word), _SEVERITY_STYLE[Severity(word)]))
        elif stripped.startswith(("!MISSING! ", "!INVALID! ")):
            marker = stripped.split(" ", 1)[0]
            out.append((offset, offset + len(marker), "missing" if marker == "!MISSING!" else "error"))
        else:
            name = stripped.split(" ", 1)[0]
            match = _RESIDUAL.search(stripped)
            if name in status and match is not None:
                out.append((offset + match.start(1), offset + match.end(1), _STATUS_STYLE[status[name]]))
        offset += len(line)
    return out


_PLAN_ACTIONS = {"renew": "ok", "recreate": "ok", "create": "ok", "switch": "ok", "install": "ok",
                 "skip": "dim", "REFUSED": "error"}


def plan_spans(text: str) -> list[Span]:
    """A renewal plan's table: what happens to each item (REFUSED in red)."""
    return _spans(text, r"^\S+ +(\S+)", _PLAN_ACTIONS)


def renewal_result_spans(text: str) -> list[Span]:
    """A renewal's report: kubeadm's ``renewed``, ``MISSING!`` and external-CA lines."""
    out = _spans(text, r" (renewed)$", {"renewed": "ok"})
    out += _spans(text, r"^(MISSING!)", {"MISSING!": "missing"})
    out += _spans(text, r"(can't be renewed)$", {"can't be renewed": "warning"})
    out += _spans(text, r"^(Done renewing certificates\.)", {"Done renewing certificates.": "strong"})
    return out


def restore_spans(text: str) -> list[Span]:
    """A restore plan: the action of each file, and files changed since the backup."""
    out = _spans(text, r"^(create|replace|unchanged)\b", {"create": "ok", "replace": "warning", "unchanged": "dim"})
    out += _spans(text, r"(CHANGED SINCE THE BACKUP)", {"CHANGED SINCE THE BACKUP": "error"})
    return out


def verify_spans(text: str) -> list[Span]:
    """``kubepki backup verify``: the verdict and each problem."""
    out = _spans(text, r": (OK|PROBLEMS FOUND)$", {"OK": "ok", "PROBLEMS FOUND": "error"})
    out += [(m.start(1), m.end(1), "error") for m in re.finditer(r"^  (- .*)$", text, re.MULTILINE)]
    return out
