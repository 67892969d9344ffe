"""A secret pasted into a kubeadm-config value is never echoed whole in an error message.

The real parser on real YAML bytes; a short, ordinary wrong value (control) is still shown whole.
"""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

import kubepki
from kubepki.errors import ConfigError, redacted
from kubepki.node._kubeadm_config import parse_kubeadm_config

SECRET = "abcdef.0123456789abcdef"  # a bootstrap token's shape: "<id>.<secret>"
FIELDS = {
    "encryptionAlgorithm": "encryptionAlgorithm: {v}",
    "kubernetesVersion": "kubernetesVersion: {v}",
    "certificateValidityPeriod": "certificateValidityPeriod: {v}",
    "caCertificateValidityPeriod": "caCertificateValidityPeriod: {v}",
}


def _config(line: str) -> bytes:
    return f"apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n{line}\n".encode()


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_pasted_secret_is_not_echoed(field: str) -> None:
    """The message names the field and the value's start and length, never the token's secret half."""
    with pytest.raises(ConfigError) as caught:
        parse_kubeadm_config(_config(FIELDS[field].format(v=SECRET)), path="/etc/kubernetes/kubeadm.yaml")
    message = str(caught.value)
    assert "0123456789abcdef" not in message
    assert "23 characters" in message


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_short_wrong_value_is_still_shown_whole(field: str) -> None:
    """Control: an ordinary mistake stays readable."""
    with pytest.raises(ConfigError, match="RSA-1024x"):
        parse_kubeadm_config(_config(FIELDS[field].format(v="RSA-1024x")), path="/etc/kubernetes/kubeadm.yaml")


def test_check_on_a_node_with_a_secret_in_its_config_does_not_print_it(tmp_path: Path) -> None:
    """The CLI's note about the ignored config (the user-facing path) does not carry the secret either."""
    root = kubepki.testing.build_node(tmp_path / "n").root
    for candidate in ("etc/kubernetes/kubeadm.yaml", "etc/kubernetes/kubeadm-config.yaml"):
        path = root / candidate
        path.write_bytes(_config(f"encryptionAlgorithm: {SECRET}"))
    out = subprocess.run([sys.executable, "-m", "kubepki", "check", "--root", str(root), "-o", "json"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert "encryptionAlgorithm" in out.stdout + out.stderr  # the problem is reported
    assert "0123456789abcdef" not in out.stdout + out.stderr


@given(st.text(alphabet=string.printable, min_size=17, max_size=400))
def test_redacted_never_shows_more_than_its_start(value: str) -> None:
    """Any long value: at most its first six characters appear, with its length."""
    shown = redacted(value)
    assert f"({len(value)} characters)" in shown
    assert len(shown) < 40 + len(str(len(value)))
