"""Fixing the modes and owners the CIS Kubernetes Benchmark findings name: planned first, reversible."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.permissions._permissions import (
        DEFAULT_UNDO_DIR as DEFAULT_UNDO_DIR,
        PermissionChange as PermissionChange,
        PermissionsPlan as PermissionsPlan,
        PermissionsResult as PermissionsResult,
        apply_permissions as apply_permissions,
        plan_permissions as plan_permissions,
        plan_permissions_undo as plan_permissions_undo,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_permissions": (
            "DEFAULT_UNDO_DIR",
            "PermissionChange",
            "PermissionsPlan",
            "PermissionsResult",
            "plan_permissions",
            "plan_permissions_undo",
            "apply_permissions",
        ),
    },
)
