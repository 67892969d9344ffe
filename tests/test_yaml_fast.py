"""kubepki.pki._yaml's fast constructor builds exactly what PyYAML's SafeLoader builds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from kubepki.errors import ParseError
from kubepki.pki import _yaml
from tests.kubeadm_trees import materialize

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _pyyaml(data: bytes) -> list[Any]:
    return list(yaml.load_all(data, Loader=LOADER))


def _outcome(load: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", load(data)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        return "error", type(exc).__name__


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | \
    st.dates() | st.datetimes()
objects = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8) | st.integers(), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(objects, st.booleans())
def test_same_objects_as_pyyaml_for_dumped_documents(obj: Any, flow: bool) -> None:
    data = yaml.safe_dump_all([obj, {"second": obj}], default_flow_style=flow).encode()
    assert _yaml._load_all(data) == _pyyaml(data)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab:-[]{}, \n\t'\"!&*<=?#|>%@`0x1.9eE+~", max_size=60))
def test_same_outcome_as_pyyaml_for_any_text(text: str) -> None:
    data = text.encode()
    assert _outcome(_yaml._load_all, data) == _outcome(_pyyaml, data)


#: Plain scalars whose first character the resolvers key on, and their look-alikes starting elsewhere.
_WORDS = ("yes", "No", "ON", "off", "y", "n", "true", "False", "~", "null", "Null", "NULL", "", "0", "-1", "+2",
          "1_000", "0b101", "0x1f", "0o7", "07", "1:30", ".5", ".inf", "-.Inf", ".NaN", "2026-12-07",
          "2026-12-07 12:00:00", "<<", "=", "Yes please", "on-call", "nullable", "truecolor", "xtrue", "a1",
          "/etc/kubernetes", "_1", "é", "kube-apiserver", "v1.28.4", "127.0.0.1", "6443", "'quoted'", '"2"')


@pytest.mark.parametrize("word", _WORDS)
def test_each_scalar_resolves_as_pyyaml_resolves_it(word: str) -> None:
    """Every first character the implicit resolvers key on (and the others) gives PyYAML's type."""
    for text in (f"k: {word}\n", f"- {word}\n- [{word}]\n", f"{word}\n"):
        data = text.encode()
        fast, slow = _outcome(_yaml._load_all, data), _outcome(_pyyaml, data)
        if "nan" in word.lower():
            assert repr(fast) == repr(slow)
        else:
            assert fast == slow
            assert [type(v) for v in fast[1]] == [type(v) for v in slow[1]]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12))
def test_any_plain_word_resolves_as_pyyaml(word: str) -> None:
    data = f"k: {word}\n".encode()
    assert repr(_outcome(_yaml._load_all, data)) == repr(_outcome(_pyyaml, data))


@pytest.mark.parametrize("text", [
    "a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n",          # merge key: PyYAML's constructor builds it
    "? [1, 2]\n: pairs\n",                            # a non-string key (a list: unhashable -> error)
    "1: one\n2.5: two\nnull: three\ntrue: four\n",     # keys that are not strings
    "when: 2026-12-07T12:00:00Z\nday: 2026-12-07\n",   # timestamps
    "blob: !!binary aGVsbG8=\nset: !!set {a, b}\n",    # other tags
    "n: 0x1F\no: 0o17\nsexagesimal: 1:30\nf: .inf\ng: -.nan\n",
    "=: value key\n",
    "--- 1\n--- two\n---\n...\n",
])
def test_documents_the_fast_path_leaves_to_pyyaml(text: str) -> None:
    data = text.encode()
    fast, slow = _outcome(_yaml._load_all, data), _outcome(_pyyaml, data)
    if "nan" in text:  # NaN != NaN: compare what is comparable
        assert fast[0] == slow[0] == "ok" and fast[1][0]["f"] == slow[1][0]["f"]
        return
    assert fast == slow


def test_kubeadm_files_load_alike(tmp_path: Path) -> None:
    root = materialize("single-full", tmp_path / "n")
    files = [*(root / "etc/kubernetes").glob("*.conf"), *(root / "etc/kubernetes/manifests").glob("*.yaml")]
    assert len(files) >= 9
    for f in files:
        data = f.read_bytes()
        assert _yaml._load_all(data) == _pyyaml(data)
        assert _yaml.load_documents(data) == [d for d in _pyyaml(data) if d is not None]


def test_types_are_pyyamls() -> None:
    docs = _yaml._load_all(b"a: 1\nb: '1'\nc: yes\nd: ~\ne: 1.5\nf: [x]\ng: 2026-01-01\n")
    assert docs == [{"a": 1, "b": "1", "c": True, "d": None, "e": 1.5, "f": ["x"], "g": dt.date(2026, 1, 1)}]
    assert type(docs[0]["a"]) is int and type(docs[0]["c"]) is bool


def test_deep_nesting_still_gives_a_parse_error_not_a_crash() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(ParseError):
        _yaml.load_documents(deep)
    nested = b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, 400)) + b"  " * 400 + b"c: 1\n"
    assert _yaml.load_documents(nested) == _pyyaml(nested)  # deeper than the fast path recurses cheaply
