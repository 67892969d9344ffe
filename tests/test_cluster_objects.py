"""Cluster objects from kubectl output: Secrets, ConfigMaps, webhooks, APIServices; JSON and YAML; streaming.

The first part of this module makes realistic inputs: real certificates (keys from
kubepki.testing's pool) in the shapes ``kubectl get ... -o json`` prints. The
other test modules and benchmarks/bench_secrets.py import these generators.
"""

from __future__ import annotations

import base64
import datetime as dt
import gc
import io
import json
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings, strategies as st

import kubepki
from kubepki import testing
from kubepki.cli import exit_status, json_document
from kubepki.errors import ConfigError, ParseError
from kubepki.inspection._findings import Status
from kubepki.objects import _objects as cluster_objects
from kubepki.objects._objects import ObjectItemKind, check_objects, iter_objects

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)

# --------------------------------------------------------------------------------------
# Generators (shared with the other test modules and the benchmark)

Key = testing.DemoKey


def issue(
    common_name: str,
    key: Key,
    signer: tuple[x509.Certificate, Key] | None = None,
    *,
    ca: bool = False,
    not_before: dt.datetime = NOW - 30 * DAY,
    not_after: dt.datetime = NOW + 60 * DAY,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    issuer_name: x509.Name | None = None,
    usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.SERVER_AUTH,),
) -> x509.Certificate:
    """A certificate for ``key``, signed by ``signer`` (self-signed when None)."""
    import ipaddress

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer = issuer_name or (signer[0].subject if signer else subject)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca and usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer[1] if signer else key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    """PEM of ``certs`` in the order given."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: Key) -> bytes:
    """The key as kubectl-created TLS Secrets hold it (PKCS#8 PEM)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class PKI:
    """A root CA, an intermediate CA and leaf keys, named after ``name``."""

    def __init__(self, name: str = "demo", algorithm: str = "ECDSA-P256") -> None:
        self.root_key, self.intermediate_key, *self.leaf_keys = testing.key_pool(algorithm).take(6)
        self.root = issue(f"{name}-root-ca", self.root_key, ca=True, not_before=NOW - 400 * DAY,
                          not_after=NOW + 3000 * DAY)
        self.intermediate = issue(f"{name}-intermediate-ca", self.intermediate_key, (self.root, self.root_key),
                                  ca=True, not_before=NOW - 300 * DAY, not_after=NOW + 1000 * DAY)

    def leaf(self, cn: str = "web.example.test", *, key: int = 0, **kw: Any) -> x509.Certificate:
        """A serving certificate for ``cn`` signed by the intermediate."""
        kw.setdefault("dns", [cn])
        return issue(cn, self.leaf_keys[key], (self.intermediate, self.intermediate_key), **kw)


def b64(data: bytes) -> str:
    """Base64 as the API server encodes Secret data."""
    return base64.b64encode(data).decode()


def _metadata(name: str, namespace: str | None) -> dict[str, Any]:
    uid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}/{name}"))
    meta: dict[str, Any] = {"creationTimestamp": "2026-11-01T10:00:00Z", "name": name, "resourceVersion": "4711",
                            "uid": uid}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def secret(name: str, data: Mapping[str, bytes | str], *, namespace: str = "default",
           type_: str = "Opaque") -> dict[str, Any]:
    """A Secret as kubectl prints it; str values are put in as given (to damage them)."""
    encoded = {k: v if isinstance(v, str) else b64(v) for k, v in data.items()}
    return {"apiVersion": "v1", "data": encoded, "kind": "Secret", "metadata": _metadata(name, namespace),
            "type": type_}


def tls_secret(name: str, chain: bytes, key: bytes, ca: bytes | None = None, *,
               namespace: str = "default") -> dict[str, Any]:
    """A kubernetes.io/tls Secret (cert-manager adds ca.crt)."""
    data: dict[str, bytes | str] = {"tls.crt": chain, "tls.key": key}
    if ca is not None:
        data["ca.crt"] = ca
    return secret(name, data, namespace=namespace, type_="kubernetes.io/tls")


def configmap(name: str, data: Mapping[str, str], *, namespace: str = "default") -> dict[str, Any]:
    """A ConfigMap (PEM as text in ``data``)."""
    return {"apiVersion": "v1", "data": dict(data), "kind": "ConfigMap", "metadata": _metadata(name, namespace)}


def webhook_configuration(kind: str, name: str, hooks: Mapping[str, bytes | None]) -> dict[str, Any]:
    """A Mutating/ValidatingWebhookConfiguration; a None bundle leaves caBundle out."""
    webhooks = []
    for hook, bundle in hooks.items():
        client: dict[str, Any] = {"service": {"name": name, "namespace": "webhooks", "path": "/hook", "port": 443}}
        if bundle is not None:
            client["caBundle"] = b64(bundle)
        webhooks.append({"admissionReviewVersions": ["v1"], "clientConfig": client, "failurePolicy": "Fail",
                         "name": hook, "sideEffects": "None", "timeoutSeconds": 10})
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": _metadata(name, None),
            "webhooks": webhooks}


def apiservice(name: str, bundle: bytes) -> dict[str, Any]:
    """An APIService backed by a service, with its caBundle."""
    version, _, group = name.partition(".")
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": _metadata(name, None),
            "spec": {"caBundle": b64(bundle), "group": group, "groupPriorityMinimum": 100,
                     "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                     "version": version, "versionPriority": 100}}


def kubectl_list(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``kubectl get ... -o json``'s List."""
    return {"apiVersion": "v1", "items": list(items), "kind": "List", "metadata": {"resourceVersion": ""}}


def write_json_list(out: IO[str], items: Iterable[Mapping[str, Any]]) -> None:
    """Write a List as kubectl does (4-space indent) without building it in memory."""
    out.write('{\n    "apiVersion": "v1",\n    "items": [')
    for i, item in enumerate(items):
        body = json.dumps(item, indent=4, sort_keys=True).replace("\n", "\n        ")
        out.write(("," if i else "") + "\n        " + body)
    out.write('\n    ],\n    "kind": "List",\n    "metadata": {\n        "resourceVersion": ""\n    }\n}\n')


def write_yaml_list(out: IO[str], items: Iterable[Mapping[str, Any]]) -> None:
    """Write a List as kubectl -o yaml does (items at column 0), item by item."""
    listed = list(items) if not isinstance(items, Iterator) else items
    out.write("apiVersion: v1\nitems:\n")
    empty = True
    for item in listed:
        empty = False
        out.write(yaml.safe_dump([item], default_flow_style=False, sort_keys=True, width=1 << 30))
    if empty:
        out.write("  []\n")  # kubectl: items: []
    out.write("kind: List\nmetadata:\n  resourceVersion: \"\"\n")


def many_tls_secrets(pki: PKI, count: int, *, namespaces: int = 50) -> Iterable[dict[str, Any]]:
    """``count`` distinct kubernetes.io/tls Secrets (leaf + intermediate, key, ca.crt)."""
    intermediate, ca = pem(pki.intermediate), pem(pki.root)
    signer = (pki.intermediate, pki.intermediate_key)
    for i in range(count):
        key = pki.leaf_keys[i % len(pki.leaf_keys)]
        leaf = issue(f"svc-{i}.example.test", key, signer, dns=[f"svc-{i}.example.test"])
        yield tls_secret(f"tls-{i}", pem(leaf) + intermediate, key_pem(key), ca, namespace=f"ns-{i % namespaces}")


# --------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def pki() -> PKI:
    """A root, an intermediate and leaf keys."""
    return PKI("demo")


@pytest.fixture(scope="module")
def other() -> PKI:
    """A second, unrelated PKI."""
    return PKI("other")


def check(items: Iterable[Mapping[str, Any]], **kw: Any) -> kubepki.ObjectInventory:
    """check_objects over a kubectl List of ``items`` at NOW."""
    kw.setdefault("now", NOW)
    return check_objects(json.dumps(kubectl_list(items)).encode(), **kw)


def codes(item: kubepki.ObjectItem) -> set[str]:
    """The finding codes of an item."""
    return {f.code for f in item.findings}


# --------------------------------------------------------------------------------------
# Secrets


def test_healthy_tls_secret_gives_keypair_and_bundle_items(pki: PKI) -> None:
    """tls.crt with its key and ca.crt: two ok items, named namespace/object/key."""
    leaf = pki.leaf()
    inv = check([tls_secret("web-tls", pem(leaf, pki.intermediate), key_pem(pki.leaf_keys[0]), pem(pki.root),
                            namespace="shop")])
    assert [i.name for i in inv] == ["shop/web-tls/ca.crt", "shop/web-tls/tls.crt"]
    pair, bundle = inv["shop/web-tls/tls.crt"], inv["shop/web-tls/ca.crt"]
    assert (pair.kind, bundle.kind) == (ObjectItemKind.KEYPAIR, ObjectItemKind.BUNDLE)
    assert pair.status is Status.OK and bundle.status is Status.OK, (pair.findings, bundle.findings)
    assert pair.facts is not None and pair.facts.common_name == "web.example.test"
    assert [c.common_name for c in pair.chain] == ["web.example.test", "demo-intermediate-ca"]
    assert pair.signer == "demo-intermediate-ca"
    assert pair.residual_seconds == int((leaf.not_valid_after_utc - NOW).total_seconds())
    assert exit_status(inv) == 0
    assert inv.objects == {"Secret": 1}


def test_item_json_has_node_item_fields_plus_location(pki: PKI) -> None:
    """to_dict has every node item field and namespace, object, object_kind, key."""
    node_fields = {"name", "kind", "path", "signer", "scope", "not_before", "not_after", "residual_seconds",
                   "status", "externally_managed", "required", "renewable", "key_algorithm", "findings",
                   "certificate", "files"}
    inv = check([tls_secret("web-tls", pem(pki.leaf(), pki.intermediate), key_pem(pki.leaf_keys[0]))])
    item = inv.to_dict()["items"][0]
    assert node_fields | {"namespace", "object", "object_kind", "key", "chain"} == set(item)
    assert (item["path"], item["scope"], item["externally_managed"]) == (None, "cluster", False)
    assert (item["namespace"], item["object"], item["object_kind"], item["key"]) == (
        "default", "web-tls", "Secret", "tls.crt")
    assert item["kind"] == "keypair" and item["status"] == "ok"
    assert item["not_after"].endswith("Z") and item["certificate"]["common_name"] == "web.example.test"
    assert set(json_document(inv)) >= {"now", "source", "summary", "exit_code", "items", "notes"}


@pytest.mark.parametrize("algorithm", ["ECDSA-P256", "RSA-2048"])
def test_key_mismatch_is_invalid(algorithm: str) -> None:
    """A tls.key of another key pair gives key-mismatch; the right one none (negative control)."""
    p = PKI(f"km-{algorithm.lower()}", algorithm)
    leaf = p.leaf(key=0)
    inv = check([tls_secret("good", pem(leaf), key_pem(p.leaf_keys[0])),
                 tls_secret("bad", pem(leaf), key_pem(p.leaf_keys[1]))])
    assert "key-mismatch" not in codes(inv["default/good/tls.crt"])
    bad = inv["default/bad/tls.crt"]
    assert "key-mismatch" in codes(bad) and bad.status is Status.INVALID
    assert exit_status(inv) == 2


@pytest.mark.parametrize(("field", "code"), [
    ("tls.crt", "bad-base64"),
    ("tls.key", "bad-base64"),
    ("ca.crt", "bad-base64"),
])
def test_damaged_base64_is_reported_on_its_item(pki: PKI, field: str, code: str) -> None:
    """Secret data that is not base64 gives bad-base64 on the item holding it."""
    obj = tls_secret("web", pem(pki.leaf()), key_pem(pki.leaf_keys[0]), pem(pki.root))
    obj["data"][field] = obj["data"][field][:40] + "!!not base64!!" + obj["data"][field][40:]
    inv = check([obj])
    item = inv["default/web/ca.crt" if field == "ca.crt" else "default/web/tls.crt"]
    assert code in codes(item) and item.status is Status.INVALID
    assert all("!!" not in f.message for f in item.findings)


def test_damaged_base64_in_a_non_certificate_key_is_ignored(pki: PKI) -> None:
    """A password key with odd data is not a certificate: no item."""
    inv = check([secret("db", {"password": "%%%", "ca.crt": pem(pki.root)})])
    assert [i.key for i in inv] == ["ca.crt"]


def test_truncated_and_garbage_pem(pki: PKI) -> None:
    """A tls.crt cut in half is truncated-pem; one without PEM is no-certificate or not-pem."""
    full = pem(pki.leaf())
    inv = check([tls_secret("cut", full[: len(full) // 2], key_pem(pki.leaf_keys[0])),
                 tls_secret("junk", b"hello world", key_pem(pki.leaf_keys[0])),
                 tls_secret("empty", b"", key_pem(pki.leaf_keys[0]))])
    assert "truncated-pem" in codes(inv["default/cut/tls.crt"])
    assert "not-pem" in codes(inv["default/junk/tls.crt"])
    assert "no-certificate" in codes(inv["default/empty/tls.crt"])
    assert {i.status for i in inv} == {Status.INVALID}


def test_tls_secret_without_key_or_certificate(pki: PKI) -> None:
    """A TLS Secret lacking tls.key gives key-missing; lacking tls.crt, no-certificate."""
    no_key = secret("no-key", {"tls.crt": pem(pki.leaf())}, type_="kubernetes.io/tls")
    no_crt = secret("no-crt", {"tls.key": key_pem(pki.leaf_keys[0])}, type_="kubernetes.io/tls")
    inv = check([no_key, no_crt])
    assert "key-missing" in codes(inv["default/no-key/tls.crt"])
    assert "no-certificate" in codes(inv["default/no-crt/tls.crt"])


@pytest.mark.parametrize(("order", "code", "status"), [
    (("leaf", "intermediate"), None, Status.OK),
    (("leaf", "intermediate", "root"), None, Status.OK),
    (("intermediate", "leaf"), "chain-order", Status.INVALID),
    (("leaf", "root", "intermediate"), "chain-order", Status.WARNING),
])
def test_chain_order(pki: PKI, order: tuple[str, ...], code: str | None, status: Status) -> None:
    """Chains out of order are reported; an error when the leaf is not first."""
    certs = {"leaf": pki.leaf(), "intermediate": pki.intermediate, "root": pki.root}
    inv = check([tls_secret("web", pem(*(certs[o] for o in order)), key_pem(pki.leaf_keys[0]))])
    item = inv["default/web/tls.crt"]
    assert item.status is status, item.findings
    assert (code in codes(item)) if code else not codes(item)


def test_foreign_certificate_in_chain(pki: PKI, other: PKI) -> None:
    """An intermediate of another PKI after the leaf gives chain-signature."""
    inv = check([tls_secret("web", pem(pki.leaf(), other.intermediate), key_pem(pki.leaf_keys[0]))])
    assert "chain-signature" in codes(inv["default/web/tls.crt"])


def test_ca_crt_of_another_ca_is_wrong_signer(pki: PKI, other: PKI) -> None:
    """ca.crt that did not sign the chain gives wrong-signer on tls.crt; the right one does not."""
    leaf = pem(pki.leaf(), pki.intermediate)
    inv = check([tls_secret("right", leaf, key_pem(pki.leaf_keys[0]), pem(pki.root)),
                 tls_secret("wrong", leaf, key_pem(pki.leaf_keys[0]), pem(other.root))])
    assert "wrong-signer" not in codes(inv["default/right/tls.crt"])
    assert "wrong-signer" in codes(inv["default/wrong/tls.crt"])


@pytest.mark.parametrize(("window", "code", "status", "exit_code"), [
    ((NOW - 400 * DAY, NOW - DAY), "expired", Status.EXPIRED, 2),
    ((NOW + DAY, NOW + 400 * DAY), "not-yet-valid", Status.INVALID, 2),
    ((NOW - 300 * DAY, NOW + 10 * DAY), "expiring", Status.WARNING, 1),
    ((NOW - 300 * DAY, NOW + 40 * DAY), None, Status.OK, 0),
])
def test_validity(pki: PKI, window: tuple[dt.datetime, dt.datetime], code: str | None, status: Status,
                  exit_code: int) -> None:
    """Expired, not yet valid and expiring leaves; outside the window nothing (negative control)."""
    leaf = pki.leaf(not_before=window[0], not_after=window[1])
    inv = check([tls_secret("web", pem(leaf, pki.intermediate), key_pem(pki.leaf_keys[0]))])
    item = inv["default/web/tls.crt"]
    assert item.status is status and exit_status(inv) == exit_code
    assert (code in codes(item)) if code else not codes(item)


def test_warn_within_is_honoured(pki: PKI) -> None:
    """A leaf 10 days from expiry is ok with warn_within=7d."""
    leaf = pki.leaf(not_after=NOW + 10 * DAY)
    inv = check([tls_secret("web", pem(leaf), key_pem(pki.leaf_keys[0]))], warn_within=7 * DAY)
    assert exit_status(inv) == 0


def test_expired_certificate_inside_a_ca_bundle(pki: PKI, other: PKI) -> None:
    """An expired CA among valid ones is reported with its position."""
    old = issue("retired-ca", other.root_key, ca=True, not_before=NOW - 800 * DAY, not_after=NOW - 5 * DAY)
    inv = check([secret("trust", {"ca-bundle.crt": pem(pki.root, old)})])
    item = inv["default/trust/ca-bundle.crt"]
    assert item.kind is ObjectItemKind.BUNDLE and item.status is Status.EXPIRED
    assert any("certificate 2 of 2 (CN=retired-ca)" in f.message for f in item.findings)


# --------------------------------------------------------------------------------------
# Opaque Secrets, ConfigMaps, webhooks, APIServices


def test_every_object_kind(pki: PKI) -> None:
    """Each kind gives its items: bundles, key pairs by naming convention, caBundles."""
    leaf = pki.leaf("internal.example.test")
    objects = [
        secret("app-certs", {"server.crt": pem(leaf, pki.intermediate), "server.key": key_pem(pki.leaf_keys[0]),
                             "password": b"hunter2"}, namespace="app"),
        secret("combined", {"tls.pem": pem(leaf) + key_pem(pki.leaf_keys[0])}, namespace="app"),
        secret("cabundle", {"bundle.pem": pem(pki.root, pki.intermediate)}, namespace="app"),
        configmap("kube-root-ca.crt", {"ca.crt": pem(pki.root).decode()}, namespace="kube-system"),
        configmap("settings", {"config.yaml": "replicas: 3\n"}, namespace="kube-system"),
        {"apiVersion": "v1", "binaryData": {"extra-ca.pem": b64(pem(pki.root))}, "kind": "ConfigMap",
         "metadata": _metadata("binary", "kube-system")},
        webhook_configuration("ValidatingWebhookConfiguration", "policy",
                              {"validate.policy.example.test": pem(pki.root), "no-bundle.example.test": None}),
        webhook_configuration("MutatingWebhookConfiguration", "injector", {"inject.example.test": pem(pki.root)}),
        apiservice("v1beta1.metrics.k8s.io", pem(pki.root)),
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
         "metadata": _metadata("widgets.example.test", None),
         "spec": {"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"caBundle": b64(pem(pki.root))},
                                                                    "conversionReviewVersions": ["v1"]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata("ignored", "app"), "spec": {}},
    ]
    inv = check(objects)
    got = {(i.namespace, i.object_kind, i.object, i.key, i.kind.value) for i in inv}
    assert got == {
        ("app", "Secret", "app-certs", "server.crt", "keypair"),
        ("app", "Secret", "combined", "tls.pem", "keypair"),
        ("app", "Secret", "cabundle", "bundle.pem", "bundle"),
        ("kube-system", "ConfigMap", "kube-root-ca.crt", "ca.crt", "bundle"),
        ("kube-system", "ConfigMap", "binary", "extra-ca.pem", "bundle"),
        (None, "ValidatingWebhookConfiguration", "policy",
         "webhooks[validate.policy.example.test].clientConfig.caBundle", "bundle"),
        (None, "MutatingWebhookConfiguration", "injector", "webhooks[inject.example.test].clientConfig.caBundle",
         "bundle"),
        (None, "APIService", "v1beta1.metrics.k8s.io", "spec.caBundle", "bundle"),
        (None, "CustomResourceDefinition", "widgets.example.test", "spec.conversion.webhook.clientConfig.caBundle",
         "bundle"),
    }
    assert all(i.status is Status.OK for i in inv), [(i.name, i.findings) for i in inv if i.findings]
    assert inv["/policy/webhooks[validate.policy.example.test].clientConfig.caBundle"].object == "policy"
    assert inv.objects["Pod"] == 1


def test_opaque_pair_with_wrong_key(pki: PKI) -> None:
    """server.crt/server.key are paired by name, and a wrong key is key-mismatch."""
    inv = check([secret("app", {"server.crt": pem(pki.leaf()), "server.key": key_pem(pki.leaf_keys[1])})])
    assert "key-mismatch" in codes(inv["default/app/server.crt"])


def test_webhook_bundle_damaged(pki: PKI) -> None:
    """A caBundle of garbage is reported on the webhook's item."""
    hook = webhook_configuration("ValidatingWebhookConfiguration", "policy", {"v.example.test": b"garbage"})
    inv = check([hook])
    item = inv["/policy/webhooks[v.example.test].clientConfig.caBundle"]
    assert "not-pem" in codes(item) and item.status is Status.INVALID


def test_namespace_filter(pki: PKI) -> None:
    """namespace= keeps that namespace's objects only, and no cluster-scoped ones."""
    objects = [tls_secret("a", pem(pki.leaf()), key_pem(pki.leaf_keys[0]), namespace="one"),
               tls_secret("b", pem(pki.leaf()), key_pem(pki.leaf_keys[0]), namespace="two"),
               apiservice("v1beta1.metrics.k8s.io", pem(pki.root))]
    inv = check(objects, namespace="one")
    assert [i.name for i in inv] == ["one/a/tls.crt"]


# --------------------------------------------------------------------------------------
# Input shapes


def _objects_for_shapes(pki: PKI) -> list[dict[str, Any]]:
    return [tls_secret("web", pem(pki.leaf(), pki.intermediate), key_pem(pki.leaf_keys[0]), pem(pki.root)),
            configmap("kube-root-ca.crt", {"ca.crt": pem(pki.root).decode()}, namespace="kube-system"),
            webhook_configuration("ValidatingWebhookConfiguration", "policy", {"v.example.test": pem(pki.root)})]


def _render(shape: str, objects: list[dict[str, Any]]) -> bytes:
    if shape == "json-list":
        out = io.StringIO()
        write_json_list(out, objects)
        return out.getvalue().encode()
    if shape == "json-compact":
        return json.dumps(kubectl_list(objects), separators=(",", ":")).encode()
    if shape == "json-concatenated":
        return "\n".join(json.dumps(o, indent=2) for o in objects).encode()
    if shape == "json-array":
        return json.dumps(objects).encode()
    if shape == "yaml-list":
        out = io.StringIO()
        write_yaml_list(out, objects)
        return out.getvalue().encode()
    if shape == "yaml-indented-list":
        return yaml.dump(kubectl_list(objects), Dumper=_IndentedDumper, width=1 << 30).encode()
    if shape == "yaml-documents":
        return yaml.safe_dump_all(objects).encode()
    if shape == "yaml-flow":
        return yaml.safe_dump(kubectl_list(objects), default_flow_style=True, width=1 << 30).encode()
    raise AssertionError(shape)


class _IndentedDumper(yaml.SafeDumper):
    """Indents sequences under their key, as some tools (not kubectl) do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


SHAPES = ["json-list", "json-compact", "json-concatenated", "json-array", "yaml-list", "yaml-indented-list",
          "yaml-documents", "yaml-flow"]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_input_shape_gives_the_same_items(pki: PKI, shape: str) -> None:
    """JSON Lists, concatenated objects, arrays, YAML Lists and documents: same items."""
    objects = _objects_for_shapes(pki)
    expected = check(objects).to_dict()["items"]
    got = check_objects(_render(shape, objects), now=NOW).to_dict()["items"]
    assert got == expected


@pytest.mark.parametrize("shape", ["json-list", "yaml-list"])
def test_paths_streams_and_text(tmp_path: Path, pki: PKI, shape: str) -> None:
    """A path, a Path, a binary stream, a text stream and a str document all read the same."""
    data = _render(shape, _objects_for_shapes(pki))
    target = tmp_path / "objects"
    target.write_bytes(data)
    results = [check_objects(s, now=NOW).to_dict()["items"] for s in
               (str(target), target, io.BytesIO(data), io.StringIO(data.decode()), data.decode())]
    assert all(r == results[0] for r in results) and len(results[0]) == 4
    assert check_objects(target, now=NOW).source == str(target)


def test_api_server_list_without_item_kinds(pki: PKI) -> None:
    """A SecretList from the API (kind first, items without kind) is read as Secrets."""
    obj = tls_secret("web", pem(pki.leaf()), key_pem(pki.leaf_keys[0]))
    del obj["kind"], obj["apiVersion"]
    doc = {"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}, "items": [obj]}
    inv = check_objects(json.dumps(doc).encode(), now=NOW)
    assert [i.name for i in inv] == ["default/web/tls.crt"]


@pytest.mark.parametrize(("data", "error"), [
    (b'{"items": [{"kind": "Secret"', ParseError),
    (b'{"items": [1, 2,, 3]}', ParseError),
    (b'{"items": [{"kind": "\xff"}]}', ParseError),
    (b"items:\n- a: [unclosed\n", ParseError),
    (b"a: &x [1]\nb: *x\n", ParseError),
    (b"<html>", ParseError),
])
def test_malformed_input_raises_parse_error(data: bytes, error: type[Exception]) -> None:
    """Broken JSON or YAML, and YAML aliases, raise ParseError, not a traceback."""
    with pytest.raises(error):
        check_objects(data, now=NOW)


def test_unreadable_path_is_config_error(tmp_path: Path) -> None:
    """A file that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="does-not-exist"):
        check_objects(tmp_path / "does-not-exist.json", now=NOW)


def test_naive_now_is_refused() -> None:
    """now must be timezone-aware."""
    with pytest.raises(ConfigError):
        check_objects(b"{}", now=dt.datetime(2026, 1, 1))


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_OBJECT = st.dictionaries(st.text(max_size=6), _JSONISH, max_size=5).map(lambda d: {**d, "kind": "Thing"})


@settings(max_examples=60, deadline=None)
@given(objects=st.lists(_OBJECT, max_size=6), indent=st.sampled_from([None, 0, 2, 4]),
       chunk=st.integers(1, 64), tail=st.sampled_from(["", "\n", "  \n\n"]))
def test_json_stream_reader_yields_every_object(objects: list[dict[str, Any]], indent: int | None, chunk: int,
                                                tail: str) -> None:
    """Whatever the chunk boundaries and layout, the streaming reader returns each List item intact."""
    text = json.dumps({"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"n": 1.5e3}},
                      indent=indent) + tail
    original = cluster_objects._CHUNK
    cluster_objects._CHUNK = chunk
    try:
        fields: dict[str, Any] = {}
        got = [o for o, _ in iter_objects(io.BytesIO(text.encode()), list_fields=fields)]
    finally:
        cluster_objects._CHUNK = original
    assert got == objects
    assert fields == {"apiVersion": "v1", "kind": "List", "metadata": {"n": 1.5e3}}


@settings(max_examples=40, deadline=None)
@given(names=st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), max_size=5),
       values=st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40), max_size=5))
def test_yaml_item_splitter_matches_a_full_parse(names: list[str], values: list[str]) -> None:
    """Splitting kubectl YAML into items gives what parsing the whole document gives."""
    items = [{"kind": "ConfigMap", "metadata": {"name": n, "namespace": "x"},
              "data": {f"k{i}": v for i, v in enumerate(values)}} for n in names]
    out = io.StringIO()
    write_yaml_list(out, items)
    got = [o for o, _ in iter_objects(out.getvalue().encode())]
    assert got == yaml.safe_load(out.getvalue())["items"]


# --------------------------------------------------------------------------------------
# Output


def test_table_and_html(pki: PKI, other: PKI) -> None:
    """The table has the documented header and a FINDINGS section; HTML escapes and colours."""
    inv = check([tls_secret("web", pem(pki.leaf()), key_pem(pki.leaf_keys[1]), namespace="shop"),
                 apiservice("v1beta1.metrics.k8s.io", pem(other.root))])
    table = inv.table()
    header = table.splitlines()[0]
    assert header.split() == ["NAMESPACE", "OBJECT", "KEY", "EXPIRES", "RESIDUAL", "TIME", "STATUS"]
    assert "secret/web" in table and "apiservice/v1beta1.metrics.k8s.io" in table
    assert "FINDINGS" in table and "key-mismatch" in table
    assert "<table" in inv._repr_html_() and "key-mismatch" in inv._repr_html_()
    assert repr(inv).startswith("<ObjectInventory source='<bytes>' items=2")


def test_no_secret_value_reaches_any_output(pki: PKI) -> None:
    """Neither key PEM nor its base64 appears in JSON, table, HTML, repr or messages."""
    key = key_pem(pki.leaf_keys[0])
    wrong = key_pem(pki.leaf_keys[1])
    password = b"s3cr3t-Passw0rd-value-long-enough-to-grep-for-in-every-output"
    objects = [tls_secret("ok", pem(pki.leaf()), key), tls_secret("bad", pem(pki.leaf()), wrong),
               tls_secret("garbled", pem(pki.leaf()), key[:60]),
               secret("app", {"server.crt": pem(pki.leaf()), "server.key": wrong, "password": password,
                              "tls.pem": pem(pki.leaf()) + key})]
    inv = check(objects)
    texts = [inv.to_json(), inv.table(), inv._repr_html_(), repr(inv), *(repr(i) for i in inv)]
    for text in texts:
        assert "PRIVATE KEY" not in text
        for value in (key, wrong, password):
            assert b64(value)[:20] not in text
            assert value.decode()[-40:-20] not in text


def test_inventory_lookup_and_counts(pki: PKI) -> None:
    """inventory[name], `in`, len() and counts() work as on node inventories."""
    inv = check([tls_secret("web", pem(pki.leaf()), key_pem(pki.leaf_keys[0]))])
    assert "default/web/tls.crt" in inv and len(inv) == 1
    assert inv.counts()["ok"] == 1
    with pytest.raises(KeyError):
        inv["default/nope/tls.crt"]


# --------------------------------------------------------------------------------------
# Large inputs


@pytest.mark.slow
def test_ten_thousand_secrets_stream_in_bounded_memory(tmp_path: Path, pki: PKI,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """10,000 TLS Secrets from a file: Python peak memory stays under 200 MB (figure printed)."""
    path = tmp_path / "secrets.json"
    with path.open("w") as out:
        write_json_list(out, many_tls_secrets(pki, 10_000))
    size = path.stat().st_size
    gc.collect()
    tracemalloc.start()
    try:
        inv = check_objects(path, now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(inv) == 20_000 and exit_status(inv) == 0, inv.counts()
    assert peak < 200 << 20
    with capsys.disabled():
        print(f"\n10,000 Secrets ({size / 2**20:.0f} MiB JSON): tracemalloc peak {peak / 2**20:.1f} MiB")


def test_reading_is_incremental(pki: PKI) -> None:
    """The first object of a 2,000-Secret List comes after reading about one chunk, not the whole file."""
    out = io.StringIO()
    write_json_list(out, many_tls_secrets(pki, 2000))
    stream = io.BytesIO(out.getvalue().encode())
    objects = iter_objects(stream)
    first, _ = next(objects)
    assert first["metadata"]["name"] == "tls-0"
    assert stream.tell() <= 2 * cluster_objects._CHUNK < len(stream.getvalue())
    assert sum(1 for _ in objects) == 1999


def test_large_objects_across_chunks(pki: PKI) -> None:
    """Objects larger than a read chunk are reassembled intact (chunk forced tiny)."""
    big = configmap("bundle", {"ca.crt": (pem(pki.root) * 40).decode()})
    data = json.dumps(kubectl_list([big, big])).encode()
    original = cluster_objects._CHUNK
    cluster_objects._CHUNK = 1000
    try:
        inv = check_objects(io.BytesIO(data), now=NOW)
    finally:
        cluster_objects._CHUNK = original
    assert len(inv) == 2 and len(inv.items[0].chain) == 40


def test_oversized_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An object beyond MAX_OBJECT_BYTES is a ParseError, in JSON and in YAML."""
    monkeypatch.setattr(cluster_objects, "MAX_OBJECT_BYTES", 4096)
    monkeypatch.setattr(cluster_objects, "_CHUNK", 1024)
    huge = configmap("huge", {"x": "y" * 10_000})
    with pytest.raises(ParseError, match="larger than"):
        list(iter_objects(io.StringIO(json.dumps(kubectl_list([huge])))))
    out = io.StringIO()
    write_yaml_list(out, [huge])
    with pytest.raises(ParseError):
        list(iter_objects(out.getvalue().encode()))


def test_public_names() -> None:
    """check_objects and the item types are exported from kubepki."""
    assert kubepki.check_objects is check_objects
    assert {"ObjectInventory", "ObjectItem", "ObjectItemKind", "check_objects", "check_live", "probe",
            "APIError"} <= set(kubepki.__all__)
