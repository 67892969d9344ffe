"""Text and HTML renderings of kubepki's results.

The text tables reproduce ``kubeadm certs check-expiration`` (Go's tabwriter with
``minwidth=10, padding=3``, dates as ``Jan 02, 2006 15:04 MST``, residual time as
apimachinery's ``ShortHumanDuration``) so operators read what they already know.
HTML uses only the standard library, with colours that work on light and dark
notebook themes.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from kubepki._report import HTML_COLOURS, Block, Cell, Table, go_tabwriter, line, render_html, render_text
from kubepki.catalog import Kind, NodeRole
from kubepki.inspection._findings import Severity, Status
from kubepki.versions import ASSUMED, describe_version

if TYPE_CHECKING:
    from kubepki.inspection._inventory import Inventory, InventoryItem

__all__ = [
    "findings_blocks",
    "findings_text",
    "go_tabwriter",
    "inventory_blocks",
    "inventory_html",
    "inventory_rows",
    "inventory_table",
    "kubeadm_date",
    "short_human_duration",
]


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


#: Each status's colour in HTML and in the timeline.
_STATUS_STYLE = {s: HTML_COLOURS[s.tone] for s in Status}


def _yes_no(value: bool) -> str:
    return f"{'yes' if value else 'no':<8}"


def inventory_blocks(inv: Inventory, *, findings: bool = True) -> list[Block]:
    """The two check-expiration tables (certificates, then CAs), then kubepki's findings."""
    certs = sorted(
        (i for i in inv.items if i.kind in (Kind.CERTIFICATE, Kind.KUBECONFIG, Kind.KUBELET)
         and not (i.status is Status.MISSING and not i.entry.required)),
        key=lambda i: i.name,
    )
    cas = sorted((i for i in inv.items if i.kind is Kind.CA), key=lambda i: i.name)
    blocks: list[Block] = [
        Table("", ("CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED"),
              [_expiry_row(inv, item, signer=True) for item in certs]),
        line(),
        Table("", ("CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"),
              [_expiry_row(inv, item, signer=False) for item in cas]),
    ]
    if inv.profile.version_source == ASSUMED:  # it decides which items apply: never silent
        blocks += [line(), line(Cell("note:", "dim"), f" {describe_version(inv.profile.kubernetes_version, ASSUMED)}")]
    p = inv.profile
    if p.role is not NodeRole.CONTROL_PLANE or p.role_source == ASSUMED:  # kubeadm's tables: a control plane
        article = "an" if p.role is NodeRole.ETCD else "a"
        blocks += [line(), line(Cell("note:", "dim"), f" {article} {p.role.value} node ({p.role_source}): "
                                "only the items such a node has are checked (--role overrides)")]
    if findings:
        blocks += findings_blocks(inv)
    return blocks


def _expiry_row(inv: Inventory, item: InventoryItem, *, signer: bool) -> list[Cell]:
    """One row of kubeadm's tables; a missing or unreadable item is marked as kubeadm marks it."""
    middle = [Cell(item.signer or "")] if signer else []
    if item.status is Status.MISSING:
        return [Cell(f"!MISSING! {item.name}", "missing"), *[Cell("")] * (5 if signer else 3)]
    if item.not_after is None:
        return [Cell(f"!INVALID! {item.name}", "error"), Cell(""), Cell(""), *middle,
                Cell(_yes_no(item.externally_managed))]
    residual = short_human_duration((item.not_after - inv.now).total_seconds())
    return [Cell(item.name), Cell(kubeadm_date(item.not_after)), Cell(residual, item.status.tone), *middle,
            Cell(_yes_no(item.externally_managed))]


def inventory_table(inv: Inventory, *, findings: bool = True) -> str:
    """The two check-expiration tables (certificates, then CAs), then kubepki's findings."""
    return render_text(inventory_blocks(inv, findings=findings))[0]


def findings_blocks(inv: Inventory, *, min_severity: Severity = Severity.WARNING) -> list[Block]:
    """The findings at ``min_severity`` or worse, one line each, worst first (after a blank line)."""
    shown = [(i, f) for i, f in inv.findings if f.severity.rank >= min_severity.rank]
    if not shown:
        return []
    out: list[Block] = [line(), line(Cell("FINDINGS", "strong"))]
    cis = any(f.cis for _i, f in shown)  # the benchmark id column, when a finding answers one
    for item, f in shown:
        word = f.severity.value.upper()
        column = f" {'CIS ' + f.cis if f.cis else '':<10}" if cis else ""
        out.append(line(Cell(word, f.severity.tone),
                        f"{'':<{8 - len(word)}} {item.name:<26} {f.code:<24}{column} {f.message}"))
    return out


def findings_text(inv: Inventory, *, min_severity: Severity = Severity.WARNING) -> str:
    """The findings at ``min_severity`` or worse, one line each, worst first."""
    return render_text(findings_blocks(inv, min_severity=min_severity))[0]


def inventory_rows(inv: Inventory) -> Table:
    """The inventory as one table (for notebooks): every item with its status and findings."""
    counts = ", ".join(f"{k} {v}" for k, v in inv.counts().items() if v)
    version = describe_version(inv.profile.kubernetes_version, inv.profile.version_source)
    title = (f"kubepki inventory — node {inv.node or '?'}, {version}, "
             f"at {kubeadm_date(inv.now)}: {counts}")
    return Table(title, ("name", "kind", "status", "expires", "residual", "signer", "scope", "external",
                         "findings"),
                 [_item_row(i, inv.now) for i in inv.items])


def _item_row(item: InventoryItem, now: dt.datetime) -> list[Cell]:
    expires = kubeadm_date(item.not_after) if item.not_after else "—"
    residual = short_human_duration((item.not_after - now).total_seconds()) if item.not_after else "—"
    findings = "\n".join(f"{f.code}{f' [CIS {f.cis}]' if f.cis else ''} {f.message}" for f in item.findings
                         if f.severity is not Severity.INFO)
    return [Cell(item.name, strong=True), Cell(item.kind.value), Cell(item.status.value, item.status.tone, badge=True),
            Cell(expires), Cell(residual), Cell(item.signer or "—"), Cell(item.scope.value),
            Cell("yes" if item.externally_managed else "no"), Cell(findings)]


def inventory_html(inv: Inventory) -> str:
    """A compact colour-coded table of the inventory for Jupyter."""
    return render_html(inventory_rows(inv))
