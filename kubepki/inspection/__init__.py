"""Inspection: findings, inventories of a node's PKI, their tables and HTML; timelines and frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.inspection import frames as frames, timeline as timeline
    from kubepki.inspection._findings import (
        CODES as CODES,
        Finding as Finding,
        HasFindings as HasFindings,
        Severity as Severity,
        Status as Status,
        make as make,
        outcome_for as outcome_for,
        status_counts as status_counts,
        status_for as status_for,
        worst_first as worst_first,
    )
    from kubepki.inspection._inventory import (
        DEFAULT_WARN_WITHIN as DEFAULT_WARN_WITHIN,
        Inventory as Inventory,
        InventoryItem as InventoryItem,
        ItemFile as ItemFile,
        ItemFileRole as ItemFileRole,
        compare_nodes as compare_nodes,
        inspect as inspect,
    )
    from kubepki.inspection._render import (
        findings_blocks as findings_blocks,
        findings_text as findings_text,
        go_tabwriter as go_tabwriter,
        inventory_blocks as inventory_blocks,
        inventory_html as inventory_html,
        inventory_rows as inventory_rows,
        inventory_table as inventory_table,
        kubeadm_date as kubeadm_date,
        short_human_duration as short_human_duration,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_findings": (
            "Severity",
            "Status",
            "Finding",
            "CODES",
            "HasFindings",
            "make",
            "status_for",
            "status_counts",
            "worst_first",
            "outcome_for",
        ),
        "_inventory": (
            "DEFAULT_WARN_WITHIN",
            "ItemFile",
            "ItemFileRole",
            "InventoryItem",
            "Inventory",
            "inspect",
            "compare_nodes",
        ),
        "_render": (
            "short_human_duration",
            "kubeadm_date",
            "go_tabwriter",
            "inventory_table",
            "inventory_blocks",
            "inventory_rows",
            "findings_text",
            "findings_blocks",
            "inventory_html",
        ),
    },
    ("frames", "timeline",),
)
