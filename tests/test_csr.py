"""The approval criteria for kubelet-serving CSRs (issue 14, item 3), on CSR objects as the API returns them.

The same criteria against the real kube-apiserver and kube-controller-manager are in
tests/test_realcluster.py::test_csr_approval_against_the_real_apiserver.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings, strategies as st

from kubepki.objects import KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, review_csr

NODE = {"metadata": {"name": "w1"}, "status": {"addresses": [
    {"type": "InternalIP", "address": "10.0.0.21"}, {"type": "Hostname", "address": "w1"}]}}
SERVING = ["digital signature", "server auth"]
_EC = ec.generate_private_key(ec.SECP256R1())
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _request(*, cn: str = "system:node:w1", orgs: Sequence[str] = ("system:nodes",), dns: Sequence[str] = ("w1",),
             ips: Sequence[str] = ("10.0.0.21",), key: Any = _EC, emails: Sequence[str] = ()) -> str:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.RFC822Name(e) for e in emails]
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return base64.b64encode(pem).decode()


def _csr(request: str | None = None, *, username: str = "system:node:w1", groups: Sequence[str] = ("system:nodes",
         "system:authenticated"), usages: Sequence[str] = SERVING, signer: str = KUBELET_SERVING_SIGNER,
         conditions: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    return {"metadata": {"name": "csr-1", "resourceVersion": "7", "creationTimestamp": "2026-12-07T00:00:00Z"},
            "spec": {"request": _request() if request is None else request, "signerName": signer, "username": username,
                     "groups": list(groups), "usages": list(usages)},
            "status": {"conditions": list(conditions)}}


def test_a_safe_serving_csr_is_approvable() -> None:
    """The kubelet's own request: approvable, with its subject and SANs read back."""
    csr = review_csr(_csr(), NODE)
    assert csr.approvable and csr.refusals == ()
    assert (csr.common_name, csr.organizations, csr.dns_names, csr.ip_addresses) == (
        "system:node:w1", ("system:nodes",), ("w1",), ("10.0.0.21",))
    assert csr.node == "w1" and csr.state == "pending"


def test_rsa_keys_may_ask_for_key_encipherment_ecdsa_keys_may_not() -> None:
    """key encipherment is an RSA usage: allowed with an RSA key (control), refused with an ECDSA one."""
    assert review_csr(_csr(_request(key=_RSA), usages=[*SERVING, "key encipherment"]), NODE).approvable
    refused = review_csr(_csr(usages=[*SERVING, "key encipherment"]), NODE)
    assert not refused.approvable and "RSA keys only" in refused.refusals[0]


@pytest.mark.parametrize(("case", "kwargs", "reason"), [
    ("extra DNS SAN", {"request": _request(dns=("w1", "evil.example.com"))},
     "SAN evil.example.com is not an address of Node w1"),
    ("foreign IP SAN", {"request": _request(ips=("10.0.0.99",))}, "SAN 10.0.0.99 is not an address of Node w1"),
    ("e-mail SAN", {"request": _request(emails=("a@example.com",))}, "e-mail or URI SANs"),
    ("no SAN", {"request": _request(dns=(), ips=())}, "names no SAN"),
    ("admin as requestor", {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins"]},
     "requested by kubernetes-admin, not by a node"),
    ("another node's name", {"request": _request(cn="system:node:cp1")},
     "its CN 'system:node:cp1' is not its requestor 'system:node:w1'"),
    ("not in system:nodes", {"groups": ["system:authenticated"]}, "not in group system:nodes"),
    ("extra organisation", {"request": _request(orgs=("system:nodes", "system:masters"))}, "its O"),
    ("client auth", {"usages": [*SERVING, "client auth"]}, "usages client auth"),
    ("no server auth", {"usages": ["digital signature"]}, "lacks digital signature or server auth"),
    ("garbage request", {"request": base64.b64encode(b"not a csr").decode()}, "cannot be parsed"),
])
def test_hostile_serving_csrs_are_refused_with_the_reason(case: str, kwargs: dict[str, Any], reason: str) -> None:
    """Each criterion on its own refuses (control: the safe CSR above is approvable)."""
    request = kwargs.pop("request", None)
    csr = review_csr(_csr(request, **kwargs), NODE)
    assert not csr.approvable, case
    assert any(reason in r for r in csr.refusals), csr.refusals


def test_a_csr_of_an_unknown_node_is_refused() -> None:
    """No Node object by the requestor's name: nothing to check the SANs against, so refused."""
    csr = review_csr(_csr(), None)
    assert not csr.approvable and "there is no Node 'w1'" in csr.refusals


def test_client_csrs_and_decided_ones_are_not_approvable() -> None:
    """kubepki approves serving CSRs only, and only pending ones."""
    client = review_csr(_csr(signer=KUBELET_CLIENT_SIGNER), NODE)
    assert not client.approvable and "approves serving CSRs only" in client.refusals[0]
    approved = review_csr(_csr(conditions=[{"type": "Approved", "status": "True"}]), NODE)
    assert approved.state == "approved" and not approved.approvable
    denied = review_csr(_csr(conditions=[{"type": "Denied", "status": "True"}]), NODE)
    assert denied.state == "denied"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                   max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(st.sampled_from(["metadata", "spec", "status", "x"]), _json, max_size=4),
       node=st.none() | st.dictionaries(st.sampled_from(["status", "metadata"]), _json, max_size=2))
def test_any_object_is_reviewed_without_raising(obj: dict[str, Any], node: dict[str, Any] | None) -> None:
    """Whatever the API (or something in front of it) returns, review_csr gives a verdict; never approvable by
    accident: without a valid request it is refused."""
    csr = review_csr(obj, node)
    assert not csr.approvable


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_request_bytes_are_refused_not_raised(data: bytes) -> None:
    """Hostile bytes in spec.request: a refusal."""
    csr = review_csr(_csr(base64.b64encode(data).decode()), NODE)
    assert not csr.approvable and csr.refusals
