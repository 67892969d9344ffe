"""A real single-node kubeadm v1.28.4 control plane for end-to-end tests.

:class:`RealCluster` brings up the real thing, loopback only, with no registry
and no systemd, and tears it down by PID:

- the Kubernetes binaries come from ``KUBEPKI_K8S_BIN`` (for example the
  official v1.28.4 release binaries), else they are decompressed from
  ``<repo>/../shared/k8s/v1.28.4/*.xz`` into a cache directory of the tests'
  own and checked against ``SHA256SUMS``;
- a private **mount namespace**, held by a ``sleep infinity`` process, binds
  ``<root>/etc``, ``<root>/var/lib``, ``<root>/var/log`` and ``<root>/run``
  over ``/etc``, ``/var/lib``, ``/var/log`` and ``/run``: inside it, kubeadm,
  the kubelet and the static pods use kubeadm's canonical paths unmodified;
  from the host the same tree is a node root (``kubepki --root ROOT``), and
  ``nsenter -t HOLDER -m -- kubepki …`` runs kubepki as on the node itself;
- Debian's **containerd** (with runc) runs inside the namespace on its own
  socket, root and state, with ``restrict_oom_score_adj`` (this machine may not
  lower OOM scores);
- the control-plane **images** are OCI image-layout tars written here, one
  layer each: the static component binary, and Debian's etcd 3.4 with its
  libc and loader, under kubeadm's image names; ``imagePullPolicy: Never``;
- kubeadm's own phases write certificates, kubeconfigs and manifests; the
  advertise address is a documentation address (kubeadm 1.28 refuses
  loopback) while every component binds 127.0.0.1 on ports of its own
  (:class:`Ports`), with kubeadm patches pointing the probes at them;
- the real **kubelet** runs with kubeadm's flags file, ``cgroupfs`` under a
  cgroup root of its own (:data:`CGROUP_ROOT`), and the sysctls it insists on
  writing shielded by bind mounts inside the namespace, so the host keeps its
  values;
- the apiserver writes an audit log (scheduler lease updates and
  SubjectAccessReviews only), so tests can see which client certificate a
  component really presents.

:meth:`RealCluster.stop` stops the kubelet, every containerd task, containerd,
then whatever is left in the cgroup root or the mount namespace, then the
holder, and removes the cgroups; it only ever signals PIDs it started or found
there. :func:`real_cluster` is the session fixture (loaded as a pytest plugin
by tests/conftest.py); it skips with the reason when something is missing,
and fails instead when ``KUBEPKI_REQUIRE_REALCLUSTER=1``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.client
import io
import json
import lzma
import os
import platform
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from cryptography import x509

REPO = Path(__file__).resolve().parent.parent
K8S_VERSION = "v1.28.4"
#: Where the shared, xz-compressed v1.28.4 binaries are (read-only).
SHARED_BINARIES = REPO.parent / "shared" / "k8s" / K8S_VERSION
BINARIES = ("kubeadm", "kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "pause")
#: The static pods kubeadm writes, in the order they come up.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: kubeadm 1.28 refuses a loopback advertise address; a documentation address (RFC 5737) is
#: put in the SANs and the manifests while every component binds 127.0.0.1.
ADVERTISE = "198.51.100.10"
LOOPBACK = "127.0.0.1"
NODE_NAME = "kubepki-rc"
#: The kubelet's cgroupRoot: /sys/fs/cgroup/<controller>/kubepki-realcluster.
CGROUP_ROOT = "kubepki-realcluster"
ENV_BIN = "KUBEPKI_K8S_BIN"
ENV_REQUIRE = "KUBEPKI_REQUIRE_REALCLUSTER"
ENV_KEEP = "KUBEPKI_REALCLUSTER_KEEP"
ETCD_IMAGE = "registry.k8s.io/etcd:3.5.9-0"
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
#: The audit log the apiserver writes, inside the node.
AUDIT_LOG = "/var/log/kubernetes/audit/audit.log"
#: Sysctls the kubelet writes when they differ; shielded inside the namespace.
_KUBELET_SYSCTLS = {
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
}
_HOST_ETC = ("hosts", "resolv.conf", "passwd", "group", "nsswitch.conf", "os-release", "ld.so.cache",
             "ld.so.conf", "machine-id", "localtime")
_EPOCH = 1_700_000_000
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class Unavailable(Exception):
    """This machine cannot run a real cluster (the message says why)."""


class ClusterError(Exception):
    """The cluster did not come up, or did not go away cleanly."""


@attrs.frozen
class Ports:
    """The node's TCP ports on 127.0.0.1, away from kubeadm's defaults and from the ephemeral range."""

    apiserver: int = 31643
    etcd_client: int = 31679
    etcd_peer: int = 31680
    etcd_metrics: int = 31681
    controller_manager: int = 31657
    scheduler: int = 31659
    kubelet: int = 31650
    kubelet_healthz: int = 31648

    def all(self) -> dict[str, int]:
        """Every port by name."""
        return attrs.asdict(self)

    def serving(self) -> dict[str, int]:
        """The TLS port of each component that serves one."""
        return {"etcd": self.etcd_client, "kube-apiserver": self.apiserver,
                "kube-controller-manager": self.controller_manager, "kube-scheduler": self.scheduler,
                "kubelet": self.kubelet}


@attrs.frozen
class Container:
    """A running container as containerd reports it."""

    id: str
    name: str  # io.kubernetes.container.name
    pod: str
    pid: int
    started_at: float  # the task's process start, seconds since the epoch


@attrs.frozen
class ApiResponse:
    """An apiserver response."""

    status: int
    data: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.data)


# --------------------------------------------------------------------------------------
# Prerequisites and binaries


def missing_prerequisites() -> str | None:
    """Why a real cluster cannot run here, or None."""
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (mount namespaces, cgroups, containerd)"
    for tool, pkg in (("unshare", "util-linux"), ("nsenter", "util-linux"), ("mount", "mount"),
                      ("containerd", "containerd"), ("ctr", "containerd"),
                      ("containerd-shim-runc-v2", "containerd"), ("runc", "runc"),
                      ("etcd", "etcd-server"), ("ldd", "libc-bin")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install {pkg})"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system at /sys/fs/cgroup"
    if os.environ.get(ENV_BIN):
        return None
    if not (SHARED_BINARIES / "SHA256SUMS").is_file():
        return (f"no Kubernetes {K8S_VERSION} binaries: set {ENV_BIN} to a directory with kubeadm, kubelet, "
                f"kube-apiserver, kube-controller-manager, kube-scheduler (and pause), or provide "
                f"{SHARED_BINARIES}/*.xz")
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sums(path: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def _unpack(src: Path, dest: Path, digest: str) -> None:
    """Decompress ``src`` (xz) to ``dest``, check its sha256, make it executable; keep a correct one."""
    if dest.is_file() and os.access(dest, os.X_OK) and _sha256(dest) == digest:
        return
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    with lzma.open(src) as fin, open(tmp, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
    if h.hexdigest() != digest:
        tmp.unlink()
        raise Unavailable(f"{src}: sha256 of the decompressed file is {h.hexdigest()}, SHA256SUMS says {digest}")
    tmp.chmod(0o755)
    os.replace(tmp, dest)


def kubernetes_binaries(cache: Path) -> dict[str, Path]:
    """The v1.28.4 binaries by name: from ``KUBEPKI_K8S_BIN``, else unpacked and checked into ``cache``.

    Official release binaries carry no ``pause``; it is then taken from the
    shared directory when there is one.
    """
    out: dict[str, Path] = {}
    given = os.environ.get(ENV_BIN)
    if given:
        for name in BINARIES:
            path = Path(given) / name
            if path.is_file() and os.access(path, os.X_OK):
                out[name] = path.resolve()
    need = [n for n in BINARIES if n not in out]
    if need:
        sums_file = SHARED_BINARIES / "SHA256SUMS"
        if not sums_file.is_file():
            raise Unavailable(f"{ENV_BIN}={given} lacks {', '.join(need)} and there is no {sums_file}")
        sums = _sums(sums_file)
        cache.mkdir(parents=True, exist_ok=True)
        for name in need:
            if name not in sums or not (SHARED_BINARIES / f"{name}.xz").is_file():
                raise Unavailable(f"no {name} binary ({SHARED_BINARIES}/{name}.xz or {ENV_BIN})")
            _unpack(SHARED_BINARIES / f"{name}.xz", cache / name, sums[name])
            out[name] = cache / name
    version = subprocess.run([str(out["kubeadm"]), "version", "-o", "short"], capture_output=True, text=True,
                             check=False, timeout=30).stdout.strip()
    if version != K8S_VERSION:
        raise Unavailable(f"{out['kubeadm']} is {version or 'unusable'}, the tests need {K8S_VERSION}")
    return out


# --------------------------------------------------------------------------------------
# OCI images, built offline


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size, info.linkname = kind, mode, _EPOCH, size, link
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def image_layer(files: Sequence[tuple[str, bytes]], *, executable: Sequence[str] = ()) -> bytes:
    """One uncompressed layer: ``files`` (path, bytes), their parent directories, and a minimal system."""
    base: list[tuple[str, bytes]] = [
        ("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"),
        ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        ("etc/nsswitch.conf", b"hosts: files dns\npasswd: files\ngroup: files\n"),
    ]
    dirs = ["tmp", "run", "var/run", "dev", "proc", "sys", "etc/kubernetes", "var/lib"]
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def mkdirs(path: str) -> None:
            parts = path.split("/")
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    tar.addfile(_tarinfo(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))

        for d in dirs:
            mkdirs(d)
        for path, data in [*base, *files]:
            name = path.strip("/")
            if "/" in name:
                mkdirs(name.rpartition("/")[0])
            mode = 0o755 if name in executable else 0o644
            tar.addfile(_tarinfo(name, tarfile.REGTYPE, mode, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def _blob(data: bytes) -> tuple[str, dict[str, Any]]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest, {"digest": digest, "size": len(data)}


def oci_image(path: Path, name: str, layer: bytes, *, entrypoint: Sequence[str] = ()) -> str:
    """Write an OCI image-layout tar of ``name`` with one ``layer``; return the manifest digest."""
    arch = _GOARCH.get(platform.machine(), platform.machine())
    layer_digest, layer_desc = _blob(layer)
    created = "2023-11-14T22:13:20Z"
    config = json.dumps({
        "architecture": arch, "os": "linux", "created": created,
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Entrypoint": list(entrypoint) or None,
                   "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created, "created_by": "kubepki tests/realcluster.py"}],
    }, sort_keys=True).encode()
    config_digest, config_desc = _blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }, sort_keys=True).encode()
    manifest_digest, manifest_desc = _blob(manifest)
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_desc,
                       "platform": {"architecture": arch, "os": "linux"},
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}],
    }, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tarinfo("blobs", tarfile.DIRTYPE, 0o755))
        tar.addfile(_tarinfo("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for member, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
                             (f"blobs/sha256/{layer_digest[7:]}", layer),
                             (f"blobs/sha256/{config_digest[7:]}", config),
                             (f"blobs/sha256/{manifest_digest[7:]}", manifest)):
            tar.addfile(_tarinfo(member, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))
    os.replace(tmp, path)
    return manifest_digest


def _shared_libraries(binary: str) -> list[str]:
    """The libraries (and loader) ``ldd`` names for a dynamic binary."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > 2 and parts[2].startswith("/"):
            libs.append(parts[2])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


def build_images(binaries: Mapping[str, Path], out: Path) -> dict[str, Path]:
    """Image tars by image name, rebuilt only when an input changed (a stamp of input digests)."""
    etcd = shutil.which("etcd")
    assert etcd is not None
    etcd = os.path.realpath(etcd)
    libs = _shared_libraries(etcd)
    inputs = {name: str(binaries[name]) for name in BINARIES if name not in ("kubeadm", "kubelet")}
    inputs["etcd"] = etcd
    stamp = {k: f"{v}:{os.stat(v).st_size}:{os.stat(v).st_mtime_ns}" for k, v in inputs.items()}
    stamp["libs"] = ",".join(f"{lib}:{os.stat(lib).st_size}" for lib in libs)
    stamp["format"] = "1"
    images = {
        PAUSE_IMAGE: out / "pause.tar",
        ETCD_IMAGE: out / "etcd.tar",
        **{f"registry.k8s.io/{c}:{K8S_VERSION}": out / f"{c}.tar"
           for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")},
    }
    stamp_file = out / "stamp.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp and all(
            p.is_file() for p in images.values()):
        return images
    out.mkdir(parents=True, exist_ok=True)
    oci_image(images[PAUSE_IMAGE], PAUSE_IMAGE,
              image_layer([("pause", binaries["pause"].read_bytes())], executable=["pause"]), entrypoint=["/pause"])
    for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        oci_image(images[f"registry.k8s.io/{c}:{K8S_VERSION}"], f"registry.k8s.io/{c}:{K8S_VERSION}",
                  image_layer([(f"usr/local/bin/{c}", binaries[c].read_bytes())],
                              executable=[f"usr/local/bin/{c}"]))
    files = [("usr/local/bin/etcd", Path(etcd).read_bytes())]
    files += [(lib.lstrip("/"), Path(os.path.realpath(lib)).read_bytes()) for lib in libs]
    oci_image(images[ETCD_IMAGE], ETCD_IMAGE,
              image_layer(files, executable=["usr/local/bin/etcd", *(lib.lstrip("/") for lib in libs)]))
    stamp_file.write_text(json.dumps(stamp, sort_keys=True))
    return images


# --------------------------------------------------------------------------------------
# Small helpers


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ClusterError("no btime in /proc/stat")


def process_start_time(pid: int) -> float:
    """When ``pid`` started, in seconds since the epoch (from /proc/PID/stat and the boot time)."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def wait_until(what: str, check: Callable[[], Any], timeout: float, poll: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; raise :class:`ClusterError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, http.client.HTTPException, ValueError, subprocess.SubprocessError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file (or why there are none)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"({path}: {exc})"
    return "\n".join(text[-lines:])


def port_in_use(port: int) -> bool:
    """True when something listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((LOOPBACK, port)) == 0


def serial_of_pem(data: bytes) -> int:
    """The serial number of the first certificate in PEM ``data``."""
    return x509.load_pem_x509_certificate(data).serial_number


# --------------------------------------------------------------------------------------
# The cluster


class RealCluster:
    """A real kubeadm v1.28.4 control plane on this machine (see the module docstring).

    Attributes for tests: :attr:`root` (the node root on the host),
    :attr:`holder_pid` (the mount namespace), :attr:`cri_socket`,
    :attr:`ports`, :attr:`node_name`, :attr:`admin_cert`/:attr:`admin_key`
    (admin.conf's client pair as files), :attr:`pki`, :attr:`logs`.
    """

    def __init__(self, workdir: Path, binaries: Mapping[str, Path], images: Mapping[str, Path], *,
                 ports: Ports | None = None, node_name: str = NODE_NAME, cgroup_root: str = CGROUP_ROOT,
                 file_check_frequency: str = "20s") -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.logs = workdir / "logs"
        self.binaries = dict(binaries)
        self.images = dict(images)
        self.ports = ports or Ports()
        self.node_name = node_name
        self.cgroup_root = cgroup_root
        self.file_check_frequency = file_check_frequency
        self.pki = self.root / "etc/kubernetes/pki"
        self.manifests = self.root / "etc/kubernetes/manifests"
        self.cri_socket = self.root / "run/containerd/containerd.sock"
        self.admin_cert = workdir / "admin.crt"
        self.admin_key = workdir / "admin.key"
        self.kubeadm_config = workdir / "kubeadm.yaml"
        self.holder_pid = 0
        self._holder: subprocess.Popen[bytes] | None = None
        self._containerd: subprocess.Popen[bytes] | None = None
        self._kubelets: list[subprocess.Popen[bytes]] = []
        self._labels: dict[str, dict[str, str]] = {}
        self._mntns = ""
        #: Where the host reaches the node's endpoints (a node in a network namespace of its own has
        #: its own address), the namespaces its processes enter, and what runs the namespace holder.
        self.address = LOOPBACK
        self.namespaces: tuple[str, ...] = ("-m",)
        self.holder_prefix: tuple[str, ...] = ()
        self.timeline: list[tuple[float, str]] = []
        self._t0 = time.monotonic()

    # ---------------------------------------------------------------- lifecycle

    def _mark(self, what: str) -> None:
        self.timeline.append((time.monotonic() - self._t0, what))

    def start(self, timeout: float = 240.0) -> None:
        """Bring the control plane up: four static pods Running and Ready, leaders elected."""
        self._t0 = time.monotonic()
        try:
            self._start(timeout)
        except Exception as exc:
            raise ClusterError(f"the real cluster did not start: {exc}\n{self.diagnostics()}") from exc

    def diagnostics(self) -> str:
        """The tails of the kubelet's and containerd's logs (and kubeadm's, when it failed)."""
        parts = [f"--- {self.logs / name} (tail)\n{tail(self.logs / name)}"
                 for name in ("kubelet.log", "containerd.log")]
        parts += [f"--- {p} (tail)\n{tail(p, 10)}" for p in sorted(self.logs.glob("kubeadm-*.log"))]
        return "\n".join(parts)

    def _start(self, timeout: float) -> None:
        busy = {name: port for name, port in self.ports.all().items() if port_in_use(port)}
        if busy:
            raise ClusterError(f"ports already in use on {LOOPBACK}: {busy}")
        self.logs.mkdir(parents=True, exist_ok=True)
        self._prepare_root()
        self._make_cgroups()
        self._start_holder()
        self._mark(f"mount namespace held by {self.holder_pid}")
        self._start_containerd()
        self._mark("containerd up")
        self._import_images()
        self._mark("images imported")
        self._kubeadm_init()
        self._mark("kubeadm: certs, kubeconfigs, manifests")
        self._start_kubelet()
        self.extract_admin()
        self.wait_ready(timeout)
        self._mark("kube-apiserver /readyz ok")
        for phase in (["upload-config", "all"], ["mark-control-plane"], ["bootstrap-token"],
                      ["kubelet-finalize", "all"]):
            self._kubeadm([*phase], log=f"kubeadm-{phase[0]}.log")
        # kubelet-finalize points kubelet.conf at kubelet-client-current.pem and asks systemd to restart
        # the kubelet; there is no systemd here
        if "kubelet-client-current.pem" in (self.root / "etc/kubernetes/kubelet.conf").read_text():
            self._stop_kubelet()
            self._start_kubelet()
        self._mark("kubeadm: upload-config, mark-control-plane, bootstrap-token, kubelet-finalize")
        self.wait_pods_ready(timeout)
        self._mark("four static pods Running and Ready")
        wait_until("leader election and the service-account controller", self._controllers_working, timeout)
        self._mark("leaders elected, default ServiceAccount created")

    def _prepare_root(self) -> None:
        r = self.root
        for d in ("etc/ssl/certs", "etc/containerd", "etc/cni/net.d", "etc/kubernetes/audit", "var/lib",
                  "var/log/kubernetes/audit", "run", "ns/sysctl"):
            (r / d).mkdir(parents=True, exist_ok=True)
        for name in _HOST_ETC:
            src = Path("/etc") / name
            if src.exists() and not (r / "etc" / name).exists():
                shutil.copyfile(src, r / "etc" / name, follow_symlinks=True)
        if Path("/etc/ld.so.conf.d").is_dir() and not (r / "etc/ld.so.conf.d").exists():
            shutil.copytree("/etc/ld.so.conf.d", r / "etc/ld.so.conf.d")
        if Path("/etc/ssl/certs/ca-certificates.crt").exists():
            shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", r / "etc/ssl/certs/ca-certificates.crt")
        hosts = r / "etc/hosts"
        text = hosts.read_text() if hosts.exists() else f"{LOOPBACK} localhost\n"
        if f" {self.node_name}\n" not in text:
            hosts.write_text(text.rstrip("\n") + f"\n{LOOPBACK} {self.node_name}\n")
        for f in (r / "ns/sysctl").iterdir():
            f.unlink()
        for key, value in _KUBELET_SYSCTLS.items():
            current = Path("/proc/sys", *key.split(".")).read_text().strip()
            if current != value:
                (r / "ns/sysctl" / key).write_text(value + "\n")
        (r / "etc/kubernetes/audit/policy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [
                # the kubelet's authorization of the apiserver's client certificate (E3)
                {"level": "Request", "users": [f"system:node:{self.node_name}"],
                 "resources": [{"group": "authorization.k8s.io", "resources": ["subjectaccessreviews"]}]},
                # the scheduler's lease renewals, every 2 s (E6b)
                {"level": "Metadata", "users": ["system:kube-scheduler"],
                 "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
                {"level": "None"},
            ],
        }))

    def _cgroup_dirs(self, *, create: bool = False) -> list[Path]:
        """The cgroup root in every hierarchy; the v2 one of a hybrid setup (``unified``) is made by
        runc, not here, but removed at the end too."""
        base = Path("/sys/fs/cgroup")
        if (base / "cgroup.controllers").exists():  # pure cgroup v2
            return [base / self.cgroup_root]
        return [d / self.cgroup_root for d in sorted(base.iterdir())
                if d.is_dir() and (d / "cgroup.procs").exists() and not (create and d.name == "unified")]

    def _make_cgroups(self) -> None:
        for d in self._cgroup_dirs(create=True):
            d.mkdir(exist_ok=True)
            cpus = d / "cpuset.cpus"
            if cpus.exists():
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (d / f).read_text().strip():
                        (d / f).write_text((d.parent / f).read_text())

    def _start_holder(self) -> None:
        r = self.root
        lines = ["set -e"]
        for d in ("etc", "var/lib", "var/log", "run"):
            lines.append(f"mount --bind {shlex.quote(str(r / d))} /{d}")
        for f in sorted((r / "ns/sysctl").iterdir()):
            lines.append(f"mount --bind {shlex.quote(str(f))} /proc/sys/{f.name.replace('.', '/')}")
        lines += [f"touch {shlex.quote(str(r / 'ns/ready'))}", "exec sleep infinity"]
        (r / "ns/ready").unlink(missing_ok=True)
        with open(self.logs / "ns.log", "ab") as log:
            self._holder = subprocess.Popen(
                [*self.holder_prefix, "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                 "\n".join(lines)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.holder_pid = self._holder.pid
        try:
            wait_until("the mount namespace", lambda: (r / "ns/ready").exists() or self._holder_died(), 10, 0.05)
        except ClusterError:
            pass
        if not (r / "ns/ready").exists():
            raise ClusterError(f"the namespace holder failed: {tail(self.logs / 'ns.log')}")
        self._mntns = os.readlink(f"/proc/{self.holder_pid}/ns/mnt")

    def _holder_died(self) -> bool:
        return self._holder is not None and self._holder.poll() is not None

    def nsenter(self, *argv: str) -> list[str]:
        """``argv`` run inside the node's mount namespace."""
        return ["nsenter", "-t", str(self.holder_pid), *self.namespaces, "--", *argv]

    def _snapshotter(self) -> str:
        fstype = subprocess.run(["stat", "-f", "-c", "%T", str(self.root)], capture_output=True, text=True,
                                check=False).stdout.strip()
        return "native" if fstype in ("overlayfs", "overlay") else "overlayfs"

    def _start_containerd(self) -> None:
        snap = self._snapshotter()
        (self.root / "etc/containerd/config.toml").write_text(f"""\
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "/run/containerd/containerd.sock"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "{LOOPBACK}"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snap}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/var/lib/cni/bin"
    conf_dir = "/etc/cni/net.d"
""")
        self._snapshot = snap
        with open(self.logs / "containerd.log", "ab") as log:
            self._containerd = subprocess.Popen(
                self.nsenter("containerd", "--config", "/etc/containerd/config.toml"),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            if self._containerd is not None and self._containerd.poll() is not None:
                raise ClusterError("containerd exited")
            return self.ctr("version", timeout=5, check=False).returncode == 0

        wait_until("containerd", up, 30, 0.1)

    def ctr(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr -n k8s.io`` on the node's containerd."""
        return subprocess.run(["ctr", "--address", str(self.cri_socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout, check=check)

    def _import_images(self) -> None:
        have = set(self.ctr("images", "ls", "-q").stdout.split())
        for name, tar in self.images.items():
            if name not in have:
                self.ctr("images", "import", "--snapshotter", self._snapshot, str(tar), timeout=120)

    def _kubeadm(self, args: Sequence[str], *, log: str, check: bool = True) -> None:
        with open(self.logs / log, "ab") as out:
            rc = subprocess.run(self.nsenter(str(self.binaries["kubeadm"]), "init", "phase", *args,
                                             "--config", str(self.kubeadm_config)),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=180,
                                check=False).returncode
        if rc and check:
            raise ClusterError(f"kubeadm init phase {' '.join(args)} failed (exit {rc}): "
                               f"{tail(self.logs / log, 10)}")

    def _write_kubeadm_config(self) -> None:
        p = self.ports
        patches = self.workdir / "patches"
        patches.mkdir(exist_ok=True)
        init = {
            "apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "InitConfiguration",
            "localAPIEndpoint": {"advertiseAddress": ADVERTISE, "bindPort": p.apiserver},
            "nodeRegistration": {"name": self.node_name, "criSocket": "unix:///run/containerd/containerd.sock",
                                 "imagePullPolicy": "Never", "ignorePreflightErrors": ["all"]},
            "patches": {"directory": str(patches)},
        }
        audit_volumes = [
            {"name": "audit-policy", "hostPath": "/etc/kubernetes/audit", "mountPath": "/etc/kubernetes/audit",
             "readOnly": True, "pathType": "DirectoryOrCreate"},
            {"name": "audit-log", "hostPath": "/var/log/kubernetes/audit",
             "mountPath": "/var/log/kubernetes/audit", "pathType": "DirectoryOrCreate"},
        ]
        cluster = {
            "apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration",
            "kubernetesVersion": K8S_VERSION, "clusterName": "kubernetes",
            "controlPlaneEndpoint": f"{LOOPBACK}:{p.apiserver}", "certificatesDir": "/etc/kubernetes/pki",
            "imageRepository": "registry.k8s.io",
            "networking": {"serviceSubnet": "10.96.0.0/12", "dnsDomain": "cluster.local"},
            "etcd": {"local": {"dataDir": "/var/lib/etcd", "extraArgs": {
                "listen-client-urls": f"https://{LOOPBACK}:{p.etcd_client}",
                "advertise-client-urls": f"https://{LOOPBACK}:{p.etcd_client}",
                "listen-peer-urls": f"https://{LOOPBACK}:{p.etcd_peer}",
                "initial-advertise-peer-urls": f"https://{LOOPBACK}:{p.etcd_peer}",
                "initial-cluster": f"{self.node_name}=https://{LOOPBACK}:{p.etcd_peer}",
                "listen-metrics-urls": f"http://{LOOPBACK}:{p.etcd_metrics}",
            }}},
            "apiServer": {
                "certSANs": [LOOPBACK, "localhost", self.node_name],
                "extraArgs": {
                    "bind-address": LOOPBACK,
                    "etcd-servers": f"https://{LOOPBACK}:{p.etcd_client}",
                    # the kubelet by node name, which the node's /etc/hosts maps to 127.0.0.1
                    "kubelet-preferred-address-types": "Hostname,InternalIP,ExternalIP",
                    "audit-policy-file": "/etc/kubernetes/audit/policy.yaml",
                    "audit-log-path": AUDIT_LOG,
                    "audit-log-maxsize": "20",
                    "audit-log-maxbackup": "1",
                },
                "extraVolumes": audit_volumes,
            },
            "controllerManager": {"extraArgs": {"secure-port": str(p.controller_manager),
                                                "flex-volume-plugin-dir": "/var/lib/kubelet/volumeplugins"}},
            "scheduler": {"extraArgs": {"secure-port": str(p.scheduler)}},
        }
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{self.cgroup_root}",
            "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
            "staticPodPath": "/etc/kubernetes/manifests", "fileCheckFrequency": self.file_check_frequency,
            "address": LOOPBACK, "port": p.kubelet, "healthzBindAddress": LOOPBACK,
            "healthzPort": p.kubelet_healthz, "readOnlyPort": 0, "failSwapOn": False,
            "makeIPTablesUtilChains": False, "protectKernelDefaults": False, "rotateCertificates": True,
            "volumePluginDir": "/var/lib/kubelet/volumeplugins",
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
                             "imagefs.available": "1%"},
        }
        self.kubeadm_config.write_text(yaml.safe_dump_all([init, cluster, kubelet], sort_keys=False))
        probe_host = {"httpGet": {"host": LOOPBACK}}
        (patches / "kube-apiserver+strategic.yaml").write_text(yaml.safe_dump({"spec": {"containers": [
            {"name": "kube-apiserver", "livenessProbe": probe_host, "readinessProbe": probe_host,
             "startupProbe": probe_host}]}}))
        for name, port in (("kube-controller-manager", p.controller_manager), ("kube-scheduler", p.scheduler)):
            probe = {"httpGet": {"port": port}}
            (patches / f"{name}+strategic.yaml").write_text(yaml.safe_dump({"spec": {"containers": [
                {"name": name, "livenessProbe": probe, "startupProbe": probe}]}}))

    def _kubeadm_init(self) -> None:
        self._write_kubeadm_config()
        self._kubeadm(["certs", "all"], log="kubeadm-certs.log")
        self._kubeadm(["kubeconfig", "all"], log="kubeadm-kubeconfig.log")
        # kubeadm points controller-manager.conf and scheduler.conf at the local endpoint
        # (advertiseAddress:bindPort), where nothing listens here: point them at 127.0.0.1
        for conf in ("controller-manager.conf", "scheduler.conf"):
            path = self.root / "etc/kubernetes" / conf
            path.write_text(path.read_text().replace(f"https://{ADVERTISE}:{self.ports.apiserver}",
                                                     f"https://{LOOPBACK}:{self.ports.apiserver}"))
        self._kubeadm(["etcd", "local"], log="kubeadm-etcd.log")
        self._kubeadm(["control-plane", "all"], log="kubeadm-control-plane.log")
        # writes /var/lib/kubelet/config.yaml and kubeadm-flags.env; its systemctl calls fail harmlessly
        self._kubeadm(["kubelet-start"], log="kubeadm-kubelet-start.log", check=False)
        if not (self.root / "var/lib/kubelet/config.yaml").is_file():
            raise ClusterError(f"kubeadm wrote no kubelet config: {tail(self.logs / 'kubeadm-kubelet-start.log')}")

    def _start_kubelet(self) -> None:
        flags = ""
        for line in (self.root / "var/lib/kubelet/kubeadm-flags.env").read_text().splitlines():
            if line.startswith("KUBELET_KUBEADM_ARGS="):
                flags = line.split("=", 1)[1].strip().strip('"')
        extra = shlex.split(os.environ.get("KUBEPKI_REALCLUSTER_KUBELET_ARGS", ""))
        with open(self.logs / "kubelet.log", "ab") as log:
            proc = subprocess.Popen(
                self.nsenter(str(self.binaries["kubelet"]),
                             "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
                             "--kubeconfig=/etc/kubernetes/kubelet.conf", "--config=/var/lib/kubelet/config.yaml",
                             *shlex.split(flags), *extra),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._kubelets.append(proc)

    @property
    def kubelet_pid(self) -> int:
        """The running kubelet's PID."""
        live = [p.pid for p in self._kubelets if p.poll() is None]
        assert live, "the kubelet is not running"
        return live[-1]

    def _stop_kubelet(self) -> None:
        for proc in self._kubelets:
            _stop_popen(proc, grace=15)

    def stop_kubelet(self) -> None:
        """Stop the kubelet (as ``systemctl stop kubelet`` would); its containers keep running."""
        self._stop_kubelet()

    def start_kubelet(self) -> subprocess.Popen[bytes]:
        """Start the kubelet again (as ``systemctl start kubelet``: there is no systemd here); the process."""
        self._start_kubelet()
        return self._kubelets[-1]

    def extract_admin(self) -> None:
        """Write admin.conf's client certificate and key to :attr:`admin_cert` and :attr:`admin_key`."""
        conf = yaml.safe_load((self.root / "etc/kubernetes/admin.conf").read_text())
        user = conf["users"][0]["user"]
        self.admin_cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        fd = os.open(self.admin_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64decode(user["client-key-data"]))

    _extract_admin = extract_admin  # the name tests/realcluster_ha.py uses

    def _controllers_working(self) -> bool:
        return all(self.api(path).status == 200 for path in (
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler",
            "/api/v1/namespaces/default/serviceaccounts/default"))

    def pods_ready(self) -> set[str]:
        """The kube-system pods that are Running and Ready."""
        ready = set()
        for pod in self.api("/api/v1/namespaces/kube-system/pods").json()["items"]:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True":
                ready.add(pod["metadata"]["name"])
        return ready

    def wait_pods_ready(self, timeout: float = 120) -> None:
        """Wait until the four static pods' mirror pods are Running and Ready."""
        want = {f"{c}-{self.node_name}" for c in COMPONENTS}
        wait_until(f"mirror pods Running and Ready: {sorted(want)}", lambda: want <= self.pods_ready(), timeout, 0.5)

    def stop(self) -> list[str]:  # noqa: C901, PLR0912  -- teardown steps that each may fail independently
        """Stop everything by PID, remove the cgroups; return what had to be killed or could not be removed."""
        notes: list[str] = []
        # 1. the kubelet first, so it does not restart what is stopped next
        self._stop_kubelet()
        # 2. every task and container containerd knows, then containerd
        if self._containerd is not None and self._containerd.poll() is None and self.cri_socket.exists():
            try:
                for cid in self.ctr("tasks", "ls", "-q", timeout=20).stdout.split():
                    self.ctr("tasks", "kill", "-s", "SIGKILL", cid, timeout=20, check=False)
                time.sleep(0.5)
                for cid in self.ctr("tasks", "ls", "-q", timeout=20).stdout.split():
                    self.ctr("tasks", "delete", "-f", cid, timeout=20, check=False)
                for cid in self.ctr("containers", "ls", "-q", timeout=20).stdout.split():
                    self.ctr("containers", "delete", cid, timeout=20, check=False)
            except (subprocess.SubprocessError, OSError) as exc:
                notes.append(f"could not clean containerd's tasks: {exc}")
        if self._containerd is not None:
            _stop_popen(self._containerd, grace=20)
        # 3. leftovers: processes in our cgroup root, then processes in our mount namespace
        for pid in self._cgroup_pids():
            notes.append(f"killed leftover process {pid} in the cgroup root: {_cmdline(pid)}")
            _kill(pid)
        if self._mntns:
            for pid in self._namespace_pids():
                notes.append(f"killed leftover process {pid} in the mount namespace: {_cmdline(pid)}")
                _kill(pid)
        # 4. the holder: the namespace's mounts go with it
        if self._holder is not None:
            _stop_popen(self._holder, grace=5)
        # 5. cgroups, deepest first
        for top in self._cgroup_dirs():
            for _ in range(20):
                if not top.exists():
                    break
                for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        d.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()
                if top.exists():
                    time.sleep(0.25)
            if top.exists():
                notes.append(f"could not remove cgroup {top}")
        # 6. nothing of ours may stay mounted on the host
        for mount in sorted(self.host_mounts(), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
            notes.append(f"unmounted {mount}")
        return notes

    def _cgroup_pids(self) -> set[int]:
        pids: set[int] = set()
        for top in self._cgroup_dirs():
            if top.exists():
                for procs in top.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError, ValueError):
                        pids.update(int(x) for x in procs.read_text().split())
        return pids

    def _namespace_pids(self) -> set[int]:
        pids = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.holder_pid:
                try:
                    if os.readlink(entry / "ns/mnt") == self._mntns:
                        pids.add(int(entry.name))
                except OSError:
                    continue
        return pids

    def host_mounts(self) -> list[str]:
        """Mount points under the work directory that the host's mount namespace has."""
        prefix = str(self.workdir)
        found = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
        return found

    def leftovers(self) -> list[str]:
        """Anything of the cluster's still on the host after :meth:`stop` (should be empty)."""
        left = []
        procs = [p for p in (self._holder, self._containerd, *self._kubelets) if p is not None]
        left += [f"process {p.pid} ({_cmdline(p.pid)})" for p in procs if p.poll() is None]
        left += [f"process {pid} in the cgroup root ({_cmdline(pid)})" for pid in self._cgroup_pids()]
        if self._mntns:
            left += [f"process {pid} in the mount namespace" for pid in self._namespace_pids()]
        left += [f"cgroup {d}" for d in self._cgroup_dirs() if d.exists()]
        left += [f"mount {m}" for m in self.host_mounts()]
        return left

    # ---------------------------------------------------------------- the API

    def _client_context(self, cert: Path | None, key: Path | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
        return ctx

    def api(self, path: str, method: str = "GET", body: Any = None, *, cert: Path | None = None,
            key: Path | None = None, token: str | None = None, anonymous: bool = False,
            headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> ApiResponse:
        """One request to the apiserver over TLS (verified against ca.crt), as admin unless told otherwise."""
        if cert is None and token is None and not anonymous:
            cert, key = self.admin_cert, self.admin_key
        conn = http.client.HTTPSConnection(self.address, self.ports.apiserver, timeout=timeout,
                                           context=self._client_context(cert, key))
        hdrs = {"Accept": "application/json", **(headers or {})}
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return ApiResponse(resp.status, resp.read())
        finally:
            conn.close()

    def readyz(self) -> bool:
        """True when the apiserver answers /readyz with ok."""
        try:
            r = self.api("/readyz", timeout=5)
        except (OSError, http.client.HTTPException):
            return False
        return r.status == 200 and r.data.strip() == b"ok"

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until /readyz is ok."""
        wait_until("kube-apiserver /readyz ok", self.readyz, timeout, 0.25)

    def served_certificate(self, port: int, *, client_cert: Path | None = None,
                           client_key: Path | None = None, timeout: float = 5.0) -> x509.Certificate:
        """The certificate whatever listens on 127.0.0.1:``port`` serves, from a TLS handshake made here.

        etcd demands a client certificate on its client and peer ports; the
        healthcheck client's (signed by etcd's CA) is offered there unless
        another is given.
        """
        if client_cert is None and port in (self.ports.etcd_client, self.ports.etcd_peer):
            client_cert = self.pki / "etcd/healthcheck-client.crt"
            client_key = self.pki / "etcd/healthcheck-client.key"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if client_cert is not None:
            ctx.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
        with socket.create_connection((self.address, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=self.node_name) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der, f"nothing served on port {port}"
        return x509.load_der_x509_certificate(der)

    def served_serial(self, port: int, **kwargs: Any) -> int:
        """The serial number of the certificate served on 127.0.0.1:``port``."""
        return self.served_certificate(port, **kwargs).serial_number

    def file_serial(self, relpath: str) -> int:
        """The serial number of ``<pki>/<relpath>`` (or a path under the node root starting with /)."""
        path = self.root / relpath.lstrip("/") if relpath.startswith("/") else self.pki / relpath
        return serial_of_pem(path.read_bytes())

    def kubelet_serving_cert(self) -> Path:
        """The kubelet's self-signed serving certificate on disk."""
        return self.root / "var/lib/kubelet/pki/kubelet.crt"

    # ---------------------------------------------------------------- containers, from containerd

    def containers(self) -> list[Container]:
        """The running containers (pause sandboxes excluded), from ``ctr tasks ls`` and each container's labels."""
        out = []
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 3 or parts[2] != "RUNNING":
                continue
            cid, pid = parts[0], int(parts[1])
            labels = self._labels.get(cid)
            if labels is None:
                info = json.loads(self.ctr("containers", "info", cid).stdout)
                labels = self._labels[cid] = dict(info.get("Labels") or {})
            name = labels.get("io.kubernetes.container.name")
            if not name or name == "POD" or labels.get("io.cri-containerd.kind") == "sandbox":
                continue
            try:
                started = process_start_time(pid)
            except (OSError, IndexError):
                continue
            out.append(Container(cid, name, labels.get("io.kubernetes.pod.name", ""), pid, started))
        return out

    def container(self, component: str) -> Container:
        """The one running container of ``component`` (etcd, kube-apiserver, ...)."""
        found = [c for c in self.containers() if c.name == component]
        assert len(found) == 1, f"{len(found)} running {component} containers: {found}"
        return found[0]

    def container_pid(self, component: str) -> int:
        """The host PID of ``component``'s running container, as containerd reports it."""
        return self.container(component).pid

    def container_started_at(self, component: str) -> float:
        """When ``component``'s running container process started (seconds since the epoch)."""
        return self.container(component).started_at

    def wait_container(self, component: str, *, not_id: str | None = None, timeout: float = 120) -> Container:
        """Wait for a running container of ``component`` (another than ``not_id``, if given)."""

        def check() -> Container | None:
            found = [c for c in self.containers() if c.name == component and c.id != not_id]
            return found[0] if len(found) == 1 else None

        return wait_until(f"a new {component} container", check, timeout, 0.5)

    def restart_runner(self, *, start: float = 330.0) -> Callable[[Any, Any], Any]:
        """kubepki's own restarts for ``runner=`` of kubepki's rolling restarts (``apply_rotation``): the static
        pods as kubepki restarts them; the kubelet as this harness runs it (without systemd)."""
        from kubepki.restarts import Timeouts, apply_restarts

        def restart_kubelet() -> None:
            self.stop_kubelet()
            self.start_kubelet()

        def run(plan: Any, node: Any) -> Any:
            return apply_restarts(plan, node=node, take_backup=False, kubelet_restart=restart_kubelet,
                                  timeout=Timeouts(stop=90, start=start, serve=60))
        return run

    def restart_static_pod(self, component: str, timeout: float = 120) -> Container:
        """Restart a static pod as an operator would, independently of kubepki: move its manifest
        out of the kubelet's directory, wait until containerd has no container of it, move it back.
        A component in the kubelet's crash back-off (a scheduler that lost its lease while an earlier
        test restarted the apiserver) is waited for first: up to the back-off's 5 minutes."""
        old = self.wait_container(component, timeout=max(timeout, 330))
        manifest = self.manifests / f"{component}.yaml"
        parked = self.workdir / f"{component}.yaml.parked"
        shutil.move(manifest, parked)
        try:
            wait_until(f"{component} stopped", lambda: not any(c.name == component for c in self.containers()),
                       timeout, 0.5)
        finally:
            shutil.move(parked, manifest)
        new = self.wait_container(component, not_id=old.id, timeout=timeout)
        if component == "kube-apiserver":
            self.wait_ready(timeout)
        return new

    # ---------------------------------------------------------------- kubepki and the node

    def kubepki(self, *args: str, inside: bool = False, timeout: float = 300,
                check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``python -m kubepki ARGS``: with ``--root ROOT`` from the host (appended unless ``args``
        name a root), or with ``inside=True`` in the node's mount namespace, as on the node itself."""
        argv = [sys.executable, "-m", "kubepki", *args]
        if inside:
            argv = self.nsenter(*argv)
        elif "--root" not in args and "--demo" not in args:
            argv += ["--root", str(self.root)]
        # KUBEPKI_REALCLUSTER_PYTHONPATH: run another kubepki tree against the cluster (e.g. a release)
        env = {**os.environ, "NO_COLOR": "1",
               "PYTHONPATH": os.environ.get("KUBEPKI_REALCLUSTER_PYTHONPATH") or str(REPO)}
        env.pop("FORCE_COLOR", None)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, env=env,
                              cwd=self.workdir)

    def audit_events(self) -> list[dict[str, Any]]:
        """The apiserver's audit events so far (scheduler lease updates, kubelet SubjectAccessReviews)."""
        events = []
        path = self.root / AUDIT_LOG.lstrip("/")
        for file in sorted(path.parent.glob("audit*.log")):
            for line in file.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        return events


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:100]
    except OSError:
        return "?"


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _stop_popen(proc: subprocess.Popen[bytes], *, grace: float) -> None:
    """TERM then KILL a process this module started (its PID cannot have been reused: it is not reaped)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


# --------------------------------------------------------------------------------------
# The pytest fixture


def _cache_dir(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(f"kubepki-k8s-{K8S_VERSION}"))
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kubepki-tests" / f"k8s-{K8S_VERSION}"


def _unavailable(reason: str) -> None:
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{ENV_REQUIRE}=1 but the real cluster cannot run: {reason}", pytrace=False)
    pytest.skip(f"real cluster: {reason}")


@pytest.fixture(scope="session")
def real_cluster(request: pytest.FixtureRequest) -> Iterator[RealCluster]:
    """A real kubeadm v1.28.4 control plane for the whole session, torn down by PID at its end."""
    reason = missing_prerequisites()
    if reason:
        _unavailable(reason)
    cache = _cache_dir(request.config)
    try:
        binaries = kubernetes_binaries(cache / "bin")
        # the kubelet and kubeadm run inside the namespace: their paths must not be under what it hides
        hidden = ("/etc/", "/var/lib/", "/var/log/", "/run/")
        if any(str(p).startswith(hidden) for p in binaries.values()):
            raise Unavailable(f"the binaries' directory {cache} is under a directory the node's namespace hides")
        images = build_images(binaries, cache / "images")
    except Unavailable as exc:
        _unavailable(str(exc))
        raise
    # KUBEPKI_REALCLUSTER_PORT_OFFSET=N: every port + N and a cgroup root of its own, so a second
    # session can run its cluster beside one that holds the default ports
    offset = int(os.environ.get("KUBEPKI_REALCLUSTER_PORT_OFFSET") or 0)
    ports = Ports(**{k: v + offset for k, v in Ports().all().items()})
    workdir = Path(tempfile.mkdtemp(prefix="kubepki-realcluster-"))
    cluster = RealCluster(workdir, binaries, images, ports=ports,
                          cgroup_root=CGROUP_ROOT + (f"-{offset}" if offset else ""))
    try:
        cluster.start()
    except BaseException:
        notes = cluster.stop()
        if notes:
            print("real cluster teardown:", *notes, sep="\n  ")
        raise
    try:
        yield cluster
    finally:
        notes = cluster.stop()
        left = cluster.leftovers()
        if not left and os.environ.get(ENV_KEEP) != "1":
            shutil.rmtree(workdir, ignore_errors=True)
        if left:
            raise ClusterError(f"the real cluster left things behind (work dir {workdir}): {left}; {notes}")
