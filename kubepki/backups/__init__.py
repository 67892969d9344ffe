"""Backups: verifiable archives of a node's PKI, plan-first restores, listing and pruning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.backups._backups import (
        ARCHIVE_PREFIX as ARCHIVE_PREFIX,
        DEFAULT_BACKUP_DIR as DEFAULT_BACKUP_DIR,
        FORMAT as FORMAT,
        MANIFEST_NAME as MANIFEST_NAME,
        MAX_MEMBER_SIZE as MAX_MEMBER_SIZE,
        MAX_MEMBERS as MAX_MEMBERS,
        MAX_TOTAL_SIZE as MAX_TOTAL_SIZE,
        BackupInfo as BackupInfo,
        BackupMember as BackupMember,
        RestoreAction as RestoreAction,
        RestorePlan as RestorePlan,
        RestoreResult as RestoreResult,
        RestoreStep as RestoreStep,
        VerifyReport as VerifyReport,
        apply_restore as apply_restore,
        archive_name as archive_name,
        backup as backup,
        default_backup_dir as default_backup_dir,
        list_backups as list_backups,
        plan_restore as plan_restore,
        prune_backups as prune_backups,
        restore as restore,
        resume_restore as resume_restore,
        verify_backup as verify_backup,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_backups": (
            "FORMAT",
            "MANIFEST_NAME",
            "ARCHIVE_PREFIX",
            "MAX_MEMBER_SIZE",
            "MAX_TOTAL_SIZE",
            "MAX_MEMBERS",
            "DEFAULT_BACKUP_DIR",
            "BackupMember",
            "BackupInfo",
            "VerifyReport",
            "RestoreAction",
            "RestoreStep",
            "RestorePlan",
            "RestoreResult",
            "archive_name",
            "verify_backup",
            "backup",
            "list_backups",
            "prune_backups",
            "plan_restore",
            "apply_restore",
            "restore",
            "resume_restore",
            "default_backup_dir",
        ),
    },
)
