"""Damaged trees: every command answers with its documented exit status and one clear line.

The corpus is generated: a demo tree for every :class:`kubepki.testing.DefectKind`
on several catalog items each, and demo trees whose files (any of them:
certificates, keys, kubeconfigs, manifests, the kubeadm config, the kubelet's PEM)
have random bytes flipped, are truncated or emptied, with a fixed seed. On each
tree the commands an operator would run are run: ``check`` (table and JSON),
``backup``, ``backup verify``, ``restore`` (the plan), ``renew all`` (the plan),
``renew all --apply --no-backup`` (on a copy), ``restarts plan`` and ``metrics``;
most in this process through :func:`kubepki.cli.main`, some as real processes.

Each run must end with a documented exit status (0 ok, 1 warnings, 2 problems,
3 could not run), say what went wrong in at most one ``kubepki: error:`` line,
never show a traceback, and print valid JSON when asked for JSON. A defect must
be noticed (``check`` exits 1 or 2), and renewing never leaves a certificate
beside a key that does not match it where there was none.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import kubepki
from kubepki import catalog, testing
from kubepki.testing import Defect, DefectKind
from tests import _figures
from tests._hardening import NOW, NOW_ARG, CliRun, assert_clean, copy_tree, demo, key_mismatches, run_cli, run_process

NAMES = [e.name for e in catalog.CATALOG]
#: How many catalog items each defect kind is built on.
PER_KIND = 3
#: Random damage: how many trees, each with one to three damaged files.
RANDOM_TREES = 30
SEED = 20271


def _cases() -> list[tuple[DefectKind, str]]:
    """Each defect kind on up to PER_KIND catalog items it applies to (a different rotation per kind)."""
    cases = []
    for i, kind in enumerate(DefectKind):
        if kind is DefectKind.MISMATCHED_SHARED_CA:
            cases += [(kind, "ca"), (kind, "sa")]  # needs a second node: built as a cluster
            continue
        rotated = NAMES[i * 5 % len(NAMES):] + NAMES[:i * 5 % len(NAMES)]
        found = 0
        for name in rotated:
            try:
                testing._resolve_defect(Defect(kind, name), _OPTIONS)
            except testing.ConfigError:
                continue
            cases.append((kind, name))
            found += 1
            if found == PER_KIND:
                break
    return cases


_OPTIONS = testing._options(
    "/nonexistent", nodes=1, version=testing.DEFAULT_VERSION, key_algorithm="ECDSA-P256",
    issued_at=NOW, validity=testing._DEFAULT_VALIDITY, ca_validity=testing._DEFAULT_CA_VALIDITY,
    external_ca=False, external_etcd=False, manifests=True, kubelet=True, kubelet_serving=True,
    write_config=True, cluster_name="kubernetes", control_plane_endpoint="cp.example.test:6443",
    service_subnet="10.96.0.0/12", pod_subnet="10.244.0.0/16", dns_domain="cluster.local",
    first_address="10.0.0.11",
)
CASES = _cases()


def _build(kind: DefectKind, name: str, dest: Path) -> Path:
    """The tree, issued at NOW: defects defined relative to the issue time hold at NOW."""
    if kind is DefectKind.MISMATCHED_SHARED_CA:
        cluster = testing.build_cluster(dest, nodes=2, key_algorithm="ECDSA-P256", issued_at=NOW,
                                        defects=[Defect(kind, name, node="cp2")])
        return cluster.node("cp2").root
    return demo(dest, defects=[Defect(kind, name)], issued_at=NOW)


def run(argv: list[str]) -> CliRun:
    """One in-process CLI run, counted and checked for a clean answer."""
    _figures.count("inputs tried")
    result = run_cli(argv)
    assert_clean(result)
    return result


def operate(root: Path, work: Path, *, processes: bool = False) -> dict[str, CliRun]:
    """Every command on ``root``; ``renew --apply`` on a copy. The runs, by command."""
    r = ["--root", str(root)]
    runs: dict[str, CliRun] = {}
    runs["check"] = run(["check", *r, "--now", NOW_ARG])
    assert runs["check"].code in (0, 1, 2), runs["check"]
    runs["check-json"] = run(["check", *r, "--now", NOW_ARG, "-o", "json"])
    assert runs["check-json"].code == runs["check"].code, runs["check-json"]
    doc = json.loads(runs["check-json"].out)
    assert doc["items"], runs["check-json"]
    runs["backup"] = run(["backup", *r, "--backup-dir", str(work / "backups"), "-o", "json"])
    assert runs["backup"].code in (0, 2), runs["backup"]
    if runs["backup"].code == 0:
        archive = json.loads(runs["backup"].out)["path"]
        runs["verify"] = run(["backup", "verify", archive])
        # an archive is sound when intact and every certificate sits beside its own key
        assert runs["verify"].code == (2 if key_mismatches(root) else 0), runs["verify"]
        runs["restore-plan"] = run(["restore", archive, *r, "-o", "json"])
        assert runs["restore-plan"].code in (0, 2, 3), runs["restore-plan"]
        if runs["restore-plan"].code == 0:
            assert all(s["action"] == "unchanged" for s in json.loads(runs["restore-plan"].out)["steps"])
    runs["renew-plan"] = run(["renew", "all", *r, "--now", NOW_ARG])
    runs["renew-plan-json"] = run(["renew", "all", *r, "--now", NOW_ARG, "-o", "json"])
    if runs["renew-plan-json"].code == 0:
        json.loads(runs["renew-plan-json"].out)
    runs["restarts"] = run(["restarts", "plan", "--changed", "apiserver", *r, "-o", "json"])
    if runs["restarts"].code == 0:
        json.loads(runs["restarts"].out)
    runs["metrics"] = run(["metrics", *r])
    assert runs["metrics"].code in (0, 3), runs["metrics"]
    copy = copy_tree(root, work / "renewed")
    before = key_mismatches(copy)
    argv = ["renew", "all", "--root", str(copy), "--now", NOW_ARG, "--apply", "--no-backup", "--force-invalid-times"]
    if processes:
        _figures.count("inputs tried")
        runs["renew-apply"] = run_process(argv)
        assert_clean(runs["renew-apply"])
    else:
        runs["renew-apply"] = run(argv)
    assert runs["renew-apply"].code in (0, 2, 3), runs["renew-apply"]
    assert set(key_mismatches(copy)) <= set(before), runs["renew-apply"]
    return runs


# Items whose defect a check may not see as a problem, and why.
_UNSEEN = {
    # kubelet.crt is the kubelet's self-signed serving certificate: kubeadm does not manage it,
    # and the kubelet writes a new one when it is missing.
    (DefectKind.MISSING, "kubelet.crt"),
}


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k.value}-{n}" for k, n in CASES])
def test_defect(kind: DefectKind, name: str, tmp_path: Path) -> None:
    """A tree with one defect: every command answers cleanly, and check notices the defect."""
    root = _build(kind, name, tmp_path / "tree")
    runs = operate(root, tmp_path, processes=name in ("apiserver", "admin.conf"))
    if kind is DefectKind.MISMATCHED_SHARED_CA:
        # A node cannot tell its CA from the one the other nodes share: comparing nodes does.
        nodes = [kubepki.inspect(root.parent / n, now=NOW) for n in ("cp1", "cp2")]
        assert kubepki.compare_nodes(nodes)[name]["identical"] is False
    elif (kind, name) not in _UNSEEN:
        assert runs["check"].code in (1, 2), runs["check"]
    if kind in (DefectKind.EXPIRED, DefectKind.KEY_MISMATCH, DefectKind.MISSING, DefectKind.GARBAGE,
                DefectKind.TRUNCATED_PEM, DefectKind.WRONG_SIGNER) and (kind, name) not in _UNSEEN:
        assert runs["check"].code == 2, runs["check"]


def _damage(rng: random.Random, data: bytes) -> bytes:
    n = len(data)
    how = rng.choice(["flip", "flip", "flips", "truncate", "empty", "insert", "random"])
    if n == 0 or how == "random":
        return rng.randbytes(rng.randint(0, 512))
    i = rng.randrange(n)
    if how == "flip":
        return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
    if how == "flips":
        out = bytearray(data)
        for _ in range(rng.randint(2, 20)):
            out[rng.randrange(n)] = rng.randrange(256)
        return bytes(out)
    if how == "truncate":
        return data[:i]
    if how == "empty":
        return b""
    return data[:i] + rng.randbytes(rng.randint(1, 64)) + data[i:]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy demo node every randomly damaged tree is copied from."""
    return demo(tmp_path_factory.mktemp("pristine") / "tree")


@pytest.mark.parametrize("index", range(RANDOM_TREES))
def test_random_damage(index: int, pristine: Path, tmp_path: Path) -> None:
    """Random byte flips, truncations and junk in one to three random files: clean answers only."""
    rng = random.Random(SEED + index)  # noqa: S311 - a reproducible corpus, not cryptography
    root = copy_tree(pristine, tmp_path / "tree")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    damaged = rng.sample(files, rng.randint(1, 3))
    for path in damaged:
        path.write_bytes(_damage(rng, path.read_bytes()))
    runs = operate(root, tmp_path, processes=index % 10 == 0)
    changed = [str(p.relative_to(root)) for p in damaged]
    if runs["check"].code == 0:
        # Damage check may not see: a manifest or config that still parses, or bytes outside PEM blocks.
        assert all(p.endswith((".yaml", ".crt", ".key", ".pub", ".pem", ".conf")) for p in changed), changed


def test_corpus_covers_every_defect_kind() -> None:
    """The corpus has every defect kind, most on several items."""
    kinds = {k for k, _ in CASES}
    assert kinds == set(DefectKind)
    assert len(CASES) >= 2 * len(DefectKind)


def test_clean_tree_is_quiet(pristine: Path, tmp_path: Path) -> None:
    """Negative control: the undamaged tree checks 0 and renews without refusals."""
    runs = operate(pristine, tmp_path)
    assert runs["check"].code == 0, runs["check"]
    assert runs["renew-apply"].code == 0, runs["renew-apply"]
    assert key_mismatches(pristine, now=NOW) == []
