"""Certificates in cluster objects: TLS Secrets, CA bundles in ConfigMaps, webhooks, APIServices.

:func:`check_objects` reads what ``kubectl get secrets,configmaps -A -o json`` (or
``-o yaml``) prints — a ``List``, a single object, or several documents — and
returns an :class:`ObjectInventory` whose items carry the same statuses and
finding codes as a node's (:mod:`kubepki.inspection._inventory`):

- ``kubernetes.io/tls`` Secrets: ``tls.crt`` is checked as a chain (leaf first,
  each certificate signed by the next) against ``tls.key`` and, when present,
  ``ca.crt``, which is also checked as a bundle of its own;
- every other key of any Secret or ConfigMap (``data`` and ``binaryData``) that
  holds a PEM certificate: a CA bundle, or a chain when its first certificate is
  not a CA; its key is checked too when it sits in the same value or in a key
  named like it (``server.crt``/``server.key``, ``cert.pem``/``key.pem``);
- ``webhooks[].clientConfig.caBundle`` of Mutating/ValidatingWebhookConfigurations,
  ``spec.caBundle`` of APIServices and the conversion webhook ``caBundle`` of
  CustomResourceDefinitions.

Other objects and values that are not certificates are skipped (counted in
:attr:`ObjectInventory.objects`). Secret values never reach an output, a repr or
an exception: only facts about certificates and findings do.

Large inputs are read as a stream. JSON is decoded one object at a time
(the ``items`` of a List are never held together), and each object's decoded
data is dropped once checked; kubectl-style YAML is split into its items line by
line and each item parsed on its own (:data:`MAX_OBJECT_BYTES` bounds one item).

>>> import datetime as dt, kubepki
>>> inv = kubepki.check_objects(b'{"kind": "List", "items": []}',
...                             now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
>>> inv.outcome.value, len(inv)
('ok', 0)
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime as dt
import enum
import hashlib
import io
import json
import os
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
from cryptography import x509

from kubepki._clock import utc as _utc
from kubepki._report import Block, Cell, Line, Outcome, Report, Table, render_text
from kubepki.errors import ConfigError, ParseError
from kubepki.inspection import (
    Finding,
    HasFindings,
    Severity,
    Status,
    outcome_for,
    status_counts,
    status_for,
    worst_first,
)
from kubepki.objects._bundles import (
    DEFAULT_WARN_WITHIN,
    BundleCheck,
    check_bundle,
    check_chain,
    make,
    parse_certificates,
)
from kubepki.pki import CertFacts, iso

__all__ = [
    "MAX_OBJECT_BYTES",
    "ObjectInventory",
    "ObjectItem",
    "ObjectItemKind",
    "check_object_iter",
    "check_objects",
    "iter_objects",
    "object_item",
]

#: One object (a List item, or a single document) larger than this is refused. The
#: API server refuses requests over 3 MiB, so real objects are far smaller.
MAX_OBJECT_BYTES = 16 << 20
_CHUNK = 1 << 20

#: Object kinds inspected, and whether they are namespaced.
_KINDS: Mapping[str, bool] = {
    "Secret": True,
    "ConfigMap": True,
    "MutatingWebhookConfiguration": False,
    "ValidatingWebhookConfiguration": False,
    "APIService": False,
    "CustomResourceDefinition": False,
}

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | IO[str]


class ObjectItemKind(str, enum.Enum):
    """What an object item holds; the values are those of the JSON ``kind`` field."""

    #: A certificate or chain without its private key at hand.
    CERTIFICATE = "certificate"
    #: A bundle of trust anchors (``ca.crt``, ``caBundle``).
    BUNDLE = "bundle"
    #: A chain checked against its private key (``tls.crt`` with ``tls.key``).
    KEYPAIR = "keypair"


@attrs.frozen(kw_only=True)
class ObjectItem(HasFindings):
    """One certificate-holding field of one cluster object (or one probed endpoint).

    The attributes an exporter needs are those of a node's
    :class:`~kubepki.InventoryItem`: :attr:`name`, :attr:`kind`, :attr:`status`,
    :attr:`not_after`, :attr:`residual_seconds`, :attr:`findings`; plus where the
    field is: :attr:`namespace`, :attr:`object_kind`, :attr:`object`, :attr:`key`.
    """

    #: The object's namespace; None for cluster-scoped objects and endpoints.
    namespace: str | None
    #: ``Secret``, ``ConfigMap``, ``MutatingWebhookConfiguration``..., or ``Endpoint``.
    object_kind: str
    #: The object's name (``host:port`` for endpoints).
    object: str
    #: The data key or field path (``tls.crt``, ``webhooks[w.example.com].clientConfig.caBundle``);
    #: the server name sent for endpoints.
    key: str
    kind: ObjectItemKind
    status: Status
    #: The first certificate's facts (the leaf of a chain).
    facts: CertFacts | None = None
    #: The facts of every certificate, in the order found.
    chain: tuple[CertFacts, ...] = ()
    findings: tuple[Finding, ...] = ()
    #: Residual validity of the first certificate in seconds at inspection time.
    residual_seconds: int | None = None

    @property
    def name(self) -> str:
        """``<namespace>/<object>/<key>`` (empty namespace for cluster-scoped objects); ``host:port`` for endpoints."""
        if self.object_kind == "Endpoint":
            return self.object
        return f"{self.namespace or ''}/{self.object}/{self.key}"

    @property
    def path(self) -> None:
        """Always None: the item is not a file (kept for parity with node items)."""
        return None

    @property
    def scope(self) -> str:
        """Always ``cluster``."""
        return "cluster"

    @property
    def externally_managed(self) -> bool:
        """Always False (kept for parity with node items)."""
        return False

    @property
    def signer(self) -> str | None:
        """The issuer CN of the first certificate, if it has one."""
        if self.facts is None:
            return None
        match = re.search(r"(?:^|,)CN=((?:[^,\\]|\\.)*)", self.facts.issuer)
        return match.group(1).replace("\\", "") if match else None

    @property
    def not_before(self) -> dt.datetime | None:
        """NotBefore of the first certificate."""
        return self.facts.not_before if self.facts else None

    @property
    def not_after(self) -> dt.datetime | None:
        """NotAfter of the first certificate."""
        return self.facts.not_after if self.facts else None

    @property
    def locator(self) -> str:
        """How a person finds the field: ``secret/web-tls tls.crt -n default``."""
        if self.object_kind == "Endpoint":
            return f"{self.object} ({self.key})" if self.key else self.object
        where = f" -n {self.namespace}" if self.namespace else ""
        return f"{self.object_kind.lower()}/{self.object} {self.key}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The node item's JSON fields (see docs/json.md), plus where the field is."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "path": None,
            "signer": self.signer,
            "scope": "cluster",
            "not_before": iso(self.not_before) if self.not_before else None,
            "not_after": iso(self.not_after) if self.not_after else None,
            "residual_seconds": self.residual_seconds,
            "status": self.status.value,
            "externally_managed": False,
            "required": True,
            "renewable": False,
            "key_algorithm": self.facts.key_algorithm if self.facts else None,
            "findings": [f.to_dict() for f in self.findings],
            "certificate": self.facts.to_dict() if self.facts else None,
            "files": [],
            "namespace": self.namespace,
            "object": self.object,
            "object_kind": self.object_kind,
            "key": self.key,
            "chain": [c.to_dict() for c in self.chain],
        }


@attrs.frozen(kw_only=True)
class ObjectInventory(Report):
    """The certificate items of a set of cluster objects (or endpoints) at one moment."""

    now: dt.datetime
    #: Where the objects came from: a file, ``<stdin>``, an API server URL, ``probe``.
    source: str
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN
    items: tuple[ObjectItem, ...] = attrs.field(default=(), repr=False)
    #: How many objects of each kind were read (inspected or not).
    objects: Mapping[str, int] = attrs.field(factory=dict, repr=False)
    #: Things worth knowing about the run (skipped kinds, leaf-only chains...).
    notes: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[ObjectItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, name: str) -> ObjectItem:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(item.name == name for item in self.items)

    def __repr__(self) -> str:
        parts = [f"source={self.source!r}", f"items={len(self.items)}"]
        parts += [f"{k}={v}" for k, v in self.counts().items() if v]
        return f"<ObjectInventory {' '.join(parts)}>"

    def counts(self) -> dict[str, int]:
        """How many items have each status."""
        return status_counts(self.items)

    @property
    def findings(self) -> list[tuple[ObjectItem, Finding]]:
        """Every finding with its item, worst first."""
        return worst_first(self.items)

    @property
    def outcome(self) -> Outcome:
        """Failed when an item is expired, invalid or missing; warning when one only warns (as ``kubepki check``);
        incomplete when there was no certificate to check at all (nothing checked is not all well)."""
        if not self.items:
            return Outcome.INCOMPLETE
        return outcome_for(self.items)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: run facts, a status summary and every item."""
        return {
            "now": iso(self.now),
            "source": self.source,
            "warn_within_seconds": int(self.warn_within.total_seconds()),
            "objects": dict(self.objects),
            "notes": list(self.notes),
            "summary": self.counts(),
            "items": [i.to_dict() for i in self.items],
        }

    def table(self, *, findings: bool = True) -> str:
        """A kubeadm-style table (NAMESPACE OBJECT KEY EXPIRES RESIDUAL TIME STATUS), then findings."""
        return render_text(self._blocks(findings=findings))[0]

    def blocks(self) -> list[Block]:
        """The kubeadm-style table, then the findings."""
        return self._blocks(findings=True)

    def _blocks(self, *, findings: bool) -> list[Block]:
        from kubepki.inspection import kubeadm_date, short_human_duration

        endpoints = bool(self.items) and all(i.object_kind == "Endpoint" for i in self.items)
        columns = (("ENDPOINT", "SERVER NAME", "EXPIRES", "RESIDUAL TIME", "STATUS") if endpoints
                   else ("NAMESPACE", "OBJECT", "KEY", "EXPIRES", "RESIDUAL TIME", "STATUS"))
        rows: list[list[Cell | str]] = []
        for item in sorted(self.items, key=_sort_key):
            if item.not_after is not None:
                expires = kubeadm_date(item.not_after)
                residual = short_human_duration((item.not_after - self.now).total_seconds())
            else:
                expires = residual = "-"
            where = ([item.object, item.key or "-"] if endpoints else
                     [item.namespace or "-", f"{item.object_kind.lower()}/{item.object}", item.key])
            rows.append([*where, expires, Cell(residual, item.status.tone),
                         Cell(item.status.value, item.status.tone)])
        out: list[Block] = [Table("", columns, rows, header_tone=None)]
        if not self.items:
            out.append(Line(["(no certificates found)"]))
        shown = [(i, f) for i, f in self.findings if f.severity.rank >= Severity.WARNING.rank]
        if findings and shown:
            out += [Line([]), Line([Cell("FINDINGS", "strong")]),
                    Table("", (), [[Cell(f.severity.value.upper(), f.severity.tone), i.locator, f.code, f.message]
                                   for i, f in shown])]
        return out

    def rows(self) -> Table:
        """Every item with where it is, its status, expiry and findings (the notebook table)."""
        from kubepki.inspection import kubeadm_date, short_human_duration

        rows: list[list[Cell | str]] = []
        for item in sorted(self.items, key=_sort_key):
            expires = kubeadm_date(item.not_after) if item.not_after else "—"
            residual = short_human_duration((item.not_after - self.now).total_seconds()) if item.not_after else "—"
            notes = "\n".join(f"{f.code} {f.message}" for f in item.findings if f.severity is not Severity.INFO)
            rows.append([item.namespace or "—", Cell(item.object, strong=True), item.object_kind, item.key,
                         item.kind.value, Cell(item.status.value, item.status.tone, badge=True), expires,
                         residual, notes])
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items() if v) or "no items"
        return Table(f"kubepki objects — {self.source}, at {kubeadm_date(self.now)}: {counts}",
                     ("namespace", "object", "object kind", "key", "kind", "status", "expires", "residual",
                      "findings"), rows)


def _sort_key(item: ObjectItem) -> tuple[str, str, str, str]:
    return (item.namespace or "", item.object_kind, item.object, item.key)


# --------------------------------------------------------------------------------------
# Checking objects


_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = b"PRIVATE KEY-----"
# Keys whose values are meant as certificates: damaged base64 in them is reported.
_CERTISH = re.compile(r"(\.(crt|pem|cer|cert)$|^ca$|bundle|cabundle)", re.IGNORECASE)
# Keys that hold trust anchors whatever their content looks like.
_BUNDLISH = re.compile(r"^(ca|ca[-_.].*|.*[-_.]ca[-_.].*|.*bundle.*|.*trust.*|.*root.*)$", re.IGNORECASE)


class _Checker:
    """Turns objects into items, one object at a time; caches what recurs (CA bundles)."""

    def __init__(self, now: dt.datetime, warn_within: dt.timedelta, namespace: str | None) -> None:
        self.now = now
        self.warn_within = warn_within
        self.namespace = namespace
        self.items: list[ObjectItem] = []
        self.objects: Counter[str] = Counter()
        self.notes: list[str] = []
        # kube-root-ca.crt is in every namespace, and one issuer's ca.crt in every
        # Secret it signed: check each distinct bundle once.
        self._bundles: OrderedDict[bytes, tuple[BundleCheck, list[x509.Certificate]]] = OrderedDict()

    def inventory(self, source: str) -> ObjectInventory:
        notes = list(self.notes)
        if not self.items:
            read = sum(self.objects.values())
            notes.append("nothing checked: " + (f"{read} object(s) read from {source}, none carries a certificate"
                                                if read else f"no objects in {source}"))
        return ObjectInventory(now=self.now, source=source, warn_within=self.warn_within,
                               items=tuple(self.items), objects=dict(self.objects), notes=tuple(notes))

    # -- dispatch --------------------------------------------------------------------

    def check(self, obj: Mapping[str, Any], default_kind: str | None = None) -> None:
        given = obj.get("kind")
        kind = given if isinstance(given, str) and given else default_kind or _guess_kind(obj)
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name = meta.get("name")
        ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) and meta.get("namespace") else None
        self.objects[kind or "unknown"] += 1
        if kind is None or kind not in _KINDS or not isinstance(name, str) or not name:
            return
        if self.namespace is not None and ns != self.namespace:
            return
        where = _Where(ns if _KINDS[kind] else None, kind, name)
        if kind == "Secret":
            self._secret(where, obj)
        elif kind == "ConfigMap":
            self._configmap(where, obj)
        elif kind.endswith("WebhookConfiguration"):
            self._webhooks(where, obj)
        elif kind == "APIService":
            spec = obj.get("spec")
            if isinstance(spec, dict):
                self._ca_bundle_field(where, "spec.caBundle", spec.get("caBundle"))
        else:  # CustomResourceDefinition
            spec = obj.get("spec")
            conv = spec.get("conversion") if isinstance(spec, dict) else None
            hook = conv.get("webhook") if isinstance(conv, dict) else None
            cc = hook.get("clientConfig") if isinstance(hook, dict) else None
            if isinstance(cc, dict):
                self._ca_bundle_field(where, "spec.conversion.webhook.clientConfig.caBundle", cc.get("caBundle"))

    # -- kinds -----------------------------------------------------------------------

    def _secret(self, where: _Where, obj: Mapping[str, Any]) -> None:
        data = obj.get("data")
        if not isinstance(data, dict):
            return
        stype = obj.get("type")
        values = _Values(data, encoded=True)
        handled: set[str] = set()
        if stype == "kubernetes.io/tls":
            handled = {"tls.crt", "tls.key", "ca.crt"}
            anchors: list[x509.Certificate] = []
            if "ca.crt" in data:
                anchors = self._bundle_item(where, "ca.crt", values)
            self._tls_pair(where, values, anchors)
        self._scan(where, values, handled)

    def _configmap(self, where: _Where, obj: Mapping[str, Any]) -> None:
        for field, encoded in (("data", False), ("binaryData", True)):
            data = obj.get(field)
            if isinstance(data, dict):
                self._scan(where, _Values(data, encoded=encoded), set())

    def _webhooks(self, where: _Where, obj: Mapping[str, Any]) -> None:
        hooks = obj.get("webhooks")
        if not isinstance(hooks, list):
            return
        for index, hook in enumerate(hooks):
            if not isinstance(hook, dict):
                continue
            cc = hook.get("clientConfig")
            if not isinstance(cc, dict):
                continue
            label = hook.get("name") if isinstance(hook.get("name"), str) else str(index)
            self._ca_bundle_field(where, f"webhooks[{label}].clientConfig.caBundle", cc.get("caBundle"))

    def _ca_bundle_field(self, where: _Where, key: str, value: Any) -> None:
        # An absent or empty caBundle means "the API server's own trust roots" (or
        # that cert-manager's cainjector has not filled it yet): nothing to check.
        if value in (None, ""):
            return
        self._bundle_item(where, key, _Values({key: value}, encoded=True), label="caBundle")

    # -- items -----------------------------------------------------------------------

    def _tls_pair(self, where: _Where, values: _Values, anchors: list[x509.Certificate]) -> None:
        findings: list[Finding] = []
        if "tls.crt" not in values.data:
            self._add(where, "tls.crt", ObjectItemKind.KEYPAIR, None,
                      [make("no-certificate", "the kubernetes.io/tls Secret has no tls.crt")])
            return
        crt, bad = values.get("tls.crt")
        if crt is None:
            self._add(where, "tls.crt", ObjectItemKind.KEYPAIR, None, [bad] if bad else [])
            return
        key: bytes | None = None
        if "tls.key" not in values.data:
            findings.append(make("key-missing", "the kubernetes.io/tls Secret has no tls.key"))
        else:
            key, bad = values.get("tls.key", label="tls.key")
            if bad is not None:
                findings.append(bad)
        check = check_chain(crt, now=self.now, warn_within=self.warn_within, key=key, anchors=anchors,
                            label="tls.crt", key_label="tls.key", anchors_label="ca.crt")
        del key
        self._add(where, "tls.crt", ObjectItemKind.KEYPAIR, check, findings)

    def _bundle_item(self, where: _Where, key: str, values: _Values, *, label: str | None = None
                     ) -> list[x509.Certificate]:
        raw, bad = values.get(key, label=label)
        if raw is None:
            self._add(where, key, ObjectItemKind.BUNDLE, None, [bad] if bad else [])
            return []
        check, certs = self._bundle(raw, label or key)
        self._add(where, key, ObjectItemKind.BUNDLE, check, [])
        return certs

    def _bundle(self, raw: bytes, label: str) -> tuple[BundleCheck, list[x509.Certificate]]:
        digest = hashlib.sha256(label.encode() + b"\0" + raw).digest()
        cached = self._bundles.get(digest)
        if cached is not None:
            self._bundles.move_to_end(digest)
            return cached
        certs, errors = parse_certificates(raw, label)
        check = check_bundle(certs, now=self.now, warn_within=self.warn_within, label=label)
        if errors:
            check = attrs.evolve(check, findings=(*errors, *check.findings))
        self._bundles[digest] = (check, certs)
        if len(self._bundles) > 256:
            self._bundles.popitem(last=False)
        return check, certs

    def _scan(self, where: _Where, values: _Values, handled: set[str]) -> None:
        """Every other key holding a PEM certificate: a bundle, or a chain with its key."""
        for key in values.data:
            if key in handled or not isinstance(key, str):
                continue
            raw, bad = values.get(key)
            if raw is None:
                if bad is not None and _CERTISH.search(key):
                    self._add(where, key, ObjectItemKind.CERTIFICATE, None, [bad])
                continue
            if _CERT_MARK not in raw:
                continue
            pair = _pair_key(key, values.data) if _KEY_MARK not in raw else None
            if _KEY_MARK in raw or pair is not None:
                findings: list[Finding] = []
                key_data: bytes | None = raw
                if pair is not None:
                    key_data, bad = values.get(pair)
                    if bad is not None:
                        findings.append(bad)
                    handled.add(pair)
                check = check_chain(raw, now=self.now, warn_within=self.warn_within, key=key_data,
                                    label=key, key_label=pair or f"the private key in {key}")
                self._add(where, key, ObjectItemKind.KEYPAIR, check, findings)
                continue
            certs, _ = parse_certificates(raw, key)
            if _BUNDLISH.match(key) or (certs and all(_is_ca(c) for c in certs)):
                self._bundle_item(where, key, values)
            else:
                self._add(where, key, ObjectItemKind.CERTIFICATE,
                          check_chain(raw, now=self.now, warn_within=self.warn_within, label=key), [])

    def _add(self, where: _Where, key: str, kind: ObjectItemKind, check: BundleCheck | None,
             extra: Sequence[Finding]) -> None:
        self.items.append(object_item(namespace=where.namespace, object_kind=where.kind, object=where.name,
                                      key=key, kind=kind, check=check, extra=extra, now=self.now))


def object_item(
    *,
    namespace: str | None,
    object_kind: str,
    object: str,  # shadows the builtin on purpose: it is the JSON field
    key: str,
    kind: ObjectItemKind,
    check: BundleCheck | None,
    now: dt.datetime,
    extra: Sequence[Finding] = (),
) -> ObjectItem:
    """An item from a bundle check and findings of its own, with the status rule of node items."""
    findings = [*extra, *(check.findings if check is not None else ())]
    facts = check.facts if check is not None else None
    return ObjectItem(
        namespace=namespace, object_kind=object_kind, object=object, key=key, kind=kind,
        status=status_for(findings), facts=facts, chain=check.certificates if check is not None else (),
        findings=tuple(findings),
        residual_seconds=int((facts.not_after - now).total_seconds()) if facts is not None else None,
    )


@attrs.frozen
class _Where:
    namespace: str | None
    kind: str
    name: str


class _Values:
    """A ``data`` mapping whose values are decoded on demand, never kept."""

    def __init__(self, data: Mapping[str, Any], *, encoded: bool) -> None:
        self.data = data
        self.encoded = encoded

    def get(self, key: str, *, label: str | None = None) -> tuple[bytes | None, Finding | None]:
        value = self.data.get(key)
        shown = label or key
        if not isinstance(value, str):
            return None, make("bad-base64" if self.encoded else "not-pem", f"{shown} is not a string")
        if not self.encoded:
            return value.encode("utf-8", "replace"), None
        try:
            return base64.b64decode(value, validate=True), None
        except (binascii.Error, ValueError):
            return None, make("bad-base64", f"{shown} is not valid base64")


def _pair_key(key: str, data: Mapping[str, Any]) -> str | None:
    """The key holding the private key of the certificate in ``key``, by naming convention."""
    candidates: list[str] = []
    lower = key.lower()
    for cert_suffix, key_suffixes in ((".crt", (".key",)), (".cert", (".key",)), (".cer", (".key",)),
                                      ("-cert.pem", ("-key.pem",)), ("_cert.pem", ("_key.pem",)),
                                      (".pem", ("-key.pem", ".key", "_key.pem"))):
        if lower.endswith(cert_suffix):
            stem = key[: -len(cert_suffix)]
            candidates += [stem + s for s in key_suffixes]
    if lower in ("cert.pem", "certificate.pem", "cert", "certificate"):
        candidates += ["key.pem", "private.pem", "key"]
    return next((c for c in candidates if c in data and c != key), None)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _guess_kind(obj: Mapping[str, Any]) -> str | None:
    """The kind of a List item that does not say (API server lists omit it)."""
    if "webhooks" in obj:
        return None  # mutating or validating: only the list's kind can tell
    if "type" in obj and ("data" in obj or "stringData" in obj):
        return "Secret"
    if "binaryData" in obj or ("data" in obj and "type" not in obj and "spec" not in obj):
        return "ConfigMap"
    return None


# --------------------------------------------------------------------------------------
# Reading kubectl output as a stream


class _Reader:
    """``read(n) -> bytes`` over a binary or text stream."""

    def __init__(self, stream: IO[bytes] | IO[str]) -> None:
        self._stream = stream

    def read(self, n: int) -> bytes:
        chunk = self._stream.read(n)
        if isinstance(chunk, str):
            return chunk.encode("utf-8")
        return bytes(chunk or b"")


_WS = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


class _JSONObjects:
    """The objects of a JSON document (a List's items one by one, or single objects)."""

    def __init__(self, read: Callable[[int], bytes], first: bytes, path: str | None, limit: int) -> None:
        self._read = read
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._path = path
        self._limit = limit
        self._buf = ""
        self._pos = 0
        self._base = 0  # characters dropped before _buf, for error positions
        self._eof = False
        #: The top-level fields of the List being read (``kind``, ``metadata``...).
        self.fields: dict[str, Any] = {}
        self._feed(first)

    def _feed(self, data: bytes, final: bool = False) -> None:
        try:
            self._buf += self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise ParseError("not UTF-8 text", path=self._path) from None

    def _fill(self, at_least: int = 0) -> bool:
        if self._eof:
            return False
        if self._pos:
            self._base += self._pos
            self._buf = self._buf[self._pos:]
            self._pos = 0
        data = self._read(max(at_least, _CHUNK))
        if not data:
            self._eof = True
            self._feed(b"", final=True)
            return False
        self._feed(data)
        return True

    def _error(self, what: str) -> ParseError:
        return ParseError(f"not a kubectl JSON document: {what} at character {self._base + self._pos}",
                          path=self._path)

    def _peek(self) -> str:
        while True:
            match = _WS.match(self._buf, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def _value(self) -> Any:
        self._peek()  # raw_decode does not skip leading whitespace
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if self._eof:
                    raise ParseError(f"not valid JSON: {exc.msg} at character {self._base + exc.pos}",
                                     path=self._path) from None
                if len(self._buf) - self._pos > self._limit:
                    raise self._error(f"an object larger than {self._limit >> 20} MiB (or malformed JSON)") from None
                # Read at least as much again as the unfinished object: doubling keeps
                # the re-parsing of an object larger than a chunk linear overall.
                self._fill(len(self._buf) - self._pos)
                continue
            except (RecursionError, ValueError) as exc:  # nested too deep; a number with too many digits
                raise self._error(f"not valid JSON ({' '.join(str(exc).split())[:120]})") from None
            if end == len(self._buf) and not self._eof and self._fill():
                continue  # a number or literal might go on in the next chunk
            self._pos = end
            return value

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise self._error(f"expected {char!r}")
        self._pos += 1

    def __iter__(self) -> Iterator[tuple[dict[str, Any], str | None]]:
        """(object, the List's item kind if it says) pairs, in document order."""
        while True:
            c = self._peek()
            if c == "":
                return
            if c == "[":
                self._pos += 1
                yield from ((o, None) for o in self._array())
            elif c == "{":
                self._pos += 1
                yield from self._object()
            else:
                raise self._error("expected an object or a list")

    def _object(self) -> Iterator[tuple[dict[str, Any], str | None]]:
        fields: dict[str, Any] = {}
        is_list = False
        first = True
        while True:
            c = self._peek()
            if c == "}":
                self._pos += 1
                break
            if not first:
                self._expect(",")
            first = False
            key = self._value()
            if not isinstance(key, str):
                raise self._error("expected a field name")
            self._expect(":")
            if key == "items" and self._peek() == "[":
                self._pos += 1
                is_list = True
                self.fields = fields
                item_kind = _item_kind(fields.get("kind"))
                yield from ((o, item_kind) for o in self._array())
            else:
                fields[key] = self._value()
        if is_list:
            self.fields = fields
        else:
            yield fields, None

    def _array(self) -> Iterator[dict[str, Any]]:
        first = True
        while True:
            c = self._peek()
            if c == "]":
                self._pos += 1
                return
            if not first:
                self._expect(",")
            first = False
            value = self._value()
            if isinstance(value, dict):
                yield value


def _item_kind(list_kind: Any) -> str | None:
    if isinstance(list_kind, str) and list_kind.endswith("List") and len(list_kind) > 4:
        return list_kind[:-4]
    return None


def _lines(read: Callable[[int], bytes], first: bytes, path: str | None) -> Iterator[bytes]:
    pending = first
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            if pending:
                yield pending
            return
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        if len(pending) > MAX_OBJECT_BYTES:
            raise ParseError(f"a line longer than {MAX_OBJECT_BYTES >> 20} MiB", path=path)
        for line in lines:
            yield line + b"\n"


def _yaml_load(data: bytes, path: str | None) -> list[Any]:
    """Documents of one YAML object: kubepki's yamlutil, with the bound raised to MAX_OBJECT_BYTES."""
    from kubepki import pki as yamlutil

    if len(data) <= yamlutil.MAX_YAML_BYTES:
        return yamlutil.load_documents(data, path=path)
    if len(data) > MAX_OBJECT_BYTES:
        raise ParseError(f"an object larger than {MAX_OBJECT_BYTES >> 20} MiB", path=path)
    import yaml

    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    # As yamlutil: no aliases ("billion laughs"), no nesting deep enough to crash libyaml.
    yamlutil.check_events(data, path=path, error=ParseError)
    try:
        return [d for d in yaml.load_all(data, Loader=loader) if d is not None]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise ParseError(f"not valid YAML: {yamlutil.error_line(exc)}", path=path) from None


def _yaml_objects(lines: Iterable[bytes], path: str | None) -> Iterator[tuple[dict[str, Any], str | None]]:
    """kubectl YAML, a List's items parsed one at a time.

    kubectl (sigs.k8s.io/yaml) writes a List as ``items:`` at column 0 followed by
    block sequence entries (``- `` at one indentation), each item's lines indented
    deeper. Each entry is cut out, its ``- `` replaced by spaces, and parsed alone;
    anything else (single objects, ``---``-separated documents, flow-style
    ``items: [...]``) is parsed as whole documents.
    """
    split = _KubectlYaml(path)
    for line in lines:
        yield from split.feed(line)
    yield from split.flush()


_Parsed = Iterator[tuple[dict[str, Any], str | None]]


class _KubectlYaml:
    """The line-by-line state of :func:`_yaml_objects`: the document so far and the List item being cut out."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._reset()

    def _reset(self) -> None:
        self.doc: list[bytes] = []
        self.item: list[bytes] | None = None
        self.doc_size = self.item_size = 0
        self.in_items = False
        self.indent: int | None = None

    def feed(self, line: bytes) -> _Parsed:
        """The objects completed by ``line``."""
        if line[:3] in (b"---", b"...") and line[3:4] in (b"", b" ", b"\n", b"\r"):
            yield from self.flush()
            self._reset()
            return
        if self.in_items and (yield from self._item_line(line)):
            return
        if line.rstrip(b"\r\n") == b"items:":
            self.in_items, self.indent = True, None
            return
        self.doc.append(line)
        self.doc_size += len(line)
        if self.doc_size > MAX_OBJECT_BYTES:
            raise ParseError(f"a document larger than {MAX_OBJECT_BYTES >> 20} MiB", path=self.path)

    def _item_line(self, line: bytes) -> Generator[tuple[dict[str, Any], str | None], None, bool]:
        """Take ``line`` as part of the ``items:`` sequence; False when the sequence has ended before it."""
        body = line.lstrip(b" ")
        if not body.strip() or body.startswith(b"#"):
            if self.item is not None:
                self.item.append(line)
            return True
        depth = len(line) - len(body)
        dash = body[:2] == b"- " or body.rstrip(b"\r\n") == b"-"
        if self.indent is None and dash:
            self.indent = depth
        if self.indent is not None and depth == self.indent and dash:
            if self.item:
                yield from self._parse_item(self.item)
            self.item, self.item_size = [line[:depth] + b" " + line[depth + 1:]], len(line)
            return True
        if self.indent is not None and depth > self.indent and self.item is not None:
            self.item.append(line)
            self.item_size += len(line)
            if self.item_size > MAX_OBJECT_BYTES:
                raise ParseError(f"an object larger than {MAX_OBJECT_BYTES >> 20} MiB", path=self.path)
            return True
        if self.item:
            yield from self._parse_item(self.item)
        self.item, self.in_items = None, False
        return False

    def flush(self) -> _Parsed:
        """The objects still pending at the end of a document."""
        if self.item:
            yield from self._parse_item(self.item)
        if any(ln.strip() for ln in self.doc):
            yield from self._parse_doc(self.doc)

    def _parse_item(self, lines: list[bytes]) -> _Parsed:
        for value in _yaml_load(b"".join(lines), self.path):
            if isinstance(value, dict):
                yield value, None

    def _parse_doc(self, lines: list[bytes]) -> _Parsed:
        for value in _yaml_load(b"".join(lines), self.path):
            if not isinstance(value, dict):
                raise ParseError("not kubectl output: a YAML document is not an object or a List", path=self.path)
            items = value.get("items")
            if isinstance(items, list):
                kind = _item_kind(value.get("kind"))
                yield from ((o, kind) for o in items if isinstance(o, dict))
            elif "items" not in value:
                yield value, None


def iter_objects(
    source: Source, *, list_fields: dict[str, Any] | None = None
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """The objects in kubectl JSON or YAML output, one at a time, as ``(object, list item kind)``.

    ``source`` is the document (bytes), a path (``str`` or :class:`os.PathLike`; a
    ``str`` that starts with ``{``/``[`` or spans lines is taken as the document
    itself) or an open binary or text stream. JSON is recognised by its first
    character. The list item kind comes from the List's own kind (``SecretList``)
    when it precedes the items, as in API server responses. ``list_fields``, when
    given, receives the top-level fields of a JSON List (``kind``, ``metadata``
    with its ``continue`` token) once its items are read.

    Raises :class:`~kubepki.ParseError` for malformed input and
    :class:`~kubepki.ConfigError` when a path cannot be read.
    """
    stream, path, close = _open(source)
    try:
        read = _Reader(stream).read
        first = read(_CHUNK)
        if _looks_like_json(first):
            reader = _JSONObjects(read, first, path, MAX_OBJECT_BYTES)
            yield from reader
            if list_fields is not None:
                list_fields.update(reader.fields)
        else:
            yield from _yaml_objects(_lines(read, first, path), path)
    finally:
        if close:
            stream.close()


def _looks_like_json(head: bytes) -> bool:
    """JSON starts ``{"`` or ``[{``; YAML's flow style (``{apiVersion: v1}``) does not."""
    text = head.lstrip()
    if text[:1] not in (b"{", b"["):
        return False
    after = text[1:].lstrip()[:1]
    return after in (b'"', b"}", b"]", b"{", b"[", b"") if text[:1] == b"[" else after in (b'"', b"}", b"")


def _open(source: Source) -> tuple[IO[bytes] | IO[str], str | None, bool]:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source), None, True
    if isinstance(source, str) and (source.lstrip()[:1] in ("{", "[") or "\n" in source):
        return io.StringIO(source), None, True
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return path.open("rb"), str(path), True
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", path=str(path)) from None
    if not callable(getattr(source, "read", None)):
        raise ConfigError("source must be bytes, a path, a document or an open stream, not "
                          f"{type(source).__name__}")
    return source, getattr(source, "name", None) if isinstance(getattr(source, "name", None), str) else None, False


def _source_name(source: Source) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    if isinstance(source, str) and (source.lstrip()[:1] in ("{", "[") or "\n" in source):
        return "<string>"
    if isinstance(source, str | os.PathLike):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def check_objects(
    source: Source,
    *,
    now: dt.datetime | None = None,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
    namespace: str | None = None,
) -> ObjectInventory:
    """Check every certificate in kubectl's JSON or YAML output (see the module docs).

    ``source`` is what :func:`iter_objects` takes; ``namespace`` keeps only that
    namespace's objects (and so no cluster-scoped ones). Damaged values become
    findings on their items; malformed JSON or YAML raises
    :class:`~kubepki.ParseError`, an unreadable path :class:`~kubepki.ConfigError`.
    """
    checker = _Checker(_utc(now), warn_within, namespace)
    for obj, kind in iter_objects(source):
        checker.check(obj, kind)
    return checker.inventory(_source_name(source))


def check_object_iter(
    objects: Iterable[Mapping[str, Any]],
    *,
    source: str,
    now: dt.datetime | None = None,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
    namespace: str | None = None,
    notes: Sequence[str] = (),
) -> ObjectInventory:
    """Check objects that are already decoded (each with its ``kind``), one at a time.

    This is what :func:`check_objects` and :func:`kubepki.check_live` share;
    ``source`` names where the objects came from and ``notes`` are added to the
    inventory's (they are read after the objects, so an iterator may add to them).
    """
    checker = _Checker(_utc(now), warn_within, namespace)
    for obj in objects:
        checker.check(obj)
    checker.notes.extend(notes)
    return checker.inventory(source)
