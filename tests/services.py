"""Real services for the restart tests: a test kubelet, etcd, a Docker engine.

Everything listens on 127.0.0.1 (or a unix socket) with its own ports, sockets
and data directories under a temporary directory, and is stopped by the PID it
was started with. Nothing here talks to anything beyond this machine.

- :class:`TestKubelet` plays the kubelet for the manifest method: every
  ``poll`` seconds it lists ``<root>/etc/kubernetes/manifests`` and starts or
  stops one process per static pod manifest, with the manifest's flags rewritten
  to the node root and to free loopback ports. etcd runs as the real
  ``/usr/bin/etcd``; the other components, whose binaries are not installed here,
  run as ``tests/fake_component.py`` under their own name.
- :class:`DockerEngine` runs ``dockerd`` on its own socket, data root and exec
  root, and :class:`DockerKubelet` plays the kubelet on it: when a component's
  container is removed, it creates the next attempt with the kubelet's labels.
- :func:`reissue` writes a new certificate and key for an existing one, signed
  by its CA, as a renewal would; :func:`self_signed_pair` a self-signed pair,
  as the kubelet makes ``kubelet.crt``.

Tests skip with the reason when ``etcd`` or ``dockerd`` is absent
(``apt-get install etcd-server docker.io busybox-static``).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

FAKE_COMPONENT = Path(__file__).with_name("fake_component.py")
ETCD = shutil.which("etcd")
DOCKERD = shutil.which("dockerd")
BUSYBOX = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p)), None)
#: The host this test machine's services listen on.
LOOPBACK = "127.0.0.1"
# Flags of kubeadm 1.34's etcd manifest that etcd 3.4 (Debian 12) does not know.
_ETCD_34_UNKNOWN = frozenset({"feature-gates", "watch-progress-notify-interval"})


def require_etcd() -> str:
    """The etcd binary, or skip the test saying how to get it."""
    if ETCD is None:
        pytest.skip("etcd is not installed (Debian: apt-get install etcd-server)")
    return ETCD


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0, poll: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """Stop a process started with ``start_new_session=True``: its group by its PID, TERM then KILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def tls_accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# Certificates


def reissue(root: Path, base: str, ca: str, *, now: dt.datetime | None = None) -> x509.Certificate:
    """Replace ``<pki>/<base>.crt`` and ``.key`` with a new key and certificate signed by ``<pki>/<ca>``.

    Subject, SANs and usages are copied from the old certificate, as kubeadm's
    renewal copies them; the key is a new ECDSA P-256 key (fast to make). The
    key is written first, so a server that reads both per handshake (etcd) may
    see a mismatched pair for a moment, never a half-written file.
    """
    pki = root / "etc/kubernetes/pki"
    when = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    old = x509.load_pem_x509_certificate((pki / f"{base}.crt").read_bytes())
    ca_cert = x509.load_pem_x509_certificate((pki / f"{ca}.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / f"{ca}.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - dt.timedelta(minutes=5))
        .not_valid_after(when + dt.timedelta(days=365))
    )
    for ext in old.extensions:
        if isinstance(ext.value, x509.AuthorityKeyIdentifier | x509.SubjectKeyIdentifier):
            continue
        builder = builder.add_extension(ext.value, critical=ext.critical)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
        critical=False,
    )
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    _write(pki / f"{base}.key", key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                                   serialization.NoEncryption()), 0o600)
    _write(pki / f"{base}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


def self_signed_pair(cert_path: Path, key_path: Path, common_name: str) -> x509.Certificate:
    """Write a new self-signed serving certificate and key, as the kubelet makes ``kubelet.crt``.

    The key is written first (see :func:`reissue`); both paths' directories must exist.
    """
    when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - dt.timedelta(minutes=5))
        .not_valid_after(when + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def der(cert: x509.Certificate) -> bytes:
    """DER bytes of ``cert``."""
    return cert.public_bytes(serialization.Encoding.DER)


def touch_later(path: Path) -> None:
    """Rewrite ``path`` with its own bytes, as a renewal that wrote it would."""
    _write(path, path.read_bytes(), path.stat().st_mode & 0o777)


# --------------------------------------------------------------------------------------
# Component processes


def component_bin(bin_dir: Path, name: str) -> Path:
    """A symlink called ``name`` to this Python, so the fake runs with argv[0] and comm ``name``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / name
    if not link.exists():
        link.symlink_to(os.path.realpath(sys.executable))
    return link


def start_fake(bin_dir: Path, name: str, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Run tests/fake_component.py as ``name`` with ``args``, in its own session."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(component_bin(bin_dir, name)), str(FAKE_COMPONENT), *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


@attrs.define
class _Pod:
    manifest: str
    key: tuple[int, int]
    component: str
    proc: subprocess.Popen[bytes]
    exited_at: float | None = None


class TestKubelet:
    """Runs the static pods of ``<root>/etc/kubernetes/manifests`` as local processes.

    Flags naming ``/etc/kubernetes/...`` or ``/var/lib/...`` are rewritten to the
    node root; ``--secure-port`` and etcd's URLs get free loopback ports, listed
    in :attr:`ports` (``kube-apiserver``, ``etcd``, ``etcd-peer``, ``etcd-metrics``).
    ``extra_args`` adds arguments per component. A process that exits while its
    manifest is present is started again after a short back-off, as the kubelet
    does. Use it as a context manager; leaving stops every process it started.
    """

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, root: Path, workdir: Path, *, poll: float = 0.1,
                 extra_args: Mapping[str, Sequence[str]] | None = None) -> None:
        self.root = root
        self.workdir = workdir
        self.poll = poll
        self.extra_args = {k: list(v) for k, v in (extra_args or {}).items()}
        self.manifests = root / "etc/kubernetes/manifests"
        self.bin_dir = workdir / "bin"
        self.ports = {"kube-apiserver": free_port(), "etcd": free_port(), "etcd-peer": free_port(),
                      "etcd-metrics": free_port()}
        self._url_ports = {2379: self.ports["etcd"], 2380: self.ports["etcd-peer"],
                           2381: self.ports["etcd-metrics"], 6443: self.ports["kube-apiserver"]}
        self.starts: collections.Counter[str] = collections.Counter()
        self.stops: collections.Counter[str] = collections.Counter()
        self._pods: dict[str, _Pod] = {}
        #: While set, the kubelet looks at nothing (a kubelet that hangs).
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="test-kubelet", daemon=True)
        self._lock = threading.Lock()
        workdir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> TestKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop watching and stop every process (by PID)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        with self._lock:
            for pod in self._pods.values():
                stop_process(pod.proc)
            self._pods.clear()

    def pid(self, component: str) -> int | None:
        """The PID of ``component``'s running process, if any."""
        with self._lock:
            for pod in self._pods.values():
                if pod.component == component and pod.proc.poll() is None:
                    return pod.proc.pid
        return None

    def pids(self) -> list[int]:
        """Every PID this kubelet started that still runs."""
        with self._lock:
            return [p.proc.pid for p in self._pods.values() if p.proc.poll() is None]

    def owns(self, argv: Sequence[str]) -> bool:
        """True for processes started for this node root (the observer's filter)."""
        return any(str(self.root) in a for a in argv)

    # -- the loop ------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.paused.is_set():
                    self._sync()
            except Exception as exc:
                (self.workdir / "kubelet-errors.log").open("a").write(f"{exc!r}\n")
            self._stop.wait(self.poll)

    def _sync(self) -> None:
        present: dict[str, tuple[int, int]] = {}
        for f in sorted(self.manifests.iterdir()) if self.manifests.is_dir() else []:
            if f.name.startswith(".") or not f.is_file():
                continue
            st = f.stat()
            present[f.name] = (st.st_ino, st.st_mtime_ns)
        with self._lock:
            for name, pod in list(self._pods.items()):
                if self._stop.is_set():
                    return
                if present.get(name) != pod.key:
                    stop_process(pod.proc)
                    self.stops[pod.component] += 1
                    del self._pods[name]
                elif pod.proc.poll() is not None:
                    now = time.monotonic()
                    if pod.exited_at is None:
                        pod.exited_at = now
                    elif now - pod.exited_at > 0.5:  # back-off, then start it again
                        del self._pods[name]
            for name, key in present.items():
                if name not in self._pods and not self._stop.is_set():
                    self._pods[name] = self._start(name, key)

    def _start(self, name: str, key: tuple[int, int]) -> _Pod:
        component, command = manifest_command(self.manifests / name)
        args = [a for a in (self._rewrite(component, arg) for arg in command[1:]) if a is not None]
        args += self.extra_args.get(component, [])
        log = self.workdir / f"{component}.log"
        if component == "etcd":
            with open(log, "ab") as out:
                proc = subprocess.Popen([require_etcd(), *args], stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir)
        else:
            proc = start_fake(self.bin_dir, component, args, log)
        self.starts[component] += 1
        return _Pod(manifest=name, key=key, component=component, proc=proc)

    def _rewrite(self, component: str, arg: str) -> str | None:
        return rewrite_arg(component, arg, root=self.root, url_ports=self._url_ports,
                           secure_port=self.ports.get(component))


def rewrite_arg(component: str, arg: str, *, root: Path | None, url_ports: Mapping[int, int],
                secure_port: int | None = None) -> str | None:
    """One manifest argument made runnable here; None drops it.

    URLs go to 127.0.0.1 with ports from ``url_ports``; ``--secure-port`` becomes
    ``secure_port``; node paths move under ``root`` (unless None); flags etcd 3.4
    does not know are dropped.
    """
    if not arg.startswith("--") or "=" not in arg:
        return arg
    name, _, value = arg[2:].partition("=")
    if component == "etcd" and name in _ETCD_34_UNKNOWN:
        return None
    if name == "secure-port" and secure_port is not None:
        value = str(secure_port)
    elif "://" in value:
        value = ",".join(dict.fromkeys(_url(item, url_ports) for item in value.split(",")))
    elif root is not None and value.startswith(("/etc/kubernetes", "/var/lib")):
        value = f"{root}{value}"
    return f"--{name}={value}"


def _url(item: str, url_ports: Mapping[int, int]) -> str:
    label, sep, url = item.rpartition("=") if "=" in item.split("://", 1)[0] else ("", "", item)
    parts = urlsplit(url)
    port = url_ports.get(parts.port or 0, parts.port)
    return f"{label}{sep}{parts.scheme}://{LOOPBACK}:{port}{parts.path}"


def manifest_command(path: Path) -> tuple[str, list[str]]:
    """The component and the command line (binary name first) of a static pod manifest."""
    doc = yaml.safe_load(path.read_text())
    container = doc["spec"]["containers"][0]
    return doc["metadata"]["labels"]["component"], list(container.get("command", [])) + list(
        container.get("args", []))


# --------------------------------------------------------------------------------------
# Docker


class DockerEngine:
    """``dockerd`` on its own socket, data root and exec root under ``base``.

    Started as the issue describes: no iptables, no bridge, overlay2 (vfs when
    overlay2 fails), the default cgroupfs driver since there is no systemd.
    """

    IMAGE = "kubepki-test/busybox:1"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.driver: str | None = None

    def start(self, timeout: float = 40.0) -> None:
        """Start the engine; :class:`RuntimeError` saying why when it cannot."""
        if DOCKERD is None:
            raise RuntimeError("dockerd is not installed (Debian: apt-get install docker.io)")
        errors = []
        for driver in ("overlay2", "vfs"):
            for sub in ("data", "exec"):
                shutil.rmtree(self.base / sub, ignore_errors=True)
            log = self.base / f"dockerd-{driver}.log"
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(
                    [DOCKERD, "--iptables=false", "--ip6tables=false", "--bridge=none",
                     f"--storage-driver={driver}", "--host", self.url,
                     "--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec"),
                     "--pidfile", str(self.base / "docker.pid")],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            if self._ready(timeout):
                self.driver = driver
                return
            self.stop()
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            errors.append(f"{driver}: {' | '.join(tail) or 'no output'}")
        raise RuntimeError("dockerd did not start: " + "; ".join(errors))

    def _ready(self, timeout: float) -> bool:
        import docker

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            if self.socket.exists():
                with contextlib.suppress(Exception):
                    client = docker.APIClient(base_url=self.url, version="auto", timeout=5)
                    try:
                        if client.ping():
                            return True
                    finally:
                        client.close()
            time.sleep(0.1)
        return False

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A ``docker.APIClient`` for this engine, closed afterwards."""
        import docker

        client = docker.APIClient(base_url=self.url, version="auto", timeout=30)
        try:
            yield client
        finally:
            client.close()

    def import_busybox(self) -> str:
        """Import an image made of busybox-static and its applets (no registry needed)."""
        if BUSYBOX is None:
            raise RuntimeError("busybox is not installed (Debian: apt-get install busybox-static)")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for d in ("bin", "tmp"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in ("sh", "sleep", "true"):
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        repo, tag = self.IMAGE.split(":")
        with self.client() as api:
            api.import_image_from_data(buf.getvalue(), repository=repo, tag=tag)
        return self.IMAGE

    def import_etcd(self) -> str:
        """Import an image holding busybox, the host's etcd and the libraries ``ldd`` names for it."""
        etcd = require_etcd()
        if BUSYBOX is None:
            raise RuntimeError("busybox is not installed (Debian: apt-get install busybox-static)")
        libs = re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", etcd], capture_output=True, text=True,
                                                         check=False).stdout)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in (BUSYBOX, etcd, *libs):
                tar.add(os.path.realpath(path), arcname=path.lstrip("/"))
            for d in ("tmp", "var/lib/etcd"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(info)
        with self.client() as api:
            api.import_image_from_data(buf.getvalue(), repository="kubepki-test/etcd", tag="1")
        return "kubepki-test/etcd:1"

    def stop(self) -> None:
        """Remove every container, then stop dockerd and its containerd by PID."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(Exception), self.client() as api:
                for c in api.containers(all=True):
                    api.remove_container(c["Id"], force=True)
        stop_process(self.proc, grace=20)
        self.proc = None
        # dockerd 20.10 leaves its netns bind mount behind; undo every mount it made here.
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(f"{self.base}/")), reverse=True):
            subprocess.run(["umount", point], capture_output=True, check=False)
        pidfile = self.base / "exec/containerd/containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                with contextlib.suppress(AssertionError):
                    wait_for("containerd to stop", lambda: not pid_alive(pid), timeout=10)


@attrs.frozen
class PodSpec:
    """A static pod the Docker test kubelet keeps running."""

    component: str
    node: str = "cp1"
    uid: str = "0123456789abcdef"
    command: tuple[str, ...] = ("sleep", "3600")
    image: str = "kubepki-test/busybox:1"
    #: ``none`` (isolated) or ``host`` (for a component that serves on 127.0.0.1).
    network: str = "none"
    #: ``host:container`` bind mounts.
    binds: tuple[str, ...] = ()

    @property
    def pod(self) -> str:
        """The static pod's name, ``<component>-<node>``."""
        return f"{self.component}-{self.node}"


class DockerKubelet:
    """Keeps one container per :class:`PodSpec` running, as the kubelet does through cri-dockerd.

    When a pod's container is gone, the next attempt is created with the
    kubelet's labels and cri-dockerd's name ``k8s_<container>_<pod>_kube-system_<uid>_<attempt>``,
    with ``--network none``.
    """

    def __init__(self, engine: DockerEngine, pods: Sequence[PodSpec], *, poll: float = 0.1) -> None:
        self.engine = engine
        self.pods = list(pods)
        self.poll = poll
        self.attempts: dict[str, int] = {}
        #: While set, no container is created (a kubelet that hangs).
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="docker-kubelet", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> DockerKubelet:
        with self.engine.client() as api:
            self._sync(api)  # the first attempts exist before the test starts
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        with contextlib.suppress(Exception), self.engine.client() as api:
            for c in api.containers(all=True, filters={"label": "kubepki-test=1"}):
                api.remove_container(c["Id"], force=True)

    def _loop(self) -> None:
        with self.engine.client() as api:
            while not self._stop.wait(self.poll):
                if self.paused.is_set():
                    continue
                try:
                    self._sync(api)
                except Exception as exc:
                    self.errors.append(repr(exc))

    def _sync(self, api: Any) -> None:
        running = api.containers(filters={"label": ["kubepki-test=1"]})
        have = {(c["Labels"].get("io.kubernetes.pod.name"), c["Labels"].get("io.kubernetes.container.name"))
                for c in running}
        for spec in self.pods:
            if (spec.pod, spec.component) in have:
                continue
            attempt = self.attempts.get(spec.pod, -1) + 1
            self.attempts[spec.pod] = attempt
            labels = {
                "io.kubernetes.container.name": spec.component,
                "io.kubernetes.pod.name": spec.pod,
                "io.kubernetes.pod.namespace": "kube-system",
                "io.kubernetes.pod.uid": spec.uid,
                "kubepki-test": "1",
            }
            created = api.create_container(
                spec.image, command=list(spec.command), labels=labels,
                name=f"k8s_{spec.component}_{spec.pod}_kube-system_{spec.uid}_{attempt}",
                host_config=api.create_host_config(network_mode=spec.network, binds=list(spec.binds)),
            )
            api.start(created["Id"])
