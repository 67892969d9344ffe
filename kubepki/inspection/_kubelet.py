"""Findings about the kubelet's certificates that come from its settings, not from one file alone.

What the kubelet's configuration says (:class:`kubepki.node.KubeletSettings`) turns into
findings on the inventory's kubelet items and on ``ca``:

- ``kubelet-rotation-disabled``: ``rotateCertificates`` is off, so nothing renews the client
  certificate; an error once that certificate is within the warning window.
- ``kubelet-serving-pending``: ``serverTLSBootstrap`` is on but there is no serving certificate
  (its CSR waits for approval: kubeadm does not approve kubelet-serving CSRs).
- ``kubelet-serving-self-signed``: the self-signed ``kubelet.crt`` expires and the kubelet never
  renews it (kubernetes/kubernetes#99418).
- ``bootstrap-kubeconfig-left``: ``bootstrap-kubelet.conf`` outlived the TLS bootstrap it was for
  (``kubeadm join`` removes it); it holds a bootstrap token.
- ``rotated-client-certificates``: the dated ``kubelet-client-*.pem`` files rotation leaves behind.
- ``kubelet-client-ca-mismatch``: ``clientCAFile`` does not hold the cluster CA, so the apiserver's
  client certificate (``kubectl logs``/``exec``) is refused by this kubelet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import attrs

from kubepki.errors import NodeError, ParseError
from kubepki.inspection._findings import Finding, Severity, Status, make, status_for
from kubepki.node import rotated_pems
from kubepki.pki import cert_facts, load_certificates

if TYPE_CHECKING:
    from kubepki.inspection._inventory import InventoryItem
    from kubepki.node import KubeletSettings, Node, NodeProfile

__all__ = ["kubelet_findings"]

_ISSUE_99418 = "kubernetes/kubernetes#99418"


def kubelet_findings(
    node: Node,
    profile: NodeProfile,
    items: Sequence[InventoryItem],
    *,
    now: dt.datetime,
    warn_within: dt.timedelta,
) -> tuple[InventoryItem, ...]:
    """``items`` with the findings the kubelet's settings add (see the module docstring)."""
    settings = profile.kubelet
    # A node without serverTLSBootstrap never has a kubelet-server-current.pem: not an item there.
    kept = [i for i in items if not (i.name == "kubelet-server-current.pem" and i.status is Status.MISSING
                                     and not settings.server_tls_bootstrap)]
    by_name = {item.name: item for item in kept}
    found = [
        *_rotation(settings, by_name, now, warn_within),
        *_serving(settings, by_name, now, warn_within),
        *_bootstrap_left(node, profile, by_name),
        *_rotated(node, profile.kubelet_pki_dir, by_name),
        *_client_ca(node, settings.client_ca_file, by_name.get("ca")),
    ]
    extra: dict[str, list[Finding]] = {}
    for name, finding in found:
        extra.setdefault(name, []).append(finding)
    return tuple(_with(item, extra.get(item.name, ())) for item in kept)


def _with(item: InventoryItem, more: Sequence[Finding]) -> InventoryItem:
    if not more:
        return item
    findings = (*item.findings, *more)
    status = item.status if item.status is Status.MISSING else status_for(findings)
    return attrs.evolve(item, findings=findings, status=status)


_Found = list[tuple[str, Finding]]


def _rotation(settings: KubeletSettings, by_name: Mapping[str, InventoryItem], now: dt.datetime,
              warn_within: dt.timedelta) -> _Found:
    client = _client_item(by_name)
    if client is None or not settings.found or settings.rotate_certificates or client.not_after is None:
        return []
    near = client.not_after - now <= warn_within
    return [(client.name, make(
        "kubelet-rotation-disabled",
        f"{settings.config_path} does not set rotateCertificates: true, so nothing renews the kubelet's "
        f"client certificate ({client.path}); " + (
            "it is about to run out and the node will lose the API" if near else
            "it will lose the API when it runs out"),
        Severity.ERROR if near else Severity.INFO))]


def _serving(settings: KubeletSettings, by_name: Mapping[str, InventoryItem], now: dt.datetime,
             warn_within: dt.timedelta) -> _Found:
    out: _Found = []
    serving = by_name.get("kubelet-server-current.pem")
    if serving is not None and serving.status is Status.MISSING and settings.server_tls_bootstrap:
        out.append((serving.name, make(
            "kubelet-serving-pending",
            f"serverTLSBootstrap is on but {serving.path} does not exist: the kubelet's kubelet-serving CSR "
            "waits for approval (kubeadm does not approve them; `kubepki csr approve` approves the safe ones), "
            "and until then `kubectl logs`/`exec` and "
            "metrics scrapes that verify the kubelet fail")))
    self_signed = by_name.get("kubelet.crt")
    if (self_signed is not None and self_signed.not_after is not None and not settings.server_tls_bootstrap
            and self_signed.not_after - now <= warn_within):
        out.append((self_signed.name, make(
            "kubelet-serving-self-signed",
            f"{self_signed.path} is self-signed and the kubelet never renews it ({_ISSUE_99418}): remove "
            "kubelet.crt and kubelet.key and restart the kubelet to get a new one, or turn on "
            "serverTLSBootstrap")))
    return out


def _bootstrap_left(node: Node, profile: NodeProfile, by_name: Mapping[str, InventoryItem]) -> _Found:
    conf = by_name.get("kubelet.conf")
    path = profile.kubeconfig_dir / "bootstrap-kubelet.conf"
    if conf is None or conf.status is Status.MISSING or not _exists(node, path):
        return []
    return [(conf.name, make(
        "bootstrap-kubeconfig-left",
        f"{path} is still there although the kubelet has its own credentials: kubeadm join removes it after "
        "the TLS bootstrap; it holds a bootstrap token, so delete it (and the token, `kubeadm token delete`)"))]


def _client_item(by_name: Mapping[str, InventoryItem]) -> InventoryItem | None:
    """The item holding the kubelet's client certificate: the rotated PEM, else an embedded kubelet.conf."""
    pem = by_name.get("kubelet-client-current.pem")
    if pem is not None and pem.status is not Status.MISSING:
        return pem
    conf = by_name.get("kubelet.conf")
    return conf if conf is not None and conf.status is not Status.MISSING else None


def _exists(node: Node, path: PurePosixPath) -> bool:
    try:
        return node.fs.stat(path, follow=False) is not None
    except NodeError:
        return False


def _rotated(node: Node, pki_dir: PurePosixPath, by_name: Mapping[str, InventoryItem]) -> _Found:
    """The dated client PEMs no symlink names (what `kubepki kubelet clean-up` would remove), as one finding."""
    current = by_name.get("kubelet-client-current.pem")
    if current is None:
        return []
    try:
        dated = rotated_pems(node.fs, pki_dir).stale_of("client")
    except NodeError:
        return []
    if not dated:
        return []
    oldest = PurePosixPath(dated[0]).name[len("kubelet-client-"):-len(".pem")]
    return [(current.name, make(
        "rotated-client-certificates",
        f"{len(dated)} earlier client certificate(s) in {pki_dir} that kubelet-client-current.pem no longer "
        f"names, the oldest from {oldest} (each holds a private key; `kubepki kubelet clean-up` removes them)"))]


def _client_ca(node: Node, client_ca_file: str | None, ca: InventoryItem | None) -> _Found:
    finding = _client_ca_problem(node, client_ca_file, ca) if client_ca_file and ca is not None else None
    return [("ca", finding)] if finding is not None else []


def _client_ca_problem(node: Node, client_ca_file: str, ca: InventoryItem) -> Finding | None:
    path = PurePosixPath(client_ca_file)
    if ca.facts is None or not path.is_absolute():
        return None
    try:
        found = node.fs.read_file(path, limit=1 << 20)
    except NodeError as exc:
        return make("kubelet-client-ca-mismatch", f"the kubelet's clientCAFile {path} cannot be read: {exc.message}")
    if found is None:
        return make("kubelet-client-ca-mismatch", f"the kubelet's clientCAFile {path} does not exist: the kubelet "
                    "refuses every client certificate, the apiserver's included")
    data = found[2]
    if data is None:
        return make("kubelet-client-ca-mismatch", f"the kubelet's clientCAFile {path} is not a regular file of "
                    "certificates (or is far too large)")
    try:
        certs = load_certificates(data, path=str(path))
    except ParseError as exc:
        return make("kubelet-client-ca-mismatch", f"the kubelet's clientCAFile {path}: {exc.message}")
    fingerprints = {cert_facts(c).fingerprint_sha256 for c in certs}
    if ca.facts.fingerprint_sha256 in fingerprints:
        return None
    return make("kubelet-client-ca-mismatch",
                f"the kubelet's clientCAFile {path} does not hold the cluster CA ({ca.path}): the kubelet refuses "
                "the apiserver's client certificate (kubectl logs, exec and port-forward fail on this node)")
