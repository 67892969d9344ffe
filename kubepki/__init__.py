"""kubepki: know, inspect, back up, renew and roll out every certificate of a kubeadm cluster.

>>> import kubepki
>>> kubepki.catalog.get("apiserver").signer
'ca'
"""

from kubepki import catalog
from kubepki._version import __version__
from kubepki.catalog import CatalogEntry, Component, Kind, Reload, Scope
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
from kubepki.findings import Finding, Severity, Status
from kubepki.inspection import Inventory, InventoryItem, compare_nodes, inspect
from kubepki.node import Node, NodeProfile
from kubepki.versions import KubeVersion

__all__ = [
    "BackupError",
    "CatalogEntry",
    "Component",
    "ConfigError",
    "Finding",
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
    "PEMError",
    "ParseError",
    "PathEscapeError",
    "Reload",
    "RenewalError",
    "RestartError",
    "Scope",
    "Severity",
    "SignerError",
    "Status",
    "UnknownItemError",
    "UnsafeArchiveError",
    "__version__",
    "catalog",
    "compare_nodes",
    "inspect",
]
