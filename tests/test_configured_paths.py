"""Every configured directory is normalised once: a path spelled with ``.``, ``..`` or ``//`` names the same files.

A real demo tree on disk; the backup is judged by its own verification and its member names.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path, PurePosixPath

import pytest

import kubepki
from kubepki.node import Node, normal_path

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, tzinfo=UTC)

SPELLINGS = {
    "cert_dir": "/etc/kubernetes/x/../pki",
    "kubeconfig_dir": "/etc/kubernetes/x/..",
    "kubelet_pki_dir": "/var/lib/kubelet/x/../pki/",
}


@pytest.mark.parametrize("option", sorted(SPELLINGS))
def test_a_directory_spelled_with_dots_backs_up_the_same_files(option: str, tmp_path: Path) -> None:
    """A backup taken with the odd spelling holds the same members as with kubeadm's (control) and verifies."""
    root = kubepki.testing.build_node(tmp_path / "n", issued_at=NOW).root
    (root / "etc/kubernetes/x").mkdir()
    (root / "var/lib/kubelet/x").mkdir()
    plain = kubepki.backup(Node(root), tmp_path / "plain", now=NOW)
    odd_node = Node(root, **{option: SPELLINGS[option]})
    assert getattr(odd_node.profile, option) == normal_path(SPELLINGS[option])
    odd = kubepki.backup(odd_node, tmp_path / "odd", now=NOW)
    assert kubepki.verify_backup(odd.path).ok
    assert odd.to_dict()["items"] == plain.to_dict()["items"]
    inv = kubepki.inspect(odd_node, now=NOW)
    assert not [i.name for i in inv if i.has("missing")]


@pytest.mark.parametrize(("given", "clean"), [
    ("/etc/kubernetes/pki", "/etc/kubernetes/pki"),
    ("/etc/kubernetes/x/../pki", "/etc/kubernetes/pki"),
    ("//etc///kubernetes/./pki/", "/etc/kubernetes/pki"),
    ("/../etc/kubernetes", "/etc/kubernetes"),
    ("/", "/"),
])
def test_normal_path_is_go_filepath_clean(given: str, clean: str) -> None:
    """As Go's ``filepath.Clean``: ``..`` stops at the root, repeated and trailing slashes go."""
    assert normal_path(given) == PurePosixPath(clean)
