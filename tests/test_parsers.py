"""Parsers of untrusted bytes: a result or a typed kubepki error, never anything else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kubepki.errors import ConfigError, KubeconfigError, KubepkiError, ManifestError, ParseError, PEMError
from kubepki.node._kubeadm_config import parse_duration, parse_kubeadm_config
from kubepki.node._manifests import parse_manifest
from kubepki.pki import _certs as pki
from kubepki.pki._kubeconfig import parse_kubeconfig
from tests.kubeadm_trees import FIXTURES

SINGLE = FIXTURES / "single" / "root" / "etc" / "kubernetes"
CERT = (SINGLE / "pki/apiserver.crt").read_bytes()
KEY = (SINGLE / "pki/apiserver.key").read_bytes()
KUBECONFIG = (SINGLE / "admin.conf").read_bytes()
MANIFEST = (FIXTURES / "single-full/root/etc/kubernetes/manifests/kube-apiserver.yaml").read_bytes()
CONFIG = (FIXTURES / "single/kubeadm-config.yaml").read_bytes()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, byte flips, concatenations and junk around a real file."""
    n = len(seed)
    return st.one_of(
        st.integers(0, n).map(lambda i: seed[:i]),
        st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, 255)).map(
            lambda t: seed[: t[0]] + bytes([t[1]]) + seed[t[0] + 1 :]
        ),
        st.binary(max_size=64).map(lambda junk: junk + seed),
        st.binary(max_size=64).map(lambda junk: seed + junk),
        st.binary(max_size=2048),
        st.just(seed + seed),
    )


@FAST
@given(_mutations(CERT))
def test_certificate_parser_never_raises_foreign_errors(data: bytes) -> None:
    """load_certificate/load_certificates: a certificate or PEMError."""
    for fn in (pki.load_certificate, pki.load_certificates):
        try:
            fn(data)
        except PEMError:
            pass


@FAST
@given(_mutations(KEY))
def test_key_parser_never_raises_foreign_errors(data: bytes) -> None:
    """load_private_key: a key or PEMError."""
    try:
        pki.load_private_key(data)
    except PEMError:
        pass


@FAST
@given(_mutations(KUBECONFIG))
def test_kubeconfig_parser_never_raises_foreign_errors(data: bytes) -> None:
    """parse_kubeconfig: a Kubeconfig or KubeconfigError."""
    try:
        parse_kubeconfig(data, path="/etc/kubernetes/admin.conf")
    except KubeconfigError:
        pass


@FAST
@given(_mutations(MANIFEST))
def test_manifest_parser_never_raises_foreign_errors(data: bytes) -> None:
    """parse_manifest: a manifest or ManifestError."""
    try:
        parse_manifest(data)
    except ManifestError:
        pass


@FAST
@given(_mutations(CONFIG))
def test_kubeadm_config_parser_never_raises_foreign_errors(data: bytes) -> None:
    """parse_kubeadm_config: a config or ConfigError."""
    try:
        parse_kubeadm_config(data)
    except ConfigError:
        pass


@FAST
@given(st.text(max_size=30))
def test_duration_parser(text: str) -> None:
    """parse_duration: a non-negative timedelta or ConfigError."""
    try:
        value = parse_duration(text)
    except ConfigError:
        return
    assert value >= dt.timedelta(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8760h0m0s", dt.timedelta(days=365)), ("720h", dt.timedelta(days=30)), ("1m", dt.timedelta(minutes=1)),
     ("30d", dt.timedelta(days=30)), ("1h30m", dt.timedelta(minutes=90))],
)
def test_duration_values(text: str, expected: dt.timedelta) -> None:
    """Go durations and day counts parse to the right value."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "not-pem"),
        (b"hello world", "not-pem"),
        (CERT[: len(CERT) // 2], "truncated-pem"),
        (KEY, "wrong-pem-type"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "bad-base64"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "bad-certificate"),
        (b"\x30\x03\x02\x01\x00", "bad-certificate"),
        (b"x" * (pki.MAX_PEM_BYTES + 1), "too-large"),
    ],
)
def test_certificate_errors_carry_codes(data: bytes, code: str) -> None:
    """Each kind of damage has its own code, used as the finding code."""
    with pytest.raises(PEMError) as info:
        pki.load_certificate(data, path="/x.crt")
    assert info.value.code == code
    assert info.value.path == "/x.crt"


def test_encrypted_key_is_refused() -> None:
    """Encrypted keys give a PEMError with code encrypted-key."""
    from cryptography.hazmat.primitives import serialization

    key = pki.load_private_key(KEY)
    enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(PEMError) as info:
        pki.load_private_key(enc)
    assert info.value.code == "encrypted-key"


@pytest.mark.parametrize(
    "doc",
    [
        b"a: &a [1]\nb: &b [*a, *a]\nc: &c [*b, *b]\n",  # alias expansion (billion laughs)
        b"- !!python/object/apply:os.system ['true']\n",  # unsafe tags
        b"{" * 10000,
        b"apiVersion: v1\nkind: Config\nusers: 3\n",
        b"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: []\n",
    ],
)
def test_hostile_kubeconfigs(doc: bytes) -> None:
    """YAML bombs, unsafe tags, deep nesting and wrong shapes give KubeconfigError."""
    with pytest.raises(KubeconfigError):
        parse_kubeconfig(doc)


def test_kubeconfig_file_references_resolve_relative_to_it() -> None:
    """Relative references are taken from the kubeconfig's directory, as kubectl does."""
    doc = (b"apiVersion: v1\nkind: Config\ncurrent-context: c\n"
           b"contexts: [{name: c, context: {cluster: k, user: u}}]\n"
           b"clusters: [{name: k, cluster: {server: 'https://x', certificate-authority: pki/ca.crt}}]\n"
           b"users: [{name: u, user: {client-certificate: /abs/c.pem, client-key: c.key}}]\n")
    kc = parse_kubeconfig(doc, path="/etc/kubernetes/admin.conf")
    assert str(kc.ca.file) == "/etc/kubernetes/pki/ca.crt"  # type: ignore[union-attr]
    assert str(kc.client_certificate.file) == "/abs/c.pem"  # type: ignore[union-attr]
    assert str(kc.client_key.file) == "/etc/kubernetes/c.key"  # type: ignore[union-attr]


def test_error_hierarchy() -> None:
    """Parse errors are ParseError/ValueError and KubepkiError, with context attributes."""
    for cls in (PEMError, KubeconfigError, ManifestError):
        assert issubclass(cls, ParseError) and issubclass(cls, ValueError)
        assert issubclass(cls, KubepkiError)
    err = PEMError("boom", path=Path("/a"), name="ca")
    assert (err.path, err.name, str(err)) == ("/a", "ca", "boom")


def test_non_positive_serial_is_refused_like_go_does() -> None:
    """A certificate with a negative serial is bad-certificate (Go >= 1.23 refuses it), not a warning."""
    import datetime as dt

    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from kubepki.testing import key_pool

    key = key_pool("ECDSA-P256").take(1)[0]
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "neg")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    good = (cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(5).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    # Flip the serial's sign bit: the INTEGER 5 (02 01 05) becomes -123 (02 01 85).
    der[der.index(b"\x02\x01\x05") + 2] = 0x85
    with pytest.raises(PEMError) as info:
        pki.load_certificate(bytes(der))
    assert info.value.code == "bad-certificate"
    assert "serial" in str(info.value)


@pytest.mark.parametrize(("text", "kept"), [
    ("-----BEGIN RSA PRIVATE KEY-----", "[PEM begin rsa private key]"),
    ("/-----BEGIN PRIVATE KEY-----etc/kubernetes/admin.conf", "/[PEM begin private key]etc/kubernetes/admin.conf"),
    ("x PRIVATE KEY y", "x private key y"),
    ("/etc/kubernetes/pki/ca.key is not a key", "/etc/kubernetes/pki/ca.key is not a key"),  # negative control
])
def test_errors_never_carry_pem_armour(text: str, kept: str) -> None:
    """A KubepkiError's message is scrubbed of PEM armour (it may quote untrusted values); plain text stays."""
    from kubepki.errors import ParseError, scrub

    assert scrub(text) == kept
    assert str(ParseError(f"bad: {text}")) == f"bad: {kept}"
    assert "PRIVATE KEY-----" not in str(ParseError(text))


def test_a_dsa_key_is_an_unsupported_key_and_importing_never_warns() -> None:
    """DSA cannot serve Kubernetes' TLS (Go has no DSA): a DSA key is a bad-key PEMError, and loading
    kubepki's parsers never touches cryptography's deprecated DSA classes (a warning under -W error);
    negative control: an RSA key in the same form loads."""
    import subprocess
    import sys
    import warnings
    from typing import Any

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, rsa

    from kubepki.errors import PEMError
    from kubepki.pki import load_private_key

    def pem(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography >= 48 deprecates DSA itself
        dsa_pem = pem(dsa.generate_private_key(2048))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography >= 51 warns while parsing a DSA key itself
        with pytest.raises(PEMError) as err:
            load_private_key(dsa_pem)
    assert err.value.code == "bad-key"
    assert load_private_key(pem(rsa.generate_private_key(65537, 2048))).key_size == 2048
    code = "import kubepki.pki, kubepki.inspection, kubepki.renewal; kubepki.pki.load_private_key; kubepki.inspect"
    run = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
