"""Clusters: every control-plane node, shared material compared, node-by-node renewal, restarts and auto-renew."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.cluster._autorenew import (
        ClusterAutoRenewResult as ClusterAutoRenewResult,
        RemoteAutoRenewReport as RemoteAutoRenewReport,
        RemoteAutoRenewRequest as RemoteAutoRenewRequest,
        cluster_auto_renew as cluster_auto_renew,
    )
    from kubepki.cluster._cluster import (
        CLUSTER_CODES as CLUSTER_CODES,
        ChangedSpec as ChangedSpec,
        Cluster as Cluster,
        ClusterFinding as ClusterFinding,
        ClusterInventory as ClusterInventory,
        ClusterRenewalPlan as ClusterRenewalPlan,
        ClusterRenewalResult as ClusterRenewalResult,
        ClusterRestartPlan as ClusterRestartPlan,
        ClusterRestartReport as ClusterRestartReport,
        HealthCheck as HealthCheck,
        NodeRestart as NodeRestart,
        apply_cluster_renewal as apply_cluster_renewal,
        apply_cluster_restarts as apply_cluster_restarts,
        inspect_cluster as inspect_cluster,
        plan_cluster_renewal as plan_cluster_renewal,
        plan_cluster_restarts as plan_cluster_restarts,
    )
    from kubepki.cluster._remote import (
        RemoteRestartReport as RemoteRestartReport,
        RemoteRestartRequest as RemoteRestartRequest,
        ssh_restart as ssh_restart,
    )
    from kubepki.cluster._rotate import (
        PHASES as PHASES,
        ROTATION_CAS as ROTATION_CAS,
        Phase as Phase,
        RotationChange as RotationChange,
        RotationPlan as RotationPlan,
        RotationResult as RotationResult,
        RotationStatus as RotationStatus,
        abort_rotation as abort_rotation,
        apply_rotation as apply_rotation,
        plan_rotation as plan_rotation,
        rotation_status as rotation_status,
    )
    from kubepki.cluster._rotate_objects import (
        POD_REFRESH as POD_REFRESH,
        ObjectSync as ObjectSync,
        RootCALag as RootCALag,
    )
    from kubepki.cluster._rotate_sa import (
        SARotationPlan as SARotationPlan,
        SARotationResult as SARotationResult,
        SARotationStatus as SARotationStatus,
        TokenLifetime as TokenLifetime,
        abort_sa_rotation as abort_sa_rotation,
        apply_sa_rotation as apply_sa_rotation,
        plan_sa_rotation as plan_sa_rotation,
        sa_rotation_status as sa_rotation_status,
    )
    from kubepki.cluster._trust import (
        Direction as Direction,
        EdgeKind as EdgeKind,
        TrustCheck as TrustCheck,
        TrustEdge as TrustEdge,
        TrustFile as TrustFile,
        TrustReport as TrustReport,
        Verdict as Verdict,
        check_trust as check_trust,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_autorenew": (
            "ClusterAutoRenewResult",
            "RemoteAutoRenewReport",
            "RemoteAutoRenewRequest",
            "cluster_auto_renew",
        ),
        "_cluster": (
            "CLUSTER_CODES",
            "Cluster",
            "ClusterFinding",
            "ClusterInventory",
            "inspect_cluster",
            "ClusterRenewalPlan",
            "plan_cluster_renewal",
            "ClusterRenewalResult",
            "apply_cluster_renewal",
            "NodeRestart",
            "ClusterRestartPlan",
            "ChangedSpec",
            "plan_cluster_restarts",
            "ClusterRestartReport",
            "HealthCheck",
            "apply_cluster_restarts",
        ),
        "_remote": (
            "RemoteRestartRequest",
            "RemoteRestartReport",
            "ssh_restart",
        ),
        "_rotate": (
            "PHASES",
            "ROTATION_CAS",
            "Phase",
            "RotationChange",
            "RotationPlan",
            "RotationResult",
            "RotationStatus",
            "plan_rotation",
            "apply_rotation",
            "rotation_status",
            "abort_rotation",
        ),
        "_rotate_objects": (
            "POD_REFRESH",
            "ObjectSync",
            "RootCALag",
        ),
        "_rotate_sa": (
            "SARotationPlan",
            "SARotationResult",
            "SARotationStatus",
            "TokenLifetime",
            "plan_sa_rotation",
            "apply_sa_rotation",
            "sa_rotation_status",
            "abort_sa_rotation",
        ),
        "_trust": (
            "Direction",
            "EdgeKind",
            "TrustCheck",
            "TrustEdge",
            "TrustFile",
            "TrustReport",
            "Verdict",
            "check_trust",
        ),
    },
)
