"""Chains and CA bundles: order, signatures, keys, anchors, validity and the new finding codes."""

from __future__ import annotations

import pytest
from cryptography import x509

from kubepki.inspection._findings import CODES as NODE_CODES, Severity
from kubepki.objects import _bundles as bundles
from kubepki.objects._bundles import BundleRole, check_bundle, check_chain, make, parse_certificates
from tests.test_cluster_objects import DAY, NOW, PKI, issue, key_pem, pem


@pytest.fixture(scope="module")
def pki() -> PKI:
    """A root, an intermediate and leaf keys."""
    return PKI("bundles")


@pytest.fixture(scope="module")
def other() -> PKI:
    """An unrelated PKI."""
    return PKI("bundles-other")


def codes(check: bundles.BundleCheck) -> list[str]:
    """The codes of a check's findings, in order."""
    return [f.code for f in check.findings]


def test_new_codes_are_described_and_distinct() -> None:
    """Every new code has a severity and a description, and none redefines a node code."""
    assert set(bundles.CODES) == {"no-certificate", "chain-order", "chain-signature", "hostname-mismatch",
                                  "unreachable"}
    assert not set(bundles.CODES) & set(NODE_CODES)
    for severity, text in bundles.CODES.values():
        assert isinstance(severity, Severity) and text.endswith(".")


def test_make_knows_both_tables() -> None:
    """make() takes new and node codes with their usual severities, or an explicit one."""
    assert make("chain-order", "x").severity is Severity.WARNING
    assert make("expired", "x").severity is Severity.ERROR
    assert make("chain-order", "x", Severity.ERROR).severity is Severity.ERROR
    with pytest.raises(KeyError):
        make("no-such-code", "x")


def test_good_chain_has_no_findings(pki: PKI) -> None:
    """Leaf, intermediate and root in order, with the leaf's key and the root as anchor: clean."""
    leaf = pki.leaf()
    result = check_chain(pem(leaf, pki.intermediate, pki.root), now=NOW, key=key_pem(pki.leaf_keys[0]),
                         anchors=[pki.root])
    assert result.findings == () and result.key_matches is True
    assert result.role is BundleRole.CHAIN
    assert [c.common_name for c in result.certificates] == ["web.example.test", "bundles-intermediate-ca",
                                                            "bundles-root-ca"]
    assert result.earliest_not_after == leaf.not_valid_after_utc == result.not_after


@pytest.mark.parametrize(("order", "severity"), [
    (("intermediate", "leaf"), Severity.ERROR),
    (("intermediate", "leaf", "root"), Severity.ERROR),
    (("leaf", "root", "intermediate"), Severity.WARNING),
    (("root", "leaf", "intermediate"), Severity.ERROR),
])
def test_out_of_order_chains(pki: PKI, order: tuple[str, ...], severity: Severity) -> None:
    """One chain-order finding per chain: an error when the leaf is not first."""
    certs = {"leaf": pki.leaf(), "intermediate": pki.intermediate, "root": pki.root}
    result = check_chain([certs[o] for o in order], now=NOW)
    found = [f for f in result.findings if f.code == "chain-order"]
    assert len(found) == 1 and found[0].severity is severity
    assert "chain-signature" not in codes(result)


def test_leaf_not_first_names_the_leaf(pki: PKI) -> None:
    """The message says where the leaf really is."""
    result = check_chain([pki.intermediate, pki.leaf("shop.example.test")], now=NOW)
    assert "certificate 2 (CN=shop.example.test)" in result.findings[0].message


def test_foreign_certificate_is_chain_signature(pki: PKI, other: PKI) -> None:
    """A certificate that nothing in the chain signed gives chain-signature."""
    result = check_chain([pki.leaf(), other.intermediate], now=NOW)
    assert codes(result) == ["chain-signature"]
    assert "issued by CN=bundles-intermediate-ca" in result.findings[0].message


def test_impostor_intermediate_fails_the_signature(pki: PKI) -> None:
    """An intermediate with the right name but another key: the signature does not verify."""
    impostor = issue("bundles-intermediate-ca", pki.leaf_keys[3], (pki.root, pki.root_key), ca=True)
    result = check_chain([pki.leaf(), impostor], now=NOW)
    assert codes(result) == ["chain-signature"]
    assert "does not verify" in result.findings[0].message


def test_signing_certificate_without_ca_flag(pki: PKI) -> None:
    """An issuer in the chain without CA:TRUE is not-a-ca."""
    not_ca = issue("bundles-intermediate-ca", pki.intermediate_key, (pki.root, pki.root_key), ca=False)
    result = check_chain([pki.leaf(), not_ca], now=NOW)
    assert codes(result) == ["not-a-ca"]


@pytest.mark.parametrize(("key", "code"), [
    ("right", None),
    ("other", "key-mismatch"),
    ("garbage", "not-pem"),
    ("truncated", "truncated-pem"),
    ("empty", "key-missing"),
    ("certificate", "bad-key"),
])
def test_private_key_checks(pki: PKI, key: str, code: str | None) -> None:
    """The key must parse and belong to the first certificate."""
    leaf = pki.leaf()
    right = key_pem(pki.leaf_keys[0])
    keys = {"right": right, "other": key_pem(pki.leaf_keys[1]), "garbage": b"not a key at all",
            "truncated": right[: len(right) // 2], "empty": b"", "certificate": pem(leaf)}
    result = check_chain([leaf], now=NOW, key=keys[key], key_label="tls.key")
    assert codes(result) == ([code] if code else [])
    for finding in result.findings:
        assert "PRIVATE KEY" not in finding.message and right.decode()[40:80] not in finding.message
        assert finding.message.startswith("tls.key")


def test_key_of_a_later_certificate_is_named(pki: PKI) -> None:
    """A key that belongs to certificate 2 says so (chain reversed)."""
    result = check_chain([pki.intermediate, pki.leaf()], now=NOW, key=key_pem(pki.leaf_keys[0]))
    mismatch = next(f for f in result.findings if f.code == "key-mismatch")
    assert "belongs to certificate 2" in mismatch.message
    assert result.key_matches is False


@pytest.mark.parametrize(("anchor", "found"), [("root", False), ("intermediate", False), ("other", True)])
def test_anchors(pki: PKI, other: PKI, anchor: str, found: bool) -> None:
    """The chain must reach one of the anchors (a root or the intermediate itself)."""
    anchors = {"root": pki.root, "intermediate": pki.intermediate, "other": other.root}
    result = check_chain([pki.leaf(), pki.intermediate], now=NOW, anchors=[anchors[anchor]],
                         anchors_label="ca.crt")
    assert ("wrong-signer" in codes(result)) is found
    if found:
        assert "ca.crt" in result.findings[0].message


def test_validity_of_every_certificate(pki: PKI) -> None:
    """An expiring intermediate behind a valid leaf is reported with its position."""
    short = issue("short-intermediate", pki.intermediate_key, (pki.root, pki.root_key), ca=True,
                  not_after=NOW + 5 * DAY)
    leaf = issue("web", pki.leaf_keys[0], (short, pki.intermediate_key))
    result = check_chain([leaf, short], now=NOW)
    assert codes(result) == ["expiring"]
    assert result.findings[0].message.startswith("certificate 2 of 2 (CN=short-intermediate)")
    assert result.earliest_not_after == short.not_valid_after_utc


def test_warn_within_zero_silences_expiring(pki: PKI) -> None:
    """warn_within=0 reports nothing for a certificate that is still valid."""
    leaf = pki.leaf(not_after=NOW + DAY)
    assert codes(check_chain([leaf], now=NOW, warn_within=0 * DAY)) == []
    assert codes(check_chain([leaf], now=NOW)) == ["expiring"]


def test_bundle_checks_each_certificate_in_any_order(pki: PKI, other: PKI) -> None:
    """A CA bundle is a set: no order findings, each certificate's validity."""
    expired = issue("old-ca", other.root_key, ca=True, not_before=NOW - 900 * DAY, not_after=NOW - DAY)
    result = check_bundle(pem(other.root, expired, pki.root), now=NOW, label="ca.crt")
    assert result.role is BundleRole.BUNDLE
    assert codes(result) == ["expired"]
    assert "certificate 2 of 3 (CN=old-ca)" in result.findings[0].message
    assert codes(check_bundle(pem(pki.intermediate, pki.root), now=NOW)) == []


@pytest.mark.parametrize(("data", "code"), [
    (b"", "no-certificate"),
    (b"   \n", "no-certificate"),
    (b"just text", "not-pem"),
    (b"-----BEGIN CERTIFICATE-----\nMIIB", "truncated-pem"),
    (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "bad-base64"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "bad-certificate"),
])
def test_damaged_bundles(data: bytes, code: str) -> None:
    """Damaged data gives one finding with the node inspection's code, never an exception."""
    result = check_bundle(data, now=NOW, label="caBundle")
    assert codes(result) == [code] and result.certificates == ()


def test_key_only_pem_is_no_certificate(pki: PKI) -> None:
    """A PEM that holds only a key is no-certificate."""
    certs, findings = parse_certificates(key_pem(pki.leaf_keys[0]), "ca.crt")
    assert certs == [] and [f.code for f in findings] == ["no-certificate"]
    assert "PRIVATE" not in findings[0].message or "no CERTIFICATE" in findings[0].message


def test_der_certificate_is_accepted(pki: PKI) -> None:
    """A single DER certificate parses like PEM."""
    from cryptography.hazmat.primitives import serialization

    certs, findings = parse_certificates(pki.root.public_bytes(serialization.Encoding.DER))
    assert findings == [] and certs == [pki.root]


def test_empty_chain_is_no_certificate() -> None:
    """An empty tls.crt is no-certificate, and an unusable key adds its own finding."""
    result = check_chain(b"", now=NOW, key=b"junk", label="tls.crt")
    assert codes(result) == ["no-certificate", "not-pem"]
    assert result.facts is None and result.earliest_not_after is None


def test_parsed_certificates_are_shared(pki: PKI) -> None:
    """The same PEM block parses to the same object (intermediates recur across Secrets)."""
    first, _ = parse_certificates(pem(pki.leaf(), pki.intermediate))
    second, _ = parse_certificates(pem(pki.leaf(), pki.intermediate))
    assert first[1] is second[1]
    assert isinstance(first[0], x509.Certificate)
