"""The kubelets' CertificateSigningRequests over the live API: list them, approve the safe serving ones.

kubeadm does not approve ``kubernetes.io/kubelet-serving`` CSRs (kubelets with
``serverTLSBootstrap: true`` wait for someone to), and approving one blindly lets
whoever holds a node's credentials get a serving certificate for any name the cluster
CA vouches for. A serving CSR is approved only when all of these hold (the criteria of
the Kubernetes docs, "Certificate Signing Requests", kubelet-serving signer, and of
kubelet-csr-approver):

- its signer is ``kubernetes.io/kubelet-serving``, and it is pending (neither approved,
  denied nor failed);
- it was requested by ``system:node:NAME`` in group ``system:nodes``, and the CSR's
  subject is exactly CN ``system:node:NAME``, O ``system:nodes``;
- the Node ``NAME`` exists, and every SAN is one of that Node's own addresses
  (``status.addresses``: hostname and DNS names as DNS SANs, IPs as IP SANs); no e-mail
  or URI SANs, at least one SAN;
- its usages are exactly digital signature and server auth, plus key encipherment
  for an RSA key only;
- the request's signature is valid.

Everything else is refused with the reasons, never approved; nothing is denied.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from kubepki._clock import iso, utc as _utc
from kubepki._report import Block, Cell, Line, Outcome, Report, Table
from kubepki.errors import APIError, ConfigError
from kubepki.objects._apiclient import KubeClient, Resource

__all__ = ["KUBELET_CLIENT_SIGNER", "KUBELET_SERVING_SIGNER", "CSRApproval", "KubeletCSR", "KubeletCSRList",
           "approve_kubelet_csrs", "list_kubelet_csrs", "review_csr"]

KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
_CSRS = Resource("CertificateSigningRequest", "/apis/certificates.k8s.io/v1", "certificatesigningrequests", False)
_NODE_PREFIX = "system:node:"
_NODES_GROUP = "system:nodes"
_DNS_TYPES = ("Hostname", "InternalDNS", "ExternalDNS")
_IP_TYPES = ("InternalIP", "ExternalIP")


@attrs.frozen(kw_only=True)
class KubeletCSR:
    """One kubelet CSR as the API holds it, with kubepki's verdict on approving it."""

    name: str
    signer: str
    #: ``spec.username``: who created the CSR (the apiserver sets it, the requester cannot).
    requestor: str
    groups: tuple[str, ...]
    usages: tuple[str, ...]
    created: dt.datetime | None
    #: ``pending``, ``approved``, ``denied``, ``failed`` or ``issued`` (approved and signed).
    state: str
    common_name: str | None
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    #: Why kubepki would not approve it; empty when it may be approved (pending serving CSRs only).
    refusals: tuple[str, ...]
    resource_version: str = ""

    @property
    def approvable(self) -> bool:
        """True for a pending kubelet-serving CSR that meets every criterion."""
        return self.state == "pending" and self.signer == KUBELET_SERVING_SIGNER and not self.refusals

    @property
    def node(self) -> str | None:
        """The node the requestor is (``system:node:NAME``), None for another requestor."""
        return self.requestor[len(_NODE_PREFIX):] if self.requestor.startswith(_NODE_PREFIX) else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "signer": self.signer, "requestor": self.requestor, "groups": list(self.groups),
                "usages": list(self.usages), "created": iso(self.created) if self.created else None,
                "state": self.state, "common_name": self.common_name, "organizations": list(self.organizations),
                "dns_names": list(self.dns_names), "ip_addresses": list(self.ip_addresses),
                "approvable": self.approvable, "refusals": list(self.refusals)}


@attrs.frozen(kw_only=True)
class KubeletCSRList(Report):
    """The kubelet CSRs of a cluster: the pending ones and those created recently."""

    server: str
    now: dt.datetime
    csrs: tuple[KubeletCSR, ...]

    @property
    def pending(self) -> tuple[KubeletCSR, ...]:
        """The CSRs nobody approved or denied yet."""
        return tuple(c for c in self.csrs if c.state == "pending")

    @property
    def outcome(self) -> Outcome:
        """Warning while a kubelet CSR is pending (a kubelet waits for its certificate)."""
        return Outcome.WARNING if self.pending else Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """The list as in kubepki's JSON output."""
        return {"server": self.server, "now": iso(self.now), "csrs": [c.to_dict() for c in self.csrs]}

    def rows(self) -> Table:
        """One row per CSR, with what approving it would do."""
        rows = []
        for c in self.csrs:
            verdict = ("approvable" if c.approvable else "; ".join(c.refusals) if c.state == "pending" else "")
            tone = "ok" if c.approvable else "error" if c.state == "pending" and c.refusals else None
            rows.append([Cell(c.name, strong=True), Cell(c.signer), Cell(c.requestor),
                         Cell(c.state, "warning" if c.state == "pending" else None), Cell(verdict, tone)])
        return Table(f"kubelet CSRs at {self.server}", ("NAME", "SIGNER", "REQUESTOR", "STATE", "APPROVAL"), rows)


@attrs.frozen(kw_only=True)
class CSRApproval(Report):
    """What ``approve`` did (or, dry, would do) with each pending kubelet-serving CSR."""

    dry_run: bool
    approved: tuple[str, ...]
    refused: tuple[tuple[str, tuple[str, ...]], ...]
    #: CSRs that could not be approved although they qualified (the API refused: changed, forbidden...).
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def outcome(self) -> Outcome:
        """Failed when an approval failed or a CSR was refused; ok otherwise."""
        return Outcome.FAILED if self.failed or self.refused else Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """The result as in kubepki's JSON output."""
        return {"dry_run": self.dry_run, "approved": list(self.approved),
                "refused": [{"name": n, "reasons": list(r)} for n, r in self.refused],
                "failed": [{"name": n, "error": e} for n, e in self.failed]}

    def rows(self) -> Table:
        """One row per CSR considered."""
        verb = "would approve" if self.dry_run else "approved"
        rows = [[Cell(n, strong=True), Cell(verb, "ok"), Cell("")] for n in self.approved]
        rows += [[Cell(n, strong=True), Cell("refused", "error"), Cell("; ".join(r))] for n, r in self.refused]
        rows += [[Cell(n, strong=True), Cell("failed", "error"), Cell(e)] for n, e in self.failed]
        return Table("kubelet-serving CSR approval", ("NAME", "ACTION", "WHY"), rows)

    def blocks(self) -> Sequence[Block]:
        """The table, then whether anything was changed."""
        tail = "Dry run: nothing was approved (add --apply)." if self.dry_run else \
            f"{len(self.approved)} CSR(s) approved."
        return [self.rows(), Line([tail])]


# --------------------------------------------------------------------------------------


def _state(status: Mapping[str, Any]) -> str:
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    types = {c.get("type") for c in conditions if isinstance(c, Mapping)} if isinstance(conditions, list) else set()
    if "Denied" in types:
        return "denied"
    if "Failed" in types:
        return "failed"
    if "Approved" in types:
        return "issued" if status.get("certificate") else "approved"
    return "pending"


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _node_addresses(node: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    status = node.get("status")
    addresses = status.get("addresses") if isinstance(status, Mapping) else None
    dns: set[str] = set()
    ips: set[str] = set()
    for a in addresses if isinstance(addresses, list) else []:
        if not isinstance(a, Mapping) or not isinstance(a.get("address"), str):
            continue
        if a.get("type") in _DNS_TYPES:
            dns.add(a["address"])
        elif a.get("type") in _IP_TYPES:
            try:
                ips.add(str(ipaddress.ip_address(a["address"])))
            except ValueError:
                continue
    return dns, ips


def _map(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def review_csr(obj: Mapping[str, Any], node: Mapping[str, Any] | None) -> KubeletCSR:
    """One CSR object with kubepki's verdict; ``node`` is the Node object of its requestor (None if none).

    Never raises for what the object holds: an unparseable request is a refusal.
    """
    meta, spec, status = _map(obj, "metadata"), _map(obj, "spec"), _map(obj, "status")
    signer = str(spec.get("signerName") or "")
    requestor = str(spec.get("username") or "")
    groups = _strings(spec.get("groups"))
    usages = _strings(spec.get("usages"))
    refusals: list[str] = []
    cn: str | None = None
    orgs: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    csr: x509.CertificateSigningRequest | None = None
    try:
        csr = x509.load_pem_x509_csr(base64.b64decode(str(spec.get("request") or ""), validate=True))
        cn_attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(cn_attrs[0].value) if len(cn_attrs) == 1 else None
        orgs = tuple(str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        if san is not None:
            dns = tuple(san.get_values_for_type(x509.DNSName))
            ips = tuple(str(i) for i in san.get_values_for_type(x509.IPAddress))
            if san.get_values_for_type(x509.RFC822Name) or san.get_values_for_type(x509.UniformResourceIdentifier):
                refusals.append("it asks for e-mail or URI SANs")
        if not csr.is_signature_valid:
            refusals.append("the request's signature is invalid")
    except (ValueError, TypeError) as exc:
        refusals.append(f"the request cannot be parsed ({str(exc).splitlines()[0][:120] if str(exc) else 'bad'})")
        csr = None
    except Exception as exc:
        refusals.append(f"the request cannot be parsed ({type(exc).__name__})")
        csr = None
    state = _state(status)
    if signer == KUBELET_SERVING_SIGNER and state == "pending":
        refusals += _serving_refusals(requestor=requestor, groups=groups, usages=usages, cn=cn, orgs=orgs,
                                      dns=dns, ips=ips, csr=csr, node=node)
    elif signer != KUBELET_SERVING_SIGNER:
        refusals.append(f"signer {signer or 'none'} is not {KUBELET_SERVING_SIGNER}: kubepki approves serving CSRs "
                        "only")
    return KubeletCSR(
        name=str(meta.get("name") or ""), signer=signer, requestor=requestor, groups=groups, usages=usages,
        created=_time(meta.get("creationTimestamp")), state=state, common_name=cn, organizations=orgs,
        dns_names=dns, ip_addresses=ips, refusals=tuple(dict.fromkeys(refusals)),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def _serving_refusals(*, requestor: str, groups: Sequence[str], usages: Sequence[str], cn: str | None,
                      orgs: Sequence[str], dns: Sequence[str], ips: Sequence[str],
                      csr: x509.CertificateSigningRequest | None, node: Mapping[str, Any] | None) -> list[str]:
    out: list[str] = []
    if not requestor.startswith(_NODE_PREFIX) or len(requestor) == len(_NODE_PREFIX):
        out.append(f"requested by {requestor or 'nobody'}, not by a node (system:node:NAME)")
    elif _NODES_GROUP not in groups:
        out.append(f"the requestor is not in group {_NODES_GROUP}")
    if cn != requestor:
        out.append(f"its CN {cn!r} is not its requestor {requestor!r}")
    if list(orgs) != [_NODES_GROUP]:
        out.append(f"its O {list(orgs)} is not [{_NODES_GROUP!r}]")
    rsa_key = csr is not None and isinstance(_public_key(csr), rsa.RSAPublicKey)
    allowed = {"digital signature", "server auth"} | ({"key encipherment"} if rsa_key else set())
    extra = sorted(set(usages) - allowed)
    if extra:
        out.append(f"it asks for usages {', '.join(extra)}"
                   + (" (key encipherment is for RSA keys only)" if "key encipherment" in extra else ""))
    if not {"digital signature", "server auth"} <= set(usages):
        out.append("it lacks digital signature or server auth")
    if not dns and not ips:
        out.append("it names no SAN")
    if node is None:
        if requestor.startswith(_NODE_PREFIX):
            out.append(f"there is no Node {requestor[len(_NODE_PREFIX):]!r}")
        return out
    node_dns, node_ips = _node_addresses(node)
    foreign = [d for d in dns if d not in node_dns] + [i for i in ips if i not in node_ips]
    if foreign:
        name = requestor[len(_NODE_PREFIX):]
        out.append(f"SAN {', '.join(foreign)} is not an address of Node {name}")
    return out


def _public_key(csr: x509.CertificateSigningRequest) -> object:
    try:
        return csr.public_key()
    except Exception:
        return None


def _client(kubeconfig: KubeClient | str | os.PathLike[str] | None, context: str | None) -> tuple[KubeClient, bool]:
    if isinstance(kubeconfig, KubeClient):
        return kubeconfig, False
    return KubeClient.from_kubeconfig(kubeconfig, context=context), True


def _fetch(client: KubeClient, now: dt.datetime, recent: dt.timedelta) -> list[KubeletCSR]:
    nodes: dict[str, Mapping[str, Any] | None] = {}
    out = []
    for obj in client.list(_CSRS):
        spec = _map(obj, "spec")
        if spec.get("signerName") not in (KUBELET_SERVING_SIGNER, KUBELET_CLIENT_SIGNER):
            continue
        requestor = str(spec.get("username") or "")
        node: Mapping[str, Any] | None = None
        if spec.get("signerName") == KUBELET_SERVING_SIGNER and requestor.startswith(_NODE_PREFIX):
            name = requestor[len(_NODE_PREFIX):]
            if name not in nodes:
                try:
                    nodes[name] = client.get_json(f"/api/v1/nodes/{_quote(name)}")
                except APIError as exc:
                    if exc.status != 404:
                        raise
                    nodes[name] = None
            node = nodes[name]
        csr = review_csr(obj, node)
        if csr.state == "pending" or (csr.created is not None and now - csr.created <= recent):
            out.append(csr)
    return sorted(out, key=lambda c: (c.created or now, c.name))


def _quote(name: str) -> str:
    import urllib.parse

    return urllib.parse.quote(name, safe="")


def list_kubelet_csrs(
    kubeconfig: KubeClient | str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    now: dt.datetime | None = None,
    recent: dt.timedelta = dt.timedelta(hours=24),
) -> KubeletCSRList:
    """The kubelet CSRs (serving and client) that are pending or were created within ``recent``.

    ``kubeconfig`` is a path (None: ``$KUBECONFIG`` or ``~/.kube/config``) or a
    :class:`~kubepki.objects.KubeClient`. Raises :class:`~kubepki.APIError` when the API
    cannot be read.
    """
    when = _utc(now)
    client, own = _client(kubeconfig, context)
    try:
        return KubeletCSRList(server=client.server, now=when, csrs=tuple(_fetch(client, when, recent)))
    finally:
        if own:
            client.close()


def approve_kubelet_csrs(
    kubeconfig: KubeClient | str | os.PathLike[str] | None = None,
    names: Iterable[str] | None = None,
    *,
    context: str | None = None,
    apply: bool = False,
    now: dt.datetime | None = None,
) -> CSRApproval:
    """Approve the pending kubelet-serving CSRs that meet every criterion (see the module docs).

    ``names`` limits it to those CSRs (each must exist and be a pending kubelet CSR);
    dry run unless ``apply``. Each approval carries the resourceVersion it was judged
    at, so a CSR changed since is not approved (a failure, not a retry).
    """
    when = _utc(now)
    client, own = _client(kubeconfig, context)
    try:
        pending = [c for c in _fetch(client, when, dt.timedelta(0)) if c.state == "pending"]
        if names is not None:
            wanted = list(dict.fromkeys(names))
            known = {c.name for c in pending}
            missing = [n for n in wanted if n not in known]
            if missing:
                raise ConfigError(f"no pending kubelet CSR named {', '.join(missing)}")
            pending = [c for c in pending if c.name in wanted]
        approved: list[str] = []
        refused = [(c.name, c.refusals) for c in pending if not c.approvable]
        failed: list[tuple[str, str]] = []
        for c in pending:
            if not c.approvable:
                continue
            if not apply:
                approved.append(c.name)
                continue
            try:
                _approve(client, c)
            except APIError as exc:
                failed.append((c.name, exc.message))
            else:
                approved.append(c.name)
        return CSRApproval(dry_run=not apply, approved=tuple(approved), refused=tuple(refused), failed=tuple(failed))
    finally:
        if own:
            client.close()


def _approve(client: KubeClient, csr: KubeletCSR) -> None:
    path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{_quote(csr.name)}"
    current = client.get_json(path)
    meta = current.get("metadata")
    if not isinstance(meta, dict) or str(meta.get("resourceVersion") or "") != csr.resource_version:
        raise APIError(f"{csr.name} changed since it was reviewed: list and approve again", url=path)
    status = current.setdefault("status", {})
    if not isinstance(status, dict):
        raise APIError(f"{csr.name} has an unexpected status", url=path)
    conditions = status.setdefault("conditions", [])
    if not isinstance(conditions, list):
        raise APIError(f"{csr.name} has unexpected conditions", url=path)
    conditions.append({"type": "Approved", "status": "True", "reason": "KubepkiApproved",
                       "message": "approved by kubepki: requestor, subject, SANs and usages are the node's own"})
    client.put_json(f"{path}/approval", current)
