"""Rotating the cluster CA (``ca``) across every node, phase by phase, with both CAs trusted between.

The phases, each planned (frozen), applied under each node's lock after each node's backup, and
verified with :func:`~kubepki.cluster.check_trust`:

1. ``prepare``: a new CA staged on every control plane beside the PKI
   (``pki/.kubepki-rotation-ca-new.{crt,key}``, the key 0600); nothing in use changes.
2. ``trust-both``: ``pki/ca-bundle.crt`` (old + new) on every node; kube-apiserver
   ``--client-ca-file``, kube-controller-manager ``--client-ca-file`` and ``--root-ca-file``, and the
   kubelet's ``clientCAFile`` are pointed at it; every kubeconfig's ``certificate-authority-data``
   becomes the bundle. ``ca.crt`` itself stays one certificate: KCM's ``--cluster-signing-cert-file``
   reads it and takes a single certificate (kubernetes/kubeadm#1350).
3. ``reissue``: ``ca.crt``/``ca.key`` become the new CA (so KCM signs with it); every leaf the old CA
   signed (apiserver, apiserver-kubelet-client, the kubeconfigs' client certificates, the kubelet's
   client and CSR-issued serving certificates) is re-signed by the new CA over its own key.
4. ``drop-old``: the flags and ``clientCAFile`` point at ``ca.crt`` again, the kubeconfigs carry the
   new CA only, the bundle and the staged copies are removed; the old CA stays in the backups.

State lives on the control planes (``pki/.kubepki-rotation-ca.json``, written atomically), so
:func:`rotation_status` and :func:`plan_rotation` need nothing else. Before changing a node, each phase
writes that node's undo record (``pki/.kubepki-rotation-ca-undo-<phase>.json``, 0600: it holds the
replaced keys), which :func:`abort_rotation` replays to return to the previous verified phase.
Components are not restarted here (``--no-restart``): each plan lists the restarts a running node needs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import enum
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from kubepki import catalog as _catalog
from kubepki._clock import utc as _utc
from kubepki._crash import checkpoint as _checkpoint
from kubepki._report import Cell, Outcome, Report, Table
from kubepki.backups import backup
from kubepki.catalog import FileRole, Kind, NodeRole
from kubepki.cluster._cluster import Cluster
from kubepki.cluster._trust import TrustReport, check_trust
from kubepki.errors import ConfigError, KubepkiError
from kubepki.node import Node, node_lock
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

__all__ = ["PHASES", "Phase", "RotationChange", "RotationPlan", "RotationResult", "RotationStatus",
           "abort_rotation", "apply_rotation", "plan_rotation", "rotation_status"]

_CA = "ca"
_PREFIX = ".kubepki-rotation-ca"
_BUNDLE = "ca-bundle.crt"
_NEW_CA_VALIDITY = dt.timedelta(days=3650)  # kubeadm's CA lifetime
_BACKDATE = dt.timedelta(minutes=5)  # kubeadm backdates NotBefore for clock skew
_MAX = 1 << 20
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----\r?\n?", re.S)


class Phase(str, enum.Enum):
    """A phase of the rotation, in order."""

    PREPARE = "prepare"
    TRUST_BOTH = "trust-both"
    REISSUE = "reissue"
    DROP_OLD = "drop-old"


#: The phases in the order they are applied.
PHASES: tuple[Phase, ...] = tuple(Phase)
_PHASE_NAMES = frozenset(p.value for p in PHASES)

#: What each phase needs restarted on a running node (kubepki restarts nothing with ``--no-restart``).
_RESTARTS: dict[Phase, tuple[str, ...]] = {
    Phase.PREPARE: (),
    Phase.TRUST_BOTH: ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"),
    Phase.REISSUE: ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"),
    Phase.DROP_OLD: ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"),
}


@attrs.frozen(kw_only=True)
class RotationChange:
    """One file a phase writes or removes on one node."""

    node: str
    path: str
    #: ``create``, ``write`` (an existing file, its mode and owner kept) or ``remove``.
    action: str
    why: str
    data: bytes | None = attrs.field(default=None, repr=False, eq=False)
    #: The mode of a created file.
    mode: int = 0o644
    #: The SHA-256 (hex) of the file the change was planned from (``write``, ``remove``); a ``create``'s
    #: path must not exist. Apply refuses a plan whose files moved since (another writer).
    planned_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (never the bytes: they may be a key)."""
        return {"node": self.node, "path": self.path, "action": self.action, "why": self.why}


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
        if self.applying is not None:
            return self.applying
        if self.phase is None:
            return Phase.PREPARE
        i = PHASES.index(self.phase)
        return PHASES[i + 1] if i + 1 < len(PHASES) else None

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
        done = PHASES.index(self.phase) if self.phase else -1
        rows = []
        for i, p in enumerate(PHASES):
            state, tone = (("verified", "ok") if i <= done else ("in progress", "warning") if p is self.applying
                           else ("next", "dim") if p is self.next_phase else ("to do", "dim"))
            rows.append([Cell(p.value, strong=True), Cell(state, tone, badge=True)])
        return Table(f"CA ROTATION ({self.ca})", ("PHASE", "STATE"), rows)

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
    #: What each node must restart to load the changes (kubepki restarts nothing: ``--no-restart``).
    restarts: dict[str, tuple[str, ...]]
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
        return Table(f"CA ROTATION ({self.ca}): {self.phase.value}", ("NODE", "ACTION", "PATH", "WHY"),
                     [[Cell(c.node, strong=True), Cell(c.action), Cell(c.path), Cell(c.why)] for c in self.changes])

    def table(self) -> str:
        """The plan as text: the changes, the restarts --no-restart leaves to the operator, the notes."""
        lines = [self.text().rstrip("\n")]
        for n in self.nodes:
            if self._restarts_of(n):
                lines.append(f"restart on {n} (not done with --no-restart): {', '.join(self._restarts_of(n))}")
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
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Reading the nodes


@attrs.frozen
class _Site:
    """One node and the paths the rotation uses on it."""

    label: str
    node: Node

    @property
    def control_plane(self) -> bool:
        return self.node.profile.role is NodeRole.CONTROL_PLANE

    @property
    def ca_crt(self) -> PurePosixPath:
        return self.node.path_of(_CA, FileRole.CERT)

    @property
    def ca_key(self) -> PurePosixPath:
        return self.node.path_of(_CA, FileRole.KEY)

    def beside(self, name: str) -> PurePosixPath:
        return self.ca_crt.parent / name

    @property
    def state(self) -> PurePosixPath:
        return self.beside(f"{_PREFIX}.json")

    @property
    def staged_crt(self) -> PurePosixPath:
        return self.beside(f"{_PREFIX}-new.crt")

    @property
    def staged_key(self) -> PurePosixPath:
        return self.beside(f"{_PREFIX}-new.key")

    @property
    def bundle(self) -> PurePosixPath:
        return self.beside(_BUNDLE)

    def undo(self, phase: Phase) -> PurePosixPath:
        return self.beside(f"{_PREFIX}-undo-{phase.value}.json")

    def read(self, path: PurePosixPath) -> bytes | None:
        found = self.node.fs.read_file(path, limit=_MAX)
        if found is None:
            return None
        if found[2] is None:
            raise ConfigError(f"{self.label}:{path} is not a regular file (or too large)", path=str(path))
        return found[2]


def _sites(cluster: Cluster) -> list[_Site]:
    # fresh Node objects: a profile is cached, and each phase changes what discovery reads
    return [_Site(label, attrs.evolve(node)) for label, node in zip(cluster.labels, cluster.nodes, strict=True)]


def _sha(pem: bytes) -> str:
    """The SHA-256 fingerprint (hex) of the first certificate of ``pem``."""
    return _fingerprint(load_certificate(pem))


def _record(site: _Site) -> dict[str, Any] | None:
    data = site.read(site.state)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        raise ConfigError(f"{site.label}:{site.state} is not a rotation record (not JSON)",
                          path=str(site.state)) from None
    if not isinstance(doc, dict) or doc.get("kind") != "CARotationState":
        raise ConfigError(f"{site.label}:{site.state} is not a rotation record", path=str(site.state))
    bad = [k for k in ("old_ca_pem", "old_ca_sha256", "new_ca_sha256") if not isinstance(doc.get(k), str)]
    bad += [k for k in ("phase", "applying")
            if doc.get(k) is not None and (not isinstance(doc.get(k), str) or doc.get(k) not in _PHASE_NAMES)]
    if not isinstance(doc.get("history", []), list) or not all(isinstance(h, dict) for h in doc.get("history", [])):
        bad.append("history")
    if isinstance(doc.get("old_ca_pem"), str):
        try:
            load_certificate(doc["old_ca_pem"].encode(), path=str(site.state))
        except (KubepkiError, UnicodeError):
            bad.append("old_ca_pem")
    if bad:
        raise ConfigError(f"{site.label}:{site.state} is a damaged rotation record ({', '.join(bad)})",
                          path=str(site.state))
    return doc


@attrs.frozen
class _Undo:
    path: PurePosixPath
    before: bytes | None
    mode: int
    uid: int | None
    gid: int | None


def _undo_record(site: _Site, phase: Phase) -> list[_Undo] | None:
    """The node's undo record of ``phase``, every entry checked before one is used; None when absent."""
    path = site.undo(phase)
    data = site.read(path)
    if data is None:
        return None
    out = []
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("kind") != "CARotationUndo" or doc.get("phase") != phase.value:
            raise ValueError("not an undo record of this phase")
        for entry in doc["files"]:
            node_path = PurePosixPath(entry["path"])
            before = entry["before"]
            if not node_path.is_absolute() or (before is not None and not isinstance(before, str)):
                raise ValueError("an entry's path or content")
            ints = [entry[k] for k in ("mode", "uid", "gid")]
            if before is not None and not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                              for i in ints):
                raise ValueError("an entry's mode or owner")
            out.append(_Undo(node_path, base64.b64decode(before, validate=True) if before is not None else None,
                             ints[0] if before is not None else 0, ints[1], ints[2]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"{site.label}:{path} is a damaged undo record ({exc}): restore the backup taken "
                          "before the phase", path=str(path)) from None
    return out


def _phase_of(value: Any) -> Phase | None:
    if value is None:
        return None
    try:
        return Phase(value)
    except ValueError:
        raise ConfigError(f"unknown rotation phase in a record: {value!r}") from None


def _status(sites: Sequence[_Site]) -> tuple[RotationStatus, dict[str, Any] | None]:
    records = {s.label: r for s in sites if s.control_plane and (r := _record(s)) is not None}
    if not records:
        return RotationStatus(ca=_CA, phase=None, applying=None, nodes=()), None
    # the record that got furthest decides (a crash may leave the nodes' records a step apart)
    def rank(r: dict[str, Any]) -> tuple[int, int]:
        p, a = _phase_of(r.get("phase")), _phase_of(r.get("applying"))
        return (PHASES.index(p) if p else -1, PHASES.index(a) if a else -1)
    best = max(records.values(), key=rank)
    olds = {r.get("old_ca_sha256") for r in records.values()}
    if len(olds) > 1:
        raise ConfigError(f"the control planes' rotation records name different old CAs: {sorted(records)}")
    phase, applying = _phase_of(best.get("phase")), _phase_of(best.get("applying"))
    if any(rank(r) != rank(best) for r in records.values()):
        # a run killed while saving the records: the phase verified on every node is the lowest, and the
        # furthest any record got is under way (next re-applies it, idempotent; abort undoes it)
        verified = min(rank(r)[0] for r in records.values())
        furthest = max(max(rank(r)) for r in records.values())
        phase = PHASES[verified] if verified >= 0 else None
        applying = PHASES[furthest] if furthest > verified else None
    status = RotationStatus(ca=_CA, phase=phase, applying=applying, nodes=tuple(records),
                            new_ca=best.get("new_ca_sha256"), old_ca=best.get("old_ca_sha256"),
                            history=tuple(best.get("history") or ()))
    return status, best


def rotation_status(cluster: Cluster | Sequence[Node | str]) -> RotationStatus:
    """Where the rotation of the cluster CA stands, read from the control planes' records alone."""
    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    return _status(_sites(c))[0]


# --------------------------------------------------------------------------------------
# Planning


def _one_cert(site: _Site, path: PurePosixPath, what: str) -> bytes:
    data = site.read(path)
    if data is None:
        raise ConfigError(f"{site.label}: {what} {path} is missing", path=str(path))
    load_certificate(data, path=str(path))
    return data


def _old_ca(sites: Sequence[_Site]) -> bytes:
    pems = {s.label: _one_cert(s, s.ca_crt, "the cluster CA") for s in sites}
    certs = {lbl: load_certificates(p) for lbl, p in pems.items()}
    if any(len(c) != 1 for c in certs.values()):
        raise ConfigError("ca.crt must hold one certificate on every node (it is KCM's signing certificate)")
    if len({c[0].fingerprint(_sha256()) for c in certs.values()}) != 1:
        raise ConfigError(f"ca.crt differs between the nodes ({', '.join(pems)}): make them agree first")
    return next(iter(pems.values()))


def _sha256() -> hashes.SHA256:
    return hashes.SHA256()


def _new_ca(old_pem: bytes, now: dt.datetime, new_ca_cert: bytes | None,
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
        Signer.from_key(_CA, cert, key, path="--new-ca-key")  # SignerError when they do not match
        if cert.fingerprint(_sha256()) == load_certificate(old_pem).fingerprint(_sha256()):
            raise ConfigError("--new-ca-cert is the CA in use")
        return cert_to_pem(cert), key_to_pem(key)  # type: ignore[arg-type]
    old = load_certificate(old_pem)
    key = generate_key(key_algorithm(old.public_key()))  # type: ignore[arg-type]
    cn = old.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cert = self_signed_ca(str(cn[0].value) if cn else "kubernetes", key, not_before=now - _BACKDATE,
                          validity=_NEW_CA_VALIDITY)
    return cert_to_pem(cert), key_to_pem(key)


def _staged(sites: Sequence[_Site]) -> tuple[bytes, bytes]:
    found = set()
    for s in sites:
        if s.control_plane:
            crt, key = s.read(s.staged_crt), s.read(s.staged_key)
            if crt is None or key is None:
                raise ConfigError(f"{s.label}: the staged new CA is missing ({s.staged_crt}): abort and prepare again")
            found.add((crt, key))
    if len(found) != 1:
        raise ConfigError("the staged new CA differs between the control planes: abort and prepare again")
    return found.pop()


def _signing(sites: Sequence[_Site], new_sha: str) -> tuple[bytes, bytes]:
    """The new CA as reissue left it, ``ca.crt`` and ``ca.key`` (drop-old removes the staged copies, so a
    drop-old resumed after a crash reads them here)."""
    for s in sites:
        if s.control_plane and (crt := s.read(s.ca_crt)) is not None and (key := s.read(s.ca_key)) is not None:
            if _sha(crt) != new_sha:
                raise ConfigError(f"{s.label}:{s.ca_crt} is not the new CA the rotation's record names",
                                  path=str(s.ca_crt))
            return crt, key
    raise ConfigError("no control plane holds ca.crt and ca.key")


def _flag_edit(data: bytes, flag: str, old: str, new: str) -> bytes | None:
    """``data`` with the command line ``- --flag=old`` set to ``new``; None when the flag has another value."""
    pattern = re.compile(rb"^(\s*- " + re.escape(f"--{flag}=".encode()) + rb")(\S+)[ \t]*$", re.M)
    matches = list(pattern.finditer(data))
    if len(matches) != 1 or matches[0].group(2).decode() != old:
        return None
    m = matches[0]
    return data[:m.start(2)] + new.encode() + data[m.end(2):]


def _yaml_edit(data: bytes, key: str, old: str, new: str) -> bytes | None:
    pattern = re.compile(rb"^(\s*" + re.escape(key.encode()) + rb":[ \t]*)(\S+)[ \t]*$", re.M)
    matches = list(pattern.finditer(data))
    if len(matches) != 1 or matches[0].group(2).decode().strip("\"'") != old:
        return None
    m = matches[0]
    return data[:m.start(2)] + new.encode() + data[m.end(2):]


_FLAGS = {"kube-apiserver": ("client-ca-file",),
          "kube-controller-manager": ("client-ca-file", "root-ca-file")}


class _Planner:
    def __init__(self, sites: Sequence[_Site], phase: Phase, now: dt.datetime, *, old_pem: bytes,
                 new_pem: bytes, new_key: bytes) -> None:
        self.sites, self.phase, self.now = sites, phase, now
        self.old_pem, self.new_pem, self.new_key = old_pem, new_pem, new_key
        self.old, self.new = load_certificate(old_pem), load_certificate(new_pem)
        self.changes: list[RotationChange] = []
        self.notes: list[str] = []

    def add(self, site: _Site, path: PurePosixPath, action: str, why: str, *, data: bytes | None = None,
            mode: int = 0o644) -> None:
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

    def write_if_changed(self, site: _Site, path: PurePosixPath, before: bytes | None, after: bytes | None,
                         why: str) -> None:
        if after is not None and after != before:
            self.add(site, path, "write", why, data=after)

    def bundle(self) -> bytes:
        return self.old_pem.rstrip(b"\n") + b"\n" + self.new_pem

    def plan(self) -> None:
        for site in self.sites:
            getattr(self, "_" + self.phase.value.replace("-", "_"))(site)

    # -- phases

    def _prepare(self, site: _Site) -> None:
        if site.control_plane:
            self.add(site, site.staged_crt, "create", "the new CA, staged", data=self.new_pem)
            self.add(site, site.staged_key, "create", "the new CA's key, staged", data=self.new_key, mode=0o600)

    def _trust_both(self, site: _Site) -> None:
        bundle = self.bundle()
        before = site.read(site.bundle)
        if before != bundle:
            self.add(site, site.bundle, "write" if before is not None else "create",
                     "old + new CA: what every component trusts until drop-old", data=bundle)
        self._point(site, str(site.ca_crt), str(site.bundle), "trust both CAs")
        self._kubeconfigs(site, ca_pem=bundle, sign=False)

    def _reissue(self, site: _Site) -> None:
        self.write_if_changed(site, site.ca_crt, site.read(site.ca_crt), self.new_pem,
                              "the new CA: KCM's --cluster-signing-cert-file, kubeadm's signer")
        if site.control_plane and site.read(site.ca_key) is not None:
            self.write_if_changed(site, site.ca_key, site.read(site.ca_key), self.new_key,
                                  "the new CA's key: KCM's --cluster-signing-key-file")
        for name in ("apiserver", "apiserver-kubelet-client", "kubelet-server-current.pem"):
            entry = _catalog.get(name)
            if not site.node.profile.has(entry):
                continue
            path = site.node.path_of(entry, FileRole.CERT if entry.kind is Kind.CERTIFICATE else None)
            if site.node.fs.stat(path) is None:
                continue
            self._leaf_file(site, path, name)
        self._kubeconfigs(site, ca_pem=None, sign=True)  # what they trust is trust-both's and drop-old's

    def _drop_old(self, site: _Site) -> None:
        self._point(site, str(site.bundle), str(site.ca_crt), "back to ca.crt, the new CA alone")
        self._kubeconfigs(site, ca_pem=self.new_pem, sign=False)
        for path, why in ((site.bundle, "the old + new bundle, no longer named"),
                          (site.staged_crt, "the staged copy, now ca.crt"),
                          (site.staged_key, "the staged key, now ca.key")):
            if site.node.fs.stat(path, follow=False) is not None:
                self.add(site, path, "remove", why)
        for phase in PHASES[:-1]:
            if site.node.fs.stat(site.undo(phase), follow=False) is not None:
                self.add(site, site.undo(phase), "remove", "undo record (holds the old CA's key; it is in the backups)")

    # -- pieces

    def _point(self, site: _Site, old: str, new: str, why: str) -> None:
        prof = site.node.profile
        for component, flags in _FLAGS.items():
            manifest = prof.manifests.get(component)
            if manifest is None or manifest.path is None:
                if site.control_plane:
                    self.notes.append(f"{site.label}: no {component} manifest: its {', '.join(flags)} are not "
                                      "kubepki's to change")
                continue
            path = PurePosixPath(manifest.path)
            before = site.read(path)
            data = before
            for flag in flags:
                if data is None:
                    break
                value = manifest.flags.get(flag)
                if value == new:
                    continue
                edited = _flag_edit(data, flag, old, new)
                if edited is None:
                    raise ConfigError(f"{site.label}:{path}: --{flag} is {value!r}, not {old!r} (kubeadm's layout)",
                                      path=str(path))
                data = edited
            self.write_if_changed(site, path, before, data, f"{component} {' and '.join('--' + f for f in flags)}"
                                  f" -> {new}: {why}")
        kubelet = prof.kubelet
        if kubelet.found and kubelet.config_path:
            path = PurePosixPath(kubelet.config_path)
            if kubelet.client_ca_file != new:
                before = site.read(path)
                edited = _yaml_edit(before or b"", "clientCAFile", old, new)
                if edited is None:
                    raise ConfigError(f"{site.label}:{path}: clientCAFile is {kubelet.client_ca_file!r}, not {old!r}",
                                      path=str(path))
                self.write_if_changed(site, path, before, edited, f"kubelet clientCAFile -> {new}: {why}")
        elif prof.role in (NodeRole.CONTROL_PLANE, NodeRole.WORKER):
            self.notes.append(f"{site.label}: no kubelet config.yaml: its clientCAFile is not kubepki's to change")

    def _kubeconfigs(self, site: _Site, *, ca_pem: bytes | None, sign: bool) -> None:
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
            if ca_pem is not None and (kc.ca is None or kc.ca.data != ca_pem):
                cluster = {"certificate-authority-data": b64(ca_pem), "certificate-authority": None}
            cred = kc.client_certificate
            if sign and cred is not None:
                if cred.data is not None:
                    reissued = self._reissued(cred.data)
                    if reissued is not None:
                        user = {"client-certificate-data": b64(reissued)}
                elif cred.file is not None:
                    self._leaf_file(site, cred.file, f"{entry.name}'s client certificate")
            if user or cluster:
                why = ("client certificate re-signed by the new CA" if user else "") + (
                    (", " if user and cluster else "") + "certificate-authority-data: "
                    + ("old + new CA" if ca_pem == self.bundle() else "the new CA") if cluster else "")
                self.add(site, path, "write", f"{entry.name}: {why}",
                         data=edit_kubeconfig(before, kc, user=user, cluster=cluster))

    def _leaf_file(self, site: _Site, path: PurePosixPath, what: str) -> None:
        real = site.node.fs.resolve(path)  # the kubelet's -current.pem is a symlink: its target is written
        before = site.read(real)
        if before is None:
            raise ConfigError(f"{site.label}: {what} {path} is missing", path=str(path))
        after = self._reissued(before)
        if after is not None:
            self.add(site, real, "write", f"{what}: re-signed by the new CA", data=after)

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
            raise ConfigError(f"{leaf.subject.rfc4514_string()} is signed by neither the old nor the new CA")
        signer = Signer.from_key(_CA, self.new, load_private_key(self.new_key))
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        not_after = min(self.now + lifetime, signer.not_after)
        cert = sign_leaf(LeafTemplate.from_certificate(leaf), leaf.public_key(),  # type: ignore[arg-type]
                         signer, not_before=self.now - _BACKDATE, not_after=not_after)
        rest = b"".join(b if b.endswith(b"\n") else b + b"\n" for b in blocks if b is not certs[0]
                        and not b.startswith(b"-----BEGIN CERTIFICATE-----"))
        return cert_to_pem(cert) + rest


def _restarts(sites: Sequence[_Site], phase: Phase, changes: Sequence[RotationChange]) -> dict[str, tuple[str, ...]]:
    out = {}
    for site in sites:
        if any(c.node == site.label for c in changes):
            wanted = _RESTARTS[phase] if site.control_plane else tuple(c for c in _RESTARTS[phase] if c == "kubelet")
            if wanted:
                out[site.label] = wanted
    return out


def plan_rotation(
    cluster: Cluster | Sequence[Node | str],
    *,
    new_ca_cert: bytes | None = None,
    new_ca_key: bytes | None = None,
    now: dt.datetime | None = None,
) -> RotationPlan:
    """The next phase of the rotation of the cluster CA: its changes on every node, frozen.

    The phase follows from the control planes' records (see :func:`rotation_status`); a phase half
    applied (a crash) is planned again from the files as they are. ``new_ca_cert``/``new_ca_key``
    (PEM) give ``prepare`` the new CA; by default it generates one as kubeadm does (the old CA's CN
    and key algorithm, ten years). Raises :class:`~kubepki.ConfigError` when the rotation is done, the
    nodes disagree, or a file is not in kubeadm's layout.
    """
    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    when = _utc(now)
    sites = _sites(c)
    if not any(s.control_plane for s in sites):
        raise ConfigError("a CA rotation needs the control-plane nodes (where the CA's key is)")
    status, record = _status(sites)
    phase = status.next_phase
    if phase is None:
        raise ConfigError("the rotation of ca is complete (drop-old verified): nothing to do")
    if phase is not Phase.PREPARE and (new_ca_cert is not None or new_ca_key is not None):
        raise ConfigError("--new-ca-cert/--new-ca-key are for prepare; the new CA is staged already")
    old_pem = _old_ca(sites) if record is None else str(record["old_ca_pem"]).encode()
    staged = {(crt, key) for s in sites if s.control_plane
              and (crt := s.read(s.staged_crt)) is not None and (key := s.read(s.staged_key)) is not None}
    if phase is Phase.PREPARE and record is not None and staged:
        if len(staged) != 1:
            raise ConfigError("the staged new CA differs between the control planes: abort and prepare again")
        new_pem, new_key = staged.pop()  # prepare resumed: keep the CA some nodes have already
    elif phase is Phase.PREPARE:
        new_pem, new_key = _new_ca(old_pem, when, new_ca_cert, new_ca_key)
    elif phase is Phase.DROP_OLD:
        new_pem, new_key = _signing(sites, str(record["new_ca_sha256"]) if record else "")
    else:
        new_pem, new_key = _staged(sites)
    planner = _Planner(sites, phase, when, old_pem=old_pem, new_pem=new_pem, new_key=new_key)
    planner.plan()
    touched = {c.node for c in planner.changes}
    for site in sites:  # the bookkeeping apply writes, listed so that the plan names every path it touches
        if site.label in touched and phase is not Phase.DROP_OLD:
            planner.add(site, site.undo(phase), "record", "the undo record abort replays (0600)")
        if site.control_plane:
            planner.add(site, site.state, "record", "the rotation record status and next read (0600)")
    return RotationPlan(ca=_CA, phase=phase, now=when, nodes=tuple(s.label for s in sites),
                        changes=tuple(planner.changes), restarts=_restarts(sites, phase, planner.changes),
                        notes=tuple(planner.notes),
                        new_ca_pem=new_pem, new_key_pem=new_key, old_ca_pem=old_pem, cluster=c)


# --------------------------------------------------------------------------------------
# Applying, verifying, aborting


def _write(site: _Site, path: PurePosixPath, data: bytes, mode: int) -> None:
    st = site.node.fs.stat(path)
    chown = site.node.fs.can_chown()
    if st is not None:
        site.node.fs.write_atomic(path, data, mode=st.mode, uid=st.uid if chown else None,
                                  gid=st.gid if chown else None)
    else:
        site.node.fs.write_atomic(path, data, mode=mode)


def _save_record(site: _Site, doc: dict[str, Any]) -> None:
    _write(site, site.state, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n", 0o600)


def _undo_entries(site: _Site, changes: Sequence[RotationChange]) -> list[dict[str, Any]]:
    out = []
    for ch in changes:
        path = PurePosixPath(ch.path)
        st = site.node.fs.stat(path)
        before = site.read(path) if st is not None else None
        out.append({"path": ch.path, "before": base64.b64encode(before).decode() if before is not None else None,
                    "mode": st.mode if st else None, "uid": st.uid if st else None, "gid": st.gid if st else None})
    return out


def _history(record: dict[str, Any] | None, **entry: Any) -> list[dict[str, Any]]:
    return [*((record or {}).get("history") or []), entry]


def apply_rotation(plan: RotationPlan, *, backup_dir: str, now: dt.datetime | None = None) -> RotationResult:
    """Carry out ``plan`` holding every node's lock: back every node up first, record on the control
    planes that the phase is under way, then node by node record the undo and write each file atomically
    (mode and owner kept); then verify the cluster's trust and the phase's own checks.

    ``backup_dir`` is a directory on each node (a node path). The phase is recorded as verified only when
    every check passed, so a crash or a failed check leaves a phase that :func:`plan_rotation` plans again
    and :func:`abort_rotation` undoes. Restarts nothing: :attr:`RotationPlan.restarts` lists what a
    running node needs. Raises :class:`~kubepki.LockError` when a node's lock is taken (nothing written).
    """
    when = _utc(now)
    sites = _sites(plan.cluster)
    with contextlib.ExitStack() as locks:
        for site in sites:
            locks.enter_context(node_lock(site.node))
        status, record = _status(sites)  # under the locks: no other run moves the rotation meanwhile
        if status.next_phase is not plan.phase:
            raise ConfigError(f"the plan is for {plan.phase.value}, but the rotation's next phase is "
                              f"{status.next_phase.value if status.next_phase else 'none (done)'}: plan again")
        doc: dict[str, Any] = dict(record or {})
        doc.update({"kind": "CARotationState", "ca": _CA, "old_ca_pem": plan.old_ca_pem.decode(),
                    "old_ca_sha256": _sha(plan.old_ca_pem), "new_ca_sha256": _sha(plan.new_ca_pem),
                    "phase": status.phase.value if status.phase else None, "applying": plan.phase.value})
        doc["history"] = _history(record, phase=plan.phase.value, event="started", at=when.isoformat())
        _check_fresh(sites, plan)
        backups = {site.label: str(backup(site.node, backup_dir, now=when, on_node=True, lock_held=True).path)
                   for site in sites}
        for site in sites:
            if site.control_plane:
                _save_record(site, doc)
                _checkpoint("rotate-ca:recorded")
        for site in sites:
            _apply_node(site, plan)
        return _verify(plan.cluster, plan.phase, "apply", backups, doc=doc, when=when)


def _check_fresh(sites: Sequence[_Site], plan: RotationPlan) -> None:
    """Refuse a plan one of whose files changed since it was made: it would overwrite that change."""
    by_label = {s.label: s for s in sites}
    for ch in plan.changes:
        site = by_label.get(ch.node)
        if site is None or ch.action == "record":
            continue
        current = site.read(PurePosixPath(ch.path))
        now = hashlib.sha256(current).hexdigest() if current is not None else None
        if now != ch.planned_from:
            raise ConfigError(f"{ch.node}:{ch.path} changed since the plan was made: plan again", path=ch.path)


def _apply_node(site: _Site, plan: RotationPlan) -> None:
    changes = [c for c in plan.changes if c.node == site.label]
    if any(c.action == "record" and c.path == str(site.undo(plan.phase)) for c in changes) \
            and site.node.fs.stat(site.undo(plan.phase)) is None:
        # a resumed phase keeps the first record: it holds the files as they were before the phase
        files = _undo_entries(site, [c for c in changes if c.action != "record"])
        undo = {"kind": "CARotationUndo", "phase": plan.phase.value, "files": files}
        site.node.fs.write_atomic(site.undo(plan.phase), json.dumps(undo).encode(), mode=0o600)
    for ch in changes:
        path = PurePosixPath(ch.path)
        if ch.action == "record":
            continue
        if ch.action == "remove":
            site.node.fs.unlink(path)
        elif ch.data is not None:
            _write(site, path, ch.data, ch.mode)
        _checkpoint("rotate-ca:file")
    site.node.fs.fsync_dir(site.ca_crt.parent)


def _verify(cluster: Cluster, phase: Phase, action: str, backups: dict[str, str], *, doc: dict[str, Any] | None,
            when: dt.datetime) -> RotationResult:
    sites = _sites(cluster)
    trust = check_trust(Cluster([s.node for s in sites], labels=[s.label for s in sites]), now=when)
    problems = [f"broken TLS edge {e.name} ({e.kind.value})" for e in trust.broken]
    if doc is not None and action == "apply":
        problems += _phase_problems(sites, phase, doc)
        doc = dict(doc)
        if not problems:
            doc.update({"phase": phase.value, "applying": None})
        doc["history"] = _history(doc, phase=phase.value, event="verified" if not problems else "verify-failed",
                                  at=when.isoformat())
        for site in sites:  # the caller holds every node's lock
            if site.control_plane:
                _save_record(site, doc)
    return RotationResult(ca=_CA, phase=phase, action=action, backups=backups, trust=trust,
                          problems=tuple(problems))


def _certs_of(site: _Site) -> Iterator[tuple[str, x509.Certificate]]:
    """Every certificate on ``site`` the cluster CA signs, as the rotation re-issues them."""
    for name in ("apiserver", "apiserver-kubelet-client", "kubelet-server-current.pem"):
        entry = _catalog.get(name)
        path = site.node.path_of(entry, FileRole.CERT if entry.kind is Kind.CERTIFICATE else None)
        if not site.node.profile.has(entry) or site.node.fs.stat(path) is None:
            continue
        if (data := site.read(site.node.fs.resolve(path))) is not None:
            yield f"{site.label}:{path}", load_certificates(data)[0]
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
    """Every CA bundle on ``site`` a component of the cluster trusts the cluster CA through."""
    for path in (site.ca_crt, site.bundle):
        if (data := site.read(path)) is not None:
            yield f"{site.label}:{path}", load_certificates(data)
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


def _site_problems(site: _Site, phase: Phase, new_sha: str, old_sha: str) -> list[str]:
    problems = []
    if site.control_plane and phase is not Phase.DROP_OLD:
        staged = site.read(site.staged_crt)
        if staged is None or _sha(staged) != new_sha:
            problems.append(f"{site.label}: the staged new CA is missing or another")
    if phase in (Phase.TRUST_BOTH, Phase.REISSUE):
        for where, certs in _trust_files(site):
            if not where.endswith(str(site.ca_crt)) and {old_sha, new_sha} - {_fingerprint(c) for c in certs}:
                problems.append(f"{where} does not trust both CAs")
    if phase in (Phase.REISSUE, Phase.DROP_OLD):
        ca_pem = site.read(site.ca_crt)
        if ca_pem is None or _sha(ca_pem) != new_sha:
            return [*problems, f"{site.label}:{site.ca_crt} is not the new CA"]
        new = load_certificate(ca_pem)
        problems += [f"{where} is not issued by the new CA" for where, cert in _certs_of(site)
                     if not signed_by(cert, new)]
    if phase is Phase.DROP_OLD:
        problems += [f"{where} still trusts the old CA" for where, certs in _trust_files(site)
                     if old_sha in {_fingerprint(c) for c in certs}]
    return problems


def abort_rotation(cluster: Cluster | Sequence[Node | str], *, now: dt.datetime | None = None) -> RotationResult:
    """Undo the latest phase (the one under way, else the last verified one) on every node from its undo
    record, byte for byte with modes and owners, holding every node's lock; the rotation is then at the
    previous verified phase (none: aborting ``prepare`` removes the staged CA and the records). Every undo
    record is read and checked before anything is written. Refused once ``drop-old`` has started: the
    old CA is then in the backups only. An abort killed half-way is finished by aborting again."""
    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    when = _utc(now)
    sites = _sites(c)
    with contextlib.ExitStack() as locks:
        for site in sites:
            locks.enter_context(node_lock(site.node))
        status, record = _status(sites)
        if record is None:
            raise ConfigError("no rotation of ca is under way: nothing to abort")
        target = status.applying or status.phase or Phase.PREPARE  # a record exists: prepare at least started
        if target is Phase.DROP_OLD:
            # drop-old removes the undo records with the old CA's key: from its start, forward is the only way
            raise ConfigError("drop-old has started: the old CA is being dropped; finish it with next --apply, "
                              "or restore the backups to go back")
        previous = PHASES[PHASES.index(target) - 1] if target is not Phase.PREPARE else None
        undos = {site.label: _undo_record(site, target) for site in sites}
        for site in sites:
            undo = undos[site.label]
            if undo is not None:
                chown = site.node.fs.can_chown()
                for entry in reversed(undo):
                    if entry.before is None:
                        site.node.fs.unlink(entry.path)
                    else:
                        site.node.fs.write_atomic(entry.path, entry.before, mode=entry.mode,
                                                  uid=entry.uid if chown else None, gid=entry.gid if chown else None)
                    _checkpoint("rotate-ca:undone")
                site.node.fs.unlink(site.undo(target))
        for site in sites:  # the records last: an abort killed before this point is simply run again
            if site.control_plane:
                if previous is None:
                    site.node.fs.unlink(site.state)
                else:
                    doc = dict(record)
                    doc.update({"phase": previous.value, "applying": None})
                    doc["history"] = _history(record, phase=target.value, event="aborted", at=when.isoformat())
                    _save_record(site, doc)
        return _verify(c, target, "abort", {}, doc=None, when=when)
