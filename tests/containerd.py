"""A real containerd for the CRI tests, and a test kubelet that drives it through the CRI.

:class:`Containerd` runs Debian's ``containerd`` with its CRI plugin on its own
socket, root, state, runc root and ``/opt`` directory under a temporary
directory, so it never meets a containerd of the machine. What this kind of
machine needs, found by trying:

- the process may not lower OOM scores, so the CRI plugin gets
  ``restrict_oom_score_adj = true`` (else ``RunPodSandbox`` fails with
  "can't get final child's PID from pipe");
- there is no CNI configuration, so every pod sandbox uses the node's network
  (``NamespaceOption.network = NODE``), which needs no CNI;
- overlayfs may not mount in a nested container, so the snapshotter is
  ``overlayfs`` when the images import and a probe sandbox runs with it, else
  ``native``;
- there is no registry, so the sandbox (pause) image and the component image are
  OCI archives built here from busybox-static (:func:`oci_archive`) and imported
  with ``ctr -n k8s.io images import``.

:class:`CRIKubelet` plays the kubelet: one pod sandbox per static pod, and when a
pod's container is not running it creates and starts the next attempt with the
kubelet's labels and ``attempt + 1``.

Stopping removes every pod through the CRI, stops containerd by its PID, then
kills any shim it left (found by the socket address on its command line) with
the shim's processes, and unmounts whatever is still mounted under the
directory. Tests skip with the reason when containerd, ctr, runc or busybox is
absent (``apt-get install containerd busybox-static``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from tests.services import BUSYBOX, pid_alive, stop_process, wait_for

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
RUNC = shutil.which("runc")
SHIM = shutil.which("containerd-shim-runc-v2")
#: The sandbox image the CRI plugin is configured with; imported, never pulled.
PAUSE_IMAGE = "kubepki.test/pause:1"
#: The image component containers run: busybox-static and a few applets.
BUSYBOX_IMAGE = "kubepki.test/busybox:1"
#: Every pod and container the test kubelet makes carries this label.
TEST_LABEL = "kubepki-test"

_EPOCH_MTIME = 1_700_000_000  # fixed, so the same busybox always gives the same digests
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def missing_tools() -> str | None:
    """Why a containerd cannot be started here, or None when everything is installed."""
    for name, path in (("containerd", CONTAINERD), ("ctr", CTR), ("runc", RUNC),
                       ("containerd-shim-runc-v2", SHIM)):
        if path is None:
            return f"{name} is not installed (Debian: apt-get install containerd)"
    if BUSYBOX is None:
        return "busybox is not installed (Debian: apt-get install busybox-static)"
    try:
        import grpc  # noqa: F401
    except ImportError:
        return "grpcio is not installed (pip install 'kubepki[cri]')"
    return None


# --------------------------------------------------------------------------------------
# OCI images, built offline


def busybox_layer(applets: Sequence[str] = ("sh", "sleep", "true", "cat", "ls")) -> bytes:
    """An uncompressed layer tar: ``/bin/busybox``, symlinks for ``applets``, and empty system dirs."""
    if BUSYBOX is None:
        raise RuntimeError("busybox is not installed (Debian: apt-get install busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555),
                        ("tmp", 0o1777), ("var", 0o755)):
            tar.addfile(_tarinfo(d, tarfile.DIRTYPE, mode))
        data = Path(BUSYBOX).read_bytes()
        info = _tarinfo("bin/busybox", tarfile.REGTYPE, 0o755)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for applet in applets:
            link = _tarinfo(f"bin/{applet}", tarfile.SYMTYPE, 0o777)
            link.linkname = "busybox"
            tar.addfile(link)
    return buf.getvalue()


def _tarinfo(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, _EPOCH_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _blob(data: bytes) -> tuple[str, dict[str, Any]]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest, {"digest": digest, "size": len(data)}


def oci_archive(path: Path, *, name: str, layer: bytes, entrypoint: Sequence[str] = (),
                cmd: Sequence[str] = ()) -> str:
    """Write an OCI image layout tar holding one image ``name`` with one layer; return the manifest digest.

    The config, manifest and index are written here with their sha256 digests
    and sizes, as a registry would serve them; ``io.containerd.image.name`` in
    the index tells ``ctr images import`` the full name.
    """
    arch = _GOARCH.get(platform.machine(), platform.machine())
    layer_digest, layer_desc = _blob(layer)
    config = json.dumps({
        "architecture": arch,
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": list(entrypoint) or None, "Cmd": list(cmd) or None,
                   "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "kubepki tests: busybox-static"}],
    }, sort_keys=True).encode()
    config_digest, config_desc = _blob(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": _OCI_MANIFEST,
        "config": {"mediaType": _OCI_CONFIG, **config_desc},
        "layers": [{"mediaType": _OCI_LAYER, **layer_desc}],
    }, sort_keys=True).encode()
    manifest_digest, manifest_desc = _blob(manifest)
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": _OCI_INDEX,
        "manifests": [{
            "mediaType": _OCI_MANIFEST, **manifest_desc,
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]},
        }],
    }, sort_keys=True).encode()
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tarinfo("blobs", tarfile.DIRTYPE, 0o755))
        tar.addfile(_tarinfo("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for member, data in (("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                             ("index.json", index),
                             *((f"blobs/sha256/{d.split(':', 1)[1]}", b) for d, b in (
                                 (layer_digest, layer), (config_digest, config), (manifest_digest, manifest)))):
            info = _tarinfo(member, tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return manifest_digest


# --------------------------------------------------------------------------------------
# containerd


class Containerd:
    """``containerd`` with its CRI plugin on its own socket, root and state under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "containerd.sock"
        self.endpoint = f"unix://{self.socket}"
        self.log = base / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.snapshotter: str | None = None

    # -- lifecycle -----------------------------------------------------------------

    def config(self, snapshotter: str) -> str:
        """The config (version 2) for ``snapshotter``: every path under ``base``, CRI without CNI."""
        b = self.base
        return f"""\
version = 2
root = "{b}/root"
state = "{b}/state"
# Snapshotters that cannot work here only fill the log with errors.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{b}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine may not lower OOM scores: without it RunPodSandbox fails with
  # "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state beside ours, not in /run/containerd/runc.
        Root = "{b}/runc"

  # No CNI configuration at all: pods use the node's network.
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{b}/cni/bin"
    conf_dir = "{b}/cni/conf"
"""

    def start(self, timeout: float = 30.0) -> None:
        """Start containerd and import the images; :class:`RuntimeError` saying why when it cannot."""
        why = missing_tools()
        if why is not None:
            raise RuntimeError(why)
        errors = []
        for snapshotter in ("overlayfs", "native"):
            self._start(snapshotter, timeout)
            try:
                self.import_images()
                self.probe_sandbox()
            except RuntimeError as exc:
                errors.append(f"{snapshotter}: {exc}")
                self.stop()
                continue
            self.snapshotter = snapshotter
            return
        raise RuntimeError("containerd could not run the test images: " + "; ".join(errors))

    def _start(self, snapshotter: str, timeout: float) -> None:
        assert CONTAINERD is not None
        for sub in ("root", "state", "runc", "opt", "cni"):
            shutil.rmtree(self.base / sub, ignore_errors=True)
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "cni/conf").mkdir(parents=True)
        (self.base / "cni/bin").mkdir(parents=True)
        config = self.base / "config.toml"
        config.write_text(self.config(snapshotter))
        with open(self.log, "ab") as out:
            out.write(f"--- starting with snapshotter {snapshotter}\n".encode())
            out.flush()
            self.proc = subprocess.Popen([CONTAINERD, "--config", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}: {self.log_tail()}")
            if self.socket.exists() and self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"containerd did not answer on {self.socket} within {timeout:g}s: {self.log_tail()}")

    def ready(self) -> bool:
        """True when the CRI answers ``Version``."""
        with contextlib.suppress(Exception), self.stub() as stub:
            from kubepki.restarts.methods._cri_api import api_pb2

            return bool(stub.Version(api_pb2.VersionRequest(version="v1"), timeout=2).runtime_name)
        return False

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of containerd's log, for error messages."""
        try:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return "no log"
        return " | ".join(tail) or "no output"

    @contextlib.contextmanager
    def stub(self) -> Iterator[Any]:
        """A generated ``RuntimeServiceStub`` on this containerd's socket, closed afterwards."""
        import grpc

        from kubepki.restarts.methods._cri_api import api_pb2_grpc

        channel = grpc.insecure_channel(self.endpoint)
        try:
            yield api_pb2_grpc.RuntimeServiceStub(channel)
        finally:
            channel.close()

    def ctr(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``ctr --address <socket> -n k8s.io ARGS``; :class:`RuntimeError` with its output on failure."""
        assert CTR is not None
        done = subprocess.run([CTR, "--address", str(self.socket), "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def import_images(self) -> None:
        """Build the pause and busybox images offline and import them for the CRI plugin."""
        layer = busybox_layer()
        images = self.base / "images"
        images.mkdir(exist_ok=True)
        # The pause container only has to live until it is killed (StopPodSandbox sends SIGKILL).
        for name, entrypoint, cmd in ((PAUSE_IMAGE, ("/bin/sleep",), ("2147483647",)),
                                      (BUSYBOX_IMAGE, (), ("/bin/sh",))):
            archive = images / (name.replace("/", "_").replace(":", "_") + ".tar")
            oci_archive(archive, name=name, layer=layer, entrypoint=entrypoint, cmd=cmd)
            snapshotter = self.snapshotter_for_import()
            self.ctr("images", "import", "--snapshotter", snapshotter, str(archive))
        listed = self.ctr("images", "list", "--quiet")
        for name in (PAUSE_IMAGE, BUSYBOX_IMAGE):
            if name not in listed.split():
                raise RuntimeError(f"{name} was not imported (ctr lists: {listed.split()})")

    def probe_sandbox(self) -> None:
        """Run and remove one host-network pod sandbox: the snapshotter mounts and runc starts here."""
        import grpc

        from kubepki.restarts.methods._cri_api import api_pb2

        config = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name="probe", uid="probe", namespace="kubepki-probe"),
            linux=api_pb2.LinuxPodSandboxConfig(security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(network=api_pb2.NODE))))
        with self.stub() as stub:
            try:
                sandbox = stub.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
            except grpc.RpcError as exc:
                raise RuntimeError(f"RunPodSandbox failed: {exc.details()}") from None
            stub.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox), timeout=60)
            stub.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox), timeout=60)

    def snapshotter_for_import(self) -> str:
        """The snapshotter named in the running config."""
        text = (self.base / "config.toml").read_text()
        return text.split('snapshotter = "', 1)[1].split('"', 1)[0]

    def remove_all_pods(self) -> None:
        """Stop and remove every pod sandbox (and so every container) through the CRI."""
        from kubepki.restarts.methods._cri_api import api_pb2

        with self.stub() as stub:
            for sandbox in stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items:
                with contextlib.suppress(Exception):
                    stub.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=60)
                with contextlib.suppress(Exception):
                    stub.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=60)

    def pause(self) -> None:
        """Stop containerd (SIGTERM, by PID) but leave its pods running: a runtime that is down."""
        if self.proc is not None:
            stop_process(self.proc, grace=15)

    def resume(self, timeout: float = 30.0) -> None:
        """Start containerd again after :meth:`pause`, with the same config and state."""
        assert CONTAINERD is not None
        config = self.base / "config.toml"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([CONTAINERD, "--config", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("containerd to answer again", lambda: self.socket.exists() and self.ready(), timeout=timeout)

    def stop(self) -> None:
        """Remove every pod, stop containerd by PID, then end leftover shims and unmount what is left."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.remove_all_pods()
        if self.proc is not None:
            stop_process(self.proc, grace=15)
        self.proc = None
        for pid in self.shim_pids():
            kill_tree(pid)
        unmount_under(self.base)

    def shim_pids(self) -> list[int]:
        """The PIDs of shims started by this containerd (their command line names its socket)."""
        address = str(self.socket)
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
                found.append(int(entry))
        return found


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_bytes()
                if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants (a shim and its containers), children first."""
    for child in _children(pid):
        kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(AssertionError):
        wait_for(f"pid {pid} to end", lambda: not pid_alive(pid), timeout=5)


def unmount_under(base: Path) -> None:
    """Lazily unmount every mount point below ``base``, deepest first."""
    prefix = str(base.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[4].replace("\\040", " ") for line in lines]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


# --------------------------------------------------------------------------------------
# The test kubelet


@attrs.frozen
class CRIPod:
    """A static pod the CRI test kubelet keeps running."""

    component: str
    node: str = "cp1"
    uid: str = "0123456789abcdef"
    namespace: str = "kube-system"
    #: The container's command; by default a shell that ends on SIGTERM (a graceful stop is quick)
    #: and shows kubeadm's flags for the scheduler in its argv.
    command: tuple[str, ...] = ()
    image: str = BUSYBOX_IMAGE

    @property
    def pod(self) -> str:
        """The static pod's name, ``<component>-<node>``."""
        return f"{self.component}-{self.node}"

    def argv(self) -> list[str]:
        """The container's command line."""
        if self.command:
            return list(self.command)
        return ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait", self.component,
                *KUBEADM_FLAGS.get(self.component, ())]


#: Flags from kubeadm's manifests, so instances show what they read.
KUBEADM_FLAGS: Mapping[str, Sequence[str]] = {
    "kube-scheduler": ("--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
                       "--authorization-kubeconfig=/etc/kubernetes/scheduler.conf",
                       "--bind-address=127.0.0.1", "--kubeconfig=/etc/kubernetes/scheduler.conf",
                       "--leader-elect=true"),
    "kube-controller-manager": ("--kubeconfig=/etc/kubernetes/controller-manager.conf",
                                "--root-ca-file=/etc/kubernetes/pki/ca.crt"),
}


class CRIKubelet:
    """Keeps one running container per :class:`CRIPod`, as the kubelet does through the CRI.

    Each pod gets one sandbox (node network, the kubelet's labels); when its
    container is not running, the next attempt is created with ``attempt + 1``
    and the same labels, and started. :attr:`attempts` counts per pod;
    :attr:`paused` stops the loop from creating anything (a kubelet that hangs).

    With ``backoff`` (seconds) it also backs off like the kubelet's CrashLoopBackOff
    (``doBackOff`` in kuberuntime_manager.go): an *exited* container of the pod that
    finished less than the pod's current back-off ago is not replaced yet, and each
    replacement of an exited container doubles that back-off (up to 300 s). A pod
    whose container was removed has no exited status, so it is never held back.
    :attr:`held_back` counts per pod how often the back-off held a start back.
    """

    def __init__(self, containerd: Containerd, pods: Sequence[CRIPod], *, poll: float = 0.1,
                 backoff: float | None = None) -> None:
        self.containerd = containerd
        self.pods = list(pods)
        self.poll = poll
        self.backoff = backoff
        self.held_back: dict[str, int] = {}
        self._backoff: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self.sandboxes: dict[str, str] = {}
        self.errors: list[str] = []
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cri-kubelet", daemon=True)
        self._stub_cm: Any = None
        self._stub: Any = None

    def __enter__(self) -> CRIKubelet:
        self._stub_cm = self.containerd.stub()
        self._stub = self._stub_cm.__enter__()
        self._sync()  # the first attempts run before the test starts
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        from kubepki.restarts.methods._cri_api import api_pb2

        for sandbox_id in self.sandboxes.values():
            with contextlib.suppress(Exception):
                self._stub.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=60)
            with contextlib.suppress(Exception):
                self._stub.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                                            timeout=60)
        self._stub_cm.__exit__(None, None, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            if self.paused.is_set():
                continue
            try:
                self._sync()
            except Exception as exc:  # reported through .errors
                self.errors.append(repr(exc))

    def _backing_off(self, spec: CRIPod, exited: Sequence[Any]) -> bool:
        """True while the kubelet's back-off holds the next start of ``spec``'s container back."""
        from kubepki.restarts.methods._cri_api import api_pb2

        if self.backoff is None or not exited:
            return False  # no exited status: the kubelet does not back off (doBackOff returns early)
        latest = max(exited, key=lambda c: c.metadata.attempt)
        status = self._stub.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=latest.id),
                                            timeout=30).status
        current = self._backoff.get(spec.pod)
        if current is not None and time.time() - status.finished_at / 1e9 < current:
            self.held_back[spec.pod] = self.held_back.get(spec.pod, 0) + 1
            return True
        self._backoff[spec.pod] = self.backoff if current is None else min(current * 2, 300.0)
        return False

    def labels(self, spec: CRIPod) -> dict[str, str]:
        """The labels the kubelet puts on a pod's sandbox (and, with the container name, its containers)."""
        return {"io.kubernetes.pod.name": spec.pod, "io.kubernetes.pod.namespace": spec.namespace,
                "io.kubernetes.pod.uid": spec.uid, TEST_LABEL: "1"}

    def sandbox_config(self, spec: CRIPod) -> Any:
        """The sandbox config of a static pod: node network, node name as hostname, a log directory."""
        from kubepki.restarts.methods._cri_api import api_pb2

        logs = self.containerd.base / "pods" / f"{spec.namespace}_{spec.pod}_{spec.uid}"
        logs.mkdir(parents=True, exist_ok=True)
        return api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=spec.pod, uid=spec.uid, namespace=spec.namespace, attempt=0),
            log_directory=str(logs),
            labels={**self.labels(spec), "component": spec.component, "tier": "control-plane"},
            linux=api_pb2.LinuxPodSandboxConfig(security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(network=api_pb2.NODE, pid=api_pb2.CONTAINER,
                                                          ipc=api_pb2.POD))),
        )

    def _sync(self) -> None:
        from kubepki.restarts.methods._cri_api import api_pb2

        stub = self._stub
        for spec in self.pods:
            config = self.sandbox_config(spec)
            if spec.pod not in self.sandboxes:
                # A new pod: the logs of an earlier one with the same uid (another test) are not its own.
                for old in Path(config.log_directory).glob("*/*.log"):
                    old.unlink()
                self.sandboxes[spec.pod] = stub.RunPodSandbox(
                    api_pb2.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
            selector = {**self.labels(spec), "io.kubernetes.container.name": spec.component}
            listed = stub.ListContainers(api_pb2.ListContainersRequest(
                filter=api_pb2.ContainerFilter(label_selector=selector)), timeout=30).containers
            if any(c.state in (api_pb2.CONTAINER_RUNNING, api_pb2.CONTAINER_CREATED) for c in listed):
                continue
            if self._backing_off(spec, [c for c in listed if c.state == api_pb2.CONTAINER_EXITED]):
                continue
            attempt = max((c.metadata.attempt for c in listed), default=-1) + 1
            logs = Path(config.log_directory) / spec.component
            if not listed:
                # As the kubelet: with no container left to count from, the pod's log directory
                # says how many attempts there were (calcRestartCountByLogDir, kuberuntime_container.go).
                attempt = max((int(p.name.split(".")[0]) + 1 for p in logs.glob("*.log")
                               if p.name.split(".")[0].isdigit()), default=0)
            logs.mkdir(parents=True, exist_ok=True)
            created = stub.CreateContainer(api_pb2.CreateContainerRequest(
                pod_sandbox_id=self.sandboxes[spec.pod],
                config=api_pb2.ContainerConfig(
                    metadata=api_pb2.ContainerMetadata(name=spec.component, attempt=attempt),
                    image=api_pb2.ImageSpec(image=spec.image),
                    command=spec.argv(),
                    labels=selector,
                    annotations={"io.kubernetes.container.restartCount": str(attempt)},
                    log_path=f"{spec.component}/{attempt}.log",
                    linux=api_pb2.LinuxContainerConfig(security_context=api_pb2.LinuxContainerSecurityContext(
                        namespace_options=api_pb2.NamespaceOption(network=api_pb2.NODE, pid=api_pb2.CONTAINER,
                                                                  ipc=api_pb2.POD))),
                ),
                sandbox_config=config,
            ), timeout=60).container_id
            stub.StartContainer(api_pb2.StartContainerRequest(container_id=created), timeout=60)
            self.attempts[spec.pod] = attempt
