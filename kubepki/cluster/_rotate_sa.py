"""Rotating the service-account key pair (``sa.key``, ``sa.pub``) across the control planes, phase by phase.

The phases (the CA rotation's :class:`~kubepki.cluster.Phase`), each planned (frozen), applied under each
node's lock after each node's backup, and verified on every control plane:

1. ``prepare``: a new key pair of ``sa.key``'s algorithm staged beside the PKI
   (``pki/.kubepki-rotation-sa-new.{key,pub}``, 0600), identical on every control plane; nothing in use
   changes.
2. ``trust-both``: ``sa.pub`` (kube-apiserver ``--service-account-key-file``, which reads every public key
   of the file) holds the old and the new public key: tokens of either key verify.
3. ``reissue``: ``sa.key`` becomes the new key (kube-apiserver ``--service-account-signing-key-file``,
   kube-controller-manager ``--service-account-private-key-file``: new tokens are signed by it);
   ``sa.pub`` holds new + old.
4. ``drop-old``: the old public key leaves ``sa.pub``; the staged copies and the undo records (they hold
   the old key) are removed, the old key stays in the backups. Refused until the longest lifetime of a
   token the old key signed has passed since ``reissue`` was verified (see :class:`SARotationStatus`),
   unless forced.

Both files are read by the components only at start (shared/reference/reload-measured.md, E7): each plan
lists the restarts a running node needs (``--no-restart``: kubepki restarts nothing). State lives on the
control planes (``pki/.kubepki-rotation-sa.json``), undo records beside it
(``pki/.kubepki-rotation-sa-undo-<phase>.json``, 0600), as for the CA rotation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kubepki._clock import utc as _utc
from kubepki._crash import checkpoint as _checkpoint
from kubepki._report import Cell, Outcome, Report, Table
from kubepki.backups import backup
from kubepki.catalog import FileRole
from kubepki.cluster._cluster import Cluster, ClusterRestartPlan, HealthCheck
from kubepki.cluster._rotate import RestartRunner, _preflight, _restart_plan, _roll
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
from kubepki.errors import ConfigError, KubepkiError
from kubepki.node import Node, parse_duration
from kubepki.pki import (
    PublicKey,
    generate_key,
    key_algorithm,
    key_to_pem,
    load_private_key,
    load_public_key,
    public_key_der,
    split_pem,
)

__all__ = ["SARotationPlan", "SARotationResult", "SARotationStatus", "TokenLifetime", "abort_sa_rotation",
           "apply_sa_rotation", "plan_sa_rotation", "sa_rotation_status"]

_SA = "sa"
_PREFIX = ".kubepki-rotation-sa"
_UNDO = "SARotationUndo"

# kubernetes pkg/serviceaccount/claims.go: a kubelet-projected token asks for WarnOnlyBoundTokenExpirationSeconds
# (1 h 7 s) and, with --service-account-extend-token-expiration (default true), gets ExpirationExtensionSeconds
# (pkg/registry/core/serviceaccount/storage/token.go: only when the request survived the max's cap).
_WARN_ONLY_BOUND = dt.timedelta(seconds=60 * 60 + 7)
_EXTENSION = dt.timedelta(seconds=24 * 365 * 60 * 60)
# pkg/apis/authentication/validation ValidateTokenRequest: "may not specify a duration larger than 2^32
# seconds": the longest TokenRequest when --service-account-max-token-expiration is unset (kubeadm's default).
_REQUEST_LIMIT = dt.timedelta(seconds=1 << 32)
# go-jose's jwt.DefaultLeeway: kube-apiserver's validator (pkg/serviceaccount/claims.go) accepts a token up
# to a minute past its exp.
_LEEWAY = dt.timedelta(minutes=1)

#: What each phase needs restarted on a running control plane: both files are read only at start (E7).
_RESTARTS: dict[Phase, tuple[str, ...]] = {
    Phase.PREPARE: (),
    Phase.TRUST_BOTH: ("kube-apiserver",),
    Phase.REISSUE: ("kube-apiserver", "kube-controller-manager"),
    Phase.DROP_OLD: ("kube-apiserver",),
}

_LEGACY = ("legacy Secret-based tokens (kubernetes.io/service-account-token Secrets) never expire: every one "
           "signed by the old key gets 401 once drop-old is applied and kube-apiserver restarted; before that, "
           "remove each such Secret's data.token (the token controller signs it again, with the new key)")


@attrs.frozen(kw_only=True)
class TokenLifetime:
    """The longest lifetime of a service-account token one kube-apiserver signs, from its flags."""

    node: str
    longest: dt.timedelta
    #: ``--service-account-max-token-expiration`` (None: unset, a TokenRequest may ask for up to 2^32 s).
    max_expiration: dt.timedelta | None
    #: ``--service-account-extend-token-expiration`` (default true: kubelet-projected tokens live a year).
    extend: bool
    #: False when the node has no kube-apiserver manifest: kube-apiserver's defaults are assumed.
    from_manifest: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (durations in seconds)."""
        return {"node": self.node, "longest_seconds": int(self.longest.total_seconds()),
                "max_expiration_seconds": int(self.max_expiration.total_seconds()) if self.max_expiration else None,
                "extend": self.extend, "from_manifest": self.from_manifest}

    @property
    def why(self) -> str:
        """What the lifetime comes from, in words."""
        parts = [f"--service-account-max-token-expiration={_human(self.max_expiration)}" if self.max_expiration
                 else "no --service-account-max-token-expiration: a TokenRequest may ask for up to 2^32 s"]
        if self.extend:
            parts.append("--service-account-extend-token-expiration: kubelet-projected tokens live 1 year")
        if not self.from_manifest:
            parts.append("no kube-apiserver manifest: its defaults assumed")
        return "; ".join(parts)


def _human(delta: dt.timedelta) -> str:
    secs = int(delta.total_seconds())
    if secs >= 86400 * 2:
        return f"{secs // 86400}d"
    return f"{secs // 3600}h{secs % 3600 // 60}m{secs % 60}s"


@attrs.frozen(kw_only=True)
class SARotationStatus(Report):
    """Where a rotation of the service-account key pair stands, from the control planes' records."""

    #: The last phase applied and verified (None: none yet, or no rotation).
    phase: Phase | None
    #: A phase applied in part or not verified (a crash, a failed verification), else None.
    applying: Phase | None
    #: The control planes holding a record.
    nodes: tuple[str, ...]
    #: The SHA-256 (hex) of the new and the old public key (DER SubjectPublicKeyInfo), once under way.
    new_key: str | None = None
    old_key: str | None = None
    #: When reissue was verified: the old key's last tokens are counted from then.
    reissued_at: dt.datetime | None = None
    #: Each control plane's longest token lifetime (from its kube-apiserver's flags now).
    lifetimes: tuple[TokenLifetime, ...] = ()
    #: The longest token lifetime when reissue was verified: the flags the old key's last tokens were
    #: signed under (a flag lowered since does not shorten their lives).
    reissue_lifetime: dt.timedelta | None = None
    history: tuple[dict[str, Any], ...] = ()

    @property
    def active(self) -> bool:
        """True when a rotation has started (a record exists)."""
        return bool(self.nodes)

    @property
    def next_phase(self) -> Phase | None:
        """The phase ``next`` plans: the unfinished one, else the one after the last verified; None when done."""
        return next_phase(self.phase, self.applying)

    @property
    def token_lifetime(self) -> dt.timedelta | None:
        """The longest lifetime of a token any control plane's kube-apiserver signs (None: no control plane)."""
        known = [t.longest for t in self.lifetimes] + ([self.reissue_lifetime] if self.reissue_lifetime else [])
        return max(known, default=None)

    @property
    def drop_old_after(self) -> dt.datetime | None:
        """From when drop-old is allowed without ``force``: reissue's verification + the longest token
        lifetime (+ the validator's minute of leeway); None before reissue is verified."""
        if self.reissued_at is None or self.token_lifetime is None:
            return None
        try:
            return self.reissued_at + self.token_lifetime + _LEEWAY
        except OverflowError:  # 2^32 s after reissue: beyond datetime's year 9999
            return dt.datetime.max.replace(tzinfo=dt.timezone.utc)

    @property
    def notes(self) -> tuple[str, ...]:
        """What the operator must know: when drop-old is allowed and why, and the legacy tokens."""
        out = []
        after = self.drop_old_after
        if after is not None and self.reissued_at is not None and self.phase is Phase.REISSUE:
            out.append(f"drop-old from {after.isoformat()} (reissue verified {self.reissued_at.isoformat()} + the "
                       f"longest token lifetime {_human(self.token_lifetime or dt.timedelta(0))}, {_worst(self)}); "
                       "count from kube-apiserver's restart after reissue if that came later; --force drops it "
                       "sooner")
        if self.active:
            out.append(_LEGACY)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        nxt = self.next_phase
        life = self.token_lifetime
        after = self.drop_old_after
        return {"kind": "SARotationStatus", "outcome": self.outcome.value,
                "phase": self.phase.value if self.phase else None,
                "applying": self.applying.value if self.applying else None,
                "next": nxt.value if nxt else None, "nodes": list(self.nodes), "new_key": self.new_key,
                "old_key": self.old_key, "reissued_at": self.reissued_at.isoformat() if self.reissued_at else None,
                "token_lifetime_seconds": int(life.total_seconds()) if life is not None else None,
                "reissue_lifetime_seconds": (int(self.reissue_lifetime.total_seconds())
                                             if self.reissue_lifetime is not None else None),
                "drop_old_after": after.isoformat() if after else None,
                "lifetimes": [t.to_dict() for t in self.lifetimes], "notes": list(self.notes),
                "history": list(self.history)}

    def rows(self) -> Table:
        """One row per phase: done, in progress or to do."""
        return phase_table("SERVICE-ACCOUNT KEY ROTATION (sa)", self.phase, self.applying)

    def table(self) -> str:
        """The status as text, with its notes."""
        return self.text().rstrip("\n") + "\n" + "".join(f"note: {n}\n" for n in self.notes)

    @property
    def outcome(self) -> Outcome:
        """incomplete while a phase is half applied or unverified, else ok."""
        return Outcome.INCOMPLETE if self.applying is not None else Outcome.OK


@attrs.frozen(kw_only=True)
class SARotationPlan(Report):
    """The changes one phase of the service-account key rotation makes, and the restarts it needs."""

    phase: Phase
    now: dt.datetime
    nodes: tuple[str, ...]
    changes: tuple[RotationChange, ...]
    #: What each node must restart to load the changes (node -> components; kubepki restarts nothing).
    restarts: dict[str, tuple[str, ...]]
    notes: tuple[str, ...] = ()
    #: True when drop-old was planned before the longest token lifetime had passed (``force``).
    forced: bool = False
    #: The new private key (staged by prepare) and the old and new public keys, PEM.
    new_key_pem: bytes = attrs.field(repr=False, eq=False)
    new_pub_pem: bytes = attrs.field(repr=False, eq=False)
    old_pub_pem: bytes = attrs.field(repr=False, eq=False)
    #: The nodes, in the order given, for apply (not shown).
    cluster: Cluster = attrs.field(repr=False, eq=False)

    def paths(self, node: str) -> set[str]:
        """The node paths this plan writes or removes on ``node``."""
        return {c.path for c in self.changes if c.node == node}

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``kubepki cluster rotate-ca plan --sa -o json`` prints it (never a key)."""
        return {"kind": "SARotationPlan", "phase": self.phase.value, "now": self.now.isoformat(),
                "nodes": list(self.nodes), "changes": [c.to_dict() for c in self.changes],
                "restarts": {n: list(c) for n, c in self.restarts.items()}, "forced": self.forced,
                "notes": list(self.notes)}

    def rows(self) -> Table:
        """One row per change."""
        return change_table(f"SERVICE-ACCOUNT KEY ROTATION (sa): {self.phase.value}", self.changes)

    def table(self) -> str:
        """The plan as text: the changes, the restarts --no-restart leaves to the operator, the notes."""
        lines = [self.text().rstrip("\n")]
        lines += [f"restart on {n} (not done with --no-restart): {', '.join(c)}" for n, c in self.restarts.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


@attrs.frozen(kw_only=True)
class SARotationResult(Report):
    """What applying (or aborting) a phase of the service-account key rotation did, and its checks."""

    phase: Phase
    #: ``apply`` or ``abort``.
    action: str
    #: Each node's backup archive (a node path).
    backups: dict[str, str]
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when verified: every check of the phase passed."""
        return not self.problems

    @property
    def outcome(self) -> Outcome:
        """failed when a check failed, else ok."""
        return Outcome.FAILED if self.problems else Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": "SARotationResult", "phase": self.phase.value, "action": self.action,
                "outcome": self.outcome.value, "backups": dict(self.backups), "problems": list(self.problems)}

    def rows(self) -> Table:
        """One row per problem (none when verified)."""
        return Table(f"SERVICE-ACCOUNT KEY ROTATION (sa): {self.action} {self.phase.value}", ("PROBLEM",),
                     [[Cell(p, "error")] for p in self.problems])

    def table(self) -> str:
        """The result as text."""
        head = (f"{self.action} {self.phase.value}: verified, every control plane's sa.key verifies on every "
                "control plane" if self.ok else f"{self.action} {self.phase.value}: NOT verified")
        lines = [head, *(f"backup {n}: {p}" for n, p in self.backups.items())]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Reading the nodes


@attrs.frozen
class _Site(Site):
    """One node and the paths of the service-account key pair's rotation on it."""

    @property
    def key(self) -> PurePosixPath:
        return self.node.path_of(_SA, FileRole.KEY)

    @property
    def pub(self) -> PurePosixPath:
        return self.node.path_of(_SA, FileRole.PUBLIC_KEY)

    @property
    def directory(self) -> PurePosixPath:
        return self.key.parent

    @property
    def prefix(self) -> str:
        return _PREFIX

    @property
    def staged_key(self) -> PurePosixPath:
        return self.beside(f"{_PREFIX}-new.key")

    @property
    def staged_pub(self) -> PurePosixPath:
        return self.beside(f"{_PREFIX}-new.pub")


def _sites(cluster: Cluster) -> list[_Site]:
    # fresh Node objects: a profile is cached, and each phase changes what discovery reads
    return [_Site(label, attrs.evolve(node)) for label, node in zip(cluster.labels, cluster.nodes, strict=True)]


def _control_planes(sites: Sequence[_Site]) -> list[_Site]:
    return [s for s in sites if s.control_plane]


def _key_id(key: PublicKey) -> str:
    return hashlib.sha256(public_key_der(key)).hexdigest()


def _pub_pem(key: PublicKey) -> bytes:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _pub_blocks(data: bytes, where: str) -> list[tuple[str, bytes]]:
    """Each public key of ``data`` (as kube-apiserver's --service-account-key-file reads them): (id, PEM text)."""
    out = []
    for block in split_pem(data, path=where):
        if block.type in ("PUBLIC KEY", "RSA PUBLIC KEY"):
            text = block.text if block.text.endswith(b"\n") else block.text + b"\n"
            out.append((_key_id(load_public_key(text, path=where)), text))
    if not out:
        raise ConfigError(f"{where} holds no public key", path=where)
    return out


def _must(site: _Site, path: PurePosixPath) -> bytes:
    data = site.read(path)
    if data is None:
        raise ConfigError(f"{site.label}: {path} is missing", path=str(path))
    return data


def _pub_ids(site: _Site) -> set[str]:
    return {i for i, _ in _pub_blocks(_must(site, site.pub), f"{site.label}:{site.pub}")}


def _private_pub(site: _Site, path: PurePosixPath, what: str) -> PublicKey:
    data = site.read(path)
    if data is None:
        raise ConfigError(f"{site.label}: {what} {path} is missing", path=str(path))
    return _public_of(data, f"{site.label}:{path}")


def _public_of(private_pem: bytes, where: str) -> PublicKey:
    pub = load_private_key(private_pem, path=where).public_key()
    if not isinstance(pub, PublicKey):
        raise ConfigError(f"{where}: a key of an unsupported type", path=where)
    return pub


def _record(site: _Site) -> dict[str, Any] | None:
    return read_record(site, kind="SARotationState", what="service-account rotation",
                       check=lambda doc: _damaged(doc, str(site.state)))


def _damaged(doc: dict[str, Any], where: str) -> list[str]:
    """The service-account rotation's own fields of a record that are not what apply writes."""
    bad = [k for k in ("old_pub_pem", "old_sha256", "new_sha256") if not isinstance(doc.get(k), str)]
    if doc.get("reissued_at") is not None:
        try:
            when = dt.datetime.fromisoformat(doc["reissued_at"])
            if when.tzinfo is None:
                raise ValueError("naive")
        except (TypeError, ValueError):
            bad.append("reissued_at")
    life = doc.get("reissue_lifetime_seconds")
    if life is not None and (not isinstance(life, int) or isinstance(life, bool) or not 0 <= life <= 1 << 40):
        bad.append("reissue_lifetime_seconds")
    if isinstance(doc.get("old_pub_pem"), str):
        try:
            ids = [i for i, _ in _pub_blocks(doc["old_pub_pem"].encode(), where)]
            if isinstance(doc.get("old_sha256"), str) and ids != [doc["old_sha256"]]:
                bad.append("old_sha256")
        except (KubepkiError, UnicodeError):
            bad.append("old_pub_pem")
    return bad


def _bool_flag(value: str, where: str) -> bool:
    # Go's strconv.ParseBool, as kube-apiserver's pflag reads a bool
    if value in ("", "1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ConfigError(f"{where}: --service-account-extend-token-expiration={value!r} is not a bool", path=where)


def _lifetime(site: _Site) -> TokenLifetime:
    """The longest lifetime of a token ``site``'s kube-apiserver signs (token.go's cap, then extension)."""
    manifest = site.node.profile.manifests.get("kube-apiserver")
    flags = manifest.flags if manifest is not None else {}
    where = f"{site.label}:{manifest.path if manifest is not None else 'kube-apiserver'}"
    text = flags.get("service-account-max-token-expiration")
    maximum = parse_duration(text) if text else None
    if maximum is not None and maximum <= dt.timedelta(0):
        maximum = None  # token.go caps only with a positive maximum
    extend = _bool_flag(flags.get("service-account-extend-token-expiration", "true"), where)
    longest = maximum if maximum is not None else _REQUEST_LIMIT
    if extend and (maximum is None or maximum >= _WARN_ONLY_BOUND):
        longest = max(longest, _EXTENSION)
    return TokenLifetime(node=site.label, longest=longest, max_expiration=maximum, extend=extend,
                         from_manifest=manifest is not None)


def _status(sites: Sequence[_Site]) -> tuple[SARotationStatus, dict[str, Any] | None]:
    records = {s.label: r for s in _control_planes(sites) if (r := _record(s)) is not None}
    lifetimes = tuple(_lifetime(s) for s in _control_planes(sites))
    if not records:
        return SARotationStatus(phase=None, applying=None, nodes=(), lifetimes=lifetimes), None

    phase, applying, best = merge(records, old="old_sha256", what="service-account key", olds="keys")
    reissued = min((dt.datetime.fromisoformat(r["reissued_at"]) for r in records.values() if r.get("reissued_at")),
                   default=None) if phase in (Phase.REISSUE, Phase.DROP_OLD) else None
    recorded = max((int(r["reissue_lifetime_seconds"]) for r in records.values()
                    if r.get("reissue_lifetime_seconds") is not None), default=None)
    status = SARotationStatus(phase=phase, applying=applying, nodes=tuple(records), new_key=best.get("new_sha256"),
                              old_key=best.get("old_sha256"), reissued_at=reissued, lifetimes=lifetimes,
                              reissue_lifetime=dt.timedelta(seconds=recorded) if recorded is not None else None,
                              history=tuple(best.get("history") or ()))
    return status, best


def _cluster_of(cluster: Cluster | Sequence[Node | str]) -> Cluster:
    return cluster if isinstance(cluster, Cluster) else Cluster(cluster)


def sa_rotation_status(cluster: Cluster | Sequence[Node | str]) -> SARotationStatus:
    """Where the rotation of the service-account key pair stands, from the control planes' records and
    their kube-apiservers' token flags (when drop-old is allowed)."""
    return _status(_sites(_cluster_of(cluster)))[0]


# --------------------------------------------------------------------------------------
# Planning


def _check_layout(site: _Site, notes: list[str]) -> None:
    """The components name sa.key and sa.pub as kubeadm writes them; else the rotation is not kubepki's."""
    wanted = {"kube-apiserver": (("service-account-key-file", site.pub),
                                 ("service-account-signing-key-file", site.key)),
              "kube-controller-manager": (("service-account-private-key-file", site.key),)}
    for component, flags in wanted.items():
        manifest = site.node.profile.manifests.get(component)
        if manifest is None or manifest.path is None:
            notes.append(f"{site.label}: no {component} manifest: kubepki cannot check that it reads "
                         f"{', '.join(str(p) for _, p in flags)}")
            continue
        data = site.read(PurePosixPath(manifest.path)) or b""
        for flag, path in flags:
            # a flag may be repeated (--service-account-key-file takes several files): read every line
            pattern = re.compile(rb"^\s*-\s+[\"']?" + re.escape(f"--{flag}=".encode()) + rb"([^\s\"']+)", re.M)
            values = [m.group(1).decode(errors="replace") for m in pattern.finditer(data)]
            if str(path) not in values:
                raise ConfigError(f"{site.label}:{manifest.path}: --{flag} is {values or 'unset'}, not {path} "
                                  "(kubeadm's layout)", path=manifest.path)


def _old_key(sites: Sequence[_Site]) -> PublicKey:
    cps = _control_planes(sites)
    keys = {s.label: _private_pub(s, s.key, "the service-account key") for s in cps}
    if len({_key_id(k) for k in keys.values()}) != 1:
        raise ConfigError(f"sa.key differs between the control planes ({', '.join(keys)}): make them agree first")
    key = next(iter(keys.values()))
    for s in cps:
        if _key_id(key) not in _pub_ids(s):
            raise ConfigError(f"{s.label}:{s.pub} does not hold sa.key's public key: make them agree first",
                              path=str(s.pub))
    return key


def _staged(sites: Sequence[_Site], *, required: bool) -> tuple[bytes, PublicKey] | None:
    found: dict[str, bytes] = {}
    for s in _control_planes(sites):
        data = s.read(s.staged_key)
        if data is None:
            if required:
                raise ConfigError(f"{s.label}: the staged new key is missing ({s.staged_key}): abort and prepare again")
            continue
        found[s.label] = data
    if not found:
        return None
    if len(set(found.values())) != 1:
        raise ConfigError("the staged new key differs between the control planes: abort and prepare again")
    pem = next(iter(found.values()))
    return pem, _public_of(pem, str(_control_planes(sites)[0].staged_key))


def _signing(sites: Sequence[_Site], new_sha: str) -> tuple[bytes, PublicKey]:
    """The new key as reissue left it in sa.key (drop-old removes the staged copies, so a resumed
    drop-old reads it here)."""
    for s in _control_planes(sites):
        data = s.read(s.key)
        if data is not None:
            pub = _public_of(data, f"{s.label}:{s.key}")
            if _key_id(pub) != new_sha:
                raise ConfigError(f"{s.label}:{s.key} is not the new key the rotation's record names", path=str(s.key))
            return data, pub
    raise ConfigError("no control plane holds sa.key")


class _Planner:
    def __init__(self, sites: Sequence[_Site], phase: Phase, *, old: PublicKey, new_pem: bytes,
                 new: PublicKey) -> None:
        self.sites, self.phase = sites, phase
        self.old_id, self.new_id = _key_id(old), _key_id(new)
        self.old_pub, self.new_pub, self.new_pem = _pub_pem(old), _pub_pem(new), new_pem
        self.changes: list[RotationChange] = []

    def add(self, site: _Site, path: PurePosixPath, action: str, why: str, *, data: bytes | None = None,
            mode: int = 0o600) -> None:
        if action == "write":
            path = site.node.fs.resolve(path)  # a symlinked file is written where it points, the link kept
        current = site.read(path) if action != "record" else None
        if action == "create" and current is not None:  # a resumed phase wrote it already
            if current == data:
                return
            action = "write"
        if action == "write" and current == data:
            return
        planned_from = (hashlib.sha256(current).hexdigest() if action in ("write", "remove") and current is not None
                        else None)
        self.changes.append(RotationChange(node=site.label, path=str(path), action=action, why=why, data=data,
                                           mode=mode, planned_from=planned_from))

    def plan(self) -> None:
        for site in _control_planes(self.sites):
            getattr(self, "_" + self.phase.value.replace("-", "_"))(site)

    def _pub_with(self, site: _Site, *, first: bytes, drop: str | None) -> bytes:
        """sa.pub with ``first`` (a key's PEM) at its head and the key ``drop`` removed; other keys an
        operator added are kept in their order."""
        data = _must(site, site.pub)
        first_id = _pub_blocks(first, "the new key")[0][0]
        kept = [t for i, t in _pub_blocks(data, f"{site.label}:{site.pub}") if i not in (drop, first_id)]
        return first + b"".join(kept)

    def _prepare(self, site: _Site) -> None:
        self.add(site, site.staged_key, "create", "the new service-account key, staged", data=self.new_pem)
        self.add(site, site.staged_pub, "create", "its public key, staged", data=self.new_pub)

    def _trust_both(self, site: _Site) -> None:
        data = _must(site, site.pub)
        if self.new_id not in {i for i, _ in _pub_blocks(data, f"{site.label}:{site.pub}")}:
            after = data if data.endswith(b"\n") else data + b"\n"
            self.add(site, site.pub, "write", "old + new public key: kube-apiserver verifies tokens of both",
                     data=after + self.new_pub)

    def _reissue(self, site: _Site) -> None:
        self.add(site, site.key, "write", "the new key: kube-apiserver and kube-controller-manager sign with it",
                 data=self.new_pem)
        self.add(site, site.pub, "write", "new + old public key: tokens of the old key still verify",
                 data=self._pub_with(site, first=self.new_pub, drop=None))

    def _drop_old(self, site: _Site) -> None:
        self.add(site, site.pub, "write", "the new public key alone: tokens of the old key get 401",
                 data=self._pub_with(site, first=self.new_pub, drop=self.old_id))
        for path, why in ((site.staged_key, "the staged key, now sa.key"),
                          (site.staged_pub, "the staged public key, now in sa.pub")):
            if site.node.fs.stat(path, follow=False) is not None:
                self.add(site, path, "remove", why)
        for phase in PHASES[:-1]:
            if site.node.fs.stat(site.undo(phase), follow=False) is not None:
                self.add(site, site.undo(phase), "remove", "undo record (holds the old key; it is in the backups)")


def plan_sa_rotation(
    cluster: Cluster | Sequence[Node | str],
    *,
    force: bool = False,
    now: dt.datetime | None = None,
) -> SARotationPlan:
    """The next phase of the rotation of the service-account key pair: its changes on every control
    plane, frozen, with the restarts a running node needs.

    The phase follows from the control planes' records (see :func:`sa_rotation_status`); a phase half
    applied (a crash) is planned again from the files as they are. Prepare generates a key of sa.key's
    algorithm. Drop-old is refused until :attr:`SARotationStatus.drop_old_after` unless ``force``
    (the plan then says what it cuts short). Raises :class:`~kubepki.ConfigError` when the rotation is
    done, the control planes disagree, or the components do not read kubeadm's sa.key and sa.pub.
    """
    c = _cluster_of(cluster)
    when = _utc(now)
    sites = _sites(c)
    cps = _control_planes(sites)
    if not cps:
        raise ConfigError("a service-account key rotation needs the control-plane nodes (where sa.key is)")
    status, record = _status(sites)
    phase = status.next_phase
    if phase is None:
        raise ConfigError("the rotation of sa is complete (drop-old verified): nothing to do")
    notes: list[str] = []
    for site in cps:
        _check_layout(site, notes)
    forced = False
    if phase is Phase.DROP_OLD:
        forced = _drop_old_wait(status, when, force=force, notes=notes)
    old, new_pem, new = _keys(cps, phase, record)
    if phase in (Phase.REISSUE, Phase.DROP_OLD):
        notes.append(_LEGACY)
    planner = _Planner(sites, phase, old=old, new_pem=new_pem, new=new)
    planner.plan()
    touched = {ch.node for ch in planner.changes}
    for site in cps:  # the bookkeeping apply writes, listed so that the plan names every path it touches
        if site.label in touched and phase is not Phase.DROP_OLD:
            planner.add(site, site.undo(phase), "record", "the undo record abort replays (0600)")
        planner.add(site, site.state, "record", "the rotation record status and next read (0600)")
    restarts = {s.label: _RESTARTS[phase] for s in cps if _RESTARTS[phase]}
    return SARotationPlan(phase=phase, now=when, nodes=tuple(s.label for s in sites), changes=tuple(planner.changes),
                          restarts=restarts, notes=tuple(notes), forced=forced, new_key_pem=new_pem,
                          new_pub_pem=_pub_pem(new), old_pub_pem=_pub_pem(old), cluster=c)


def _drop_old_wait(status: SARotationStatus, when: dt.datetime, *, force: bool, notes: list[str]) -> bool:
    """Refuse drop-old before the longest token lifetime has passed since reissue (True: forced)."""
    after = status.drop_old_after
    if status.applying is Phase.DROP_OLD or (after is not None and when >= after):  # resumed: it waited already
        return False
    if after is None:
        if not force:
            raise ConfigError("drop-old is refused: the records do not say when reissue was verified, so the old "
                              "key's last tokens may be valid for the longest token lifetime; --force drops it now")
        notes.append("forced: drop-old with reissue's time unrecorded: tokens the old key signed are refused (401)")
        return True
    if not force:
        raise ConfigError(f"drop-old is refused until {after.isoformat()}: a token the old key signed may be "
                          f"valid until then ({_worst(status)}); --force drops it now, and such tokens get 401")
    left = _human(after - when) if after.year < dt.MAXYEAR else "decades"
    notes.append(f"forced: drop-old {left} before {after.isoformat()}: tokens the old key signed are refused (401)")
    return True


def _keys(cps: Sequence[_Site], phase: Phase, record: dict[str, Any] | None) -> tuple[PublicKey, bytes, PublicKey]:
    """(the old public key, the new private key's PEM, the new public key) for planning ``phase``."""
    if record is not None and phase is Phase.DROP_OLD:
        new_pem, new = _signing(cps, str(record["new_sha256"]))
        return load_public_key(str(record["old_pub_pem"]).encode()), new_pem, new
    old = _old_key(cps) if record is None else load_public_key(str(record["old_pub_pem"]).encode())
    # without a record, staged files are a leftover (apply records before it stages): a fresh key replaces them
    staged = _staged(cps, required=phase is not Phase.PREPARE) if record is not None else None
    if staged is None:
        key = generate_key(key_algorithm(old))  # sa.key's algorithm, as kubeadm would make it
        new_pem = key_to_pem(key)
        return old, new_pem, _public_of(new_pem, "the new key")
    new_pem, new = staged  # staged already (prepare resumed, or a later phase)
    if _key_id(new) == _key_id(old):
        raise ConfigError("the staged new key is the key in use (sa.key): abort and prepare again")
    if record is not None and phase is not Phase.PREPARE and _key_id(new) != record.get("new_sha256"):
        raise ConfigError("the staged new key is not the one the rotation's record names: abort and prepare again")
    return old, new_pem, new


def _worst(status: SARotationStatus) -> str:
    """The longest token lifetime's reason, for messages."""
    worst = max(status.lifetimes, key=lambda t: t.longest, default=None)
    if status.reissue_lifetime is not None and (worst is None or status.reissue_lifetime > worst.longest):
        return "the kube-apiservers' flags when reissue was verified"
    return f"{worst.node}: {worst.why}" if worst is not None else "no control plane"


# --------------------------------------------------------------------------------------
# Applying, verifying, aborting


def apply_sa_rotation(plan: SARotationPlan, *, backup_dir: str, now: dt.datetime | None = None,
                      restart: bool = False, policy: str = "minimal", method: str | None = None,
                      health: HealthCheck | None = None, runner: RestartRunner | None = None,
                      health_timeout: float = 300.0) -> SARotationResult:
    """Carry out ``plan`` holding every node's lock: back every control plane up first, record on the
    control planes that the phase is under way, then node by node write the undo record and each file
    atomically (mode and owner kept); then verify the phase on every control plane.

    ``backup_dir`` is a directory on each node (a node path). The phase is recorded as verified only
    when every check passed (reissue's time too: drop-old's wait counts from it). With ``restart``, the
    components :attr:`SARotationPlan.restarts` lists restart one control plane at a time, each healthy
    before the next, before the verification (as :func:`~kubepki.cluster.apply_rotation` rolls them:
    ``policy``, ``method``, ``health``, ``runner``, ``health_timeout``); without it they are the
    operator's. Raises
    :class:`~kubepki.LockError` when a node's lock is taken (nothing written), and
    :class:`~kubepki.ConfigError` for a plan out of date (another phase, or files changed since).
    """
    when = _utc(now)
    sites = _sites(plan.cluster)
    if restart and plan.restarts:
        _preflight(_sa_restart_plan(plan.cluster, plan.restarts, policy=policy, method=method), runner)
    with locked(sites):
        status, record = _status(sites)  # under the locks: no other run moves the rotation meanwhile
        require_next(status.next_phase, plan.phase)
        doc: dict[str, Any] = dict(record or {})
        doc.update({"kind": "SARotationState", "old_pub_pem": plan.old_pub_pem.decode(),
                    "old_sha256": _key_id(load_public_key(plan.old_pub_pem)),
                    "new_sha256": _key_id(load_public_key(plan.new_pub_pem)),
                    "phase": status.phase.value if status.phase else None, "applying": plan.phase.value})
        doc["history"] = history(record, phase=plan.phase.value, event="started", at=when.isoformat(),
                                 **({"forced": True} if plan.forced else {}))
        check_fresh(sites, plan.changes)
        # the control planes only: a worker holds no service-account key and the phases leave it alone
        backups = {site.label: str(backup(site.node, backup_dir, now=when, on_node=True, lock_held=True).path)
                   for site in _control_planes(sites)}
        for site in _control_planes(sites):
            save_record(site, doc)
            _checkpoint("rotate-sa:recorded")
        for site in sites:
            apply_node(site, plan.phase, plan.changes, kind=_UNDO, tag="rotate-sa")
    # the restarts take each node's lock themselves; meanwhile the record says the phase is under way
    problems = _restart(plan.cluster, plan.restarts, restart=restart, policy=policy, method=method,
                        health=health, runner=runner, health_timeout=health_timeout)
    with locked(sites):
        return _verify(plan.cluster, plan.phase, "apply", backups, doc=doc, when=when, problems=problems)


def _sa_restart_plan(cluster: Cluster, restarts: Mapping[str, tuple[str, ...]], *, policy: str,
                     method: str | None) -> ClusterRestartPlan:
    """The listed restarts as kubepki's rolling restart plan (sa.key and sa.pub are one catalog item:
    only the components the phase lists restart)."""
    from kubepki.restarts import Action

    plan = _restart_plan(cluster, {label: {"sa"} for label in restarts}, policy=policy, method=method)
    turns = []
    for turn in plan:
        wanted = restarts.get(turn.label, ())
        steps = tuple(st for st in turn.plan.steps if st.action is not Action.RESTART or st.component.value in wanted)
        turns.append(attrs.evolve(turn, plan=attrs.evolve(turn.plan, steps=steps)))
    return attrs.evolve(plan, order=tuple(turns))


def _restart(cluster: Cluster, restarts: Mapping[str, tuple[str, ...]], *, restart: bool, policy: str,
             method: str | None, health: HealthCheck | None, runner: RestartRunner | None,
             health_timeout: float) -> list[str]:
    """Roll the listed restarts node by node (nothing without ``restart``); the problems, if it stopped."""
    if not restart or not restarts:
        return []
    rolled = _roll(_sa_restart_plan(cluster, restarts, policy=policy, method=method), health=health, runner=runner,
                   health_timeout=health_timeout)
    return [] if rolled.ok else [f"the restarts stopped at {rolled.failed}: {rolled.error}"]


def _verify(cluster: Cluster, phase: Phase, action: str, backups: dict[str, str], *, doc: dict[str, Any] | None,
            when: dt.datetime, problems: Sequence[str] = ()) -> SARotationResult:
    sites = _sites(cluster)
    problems = [*problems, *_cross_problems(sites)]
    if doc is not None and action == "apply":
        problems += [p for s in _control_planes(sites) for p in _site_problems(s, phase, doc)]
        doc = dict(doc)
        if not problems:
            doc.update({"phase": phase.value, "applying": None})
            if phase is Phase.REISSUE:
                doc["reissued_at"] = when.isoformat()
                doc["reissue_lifetime_seconds"] = int(max(_lifetime(s).longest for s in _control_planes(sites))
                                                      .total_seconds())
        doc["history"] = history(doc, phase=phase.value, event="verified" if not problems else "verify-failed",
                                  at=when.isoformat())
        for site in _control_planes(sites):  # the caller holds every node's lock
            save_record(site, doc)
    return SARotationResult(phase=phase, action=action, backups=backups, problems=tuple(problems))


def _cross_problems(sites: Sequence[_Site]) -> list[str]:
    """Every control plane's signing key (sa.key) among the public keys of every control plane's sa.pub:
    a token signed by any kube-apiserver or the token controller verifies on every kube-apiserver."""
    problems = []
    cps = _control_planes(sites)
    try:
        signers = {s.label: _key_id(_private_pub(s, s.key, "sa.key")) for s in cps}
        verifiers = {s.label: _pub_ids(s) for s in cps}
    except KubepkiError as exc:
        return [str(exc)]
    for signer, key in signers.items():
        problems += [f"{signer}'s sa.key signs tokens {verifier}'s sa.pub does not verify"
                     for verifier, ids in verifiers.items() if key not in ids]
    return problems


def _site_problems(site: _Site, phase: Phase, doc: dict[str, Any]) -> list[str]:
    new_id, old_id = doc["new_sha256"], doc["old_sha256"]
    problems = []
    try:
        signing = _key_id(_private_pub(site, site.key, "sa.key"))
        verifying = _pub_ids(site)
        staged = (_key_id(_private_pub(site, site.staged_key, "the staged key"))
                  if site.node.fs.stat(site.staged_key) is not None else None)
    except KubepkiError as exc:
        return [str(exc)]
    if phase is not Phase.DROP_OLD and staged != new_id:
        problems.append(f"{site.label}: the staged new key is missing or another")
    want_signing = old_id if phase in (Phase.PREPARE, Phase.TRUST_BOTH) else new_id
    if signing != want_signing:
        problems.append(f"{site.label}:{site.key} is not the {'old' if want_signing == old_id else 'new'} key")
    if phase in (Phase.TRUST_BOTH, Phase.REISSUE) and not {old_id, new_id} <= verifying:
        problems.append(f"{site.label}:{site.pub} does not hold both public keys")
    if phase is Phase.DROP_OLD:
        if old_id in verifying:
            problems.append(f"{site.label}:{site.pub} still holds the old public key")
        if new_id not in verifying:
            problems.append(f"{site.label}:{site.pub} does not hold the new public key")
        if staged is not None:
            problems.append(f"{site.label}: the staged copy is still there")
    return problems


def abort_sa_rotation(cluster: Cluster | Sequence[Node | str], *,
                      now: dt.datetime | None = None, restart: bool = False, policy: str = "minimal",
                      method: str | None = None, health: HealthCheck | None = None,
                      runner: RestartRunner | None = None, health_timeout: float = 300.0) -> SARotationResult:
    """Undo the latest phase (the one under way, else the last verified one) on every control plane from
    its undo record, byte for byte with modes and owners, holding every node's lock; the rotation is then
    at the previous verified phase (none: aborting prepare removes the staged key and the records).
    Every undo record is checked before anything is written. Refused once drop-old has started. An abort
    killed half-way is finished by aborting again. With ``restart``, what the aborted phase's plan listed
    restarts node by node (as in :func:`apply_sa_rotation`); else restart it yourself."""
    c = _cluster_of(cluster)
    when = _utc(now)
    sites = _sites(c)
    with locked(sites):
        status, record = _status(sites)
        if record is None:
            raise ConfigError("no rotation of sa is under way: nothing to abort")
        target, previous = abort_target(status.applying, status.phase, old="key")
        cps = _control_planes(sites)
        undos = {site.label: read_undo(site, target, kind=_UNDO) for site in cps}
        restarts = {site.label: _RESTARTS[target] for site in cps
                    if undos[site.label] is not None and _RESTARTS[target]}
        if restart and restarts:  # refused now (nothing written yet) where nothing runs
            _preflight(_sa_restart_plan(c, restarts, policy=policy, method=method), runner)
        rewind(undos, record, undo_sites=cps, record_sites=cps, target=target, previous=previous, when=when,
               tag="rotate-sa", reset={},
               drop=("reissued_at", "reissue_lifetime_seconds") if target is Phase.REISSUE else ())
    problems = _restart(c, restarts, restart=restart, policy=policy, method=method, health=health, runner=runner,
                        health_timeout=health_timeout)
    return _verify(c, target, "abort", {}, doc=None, when=when, problems=problems)
