"""Kubernetes/kubeadm versions as comparable values.

kubepki only cares about minor versions (kubeadm's behaviour changes per minor
release), so a version is a ``(major, minor)`` pair; patch levels are parsed and
dropped.
"""

from __future__ import annotations

import re

import attrs

from kubepki.errors import ConfigError, redacted

# Bounded: int() refuses strings of more than 4300 digits with ValueError.
_VERSION_RE = re.compile(r"^v?(\d{1,9})\.(\d{1,9})(?:\.(\d+))?(?:[-+].*)?$")


@attrs.frozen(order=True)
class KubeVersion:
    """A Kubernetes minor version such as ``1.29``."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        """Parse ``"v1.34.1"``, ``"1.29"`` or ``"1.30.0-rc.1"``.

        Raises :class:`~kubepki.ConfigError` for anything else.
        """
        match = _VERSION_RE.match(text.strip())
        if match is None:
            raise ConfigError(f"not a Kubernetes version: {redacted(text)}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


#: The oldest kubeadm release kubepki models (``kubeadm certs`` without ``alpha``).
OLDEST = KubeVersion(1, 21)
#: The newest kubeadm release kubepki models; assumed when nothing on a node says.
NEWEST = KubeVersion(1, 36)


def as_version(value: KubeVersion | str) -> KubeVersion:
    """Accept a version or its text form."""
    return value if isinstance(value, KubeVersion) else KubeVersion.parse(value)


#: ``version_source`` of a node whose version nothing on it names (:data:`NEWEST` is used).
ASSUMED = "assumed"


def describe_version(version: KubeVersion | str, source: str) -> str:
    """``Kubernetes 1.28, from the kube-apiserver image tag``, or ``…, assumed: …`` when nothing said.

    ``source`` is a node profile's ``version_source``; every output that states
    a node's version says it this way, so an assumption never reads as a fact.
    """
    if source == ASSUMED or not source:
        return f"Kubernetes {version}, assumed: no static pod manifest or kubeadm config on the node names it"
    return f"Kubernetes {version}, from the {source}"
