"""Loading YAML from untrusted files: bounded, safe, errors mapped to kubepki's."""

from __future__ import annotations

from typing import Any

import yaml

from kubepki.errors import ParseError

#: Larger YAML files are refused; kubeadm's are a few KiB.
MAX_YAML_BYTES = 1 << 20
#: Deeper nesting is refused: libyaml's C composer recurses once per level and
#: overflows the C stack (a segfault, not an exception) some 50 000 levels down.
#: kubeadm's files nest a dozen levels, Kubernetes objects a few dozen.
MAX_DEPTH = 1000

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
    check_events(data, path=path, error=error)
    try:
        return [d for d in yaml.load_all(data, Loader=_Loader) if d is not None]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise error(f"not valid YAML: {error_line(exc)}", path=path) from None


def check_events(data: bytes, *, path: str | None = None, error: type[ParseError] = ParseError) -> None:
    """Refuse aliases and nesting deeper than :data:`MAX_DEPTH`, reading only parser events.

    The events come from libyaml's parser, which keeps its own stack, so this is
    safe where composing the documents would not be. Skipped (it costs a second
    parse) when ``data`` has no ``&``/``*`` and too few indicators to nest that deep.
    """
    # Every level of nesting opens with one of these, so their count bounds the depth.
    bound = sum(data.count(c) for c in (b"[", b"{", b"-", b":", b"?"))
    if b"&" not in data and b"*" not in data and bound <= MAX_DEPTH:
        return
    depth = 0
    try:
        for event in yaml.parse(data, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                raise error("YAML aliases are not supported", path=path)
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise error(f"YAML nested more than {MAX_DEPTH} levels deep", path=path)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML: {error_line(exc)}", path=path) from None


def load_one(data: bytes, *, path: str | None = None, error: type[ParseError] = ParseError) -> Any:
    """The single YAML document in ``data`` (None when empty)."""
    docs = load_documents(data, path=path, error=error)
    if len(docs) > 1:
        raise error(f"expected one YAML document, found {len(docs)}", path=path)
    return docs[0] if docs else None


def error_line(exc: BaseException) -> str:
    """One line of a YAML error, without the source text PyYAML may quote (it can be a key)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        # Pure-Python PyYAML quotes the offending line after each mark; that line can
        # be a private key (client-key-data). libyaml's marks never carry it.
        for mark in (exc.context_mark, exc.problem_mark):
            if isinstance(mark, yaml.error.Mark):  # libyaml's own marks are read-only
                mark.buffer = None
    return " ".join(str(exc).split())[:200]
