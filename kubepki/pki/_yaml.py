"""Loading YAML from untrusted files: bounded, safe, errors mapped to kubepki's."""

from __future__ import annotations

from collections.abc import Callable
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
        try:
            return [d for d in _load_all(data) if d is not None]
        except RecursionError:  # the fast path's own recursion: the full constructor decides
            return [d for d in yaml.load_all(data, Loader=_Loader) if d is not None]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise error(f"not valid YAML: {error_line(exc)}", path=path) from None


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
#: The scalar types kubeadm's files hold, built by SafeLoader's own constructors.
_SCALARS: dict[str, Callable[[Any, yaml.ScalarNode], Any]] = {
    "tag:yaml.org,2002:int": yaml.SafeLoader.construct_yaml_int,
    "tag:yaml.org,2002:bool": yaml.SafeLoader.construct_yaml_bool,
    "tag:yaml.org,2002:null": yaml.SafeLoader.construct_yaml_null,
    "tag:yaml.org,2002:float": yaml.SafeLoader.construct_yaml_float,
}


class _Slow(Exception):
    """A node the fast constructor leaves to PyYAML's (merge keys, non-string keys, other tags)."""


def _load_all(data: bytes) -> list[Any]:
    """``yaml.load_all(data, Loader=_Loader)``, equal in result, built without PyYAML's constructor
    for plain maps, lists, strings and numbers: its per-node bookkeeping was most of the time
    spent reading kubeconfigs and manifests (tests/test_yaml_fast.py compares the two)."""
    loader = _Loader(data)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # check_node said there is one
                break
            try:
                docs.append(_construct(loader, node))
            except _Slow:
                docs.append(loader.construct_document(node))
        return docs
    finally:
        loader.dispose()


def _construct(loader: Any, node: yaml.Node) -> Any:
    tag, kind = node.tag, type(node)
    if kind is yaml.ScalarNode:
        if tag == _STR:
            return node.value
        build = _SCALARS.get(tag)
        if build is None:
            raise _Slow
        return build(loader, node)  # type: ignore[arg-type]
    if kind is yaml.MappingNode and tag == _MAP:
        out: dict[str, Any] = {}
        for key, value in node.value:
            if type(key) is not yaml.ScalarNode or key.tag != _STR:  # "<<" is a merge key: not str
                raise _Slow
            out[key.value] = _construct(loader, value)
        return out
    if kind is yaml.SequenceNode and tag == _SEQ:
        return [_construct(loader, item) for item in node.value]
    raise _Slow


#: The bytes after which libyaml starts no token: letters, digits and ``=`` (see :func:`may_alias`).
_IN_SCALAR = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789=")


def may_alias(data: bytes) -> bool:
    """Whether an ``&`` or ``*`` in ``data`` may begin an anchor or an alias.

    libyaml starts a token only after a blank, a line break, a flow indicator, a
    ``:`` or the stream's start, so one inside a plain scalar after a letter, a digit
    or ``=`` (etcd's ``?exclude=NOSPACE&serializable=true``, kube-controller-manager's
    ``--controllers=*,...``) cannot; anything else (UTF-16's NUL bytes too) may.
    tests/test_inspection_speed.py checks with hypothesis that every alias the parser
    sees is caught. ``bytes.find``, not a regex: this runs on every file, and a regex
    scan of a manifest costs more than the parse it saves.
    """
    for mark in (b"&", b"*"):
        at = data.find(mark)
        while at >= 0:
            if at == 0 or data[at - 1] not in _IN_SCALAR:
                return True
            at = data.find(mark, at + 1)
    return False


def check_events(data: bytes, *, path: str | None = None, error: type[ParseError] = ParseError) -> None:
    """Refuse aliases and nesting deeper than :data:`MAX_DEPTH`, reading only parser events.

    The events come from libyaml's parser, which keeps its own stack, so this is
    safe where composing the documents would not be. Skipped (it costs a second
    parse) when ``data`` has no ``&``/``*`` and too few indicators to nest that deep.
    """
    # Every level of nesting opens with one of these, so their count bounds the depth.
    bound = sum(data.count(c) for c in (b"[", b"{", b"-", b":", b"?"))
    if bound <= MAX_DEPTH and not may_alias(data):
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
