"""Nodes: filesystem access (local or SSH), static pod manifests, kubeadm config, discovery, the write lock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubepki._lazy import attach

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from kubepki.node._fs import (
        CommandResult as CommandResult,
        CommandRunner as CommandRunner,
        Connection as Connection,
        FileStat as FileStat,
        LocalFS as LocalFS,
        LocalPaths as LocalPaths,
        NodeFS as NodeFS,
        NotRegularFile as NotRegularFile,
        atomic_write as atomic_write,
        file_type as file_type,
        fsync_dir as fsync_dir,
        makedirs as makedirs,
        node_path as node_path,
        open_regular as open_regular,
        read_regular as read_regular,
        rename_noreplace as rename_noreplace,
        write_exclusive as write_exclusive,
    )
    from kubepki.node._history import (
        HISTORY_KEEP as HISTORY_KEEP,
        HISTORY_PATH as HISTORY_PATH,
        History as History,
        append_history as append_history,
        read_history as read_history,
    )
    from kubepki.node._journals import (
        RENEWAL_JOURNAL_NAME as RENEWAL_JOURNAL_NAME,
        RENEWAL_STAGED_SUFFIX as RENEWAL_STAGED_SUFFIX,
        RESTORE_JOURNAL_NAME as RESTORE_JOURNAL_NAME,
        renewal_journal_path as renewal_journal_path,
        renewal_staged_path as renewal_staged_path,
        restore_journal_path as restore_journal_path,
    )
    from kubepki.node._kubeadm_config import (
        ENCRYPTION_ALGORITHMS as ENCRYPTION_ALGORITHMS,
        KubeadmConfig as KubeadmConfig,
        parse_duration as parse_duration,
        parse_kubeadm_config as parse_kubeadm_config,
    )
    from kubepki.node._kubelet import (
        KUBEADM_FLAGS as KUBEADM_FLAGS,
        KUBELET_CONFIG as KUBELET_CONFIG,
        KubeletSettings as KubeletSettings,
        RotatedPEMs as RotatedPEMs,
        parse_kubeadm_flags as parse_kubeadm_flags,
        read_kubelet_config as read_kubelet_config,
        read_kubelet_settings as read_kubelet_settings,
        rotated_pems as rotated_pems,
    )
    from kubepki.node._lock import (
        LOCK_NAME as LOCK_NAME,
        LOCK_PATH as LOCK_PATH,
        node_lock as node_lock,
    )
    from kubepki.node._manifests import (
        MANIFEST_FILES as MANIFEST_FILES,
        HTTPProbe as HTTPProbe,
        StaticPodManifest as StaticPodManifest,
        parse_manifest as parse_manifest,
    )
    from kubepki.node._node import (
        CONFIG_CANDIDATES as CONFIG_CANDIDATES,
        DEFAULT_DIRS as DEFAULT_DIRS,
        Node as Node,
        NodeProfile as NodeProfile,
        normal_path as normal_path,
    )
    from kubepki.node._ssh import (
        SSHFS as SSHFS,
        HostKeyError as HostKeyError,
        ssh_node as ssh_node,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "_fs": (
            "node_path",
            "FileStat",
            "NodeFS",
            "CommandResult",
            "CommandRunner",
            "Connection",
            "LocalPaths",
            "makedirs",
            "LocalFS",
            "atomic_write",
            "fsync_dir",
            "rename_noreplace",
            "write_exclusive",
            "NotRegularFile",
            "file_type",
            "open_regular",
            "read_regular",
        ),
        "_kubeadm_config": (
            "ENCRYPTION_ALGORITHMS",
            "parse_duration",
            "KubeadmConfig",
            "parse_kubeadm_config",
        ),
        "_journals": (
            "RENEWAL_JOURNAL_NAME",
            "RENEWAL_STAGED_SUFFIX",
            "RESTORE_JOURNAL_NAME",
            "renewal_journal_path",
            "renewal_staged_path",
            "restore_journal_path",
        ),
        "_kubelet": (
            "KUBEADM_FLAGS",
            "KUBELET_CONFIG",
            "KubeletSettings",
            "RotatedPEMs",
            "parse_kubeadm_flags",
            "read_kubelet_config",
            "read_kubelet_settings",
            "rotated_pems",
        ),
        "_lock": (
            "LOCK_NAME",
            "LOCK_PATH",
            "node_lock",
        ),
        "_history": (
            "HISTORY_KEEP",
            "HISTORY_PATH",
            "History",
            "append_history",
            "read_history",
        ),
        "_manifests": (
            "HTTPProbe",
            "MANIFEST_FILES",
            "StaticPodManifest",
            "parse_manifest",
        ),
        "_node": (
            "DEFAULT_DIRS",
            "CONFIG_CANDIDATES",
            "NodeProfile",
            "Node",
            "normal_path",
        ),
        "_ssh": (
            "HostKeyError",
            "SSHFS",
            "ssh_node",
        ),
    },
)
