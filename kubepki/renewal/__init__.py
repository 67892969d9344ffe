"""Renewal: kubeadm-compatible re-issue, planned first, journaled, CSR mode for external CAs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.renewal._kubelet_cleanup import (
        KubeletCleanupFile as KubeletCleanupFile,
        KubeletCleanupPlan as KubeletCleanupPlan,
        KubeletCleanupResult as KubeletCleanupResult,
        apply_kubelet_cleanup as apply_kubelet_cleanup,
        plan_kubelet_cleanup as plan_kubelet_cleanup,
    )
    from kubepki.renewal._renewal import (
        CRASH_ENV as CRASH_ENV,
        DEFAULT_MAX_PLAN_AGE as DEFAULT_MAX_PLAN_AGE,
        JOURNAL_NAME as JOURNAL_NAME,
        REASONS as REASONS,
        STAGED_SUFFIX as STAGED_SUFFIX,
        Action as Action,
        KubeconfigSpec as KubeconfigSpec,
        PlannedFile as PlannedFile,
        PlannedFileRole as PlannedFileRole,
        PlanStep as PlanStep,
        RenewalPlan as RenewalPlan,
        RenewalResult as RenewalResult,
        SkippedItem as SkippedItem,
        apply_renewal as apply_renewal,
        create_super_admin as create_super_admin,
        install_signed as install_signed,
        issue_kubeconfig as issue_kubeconfig,
        plan_recovery as plan_recovery,
        plan_renewal as plan_renewal,
        resume_renewal as resume_renewal,
        switch_kubelet_conf as switch_kubelet_conf,
        write_csrs as write_csrs,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_kubelet_cleanup": (
            "KubeletCleanupFile",
            "KubeletCleanupPlan",
            "KubeletCleanupResult",
            "plan_kubelet_cleanup",
            "apply_kubelet_cleanup",
        ),
        "_renewal": (
            "JOURNAL_NAME",
            "STAGED_SUFFIX",
            "CRASH_ENV",
            "DEFAULT_MAX_PLAN_AGE",
            "Action",
            "REASONS",
            "PlannedFile",
            "PlannedFileRole",
            "KubeconfigSpec",
            "PlanStep",
            "RenewalPlan",
            "SkippedItem",
            "RenewalResult",
            "plan_renewal",
            "plan_recovery",
            "apply_renewal",
            "resume_renewal",
            "switch_kubelet_conf",
            "create_super_admin",
            "issue_kubeconfig",
            "write_csrs",
            "install_signed",
        ),
    },
)
