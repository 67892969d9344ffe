"""The real kubeadm trees in tests/fixtures/kubeadm, materialised as kubeadm left them.

git keeps neither file modes nor (portably) symlinks, so each tree's
``kubeadm/FILES.txt`` is replayed: modes are applied and ``link`` entries, stored
as text files holding their target, become symlinks again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "kubeadm"

#: Scenarios whose root holds a kubeadm PKI tree to inspect (generate-csr holds CSRs only).
PKI_SCENARIOS = (
    "single",
    "single-full",
    "single-renewed",
    "single-renew-one",
    "ha-cp1",
    "ha-cp2",
    "ha-cp3",
    "ha-cp1-renewed",
    "ha-cp2-renewed",
    "ha-cp3-renewed",
    "expired",
    "expired-renewed",
)
ALL_SCENARIOS = (*PKI_SCENARIOS, "generate-csr")


def _node_path(listed: str) -> str:
    """FILES.txt path (./etc-kubernetes/x) -> path under the root (etc/kubernetes/x)."""
    rel = listed.removeprefix("./")
    if rel.startswith("etc-kubernetes/"):
        rel = "etc/kubernetes/" + rel.removeprefix("etc-kubernetes/")
    return rel


def file_modes(scenario: str) -> dict[str, int]:
    """Mode of every regular file kubeadm wrote, keyed by path relative to the root."""
    modes: dict[str, int] = {}
    for line in (FIXTURES / scenario / "kubeadm" / "FILES.txt").read_text().splitlines():
        parts = line.split()
        if not parts or parts[0] == "link":
            continue
        modes[_node_path(parts[2])] = int(parts[0], 8)
    return modes


def links(scenario: str) -> dict[str, str]:
    """Symlinks kubeadm's tree had under the root: path -> target."""
    out: dict[str, str] = {}
    for line in (FIXTURES / scenario / "kubeadm" / "FILES.txt").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "link" and parts[1] != "./etc/kubernetes":
            out[_node_path(parts[1])] = parts[3]
    return out


def materialize(scenario: str, dest: Path) -> Path:
    """Copy ``scenario``'s root to ``dest`` with kubeadm's modes and symlinks; return it."""
    src = FIXTURES / scenario / "root"
    shutil.copytree(src, dest, symlinks=True)
    for rel, target in links(scenario).items():
        path = dest / rel
        path.unlink()
        os.symlink(target, path)
    for rel, mode in file_modes(scenario).items():
        path = dest / rel
        if path.exists() and not path.is_symlink():
            path.chmod(mode)
    for dirpath, _dirs, _files in os.walk(dest):
        Path(dirpath).chmod(0o755)
    manifests = dest / "etc/kubernetes/manifests"
    if manifests.is_dir():
        manifests.chmod(0o700)
    return dest


def config_path(scenario: str) -> Path:
    """The kubeadm config the scenario was made with (outside its root)."""
    return FIXTURES / scenario / "kubeadm-config.yaml"
