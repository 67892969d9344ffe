"""Text and HTML renderings of kubepki's results.

The text tables reproduce ``kubeadm certs check-expiration`` (Go's tabwriter with
``minwidth=10, padding=3``, dates as ``Jan 02, 2006 15:04 MST``, residual time as
apimachinery's ``ShortHumanDuration``) so operators read what they already know.
HTML uses only the standard library, with colours that work on light and dark
notebook themes.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kubepki.catalog import Kind
from kubepki.inspection._findings import Severity, Status

if TYPE_CHECKING:
    from kubepki.inspection._inventory import Inventory, InventoryItem

__all__ = ["go_tabwriter", "inventory_html", "inventory_table", "kubeadm_date", "short_human_duration"]


def short_human_duration(seconds: float) -> str:
    """apimachinery's ``duration.ShortHumanDuration`` (``364d``, ``9y``, ``<invalid>``)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60:
        return f"{s}s"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def kubeadm_date(when: dt.datetime) -> str:
    """``Nov 28, 2027 14:38 UTC`` as kubeadm prints expiry dates."""
    return when.astimezone(dt.timezone.utc).strftime("%b %d, %Y %H:%M UTC")


def go_tabwriter(lines: Sequence[str], *, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated ``lines`` the way Go's ``text/tabwriter`` does.

    A cell is text terminated by a tab; the text after a line's last tab is not
    part of any column. A column block is a run of consecutive lines that have a
    cell in that column; each block is as wide as its widest cell plus padding.
    """
    rows = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[0] * (len(r) - 1) for r in rows]

    def format_block(start: int, end: int, column: int) -> None:
        line = start
        while line < end:
            if len(rows[line]) - 1 <= column:
                line += 1
                continue
            block_start = line
            width = minwidth
            while line < end and len(rows[line]) - 1 > column:
                width = max(width, len(rows[line][column]) + padding)
                line += 1
            for i in range(block_start, line):
                widths[i][column] = width
            format_block(block_start, line, column + 1)

    format_block(0, len(rows), 0)
    out = []
    for row, ws in zip(rows, widths, strict=True):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], ws, strict=True)]
        out.append("".join(cells) + row[-1])
    return "\n".join(out) + "\n"


def _yes_no(value: bool) -> str:
    return f"{'yes' if value else 'no':<8}"


def inventory_table(inv: Inventory, *, findings: bool = True) -> str:
    """The two check-expiration tables (certificates, then CAs), then kubepki's findings."""
    certs = sorted(
        (i for i in inv.items if i.kind in (Kind.CERTIFICATE, Kind.KUBECONFIG, Kind.KUBELET)
         and not (i.status is Status.MISSING and not i.entry.required)),
        key=lambda i: i.name,
    )
    cas = sorted((i for i in inv.items if i.kind is Kind.CA), key=lambda i: i.name)
    lines = ["CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED"]
    for item in certs:
        if item.status is Status.MISSING:
            lines.append(f"!MISSING! {item.name}\t\t\t\t\t")
        elif item.not_after is None:
            lines.append(f"!INVALID! {item.name}\t\t\t{item.signer or ''}\t{_yes_no(item.externally_managed)}")
        else:
            lines.append("\t".join([
                item.name, kubeadm_date(item.not_after),
                short_human_duration((item.not_after - inv.now).total_seconds()),
                item.signer or "", _yes_no(item.externally_managed),
            ]))
    lines.append("")
    lines.append("CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED")
    for item in cas:
        if item.status is Status.MISSING:
            lines.append(f"!MISSING! {item.name}\t\t\t")
        elif item.not_after is None:
            lines.append(f"!INVALID! {item.name}\t\t\t{_yes_no(item.externally_managed)}")
        else:
            lines.append("\t".join([
                item.name, kubeadm_date(item.not_after),
                short_human_duration((item.not_after - inv.now).total_seconds()),
                _yes_no(item.externally_managed),
            ]))
    text = go_tabwriter(lines)
    if findings:
        text += findings_text(inv)
    return text


def findings_text(inv: Inventory, *, min_severity: Severity = Severity.WARNING) -> str:
    """The findings at ``min_severity`` or worse, one line each, worst first."""
    shown = [(i, f) for i, f in inv.findings if f.severity.rank >= min_severity.rank]
    if not shown:
        return ""
    lines = ["", "FINDINGS"]
    for item, f in shown:
        lines.append(f"{f.severity.value.upper():<8} {item.name:<26} {f.code:<24} {f.message}")
    return "\n".join(lines) + "\n"


# HTML ---------------------------------------------------------------------------------

_STATUS_STYLE = {
    Status.OK: "#1a7f37",
    Status.WARNING: "#b7791f",
    Status.EXPIRED: "#cf222e",
    Status.INVALID: "#cf222e",
    Status.MISSING: "#8250df",
}


def _badge(status: Status) -> str:
    colour = _STATUS_STYLE[status]
    return (f'<span style="color:#fff;background:{colour};padding:1px 6px;border-radius:8px;'
            f'font-size:0.85em">{html.escape(status.value)}</span>')


def _row(item: InventoryItem, now: dt.datetime) -> str:
    expires = kubeadm_date(item.not_after) if item.not_after else "—"
    residual = short_human_duration((item.not_after - now).total_seconds()) if item.not_after else "—"
    findings = "<br>".join(
        f"<code>{html.escape(f.code)}</code> {html.escape(f.message)}" for f in item.findings
        if f.severity is not Severity.INFO
    )
    cells = [
        f"<b>{html.escape(item.name)}</b>", html.escape(item.kind.value), _badge(item.status),
        html.escape(expires), html.escape(residual), html.escape(item.signer or "—"),
        html.escape(item.scope.value), "yes" if item.externally_managed else "no", findings,
    ]
    return "<tr>" + "".join(f'<td style="text-align:left;vertical-align:top">{c}</td>' for c in cells) + "</tr>"


def inventory_html(inv: Inventory) -> str:
    """A compact colour-coded table of the inventory for Jupyter."""
    head = ["name", "kind", "status", "expires", "residual", "signer", "scope", "external", "findings"]
    counts = ", ".join(f"{k} {v}" for k, v in inv.counts().items() if v)
    caption = (f"kubepki inventory — node <b>{html.escape(inv.node or '?')}</b>, "
               f"Kubernetes {html.escape(str(inv.profile.kubernetes_version))}, "
               f"at {html.escape(kubeadm_date(inv.now))}: {html.escape(counts)}")
    rows = "".join(_row(i, inv.now) for i in inv.items)
    header = "".join(f'<th style="text-align:left">{h}</th>' for h in head)
    return (f'<table class="kubepki"><caption style="text-align:left">{caption}</caption>'
            f"<thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>")
