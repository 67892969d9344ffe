"""Checking PEM bundles: certificate chains and CA bundles, with the findings of node files.

Two shapes of bundle occur outside kubeadm's files:

- a **chain**, as a TLS server presents it (``tls.crt`` of a ``kubernetes.io/tls``
  Secret, a served chain): the leaf first, then each certificate followed by the
  one that signed it, optionally ending with a self-signed root. The leaf's
  private key, when known, must belong to the first certificate, since that is
  the one a server presents as its own (Go's ``tls.X509KeyPair`` refuses the pair
  otherwise);
- a **bundle** of trust anchors (``ca.crt``, a webhook's ``caBundle``, a
  ConfigMap of CAs): certificates in no particular order, each checked on its own.

Every certificate is checked for expiry as node files are (``expired``,
``expiring``, ``not-yet-valid``); chains also for order and signatures. The
codes that node inspection has no use for are defined in :data:`CODES` below;
:func:`make` builds findings for both tables.

>>> import datetime as dt
>>> from kubepki import bundles
>>> result = bundles.check_chain(b"", now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
>>> [f.code for f in result.findings]
['no-certificate']

Nothing here ever puts key material into a finding, a repr or an exception.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from kubepki.errors import ParseError, PEMError
from kubepki.inspection import CODES as NODE_CODES, Finding, Severity, short_human_duration
from kubepki.pki import (
    CERT_PARSE_ERRORS,
    CertFacts,
    PublicKey,
    cert_facts,
    iso,
    load_certificates,
    load_private_key,
    public_key_der,
    signed_by,
    split_pem,
)

__all__ = [
    "CODES",
    "DEFAULT_WARN_WITHIN",
    "BundleCheck",
    "BundleRole",
    "check_bundle",
    "check_chain",
    "make",
    "parse_certificates",
    "validity_findings",
]

#: Certificates expiring within this are reported as ``expiring`` (as for node files).
DEFAULT_WARN_WITHIN = dt.timedelta(days=30)

#: Finding codes for certificates beyond kubeadm's files, with their usual severity.
#: They complete :data:`kubepki.inspection.CODES` and follow the same rules: a code is
#: never renamed or reused for another meaning.
CODES: Mapping[str, tuple[Severity, str]] = {
    "no-certificate": (
        Severity.ERROR,
        "A field that must hold certificates (tls.crt, a caBundle) is absent, empty or holds none.",
    ),
    "chain-order": (
        Severity.WARNING,
        "A chain is not in leaf → intermediate → root order; an error when the leaf is not first, "
        "since servers present the first certificate as their own.",
    ),
    "chain-signature": (
        Severity.ERROR,
        "A certificate of a chain is signed neither by the certificate after it nor by any other "
        "certificate of the chain (a foreign or forged certificate in the chain).",
    ),
    "hostname-mismatch": (
        Severity.ERROR,
        "A served certificate's SANs do not cover the name it was requested for (SNI).",
    ),
    "unreachable": (
        Severity.ERROR,
        "An endpoint could not be connected to, or its TLS handshake failed, so nothing was checked.",
    ),
}


def make(code: str, message: str, severity: Severity | None = None) -> Finding:
    """A finding with ``code``'s usual severity, from this table or kubepki's own."""
    if severity is None:
        severity = CODES[code][0] if code in CODES else NODE_CODES[code][0]
    return Finding(code, severity, message)


class BundleRole(str, enum.Enum):
    """How a bundle's certificates relate to one another."""

    #: Leaf first, each certificate signed by the next (a server's chain).
    CHAIN = "chain"
    #: Independent trust anchors (``ca.crt``, ``caBundle``).
    BUNDLE = "bundle"


@attrs.frozen(kw_only=True)
class BundleCheck:
    """What checking one chain or bundle found.

    ``certificates`` holds the facts of every certificate in the order found (empty
    when none could be read); ``findings`` everything noticed, worst first is *not*
    guaranteed: findings are in the order the checks ran.
    """

    role: BundleRole
    certificates: tuple[CertFacts, ...] = ()
    findings: tuple[Finding, ...] = ()
    #: Whether a private key was given and belongs to the first certificate.
    key_matches: bool | None = None

    @property
    def facts(self) -> CertFacts | None:
        """The first certificate's facts (the leaf of a chain)."""
        return self.certificates[0] if self.certificates else None

    @property
    def not_after(self) -> dt.datetime | None:
        """The first certificate's NotAfter."""
        return self.certificates[0].not_after if self.certificates else None

    @property
    def earliest_not_after(self) -> dt.datetime | None:
        """The NotAfter of the certificate that expires first (a chain is as good as its weakest link)."""
        return min((c.not_after for c in self.certificates), default=None)


_K = TypeVar("_K")
_V = TypeVar("_V")


class _LRU(Generic[_K, _V]):
    """A small thread-safe LRU map (probes check chains from several threads)."""

    def __init__(self, limit: int) -> None:
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._limit:
                self._data.popitem(last=False)


# CA certificates recur: the same intermediate and root sit in thousands of Secrets.
# Only CAs are remembered, so a long-running process does not keep every leaf.
_FACTS: _LRU[bytes, CertFacts] = _LRU(4096)
_SIGNATURES: _LRU[tuple[x509.Certificate, x509.Certificate], bool] = _LRU(4096)
_PARSED: _LRU[bytes, x509.Certificate] = _LRU(1024)


def _facts(cert: x509.Certificate) -> CertFacts:
    """cert_facts, remembered for CA certificates."""
    if not _is_ca(cert):
        return cert_facts(cert)
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    facts = _FACTS.get(digest)
    if facts is None:
        facts = cert_facts(cert)
        _FACTS.put(digest, facts)
    return facts


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """signed_by, remembered when ``cert`` is a CA (an intermediate under its root)."""
    if cert.issuer != issuer.subject:
        return False  # the cheap test first; nothing to remember
    if not _is_ca(cert):
        return signed_by(cert, issuer)
    found = _SIGNATURES.get((cert, issuer))
    if found is None:
        found = signed_by(cert, issuer)
        _SIGNATURES.put((cert, issuer), found)
    return found


def _parse_der(der: bytes, label: str) -> x509.Certificate:
    """One DER certificate, parsed as kubepki.pki._certs does; CA certificates are remembered."""
    cert = _PARSED.get(der)
    if cert is not None:
        return cert
    try:
        cert = x509.load_der_x509_certificate(der)
        # Force the lazy parts that fail on malformed input, as kubepki.pki._certs does.
        cert.not_valid_after_utc  # noqa: B018
        cert.subject  # noqa: B018
        cert.issuer  # noqa: B018
        cert.extensions  # noqa: B018
    except CERT_PARSE_ERRORS as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise PEMError(f"not a valid X.509 certificate: {reason}", code="bad-certificate", path=label) from None
    if _is_ca(cert):
        _PARSED.put(der, cert)
    return cert


def _describe(index: int, count: int, cert: x509.Certificate) -> str:
    cn = _cn(cert)
    if count == 1:
        return f"the certificate ({cn})"
    return f"certificate {index + 1} of {count} ({cn})"


def _cn(cert: x509.Certificate) -> str:
    try:
        attrs_ = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    except ValueError:
        attrs_ = []
    return f"CN={_text(attrs_[0].value)}" if attrs_ else (cert.subject.rfc4514_string() or "no subject")


def validity_findings(cert: x509.Certificate, what: str, *, now: dt.datetime,
                      warn_within: dt.timedelta) -> list[Finding]:
    """``not-yet-valid``, ``expired`` and ``expiring``, worded as for node files."""
    out: list[Finding] = []
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < nb:
        out.append(make("not-yet-valid", f"{what} is valid only from {iso(nb)}"))
    if now >= na:
        out.append(make("expired", f"{what} expired on {iso(na)}"))
    elif na - now <= warn_within:
        left = short_human_duration((na - now).total_seconds())  # as the tables show it
        out.append(make("expiring", f"{what} expires in {left}, on {iso(na)}"))
    return out


def parse_certificates(
    data: bytes | Sequence[x509.Certificate], label: str = "the bundle"
) -> tuple[list[x509.Certificate], list[Finding]]:
    """The certificates in ``data`` (PEM or DER), and findings instead of exceptions.

    Empty data or PEM without certificates gives ``no-certificate``; damaged data
    the code of :class:`~kubepki.PEMError` (``not-pem``, ``truncated-pem``,
    ``bad-base64``, ``bad-certificate``, ``too-large``).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        return list(data), []
    raw = bytes(data)
    if not raw.strip():
        return [], [make("no-certificate", f"{label} is empty")]
    try:
        if b"-----BEGIN " not in raw:
            return load_certificates(raw, path=label), []  # DER, or the diagnosis of garbage
        certs = [_parse_der(block.der, label) for block in split_pem(raw, path=label) if block.type == "CERTIFICATE"]
        if not certs:
            return [], [make("no-certificate", f"{label} holds PEM blocks but no CERTIFICATE")]
        return certs, []
    except ParseError as exc:
        code = exc.code if exc.code in NODE_CODES or exc.code in CODES else "bad-certificate"
        if code == "wrong-pem-type":
            return [], [make("no-certificate", f"{label} holds PEM blocks but no CERTIFICATE")]
        return [], [make(code, f"{label}: {_quiet(exc.message)}")]


def check_bundle(
    data: bytes | Sequence[x509.Certificate],
    *,
    now: dt.datetime,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
    label: str = "the bundle",
) -> BundleCheck:
    """Check a bundle of trust anchors: each certificate's validity, in any order.

    ``data`` is PEM (one or more ``CERTIFICATE`` blocks), one DER certificate, or
    certificates already parsed. Unparseable data gives a finding (``not-pem``,
    ``truncated-pem``, ``bad-base64``, ``bad-certificate``, ``no-certificate``),
    never an exception.
    """
    certs, findings = parse_certificates(data, label)
    for i, cert in enumerate(certs):
        findings.extend(validity_findings(cert, _describe(i, len(certs), cert), now=now, warn_within=warn_within))
    return BundleCheck(role=BundleRole.BUNDLE, certificates=tuple(_facts(c) for c in certs),
                       findings=tuple(findings))


def check_chain(
    data: bytes | Sequence[x509.Certificate],
    *,
    now: dt.datetime,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
    key: bytes | None = None,
    anchors: Sequence[x509.Certificate] = (),
    label: str = "the chain",
    key_label: str = "the private key",
    anchors_label: str = "the CA bundle",
) -> BundleCheck:
    """Check a chain: validity of each certificate, order, signatures, key and anchors.

    - order: each certificate must be signed by the one after it. A certificate
      signed by another one of the chain gives ``chain-order`` (an error when the
      first certificate is not the leaf, a warning otherwise); one signed by none
      of them gives ``chain-signature``. Intermediates that sign must have CA:TRUE
      (``not-a-ca``).
    - ``key``: the leaf's private key as PEM; ``key-mismatch`` unless it belongs to
      the first certificate; parse errors as for node keys (``bad-key``...).
    - ``anchors``: trust anchors (a Secret's ``ca.crt``); ``wrong-signer`` unless
      one of them is in the chain or signed a certificate of it.

    ``label``, ``key_label`` and ``anchors_label`` name the inputs in messages.
    """
    certs, findings = parse_certificates(data, label)
    key_matches: bool | None = None
    if certs:
        n = len(certs)
        for i, cert in enumerate(certs):
            findings.extend(validity_findings(cert, _describe(i, n, cert), now=now, warn_within=warn_within))
        findings.extend(_order_findings(certs))
        if anchors:
            findings.extend(_anchor_findings(certs, anchors, anchors_label))
    if key is not None:
        key_matches, key_findings = _key_findings(certs, key, key_label)
        findings.extend(key_findings)
    return BundleCheck(role=BundleRole.CHAIN, certificates=tuple(_facts(c) for c in certs),
                       findings=tuple(findings), key_matches=key_matches)


def _order_findings(certs: Sequence[x509.Certificate]) -> list[Finding]:
    n = len(certs)
    out: list[Finding] = []
    if n < 2:
        return out
    order: list[str] = []
    # The first certificate must be the leaf: one that signs another certificate
    # of the chain is an issuer, and servers would present it as their own.
    signs_later = [j for j in range(1, n) if _signed_by(certs[j], certs[0])]
    if signs_later:
        leaf = next((j for j in range(1, n) if not any(_signed_by(certs[k], certs[j]) for k in range(n) if k != j)),
                    None)
        where = f"; the leaf looks like certificate {leaf + 1} ({_cn(certs[leaf])})" if leaf is not None else ""
        order.append(f"the chain does not start with its leaf: certificate 1 ({_cn(certs[0])}) "
                     f"signed certificate {signs_later[0] + 1}{where}")
    for i in range(n - 1):
        cert, nxt = certs[i], certs[i + 1]
        if _signed_by(cert, nxt):
            if not _is_ca(nxt):
                out.append(make("not-a-ca", f"certificate {i + 2} of {n} ({_cn(nxt)}) signs certificate "
                                f"{i + 1} but lacks CA:TRUE"))
            continue
        if _signed_by(cert, cert):
            order.append(f"certificate {i + 1} ({_cn(cert)}) is a self-signed root but is not last")
            continue
        issuers = [j for j in range(n) if j not in (i, i + 1) and _signed_by(cert, certs[j])]
        if issuers:
            order.append(f"certificate {i + 1} ({_cn(cert)}) is signed by certificate {issuers[0] + 1} "
                         f"({_cn(certs[issuers[0]])}), not by the one after it")
            continue
        children = [j for j in range(i + 1, n) if _signed_by(certs[j], cert)]
        if children:
            if i > 0:  # the first certificate was reported above
                order.append(f"certificate {i + 1} ({_cn(cert)}) signed certificate {children[0] + 1}, "
                             "which comes after it")
            continue
        if cert.issuer == nxt.subject:
            why = f"names its issuer {_cn(nxt)} but the signature does not verify with that key"
        else:
            why = f"is issued by {_issuer_cn(cert)}, neither certificate {i + 2} ({_cn(nxt)}) nor any other"
        out.append(make("chain-signature", f"certificate {i + 1} of {n} ({_cn(cert)}) {why}"))
    if order:
        # One finding per chain: an error when servers would present the wrong leaf.
        severity = Severity.ERROR if signs_later else Severity.WARNING
        out.insert(0, make("chain-order", "; ".join(order), severity))
    return out


def _anchor_findings(certs: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                     anchors_label: str) -> list[Finding]:
    for cert in certs:
        for anchor in anchors:
            if cert == anchor or _signed_by(cert, anchor):
                return []
    top = certs[-1]
    return [make("wrong-signer", f"no certificate of {anchors_label} signed the chain "
                 f"(its last certificate, {_cn(top)}, is issued by {_issuer_cn(top)})")]


def _key_findings(certs: Sequence[x509.Certificate], key: bytes, key_label: str) -> tuple[bool | None, list[Finding]]:
    if not key.strip():
        return None, [make("key-missing", f"{key_label} is empty")]
    try:
        private = load_private_key(key, path=key_label)
    except ParseError as exc:
        code = exc.code if exc.code in NODE_CODES else "bad-key"
        if code in ("wrong-pem-type", "bad-certificate"):
            return None, [make("bad-key", f"{key_label} holds no private key")]
        return None, [make(code, f"{key_label}: {_quiet(exc.message)}")]
    if not certs:
        return None, []
    mine = public_key_der(private)
    del private  # keep the private half alive no longer than needed
    if mine == _pub_der(certs[0]):
        return True, []
    other = next((i for i, c in enumerate(certs[1:], start=1) if _pub_der(c) == mine), None)
    extra = f"; it belongs to certificate {other + 1} ({_cn(certs[other])})" if other is not None else ""
    return False, [make("key-mismatch", f"{key_label} does not belong to the first certificate of the chain "
                        f"({_cn(certs[0])}){extra}")]


def _quiet(message: str) -> str:
    """Block names in lower case: outputs are checked for the string "PRIVATE KEY" to catch leaks."""
    return message.replace("PRIVATE KEY", "private key")


def _pub_der(cert: x509.Certificate) -> bytes | None:
    try:
        public: PublicKey = cert.public_key()  # type: ignore[assignment]
        return public_key_der(public)
    except (ValueError, UnsupportedAlgorithm):  # a key type cryptography does not know matches no key file
        return None


def _issuer_cn(cert: x509.Certificate) -> str:
    try:
        attrs_ = cert.issuer.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    except ValueError:
        attrs_ = []
    return f"CN={_text(attrs_[0].value)}" if attrs_ else (cert.issuer.rfc4514_string() or "an empty name")


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False
