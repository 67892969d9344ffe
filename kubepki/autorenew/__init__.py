"""Unattended renewal with proof: :func:`auto_renew` renews what is due, restarts, verifies and rolls back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.autorenew._autorenew import (
        DEFAULT_WITHIN as DEFAULT_WITHIN,
        AutoRenewResult as AutoRenewResult,
        DueItem as DueItem,
        RunStatus as RunStatus,
        Verification as Verification,
        auto_renew as auto_renew,
        node_event as node_event,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_autorenew": (
            "DEFAULT_WITHIN",
            "AutoRenewResult",
            "DueItem",
            "RunStatus",
            "Verification",
            "auto_renew",
            "node_event",
        ),
    },
)
