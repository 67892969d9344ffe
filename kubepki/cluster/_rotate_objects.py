"""The live objects a CA rotation keeps in step with the files, when an API server is reachable.

- ``kube-public/cluster-info`` (``ca`` only): the kubeconfig ``kubeadm join`` discovers the cluster
  from carries the CA file's certificates of the phase, so a node joining mid-rotation trusts what the
  API server serves (kube-controller-manager's bootstrapsigner re-signs it for the bootstrap tokens);
- ``kube-system/extension-apiserver-authentication`` (``ca``: ``client-ca-file``; ``front-proxy-ca``:
  ``requestheader-client-ca-file``), what aggregated API servers trust: kube-apiserver's
  ClusterAuthenticationTrustController merges what it loads into what the ConfigMap holds and never
  removes a CA (pkg/controlplane/controller/clusterauthenticationtrust, ``combinedClusterAuthenticationInfo``),
  so the old CA would stay trusted there for good; the sync sets the rotated CAs to the phase's, keeping
  the others (another kube-apiserver's);
- every ``caBundle`` of a MutatingWebhookConfiguration, ValidatingWebhookConfiguration and APIService
  that carries the old or the new CA: it gets the phase's certificates of the two, the others it holds
  kept (a webhook served by a certificate the cluster CA signed must stay trusted through the rotation).

The sync is state-based: the desired certificates are the CA file's on a node holding the CA's key, so
the same call brings the objects in step after an apply, a resumed phase or an abort.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kubepki.errors import KubepkiError
from kubepki.pki import cert_to_pem, load_certificates

__all__ = ["ObjectSync", "sync_objects"]

_CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
_EXTENSION_AUTH = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
#: The key of extension-apiserver-authentication that carries each CA.
_EXTENSION_KEYS = {"ca": "client-ca-file", "front-proxy-ca": "requestheader-client-ca-file"}
_BUNDLED = (("MutatingWebhookConfiguration", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"),
            ("ValidatingWebhookConfiguration",
             "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"),
            ("APIService", "/apis/apiregistration.k8s.io/v1/apiservices"))


@attrs.frozen(kw_only=True)
class ObjectSync:
    """What syncing the live objects did: the objects updated, those already in step, and problems."""

    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"updated": list(self.updated), "unchanged": list(self.unchanged), "problems": list(self.problems)}


@attrs.define
class _Out:
    updated: list[str] = attrs.field(factory=list)
    unchanged: list[str] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)


def _fp(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert_to_pem(c) for c in certs)


def _rebundled(current: bytes, rotated: set[str], want: Sequence[x509.Certificate]) -> bytes | None:
    """``current`` with its certificates of the rotation (``rotated`` fingerprints) replaced by ``want``;
    None when it holds none of them (not the rotated CA's bundle) or is already so."""
    try:
        certs = load_certificates(current)
    except KubepkiError:
        return None
    if not {_fp(c) for c in certs} & rotated:
        return None
    others = [c for c in certs if _fp(c) not in rotated]
    after = _pem([*want, *others])
    return None if [_fp(c) for c in certs] == [_fp(c) for c in [*want, *others]] else after


def _bundles(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The dicts of ``obj`` holding its ``caBundle``s (each webhook's clientConfig, an APIService's spec)."""
    spec = obj.get("spec")
    if isinstance(spec, dict) and "caBundle" in spec:
        yield spec
    for hook in obj.get("webhooks") or ():
        if isinstance(hook, dict) and isinstance(hook.get("clientConfig"), dict) \
                and "caBundle" in hook["clientConfig"]:
            yield hook["clientConfig"]


def sync_objects(kubeconfig: str | os.PathLike[str], *, ca: str, want: Sequence[x509.Certificate],
                 rotated: Sequence[x509.Certificate], timeout: float = 10.0) -> ObjectSync:
    """Bring the live objects carrying the rotated CA in step with ``want`` (the CA file's certificates now).

    ``rotated`` are the rotation's old and new CA. ``kubeconfig`` is read now (a rotation rewrites
    admin.conf). Never raises for the API: what could not be read or written is a problem.
    """
    from kubepki.objects import APIError, KubeClient

    out = _Out()
    updated, problems = out.updated, out.problems
    fps = {_fp(c) for c in rotated}
    try:
        client = KubeClient.from_kubeconfig(kubeconfig, timeout=timeout)
    except KubepkiError as exc:
        return ObjectSync(problems=(f"no API client from {os.fspath(kubeconfig)}: {exc}",))
    with client:
        if ca == "ca":
            _cluster_info(client, want, out)
        if ca in _EXTENSION_KEYS:
            _extension_auth(client, _EXTENSION_KEYS[ca], fps, want, out)
        for kind, path in _BUNDLED:
            try:
                items = client.get_json(path).get("items") or []
            except (APIError, KubepkiError, OSError) as exc:
                problems.append(f"{kind}s could not be listed: {exc}")
                continue
            for obj in items:
                name = f"{kind} {obj.get('metadata', {}).get('name')}"
                changed = False
                for holder in _bundles(obj):
                    try:
                        current = base64.b64decode(holder.get("caBundle") or "", validate=True)
                    except (binascii.Error, ValueError):
                        continue
                    after = _rebundled(current, fps, want)
                    if after is not None:
                        holder["caBundle"] = base64.b64encode(after).decode()
                        changed = True
                if not changed:
                    continue
                try:
                    client.put_json(f"{path}/{obj['metadata']['name']}", obj)
                    updated.append(name)
                except (APIError, KubepkiError, OSError, KeyError) as exc:
                    problems.append(f"{name} could not be updated: {exc}")
    return ObjectSync(updated=tuple(out.updated), unchanged=tuple(out.unchanged), problems=tuple(out.problems))


def _cluster_info(client: Any, want: Sequence[x509.Certificate], out: _Out) -> None:
    from kubepki.objects import APIError

    try:
        cm = client.get_json(_CLUSTER_INFO)
        doc = yaml.safe_load((cm.get("data") or {}).get("kubeconfig") or "")
        clusters = doc["clusters"]
        data = base64.b64encode(_pem(want)).decode()
        if all(c["cluster"].get("certificate-authority-data") == data for c in clusters):
            out.unchanged.append("kube-public/cluster-info")
            return
        for c in clusters:
            c["cluster"]["certificate-authority-data"] = data
        cm["data"]["kubeconfig"] = yaml.safe_dump(doc, default_flow_style=False, sort_keys=False)
        client.put_json(_CLUSTER_INFO, cm)
        out.updated.append("kube-public/cluster-info")
    except (APIError, KubepkiError, OSError) as exc:
        out.problems.append(f"kube-public/cluster-info could not be updated: {exc}")
    except (KeyError, TypeError, AttributeError, yaml.YAMLError):
        out.problems.append("kube-public/cluster-info holds no kubeconfig with clusters: not kubeadm's")


def _extension_auth(client: Any, key: str, rotated: set[str], want: Sequence[x509.Certificate], out: _Out) -> None:
    from kubepki.objects import APIError

    name = f"kube-system/extension-apiserver-authentication {key}"
    try:
        cm = client.get_json(_EXTENSION_AUTH)
        current = ((cm.get("data") or {}).get(key) or "").encode()
        after = _rebundled(current, rotated, want)
        if after is None:
            out.unchanged.append(name)
            return
        cm["data"][key] = after.decode()
        client.put_json(_EXTENSION_AUTH, cm)
        out.updated.append(name)
    except (APIError, KubepkiError, OSError) as exc:
        out.problems.append(f"{name} could not be updated: {exc}")
    except (KeyError, TypeError, AttributeError):
        out.problems.append(f"{name}: the ConfigMap is not kube-apiserver's")
