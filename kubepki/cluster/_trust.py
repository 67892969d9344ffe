"""The cluster's trust: would every TLS connection between its components succeed?

Every edge is judged from the files each side loads: the client's certificate against the
CAs the server trusts (``client-auth``), and the server's certificate against the CAs the
client trusts (``server-auth``). The edges of a kubeadm cluster:

- ``kubeconfig``: every kubeconfig on every node -> the kube-apiserver(s) its server names
  (every kube-apiserver when it names a load balancer or another address): its client
  certificate against ``--client-ca-file``, ``--tls-cert-file`` against its
  ``certificate-authority(-data)``;
- ``apiserver-etcd``: kube-apiserver -> etcd: ``--etcd-certfile`` against etcd's
  ``--trusted-ca-file``, etcd's ``--cert-file`` against ``--etcd-cafile``;
- ``apiserver-kubelet``: kube-apiserver -> every kubelet: ``--kubelet-client-certificate``
  against the kubelet's ``authentication.x509.clientCAFile``; the kubelet's serving
  certificate against ``--kubelet-certificate-authority`` (kubeadm leaves it unset: the
  kube-apiserver then does not verify kubelets, ``not-verified``);
- ``front-proxy``: kube-apiserver -> aggregated API servers: ``--proxy-client-cert-file``
  against ``--requestheader-client-ca-file`` of every kube-apiserver (aggregated API servers
  read it from the ``extension-apiserver-authentication`` ConfigMap, which each kube-apiserver
  writes); their serving certificates are checked against their APIService's caBundle, in the
  API, not in the nodes' files (``not-on-nodes``; ``kubepki check-objects`` judges them);
- ``etcd-peer``: each etcd member -> each other: ``--peer-cert-file`` against the other's
  ``--peer-trusted-ca-file``, both ways;
- ``etcd-healthcheck``: etcd's healthcheck client (kubeadm, etcdctl) -> its node's etcd:
  ``etcd/healthcheck-client.crt`` against ``--trusted-ca-file``, ``--cert-file`` against
  ``etcd/ca.crt``.

A node without a component's manifest (a tree without ``/etc/kubernetes/manifests``) is judged
by kubeadm's default files for that component, and the report says so in its notes.

"Issued by" is what Go's ``crypto/x509`` checks: the signature verifies with a CA's key and
the names match (through intermediates the certificate file carries, each a CA), every
certificate on the way is valid at ``now``, and the extended key usage of each that has one
allows the direction (``clientAuth``, ``serverAuth``). A bundle of several CAs trusts what
any of them issued.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubepki import catalog as _catalog
from kubepki._clock import utc as _utc
from kubepki._report import Cell, Line, Outcome, Report, Table, render_text
from kubepki.catalog import Component, FileRole, Kind, NodeRole
from kubepki.cluster._cluster import Cluster, _reach, _workers
from kubepki.errors import KubepkiError
from kubepki.node import Node, NodeProfile
from kubepki.pki import (
    CERT_PARSE_ERRORS,
    MAX_PEM_BYTES,
    iso,
    load_certificates,
    parse_kubeconfig,
    signed_by,
)

__all__ = ["Direction", "EdgeKind", "TrustCheck", "TrustEdge", "TrustFile", "TrustReport", "Verdict",
           "check_trust"]


class EdgeKind(str, enum.Enum):
    """Which connection of the cluster an edge is."""

    KUBECONFIG = "kubeconfig"
    APISERVER_ETCD = "apiserver-etcd"
    APISERVER_KUBELET = "apiserver-kubelet"
    FRONT_PROXY = "front-proxy"
    ETCD_PEER = "etcd-peer"
    ETCD_HEALTHCHECK = "etcd-healthcheck"


class Direction(str, enum.Enum):
    """Which side's certificate a check judges."""

    #: The client's certificate, against the CAs the server trusts.
    CLIENT_AUTH = "client-auth"
    #: The server's certificate, against the CAs the client trusts.
    SERVER_AUTH = "server-auth"


class Verdict(str, enum.Enum):
    """What a check found."""

    TRUSTED = "trusted"
    #: The handshake fails: not issued by a trusted CA, expired, wrong usage.
    BROKEN = "broken"
    #: Could not be judged: a file missing, unreadable or not parsable.
    UNKNOWN = "unknown"
    #: This side does not verify the other (kube-apiserver without --kubelet-certificate-authority,
    #: etcd with client-cert-auth off): nothing to break, and nothing proven.
    NOT_VERIFIED = "not-verified"
    #: Judged from the API, not from node files (an aggregated API server's serving certificate).
    NOT_ON_NODES = "not-on-nodes"

    @property
    def tone(self) -> str:
        """The tone a table shows it in."""
        return {"trusted": "ok", "broken": "error", "unknown": "missing"}.get(self.value, "dim")


@attrs.frozen(kw_only=True)
class TrustFile:
    """A file one side loads: on which node, where, and what names it (a flag, a kubeconfig field)."""

    node: str
    path: str | None
    via: str

    def __str__(self) -> str:
        return f"{self.node}:{self.path or '?'} ({self.via})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node": self.node, "path": self.path, "via": self.via}


@attrs.frozen(kw_only=True)
class TrustCheck:
    """One direction of an edge: a certificate judged against a bundle of CAs."""

    direction: Direction
    verdict: Verdict
    #: The certificate presented (None when this direction has no file to judge).
    certificate: TrustFile | None
    #: The CAs it is judged against (None when the side verifies nothing).
    bundle: TrustFile | None
    #: Why, in plain words.
    reason: str
    #: The subject of the trusted CA that issued the certificate, when trusted.
    issuer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "direction": self.direction.value,
            "verdict": self.verdict.value,
            "certificate": self.certificate.to_dict() if self.certificate else None,
            "bundle": self.bundle.to_dict() if self.bundle else None,
            "reason": self.reason,
            "issuer": self.issuer,
        }


@attrs.frozen(kw_only=True)
class TrustEdge:
    """One TLS connection of the cluster and both of its checks."""

    kind: EdgeKind
    #: The client: a kubeconfig's name, ``kube-apiserver``, ``etcd``, ``etcd-healthcheck-client``.
    client: str
    client_node: str
    #: The server: ``kube-apiserver``, ``etcd``, ``kubelet``, ``aggregated-apis``.
    server: str
    server_node: str
    client_auth: TrustCheck
    server_auth: TrustCheck

    @property
    def name(self) -> str:
        """``cp1 admin.conf -> cp2 kube-apiserver``."""
        return f"{self.client_node} {self.client} -> {self.server_node} {self.server}"

    @property
    def checks(self) -> tuple[TrustCheck, TrustCheck]:
        """Both checks: client-auth, server-auth."""
        return self.client_auth, self.server_auth

    @property
    def broken(self) -> bool:
        """True when either direction fails."""
        return any(c.verdict is Verdict.BROKEN for c in self.checks)

    @property
    def judged(self) -> bool:
        """True when neither direction is unknown."""
        return all(c.verdict is not Verdict.UNKNOWN for c in self.checks)

    @property
    def verdict(self) -> Verdict:
        """broken, else unknown, else trusted (also when one side verifies nothing)."""
        if self.broken:
            return Verdict.BROKEN
        if not self.judged:
            return Verdict.UNKNOWN
        return Verdict.TRUSTED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind.value,
            "name": self.name,
            "client": self.client,
            "client_node": self.client_node,
            "server": self.server,
            "server_node": self.server_node,
            "verdict": self.verdict.value,
            "client_auth": self.client_auth.to_dict(),
            "server_auth": self.server_auth.to_dict(),
        }


@attrs.frozen(kw_only=True)
class TrustReport(Report):
    """Every TLS edge of a cluster and whether each side trusts the other, at one moment."""

    now: dt.datetime
    nodes: tuple[str, ...]
    edges: tuple[TrustEdge, ...]
    #: Why each node that could not be read was not, by label.
    errors: Mapping[str, str] = attrs.field(factory=dict)
    #: What had to be assumed (kubeadm's default files for a component without a manifest).
    notes: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[TrustEdge]:
        return iter(self.edges)

    def __len__(self) -> int:
        return len(self.edges)

    def __repr__(self) -> str:
        return (f"<TrustReport nodes={list(self.nodes)} edges={len(self.edges)} broken={len(self.broken)} "
                f"unjudged={len(self.unjudged)} outcome={self.outcome.value}>")

    @property
    def broken(self) -> tuple[TrustEdge, ...]:
        """The edges whose handshake fails."""
        return tuple(e for e in self.edges if e.broken)

    @property
    def unjudged(self) -> tuple[TrustEdge, ...]:
        """The edges (not broken) one of whose checks could not be judged."""
        return tuple(e for e in self.edges if not e.broken and not e.judged)

    def edges_of(self, kind: EdgeKind | str) -> tuple[TrustEdge, ...]:
        """The edges of ``kind``."""
        k = EdgeKind(kind)
        return tuple(e for e in self.edges if e.kind is k)

    @property
    def outcome(self) -> Outcome:
        """failed when an edge is broken; else incomplete when an edge, or a node, could not be
        judged, or there was no edge at all (nothing judged is not all well); else ok."""
        if self.broken:
            return Outcome.FAILED
        if self.unjudged or self.errors or not self.edges:
            return Outcome.INCOMPLETE
        return Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """The report as ``kubepki cluster trust -o json`` prints it."""
        counts = collections.Counter(e.verdict.value for e in self.edges)
        return {
            "kind": "TrustReport",
            "now": iso(self.now),
            "outcome": self.outcome.value,
            "nodes": list(self.nodes),
            "summary": {"edges": len(self.edges), "trusted": counts["trusted"], "broken": counts["broken"],
                        "unknown": counts["unknown"]},
            "errors": dict(self.errors),
            "notes": list(self.notes),
            "edges": [e.to_dict() for e in self.edges],
        }

    def rows(self, *, problems_only: bool = False) -> Table:
        """One row per edge (only the broken and unjudged ones with ``problems_only``): kind, client,
        server, each direction's verdict and the reason of the first that is not trusted."""
        rows = []
        for e in self.edges:
            if problems_only and e.judged and not e.broken:
                continue
            why = next((c for c in e.checks if c.verdict is Verdict.BROKEN), None) or next(
                (c for c in e.checks if c.verdict is Verdict.UNKNOWN), None)
            rows.append([
                Cell(e.kind.value), Cell(f"{e.client_node} {e.client}", strong=True),
                Cell(f"{e.server_node} {e.server}"),
                Cell(e.client_auth.verdict.value, e.client_auth.verdict.tone, badge=True),
                Cell(e.server_auth.verdict.value, e.server_auth.verdict.tone, badge=True),
                Cell(f"{why.direction.value}: {why.reason}" if why else ""),
            ])
        return Table("TLS EDGES", ("KIND", "CLIENT", "SERVER", "CLIENT-AUTH", "SERVER-AUTH", "WHY"), rows)

    def blocks(self, *, problems_only: bool = False) -> list[Table | Line]:
        """The edges' table, then unreachable nodes, notes and the summary."""
        out: list[Table | Line] = [self.rows(problems_only=problems_only)]
        for label, why in self.errors.items():
            out.append(Line((Cell(f"{label}: could not be read: {why}", "error"),)))
        for note in self.notes:
            out.append(Line((Cell(f"note: {note}", "dim"),)))
        broken, unjudged = len(self.broken), len(self.unjudged)
        tone = "error" if broken else "missing" if self.outcome is Outcome.INCOMPLETE else "ok"
        out.append(Line((Cell(f"{len(self.edges)} edges: {broken} broken, {unjudged} not judged", tone),)))
        return out

    def table(self, *, problems_only: bool = False) -> str:
        """The report as text (only the edges that are broken or unjudged with ``problems_only``)."""
        return render_text(self.blocks(problems_only=problems_only))[0]


# --------------------------------------------------------------------------------------
# What each side loads


@attrs.frozen
class _Loaded:
    """A certificate file or bundle as read: its certificates, or why there are none."""

    file: TrustFile
    certs: tuple[x509.Certificate, ...] = ()
    problem: str | None = None


def _default_cert_file(component: Component, flag: str) -> str | None:
    """The catalog entry a kubeadm ``flag`` of ``component`` names (``--client-ca-file`` -> ``ca``)."""
    for entry in _catalog.by_component(component):
        if any(c.flag == flag for c in entry.consumers_of(component)):
            return entry.name
    return None


class _NodeView:
    """One node's files and components as its components load them (files read once)."""

    def __init__(self, label: str, node: Node, profile: NodeProfile) -> None:
        self.label = label
        self.node = node
        self.profile = profile
        self._cache: dict[PurePosixPath, tuple[bytes | None, str | None]] = {}
        self.notes: list[str] = []

    # -- components

    @property
    def runs_apiserver(self) -> bool:
        return "kube-apiserver" in self.profile.manifests or self.profile.role is NodeRole.CONTROL_PLANE

    @property
    def runs_etcd(self) -> bool:
        p = self.profile
        if "etcd" in p.manifests:
            return True
        return p.role is NodeRole.ETCD or (p.role is NodeRole.CONTROL_PLANE and not p.external_etcd)

    @property
    def runs_kubelet_of_cluster(self) -> bool:
        """A kubelet the kube-apiservers talk to: control planes and workers (etcd hosts run a standalone one)."""
        return self.profile.role in (NodeRole.CONTROL_PLANE, NodeRole.WORKER)

    def flags(self, component: str) -> Mapping[str, str] | None:
        manifest = self.profile.manifests.get(component)
        return manifest.flags if manifest is not None else None

    def flag_file(self, component: str, flag: str) -> tuple[PurePosixPath | None, str]:
        """The node path ``component`` loads through ``flag`` (``--client-ca-file``) and how it is known:
        its manifest's value, else (no manifest) kubeadm's default; None when the manifest does not set it."""
        flags = self.flags(component)
        if flags is not None:
            value = flags.get(flag.removeprefix("--"))
            if not value:
                return None, flag
            path = PurePosixPath(value)
            return (path if path.is_absolute() else PurePosixPath("/") / path), flag
        name = _default_cert_file(Component(component), flag)
        if name is None:
            return None, flag
        return self.node.path_of(name, FileRole.CERT), f"{flag}, kubeadm's default: no {component} manifest"

    def flag_true(self, component: str, flag: str) -> bool:
        """A boolean flag (kubeadm sets etcd's client-cert-auth flags to true; absent manifest: kubeadm's)."""
        flags = self.flags(component)
        return flags is None or flags.get(flag.removeprefix("--"), "false").lower() == "true"

    def address(self) -> set[str]:
        """The addresses this node's servers are reached at."""
        out = {a for a in (self.profile.san_values().get("advertise_address"),) if a}
        if self.profile.name:
            out.add(self.profile.name)
        advertised = (self.flags("kube-apiserver") or {}).get("advertise-address", "").strip()
        if advertised:
            out.add(advertised)
        out |= _hosts((self.flags("etcd") or {}).get("advertise-client-urls"))
        return out

    # -- files

    def _read(self, path: PurePosixPath) -> tuple[bytes | None, str | None]:
        if path not in self._cache:
            try:
                found = self.node.fs.read_file(path, limit=MAX_PEM_BYTES)
            except KubepkiError as exc:
                self._cache[path] = (None, f"unreadable: {exc.message}")
            else:
                if found is None:
                    self._cache[path] = (None, "missing")
                elif found[2] is None:
                    self._cache[path] = (None, "not a regular file" if not found[0].is_file
                                         else f"larger than {MAX_PEM_BYTES} bytes")
                else:
                    self._cache[path] = (found[2], None)
        return self._cache[path]

    def pem(self, path: PurePosixPath | None, via: str) -> _Loaded:
        """The certificates of a node file (a leaf with its intermediates, or a bundle of CAs)."""
        file = TrustFile(node=self.label, path=str(path) if path else None, via=via)
        if path is None:
            return _Loaded(file, problem=f"{via} is not set")
        data, problem = self._read(path)
        if data is None:
            return _Loaded(file, problem=problem)
        return _certs(file, data)

    def kubeconfig(self, name: str) -> tuple[PurePosixPath, str | None, _Loaded, _Loaded] | None:
        """A kubeconfig's path, server, client certificate and CA bundle; None when an optional one is absent."""
        entry = _catalog.get(name)
        path = self.node.path_of(entry)
        data, problem = self._read(path)
        if data is None and problem == "missing" and not entry.required:
            return None
        here = TrustFile(node=self.label, path=str(path), via=name)
        if data is None:
            bad = _Loaded(here, problem=problem)
            return path, None, bad, bad
        try:
            kc = parse_kubeconfig(data, path=str(path))
        except KubepkiError as exc:
            bad = _Loaded(here, problem=exc.message)
            return path, None, bad, bad
        loaded = []
        for cred, field in ((kc.client_certificate, "client-certificate"), (kc.ca, "certificate-authority")):
            if cred is None:
                loaded.append(_Loaded(TrustFile(node=self.label, path=str(path), via=f"{name} {field}"),
                                      problem=f"{name} has no {field}"))
            elif cred.data is not None:
                loaded.append(_certs(TrustFile(node=self.label, path=str(path), via=f"{name} {field}-data"),
                                     cred.data))
            else:
                loaded.append(self.pem(cred.file, f"{name} {field}"))
        return path, kc.server, loaded[0], loaded[1]


def _certs(file: TrustFile, data: bytes) -> _Loaded:
    try:
        return _Loaded(file, certs=tuple(load_certificates(data, path=file.path)))
    except KubepkiError as exc:
        return _Loaded(file, problem=exc.message)


# --------------------------------------------------------------------------------------
# Judging one direction


_USAGE = {Direction.CLIENT_AUTH: ExtendedKeyUsageOID.CLIENT_AUTH,
          Direction.SERVER_AUTH: ExtendedKeyUsageOID.SERVER_AUTH}
_USAGE_NAME = {Direction.CLIENT_AUTH: "clientAuth", Direction.SERVER_AUTH: "serverAuth"}


def _cn(name: x509.Name) -> str:
    try:
        cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    except CERT_PARSE_ERRORS:
        return "?"
    return str(cns[0].value) if cns else name.rfc4514_string() or "(empty)"


def _key_id(cert: x509.Certificate) -> str:
    """The certificate's key identifier, short (tells two CAs both called "kubernetes" apart): its
    subjectKeyIdentifier, else the RFC 5280 SHA-1 of its key, which is what leaves name their issuer by."""
    try:
        digest = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        try:
            digest = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
        except CERT_PARSE_ERRORS:
            return "?"
    return digest.hex()[:12]


def _issuer_key_id(cert: x509.Certificate) -> str | None:
    """The key identifier of the CA ``cert`` names as its issuer (authorityKeyIdentifier), short."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None
    return aki.hex()[:12] if aki else None


def _describe_ca(cert: x509.Certificate) -> str:
    return f"{_cn(cert.subject)} (key {_key_id(cert)})"


def _time_problem(cert: x509.Certificate, what: str, now: dt.datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"{what} is not valid before {iso(cert.not_valid_before_utc)}"
    if now > cert.not_valid_after_utc:
        return f"{what} expired at {iso(cert.not_valid_after_utc)}"
    return None


def _usage_problem(cert: x509.Certificate, direction: Direction, what: str = "its") -> str | None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None  # Go: a certificate without the extension may be used for anything
    if _USAGE[direction] in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku:
        return None
    return f"{what} extended key usage has no {_USAGE_NAME[direction]}"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _signer_problem(ca: x509.Certificate, what: str, direction: Direction, now: dt.datetime, *,
                    intermediate: bool) -> str | None:
    """Why Go's ``crypto/x509`` would not accept ``ca`` above a leaf: out of its validity; an intermediate
    that is not a CA; an extended key usage without the direction's (Go checks it along the whole
    chain, the trusted root too). Key usage bits are not checked: Go ignores them on CAs."""
    if (problem := _time_problem(ca, what, now)) is not None:
        return problem
    if intermediate and not _is_ca(ca):
        return f"{what} is not a CA (basicConstraints)"
    return _usage_problem(ca, direction, f"{what}'s")


def _judge(direction: Direction, cert: _Loaded, bundle: _Loaded, now: dt.datetime) -> TrustCheck:
    """Whether ``cert``'s leaf chains (through the intermediates its file carries) to a CA of ``bundle``."""
    def check(verdict: Verdict, reason: str, issuer: str | None = None) -> TrustCheck:
        return TrustCheck(direction=direction, verdict=verdict, certificate=cert.file, bundle=bundle.file,
                          reason=reason, issuer=issuer)

    if cert.problem is not None:
        return check(Verdict.UNKNOWN, f"the certificate {cert.file}: {cert.problem}")
    if bundle.problem is not None:
        return check(Verdict.UNKNOWN, f"the CA bundle {bundle.file}: {bundle.problem}")
    leaf = cert.certs[0]
    problem = _time_problem(leaf, "the certificate", now) or _usage_problem(leaf, direction)
    if problem is not None:
        return check(Verdict.BROKEN, problem)
    current, intermediates = leaf, list(cert.certs[1:])
    for _hop in range(len(intermediates) + 1):
        issuers = [ca for ca in bundle.certs if signed_by(current, ca)]
        if issuers:
            problems = [_signer_problem(ca, f"its issuing CA {_describe_ca(ca)}", direction, now, intermediate=False)
                        for ca in issuers]
            good = [ca for ca, p in zip(issuers, problems, strict=True) if p is None]
            if not good:
                return check(Verdict.BROKEN, str(problems[0]))
            return check(Verdict.TRUSTED, f"issued by {_describe_ca(good[0])}",
                         issuer=good[0].subject.rfc4514_string())
        step = next((c for c in intermediates if signed_by(current, c)), None)
        if step is None:
            break
        problem = _signer_problem(step, f"the intermediate {_describe_ca(step)}", direction, now, intermediate=True)
        if problem is not None:
            return check(Verdict.BROKEN, problem)
        intermediates.remove(step)
        current = step
    held = ", ".join(_describe_ca(ca) for ca in bundle.certs)
    key = _issuer_key_id(current)
    issuer = f"{_cn(current.issuer)} (key {key})" if key else _cn(current.issuer)
    return check(Verdict.BROKEN, f"issued by {issuer}, not by any CA of the bundle: {held}")


def _not_verified(direction: Direction, cert: TrustFile | None, reason: str,
                  verdict: Verdict = Verdict.NOT_VERIFIED) -> TrustCheck:
    return TrustCheck(direction=direction, verdict=verdict, certificate=cert, bundle=None, reason=reason)


# --------------------------------------------------------------------------------------
# The edges


_API, _ETCD = "kube-apiserver", "etcd"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _hosts(urls: str | None) -> set[str]:
    out = set()
    for part in (urls or "").split(","):
        try:
            host = urlsplit(part.strip()).hostname
        except ValueError:
            continue
        if host:
            out.add(host)
    return out


def _targets(client: _NodeView, hosts: set[str], servers: Sequence[_NodeView]) -> list[_NodeView]:
    """The servers ``hosts`` name: the client's own node for a loopback address, the servers whose
    addresses match, else every server (a load balancer or an address kubepki cannot place)."""
    if hosts and hosts <= _LOCAL_HOSTS and client in servers:
        return [client]
    named = [s for s in servers if hosts & s.address()]
    return named or list(servers)


def _kubeconfig_edges(views: Sequence[_NodeView], apiservers: Sequence[_NodeView], now: dt.datetime
                      ) -> Iterator[TrustEdge]:
    names = [e.name for e in _catalog.CATALOG if e.kind is Kind.KUBECONFIG]
    for view in views:
        for name in names:
            if not view.profile.has(_catalog.get(name)):
                continue
            found = view.kubeconfig(name)
            if found is None:
                continue
            _path, server, client_cert, ca = found
            for api in _targets(view, _hosts(server), apiservers):
                client_ca = api.pem(*api.flag_file(_API, "--client-ca-file"))
                serving = api.pem(*api.flag_file(_API, "--tls-cert-file"))
                yield TrustEdge(kind=EdgeKind.KUBECONFIG, client=name, client_node=view.label, server=_API,
                                server_node=api.label,
                                client_auth=_judge(Direction.CLIENT_AUTH, client_cert, client_ca, now),
                                server_auth=_judge(Direction.SERVER_AUTH, serving, ca, now))


def _etcd_client_auth(client_cert: _Loaded, member: _NodeView, now: dt.datetime) -> TrustCheck:
    if not member.flag_true(_ETCD, "--client-cert-auth"):
        return _not_verified(Direction.CLIENT_AUTH, client_cert.file,
                             f"etcd on {member.label} runs without --client-cert-auth: it accepts any client")
    return _judge(Direction.CLIENT_AUTH, client_cert, member.pem(*member.flag_file(_ETCD, "--trusted-ca-file")), now)


def _apiserver_edges(views: Sequence[_NodeView], apiservers: Sequence[_NodeView], members: Sequence[_NodeView],
                     now: dt.datetime) -> Iterator[TrustEdge]:
    for api in apiservers:
        # -> etcd
        servers = (api.flags(_API) or {}).get("etcd-servers")
        etcd_targets = _targets(api, _hosts(servers) if servers else {"127.0.0.1"}, members) if members else []
        etcd_client = api.pem(*api.flag_file(_API, "--etcd-certfile"))
        etcd_ca = api.pem(*api.flag_file(_API, "--etcd-cafile"))
        for member in etcd_targets:
            yield TrustEdge(kind=EdgeKind.APISERVER_ETCD, client=_API, client_node=api.label, server=_ETCD,
                            server_node=member.label,
                            client_auth=_etcd_client_auth(etcd_client, member, now),
                            server_auth=_judge(Direction.SERVER_AUTH,
                                               member.pem(*member.flag_file(_ETCD, "--cert-file")), etcd_ca, now))
        # -> every kubelet
        kubelet_client = api.pem(*api.flag_file(_API, "--kubelet-client-certificate"))
        kubelet_ca_path, kubelet_ca_via = api.flag_file(_API, "--kubelet-certificate-authority")
        for kubelet in (v for v in views if v.runs_kubelet_of_cluster):
            settings = kubelet.profile.kubelet
            if settings.found:
                ca_path = PurePosixPath(settings.client_ca_file) if settings.client_ca_file else None
                ca_via = "authentication.x509.clientCAFile"
            else:
                ca_path = kubelet.node.path_of("ca")
                ca_via = "authentication.x509.clientCAFile, kubeadm's default: no kubelet config.yaml"
            if settings.found and ca_path is None:
                client_auth = TrustCheck(
                    direction=Direction.CLIENT_AUTH, verdict=Verdict.BROKEN, certificate=kubelet_client.file,
                    bundle=TrustFile(node=kubelet.label, path=settings.config_path, via=ca_via),
                    reason="the kubelet trusts no client CA (no authentication.x509.clientCAFile): it "
                           "authenticates no kube-apiserver by its certificate")
            else:
                client_auth = _judge(Direction.CLIENT_AUTH, kubelet_client, kubelet.pem(ca_path, ca_via), now)
            serving_file = TrustFile(node=kubelet.label, path=str(_kubelet_serving(kubelet)),
                                     via="kubelet serving certificate")
            if kubelet_ca_path is None:
                server_auth = _not_verified(Direction.SERVER_AUTH, serving_file,
                                            "kube-apiserver has no --kubelet-certificate-authority: it does "
                                            "not verify kubelets' serving certificates (kubeadm's default)")
            else:
                server_auth = _judge(Direction.SERVER_AUTH, kubelet.pem(_kubelet_serving(kubelet), serving_file.via),
                                     api.pem(kubelet_ca_path, kubelet_ca_via), now)
            yield TrustEdge(kind=EdgeKind.APISERVER_KUBELET, client=_API, client_node=api.label, server="kubelet",
                            server_node=kubelet.label, client_auth=client_auth, server_auth=server_auth)
        # -> aggregated API servers
        proxy_client = api.pem(*api.flag_file(_API, "--proxy-client-cert-file"))
        for other in apiservers:
            requestheader = other.pem(*other.flag_file(_API, "--requestheader-client-ca-file"))
            yield TrustEdge(
                kind=EdgeKind.FRONT_PROXY, client=_API, client_node=api.label, server="aggregated-apis",
                server_node=other.label,
                client_auth=_allowed_name(_judge(Direction.CLIENT_AUTH, proxy_client, requestheader, now),
                                          proxy_client, other),
                server_auth=_not_verified(
                    Direction.SERVER_AUTH, None,
                    "an aggregated API server's serving certificate is checked against its APIService's "
                    "caBundle, in the API (kubepki check-objects)", Verdict.NOT_ON_NODES))


def _allowed_name(check: TrustCheck, proxy_client: _Loaded, other: _NodeView) -> TrustCheck:
    """A trusted front-proxy client whose CN is not among ``--requestheader-allowed-names`` (when that is
    set) is refused all the same: the aggregated API servers publish and enforce that list too."""
    allowed = [n.strip() for n in (other.flags(_API) or {}).get("requestheader-allowed-names", "").split(",")
               if n.strip()]
    if check.verdict is not Verdict.TRUSTED or not allowed or not proxy_client.certs:
        return check
    cn = _cn(proxy_client.certs[0].subject)
    if cn in allowed:
        return check
    return attrs.evolve(check, verdict=Verdict.BROKEN,
                        reason=f"{check.reason}, but its CN {cn!r} is not in {other.label}'s "
                               f"--requestheader-allowed-names ({', '.join(allowed)})")


def _kubelet_serving(view: _NodeView) -> PurePosixPath:
    if view.profile.kubelet.server_tls_bootstrap:
        return view.node.path_of("kubelet-server-current.pem")
    return view.node.path_of("kubelet.crt")


def _etcd_edges(members: Sequence[_NodeView], now: dt.datetime) -> Iterator[TrustEdge]:
    for a in members:
        for b in members:
            if a is b:
                continue
            a_cert = a.pem(*a.flag_file(_ETCD, "--peer-cert-file"))
            b_cert = b.pem(*b.flag_file(_ETCD, "--peer-cert-file"))
            if b.flag_true(_ETCD, "--peer-client-cert-auth"):
                client_auth = _judge(Direction.CLIENT_AUTH, a_cert,
                                     b.pem(*b.flag_file(_ETCD, "--peer-trusted-ca-file")), now)
            else:
                client_auth = _not_verified(Direction.CLIENT_AUTH, a_cert.file,
                                            f"etcd on {b.label} runs without --peer-client-cert-auth")
            server_auth = _judge(Direction.SERVER_AUTH, b_cert, a.pem(*a.flag_file(_ETCD, "--peer-trusted-ca-file")),
                                 now)
            yield TrustEdge(kind=EdgeKind.ETCD_PEER, client=_ETCD, client_node=a.label, server=_ETCD,
                            server_node=b.label, client_auth=client_auth, server_auth=server_auth)
    for m in members:
        client = m.pem(m.node.path_of("etcd-healthcheck-client"), "etcd/healthcheck-client.crt (etcdctl --cert)")
        ca = m.pem(m.node.path_of("etcd-ca"), "etcd/ca.crt (etcdctl --cacert)")
        yield TrustEdge(kind=EdgeKind.ETCD_HEALTHCHECK, client="etcd-healthcheck-client", client_node=m.label,
                        server=_ETCD, server_node=m.label, client_auth=_etcd_client_auth(client, m, now),
                        server_auth=_judge(Direction.SERVER_AUTH, m.pem(*m.flag_file(_ETCD, "--cert-file")), ca, now))


def check_trust(
    cluster: Cluster | Sequence[Node | str | os.PathLike[str]],
    *,
    now: dt.datetime | None = None,
    workers: int | None = None,
) -> TrustReport:
    """Every TLS edge of ``cluster`` (a :class:`~kubepki.Cluster` or its nodes) and whether each side
    trusts the other's certificate, judged from the files each side loads, as of ``now``.

    Nodes are read concurrently (``workers`` at once, default all up to 16). A node that cannot be
    reached is in ``errors`` and its edges are missing, so the report is then incomplete.
    """
    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    when = _utc(now)

    def discover(node: Node) -> NodeProfile | KubepkiError:
        try:
            _reach(node)
            return node.profile
        except KubepkiError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=_workers(workers, len(c)), thread_name_prefix="kubepki-trust") as pool:
        profiles = list(pool.map(discover, c.nodes))
    labels = c.labels
    views: list[_NodeView] = []
    errors: dict[str, str] = {}
    notes: list[str] = []
    for label, node, profile in zip(labels, c.nodes, profiles, strict=True):
        if isinstance(profile, KubepkiError):
            errors[label] = str(profile)
            continue
        views.append(_NodeView(label, node, profile))
    apiservers = [v for v in views if v.runs_apiserver]
    members = [v for v in views if v.runs_etcd]
    for v in views:
        for component, runs in ((_API, v in apiservers), (_ETCD, v in members)):
            if runs and component not in v.profile.manifests:
                notes.append(f"{v.label}: no {component} manifest: kubeadm's default files assumed for its {component}")
        if v.runs_kubelet_of_cluster and not v.profile.kubelet.found:
            notes.append(f"{v.label}: no kubelet config.yaml: kubeadm's clientCAFile assumed for its kubelet")
    edges = [*_kubeconfig_edges(views, apiservers, when), *_apiserver_edges(views, apiservers, members, when),
             *_etcd_edges(members, when)]
    order = list(EdgeKind)
    edges.sort(key=lambda e: order.index(e.kind))  # stable: each kind's edges in node order
    return TrustReport(now=when, nodes=labels, edges=tuple(edges), errors=errors, notes=tuple(notes))

