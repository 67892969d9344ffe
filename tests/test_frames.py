"""DataFrames of inventories, plans, results and backups: rows, columns and types."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest

import kubepki
from kubepki import testing
from kubepki.errors import ConfigError
from kubepki.inspection import frames
from kubepki.testing import Defect, DefectKind

pd = pytest.importorskip("pandas")

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ISSUED = NOW - dt.timedelta(days=350)


@pytest.fixture
def node(tmp_path: Path) -> testing.DemoNode:
    """One node near expiry with an expired front-proxy-client."""
    return testing.build_node(tmp_path / "n", issued_at=ISSUED,
                              defects=[Defect(DefectKind.EXPIRED, "front-proxy-client")])


def test_inventory_one_row_per_item(node: testing.DemoNode) -> None:
    """An inventory gives one row per item, node first, UTC timestamps, finding codes."""
    inv = kubepki.inspect(node.root, now=NOW)
    df = inv.to_dataframe()
    assert len(df) == len(inv)
    assert list(df.columns[:3]) == ["node", "name", "kind"]
    assert set(df["node"]) == {"cp1"}
    assert str(df["not_after"].dt.tz) == "UTC"
    row = df.set_index("name").loc["front-proxy-client"]
    assert row["status"] == "expired"
    assert row["findings"] == ["expired"]
    assert row["not_after"] == pd.Timestamp(inv["front-proxy-client"].not_after)
    assert row["certificate.common_name"] == "front-proxy-client"
    assert "certificate" not in df.columns  # flattened, not left as a dict column
    assert df.set_index("name").loc["sa", "not_after"] is pd.NaT


def test_several_inventories_stack(tmp_path: Path) -> None:
    """A list of inventories stacks them, told apart by the node column."""
    cluster = testing.build_cluster(tmp_path / "c", nodes=2, issued_at=ISSUED)
    invs = [kubepki.inspect(n.root, now=NOW) for n in cluster.nodes]
    df = frames.to_dataframe(invs)
    assert len(df) == sum(len(i) for i in invs)
    assert df.groupby("node").size().to_dict() == {"cp1": len(invs[0]), "cp2": len(invs[1])}


def test_renewal_plan_and_result(node: testing.DemoNode) -> None:
    """A plan gives one row per step; its result one row per written or skipped item."""
    plan = kubepki.plan_renewal(node.root, ["all"], now=NOW)
    df = frames.to_dataframe(plan)
    assert list(df["name"]) == [s.name for s in plan.steps]
    assert set(df["action"]) == {"renew"}
    assert str(df["new_not_after"].dt.tz) == "UTC"
    result = kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    rf = frames.to_dataframe(result)
    assert sorted(rf.loc[rf.result == "written", "name"]) == sorted(result.changed)
    assert set(rf["result"]) <= {"written", "skipped", "refused"}


def test_backups_verify_and_restore(node: testing.DemoNode, tmp_path: Path) -> None:
    """Backups one row each; a verify report one row per member; a restore plan per step."""
    first = kubepki.backup(node.root, tmp_path / "b")
    infos = kubepki.list_backups(tmp_path / "b")
    df = frames.to_dataframe(infos)
    assert list(df["path"]) == [str(i.path) for i in infos]
    assert df.columns[0] == "node"
    assert str(df["created"].dt.tz) == "UTC"
    assert len(frames.to_dataframe(first)) == 1
    report = kubepki.verify_backup(first.path)
    assert len(frames.to_dataframe(report)) == len(report.members)
    restore_plan = kubepki.plan_restore(first.path, node.root)
    rp = frames.to_dataframe(restore_plan)
    assert list(rp["path"]) == [s.path for s in restore_plan.steps]
    assert set(rp["action"]) == {"unchanged"}  # nothing changed since the backup


def test_rows_need_no_pandas(node: testing.DemoNode, monkeypatch: Any) -> None:
    """frames.rows() works without pandas; to_dataframe() then names the extra to install."""
    inv = kubepki.inspect(node.root, now=NOW)
    monkeypatch.setitem(sys.modules, "pandas", None)
    rows = frames.rows(inv)
    assert len(rows) == len(inv)
    assert rows[0]["node"] == "cp1"
    with pytest.raises(ConfigError, match=r"pip install 'kubepki\[notebook\]'"):
        frames.to_dataframe(inv)


@pytest.mark.parametrize("thing", [42, "inventory", object()])
def test_untabulable_objects_are_refused(thing: object) -> None:
    """Objects without to_dict() are a ConfigError, not a confusing pandas error."""
    with pytest.raises(ConfigError, match="cannot make a DataFrame"):
        frames.to_dataframe(thing)
