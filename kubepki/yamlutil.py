"""Loading YAML from untrusted files: bounded, safe, errors mapped to kubepki's."""

from __future__ import annotations

from typing import Any

import yaml

from kubepki.errors import ParseError

#: Larger YAML files are refused; kubeadm's are a few KiB.
MAX_YAML_BYTES = 1 << 20

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(
    data: bytes, *, path: str | None = None, error: type[ParseError] = ParseError
) -> list[Any]:
    """Every YAML document in ``data``; raises ``error`` on anything malformed.

    Anchors and aliases are refused (kubeadm never writes them, and they are how
    "billion laughs" documents blow up).
    """
    if len(data) > MAX_YAML_BYTES:
        raise error(f"file too large ({len(data)} bytes)", path=path)
    if b"&" in data or b"*" in data:
        _refuse_aliases(data, path, error)
    try:
        return [d for d in yaml.load_all(data, Loader=_Loader) if d is not None]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise error(f"not valid YAML: {_first_line(exc)}", path=path) from None


def _refuse_aliases(data: bytes, path: str | None, error: type[ParseError]) -> None:
    try:
        for event in yaml.parse(data, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                raise error("YAML aliases are not supported", path=path)
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML: {_first_line(exc)}", path=path) from None


def load_one(data: bytes, *, path: str | None = None, error: type[ParseError] = ParseError) -> Any:
    """The single YAML document in ``data`` (None when empty)."""
    docs = load_documents(data, path=path, error=error)
    if len(docs) > 1:
        raise error(f"expected one YAML document, found {len(docs)}", path=path)
    return docs[0] if docs else None


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
