"""The kubelet's own settings on a node: its configuration file and kubeadm's flags file.

kubeadm writes ``/var/lib/kubelet/config.yaml`` (a ``KubeletConfiguration``, named by
``--config`` in its systemd drop-in) and ``/var/lib/kubelet/kubeadm-flags.env``
(``KUBELET_KUBEADM_ARGS="..."``). What they say decides which kubelet certificates a
node has: ``rotateCertificates`` (client certificate rotation), ``serverTLSBootstrap``
or ``--rotate-server-certificates`` (a serving certificate from a CSR instead of the
self-signed ``kubelet.crt``), ``tlsCertFile``/``tlsPrivateKeyFile`` (a serving pair
given by the operator), ``authentication.x509.clientCAFile`` and ``--cert-dir``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki.errors import KubepkiError
from kubepki.node._fs import NodeFS, read_optional

__all__ = ["KUBEADM_FLAGS", "KUBELET_CONFIG", "KubeletSettings", "RotatedPEMs", "parse_kubeadm_flags",
           "read_kubelet_config", "read_kubelet_settings", "rotated_pems"]

#: Where kubeadm writes the kubelet's configuration (its drop-in passes ``--config`` with it).
KUBELET_CONFIG = PurePosixPath("/var/lib/kubelet/config.yaml")
#: kubeadm's per-node kubelet flags (``KUBELET_KUBEADM_ARGS``).
KUBEADM_FLAGS = PurePosixPath("/var/lib/kubelet/kubeadm-flags.env")
_LIMIT = 1 << 20
_DATED = re.compile(r"^kubelet-(?P<kind>client|server)-\d{4}(-\d{2}){5}\.pem$")
_CURRENT = ("kubelet-client-current.pem", "kubelet-server-current.pem")
_ARGS_RE = re.compile(r"^\s*KUBELET_KUBEADM_ARGS\s*=\s*(?P<value>.*?)\s*$", re.MULTILINE)


@attrs.frozen(kw_only=True)
class KubeletSettings:
    """What the kubelet's configuration file and kubeadm's flags file say about its certificates."""

    #: The configuration file read (a node path), None when there is none or it could not be used.
    config_path: str | None = None
    #: The flags of ``KUBELET_KUBEADM_ARGS`` (``--name=value``; a bare ``--name`` maps to "true").
    flags: Mapping[str, str] = attrs.field(factory=dict)
    #: Client certificate rotation: ``rotateCertificates`` (kubeadm sets it; the kubelet's default is off).
    rotate_certificates: bool = False
    #: A serving certificate by CSR: ``serverTLSBootstrap`` or ``--rotate-server-certificates``.
    server_tls_bootstrap: bool = False
    #: ``authentication.x509.clientCAFile``: the CA the kubelet trusts for client certificates.
    client_ca_file: str | None = None
    #: ``tlsCertFile`` / ``tlsPrivateKeyFile``: a serving pair the operator gives; no kubelet.crt then.
    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None
    #: ``--cert-dir``: where the kubelet keeps its certificates (default /var/lib/kubelet/pki).
    cert_dir: str | None = None
    #: Problems met while reading, in plain words.
    notes: tuple[str, ...] = ()
    #: The configuration file's whole content (empty without one), for the fields not modelled here.
    config: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def container_runtime_endpoint(self) -> str | None:
        """The runtime the kubelet talks to: ``containerRuntimeEndpoint``, else ``--container-runtime-endpoint``."""
        return _str(self.config.get("containerRuntimeEndpoint")) or _str(self.flags.get("container-runtime-endpoint"))

    @property
    def found(self) -> bool:
        """True when a configuration file was read."""
        return self.config_path is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "config_path": self.config_path,
            "rotate_certificates": self.rotate_certificates,
            "server_tls_bootstrap": self.server_tls_bootstrap,
            "client_ca_file": self.client_ca_file,
            "tls_cert_file": self.tls_cert_file,
            "tls_private_key_file": self.tls_private_key_file,
            "cert_dir": self.cert_dir,
        }


def parse_kubeadm_flags(text: str) -> dict[str, str]:
    """The flags of ``KUBELET_KUBEADM_ARGS`` in a kubeadm-flags.env (the last assignment wins)."""
    matches = list(_ARGS_RE.finditer(text))
    if not matches:
        return {}
    value = matches[-1].group("value")
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.strip("\"'").split()
    if len(words) == 1 and " " in words[0]:  # KUBELET_KUBEADM_ARGS="--a=1 --b=2": one quoted word
        words = words[0].split()
    flags: dict[str, str] = {}
    for word in words:
        if not word.startswith("--"):
            continue
        name, sep, val = word[2:].partition("=")
        flags[name] = val if sep else "true"
    return flags


def _true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _flags(fs: NodeFS, notes: list[str]) -> dict[str, str]:
    raw = read_optional(fs, KUBEADM_FLAGS, notes)
    return parse_kubeadm_flags(raw.decode(errors="replace")) if raw is not None else {}


def read_kubelet_config(fs: NodeFS, path: PurePosixPath | None = None, *, notes: list[str] | None = None,
                        flags: Mapping[str, str] | None = None) -> tuple[PurePosixPath, Mapping[str, Any] | None]:
    """The kubelet's configuration file: where it is and its content (None when absent or unusable).

    ``path`` None means the one ``--config`` names in kubeadm-flags.env (``flags``, when
    already read), else :data:`KUBELET_CONFIG`. Problems go to ``notes``, never raised.
    """
    from kubepki.pki import load_one

    said = notes if notes is not None else []
    if path is None:
        named = (flags if flags is not None else _flags(fs, said)).get("config", "")
        path = PurePosixPath(named) if named.startswith("/") else KUBELET_CONFIG
    raw = read_optional(fs, path, said)
    if raw is None:
        return path, None
    try:
        loaded = load_one(raw, path=str(path))
    except KubepkiError as exc:
        said.append(f"ignored {path}: {exc.message}")
        return path, None
    if not isinstance(loaded, Mapping):
        said.append(f"ignored {path}: not a KubeletConfiguration mapping")
        return path, None
    return path, loaded


def read_kubelet_settings(fs: NodeFS, config: PurePosixPath | None = None) -> KubeletSettings:
    """The kubelet's settings on the node ``fs`` reads; ``config`` overrides where its configuration file is.

    Absent files give the kubelet's defaults; unreadable or malformed ones add a note, never an error.
    """
    notes: list[str] = []
    flags = _flags(fs, notes)
    path, loaded = read_kubelet_config(fs, config, notes=notes, flags=flags)
    data: Mapping[str, Any] = loaded or {}
    read_ok = loaded is not None
    auth = data.get("authentication")
    x509 = auth.get("x509") if isinstance(auth, Mapping) else None
    return KubeletSettings(
        config_path=str(path) if read_ok else None,
        flags=flags,
        # A flag overrides the file (the kubelet's precedence); both spellings of the serving switch count.
        rotate_certificates=_true(flags["rotate-certificates"]) if "rotate-certificates" in flags
        else _true(data.get("rotateCertificates")),
        server_tls_bootstrap=_true(flags.get("rotate-server-certificates")) or _true(data.get("serverTLSBootstrap")),
        client_ca_file=_str(flags.get("client-ca-file")) or (_str(x509.get("clientCAFile"))
                                                             if isinstance(x509, Mapping) else None),
        tls_cert_file=_str(flags.get("tls-cert-file")) or _str(data.get("tlsCertFile")),
        tls_private_key_file=_str(flags.get("tls-private-key-file")) or _str(data.get("tlsPrivateKeyFile")),
        cert_dir=_str(flags.get("cert-dir")),
        notes=tuple(notes),
        config=data,
    )


@attrs.frozen(kw_only=True)
class RotatedPEMs:
    """The dated ``kubelet-client-<time>.pem`` / ``kubelet-server-<time>.pem`` files in the kubelet's PKI dir."""

    #: Each ``-current`` symlink and its target as stored.
    kept: tuple[tuple[str, str], ...]
    #: Node paths of the dated regular files no ``-current`` symlink names (each holds a private key), sorted.
    stale: tuple[str, ...]
    #: Why some dated files count as in use although no symlink names them.
    notes: tuple[str, ...] = ()

    def stale_of(self, kind: str) -> tuple[str, ...]:
        """The stale files of ``kind`` (``client`` or ``server``)."""
        return tuple(p for p in self.stale if PurePosixPath(p).name.startswith(f"kubelet-{kind}-"))


def rotated_pems(fs: NodeFS, pki_dir: PurePosixPath) -> RotatedPEMs:
    """The kubelet's dated PEMs in ``pki_dir``: which ``-current`` symlinks name, which are stale.

    A ``-current`` that is not a symlink (the kubelet writes symlinks; something else wrote this one)
    leaves every dated file of its kind in use, and with no symlink at all nothing is stale: kubepki
    cannot tell which one the kubelet reads. Raises :class:`~kubepki.NodeError` when the directory
    cannot be listed.
    """
    kept: list[tuple[str, str]] = []
    notes: list[str] = []
    unsure: set[str] = set()
    for name in _CURRENT:
        target = fs.readlink(pki_dir / name)
        if target is not None:
            kept.append((name, target))
        elif fs.stat(pki_dir / name, follow=False) is not None:
            kind = name.split("-")[1]
            unsure.add(kind)
            notes.append(f"{pki_dir / name} is not a symlink: the dated {kind} files are all kept")
    if not kept:
        notes.append(f"no kubelet-*-current.pem symlink in {pki_dir}: nothing is removed without knowing what is "
                     "in use")
        return RotatedPEMs(kept=(), stale=(), notes=tuple(notes))
    named = {PurePosixPath(target).name for _link, target in kept}
    stale = []
    for name in fs.listdir(pki_dir):
        m = _DATED.match(name)
        if m is None or name in named or m.group("kind") in unsure:
            continue
        st = fs.stat(pki_dir / name, follow=False)
        if st is not None and st.is_file:  # a symlink or a directory with a dated name is not the kubelet's
            stale.append(str(pki_dir / name))
    return RotatedPEMs(kept=tuple(kept), stale=tuple(sorted(stale)), notes=tuple(notes))
