"""Rotating a kubeadm CA (``ca``, ``front-proxy-ca`` or ``etcd-ca``) across every node, phase by phase.

Both CAs are trusted in between, and every phase is planned (frozen), applied under each node's lock
after each node's backup, its restarts rolled node by node, and verified with
:func:`~kubepki.cluster.check_trust` and the phase's own checks:

1. ``prepare``: a new CA staged beside the old one on every node holding the CA's key
   (``.kubepki-rotation-<ca>-new.{crt,key}``, the key 0600); nothing in use changes.
2. ``trust-both``: the CA's certificate file becomes a bundle, the old CA first (so kubeadm, kubepki and
   everything that signs with "the first certificate" still signs with the old key) and the new one
   second; every component that reads the file trusts both, most of them without a restart
   (kube-apiserver's ``--client-ca-file`` and ``--requestheader-client-ca-file`` are reloaded: E5, E8 in
   the reference). For ``ca``, every kubeconfig's ``certificate-authority-data`` becomes the bundle too,
   and kube-controller-manager's ``--cluster-signing-cert-file``/``-key-file`` move to a separate copy of
   the old CA (``.kubepki-rotation-ca-signing.{crt,key}``): that flag takes one certificate
   (kubernetes/kubeadm#1350).
3. ``reissue``: the bundle's order turns (new first), the key file becomes the new key, the signing copy
   the new CA; every leaf the old CA signed is re-signed by the new CA over its own key (for ``ca``: the
   API server's certificates, every kubeconfig's client certificate, the kubelets' client and CSR-issued
   serving certificates, issued directly since the old signer would sign the kubelet's next CSR).
4. ``drop-old``: the CA file holds the new CA alone, the kubeconfigs carry it alone,
   kube-controller-manager signs from ``ca.crt`` again, and the staged copies and undo records go; the
   old CA stays in the backups.

What each node must restart for a phase comes from :func:`~kubepki.plan_restarts` under the chosen policy
(``minimal`` by default: a component that reloads the file by itself is verified, not restarted), from the
catalog items the phase changed on that node. ``apply_rotation(..., restart=True)`` rolls them one node at
a time, each healthy before the next; without it the plan lists them (``--no-restart``).

State lives on the nodes holding the CA's key (``.kubepki-rotation-<ca>.json`` beside the CA, written
atomically), so :func:`rotation_status` and :func:`plan_rotation` need nothing else. Before changing a node,
each phase writes that node's undo record (``.kubepki-rotation-<ca>-undo-<phase>.json``, 0600: it holds the
replaced keys), which :func:`abort_rotation` replays to return to the previous verified phase.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kubepki import catalog as _catalog
from kubepki._clock import utc as _utc
from kubepki._crash import checkpoint as _checkpoint
from kubepki._report import Cell, Outcome, Report, Table
from kubepki.backups import backup
from kubepki.catalog import FileRole, Kind
from kubepki.cluster._cluster import (
    Cluster,
    ClusterRestartPlan,
    ClusterRestartReport,
    HealthCheck,
    apply_cluster_restarts,
    plan_cluster_restarts,
)
from kubepki.cluster._remote import RemoteRestartReport, ssh_restart
from kubepki.cluster._rotate_objects import POD_REFRESH, ObjectSync, root_ca_lag, sync_objects
from kubepki.cluster._rotation import (
    PHASES,
    Phase,
    RotationChange,
    Site,
    abort_target,
    apply_node,
    change_table,
    check_fresh,
    history,
    locked,
    merge,
    next_phase,
    phase_table,
    read_record,
    read_undo,
    require_next,
    rewind,
    save_record,
)
from kubepki.cluster._trust import TrustReport, check_trust
from kubepki.errors import ConfigError, KubepkiError
from kubepki.node import LocalPaths, Node
from kubepki.pki import (
    LeafTemplate,
    Signer,
    b64,
    cert_to_pem,
    edit_kubeconfig,
    generate_key,
    key_algorithm,
    key_to_pem,
    load_certificate,
    load_certificates,
    load_private_key,
    parse_kubeconfig,
    self_signed_ca,
    sign_leaf,
    signed_by,
)

if TYPE_CHECKING:
    from kubepki.restarts import RestartPlan, RestartReport

__all__ = ["PHASES", "ROTATION_CAS", "Phase", "RotationChange", "RotationPlan", "RotationResult",
           "RotationStatus", "abort_rotation", "apply_rotation", "plan_rotation", "rotation_status"]

_NEW_CA_VALIDITY = dt.timedelta(days=3650)  # kubeadm's CA lifetime
_BACKDATE = dt.timedelta(minutes=5)  # kubeadm backdates NotBefore for clock skew
_UNDO = "CARotationUndo"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----\r?\n?", re.S)


@attrs.frozen
class _Spec:
    """What rotating one CA touches."""

    name: str
    #: Catalog names of the certificates it signs that the rotation re-issues as files.
    leaves: tuple[str, ...]
    #: Whether the kubeconfigs trust it (certificate-authority-data) and carry client certificates it signs.
    kubeconfigs: bool = False
    #: (component, certificate flag, key flag) of a component that signs with it and takes one certificate.
    signing: tuple[str, str, str] | None = None


_SPECS: dict[str, _Spec] = {
    "ca": _Spec("ca", ("apiserver", "apiserver-kubelet-client", "kubelet-server-current.pem"), kubeconfigs=True,
                signing=("kube-controller-manager", "cluster-signing-cert-file", "cluster-signing-key-file")),
    "front-proxy-ca": _Spec("front-proxy-ca", ("front-proxy-client",)),
    "etcd-ca": _Spec("etcd-ca", ("etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client")),
}

#: The CAs :func:`plan_rotation` rotates.
ROTATION_CAS: tuple[str, ...] = tuple(_SPECS)


def _spec(ca: str) -> _Spec:
    if ca not in _SPECS:
        raise ConfigError(f"unknown CA {ca!r}: kubepki rotates {', '.join(ROTATION_CAS)} "
                          "(and the service-account key pair with --sa)")
    return _SPECS[ca]


@attrs.frozen(kw_only=True)
class RotationStatus(Report):
    """Where a rotation of ``ca`` stands, from the control planes' records."""

    ca: str
    #: The last phase applied and verified (None: none yet, or no rotation).
    phase: Phase | None
    #: A phase applied in part or not verified (a crash, a failed verification), else None.
    applying: Phase | None
    #: The control planes holding a record.
    nodes: tuple[str, ...]
    #: The new CA's and the old CA's SHA-256 fingerprints (hex), when a rotation is under way.
    new_ca: str | None = None
    old_ca: str | None = None
    history: tuple[dict[str, Any], ...] = ()

    @property
    def active(self) -> bool:
        """True when a rotation has started (a record exists)."""
        return bool(self.nodes)

    @property
    def next_phase(self) -> Phase | None:
        """The phase ``next`` plans: the unfinished one, else the one after the last verified; None when done."""
        return next_phase(self.phase, self.applying)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        nxt = self.next_phase
        return {"kind": "CARotationStatus", "ca": self.ca, "outcome": self.outcome.value,
                "phase": self.phase.value if self.phase else None,
                "applying": self.applying.value if self.applying else None,
                "next": nxt.value if nxt else None, "nodes": list(self.nodes), "new_ca": self.new_ca,
                "old_ca": self.old_ca, "history": list(self.history)}

    def rows(self) -> Table:
        """One row per phase: done, in progress or to do."""
        return phase_table(f"CA ROTATION ({self.ca})", self.phase, self.applying)

    @property
    def outcome(self) -> Outcome:
        """incomplete while a phase is half applied or unverified, else ok."""
        return Outcome.INCOMPLETE if self.applying is not None else Outcome.OK


@attrs.frozen(kw_only=True)
class RotationPlan(Report):
    """The changes one phase makes on every node, and the restarts a running node would need."""

    ca: str
    phase: Phase
    now: dt.datetime
    nodes: tuple[str, ...]
    changes: tuple[RotationChange, ...]
    #: The components each node restarts for the phase (node label -> components), from :attr:`restart_plan`.
    restarts: dict[str, tuple[str, ...]]
    #: Each node's restarts as :func:`~kubepki.plan_restarts` planned them, rolled one node at a time.
    restart_plan: ClusterRestartPlan = attrs.field(repr=False, eq=False)
    #: The catalog items the phase changes on each node (kept in the record, so a resumed phase still
    #: restarts what reads the files written before a crash).
    items: dict[str, tuple[str, ...]] = attrs.field(factory=dict, repr=False)
    #: Planned with ``again``: a prepare that starts another rotation after a finished one.
    again: bool = False
    notes: tuple[str, ...] = ()
    #: The new CA (certificate and key PEM), staged by ``prepare`` or read from the staged copies.
    new_ca_pem: bytes = attrs.field(repr=False, eq=False)
    new_key_pem: bytes = attrs.field(repr=False, eq=False)
    old_ca_pem: bytes = attrs.field(repr=False, eq=False)
    #: The nodes, in the order given, for apply (not shown).
    cluster: Cluster = attrs.field(repr=False, eq=False)

    def paths(self, node: str) -> set[str]:
        """The node paths this plan writes or removes on ``node``."""
        return {c.path for c in self.changes if c.node == node}

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``kubepki cluster rotate-ca plan -o json`` prints it."""
        return {"kind": "CARotationPlan", "ca": self.ca, "phase": self.phase.value, "now": self.now.isoformat(),
                "nodes": list(self.nodes), "changes": [c.to_dict() for c in self.changes],
                "restarts": [f"{n}: {c}" for n in self.nodes for c in self._restarts_of(n)],
                "notes": list(self.notes)}

    def _restarts_of(self, node: str) -> tuple[str, ...]:
        return self.restarts.get(node, ())

    def rows(self) -> Table:
        """One row per change."""
        return change_table(f"CA ROTATION ({self.ca}): {self.phase.value}", self.changes)

    def table(self) -> str:
        """The plan as text: the changes, the restarts --no-restart leaves to the operator, the notes."""
        lines = [self.text().rstrip("\n")]
        for n in self.nodes:
            if self._restarts_of(n):
                lines.append(f"restart on {n} (in this order, node by node; --no-restart leaves them to you): "
                             f"{', '.join(self._restarts_of(n))}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


@attrs.frozen(kw_only=True)
class RotationResult(Report):
    """What applying (or aborting) a phase did, and whether the cluster's trust held afterwards."""

    ca: str
    phase: Phase
    #: ``apply`` or ``abort``.
    action: str
    #: Each node's backup archive (a node path).
    backups: dict[str, str]
    trust: TrustReport = attrs.field(repr=False)
    problems: tuple[str, ...] = ()
    #: The rolling restarts' report (None: nothing restarted, ``--no-restart``).
    restarts: ClusterRestartReport | None = attrs.field(default=None, repr=False)
    #: The live objects brought in step (None: no API given).
    objects: ObjectSync | None = attrs.field(default=None, repr=False)
    #: Seconds ``reissue`` of ``ca`` waited, before writing, for the kubelets to refresh the pods' copies
    #: of ``kube-root-ca.crt`` (None: not looked at: no API given, or another phase or CA).
    pods_waited: float | None = None

    @property
    def ok(self) -> bool:
        """True when verified: no broken edge and every check of the phase passed."""
        return not self.problems

    @property
    def outcome(self) -> Outcome:
        """failed when a check failed, else ok."""
        return Outcome.FAILED if self.problems else Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": "CARotationResult", "ca": self.ca, "phase": self.phase.value, "action": self.action,
                "outcome": self.outcome.value, "backups": dict(self.backups), "problems": list(self.problems),
                "restarts": self.restarts.to_dict() if self.restarts is not None else None,
                "objects": self.objects.to_dict() if self.objects is not None else None,
                "podsWaitedSeconds": None if self.pods_waited is None else round(self.pods_waited, 1),
                "trust": {"edges": len(self.trust.edges), "broken": [e.name for e in self.trust.broken]}}

    def rows(self) -> Table:
        """One row per problem (none when verified)."""
        return Table(f"CA ROTATION ({self.ca}): {self.action} {self.phase.value}", ("PROBLEM",),
                     [[Cell(p, "error")] for p in self.problems])

    def table(self) -> str:
        """The result as text."""
        head = (f"{self.action} {self.phase.value}: verified, {len(self.trust.edges)} TLS edges, none broken"
                if self.ok else f"{self.action} {self.phase.value}: NOT verified")
        lines = [head, *(f"backup {n}: {p}" for n, p in self.backups.items())]
        if self.restarts is not None:
            lines += [f"restarted {n}: {'ok' if r.ok else 'FAILED'}"
                      + (f", healthy after {self.restarts.healthy_after[n]:.1f} s"
                         if n in self.restarts.healthy_after else "") for n, r in self.restarts.reports.items()]
            lines += [f"not restarted (stopped before): {n}" for n in self.restarts.not_attempted]
        if self.pods_waited is not None:
            lines.append(f"kube-root-ca.crt carried the new CA in every namespace; waited {self.pods_waited:.0f} s "
                         "for the kubelets to refresh the pods' copies")
        if self.objects is not None:
            lines += [f"updated {o}" for o in self.objects.updated]
            if (lag := self.objects.root_ca) is not None:
                lines.append(f"{lag.describe()}: " + ("the CA file's certificates" if lag.ok else
                             "not the CA file's certificates yet (kube-controller-manager publishes them when it "
                             "starts)"))
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Reading the nodes


@attrs.frozen
class _Site(Site):
    """One node and the paths the rotation of one CA uses on it."""

    spec: _Spec

    @property
    def ca_crt(self) -> PurePosixPath:
        return self.node.path_of(self.spec.name, FileRole.CERT)

    @property
    def ca_key(self) -> PurePosixPath:
        return self.node.path_of(self.spec.name, FileRole.KEY)

    @functools.cached_property
    def has_ca(self) -> bool:
        """True when the node holds the CA's certificate (workers hold ``ca.crt`` only)."""
        return self.node.fs.stat(self.ca_crt) is not None

    @functools.cached_property
    def signer(self) -> bool:
        """True when the node holds the CA's key: where the new CA is staged and the record kept."""
        return self.has_ca and self.node.fs.stat(self.ca_key) is not None

    @property
    def directory(self) -> PurePosixPath:
        return self.ca_crt.parent

    @property
    def prefix(self) -> str:
        return f".kubepki-rotation-{self.spec.name}"

    @property
    def staged_crt(self) -> PurePosixPath:
        return self.beside(f"{self.prefix}-new.crt")

    @property
    def staged_key(self) -> PurePosixPath:
        return self.beside(f"{self.prefix}-new.key")

    @property
    def signing_crt(self) -> PurePosixPath:
        return self.beside(f"{self.prefix}-signing.crt")

    @property
    def signing_key(self) -> PurePosixPath:
        return self.beside(f"{self.prefix}-signing.key")


def _sites(cluster: Cluster, spec: _Spec) -> list[_Site]:
    # fresh Node objects: a profile is cached, and each phase changes what discovery reads
    return [_Site(label, attrs.evolve(node), spec) for label, node in zip(cluster.labels, cluster.nodes, strict=True)]


def _sha(pem: bytes) -> str:
    """The SHA-256 fingerprint (hex) of the first certificate of ``pem``."""
    return _fingerprint(load_certificate(pem))


def _record(site: _Site) -> dict[str, Any] | None:
    return read_record(site, kind="CARotationState", what="CA rotation", check=functools.partial(_damaged, site))


def _damaged(site: _Site, doc: dict[str, Any]) -> list[str]:
    """The CA rotation's own fields of a record that are not what apply writes."""
    bad = [k for k in ("old_ca_pem", "old_ca_sha256", "new_ca_sha256") if not isinstance(doc.get(k), str)]
    items = doc.get("items") or {}
    if not isinstance(items, dict) or not all(isinstance(v, list) and all(isinstance(i, str) for i in v)
                                              for v in items.values()):
        bad.append("items")
    if isinstance(doc.get("old_ca_pem"), str):
        try:
            load_certificate(doc["old_ca_pem"].encode(), path=str(site.state))
        except (KubepkiError, UnicodeError):
            bad.append("old_ca_pem")
    return bad


def _status(sites: Sequence[_Site], spec: _Spec) -> tuple[RotationStatus, dict[str, Any] | None]:
    records = {s.label: r for s in sites if s.signer and (r := _record(s)) is not None}
    if not records:
        return RotationStatus(ca=spec.name, phase=None, applying=None, nodes=()), None
    phase, applying, best = merge(records, old="old_ca_sha256", what=spec.name, olds="CAs")
    status = RotationStatus(ca=spec.name, phase=phase, applying=applying, nodes=tuple(records),
                            new_ca=best.get("new_ca_sha256"), old_ca=best.get("old_ca_sha256"),
                            history=tuple(best.get("history") or ()))
    return status, best


def rotation_status(cluster: Cluster | Sequence[Node | str], *, ca: str = "ca") -> RotationStatus:
    """Where the rotation of ``ca`` stands, read from the records on the nodes holding its key alone."""
    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    spec = _spec(ca)
    return _status(_sites(c, spec), spec)[0]


# --------------------------------------------------------------------------------------
# Planning


def _one_cert(site: _Site, path: PurePosixPath, what: str) -> bytes:
    data = site.read(path)
    if data is None:
        raise ConfigError(f"{site.label}: {what} {path} is missing", path=str(path))
    load_certificate(data, path=str(path))
    return data


def _old_ca(sites: Sequence[_Site], spec: _Spec) -> bytes:
    pems = {s.label: _one_cert(s, s.ca_crt, f"the {spec.name} certificate") for s in sites if s.has_ca}
    if not pems:
        raise ConfigError(f"no node holds {spec.name}'s certificate")
    certs = {lbl: load_certificates(p) for lbl, p in pems.items()}
    if any(len(c) != 1 for c in certs.values()):
        raise ConfigError(f"{spec.name}'s certificate file must hold one certificate on every node before a "
                          "rotation starts (a bundle there is a rotation not finished, or not kubepki's)")
    if len({c[0].fingerprint(_sha256()) for c in certs.values()}) != 1:
        raise ConfigError(f"{spec.name} differs between the nodes ({', '.join(pems)}): make them agree first")
    return next(iter(pems.values()))


def _sha256() -> hashes.SHA256:
    return hashes.SHA256()


def _new_ca(spec: _Spec, old_pem: bytes, now: dt.datetime, new_ca_cert: bytes | None,
            new_ca_key: bytes | None) -> tuple[bytes, bytes]:
    if (new_ca_cert is None) != (new_ca_key is None):
        raise ConfigError("give both --new-ca-cert and --new-ca-key, or neither")
    if new_ca_cert is not None and new_ca_key is not None:
        cert = load_certificate(new_ca_cert, path="--new-ca-cert")
        key = load_private_key(new_ca_key, path="--new-ca-key")
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise ConfigError("--new-ca-cert is not a CA certificate (basicConstraints CA:TRUE)")
        Signer.from_key(spec.name, cert, key, path="--new-ca-key")  # SignerError when they do not match
        if cert.fingerprint(_sha256()) == load_certificate(old_pem).fingerprint(_sha256()):
            raise ConfigError("--new-ca-cert is the CA in use")
        return cert_to_pem(cert), key_to_pem(key)  # type: ignore[arg-type]
    old = load_certificate(old_pem)
    key = generate_key(key_algorithm(old.public_key()))  # type: ignore[arg-type]
    cn = old.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cert = self_signed_ca(str(cn[0].value) if cn else spec.name, key, not_before=now - _BACKDATE,
                          validity=_NEW_CA_VALIDITY)
    return cert_to_pem(cert), key_to_pem(key)


def _staged(sites: Sequence[_Site]) -> tuple[bytes, bytes]:
    found = set()
    for s in sites:
        if s.signer:
            crt, key = s.read(s.staged_crt), s.read(s.staged_key)
            if crt is None or key is None:
                raise ConfigError(f"{s.label}: the staged new CA is missing ({s.staged_crt}): abort and prepare again")
            found.add((crt, key))
    if len(found) != 1:
        raise ConfigError("the staged new CA differs between the nodes: abort and prepare again")
    return found.pop()


def _signing(sites: Sequence[_Site], new_sha: str) -> tuple[bytes, bytes]:
    """The new CA as reissue left it, the CA file's first certificate and the key file (drop-old removes
    the staged copies, so a drop-old resumed after a crash reads them here)."""
    for s in sites:
        if s.signer and (crt := s.read(s.ca_crt)) is not None and (key := s.read(s.ca_key)) is not None:
            first = _first_pem(crt)
            if _sha(first) != new_sha:
                raise ConfigError(f"{s.label}:{s.ca_crt} does not start with the new CA the rotation's record "
                                  "names", path=str(s.ca_crt))
            return first, key
    raise ConfigError("no node holds the CA's certificate and key")


def _first_pem(data: bytes) -> bytes:
    """The first certificate of ``data``, as PEM."""
    return cert_to_pem(load_certificate(data))


def _flag_edit(data: bytes, flag: str, old: str, new: str) -> bytes | None:
    """``data`` with the command line ``- --flag=old`` set to ``new``; None when the flag has another value."""
    pattern = re.compile(rb"^(\s*- " + re.escape(f"--{flag}=".encode()) + rb")(\S+)[ \t]*$", re.M)
    matches = list(pattern.finditer(data))
    if len(matches) != 1 or matches[0].group(2).decode() != old:
        return None
    m = matches[0]
    return data[:m.start(2)] + new.encode() + data[m.end(2):]


class _Planner:
    def __init__(self, sites: Sequence[_Site], spec: _Spec, phase: Phase, now: dt.datetime, *, old_pem: bytes,
                 new_pem: bytes, new_key: bytes) -> None:
        self.sites, self.spec, self.phase, self.now = sites, spec, phase, now
        self.old_pem, self.new_pem, self.new_key = old_pem, new_pem, new_key
        self.old, self.new = load_certificate(old_pem), load_certificate(new_pem)
        self.changes: list[RotationChange] = []
        self.notes: list[str] = []
        #: The catalog items each node's changes touch: what its restarts are planned from.
        self.items: dict[str, set[str]] = {}

    def add(self, site: _Site, path: PurePosixPath, action: str, why: str, *, data: bytes | None = None,
            mode: int = 0o644, item: str | None = None) -> None:
        if action == "write":
            path = site.node.fs.resolve(path)  # a symlinked file is written where it points, the link kept
        planned_from = None
        if action == "create" and (current := site.read(path)) is not None:  # a resumed phase wrote it already
            if current == data:
                return
            action = "write"
        if action in ("write", "remove"):
            current = site.read(path)
            planned_from = hashlib.sha256(current).hexdigest() if current is not None else None
        self.changes.append(RotationChange(node=site.label, path=str(path), action=action, why=why, data=data,
                                           mode=mode, planned_from=planned_from))
        if item is not None:
            self.items.setdefault(site.label, set()).add(item)

    def write_if_changed(self, site: _Site, path: PurePosixPath, before: bytes | None, after: bytes | None,
                         why: str, *, item: str | None = None, mode: int = 0o644) -> None:
        if after is not None and after != before:
            self.add(site, path, "write" if before is not None else "create", why, data=after, item=item, mode=mode)

    def bundle(self, first: bytes, second: bytes) -> bytes:
        return first.rstrip(b"\n") + b"\n" + second

    def plan(self) -> None:
        for site in self.sites:
            getattr(self, "_" + self.phase.value.replace("-", "_"))(site)

    # -- phases

    def _prepare(self, site: _Site) -> None:
        if site.signer:
            self.add(site, site.staged_crt, "create", "the new CA, staged", data=self.new_pem)
            self.add(site, site.staged_key, "create", "the new CA's key, staged", data=self.new_key, mode=0o600)

    def _trust_both(self, site: _Site) -> None:
        if site.has_ca:
            self.write_if_changed(site, site.ca_crt, site.read(site.ca_crt), self.bundle(self.old_pem, self.new_pem),
                                  "old + new CA, the old first (it still signs): what every reader trusts until "
                                  "drop-old", item=self.spec.name)
        self._signing_copy(site, self.old_pem, site.read(site.ca_key) if site.signer else None,
                           "the old CA alone, for a signer that takes one certificate (kubernetes/kubeadm#1350)")
        self._kubeconfigs(site, ca_pem=self.bundle(self.old_pem, self.new_pem), sign=False)

    def _reissue(self, site: _Site) -> None:
        if site.has_ca:
            self.write_if_changed(site, site.ca_crt, site.read(site.ca_crt), self.bundle(self.new_pem, self.old_pem),
                                  "new + old CA, the new first: the new CA signs from now on", item=self.spec.name)
        if site.signer:
            self.write_if_changed(site, site.ca_key, site.read(site.ca_key), self.new_key,
                                  "the new CA's key", item=self.spec.name)
        self._signing_copy(site, self.new_pem, self.new_key, "the new CA alone: the signer switches to it")
        for name in self.spec.leaves:
            entry = _catalog.get(name)
            if not site.node.profile.has(entry):
                continue
            path = site.node.path_of(entry, FileRole.CERT if entry.kind is Kind.CERTIFICATE else None)
            if site.node.fs.stat(path) is None:
                continue
            self._leaf_file(site, path, name, item=name)
        self._kubeconfigs(site, ca_pem=None, sign=True)  # what they trust is trust-both's and drop-old's

    def _drop_old(self, site: _Site) -> None:
        if site.has_ca:
            self.write_if_changed(site, site.ca_crt, site.read(site.ca_crt), self.new_pem,
                                  "the new CA alone: the old one is trusted no more", item=self.spec.name)
        self._point_signer(site, to_copy=False)
        self._kubeconfigs(site, ca_pem=self.new_pem, sign=False)
        for path, why in ((site.signing_crt, "the signing copy, now the CA file itself"),
                          (site.signing_key, "the signing copy's key, now the key file itself"),
                          (site.staged_crt, "the staged copy, now the CA file"),
                          (site.staged_key, "the staged key, now the key file")):
            if site.node.fs.stat(path, follow=False) is not None:
                self.add(site, path, "remove", why)
        for phase in PHASES[:-1]:
            if site.node.fs.stat(site.undo(phase), follow=False) is not None:
                self.add(site, site.undo(phase), "remove", "undo record (holds the old CA's key; it is in the backups)")

    # -- pieces

    def _signing_copy(self, site: _Site, cert_pem: bytes, key_pem: bytes | None, why: str) -> None:
        """Point the component that signs with the CA at a one-certificate copy (``ca``: KCM), and write it."""
        if self.spec.signing is None or not site.signer or key_pem is None:
            return
        if not self._point_signer(site, to_copy=True):
            return
        self.write_if_changed(site, site.signing_crt, site.read(site.signing_crt), cert_pem, why,
                              item=self.spec.name)
        self.write_if_changed(site, site.signing_key, site.read(site.signing_key), key_pem, why,
                              item=self.spec.name, mode=0o600)

    def _point_signer(self, site: _Site, *, to_copy: bool) -> bool:
        """The signing component's flags -> the copy (or back to the CA files); False when it has none here."""
        if self.spec.signing is None or not site.signer:
            return False
        component, cert_flag, key_flag = self.spec.signing
        manifest = site.node.profile.manifests.get(component)
        if manifest is None or manifest.path is None:
            if site.control_plane and to_copy:
                self.notes.append(f"{site.label}: no {component} manifest: its --{cert_flag} is not kubepki's to "
                                  "point at a one-certificate copy")
            return False
        path = PurePosixPath(manifest.path)
        before = site.read(path)
        data = before
        pairs = ((cert_flag, site.ca_crt, site.signing_crt), (key_flag, site.ca_key, site.signing_key))
        for flag, own, copy in pairs:
            old, new = (str(own), str(copy)) if to_copy else (str(copy), str(own))
            value = manifest.flags.get(flag)
            if data is None or value is None:
                if to_copy:
                    self.notes.append(f"{site.label}: {component} has no --{flag}: it does not sign here")
                return False
            if value == new:
                continue
            edited = _flag_edit(data, flag, old, new)
            if edited is None:
                raise ConfigError(f"{site.label}:{path}: --{flag} is {value!r}, not {old!r} (kubeadm's layout)",
                                  path=str(path))
            data = edited
        self.write_if_changed(site, path, before, data,
                              f"{component} --{cert_flag} and --{key_flag} -> "
                              f"{'the one-certificate copy' if to_copy else 'the CA files again'}")
        return True

    def _kubeconfigs(self, site: _Site, *, ca_pem: bytes | None, sign: bool) -> None:
        if not self.spec.kubeconfigs:
            return
        for entry in (e for e in _catalog.CATALOG if e.kind is Kind.KUBECONFIG):
            if not site.node.profile.has(entry):
                continue
            path = site.node.path_of(entry)
            before = site.read(path)
            if before is None:
                continue
            kc = parse_kubeconfig(before, path=str(path))
            user: dict[str, str | None] = {}
            cluster: dict[str, str | None] = {}
            # a kubeconfig naming a CA file (not kubeadm's layout) reads the CA file, which is the bundle
            if ca_pem is not None and kc.ca is not None and kc.ca.data is not None and kc.ca.data != ca_pem:
                cluster = {"certificate-authority-data": b64(ca_pem)}
            cred = kc.client_certificate
            if sign and cred is not None:
                if cred.data is not None:
                    reissued = self._reissued(cred.data)
                    if reissued is not None:
                        user = {"client-certificate-data": b64(reissued)}
                elif cred.file is not None:
                    real = site.node.fs.resolve(cred.file)
                    # the kubelet holds its client certificate in memory and replaces it only by its own
                    # rotation (the catalog's kubelet-managed): a file re-signed here takes a kubelet
                    # restart, which kubelet.conf (the file that names it) plans
                    item = entry.name
                    self._leaf_file(site, real, f"{entry.name}'s client certificate", item=item)
            if user or cluster:
                why = ("client certificate re-signed by the new CA" if user else "") + (
                    (", " if user and cluster else "") + "certificate-authority-data: "
                    + ("the new CA" if ca_pem == self.new_pem else "old + new CA") if cluster else "")
                self.add(site, path, "write", f"{entry.name}: {why}", item=entry.name,
                         data=edit_kubeconfig(before, kc, user=user, cluster=cluster))

    def _leaf_file(self, site: _Site, path: PurePosixPath, what: str, *, item: str) -> None:
        real = site.node.fs.resolve(path)  # the kubelet's -current.pem is a symlink: its target is written
        before = site.read(real)
        if before is None:
            raise ConfigError(f"{site.label}: {what} {path} is missing", path=str(path))
        after = self._reissued(before)
        if after is not None:
            self.add(site, real, "write", f"{what}: re-signed by the new CA", data=after, item=item)

    def _reissued(self, pem: bytes) -> bytes | None:
        """``pem`` (a certificate, maybe with its key) with the leaf re-signed by the new CA over its own key;
        None when the new CA signed it already."""
        blocks = [m.group(0) for m in _PEM_BLOCK.finditer(pem)]
        certs = [b for b in blocks if b.startswith(b"-----BEGIN CERTIFICATE-----")]
        if not certs:
            raise ConfigError("a certificate to re-sign holds no certificate")
        leaf = load_certificate(certs[0])
        if signed_by(leaf, self.new):
            return None
        if not signed_by(leaf, self.old):
            raise ConfigError(f"{leaf.subject.rfc4514_string()} is signed by neither the old nor the new "
                              f"{self.spec.name}")
        signer = Signer.from_key(self.spec.name, self.new, load_private_key(self.new_key))
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        not_after = min(self.now + lifetime, signer.not_after)
        cert = sign_leaf(LeafTemplate.from_certificate(leaf), leaf.public_key(),  # type: ignore[arg-type]
                         signer, not_before=self.now - _BACKDATE, not_after=not_after)
        rest = b"".join(b if b.endswith(b"\n") else b + b"\n" for b in blocks if b is not certs[0]
                        and not b.startswith(b"-----BEGIN CERTIFICATE-----"))
        return cert_to_pem(cert) + rest


def _restart_plan(cluster: Cluster, items: Mapping[str, set[str]], *, policy: str,
                  method: str | None) -> ClusterRestartPlan:
    """Each node's restarts for the catalog items the phase changed there, rolled in the cluster's order;
    a static pod with no manifest on the node (a worker's kube-controller-manager) is not the node's."""
    plan = plan_cluster_restarts(cluster, {label: sorted(items.get(label, ())) for label in cluster.labels},
                                 policy=policy, method=method)
    turns = []
    for turn in plan:
        manifests = cluster[turn.label].profile.manifests
        steps = tuple(s for s in turn.plan.steps if s.component.value not in _STATIC_PODS
                      or ((m := manifests.get(s.component.value)) is not None and m.path is not None))
        turns.append(attrs.evolve(turn, plan=attrs.evolve(turn.plan, steps=steps)))
    return attrs.evolve(plan, order=tuple(turns))


_STATIC_PODS = frozenset({"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"})


def _restarted(plan: ClusterRestartPlan) -> dict[str, tuple[str, ...]]:
    from kubepki.restarts import Action

    out = {}
    for turn in plan:
        comps = tuple(s.component.value for s in turn.plan.steps if s.action is Action.RESTART)
        if comps:
            out[turn.label] = comps
    return out


def _join_hash(pem: bytes) -> str:
    """kubeadm join's ``--discovery-token-ca-cert-hash`` for the CA in ``pem`` (SHA-256 of its SPKI)."""
    spki = load_certificate(pem).public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _the_new_ca(sites: Sequence[_Site], spec: _Spec, phase: Phase, record: dict[str, Any] | None, *,
                old_pem: bytes, when: dt.datetime, new_ca_cert: bytes | None,
                new_ca_key: bytes | None) -> tuple[bytes, bytes]:
    """The new CA (certificate and key PEM) the phase works with: made or given for prepare, else staged."""
    staged = {(crt, key) for s in sites if s.signer
              and (crt := s.read(s.staged_crt)) is not None and (key := s.read(s.staged_key)) is not None}
    if phase is Phase.PREPARE and record is not None and staged:
        if len(staged) != 1:
            raise ConfigError("the staged new CA differs between the nodes: abort and prepare again")
        return staged.pop()  # prepare resumed: keep the CA some nodes have already
    if phase is Phase.PREPARE:
        return _new_ca(spec, old_pem, when, new_ca_cert, new_ca_key)
    if phase is Phase.DROP_OLD:
        return _signing(sites, str(record["new_ca_sha256"]) if record else "")
    return _staged(sites)


def _fresh(status: RotationStatus, record: dict[str, Any] | None) -> tuple[RotationStatus, dict[str, Any]]:
    """A finished rotation's status and record as the start of another (its history kept)."""
    doc = {"kind": "CARotationState", "history": list((record or {}).get("history") or [])}
    return RotationStatus(ca=status.ca, phase=None, applying=None, nodes=()), doc


def plan_rotation(
    cluster: Cluster | Sequence[Node | str],
    *,
    ca: str = "ca",
    new_ca_cert: bytes | None = None,
    new_ca_key: bytes | None = None,
    policy: str = "minimal",
    method: str | None = None,
    again: bool = False,
    now: dt.datetime | None = None,
) -> RotationPlan:
    """The next phase of the rotation of ``ca`` (``ca``, ``front-proxy-ca`` or ``etcd-ca``): its changes on
    every node and the restarts each node needs, frozen.

    The phase follows from the records on the nodes holding the CA's key (see :func:`rotation_status`); a
    phase half applied (a crash) is planned again from the files as they are. ``new_ca_cert``/``new_ca_key``
    (PEM) give ``prepare`` the new CA; by default it generates one as kubeadm does (the old CA's CN and key
    algorithm, ten years). The restarts are :func:`~kubepki.plan_restarts`' under ``policy`` and ``method``
    for what the phase changes on each node. Raises :class:`~kubepki.ConfigError` when the rotation is
    done (``again=True`` starts another rotation of the same CA after a finished one), the nodes
    disagree, or a file is not in kubeadm's layout.
    """
    spec = _spec(ca)
    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    when = _utc(now)
    sites = _sites(c, spec)
    if not any(s.signer for s in sites):
        raise ConfigError(f"a rotation of {spec.name} needs the nodes that hold its key (the control planes, "
                          "or the etcd nodes for an external etcd's etcd-ca)")
    status, record = _status(sites, spec)
    if again and status.active and status.next_phase is None:
        status, record = _fresh(status, record)
    phase = status.next_phase
    if phase is None:
        raise ConfigError(f"the rotation of {spec.name} is complete (drop-old verified): nothing to do; "
                          "start another with again=True (--again)")
    if phase is not Phase.PREPARE and (new_ca_cert is not None or new_ca_key is not None):
        raise ConfigError("--new-ca-cert/--new-ca-key are for prepare; the new CA is staged already")
    old_pem = str(record["old_ca_pem"]).encode() if record is not None and "old_ca_pem" in record \
        else _old_ca(sites, spec)
    new_pem, new_key = _the_new_ca(sites, spec, phase, record, old_pem=old_pem, when=when, new_ca_cert=new_ca_cert,
                                   new_ca_key=new_ca_key)
    planner = _Planner(sites, spec, phase, when, old_pem=old_pem, new_pem=new_pem, new_key=new_key)
    planner.plan()
    touched = {c.node for c in planner.changes}
    for site in sites:  # the bookkeeping apply writes, listed so that the plan names every path it touches
        if site.label in touched and phase is not Phase.DROP_OLD:
            planner.add(site, site.undo(phase), "record", "the undo record abort replays (0600)")
        if site.signer:
            planner.add(site, site.state, "record", "the rotation record status and next read (0600)")
    planner.notes += _phase_notes(spec, phase, old_pem=old_pem, new_pem=new_pem)
    items = {label: set(names) for label, names in planner.items.items()}
    if record is not None and record.get("applying") == phase.value:
        # resumed: the files written before the crash are planned no more, but their readers still restart
        for label, names in (record.get("items") or {}).items():
            items.setdefault(label, set()).update(names)
    restarts = _restart_plan(c, items, policy=policy, method=method)
    return RotationPlan(ca=spec.name, phase=phase, now=when, nodes=tuple(s.label for s in sites),
                        changes=tuple(planner.changes), restarts=_restarted(restarts),
                        notes=tuple(planner.notes), restart_plan=restarts,
                        items={label: tuple(sorted(names)) for label, names in items.items()}, again=again,
                        new_ca_pem=new_pem, new_key_pem=new_key, old_ca_pem=old_pem, cluster=c)


def _phase_notes(spec: _Spec, phase: Phase, *, old_pem: bytes, new_pem: bytes) -> list[str]:
    """What the plan of ``phase`` tells the operator beyond its changes."""
    notes: list[str] = []
    if phase is Phase.DROP_OLD and spec.name in ("ca", "front-proxy-ca"):
        notes.append("kube-system/extension-apiserver-authentication (what aggregated API servers trust) "
                     "keeps the old CA: kube-apiserver adds CAs to it and never removes one; give "
                     "--kubeconfig (kubeconfig=) and kubepki sets it to the new CA, or edit it")
    if spec.name == "ca" and phase is Phase.REISSUE:
        notes.append(f"pods trust kube-apiserver by their namespace's kube-root-ca.crt: with --kubeconfig "
                     f"(kubeconfig=) reissue is refused while one lacks the new CA, and waits until "
                     f"{POD_REFRESH:.0f} s have passed since it was last written (the kubelet's refresh of "
                     f"the pods' copies); without it, that wait is yours")
    if spec.name == "ca" and phase in (Phase.REISSUE, Phase.DROP_OLD):
        notes.append(f"kubeadm join --discovery-token-ca-cert-hash {_join_hash(new_pem)} (the new CA; "
                     f"the old CA's {_join_hash(old_pem)} works until drop-old)")
    return notes


# --------------------------------------------------------------------------------------
# Applying, verifying, aborting


#: ``restart(node_plan, node)``: carries one node's restarts out (see :func:`~kubepki.cluster.apply_cluster_restarts`).
RestartRunner = Callable[["RestartPlan", Node], "RestartReport | RemoteRestartReport"]


def apply_rotation(plan: RotationPlan, *, backup_dir: str, now: dt.datetime | None = None, restart: bool = False,
                   health: HealthCheck | None = None, runner: RestartRunner | None = None,
                   health_timeout: float = 300.0,
                   kubeconfig: str | os.PathLike[str] | None = None,
                   pod_refresh: float = POD_REFRESH) -> RotationResult:
    """Carry out ``plan`` holding every node's lock: back every node up first, record on the nodes holding
    the CA's key that the phase is under way, then node by node record the undo and write each file
    atomically (mode and owner kept); with ``restart``, roll :attr:`RotationPlan.restart_plan` one node at
    a time, each healthy (``health``, default: every restarted component answers its own probe) before
    the next; with ``kubeconfig`` (read at that moment: the rotation rewrites admin.conf), bring the live
    objects carrying the CA in step (``kube-public/cluster-info``, webhook and APIService ``caBundle``s),
    and wait (with ``restart``) for kube-controller-manager to publish the CA file in every namespace's
    ``kube-root-ca.crt``; then verify the cluster's trust and the phase's own checks.

    With ``kubeconfig``, ``reissue`` of ``ca`` first makes sure every pod trusts the new CA before it
    signs what kube-apiserver serves: it raises :class:`~kubepki.ConfigError` (nothing written) while a
    namespace's ``kube-root-ca.crt`` lacks it, and waits until ``pod_refresh`` seconds (the kubelet's
    refresh of mounted ConfigMaps, :data:`~kubepki.cluster.POD_REFRESH`) have passed since it was last
    written.

    ``backup_dir`` is a directory on each node (a node path). The phase is recorded as verified only when
    every check passed, so a crash or a failed check leaves a phase that :func:`plan_rotation` plans again
    and :func:`abort_rotation` undoes. ``runner`` replaces how one node's restarts are carried out (the
    default: :func:`~kubepki.apply_restarts` on a local root, kubepki over SSH on a remote node). Raises
    :class:`~kubepki.LockError` when a node's lock is taken (nothing written).
    """
    spec = _spec(plan.ca)
    when = _utc(now)
    sites = _sites(plan.cluster, spec)
    if restart and plan.restarts:
        _preflight(plan.restart_plan, runner)
    with locked(sites):
        status, record = _status(sites, spec)  # under the locks: no other run moves the rotation meanwhile
        if plan.again and status.active and status.next_phase is None:
            status, record = _fresh(status, record)
        require_next(status.next_phase, plan.phase)
        doc: dict[str, Any] = dict(record or {})
        doc.update({"kind": "CARotationState", "ca": spec.name, "old_ca_pem": plan.old_ca_pem.decode(),
                    "old_ca_sha256": _sha(plan.old_ca_pem), "new_ca_sha256": _sha(plan.new_ca_pem),
                    "phase": status.phase.value if status.phase else None, "applying": plan.phase.value,
                    "items": {label: list(names) for label, names in plan.items.items()}})
        doc["history"] = history(record, phase=plan.phase.value, event="started", at=when.isoformat())
        check_fresh(sites, plan.changes)
        pods_waited = (_pods_trust_new_ca(sites, plan, kubeconfig, now=when, pod_refresh=pod_refresh)
                       if kubeconfig is not None and spec.name == "ca" and plan.phase is Phase.REISSUE else None)
        backups = {site.label: str(backup(site.node, backup_dir, now=when, on_node=True, lock_held=True).path)
                   for site in sites}
        for site in sites:
            if site.signer:
                save_record(site, doc)
                _checkpoint("rotate-ca:recorded")
        for site in sites:
            apply_node(site, plan.phase, plan.changes, kind=_UNDO, tag="rotate-ca")
    # the restarts take each node's lock themselves (apply_restarts); meanwhile the record says "applying"
    problems: list[str] = []
    rolled = None
    if restart and plan.restarts:
        rolled = _roll(plan.restart_plan, health=health, runner=runner, health_timeout=health_timeout)
        if not rolled.ok:
            problems.append(f"the restarts stopped at {rolled.failed}: {rolled.error}")
    objects = _sync(sites, spec, plan.old_ca_pem, plan.new_ca_pem, kubeconfig,
                    publish_wait=health_timeout if rolled is not None else 0.0)
    problems += objects.problems if objects is not None else ()
    with locked(sites):
        result = _verify(plan.cluster, spec, plan.phase, "apply", backups, doc=doc, when=when, problems=problems,
                         restarts=rolled, objects=objects)
    return attrs.evolve(result, pods_waited=pods_waited)


def _ca_file_now(sites: Sequence[_Site]) -> list[x509.Certificate]:
    """The CA file's certificates as they are now on a node holding the key."""
    return next((load_certificates(data) for s in sites if s.signer and (data := s.read(s.ca_crt)) is not None), [])


def _sync(sites: Sequence[_Site], spec: _Spec, old_pem: bytes, new_pem: bytes,
          kubeconfig: str | os.PathLike[str] | None, *, publish_wait: float = 0.0) -> ObjectSync | None:
    """The live objects in step with the CA file as it is now on a node holding the key (None: no API)."""
    if kubeconfig is None:
        return None
    return sync_objects(kubeconfig, ca=spec.name, want=_ca_file_now(sites),
                        rotated=[load_certificate(old_pem), load_certificate(new_pem)], publish_wait=publish_wait)


def _pods_trust_new_ca(sites: Sequence[_Site], plan: RotationPlan, kubeconfig: str | os.PathLike[str], *,
                       now: dt.datetime, pod_refresh: float) -> float:
    """Before ``reissue`` lets the new CA sign what kube-apiserver serves: every namespace's
    ``kube-root-ca.crt`` (what pods trust the API server by) carries it, and the kubelets have had
    ``pod_refresh`` seconds since its last write to refresh the pods' copies (waited out here, at most
    ``pod_refresh``); the seconds waited. Raises :class:`ConfigError` when a namespace lacks the new CA or
    the ConfigMaps cannot be read: the pods there would stop trusting kube-apiserver."""
    from kubepki.objects import APIError, KubeClient

    rotated = [load_certificate(plan.old_ca_pem), load_certificate(plan.new_ca_pem)]
    try:
        with KubeClient.from_kubeconfig(kubeconfig) as client:
            lag = root_ca_lag(client, want=_ca_file_now(sites), rotated=rotated)
    except (APIError, KubepkiError, OSError) as exc:
        raise ConfigError(f"reissue first checks that every pod trusts the new CA, and could not read "
                          f"kube-root-ca.crt: {exc}") from None
    if not lag.ok:
        raise ConfigError(f"{lag.describe()} does not carry the new CA yet: pods there would stop trusting "
                          "kube-apiserver once reissue lets the new CA sign its certificate. kube-controller-"
                          "manager publishes its --root-ca-file when it starts: restart it (trust-both with "
                          "--no-restart does not), then run reissue again")
    since = pod_refresh if lag.updated_at is None else (now - lag.updated_at).total_seconds()
    remaining = min(pod_refresh, max(0.0, pod_refresh - since))
    if remaining > 0:
        time.sleep(remaining)
    return remaining


def _preflight(plan: ClusterRestartPlan, runner: RestartRunner | None) -> None:
    """Refuse restarts (before anything is written) on a local node where none of the components to
    restart runs: a node directory, where kubepki would wait minutes for components that never come.
    A node over SSH is judged by the kubepki that runs there; a caller's ``runner`` restarts its own way."""
    if runner is not None:
        return
    from kubepki.restarts import Action, ProcScanner

    idle = []
    for turn in plan:
        node = plan.cluster[turn.label]
        wanted = {st.component for st in turn.plan.steps if st.action is Action.RESTART}
        if not wanted or not isinstance(node.fs, LocalPaths):
            continue
        if not wanted & {i.component for i in ProcScanner("/proc", node=node).instances()}:
            idle.append(f"{turn.label} ({', '.join(sorted(c.value for c in wanted))})")
    if idle:
        raise ConfigError(f"none of the components to restart runs on {'; '.join(idle)}: node directories? "
                          "Give --no-restart (restart=False) to change the files only; the plan lists the restarts")


def _roll(plan: ClusterRestartPlan, *, health: HealthCheck | None, runner: RestartRunner | None,
          health_timeout: float) -> ClusterRestartReport:
    """Each node's restarts, one node at a time, each node healthy before the next."""
    from kubepki.restarts import apply_restarts, check_health

    remote = ssh_restart(dry_run=False)

    def default_runner(node_plan: RestartPlan, node: Node) -> RestartReport | RemoteRestartReport:
        if isinstance(node.fs, LocalPaths):  # the phase's own backup was taken before any write
            return apply_restarts(node_plan, node=node, take_backup=False)
        return remote(node_plan, node)

    plans = {turn.label: turn.plan for turn in plan}

    from kubepki.restarts import Action

    def default_health(label: str, node: Node) -> bool:
        comps = [s.component for s in plans[label].steps if s.action is Action.RESTART]
        return all(h.healthy is not False for h in check_health(node, comps))

    # a node with nothing but notes is not visited (over SSH that would run kubepki there for nothing)
    busy = tuple(t for t in plan if any(s.action is not Action.NOTE for s in t.plan.steps))
    return apply_cluster_restarts(attrs.evolve(plan, order=busy), health=health or default_health, dry_run=False,
                                  health_timeout=health_timeout, restart=runner or default_runner)


def _verify(cluster: Cluster, spec: _Spec, phase: Phase, action: str, backups: dict[str, str], *,
            doc: dict[str, Any] | None, when: dt.datetime, problems: Sequence[str] = (),
            restarts: ClusterRestartReport | None = None, objects: ObjectSync | None = None) -> RotationResult:
    sites = _sites(cluster, spec)
    trust = check_trust(Cluster([s.node for s in sites], labels=[s.label for s in sites]), now=when)
    found = [*problems, *(f"broken TLS edge {e.name} ({e.kind.value})" for e in trust.broken)]
    if doc is not None and action == "apply":
        found += _phase_problems(sites, phase, doc)
        doc = dict(doc)
        if not found:
            doc.update({"phase": phase.value, "applying": None, "items": {}})
        doc["history"] = history(doc, phase=phase.value, event="verified" if not found else "verify-failed",
                                  at=when.isoformat())
        for site in sites:  # the caller holds every node's lock
            if site.signer:
                save_record(site, doc)
    return RotationResult(ca=spec.name, phase=phase, action=action, backups=backups, trust=trust,
                          problems=tuple(found), restarts=restarts, objects=objects)


def _certs_of(site: _Site) -> Iterator[tuple[str, x509.Certificate]]:
    """Every certificate on ``site`` the CA signs, as the rotation re-issues them."""
    for name in site.spec.leaves:
        entry = _catalog.get(name)
        path = site.node.path_of(entry, FileRole.CERT if entry.kind is Kind.CERTIFICATE else None)
        if not site.node.profile.has(entry) or site.node.fs.stat(path) is None:
            continue
        if (data := site.read(site.node.fs.resolve(path))) is not None:
            yield f"{site.label}:{path}", load_certificates(data)[0]
    if not site.spec.kubeconfigs:
        return
    for entry in (e for e in _catalog.CATALOG if e.kind is Kind.KUBECONFIG):
        path = site.node.path_of(entry)
        if not site.node.profile.has(entry) or (data := site.read(path)) is None:
            continue
        cred = parse_kubeconfig(data, path=str(path)).client_certificate
        pem = cred.data if cred and cred.data is not None else (
            site.read(site.node.fs.resolve(cred.file)) if cred and cred.file else None)
        if pem is not None:
            yield f"{site.label}:{path} client certificate", load_certificates(pem)[0]


def _trust_files(site: _Site) -> Iterator[tuple[str, list[x509.Certificate]]]:
    """Every CA bundle on ``site`` a component trusts the CA through."""
    if (data := site.read(site.ca_crt)) is not None:
        yield f"{site.label}:{site.ca_crt}", load_certificates(data)
    if not site.spec.kubeconfigs:
        return
    for entry in (e for e in _catalog.CATALOG if e.kind is Kind.KUBECONFIG):
        path = site.node.path_of(entry)
        if site.node.profile.has(entry) and (data := site.read(path)) is not None:
            ca = parse_kubeconfig(data, path=str(path)).ca
            if ca is not None and ca.data is not None:
                yield f"{site.label}:{path} certificate-authority-data", load_certificates(ca.data)


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _phase_problems(sites: Sequence[_Site], phase: Phase, doc: dict[str, Any]) -> list[str]:
    """What the phase should have left on every node and did not (beyond check_trust's edges)."""
    new_sha, old_sha = doc["new_ca_sha256"], doc["old_ca_sha256"]
    return [p for site in sites for p in _site_problems(site, phase, new_sha, old_sha)]


def _signer_problem(site: _Site, crt: PurePosixPath, key: PurePosixPath, want: str, what: str) -> str | None:
    """Why ``crt``'s first certificate is not the CA ``want`` (SHA-256) with ``key`` its key, else None."""
    crt_pem, key_pem = site.read(crt), site.read(key)
    if crt_pem is None or key_pem is None:
        return f"{site.label}: {what} {crt} or its key is missing"
    cert = load_certificate(crt_pem)
    if _fingerprint(cert) != want:
        return f"{site.label}:{crt} does not start with the {what}"
    try:
        Signer.from_key(site.spec.name, cert, load_private_key(key_pem))
    except KubepkiError:
        return f"{site.label}:{key} is not the {what}'s key"
    return None


def _ca_file_problems(site: _Site, phase: Phase, new_sha: str, old_sha: str) -> list[str]:
    """The CA file holds the phase's CAs in the phase's order, and the signer signs with the right one."""
    want = {Phase.TRUST_BOTH: [old_sha, new_sha], Phase.REISSUE: [new_sha, old_sha], Phase.DROP_OLD: [new_sha]}
    problems = []
    in_file = [_fingerprint(c) for c in load_certificates(site.read(site.ca_crt) or b"")]
    if in_file != want[phase]:
        names = " + ".join("new" if s == new_sha else "old" for s in want[phase])
        problems.append(f"{site.label}:{site.ca_crt} is not {names}")
    signing = new_sha if phase is not Phase.TRUST_BOTH else old_sha
    what = "signing CA (" + ("old" if signing == old_sha else "new") + ")"
    if site.signer and (p := _signer_problem(site, site.ca_crt, site.ca_key, signing, what)):
        problems.append(p)
    if site.signer and phase is not Phase.DROP_OLD and site.read(site.signing_crt) is not None \
            and (p := _signer_problem(site, site.signing_crt, site.signing_key, signing, "signing copy")):
        problems.append(p)
    return problems


def _site_problems(site: _Site, phase: Phase, new_sha: str, old_sha: str) -> list[str]:
    problems = []
    if site.signer and phase is not Phase.DROP_OLD:
        staged = site.read(site.staged_crt)
        if staged is None or _sha(staged) != new_sha:
            problems.append(f"{site.label}: the staged new CA is missing or another")
    if site.has_ca and phase is not Phase.PREPARE:
        problems += _ca_file_problems(site, phase, new_sha, old_sha)
    if phase in (Phase.TRUST_BOTH, Phase.REISSUE):
        for where, certs in _trust_files(site):
            if {old_sha, new_sha} - {_fingerprint(c) for c in certs}:
                problems.append(f"{where} does not trust both CAs")
    if phase in (Phase.REISSUE, Phase.DROP_OLD) and site.has_ca:
        new = load_certificate(site.read(site.ca_crt) or b"")
        if _fingerprint(new) == new_sha:
            problems += [f"{where} is not issued by the new CA" for where, cert in _certs_of(site)
                         if not signed_by(cert, new)]
    if phase is Phase.DROP_OLD:
        problems += [f"{where} still trusts the old CA" for where, certs in _trust_files(site)
                     if old_sha in {_fingerprint(c) for c in certs}]
        if site.node.fs.stat(site.signing_crt, follow=False) is not None:
            problems.append(f"{site.label}:{site.signing_crt} (the signing copy) is still there")
    return problems


def abort_rotation(cluster: Cluster | Sequence[Node | str], *, ca: str = "ca", now: dt.datetime | None = None,
                   restart: bool = False, policy: str = "minimal", method: str | None = None,
                   health: HealthCheck | None = None, runner: RestartRunner | None = None,
                   health_timeout: float = 300.0,
                   kubeconfig: str | os.PathLike[str] | None = None) -> RotationResult:
    """Undo the latest phase of the rotation of ``ca`` (the one under way, else the last verified one) on
    every node from its undo record, byte for byte with modes and owners, holding every node's lock; the
    rotation is then at the previous verified phase (none: aborting ``prepare`` removes the staged CA and
    the records). Every undo record is read and checked before anything is written. With ``restart``, the
    components that read what was put back restart node by node, and with ``kubeconfig`` the live objects
    follow the files back, as in :func:`apply_rotation`. Refused once
    ``drop-old`` has started: the old CA is then in the backups only. An abort killed half-way is finished
    by aborting again."""
    spec = _spec(ca)
    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    when = _utc(now)
    sites = _sites(c, spec)
    with locked(sites):
        status, record = _status(sites, spec)
        if record is None:
            raise ConfigError(f"no rotation of {spec.name} is under way: nothing to abort")
        target, previous = abort_target(status.applying, status.phase, old="CA")
        undos = {site.label: read_undo(site, target, kind=_UNDO) for site in sites}
        # what reads the files put back restarts: refused now (nothing written yet) where nothing runs
        items = {site.label: {i for e in undo if (i := _item_of(site, e.path)) is not None}
                 for site in sites if (undo := undos[site.label]) is not None}
        restarts = _restart_plan(c, items, policy=policy, method=method)
        if restart and _restarted(restarts):
            _preflight(restarts, runner)
        rewind(undos, record, undo_sites=sites, record_sites=[s for s in sites if s.signer], target=target,
               previous=previous, when=when, tag="rotate-ca", reset={"items": {}})
    rolled = None
    problems: list[str] = []
    if restart and _restarted(restarts):
        rolled = _roll(restarts, health=health, runner=runner, health_timeout=health_timeout)
        if not rolled.ok:
            problems.append(f"the restarts stopped at {rolled.failed}: {rolled.error}")
    objects = _sync(sites, spec, str(record["old_ca_pem"]).encode(), _staged_or_signing(sites, record), kubeconfig,
                    publish_wait=health_timeout if rolled is not None else 0.0)
    problems += objects.problems if objects is not None else ()
    return _verify(c, spec, target, "abort", {}, doc=None, when=when, problems=problems, restarts=rolled,
                   objects=objects)


def _staged_or_signing(sites: Sequence[_Site], record: dict[str, Any]) -> bytes:
    """The rotation's new CA as PEM, from a staged copy (or, aborted prepare, the record alone)."""
    for s in sites:
        if s.signer and (crt := s.read(s.staged_crt)) is not None:
            return crt
    return str(record["old_ca_pem"]).encode()  # prepare aborted: no new CA left to take out of bundles


def _item_of(site: _Site, path: PurePosixPath) -> str | None:
    """The catalog item a file the rotation writes belongs to (what its restarts are planned from)."""
    if path in (site.ca_crt, site.ca_key, site.signing_crt, site.signing_key):
        return site.spec.name
    for entry in _catalog.CATALOG:
        if not site.node.profile.has(entry):
            continue
        roles = (FileRole.CERT, FileRole.KEY) if entry.kind is Kind.CERTIFICATE else (None,)
        for role in roles:
            own = site.node.path_of(entry, role) if role is not None else site.node.path_of(entry)
            if own == path or site.node.fs.resolve(own) == path:
                return entry.name
    return None
