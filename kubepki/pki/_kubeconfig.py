"""Kubeconfig files: the current context's cluster CA and user credentials.

Credentials are either embedded (``*-data``, base64) or file references
(``client-certificate``, ``client-key``, ``certificate-authority``), which are
resolved relative to the kubeconfig's directory as kubectl does.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import attrs

from kubepki.errors import KubeconfigError
from kubepki.pki._yaml import load_one

__all__ = ["Credential", "Kubeconfig", "kubeconfig_data", "parse_kubeconfig"]


@attrs.frozen
class Credential:
    """A certificate, key or CA taken from a kubeconfig: embedded bytes or a file path."""

    data: bytes | None = attrs.field(default=None, repr=False)
    file: PurePosixPath | None = None

    @property
    def embedded(self) -> bool:
        """True when the bytes are in the kubeconfig itself."""
        return self.data is not None


@attrs.frozen(kw_only=True)
class Kubeconfig:
    """The parts of a kubeconfig kubepki inspects and renews."""

    path: str | None
    context: str | None
    cluster_name: str | None
    user_name: str | None
    server: str | None
    ca: Credential | None
    client_certificate: Credential | None
    client_key: Credential | None
    #: The parsed document, kept so renewal can change two fields and keep the rest.
    document: Mapping[str, Any] = attrs.field(repr=False, eq=False)


def kubeconfig_data(value: Any, field: str, path: str | None) -> bytes:
    """The bytes of a kubeconfig's ``*-data`` field (base64); a KubeconfigError names the field."""
    if not isinstance(value, str):
        raise KubeconfigError(f"{field} is not a string", path=path)
    try:
        return binascii.a2b_base64(value.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise KubeconfigError(f"{field} is not valid base64", path=path) from None


def _cred(entry: Mapping[str, Any], data_key: str, file_key: str, base: PurePosixPath,
          path: str | None) -> Credential | None:
    if entry.get(data_key) not in (None, ""):
        return Credential(data=kubeconfig_data(entry[data_key], data_key, path))
    ref = entry.get(file_key)
    if ref in (None, ""):
        return None
    if not isinstance(ref, str):
        raise KubeconfigError(f"{file_key} is not a string", path=path)
    p = PurePosixPath(ref)
    return Credential(file=p if p.is_absolute() else base / p)


def _named(items: Any, name: Any, key: str, what: str, path: str | None) -> Mapping[str, Any]:
    if not isinstance(items, list):
        raise KubeconfigError(f"{what}s is missing or not a list", path=path)
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(key)
            if not isinstance(value, dict):
                raise KubeconfigError(f"{what} {name!r} has no {key}", path=path)
            return value
    raise KubeconfigError(f"{what} {name!r} not found", path=path)


def parse_kubeconfig(data: bytes, *, path: str | None = None) -> Kubeconfig:
    """Parse a kubeconfig; raises :class:`~kubepki.KubeconfigError` when malformed.

    ``path`` is the kubeconfig's node path; relative file references are resolved
    against its directory.
    """
    doc = load_one(data, path=path, error=KubeconfigError)
    if not isinstance(doc, dict):
        raise KubeconfigError("not a kubeconfig (no mapping at the top)", path=path)
    base = PurePosixPath(path).parent if path else PurePosixPath("/")
    contexts = doc.get("contexts")
    current = doc.get("current-context")
    if isinstance(current, str) and current:
        ctx = _named(contexts, current, "context", "context", path)
    elif isinstance(contexts, list) and len(contexts) == 1 and isinstance(contexts[0], dict):
        raw_ctx = contexts[0].get("context")
        ctx = raw_ctx if isinstance(raw_ctx, dict) else {}
        current = contexts[0].get("name")
    else:
        raise KubeconfigError("no current-context", path=path)
    cluster_name = ctx.get("cluster")
    user_name = ctx.get("user")
    cluster = _named(doc.get("clusters"), cluster_name, "cluster", "cluster", path)
    user = _named(doc.get("users"), user_name, "user", "user", path)
    server = cluster.get("server")
    return Kubeconfig(
        path=path,
        context=current if isinstance(current, str) else None,
        cluster_name=cluster_name if isinstance(cluster_name, str) else None,
        user_name=user_name if isinstance(user_name, str) else None,
        server=server if isinstance(server, str) else None,
        ca=_cred(cluster, "certificate-authority-data", "certificate-authority", base, path),
        client_certificate=_cred(user, "client-certificate-data", "client-certificate", base, path),
        client_key=_cred(user, "client-key-data", "client-key", base, path),
        document=doc,
    )
