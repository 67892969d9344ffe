"""Renewal: kubeadm-compatible re-issue of certificates and kubeconfigs, plan first.

:func:`plan_renewal` looks at a node and returns an immutable :class:`RenewalPlan`
saying, item by item, what ``kubeadm certs renew`` would do and what kubepki will
do: renew (attributes copied from the existing certificate, new key, new serial),
skip and why (missing, external CA, not expiring yet), or refuse and why (wrong
signer, CA key not matching its certificate). Nothing is written until
:func:`apply_renewal`, which takes a backup, holds the node's lock, checks that
the node has not changed since planning, and writes through a journal so that a
process killed at any moment never leaves a certificate beside a key that does
not match it: the next run completes what the journal lists.

>>> import datetime as dt, tempfile, kubepki
>>> from kubepki import testing
>>> when = dt.datetime(2027, 11, 1, tzinfo=dt.timezone.utc)
>>> demo = testing.build_node(tempfile.mkdtemp(), issued_at=when - dt.timedelta(days=330),
...                           key_algorithm="ECDSA-P256")
>>> plan = kubepki.plan_renewal(demo.root, ["apiserver", "admin.conf"], now=when)
>>> [(s.name, s.action.value) for s in plan.steps]
[('admin.conf', 'renew'), ('apiserver', 'renew')]
>>> result = kubepki.apply_renewal(plan, take_backup=False)
>>> result.changed
('admin.conf', 'apiserver')

Beyond ``kubeadm certs renew``: :func:`write_csrs` and :func:`install_signed`
(external CAs), ``recreate_missing`` (as ``kubeadm init phase certs``),
:func:`issue_kubeconfig` (as ``kubeadm kubeconfig user``),
:func:`switch_kubelet_conf` (kubernetes/kubeadm#1753) and
:func:`create_super_admin` (KEP-4214, clusters upgraded to 1.29).

Crash safety, precisely: every new file is first written beside its target as
``.<name>.kubepki-new`` (fsynced), then the journal ``<cert dir>/.kubepki-renewal.json``
is written saying "committing" (fsynced, atomically), then each target is
replaced by a ``rename(2)`` (a certificate's key first, then the certificate),
then the journal is removed. Before the commit a crash leaves the old files
untouched (the next run deletes the staged ones); after it, the next run (any
:func:`apply_renewal`, :func:`resume_renewal`, ``kubepki renew --resume``)
renames what is left, after checking that each staged certificate matches its
key. The only moment a certificate and its key differ on disk is between the two
renames of one pair, and the journal names that pair.
"""

from __future__ import annotations

import datetime as dt
import enum
import errno
import fnmatch
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import attrs
from cryptography import x509

from kubepki import catalog as _catalog, pki as issuing
from kubepki._clock import utc as _utc
from kubepki._crash import CRASH_ENV as _CRASH_ENV, checkpoint
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki.catalog import CatalogEntry, FileRole, Kind
from kubepki.errors import (
    ConfigError,
    InvalidTimeError,
    KubeconfigError,
    KubepkiError,
    NodeError,
    ParseError,
    RenewalError,
    SignerError,
    StalePlanError,
    os_reason,
)
from kubepki.node import (
    RENEWAL_JOURNAL_NAME,
    RENEWAL_STAGED_SUFFIX,
    LocalFS,
    LocalPaths,
    Node,
    NodeFS,
    NodeProfile,
    NotRegularFile,
    atomic_write,
    makedirs,
    node_lock,
    read_regular,
    renewal_journal_path,
)
from kubepki.pki import (
    KEY_USAGE_NAMES,
    LeafTemplate,
    PrivateKey,
    PublicKey,
    Signer,
    is_ip,
    iso,
    key_algorithm,
    load_certificate,
    load_certificates,
    load_private_key,
    parse_kubeconfig,
    public_key_der,
    signed_by,
)
from kubepki.versions import KubeVersion, describe_version

__all__ = [
    "CRASH_ENV",
    "DEFAULT_MAX_PLAN_AGE",
    "JOURNAL_NAME",
    "REASONS",
    "STAGED_SUFFIX",
    "Action",
    "KubeconfigSpec",
    "PlanStep",
    "PlannedFile",
    "PlannedFileRole",
    "RenewalPlan",
    "RenewalResult",
    "SkippedItem",
    "apply_renewal",
    "create_super_admin",
    "install_signed",
    "issue_kubeconfig",
    "plan_renewal",
    "resume_renewal",
    "switch_kubelet_conf",
    "write_csrs",
]

#: The journal's name in the certificate directory.
JOURNAL_NAME = RENEWAL_JOURNAL_NAME
#: Staged files are ``.<target name><STAGED_SUFFIX>`` beside their target.
STAGED_SUFFIX = RENEWAL_STAGED_SUFFIX
#: Test hook: ``KUBEPKI_TEST_CRASH_AT=N`` makes a renewing (or restoring) process
#: SIGKILL itself at its Nth write checkpoint (crash tests; never set it otherwise).
CRASH_ENV = _CRASH_ENV

#: How far behind the real clock a plan's time (``now``) may be when it is applied: its
#: certificates start at ``now`` minus 5 minutes, so an older plan back-dates them by its
#: age and shortens them as much (``apply_renewal(max_plan_age=)``, ``--max-plan-age``).
DEFAULT_MAX_PLAN_AGE = dt.timedelta(hours=1)

_MAX_FILE = 1 << 20
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_V129 = KubeVersion(1, 29)
_RECOMMENDED_MAX_VALIDITY = dt.timedelta(hours=8760)


class Action(str, enum.Enum):
    """What a plan step does; the values are those of the JSON output."""

    #: Re-issue from the existing certificate's attributes (``kubeadm certs renew``).
    RENEW = "renew"
    #: Issue afresh from the catalog's rules (``kubeadm init phase certs <name>``).
    RECREATE = "recreate"
    #: Create an item the node never had (``super-admin.conf`` after an upgrade).
    CREATE = "create"
    #: Point ``kubelet.conf`` at the kubelet's rotated certificate (kubernetes/kubeadm#1753).
    SWITCH = "switch"
    #: Install a certificate an external CA signed (CSR mode).
    INSTALL = "install"
    #: Leave the item alone; ``reason`` says why.
    SKIP = "skip"


#: Why a step is skipped: reason code -> (refused, meaning). A refused step makes
#: the CLI exit 2; the others are what ``kubeadm certs renew`` also skips.
REASONS: Mapping[str, tuple[bool, str]] = {
    "missing": (False, "The item does not exist on the node (kubeadm: MISSING!)."),
    "external-ca": (False, "Its CA's key is absent: an external CA signs it (kubeadm skips it too)."),
    "not-expiring": (False, "It does not expire within the requested window."),
    "already-switched": (False, "kubelet.conf already names the kubelet's rotated certificate."),
    "exists": (False, "The item to create exists already; renew it instead."),
    "unusable": (True, "The existing item cannot be read or parsed; re-create it with recreate_missing."),
    "wrong-signer": (True, "The existing certificate was not issued by the CA the catalog names."),
    "signer-unavailable": (True, "The signing CA's certificate is missing or cannot be parsed."),
    "signer-key-mismatch": (True, "The signing CA's key does not match its certificate."),
    "signer-expired": (True, "The signing CA has expired or expires before the new NotBefore."),
    "cannot-recreate": (True, "The catalog's rules need a value this node does not tell (node name, server)."),
    "wrong-attributes": (True, "The node's own findings call the existing CN or SANs wrong (another node's CN, "
                               "a missing node SAN): renewing would copy them; reissue it from the rules, or "
                               "keep_attributes to copy them anyway."),
    "check-failed": (True, "A signed certificate handed back failed a check (key, signer, attributes, time)."),
    "aliased": (True, "A file it writes is also another file the catalog names (a symlink or a hard link "
                      "between them): writing one would change or unlink the other; make them separate files."),
}


_T = TypeVar("_T")


def _need(value: _T | None, what: str) -> _T:
    """``value``, which the code before made sure is set; RenewalError if not (a kubepki bug)."""
    if value is None:
        raise RenewalError(f"internal error: {what} is not set")
    return value


def _refused(reason: str | None) -> bool:
    return reason is not None and REASONS.get(reason, (True, ""))[0]


# --------------------------------------------------------------------------------------
# The plan


class PlannedFileRole(str, enum.Enum):
    """What a file a step writes holds; the values are those of the JSON output and the journal.

    The catalog's :class:`~kubepki.catalog.FileRole` values a renewal writes, plus
    ``symlink``: ``kubelet-client-current.pem`` itself, the link the kubelet reads,
    pointed at the dated PEM written beside it.
    """

    CERT = "cert"
    KEY = "key"
    CERT_AND_KEY = "cert_and_key"
    KUBECONFIG = "kubeconfig"
    SYMLINK = "symlink"


@attrs.frozen(kw_only=True)
class PlannedFile:
    """A file a step writes: where, what it holds, and the mode and owner it gets."""

    #: The node path the catalog or kubeconfig names.
    path: str
    #: The node path actually replaced (``path`` with symlinks resolved, as kubeadm writes through them).
    target: str
    role: PlannedFileRole
    mode: int
    uid: int | None
    gid: int | None
    exists: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (mode as an octal string)."""
        out = attrs.asdict(self)
        out["role"] = self.role.value
        out["mode"] = format(self.mode, "04o")
        return out


@attrs.frozen(kw_only=True)
class KubeconfigSpec:
    """How a kubeconfig step writes its credentials."""

    path: str
    #: ``embedded`` (edit the ``*-data`` fields), ``files`` (renew the files it names),
    #: ``new`` (write a whole kubeconfig) or ``switch`` (point kubelet.conf at the kubelet's PEM).
    credentials: str
    server: str | None = None
    cluster_name: str | None = None
    user_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class PlanStep:
    """What happens to one catalog item."""

    name: str
    kind: Kind
    action: Action
    #: kubeadm's long name (``certificate for serving the Kubernetes API``).
    long_name: str
    #: A :data:`REASONS` code when the step is skipped.
    reason: str | None = None
    #: One line for people (kubeadm's wording where kubeadm has one).
    message: str = ""
    signer: str | None = None
    old_not_after: dt.datetime | None = None
    new_not_before: dt.datetime | None = None
    new_not_after: dt.datetime | None = None
    #: True when NotAfter was cut back to the signing CA's NotAfter.
    clamped: bool = False
    old_key_algorithm: str | None = None
    new_key_algorithm: str | None = None
    #: The attributes the new certificate carries (kept from the old one on renewal).
    attributes: LeafTemplate | None = None
    files: tuple[PlannedFile, ...] = ()
    kubeconfig: KubeconfigSpec | None = None
    notes: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        """True when the item must not be renewed as it stands (see :data:`REASONS`)."""
        return self.action is Action.SKIP and _refused(self.reason)

    @property
    def writes(self) -> bool:
        """True when applying the plan writes files for this step."""
        return self.action is not Action.SKIP

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times ISO 8601 UTC)."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "action": self.action.value,
            "long_name": self.long_name,
            "reason": self.reason,
            "refused": self.refused,
            "message": self.message,
            "signer": self.signer,
            "old_not_after": _iso(self.old_not_after),
            "new_not_before": _iso(self.new_not_before),
            "new_not_after": _iso(self.new_not_after),
            "clamped": self.clamped,
            "old_key_algorithm": self.old_key_algorithm,
            "new_key_algorithm": self.new_key_algorithm,
            "attributes": self.attributes.to_dict() if self.attributes else None,
            "files": [f.to_dict() for f in self.files],
            "kubeconfig": self.kubeconfig.to_dict() if self.kubeconfig else None,
            "notes": list(self.notes),
        }


def _iso(when: dt.datetime | None) -> str | None:
    return iso(when) if when is not None else None


@attrs.frozen(kw_only=True)
class RenewalPlan(Report):
    """What applying will do on one node; immutable, printable, serialisable.

    ``inputs`` records the SHA-256 of every file the plan was made from (None for
    absent files); :func:`apply_renewal` refuses when any of them changed.
    """

    node: Node = attrs.field(eq=False, repr=False)
    root: str
    node_name: str | None
    kubernetes_version: str
    #: How the version was found (``kube-apiserver image tag``, ``kubeadm config``) or ``assumed``.
    kubernetes_version_source: str = "assumed"
    #: The renewal's start time: NotBefore is ``now`` minus 5 minutes.
    now: dt.datetime
    not_before: dt.datetime
    not_after: dt.datetime
    validity: dt.timedelta
    #: ``argument``, ``kubeadm config`` or ``default``.
    validity_source: str
    #: The key algorithm asked for, None to keep each item's.
    key_algorithm: str | None
    steps: tuple[PlanStep, ...]
    inputs: tuple[tuple[str, str | None], ...] = attrs.field(repr=False)
    #: True when an interrupted renewal's journal was found: applying completes it first.
    pending_journal: bool = False
    notes: tuple[str, ...] = ()

    #: kubepki's plans render as a plain ``<table>`` in notebooks.
    html_class = None

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items() if v)
        return f"<RenewalPlan node={self.node_name!r} root={self.root!r} {counts}>"

    @property
    def outcome(self) -> Outcome:
        """Failed when a step is refused."""
        return Outcome.FAILED if self.refused else Outcome.OK

    def __iter__(self) -> Iterator[PlanStep]:
        return iter(self.steps)

    def __getitem__(self, name: str) -> PlanStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def work(self) -> tuple[PlanStep, ...]:
        """The steps that write files."""
        return tuple(s for s in self.steps if s.writes)

    @property
    def skipped(self) -> tuple[PlanStep, ...]:
        """The steps that do nothing, with their reasons."""
        return tuple(s for s in self.steps if not s.writes)

    @property
    def refused(self) -> tuple[PlanStep, ...]:
        """The skipped steps that signal a problem (exit status 2)."""
        return tuple(s for s in self.steps if s.refused)

    def counts(self) -> dict[str, int]:
        """Steps per action, plus ``refused``."""
        out = {a.value: 0 for a in Action}
        for step in self.steps:
            out[step.action.value] += 1
        out["refused"] = len(self.refused)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The plan as in ``kubepki renew -o json``."""
        return {
            "kind": "RenewalPlan",
            "root": self.root,
            "node": self.node_name,
            "kubernetes_version": self.kubernetes_version,
            "kubernetes_version_source": self.kubernetes_version_source,
            "now": iso(self.now),
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "validity_seconds": int(self.validity.total_seconds()),
            "validity_source": self.validity_source,
            "key_algorithm": self.key_algorithm,
            "pending_journal": self.pending_journal,
            "summary": self.counts(),
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.steps],
            "inputs": dict(self.inputs),
        }

    def rows(self) -> Table:
        """One row per item: the action, expiry now and after, signer, key and a note."""
        from kubepki.inspection import kubeadm_date

        rows: list[list[Cell | str]] = []
        for s in self.steps:
            key = s.new_key_algorithm or s.old_key_algorithm or ""
            if s.writes and s.old_key_algorithm and s.new_key_algorithm != s.old_key_algorithm:
                key = f"{s.old_key_algorithm}->{s.new_key_algorithm}"
            after = kubeadm_date(s.new_not_after) if s.new_not_after and s.writes else "-"
            if s.clamped and s.writes:
                after += " (CA)"
            note = s.message if not s.writes else ("; ".join(s.notes[:1]) if s.notes else "")
            action = (Cell("REFUSED", "error") if s.refused
                      else Cell(s.action.value, "ok" if s.writes else "dim"))
            rows.append([s.name, action, kubeadm_date(s.old_not_after) if s.old_not_after else "-",
                         after, s.signer or "-", key or "-", note])
        head = (f"Renewal plan for {self.node_name or 'node'} at {self.root} "
                f"({describe_version(self.kubernetes_version, self.kubernetes_version_source)}), "
                f"as of {kubeadm_date(self.now)}")
        return Table(head, ("ITEM", "ACTION", "EXPIRES NOW", "AFTER", "SIGNER", "KEY", "NOTE"), rows)

    def blocks(self) -> list[Block]:
        """The table between the new certificates' validity and the notes and what applying would do."""
        from kubepki.inspection import kubeadm_date

        table = self.rows()
        days = self.validity.total_seconds() / 86400
        out: list[Block] = [
            Line([table.title]),
            Line([f"New certificates: valid from {kubeadm_date(self.not_before)} to "
                  f"{kubeadm_date(self.not_after)} ({days:g} days, {self.validity_source})"]),
            Line([]),
            attrs.evolve(table, title=""),
        ]
        notes = list(self.notes) + [f"{s.name}: {n}" for s in self.steps if s.writes for n in s.notes]
        if notes:
            out += [Line([]), Line(["Notes:"]), *(Line([f"  - {n}"]) for n in notes)]
        c = self.counts()
        refused = f", {c['refused']} refused" if c["refused"] else ""
        out += [Line([]), Line([f"{len(self.work)} item(s) to write, {len(self.skipped)} skipped{refused}. "
                                "Nothing has been written."])]
        return out

    def table(self) -> str:
        """A text table: one row per item, then notes and what applying would do."""
        return self.text()


# --------------------------------------------------------------------------------------
# The result


@attrs.frozen(kw_only=True)
class SkippedItem:
    """An item a run left alone, and why."""

    name: str
    reason: str
    message: str
    refused: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class RenewalResult(Report):
    """What a run changed: what restart planning consumes (names, paths, time)."""

    root: str
    node_name: str | None
    #: The renewal's start time (the plan's ``now``; NotBefore is 5 minutes earlier).
    renewed_at: dt.datetime
    #: When the files were in place.
    finished_at: dt.datetime
    #: Catalog names whose files were written, sorted.
    changed: tuple[str, ...]
    #: Node paths written (targets, symlinks resolved), in write order.
    files: tuple[str, ...]
    #: The backup archive taken first, or None.
    backup: Path | None
    skipped: tuple[SkippedItem, ...] = ()
    #: True when ``backup`` is a path on the node (nodes reached over SSH keep
    #: their backups, and so their private keys, on the node).
    backup_on_node: bool = False
    #: Names an interrupted earlier run had left in its journal and this run completed.
    resumed: tuple[str, ...] = ()
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    #: kubeadm-style lines (``<long name> renewed``, ``MISSING! ...``).
    messages: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not any(s.refused for s in self.skipped)

    @property
    def outcome(self) -> Outcome:
        """Failed when an item was refused."""
        return Outcome.OK if self.ok else Outcome.FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": "RenewalResult",
            "root": self.root,
            "node": self.node_name,
            "renewed_at": iso(self.renewed_at),
            "finished_at": iso(self.finished_at),
            "changed": list(self.changed),
            "files": list(self.files),
            "backup": str(self.backup) if self.backup else None,
            "backup_on_node": self.backup_on_node,
            "skipped": [s.to_dict() for s in self.skipped],
            "resumed": list(self.resumed),
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "ok": self.ok,
            "messages": list(self.messages),
        }

    def rows(self) -> Table:
        """One row per item: written, skipped or refused, and why."""
        rows: list[list[Cell | str]] = [[n, Cell("written", "ok"), ""] for n in self.changed]
        rows += [[s.name, Cell("refused", "error") if s.refused else Cell("skipped", "dim"), s.message]
                 for s in self.skipped]
        backup = f"; backup {self.backup}" if self.backup else ""
        return Table(f"Renewal of {self.node_name or self.root} at {iso(self.renewed_at)}{backup}",
                     ("item", "result", "why"), rows)

    def blocks(self) -> list[Block]:
        """kubeadm's messages, then the backup and the files written."""
        skipped = {s.message: s for s in self.skipped}
        out: list[Block] = [Line([Cell(m, _message_tone(skipped.get(m)))]) for m in self.messages]
        if self.resumed:
            out.append(Line([f"Completed an interrupted renewal first: {', '.join(self.resumed)}"]))
        if self.backup:
            out.append(Line([f"Backup: {self.backup}{' (on the node)' if self.backup_on_node else ''}"]))
        if self.changed:
            out += [Line([]), Line(["Files written:"]), *(Line([f"  {p}"]) for p in self.files)]
            # Not kubeadm's blanket "restart the kube-apiserver, kube-controller-manager, kube-scheduler
            # and etcd": what needs a restart depends on what was written (kubepki.plan_restarts, which
            # the command line prints next).
            out += [Line([]), Line([Cell("Done renewing certificates.", "strong")])]
        elif not self.resumed:
            out.append(Line(["Nothing was written."]))
        return out

    def table(self) -> str:
        """kubeadm's messages, then the backup and the files written."""
        return self.text()


def _message_tone(skipped: SkippedItem | None) -> str:
    """A written item's message is ok; a skipped one's says why (missing, refused, left alone)."""
    if skipped is None:
        return "ok"
    return "missing" if skipped.reason == "missing" else "error" if skipped.refused else "warning"


# --------------------------------------------------------------------------------------
# Reading a node for planning


@attrs.define
class _SignerInfo:
    name: str
    cert: x509.Certificate | None
    cert_path: PurePosixPath
    key_present: bool
    signer: Signer | None
    problem: tuple[str, str] | None

    @property
    def external(self) -> bool:
        return self.cert is not None and not self.key_present

    @property
    def basename(self) -> str:
        return _catalog.get(self.name).path.removesuffix(".crt")



def _read_regular(fs: NodeFS, path: PurePosixPath) -> bytes | None:
    """The bytes of the regular file at ``path``, None when absent; NodeError otherwise.

    One open, non-blocking, then fstat (``NodeFS.read_file``): a FIFO put where a file was
    expected is reported, never read (a plain read blocks until a writer comes).
    """
    found = fs.read_file(path, limit=_MAX_FILE)
    if found is None:
        return None
    st, _link, data = found
    if not st.is_file:
        raise NodeError(f"{path} is not a regular file", path=str(path))
    if data is None or len(data) > _MAX_FILE:
        raise NodeError(f"{path} is too large ({st.size} bytes)", path=str(path))
    return data


def _planned_file(fs: NodeFS, path: PurePosixPath, role: PlannedFileRole, default_mode: int) -> PlannedFile:
    """What :meth:`_Reader.planned_file` returns; apply recomputes it to see a mode or owner changed."""
    if role is PlannedFileRole.SYMLINK:
        # The link itself is replaced (kubelet-client-current.pem, a symlink by design): never
        # resolved, so a dangling or looping link is simply replaced.
        st = fs.stat(path, follow=False)
        target = path
    else:
        target = fs.resolve(path)
        st = fs.stat(path)
    if st is None:
        return PlannedFile(path=str(path), target=str(target), role=role, mode=default_mode,
                           uid=None, gid=None, exists=False)
    return PlannedFile(path=str(path), target=str(target), role=role, mode=st.mode,
                       uid=st.uid, gid=st.gid, exists=True)


class _Reader:
    """Reads node files once, recording each one's SHA-256 for the plan's ``inputs``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.profile: NodeProfile = node.profile
        self.inputs: dict[str, str | None] = {}
        self._data: dict[str, bytes | None] = {}
        self._signers: dict[str, _SignerInfo] = {}

    def read(self, path: PurePosixPath) -> bytes | None:
        """The bytes at ``path``, None when absent; NodeError when unreadable or not a regular file."""
        key = str(path)
        if key not in self._data:
            data = _read_regular(self.node.fs, path)
            self._data[key] = data
            self.inputs[key] = hashlib.sha256(data).hexdigest() if data is not None else None
        return self._data[key]

    def planned_file(self, path: PurePosixPath, role: PlannedFileRole, default_mode: int) -> PlannedFile:
        """Where writing ``path`` lands and the mode/owner it keeps (kubeadm's mode when new).

        Raises :class:`NodeError` when ``path`` cannot be resolved (a symlink loop).
        """
        return _planned_file(self.node.fs, path, role, default_mode)

    def signer(self, name: str) -> _SignerInfo:
        if name not in self._signers:
            self._signers[name] = self._load_signer(name)
        return self._signers[name]

    def _load_signer(self, name: str) -> _SignerInfo:
        entry = _catalog.get(name)
        cert_path = self.node.path_of(entry, FileRole.CERT)
        key_path = self.node.path_of(entry, FileRole.KEY)
        info = _SignerInfo(name=name, cert=None, cert_path=cert_path, key_present=False,
                           signer=None, problem=None)
        try:
            cert_data = self.read(cert_path)
            key_data = self.read(key_path)
        except NodeError as exc:
            info.problem = ("signer-unavailable", f"{name}: {exc.message}")
            return info
        if cert_data is None:
            info.problem = ("signer-unavailable", f"{cert_path} does not exist")
            return info
        try:
            info.cert = load_certificate(cert_data, path=str(cert_path))
        except ParseError as exc:
            info.problem = ("signer-unavailable", f"{cert_path}: {exc.message}")
            return info
        info.key_present = key_data is not None
        if key_data is None:
            return info
        try:
            key = load_private_key(key_data, path=str(key_path))
            info.signer = Signer.from_key(name, info.cert, key, path=str(key_path))
        except SignerError as exc:
            info.problem = ("signer-key-mismatch", exc.message)
        except ParseError as exc:
            info.problem = ("signer-key-mismatch", f"{key_path}: {exc.message}")
        return info

    def ca_pem(self) -> bytes | None:
        """The current ``ca.crt``'s certificates, re-encoded as kubeadm embeds them."""
        path = self.node.path_of("ca", FileRole.CERT)
        data = self.read(path)
        if data is None:
            return None
        try:
            return b"".join(issuing.cert_to_pem(c) for c in load_certificates(data, path=str(path)))
        except ParseError:
            return None


# --------------------------------------------------------------------------------------
# Planning


def _validity(validity: dt.timedelta | None, profile: NodeProfile) -> tuple[dt.timedelta, str]:
    if validity is not None:
        if validity <= dt.timedelta(0):
            raise ConfigError(f"validity must be positive, not {validity}")
        return validity, "argument"
    cfg = profile.config
    if cfg is not None and cfg.certificate_validity is not None:
        return cfg.certificate_validity, "kubeadm config"
    return issuing.DEFAULT_VALIDITY, "default"


def _renewable(profile: NodeProfile) -> list[CatalogEntry]:
    entries = profile.entries()
    # kubeadm renews (and prints) in the alphabetical order of the names.
    return sorted((e for e in entries if e.renewable), key=lambda e: e.name)


def _not_renewable_message(entry: CatalogEntry) -> str:
    if entry.is_ca:
        return (f"{entry.name} is a CA: kubeadm does not renew CAs and neither does kubepki "
                "(rotate it by hand, see the manual CA rotation docs)")
    if entry.name == "kubelet.conf":
        return ("kubelet.conf is not renewed: the kubelet rotates its own client certificate "
                "(to stop an embedded one from expiring, use `kubepki certs switch-kubelet-conf`)")
    if entry.kind is Kind.KEYPAIR:
        return f"{entry.name} is a key pair without a certificate; kubeadm never renews it"
    return f"{entry.name} is managed by the kubelet, not by kubeadm certs renew"


def _select(names: Iterable[str] | str, profile: NodeProfile) -> list[CatalogEntry]:
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted:
        raise ConfigError("name the items to renew, or 'all'")
    renewable = _renewable(profile)
    if "all" in wanted:
        if len(set(wanted)) > 1:
            raise ConfigError("'all' cannot be combined with other names")
        return renewable
    out: list[CatalogEntry] = []
    for name in wanted:
        entry = _catalog.get(name)
        if not entry.renewable:
            raise ConfigError(_not_renewable_message(entry), name=name)
        if entry not in renewable:
            why = (f"a {profile.role.value} node" if profile.role not in entry.roles
                   else "external etcd" if entry.local_etcd_only and profile.external_etcd
                   else f"Kubernetes {profile.kubernetes_version}")
            raise ConfigError(f"{name} does not exist on this node ({why})", name=name)
        if entry not in out:
            out.append(entry)
    return sorted(out, key=lambda e: e.name)


def plan_renewal(
    node: Node | str | os.PathLike[str],
    names: Iterable[str] | str = ("all",),
    *,
    expiring_within: dt.timedelta | None = None,
    validity: dt.timedelta | None = None,
    key_algorithm: str | None = None,
    now: dt.datetime | None = None,
    recreate_missing: bool = False,
    reissue: bool = False,
    keep_attributes: bool = False,
) -> RenewalPlan:
    """Plan the renewal of ``names`` (catalog names, or ``"all"``) on ``node``; writes nothing.

    ``"all"`` is every item ``kubeadm certs renew all`` renews on this node's
    version and etcd mode. With ``expiring_within``, items expiring later than
    that from ``now`` are skipped. ``validity`` defaults to the kubeadm config's
    ``certificateValidityPeriod``, else 365 days; a NotAfter past the signing
    CA's is clamped to it. ``key_algorithm`` (``RSA-2048`` … ``ECDSA-P384``)
    replaces each item's current algorithm. ``recreate_missing`` issues missing
    or unusable required items afresh from the catalog's rules.

    A certificate whose subject or SANs the node's own inspection calls wrong
    (``unexpected-subject``, ``missing-san``: a copy from another node, a node
    renamed) is not renewed: renewing copies them. Its step is refused with
    reason ``wrong-attributes``, unless ``reissue`` (issue every named item
    afresh from the catalog's rules on this node, as ``kubeadm init phase
    certs``) or ``keep_attributes`` (copy them anyway, as ``kubeadm certs
    renew``) is given.

    Raises :class:`~kubepki.ConfigError` for unknown, non-renewable or
    non-applicable names and bad options, :class:`~kubepki.NodeError` when the
    root cannot be read. Per-item problems (wrong signer, external CA...) are
    skipped steps with a reason, never exceptions.
    """
    n = Node.coerce(node)
    n.check_root()
    when = _utc(now)
    if key_algorithm is not None:
        issuing.check_key_algorithm(key_algorithm)
    if expiring_within is not None and expiring_within < dt.timedelta(0):
        raise ConfigError("expiring_within must not be negative")
    reader = _Reader(n)
    profile = reader.profile
    span, source = _validity(validity, profile)
    entries = _select(names, profile)
    if reissue and keep_attributes:
        raise ConfigError("reissue and keep_attributes exclude each other")
    ctx = _PlanContext(reader, when, span, key_algorithm=key_algorithm,
                       expiring_within=expiring_within, recreate_missing=recreate_missing,
                       reissue=reissue, keep_attributes=keep_attributes,
                       selected=[e.name for e in entries])
    steps = _refuse_aliases(n, [ctx.step(e) for e in entries])
    notes = list(ctx.notes)
    if span > _RECOMMENDED_MAX_VALIDITY:
        notes.append(f"validity {span} is more than kubeadm's recommended maximum (8760h); "
                     "kubeadm only warns, and so does kubepki")
    if not entries and profile.role is _catalog.NodeRole.WORKER:
        notes.append("a worker node has no certificate kubeadm renews: the kubelet rotates its client "
                     "certificate itself (kubelet.conf names kubelet-client-current.pem); see `kubepki check`")
    pending = _lexists(n.fs, _journal(n))
    if pending:
        journal = n.fs.stat(_journal(n), follow=False)
        if journal is not None and not journal.is_file:
            notes.append(f"{_journal(n)} is not a regular file: applying refuses until it is removed")
        else:
            notes.append("an interrupted renewal left a journal: applying completes it first, "
                         "then refuses this plan if that changed its files (plan again)")
    return RenewalPlan(
        node=n, root=str(n.root), node_name=profile.name,
        kubernetes_version=str(profile.kubernetes_version), now=when,
        kubernetes_version_source=profile.version_source,
        not_before=ctx.not_before, not_after=ctx.not_after, validity=span,
        validity_source=source, key_algorithm=key_algorithm, steps=steps,
        inputs=tuple(sorted(reader.inputs.items())), pending_journal=pending, notes=tuple(notes),
    )


def _refuse_aliases(node: Node, steps: Sequence[PlanStep]) -> tuple[PlanStep, ...]:
    """``steps``, those writing a file that is also another catalog file or another step's refused.

    Two names are one file when they resolve to the same path inside the root (a
    symlink, ``super-admin.conf -> admin.conf``) or share device and inode (a hard
    link). Writing both in one commit would stage one file twice; writing one
    silently replaces the other. ``kubelet-client-current.pem`` stays a symlink by
    design: a step replacing that link itself (``PlannedFileRole.SYMLINK``) writes
    no file through it and is not compared.
    """
    aliases = _Aliases(node.fs, {s.name for s in steps if s.writes})
    for step in steps:
        for f in step.files if step.writes else ():
            if f.role is not PlannedFileRole.SYMLINK:
                aliases.claim(step.name, PurePosixPath(f.path), writes=True)
    for entry in node.profile.entries():
        for cf in entry.files:
            try:
                path = node.path_of(entry, cf.role)
            except KubepkiError:
                continue
            aliases.claim(entry.name, path, writes=False)
    clashes = aliases.clashes
    return tuple(
        attrs.evolve(s, action=Action.SKIP, reason="aliased",
                     message="; ".join(dict.fromkeys(clashes[s.name])) + ": the catalog's items are separate "
                             "files, and writing one would change or unlink the other; make them separate, then renew")
        if s.name in clashes else s
        for s in steps
    )


class _Aliases:
    """Which item first named each file (by resolved path, and by device and inode)."""

    def __init__(self, fs: NodeFS, writing: set[str]) -> None:
        self.fs = fs
        self.writing = writing
        self.owners: dict[tuple[object, ...], tuple[str, str]] = {}
        #: item -> "<its path> and <other path> (<other item>) are one file (how)"
        self.clashes: dict[str, list[str]] = {}

    def claim(self, name: str, path: PurePosixPath, *, writes: bool) -> None:
        """Record that ``name`` names ``path``; a clash when another name or path already named that file."""
        try:
            keys: list[tuple[object, ...]] = [("path", str(self.fs.resolve(path)))]
            st = self.fs.stat(path)
        except NodeError:
            return  # unresolvable: the item itself is reported unusable
        if st is not None and st.ino is not None:
            keys.append(("inode", st.dev, st.ino))
        for key in keys:
            other_name, other_path = self.owners.setdefault(key, (name, str(path)))
            if (other_name, other_path) == (name, str(path)) or (other_name == name and not writes):
                continue
            how = "a hard link" if key[0] == "inode" else "a symlink"
            if writes:
                self.clashes.setdefault(name, []).append(f"{path} and {other_path} ({other_name}) are one file ({how})")
            if other_name in self.writing:
                self.clashes.setdefault(other_name, []).append(
                    f"{other_path} and {path} ({name}) are one file ({how})")
            return


@attrs.define
class _Existing:
    """The current state of an item, as far as renewal cares."""

    cert: x509.Certificate | None = None
    files: list[PlannedFile] = attrs.Factory(list)
    kubeconfig: KubeconfigSpec | None = None
    problem: str | None = None  # why it is unusable
    missing: bool = False
    notes: list[str] = attrs.Factory(list)
    #: True when where the item's files are cannot be told (a symlink loop): nothing may be written.
    unresolvable: bool = False


class _PlanContext:
    def __init__(self, reader: _Reader, now: dt.datetime, validity: dt.timedelta, *,
                 key_algorithm: str | None = None, expiring_within: dt.timedelta | None = None,
                 recreate_missing: bool = False, reissue: bool = False, keep_attributes: bool = False,
                 selected: Sequence[str] = ()) -> None:
        self.reader = reader
        self.node = reader.node
        self.profile = reader.profile
        self.now = now
        self.not_before = now - issuing.BACKDATE
        self.not_after = now + validity
        self.key_algorithm = key_algorithm
        self.expiring_within = expiring_within
        self.recreate_missing = recreate_missing
        self.reissue = reissue
        self.keep_attributes = keep_attributes
        self.selected = tuple(selected)
        self._wrong: dict[str, list[str]] | None = None
        self.notes: list[str] = []

    def wrong_attributes(self, name: str) -> list[str]:
        """The node's own findings that call ``name``'s subject or SANs wrong (inspected once)."""
        if self._wrong is None:
            from kubepki.inspection import inspect

            inv = inspect(self.node, now=self.now, names=self.selected)
            self._wrong = {item.name: [f.message for f in item.findings
                                       if f.code in ("unexpected-subject", "missing-san")]
                           for item in inv}
        return self._wrong.get(name, [])

    # -- the existing item ------------------------------------------------------------

    def existing(self, entry: CatalogEntry) -> _Existing:
        """The item as it is; a path that cannot be resolved makes it unusable, never an exception."""
        try:
            if entry.kind is Kind.KUBECONFIG:
                return self._existing_kubeconfig(entry)
            return self._existing_pair(entry)
        except NodeError as exc:
            # e.g. a symlink loop: reported for this item alone, as any unreadable file is.
            return _Existing(problem=exc.message, unresolvable=True)

    def _pair_files(self, cert_path: PurePosixPath, key_path: PurePosixPath,
                    entry: CatalogEntry | None) -> list[PlannedFile]:
        cert_mode = entry.file(FileRole.CERT).mode if entry and entry.file(FileRole.CERT) else 0o644  # type: ignore[union-attr]
        key_mode = entry.file(FileRole.KEY).mode if entry and entry.file(FileRole.KEY) else 0o600  # type: ignore[union-attr]
        if cert_path == key_path:
            return [self.reader.planned_file(cert_path, PlannedFileRole.CERT_AND_KEY, 0o600)]
        # The key is renamed first, then the certificate (see the module docstring).
        return [self.reader.planned_file(key_path, PlannedFileRole.KEY, key_mode),
                self.reader.planned_file(cert_path, PlannedFileRole.CERT, cert_mode)]

    def _existing_pair(self, entry: CatalogEntry) -> _Existing:
        cert_path = self.node.path_of(entry, FileRole.CERT)
        key_path = self.node.path_of(entry, FileRole.KEY)
        out = _Existing(files=self._pair_files(cert_path, key_path, entry))
        self._load_cert(out, cert_path, key_path)
        return out

    def _load_cert(self, out: _Existing, cert_path: PurePosixPath, key_path: PurePosixPath) -> None:
        try:
            data = self.reader.read(cert_path)
            key_data = self.reader.read(key_path)
        except NodeError as exc:
            out.problem = exc.message
            return
        if data is None:
            out.missing = True
            return
        try:
            out.cert = load_certificate(data, path=str(cert_path))
        except ParseError as exc:
            out.problem = f"{cert_path}: {exc.message}"
            return
        if key_data is None:
            out.notes.append(f"{key_path} is absent; a new key is written anyway")
            return
        try:
            key = load_private_key(key_data, path=str(key_path))
        except ParseError as exc:
            out.notes.append(f"{key_path} is unusable ({exc.message}); a new key replaces it")
            return
        if public_key_der(key) != public_key_der(_public(out.cert)):
            out.notes.append(f"{key_path} does not match the certificate; a new key replaces it")

    def _existing_kubeconfig(self, entry: CatalogEntry) -> _Existing:  # noqa: C901, PLR0912  -- one case per kubeconfig credential layout
        path = self.node.path_of(entry)
        out = _Existing(files=[self.reader.planned_file(path, PlannedFileRole.KUBECONFIG, 0o600)])
        try:
            data = self.reader.read(path)
        except NodeError as exc:
            out.problem = exc.message
            return out
        if data is None:
            out.missing = True
            return out
        try:
            kc = parse_kubeconfig(data, path=str(path))
        except KubeconfigError as exc:
            out.problem = f"{path}: {exc.message}"
            return out
        cert_cred, key_cred = kc.client_certificate, kc.client_key
        if cert_cred is None or key_cred is None:
            out.problem = f"{path} has no client certificate and key"
            return out
        if cert_cred.embedded and key_cred.embedded:
            out.kubeconfig = KubeconfigSpec(path=str(path), credentials="embedded", server=kc.server,
                                            cluster_name=kc.cluster_name, user_name=kc.user_name)
            try:
                out.cert = load_certificate(_need(cert_cred.data, "certificate data"),
                                            path=f"{path} (client-certificate-data)")
            except ParseError as exc:
                out.problem = f"{path}: client-certificate-data: {exc.message}"
                return out
            if key_cred.data is not None:
                try:
                    key = load_private_key(key_cred.data, path=str(path))
                except ParseError:
                    out.notes.append("its client key is unusable; a new key replaces it")
                else:
                    if public_key_der(key) != public_key_der(_public(out.cert)):
                        out.notes.append("its client key does not match; a new key replaces it")
            if kc.ca is not None and not kc.ca.embedded:
                out.notes.append(f"certificate-authority {kc.ca.file} is a file reference: kept")
            return out
        if cert_cred.file is not None and key_cred.file is not None:
            # kubeadm refuses these; kubepki renews the files the kubeconfig names.
            out.kubeconfig = KubeconfigSpec(path=str(path), credentials="files", server=kc.server,
                                            cluster_name=kc.cluster_name, user_name=kc.user_name)
            out.files = self._pair_files(cert_cred.file, key_cred.file, None)
            out.notes.append(f"{path} references files: renewed in "
                             f"{', '.join(sorted({str(cert_cred.file), str(key_cred.file)}))}; "
                             "the kubeconfig itself is kept")
            self._load_cert(out, cert_cred.file, key_cred.file)
            if out.missing:
                out.problem = f"{cert_cred.file}, named by {path}, does not exist"
                out.missing = False
            return out
        out.problem = f"{path} mixes embedded and file credentials"
        return out

    # -- one step ---------------------------------------------------------------------

    def step(self, entry: CatalogEntry) -> PlanStep:
        base = PlanStep(name=entry.name, kind=entry.kind, action=Action.SKIP,
                        long_name=entry.long_name, signer=entry.signer)
        existing = self.existing(entry)
        early = self.without_existing(entry, existing, base)
        if early is not None:
            return early
        cert = _need(existing.cert, "the existing certificate")
        old_after = cert.not_valid_after_utc
        base = attrs.evolve(base, old_not_after=old_after,
                            old_key_algorithm=_algorithm_or_none(_public(cert)),
                            files=tuple(existing.files), kubeconfig=existing.kubeconfig,
                            attributes=LeafTemplate.from_certificate(cert))
        if self.expiring_within is not None and old_after - self.now > self.expiring_within:
            return attrs.evolve(base, reason="not-expiring",
                                message=f"expires on {iso(old_after)}, not within "
                                        f"{_days(self.expiring_within)}")
        signer = self.reader.signer(_need(entry.signer, "the signer"))
        refusal = self.signer_refusal(entry, signer)
        if refusal is not None:
            return attrs.evolve(base, reason=refusal[0], message=refusal[1])
        if not signed_by(cert, _need(signer.cert, "the CA certificate")):
            return attrs.evolve(base, reason="wrong-signer",
                                message=f"not issued by the {entry.signer} CA on this node "
                                        f"(issuer {cert.issuer.rfc4514_string()}); refusing to "
                                        "re-sign it")
        notes = list(existing.notes)
        wrong = self.wrong_attributes(entry.name)
        if wrong and not self.keep_attributes:
            return attrs.evolve(base, reason="wrong-attributes", message=_wrong_message(entry.name, wrong))
        notes += [f"copied although the node's findings call it wrong: {'; '.join(wrong)}"] if wrong else []
        dropped = _dropped_attributes(cert)
        if dropped:
            notes.append(f"not copied (as kubeadm): {dropped}")
        new_algo, algo_note = self.algorithm_for(base.old_key_algorithm, signer)
        if algo_note:
            notes.append(algo_note)
        times = self.times(signer)
        if isinstance(times, str):
            return attrs.evolve(base, reason="signer-expired", message=times)
        nb, na, clamped = times
        if clamped:
            notes.append(f"NotAfter clamped to the {entry.signer} CA's NotAfter {iso(na)}")
        notes += _mode_notes(existing.files)
        return attrs.evolve(base, action=Action.RENEW, message=f"{entry.long_name} renewed",
                            new_not_before=nb, new_not_after=na, clamped=clamped,
                            new_key_algorithm=new_algo, notes=tuple(notes))

    def without_existing(self, entry: CatalogEntry, existing: _Existing, base: PlanStep) -> PlanStep | None:
        """The step when the existing certificate is not renewed: reissued, missing, unusable."""
        if existing.unresolvable:
            return attrs.evolve(base, reason="unusable",
                                message=f"{existing.problem}; fix the path by hand (nothing is written there)")
        if self.reissue and not existing.missing and existing.problem is None and entry.subject is not None:
            return self.recreate(entry, existing, base)
        if existing.missing or existing.problem is not None:
            if self.recreate_missing and entry.required:
                return self.recreate(entry, existing, base)
            if existing.missing:
                return attrs.evolve(base, reason="missing", message=f"MISSING! {entry.long_name}",
                                    files=tuple(existing.files))
            return attrs.evolve(base, reason="unusable", files=tuple(existing.files),
                                message=f"{existing.problem} (recreate_missing re-issues it)")
        return None

    def signer_refusal(self, entry: CatalogEntry, signer: _SignerInfo) -> tuple[str, str] | None:
        if signer.external:
            return ("external-ca",
                    f"Detected external {signer.basename}, {entry.long_name} can't be renewed")
        if signer.problem is not None:
            return signer.problem
        return None

    def times(self, signer: _SignerInfo) -> tuple[dt.datetime, dt.datetime, bool] | str:
        ca_after = _need(signer.cert, "the CA certificate").not_valid_after_utc
        if ca_after <= self.not_before:
            return f"the {signer.name} CA expired on {iso(ca_after)}; rotate the CA first"
        if self.not_after > ca_after:
            return self.not_before, ca_after, True
        return self.not_before, self.not_after, False

    def algorithm_for(self, old: str | None, signer: _SignerInfo | None) -> tuple[str, str | None]:
        if self.key_algorithm is not None:
            return self.key_algorithm, None
        if old in issuing.KEY_ALGORITHMS:
            return old, None
        fallback = self.default_algorithm(signer)
        if old is None:
            return fallback, None
        return fallback, f"the old key is {old}, which kubeadm cannot write; the new one is {fallback}"

    def default_algorithm(self, signer: _SignerInfo | None) -> str:
        """For new items: the config's algorithm, else the signing CA's, else RSA-2048."""
        if self.profile.key_algorithm in issuing.KEY_ALGORITHMS:
            return self.profile.key_algorithm
        if signer is not None and signer.cert is not None:
            algo = _algorithm_or_none(_public(signer.cert))
            if algo in issuing.KEY_ALGORITHMS:
                return algo
        return "RSA-2048"

    # -- re-creating from the catalog's rules ----------------------------------------------

    def recreate(self, entry: CatalogEntry, existing: _Existing, base: PlanStep,
                 action: Action = Action.RECREATE) -> PlanStep:
        why = ("missing" if existing.missing else f"unusable: {existing.problem}" if existing.problem
               else "reissued from this node's rules")
        base = attrs.evolve(base, files=tuple(existing.files))
        template, notes = _rules_template(entry, self.profile, self.reader)
        if template is None:
            return attrs.evolve(base, reason="cannot-recreate", message="; ".join(notes))
        kubeconfig = None
        files = list(existing.files)
        if entry.kind is Kind.KUBECONFIG:
            spec = existing.kubeconfig
            if spec is not None and spec.credentials == "files":
                kubeconfig = spec  # rewrite the files it names
            else:
                server, cluster_name, server_note = _kubeconfig_target(entry, self.profile, self.reader)
                if server is None:
                    return attrs.evolve(base, reason="cannot-recreate", message=server_note or "")
                if server_note:
                    notes.append(server_note)
                path = self.node.path_of(entry)
                kubeconfig = KubeconfigSpec(path=str(path), credentials="new", server=server,
                                            cluster_name=cluster_name, user_name=template.common_name)
                files = [self.reader.planned_file(path, PlannedFileRole.KUBECONFIG, 0o600)]
        signer = self.reader.signer(_need(entry.signer, "the signer"))
        refusal = self.signer_refusal(entry, signer)
        if refusal is not None:
            return attrs.evolve(base, reason=refusal[0], message=refusal[1], attributes=template)
        times = self.times(signer)
        if isinstance(times, str):
            return attrs.evolve(base, reason="signer-expired", message=times)
        nb, na, clamped = times
        if clamped:
            notes.append(f"NotAfter clamped to the {entry.signer} CA's NotAfter {iso(na)}")
        algo = self.key_algorithm or self.default_algorithm(signer)
        verb = "re-created" if action is Action.RECREATE else "created"
        return attrs.evolve(
            base, action=action, reason=None, message=f"{entry.long_name} {verb} ({why})"
            if action is Action.RECREATE else f"{entry.long_name} {verb}",
            attributes=template, new_not_before=nb, new_not_after=na, clamped=clamped,
            new_key_algorithm=algo, files=tuple(files), kubeconfig=kubeconfig,
            notes=tuple(notes),
        )


def _wrong_message(name: str, wrong: Sequence[str]) -> str:
    return (f"{'; '.join(wrong)}: renewing would copy this onto the new certificate; reissue it from "
            f"this node's rules (`kubepki renew {name} --reissue`), or copy it anyway (--keep-attributes)")


def _public(cert: x509.Certificate) -> PublicKey:
    return cert.public_key()  # type: ignore[return-value]


def _algorithm_or_none(key: PublicKey | PrivateKey) -> str | None:
    try:
        return key_algorithm(key)
    except (ValueError, TypeError):
        return None


def _days(span: dt.timedelta) -> str:
    return f"{span.total_seconds() / 86400:g} days"


def _dropped_attributes(cert: x509.Certificate) -> str:
    kept = {x509.NameOID.COMMON_NAME, x509.NameOID.ORGANIZATION_NAME}
    others = [a.rfc4514_string() for a in cert.subject if a.oid not in kept]
    for ext in cert.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            extra = [g for g in ext.value if not isinstance(g, x509.DNSName | x509.IPAddress)]
            others += [f"SAN {g.value}" for g in extra]
    return ", ".join(others)


_SECRET_ROLES = frozenset({PlannedFileRole.KEY, PlannedFileRole.CERT_AND_KEY, PlannedFileRole.KUBECONFIG})


def _mode_notes(files: Sequence[PlannedFile]) -> list[str]:
    return [f"{f.path} has mode {f.mode:04o} (readable by others); kept, as kubeadm keeps it"
            for f in files if f.exists and f.role in _SECRET_ROLES
            and f.mode & 0o077]


def _fill(template: str, values: Mapping[str, str | None]) -> str | None:
    known = {k: v for k, v in values.items() if v is not None}
    try:
        return template.format_map(known)
    except KeyError:
        return None


def _rules_template(entry: CatalogEntry, profile: NodeProfile,  # noqa: C901, PLR0912  -- kubeadm's per-certificate rules, one branch each
                    reader: _Reader) -> tuple[LeafTemplate | None, list[str]]:
    """The attributes kubeadm would give ``entry`` on this node (``init phase certs``)."""
    notes: list[str] = []
    if entry.subject is None:
        return None, [f"{entry.name} has no subject rule"]
    cn = entry.subject.render_cn(profile.name)
    if cn is None:
        return None, [f"cannot re-create {entry.name}: the node name is unknown "
                      "(pass a kubeadm config with nodeRegistration.name)"]
    values = profile.san_values()
    dns: list[str] = []
    ips: list[str] = []
    for pattern in entry.sans.dns + entry.sans.ip:
        value = _fill(pattern, values)
        if value is None:
            notes.append(f"SAN {pattern} is unknown on this node and was left out "
                         "(pass a kubeadm config to include it)")
        elif is_ip(value):
            ips.append(value)
        else:
            dns.append(value)
    extra: list[str] = []
    cfg = profile.config
    for field in entry.sans.from_config:
        if field == "controlPlaneEndpoint":
            host = cfg.control_plane_host if cfg else None
            if host is None:
                host = _server_host(_other_server(reader, ("admin.conf", "super-admin.conf")))
                if host is not None:
                    notes.append(f"controlPlaneEndpoint taken from admin.conf's server ({host})")
            if host:
                extra.append(host)
        elif cfg is not None and field == "apiServer.certSANs":
            extra += cfg.cert_sans
        elif cfg is not None and field == "etcd.local.serverCertSANs":
            extra += cfg.etcd_server_cert_sans
        elif cfg is not None and field == "etcd.local.peerCertSANs":
            extra += cfg.etcd_peer_cert_sans
    for value in extra:
        (ips if is_ip(value) else dns).append(value)
    # kubeadm's certificates list DNS names sorted and IPs in the order they were added.
    ip_order = list(dict.fromkeys(str(ipaddress.ip_address(i)) for i in ips))
    kus = tuple(k for k in KEY_USAGE_NAMES if k in {u.value for u in entry.key_usages})
    ekus = tuple(e for e in ("serverAuth", "clientAuth")
                 if e in {u.value for u in entry.extended_key_usages})
    template = LeafTemplate(
        common_name=cn,
        organizations=entry.subject.organizations_for(profile.kubernetes_version),
        dns_names=tuple(sorted(set(dns))),
        ip_addresses=tuple(ip_order),
        key_usages=kus,
        extended_key_usages=ekus,
    )
    return template, notes


def _server_host(server: str | None) -> str | None:
    if not server:
        return None
    rest = server.split("://", 1)[-1].split("/", 1)[0]
    if rest.startswith("["):
        return rest[1:rest.index("]")] if "]" in rest else None
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def _from_kubeconfigs(reader: _Reader, names: Sequence[str], field: str) -> str | None:
    """The first non-empty ``server`` or ``cluster_name`` among the node's kubeconfigs ``names``."""
    for name in names:
        path = reader.node.path_of(name)
        try:
            data = reader.read(path)
            if data is None:
                continue
            value = getattr(parse_kubeconfig(data, path=str(path)), field)
        except KubepkiError:
            continue
        if value:
            return str(value)
    return None


def _other_server(reader: _Reader, names: Sequence[str]) -> str | None:
    return _from_kubeconfigs(reader, names, "server")


def _other_cluster_name(reader: _Reader) -> str | None:
    return _from_kubeconfigs(
        reader, ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"), "cluster_name"
    )


def _url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _endpoint_url(endpoint: str, port: int) -> str:
    if endpoint.startswith("["):
        return f"https://{endpoint}" if "]:" in endpoint else f"https://{endpoint}:{port}"
    if endpoint.count(":") == 1:
        return f"https://{endpoint}"
    return _url(endpoint, port)


def _kubeconfig_target(entry: CatalogEntry, profile: NodeProfile,
                       reader: _Reader) -> tuple[str | None, str, str | None]:
    """(server, cluster name, note) for a new kubeconfig, as kubeadm's kubeconfig phase picks them."""
    cfg = profile.config
    port = cfg.bind_port if cfg and cfg.bind_port else 6443
    advertise = profile.san_values().get("advertise_address")
    cluster_name = _other_cluster_name(reader) or "kubernetes"
    admin_like = entry.name in ("admin.conf", "super-admin.conf")
    if admin_like and cfg is not None and cfg.control_plane_endpoint:
        return _endpoint_url(cfg.control_plane_endpoint, port), cluster_name, None
    if advertise and not admin_like:
        return _url(advertise, port), cluster_name, None
    siblings = (("admin.conf", "super-admin.conf") if admin_like
                else ("controller-manager.conf", "scheduler.conf"))
    server = _other_server(reader, siblings)
    if server is not None:
        return server, cluster_name, f"server {server} taken from another kubeconfig on the node"
    if advertise:
        return _url(advertise, port), cluster_name, None
    return None, cluster_name, (f"cannot re-create {entry.name}: the API server's address is "
                                "unknown (pass a kubeadm config)")


# --------------------------------------------------------------------------------------
# Applying


@attrs.frozen
class _Write:
    """One file to put in place: bytes, or a symlink's target."""

    target: PurePosixPath
    role: PlannedFileRole
    mode: int
    uid: int | None
    gid: int | None
    data: bytes | None = attrs.field(default=None, repr=False)
    link: str | None = None


@attrs.frozen
class _Group:
    """The files of one item; ``check`` says how a re-run verifies them (pair, kubeconfig, none)."""

    name: str
    check: str
    writes: tuple[_Write, ...]


def _journal(node: Node) -> PurePosixPath:
    return renewal_journal_path(node)


def _staged(target: PurePosixPath) -> PurePosixPath:
    return target.parent / f".{target.name}{STAGED_SUFFIX}"


def apply_renewal(
    plan: RenewalPlan,
    *,
    backup_dir: str | os.PathLike[str] | None = None,
    take_backup: bool = True,
    wait: float = 0.0,
    workers: int | None = None,
    now: dt.datetime | None = None,
    backup_on_node: bool | None = None,
    force_invalid_times: bool = False,
    max_plan_age: dt.timedelta | None = DEFAULT_MAX_PLAN_AGE,
) -> RenewalResult:
    """Carry out ``plan``: back up, then write every step's files crash-safely.

    A backup of the node's PKI goes to ``backup_dir`` (required unless
    ``take_backup`` is False) before anything is written. ``backup_dir`` is a
    directory on this machine, or a node path when ``backup_on_node`` is True;
    None (the default) means "on the node" for nodes that are not a local root
    (SSH), so their private keys never reach this machine's disk. The node's lock is held
    throughout (``wait`` seconds to get it, else :class:`~kubepki.LockError`).
    An interrupted earlier run is completed first. New keys are generated in
    ``workers`` threads (default: one per CPU). ``now`` is only the result's
    ``finished_at`` clock; certificate times are the plan's.

    Times are judged by the real clock, never by ``now`` nor the plan's ``now``:
    a plan whose time is more than ``max_plan_age`` behind it (default
    :data:`DEFAULT_MAX_PLAN_AGE`; None for no limit) raises
    :class:`~kubepki.StalePlanError`, and certificates that would be expired or
    not yet valid raise :class:`~kubepki.InvalidTimeError`; nothing is written
    then. ``force_invalid_times`` writes the plan's times whatever the real clock
    says (both checks off: a plan made with ``now=`` on purpose).

    Raises :class:`~kubepki.RenewalError` when the node changed since the plan
    was made (content, mode, owner, where a path leads),
    :class:`~kubepki.SignerError` when a CA key no longer matches,
    :class:`~kubepki.BackupError` when the backup fails (nothing is written then).
    Refused steps are not applied and are listed in the result's ``skipped``.
    """
    if take_backup and backup_dir is None:
        raise ConfigError("backup_dir is required (or pass take_backup=False)")
    if max_plan_age is not None and (not isinstance(max_plan_age, dt.timedelta) or max_plan_age < dt.timedelta(0)):
        raise ConfigError(f"max_plan_age must be a non-negative timedelta or None, not {max_plan_age!r}")
    node = plan.node
    with node_lock(node, wait=wait):
        resumed = _roll_forward(node)
        changed = _changed_inputs(node, plan)
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            first = ("; an interrupted renewal was completed first"
                     if resumed else "")
            raise RenewalError(
                f"the node changed since the plan was made ({', '.join(changed[:3])}{more}"
                f"{first}); plan again", path=changed[0],
            )
        _check_times(plan, force_invalid_times=force_invalid_times, max_plan_age=max_plan_age)
        return _execute(plan, {}, backup_dir=backup_dir if take_backup else None,
                        workers=workers, now=now, resumed=resumed,
                        backup_on_node=_on_node(node, backup_on_node))


def _check_times(plan: RenewalPlan, *, force_invalid_times: bool, max_plan_age: dt.timedelta | None) -> None:
    """Refuse a plan too old for the real clock, or certificates not valid at it (unless forced)."""
    real = _utc(None)  # the real clock: the plan's now= may be anything
    if not plan.work or force_invalid_times:
        return
    if max_plan_age is not None and real - plan.now > max_plan_age:
        raise StalePlanError(
            f"the plan's time {iso(plan.now)} is {_age(real - plan.now)} behind the real clock "
            f"({iso(real)}), more than the maximum of {_age(max_plan_age)}: its certificates would "
            "be back-dated by that much and end that much sooner; plan again (or raise max_plan_age "
            "or force it: force_invalid_times, --max-plan-age, --force-invalid-times)",
        )
    bad = [(step.name, why) for step in plan.work
           if (why := _invalid_at(step.new_not_before, step.new_not_after, real))]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        shown = "; ".join(f"{name} ({why})" for name, why in bad[:3])
        raise InvalidTimeError(
            f"refusing to write certificates that are not valid at the real time {iso(real)}: "
            f"{shown}{more} (the plan's time is {iso(plan.now)}); plan with the real time, or "
            "force it (force_invalid_times, --force-invalid-times)", name=bad[0][0],
        )


def _invalid_at(not_before: dt.datetime | None, not_after: dt.datetime | None, when: dt.datetime) -> str:
    """Why a certificate with these times is not valid at ``when`` (empty when it is)."""
    if not_after is not None and not_after <= when:
        return f"expired on {iso(not_after)}"
    if not_before is not None and not_before > when:
        return f"valid only from {iso(not_before)}"
    return ""


def _age(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds // 60} minutes" if seconds >= 60 else f"{seconds} seconds"


def _on_node(node: Node, backup_on_node: bool | None) -> bool:
    if backup_on_node is None:
        return not isinstance(node.fs, LocalPaths)
    return backup_on_node


def _changed_inputs(node: Node, plan: RenewalPlan) -> list[str]:
    """The plan's inputs whose content changed, then the files it writes whose mode, owner or target did.

    A mode or owner set after planning is a change like any other: applying would
    otherwise put the plan's back (each file keeps the mode and owner it had).
    """
    out = []
    for path, digest in plan.inputs:
        try:
            data = _read_regular(node.fs, PurePosixPath(path))
        except NodeError:
            out.append(path)
            continue
        now_digest = hashlib.sha256(data).hexdigest() if data is not None else None
        if now_digest != digest:
            out.append(path)
    for step in plan.work:
        for f in step.files:
            if f.path in out:
                continue
            try:
                now = _planned_file(node.fs, PurePosixPath(f.path), f.role, f.mode)
            except NodeError:
                out.append(f.path)
                continue
            what = _file_change(f, now)
            if what:
                out.append(f"{f.path} ({what})")
    return out


def _file_change(was: PlannedFile, now: PlannedFile) -> str:
    """How a file to write differs from when it was planned (empty when it does not)."""
    if was.exists != now.exists:
        return "created" if now.exists else "removed"
    if was.target != now.target:
        return f"now leads to {now.target}"
    if not was.exists:
        return ""
    changes = []
    if was.mode != now.mode:
        changes.append(f"mode {was.mode:04o} -> {now.mode:04o}")
    if (was.uid, was.gid) != (now.uid, now.gid):
        changes.append(f"owner {was.uid}:{was.gid} -> {now.uid}:{now.gid}")
    return ", ".join(changes)


@attrs.frozen
class _Material:
    """A certificate and key handed in (install_signed) instead of generated."""

    cert_pem: bytes = attrs.field(repr=False)
    key_pem: bytes = attrs.field(repr=False)


def _execute(
    plan: RenewalPlan,
    materials: Mapping[str, _Material],
    *,
    backup_dir: str | os.PathLike[str] | None,
    workers: int | None,
    now: dt.datetime | None,
    resumed: Sequence[str] = (),
    backup_on_node: bool = False,
) -> RenewalResult:
    """Issue, stage and commit the plan's steps; the caller holds the lock."""
    node = plan.node
    reader = _Reader(node)
    work = [s for s in plan.steps if s.writes]
    skipped = [SkippedItem(name=s.name, reason=s.reason or "skipped", message=s.message,
                           refused=s.refused) for s in plan.steps if not s.writes]
    messages = [s.message for s in plan.steps if s.message]
    if not work:
        return RenewalResult(
            root=plan.root, node_name=plan.node_name, renewed_at=plan.now,
            finished_at=_utc(now), changed=(), files=(), backup=None, skipped=tuple(skipped),
            resumed=tuple(resumed), messages=tuple(messages),
        )
    needs_key = [s for s in work if s.name not in materials and _needs_key(s)]
    signers: dict[str, Signer] = {}
    for step in needs_key:
        name = _need(step.signer, "the signer")
        info = reader.signer(name)
        if info.signer is None:
            raise SignerError(f"the {name} CA can no longer sign: "
                              f"{info.problem[1] if info.problem else 'its key is absent'}",
                              name=name)
        signers[name] = info.signer
    count = workers if workers is not None else (os.cpu_count() or 1)
    keys: dict[str, Future[issuing.IssuableKey]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(count, len(needs_key) or 1))) as pool:
        # Keys are generated while the backup is written: both wait on other things than the GIL.
        for step in needs_key:
            algorithm = _need(step.new_key_algorithm, "the key algorithm")
            keys[step.name] = pool.submit(issuing.generate_key, algorithm)
        backup_path = (_backup(node, backup_dir, now, on_node=backup_on_node)
                       if backup_dir is not None else None)
        if backup_path is not None:
            checkpoint("backup")
        groups: list[_Group] = []
        for step in work:
            if step.name in materials:
                m = materials[step.name]
                groups.append(_material_group(step, m.cert_pem, m.key_pem, reader))
            elif step.action is Action.SWITCH:
                key = keys[step.name].result() if step.name in keys else None
                groups.append(_switch_group(step, key, signers.get(step.signer or ""), reader))
            else:
                key = keys[step.name].result()
                cert = _sign(step, key, signers[_need(step.signer, "the signer")])
                groups.append(_material_group(step, issuing.cert_to_pem(cert),
                                              issuing.key_to_pem(key), reader))
    _commit(node, groups, started=plan.now)
    written = tuple(str(w.target) for g in groups for w in g.writes)
    return RenewalResult(
        root=plan.root, node_name=plan.node_name, renewed_at=plan.now, finished_at=_utc(now),
        changed=tuple(sorted(g.name for g in groups)), files=written, backup=backup_path,
        backup_on_node=backup_on_node and backup_path is not None,
        skipped=tuple(skipped), resumed=tuple(resumed), not_before=plan.not_before,
        not_after=plan.not_after, messages=tuple(messages),
    )


def _sign(step: PlanStep, key: issuing.IssuableKey, signer: Signer) -> x509.Certificate:
    return issuing.sign_leaf(
        _need(step.attributes, "the attributes"), key.public_key(), signer,
        not_before=_need(step.new_not_before, "NotBefore"),
        not_after=_need(step.new_not_after, "NotAfter"),
    )


def _needs_key(step: PlanStep) -> bool:
    if step.action in (Action.RENEW, Action.RECREATE, Action.CREATE):
        return True
    # A switch signs a new certificate only when the embedded one has expired.
    return step.action is Action.SWITCH and step.new_not_before is not None


def _backup(node: Node, backup_dir: str | os.PathLike[str], now: dt.datetime | None, *,
            on_node: bool = False) -> Path:
    try:
        from kubepki.backups import backup
    except ImportError as exc:  # pragma: no cover - the backups module ships with kubepki
        raise RenewalError(f"cannot take a backup: {exc}") from None
    info = backup(node, backup_dir, now=now, on_node=on_node, lock_held=True)  # the renewal holds it
    return Path(info.path)


def _write_for(f: PlannedFile, data: bytes | None = None, link: str | None = None) -> _Write:
    return _Write(target=PurePosixPath(f.target), role=f.role, mode=f.mode, uid=f.uid, gid=f.gid,
                  data=data, link=link)


def _material_group(step: PlanStep, cert_pem: bytes, key_pem: bytes, reader: _Reader) -> _Group:
    spec = step.kubeconfig
    if spec is None or spec.credentials == "files":
        writes = []
        for f in step.files:
            data = {PlannedFileRole.KEY: key_pem, PlannedFileRole.CERT: cert_pem,
                    PlannedFileRole.CERT_AND_KEY: cert_pem + key_pem}[f.role]
            writes.append(_write_for(f, data))
        return _Group(step.name, "pair", tuple(writes))
    (f,) = step.files
    if spec.credentials == "new":
        ca_pem = reader.ca_pem()
        if ca_pem is None:
            raise RenewalError("ca.crt is missing or unusable; cannot write a kubeconfig",
                               name=step.name)
        data = issuing.new_kubeconfig(
            cluster_name=spec.cluster_name or "kubernetes", server=_need(spec.server, "server"),
            ca_pem=ca_pem, user_name=_need(spec.user_name, "user"), cert_pem=cert_pem,
            key_pem=key_pem,
        )
        return _Group(step.name, "kubeconfig", (_write_for(f, data),))
    original = reader.read(PurePosixPath(spec.path))
    if original is None:
        raise RenewalError(f"{spec.path} disappeared", path=spec.path, name=step.name)
    kc = parse_kubeconfig(original, path=spec.path)
    cluster: dict[str, str | None] = {}
    ca_pem = reader.ca_pem()
    if ca_pem is not None and (kc.ca is None or kc.ca.embedded):
        # kubeadm re-embeds the current ca.crt (kubernetes/kubernetes#88052).
        cluster["certificate-authority-data"] = issuing.b64(ca_pem)
    data = issuing.edit_kubeconfig(
        original, kc,
        user={"client-certificate-data": issuing.b64(cert_pem),
              "client-key-data": issuing.b64(key_pem)},
        cluster=cluster,
    )
    return _Group(step.name, "kubeconfig", (_write_for(f, data),))


# -- the journal ---------------------------------------------------------------------------
#
# Every file operation goes through the node's filesystem (kubepki.node._fs.NodeFS), so
# the same journal protects a local root and a node reached over SSH: on SSH the
# keys are generated and signed in the controller's memory and written on the
# node only, never on the controller's disk.


def _write_journal(fs: NodeFS, path: PurePosixPath, state: str, groups: Sequence[_Group],
                   started: dt.datetime) -> None:
    doc = {
        "version": 1,
        "state": state,
        "started": iso(started),
        "pid": os.getpid(),
        "groups": [
            {"name": g.name, "check": g.check,
             "files": [{"staged": str(_staged(w.target)), "target": str(w.target), "role": w.role.value}
                       for w in g.writes]}
            for g in groups
        ],
    }
    fs.write_atomic(path, json.dumps(doc, indent=1).encode() + b"\n", mode=0o600)


def _stage(fs: NodeFS, w: _Write) -> PurePosixPath:
    staged = _staged(w.target)
    try:
        fs.unlink(staged)
        if w.link is not None:
            fs.symlink(w.link, staged)
            return staged
        fs.write_new(staged, _need(w.data, "the data"), mode=w.mode, uid=w.uid, gid=w.gid)
    except NodeError as exc:
        raise NodeError(f"cannot write {staged}: {exc.message}", path=str(staged)) from None
    return staged


def _commit(node: Node, groups: Sequence[_Group], *, started: dt.datetime) -> None:
    """Stage every file, commit the journal, rename, drop the journal."""
    fs = node.fs
    journal = _journal(node)
    targets = [w.target for g in groups for w in g.writes]
    if len(set(targets)) != len(targets):
        # Two writes of one file would share a staged name: the second rename would fail
        # after the first put the wrong content in place. Planning refuses aliases first.
        twice = sorted({str(t) for t in targets if targets.count(t) > 1})
        raise RenewalError(f"refusing to write {', '.join(twice)} twice in one renewal; plan again")
    dirs = {w.target.parent for g in groups for w in g.writes}
    for d in sorted(dirs):
        # e.g. /var/lib/kubelet/pki on a node whose kubelet never ran
        try:
            makedirs(fs, d)
        except NodeError as exc:
            raise NodeError(f"cannot create {d}: {exc.message}", path=str(d)) from None
    _write_journal(fs, journal, "staging", groups, started)
    checkpoint("journal-staging")
    try:
        for g in groups:
            for w in g.writes:
                _stage(fs, w)
                checkpoint(f"staged {w.target}")
        for d in dirs:
            fs.fsync_dir(d)
        _write_journal(fs, journal, "committing", groups, started)
    except BaseException:
        _discard_staged(fs, groups)
        _remove(fs, journal)
        raise
    checkpoint("journal-committing")
    try:
        for g in groups:
            for w in g.writes:
                fs.rename(_staged(w.target), w.target)
                checkpoint(f"renamed {w.target}")
    except NodeError as exc:
        raise RenewalError(
            f"renewal interrupted while putting files in place ({exc.message}); the journal "
            f"{journal} lets resume_renewal finish it"
        ) from None
    for d in dirs:
        fs.fsync_dir(d)
    _remove(fs, journal)
    checkpoint("journal-removed")


def _discard_staged(fs: NodeFS, groups: Sequence[_Group]) -> None:
    for g in groups:
        for w in g.writes:
            _remove(fs, _staged(w.target))


def _remove(fs: NodeFS, path: PurePosixPath) -> None:
    try:
        if not fs.unlink(path):
            return
    except NodeError:
        return
    fs.fsync_dir(path.parent)


def _lexists(fs: NodeFS, path: PurePosixPath) -> bool:
    return fs.stat(path, follow=False) is not None


def _load_journal(fs: NodeFS, journal: PurePosixPath) -> tuple[str, list[_Group]] | None:
    """The state and groups of the journal at ``journal``; None when there is none.

    Raises :class:`RenewalError` when it is not a regular file (never opened then), is
    damaged, or names files it must not (a staged name that is not its target's, a
    target twice).
    """
    try:
        st = fs.stat(journal, follow=False)
        if st is None:
            return None
        if not st.is_file:  # a FIFO, a directory, a symlink: renewal writes none of these there
            raise NodeError(f"{journal} is not a regular file", path=str(journal))
        raw = _read_regular(fs, journal) or b""
    except NodeError as exc:
        # a FIFO or a directory there is reported, never opened for a blocking read
        raise RenewalError(f"cannot read the renewal journal: {exc.message}; remove it "
                           "if no renewal was interrupted", path=str(journal)) from None
    try:
        doc = json.loads(raw)
        state = doc["state"]
        groups = [
            _Group(g["name"], g["check"], tuple(
                _Write(target=PurePosixPath(f["target"]), role=PlannedFileRole(f["role"]), mode=0, uid=None,
                       gid=None) for f in g["files"]))
            for g in doc["groups"]
        ]
        staged_names = [str(_staged(w.target)) for g in groups for w in g.writes]
        listed = [f["staged"] for g in doc["groups"] for f in g["files"]]
    except (ValueError, KeyError, TypeError):
        raise RenewalError(f"the renewal journal {journal} is damaged; restore the backup taken "
                           "before the renewal, then delete the journal") from None
    if staged_names != listed:
        raise RenewalError(f"the renewal journal {journal} names unexpected files; refusing")
    targets = [w.target for g in groups for w in g.writes]
    if len(set(targets)) != len(targets):
        twice = sorted({str(t) for t in targets if targets.count(t) > 1})
        raise RenewalError(f"the renewal journal {journal} names {', '.join(twice)} more than once; "
                           "refusing (restore the backup taken before the renewal)")
    return state, groups


def _roll_forward(node: Node) -> list[str]:
    """Complete (or, before its commit, discard) an interrupted run; the names it completed."""
    from kubepki.backups import resume_restore  # an interrupted restore is finished first

    resume_restore(node, lock_held=True)
    fs = node.fs
    journal = _journal(node)
    # A journal write interrupted inside write_atomic leaves its temporary file.
    for name in fs.listdir(journal.parent):
        if fnmatch.fnmatchcase(name, f".{JOURNAL_NAME}.kubepki-*.tmp"):
            _remove(fs, journal.parent / name)
    loaded = _load_journal(fs, journal)
    if loaded is None:
        return []
    state, groups = loaded
    if state == "staging":
        _discard_staged(fs, groups)
        _remove(fs, journal)
        return []
    if state != "committing":
        raise RenewalError(f"the renewal journal {journal} has an unknown state {state!r}")
    completed = []
    for g in groups:
        pending = [w for w in g.writes if _lexists(fs, _staged(w.target))]
        if not pending:
            continue  # this item was complete before the interruption
        for w in pending:
            _check_staged_type(fs, w)
        _verify_group(fs, g)
        for w in pending:
            fs.rename(_staged(w.target), w.target)
            checkpoint(f"resumed {w.target}")
        completed.append(g.name)
    for d in {w.target.parent for g in groups for w in g.writes}:
        fs.fsync_dir(d)
    _remove(fs, journal)
    return completed


def _check_staged_type(fs: NodeFS, w: _Write) -> None:
    """A staged file left by an interrupted run is what its role stages (a file, or a symlink).

    Anything else (a FIFO, a directory) is never opened nor renamed into place.
    """
    staged = _staged(w.target)
    st = fs.stat(staged, follow=False)
    if st is None:
        return
    wanted = st.is_symlink if w.role is PlannedFileRole.SYMLINK else (st.is_file and not st.is_symlink)
    if not wanted:
        kind = "a symlink" if w.role is PlannedFileRole.SYMLINK else "a regular file"
        raise RenewalError(f"cannot complete the interrupted renewal: {staged} is not {kind}; "
                           "restore the backup taken before it", path=str(staged))


def _current(fs: NodeFS, target: PurePosixPath) -> bytes | None:
    """What ``target`` will hold once the renames are done: the staged file, else the file.

    None when that is unreadable or not a regular file (never opened then).
    """
    for path in (_staged(target), target):
        try:
            data = _read_regular(fs, path)
        except NodeError:
            return None
        if data is not None:
            return data
    return None


def _verify_group(fs: NodeFS, g: _Group) -> None:
    """Check that what a group will hold after the renames belongs together."""
    try:
        if g.check == "pair":
            by_role = {w.role: _current(fs, w.target) for w in g.writes}
            if PlannedFileRole.CERT_AND_KEY in by_role:
                both = by_role[PlannedFileRole.CERT_AND_KEY] or b""
                _check_pair(both, both, g.name)
            else:
                _check_pair(by_role.get(PlannedFileRole.CERT) or b"", by_role.get(PlannedFileRole.KEY) or b"",
                            g.name)
        elif g.check == "kubeconfig":
            (w,) = g.writes
            data = _current(fs, w.target) or b""
            kc = parse_kubeconfig(data, path=str(w.target))
            if kc.client_certificate and kc.client_certificate.data and kc.client_key and \
                    kc.client_key.data:
                _check_pair(kc.client_certificate.data, kc.client_key.data, g.name)
    except (ParseError, KeyError) as exc:
        raise RenewalError(f"cannot complete the interrupted renewal of {g.name}: {exc}; restore "
                           "the backup taken before it", name=g.name) from None


def _check_pair(cert_data: bytes, key_data: bytes, name: str) -> None:
    cert = load_certificate(cert_data)
    key = load_private_key(key_data)
    if public_key_der(key) != public_key_der(_public(cert)):
        raise RenewalError(f"the staged certificate and key of {name} do not match; refusing to "
                           "put them in place (restore the backup taken before the renewal)",
                           name=name)


def resume_renewal(node: Node | str | os.PathLike[str], *, wait: float = 0.0,
                   now: dt.datetime | None = None) -> RenewalResult | None:
    """Complete a renewal that was interrupted (killed, power loss); None when none was.

    Holds the node's lock. An interrupted restore is finished first
    (:func:`~kubepki.backups.resume_restore`). Files staged before the interrupted run
    committed are deleted (the old files were never touched); after its commit, the
    remaining renames are done once each staged certificate is checked against its key.
    """
    from kubepki.backups import resume_restore

    n = Node.coerce(node)
    n.check_root()
    # An interrupted restore is finished too, so that a renewal planned next sees the settled tree (it
    # used to be finished only by the apply, which then refused its own plan as made on a changed node).
    resume_restore(n, wait=wait)
    if not _lexists(n.fs, _journal(n)):
        return None
    with node_lock(n, wait=wait):
        completed = _roll_forward(n)
    when = _utc(now)
    return RenewalResult(root=str(n.root), node_name=n.profile.name, renewed_at=when,
                         finished_at=when, changed=tuple(sorted(completed)), files=(), backup=None,
                         resumed=tuple(completed))


# --------------------------------------------------------------------------------------
# Beyond kubeadm: kubelet.conf, super-admin.conf, kubeconfigs for anyone


def switch_kubelet_conf(
    node: Node | str | os.PathLike[str],
    *,
    validity: dt.timedelta | None = None,
    key_algorithm: str | None = None,
    now: dt.datetime | None = None,
) -> RenewalPlan:
    """Plan pointing an embedding ``kubelet.conf`` at ``kubelet-client-current.pem``.

    Nodes set up before kubeadm 1.17 embed a client certificate the kubelet never
    rotates (kubernetes/kubeadm#1753). The plan rewrites ``client-certificate-data``
    and ``client-key-data`` into ``client-certificate``/``client-key`` naming the
    kubelet's rotated PEM. When that PEM is absent or unusable, it is written
    first (as ``kubelet-client-<time>.pem`` plus the symlink, as the kubelet
    does) from the embedded pair, or, when that has expired, from a new
    certificate signed by ``ca``. Apply it with :func:`apply_renewal`.
    """
    n = Node.coerce(node)
    n.check_root()
    when = _utc(now)
    if key_algorithm is not None:
        issuing.check_key_algorithm(key_algorithm)
    reader = _Reader(n)
    profile = reader.profile
    span, source = _validity(validity, profile)
    ctx = _PlanContext(reader, when, span, key_algorithm=key_algorithm)
    entry = _catalog.get("kubelet.conf")
    base = PlanStep(name=entry.name, kind=entry.kind, action=Action.SKIP,
                    long_name=entry.long_name, signer="ca")
    try:
        step = _switch_step(ctx, entry, base)
    except NodeError as exc:  # a path that cannot be resolved (a symlink loop): this item is unusable
        step = attrs.evolve(base, reason="unusable", message=exc.message)
    (step,) = _refuse_aliases(n, [step])
    return RenewalPlan(
        node=n, root=str(n.root), node_name=profile.name,
        kubernetes_version=str(profile.kubernetes_version), now=when,
        kubernetes_version_source=profile.version_source,
        not_before=ctx.not_before, not_after=ctx.not_after, validity=span, validity_source=source,
        key_algorithm=key_algorithm, steps=(step,), inputs=tuple(sorted(reader.inputs.items())),
    )


def plan_recovery(
    node: Node | str | os.PathLike[str],
    *,
    validity: dt.timedelta | None = None,
    key_algorithm: str | None = None,
    now: dt.datetime | None = None,
) -> RenewalPlan:
    """Plan bringing back a node whose certificates expired while it was switched off.

    What kubeadm's docs do by hand for a cluster off for more than a year: renew every
    item ``kubeadm certs renew all`` renews (as :func:`plan_renewal` with ``all``), and
    give the kubelet a client certificate straight from ``ca`` when the one it has has
    expired (it cannot rotate an expired one), pointing ``kubelet.conf`` at it (as
    :func:`switch_kubelet_conf`). On a worker only the kubelet's part applies. Apply it
    with :func:`apply_renewal`, then restart what it changed (``kubepki restarts apply
    --from-renewal``): the static pods and the kubelet.
    """
    when = _utc(now)
    n = Node.coerce(node)
    full = plan_renewal(n, "all", validity=validity, key_algorithm=key_algorithm, now=when)
    kubelet = switch_kubelet_conf(n, validity=validity, key_algorithm=key_algorithm, now=when)
    step = kubelet.steps[0]
    notes = list(full.notes)
    extra: tuple[PlanStep, ...] = (step,)
    if step.action is Action.SKIP and step.reason == "already-switched":
        extra = ()
        notes.append(f"the kubelet's client certificate needs nothing: {step.message}")
    elif step.action is Action.SKIP and n.profile.role is _catalog.NodeRole.WORKER:
        name = n.profile.name or "NAME"
        extra = (attrs.evolve(step, message=(
            "the kubelet's client certificate has expired and a worker has no ca.key to sign a new one: issue it on "
            "a control-plane node "
            f"(`kubepki certs kubeconfig-user --client-name system:node:{name} --org system:nodes > kubelet.conf`, "
            "as kubeadm's docs do) and put that file at this node's /etc/kubernetes/kubelet.conf")),)
    inputs = dict(full.inputs)
    inputs.update(kubelet.inputs)
    return attrs.evolve(full, steps=_refuse_aliases(n, full.steps + extra), inputs=tuple(sorted(inputs.items())),
                        notes=tuple(notes))


def _switch_step(ctx: _PlanContext, entry: CatalogEntry, base: PlanStep) -> PlanStep:
    reader, node = ctx.reader, ctx.node
    path = node.path_of(entry)
    try:
        data = reader.read(path)
    except NodeError as exc:
        return attrs.evolve(base, reason="unusable", message=exc.message)
    if data is None:
        return attrs.evolve(base, reason="missing", message=f"MISSING! {entry.long_name}")
    try:
        kc = parse_kubeconfig(data, path=str(path))
    except KubeconfigError as exc:
        return attrs.evolve(base, reason="unusable", message=f"{path}: {exc.message}")
    cred, key_cred = kc.client_certificate, kc.client_key
    if cred is None or key_cred is None:
        return attrs.evolve(base, reason="unusable", message=f"{path} has no client certificate")
    found = _kubelet_credential(ctx, path, cred)
    if isinstance(found, tuple):
        return attrs.evolve(base, reason=found[0], message=found[1])
    embedded, referenced = found.cert, not cred.embedded
    kubeconfig_file = reader.planned_file(path, PlannedFileRole.KUBECONFIG, 0o600)
    pem_entry = _catalog.get("kubelet-client-current.pem")
    current = node.path_of(pem_entry)
    spec = KubeconfigSpec(path=str(path), credentials="switch", server=kc.server,
                          cluster_name=kc.cluster_name, user_name=kc.user_name)
    usable, why = _usable_kubelet_pem(ctx, current, embedded)
    base = attrs.evolve(base, old_not_after=embedded.not_valid_after_utc,
                        old_key_algorithm=_algorithm_or_none(_public(embedded)),
                        attributes=LeafTemplate.from_certificate(embedded), kubeconfig=spec)
    if usable is not None:
        return attrs.evolve(
            base, action=Action.SWITCH, files=(kubeconfig_file,),
            new_not_after=usable.not_valid_after_utc,
            message=f"{path} now names {current} (the kubelet rotates it)",
            notes=(f"{current} is valid until {iso(usable.not_valid_after_utc)}",),
        )
    stamp = ctx.now.strftime("%Y-%m-%d-%H-%M-%S")
    pem_path = current.parent / f"kubelet-client-{stamp}.pem"
    files = (
        reader.planned_file(pem_path, PlannedFileRole.CERT_AND_KEY, 0o600),
        attrs.evolve(reader.planned_file(current, PlannedFileRole.SYMLINK, 0o777), target=str(current)),
        kubeconfig_file,
    )
    notes = [why] if why else []
    if embedded.not_valid_after_utc > ctx.now:
        notes.append(f"the embedded certificate and key are written to {pem_path}; the "
                     "kubelet rotates it before it expires")
        return attrs.evolve(base, action=Action.SWITCH, files=files,
                            new_not_after=embedded.not_valid_after_utc, notes=tuple(notes),
                            message=f"{path} now names {current}")
    signer = reader.signer("ca")
    refusal = ctx.signer_refusal(entry, signer)
    if refusal is not None:
        return attrs.evolve(base, reason=refusal[0], message=refusal[1] + " (the embedded "
                            "certificate has expired, so a new one must be signed)")
    template, tnotes = _rules_template(entry, ctx.profile, reader)
    if template is None:
        return attrs.evolve(base, reason="cannot-recreate", message="; ".join(tnotes))
    times = ctx.times(signer)
    if isinstance(times, str):
        return attrs.evolve(base, reason="signer-expired", message=times)
    nb, na, clamped = times
    algo, _ = ctx.algorithm_for(base.old_key_algorithm, signer)
    what = f"the certificate {cred.file} names" if referenced else "the embedded certificate"
    notes.append(f"{what} expired on {iso(embedded.not_valid_after_utc)}: "
                 f"a new one is signed by ca and written to {pem_path}")
    return attrs.evolve(base, action=Action.SWITCH, files=files, attributes=template,
                        new_not_before=nb, new_not_after=na, clamped=clamped,
                        new_key_algorithm=algo, notes=tuple(notes),
                        message=f"{path} now names {current}")


@attrs.frozen
class _Credential:
    cert: x509.Certificate


def _kubelet_credential(ctx: _PlanContext, path: PurePosixPath, cred: Any) -> _Credential | tuple[str, str]:
    """The kubelet.conf certificate to switch away from, or (skip reason, message)."""
    if not cred.embedded:
        # Already switched. A rotated PEM that has expired (a node switched off for longer than its
        # certificate lasted) can no longer be rotated by the kubelet: it needs a new one from the CA, as
        # kubeadm's docs do with `kubeadm kubeconfig user --client-name system:node:NAME`.
        named = _expired_referenced(ctx, cred.file)
        if named is None:
            return "already-switched", f"{path} already names {cred.file}"
        return _Credential(named)
    try:
        return _Credential(load_certificate(_need(cred.data, "certificate data")))
    except ParseError as exc:
        return "unusable", f"{path}: {exc.message}"


def _expired_referenced(ctx: _PlanContext, file: PurePosixPath | None) -> x509.Certificate | None:
    """The expired certificate of the PEM a switched kubelet.conf names; None while it is valid or unreadable."""
    if file is None:
        return None
    try:
        data = ctx.reader.read(file)
        cert = load_certificate(data) if data is not None else None
    except (NodeError, ParseError):
        return None
    return cert if cert is not None and cert.not_valid_after_utc <= ctx.now else None


def _usable_kubelet_pem(ctx: _PlanContext, current: PurePosixPath,
                        embedded: x509.Certificate) -> tuple[x509.Certificate | None, str | None]:
    try:
        data = ctx.reader.read(current)
    except NodeError as exc:
        return None, f"{current} is unreadable ({exc.message}); it is replaced"
    if data is None:
        return None, None
    try:
        cert = load_certificate(data)
        key = load_private_key(data)
    except ParseError as exc:
        return None, f"{current} is unusable ({exc.message}); it is replaced"
    signer = ctx.reader.signer("ca")
    if public_key_der(key) != public_key_der(_public(cert)):
        return None, f"{current} holds a certificate and key that do not match; it is replaced"
    if signer.cert is not None and not signed_by(cert, signer.cert):
        return None, f"{current} is not signed by ca; it is replaced"
    if cert.subject != embedded.subject:
        return None, f"{current} is for {cert.subject.rfc4514_string()}; it is replaced"
    if cert.not_valid_after_utc <= ctx.now:
        return None, f"{current} has expired; it is replaced"
    return cert, None


def _switch_group(step: PlanStep, key: issuing.IssuableKey | None, signer: Signer | None,
                  reader: _Reader) -> _Group:
    spec = _need(step.kubeconfig, "the kubeconfig")
    original = reader.read(PurePosixPath(spec.path))
    if original is None:
        raise RenewalError(f"{spec.path} disappeared", path=spec.path, name=step.name)
    kc = parse_kubeconfig(original, path=spec.path)
    by_role = {f.role: f for f in step.files}
    current = _catalog.get("kubelet-client-current.pem")
    writes: list[_Write] = []
    pem_target = by_role.get(PlannedFileRole.CERT_AND_KEY)
    link = by_role.get(PlannedFileRole.SYMLINK)
    link_path = str(link.path) if link is not None else None
    if pem_target is not None:
        if key is not None:
            cert = _sign(step, key, _need(signer, "the signer"))
            pem = issuing.cert_to_pem(cert) + issuing.key_to_pem(key)
        else:
            cert_cred = _need(kc.client_certificate, "the client certificate")
            key_cred = _need(kc.client_key, "the client key")
            pem = (_ensure_newline(_need(cert_cred.data, "certificate data"))
                   + _ensure_newline(_need(key_cred.data, "key data")))
        writes.append(_write_for(pem_target, pem))
        writes.append(_write_for(by_role[PlannedFileRole.SYMLINK], link=pem_target.path))
    named = link_path or str(reader.node.dir_for(current.location) / current.path)
    data = issuing.rename_kubeconfig_fields(
        original, kc, user={"client-certificate-data": ("client-certificate", named),
                            "client-key-data": ("client-key", named)},
    )
    writes.append(_write_for(by_role[PlannedFileRole.KUBECONFIG], data))
    return _Group(step.name, "none", tuple(writes))


def _ensure_newline(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


def create_super_admin(
    node: Node | str | os.PathLike[str],
    *,
    validity: dt.timedelta | None = None,
    key_algorithm: str | None = None,
    now: dt.datetime | None = None,
) -> RenewalPlan:
    """Plan creating ``super-admin.conf`` on a node that has none (clusters upgraded to 1.29+).

    kubeadm writes it only at ``kubeadm init``; KEP-4214 tells upgraded clusters
    to make one with ``kubeadm kubeconfig user --client-name=kubernetes-super-admin
    --org=system:masters``, which this plans (server: ``controlPlaneEndpoint``).
    Raises :class:`~kubepki.RenewalError` for Kubernetes < 1.29. Apply the plan
    with :func:`apply_renewal`.
    """
    n = Node.coerce(node)
    n.check_root()
    when = _utc(now)
    if key_algorithm is not None:
        issuing.check_key_algorithm(key_algorithm)
    reader = _Reader(n)
    profile = reader.profile
    if profile.kubernetes_version < _V129:
        raise RenewalError(f"super-admin.conf exists from Kubernetes 1.29 (KEP-4214); this node "
                           f"runs {profile.kubernetes_version}", name="super-admin.conf")
    span, source = _validity(validity, profile)
    ctx = _PlanContext(reader, when, span, key_algorithm=key_algorithm, recreate_missing=True)
    entry = _catalog.get("super-admin.conf")
    base = PlanStep(name=entry.name, kind=entry.kind, action=Action.SKIP,
                    long_name=entry.long_name, signer=entry.signer)
    existing = ctx.existing(entry)
    if existing.unresolvable:
        step = attrs.evolve(base, reason="unusable", message=f"{existing.problem}; fix the path by hand")
    elif not existing.missing:
        step = attrs.evolve(base, reason="exists", files=tuple(existing.files),
                            message=f"{existing.files[0].path} exists; renew it instead")
    else:
        step = ctx.recreate(entry, existing, base, action=Action.CREATE)
    (step,) = _refuse_aliases(n, [step])
    return RenewalPlan(
        node=n, root=str(n.root), node_name=profile.name,
        kubernetes_version=str(profile.kubernetes_version), now=when,
        kubernetes_version_source=profile.version_source,
        not_before=ctx.not_before, not_after=ctx.not_after, validity=span, validity_source=source,
        key_algorithm=key_algorithm, steps=(step,), inputs=tuple(sorted(reader.inputs.items())),
    )


def issue_kubeconfig(
    node: Node | str | os.PathLike[str],
    client_name: str,
    orgs: Sequence[str] = (),
    *,
    validity: dt.timedelta | None = None,
    now: dt.datetime | None = None,
    server: str | None = None,
    key_algorithm: str | None = None,
    cluster_name: str | None = None,
    force_invalid_times: bool = False,
) -> bytes:
    """A kubeconfig for ``client_name`` in groups ``orgs``, signed by the node's ``ca``.

    Like ``kubeadm kubeconfig user --client-name --org``: an embedded client
    certificate (clientAuth) and key, and the current ``ca.crt``. ``server``
    defaults to ``controlPlaneEndpoint`` (else the node's other kubeconfigs);
    ``validity`` to the config's, else 365 days, clamped to the CA's NotAfter.
    Nothing is written on the node. Raises :class:`~kubepki.SignerError` when
    ``ca.key`` is absent or does not match ``ca.crt``, and
    :class:`~kubepki.InvalidTimeError` when the certificate (from ``now``) would not be
    valid at the real time, unless ``force_invalid_times``.
    """
    if not client_name:
        raise ConfigError("client_name must not be empty")
    n = Node.coerce(node)
    n.check_root()
    when = _utc(now)
    reader = _Reader(n)
    profile = reader.profile
    span, _ = _validity(validity, profile)
    info = reader.signer("ca")
    if info.signer is None:
        why = info.problem[1] if info.problem else "ca.key is absent (external CA)"
        raise SignerError(f"cannot sign with ca: {why}", name="ca")
    ctx = _PlanContext(reader, when, span, key_algorithm=key_algorithm)
    times = ctx.times(info)
    if isinstance(times, str):
        raise SignerError(times, name="ca")
    nb, na, _clamped = times
    real = _utc(None)
    why = _invalid_at(nb, na, real)
    if why and not force_invalid_times:
        raise InvalidTimeError(f"refusing to issue a certificate that is not valid at the real time "
                               f"{iso(real)}: it would be {why} (now={iso(when)}); force it with "
                               "force_invalid_times (--force-invalid-times)", name=client_name)
    if server is None:
        server, found_cluster, _note = _kubeconfig_target(_catalog.get("admin.conf"), profile, reader)
        cluster_name = cluster_name or found_cluster
        if server is None:
            raise ConfigError("the API server address is unknown on this node; pass server=")
    algo = key_algorithm or ctx.default_algorithm(info)
    issuing.check_key_algorithm(algo)
    key = issuing.generate_key(algo)
    template = LeafTemplate(common_name=client_name, organizations=tuple(orgs),
                            extended_key_usages=("clientAuth",))
    cert = issuing.sign_leaf(template, key.public_key(), info.signer, not_before=nb, not_after=na)
    ca_pem = _need(reader.ca_pem(), "ca.crt")
    return issuing.new_kubeconfig(
        cluster_name=cluster_name or _other_cluster_name(reader) or "kubernetes", server=server,
        ca_pem=ca_pem, user_name=client_name, cert_pem=issuing.cert_to_pem(cert),
        key_pem=issuing.key_to_pem(key),
    )


# --------------------------------------------------------------------------------------
# CSR mode (external CAs)


def _expected(ctx: _PlanContext, entry: CatalogEntry) -> tuple[LeafTemplate | None, str | None,
                                                                  _Existing]:
    """The attributes an item must carry: the existing certificate's, else the catalog's."""
    existing = ctx.existing(entry)
    if existing.cert is not None:
        return LeafTemplate.from_certificate(existing.cert), None, existing
    template, notes = _rules_template(entry, ctx.profile, ctx.reader)
    return template, "; ".join(notes) or None, existing


def write_csrs(
    node: Node | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    names: Iterable[str] | str = ("all",),
    *,
    key_algorithm: str | None = None,
    workers: int | None = None,
) -> list[Path]:
    """Write ``<name>.key`` and ``<name>.csr`` (mode 0600) per item into ``out_dir``.

    Each CSR asks for the existing certificate's subject, SANs and usages (the
    catalog's rules when the item is missing), as ``kubeadm certs generate-csr``
    does plus the usages. Nothing on the node changes. Have the CAs sign them,
    put each ``<name>.crt`` beside its key and call :func:`install_signed`.
    Raises :class:`~kubepki.RenewalError` when a key file exists in ``out_dir``
    already (it may be out for signing) or an item's attributes are unknown.
    """
    n = Node.coerce(node)
    n.check_root()
    if key_algorithm is not None:
        issuing.check_key_algorithm(key_algorithm)
    reader = _Reader(n)
    # CSRs carry no times, so no clock is read: the context's time is never used here.
    ctx = _PlanContext(reader, _EPOCH, issuing.DEFAULT_VALIDITY, key_algorithm=key_algorithm)
    out = Path(out_dir)
    jobs: list[tuple[CatalogEntry, LeafTemplate, str]] = []
    for entry in _select(names, reader.profile):
        template, why, existing = _expected(ctx, entry)
        if template is None:
            raise RenewalError(f"cannot write a CSR for {entry.name}: {why}", name=entry.name)
        old = _algorithm_or_none(_public(existing.cert)) if existing.cert is not None else None
        algo, _ = ctx.algorithm_for(old, reader.signer(entry.signer or "ca"))
        if (out / f"{entry.name}.key").exists():
            raise RenewalError(f"{out / f'{entry.name}.key'} exists; it may be out for signing. "
                               "Use another directory or remove it", name=entry.name)
        jobs.append((entry, template, algo))
    try:
        # Through makedirs, each directory made gets its mode by chmod: Path.mkdir(parents=True)
        # gives the parents 0777 minus the umask (0777 under umask 000) and the keys go inside.
        makedirs(LocalFS("/"), PurePosixPath(out.absolute()), mode_for=lambda _d: 0o700)
    except NodeError as exc:
        raise NodeError(f"cannot create {out}: {exc.message}", path=str(out)) from None
    count = workers if workers is not None else (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(count, len(jobs) or 1))) as pool:
        keys = list(pool.map(lambda job: issuing.generate_key(job[2]), jobs))
    written: list[Path] = []
    for (entry, template, _algo), key in zip(jobs, keys, strict=True):
        csr = issuing.build_csr(template, key)
        for suffix, data in ((".key", issuing.key_to_pem(key)), (".csr", issuing.csr_to_pem(csr))):
            path = out / f"{entry.name}{suffix}"
            atomic_write(path, data, mode=0o600)
            written.append(path)
    return written


def install_signed(
    node: Node | str | os.PathLike[str],
    in_dir: str | os.PathLike[str],
    *,
    now: dt.datetime | None = None,
    take_backup: bool = True,
    backup_dir: str | os.PathLike[str] | None = None,
    wait: float = 0.0,
    force_invalid_times: bool = False,
) -> RenewalResult:
    """Install the ``<name>.crt`` + ``<name>.key`` pairs found in ``in_dir``.

    Each pair is checked before anything is written: the certificate matches the
    key, was issued by the CA the catalog names (as found on the node), carries
    the expected CN, O, SANs and usages (the existing certificate's, else the
    catalog's), and is valid at ``now`` and at the real time (unless
    ``force_invalid_times``). Only regular files are read. Pairs failing a check are refused
    (``check-failed`` in the result's ``skipped``); the others are written as
    :func:`apply_renewal` writes (backup first, lock, journal). Kubeconfigs get
    the pair embedded and the current ``ca.crt`` re-embedded.
    Raises :class:`~kubepki.RenewalError` when ``in_dir`` holds no ``.crt`` for a
    renewable item.
    """
    if take_backup and backup_dir is None:
        raise ConfigError("backup_dir is required (or pass take_backup=False)")
    n = Node.coerce(node)
    n.check_root()
    when = _utc(now)
    src = Path(in_dir)
    if not src.is_dir():
        raise ConfigError(f"{src} is not a directory", path=str(src))
    with node_lock(n, wait=wait):
        resumed = _roll_forward(n)
        reader = _Reader(n)
        profile = reader.profile
        ctx = _PlanContext(reader, when, issuing.DEFAULT_VALIDITY)
        entries = [e for e in _renewable(profile) if (src / f"{e.name}.crt").exists()]
        if not entries:
            raise RenewalError(f"no signed certificate (<name>.crt for a renewable item) in {src}")
        steps: list[PlanStep] = []
        materials: dict[str, _Material] = {}
        for entry in entries:
            step, material = _install_step(ctx, entry, src, force_invalid_times=force_invalid_times)
            steps.append(step)
            if material is not None:
                materials[entry.name] = material
        steps = list(_refuse_aliases(n, steps))
        plan = RenewalPlan(
            node=n, root=str(n.root), node_name=profile.name,
            kubernetes_version=str(profile.kubernetes_version), now=when,
        kubernetes_version_source=profile.version_source,
            not_before=ctx.not_before, not_after=ctx.not_after, validity=issuing.DEFAULT_VALIDITY,
            validity_source="signed elsewhere", key_algorithm=None, steps=tuple(steps),
            inputs=tuple(sorted(reader.inputs.items())),
        )
        result = _execute(plan, materials, backup_dir=backup_dir if take_backup else None,
                          workers=1, now=now, resumed=resumed)
    return attrs.evolve(result, not_before=None, not_after=None)


def _install_step(ctx: _PlanContext, entry: CatalogEntry,  # noqa: C901, PLR0912  -- one check per property of a handed-back certificate
                  src: Path, *, force_invalid_times: bool = False) -> tuple[PlanStep, _Material | None]:
    base = PlanStep(name=entry.name, kind=entry.kind, action=Action.SKIP,
                    long_name=entry.long_name, signer=entry.signer)

    def refuse(why: str) -> tuple[PlanStep, None]:
        return attrs.evolve(base, reason="check-failed", message=f"{entry.name}: {why}"), None

    crt_path, key_path = src / f"{entry.name}.crt", src / f"{entry.name}.key"
    cert_data, key_data = _read_local_file(crt_path), _read_local_file(key_path)
    if isinstance(cert_data, str):
        return refuse(cert_data)
    if isinstance(key_data, str):
        return refuse(key_data)
    try:
        certs = load_certificates(cert_data, path=str(crt_path))
        key = load_private_key(key_data, path=str(key_path))
    except ParseError as exc:
        return refuse(exc.message)
    cert = certs[0]
    if public_key_der(key) != public_key_der(_public(cert)):
        return refuse(f"{crt_path.name} does not match {key_path.name}")
    if not issuing.is_issuable(key):
        return refuse(f"{key_path.name} is {key_algorithm(key)}, which kubeadm cannot use")
    signer = ctx.reader.signer(_need(entry.signer, "the signer"))
    if signer.cert is None:
        return refuse(signer.problem[1] if signer.problem else f"the {entry.signer} CA is missing")
    if not signed_by(cert, signer.cert):
        return refuse(f"not issued by the {entry.signer} CA on this node "
                      f"(issuer {cert.issuer.rfc4514_string()})")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return refuse(f"{crt_path.name} is a CA certificate (CA:TRUE), not a leaf")
    except x509.ExtensionNotFound:
        pass
    expected, why, existing = _expected(ctx, entry)
    if existing.unresolvable:
        return refuse(f"{existing.problem}; fix the path by hand")
    if expected is None:
        return refuse(f"the expected attributes are unknown: {why}")
    got = LeafTemplate.from_certificate(cert)
    differences = expected.differences(got)
    if differences:
        return refuse("; ".join(differences))
    if cert.not_valid_after_utc <= ctx.now:
        return refuse(f"expired on {iso(cert.not_valid_after_utc)}")
    if cert.not_valid_before_utc > ctx.now + issuing.BACKDATE:
        return refuse(f"valid only from {iso(cert.not_valid_before_utc)}")
    real = _utc(None)
    why = _invalid_at(cert.not_valid_before_utc, cert.not_valid_after_utc, real)
    if why and not force_invalid_times:
        return refuse(f"not valid at the real time {iso(real)}: {why} (--force-invalid-times installs it anyway)")
    files = list(existing.files)
    kubeconfig = existing.kubeconfig
    if entry.kind is Kind.KUBECONFIG and (kubeconfig is None or existing.problem is not None):
        server, cluster_name, note = _kubeconfig_target(entry, ctx.profile, ctx.reader)
        if server is None:
            return refuse(note or "the API server address is unknown")
        path = ctx.node.path_of(entry)
        kubeconfig = KubeconfigSpec(path=str(path), credentials="new", server=server,
                                    cluster_name=cluster_name, user_name=got.common_name)
        files = [ctx.reader.planned_file(path, PlannedFileRole.KUBECONFIG, 0o600)]
    cert_pem = b"".join(issuing.cert_to_pem(c) for c in certs)
    if b"-----BEGIN " in cert_data and cert_data.lstrip().startswith(b"-----BEGIN CERTIFICATE"):
        cert_pem = cert_data  # keep a chain (and its layout) as handed back
    key_pem = key_data if b"-----BEGIN " in key_data else issuing.key_to_pem(key)  # type: ignore[arg-type]
    step = attrs.evolve(
        base, action=Action.INSTALL, message=f"{entry.long_name} installed",
        old_not_after=existing.cert.not_valid_after_utc if existing.cert else None,
        new_not_before=cert.not_valid_before_utc, new_not_after=cert.not_valid_after_utc,
        old_key_algorithm=_algorithm_or_none(_public(existing.cert)) if existing.cert else None,
        new_key_algorithm=key_algorithm(key), attributes=got, files=tuple(files),
        kubeconfig=kubeconfig,
    )
    return step, _Material(cert_pem=cert_pem, key_pem=key_pem)


def _read_local_file(path: Path) -> bytes | str:
    """The bytes of the regular file ``path`` of this machine, or why it cannot be used.

    A FIFO handed back in place of a certificate is refused, never read (node.read_regular).
    """
    try:
        return read_regular(path, limit=_MAX_FILE)
    except NotRegularFile as exc:
        return f"{path} is {exc.strerror}"
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            return f"{path} is larger than {_MAX_FILE} bytes"
        return f"cannot read {path}: {os_reason(exc)}"
