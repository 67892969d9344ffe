"""kubepki: know, inspect, back up, renew and roll out every certificate of a kubeadm cluster.

>>> import kubepki
>>> kubepki.catalog.get("apiserver").signer
'ca'

Public names are loaded on first use (PEP 562), so ``import kubepki`` stays cheap:
the X.509 and YAML machinery is imported only when something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kubepki._version import __version__
from kubepki.errors import (
    BackupError,
    ConfigError,
    KubeconfigError,
    KubepkiError,
    LockError,
    ManifestError,
    NodeError,
    ParseError,
    PathEscapeError,
    PEMError,
    RenewalError,
    RestartError,
    SignerError,
    UnknownItemError,
    UnsafeArchiveError,
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki import catalog, frames, probe, testing, timeline
    from kubepki.apiclient import APIError, check_live
    from kubepki.backups import (
        BackupInfo,
        BackupMember,
        RestoreAction,
        RestorePlan,
        RestoreResult,
        RestoreStep,
        VerifyReport,
        apply_restore,
        backup,
        list_backups,
        plan_restore,
        prune_backups,
        restore,
        verify_backup,
    )
    from kubepki.catalog import CatalogEntry, Component, Kind, Reload, Scope
    from kubepki.cluster import (
        Cluster,
        ClusterFinding,
        ClusterInventory,
        ClusterRenewalPlan,
        ClusterRenewalResult,
        ClusterRestartPlan,
        ClusterRestartReport,
        apply_cluster_renewal,
        apply_cluster_restarts,
        inspect_cluster,
        plan_cluster_renewal,
        plan_cluster_restarts,
    )
    from kubepki.cluster_objects import ObjectInventory, ObjectItem, ObjectItemKind, check_objects
    from kubepki.findings import Finding, Severity, Status
    from kubepki.inspection import Inventory, InventoryItem, compare_nodes, inspect
    from kubepki.node import Node, NodeProfile
    from kubepki.renewal import (
        RenewalPlan,
        RenewalResult,
        apply_renewal,
        create_super_admin,
        install_signed,
        issue_kubeconfig,
        plan_renewal,
        resume_renewal,
        switch_kubelet_conf,
        write_csrs,
    )
    from kubepki.restarts import (
        RestartPlan,
        RestartReport,
        RestartStep,
        Staleness,
        apply_restarts,
        detect_stale,
        plan_restarts,
    )
    from kubepki.served import verify_served
    from kubepki.ssh import HostKeyError, ssh_node
    from kubepki.versions import KubeVersion

#: Lazily loaded public names: name -> module that defines it.
_LAZY: dict[str, str] = {
    "APIError": "kubepki.apiclient",
    "BackupInfo": "kubepki.backups",
    "BackupMember": "kubepki.backups",
    "CatalogEntry": "kubepki.catalog",
    "Cluster": "kubepki.cluster",
    "ClusterFinding": "kubepki.cluster",
    "ClusterInventory": "kubepki.cluster",
    "ClusterRenewalPlan": "kubepki.cluster",
    "ClusterRenewalResult": "kubepki.cluster",
    "ClusterRestartPlan": "kubepki.cluster",
    "ClusterRestartReport": "kubepki.cluster",
    "Component": "kubepki.catalog",
    "Finding": "kubepki.findings",
    "HostKeyError": "kubepki.ssh",
    "Inventory": "kubepki.inspection",
    "InventoryItem": "kubepki.inspection",
    "Kind": "kubepki.catalog",
    "KubeVersion": "kubepki.versions",
    "Node": "kubepki.node",
    "NodeProfile": "kubepki.node",
    "ObjectInventory": "kubepki.cluster_objects",
    "ObjectItem": "kubepki.cluster_objects",
    "ObjectItemKind": "kubepki.cluster_objects",
    "Reload": "kubepki.catalog",
    "RenewalPlan": "kubepki.renewal",
    "RenewalResult": "kubepki.renewal",
    "RestartPlan": "kubepki.restarts",
    "RestartReport": "kubepki.restarts",
    "RestartStep": "kubepki.restarts",
    "RestoreAction": "kubepki.backups",
    "RestorePlan": "kubepki.backups",
    "RestoreResult": "kubepki.backups",
    "RestoreStep": "kubepki.backups",
    "Scope": "kubepki.catalog",
    "Severity": "kubepki.findings",
    "Staleness": "kubepki.restarts",
    "Status": "kubepki.findings",
    "VerifyReport": "kubepki.backups",
    "apply_cluster_renewal": "kubepki.cluster",
    "apply_cluster_restarts": "kubepki.cluster",
    "apply_renewal": "kubepki.renewal",
    "apply_restarts": "kubepki.restarts",
    "apply_restore": "kubepki.backups",
    "backup": "kubepki.backups",
    "check_live": "kubepki.apiclient",
    "check_objects": "kubepki.cluster_objects",
    "compare_nodes": "kubepki.inspection",
    "create_super_admin": "kubepki.renewal",
    "detect_stale": "kubepki.restarts",
    "inspect": "kubepki.inspection",
    "inspect_cluster": "kubepki.cluster",
    "install_signed": "kubepki.renewal",
    "issue_kubeconfig": "kubepki.renewal",
    "list_backups": "kubepki.backups",
    "plan_cluster_renewal": "kubepki.cluster",
    "plan_cluster_restarts": "kubepki.cluster",
    "plan_renewal": "kubepki.renewal",
    "plan_restarts": "kubepki.restarts",
    "plan_restore": "kubepki.backups",
    "prune_backups": "kubepki.backups",
    "restore": "kubepki.backups",
    "resume_renewal": "kubepki.renewal",
    "ssh_node": "kubepki.ssh",
    "switch_kubelet_conf": "kubepki.renewal",
    "verify_backup": "kubepki.backups",
    "verify_served": "kubepki.served",
    "write_csrs": "kubepki.renewal",
}
#: Lazily loaded public submodules.
_SUBMODULES = frozenset({"catalog", "frames", "probe", "testing", "timeline"})

__all__ = [
    "APIError",
    "BackupError",
    "BackupInfo",
    "BackupMember",
    "CatalogEntry",
    "Cluster",
    "ClusterFinding",
    "ClusterInventory",
    "ClusterRenewalPlan",
    "ClusterRenewalResult",
    "ClusterRestartPlan",
    "ClusterRestartReport",
    "Component",
    "ConfigError",
    "Finding",
    "HostKeyError",
    "Inventory",
    "InventoryItem",
    "Kind",
    "KubeVersion",
    "KubeconfigError",
    "KubepkiError",
    "LockError",
    "ManifestError",
    "Node",
    "NodeError",
    "NodeProfile",
    "ObjectInventory",
    "ObjectItem",
    "ObjectItemKind",
    "PEMError",
    "ParseError",
    "PathEscapeError",
    "Reload",
    "RenewalError",
    "RenewalPlan",
    "RenewalResult",
    "RestartError",
    "RestartPlan",
    "RestartReport",
    "RestartStep",
    "RestoreAction",
    "RestorePlan",
    "RestoreResult",
    "RestoreStep",
    "Scope",
    "Severity",
    "SignerError",
    "Staleness",
    "Status",
    "UnknownItemError",
    "UnsafeArchiveError",
    "VerifyReport",
    "__version__",
    "apply_cluster_renewal",
    "apply_cluster_restarts",
    "apply_renewal",
    "apply_restarts",
    "apply_restore",
    "backup",
    "catalog",
    "check_live",
    "check_objects",
    "compare_nodes",
    "create_super_admin",
    "detect_stale",
    "frames",
    "inspect",
    "inspect_cluster",
    "install_signed",
    "issue_kubeconfig",
    "list_backups",
    "plan_cluster_renewal",
    "plan_cluster_restarts",
    "plan_renewal",
    "plan_restarts",
    "plan_restore",
    "probe",
    "prune_backups",
    "restore",
    "resume_renewal",
    "ssh_node",
    "switch_kubelet_conf",
    "testing",
    "timeline",
    "verify_backup",
    "verify_served",
    "write_csrs",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"kubepki.{name}")
        globals()[name] = module
        return module
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'kubepki' has no attribute {name!r}")
    value = getattr(importlib.import_module(target), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
