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

``kube-root-ca.crt`` in every namespace (``ca`` only) is not kubepki's to write: kube-controller-manager's
root-ca-cert-publisher writes its ``--root-ca-file`` there, read once at its start
(pkg/controller/certificates/rootcacertpublisher), and every pod's service-account volume projects it.
:func:`root_ca_lag` says which namespaces do not carry the phase's CAs yet; the rotation waits for them
after restarting kube-controller-manager, and refuses ``reissue`` while a namespace lacks the new CA.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kubepki.errors import KubepkiError
from kubepki.pki import cert_to_pem, load_certificates

__all__ = ["POD_REFRESH", "ObjectSync", "RootCALag", "root_ca_lag", "sync_objects"]

#: Seconds within which the kubelet refreshes a pod's projected ``kube-root-ca.crt`` after the ConfigMap
#: changed: each pod worker resyncs every ``syncFrequency`` (1 min) with up to 50 % jitter
#: (pkg/kubelet/pod_workers.go, ``workerResyncIntervalJitterFactor``); the ConfigMap itself is watched.
POD_REFRESH = 90.0
#: The ConfigMap kube-controller-manager publishes the cluster CA in, in every namespace.
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"

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
    #: ``kube-root-ca.crt`` as kube-controller-manager published it (``ca`` only; None: not looked at).
    root_ca: RootCALag | None = None
    #: Seconds waited for ``kube-root-ca.crt``.
    waited: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        root_ca = None if self.root_ca is None else {
            "namespaces": self.root_ca.namespaces, "lagging": list(self.root_ca.lagging), "ok": self.root_ca.ok}
        return {"updated": list(self.updated), "unchanged": list(self.unchanged), "problems": list(self.problems),
                "rootCA": root_ca, "waitedSeconds": round(self.waited, 1)}


@attrs.define
class _Out:
    updated: list[str] = attrs.field(factory=list)
    unchanged: list[str] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class RootCALag:
    """Which active namespaces' ``kube-root-ca.crt`` does not carry, of the rotation's CAs, the phase's."""

    #: Active namespaces looked at.
    namespaces: int
    #: Those whose ConfigMap is missing, unreadable, or carries another set of the rotation's CAs.
    lagging: tuple[str, ...]
    #: The latest write to a ConfigMap in step (its ``managedFields`` times, the API server's clock);
    #: None when none says.
    updated_at: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        """True when every namespace carries the phase's CAs (and there was a namespace to look at)."""
        return self.namespaces > 0 and not self.lagging

    def describe(self, limit: int = 5) -> str:
        """``kube-root-ca.crt`` and where it lags, in one phrase."""
        if not self.lagging:
            return f"{ROOT_CA_CONFIGMAP} in {self.namespaces} namespaces"
        shown = ", ".join(self.lagging[:limit]) + (f" and {len(self.lagging) - limit} more"
                                                   if len(self.lagging) > limit else "")
        return f"{ROOT_CA_CONFIGMAP} in {len(self.lagging)} of {self.namespaces} namespaces ({shown})"


def root_ca_lag(client: Any, *, want: Sequence[x509.Certificate], rotated: Sequence[x509.Certificate]
                ) -> RootCALag:
    """The active namespaces whose ``kube-root-ca.crt`` does not carry, of ``rotated`` (the old and the
    new CA), exactly ``want`` (its other certificates are not the rotation's). Raises
    :class:`~kubepki.objects.APIError` when the namespaces or the ConfigMaps cannot be listed."""
    from kubepki.objects import RESOURCES, Resource

    configmaps = next(r for r in RESOURCES if r.kind == "ConfigMap")
    wanted = {_fp(c) for c in want}
    ours = {_fp(c) for c in rotated} | wanted
    active = {ns.get("metadata", {}).get("name") for ns in client.list(Resource("Namespace", "/api/v1", "namespaces",
                                                                                 False))
              if (ns.get("status") or {}).get("phase", "Active") == "Active"}  # the publisher skips the others
    carried: set[str] = set()
    latest: dt.datetime | None = None
    for cm in client.list(configmaps, field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}"):
        data = (cm.get("data") or {}).get("ca.crt")
        if not isinstance(data, str):
            continue
        try:
            fps = {_fp(c) for c in load_certificates(data.encode())}
        except KubepkiError:
            continue
        if fps & ours == wanted:
            carried.add(str(cm.get("metadata", {}).get("namespace")))
            written = _written_at(cm)
            if written is not None and (latest is None or written > latest):
                latest = written
    names = {n for n in active if isinstance(n, str)}
    return RootCALag(namespaces=len(names), lagging=tuple(sorted(names - carried)), updated_at=latest)


def _written_at(obj: dict[str, Any]) -> dt.datetime | None:
    """The latest ``time`` of the object's ``managedFields`` (when it was last written), None when none."""
    latest = None
    for entry in (obj.get("metadata") or {}).get("managedFields") or ():
        stamp = entry.get("time") if isinstance(entry, dict) else None
        if not isinstance(stamp, str):
            continue
        try:
            when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:
            continue
        if latest is None or when > latest:
            latest = when
    return latest


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
                 rotated: Sequence[x509.Certificate], timeout: float = 10.0,
                 publish_wait: float = 0.0) -> ObjectSync:
    """Bring the live objects carrying the rotated CA in step with ``want`` (the CA file's certificates now).

    ``rotated`` are the rotation's old and new CA. ``kubeconfig`` is read now (a rotation rewrites
    admin.conf). Never raises for the API: what could not be read or written is a problem.

    For ``ca``, ``kube-root-ca.crt`` is looked at in every namespace: with ``publish_wait`` (seconds; the
    caller restarted kube-controller-manager) it is waited for, and still lagging then is a problem.
    Without it a lag is reported, not a problem (kube-controller-manager publishes once restarted).
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
        lag, waited = (_await_root_ca(client, want, rotated, publish_wait, out) if ca == "ca"
                       else (None, 0.0))
    return ObjectSync(updated=tuple(out.updated), unchanged=tuple(out.unchanged), problems=tuple(out.problems),
                      root_ca=lag, waited=waited)


def _await_root_ca(client: Any, want: Sequence[x509.Certificate], rotated: Sequence[x509.Certificate],
                   publish_wait: float, out: _Out) -> tuple[RootCALag | None, float]:
    from kubepki.objects import APIError

    started = time.monotonic()
    deadline = started + publish_wait
    while True:
        lag: RootCALag | None = None
        try:
            lag = root_ca_lag(client, want=want, rotated=rotated)
        except (APIError, KubepkiError, OSError) as exc:
            error = f"{ROOT_CA_CONFIGMAP} could not be read: {exc}"
        else:
            if lag.ok:
                return lag, time.monotonic() - started
            error = (f"{lag.describe()} does not carry the CA file's certificates after {publish_wait:.0f} s: "
                     "kube-controller-manager publishes its --root-ca-file there when it starts")
        if time.monotonic() >= deadline:
            if publish_wait > 0 or lag is None:
                out.problems.append(error)
            return lag, time.monotonic() - started
        time.sleep(1.0)


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
