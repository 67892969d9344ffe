"""One shape for what kubepki reports: inventories, plans and results.

A report supplies its data (:meth:`Report.to_dict`) and its table (:meth:`Report.rows`:
a title, column headers and rows of :class:`Cell`, each cell with an optional
:data:`Tone`); it gets JSON, an escaped HTML table for notebooks and aligned text
for terminals from them. A report whose text is more than one table (kubeadm's two
expiry tables, a plan's preamble and notes) lays it out in :meth:`Report.blocks`.
The tones are words, not colours: the CLI colours text from them and the HTML
from :data:`HTML_COLOURS`, so nothing depends on re-reading the wording.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

__all__ = [
    "HTML_COLOURS",
    "TONES",
    "Block",
    "Cell",
    "Line",
    "Outcome",
    "Report",
    "Span",
    "Table",
    "go_tabwriter",
    "line",
    "render_html",
    "render_text",
]

#: The tones a cell can carry; each one is already said in words by the cell's text.
TONES = ("ok", "warning", "error", "missing", "info", "dim", "strong")

#: Colours of the tones in HTML (readable on light and dark notebook themes).
HTML_COLOURS = {
    "ok": "#1a7f37",
    "warning": "#b7791f",
    "error": "#cf222e",
    "missing": "#8250df",
    "info": "#0969da",
    "dim": "#6e7781",
}

#: A toned stretch of text: start and end offsets and a tone.
Span = tuple[int, int, str]


class Outcome(str, enum.Enum):
    """A report's verdict as a whole: what went worst."""

    OK = "ok"
    #: Only warnings.
    WARNING = "warning"
    #: Something expired, invalid, missing, refused or failed.
    FAILED = "failed"
    #: kubepki could not look at everything it was asked to.
    INCOMPLETE = "incomplete"

    @property
    def rank(self) -> int:
        """0 for ok up to 3 for incomplete: the worse, the higher."""
        return list(Outcome).index(self)


def _tone(_instance: Any, _attribute: Any, value: str | None) -> None:
    if value is not None and value not in TONES:
        raise ValueError(f"unknown tone {value!r} (one of {', '.join(TONES)})")


@attrs.frozen
class Cell:
    """One cell of a row: its text and, optionally, the tone it is shown in."""

    text: str
    tone: str | None = attrs.field(default=None, validator=_tone)
    #: HTML shows the cell as a coloured badge (statuses).
    badge: bool = attrs.field(default=False, kw_only=True)
    #: HTML shows the cell in bold (the row's name).
    strong: bool = attrs.field(default=False, kw_only=True)


def _cells(values: Sequence[Cell | str]) -> tuple[Cell, ...]:
    return tuple(v if isinstance(v, Cell) else Cell(v) for v in values)


def _columns(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(values)


def _rows(rows: Sequence[Sequence[Cell | str]]) -> tuple[tuple[Cell, ...], ...]:
    return tuple(_cells(r) for r in rows)


@attrs.frozen
class Table:
    """A titled table: column headers and rows of cells (plain strings are untoned cells).

    In text, a row's last cell is not aligned (as with Go's tabwriter), and a table
    without columns has no header line.
    """

    title: str
    columns: tuple[str, ...] = attrs.field(converter=_columns)
    rows: tuple[tuple[Cell, ...], ...] = attrs.field(converter=_rows)
    #: In text, the headers' tone (kubeadm's tables are plain; kubepki's are bold).
    header_tone: str | None = attrs.field(default="strong", kw_only=True, validator=_tone)


@attrs.frozen
class Line:
    """A line of text outside a table (a preamble, a note, a summary)."""

    cells: tuple[Cell, ...] = attrs.field(converter=_cells)


def line(*cells: Cell | str) -> Line:
    """A :class:`Line` of ``cells`` written one after the other."""
    return Line(cells)


Block = Table | Line


class Report:
    """Base of kubepki's inventories, plans and results.

    Subclasses supply :meth:`to_dict` and :meth:`rows`, and may lay out richer text in
    :meth:`blocks`, and say how it went overall in :attr:`outcome`.
    """

    __slots__ = ()
    #: The HTML table's class attribute (None for none).
    html_class: ClassVar[str | None] = "kubepki"

    def to_dict(self) -> dict[str, Any]:
        """The report's data, JSON-ready."""
        raise NotImplementedError

    def rows(self) -> Table:
        """The report as one table."""
        raise NotImplementedError

    def blocks(self) -> Sequence[Block]:
        """The text layout: by default the table of :meth:`rows`, titled."""
        return (self.rows(),)

    @property
    def outcome(self) -> Outcome:
        """What went worst (see :class:`Outcome`)."""
        return Outcome.OK

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    def styled(self) -> tuple[str, list[Span]]:
        """The text of :meth:`text` and where its toned cells are in it."""
        return render_text(self.blocks())

    def text(self) -> str:
        """The report as aligned text."""
        return self.styled()[0]

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return render_html(self.rows(), html_class=self.html_class)


# --------------------------------------------------------------------------------------
# Text


def _widths(rows: Sequence[Sequence[str]], *, minwidth: int, padding: int) -> list[list[int]]:
    """Go's ``text/tabwriter`` column widths: each row's cells but the last are aligned.

    A column block is a run of consecutive rows that have a cell in that column; each
    block is as wide as its widest cell plus padding.
    """
    widths: list[list[int]] = [[0] * (len(r) - 1) for r in rows]

    def format_block(start: int, end: int, column: int) -> None:
        row = start
        while row < end:
            if len(rows[row]) - 1 <= column:
                row += 1
                continue
            block_start = row
            width = minwidth
            while row < end and len(rows[row]) - 1 > column:
                width = max(width, len(rows[row][column]) + padding)
                row += 1
            for i in range(block_start, row):
                widths[i][column] = width
            format_block(block_start, row, column + 1)

    format_block(0, len(rows), 0)
    return widths


def go_tabwriter(lines: Sequence[str], *, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated ``lines`` the way Go's ``text/tabwriter`` does.

    A cell is text terminated by a tab; the text after a line's last tab is not
    part of any column.
    """
    rows = [line.split("\t") for line in lines]
    widths = _widths(rows, minwidth=minwidth, padding=padding)
    out = []
    for row, ws in zip(rows, widths, strict=True):
        out.append("".join(cell.ljust(w) for cell, w in zip(row[:-1], ws, strict=True)) + row[-1])
    return "\n".join(out) + "\n"


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[Span] = []
        self.offset = 0

    def write(self, text: str, tone: str | None = None) -> None:
        if tone is not None and text.strip():
            start = self.offset + len(text) - len(text.lstrip())
            self.spans.append((start, self.offset + len(text.rstrip()), tone))
        self.parts.append(text)
        self.offset += len(text)


def render_text(blocks: Sequence[Block]) -> tuple[str, list[Span]]:
    """Blocks as text (tables aligned like Go's tabwriter) and the spans of their tones."""
    out = _Writer()
    for block in blocks:
        if isinstance(block, Line):
            for cell in block.cells:
                out.write(cell.text, cell.tone)
            out.write("\n")
            continue
        if block.title:
            out.write(block.title + "\n")
        header = [tuple(Cell(c, block.header_tone) for c in block.columns)] if block.columns else []
        rows = [*header, *block.rows]
        widths = _widths([[c.text for c in r] for r in rows], minwidth=10, padding=3)
        for row, ws in zip(rows, widths, strict=True):
            for j, cell in enumerate(row):
                out.write(cell.text, cell.tone)
                if j < len(ws):
                    out.write(" " * (ws[j] - len(cell.text)))
            out.write("\n")
    return "".join(out.parts), out.spans


# --------------------------------------------------------------------------------------
# HTML


def _html_cell(cell: Cell) -> str:
    import html  # here: only HTML output needs it (html.entities is most of a text report's import)

    text = "<br>".join(html.escape(part) for part in cell.text.split("\n"))
    if cell.strong:
        text = f"<b>{text}</b>"
    colour = HTML_COLOURS.get(cell.tone or "")
    if colour is None:
        return text
    if cell.badge:
        return (f'<span style="color:#fff;background:{colour};padding:1px 6px;border-radius:8px;'
                f'font-size:0.85em">{text}</span>')
    return f'<span style="color:{colour}">{text}</span>'


def render_html(table: Table, *, html_class: str | None = "kubepki") -> str:
    """``table`` as an escaped HTML table with its title as the caption."""
    import html

    attr = f' class="{html.escape(html_class)}"' if html_class else ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f'<td style="text-align:left;vertical-align:top">{_html_cell(c)}</td>'
                         for c in row) + "</tr>"
        for row in table.rows)
    return (f'<table{attr}><caption style="text-align:left">{html.escape(table.title)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
