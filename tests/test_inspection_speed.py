"""What issue 20's inspection speed-ups must keep: the same answers, from the same files.

Speed itself is measured by benchmarks/bench_ratios.py, never asserted here. Each test
pins one shortcut to the slow way it replaced: directories resolved once per inspection
(``LocalFS.reading``), YAML's alias check skipped only where no alias can start, the
manifest's flag lines found by a regex, the PKI directory walked once for the CIS rules.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path, PurePosixPath

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import kubepki
from kubepki import testing
from kubepki.errors import NodeError, ParseError
from kubepki.node import LocalFS
from kubepki.node._manifests import _flag_lines
from kubepki.pki import _yaml
from tests.kubeadm_trees import materialize

WHEN = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# -- LocalFS.reading: each directory resolved once per block, the same answer as without -----------


def _tree(root: Path) -> None:
    """Directories, relative and absolute symlinks, a link to a file, a loop, a dangling link."""
    (root / "etc/kubernetes/pki/etcd").mkdir(parents=True)
    (root / "etc/kubernetes/pki/ca.crt").write_text("ca")
    (root / "etc/kubernetes/pki/etcd/ca.crt").write_text("etcd-ca")
    (root / "srv/real").mkdir(parents=True)
    (root / "srv/real/f").write_text("f")
    os.symlink("/srv/real", root / "etc/abs")          # absolute: re-rooted
    os.symlink("../srv/real", root / "etc/rel")        # relative
    os.symlink("kubernetes/pki", root / "etc/pki")
    os.symlink("ca.crt", root / "etc/kubernetes/pki/link.crt")
    os.symlink("loop", root / "etc/loop")               # a loop: too many levels
    os.symlink("/nowhere/at/all", root / "etc/dangling")


_PARTS = st.sampled_from(["etc", "kubernetes", "pki", "etcd", "ca.crt", "link.crt", "abs", "rel", "f", "real",
                          "srv", "loop", "dangling", "..", ".", "missing"])


def _resolve(fs: LocalFS, path: str, follow_last: bool) -> str:
    try:
        return fs._local(path, follow_last=follow_last)
    except NodeError as exc:
        return f"error: {exc.message}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=st.lists(st.lists(_PARTS, min_size=0, max_size=6), min_size=1, max_size=8), follow=st.booleans())
def test_reading_resolves_every_path_as_without_it(tmp_path_factory: pytest.TempPathFactory,
                                                   paths: list[list[str]], follow: bool) -> None:
    root = tmp_path_factory.mktemp("fs")
    _tree(root)
    fs = LocalFS(root)
    texts = ["/" + "/".join(p) for p in paths]
    plain = [_resolve(fs, t, follow) for t in texts]
    with fs.reading():
        memo = [_resolve(fs, t, follow) for t in texts]
        again = [_resolve(fs, t, follow) for t in texts]  # second time from the memo
    assert memo == plain
    assert again == plain


def test_reading_memoises_directories_and_forgets_them_after(tmp_path: Path) -> None:
    """Inside a block a directory is resolved once (a swap is not seen); after it, resolution is fresh again."""
    _tree(tmp_path)
    fs = LocalFS(tmp_path)
    path = PurePosixPath("/etc/kubernetes/pki/ca.crt")
    with fs.reading():
        assert fs.read_bytes(path) == b"ca"
        # Swap the directory for a symlink to another one with another ca.crt.
        (tmp_path / "other").mkdir()
        (tmp_path / "other/ca.crt").write_text("other")
        os.rename(tmp_path / "etc/kubernetes/pki", tmp_path / "etc/kubernetes/pki.old")
        os.symlink("/other", tmp_path / "etc/kubernetes/pki")
        # The directory's resolution is kept (the documented race: the name .../pki is not looked at
        # again); the last component is resolved anew.
        assert fs._local(str(path)) == str(tmp_path) + "/etc/kubernetes/pki/ca.crt"
        # Another directory, first resolved now: resolved as it is.
        assert fs._local("/etc/kubernetes/pki.old/ca.crt") == str(tmp_path) + "/etc/kubernetes/pki.old/ca.crt"
    # Negative control: outside a block the swap is seen at once.
    assert fs._local(str(path)) == str(tmp_path) + "/other/ca.crt"
    assert fs.read_bytes(path) == b"other"


def test_reading_blocks_nest_and_stay_in_their_thread(tmp_path: Path) -> None:
    _tree(tmp_path)
    fs = LocalFS(tmp_path)
    with fs.reading():
        with fs.reading():
            fs._local("/etc/kubernetes/pki/ca.crt")
        assert fs._memo.dirs  # the inner block's end keeps the outer block's memo
        seen: list[object] = []
        worker = threading.Thread(target=lambda: seen.append(getattr(fs._memo, "dirs", None)))
        worker.start()
        worker.join()
        assert seen == [None]  # another thread resolves afresh
    assert fs._memo.dirs is None


def test_inspection_of_symlinked_directories_is_unchanged(tmp_path: Path) -> None:
    """A PKI directory reached through a symlink and one that loops: the same inventory inside the memo."""
    demo = testing.build_node(tmp_path / "a", issued_at=WHEN)
    pki = demo.root / "etc/kubernetes/pki"
    os.rename(pki, demo.root / "srv-pki")
    os.symlink("/srv-pki", pki)
    inv = kubepki.inspect(demo.root, now=WHEN)
    assert inv.outcome.value == "ok", inv.findings
    assert inv["apiserver"].files[0].sha256 is not None
    os.remove(pki)
    os.symlink("pki", pki)  # a loop: every file is unreadable, and says so
    looped = kubepki.inspect(demo.root, now=WHEN)
    assert looped["apiserver"].status.value == "invalid"
    assert any("too many levels" in f.message for f in looped["apiserver"].findings)


def test_cis_rules_note_the_pki_directory_they_could_not_list(tmp_path: Path) -> None:
    """The walk's notes go on each rule that walks (they went on the rule before, already finished: lost)."""
    demo = testing.build_node(tmp_path / "a", issued_at=WHEN)
    pki = demo.root / "etc/kubernetes/pki"
    os.rename(pki, demo.root / "etc/kubernetes/pki.real")
    os.symlink("pki", pki)
    inv = kubepki.inspect(demo.root, now=WHEN)
    assert inv.cis is not None
    notes = {r.id: r.notes for r in inv.cis.results}
    for rule in ("1.1.19", "1.1.20", "1.1.21"):
        assert any(n.startswith("could not list /etc/kubernetes/pki") for n in notes[rule]), (rule, notes[rule])
    # Negative control: a rule that does not walk the PKI directory has no such note.
    assert not any("could not list" in n for n in notes["1.1.1"])


def test_cis_pki_targets_of_a_kubeadm_tree(tmp_path: Path) -> None:
    """The one walk gives each PKI rule its files: every .crt to 1.1.20, every .key to 1.1.21, all to 1.1.19."""
    root = materialize("single-full", tmp_path / "n")
    inv = kubepki.inspect(root, now=WHEN)
    assert inv.cis is not None
    files = {r.id: [f.path for f in r.files] for r in inv.cis.results}
    pki = root / "etc/kubernetes/pki"
    crts = sorted("/etc/kubernetes/pki/" + str(p.relative_to(pki)) for p in pki.rglob("*.crt"))
    keys = sorted("/etc/kubernetes/pki/" + str(p.relative_to(pki)) for p in pki.rglob("*.key"))
    assert [p for p in files["1.1.20"] if p.endswith(".crt")] == crts
    assert [p for p in files["1.1.21"] if p.endswith(".key")] == keys
    everything = {"/etc/kubernetes/pki", *("/etc/kubernetes/pki/" + str(p.relative_to(pki)) for p in pki.rglob("*"))}
    assert everything <= set(files["1.1.19"])
    assert not [p for p in files["1.1.20"] if p.endswith(".key")]  # control: the suffixes are kept apart



def test_kubelet_pem_is_read_and_parsed_once_for_both_items(tmp_path: Path) -> None:
    """kubelet.conf names kubelet-client-current.pem, an item of its own: one read, one parse, same facts."""
    demo = testing.build_node(tmp_path / "a", issued_at=WHEN)
    inv = kubepki.inspect(demo.root, now=WHEN)
    conf, pem = inv["kubelet.conf"], inv["kubelet-client-current.pem"]
    assert conf.facts is not None and conf.facts is pem.facts  # one certificate object behind both
    referenced = [f for f in conf.files if f.role.value == "referenced"]
    own = [f for f in pem.files if f.path == referenced[0].path]
    assert referenced and own and referenced[0].sha256 == own[0].sha256
    assert (referenced[0].role.value, own[0].role.value) == ("referenced", "cert_and_key")  # each its own role
    # Negative control: distinct certificates keep distinct facts.
    assert inv["apiserver"].facts is not inv["apiserver-kubelet-client"].facts

# -- YAML: the alias check is skipped only where no alias can start ----------------------------------


def _has_alias(data: bytes) -> bool | None:
    """Whether libyaml's parser reports an alias before any error (None: it errs first)."""
    try:
        return any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(data, Loader=LOADER))
    except yaml.YAMLError:
        return None


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="ab1=:-[]{}, \n\t'\"!&*?#|>%@.~/\u00e9", max_size=40))
def test_every_alias_the_parser_sees_is_caught_by_the_precheck(text: str) -> None:
    data = text.encode()
    if _has_alias(data):
        assert _yaml.may_alias(data)
        with pytest.raises(ParseError, match="aliases"):
            _yaml.load_documents(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1=:-[]{}, \n'\"&*", max_size=40), st.sampled_from(["utf-8", "utf-16"]))
def test_alias_refusal_is_unchanged_in_any_encoding(text: str, encoding: str) -> None:
    data = text.encode(encoding)
    if _has_alias(data):
        with pytest.raises(ParseError, match="aliases"):
            _yaml.load_documents(data)


def test_precheck_on_kubeadm_manifests_and_a_real_alias(tmp_path: Path) -> None:
    root = materialize("single-full", tmp_path / "n")
    kcm = (root / "etc/kubernetes/manifests/kube-controller-manager.yaml").read_bytes()
    assert b"--controllers=*," in kcm
    assert not _yaml.may_alias(kcm)  # "=*" starts no alias: no second parse
    assert _yaml.load_one(kcm)["kind"] == "Pod"
    for alias in (b"a: &x 1\nb: *x\n", b"*x", b"[*x]", b"{a: *x}", b"- *x\n", b"\xef\xbb\xbf*x"):
        assert _yaml.may_alias(alias), alias  # control: real aliases are caught
    with pytest.raises(ParseError, match="aliases"):
        _yaml.load_documents(b"a: &x [1]\nb: *x\n")


# -- the manifest's flag lines: the regex finds what the scan found ---------------------------------


def _flag_lines_scan(data: bytes, flags: dict[str, str]) -> dict[str, int]:
    """The character scan _flag_lines replaced, kept as the reference."""
    lines = data.decode("utf-8", "replace").splitlines()
    out: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        start = text.find("--")
        while start >= 0:
            end = start + 2
            while end < len(text) and (text[end].isalnum() or text[end] in "-_."):
                end += 1
            name = text[start + 2:end]
            if name in flags and name not in out and (end == len(text) or text[end] in "=\"' "):
                out[name] = number
            start = text.find("--", end)
    return out


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="-=ab._ \"'\n\r\u00e9\u0663x\u2028", max_size=80),
       st.lists(st.text(alphabet="-ab._\u00e9", max_size=4), max_size=5))
def test_flag_lines_as_the_scan_found_them(text: str, names: list[str]) -> None:
    flags = dict.fromkeys(names, "")
    data = text.encode()
    assert _flag_lines(data, flags) == _flag_lines_scan(data, flags)


def test_flag_lines_of_kubeadm_manifests(tmp_path: Path) -> None:
    root = materialize("single-full", tmp_path / "n")
    from kubepki.node import parse_manifest

    for f in (root / "etc/kubernetes/manifests").glob("*.yaml"):
        data = f.read_bytes()
        m = parse_manifest(data, path=str(f))
        assert m.flag_lines == _flag_lines_scan(data, dict(m.flags))
        assert set(m.flag_lines) == set(m.flags)  # control: every flag was found on its line



@pytest.mark.parametrize(("data", "expected"), [
    (b"url: http://h/health?exclude=NOSPACE&serializable=true\n", False),  # etcd's probe: inside a scalar
    (b"- --controllers=*,bootstrapsigner\n", False),
    (b"a: &x 1\n", True), (b"&x", True), (b"a:\t*x", True), (b"[a,*x]", True), (b"a\x00*\x00x\x00", True),
    (b"no marks at all", False),
])
def test_may_alias_cases(data: bytes, expected: bool) -> None:
    assert _yaml.may_alias(data) is expected
