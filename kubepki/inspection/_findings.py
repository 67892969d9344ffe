"""Findings: what inspection says about an item, with stable codes and severities.

The codes are part of kubepki's interface (JSON output, metrics, automation): a code
is never renamed or reused for another meaning. :data:`CODES` documents each one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

import attrs

from kubepki._report import Outcome
from kubepki.errors import scrub

__all__ = [
    "CODES",
    "Finding",
    "HasFindings",
    "Severity",
    "Status",
    "make",
    "outcome_for",
    "status_counts",
    "status_for",
    "worst_first",
]


class Severity(str, enum.Enum):
    """How bad a finding is."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info up to 3 for critical."""
        return _RANK[self]

    @property
    def tone(self) -> str:
        """How reports show it (``info``, ``warning`` or ``error``)."""
        return "info" if self is Severity.INFO else "warning" if self is Severity.WARNING else "error"


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


class Status(str, enum.Enum):
    """An item's overall state, as in the JSON ``status`` field."""

    OK = "ok"
    WARNING = "warning"
    EXPIRED = "expired"
    MISSING = "missing"
    INVALID = "invalid"

    @property
    def tone(self) -> str:
        """How reports show it: ``ok``, ``warning``, ``missing``, or ``error`` (expired, invalid)."""
        return "error" if self in (Status.EXPIRED, Status.INVALID) else self.value


@attrs.frozen
class Finding:
    """One thing inspection noticed about an item."""

    code: str
    severity: Severity
    message: str
    #: The CIS Kubernetes Benchmark id the finding answers (``1.1.21``), None for kubepki's own checks.
    cis: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """``{code, severity, message, cis}`` for JSON (``cis`` null for kubepki's own checks)."""
        return {"code": self.code, "severity": self.severity.value, "message": self.message, "cis": self.cis}


#: Every finding code with its usual severity and meaning.
CODES: Mapping[str, tuple[Severity, str]] = {
    "missing": (Severity.ERROR, "A required file is absent (info for optional items)."),
    "unreadable": (Severity.ERROR, "The file exists but cannot be read (permissions, I/O error)."),
    "not-pem": (Severity.ERROR, "The file holds no PEM data at all (garbage)."),
    "truncated-pem": (Severity.ERROR, "A PEM block is cut short: BEGIN without END."),
    "wrong-pem-type": (Severity.ERROR, "The PEM block is of another type (a key where a certificate should be)."),
    "bad-base64": (Severity.ERROR, "A PEM body or kubeconfig field is not valid base64."),
    "bad-certificate": (Severity.ERROR, "The certificate's DER cannot be parsed."),
    "bad-key": (Severity.ERROR, "The private or public key cannot be parsed."),
    "encrypted-key": (Severity.ERROR, "The private key is encrypted; kubeadm keys never are."),
    "too-large": (Severity.ERROR, "The file is far larger than any certificate, key or kubeconfig."),
    "invalid-kubeconfig": (Severity.ERROR, "The kubeconfig is not YAML or lacks its context, cluster or user."),
    "no-client-certificate": (Severity.ERROR, "The kubeconfig's user has no client certificate or key."),
    "expired": (Severity.ERROR, "NotAfter has passed."),
    "expiring": (Severity.WARNING, "NotAfter is within the warning threshold."),
    "not-yet-valid": (Severity.ERROR, "NotBefore is in the future."),
    "wrong-signer": (Severity.ERROR, "Not signed by the CA the catalog names."),
    "signer-unavailable": (Severity.INFO, "The signing CA is missing or unusable, so the signature was not checked."),
    "key-missing": (Severity.ERROR, "The certificate's private key file is absent."),
    "key-mismatch": (Severity.ERROR, "The private key does not belong to the certificate."),
    "not-a-ca": (Severity.ERROR, "A CA certificate without CA:TRUE basic constraints."),
    "ca-not-self-signed": (Severity.INFO, "A CA that is not self-signed (an intermediate from an external PKI)."),
    "kubeconfig-ca-mismatch": (Severity.ERROR, "The kubeconfig's CA differs from ca.crt."),
    "kubeconfig-file-reference": (Severity.INFO, "The kubeconfig references files; kubepki followed them."),
    "kubelet-client-embedded": (
        Severity.WARNING,
        "kubelet.conf embeds a client certificate that never rotates (kubernetes/kubeadm#1753).",
    ),
    "ca-expires-before-leaf": (Severity.WARNING, "The signing CA expires before this certificate."),
    "missing-san": (Severity.ERROR, "A SAN kubeadm would put in is absent (node name, service VIP...)."),
    "missing-usage": (Severity.ERROR, "A key usage or extended key usage kubeadm sets is absent."),
    "unexpected-subject": (Severity.WARNING, "The CN is not the one kubeadm writes on this node."),
    "unexpected-organization": (Severity.INFO, "The O values differ from what this kubeadm version writes."),
    "external-ca": (Severity.INFO, "The CA's key is absent: its certificates are managed outside kubeadm."),
    "sa-key-mismatch": (Severity.ERROR, "sa.key and sa.pub are not one key pair."),
    "kubelet-rotation-disabled": (
        Severity.INFO,
        "The kubelet does not rotate its client certificate (rotateCertificates off); an error once it is within "
        "the warning window.",
    ),
    "kubelet-serving-pending": (
        Severity.WARNING,
        "serverTLSBootstrap is on but the kubelet has no serving certificate: its CSR waits for approval.",
    ),
    "kubelet-serving-self-signed": (
        Severity.WARNING,
        "The self-signed kubelet.crt expires and the kubelet never renews it (kubernetes/kubernetes#99418).",
    ),
    "bootstrap-kubeconfig-left": (
        Severity.WARNING,
        "bootstrap-kubelet.conf outlived the TLS bootstrap (kubeadm join removes it); it holds a bootstrap token.",
    ),
    "rotated-client-certificates": (
        Severity.INFO,
        "Earlier dated kubelet-client-*.pem files that kubelet-client-current.pem no longer names.",
    ),
    "kubelet-client-ca-mismatch": (
        Severity.ERROR,
        "The kubelet's clientCAFile does not hold the cluster CA: it refuses the apiserver's client certificate.",
    ),
    "cis-file-mode": (
        Severity.WARNING,
        "A file or directory the CIS Kubernetes Benchmark names is more permissive than it allows (an error for a "
        "private key others can read or write; info where kubeadm itself writes that mode and the file holds no "
        "secret).",
    ),
    "cis-file-owner": (Severity.WARNING, "A file or directory the CIS Kubernetes Benchmark names has another owner."),
    "cis-directory-writable": (
        Severity.WARNING,
        "A directory above a benchmarked file is group- or world-writable: anyone in it can replace the file.",
    ),
    "cis-flag": (
        Severity.WARNING,
        "A TLS flag of a static pod manifest or a kubelet setting is not as the CIS Kubernetes Benchmark asks "
        "(info where it is kubeadm's default and changing it needs more than the flag).",
    ),
}


class HasFindings:
    """Queries shared by everything that carries ``findings`` (node and cluster-object items)."""

    __slots__ = ()
    findings: tuple[Finding, ...]

    @property
    def worst(self) -> Severity | None:
        """The highest severity among the findings."""
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def has(self, code: str) -> bool:
        """True when a finding with ``code`` is present."""
        return any(f.code == code for f in self.findings)


def make(code: str, message: str, severity: Severity | None = None, *, cis: str | None = None) -> Finding:
    """A finding with ``code``'s usual severity unless ``severity`` is given (its message scrubbed of
    PEM text: it may quote an untrusted value), with the benchmark id ``cis`` when it answers one."""
    return Finding(code, severity if severity is not None else CODES[code][0], scrub(message), cis)


def status_for(findings: Sequence[Finding]) -> Status:
    """An existing item's status from its findings.

    Any error other than expiry makes it ``invalid``; else expiry makes it
    ``expired``; a missing referenced file makes it ``invalid``; warnings make it
    ``warning``; otherwise ``ok``. (An absent item is ``missing`` before any of this.)
    """
    codes = {f.code for f in findings}
    if any(f.severity.rank >= Severity.ERROR.rank and f.code not in ("expired", "missing") for f in findings):
        return Status.INVALID
    if "expired" in codes:
        return Status.EXPIRED
    if "missing" in codes:
        return Status.INVALID  # a file the item references is missing; the item itself exists
    if any(f.severity is Severity.WARNING for f in findings):
        return Status.WARNING
    return Status.OK


class _Checked(Protocol):
    @property
    def status(self) -> Status: ...

    @property
    def findings(self) -> tuple[Finding, ...]: ...


_Item = TypeVar("_Item", bound=_Checked)


def status_counts(items: Iterable[_Checked]) -> dict[str, int]:
    """How many ``items`` have each status (every status present, zeros included)."""
    out = {s.value: 0 for s in Status}
    for item in items:
        out[item.status.value] += 1
    return out


def worst_first(items: Iterable[_Item]) -> list[tuple[_Item, Finding]]:
    """Every finding with its item, worst severity first (stable otherwise)."""
    pairs = [(i, f) for i in items for f in i.findings]
    return sorted(pairs, key=lambda p: -p[1].severity.rank)


def outcome_for(items: Iterable[_Item], *, required: Callable[[_Item], bool] = lambda _: True) -> Outcome:
    """The worst of ``items``: failed when one is expired, invalid or required and missing,
    warning when one only warns, else ok."""
    outcome = Outcome.OK
    for item in items:
        if item.status in (Status.EXPIRED, Status.INVALID):
            return Outcome.FAILED
        if item.status is Status.MISSING:
            if required(item):
                return Outcome.FAILED
            if any(f.severity.rank >= Severity.WARNING.rank for f in item.findings):
                outcome = Outcome.WARNING  # an optional item whose absence means something (a pending CSR)
            continue
        if item.status is Status.WARNING:
            outcome = Outcome.WARNING
    return outcome
