"""Restarts: which component must restart for which change, observing, executing and verifying."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.restarts import methods as methods
    from kubepki.restarts._observe import (
        COMPONENT_ORDER as COMPONENT_ORDER,
        CombinedObserver as CombinedObserver,
        ContainerInfo as ContainerInfo,
        Instance as Instance,
        Observer as Observer,
        ProcScanner as ProcScanner,
        Runtime as Runtime,
        component_from_name as component_from_name,
        parse_flags as parse_flags,
        scan_processes as scan_processes,
    )
    from kubepki.restarts._restarts import (
        HELD_MANIFESTS_DIR as HELD_MANIFESTS_DIR,
        Action as Action,
        Detection as Detection,
        Method as Method,
        Policy as Policy,
        Progress as Progress,
        Reason as Reason,
        RestartPlan as RestartPlan,
        RestartReport as RestartReport,
        RestartStep as RestartStep,
        StaleKind as StaleKind,
        Staleness as Staleness,
        StepOutcome as StepOutcome,
        StepStatus as StepStatus,
        Timeouts as Timeouts,
        action_for as action_for,
        apply_restarts as apply_restarts,
        detect as detect,
        detect_stale as detect_stale,
        plan_restarts as plan_restarts,
        systemctl_restart_kubelet as systemctl_restart_kubelet,
    )
    from kubepki.restarts._served import (
        DEFAULT_PORTS as DEFAULT_PORTS,
        SERVING_FLAGS as SERVING_FLAGS,
        CheckStatus as CheckStatus,
        Ports as Ports,
        ServedCertificate as ServedCertificate,
        ServedCheck as ServedCheck,
        ServedStatus as ServedStatus,
        check_served as check_served,
        compare_served as compare_served,
        endpoint_port as endpoint_port,
        fetch_served_certificate as fetch_served_certificate,
        serving_cert_path as serving_cert_path,
        to_node_path as to_node_path,
        verify_served as verify_served,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_observe": (
            "COMPONENT_ORDER",
            "component_from_name",
            "parse_flags",
            "Instance",
            "Observer",
            "ContainerInfo",
            "Runtime",
            "ProcScanner",
            "scan_processes",
            "CombinedObserver",
        ),
        "_restarts": (
            "HELD_MANIFESTS_DIR",
            "Policy",
            "Action",
            "Method",
            "Reason",
            "RestartStep",
            "StaleKind",
            "Staleness",
            "Detection",
            "detect",
            "detect_stale",
            "RestartPlan",
            "action_for",
            "plan_restarts",
            "Timeouts",
            "StepStatus",
            "StepOutcome",
            "RestartReport",
            "Progress",
            "systemctl_restart_kubelet",
            "apply_restarts",
        ),
        "_served": (
            "Ports",
            "DEFAULT_PORTS",
            "SERVING_FLAGS",
            "ServedStatus",
            "ServedCertificate",
            "fetch_served_certificate",
            "CheckStatus",
            "ServedCheck",
            "compare_served",
            "serving_cert_path",
            "to_node_path",
            "check_served",
            "verify_served",
            "endpoint_port",
        ),
    },
    ("methods",),
)
