"""What a first-time user trips over (issue 16): each fix, with its negative control."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

import kubepki
from kubepki import testing
from kubepki.cli import build_parser, plain_text
from tests._hardening import run_cli

WHEN = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
NOW_ARG = "2026-11-28T00:00:00Z"


# -- 1. a remediation that remediates -----------------------------------------------------


def _copied_cluster(tmp_path: Path) -> testing.DemoCluster:
    """Three nodes; cp1's etcd-peer pair copied onto cp3."""
    demo = testing.build_cluster(tmp_path / "c", nodes=3, issued_at=WHEN - dt.timedelta(days=300))
    for suffix in ("crt", "key"):
        shutil.copyfile(demo.node("cp1").path(f"/etc/kubernetes/pki/etcd/peer.{suffix}"),
                        demo.node("cp3").path(f"/etc/kubernetes/pki/etcd/peer.{suffix}"))
    return demo


def _node_args(demo: testing.DemoCluster) -> list[str]:
    return [a for n in demo.nodes for a in ("--node", f"{n.name}={n.root}")]


def _duplicate_finding(demo: testing.DemoCluster) -> dict[str, object] | None:
    run = run_cli(["cluster", "check", *_node_args(demo), "--now", NOW_ARG, "-o", "json"])
    doc = json.loads(run.out)
    found = [f for f in doc["findings"] if f["code"] == "duplicated-node-certificate"]
    assert len(found) <= 1
    return found[0] if found else None


def _suggested(message: str) -> list[list[str]]:
    """The ``kubepki …`` commands a finding's message suggests, split into words."""
    commands = re.findall(r"`kubepki ([^`]+)`", message)
    assert commands, message
    return [shlex.split(c) for c in commands]


def test_duplicate_remediation_per_node_fixes_the_finding(tmp_path: Path) -> None:
    """Running the suggested per-node command on each node clears the finding and cp3's own findings."""
    demo = _copied_cluster(tmp_path)
    finding = _duplicate_finding(demo)
    assert finding is not None and finding["nodes"] == ["cp1", "cp3"]
    assert kubepki.inspect(demo.node("cp3").root, now=WHEN)["etcd-peer"].has("unexpected-subject")
    per_node, whole = _suggested(str(finding["message"]))
    assert per_node[:2] == ["renew", "etcd-peer"] and whole[:2] == ["cluster", "renew"]
    for label in finding["nodes"]:
        run = run_cli([*per_node, "--root", str(demo.node(label).root), "--now", NOW_ARG, "--no-backup",
                       "--force-invalid-times"])
        assert run.code == 0, run
    assert _duplicate_finding(demo) is None
    item = kubepki.inspect(demo.node("cp3").root, now=WHEN)["etcd-peer"]
    assert not item.has("unexpected-subject") and not item.has("missing-san")
    assert item.facts is not None and item.facts.common_name == "cp3"


def test_duplicate_remediation_for_the_cluster_fixes_the_finding(tmp_path: Path) -> None:
    """The suggested cluster-wide command, with the finding's nodes, clears it too."""
    demo = _copied_cluster(tmp_path)
    finding = _duplicate_finding(demo)
    assert finding is not None
    _per_node, whole = _suggested(str(finding["message"]))
    nodes = [a for n in demo.nodes if n.name in finding["nodes"]  # type: ignore[operator]
             for a in ("--node", f"{n.name}={n.root}")]
    run = run_cli([*whole, *nodes, "--now", NOW_ARG, "--no-backup", "--force-invalid-times"])
    assert run.code == 0, run
    assert _duplicate_finding(demo) is None


def test_plain_renewal_of_a_copy_refuses_and_writes_nothing(tmp_path: Path) -> None:
    """Negative control: `renew etcd-peer --apply` on the copy refuses (exit 2) and keeps the file."""
    demo = _copied_cluster(tmp_path)
    peer = demo.node("cp3").path("/etc/kubernetes/pki/etcd/peer.crt")
    before = peer.read_bytes()
    run = run_cli(["renew", "etcd-peer", "--apply", "--no-backup", "--root", str(demo.node("cp3").root),
                   "--now", NOW_ARG, "--force-invalid-times"])
    assert run.code == 2, run
    assert "--reissue" in run.out + run.err
    assert peer.read_bytes() == before
    plan = kubepki.plan_renewal(demo.node("cp3").root, ["etcd-peer"], now=WHEN)
    assert [(s.reason, s.refused) for s in plan.steps] == [("wrong-attributes", True)]
    # cp1 holds the original: its renewal is not refused.
    plan1 = kubepki.plan_renewal(demo.node("cp1").root, ["etcd-peer"], now=WHEN)
    assert [s.action.value for s in plan1.steps] == ["renew"]


def test_keep_attributes_forces_the_copy_and_the_finding_stays(tmp_path: Path) -> None:
    """--keep-attributes renews as kubeadm would, cp1's CN carried over; cp3's finding remains."""
    demo = _copied_cluster(tmp_path)
    root = str(demo.node("cp3").root)
    run = run_cli(["renew", "etcd-peer", "--keep-attributes", "--apply", "--no-backup", "--root", root,
                   "--now", NOW_ARG, "--force-invalid-times"])
    assert run.code == 0, run
    item = kubepki.inspect(root, now=WHEN)["etcd-peer"]
    assert item.has("unexpected-subject")
    assert item.facts is not None and item.facts.common_name == "cp1"
    with pytest.raises(kubepki.ConfigError):
        kubepki.plan_renewal(root, ["etcd-peer"], now=WHEN, reissue=True, keep_attributes=True)


def test_options_are_never_abbreviated() -> None:
    """`--recreate` is an error, not `--recreate-missing`; the full spelling still parses."""
    run = run_cli(["renew", "all", "--recreate", "--root", "/nonexistent"])
    assert run.code == 3 and "unrecognized arguments: --recreate" in run.err
    args = build_parser().parse_args(["renew", "all", "--recreate-missing"])
    assert args.recreate_missing is True
    parsers = [build_parser()]
    seen = 0
    while parsers:
        p = parsers.pop()
        assert p.allow_abbrev is False, p.prog
        seen += 1
        for action in p._actions:
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                parsers.extend(dict.fromkeys(choices.values()))
    assert seen > 20


# -- 3. help is plain text --------------------------------------------------------------


def _all_parsers() -> list[argparse.ArgumentParser]:
    out, todo = [], [build_parser()]
    while todo:
        p = todo.pop()
        out.append(p)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(c for c in dict.fromkeys(action.choices.values()) if c not in out)
    return out


_REST = re.compile(r"``|:(?:func|class|mod|data|attr|meth|exc|py:\w+):`")


def test_help_has_no_rest_markup() -> None:
    """No command's --help shows ``literals`` or :roles: (the CLI reference page is built from them)."""
    parsers = _all_parsers()
    assert len(parsers) > 20
    for p in parsers:
        text = p.format_help()
        assert not _REST.search(text), (p.prog, _REST.findall(text))
    assert "in_dir" not in next(p for p in parsers if p.prog.endswith("install-signed")).format_help()


def test_plain_text_removes_the_markup_a_plain_parser_shows() -> None:
    """Negative control: the same description through a plain argparse parser keeps its markup."""
    doc = "Run ``kubepki renew`` with :func:`~kubepki.plan_renewal` and :class:`kubepki.Node`."
    assert _REST.search(argparse.ArgumentParser(description=doc).format_help())
    assert plain_text(doc) == "Run kubepki renew with plan_renewal and kubepki.Node."


# -- 4. an assumed Kubernetes version says so -------------------------------------------


def _bare_tree(tmp_path: Path) -> Path:
    """A node whose PKI is complete but which has no manifests and no kubeadm config."""
    demo = testing.build_node(tmp_path / "bare", issued_at=WHEN - dt.timedelta(days=300),
                              manifests=False, write_config=False)
    return demo.root


@pytest.mark.parametrize("argv", [["check", "--now", NOW_ARG], ["renew", "all", "--now", NOW_ARG],
                                  ["restarts", "plan", "--detect"]])
def test_an_assumed_version_says_assumed(tmp_path: Path, argv: list[str]) -> None:
    """Without manifests or config every output says the version was assumed; with them, where from."""
    bare = _bare_tree(tmp_path)
    assert kubepki.Node(bare).profile.version_source == "assumed"
    run = run_cli([*argv, "--root", str(bare)])
    # --detect observes no running component here: nothing judged is exit 3, not "nothing to restart"
    assert run.code in ((3,) if "--detect" in argv else (0, 1, 2)), run
    assert f"Kubernetes {kubepki.versions.NEWEST}, assumed" in run.out, run.out
    # Negative control: a node with manifests says which file told the version, never "assumed".
    full = testing.build_node(tmp_path / "full", issued_at=WHEN - dt.timedelta(days=300)).root
    run = run_cli([*argv, "--root", str(full)])
    assert ", assumed" not in run.out
    if argv[0] != "check":  # the check table names no version when it was found, as kubeadm's
        assert ", from the kube-apiserver image tag" in run.out, run.out


def test_renewal_json_says_how_the_version_was_found(tmp_path: Path) -> None:
    """The plan's JSON carries kubernetes_version_source beside kubernetes_version."""
    plan = kubepki.plan_renewal(_bare_tree(tmp_path), now=WHEN)
    assert plan.to_dict()["kubernetes_version_source"] == "assumed"
    full = testing.build_node(tmp_path / "full", issued_at=WHEN - dt.timedelta(days=300)).root
    assert kubepki.plan_renewal(full, now=WHEN).to_dict()["kubernetes_version_source"] == "kube-apiserver image tag"


# -- 5. one duration rendering ----------------------------------------------------------


@pytest.mark.parametrize("left", [dt.timedelta(days=14, hours=14), dt.timedelta(days=14, hours=23, minutes=59),
                                  dt.timedelta(hours=47, minutes=30), dt.timedelta(minutes=90)])
def test_table_and_finding_show_the_same_residual(tmp_path: Path, left: dt.timedelta) -> None:
    """The RESIDUAL TIME column and the `expiring` finding render the time left identically."""
    demo = testing.build_node(tmp_path / "n", issued_at=WHEN - dt.timedelta(days=300))
    item = kubepki.inspect(demo.root, now=WHEN)["apiserver"]
    assert item.not_after is not None
    now = item.not_after - left
    run = run_cli(["check", "--root", str(demo.root), "--now", now.isoformat()])
    row = next(line for line in run.out.splitlines() if line.startswith("apiserver "))
    residual = row.split("UTC")[1].split()[0]
    assert residual == kubepki.inspection.short_human_duration(left.total_seconds())
    finding = next(line for line in run.out.splitlines() if " apiserver " in line and "expiring" in line)
    assert f"expires in {residual}, on" in finding, (row, finding)
    # Negative control: the finding no longer carries its own rounding.
    assert "days" not in finding and f"{left.total_seconds() / 86400:.1f}" not in finding


# -- 7. probing an IP address checks the IP SANs ----------------------------------------


@pytest.mark.parametrize(("ips", "mismatch"), [([], True), (["127.0.0.1"], False)])
def test_probe_by_ip_checks_the_ip_san(tmp_path: Path, ips: list[str], mismatch: bool) -> None:
    """A real TLS server on 127.0.0.1: a certificate without that IP SAN is a hostname-mismatch."""
    from tests.test_cluster_objects import NOW, PKI, key_pem, pem
    from tests.test_probe import TLSServer

    pki = PKI("ipsan")
    leaf = pki.leaf("web.example.test", key=0, ips=ips)
    server = TLSServer(tmp_path, {"": (pem(leaf, pki.intermediate), key_pem(pki.leaf_keys[0]))})
    try:
        inv = kubepki.probe.probe([f"127.0.0.1:{server.port}"], now=NOW)
        item = inv.items[0]
        assert item.has("hostname-mismatch") is mismatch, item.findings
        assert None in server.seen  # no SNI was sent for the address
        run = run_cli(["probe", f"127.0.0.1:{server.port}", "--now", NOW.isoformat()])
        assert (run.code == 2) is mismatch, run
        assert ("not 127.0.0.1" in run.out) is mismatch
    finally:
        server.close()


# -- 6. one vocabulary, one default -----------------------------------------------------


def test_backup_dir_is_the_one_spelling_and_to_still_works(tmp_path: Path) -> None:
    """`backup --backup-dir` as everywhere else; the old `--to` works with a deprecation notice."""
    root = str(testing.build_node(tmp_path / "n").root)
    run = run_cli(["backup", "--root", root, "--backup-dir", str(tmp_path / "a")])
    assert run.code == 0 and run.err == "" and len(list((tmp_path / "a").iterdir())) == 1
    old = run_cli(["backup", "--root", root, "--to", str(tmp_path / "b")])
    assert old.code == 0 and len(list((tmp_path / "b").iterdir())) == 1
    assert "--to is deprecated" in old.err and "--backup-dir" in old.err
    assert "--to" not in run_cli(["backup", "--help"]).out  # the old spelling is not advertised


def test_prune_previews_unless_apply(tmp_path: Path) -> None:
    """`backup prune` previews like every other command; --apply removes; --dry-run is deprecated."""
    root = testing.build_node(tmp_path / "n").root
    out = tmp_path / "out"
    for day in (1, 2, 3):
        kubepki.backup(root, out, now=dt.datetime(2026, 11, day, tzinfo=dt.timezone.utc))
    run = run_cli(["backup", "prune", str(out), "--keep", "1"])
    assert run.code == 0 and "would remove" in run.out and "--apply" in run.out
    assert len(list(out.iterdir())) == 3
    old = run_cli(["backup", "prune", str(out), "--keep", "1", "--dry-run"])
    assert "--dry-run is deprecated" in old.err and len(list(out.iterdir())) == 3
    run = run_cli(["backup", "prune", str(out), "--keep", "1", "--apply"])
    assert run.code == 0 and len(list(out.iterdir())) == 1


def test_demo_kubernetes_version_and_the_old_spelling(tmp_path: Path) -> None:
    """`demo --kubernetes-version`; `demo --version` still works, deprecated; the global --version is kubepki's."""
    run = run_cli(["demo", str(tmp_path / "a"), "--kubernetes-version", "1.29"])
    assert run.code == 0 and run.err == "", run
    assert kubepki.Node(tmp_path / "a" / "cp1").profile.kubernetes_version == kubepki.versions.KubeVersion(1, 29)
    old = run_cli(["demo", str(tmp_path / "b"), "--version", "1.29"])
    assert old.code == 0 and "--version is deprecated" in old.err
    assert kubepki.Node(tmp_path / "b" / "cp1").profile.kubernetes_version == kubepki.versions.KubeVersion(1, 29)
    assert run_cli(["--version"]).out.startswith("kubepki ")


def test_secrets_check_quiet_prints_only_findings(tmp_path: Path) -> None:
    """`secrets check -q`: the findings only, as `check -q`; nothing when all is well."""
    from tests.test_cluster_objects import NOW, PKI, b64, key_pem, pem

    pki = PKI("quiet")
    def secret(name: str, days: int) -> dict[str, object]:
        leaf = pki.leaf(f"{name}.example.test", not_after=NOW + dt.timedelta(days=days))
        return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": "shop"},
                "data": {"tls.crt": b64(pem(leaf, pki.intermediate)), "tls.key": b64(key_pem(pki.leaf_keys[0]))}}
    good, soon = tmp_path / "good.json", tmp_path / "soon.json"
    good.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [secret("web", 300)]}))
    soon.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [secret("web", 300),
                                                                               secret("api", 5)]}))
    now = ["--now", NOW.isoformat()]
    full = run_cli(["secrets", "check", "-f", str(soon), *now])
    assert "RESIDUAL TIME" in full.out and "FINDINGS" in full.out  # negative control: the table is there
    quiet = run_cli(["secrets", "check", "-f", str(soon), "-q", *now])
    assert quiet.code == full.code == 1
    assert "RESIDUAL TIME" not in quiet.out and "secret/web" not in quiet.out
    assert "FINDINGS" in quiet.out and "secret/api" in quiet.out and "expiring" in quiet.out
    calm = run_cli(["secrets", "check", "-f", str(good), "-q", *now])
    assert calm.code == 0 and calm.out == ""


def test_one_backup_default_for_nodes_and_clusters(tmp_path: Path) -> None:
    """apply_cluster_renewal without backup_dir backs each node up where apply_renewal would."""
    demo = testing.build_cluster(tmp_path / "c", nodes=2, issued_at=WHEN - dt.timedelta(days=340))
    plan = kubepki.plan_cluster_renewal([n.root for n in demo.nodes], ["apiserver"], now=WHEN)
    result = kubepki.apply_cluster_renewal(plan, force_invalid_times=True)
    assert result.ok, result
    for n in demo.nodes:
        (archive,) = (n.root / kubepki.backups.DEFAULT_BACKUP_DIR.lstrip("/")).iterdir()
        assert archive.name.startswith(f"kubepki-backup-{n.name}-")
    assert "default /var/backups/kubepki" in " ".join(run_cli(["cluster", "renew", "--help"]).out.split())
