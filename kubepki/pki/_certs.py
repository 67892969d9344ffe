"""Reading certificates and keys from untrusted bytes, and the facts kubepki reports.

Everything here takes bytes that may be anything (a truncated PEM, a key where a
certificate should be, a huge file) and either returns parsed objects or raises
:class:`~kubepki.PEMError`; no other exception escapes.
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as dt
import hashlib
import ipaddress
import re
import warnings
from collections.abc import Iterator, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubepki._clock import iso
from kubepki.errors import PEMError

__all__ = [
    "CERT_PARSE_ERRORS",
    "KEY_ALGORITHMS",
    "KEY_USAGE_NAMES",
    "MAX_PEM_BYTES",
    "CertFacts",
    "PemBlock",
    "PrivateKey",
    "PublicKey",
    "cert_facts",
    "is_ip",
    "iso",
    "key_algorithm",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "load_public_key",
    "public_key_der",
    "signed_by",
    "split_pem",
]

#: Files larger than this are refused before parsing (real ones are a few KiB).
MAX_PEM_BYTES = 1 << 20

#: What cryptography raises for a malformed certificate when its lazy parts are read: ValueError and
#: TypeError mostly, UnsupportedAlgorithm for unknown key types, and KeyError for a name attribute
#: whose ASN.1 string tag it does not know (found by hypothesis: tag 83 in an issuer).
CERT_PARSE_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError, UnsupportedAlgorithm)
_FAST_PATH_ERRORS: tuple[type[Exception], ...] = (*CERT_PARSE_ERRORS, CryptographyDeprecationWarning)

# DSA is not among them: Go's crypto/tls, and so Kubernetes, cannot use a DSA key, and cryptography
# (>= 48) deprecates it, warning when its classes are touched. A DSA key is an unsupported-key finding.
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

_BEGIN_LINE_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----\r?\n")
_END_LINE_RE = re.compile(rb"-----END ([A-Z0-9 ]{1,64})-----")
_BEGIN = b"-----BEGIN "
_END = b"-----END "
_B64_RE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


@attrs.frozen
class PemBlock:
    """One PEM block: its type (``CERTIFICATE``, ``RSA PRIVATE KEY``...) and DER bytes."""

    type: str
    der: bytes = attrs.field(repr=False)
    #: The block as it stood in the file, headers included.
    text: bytes = attrs.field(repr=False)


def split_pem(data: bytes, *, path: str | None = None) -> list[PemBlock]:
    """Split ``data`` into PEM blocks.

    Raises :class:`PEMError` when the data is too large, holds no PEM block, has a
    BEGIN line without its END line (truncated), or a block's body is not base64.
    """
    if len(data) > MAX_PEM_BYTES:
        raise PEMError(f"file too large for a certificate or key ({len(data)} bytes)", code="too-large", path=path)
    blocks: list[PemBlock] = []
    for kind, body, end, text in _pem_matches(data):
        if kind != end:
            raise PEMError(
                f"PEM block BEGIN {kind.decode()} ends with END {end.decode()}", code="truncated-pem", path=path
            )
        lines = [ln for ln in body.splitlines() if ln.strip()]
        if any(b":" in ln for ln in lines):
            # RFC 1421 headers: only encrypted legacy keys use them.
            if any(ln.startswith(b"Proc-Type:") and b"ENCRYPTED" in ln for ln in lines):
                raise PEMError("encrypted private keys are not supported", code="encrypted-key", path=path)
            lines = [ln for ln in lines if b":" not in ln]
        body_bytes = b"".join(ln.strip() for ln in lines)
        try:
            if not _B64_RE.fullmatch(body_bytes):
                raise ValueError("non-base64 characters")
            der = binascii.a2b_base64(body_bytes)
        except (binascii.Error, ValueError):
            raise PEMError(f"PEM block {kind.decode()} is not valid base64", code="bad-base64", path=path) from None
        blocks.append(PemBlock(kind.decode(), der, text))
    begins = data.count(_BEGIN)
    if begins > len(blocks):
        raise PEMError("truncated PEM: a BEGIN line has no matching END line", code="truncated-pem", path=path)
    if not blocks:
        raise PEMError("no PEM data found", code="not-pem", path=path)
    return blocks


def _pem_matches(data: bytes) -> Iterator[tuple[bytes, bytes, bytes, bytes]]:
    """(BEGIN type, body, END type, whole block) of each block: a BEGIN line, then
    everything up to the first END line after it.

    A forward scan in linear time. A regular expression with a lazy body rescans
    the rest of the file from every BEGIN line that has no END after it: a 1 MiB
    file of BEGIN lines took minutes.
    """
    pos = 0
    while (begin := data.find(_BEGIN, pos)) >= 0:
        head = _BEGIN_LINE_RE.match(data, begin)
        if head is None:
            pos = begin + 1
            continue
        tail = None
        end = data.find(_END, head.end())
        while end >= 0 and (tail := _END_LINE_RE.match(data, end)) is None:
            end = data.find(_END, end + 1)
        if tail is None:
            return  # no END line after this BEGIN, so none after any later one either
        yield head.group(1), data[head.end():tail.start()], tail.group(1), data[begin:tail.end()]
        pos = tail.end()


def _first_der(data: bytes, types: Sequence[str], what: str, path: str | None) -> bytes:
    if _BEGIN not in data and data[:1] == b"\x30":
        return data  # raw DER
    blocks = split_pem(data, path=path)
    for block in blocks:
        if block.type in types:
            return block.der
    found = ", ".join(sorted({b.type for b in blocks}))
    raise PEMError(f"expected {what}, found {found}", code="wrong-pem-type", path=path)


def load_certificates(data: bytes, *, path: str | None = None) -> list[x509.Certificate]:
    """Every certificate in ``data`` (PEM bundle or one DER certificate), in file order."""
    if _BEGIN not in data and data[:1] == b"\x30":
        return [_parse_der_cert(data, path)]
    certs = [_parse_der_cert(b.der, path) for b in split_pem(data, path=path) if b.type == "CERTIFICATE"]
    if not certs:
        raise PEMError("expected a CERTIFICATE, found none", code="wrong-pem-type", path=path)
    return certs


def load_certificate(data: bytes, *, path: str | None = None) -> x509.Certificate:
    """The first certificate in ``data`` (PEM or DER)."""
    if data.startswith(b"-----BEGIN CERTIFICATE-----") and len(data) <= MAX_PEM_BYTES:
        # Fast path for well-formed files; anything odd gets the diagnosing parser.
        try:
            with _strict_serials():
                cert = _forced(x509.load_pem_x509_certificate(data))
        except _FAST_PATH_ERRORS:
            pass
        else:
            return cert
    return _parse_der_cert(_first_der(data, ("CERTIFICATE",), "a CERTIFICATE", path), path)


@contextlib.contextmanager
def _strict_serials() -> Iterator[None]:
    """Turn cryptography's warning about non-positive serials into an error.

    RFC 5280 forbids them, Go's crypto/x509 (and so every Kubernetes component
    since Go 1.23) refuses to parse them, and a future cryptography will too.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        yield


def _forced(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` with the lazy parts that fail on malformed input read now, not later."""
    cert.not_valid_after_utc  # noqa: B018
    cert.subject  # noqa: B018  (an unknown string tag in a name attribute: KeyError)
    cert.issuer  # noqa: B018
    cert.extensions  # noqa: B018
    cert.public_key()  # a damaged key (an EC point off its curve) fails here, not later
    return cert


def _parse_der_cert(der: bytes, path: str | None) -> x509.Certificate:
    try:
        with _strict_serials():
            cert = _forced(x509.load_der_x509_certificate(der))
    except CryptographyDeprecationWarning:
        raise PEMError(
            "not a valid X.509 certificate: its serial number is not positive (RFC 5280; Go and so "
            "Kubernetes refuse it)", code="bad-certificate", path=path,
        ) from None
    except CERT_PARSE_ERRORS as exc:
        raise PEMError(f"not a valid X.509 certificate: {_short(exc)}", code="bad-certificate", path=path) from None
    return cert


_KEY_TYPES = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


def load_private_key(data: bytes, *, path: str | None = None) -> PrivateKey:
    """The first private key in ``data``.

    RSA keys are loaded without the expensive consistency checks: kubepki only
    compares the public half with a certificate's, which needs none of them.
    """
    if b"ENCRYPTED PRIVATE KEY" in data:
        raise PEMError("encrypted private keys are not supported", code="encrypted-key", path=path)
    if data.startswith(b"-----BEGIN ") and b"PRIVATE KEY-----" in data[:40] and b"CERTIFICATE" not in data:
        try:
            fast = serialization.load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)
        except CERT_PARSE_ERRORS:
            pass
        else:
            if isinstance(fast, PrivateKey):
                return fast
    der = _first_der(data, _KEY_TYPES, "a PRIVATE KEY", path)
    block_type = next((t for t in _KEY_TYPES if f"BEGIN {t}-".encode() in data), "PRIVATE KEY")
    try:
        if block_type in ("RSA PRIVATE KEY", "EC PRIVATE KEY"):
            # Traditional OpenSSL formats have no DER loader of their own: re-wrap.
            pem = _to_pem(block_type, der)
            key = serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
        else:
            key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        raise PEMError("encrypted private keys are not supported", code="encrypted-key", path=path) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise PEMError(f"not a valid private key: {_short(exc)}", code="bad-key", path=path) from None
    if not isinstance(key, PrivateKey):
        raise PEMError(f"unsupported private key type {type(key).__name__}", code="bad-key", path=path)
    return key


def load_public_key(data: bytes, *, path: str | None = None) -> PublicKey:
    """The first public key (``PUBLIC KEY`` or ``RSA PUBLIC KEY``) in ``data``."""
    der = _first_der(data, ("PUBLIC KEY", "RSA PUBLIC KEY"), "a PUBLIC KEY", path)
    try:
        if b"BEGIN RSA PUBLIC KEY" in data:
            key = serialization.load_pem_public_key(_to_pem("RSA PUBLIC KEY", der))
        else:
            key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise PEMError(f"not a valid public key: {_short(exc)}", code="bad-key", path=path) from None
    if not isinstance(key, PublicKey):
        raise PEMError(f"unsupported public key type {type(key).__name__}", code="bad-key", path=path)
    return key


def _to_pem(kind: str, der: bytes) -> bytes:
    body = binascii.b2a_base64(der, newline=False)
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (kind.encode(), lines, kind.encode())


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def public_key_der(key: PublicKey | PrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo of a key, to compare keys by their public half."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


#: The key algorithms kubeadm's ``encryptionAlgorithm`` names, spelt as :func:`key_algorithm` spells them
#: (here, not in ``_issuing``: reading a kubeadm config needs the names, not the key generation).
KEY_ALGORITHMS: tuple[str, ...] = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")


def key_algorithm(key: PublicKey | PrivateKey) -> str:
    """kubeadm's ``encryptionAlgorithm`` spelling: ``RSA-2048``, ``ECDSA-P256``..."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": "ECDSA-P256", "secp384r1": "ECDSA-P384", "secp521r1": "ECDSA-P521"}.get(
            key.curve.name, f"ECDSA-{key.curve.name}"
        )
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "Ed448"
    # a certificate's own key may still be of another kind (DSA): named without touching its class
    name = type(key).__name__.removesuffix("PublicKey").removesuffix("PrivateKey")
    size = getattr(key, "key_size", None)
    return f"{name}-{size}" if size else name


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s name and key signed ``cert``."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def verify_signature(cert: x509.Certificate, public: PublicKey) -> bool:
    """True when ``public`` verifies ``cert``'s signature (names not compared)."""
    try:
        if isinstance(public, rsa.RSAPublicKey):
            algo = cert.signature_hash_algorithm
            if algo is None:
                return False
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algo)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            algo = cert.signature_hash_algorithm
            if algo is None:
                return False
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
        elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


#: Key usage names as ``cryptography``'s ``KeyUsage`` arguments, in bit order.
KEY_USAGE_NAMES: tuple[str, ...] = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}


@attrs.frozen(kw_only=True)
class CertFacts:
    """What kubepki reports about one certificate."""

    subject: str
    common_name: str | None
    organizations: tuple[str, ...]
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    key_usages: tuple[str, ...]
    extended_key_usages: tuple[str, ...]
    is_ca: bool
    key_algorithm: str
    signature_algorithm: str
    fingerprint_sha256: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (datetimes as ISO 8601 UTC)."""
        out = attrs.asdict(self, recurse=False)
        out["not_before"] = iso(self.not_before)
        out["not_after"] = iso(self.not_after)
        for key in ("organizations", "dns_names", "ip_addresses", "key_usages", "extended_key_usages"):
            out[key] = list(out[key])
        return out


def is_ip(text: str) -> bool:
    """True when ``text`` is an IPv4 or IPv6 address (SAN values, hosts)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def cert_facts(cert: x509.Certificate) -> CertFacts:
    """The facts kubepki reports about ``cert``."""
    ext = cert.extensions
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    kus: tuple[str, ...] = ()
    ekus: tuple[str, ...] = ()
    is_ca = False
    for e in ext:
        value = e.value
        if isinstance(value, x509.SubjectAlternativeName):
            dns = tuple(value.get_values_for_type(x509.DNSName))
            ips = tuple(str(i) for i in value.get_values_for_type(x509.IPAddress))
        elif isinstance(value, x509.KeyUsage):
            kus = tuple(n for n in KEY_USAGE_NAMES if _ku_bit(value, n))
        elif isinstance(value, x509.ExtendedKeyUsage):
            ekus = tuple(_EKU_NAMES.get(o, o.dotted_string) for o in value)
        elif isinstance(value, x509.BasicConstraints):
            is_ca = value.ca
    try:
        public = cert.public_key()
        algo = key_algorithm(public)  # type: ignore[arg-type]
    except (ValueError, UnsupportedAlgorithm):
        algo = "unknown"
    sig_oid = cert.signature_algorithm_oid
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        common_name=_attr(cert.subject, NameOID.COMMON_NAME),
        organizations=tuple(
            str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        ),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns,
        ip_addresses=ips,
        key_usages=kus,
        extended_key_usages=ekus,
        is_ca=is_ca,
        key_algorithm=algo,
        signature_algorithm=getattr(sig_oid, "_name", sig_oid.dotted_string),
        fingerprint_sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


def _ku_bit(value: x509.KeyUsage, name: str) -> bool:
    try:
        return bool(getattr(value, name))
    except ValueError:  # encipher_only/decipher_only raise unless key_agreement
        return False


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attrs_ = name.get_attributes_for_oid(oid)
    return str(attrs_[0].value) if attrs_ else None


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex."""
    return cert.fingerprint(hashes.SHA256()).hex()
