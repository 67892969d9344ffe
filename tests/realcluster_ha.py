"""A real kubeadm v1.28.4 HA cluster: three control-plane nodes (stacked etcd) and a worker.

Each node is a :class:`~tests.realcluster.RealCluster` of its own — a private mount
namespace over its node root, its own containerd and kubelet, its own cgroup root —
that also lives in a **network namespace** of its own, with its own address on a
bridge this module creates (``198.51.100.0/24``, a documentation range; the host
side is ``.1``). The nodes have no default route, so nothing they send can leave
the bridge. Inside a node everything uses kubeadm's defaults: the apiserver on
``:6443``, etcd on ``:2379``/``:2380``, the kubelet on ``:10250``.

The first node runs kubeadm's init phases and uploads the control-plane
certificates (``upload-certs``); the others run the real ``kubeadm join``
(``--control-plane`` with the certificate key for cp2 and cp3, a plain join for
the worker), with the kubelet started as soon as kubeadm has written its
configuration, as systemd would. ``controlPlaneEndpoint`` is cp1's address: there
is no load balancer.

:func:`ha_cluster` is the session fixture. It skips (or fails with
``KUBEPKI_REQUIRE_REALCLUSTER=1``) like the single-node one; teardown stops every
node by PID, then removes the network namespaces and the bridge.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests import realcluster as rc, sshd

SUBNET_PREFIX = "198.51.100"
HOST_ADDRESS = f"{SUBNET_PREFIX}.1"
BRIDGE = "kpkbr0"
TOKEN = "kpkha0.0123456789abcdef"
#: the key kubeadm encrypts the uploaded control-plane certificates with (32 bytes, hex)
CERTIFICATE_KEY = hashlib.sha256(b"kubepki-ha-tests").hexdigest()
API_PORT = 6443
DEFAULT_PORTS = rc.Ports(apiserver=API_PORT, etcd_client=2379, etcd_peer=2380, etcd_metrics=2381,
                         controller_manager=10257, scheduler=10259, kubelet=10250, kubelet_healthz=10248)
#: name -> (last octet, role)
NODES: dict[str, tuple[int, str]] = {
    "kpk-cp1": (11, "control-plane"),
    "kpk-cp2": (12, "control-plane"),
    "kpk-cp3": (13, "control-plane"),
    "kpk-w1": (21, "worker"),
}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Network:
    """The bridge and one network namespace per node (removed by :meth:`remove`)."""

    def __init__(self, names: Mapping[str, int]) -> None:
        self.names = dict(names)
        self.created: list[str] = []

    def create(self) -> None:
        if _ip("link", "show", BRIDGE, check=False).returncode == 0:
            raise rc.ClusterError(f"a bridge {BRIDGE} already exists: another HA test cluster is running")
        _ip("link", "add", BRIDGE, "type", "bridge")
        self.created.append(f"link:{BRIDGE}")
        _ip("addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for name, octet in self.names.items():
            ns = f"kpk-{name}"
            _ip("netns", "add", ns)
            self.created.append(f"netns:{ns}")
            host_end, node_end = f"kv{octet}h", f"kv{octet}n"
            _ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
            self.created.append(f"link:{host_end}")
            _ip("link", "set", host_end, "master", BRIDGE, "up")
            _ip("link", "set", node_end, "netns", ns)
            run = ["netns", "exec", ns, "ip"]
            _ip(*run, "link", "set", "lo", "up")
            _ip(*run, "addr", "add", f"{SUBNET_PREFIX}.{octet}/24", "dev", node_end)
            _ip(*run, "link", "set", node_end, "up")

    def path(self, name: str) -> str:
        return f"/run/netns/kpk-{name}"

    def remove(self) -> list[str]:
        notes = []
        for item in reversed(self.created):
            kind, name = item.split(":", 1)
            r = _ip("netns", "del", name, check=False) if kind == "netns" else _ip("link", "del", name, check=False)
            if r.returncode and "Cannot find" not in r.stderr and "does not exist" not in r.stderr:
                notes.append(f"could not remove {item}: {r.stderr.strip()}")
        self.created.clear()
        return notes


class HANode(rc.RealCluster):
    """One node of the HA cluster: a :class:`RealCluster` in its own network namespace."""

    def __init__(self, workdir: Path, binaries: Mapping[str, Path], images: Mapping[str, Path], *,
                 name: str, address: str, role: str, netns: str, first: HANode | None) -> None:
        super().__init__(workdir, binaries, images, ports=DEFAULT_PORTS, node_name=name,
                         cgroup_root=f"kubepki-ha-{name}")
        self.address = address
        self.role = role
        self.netns = netns
        # every process of the node lives in its network namespace too
        self.holder_prefix = ("nsenter", f"--net={netns}")
        self.namespaces = ("-m", "-n")
        self.first = first
        self.join_config = workdir / "join.yaml"
        self._join: subprocess.Popen[bytes] | None = None
        self._sshd: subprocess.Popen[bytes] | None = None
        self.host_key_line = ""

    def _prepare_root(self) -> None:
        super()._prepare_root()
        # A CNI config whose plugin does not exist makes containerd report the network ready, so the
        # node turns Ready; host-network pods (all of ours) run, pod-network ones could not.
        (self.root / "etc/cni/net.d/10-stub.conflist").write_text(
            '{"cniVersion": "0.4.0", "name": "stub", "plugins": [{"type": "none"}]}\n')
        (self.root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
        # sshd refuses an account without a shadow entry as locked; "*": no password, key logins only
        shadow = self.root / "etc/shadow"
        if not shadow.exists():
            shadow.write_text("root:*:19000:0:99999:7:::\n")
            shadow.chmod(0o640)

    # ---------------------------------------------------------------- kubeadm's configuration

    def _node_registration(self) -> dict[str, Any]:
        return {"name": self.node_name, "criSocket": "unix:///run/containerd/containerd.sock",
                "imagePullPolicy": "Never", "ignorePreflightErrors": ["all"],
                # several kubelets share the host's cgroups: each has a root of its own
                "kubeletExtraArgs": {"node-ip": self.address, "cgroup-root": f"/{self.cgroup_root}"},
                **({"taints": []} if self.role == "worker" else {})}

    def _kubelet_configuration(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs", "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
            "staticPodPath": "/etc/kubernetes/manifests", "fileCheckFrequency": self.file_check_frequency,
            "failSwapOn": False, "makeIPTablesUtilChains": False, "protectKernelDefaults": False,
            "rotateCertificates": True, "readOnlyPort": 0, "volumePluginDir": "/var/lib/kubelet/volumeplugins",
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
                             "imagefs.available": "1%"},
        }

    def _write_kubeadm_config(self) -> None:
        addresses = [f"{SUBNET_PREFIX}.{octet}" for octet, role in NODES.values() if role == "control-plane"]
        init = {
            "apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "InitConfiguration",
            "localAPIEndpoint": {"advertiseAddress": self.address, "bindPort": API_PORT},
            "nodeRegistration": self._node_registration(),
            "bootstrapTokens": [{"token": TOKEN, "ttl": "2h", "usages": ["signing", "authentication"],
                                 "groups": ["system:bootstrappers:kubeadm:default-node-token"]}],
            "certificateKey": CERTIFICATE_KEY,
        }
        cluster = {
            "apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration",
            "kubernetesVersion": rc.K8S_VERSION, "clusterName": "kubernetes",
            "controlPlaneEndpoint": f"{self.address}:{API_PORT}", "certificatesDir": "/etc/kubernetes/pki",
            "imageRepository": "registry.k8s.io",
            "networking": {"serviceSubnet": "10.96.0.0/12", "dnsDomain": "cluster.local"},
            "apiServer": {"certSANs": addresses},
            "controllerManager": {"extraArgs": {"flex-volume-plugin-dir": "/var/lib/kubelet/volumeplugins"}},
        }
        self.kubeadm_config.write_text(yaml.safe_dump_all([init, cluster, self._kubelet_configuration()],
                                                          sort_keys=False))

    def _write_join_config(self) -> None:
        assert self.first is not None
        join: dict[str, Any] = {
            "apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "JoinConfiguration",
            "discovery": {"bootstrapToken": {"apiServerEndpoint": f"{self.first.address}:{API_PORT}",
                                             "token": TOKEN, "caCertHashes": [self.first.ca_cert_hash()]}},
            "nodeRegistration": self._node_registration(),
        }
        if self.role == "control-plane":
            join["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": self.address, "bindPort": API_PORT},
                                    "certificateKey": CERTIFICATE_KEY}
        self.join_config.write_text(yaml.safe_dump(join, sort_keys=False))

    def ca_cert_hash(self) -> str:
        """kubeadm's ``--discovery-token-ca-cert-hash`` of this cluster's CA."""
        cert = x509.load_pem_x509_certificate((self.pki / "ca.crt").read_bytes())
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(spki).hexdigest()

    # ---------------------------------------------------------------- lifecycle

    def _start(self, timeout: float) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._prepare_root()
        self._make_cgroups()
        self._start_holder()
        self._mark(f"mount and network namespace held by {self.holder_pid}")
        self._start_containerd()
        self._import_images()
        self._mark("containerd up, images imported")
        if self.first is None:
            self._init(timeout)
        else:
            self._join_cluster(timeout)

    def _init(self, timeout: float) -> None:
        self._kubeadm_init()
        self._start_kubelet()
        self._extract_admin()
        self.wait_ready(timeout)
        for phase in (["upload-config", "all"], ["upload-certs", "--upload-certs"], ["mark-control-plane"],
                      ["bootstrap-token"], ["kubelet-finalize", "all"]):
            self._kubeadm([*phase], log=f"kubeadm-{phase[0]}.log")
        if "kubelet-client-current.pem" in (self.root / "etc/kubernetes/kubelet.conf").read_text():
            self._stop_kubelet()
            self._start_kubelet()
        self.wait_pods_ready(timeout)
        rc.wait_until("leader election", self._controllers_working, timeout)
        self._mark("first control plane ready")

    def _join_cluster(self, timeout: float) -> None:
        self._write_join_config()
        log = open(self.logs / "kubeadm-join.log", "ab")  # noqa: SIM115 - closed when the join ends
        try:
            self._join = subprocess.Popen(
                # preflight insists on crictl (not needed here); kubeadm's own switch skips it
                self.nsenter(str(self.binaries["kubeadm"]), "join", "--config", str(self.join_config),
                             "--skip-phases=preflight", "--v=2"),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            flags = self.root / "var/lib/kubelet/kubeadm-flags.env"
            # kubeadm's kubelet-start phase writes the kubelet's config, asks systemd to (re)start the
            # kubelet and waits for its TLS bootstrap: start it here as systemd would
            rc.wait_until("kubeadm join to write the kubelet's configuration",
                          lambda: (flags.is_file() and (self.root / "var/lib/kubelet/config.yaml").is_file())
                          or self._join_failed(), timeout, 0.25)
            if self._join_failed():
                raise rc.ClusterError(f"kubeadm join failed: {rc.tail(self.logs / 'kubeadm-join.log', 15)}")
            self._start_kubelet()
            try:
                rc_ = self._join.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                raise rc.ClusterError(f"kubeadm join did not finish in {timeout:.0f} s: "
                                      f"{rc.tail(self.logs / 'kubeadm-join.log', 15)}") from exc
            if rc_:
                raise rc.ClusterError(f"kubeadm join failed (exit {rc_}): "
                                      f"{rc.tail(self.logs / 'kubeadm-join.log', 15)}")
        finally:
            log.close()
        self._mark("kubeadm join done")
        if self.role == "control-plane":
            self._extract_admin()
            self.wait_ready(timeout)
            self.wait_pods_ready(timeout)
            self._mark("control plane ready")

    def _join_failed(self) -> bool:
        return self._join is not None and self._join.poll() not in (None, 0)

    def start_sshd(self, client_key: Path) -> None:
        """An sshd inside the node (its mount and network namespaces) on ``address:22``, accepting
        ``client_key`` for root: ``ssh://root@ADDRESS/`` reaches the node as a real one."""
        d = self.workdir / "sshd"
        d.mkdir(exist_ok=True)
        host_key = sshd.keygen(d / "host_ed25519", comment=f"{self.node_name}-host")
        shutil.copyfile(client_key.with_suffix(".pub"), d / "authorized_keys")
        (d / "authorized_keys").chmod(0o600)
        (self.root / "run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation, inside the node
        config = d / "sshd_config"
        config.write_text(sshd._CONFIG.replace("ListenAddress 127.0.0.1", f"ListenAddress {self.address}").format(
            port=22, host_key=host_key, pid_file=d / "sshd.pid", authorized_keys=d / "authorized_keys"))
        with open(d / "sshd.log", "ab") as log:
            self._sshd = subprocess.Popen(self.nsenter(sshd.SSHD, "-D", "-e", "-f", str(config)),
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

        def up() -> bool:
            if self._sshd is not None and self._sshd.poll() is not None:
                raise rc.ClusterError(f"sshd on {self.node_name} exited: {rc.tail(d / 'sshd.log')}")
            try:
                with socket.create_connection((self.address, 22), timeout=1) as s:
                    return s.recv(64).startswith(b"SSH-2.0-")
            except OSError:
                return False

        rc.wait_until(f"sshd on {self.node_name}", up, 15, 0.1)
        self.host_key_line = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])

    @property
    def ssh_target(self) -> str:
        """``NAME=ssh://root@ADDRESS/`` for ``kubepki cluster --node``."""
        return f"{self.node_name}=ssh://root@{self.address}/"

    def stop(self) -> list[str]:
        if self._join is not None and self._join.poll() is None:
            rc._stop_popen(self._join, grace=5)
        if self._sshd is not None:
            sshd._stop(self._sshd)
        return super().stop()

    def api(self, path: str, *args: Any, **kwargs: Any) -> rc.ApiResponse:
        """One request to this node's apiserver (a worker has none: the first node's)."""
        if self.role == "worker":
            assert self.first is not None
            return self.first.api(path, *args, **kwargs)
        return super().api(path, *args, **kwargs)


class HACluster:
    """Three control-plane nodes and a worker, joined by the real kubeadm."""

    def __init__(self, workdir: Path, binaries: Mapping[str, Path], images: Mapping[str, Path]) -> None:
        self.workdir = workdir
        self.network = Network({name: octet for name, (octet, _) in NODES.items()})
        self.nodes: dict[str, HANode] = {}
        first: HANode | None = None
        for name, (octet, role) in NODES.items():
            node = HANode(workdir / name, binaries, images, name=name, address=f"{SUBNET_PREFIX}.{octet}",
                          role=role, netns=self.network.path(name), first=first)
            first = first or node
            self.nodes[name] = node
        self.timeline: list[tuple[float, str]] = []
        self.client_key: Path | None = None
        self.known_hosts = workdir / "known_hosts"

    def ssh_options(self) -> list[str]:
        """``--identity`` and ``--known-hosts`` for ``kubepki cluster`` over the nodes' sshd."""
        assert self.client_key is not None, sshd.SKIP_REASON
        return ["--identity", str(self.client_key), "--known-hosts", str(self.known_hosts)]

    @property
    def control_planes(self) -> list[HANode]:
        return [n for n in self.nodes.values() if n.role == "control-plane"]

    @property
    def workers(self) -> list[HANode]:
        return [n for n in self.nodes.values() if n.role == "worker"]

    def start(self, timeout: float = 300.0) -> None:
        t0 = time.monotonic()
        self.network.create()
        for node in self.nodes.values():
            node.workdir.mkdir(parents=True, exist_ok=True)
            node.start(timeout)  # one after the other: kubeadm join needs the previous members up
            self.timeline.append((time.monotonic() - t0, f"{node.node_name} ({node.role}) joined"))
        first = next(iter(self.nodes.values()))
        rc.wait_until("every node Ready", lambda: self.ready_nodes() >= set(self.nodes), timeout, 1.0)
        self.timeline.append((time.monotonic() - t0, "every node Ready"))
        del first
        if sshd.SKIP_REASON is None:
            self.client_key = sshd.keygen(self.workdir / "client_ed25519", comment="kubepki-ha-client")
            for node in self.nodes.values():
                node.start_sshd(self.client_key)
            self.known_hosts.write_text("".join(f"{n.address} {n.host_key_line}\n" for n in self.nodes.values()))

    def ready_nodes(self) -> set[str]:
        first = next(iter(self.nodes.values()))
        out = set()
        for item in first.api("/api/v1/nodes").json()["items"]:
            conditions = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
            if conditions.get("Ready") == "True":
                out.add(item["metadata"]["name"])
        return out

    def stop(self) -> list[str]:
        notes: list[str] = []
        for node in reversed(list(self.nodes.values())):
            with contextlib.suppress(Exception):
                notes += node.stop()
        notes += self.network.remove()
        return notes

    def leftovers(self) -> list[str]:
        left = [f"{n.node_name}: {x}" for n in self.nodes.values() for x in n.leftovers()]
        left += [f"network {x}" for x in self.network.created]
        return left


@pytest.fixture(scope="session")
def ha_cluster(request: pytest.FixtureRequest) -> Iterator[HACluster]:
    """Three control planes and a worker for the whole session, torn down by PID at its end."""
    reason = rc.missing_prerequisites() or (None if shutil.which("ip") else "iproute2's ip is missing")
    if reason:
        rc._unavailable(reason)
    cache = rc._cache_dir(request.config)
    try:
        binaries = rc.kubernetes_binaries(cache / "bin")
        images = rc.build_images(binaries, cache / "images")
    except rc.Unavailable as exc:
        rc._unavailable(str(exc))
        raise
    workdir = Path(tempfile.mkdtemp(prefix="kubepki-ha-"))
    cluster = HACluster(workdir, binaries, images)
    try:
        cluster.start()
    except BaseException:
        notes = cluster.stop()
        if notes:
            print("HA cluster teardown:", *notes, sep="\n  ")
        if not cluster.leftovers() and os.environ.get(rc.ENV_KEEP) != "1":
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        notes = cluster.stop()
        left = cluster.leftovers()
        if not left and os.environ.get(rc.ENV_KEEP) != "1":
            shutil.rmtree(workdir, ignore_errors=True)
        if left:
            raise rc.ClusterError(f"the HA cluster left things behind (work dir {workdir}): {left}; {notes}")
