"""The public surface: __all__ is honest and `import kubepki` stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import kubepki
from tests.kubeadm_trees import materialize


def test_all_is_sorted_and_every_name_resolves() -> None:
    """Every name in __all__ exists, and the list is sorted."""
    assert kubepki.__all__ == sorted(kubepki.__all__)
    for name in kubepki.__all__:
        assert getattr(kubepki, name) is not None, name


def test_public_callables_have_docstrings() -> None:
    """Every public class and function says what it does."""
    for name in kubepki.__all__:
        obj = getattr(kubepki, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name


def test_unknown_attribute_is_attribute_error() -> None:
    """Lazy loading does not swallow typos."""
    with pytest.raises(AttributeError, match="inspekt"):
        kubepki.inspekt  # type: ignore[attr-defined]  # noqa: B018


def test_import_is_light() -> None:
    """`import kubepki` loads neither docker, rich, matplotlib, pandas nor the X.509 stack."""
    code = (
        "import sys, kubepki\n"
        "heavy = [m for m in ('docker', 'rich', 'matplotlib', 'pandas', 'grpc', 'paramiko',"
        " 'prometheus_client', 'cryptography.x509', 'yaml') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_inspecting_does_not_import_docker(tmp_path: Path) -> None:
    """Even a full inspection never needs the docker SDK."""
    root = materialize("single-full", tmp_path / "n")
    code = (
        "import sys, kubepki\n"
        "inv = kubepki.inspect(sys.argv[1])\n"
        "print(len(inv), 'docker' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True)
    # every 1.34 item but kubelet-server-current.pem (no serverTLSBootstrap on this node)
    assert out.stdout.split() == [str(len(kubepki.catalog.entries(version="1.34")) - 1), "False"]
