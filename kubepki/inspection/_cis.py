"""The CIS Kubernetes Benchmark's file and TLS checks, as kube-bench's ``cfg/cis-1.12`` encodes them.

Each rule has the benchmark's id and wording. A file rule passes when the mode has no bit
outside the one the benchmark allows (kube-bench's ``bitmask`` test, so a stricter mode
always passes) and the owner is the one it names. Unlike kube-bench, kubepki also looks
at ``pki/etcd/`` and every other subdirectory, follows symlinks inside the node's root,
and reports a group- or world-writable directory above a benchmarked file (it lets
someone replace a file whose own mode is right).

Verdicts follow kube-bench: ``PASS``; ``FAIL`` when a scored check fails; ``WARN`` when a
check the benchmark marks *Manual* (not scored) fails, or kubepki has a reason the
benchmark's test is not the whole answer; ``INFO`` when the node has nothing the rule
looks at (no etcd manifest on a worker). Every failing file or flag is also a finding
(``cis-file-mode``, ``cis-file-owner``, ``cis-directory-writable``, ``cis-flag``) on the
inventory item it belongs to, with the benchmark id and the command that fixes it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki._report import Block, Cell, Line, Outcome, Report, Table, line
from kubepki.catalog import NodeRole
from kubepki.errors import NodeError
from kubepki.inspection._findings import Finding, Severity, make
from kubepki.node import MANIFEST_FILES, FileStat, Node, NodeProfile, StaticPodManifest

__all__ = ["BENCHMARK", "IDS", "CisFile", "CisReport", "CisResult", "Verdict", "evaluate", "files_by_path", "with_cis"]

#: The kube-bench configuration whose ids and wording the rules carry.
BENCHMARK = "cis-1.12"

_CP, _WORKER, _ETCD = NodeRole.CONTROL_PLANE, NodeRole.WORKER, NodeRole.ETCD
_ALL = frozenset(NodeRole)
_MAX_ENTRIES = 4096  # a PKI tree holds a few dozen files; a hostile one must not make the walk endless
_MAX_DEPTH = 8
#: kubeadm writes /var/lib/kubelet/config.yaml 0644; it holds no credential (cmd/kubeadm/app/phases/kubelet).
_KUBEADM_LOOSER = {"4.1.9": 0o644}


class Verdict(str, enum.Enum):
    """A rule's result, in kube-bench's words."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    WARN = "WARN"
    FAIL = "FAIL"
    INFO = "INFO"


@attrs.frozen(kw_only=True)
class CisFile:
    """One file or directory a rule looked at, and what makes it pass."""

    #: Node path, as the rule names it.
    path: str
    exists: bool
    is_dir: bool = False
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    ok: bool = True
    #: The mode that makes it pass: the current one without the disallowed bits (never looser).
    fix_mode: int | None = None
    #: The owner that makes it pass.
    fix_owner: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (modes as octal strings)."""
        return {
            "path": self.path, "exists": self.exists, "is_dir": self.is_dir,
            "mode": None if self.mode is None else format(self.mode, "04o"),
            "uid": self.uid, "gid": self.gid, "ok": self.ok,
            "fix_mode": None if self.fix_mode is None else format(self.fix_mode, "04o"),
            "fix_owner": None if self.fix_owner is None else f"{self.fix_owner[0]}:{self.fix_owner[1]}",
        }

    def shown(self) -> str:
        """``path mode uid:gid`` as the benchmark view lists it."""
        if not self.exists:
            return f"{self.path} (absent)"
        if self.mode is None:
            return self.path
        mode = "?" if self.mode is None else format(self.mode, "04o")
        return f"{self.path} {mode} {self.uid}:{self.gid}"


@attrs.frozen(kw_only=True)
class CisResult:
    """One benchmark id on one node."""

    id: str
    text: str
    #: False for the benchmark's *Manual* checks: kube-bench reports their failures as WARN.
    scored: bool
    verdict: Verdict
    files: tuple[CisFile, ...] = ()
    findings: tuple[tuple[str, Finding], ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "text": self.text, "scored": self.scored, "verdict": self.verdict.value,
                "files": [f.to_dict() for f in self.files],
                "findings": [{"item": item, **f.to_dict()} for item, f in self.findings],
                "notes": list(self.notes)}


_SECTIONS = {
    "1": "Control Plane Security Configuration", "1.1": "Control Plane Node Configuration Files",
    "1.2": "API Server", "1.3": "Controller Manager", "2": "Etcd Node Configuration",
    "4": "Worker Node Security Configuration", "4.1": "Worker Node Configuration Files", "4.2": "Kubelet",
}


@attrs.frozen(kw_only=True)
class CisReport(Report):
    """The benchmark view of one node: one result per id that applies to its role."""

    benchmark: str
    node: str | None
    role: NodeRole
    results: tuple[CisResult, ...]

    def __getitem__(self, cis_id: str) -> CisResult:
        for result in self.results:
            if result.id == cis_id:
                return result
        raise KeyError(cis_id)

    @property
    def findings(self) -> list[tuple[str, Finding]]:
        """Every finding with the inventory item it belongs to."""
        return [pair for r in self.results for pair in r.findings]

    @property
    def outcome(self) -> Outcome:
        """Failed on an error finding, warning on a warning finding, else ok (as ``check``)."""
        worst = max((f.severity.rank for _i, f in self.findings), default=0)
        return Outcome.FAILED if worst >= Severity.ERROR.rank else Outcome.WARNING if worst else Outcome.OK

    def counts(self) -> dict[str, int]:
        """How many results have each verdict."""
        out = {v.value: 0 for v in Verdict}
        for r in self.results:
            out[r.verdict.value] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as ``kubepki check --benchmark -o json`` prints it."""
        return {"benchmark": self.benchmark, "node": self.node, "role": self.role.value,
                "summary": self.counts(), "results": [r.to_dict() for r in self.results]}

    def rows(self) -> Table:
        """One row per id."""
        return Table(f"CIS Kubernetes Benchmark ({self.benchmark})", ("ID", "VERDICT", "CHECK", "FILES"),
                     [[Cell(r.id), Cell(r.verdict.value, _TONE[r.verdict]), Cell(r.text),
                       Cell("\n".join(f.path for f in r.files))] for r in self.results])

    def blocks(self) -> Sequence[Block]:
        """kube-bench's layout: section headers, one ``[VERDICT] id text`` line per id, its files and notes."""
        out: list[Block] = []
        seen: set[str] = set()
        for r in self.results:
            for section in (r.id.split(".")[0], ".".join(r.id.split(".")[:2])):
                if section in _SECTIONS and section not in seen:
                    seen.add(section)
                    out.append(line(Cell("[INFO]", "info"), f" {section} {_SECTIONS[section]}"))
            out.append(line(Cell(f"[{r.verdict.value}]", _TONE[r.verdict]), f" {r.id} {r.text}"))
            out += [Line([f"       {f.shown()}"]) for f in r.files]
            out += [Line([f"       note: {n}"]) for n in r.notes]
            out += [Line([f"       {f.severity.value}: {f.message}"]) for _i, f in r.findings]
        counts = self.counts()
        out.append(line())
        out.append(line(Cell("== Summary ==", "strong")))
        out += [line(f"{counts[v.value]} checks {v.value}") for v in (Verdict.PASS, Verdict.FAIL, Verdict.WARN,
                                                                      Verdict.INFO)]
        return out


_TONE = {Verdict.PASS: "ok", Verdict.WARN: "warning", Verdict.FAIL: "error", Verdict.INFO: "info"}


# --------------------------------------------------------------------------------------
# The rules


@attrs.frozen(kw_only=True)
class _Target:
    """A file a file rule looks at."""

    path: PurePosixPath
    #: The inventory item a finding about it goes on.
    item: str
    #: Holds a private key or credential: looser modes are errors.
    secret: bool = False


@attrs.frozen(kw_only=True)
class _FileRule:
    id: str
    text: str
    scored: bool
    roles: frozenset[NodeRole]
    targets: Callable[[_Ctx], list[_Target]]
    #: The permission bits allowed (kube-bench's bitmask), or None for an ownership rule.
    mode: int | None = None
    #: The owner by name, for ownership rules.
    owner: str | None = None


@attrs.frozen(kw_only=True)
class _FlagRule:
    id: str
    text: str
    scored: bool
    roles: frozenset[NodeRole]
    #: The manifest's component, or ``kubelet`` for the kubelet's settings.
    component: str
    #: (passes, what was found) from the component's flags or the kubelet's settings.
    test: Callable[[_Ctx, Mapping[str, str]], tuple[bool, str]]
    #: Which kubeadm configuration field sets it.
    kubeadm_field: str
    #: The finding's severity when it fails.
    severity: Severity = Severity.WARNING
    #: Why the severity is what it is, when it is not a warning.
    why: str = ""
    #: The severity when the setting is only left unset (a test's message then starts with ``not set``):
    #: kubeadm's default, which more than the flag has to change.
    unset_severity: Severity | None = None
    #: The flags whose manifest line the finding names (default: the ``--name`` words of :attr:`text`).
    names: tuple[str, ...] = ()


class _Ctx:
    """What the rules read: the node, its profile and the inventory's file facts."""

    def __init__(self, node: Node, profile: NodeProfile, files: Mapping[str, tuple[str, Any]]) -> None:
        self.node = node
        self.profile = profile
        #: node path -> (item name, ItemFile) from the inventory: modes and owners read once already.
        self.files = files
        self._stats: dict[PurePosixPath, FileStat | None] = {}
        # Three rules walk the PKI directory: each listing and lstat is done once, its error kept to
        # be raised again, so every rule still notes what it could not read.
        self._listings: dict[PurePosixPath, list[str] | NodeError] = {}
        self._lstats: dict[PurePosixPath, FileStat | NodeError | None] = {}
        self.notes: list[str] = []
        self._users: dict[str, tuple[int, int]] | None = None
        self._pki: tuple[list[tuple[_Target, str, bool]], list[str]] | None = None

    def stat(self, path: PurePosixPath) -> FileStat | None:
        """The inventory's facts for ``path`` when it has them, else one stat through the node."""
        if path not in self._stats:
            known = self.files.get(str(path))
            if known is not None and known[1].exists and known[1].mode is not None:
                f = known[1]
                self._stats[path] = FileStat(size=f.size or 0, mode=f.mode, uid=f.uid, gid=f.gid,
                                             mtime=f.mtime or 0.0, is_symlink=f.link_target is not None)
            else:
                try:
                    self._stats[path] = self.node.fs.stat(path)
                except NodeError as exc:
                    self.notes.append(f"could not stat {path}: {exc.message}")
                    self._stats[path] = None
        return self._stats[path]

    def listdir(self, directory: PurePosixPath) -> list[str]:
        """``node.fs.listdir``, once per directory per evaluation."""
        if directory not in self._listings:
            try:
                self._listings[directory] = list(self.node.fs.listdir(directory))
            except NodeError as exc:
                self._listings[directory] = exc
        found = self._listings[directory]
        if isinstance(found, NodeError):
            raise found
        return found

    def lstat(self, path: PurePosixPath) -> FileStat | None:
        """``node.fs.stat(path, follow=False)``, once per path per evaluation."""
        if path not in self._lstats:
            try:
                self._lstats[path] = self.node.fs.stat(path, follow=False)
            except NodeError as exc:
                self._lstats[path] = exc
        found = self._lstats[path]
        if isinstance(found, NodeError):
            raise found
        return found

    def pki_walk(self) -> tuple[list[tuple[_Target, str, bool]], list[str]]:
        """:func:`_walk_pki`, once per evaluation (three rules look at the PKI directory)."""
        if self._pki is None:
            self._pki = _walk_pki(self)
        return self._pki

    def item_for(self, path: PurePosixPath, default: str) -> str:
        known = self.files.get(str(path))
        return known[0] if known is not None else default

    def manifest(self, component: str) -> StaticPodManifest | None:
        return self.profile.manifests.get(component)

    def user(self, name: str) -> tuple[int, int] | None:
        """uid and gid of ``name`` on the node (its /etc/passwd and /etc/group); root is 0:0 everywhere."""
        if name == "root":
            return (0, 0)
        if self._users is None:
            self._users = {}
            passwd = self._small_file(PurePosixPath("/etc/passwd"))
            groups = _ids(self._small_file(PurePosixPath("/etc/group")))
            for entry in passwd.decode("utf-8", "replace").splitlines():
                fields = entry.split(":")
                if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
                    self._users[fields[0]] = (int(fields[2]), groups.get(fields[0], int(fields[3])))
        return self._users.get(name)

    def _small_file(self, path: PurePosixPath) -> bytes:
        """A regular file's bytes (empty when absent, unreadable or not a regular file: never a FIFO's read)."""
        try:
            found = self.node.fs.read_file(path, limit=1 << 20)
        except NodeError as exc:
            self.notes.append(f"could not read {path}: {exc.message}")
            return b""
        return found[2] or b"" if found is not None else b""


def _ids(data: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in data.decode("utf-8", "replace").splitlines():
        fields = entry.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            out.setdefault(fields[0], int(fields[2]))
    return out


def _manifest(component: str, item: str) -> Callable[[_Ctx], list[_Target]]:
    def targets(ctx: _Ctx) -> list[_Target]:
        return [_Target(path=ctx.profile.manifests_dir / MANIFEST_FILES[component], item=item)]
    return targets


def _etcd_data_dir(ctx: _Ctx) -> list[_Target]:
    etcd = ctx.manifest("etcd")
    if etcd is None:
        return []
    # The hostPath behind the container's --data-dir is the node's directory (kubeadm mounts it at the same path).
    given = etcd.host_paths.get("etcd-data") or etcd.flags.get("data-dir") or "/var/lib/etcd"
    return [_Target(path=PurePosixPath(given), item="etcd-server", secret=True)] if given.startswith("/") else []


def _kubeconfigs(*names: str) -> Callable[[_Ctx], list[_Target]]:
    def targets(ctx: _Ctx) -> list[_Target]:
        return [_Target(path=ctx.profile.kubeconfig_dir / n, item=n, secret=True) for n in names]
    return targets


def _pki(ctx: _Ctx, suffix: str | None) -> list[_Target]:
    """Everything under the PKI directory (``find`` as kube-bench runs it), or the files ending in ``suffix``."""
    walk, notes = ctx.pki_walk()
    ctx.notes.extend(notes)  # each rule notes what the walk could not read
    return [t for t, name, is_dir in walk
            if suffix is None or (not is_dir and name.endswith(suffix))]


def _walk_pki(ctx: _Ctx) -> tuple[list[tuple[_Target, str, bool]], list[str]]:
    """The PKI directory's tree, walked once per evaluation: (target, name, is a directory) sorted by
    path, and the notes of what could not be listed or stat'ed."""
    root = ctx.profile.cert_dir
    root_s = str(root)
    found: list[tuple[_Target, str, bool]] = [(_Target(path=root, item="ca"), root.name, True)]
    notes: list[str] = []
    pending = [(root, 0)]
    # The bound counts every entry (directories too), as 1.1.19 always did; the .crt and .key rules,
    # which counted only their own files, now stop at the same entry (trees of more than 4096 only).
    while pending and len(found) < _MAX_ENTRIES:
        directory, depth = pending.pop()
        try:
            names = ctx.listdir(directory)
        except NodeError as exc:
            notes.append(f"could not list {directory}: {exc.message}")
            continue
        # "etcd" anywhere below the PKI directory: its files belong to etcd-ca (string work: this runs per file).
        under_etcd = "etcd" in str(directory)[len(root_s):].split("/")
        for name in names:
            path = directory / name
            try:
                lst = ctx.lstat(path)
            except NodeError as exc:
                notes.append(f"could not stat {path}: {exc.message}")
                continue
            if lst is None:
                continue
            default = "etcd-ca" if under_etcd or name == "etcd" else "ca"
            if lst.is_dir:
                if depth < _MAX_DEPTH:
                    pending.append((path, depth + 1))
                found.append((_Target(path=path, item=default), name, True))
                continue
            found.append((_Target(path=path, item=ctx.item_for(path, default), secret=name.endswith(".key")),
                          name, False))
    found.sort(key=lambda f: str(f[0].path))
    return found, notes


def _kubelet_config(ctx: _Ctx) -> list[_Target]:
    path = ctx.profile.kubelet.config_path
    return [_Target(path=PurePosixPath(path), item="kubelet.conf")] if path else []


def _kubelet_client_ca(ctx: _Ctx) -> list[_Target]:
    given = ctx.profile.kubelet.client_ca_file
    path = PurePosixPath(given) if given and given.startswith("/") else ctx.profile.cert_dir / "ca.crt"
    return [_Target(path=path, item=ctx.item_for(path, "ca"))]


_S = "set to 600 or more restrictive"
_OWN = "ownership is set to root:root"

_FILE_RULES: tuple[_FileRule, ...] = (
    _FileRule(id="1.1.1", text=f"Ensure that the API server pod specification file permissions are {_S} (Automated)",
              scored=True, roles=frozenset({_CP}), targets=_manifest("kube-apiserver", "apiserver"), mode=0o600),
    _FileRule(id="1.1.2", text=f"Ensure that the API server pod specification file {_OWN} (Automated)",
              scored=True, roles=frozenset({_CP}), targets=_manifest("kube-apiserver", "apiserver"), owner="root"),
    _FileRule(id="1.1.3", text="Ensure that the controller manager pod specification file permissions are "
              f"{_S} (Automated)", scored=True, roles=frozenset({_CP}),
              targets=_manifest("kube-controller-manager", "controller-manager.conf"), mode=0o600),
    _FileRule(id="1.1.4", text=f"Ensure that the controller manager pod specification file {_OWN} (Automated)",
              scored=True, roles=frozenset({_CP}),
              targets=_manifest("kube-controller-manager", "controller-manager.conf"), owner="root"),
    _FileRule(id="1.1.5", text=f"Ensure that the scheduler pod specification file permissions are {_S} (Automated)",
              scored=True, roles=frozenset({_CP}), targets=_manifest("kube-scheduler", "scheduler.conf"),
              mode=0o600),
    _FileRule(id="1.1.6", text=f"Ensure that the scheduler pod specification file {_OWN} (Automated)",
              scored=True, roles=frozenset({_CP}), targets=_manifest("kube-scheduler", "scheduler.conf"),
              owner="root"),
    _FileRule(id="1.1.7", text=f"Ensure that the etcd pod specification file permissions are {_S} (Automated)",
              scored=True, roles=frozenset({_CP, _ETCD}), targets=_manifest("etcd", "etcd-server"), mode=0o600),
    _FileRule(id="1.1.8", text=f"Ensure that the etcd pod specification file {_OWN} (Automated)",
              scored=True, roles=frozenset({_CP, _ETCD}), targets=_manifest("etcd", "etcd-server"), owner="root"),
    _FileRule(id="1.1.11", text="Ensure that the etcd data directory permissions are set to 700 or more "
              "restrictive (Automated)", scored=True, roles=frozenset({_CP, _ETCD}), targets=_etcd_data_dir,
              mode=0o700),
    _FileRule(id="1.1.12", text="Ensure that the etcd data directory ownership is set to etcd:etcd (Automated)",
              scored=True, roles=frozenset({_CP, _ETCD}), targets=_etcd_data_dir, owner="etcd"),
    _FileRule(id="1.1.13", text="Ensure that the default administrative credential file permissions are set to "
              "600 (Automated)", scored=True, roles=frozenset({_CP}),
              targets=_kubeconfigs("admin.conf", "super-admin.conf"), mode=0o600),
    _FileRule(id="1.1.14", text="Ensure that the default administrative credential file ownership is set to "
              "root:root (Automated)", scored=True, roles=frozenset({_CP}),
              targets=_kubeconfigs("admin.conf", "super-admin.conf"), owner="root"),
    _FileRule(id="1.1.15", text=f"Ensure that the scheduler.conf file permissions are {_S} (Automated)",
              scored=True, roles=frozenset({_CP}), targets=_kubeconfigs("scheduler.conf"), mode=0o600),
    _FileRule(id="1.1.16", text=f"Ensure that the scheduler.conf file {_OWN} (Automated)",
              scored=True, roles=frozenset({_CP}), targets=_kubeconfigs("scheduler.conf"), owner="root"),
    _FileRule(id="1.1.17", text=f"Ensure that the controller-manager.conf file permissions are {_S} (Automated)",
              scored=True, roles=frozenset({_CP}), targets=_kubeconfigs("controller-manager.conf"), mode=0o600),
    _FileRule(id="1.1.18", text=f"Ensure that the controller-manager.conf file {_OWN} (Automated)",
              scored=True, roles=frozenset({_CP}), targets=_kubeconfigs("controller-manager.conf"), owner="root"),
    _FileRule(id="1.1.19", text="Ensure that the Kubernetes PKI directory and file ownership is set to root:root "
              "(Automated)", scored=True, roles=frozenset({_CP, _ETCD}), targets=lambda c: _pki(c, None),
              owner="root"),
    _FileRule(id="1.1.20", text="Ensure that the Kubernetes PKI certificate file permissions are set to 644 or "
              "more restrictive (Manual)", scored=False, roles=frozenset({_CP, _ETCD}),
              targets=lambda c: _pki(c, ".crt"), mode=0o644),
    _FileRule(id="1.1.21", text="Ensure that the Kubernetes PKI key file permissions are set to 600 (Manual)",
              scored=False, roles=frozenset({_CP, _ETCD}), targets=lambda c: _pki(c, ".key"), mode=0o600),
    _FileRule(id="4.1.5", text="Ensure that the --kubeconfig kubelet.conf file permissions are set to 600 or more "
              "restrictive (Automated)", scored=True, roles=_ALL, targets=_kubeconfigs("kubelet.conf"), mode=0o600),
    _FileRule(id="4.1.6", text="Ensure that the --kubeconfig kubelet.conf file ownership is set to root:root "
              "(Automated)", scored=True, roles=_ALL, targets=_kubeconfigs("kubelet.conf"), owner="root"),
    _FileRule(id="4.1.7", text="Ensure that the certificate authorities file permissions are set to 644 or more "
              "restrictive (Manual)", scored=False, roles=_ALL, targets=_kubelet_client_ca, mode=0o644),
    _FileRule(id="4.1.8", text="Ensure that the client certificate authorities file ownership is set to root:root "
              "(Manual)", scored=False, roles=_ALL, targets=_kubelet_client_ca, owner="root"),
    _FileRule(id="4.1.9", text="If the kubelet config.yaml configuration file is being used validate permissions "
              "set to 600 or more restrictive (Automated)", scored=True, roles=_ALL, targets=_kubelet_config,
              mode=0o600),
    _FileRule(id="4.1.10", text="If the kubelet config.yaml configuration file is being used validate file "
              "ownership is set to root:root (Automated)", scored=True, roles=_ALL, targets=_kubelet_config,
              owner="root"),
)


# -- flag tests ------------------------------------------------------------------------

#: kube-bench cis-1.12's strong suites for the API server (1.2.29) and the kubelet (4.2.12).
STRONG_APISERVER_SUITES = frozenset((
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
))
STRONG_KUBELET_SUITES = frozenset((
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
))


def _set(*names: str) -> Callable[[_Ctx, Mapping[str, str]], tuple[bool, str]]:
    def test(_ctx: _Ctx, flags: Mapping[str, str]) -> tuple[bool, str]:
        absent = [f"--{n}" for n in names if not flags.get(n)]
        return (not absent, "not set: " + ", ".join(absent) if absent else
                ", ".join(f"--{n}={flags[n]}" for n in names))
    return test


def _is_true(name: str) -> Callable[[_Ctx, Mapping[str, str]], tuple[bool, str]]:
    def test(_ctx: _Ctx, flags: Mapping[str, str]) -> tuple[bool, str]:
        value = flags.get(name)
        if value is None:
            return False, f"--{name} is not set (etcd's default is false)"
        return value.strip("\"'").lower() == "true", f"--{name}={value}"
    return test


def _not_true(name: str) -> Callable[[_Ctx, Mapping[str, str]], tuple[bool, str]]:
    def test(_ctx: _Ctx, flags: Mapping[str, str]) -> tuple[bool, str]:
        value = flags.get(name)
        if value is None:
            return True, f"--{name} is not set"
        return value.strip("\"'").lower() != "true" and value != "", f"--{name}={value}" if value else f"--{name}"
    return test


def _suites(strong: frozenset[str], what: str) -> Callable[[_Ctx, Mapping[str, str]], tuple[bool, str]]:
    def test(ctx: _Ctx, flags: Mapping[str, str]) -> tuple[bool, str]:
        if what == "kubelet":
            listed = ctx.profile.kubelet.config.get("tlsCipherSuites")
            given = flags.get("tls-cipher-suites")
            suites = ([s for s in given.split(",") if s] if given else
                      [s for s in listed if isinstance(s, str)] if isinstance(listed, list) else [])
        else:
            suites = [s for s in flags.get("tls-cipher-suites", "").split(",") if s]
        if not suites:
            return False, "not set: Go's default suites are used, CBC ones among them"
        weak = sorted(set(suites) - strong)
        return (not weak, f"weak suites: {', '.join(weak)}" if weak else f"{len(suites)} strong suites")
    return test


def _feature_gate_not_false(_ctx: _Ctx, flags: Mapping[str, str]) -> tuple[bool, str]:
    gates = flags.get("feature-gates", "")
    off = any(g.replace(" ", "") == "RotateKubeletServerCertificate=false" for g in gates.split(","))
    return not off, "--feature-gates has RotateKubeletServerCertificate=false" if off else (
        f"--feature-gates={gates}" if gates else "--feature-gates is not set (the gate is on by default)")


def _kubelet_rotation(ctx: _Ctx, flags: Mapping[str, str]) -> tuple[bool, str]:
    if "rotate-certificates" in flags:
        value = flags["rotate-certificates"]
        return value.lower() != "false", f"--rotate-certificates={value} in kubeadm-flags.env"
    given = ctx.profile.kubelet.config.get("rotateCertificates")
    if given is None:
        # kube-bench passes an unset field, but KubeletConfiguration's default is false: nothing rotates.
        return False, "rotateCertificates is not set, and KubeletConfiguration's default is false"
    return given is True, f"rotateCertificates: {str(given).lower()}"


def _kubelet_server_rotation(ctx: _Ctx, flags: Mapping[str, str]) -> tuple[bool, str]:
    gates = ctx.profile.kubelet.config.get("featureGates")
    if isinstance(gates, Mapping) and gates.get("RotateKubeletServerCertificate") is False:
        return False, "featureGates.RotateKubeletServerCertificate: false"
    if "RotateKubeletServerCertificate=false" in flags.get("feature-gates", "").replace(" ", ""):
        return False, "--feature-gates has RotateKubeletServerCertificate=false"
    if not ctx.profile.kubelet.server_tls_bootstrap:
        # kube-bench stops at the gate; without serverTLSBootstrap the gate rotates nothing (the kubelet
        # keeps serving its self-signed kubelet.crt, kubernetes/kubernetes#99418).
        return False, ("not set: serverTLSBootstrap (or --rotate-server-certificates), so the gate rotates nothing "
                       "and the kubelet serves its self-signed kubelet.crt")
    return True, "the RotateKubeletServerCertificate gate is on and serverTLSBootstrap: true"


_API = "ClusterConfiguration apiServer.extraArgs"
_KCM = "ClusterConfiguration controllerManager.extraArgs"
_ETCDX = "ClusterConfiguration etcd.local.extraArgs"
_KUBELET_CFG = ("the KubeletConfiguration document of kubeadm's config (kubeadm writes it to "
                "/var/lib/kubelet/config.yaml)")

_FLAG_RULES: tuple[_FlagRule, ...] = (
    _FlagRule(id="1.2.5", text="Ensure that the --kubelet-certificate-authority argument is set as appropriate "
              "(Automated)", scored=True, roles=frozenset({_CP}), component="kube-apiserver",
              test=_set("kubelet-certificate-authority"), kubeadm_field=f"{_API} kubelet-certificate-authority",
              severity=Severity.INFO,
              why="kubeadm leaves it unset: the kubelets' self-signed serving certificates would be refused, so "
                  "turn on serverTLSBootstrap and approve their CSRs before setting it"),
    _FlagRule(id="1.2.22", text="Ensure that the --service-account-key-file argument is set as appropriate "
              "(Automated)", scored=True, roles=frozenset({_CP}), component="kube-apiserver",
              test=_set("service-account-key-file"), kubeadm_field=f"{_API} service-account-key-file "
              "(kubeadm sets it to <certificatesDir>/sa.pub)"),
    _FlagRule(id="1.2.23", text="Ensure that the --etcd-certfile and --etcd-keyfile arguments are set as "
              "appropriate (Automated)", scored=True, roles=frozenset({_CP}), component="kube-apiserver",
              test=_set("etcd-certfile", "etcd-keyfile"),
              kubeadm_field="ClusterConfiguration etcd.external.certFile/keyFile (local etcd: kubeadm sets them)"),
    _FlagRule(id="1.2.24", text="Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as "
              "appropriate (Automated)", scored=True, roles=frozenset({_CP}), component="kube-apiserver",
              test=_set("tls-cert-file", "tls-private-key-file"),
              kubeadm_field=f"{_API} tls-cert-file/tls-private-key-file (kubeadm sets them)"),
    _FlagRule(id="1.2.25", text="Ensure that the --client-ca-file argument is set as appropriate (Automated)",
              scored=True, roles=frozenset({_CP}), component="kube-apiserver", test=_set("client-ca-file"),
              kubeadm_field=f"{_API} client-ca-file (kubeadm sets it)"),
    _FlagRule(id="1.2.26", text="Ensure that the --etcd-cafile argument is set as appropriate (Automated)",
              scored=True, roles=frozenset({_CP}), component="kube-apiserver", test=_set("etcd-cafile"),
              kubeadm_field="ClusterConfiguration etcd.external.caFile (local etcd: kubeadm sets it)"),
    _FlagRule(id="1.2.29", text="Ensure that the API Server only makes use of Strong Cryptographic Ciphers "
              "(Manual)", scored=False, roles=frozenset({_CP}), component="kube-apiserver",
              test=_suites(STRONG_APISERVER_SUITES, "apiserver"), kubeadm_field=f"{_API} tls-cipher-suites",
              names=("tls-cipher-suites",), unset_severity=Severity.INFO,
              why="a weak suite listed is a warning; left unset, as kubeadm does, Go's defaults apply"),
    _FlagRule(id="1.3.4", text="Ensure that the --service-account-private-key-file argument is set as appropriate "
              "(Automated)", scored=True, roles=frozenset({_CP}), component="kube-controller-manager",
              test=_set("service-account-private-key-file"),
              kubeadm_field=f"{_KCM} service-account-private-key-file (kubeadm sets it)"),
    _FlagRule(id="1.3.5", text="Ensure that the --root-ca-file argument is set as appropriate (Automated)",
              scored=True, roles=frozenset({_CP}), component="kube-controller-manager", test=_set("root-ca-file"),
              kubeadm_field=f"{_KCM} root-ca-file (kubeadm sets it)"),
    _FlagRule(id="1.3.6", text="Ensure that the RotateKubeletServerCertificate argument is set to true (Automated)",
              scored=True, roles=frozenset({_CP}), component="kube-controller-manager",
              test=_feature_gate_not_false, kubeadm_field=f"{_KCM} feature-gates"),
    _FlagRule(id="2.1", text="Ensure that the --cert-file and --key-file arguments are set as appropriate "
              "(Automated)", scored=True, roles=frozenset({_CP, _ETCD}), component="etcd",
              test=_set("cert-file", "key-file"), kubeadm_field=f"{_ETCDX} cert-file/key-file (kubeadm sets them)"),
    _FlagRule(id="2.2", text="Ensure that the --client-cert-auth argument is set to true (Automated)",
              scored=True, roles=frozenset({_CP, _ETCD}), component="etcd", test=_is_true("client-cert-auth"),
              kubeadm_field=f"{_ETCDX} client-cert-auth", severity=Severity.ERROR,
              why="without it anyone who reaches etcd's client port reads and writes every object, Secrets included"),
    _FlagRule(id="2.3", text="Ensure that the --auto-tls argument is not set to true (Automated)",
              scored=True, roles=frozenset({_CP, _ETCD}), component="etcd", test=_not_true("auto-tls"),
              kubeadm_field=f"{_ETCDX} auto-tls"),
    _FlagRule(id="2.4", text="Ensure that the --peer-cert-file and --peer-key-file arguments are set as "
              "appropriate (Automated)", scored=True, roles=frozenset({_CP, _ETCD}), component="etcd",
              test=_set("peer-cert-file", "peer-key-file"),
              kubeadm_field=f"{_ETCDX} peer-cert-file/peer-key-file (kubeadm sets them)"),
    _FlagRule(id="2.5", text="Ensure that the --peer-client-cert-auth argument is set to true (Automated)",
              scored=True, roles=frozenset({_CP, _ETCD}), component="etcd", test=_is_true("peer-client-cert-auth"),
              kubeadm_field=f"{_ETCDX} peer-client-cert-auth"),
    _FlagRule(id="2.6", text="Ensure that the --peer-auto-tls argument is not set to true (Automated)",
              scored=True, roles=frozenset({_CP, _ETCD}), component="etcd", test=_not_true("peer-auto-tls"),
              kubeadm_field=f"{_ETCDX} peer-auto-tls"),
    _FlagRule(id="4.2.10", text="Ensure that the --rotate-certificates argument is not set to false (Automated)",
              scored=True, roles=_ALL, component="kubelet", test=_kubelet_rotation,
              kubeadm_field=f"rotateCertificates in {_KUBELET_CFG}", severity=Severity.INFO,
              why="the kubelet-rotation-disabled finding says how urgent it is"),
    _FlagRule(id="4.2.11", text="Verify that the RotateKubeletServerCertificate argument is set to true (Manual)",
              scored=False, roles=_ALL, component="kubelet", test=_kubelet_server_rotation,
              kubeadm_field=f"featureGates and serverTLSBootstrap in {_KUBELET_CFG}", unset_severity=Severity.INFO,
              why="kubeadm leaves serverTLSBootstrap off; turning it on needs the kubelet-serving CSRs approved "
                  "(`kubepki csr approve`)"),
    _FlagRule(id="4.2.12", text="Ensure that the Kubelet only makes use of Strong Cryptographic Ciphers (Manual)",
              scored=False, roles=_ALL, component="kubelet", test=_suites(STRONG_KUBELET_SUITES, "kubelet"),
              kubeadm_field=f"tlsCipherSuites in {_KUBELET_CFG}", unset_severity=Severity.INFO,
              why="a weak suite listed is a warning; left unset, as kubeadm does, Go's defaults apply"),
)

#: Every benchmark id kubepki checks, in the benchmark's order.
IDS: tuple[str, ...] = tuple(sorted([*(r.id for r in _FILE_RULES), *(r.id for r in _FLAG_RULES)],
                                    key=lambda i: tuple(int(p) for p in i.split("."))))


# --------------------------------------------------------------------------------------
# Evaluation


def evaluate(node: Node, profile: NodeProfile, files: Mapping[str, tuple[str, Any]]) -> CisReport:
    """The benchmark's file and TLS rules on ``node``; ``files`` maps node paths to (item name, ItemFile)
    as the inventory read them, so a mode or owner read once is not read again."""
    ctx = _Ctx(node, profile, files)
    results: list[CisResult] = []
    seen_dirs: set[str] = set()
    rules: list[_FileRule | _FlagRule] = [*_FILE_RULES, *_FLAG_RULES]
    for rule in sorted(rules, key=lambda r: IDS.index(r.id)):
        if profile.role not in rule.roles:
            continue
        if isinstance(rule, _FileRule):
            results.append(_file_result(ctx, rule, seen_dirs))
        else:
            results.append(_flag_result(ctx, rule))
    return CisReport(benchmark=BENCHMARK, node=profile.name, role=profile.role, results=tuple(results))


def _file_result(ctx: _Ctx, rule: _FileRule, seen_dirs: set[str]) -> CisResult:
    notes: list[str] = []
    ctx.notes = notes  # before the targets: what they could not read is this rule's note
    targets = rule.targets(ctx)
    files: list[CisFile] = []
    findings: list[tuple[str, Finding]] = []
    want: tuple[int, int] | None = None
    if rule.owner == "etcd":
        want = _etcd_owner(ctx, notes)
    elif rule.owner is not None:
        want = ctx.user(rule.owner)
    for target in targets:
        st = ctx.stat(target.path)
        if st is None:
            files.append(CisFile(path=str(target.path), exists=False))
            continue
        f = CisFile(path=str(target.path), exists=True, is_dir=st.is_dir, mode=st.mode, uid=st.uid, gid=st.gid)
        if rule.mode is not None and st.mode & ~rule.mode & 0o7777:
            fixed = st.mode & rule.mode
            f = attrs.evolve(f, ok=False, fix_mode=fixed)
            findings.append((target.item, make("cis-file-mode", _mode_message(rule, target, st, fixed),
                                               _mode_severity(rule, target, st), cis=rule.id)))
        if want is not None and (st.uid, st.gid) != want:
            f = attrs.evolve(f, ok=False, fix_owner=want)
            asked = (f"{rule.owner}:{rule.owner}" if rule.owner == "root" else
                     f"the user etcd runs as, {want[0]}:{want[1]}")
            findings.append((target.item, make(
                "cis-file-owner", f"{target.path} is owned by {st.uid}:{st.gid}, the benchmark asks {asked}; "
                f"fix: chown {_owner_name(ctx, want)} {target.path} (or `kubepki permissions fix --apply`)",
                cis=rule.id)))
        files.append(f)
        for directory in _parents(target.path, seen_dirs):
            dst = ctx.stat(directory)
            if dst is not None and dst.is_dir and dst.mode & 0o022 and not dst.mode & 0o1000:
                fixed = dst.mode & ~0o022
                files.append(CisFile(path=str(directory), exists=True, is_dir=True, mode=dst.mode, uid=dst.uid,
                                     gid=dst.gid, ok=False, fix_mode=fixed))
                findings.append((target.item, make(
                    "cis-directory-writable",
                    f"{directory} is {format(dst.mode, '04o')}: anyone in its group or everyone can replace "
                    f"{target.path} whatever its own mode; fix: chmod {format(fixed, '04o')} {directory} "
                    "(or `kubepki permissions fix --apply`)", cis=rule.id)))
    present = [f for f in files if f.exists]
    named = {str(t.path) for t in targets}
    if not present:
        verdict = Verdict.INFO
        notes.append("nothing to check on this node" if not targets else
                     "not present on this node: " + ", ".join(str(t.path) for t in targets))
    elif any(not f.ok for f in present if f.path in named):
        verdict = Verdict.FAIL if rule.scored else Verdict.WARN
    elif any(not f.ok for f in present) or (rule.owner == "etcd" and want == (0, 0)):
        verdict = Verdict.WARN  # the benchmark's own test passes, or kubepki knows why it would not
    else:
        verdict = Verdict.PASS
    return CisResult(id=rule.id, text=rule.text, scored=rule.scored, verdict=verdict, files=tuple(files),
                     findings=tuple(findings), notes=tuple(notes))


def _parents(path: PurePosixPath, seen: set[str]) -> Iterator[PurePosixPath]:
    """``path.parents`` (nearest first) not in ``seen``, each added to it: string work, as this runs
    for every file of every rule (PurePosixPath hashing was most of the evaluation's time)."""
    text = str(path)
    if not text.startswith("/") or text.startswith("//"):  # not a plain node path: pathlib's own parents
        for parent in path.parents:
            if str(parent) not in seen:
                seen.add(str(parent))
                yield parent
        return
    while text != "/":
        text = text.rsplit("/", 1)[0] or "/"
        if text not in seen:
            seen.add(text)
            yield PurePosixPath(text)


def _owner_name(ctx: _Ctx, ids: tuple[int, int]) -> str:
    """``root:root``, ``etcd:etcd`` when the node's passwd names those ids so, else the numbers."""
    if ids == (0, 0):
        return "root:root"
    return "etcd:etcd" if ctx.user("etcd") == ids else f"{ids[0]}:{ids[1]}"


def _etcd_owner(ctx: _Ctx, notes: list[str]) -> tuple[int, int]:
    """Who must own etcd's data directory: the user etcd runs as (1.1.12 says etcd:etcd, for an etcd that runs
    as that user). kubeadm's static pod runs etcd as root unless the manifest sets runAsUser."""
    etcd = ctx.manifest("etcd")
    uid, gid = etcd.run_as if etcd is not None else (None, None)
    if uid is None or uid == 0:
        notes.append("etcd runs as root (kubeadm's static pod sets no runAsUser), so root:root is right for its "
                     "data directory; kube-bench asks etcd:etcd and reports FAIL here regardless")
        return (0, 0)
    return (uid, gid if gid is not None else uid)


def _mode_severity(rule: _FileRule, target: _Target, st: FileStat) -> Severity:
    if target.secret and st.mode & 0o066:
        return Severity.ERROR  # a private key or credential others can read or replace
    kubeadm = _KUBEADM_LOOSER.get(rule.id)
    if kubeadm is not None and not st.mode & ~kubeadm & 0o7777:
        return Severity.INFO  # kubeadm's own mode for a file without secrets
    return Severity.WARNING


def _mode_message(rule: _FileRule, target: _Target, st: FileStat, fixed: int) -> str:
    allowed = format(rule.mode or 0, "03o")
    kubeadm = _KUBEADM_LOOSER.get(rule.id)
    extra = (f" (kubeadm writes it {format(kubeadm, '04o')} and it holds no credential)"
             if kubeadm is not None and not st.mode & ~kubeadm & 0o7777 else "")
    return (f"{target.path} is {format(st.mode, '04o')}, the benchmark allows {allowed} or stricter{extra}; "
            f"fix: chmod {format(fixed, '04o')} {target.path} (or `kubepki permissions fix --apply`)")


def _flag_result(ctx: _Ctx, rule: _FlagRule) -> CisResult:
    settings = ctx.profile.kubelet
    manifest = None
    if rule.component == "kubelet":
        if not settings.found:
            return CisResult(id=rule.id, text=rule.text, scored=rule.scored, verdict=Verdict.INFO,
                             notes=("no kubelet configuration file on this node",))
        where, item, flags = settings.config_path or "", "kubelet.conf", settings.flags
        files = (CisFile(path=where, exists=True),)
    else:
        manifest = ctx.manifest(rule.component)
        if manifest is None:
            return CisResult(id=rule.id, text=rule.text, scored=rule.scored, verdict=Verdict.INFO,
                             notes=(f"no {rule.component} manifest on this node (or none kubepki could parse: "
                                    "see the inventory's notes)",))
        item = {"kube-apiserver": "apiserver", "kube-controller-manager": "controller-manager.conf",
                "etcd": "etcd-server"}[rule.component]
        flags = manifest.flags
        files = (CisFile(path=manifest.path or "", exists=True),)
    passed, found = rule.test(ctx, flags)
    if manifest is not None:
        # A flag written with a wrong value: its line; one that is missing: the manifest.
        where = f"{manifest.path} (not in the command)" if found.startswith("not set") else _where(manifest, rule)
    if passed:
        return CisResult(id=rule.id, text=rule.text, scored=rule.scored, verdict=Verdict.PASS, files=files,
                         notes=(found,))
    why = f" ({rule.why})" if rule.why else ""
    unset = rule.unset_severity is not None and found.startswith("not set")
    finding = make("cis-flag", f"{where}: {found}; the benchmark asks: {rule.text.rsplit(' (', 1)[0]}. "
                   f"Set it through {rule.kubeadm_field}, not in the file (kubeadm rewrites it){why}",
                   rule.unset_severity if unset and rule.unset_severity is not None else rule.severity,
                   cis=rule.id)
    return CisResult(id=rule.id, text=rule.text, scored=rule.scored,
                     verdict=Verdict.FAIL if rule.scored else Verdict.WARN, files=files,
                     findings=((item, finding),), notes=(found,))


def _where(manifest: StaticPodManifest, rule: _FlagRule) -> str:
    """The manifest and the line of the flag the rule is about (the first one written)."""
    names = [n for n in _flag_names(rule) if n in manifest.flag_lines]
    if names:
        return f"{manifest.path}:{manifest.flag_lines[names[0]]}"
    return f"{manifest.path} (not in the command)"


def _flag_names(rule: _FlagRule) -> list[str]:
    # The flag each rule is about, from its wording: --name spellings, and the feature gate's flag.
    if rule.names:
        return list(rule.names)
    words = [w.strip(",") for w in rule.text.split() if w.startswith("--")]
    names = [w[2:] for w in words]
    return names or (["feature-gates"] if "RotateKubeletServerCertificate" in rule.text else [])


def with_cis(items: Sequence[Any], report: CisReport, *, fallback: bool = True) -> tuple[Any, ...]:
    """``items`` (inventory items) with the report's warnings and errors on the items they belong to.

    Info findings (where the benchmark is stricter than kubeadm's own defaults and nothing is at risk)
    stay in the benchmark view: a node as kubeadm leaves it checks clean. A finding whose item the node
    lacks goes on its CA (``fallback``); without ``fallback`` (an inventory of some items only) it is left out.
    """
    from kubepki.inspection._findings import Status, status_for

    names = [item.name for item in items]
    # An item the node lacks (no ca on an etcd-only node): the finding goes on its CA, else the first item.
    other = next((n for n in ("ca", "etcd-ca") if n in names), names[0] if names else "")
    extra: dict[str, list[Finding]] = {}
    for name, finding in report.findings:
        if finding.severity.rank >= Severity.WARNING.rank and (name in names or fallback):
            extra.setdefault(name if name in names else other, []).append(finding)
    out = []
    for item in items:
        more = extra.get(item.name)
        if not more:
            out.append(item)
            continue
        findings = (*item.findings, *more)
        status = item.status if item.status is Status.MISSING else status_for(findings)
        out.append(attrs.evolve(item, findings=findings, status=status))
    return tuple(out)


def files_by_path(items: Iterable[Any]) -> dict[str, tuple[str, Any]]:
    """Node path -> (item name, ItemFile) for every file the inventory read."""
    out: dict[str, tuple[str, Any]] = {}
    for item in items:
        for f in item.files:
            out.setdefault(f.path, (item.name, f))
    return out
