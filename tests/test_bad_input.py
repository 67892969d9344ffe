"""Bad input to the public API gives a KubepkiError subclass, never a bare traceback.

Every entry point of ``kubepki.__all__`` that takes a node, a path or data is called with
what a caller gets wrong: a missing root, a naive ``now``, a path where a Node is expected
(and the other way round), values of the wrong type, and garbage bytes where a PEM file,
a kubeconfig, a static pod manifest, a kubectl document or a backup archive should be.
Each bad call sits beside the same call with good input (the negative control), so a
check that refuses everything would fail too. Nothing here is faked: the trees are real
kubeadm trees on disk, and the one SSH call needs no server (its key file is garbage).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import kubepki
from kubepki import metrics
from kubepki._clock import iso, utc
from kubepki.cluster import RemoteRestartReport, RemoteRestartRequest
from kubepki.node import CommandResult
from kubepki.restarts import Changed
from tests.kubeadm_trees import materialize

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
NAIVE = dt.datetime(2026, 1, 1)
MISSING = "/nonexistent/kubepki-root"
BYTES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize("single-full", tmp_path_factory.mktemp("bad") / "root")


@pytest.fixture(scope="module")
def archive(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kubepki.backup(root, tmp_path_factory.mktemp("backups"), now=NOW).path


def _raises_kubepki_error(call: Callable[[], Any]) -> kubepki.KubepkiError:
    """The KubepkiError ``call`` raised; anything else fails the test with its own traceback."""
    with pytest.raises(kubepki.KubepkiError) as info:
        call()
    return info.value


# -- now= -----------------------------------------------------------------------------------


def test_the_one_utc_refuses_naive_and_non_datetimes() -> None:
    """kubepki._clock.utc: aware times are normalised to UTC; naive ones and strings are ConfigError."""
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert utc(dt.datetime(2026, 1, 1, 2, tzinfo=plus_two)) == NOW
    assert utc(None).tzinfo is dt.timezone.utc
    for bad in (NAIVE, "2026-01-01T00:00:00Z", 1767225600):
        with pytest.raises(kubepki.ConfigError, match="now"):
            utc(bad)  # type: ignore[arg-type]


def test_iso_is_rfc3339_in_utc() -> None:
    """One formatter, three precisions; always UTC with a Z."""
    when = dt.datetime(2026, 1, 1, 2, 3, 4, 567891, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert iso(when) == "2026-01-01T00:03:04Z"
    assert iso(when, timespec="milliseconds") == "2026-01-01T00:03:04.567Z"
    assert iso(when, timespec="auto") == "2026-01-01T00:03:04.567891Z"


NOW_TAKERS: dict[str, Callable[[Path, Any], object]] = {
    "inspect": lambda r, now: kubepki.inspect(r, now=now),
    "plan_renewal": lambda r, now: kubepki.plan_renewal(r, now=now),
    "backup": lambda r, now: kubepki.backup(r, r.parent / "now-backups", now=now),
    "plan_restarts": lambda r, now: kubepki.plan_restarts(r, Changed(["ca"]), now=now),
    "check_objects": lambda _r, now: kubepki.check_objects(b"[]", now=now),
    "inspect_cluster": lambda r, now: kubepki.inspect_cluster([r], now=now),
    "plan_cluster_renewal": lambda r, now: kubepki.plan_cluster_renewal([r], now=now),
}


@pytest.mark.parametrize("name", sorted(NOW_TAKERS))
def test_a_naive_now_is_a_config_error_everywhere(root: Path, name: str) -> None:
    """``now=`` goes through one check: a naive datetime is refused the same way by every entry point."""
    NOW_TAKERS[name](root, NOW)  # the control: an aware time works
    err = _raises_kubepki_error(lambda: NOW_TAKERS[name](root, NAIVE))
    assert isinstance(err, kubepki.ConfigError) and "timezone-aware" in str(err)


# -- nodes and paths --------------------------------------------------------------------------

NODE_TAKERS: dict[str, Callable[[Any], object]] = {
    "inspect": lambda n: kubepki.inspect(n, now=NOW),
    "plan_renewal": lambda n: kubepki.plan_renewal(n, now=NOW),
    "resume_renewal": lambda n: kubepki.resume_renewal(n, now=NOW),
    "plan_restarts": lambda n: kubepki.plan_restarts(n, Changed(["ca"]), now=NOW),
    "verify_served": lambda n: kubepki.verify_served(n, components=[], timeout=0.1),
    "inspect_cluster": lambda n: kubepki.inspect_cluster([n], now=NOW),
    "plan_cluster_renewal": lambda n: kubepki.plan_cluster_renewal([n], now=NOW),
    "plan_cluster_restarts": lambda n: kubepki.plan_cluster_restarts([n], ["ca"]),
    "Node": lambda n: kubepki.Node(n) if not isinstance(n, kubepki.Node) else n,
}


@pytest.mark.parametrize("name", sorted(NODE_TAKERS))
def test_every_node_taker_accepts_a_node_a_str_and_a_path(root: Path, name: str) -> None:
    """A function that takes a node takes a root path too, as str or os.PathLike."""
    for node in (kubepki.Node(root), str(root), root):
        NODE_TAKERS[name](node)


@pytest.mark.parametrize("name", sorted(set(NODE_TAKERS) - {"inspect_cluster"}))
@pytest.mark.parametrize("bad", [42, None, b"/etc", 1.5, ["/"]], ids=repr)
def test_a_node_of_the_wrong_type_is_a_config_error(name: str, bad: object) -> None:
    """Not a Node and not a path: ConfigError, not a TypeError from deep inside."""
    if name == "Node" and bad is None:
        pytest.skip("Node(None) is not a node argument; Node() is the local machine")
    err = _raises_kubepki_error(lambda: NODE_TAKERS[name](bad))
    assert isinstance(err, kubepki.ConfigError)


# plan_restarts plans from the catalog and what runs (nothing here), so a missing root
# is not an error to it; inspect_cluster and plan_cluster_renewal report the node instead.
@pytest.mark.parametrize("name", sorted(set(NODE_TAKERS) - {"Node", "inspect_cluster", "plan_cluster_renewal",
                                                            "verify_served", "plan_restarts",
                                                            "plan_cluster_restarts"}))
def test_a_missing_root_is_a_node_error(name: str) -> None:
    """A root that does not exist: NodeError naming it (inspect_cluster reports it as a finding instead)."""
    err = _raises_kubepki_error(lambda: NODE_TAKERS[name](MISSING))
    assert isinstance(err, kubepki.NodeError), type(err)


def test_verify_served_on_a_missing_root(root: Path) -> None:
    """verify_served took only a Node (a path was an AttributeError); now a missing root is a NodeError."""
    assert kubepki.verify_served(root, components=[]) == ()
    assert isinstance(_raises_kubepki_error(lambda: kubepki.verify_served(MISSING)), kubepki.NodeError)


def test_a_missing_root_in_a_cluster_is_a_finding(root: Path) -> None:
    """inspect_cluster goes on without the node and says so."""
    inv = kubepki.inspect_cluster([root, MISSING], now=NOW)
    assert [f.code for f in inv.findings if f.code == "node-unreachable"] == ["node-unreachable"]
    assert not [f for f in kubepki.inspect_cluster([root], now=NOW).findings if f.code == "node-unreachable"]


def test_a_node_where_a_path_is_expected(root: Path, archive: Path) -> None:
    """Archive and directory arguments are local paths: a Node there is a ConfigError."""
    node: Any = kubepki.Node(root)
    assert kubepki.verify_backup(archive).ok
    assert kubepki.list_backups(archive.parent)
    assert kubepki.plan_restore(archive, node).steps
    for call in (lambda: kubepki.verify_backup(node), lambda: kubepki.list_backups(node),
                 lambda: kubepki.plan_restore(node, root), lambda: kubepki.backup(root, node),
                 lambda: kubepki.prune_backups(node, 1), lambda: kubepki.Node(node),
                 lambda: kubepki.restore(node, root)):
        assert isinstance(_raises_kubepki_error(call), kubepki.ConfigError)


def test_plans_where_a_plan_is_expected(root: Path, archive: Path) -> None:
    """apply_* take the plan their plan_* made; a path there is a ConfigError."""
    plan = kubepki.plan_restore(archive, root)
    kubepki.apply_restore(plan, take_backup=False)
    for call in (lambda: kubepki.apply_restore(str(archive)),  # type: ignore[arg-type]
                 lambda: kubepki.apply_renewal(str(root)),  # type: ignore[arg-type]
                 lambda: kubepki.apply_restarts(str(root))):  # type: ignore[arg-type]
        assert isinstance(_raises_kubepki_error(call), kubepki.ConfigError)


def test_wrong_types_elsewhere(root: Path, archive: Path) -> None:
    """Counts, sources, inventories and SSH targets of the wrong type are ConfigErrors."""
    inv = kubepki.inspect(root, now=NOW)
    assert kubepki.compare_nodes([inv, inv])
    assert "kubepki_" in metrics.exposition([inv])
    assert kubepki.prune_backups(archive.parent, 5, dry_run=True) == []
    calls: list[Callable[[], object]] = [
        lambda: kubepki.prune_backups(archive.parent, 0),
        lambda: kubepki.prune_backups(archive.parent, "2"),  # type: ignore[arg-type]
        lambda: kubepki.check_objects(42),  # type: ignore[arg-type]
        lambda: kubepki.compare_nodes([str(root)]),  # type: ignore[list-item]
        lambda: kubepki.compare_nodes(42),  # type: ignore[arg-type]
        lambda: kubepki.inspect_cluster(42),  # type: ignore[arg-type]
        lambda: kubepki.inspect_cluster(str(root)),
        lambda: kubepki.ssh_node(42),  # type: ignore[arg-type]
        lambda: kubepki.ssh_node("ssh://"),
        lambda: metrics.exposition(str(root)),  # type: ignore[arg-type]
        lambda: metrics.exposition([root]),  # type: ignore[list-item]
        lambda: kubepki.inspect(root, names=["no-such-item"]),
        lambda: kubepki.catalog.get("no-such-item"),
    ]
    for call in calls:
        _raises_kubepki_error(call)


def test_ssh_node_with_a_garbage_key_file(tmp_path: Path) -> None:
    """An identity file that is no key fails as a KubepkiError before any connection."""
    key = tmp_path / "id"
    key.write_bytes(b"\x00garbage\xff" * 10)
    _raises_kubepki_error(lambda: kubepki.ssh_node("root@127.0.0.1:1", key=key, known_hosts=key,
                                                   timeout=0.5).check_root())


# -- garbage bytes ----------------------------------------------------------------------------


@given(data=st.binary(max_size=2048))
@BYTES
def test_garbage_archives_are_reported_or_refused(archive: Path, tmp_path: Path, data: bytes) -> None:
    """Random bytes as an archive: verify_backup reports, plan_restore and list_backups refuse typed."""
    bad = tmp_path / "kubepki-backup-cp1-20260101T000000Z.tar.gz"
    bad.write_bytes(data)
    report = kubepki.verify_backup(bad)
    assert not report.ok and report.problems
    try:
        kubepki.plan_restore(bad, tmp_path)
    except kubepki.KubepkiError:
        pass
    else:  # pragma: no cover - random bytes are never a valid archive
        pytest.fail("a garbage archive was planned")
    kubepki.list_backups(tmp_path)  # lists or skips it; never raises anything else


def test_a_real_archive_is_the_control(archive: Path) -> None:
    """The same calls on a good archive succeed."""
    assert kubepki.verify_backup(archive).ok
    assert [b.path for b in kubepki.list_backups(archive.parent)] == [archive]


_TARGETS = {
    "pem": "etc/kubernetes/pki/apiserver.crt",
    "key": "etc/kubernetes/pki/apiserver.key",
    "kubeconfig": "etc/kubernetes/admin.conf",
    "manifest": "etc/kubernetes/manifests/kube-apiserver.yaml",
}


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize("single-full", tmp_path_factory.mktemp("scratch") / "root")


@pytest.mark.parametrize("what", sorted(_TARGETS))
@given(data=st.binary(max_size=1024))
@BYTES
def test_garbage_node_files_never_escape(scratch: Path, what: str, data: bytes) -> None:
    """Random bytes in a PEM, key, kubeconfig or manifest: findings or a typed error, nothing else."""
    (scratch / _TARGETS[what]).write_bytes(data)
    for call in (lambda: kubepki.inspect(scratch, now=NOW), lambda: kubepki.plan_renewal(scratch, now=NOW),
                 lambda: kubepki.plan_restarts(scratch, Changed(["ca"]), now=NOW)):
        try:
            call()
        except kubepki.KubepkiError:
            pass


def test_garbage_node_file_control(root: Path) -> None:
    """The untouched tree inspects clean: the property above is not vacuous."""
    inv = kubepki.inspect(root, now=NOW)
    assert inv.items and not [i for i in inv.items if any(f.code == "not-pem" for f in i.findings)]


@given(data=st.binary(max_size=2048))
@BYTES
def test_garbage_kubectl_documents_are_parse_errors(data: bytes) -> None:
    """check_objects on random bytes: an inventory or a ParseError/ConfigError."""
    try:
        kubepki.check_objects(data, now=NOW)
    except (kubepki.ParseError, kubepki.ConfigError):
        pass


@given(data=st.binary(max_size=1024))
@BYTES
def test_garbage_kubeconfigs_for_the_api_client(tmp_path: Path, data: bytes) -> None:
    """check_live with a garbage kubeconfig fails typed before any connection."""
    path = tmp_path / "kubeconfig"
    path.write_bytes(data)
    _raises_kubepki_error(lambda: kubepki.check_live(path, now=NOW, timeout=0.5))


# -- the remote restart call ------------------------------------------------------------------


def test_remote_restart_request_and_report() -> None:
    """The command line comes from the typed request; garbage output is no report, not a crash."""
    request = RemoteRestartRequest(root="/", changed=("ca",), policy="safe", method="manifest", dry_run=True)
    argv = request.argv(["kubepki"])
    assert argv[:3] == ["kubepki", "restarts", "apply"] and "--apply" not in argv
    assert "--apply" in RemoteRestartRequest(root="/", changed=("ca",), policy="safe", method="manifest",
                                             dry_run=False).argv(["kubepki"])
    good = RemoteRestartReport.from_result("cp1", CommandResult(command="k", exit_status=0,
                                                                stdout=b'{"steps": []}', stderr=b""))
    assert good.ok and good.output == {"steps": []}
    bad = RemoteRestartReport.from_result("cp1", CommandResult(command="k", exit_status=2,
                                                               stdout=b"\xff\x00{", stderr=b"boom\n"))
    assert not bad.ok and bad.output is None and bad.error == "boom"
