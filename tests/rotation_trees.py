"""What the rotation and trust tests share: a 3 + 2 demo cluster copied per test,
kubeadm's own HA trees, and snapshots of every node's files to judge which paths a phase touched."""

from __future__ import annotations

import shutil
from pathlib import Path

from kubepki import testing
from kubepki.cluster import Cluster
from tests._hardening import snapshot
from tests.kubeadm_trees import materialize

PKI = "etc/kubernetes/pki"
BACKUPS = "/var/backups/kubepki"
CPS, WORKERS = ("cp1", "cp2", "cp3"), ("w1", "w2")
#: What a node's tree holds besides the plan's paths: the backups taken first, and the lock file.
OUTSIDE = ("var/backups", "etc/kubernetes/.kubepki.lock")

#: node path -> (type, mode, uid, gid, content), per node
Tree = dict[str, dict[str, tuple[str, int, int, int, str]]]


def copy_cluster(pristine: testing.DemoCluster, tmp_path: Path, *, nodes: int | None = None) -> dict[str, Path]:
    """A private copy of ``pristine``'s nodes (the first ``nodes`` of them) under ``tmp_path``: node name -> root."""
    out = {}
    for n in pristine.nodes[:nodes]:
        out[n.name] = tmp_path / n.name
        shutil.copytree(n.root, out[n.name], symlinks=True)
    return out


def ha_trees(tmp_path: Path) -> dict[str, Path]:
    """kubeadm's three HA control-plane trees (shared/fixtures), written under ``tmp_path``."""
    return {f"cp{i}": materialize(f"ha-cp{i}", tmp_path / f"cp{i}") for i in (1, 2, 3)}


def cluster(roots: dict[str, Path]) -> Cluster:
    return Cluster(list(roots.values()), labels=list(roots))


def trees(roots: dict[str, Path]) -> Tree:
    """Every node's files (type, mode, owner, content; not mtime) outside the backups and the lock."""
    return {name: {p: (e.kind, e.mode, e.uid, e.gid, e.content) for p, e in snapshot(root).items()
                   if not p.startswith(OUTSIDE)}
            for name, root in roots.items()}


def changed(before: Tree, after: Tree) -> dict[str, set[str]]:
    """Each node's paths (node paths) added, removed or changed; directories are judged by their entries."""
    return {n: {"/" + p for p in before[n].keys() | after[n].keys()
                if before[n].get(p) != after[n].get(p) and (after[n].get(p) or before[n][p])[0] != "dir"}
            for n in before}
