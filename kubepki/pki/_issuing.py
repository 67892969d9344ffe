"""Low-level X.509 issuing, done the way kubeadm does it.

Key generation by kubeadm's algorithm names, leaf certificates built from a
:class:`LeafTemplate` of attributes and signed by a :class:`Signer` (a CA whose
certificate and key were checked to belong together), certificate signing
requests, PEM encodings, and kubeconfig documents (building new ones, editing
the credentials of existing ones while keeping every other byte).

Nothing here touches a node or reads the clock: callers pass times in. The
layout follows kubeadm's ``pkiutil`` (``NewSignedCert``, ``EncodeCertPEM``,
``MarshalPrivateKeyToPEM``) and client-go's ``clientcmd`` writer, so what kubepki
writes reads like what kubeadm writes:

>>> import datetime as dt
>>> from kubepki import issuing
>>> ca_key = issuing.generate_key("ECDSA-P256")
>>> ca = issuing.self_signed_ca("demo-ca", ca_key, not_before=dt.datetime(2026, 1, 1,
...     tzinfo=dt.timezone.utc), validity=dt.timedelta(days=3650))
>>> signer = issuing.Signer(name="ca", certificate=ca, key=ca_key)
>>> leaf_key = issuing.generate_key("ECDSA-P256")
>>> cert = issuing.sign_leaf(
...     issuing.LeafTemplate(common_name="front-proxy-client", extended_key_usages=("clientAuth",)),
...     leaf_key.public_key(), signer,
...     not_before=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
...     not_after=dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
>>> issuing.LeafTemplate.from_certificate(cert).extended_key_usages
('clientAuth',)
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubepki.errors import ConfigError, KubeconfigError, ParseError, SignerError
from kubepki.pki._certs import KEY_ALGORITHMS, KEY_USAGE_NAMES, PrivateKey, PublicKey, key_algorithm, public_key_der
from kubepki.pki._kubeconfig import Kubeconfig
from kubepki.pki._yaml import load_one

__all__ = [
    "BACKDATE",
    "DEFAULT_VALIDITY",
    "KEY_ALGORITHMS",
    "IssuableKey",
    "LeafTemplate",
    "Signer",
    "b64",
    "build_csr",
    "cert_to_pem",
    "check_key_algorithm",
    "csr_to_pem",
    "dump_kubeconfig",
    "edit_kubeconfig",
    "generate_key",
    "key_to_pem",
    "new_kubeconfig",
    "random_serial",
    "self_signed_ca",
    "sign_leaf",
]

#: kubeadm's ``encryptionAlgorithm`` spellings, the only ones kubepki generates.
#: kubeadm's ClusterConfiguration.encryptionAlgorithm values (v1beta4; RSA-2048 before it).
#: kubeadm's ``CertificateBackdate``: NotBefore is the start time minus this.
BACKDATE = dt.timedelta(minutes=5)
#: kubeadm's ``CertificateValidityPeriod`` (8760h).
DEFAULT_VALIDITY = dt.timedelta(days=365)

#: The private keys kubepki generates and signs with.
IssuableKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_CURVES: Mapping[str, type[ec.EllipticCurve]] = {
    "ECDSA-P256": ec.SECP256R1,
    "ECDSA-P384": ec.SECP384R1,
}

#: What kubeadm's ``NewSignedCert`` sets on every leaf.
KUBEADM_LEAF_KEY_USAGES: tuple[str, ...] = ("digital_signature", "key_encipherment")

_EKU_BY_NAME: Mapping[str, x509.ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}
_EKU_NAME = {oid: name for name, oid in _EKU_BY_NAME.items()}

# Go's encoding/asn1 writes a string as PrintableString when every byte allows it
# (asterisks included, for wildcard names), else as UTF8String.
_PRINTABLE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?*"
)


def check_key_algorithm(name: str) -> str:
    """``name`` when it is one of :data:`KEY_ALGORITHMS`; :class:`~kubepki.ConfigError` otherwise."""
    if name not in KEY_ALGORITHMS:
        raise ConfigError(
            f"unknown key algorithm {name!r} (use one of {', '.join(KEY_ALGORITHMS)})"
        )
    return name


def generate_key(algorithm: str) -> IssuableKey:
    """A new private key of kubeadm ``algorithm`` (``RSA-2048`` ... ``ECDSA-P384``).

    RSA keys use the public exponent 65537, as Go's ``rsa.GenerateKey``. The work
    happens in OpenSSL with the GIL released, so keys can be made in threads.
    """
    check_key_algorithm(algorithm)
    if algorithm.startswith("RSA-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))
    return ec.generate_private_key(_CURVES[algorithm]())


def key_to_pem(key: IssuableKey) -> bytes:
    """The key as kubeadm writes it: PKCS#1 ``RSA PRIVATE KEY`` or SEC1 ``EC PRIVATE KEY``."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """The certificate as one PEM block (64-column base64, as Go's ``pem.Encode``)."""
    return cert.public_bytes(serialization.Encoding.PEM)


def csr_to_pem(csr: x509.CertificateSigningRequest) -> bytes:
    """The CSR as one ``CERTIFICATE REQUEST`` PEM block."""
    return csr.public_bytes(serialization.Encoding.PEM)


def random_serial() -> int:
    """A serial number as kubeadm draws it: uniform in 1 … 2^63-1."""
    return secrets.randbelow((1 << 63) - 1) + 1


def _string_type(value: str) -> _ASN1Type:
    if value and all(ch in _PRINTABLE for ch in value):
        return _ASN1Type.PrintableString
    return _ASN1Type.UTF8String


@attrs.frozen(kw_only=True)
class LeafTemplate:
    """The attributes a leaf certificate carries, copied on renewal.

    These are exactly what kubeadm's ``certToConfig`` copies from an existing
    certificate (CN, O, DNS and IP SANs, extended key usages), plus the key
    usages, which kubeadm always sets to digitalSignature and keyEncipherment
    and kubepki copies. Order is kept: SANs are written DNS names first, then
    IPs, as Go's x509 package does.
    """

    common_name: str | None
    organizations: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    key_usages: tuple[str, ...] = KUBEADM_LEAF_KEY_USAGES
    #: ``serverAuth``, ``clientAuth``... or a dotted OID for others.
    extended_key_usages: tuple[str, ...] = ()

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> LeafTemplate:
        """The attributes of an existing certificate (a key usage extension absent: kubeadm's)."""
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        dns: tuple[str, ...] = ()
        ips: tuple[str, ...] = ()
        kus: tuple[str, ...] = KUBEADM_LEAF_KEY_USAGES
        ekus: tuple[str, ...] = ()
        for ext in cert.extensions:
            value = ext.value
            if isinstance(value, x509.SubjectAlternativeName):
                dns = tuple(value.get_values_for_type(x509.DNSName))
                ips = tuple(str(ip) for ip in value.get_values_for_type(x509.IPAddress))
            elif isinstance(value, x509.KeyUsage):
                kus = _key_usage_names(value)
            elif isinstance(value, x509.ExtendedKeyUsage):
                ekus = tuple(_EKU_NAME.get(oid, oid.dotted_string) for oid in value)
        return cls(
            common_name=str(cns[0].value) if cns else None,
            organizations=tuple(str(o.value) for o in orgs),
            dns_names=dns,
            ip_addresses=ips,
            key_usages=kus,
            extended_key_usages=ekus,
        )

    def subject(self) -> x509.Name:
        """The subject as Go's ``pkix.Name`` writes it: each O, then the CN, one per RDN."""
        attributes = [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, o, _string_type(o), _validate=False)
            for o in self.organizations
        ]
        if self.common_name:
            attributes.append(
                x509.NameAttribute(NameOID.COMMON_NAME, self.common_name,
                                   _string_type(self.common_name), _validate=False)
            )
        return x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes])

    def san(self) -> x509.SubjectAlternativeName | None:
        """The SAN extension value, or None when there are no names."""
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ip_addresses]
        return x509.SubjectAlternativeName(names) if names else None

    def differences(self, other: LeafTemplate) -> list[str]:
        """What differs from ``other``, in words (SANs and usages compared as sets)."""
        out: list[str] = []
        if self.common_name != other.common_name:
            out.append(f"CN {other.common_name!r}, expected {self.common_name!r}")
        if sorted(self.organizations) != sorted(other.organizations):
            out.append(f"O {list(other.organizations)}, expected {list(self.organizations)}")
        for label, mine, theirs in (
            ("DNS SANs", self.dns_names, other.dns_names),
            ("IP SANs", self.ip_addresses, other.ip_addresses),
            ("key usages", self.key_usages, other.key_usages),
            ("extended key usages", self.extended_key_usages, other.extended_key_usages),
        ):
            if set(mine) != set(theirs):
                out.append(f"{label} {sorted(theirs)}, expected {sorted(mine)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "common_name": self.common_name,
            "organizations": list(self.organizations),
            "dns_names": list(self.dns_names),
            "ip_addresses": list(self.ip_addresses),
            "key_usages": list(self.key_usages),
            "extended_key_usages": list(self.extended_key_usages),
        }


def _key_usage_names(value: x509.KeyUsage) -> tuple[str, ...]:
    out = []
    for name in KEY_USAGE_NAMES:
        try:
            if getattr(value, name):
                out.append(name)
        except ValueError:  # encipher_only/decipher_only without key_agreement
            continue
    return tuple(out)


def _key_usage(names: Sequence[str]) -> x509.KeyUsage:
    unknown = set(names) - set(KEY_USAGE_NAMES)
    if unknown:
        raise ConfigError(f"unknown key usage {sorted(unknown)}")
    flags = {name: name in names for name in KEY_USAGE_NAMES}
    return x509.KeyUsage(**flags)


def _eku_oid(name: str) -> x509.ObjectIdentifier:
    if name in _EKU_BY_NAME:
        return _EKU_BY_NAME[name]
    try:
        return x509.ObjectIdentifier(name)
    except ValueError:
        raise ConfigError(f"unknown extended key usage {name!r}") from None


@attrs.frozen(kw_only=True)
class Signer:
    """A CA that may sign: its catalog name, certificate and matching private key."""

    name: str
    certificate: x509.Certificate = attrs.field(repr=False)
    key: IssuableKey = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        if public_key_der(self.key) != public_key_der(_public(self.certificate)):
            raise SignerError(f"the {self.name} key does not match the {self.name} certificate",
                              name=self.name)

    @classmethod
    def from_key(cls, name: str, certificate: x509.Certificate, key: PrivateKey,
                 *, path: str | None = None) -> Signer:
        """A signer, or :class:`~kubepki.SignerError` when ``key`` cannot sign or does not match."""
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SignerError(f"the {name} key is {key_algorithm(key)}; kubepki signs with RSA "
                              "or ECDSA keys only", name=name, path=path)
        return cls(name=name, certificate=certificate, key=key)

    @property
    def not_after(self) -> dt.datetime:
        """The CA certificate's NotAfter."""
        return self.certificate.not_valid_after_utc

    def hash_algorithm(self) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
        """The signature hash Go's x509 picks for this key (SHA-256; SHA-384/512 on P-384/P-521)."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            if isinstance(self.key.curve, ec.SECP384R1):
                return hashes.SHA384()
            if isinstance(self.key.curve, ec.SECP521R1):
                return hashes.SHA512()
        return hashes.SHA256()


def _public(cert: x509.Certificate) -> PublicKey:
    return cert.public_key()  # type: ignore[return-value]


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def sign_leaf(
    template: LeafTemplate,
    public_key: PublicKey,
    signer: Signer,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    serial: int | None = None,
) -> x509.Certificate:
    """A leaf certificate for ``public_key`` with ``template``'s attributes, signed by ``signer``.

    Extensions in kubeadm's order and criticality: key usage (critical), extended
    key usage, basic constraints CA:FALSE (critical), the authority key
    identifier (the CA's subject key identifier, when it has one), SANs
    (critical only when the subject is empty, as Go does). Times are truncated to
    whole seconds.
    """
    if not_after <= not_before:
        raise ConfigError("a certificate's NotAfter must be after its NotBefore")
    subject = template.subject()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.certificate.subject)
        .public_key(public_key)
        .serial_number(serial if serial is not None else random_serial())
        .not_valid_before(_whole_seconds(not_before))
        .not_valid_after(_whole_seconds(not_after))
    )
    if template.key_usages:
        builder = builder.add_extension(_key_usage(template.key_usages), critical=True)
    if template.extended_key_usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([_eku_oid(e) for e in template.extended_key_usages]),
            critical=False,
        )
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    ski = _subject_key_id(signer.certificate)
    if ski is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(ski, None, None), critical=False
        )
    san = template.san()
    if san is not None:
        builder = builder.add_extension(san, critical=len(subject) == 0)
    return builder.sign(signer.key, signer.hash_algorithm())


def build_csr(template: LeafTemplate, key: IssuableKey) -> x509.CertificateSigningRequest:
    """A CSR for ``template``: subject and SANs as kubeadm's ``generate-csr``, plus the usages.

    kubeadm's CSRs request only the SANs; kubepki also requests the key usages
    and extended key usages, so a CA that copies requested extensions issues
    exactly what the catalog expects (``install_signed`` checks them anyway).
    """
    builder = x509.CertificateSigningRequestBuilder().subject_name(template.subject())
    san = template.san()
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    if template.key_usages:
        builder = builder.add_extension(_key_usage(template.key_usages), critical=True)
    if template.extended_key_usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([_eku_oid(e) for e in template.extended_key_usages]),
            critical=False,
        )
    hash_algorithm: hashes.SHA256 | hashes.SHA384 = hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        hash_algorithm = hashes.SHA384()
    return builder.sign(key, hash_algorithm)


def self_signed_ca(
    common_name: str,
    key: IssuableKey,
    *,
    not_before: dt.datetime,
    validity: dt.timedelta,
) -> x509.Certificate:
    """A CA certificate as kubeadm's ``NewSelfSignedCACert`` makes it (for tests and demos).

    Key usage digitalSignature, keyEncipherment and keyCertSign (critical),
    CA:TRUE (critical), a subject key identifier, and the CN as the only DNS SAN.
    """
    subject = LeafTemplate(common_name=common_name).subject()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(_whole_seconds(not_before))
        .not_valid_after(_whole_seconds(not_before + validity))
        .add_extension(_key_usage(("digital_signature", "key_encipherment", "key_cert_sign")),
                       critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _whole_seconds(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ConfigError("certificate times must be timezone-aware (UTC)")
    return when.astimezone(dt.timezone.utc).replace(microsecond=0)


def is_issuable(key: PrivateKey | PublicKey) -> bool:
    """True for RSA and ECDSA keys (the kinds kubepki generates and signs with)."""
    return not isinstance(
        key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey | ed448.Ed448PrivateKey
        | ed448.Ed448PublicKey
    ) and key_algorithm(key) in KEY_ALGORITHMS


# --------------------------------------------------------------------------------------
# Kubeconfigs


def b64(data: bytes) -> str:
    """Standard base64 without line breaks, as client-go writes ``*-data`` fields."""
    return base64.b64encode(data).decode("ascii")


def dump_kubeconfig(document: Mapping[str, Any], *, sort_keys: bool = False) -> bytes:
    """YAML text in client-go's layout (block style, unindented lists, long strings unwrapped)."""
    text = yaml.safe_dump(
        _plain(document), default_flow_style=False, sort_keys=sort_keys, allow_unicode=True
    )
    return text.encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def new_kubeconfig(
    *,
    cluster_name: str,
    server: str,
    ca_pem: bytes,
    user_name: str,
    cert_pem: bytes,
    key_pem: bytes,
) -> bytes:
    """A kubeconfig as kubeadm's ``CreateWithCerts`` writes it (one cluster, context, user)."""
    context = f"{user_name}@{cluster_name}"
    doc = {
        "apiVersion": "v1",
        "clusters": [{"cluster": {"certificate-authority-data": b64(ca_pem), "server": server},
                      "name": cluster_name}],
        "contexts": [{"context": {"cluster": cluster_name, "user": user_name}, "name": context}],
        "current-context": context,
        "kind": "Config",
        "users": [{"name": user_name,
                   "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
    }
    return dump_kubeconfig(doc, sort_keys=True)


def _entry(doc: Mapping[str, Any], section: str, name: str | None, key: str) -> dict[str, Any]:
    items = doc.get(section)
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
                return item[key]  # type: ignore[no-any-return]
    raise KubeconfigError(f"{section[:-1]} {name!r} not found")


def edit_kubeconfig(
    original: bytes,
    kubeconfig: Kubeconfig,
    *,
    user: Mapping[str, str | None] | None = None,
    cluster: Mapping[str, str | None] | None = None,
) -> bytes:
    """``original`` with fields of the current context's user and cluster set (None removes).

    Everything else is kept byte for byte: each change is made in the text when
    the old ``key: value`` line is unique, and the result is accepted only if it
    parses to exactly the edited document. Otherwise (folded values, duplicate
    values, added keys) the edited document is dumped in client-go's layout, as
    kubeadm would write it; comments are then lost.
    """
    doc: dict[str, Any] = copy.deepcopy(dict(kubeconfig.document))
    user_map = _entry(doc, "users", kubeconfig.user_name, "user")
    cluster_map = _entry(doc, "clusters", kubeconfig.cluster_name, "cluster")
    edits: list[tuple[dict[str, Any], str, str | None]] = []
    edits += [(user_map, k, v) for k, v in (user or {}).items()]
    edits += [(cluster_map, k, v) for k, v in (cluster or {}).items()]
    text: bytes | None = original
    for mapping, key, value in edits:
        old = mapping.get(key)
        if value is None:
            mapping.pop(key, None)
        else:
            mapping[key] = value
        if text is not None:
            text = _text_edit(text, key, old, value)
    if text is not None and _reads_back(text, doc):
        return text
    return dump_kubeconfig(doc)


def _reads_back(text: bytes, doc: Mapping[str, Any]) -> bool:
    """Whether ``text`` parses, as kubepki reads kubeconfigs (libyaml), to exactly ``doc``.

    Not ``yaml.safe_load``: the pure-Python parser took most of a renewal's own time.
    """
    try:
        return bool(load_one(text) == doc)
    except ParseError:
        return False


def _text_edit(text: bytes, key: str, old: Any, new: str | None) -> bytes | None:
    if old == new:
        return text
    if not isinstance(old, str) or not old:
        # A key being added has no line to edit: the caller dumps the document.
        return None if new is not None else text
    needle = f"{key}: {old}".encode()
    if text.count(needle) != 1 or text.count(old.encode()) != 1:
        return None
    if new is not None:
        return text.replace(needle, f"{key}: {new}".encode())
    # Removing a key: drop its whole line.
    start = text.index(needle)
    line_start = text.rfind(b"\n", 0, start) + 1
    line_end = text.find(b"\n", start)
    line_end = len(text) if line_end == -1 else line_end + 1
    if text[line_start:start].strip():
        return None
    return text[:line_start] + text[line_end:]


def rename_kubeconfig_fields(
    original: bytes,
    kubeconfig: Kubeconfig,
    *,
    user: Mapping[str, tuple[str, str]],
) -> bytes:
    """Replace user fields by others in place: ``{old_key: (new_key, new_value)}``.

    Used to point ``kubelet.conf`` at files: ``client-certificate-data`` becomes
    ``client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem`` on
    the same line. Falls back to a dump like :func:`edit_kubeconfig`.
    """
    doc: dict[str, Any] = copy.deepcopy(dict(kubeconfig.document))
    user_map = _entry(doc, "users", kubeconfig.user_name, "user")
    text: bytes | None = original
    for old_key, (new_key, new_value) in user.items():
        old_value = user_map.pop(old_key, None)
        user_map[new_key] = new_value
        if text is None:
            continue
        if not isinstance(old_value, str) or not old_value:
            text = None
            continue
        needle = f"{old_key}: {old_value}".encode()
        if text.count(needle) != 1:
            text = None
            continue
        text = text.replace(needle, f"{new_key}: {new_value}".encode())
    if text is not None and _reads_back(text, doc):
        return text
    return dump_kubeconfig(doc)
