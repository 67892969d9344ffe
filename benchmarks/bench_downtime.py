"""The seconds a real kube-apiserver does not answer during a full renewal: kubepki under each
restart policy against kubeadm's documented manual procedure.

Run as a script (root, containerd and the Kubernetes v1.28.4 binaries the real-cluster tests use)::

    KUBEPKI_REALCLUSTER_PORT_OFFSET=200 sudo -E python3 benchmarks/bench_downtime.py [--rounds N]

``KUBEPKI_REALCLUSTER_PORT_OFFSET`` moves the node's ports (and names its cgroup root) away from
other clusters on the machine; ``KUBEPKI_REALCLUSTER_PYTHONPATH=DIR`` runs the kubepki tree in DIR
(a ``git archive`` of a commit, say, while the checkout is being edited).

One single-node kubeadm control plane (``tests/realcluster.py``) serves every run; each run starts
from a healthy node (``/readyz`` ok, the four static pods Ready, and still so 10 s later) and ends
when it is healthy again. Throughout a run a thread of this process opens a new TLS connection to
``/readyz`` every 50 ms with admin.conf's client certificate, re-read from the file for every probe
(a renewal rewrites it), and records each answer. Runs:

- ``kubepki``, one per policy (``minimal``, ``safe``): ``kubepki renew all --apply`` then
  ``kubepki restarts apply --from-renewal … --policy P --method manifest --apply``, both run inside
  the node's mount namespace (``nsenter -t HOLDER -m -- python3 -m kubepki …``), as on the node;
- ``kubeadm``: ``kubeadm certs renew all``, every static pod manifest moved out of
  ``/etc/kubernetes/manifests``, 20 s (the documented wait; longer if the kubelet still runs a
  container of them), moved back
  (https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-certs/#manual-certificate-renewal).

Columns: seconds without a 200 answer (gaps summed), the longest gap, failed probes of all
probes, the run's wall time (from the renewal's start to a healthy node), and, judged afterwards
by a TLS handshake of this process, whether the apiserver and etcd serve the serial of their file
on disk and whether the apiserver's file was renewed at all. The cluster is stopped by PID at the
end, on an error and on Ctrl-C or SIGTERM too.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import realcluster as rc  # noqa: E402

#: kubeadm's manual procedure: "wait for 20 seconds (see fileCheckFrequency ...)".
KUBEADM_WAIT = 20.0
#: The policies ``kubepki restarts apply`` and ``kubepki auto-renew`` offer (kubepki/cli/_common.py).
POLICIES = ("minimal", "safe")
METHODS = ("manifest", "cri")


# --------------------------------------------------------------------------------------
# Probes and their arithmetic (unit-tested in tests/test_bench_downtime.py)


@dataclass(frozen=True)
class Probe:
    """One ``/readyz`` request on a new connection: when it was sent, when it ended, its outcome."""

    start: float
    end: float
    ok: bool
    #: Why it failed ("" when ok): the HTTP status or the exception's class and message.
    error: str = ""


@dataclass(frozen=True)
class Downtime:
    """What a run's probes say about the apiserver's answers."""

    #: Seconds without a 200 answer: every gap summed.
    unanswered: float
    #: The longest gap, in seconds.
    longest: float
    failed: int
    probes: int
    #: False when the last probe failed (the gap was still open at the end).
    recovered: bool


def gaps(probes: Sequence[Probe]) -> list[tuple[float, float]]:
    """The (start, end) spans without a 200 answer: each from the sending of the first failed probe
    of a run of failures to the sending of the next ok probe, or to the end of the last probe when
    none followed. Probes are taken in the order of their start."""
    spans: list[tuple[float, float]] = []
    down_since: float | None = None
    ordered = sorted(probes, key=lambda p: p.start)
    for p in ordered:
        if not p.ok and down_since is None:
            down_since = p.start
        elif p.ok and down_since is not None:
            spans.append((down_since, p.start))
            down_since = None
    if down_since is not None:
        spans.append((down_since, max(ordered[-1].end, down_since)))
    return spans


def downtime(probes: Sequence[Probe]) -> Downtime:
    """The gaps of ``probes`` summed, the longest, and the counts."""
    spans = gaps(probes)
    lengths = [end - start for start, end in spans]
    last_ok = bool(probes) and max(probes, key=lambda p: p.start).ok
    return Downtime(unanswered=sum(lengths), longest=max(lengths, default=0.0),
                    failed=sum(1 for p in probes if not p.ok), probes=len(probes), recovered=last_ok)


class Credentials:
    """admin.conf's client pair and ca.crt as a TLS context, re-read from the files at every call.

    A file caught half-written (kubeadm rewrites admin.conf in place) keeps the last context that
    could be built; :attr:`unreadable` counts those calls, so a probe failure is the server's.
    """

    def __init__(self, kubeconfig: Path, ca: Path, scratch: Path) -> None:
        self.kubeconfig, self.ca, self.scratch = kubeconfig, ca, scratch
        self.unreadable = 0
        self._digest = ""
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        """The context for the files as they are now."""
        try:
            conf_bytes, ca_bytes = self.kubeconfig.read_bytes(), self.ca.read_bytes()
            digest = hashlib.sha256(conf_bytes + b"\0" + ca_bytes).hexdigest()
            if digest != self._digest or self._context is None:
                self._context = self._build(conf_bytes, ca_bytes)
                self._digest = digest
        except (OSError, ValueError, KeyError, IndexError, TypeError, ssl.SSLError, yaml.YAMLError) as exc:
            self.unreadable += 1
            if self._context is None:
                raise ValueError(f"no client pair: {type(exc).__name__}: {exc}") from exc
        return self._context

    def _build(self, conf_bytes: bytes, ca_bytes: bytes) -> ssl.SSLContext:
        user = yaml.safe_load(conf_bytes)["users"][0]["user"]
        pem = base64.b64decode(user["client-certificate-data"]) + base64.b64decode(user["client-key-data"])
        # the ssl module loads a client pair from a file only: a private one, replaced whole
        pair = self.scratch / "admin.pem"
        tmp = self.scratch / "admin.pem.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, pair)
        ctx = ssl.create_default_context(cadata=ca_bytes.decode("ascii"))
        ctx.load_cert_chain(str(pair))
        return ctx


class Prober:
    """``GET /readyz`` on a new TLS connection every ``interval`` seconds, from a thread, until stopped."""

    def __init__(self, host: str, port: int, credentials: Credentials, *, interval: float = 0.05,
                 timeout: float = 2.0) -> None:
        self.host, self.port, self.credentials = host, port, credentials
        self.interval, self.timeout = interval, timeout
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readyz-prober", daemon=True)

    def probe_once(self) -> Probe:
        """One probe, now."""
        start = time.monotonic()
        try:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self.credentials.context())
            try:
                conn.request("GET", "/readyz")
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return Probe(start, time.monotonic(), False, f"{type(exc).__name__}: {exc}"[:200])
        ok = resp.status == 200
        return Probe(start, time.monotonic(), ok, "" if ok else f"HTTP {resp.status}: {body[:80]!r}")

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self.probes.append(self.probe_once())
            # a fixed 50 ms grid; a probe that overran it is followed at once, not by a burst
            due = max(due + self.interval, time.monotonic())
            self._stop.wait(max(0.0, due - time.monotonic()))

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)


# --------------------------------------------------------------------------------------
# Runs on the real cluster


@dataclass
class Run:
    """One measured run."""

    method: str
    policy: str
    downtime: Downtime | None = None
    wall: float = 0.0
    apiserver_served_is_file: bool | None = None
    etcd_served_is_file: bool | None = None
    apiserver_renewed: bool | None = None
    #: Probe failures by reason, and admin.conf reads that found it half-written.
    errors: dict[str, int] = field(default_factory=dict)
    unreadable_credentials: int = 0
    note: str = ""


class Bench:
    """The cluster, the work directory and the runs."""

    def __init__(self, cluster: rc.RealCluster, work: Path, *, interval: float) -> None:
        self.cluster, self.work, self.interval = cluster, work, interval
        self.scratch = work / "prober"
        self.scratch.mkdir(mode=0o700, exist_ok=True)
        self.runs: list[Run] = []

    def _credentials(self) -> Credentials:
        c = self.cluster
        return Credentials(c.root / "etc/kubernetes/admin.conf", c.pki / "ca.crt", self.scratch)

    def healthy(self, timeout: float = 330) -> None:
        """/readyz ok and the four static pods Ready, with the same containers 10 s later (the
        controller-manager and scheduler may exit once after losing their leases while the apiserver
        restarted; the kubelet's longest back-off is 300 s)."""
        c = self.cluster
        deadline = time.monotonic() + timeout
        while True:
            c.extract_admin()
            c.wait_ready(max(1.0, deadline - time.monotonic()))
            c.wait_pods_ready(max(1.0, deadline - time.monotonic()))
            before = {x.name: x.id for x in c.containers()}
            time.sleep(10)
            if c.readyz() and {x.name: x.id for x in c.containers()} == before and len(before) == 4:
                return
            if time.monotonic() > deadline:
                raise rc.ClusterError(f"the node did not settle in {timeout:.0f} s")

    def _settled(self) -> None:
        self.cluster.extract_admin()
        self.cluster.wait_ready(330)
        self.cluster.wait_pods_ready(330)

    def _judge(self, run: Run, prober: Prober, wall: float, serial_before: int) -> None:
        c = self.cluster
        run.wall = wall
        run.downtime = downtime(prober.probes)
        for p in prober.probes:
            if not p.ok:
                reason = p.error.split(":", 1)[0]
                run.errors[reason] = run.errors.get(reason, 0) + 1
        run.unreadable_credentials = prober.credentials.unreadable
        file_serial = c.file_serial("apiserver.crt")
        run.apiserver_renewed = file_serial != serial_before
        run.apiserver_served_is_file = c.served_serial(c.ports.apiserver) == file_serial
        run.etcd_served_is_file = c.served_serial(c.ports.etcd_client) == c.file_serial("etcd/server.crt")

    def _kubepki(self, *args: str, timeout: float) -> str:
        proc = self.cluster.kubepki(*args, inside=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"kubepki {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")
        return proc.stdout

    def run_kubepki(self, policy: str, method: str, n: int) -> Run:
        """``renew all --apply`` then ``restarts apply --policy POLICY --method METHOD --apply``."""
        c = self.cluster
        run = Run(f"kubepki ({method})", policy)
        renewal = self.work / f"renewal-{n}.json"
        serial_before = c.file_serial("apiserver.crt")
        with Prober(c.address, c.ports.apiserver, self._credentials(), interval=self.interval) as prober:
            time.sleep(1)  # a healthy start on record
            t0 = time.monotonic()
            try:
                renewal.write_text(self._kubepki("renew", "all", "--apply", "--backup-dir",
                                                 str(self.work / "backups"), "-o", "json", timeout=600))
                self._kubepki("restarts", "apply", "--from-renewal", str(renewal), "--policy", policy,
                              "--method", method, "--apply", "--no-backup", "-o", "json", timeout=900)
            finally:
                self._release_held()
            self._settled()
            wall = time.monotonic() - t0
        self._judge(run, prober, wall, serial_before)
        return run

    def _release_held(self) -> None:
        """Manifests a failed ``restarts apply`` held back go back, so the next run has a node."""
        held = self.cluster.root / "etc/kubernetes/kubepki-held-manifests"
        for parked in sorted(held.glob("*.yaml")) if held.is_dir() else ():
            if not (self.cluster.manifests / parked.name).exists():
                shutil.move(parked, self.cluster.manifests / parked.name)

    def run_kubeadm(self, n: int) -> Run:
        """kubeadm's documented manual renewal and restart."""
        c = self.cluster
        run = Run("kubeadm", "manifests out 20 s")
        parked = self.work / f"parked-{n}"
        parked.mkdir()
        serial_before = c.file_serial("apiserver.crt")
        with Prober(c.address, c.ports.apiserver, self._credentials(), interval=self.interval) as prober:
            time.sleep(1)
            t0 = time.monotonic()
            with open(c.logs / "kubeadm-certs-renew.log", "ab") as log:
                code = subprocess.run(c.nsenter(str(c.binaries["kubeadm"]), "certs", "renew", "all"),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False,
                                         timeout=300).returncode
            if code:
                log_tail = rc.tail(c.logs / "kubeadm-certs-renew.log")
                raise RuntimeError(f"kubeadm certs renew all exited {code}: {log_tail}")
            moved = sorted(c.manifests.glob("*.yaml"))
            try:
                for manifest in moved:
                    shutil.move(manifest, parked / manifest.name)
                time.sleep(KUBEADM_WAIT)
                running = {x.name for x in c.containers()} & set(rc.COMPONENTS)
                if running:
                    run.note = f"still running after {KUBEADM_WAIT:.0f} s: {', '.join(sorted(running))}; waited"
                    rc.wait_until("the kubelet to stop the static pods",
                                  lambda: not {x.name for x in c.containers()} & set(rc.COMPONENTS), 120, 0.5)
            finally:
                for manifest in moved:
                    if (parked / manifest.name).exists():
                        shutil.move(parked / manifest.name, manifest)
            self._settled()
            wall = time.monotonic() - t0
        self._judge(run, prober, wall, serial_before)
        return run


# --------------------------------------------------------------------------------------
# The table


def _yes(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "NO")


def table(runs: Sequence[Run]) -> str:
    """The runs as a text table."""
    head = ("method", "policy", "unanswered s", "longest gap s", "failed/probes", "wall s",
            "apiserver served = file", "etcd served = file", "renewed")
    rows = [head]
    for r in runs:
        d = r.downtime
        rows.append((r.method, r.policy,
                     "-" if d is None else f"{d.unanswered:.2f}" + ("" if d.recovered else " (open)"),
                     "-" if d is None else f"{d.longest:.2f}",
                     "-" if d is None else f"{d.failed}/{d.probes}",
                     f"{r.wall:.1f}", _yes(r.apiserver_served_is_file), _yes(r.etcd_served_is_file),
                     _yes(r.apiserver_renewed)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{r.method} {r.policy}: {r.note}" for r in runs if r.note]
    notes += [f"{r.method} {r.policy}: failures {r.errors}" for r in runs if r.errors]
    notes += [f"{r.method} {r.policy}: admin.conf half-written at {r.unreadable_credentials} probe(s), "
              "the previous pair used" for r in runs if r.unreadable_credentials]
    return "\n".join(lines + (["", *notes] if notes else []))


# --------------------------------------------------------------------------------------
# Main


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _cluster(work: Path, offset: int, left: list[str]) -> Iterator[rc.RealCluster]:
    """A started cluster on ports + ``offset``, stopped by PID when the block ends; what it left
    behind is appended to ``left``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = base / "kubepki-tests" / f"k8s-{rc.K8S_VERSION}"
    binaries = rc.kubernetes_binaries(cache / "bin")
    images = rc.build_images(binaries, cache / "images")
    ports = rc.Ports(**{k: v + offset for k, v in rc.Ports().all().items()})
    (work / "node").mkdir()
    cluster = rc.RealCluster(work / "node", binaries, images, ports=ports,
                             cgroup_root=f"kubepki-bench-downtime-{offset}")
    try:
        cluster.start()
        yield cluster
    finally:
        notes = cluster.stop()
        left += cluster.leftovers()
        if notes or left:
            print("teardown:", *notes, *(f"LEFT BEHIND: {x}" for x in left), sep="\n  ", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table; 0 when every run was measured, 1 when one failed, 2 when none could run."""
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="times each run is made (default 1)")
    parser.add_argument("--policy", action="append", choices=POLICIES, help="kubepki's restart policies to "
                        "measure (repeatable; default all)")
    parser.add_argument("--method", action="append", choices=METHODS, help="kubepki's restart methods "
                        "(repeatable; default manifest)")
    parser.add_argument("--no-kubeadm", action="store_true", help="skip kubeadm's procedure")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between probes (default 0.05)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the runs as JSON")
    args = parser.parse_args(argv)
    reason = rc.missing_prerequisites()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    offset = int(os.environ.get("KUBEPKI_REALCLUSTER_PORT_OFFSET") or 0)
    work = Path(tempfile.mkdtemp(prefix="kubepki-bench-downtime-"))
    plan: list[tuple[str, str]] = [(p, m) for m in (args.method or ["manifest"]) for p in (args.policy or POLICIES)]
    if not args.no_kubeadm:
        plan.append(("kubeadm", ""))
    failed = False
    runs: list[Run] = []
    left: list[str] = []
    try:
        with _cluster(work, offset, left) as cluster:
            bench = Bench(cluster, work, interval=args.interval)
            for n, (policy, method) in enumerate(plan * args.rounds, start=1):
                bench.healthy()
                try:
                    runs.append(bench.run_kubeadm(n) if policy == "kubeadm" else bench.run_kubepki(policy, method, n))
                except (RuntimeError, rc.ClusterError, OSError, subprocess.SubprocessError) as exc:
                    failed = True
                    runs.append(Run("kubeadm" if policy == "kubeadm" else f"kubepki ({method})", policy,
                                    note=f"FAILED: {' '.join(str(exc).split())[:400]}"))
                print(*table(runs[-1:]).splitlines()[2:], sep="\n", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted; the cluster was stopped", file=sys.stderr)
        failed = True
    except (rc.ClusterError, rc.Unavailable) as exc:
        print(f"the cluster failed: {exc}", file=sys.stderr)
        failed = True
    finally:
        if not left:  # the node's tree goes once nothing of it runs or is mounted
            shutil.rmtree(work, ignore_errors=True)
    tree = os.environ.get("KUBEPKI_REALCLUSTER_PYTHONPATH") or str(REPO)
    print(f"Real kubeadm {rc.K8S_VERSION} single-node control plane; /readyz every "
          f"{args.interval * 1000:.0f} ms on a new TLS connection with admin.conf's client certificate; "
          f"kubepki from {tree}\n")
    print(table(runs))
    if args.json is not None:
        doc: list[dict[str, Any]] = [asdict(r) for r in runs]
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
