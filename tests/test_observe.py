"""Observing a node: components in /proc, and the certificates their endpoints serve.

The processes are real (tests/fake_component.py run under a component's name);
so are the TLS handshakes, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import kubepki
from kubepki.catalog import Component
from kubepki.errors import NodeError
from kubepki.node._node import Node
from kubepki.restarts._observe import (
    CombinedObserver,
    Instance,
    ProcScanner,
    component_from_name,
    parse_flags,
    scan_processes,
)
from kubepki.restarts._served import (
    CheckStatus,
    ServedStatus,
    compare_served,
    endpoint_port,
    fetch_served_certificate,
    serving_cert_path,
    to_node_path,
    verify_served,
)
from tests.services import FAKE_COMPONENT, component_bin, free_port, start_fake, stop_process, wait_for

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> kubepki.testing.DemoNode:
    """A demo node whose certificates the TLS servers below serve."""
    return kubepki.testing.build_node(tmp_path_factory.mktemp("demo"),
                                      issued_at=dt.datetime(2026, 1, 1, tzinfo=UTC))


def _mine(proc: subprocess.Popen[bytes]) -> ProcScanner:
    return ProcScanner(match=lambda i: i.pid == proc.pid)


@contextlib.contextmanager
def _fake(tmp_path: Path, name: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_fake(tmp_path / "bin", name, list(args), tmp_path / f"{name}.log")
    try:
        yield proc
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- /proc


def test_scanner_finds_a_component_with_its_start_time_and_flags(tmp_path: Path) -> None:
    """A running kube-scheduler is found by argv[0], with a start time within the scanner's precision."""
    before = time.time()
    with _fake(tmp_path, "kube-scheduler", "--kubeconfig=/etc/kubernetes/scheduler.conf", "--leader-elect",
               "positional") as proc:
        after = time.time()
        (inst,) = wait_for("the scheduler", lambda: _mine(proc).processes())
        assert inst.component is Component.KUBE_SCHEDULER
        assert (inst.pid, inst.source, inst.ident) == (proc.pid, "proc", f"pid {proc.pid}")
        assert inst.flags == {"kubeconfig": "/etc/kubernetes/scheduler.conf", "leader-elect": ""}
        assert inst.files() == {"kubeconfig": "/etc/kubernetes/scheduler.conf"}
        assert inst.precision <= 0.05  # /proc/uptime refined btime
        tick = 1 / os.sysconf("SC_CLK_TCK")
        assert before - inst.precision - tick <= inst.started_at.timestamp() <= after + tick
        assert inst.to_dict()["started_at"].endswith("Z")
    assert not _mine(proc).processes()


def test_comm_is_enough_when_argv0_says_otherwise(tmp_path: Path) -> None:
    """A process whose argv[0] was rewritten is still known by its 15-character comm (kube-controller)."""
    exe = component_bin(tmp_path / "bin", "kube-controller-manager")
    proc = subprocess.Popen(["python-wrapper", str(FAKE_COMPONENT)], executable=str(exe),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (inst,) = wait_for("the controller-manager", lambda: _mine(proc).processes())
        assert inst.component is Component.KUBE_CONTROLLER_MANAGER
        assert inst.argv[0] == "python-wrapper"
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "kube-controller"
    finally:
        stop_process(proc)


def test_other_programs_and_zombies_are_ignored(tmp_path: Path) -> None:
    """Negative controls: a look-alike name is not a component, and a killed, unreaped etcd is gone."""
    with _fake(tmp_path, "kube-apiserver-proxy") as other:
        time.sleep(0.2)
        assert not _mine(other).processes()
    zombie = start_fake(tmp_path / "bin", "etcd", [], tmp_path / "etcd.log")
    try:
        wait_for("etcd", lambda: _mine(zombie).processes())
        os.kill(zombie.pid, signal.SIGKILL)
        wait_for("a zombie", lambda: Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                 == "Z")
        assert not _mine(zombie).processes()
    finally:
        zombie.wait()


def test_host_proc_mounted_elsewhere(tmp_path: Path) -> None:
    """A second procfs mount (as a pod's /host/proc) shows the same components."""
    mnt = tmp_path / "hostproc"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "proc", "proc", str(mnt)], capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a procfs here (needs root and mount permission)")
    try:
        with _fake(tmp_path, "kube-apiserver") as proc:
            here = wait_for("the apiserver", lambda: _mine(proc).processes())
            there = ProcScanner(mnt, match=lambda i: i.pid == proc.pid).processes()
            assert [(i.pid, i.component, i.argv) for i in there] == [(i.pid, i.component, i.argv) for i in here]
            assert abs((there[0].started_at - here[0].started_at).total_seconds()) < 0.05
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _crafted_proc(root: Path, *, uptime: str | None, btime: int = 1_700_000_000) -> Path:
    (root / "42").mkdir(parents=True)
    (root / "stat").write_text(f"cpu  1 2 3\nbtime {btime}\nprocesses 9\n")
    if uptime is not None:
        (root / "uptime").write_text(uptime)
    fields = ["S"] + ["0"] * 18 + ["12345"] + ["0"] * 30  # field 22 (starttime) is index 19 after comm
    (root / "42/stat").write_text(f"42 (kube-apiserver) x) {' '.join(fields)}\n")
    (root / "42/cmdline").write_bytes(b"/usr/local/bin/kube-apiserver\0--tls-cert-file=/etc/k/a.crt\0")
    (root / "self").mkdir()  # not a pid: ignored
    return root


def test_crafted_proc_tree_btime_fallback(tmp_path: Path) -> None:
    """A /proc copy without uptime (a real procfs always has one) falls back to btime, precision 1 s."""
    proc = _crafted_proc(tmp_path / "p", uptime=None)
    (inst,) = ProcScanner(proc).processes()
    hz = os.sysconf("SC_CLK_TCK")
    assert inst.started_at.timestamp() == pytest.approx(1_700_000_000 + 12345 / hz)
    assert inst.precision == 1.0
    assert inst.flags == {"tls-cert-file": "/etc/k/a.crt"}


def test_crafted_proc_tree_refines_and_rejects_uptime(tmp_path: Path) -> None:
    """Uptime that agrees with btime refines it; uptime that does not is ignored (copied /proc, other clock)."""
    now = 1_700_000_100.25
    good = ProcScanner(_crafted_proc(tmp_path / "g", uptime="99.75 1.0\n"), clock=lambda: now)
    boot, precision = good.boot_time()
    assert boot == pytest.approx(1_700_000_000.5)
    assert precision == 0.02
    bad = ProcScanner(_crafted_proc(tmp_path / "b", uptime="5000.00 1.0\n"), clock=lambda: now)
    assert bad.boot_time() == (1_700_000_000.0, 1.0)


def test_unreadable_proc_is_a_node_error(tmp_path: Path) -> None:
    """A /proc that is not there gives NodeError naming it."""
    with pytest.raises(NodeError, match="nope"):
        ProcScanner(tmp_path / "nope").processes()
    assert isinstance(scan_processes(), tuple)


@pytest.mark.parametrize(("name", "expected"), [
    ("etcd", Component.ETCD), ("/usr/bin/etcd", Component.ETCD), ("kube-controller", Component.KUBE_CONTROLLER_MANAGER),
    ("kube-controller-manager", Component.KUBE_CONTROLLER_MANAGER), ("kubelet", Component.KUBELET),
    ("etcdctl", None), ("kubectl", None), ("kube-proxy", None), ("POD", None),
])
def test_component_from_name(name: str, expected: Component | None) -> None:
    """Program and container names map to the five daemons, nothing else."""
    assert component_from_name(name) is expected


def test_parse_flags() -> None:
    """Only --name=value carries a value; bare flags are empty; positionals are ignored."""
    assert parse_flags(["--a=1", "--b", "c", "-d=2", "--e=x=y", "--"]) == {"a": "1", "b": "", "e": "x=y"}


def test_combined_observer(tmp_path: Path) -> None:
    """Several observers read as one."""
    with _fake(tmp_path, "kube-scheduler") as a, _fake(tmp_path, "kube-apiserver") as b:
        both = CombinedObserver(_mine(a), _mine(b))
        found = wait_for("both", lambda: len(both.instances()) == 2 and both.instances())
        assert sorted(i.component.value for i in found) == ["kube-apiserver", "kube-scheduler"]
        assert all(isinstance(i, Instance) for i in found)


# --------------------------------------------------------------------------- served certificates


def test_served_certificate_matches_the_file_it_was_loaded_from(tmp_path: Path,
                                                                 demo: kubepki.testing.DemoNode) -> None:
    """A real TLS server serving apiserver.crt matches it on disk, not another certificate (negative control)."""
    pki = demo.root / "etc/kubernetes/pki"
    port = free_port()
    with _fake(tmp_path, "kube-apiserver", f"--tls-cert-file={pki}/apiserver.crt",
               f"--tls-private-key-file={pki}/apiserver.key", f"--secure-port={port}"):
        served = wait_for("TLS", lambda: (s := fetch_served_certificate("127.0.0.1", port)).ok and s)
        assert served.status is ServedStatus.OK and len(served.sha256 or "") == 64
        ok = compare_served(served, (pki / "apiserver.crt").read_bytes(), path="/etc/kubernetes/pki/apiserver.crt",
                            component=Component.KUBE_APISERVER)
        assert (ok.status, ok.matches) == (CheckStatus.MATCH, True)
        other = compare_served(served, (pki / "front-proxy-client.crt").read_bytes(), path="x.crt")
        assert (other.status, other.matches) == (CheckStatus.MISMATCH, False)
        assert "other than x.crt" in other.message
        garbage = compare_served(served, b"not a certificate")
        assert garbage.status is CheckStatus.NO_DISK_CERTIFICATE and garbage.matches is None
        checks = verify_served(demo.as_node(), ports={"kube-apiserver": port}, components=["kube-apiserver"])
        assert [c.status for c in checks] == [CheckStatus.MATCH]
        shown = checks[0].to_dict()
        assert shown["served"]["port"] == port and shown["status"] == "match"


def test_connection_refused_is_a_result() -> None:
    """Nothing listening: status refused, no exception."""
    port = free_port()
    served = fetch_served_certificate("127.0.0.1", port, timeout=1)
    assert (served.status, served.der, served.ok) == (ServedStatus.REFUSED, None, False)
    check = compare_served(served, None)
    assert check.status is CheckStatus.UNAVAILABLE and "refused" in check.message


def test_silent_server_is_a_timeout() -> None:
    """A listener that never answers the handshake: status timeout after the given time."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        start = time.monotonic()
        served = fetch_served_certificate("127.0.0.1", srv.getsockname()[1], timeout=0.3)
        assert served.status is ServedStatus.TIMEOUT
        assert time.monotonic() - start < 3


def test_plain_tcp_server_is_a_tls_error() -> None:
    """A server that is not TLS: status tls-error."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def answer() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        t = threading.Thread(target=answer)
        t.start()
        served = fetch_served_certificate("127.0.0.1", srv.getsockname()[1], timeout=2)
        t.join()
    assert served.status is ServedStatus.TLS_ERROR


def test_sni_is_sent(demo: kubepki.testing.DemoNode) -> None:
    """server_name reaches the server as SNI; an IP host sends none."""
    pki = demo.root / "etc/kubernetes/pki"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
    seen: list[str | None] = []
    ctx.sni_callback = lambda _sock, name, _ctx: seen.append(name)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(2)

        def serve(n: int) -> None:
            for _ in range(n):
                conn, _ = srv.accept()
                with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True):
                    pass

        t = threading.Thread(target=serve, args=(2,))
        t.start()
        port = srv.getsockname()[1]
        a = fetch_served_certificate("127.0.0.1", port, server_name="kubernetes", timeout=2)
        b = fetch_served_certificate("127.0.0.1", port, timeout=2)
        t.join()
    assert a.ok and b.ok and a.server_name == "kubernetes" and b.server_name is None
    assert seen == ["kubernetes", None]


def test_serving_paths_and_ports(demo: kubepki.testing.DemoNode, tmp_path: Path) -> None:
    """Serving certificates and ports come from flags, then the manifest, then the catalog and defaults."""
    node = demo.as_node()
    assert str(serving_cert_path(node, "etcd")) == "/etc/kubernetes/pki/etcd/server.crt"
    assert serving_cert_path(node, "kube-scheduler") is None  # in-memory self-signed
    assert str(serving_cert_path(node, "kubelet")) == "/var/lib/kubelet/pki/kubelet.crt"
    mapped = serving_cert_path(node, "kube-apiserver", {"tls-cert-file": f"{demo.root}/etc/kubernetes/pki/x.crt"})
    assert str(mapped) == "/etc/kubernetes/pki/x.crt"
    assert str(to_node_path(Node("/"), "/etc/a")) == "/etc/a"
    assert endpoint_port("etcd", {"listen-client-urls": "https://10.0.0.11:2379,https://127.0.0.1:2399"}) == 2399
    assert endpoint_port("etcd", {"listen-client-urls": "https://10.0.0.11:2379"}) == 2379
    assert endpoint_port("kube-apiserver", {"secure-port": "6443"}) == 6443
    assert endpoint_port("kubelet", {"port": "10250"}) == 10250
    assert endpoint_port("kube-scheduler", {}) is None
    ext = kubepki.testing.build_node(tmp_path / "ext", external_etcd=True,
                                     issued_at=dt.datetime(2026, 1, 1, tzinfo=UTC)).as_node()
    assert serving_cert_path(ext, "etcd") is None
    rotated = ext.root / "var/lib/kubelet/pki/kubelet-server-current.pem"
    rotated.write_bytes((ext.root / "var/lib/kubelet/pki/kubelet.crt").read_bytes())
    assert str(serving_cert_path(ext, "kubelet")) == "/var/lib/kubelet/pki/kubelet-server-current.pem"


def test_import_kubepki_stays_light_after_observing() -> None:
    """Observing and planning never import the docker SDK."""
    code = ("import sys, kubepki\n"
            "from kubepki.restarts._restarts import plan_restarts, detect\n"
            "from kubepki.restarts._observe import scan_processes\n"
            "scan_processes()\n"
            "print('docker' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------------------
# Which node a process belongs to


def _serving_flags(prefix: str, port: int) -> list[str]:
    pki = f"{prefix}/etc/kubernetes/pki"
    return [f"--secure-port={port}", f"--tls-cert-file={pki}/apiserver.crt",
            f"--tls-private-key-file={pki}/apiserver.key", f"--client-ca-file={pki}/ca.crt"]


def _start_in_mount_namespace(bin_dir: Path, etc: Path, name: str, args: list[str],
                              log: Path) -> subprocess.Popen[bytes]:
    """``name`` in a private mount namespace whose /etc is a bind mount of ``etc`` (as a node in a sandbox)."""
    script = 'mount --bind "$1" /etc && shift && exec "$@"'
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(etc),
             str(component_bin(bin_dir, name)), str(FAKE_COMPONENT), *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[Node, Node, dict[str, subprocess.Popen[bytes]]]]:
    """Node A's kube-apiserver in a private mount namespace naming /etc/kubernetes/...; node B's on the host
    naming B's tree; and a kube-scheduler naming no file at all. Stopped by PID at the end."""
    if os.geteuid() != 0 or not Path("/usr/bin/unshare").exists():
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    issued = dt.datetime.now(UTC) - dt.timedelta(days=1)
    a = kubepki.testing.build_node(tmp_path / "a", issued_at=issued)
    b = kubepki.testing.build_node(tmp_path / "b", issued_at=issued)
    bin_dir, log = tmp_path / "bin", tmp_path / "components.log"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["a"] = _start_in_mount_namespace(bin_dir, a.root / "etc", "kube-apiserver",
                                               _serving_flags("", free_port()), log)
        procs["b"] = start_fake(bin_dir, "kube-apiserver", _serving_flags(str(b.root), free_port()), log)
        procs["bare"] = start_fake(bin_dir, "kube-scheduler", ["--leader-elect=true"], log)
        ours = {p.pid for p in procs.values()}
        wait_for("the three components", lambda: {i.pid for i in ProcScanner(
            match=lambda i: i.pid in ours).instances()} == ours)
        yield a.as_node(), b.as_node(), procs
    finally:
        for proc in procs.values():
            stop_process(proc)


def test_each_node_sees_only_its_own_components(two_nodes: tuple[Node, Node, dict[str, subprocess.Popen[bytes]]],
                                                ) -> None:
    """Processes are matched to a node by the files their flags name, through /proc/PID/root, by inode.

    A's kube-apiserver names /etc/kubernetes/pki/... inside its own mount namespace, where /etc is A's tree;
    B's names B's tree by its full path. Negative control: without a node, all three are seen by name.
    """
    a, b, procs = two_nodes
    assert [i.pid for i in ProcScanner(node=a).instances()] == [procs["a"].pid]
    assert [i.pid for i in ProcScanner(node=b).instances()] == [procs["b"].pid]
    ours = {p.pid for p in procs.values()}
    everyone = ProcScanner(match=lambda i: i.pid in ours).instances()
    assert sorted(i.pid or 0 for i in everyone) == sorted(ours)
    scanner = ProcScanner(node=a, match=lambda i: i.pid in ours)
    scanner.instances()
    assert scanner.foreign == (procs["b"].pid,)
    assert [s.split(":")[0] for s in scanner.skipped] == [f"pid {procs['bare'].pid} (kube-scheduler)"]
    # A's process names the host's /etc path, which is not A's file as this process sees it.
    assert not Path("/etc/kubernetes/pki/apiserver.crt").exists()


def test_detect_reports_only_this_nodes_components(two_nodes: tuple[Node, Node, dict[str, subprocess.Popen[bytes]]],
                                                   ) -> None:
    """detect() on A, with the default observer, finds A's kube-apiserver only, and none stale."""
    a, b, procs = two_nodes
    found = kubepki.restarts.detect(a, served=False)
    assert [(i.component, i.pid) for i in found.instances] == [(Component.KUBE_APISERVER, procs["a"].pid)]
    assert found.stale == ()
    assert [i.pid for i in kubepki.restarts.detect(b, served=False).instances] == [procs["b"].pid]


def test_a_component_with_a_replaced_file_bind_mount_stays_this_nodes(tmp_path: Path) -> None:
    """kube-scheduler with only scheduler.conf bind-mounted (as kubeadm's pod does): after an atomic renewal
    of the file its mount still pins the old inode, yet it is still this node's scheduler — and now stale.

    Negative control: another node with the same layout does not claim it, before or after.
    """
    if os.geteuid() != 0 or not Path("/usr/bin/unshare").exists():
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    issued = dt.datetime.now(UTC) - dt.timedelta(days=1)
    a = kubepki.testing.build_node(tmp_path / "a", issued_at=issued).as_node()
    b = kubepki.testing.build_node(tmp_path / "b", issued_at=issued).as_node()
    conf = a.root / "etc/kubernetes/scheduler.conf"
    script = ('mount -t tmpfs kubepki-test /etc && mkdir /etc/kubernetes && : > /etc/kubernetes/scheduler.conf '
              '&& mount --bind "$1" /etc/kubernetes/scheduler.conf && shift && exec "$@"')
    with open(tmp_path / "scheduler.log", "ab") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(conf),
             str(component_bin(tmp_path / "bin", "kube-scheduler")), str(FAKE_COMPONENT),
             "--kubeconfig=/etc/kubernetes/scheduler.conf", "--leader-elect=true"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        mine = lambda i: i.pid == proc.pid  # noqa: E731
        wait_for("the scheduler", lambda: ProcScanner(match=mine).instances())
        assert [i.pid for i in ProcScanner(node=a).instances()] == [proc.pid]
        assert ProcScanner(node=b, match=mine).instances() == ()
        time.sleep(0.05)  # the write below comes strictly after the start, beyond its precision
        new = conf.with_name("scheduler.conf.new")
        new.write_bytes(conf.read_bytes())
        os.replace(new, conf)  # a renewal's atomic rename: the mount keeps the old inode
        assert os.stat(f"/proc/{proc.pid}/root/etc/kubernetes/scheduler.conf").st_ino != conf.stat().st_ino
        assert [i.pid for i in ProcScanner(node=a).instances()] == [proc.pid]
        assert ProcScanner(node=b, match=mine).instances() == ()
        stale = kubepki.restarts.detect(a, served=False).stale
        assert [(s.component, s.instance.pid if s.instance else None) for s in stale] == [
            (Component.KUBE_SCHEDULER, proc.pid)]
    finally:
        stop_process(proc)


def test_a_file_outside_the_nodes_kubeadm_directories_tells_nothing(tmp_path: Path) -> None:
    """H2 (docs/realcluster-findings.md): a process is not the node's because a file it names is one the node
    also sees — a /tmp path is the same file in every mount namespace that does not hide /tmp. Only the node's
    kubeadm directories count; negative control: the same process naming the node's pki is the node's."""
    issued = dt.datetime.now(UTC) - dt.timedelta(days=1)
    a = kubepki.testing.build_node(tmp_path / "a", issued_at=issued)
    shared = a.root / "tmp/other-suite"
    shared.mkdir(parents=True)
    for name in ("apiserver.crt", "apiserver.key", "ca.crt"):
        (shared / name).write_bytes((a.root / "etc/kubernetes/pki" / name).read_bytes())
    bin_dir, log = tmp_path / "bin", tmp_path / "components.log"
    outside = start_fake(bin_dir, "kube-apiserver", [f"--secure-port={free_port()}",
                         f"--tls-cert-file={shared}/apiserver.crt", f"--tls-private-key-file={shared}/apiserver.key",
                         f"--client-ca-file={shared}/ca.crt"], log)
    inside = start_fake(bin_dir, "kube-apiserver", _serving_flags(str(a.root), free_port()), log)
    try:
        ours = {outside.pid, inside.pid}
        wait_for("both", lambda: {i.pid for i in ProcScanner(match=lambda i: i.pid in ours).instances()} == ours)
        scanner = ProcScanner(node=a.as_node(), match=lambda i: i.pid in ours)
        assert [i.pid for i in scanner.instances()] == [inside.pid]
        assert scanner.foreign == (outside.pid,)
    finally:
        stop_process(outside)
        stop_process(inside)
