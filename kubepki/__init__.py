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
    APIError,
    BackupError,
    ConfigError,
    HostKeyError,
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
    from kubepki import catalog, testing
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
    from kubepki.catalog import CatalogEntry, Component, Kind, NodeRole, Reload, Scope
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
    from kubepki.inspection import (
        Finding,
        Inventory,
        InventoryItem,
        Severity,
        Status,
        compare_nodes,
        frames,
        inspect,
        timeline,
    )
    from kubepki.node import Node, NodeProfile, ssh_node
    from kubepki.objects import ObjectInventory, ObjectItem, ObjectItemKind, check_live, check_objects, probe
    from kubepki.renewal import (
        KubeletCleanupPlan,
        KubeletCleanupResult,
        RenewalPlan,
        RenewalResult,
        apply_kubelet_cleanup,
        apply_renewal,
        create_super_admin,
        install_signed,
        issue_kubeconfig,
        plan_kubelet_cleanup,
        plan_renewal,
        resume_renewal,
        switch_kubelet_conf,
        write_csrs,
    )
    from kubepki.restarts import (
        Changed,
        FromDetection,
        FromRenewal,
        RestartPlan,
        RestartReport,
        RestartStep,
        Staleness,
        apply_restarts,
        detect_stale,
        plan_restarts,
        verify_served,
    )
    from kubepki.versions import KubeVersion

#: Lazily loaded public names: name -> module that defines it.
_LAZY: dict[str, str] = {
    "BackupInfo": "kubepki.backups._backups",
    "BackupMember": "kubepki.backups._backups",
    "CatalogEntry": "kubepki.catalog",
    "Changed": "kubepki.restarts._restarts",
    "Cluster": "kubepki.cluster._cluster",
    "ClusterFinding": "kubepki.cluster._cluster",
    "ClusterInventory": "kubepki.cluster._cluster",
    "ClusterRenewalPlan": "kubepki.cluster._cluster",
    "ClusterRenewalResult": "kubepki.cluster._cluster",
    "ClusterRestartPlan": "kubepki.cluster._cluster",
    "ClusterRestartReport": "kubepki.cluster._cluster",
    "Component": "kubepki.catalog",
    "Finding": "kubepki.inspection._findings",
    "FromDetection": "kubepki.restarts._restarts",
    "FromRenewal": "kubepki.restarts._restarts",
    "Inventory": "kubepki.inspection._inventory",
    "InventoryItem": "kubepki.inspection._inventory",
    "Kind": "kubepki.catalog",
    "KubeVersion": "kubepki.versions",
    "Node": "kubepki.node._node",
    "NodeProfile": "kubepki.node._node",
    "ObjectInventory": "kubepki.objects._objects",
    "ObjectItem": "kubepki.objects._objects",
    "ObjectItemKind": "kubepki.objects._objects",
    "Reload": "kubepki.catalog",
    "RenewalPlan": "kubepki.renewal._renewal",
    "RenewalResult": "kubepki.renewal._renewal",
    "RestartPlan": "kubepki.restarts._restarts",
    "RestartReport": "kubepki.restarts._restarts",
    "RestartStep": "kubepki.restarts._restarts",
    "RestoreAction": "kubepki.backups._backups",
    "RestorePlan": "kubepki.backups._backups",
    "RestoreResult": "kubepki.backups._backups",
    "RestoreStep": "kubepki.backups._backups",
    "Scope": "kubepki.catalog",
    "Severity": "kubepki.inspection._findings",
    "Staleness": "kubepki.restarts._restarts",
    "Status": "kubepki.inspection._findings",
    "VerifyReport": "kubepki.backups._backups",
    "apply_cluster_renewal": "kubepki.cluster._cluster",
    "apply_cluster_restarts": "kubepki.cluster._cluster",
    "apply_renewal": "kubepki.renewal._renewal",
    "apply_kubelet_cleanup": "kubepki.renewal._kubelet_cleanup",
    "apply_restarts": "kubepki.restarts._restarts",
    "apply_restore": "kubepki.backups._backups",
    "backup": "kubepki.backups._backups",
    "check_live": "kubepki.objects._apiclient",
    "check_objects": "kubepki.objects._objects",
    "compare_nodes": "kubepki.inspection._inventory",
    "create_super_admin": "kubepki.renewal._renewal",
    "detect_stale": "kubepki.restarts._restarts",
    "inspect": "kubepki.inspection._inventory",
    "inspect_cluster": "kubepki.cluster._cluster",
    "install_signed": "kubepki.renewal._renewal",
    "issue_kubeconfig": "kubepki.renewal._renewal",
    "list_backups": "kubepki.backups._backups",
    "plan_cluster_renewal": "kubepki.cluster._cluster",
    "plan_cluster_restarts": "kubepki.cluster._cluster",
    "plan_renewal": "kubepki.renewal._renewal",
    "plan_kubelet_cleanup": "kubepki.renewal._kubelet_cleanup",
    "KubeletCleanupPlan": "kubepki.renewal._kubelet_cleanup",
    "KubeletCleanupResult": "kubepki.renewal._kubelet_cleanup",
    "NodeRole": "kubepki.catalog",
    "plan_restarts": "kubepki.restarts._restarts",
    "plan_restore": "kubepki.backups._backups",
    "prune_backups": "kubepki.backups._backups",
    "restore": "kubepki.backups._backups",
    "resume_renewal": "kubepki.renewal._renewal",
    "ssh_node": "kubepki.node._ssh",
    "switch_kubelet_conf": "kubepki.renewal._renewal",
    "verify_backup": "kubepki.backups._backups",
    "verify_served": "kubepki.restarts._served",
    "write_csrs": "kubepki.renewal._renewal",
}
#: Lazily loaded public modules and packages: attribute -> module.
_SUBMODULES: dict[str, str] = {
    "catalog": "kubepki.catalog",
    "frames": "kubepki.inspection.frames",
    "probe": "kubepki.objects.probe",
    "testing": "kubepki.testing",
    "timeline": "kubepki.inspection.timeline",
    **{name: f"kubepki.{name}" for name in (
        "backups", "cluster", "inspection", "metrics", "node", "objects", "pki", "renewal", "restarts",
    )},
}

__all__ = [
    "APIError",
    "BackupError",
    "BackupInfo",
    "BackupMember",
    "CatalogEntry",
    "Changed",
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
    "FromDetection",
    "FromRenewal",
    "HostKeyError",
    "Inventory",
    "InventoryItem",
    "Kind",
    "KubeVersion",
    "KubeconfigError",
    "KubeletCleanupPlan",
    "KubeletCleanupResult",
    "KubepkiError",
    "LockError",
    "ManifestError",
    "Node",
    "NodeError",
    "NodeProfile",
    "NodeRole",
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
    "apply_kubelet_cleanup",
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
    "plan_kubelet_cleanup",
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
        module = importlib.import_module(_SUBMODULES[name])
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
