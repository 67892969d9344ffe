"""How a component is restarted or observed: static pod manifests, Docker, the CRI, systemd, signals.

Each restart method implements :class:`kubepki.restarts.RestartMethod` in a
module of its own; :data:`METHODS` maps every :class:`kubepki.restarts.Method`
that restarts something to its implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.restarts.methods._container import (
        LABEL_CONTAINER as LABEL_CONTAINER,
        LABEL_NAMESPACE as LABEL_NAMESPACE,
        LABEL_POD as LABEL_POD,
        LABEL_POD_UID as LABEL_POD_UID,
        ContainerMethod as ContainerMethod,
    )
    from kubepki.restarts.methods._cri import (
        API_VERSION as API_VERSION,
        CONTAINERD_ENDPOINT as CONTAINERD_ENDPOINT,
        CRI_DOCKERD_ENDPOINT as CRI_DOCKERD_ENDPOINT,
        CRI_METHOD as CRI_METHOD,
        CRIO_ENDPOINT as CRIO_ENDPOINT,
        CRIRuntime as CRIRuntime,
        CRIVersion as CRIVersion,
        argv_from_info as argv_from_info,
        cri_container_info as cri_container_info,
        from_nanoseconds as from_nanoseconds,
        sandbox_info as sandbox_info,
        socket_path as socket_path,
    )
    from kubepki.restarts.methods._docker import (
        DOCKER_METHOD as DOCKER_METHOD,
        DockerRuntime as DockerRuntime,
        docker_container_info as docker_container_info,
        parse_docker_time as parse_docker_time,
        parse_kubelet_name as parse_kubelet_name,
    )
    from kubepki.restarts.methods._manifest import (
        MANIFEST_METHOD as MANIFEST_METHOD,
        ManifestMethod as ManifestMethod,
    )
    from kubepki.restarts.methods._runtimes import (
        DOCKER_ENDPOINT as DOCKER_ENDPOINT,
        KNOWN_SOCKETS as KNOWN_SOCKETS,
        RuntimeSocket as RuntimeSocket,
        detect_runtime as detect_runtime,
        find_sockets as find_sockets,
        kubelet_endpoint as kubelet_endpoint,
        runtime_for as runtime_for,
    )
    from kubepki.restarts.methods._signal import (
        SIGNAL_METHOD as SIGNAL_METHOD,
        SignalMethod as SignalMethod,
        parent_of as parent_of,
    )
    from kubepki.restarts.methods._systemd import (
        KUBELET_UNITS as KUBELET_UNITS,
        SYSTEMD_METHOD as SYSTEMD_METHOD,
        SystemdMethod as SystemdMethod,
        kubelet_method as kubelet_method,
        systemctl_restart_kubelet as systemctl_restart_kubelet,
    )
    from kubepki.restarts.methods._table import (
        METHODS as METHODS,
        restart_method as restart_method,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_container": (
            "LABEL_CONTAINER",
            "LABEL_NAMESPACE",
            "LABEL_POD",
            "LABEL_POD_UID",
            "ContainerMethod",
        ),
        "_cri": (
            "API_VERSION",
            "CONTAINERD_ENDPOINT",
            "CRIO_ENDPOINT",
            "CRIRuntime",
            "CRIVersion",
            "CRI_DOCKERD_ENDPOINT",
            "CRI_METHOD",
            "argv_from_info",
            "cri_container_info",
            "from_nanoseconds",
            "sandbox_info",
            "socket_path",
        ),
        "_docker": (
            "DOCKER_METHOD",
            "DockerRuntime",
            "docker_container_info",
            "parse_docker_time",
            "parse_kubelet_name",
        ),
        "_manifest": (
            "MANIFEST_METHOD",
            "ManifestMethod",
        ),
        "_runtimes": (
            "DOCKER_ENDPOINT",
            "KNOWN_SOCKETS",
            "RuntimeSocket",
            "detect_runtime",
            "find_sockets",
            "kubelet_endpoint",
            "runtime_for",
        ),
        "_signal": (
            "SIGNAL_METHOD",
            "SignalMethod",
            "parent_of",
        ),
        "_systemd": (
            "KUBELET_UNITS",
            "SYSTEMD_METHOD",
            "SystemdMethod",
            "kubelet_method",
            "systemctl_restart_kubelet",
        ),
        "_table": (
            "METHODS",
            "restart_method",
        ),
    },
)
