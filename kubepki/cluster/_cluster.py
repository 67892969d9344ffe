"""Whole clusters: every control-plane node at once, local or over SSH.

Real clusters have three or five control-plane nodes. The shared material (the
three CAs and the ``sa`` key pair, kubeadm's ``copycerts`` set) must be the same
on all of them; every other certificate and kubeconfig is issued per node and
must be renewed on each; restarts must roll one node at a time so that etcd
keeps quorum and the API stays up.

>>> import datetime as dt, tempfile, kubepki
>>> from kubepki import testing
>>> from kubepki.cluster._cluster import Cluster, inspect_cluster
>>> when = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
>>> demo = testing.build_cluster(tempfile.mkdtemp(), nodes=3, issued_at=when, defects=[
...     testing.Defect(testing.DefectKind.MISMATCHED_SHARED_CA, "ca", node="cp2")])
>>> cluster = Cluster([n.as_node() for n in demo.nodes])
>>> inv = inspect_cluster(cluster, now=when)
>>> [(f.code, f.item, f.nodes) for f in inv.findings if f.code == "shared-mismatch"]
[('shared-mismatch', 'ca', ('cp2',))]

The steps, each plan-first like the single-node API:

- :func:`inspect_cluster` inspects every node concurrently and compares them:
  ``shared-mismatch`` (critical) when a CA or the ``sa`` key differs between
  nodes, ``node-missing-shared`` when a node lacks shared material the others
  have, ``duplicated-node-certificate`` when a node-specific certificate has the
  same serial on two nodes (copied instead of issued per node), and
  ``node-unreachable`` when a node could not be inspected at all.
- :func:`plan_cluster_renewal` plans each node's renewal (an immutable
  :class:`ClusterRenewalPlan` of per-node :class:`~kubepki.RenewalPlan`\\ s);
  :func:`apply_cluster_renewal` backs up every node first, then renews node by
  node and stops at the first failure.
- :func:`plan_cluster_restarts` orders the nodes strictly one at a time;
  :func:`apply_cluster_restarts` restarts one node's components, waits until
  they are healthy and serve the new certificates, and only then goes on.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs

from kubepki import catalog as _catalog
from kubepki._clock import utc as _utc
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki.catalog import FileRole, Scope
from kubepki.cluster._remote import RemoteRestartReport, ssh_restart
from kubepki.errors import ConfigError, KubepkiError, RenewalError
from kubepki.inspection import (
    DEFAULT_WARN_WITHIN,
    Inventory,
    InventoryItem,
    ItemFileRole,
    Severity,
    Status,
    inspect,
)
from kubepki.node import Connection, LocalPaths, Node, NodeProfile
from kubepki.pki import iso

if TYPE_CHECKING:
    from kubepki.backups import BackupInfo
    from kubepki.renewal import RenewalPlan, RenewalResult
    from kubepki.restarts import RestartPlan, RestartReport

__all__ = [
    "CLUSTER_CODES",
    "Cluster",
    "ClusterFinding",
    "ClusterInventory",
    "ClusterRenewalPlan",
    "ClusterRenewalResult",
    "ClusterRestartPlan",
    "ClusterRestartReport",
    "NodeRestart",
    "apply_cluster_renewal",
    "apply_cluster_restarts",
    "inspect_cluster",
    "plan_cluster_renewal",
    "plan_cluster_restarts",
]

#: The findings that compare nodes: code -> (severity, meaning). Stable like
#: :data:`kubepki.inspection._findings.CODES`.
CLUSTER_CODES: Mapping[str, tuple[Severity, str]] = {
    "shared-mismatch": (
        Severity.CRITICAL,
        "A CA or the sa key pair differs between nodes: certificates one node issues or trusts "
        "are not trusted by the others (kubeadm copies these with copycerts).",
    ),
    "node-missing-shared": (
        Severity.ERROR, "A node lacks a CA or sa file that other nodes have.",
    ),
    "duplicated-node-certificate": (
        Severity.ERROR,
        "A node-specific certificate has the same serial on two nodes: it was copied between "
        "nodes instead of being issued on each (its SANs and CN name one node only).",
    ),
    "node-unreachable": (
        Severity.ERROR, "A node could not be inspected (connection, login, host key or root).",
    ),
    "shared-key-off-control-plane": (
        Severity.WARNING,
        "A worker or etcd node holds a CA key its role does not need (ca.key on a worker): whoever gets "
        "that node can sign certificates the whole cluster trusts.",
    ),
}

_DEFAULT_WORKERS = 16


# --------------------------------------------------------------------------------------
# The cluster


class Cluster:
    """The nodes of one cluster (control planes, workers, etcd nodes), each reached its own way.

    ``nodes`` are :class:`~kubepki.Node` objects (local roots or
    :func:`kubepki.node._ssh.ssh_node`) or local root paths. ``labels`` name them in
    tables and results (default: the node's given name, else ``node1``,
    ``node2``... until discovery names them; see :meth:`label`). Order matters:
    it is the order restarts roll in.
    """

    def __init__(self, nodes: Sequence[Node | str | os.PathLike[str]], *,
                 labels: Sequence[str] | None = None) -> None:
        if isinstance(nodes, str | os.PathLike | Node) or not isinstance(nodes, Iterable):
            raise ConfigError(f"nodes must be a sequence of nodes or root paths, not {type(nodes).__name__}")
        nodes = list(nodes)
        if not nodes:
            raise ConfigError("a cluster needs at least one node")
        self.nodes: tuple[Node, ...] = tuple(Node.coerce(n) for n in nodes)
        if labels is not None:
            if len(labels) != len(self.nodes):
                raise ConfigError(f"{len(labels)} labels for {len(self.nodes)} nodes")
            if len(set(labels)) != len(labels):
                raise ConfigError(f"node labels must be unique: {list(labels)}")
            if not all(labels):
                raise ConfigError("node labels must not be empty")
        self._labels: list[str] | None = list(labels) if labels is not None else None

    @classmethod
    def from_targets(
        cls,
        targets: Mapping[str, str] | Sequence[str],
        *,
        key: str | os.PathLike[str] | None = None,
        known_hosts: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        roles: Mapping[str, str] | Sequence[str | None] | None = None,
    ) -> Cluster:
        """A cluster from ``{label: target}`` (or targets alone), as the CLI's ``--node``.

        A target is ``ssh://user@host:port/root/path`` (see :func:`kubepki.node._ssh.ssh_node`)
        or a local root directory. ``key`` and ``known_hosts`` apply to every SSH node.
        ``roles`` gives nodes their role (``{label: role}``, or one per target; None:
        discovered), as ``--worker`` and ``--etcd`` do.
        """
        from kubepki.node import ssh_node

        items = list(targets.items()) if isinstance(targets, Mapping) else [("", t) for t in targets]
        if roles is not None and not isinstance(roles, Mapping) and len(roles) != len(items):
            raise ConfigError(f"{len(roles)} roles for {len(items)} targets")
        nodes: list[Node] = []
        for i, (label, target) in enumerate(items):
            role = (roles.get(label) if isinstance(roles, Mapping) else roles[i]) if roles is not None else None
            if target.startswith("ssh://"):
                nodes.append(ssh_node(target, key=key, known_hosts=known_hosts, timeout=timeout,
                                      name=label or None, role=role))
            else:
                nodes.append(Node(target, name=label or None, role=role))
        labels = [label for label, _ in items] if all(label for label, _ in items) else None
        return cls(nodes, labels=labels)

    def __repr__(self) -> str:
        return f"<Cluster {', '.join(self.labels)}>"

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __getitem__(self, key: int | str) -> Node:
        if isinstance(key, int):
            return self.nodes[key]
        return self.nodes[self.index(key)]

    def index(self, label: str) -> int:
        """The position of the node labelled ``label``; :class:`~kubepki.ConfigError` when none is."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ConfigError(f"no node {label!r} in this cluster (nodes: {', '.join(self.labels)})",
                              node=label) from None

    @property
    def labels(self) -> tuple[str, ...]:
        """Each node's label, in order (unique)."""
        if self._labels is not None:
            return tuple(self._labels)
        out: list[str] = []
        for i, node in enumerate(self.nodes, 1):
            label = node.name or _discovered_name(node) or f"node{i}"
            while label in out:
                label = f"{label}-{i}"
            out.append(label)
        return tuple(out)

    def label(self, node: Node) -> str:
        """The label of ``node`` (one of this cluster's nodes)."""
        for label, n in zip(self.labels, self.nodes, strict=True):
            if n is node:
                return label
        raise ConfigError("not a node of this cluster")

    def close(self) -> None:
        """Close every node's connection (SSH); local nodes have none."""
        for node in self.nodes:
            if isinstance(node.fs, Connection):
                node.fs.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _discovered_name(node: Node) -> str | None:
    """The node's discovered name: read now for a local node (cheap, and the same answer before
    and after any other call), the cached value only for a remote one (a label never connects)."""
    try:
        profile = object.__getattribute__(node, "profile")  # the cached value only
    except AttributeError:
        if not isinstance(node.fs, LocalPaths):
            return None
        try:
            profile = node.profile
        except KubepkiError:
            return None
    return profile.name if isinstance(profile, NodeProfile) else None


def _reach(node: Node) -> None:
    """Connect a remote node now, so that an unreachable node (host key, login, root) is an
    error of its own rather than every file reading as unreadable."""
    node.check_root()
    if isinstance(node.fs, Connection):
        node.fs.connect()


def _workers(workers: int | None, count: int) -> int:
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}")
    return max(1, min(workers or _DEFAULT_WORKERS, count))


# --------------------------------------------------------------------------------------
# Inspection


@attrs.frozen(kw_only=True)
class ClusterFinding:
    """Something found by comparing nodes (see :data:`CLUSTER_CODES`)."""

    code: str
    severity: Severity
    message: str
    #: The catalog name concerned, None for a node as a whole.
    item: str | None
    #: The nodes at fault (for a mismatch: those that differ from the majority).
    nodes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"code": self.code, "severity": self.severity.value, "message": self.message,
                "item": self.item, "nodes": list(self.nodes)}


def _finding(code: str, message: str, *, item: str | None, nodes: Iterable[str]) -> ClusterFinding:
    return ClusterFinding(code=code, severity=CLUSTER_CODES[code][0], message=message, item=item,
                          nodes=tuple(nodes))


@attrs.frozen(kw_only=True)
class ClusterInventory(Report):
    """Every node's inventory at one moment, and what comparing them found."""

    now: dt.datetime
    #: Node labels, in the cluster's order.
    nodes: tuple[str, ...]
    #: Where each node was reached (``/srv/nodes/cp1``, ``ssh://root@10.0.0.11:22/``).
    targets: Mapping[str, str] = attrs.field(repr=False)
    #: The inventories of the nodes that could be inspected, by label.
    inventories: Mapping[str, Inventory] = attrs.field(repr=False)
    #: Why each other node could not be inspected, by label.
    errors: Mapping[str, str] = attrs.field(factory=dict)
    findings: tuple[ClusterFinding, ...] = ()
    #: Seconds the inspection took (all nodes, concurrently).
    elapsed: float = attrs.field(default=0.0, eq=False)

    def __getitem__(self, label: str) -> Inventory:
        try:
            return self.inventories[label]
        except KeyError:
            if label in self.errors:
                raise KeyError(f"{label} could not be inspected: {self.errors[label]}") from None
            raise KeyError(f"no node {label!r} (nodes: {', '.join(self.nodes)})") from None

    def __iter__(self) -> Iterator[tuple[str, Inventory]]:
        return iter((label, self.inventories[label]) for label in self.nodes if label in self.inventories)

    def __repr__(self) -> str:
        worst = collections.Counter(f.code for f in self.findings)
        extra = "".join(f" {code}={n}" for code, n in sorted(worst.items()))
        return f"<ClusterInventory nodes={list(self.nodes)} outcome={self.outcome.value}{extra}>"

    def item(self, label: str, name: str) -> InventoryItem | None:
        """Node ``label``'s item ``name``, None when it does not apply or the node was not reached."""
        inv = self.inventories.get(label)
        if inv is None or name not in inv:
            return None
        return inv[name]

    def findings_for(self, code: str) -> tuple[ClusterFinding, ...]:
        """The cluster findings with ``code``."""
        return tuple(f for f in self.findings if f.code == code)

    @property
    def outcome(self) -> Outcome:
        """The worst of the nodes' outcomes and the cluster findings; failed when a node was not reached."""
        if self.errors or any(f.severity.rank >= Severity.ERROR.rank for f in self.findings):
            return Outcome.FAILED
        worst = max((inv.outcome for inv in self.inventories.values()), key=lambda o: o.rank, default=Outcome.OK)
        if worst is Outcome.OK and any(f.severity is Severity.WARNING for f in self.findings):
            return Outcome.WARNING
        return worst

    def to_dict(self) -> dict[str, Any]:
        """The cluster as ``kubepki cluster check -o json`` prints it."""
        nodes = []
        for label in self.nodes:
            inv = self.inventories.get(label)
            nodes.append({
                "label": label,
                "target": self.targets.get(label),
                "node": inv.node if inv is not None else None,
                "role": inv.profile.role.value if inv is not None else None,
                "reachable": inv is not None,
                "error": self.errors.get(label),
                "summary": inv.counts() if inv is not None else None,
            })
        return {
            "kind": "ClusterInventory",
            "now": iso(self.now),
            "nodes": nodes,
            "findings": [f.to_dict() for f in self.findings],
            "inventories": {label: inv.to_dict() for label, inv in self},
        }

    def _rows(self) -> list[tuple[str, str, list[Cell]]]:
        """(item, scope, cell per node) in catalog order."""
        from kubepki.inspection import short_human_duration

        flagged = {(f.item, n) for f in self.findings for n in f.nodes if f.item is not None}
        rows = []
        for entry in _catalog.CATALOG:
            cells = []
            seen = False
            for label in self.nodes:
                inv = self.inventories.get(label)
                if inv is None:
                    cells.append(Cell("?", "error"))
                    continue
                if entry.name not in inv:
                    cells.append(Cell("-", "dim"))
                    continue
                item = inv[entry.name]
                if item.status is Status.MISSING and not entry.required:
                    cells.append(Cell("-", "dim"))
                    continue
                seen = True
                cell = item.status.value
                if item.not_after is not None and item.status is not Status.MISSING:
                    cell += " " + short_human_duration((item.not_after - inv.now).total_seconds())
                if (entry.name, label) in flagged:
                    cells.append(Cell(cell + " *", "error"))
                else:
                    cells.append(Cell(cell, item.status.tone))
            if seen:
                rows.append((entry.name, entry.scope.value, cells))
        return rows

    def _roles(self) -> list[Cell]:
        return [Cell(inv.profile.role.value, "dim") if (inv := self.inventories.get(label)) is not None
                else Cell("?", "error") for label in self.nodes]

    def rows(self) -> Table:
        """One row per catalog item, one column per node; then the cluster's findings and unreachable nodes."""
        rows: list[list[Cell | str]] = [[Cell("(role)"), "", *self._roles()]]
        rows += [[Cell(name, strong=True), scope, *cells] for name, scope, cells in self._rows()]
        rows += [[Cell(f.code, f.severity.tone), f.severity.value, f.message] for f in self.findings]
        rows += [[Cell(label, "error"), "unreachable", why] for label, why in self.errors.items()]
        return Table(f"kubepki cluster of {len(self.nodes)} nodes at {iso(self.now)}: {self.outcome.value}",
                     ("item", "scope", *self.nodes), rows)

    def blocks(self) -> list[Block]:
        """The item-by-node table, then unreachable nodes, the cluster's findings and the nodes' findings."""
        table: list[list[Cell | str]] = [["(role)", "", *self._roles(), ""]]
        table += [[name, scope, *cells, ""] for name, scope, cells in self._rows()]
        out: list[Block] = [Table("", ("ITEM", "SCOPE", *self.nodes, ""), table)]
        if any(f.item is not None for f in self.findings):
            out.append(Line(["(* the node differs from the others or repeats another node's certificate)"]))
        if self.errors:
            out += [Line([]), Line([Cell("UNREACHABLE", "strong")])]
            out += [Line([Cell(f"{label:<10}", "error"), f" {why}"]) for label, why in self.errors.items()]
        if self.findings:
            out += [Line([]), Line([Cell("CLUSTER FINDINGS", "strong")])]
            out += [Line([Cell(f"{cf.severity.value.upper():<8}", cf.severity.tone), f" {cf.code:<28} {cf.message}"])
                    for cf in sorted(self.findings, key=lambda f: -f.severity.rank)]
        node_lines: list[Block] = [
            Line([f"{label:<10} ", Cell(f"{f.severity.value.upper():<8}", f.severity.tone),
                  f" {item.name:<26} {f.code:<24} {f.message}"])
            for label, inv in self for item, f in inv.findings if f.severity.rank >= Severity.WARNING.rank]
        if node_lines:
            out += [Line([]), Line([Cell("NODE FINDINGS", "strong")]), *node_lines]
        return out

    def table(self) -> str:
        """One row per catalog item, one column per node; then the cluster's and the nodes' findings."""
        return self.text()


def _short(digest: str) -> str:
    return digest.replace(":", "")[:16]


def _shared_value(item: InventoryItem, role: FileRole) -> str | None:
    """What must be identical on every node: the certificate's fingerprint, a key file's digest."""
    wanted = ItemFileRole.of(role)
    for f in item.files:
        if f.role is not wanted:
            continue
        if not f.exists:
            return None
        if role is FileRole.CERT and item.facts is not None:
            return item.facts.fingerprint_sha256
        return f.sha256 or f"unreadable:{f.path}"
    return None


def _compare_shared(inventories: Mapping[str, Inventory], order: Sequence[str]) -> list[ClusterFinding]:
    out: list[ClusterFinding] = []
    for entry in _catalog.CATALOG:
        if entry.scope is not Scope.SHARED:
            continue
        all_holders = [label for label in order if label in inventories and entry.name in inventories[label]]
        differ: list[str] = []
        odd: set[str] = set()
        for f in entry.files:
            holders = all_holders
            if f.role is FileRole.KEY:
                # A worker holds ca.crt alone, an etcd node after the first etcd/ca.crt alone: their keys are
                # not compared; a key such a node does hold anyway is a finding of its own.
                holders = [label for label in all_holders
                           if entry.key_expected(inventories[label].profile.role)]
                extra = [label for label in all_holders if label not in holders
                         and _shared_value(inventories[label][entry.name], f.role) is not None
                         and inventories[label].profile.role is _catalog.NodeRole.WORKER]
                if extra:
                    out.append(_finding(
                        "shared-key-off-control-plane",
                        f"{f.path} is on {', '.join(extra)}, a worker: kubeadm join never puts it there and "
                        "the node does not need it; remove it (whoever has it signs for the whole cluster)",
                        item=entry.name, nodes=extra))
            if len(holders) < 2:
                continue
            values = {label: _shared_value(inventories[label][entry.name], f.role) for label in holders}
            present = {label: v for label, v in values.items() if v is not None}
            if not present:
                continue  # absent everywhere (an external CA's key): consistent
            lacking = [label for label in holders if values[label] is None]
            if lacking:
                out.append(_finding(
                    "node-missing-shared",
                    f"{f.path} of {entry.name} is absent on {', '.join(lacking)} but present on "
                    f"{', '.join(present)}; copy it from another node (kubeadm's copycerts)",
                    item=entry.name, nodes=lacking))
            groups: dict[str, list[str]] = collections.defaultdict(list)
            for label, value in present.items():
                groups[value].append(label)
            if len(groups) < 2:
                continue
            ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), order.index(kv[1][0])))
            # The largest group is taken as the cluster's; on a tie every node is at fault.
            majority = ranked[0][1] if len(ranked[0][1]) > len(ranked[1][1]) else []
            odd.update(label for label in present if label not in majority)
            what = "fingerprint" if f.role is FileRole.CERT else "SHA-256"
            variants = "; ".join(f"{what} {_short(value)} on {', '.join(nodes)}" for value, nodes in ranked)
            differ.append(f"{f.path} ({variants})")
        if differ:
            nodes = [label for label in order if label in odd]
            out.append(_finding(
                "shared-mismatch",
                f"{entry.name} differs between nodes: {', '.join(differ)}; every node that holds it "
                f"must hold the same {entry.name} (the odd one out: {', '.join(nodes)})",
                item=entry.name, nodes=nodes))
    return out


def _compare_node_items(inventories: Mapping[str, Inventory], order: Sequence[str]) -> list[ClusterFinding]:
    out: list[ClusterFinding] = []
    for entry in _catalog.CATALOG:
        if entry.scope is not Scope.NODE:
            continue
        seen: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        for label in order:
            inv = inventories.get(label)
            if inv is None or entry.name not in inv:
                continue
            facts = inv[entry.name].facts
            if facts is not None:
                seen[(facts.issuer, facts.serial)].append(label)
        for (_issuer, serial), labels in seen.items():
            if len(labels) > 1:
                out.append(_finding(
                    "duplicated-node-certificate",
                    f"{entry.name} has the same certificate (serial {serial}) on {', '.join(labels)}: "
                    "it was copied between nodes; issue it on each node from its own rules: "
                    f"`kubepki renew {entry.name} --reissue --apply` on each of them "
                    f"(or `kubepki cluster renew {entry.name} --reissue --apply` with these nodes)",
                    item=entry.name, nodes=labels))
    return out


def inspect_cluster(
    cluster: Cluster | Sequence[Node | str | os.PathLike[str]],
    *,
    now: dt.datetime | None = None,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
    names: Iterable[str] | None = None,
    workers: int | None = None,
) -> ClusterInventory:
    """Inspect every node of ``cluster`` concurrently and compare them.

    Every node is inspected as of the same ``now``. ``workers`` bounds how many
    nodes are inspected at once (default: all, up to 16); over SSH the time is
    mostly waiting on the network, so it overlaps well. A node that cannot be
    reached (connection refused, login refused, unknown host key, no such root)
    does not stop the others: it is listed in ``errors`` with a
    ``node-unreachable`` finding. ``names`` limits the items inspected.
    """
    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    when = _utc(now)
    wanted = list(names) if names is not None else None
    start = time.perf_counter()

    def one(node: Node) -> Inventory | KubepkiError:
        try:
            _reach(node)
            return inspect(node, now=when, warn_within=warn_within, names=wanted)
        except KubepkiError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=_workers(workers, len(c)), thread_name_prefix="kubepki-inspect") as pool:
        outcomes = list(pool.map(one, c.nodes))
    labels = c.labels
    inventories: dict[str, Inventory] = {}
    errors: dict[str, str] = {}
    for label, outcome in zip(labels, outcomes, strict=True):
        if isinstance(outcome, Inventory):
            inventories[label] = outcome
        else:
            errors[label] = str(outcome)
    findings = [_finding("node-unreachable", f"{label}: {why}", item=None, nodes=(label,))
                for label, why in errors.items()]
    findings += _compare_shared(inventories, labels)
    findings += _compare_node_items(inventories, labels)
    return ClusterInventory(
        now=when, nodes=labels, targets={label: n.fs.describe() for label, n in zip(labels, c.nodes, strict=True)},
        inventories=inventories, errors=errors, findings=tuple(findings),
        elapsed=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------
# Renewal


@attrs.frozen(kw_only=True)
class ClusterRenewalPlan(Report):
    """Each node's :class:`~kubepki.RenewalPlan`, reviewed together; nothing is written.

    ``blockers`` are the shared-material findings found while planning: renewing
    on nodes whose CAs differ would issue certificates the other nodes reject,
    so :func:`apply_cluster_renewal` refuses them unless told otherwise.
    """

    cluster: Cluster = attrs.field(eq=False, repr=False)
    now: dt.datetime
    nodes: tuple[str, ...]
    plans: tuple[RenewalPlan, ...] = attrs.field(repr=False)
    blockers: tuple[ClusterFinding, ...] = ()

    def __iter__(self) -> Iterator[tuple[str, RenewalPlan]]:
        return iter(zip(self.nodes, self.plans, strict=True))

    def __getitem__(self, label: str) -> RenewalPlan:
        for name, plan in self:
            if name == label:
                return plan
        raise KeyError(label)

    def __repr__(self) -> str:
        work = {label: len(plan.work) for label, plan in self}
        return f"<ClusterRenewalPlan nodes={list(self.nodes)} work={work} blockers={len(self.blockers)}>"

    @property
    def changes_anything(self) -> bool:
        """True when applying would write on at least one node (Ansible's ``changed``)."""
        return any(plan.work for plan in self.plans)

    @property
    def refused(self) -> tuple[tuple[str, str], ...]:
        """(node, item) of every refused step."""
        return tuple((label, s.name) for label, plan in self for s in plan.refused)

    @property
    def outcome(self) -> Outcome:
        """Failed when a step is refused or shared material blocks the renewal."""
        return Outcome.FAILED if self.refused or self.blockers else Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the cluster's verdicts and each node's plan."""
        return {
            "kind": "ClusterRenewalPlan",
            "now": iso(self.now),
            "nodes": list(self.nodes),
            "changes_anything": self.changes_anything,
            "blockers": [f.to_dict() for f in self.blockers],
            "plans": {label: plan.to_dict() for label, plan in self},
        }

    def rows(self) -> Table:
        """One row per item, one column per node: the action there."""
        names = sorted({s.name for plan in self.plans for s in plan.steps})
        rows: list[list[Cell | str]] = []
        for name in names:
            cells: list[Cell | str] = [name]
            for plan in self.plans:
                step = next((s for s in plan.steps if s.name == name), None)
                cells.append(Cell("-", "dim") if step is None else Cell("REFUSED", "error") if step.refused
                             else Cell(step.action.value, "ok") if step.writes
                             else Cell(f"skip ({step.reason})", "dim"))
            rows.append(cells)
        return Table(f"Cluster renewal plan as of {iso(self.now)}", ("ITEM", *self.nodes), rows)

    def blocks(self) -> list[Block]:
        """The title, the table, then blockers, notes and what applying does."""
        table = self.rows()
        out: list[Block] = [Line([table.title]), Line([]),
                            attrs.evolve(table, title="", columns=(*table.columns, ""),
                                         rows=[(*r, Cell("")) for r in table.rows])]
        gap = [Line([]), Line([])]  # the table ends its last line; the next paragraph starts after two
        if self.blockers:
            out += [Line([]), *(Line([Cell("BLOCKED", "error"), f"  {f.code}: {f.message}"]) for f in self.blockers)]
            gap = [Line([])]
        notes = [f"{label}: {n}" for label, plan in self for n in plan.notes]
        if notes:
            out += [*gap, Line(["Notes:"]), *(Line([f"  {n}"]) for n in notes)]
            gap = [Line([])]
        if self.changes_anything:
            out += [*gap, Line(["Applying backs up every node, then renews node by node "
                                f"({', '.join(self.nodes)}) and stops at the first failure."])]
        else:
            out += [*gap, Line(["Nothing to renew on any node."])]
        return out

    def table(self) -> str:
        """One row per item, one column per node (the action), then blockers and notes."""
        return self.text()


def plan_cluster_renewal(
    cluster: Cluster | Sequence[Node | str | os.PathLike[str]],
    names: Iterable[str] | str = ("all",),
    *,
    expiring_within: dt.timedelta | None = None,
    validity: dt.timedelta | None = None,
    key_algorithm: str | None = None,
    now: dt.datetime | None = None,
    recreate_missing: bool = False,
    reissue: bool = False,
    keep_attributes: bool = False,
    workers: int | None = None,
) -> ClusterRenewalPlan:
    """Plan the renewal of ``names`` on every node of ``cluster``; writes nothing.

    The options are :func:`kubepki.plan_renewal`'s and apply to every node; all
    nodes are planned as of the same ``now``, concurrently. The shared material
    (CAs, ``sa``) is compared first, and differences become the plan's
    ``blockers``. CAs are never renewed (as kubeadm), so shared material stays
    identical. Raises the first node's error when a node cannot be planned.
    """
    from kubepki.renewal import plan_renewal

    c = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    when = _utc(now)
    wanted: Iterable[str] | str = names if isinstance(names, str) else tuple(names)
    shared = [e.name for e in _catalog.CATALOG if e.scope is Scope.SHARED]
    check = inspect_cluster(c, now=when, names=shared, workers=workers)
    if check.errors:
        label, why = next(iter(check.errors.items()))
        raise RenewalError(f"cannot plan the cluster's renewal: {label}: {why}", node=label)

    def one(node: Node) -> RenewalPlan:
        return plan_renewal(node, wanted, expiring_within=expiring_within, validity=validity,
                            key_algorithm=key_algorithm, now=when, recreate_missing=recreate_missing,
                            reissue=reissue, keep_attributes=keep_attributes)

    with ThreadPoolExecutor(max_workers=_workers(workers, len(c)), thread_name_prefix="kubepki-plan") as pool:
        plans = tuple(pool.map(one, c.nodes))
    blockers = tuple(f for f in check.findings if f.code in ("shared-mismatch", "node-missing-shared"))
    return ClusterRenewalPlan(cluster=c, now=when, nodes=c.labels, plans=plans, blockers=blockers)


@attrs.frozen(kw_only=True)
class ClusterRenewalResult(Report):
    """What :func:`apply_cluster_renewal` did, node by node, and where it stopped."""

    nodes: tuple[str, ...]
    #: The backup taken of each node before any node was renewed.
    backups: Mapping[str, BackupInfo] = attrs.field(factory=dict)
    #: Each renewed node's result, in the order renewed.
    results: Mapping[str, RenewalResult] = attrs.field(factory=dict)
    #: The node where it stopped, None when every node was done.
    failed: str | None = None
    #: Why it stopped.
    error: str | None = None
    #: ``backup`` or ``renewal``: the phase that failed.
    phase: str | None = None

    @property
    def ok(self) -> bool:
        """True when every node was backed up and renewed, nothing refused."""
        return self.failed is None and all(r.ok for r in self.results.values())

    @property
    def not_attempted(self) -> tuple[str, ...]:
        """Nodes left untouched because of an earlier failure."""
        return tuple(n for n in self.nodes if n not in self.results and n != self.failed)

    @property
    def changed(self) -> Mapping[str, tuple[str, ...]]:
        """The catalog names written, by node (only nodes where something was)."""
        return {label: r.changed for label, r in self.results.items() if r.changed}

    @property
    def outcome(self) -> Outcome:
        """Failed unless :attr:`ok`."""
        return Outcome.OK if self.ok else Outcome.FAILED

    def raise_for_failure(self) -> None:
        """Raise :class:`~kubepki.RenewalError` when a node failed."""
        if self.failed is not None:
            raise RenewalError(f"cluster renewal stopped at {self.failed} ({self.phase}): {self.error}",
                               node=self.failed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": "ClusterRenewalResult",
            "ok": self.ok,
            "nodes": list(self.nodes),
            "failed": self.failed,
            "phase": self.phase,
            "error": self.error,
            "not_attempted": list(self.not_attempted),
            "backups": {k: v.to_dict() for k, v in self.backups.items()},
            "results": {k: v.to_dict() for k, v in self.results.items()},
        }

    def rows(self) -> Table:
        """One row per node: backed up where, renewed what, or why it stopped."""
        rows: list[list[Cell | str]] = []
        for label in self.nodes:
            b = self.backups.get(label)
            r = self.results.get(label)
            where = f"backup {b.path}{' (on the node)' if b.on_node else ''}" if b else "no backup"
            if r is not None:
                did = Cell(f"renewed {', '.join(r.changed)}", "ok") if r.changed else Cell("nothing to renew", "dim")
            elif label == self.failed:
                did = Cell(f"FAILED ({self.phase}): {self.error}", "error")
            else:
                did = Cell("not attempted", "dim")
            rows.append([label, where, did])
        return Table(f"kubepki cluster renewal: {self.outcome.value}", ("node", "backup", "renewal"), rows)

    def blocks(self) -> list[Block]:
        """One line per node: backed up where, renewed what; then the failure."""
        return [Line([f"{label.text}: ", f"{where.text}; ", did]) for label, where, did in self.rows().rows]

    def table(self) -> str:
        """One line per node: backed up where, renewed what; then the failure."""
        return self.text()


def apply_cluster_renewal(
    plan: ClusterRenewalPlan,
    *,
    backup_dir: str | os.PathLike[str] | None = None,
    take_backup: bool = True,
    backup_on_node: bool | None = None,
    allow_shared_mismatch: bool = False,
    wait: float = 0.0,
    workers: int | None = None,
    now: dt.datetime | None = None,
    force_invalid_times: bool = False,
) -> ClusterRenewalResult:
    """Back up every node, then renew node by node; stop at the first failure.

    First every node is backed up into ``backup_dir`` (concurrently; with
    ``backup_on_node``, or by default for SSH nodes, ``backup_dir`` is a path on
    each node, so private keys never leave the nodes). Without ``backup_dir``
    each node is backed up on itself into
    :data:`~kubepki.backups.DEFAULT_BACKUP_DIR`, as :func:`kubepki.apply_renewal`
    does for one node. If any backup fails,
    nothing is renewed. Then each node's plan is applied in the cluster's order
    with :func:`kubepki.apply_renewal` (which checks that the node did not change
    since planning and holds the node's lock); the first node that fails stops
    the run, and the result says where and why. Raises
    :class:`~kubepki.RenewalError` before doing anything when the plan has
    blockers (differing shared material) and ``allow_shared_mismatch`` is False.
    ``force_invalid_times`` is :func:`kubepki.apply_renewal`'s (certificates not valid
    at the real clock, a plan older than its maximum age).
    """
    from kubepki.backups import backup
    from kubepki.renewal import apply_renewal

    if take_backup and backup_dir is None:
        from kubepki.backups import DEFAULT_BACKUP_DIR

        backup_dir, backup_on_node = DEFAULT_BACKUP_DIR, True
    if plan.blockers and not allow_shared_mismatch:
        first = plan.blockers[0]
        raise RenewalError(f"refusing to renew: {first.message} (pass allow_shared_mismatch=True to "
                           "renew anyway)", name=first.item, node=first.nodes[0] if first.nodes else None)
    pairs = list(plan)
    backups: dict[str, BackupInfo] = {}
    if take_backup and plan.changes_anything:
        assert backup_dir is not None  # noqa: S101 - checked above

        def one(pair: tuple[str, RenewalPlan]) -> BackupInfo | KubepkiError:
            _label, node_plan = pair
            node = node_plan.node
            on_node = backup_on_node if backup_on_node is not None else not isinstance(node.fs, LocalPaths)
            try:
                return backup(node, backup_dir, now=now, on_node=on_node)
            except KubepkiError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=_workers(workers, len(pairs)),
                                thread_name_prefix="kubepki-backup") as pool:
            outcomes = list(pool.map(one, pairs))
        for (label, _), outcome in zip(pairs, outcomes, strict=True):
            if isinstance(outcome, KubepkiError):
                return ClusterRenewalResult(nodes=plan.nodes, backups=backups, failed=label,
                                            error=str(outcome), phase="backup")
            backups[label] = outcome
    results: dict[str, RenewalResult] = {}
    for label, node_plan in pairs:
        try:
            result = apply_renewal(node_plan, take_backup=False, wait=wait, workers=workers, now=now,
                                   force_invalid_times=force_invalid_times)
        except KubepkiError as exc:
            return ClusterRenewalResult(nodes=plan.nodes, backups=backups, results=results, failed=label,
                                        error=str(exc), phase="renewal")
        if label in backups:
            b = backups[label]
            result = attrs.evolve(result, backup=b.path, backup_on_node=b.on_node)
        results[label] = result
        if not result.ok:
            refused = ", ".join(s.name for s in result.skipped if s.refused)
            return ClusterRenewalResult(nodes=plan.nodes, backups=backups, results=results, failed=label,
                                        error=f"refused: {refused}", phase="renewal")
    return ClusterRenewalResult(nodes=plan.nodes, backups=backups, results=results)


# --------------------------------------------------------------------------------------
# Restarts


@attrs.frozen(kw_only=True)
class NodeRestart:
    """One node's turn in a rolling restart."""

    #: 1 for the first node, 2 for the next...
    position: int
    label: str
    plan: RestartPlan = attrs.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"position": self.position, "node": self.label, "plan": self.plan.to_dict()}


@attrs.frozen(kw_only=True)
class ClusterRestartPlan(Report):
    """Restarts rolled strictly one node at a time, in a stable order; nothing is done yet."""

    cluster: Cluster = attrs.field(eq=False, repr=False)
    #: One entry per node, in the order they restart.
    order: tuple[NodeRestart, ...]

    def __iter__(self) -> Iterator[NodeRestart]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)

    def __repr__(self) -> str:
        return f"<ClusterRestartPlan order={[n.label for n in self.order]}>"

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node labels in restart order."""
        return tuple(n.label for n in self.order)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": "ClusterRestartPlan", "order": [n.to_dict() for n in self.order]}

    def rows(self) -> Table:
        """One row per node's turn: its steps."""
        return Table("Rolling restart, one node at a time:", ("turn", "node", "steps"),
                     [[str(t.position), Cell(t.label, strong=True),
                       "\n".join(f"{s.action.value} {s.component.value} ({s.method.value}): {s.describe()}"
                                 for s in t.plan) or Cell("nothing to do", "dim")] for t in self.order])

    def blocks(self) -> list[Block]:
        """Each node's turn: its steps, then the wait for health before the next."""
        out: list[Block] = [Line(["Rolling restart, one node at a time:"])]
        for turn in self.order:
            steps = list(turn.plan)
            out.append(Line([f"{turn.position}. {turn.label}: " + (f"{len(steps)} step(s)" if steps
                                                                    else "nothing to do")]))
            out += [Line([f"     {s.action.value} {s.component.value} ({s.method.value}): {s.describe()}"])
                    for s in steps]
            if turn.position < len(self.order):
                out.append(Line([f"     then wait until {turn.label} is healthy and verified"]))
        return out

    def table(self) -> str:
        """Each node's turn: its steps, then the wait for health before the next."""
        return self.text()


ChangedSpec = Mapping[str, Sequence[str]] | Sequence[str]


def plan_cluster_restarts(
    cluster: Cluster | Sequence[Node | str | os.PathLike[str]],
    changed: ClusterRenewalResult | ChangedSpec,
    *,
    policy: str = "safe",
    method: str | None = None,
    order: Sequence[str] | None = None,
) -> ClusterRestartPlan:
    """The restarts ``changed`` needs on each node, rolled one node at a time.

    ``changed`` is a :class:`ClusterRenewalResult` (each node's renewed names),
    ``{label: names}``, or names changed on every node. Each node's steps come
    from :func:`kubepki.plan_restarts` with ``policy`` and ``method``. Nodes
    restart in ``order`` (labels), by default the cluster's order; a node with
    nothing to do keeps its place with an empty plan, so the order is the same
    whatever changed.
    """
    from kubepki.restarts import Changed, plan_restarts

    cluster = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
    labels = list(cluster.labels)
    if isinstance(changed, ClusterRenewalResult):
        per_node: dict[str, list[str]] = {label: list(r.changed) for label, r in changed.results.items()}
    elif isinstance(changed, Mapping):
        per_node = {label: list(names) for label, names in changed.items()}
    else:
        per_node = {label: list(changed) for label in labels}
    unknown = sorted(set(per_node) - set(labels))
    if unknown:
        raise ConfigError(f"no node {unknown[0]!r} in this cluster (nodes: {', '.join(labels)})")
    sequence = list(order) if order is not None else labels
    if sorted(sequence) != sorted(labels):
        raise ConfigError(f"order must name every node once: {sequence} vs {labels}")
    kwargs: dict[str, Any] = {"policy": policy}
    if method is not None:
        kwargs["method"] = method
    turns = []
    for position, label in enumerate(sequence, 1):
        node = cluster[label]
        plan = plan_restarts(node, Changed(per_node.get(label, [])), **kwargs)
        turns.append(NodeRestart(position=position, label=label, plan=plan))
    return ClusterRestartPlan(cluster=cluster, order=tuple(turns))


@attrs.frozen(kw_only=True)
class ClusterRestartReport(Report):
    """What :func:`apply_cluster_restarts` did, node by node, and where it stopped."""

    dry_run: bool
    #: Each node's restart report (local :class:`~kubepki.RestartReport`, or
    #: :class:`RemoteRestartReport` over SSH), in the order done.
    reports: Mapping[str, RestartReport | RemoteRestartReport] = attrs.field(factory=dict)
    #: Seconds each node took to be healthy and verified after its restarts.
    healthy_after: Mapping[str, float] = attrs.field(factory=dict)
    failed: str | None = None
    error: str | None = None
    not_attempted: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every node restarted and came back healthy."""
        return self.failed is None

    @property
    def outcome(self) -> Outcome:
        """Failed unless :attr:`ok`."""
        return Outcome.OK if self.ok else Outcome.FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": "ClusterRestartReport",
            "dry_run": self.dry_run,
            "ok": self.ok,
            "failed": self.failed,
            "error": self.error,
            "not_attempted": list(self.not_attempted),
            "healthy_after": dict(self.healthy_after),
            "reports": {k: v.to_dict() for k, v in self.reports.items()},
        }

    def rows(self) -> Table:
        """One row per node: ok or failed, and how long it took to be healthy."""
        rows: list[list[Cell | str]] = []
        for label, report in self.reports.items():
            when = self.healthy_after.get(label)
            rows.append([label, Cell("ok", "ok") if report.ok else Cell("FAILED", "error"),
                         f"{when:.1f} s" if when is not None else ""])
        if self.failed is not None:
            rows.append([self.failed, Cell("stopped", "error"), self.error or ""])
        rows += [[label, Cell("not attempted", "dim"), ""] for label in self.not_attempted]
        return Table(f"kubepki rolling restart{' (dry run)' if self.dry_run else ''}: {self.outcome.value}",
                     ("node", "result", "healthy after"), rows)

    def blocks(self) -> list[Block]:
        """One line per node."""
        out: list[Block] = []
        for label, report in self.reports.items():
            when = self.healthy_after.get(label)
            health = f", healthy after {when:.1f} s" if when is not None else ""
            out.append(Line([f"{label}: ", Cell("ok", "ok") if report.ok else Cell("FAILED", "error"), health]))
        if self.failed is not None:
            out.append(Line([Cell(f"stopped at {self.failed}", "error"), f": {self.error}"]))
        out += [Line([f"{label}: not attempted"]) for label in self.not_attempted]
        return out

    def table(self) -> str:
        """One line per node."""
        return self.text()


#: ``health(label, node)``: True when the node's components are healthy and serve
#: their new certificates; False (or an exception) when not yet.
HealthCheck = Callable[[str, Node], bool]


def apply_cluster_restarts(
    plan: ClusterRestartPlan,
    *,
    health: HealthCheck,
    dry_run: bool = True,
    health_timeout: float = 300.0,
    poll: float = 2.0,
    restart: Callable[[RestartPlan, Node], RestartReport | RemoteRestartReport] | None = None,
) -> ClusterRestartReport:
    """Roll ``plan``: one node at a time, each healthy and verified before the next.

    For each node in order, its restart plan is carried out by ``restart``:
    by default :func:`kubepki.apply_restarts` (with ``dry_run``) for a local
    root, and :func:`ssh_restart` (kubepki run on the node) for a node reached
    over SSH. Then ``health(label, node)`` is polled every ``poll`` seconds until
    it returns True, for at most ``health_timeout`` seconds. The first node whose
    restarts fail or that does not become healthy stops the roll: later nodes
    are left alone, so at most one node is ever down. With ``dry_run`` nothing
    is restarted and health is not awaited.
    """
    from kubepki.restarts import apply_restarts

    remote = ssh_restart(dry_run=dry_run)

    def default_restart(node_plan: RestartPlan, node: Node) -> RestartReport | RemoteRestartReport:
        if isinstance(node.fs, LocalPaths):
            return apply_restarts(node_plan, node=node, dry_run=dry_run)
        return remote(node_plan, node)

    run = restart or default_restart
    reports: dict[str, RestartReport | RemoteRestartReport] = {}
    healthy: dict[str, float] = {}
    labels = [turn.label for turn in plan]
    for i, turn in enumerate(plan):
        node = plan.cluster[turn.label]
        rest = tuple(labels[i + 1:])

        def stop(why: str, label: str = turn.label, rest: tuple[str, ...] = rest) -> ClusterRestartReport:
            return ClusterRestartReport(dry_run=dry_run, reports=reports, healthy_after=healthy,
                                        failed=label, error=why, not_attempted=rest)

        try:
            report = run(turn.plan, node)
        except KubepkiError as exc:
            return stop(str(exc))
        reports[turn.label] = report
        if not report.ok:
            return stop(_report_error(report))
        if dry_run:
            continue
        start = time.monotonic()
        last: str = "not healthy yet"
        while True:
            try:
                if health(turn.label, node):
                    healthy[turn.label] = time.monotonic() - start
                    break
            except (KubepkiError, OSError) as exc:
                last = str(exc)
            if time.monotonic() - start >= health_timeout:
                return stop(f"not healthy within {health_timeout:g} s ({last})")
            time.sleep(poll)
    return ClusterRestartReport(dry_run=dry_run, reports=reports, healthy_after=healthy)


def _report_error(report: RestartReport | RemoteRestartReport) -> str:
    if isinstance(report, RemoteRestartReport):
        return report.error or "the restarts failed"
    failed = report.failed
    if failed is not None:
        return f"{failed.step.component.value}: {failed.error or failed.status.value}"
    return "still stale after its restarts: " + ", ".join(str(s) for s in report.remaining)
