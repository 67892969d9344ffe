"""Inspecting a node: one inventory item per catalog entry, with facts and findings.

>>> import datetime as dt, tempfile, kubepki
>>> from kubepki import testing
>>> when = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
>>> demo = testing.build_node(tempfile.mkdtemp(), issued_at=when)
>>> inv = kubepki.inspect(demo.root, now=when)
>>> inv["apiserver"].status.value, inv.outcome.value
('ok', 'ok')

One unreadable or damaged file gives findings on its own item and never stops
the rest of the inventory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs
from cryptography import x509

from kubepki import catalog as _catalog
from kubepki._args import instance
from kubepki._clock import utc as _utc
from kubepki._report import Block, Outcome, Report, Table
from kubepki.catalog import CatalogEntry, FileRole, KeyUsage, Kind, Scope
from kubepki.errors import ConfigError, KubeconfigError, NodeError, ParseError
from kubepki.inspection._cis import CisReport, evaluate, files_by_path, with_cis
from kubepki.inspection._findings import (
    Finding,
    HasFindings,
    Severity,
    Status,
    make,
    outcome_for,
    status_counts,
    status_for,
    worst_first,
)
from kubepki.inspection._kubelet import kubelet_findings
from kubepki.node import LocalFS, Node, NodeProfile
from kubepki.pki import (
    CertFacts,
    Kubeconfig,
    PrivateKey,
    PublicKey,
    cert_facts,
    is_ip,
    iso,
    key_algorithm,
    load_certificate,
    load_private_key,
    load_public_key,
    parse_kubeconfig,
    public_key_der,
    signed_by,
)

__all__ = ["DEFAULT_WARN_WITHIN", "Inventory", "InventoryItem", "ItemFile", "ItemFileRole", "inspect"]

#: Items expiring within this are reported as warnings (as kubeadm's docs suggest).
DEFAULT_WARN_WITHIN: dt.timedelta = dt.timedelta(days=30)
_MAX_FILE = 1 << 20


class ItemFileRole(str, enum.Enum):
    """What one file behind an inventory item holds for it.

    The catalog's :class:`~kubepki.catalog.FileRole` values, plus ``referenced``:
    a file a kubeconfig names (its client certificate, key or CA), which is no
    file of the catalog entry itself.
    """

    CERT = "cert"
    KEY = "key"
    PUBLIC_KEY = "public_key"
    KUBECONFIG = "kubeconfig"
    CERT_AND_KEY = "cert_and_key"
    REFERENCED = "referenced"

    @classmethod
    def of(cls, role: FileRole) -> ItemFileRole:
        """The role a catalog file with ``role`` has among an item's files."""
        return cls(role.value)


@attrs.frozen(kw_only=True)
class ItemFile:
    """One file behind an item as found on the node."""

    path: str
    role: ItemFileRole
    exists: bool
    size: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime: float | None = None
    sha256: str | None = None
    #: The symlink's target as stored, when the path is a symlink.
    link_target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (mode as an octal string)."""
        out = attrs.asdict(self)
        out["role"] = self.role.value
        out["mode"] = None if self.mode is None else format(self.mode, "04o")
        return out


@attrs.frozen(kw_only=True)
class InventoryItem(HasFindings):
    """The state of one catalog entry on one node."""

    entry: CatalogEntry
    #: The main file's node path (without the root prefix).
    path: str
    status: Status
    facts: CertFacts | None = None
    findings: tuple[Finding, ...] = ()
    externally_managed: bool = False
    files: tuple[ItemFile, ...] = ()
    #: Residual validity in seconds at inspection time (None without a certificate).
    residual_seconds: int | None = None
    key_algorithm: str | None = None

    @property
    def name(self) -> str:
        """The catalog name."""
        return self.entry.name

    @property
    def kind(self) -> Kind:
        """The catalog kind."""
        return self.entry.kind

    @property
    def signer(self) -> str | None:
        """The catalog name of the signing CA."""
        return self.entry.signer

    @property
    def scope(self) -> Scope:
        """Shared or node-specific."""
        return self.entry.scope

    @property
    def not_before(self) -> dt.datetime | None:
        """NotBefore of the certificate, if there is one."""
        return self.facts.not_before if self.facts else None

    @property
    def not_after(self) -> dt.datetime | None:
        """NotAfter of the certificate, if there is one."""
        return self.facts.not_after if self.facts else None

    def to_dict(self) -> dict[str, Any]:
        """The item as in kubepki's JSON output (see docs/json.md)."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "path": self.path,
            "signer": self.signer,
            "scope": self.scope.value,
            "not_before": iso(self.not_before) if self.not_before else None,
            "not_after": iso(self.not_after) if self.not_after else None,
            "residual_seconds": self.residual_seconds,
            "status": self.status.value,
            "externally_managed": self.externally_managed,
            "required": self.entry.required,
            "renewable": self.entry.renewable,
            "key_algorithm": self.key_algorithm,
            "findings": [f.to_dict() for f in self.findings],
            "certificate": self.facts.to_dict() if self.facts else None,
            "files": [f.to_dict() for f in self.files],
        }


@attrs.frozen(kw_only=True)
class Inventory(Report):
    """Every catalog item of one node at one moment."""

    node: str | None
    root: str
    now: dt.datetime
    warn_within: dt.timedelta
    profile: NodeProfile = attrs.field(repr=False)
    items: tuple[InventoryItem, ...] = attrs.field(repr=False)
    #: The CIS Kubernetes Benchmark view of the node (``kubepki check --benchmark``); its findings are on the items.
    cis: CisReport | None = attrs.field(default=None, repr=False, eq=False)

    def __iter__(self) -> Iterator[InventoryItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, name: str) -> InventoryItem:
        for item in self.items:
            if item.name == name:
                return item
        _catalog.get(name)  # raises UnknownItemError for names kubepki does not know
        raise KeyError(f"{name} does not apply to this node")

    def __contains__(self, name: object) -> bool:
        return any(item.name == name for item in self.items)

    def __repr__(self) -> str:
        counts = self.counts()
        summary = ", ".join(f"{k}={v}" for k, v in counts.items() if v)
        return f"<Inventory node={self.node!r} items={len(self.items)} {summary}>"

    def counts(self) -> dict[str, int]:
        """How many items have each status."""
        return status_counts(self.items)

    @property
    def findings(self) -> list[tuple[InventoryItem, Finding]]:
        """Every finding with its item, worst first."""
        return worst_first(self.items)

    @property
    def outcome(self) -> Outcome:
        """Failed when an item is expired, invalid or required and missing; warning when one only warns."""
        return outcome_for(self.items, required=lambda item: item.entry.required)

    def to_dict(self) -> dict[str, Any]:
        """The inventory as in kubepki's JSON output (see docs/json.md)."""
        p = self.profile
        return {
            "now": iso(self.now),
            "node": self.node,
            "root": self.root,
            "kubernetes_version": str(p.kubernetes_version),
            "version_source": p.version_source,
            "external_etcd": p.external_etcd,
            "role": p.role.value,
            "role_source": p.role_source,
            "kubelet": p.kubelet.to_dict(),
            "cert_dir": str(p.cert_dir),
            "warn_within_seconds": int(self.warn_within.total_seconds()),
            "notes": list(p.notes),
            "summary": self.counts(),
            "items": [i.to_dict() for i in self.items],
        }

    def rows(self) -> Table:
        """Every item with its status, expiry and findings (the notebook table)."""
        from kubepki.inspection._render import inventory_rows

        return inventory_rows(self)

    def blocks(self) -> list[Block]:
        """kubeadm's two expiry tables, then the findings."""
        from kubepki.inspection._render import inventory_blocks

        return inventory_blocks(self)

    def table(self) -> str:
        """The expiry tables in ``kubeadm certs check-expiration``'s layout, then findings."""
        return self.text()

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with one row per item (see :func:`kubepki.inspection.frames.to_dataframe`).

        Needs pandas (``pip install 'kubepki[notebook]'``); raises
        :class:`~kubepki.ConfigError` without it.
        """
        from kubepki.inspection.frames import to_dataframe

        return to_dataframe(self)

    def timeline(
        self,
        *,
        now: dt.datetime | None = None,
        warn_within: dt.timedelta | None = None,
        ax: Any = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Any:
        """The expiry timeline of this inventory as a matplotlib figure (see :func:`kubepki.timeline.timeline`).

        Needs matplotlib (``pip install 'kubepki[notebook]'``); saves a PNG too when
        ``path`` is given.
        """
        from kubepki.inspection.timeline import timeline

        return timeline(self, now=now, warn_within=warn_within, ax=ax, path=path)


# --------------------------------------------------------------------------------------
# Inspection proper


def inspect(
    node: Node | str | os.PathLike[str],
    *,
    now: dt.datetime | None = None,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
    names: Iterable[str] | None = None,
) -> Inventory:
    """Inspect every catalog item that applies to ``node`` (a :class:`Node` or a root path).

    ``now`` defaults to the current time; ``names`` limits the inventory to some
    catalog names. Raises :class:`~kubepki.NodeError` only when the root itself
    cannot be read; every problem with a file becomes a finding on its item.
    """
    n = Node.coerce(node)
    n.check_root()
    when = _utc(now)
    wanted = None if names is None else {_catalog.get(x).name for x in names}
    # Read-only from here on: each directory above the files read is resolved once, not once per file.
    with n.fs.reading() if isinstance(n.fs, LocalFS) else contextlib.nullcontext():
        return _inspect(n, when, warn_within, wanted)


def _inspect(n: Node, when: dt.datetime, warn_within: dt.timedelta, wanted: set[str] | None) -> Inventory:
    profile = n.profile
    ctx = _Context(n, profile, when, warn_within)
    entries = profile.entries()
    items = kubelet_findings(n, profile, [ctx.inspect_entry(e) for e in entries if wanted is None or e.name in wanted],
                             now=when, warn_within=warn_within)
    cis = evaluate(n, profile, files_by_path(items))  # the CIS benchmark's file and TLS rules (_cis)
    items = with_cis(items, cis, fallback=wanted is None)
    return Inventory(
        node=profile.name,
        root=str(n.root),
        now=when,
        warn_within=warn_within,
        profile=profile,
        items=tuple(items),
        cis=cis,
    )


@attrs.define
class _Loaded:
    """A file read once per inspection."""

    info: ItemFile
    data: bytes | None = None
    error: Finding | None = None


@attrs.define
class _CA:
    cert: x509.Certificate | None
    key_present: bool
    usable: bool


class _Context:
    """Caches shared by the items of one inspection (CA certificates, file reads)."""

    def __init__(self, node: Node, profile: NodeProfile, now: dt.datetime,
                 warn_within: dt.timedelta) -> None:
        self.node = node
        self.profile = profile
        self.now = now
        self.warn_within = warn_within
        self._files: dict[tuple[PurePosixPath, ItemFileRole], _Loaded] = {}
        self._cas: dict[str, _CA] = {}
        self._facts: dict[int, tuple[x509.Certificate, CertFacts]] = {}
        self._parsed: dict[bytes, x509.Certificate] = {}
        self._keys: dict[bytes, PrivateKey] = {}
        # One read per file: an item's file and another item's reference to it (kubelet.conf's PEM).
        self._reads: dict[PurePosixPath, _Loaded] = {}
        self._san_values = profile.san_values()

    # -- files ---------------------------------------------------------------------

    def load(self, path: PurePosixPath, role: ItemFileRole) -> _Loaded:
        key = (path, role)
        if key not in self._files:
            read = self._reads.get(path)
            if read is None:
                read = self._reads[path] = self._load(path, role)
            elif read.info.role is not role:
                read = _Loaded(attrs.evolve(read.info, role=role), data=read.data, error=read.error)
            self._files[key] = read
        return self._files[key]

    def _load(self, path: PurePosixPath, role: ItemFileRole) -> _Loaded:
        try:
            found = self.node.fs.read_file(path, limit=_MAX_FILE)
        except NodeError as exc:
            return _Loaded(ItemFile(path=str(path), role=role, exists=True),
                           error=make("unreadable", exc.message))
        if found is None:
            return _Loaded(ItemFile(path=str(path), role=role, exists=False))
        st, link, data = found
        ok = data if st.is_file and data is not None and len(data) <= _MAX_FILE else None
        info = ItemFile(path=str(path), role=role, exists=True, size=st.size if ok is None else len(ok),
                        mode=st.mode, uid=st.uid, gid=st.gid, mtime=st.mtime, link_target=link,
                        sha256=None if ok is None else hashlib.sha256(ok).hexdigest())
        if not st.is_file:
            return _Loaded(info, error=make("unreadable", f"{path} is not a regular file"))
        if ok is None:
            return _Loaded(info, error=make("too-large", f"{path} is {st.size} bytes"))
        return _Loaded(info, data=ok)

    def cert(self, data: bytes, shown: str) -> x509.Certificate:
        """load_certificate, parsed once per distinct content (CAs are read many times)."""
        cert = self._parsed.get(data)
        if cert is None:
            cert = load_certificate(data, path=shown)
            self._parsed[data] = cert
        return cert

    def key(self, data: bytes, shown: str) -> PrivateKey:
        """load_private_key, parsed once per distinct content (a combined PEM is read as two items)."""
        key = self._keys.get(data)
        if key is None:
            key = load_private_key(data, path=shown)
            self._keys[data] = key
        return key

    # -- CAs -------------------------------------------------------------------------

    def ca(self, name: str) -> _CA:
        if name not in self._cas:
            entry = _catalog.get(name)
            cert_path = self.node.path_of(entry, FileRole.CERT)
            key_path = self.node.path_of(entry, FileRole.KEY)
            loaded = self.load(cert_path, ItemFileRole.CERT)
            cert = None
            if loaded.data is not None:
                try:
                    cert = self.cert(loaded.data, str(cert_path))
                except ParseError:
                    cert = None
            key_info = self.load(key_path, ItemFileRole.KEY).info
            self._cas[name] = _CA(cert=cert, key_present=key_info.exists, usable=cert is not None)
        return self._cas[name]

    # -- entries ---------------------------------------------------------------------

    def inspect_entry(self, entry: CatalogEntry) -> InventoryItem:
        if entry.kind is Kind.KEYPAIR:
            return self._keypair(entry)
        if entry.kind is Kind.KUBECONFIG:
            return self._kubeconfig(entry)
        return self._certificate(entry)

    def _missing(self, entry: CatalogEntry, path: PurePosixPath, files: Sequence[ItemFile]) -> InventoryItem:
        severity = Severity.ERROR if entry.required else Severity.INFO
        why = "" if entry.required else f" (optional: {entry.description})"
        return InventoryItem(
            entry=entry, path=str(path), status=Status.MISSING, files=tuple(files),
            findings=(make("missing", f"{path} does not exist{why}", severity),),
            externally_managed=self._externally_managed(entry),
        )

    def _externally_managed(self, entry: CatalogEntry) -> bool:
        if entry.signer is None or not _catalog.get(entry.signer).key_expected(self.profile.role):
            return False  # the CA's key is not on nodes of this role by design, not kept outside kubeadm
        ca = self.ca(entry.signer)
        return ca.cert is not None and not ca.key_present

    def _key_absent(self, entry: CatalogEntry, key_shown: PurePosixPath) -> list[Finding]:
        if entry.is_ca and not entry.key_expected(self.profile.role):
            return []  # a worker has ca.crt alone (kubeadm join fetches only the certificate)
        if entry.is_ca:
            return [make("external-ca", f"{key_shown} is absent: {entry.name} is an "
                         "external CA and the certificates it signs are managed outside kubeadm")]
        return [make("key-missing", f"{key_shown} does not exist")]

    def _certificate(self, entry: CatalogEntry) -> InventoryItem:
        combined = entry.file(FileRole.CERT_AND_KEY)
        cert_path = self.node.path_of(entry, FileRole.CERT_AND_KEY if combined else FileRole.CERT)
        cert_file = self.load(cert_path, ItemFileRole.CERT_AND_KEY if combined else ItemFileRole.CERT)
        files = [cert_file.info]
        key_file: _Loaded | None = None
        if not combined:
            key_path = self.node.path_of(entry, FileRole.KEY)
            key_file = self.load(key_path, ItemFileRole.KEY)
            files.append(key_file.info)
        if not cert_file.info.exists:
            return self._missing(entry, cert_path, files)
        findings: list[Finding] = []
        if cert_file.data is None:
            return self._finish(entry, cert_path, None, _errors(cert_file), files)
        try:
            cert = self.cert(cert_file.data, str(cert_path))
        except ParseError as exc:
            return self._finish(entry, cert_path, None, [make(_code(exc), exc.message)], files)
        # The private key.
        key: PrivateKey | None = None
        key_data: bytes | None = cert_file.data
        key_shown = cert_path
        if key_file is not None:
            key_data, key_shown = key_file.data, PurePosixPath(key_file.info.path)
            if not key_file.info.exists:
                findings.extend(self._key_absent(entry, key_shown))
            elif key_file.error is not None:
                findings.append(key_file.error)
        if key_data is not None:
            try:
                key = self.key(key_data, str(key_shown))
            except ParseError as exc:
                findings.append(make(_code(exc, "bad-key"), f"{key_shown}: {exc.message}"))
        if key is not None and public_key_der(key) != public_key_der(_pub(cert)):
            findings.append(make("key-mismatch", f"{key_shown} does not match {cert_path}"))
        findings.extend(self._cert_checks(entry, cert, str(cert_path)))
        return self._finish(entry, cert_path, cert, findings, files)

    def _cert_checks(self, entry: CatalogEntry, cert: x509.Certificate, shown: str) -> list[Finding]:
        out: list[Finding] = []
        facts_nb, facts_na = cert.not_valid_before_utc, cert.not_valid_after_utc
        if self.now < facts_nb:
            out.append(make("not-yet-valid", f"{shown} is valid only from {iso(facts_nb)}"))
        if self.now >= facts_na:
            out.append(make("expired", f"{shown} expired on {iso(facts_na)}"))
        elif facts_na - self.now <= self.warn_within:
            from kubepki.inspection._render import short_human_duration  # the tables' rendering, one for all

            left = short_human_duration((facts_na - self.now).total_seconds())
            out.append(make("expiring", f"{shown} expires in {left}, on {iso(facts_na)}"))
        # Signature and the signing CA.
        if entry.is_ca:
            if not _basic_ca(cert):
                out.append(make("not-a-ca", f"{shown} lacks CA:TRUE"))
            if not signed_by(cert, cert):
                out.append(make("ca-not-self-signed", f"{shown} is issued by {cert.issuer.rfc4514_string()}"))
        elif entry.signer is not None:
            ca = self.ca(entry.signer)
            if ca.cert is None:
                out.append(make("signer-unavailable", f"{entry.signer} is missing or unusable; "
                                "signature not checked"))
            elif not signed_by(cert, ca.cert):
                out.append(make("wrong-signer", f"{shown} is not signed by {entry.signer} "
                                f"(issuer {cert.issuer.rfc4514_string()})"))
            elif ca.cert.not_valid_after_utc < facts_na:
                out.append(make("ca-expires-before-leaf",
                                f"{entry.signer} expires on {iso(ca.cert.not_valid_after_utc)}, "
                                f"before this certificate ({iso(facts_na)})"))
        out.extend(self._profile_checks(entry, cert, shown))
        return out

    def facts(self, cert: x509.Certificate) -> CertFacts:
        """cert_facts, computed once per certificate object."""
        key = id(cert)
        cached = self._facts.get(key)
        if cached is None or cached[0] is not cert:
            cached = (cert, cert_facts(cert))
            self._facts[key] = cached
        return cached[1]

    def _profile_checks(self, entry: CatalogEntry, cert: x509.Certificate, shown: str) -> list[Finding]:
        """Subject, usages and SANs against the catalog's rules."""
        out: list[Finding] = []
        if entry.subject is None:
            return out
        facts = self.facts(cert)
        expected_cn = entry.subject.render_cn(self.profile.name)
        if expected_cn is not None and facts.common_name != expected_cn:
            out.append(make("unexpected-subject", f"{shown} has CN {facts.common_name!r}, "
                            f"kubeadm writes {expected_cn!r}"))
        orgs = set(entry.subject.organizations_for(self.profile.kubernetes_version))
        if set(facts.organizations) != orgs:
            out.append(make("unexpected-organization",
                            f"{shown} has O={sorted(facts.organizations)}, kubeadm "
                            f"{self.profile.kubernetes_version} writes O={sorted(orgs)}"))
        # Key encipherment is an RSA usage (RFC 5480 forbids it for EC keys): the kubelet asks for it only
        # with an RSA key (client-go util/certificate's usages), so its ECDSA certificates rightly lack it.
        wanted = [k for k in entry.key_usages
                  if k is not KeyUsage.KEY_ENCIPHERMENT or facts.key_algorithm.startswith("RSA-")]
        missing_ku = sorted(k.value for k in wanted if k.value not in facts.key_usages)
        missing_eku = sorted(e.value for e in entry.extended_key_usages
                             if e.value not in facts.extended_key_usages)
        if missing_ku or missing_eku:
            out.append(make("missing-usage", f"{shown} lacks " + ", ".join(missing_ku + missing_eku)))
        dns, ips = entry.sans.render(self._san_values)
        dns |= self._config_sans(entry, ip=False)
        ips |= self._config_sans(entry, ip=True)
        absent = sorted(d for d in dns if d not in facts.dns_names) + sorted(
            i for i in ips if i not in facts.ip_addresses
        )
        if absent:
            out.append(make("missing-san", f"{shown} lacks SAN {', '.join(absent)}"))
        return out

    def _config_sans(self, entry: CatalogEntry, *, ip: bool) -> set[str]:
        cfg = self.profile.config
        if cfg is None:
            return set()
        values: list[str] = []
        for field in entry.sans.from_config:
            if field == "controlPlaneEndpoint" and cfg.control_plane_host:
                values.append(cfg.control_plane_host)
            elif field == "apiServer.certSANs":
                values.extend(cfg.cert_sans)
            elif field == "etcd.local.serverCertSANs":
                values.extend(cfg.etcd_server_cert_sans)
            elif field == "etcd.local.peerCertSANs":
                values.extend(cfg.etcd_peer_cert_sans)
        return {v for v in values if is_ip(v) == ip}

    def _kubeconfig(self, entry: CatalogEntry) -> InventoryItem:  # noqa: C901  -- one check per kubeconfig field, in kubeadm's order
        path = self.node.path_of(entry)
        loaded = self.load(path, ItemFileRole.KUBECONFIG)
        files = [loaded.info]
        if not loaded.info.exists:
            return self._missing(entry, path, files)
        if loaded.data is None:
            return self._finish(entry, path, None, _errors(loaded), files)
        try:
            kc = parse_kubeconfig(loaded.data, path=str(path))
        except KubeconfigError as exc:
            code = "bad-base64" if "base64" in exc.message else "invalid-kubeconfig"
            return self._finish(entry, path, None, [make(code, exc.message)], files)
        findings: list[Finding] = []
        cert_cred, key_cred = kc.client_certificate, kc.client_key
        if cert_cred is None or key_cred is None:
            what = "client certificate" if cert_cred is None else "client key"
            return self._finish(entry, path, None, [make("no-client-certificate", f"{path} has no {what}")],
                                files)
        referenced = [c.file for c in (cert_cred, key_cred, kc.ca) if c is not None and c.file]
        kubelet_pem = self.node.path_of("kubelet-client-current.pem")
        if entry.name == "kubelet.conf" and cert_cred.embedded:
            findings.append(make("kubelet-client-embedded",
                                 f"{path} embeds its client certificate, which the kubelet never rotates; "
                                 f"point it at {kubelet_pem} (kubernetes/kubeadm#1753)"))
        if referenced and not (entry.name == "kubelet.conf" and set(referenced) <= {kubelet_pem}):
            findings.append(make("kubeconfig-file-reference",
                                 f"{path} references {', '.join(sorted({str(p) for p in referenced}))}"))
        cert_data = self._cred_bytes(cert_cred, files, findings, "client certificate")
        key_data = self._cred_bytes(key_cred, files, findings, "client key")
        if cert_data is None:
            return self._finish(entry, path, None, findings, files)
        shown = str(cert_cred.file) if cert_cred.file else f"{path} (client-certificate-data)"
        try:
            cert = self.cert(cert_data, shown)  # kubelet.conf's is kubelet-client-current.pem's: parsed once
        except ParseError as exc:
            findings.append(make(_code(exc), f"{shown}: {exc.message}"))
            return self._finish(entry, path, None, findings, files)
        if key_data is not None:
            try:
                key = self.key(key_data, str(key_cred.file or path))
            except ParseError as exc:
                findings.append(make(_code(exc, "bad-key"), f"client key of {path}: {exc.message}"))
            else:
                if public_key_der(key) != public_key_der(_pub(cert)):
                    findings.append(make("key-mismatch", f"the client key of {path} does not match its certificate"))
        findings.extend(self._kubeconfig_ca(kc, files, findings))
        findings.extend(self._cert_checks(entry, cert, shown))
        return self._finish(entry, path, cert, findings, files)

    def _cred_bytes(self, cred: Any, files: list[ItemFile], findings: list[Finding], what: str) -> bytes | None:
        if cred.data is not None:
            return bytes(cred.data)
        loaded = self.load(cred.file, ItemFileRole.REFERENCED)
        if loaded.info not in files:
            files.append(loaded.info)
        if not loaded.info.exists:
            findings.append(make("missing", f"{what} file {cred.file} does not exist"))
            return None
        if loaded.error is not None:
            findings.append(loaded.error)
            return None
        return loaded.data

    def _kubeconfig_ca(self, kc: Kubeconfig, files: list[ItemFile], findings: list[Finding]) -> list[Finding]:
        if kc.ca is None:
            return []
        data = self._cred_bytes(kc.ca, files, findings, "certificate authority")
        if data is None:
            return []
        ca = self.ca("ca")
        try:
            embedded = self.cert(data, kc.path or "kubeconfig")
        except ParseError as exc:
            return [make(_code(exc), f"the CA of {kc.path}: {exc.message}")]
        if ca.cert is not None and embedded != ca.cert:
            return [make("kubeconfig-ca-mismatch",
                         f"{kc.path} trusts {embedded.subject.rfc4514_string()} (serial "
                         f"{embedded.serial_number:x}), not the current ca.crt (serial {ca.cert.serial_number:x})")]
        return []

    def _keypair(self, entry: CatalogEntry) -> InventoryItem:
        key_path = self.node.path_of(entry, FileRole.KEY)
        pub_path = self.node.path_of(entry, FileRole.PUBLIC_KEY)
        key_file, pub_file = self.load(key_path, ItemFileRole.KEY), self.load(pub_path, ItemFileRole.PUBLIC_KEY)
        files = [key_file.info, pub_file.info]
        if not key_file.info.exists or not pub_file.info.exists:
            absent = key_path if not key_file.info.exists else pub_path
            return self._missing(entry, absent, files)
        findings: list[Finding] = [f for f in (key_file.error, pub_file.error) if f is not None]
        key: PrivateKey | None = None
        pub: PublicKey | None = None
        if key_file.data is not None:
            try:
                key = self.key(key_file.data, str(key_path))
            except ParseError as exc:
                findings.append(make(_code(exc, "bad-key"), f"{key_path}: {exc.message}"))
        if pub_file.data is not None:
            try:
                pub = load_public_key(pub_file.data, path=str(pub_path))
            except ParseError as exc:
                findings.append(make(_code(exc, "bad-key"), f"{pub_path}: {exc.message}"))
        if key is not None and pub is not None and public_key_der(key) != public_key_der(pub):
            findings.append(make("sa-key-mismatch", f"{pub_path} is not the public half of {key_path}"))
        algo = key_algorithm(key) if key is not None else (key_algorithm(pub) if pub is not None else None)
        item = self._finish(entry, key_path, None, findings, files)
        return attrs.evolve(item, key_algorithm=algo)

    def _finish(self, entry: CatalogEntry, path: PurePosixPath, cert: x509.Certificate | None,
                findings: list[Finding], files: Sequence[ItemFile]) -> InventoryItem:
        facts = self.facts(cert) if cert is not None else None
        return InventoryItem(
            entry=entry,
            path=str(path),
            status=status_for(findings),
            facts=facts,
            findings=tuple(findings),
            externally_managed=(
                self._externally_managed(entry) if not entry.is_ca
                else any(f.code == "external-ca" for f in findings)
            ),
            files=tuple(files),
            residual_seconds=(
                int((facts.not_after - self.now).total_seconds()) if facts is not None else None
            ),
            key_algorithm=facts.key_algorithm if facts else None,
        )


def _errors(loaded: _Loaded) -> list[Finding]:
    return [loaded.error] if loaded.error is not None else [make("unreadable", f"{loaded.info.path}: no data")]


def _code(exc: ParseError, default: str = "bad-certificate") -> str:
    code = getattr(exc, "code", "malformed")
    return default if code == "malformed" else code


def _pub(cert: x509.Certificate) -> PublicKey:
    return cert.public_key()  # type: ignore[return-value]


def _basic_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def compare_nodes(inventories: Sequence[Inventory]) -> Mapping[str, Mapping[str, Any]]:
    """For each item name: whether its files are identical on every node.

    Shared items (CAs, ``sa``) should be identical; node items should differ.
    Returns ``{name: {"scope", "identical", "digests": {node: sha256...}}}``.
    """
    if isinstance(inventories, str | bytes) or not isinstance(inventories, Iterable):
        raise ConfigError(f"inventories must be a sequence of Inventory, not {type(inventories).__name__}")
    inventories = [instance(inv, Inventory, "each of inventories", "from inspect") for inv in inventories]
    out: dict[str, dict[str, Any]] = {}
    names = {i.name for inv in inventories for i in inv.items}
    for name in sorted(names):
        digests: dict[str, str | None] = {}
        scope = None
        for idx, inv in enumerate(inventories):
            if name not in inv:
                continue
            item = inv[name]
            scope = item.scope.value
            joined = "".join(f.sha256 or "-" for f in item.files)
            digests[inv.node or f"node{idx}"] = hashlib.sha256(joined.encode()).hexdigest()
        values = list(digests.values())
        out[name] = {"scope": scope, "identical": len(set(values)) == 1, "digests": digests}
    return out
