"""How a component is restarted or observed: static pod manifests, Docker, the CRI, systemd."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.restarts.methods._cri import (
        API_VERSION as API_VERSION,
        CONTAINERD_ENDPOINT as CONTAINERD_ENDPOINT,
        CRI_DOCKERD_ENDPOINT as CRI_DOCKERD_ENDPOINT,
        CRIO_ENDPOINT as CRIO_ENDPOINT,
        CRIRuntime as CRIRuntime,
        CRIVersion as CRIVersion,
        argv_from_info as argv_from_info,
        container_info as container_info,
        from_nanoseconds as from_nanoseconds,
        sandbox_info as sandbox_info,
        socket_path as socket_path,
    )
    from kubepki.restarts.methods._docker import (
        LABEL_CONTAINER as LABEL_CONTAINER,
        LABEL_NAMESPACE as LABEL_NAMESPACE,
        LABEL_POD as LABEL_POD,
        LABEL_POD_UID as LABEL_POD_UID,
        DockerRuntime as DockerRuntime,
        parse_docker_time as parse_docker_time,
        parse_kubelet_name as parse_kubelet_name,
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

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_cri": (
            "CONTAINERD_ENDPOINT",
            "CRIO_ENDPOINT",
            "CRI_DOCKERD_ENDPOINT",
            "API_VERSION",
            "socket_path",
            "CRIVersion",
            "CRIRuntime",
            "from_nanoseconds",
            "container_info",
            "sandbox_info",
            "argv_from_info",
        ),
        "_docker": (
            "LABEL_CONTAINER",
            "LABEL_POD",
            "LABEL_NAMESPACE",
            "LABEL_POD_UID",
            "parse_docker_time",
            "parse_kubelet_name",
            "DockerRuntime",
        ),
        "_runtimes": (
            "DOCKER_ENDPOINT",
            "KNOWN_SOCKETS",
            "RuntimeSocket",
            "find_sockets",
            "kubelet_endpoint",
            "runtime_for",
            "detect_runtime",
        ),
    },
)
