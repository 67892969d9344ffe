"""Notebook renderings: every object users look at is an HTML table, escaped, without key material."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

import kubepki
from kubepki import testing
from kubepki.inspection._findings import Finding, Severity
from kubepki.renewal._renewal import SkippedItem
from kubepki.testing import Defect, DefectKind

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
#: No "/" in it, so it can stand in a file name too.
HOSTILE = '<img src=x onerror="alert(1)">&'


@attrs.frozen
class World:
    """One node taken through inspection, backup, renewal and restore planning."""

    root: Path
    inventory: kubepki.Inventory
    backup: kubepki.BackupInfo
    plan: kubepki.RenewalPlan
    result: kubepki.RenewalResult
    report: kubepki.VerifyReport
    restore_plan: kubepki.RestorePlan
    restore_result: kubepki.RestoreResult


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Every user-facing object, made from one demo node."""
    base = tmp_path_factory.mktemp("html")
    node = testing.build_node(base / "n", issued_at=NOW - dt.timedelta(days=350),
                              defects=[Defect(DefectKind.EXPIRED, "front-proxy-client")])
    inventory = kubepki.inspect(node.root, now=NOW)
    info = kubepki.backup(node.root, base / "b")
    plan = kubepki.plan_renewal(node.root, ["all"], now=NOW)
    result = kubepki.apply_renewal(plan, take_backup=False, force_invalid_times=True)
    restore_plan = kubepki.plan_restore(info.path, node.root, only=["apiserver"])
    restore_result = kubepki.apply_restore(restore_plan, accept_changed=True, take_backup=False)
    return World(root=node.root, inventory=inventory, backup=info, plan=plan, result=result,
                 report=kubepki.verify_backup(info.path), restore_plan=restore_plan,
                 restore_result=restore_result)


def _hostile(world: World) -> dict[str, object]:
    """Each object with attacker-controlled text (names, messages, paths) in it."""
    item = world.inventory["apiserver"]
    bad_item = attrs.evolve(item, findings=(Finding("expired", Severity.ERROR, HOSTILE),))
    inventory = attrs.evolve(world.inventory, node=HOSTILE,
                             items=tuple(bad_item if i is item else i for i in world.inventory.items))
    step = world.plan.steps[0]
    plan = attrs.evolve(world.plan, node_name=HOSTILE, notes=(HOSTILE,),
                        steps=(attrs.evolve(step, name=HOSTILE, action=kubepki.renewal._renewal.Action.SKIP,
                                            reason="missing", message=HOSTILE), *world.plan.steps[1:]))
    result = attrs.evolve(world.result, node_name=HOSTILE, changed=(HOSTILE,),
                          skipped=(SkippedItem(name=HOSTILE, reason="unusable", message=HOSTILE, refused=True),))
    hostile_path = world.backup.path.with_name(f"{HOSTILE}.tar.gz")
    report = attrs.evolve(world.report, path=hostile_path, ok=False, problems=(HOSTILE,))
    rstep = world.restore_plan.steps[0]
    restore_plan = attrs.evolve(world.restore_plan, archive=hostile_path, node_name=HOSTILE,
                                steps=(attrs.evolve(rstep, path=HOSTILE, detail=HOSTILE),))
    restore_result = attrs.evolve(world.restore_result, written=(HOSTILE,), plan=restore_plan)
    backup = attrs.evolve(world.backup, path=hostile_path, node=HOSTILE, skipped=(HOSTILE,))
    return {"Inventory": inventory, "RenewalPlan": plan, "RenewalResult": result,
            "VerifyReport": report, "RestorePlan": restore_plan, "RestoreResult": restore_result,
            "BackupInfo": backup}


NAMES = ["Inventory", "RenewalPlan", "RenewalResult", "VerifyReport", "RestorePlan", "RestoreResult",
         "BackupInfo"]


def _html(obj: object) -> str:
    render: Callable[[], str] = obj._repr_html_  # type: ignore[attr-defined]
    return render()


@pytest.mark.parametrize("name", NAMES)
def test_is_a_table(world: World, name: str) -> None:
    """The notebook rendering is HTML holding a <table> with a header row."""
    obj = {"Inventory": world.inventory, "RenewalPlan": world.plan, "RenewalResult": world.result,
           "VerifyReport": world.report, "RestorePlan": world.restore_plan,
           "RestoreResult": world.restore_result, "BackupInfo": world.backup}[name]
    text = _html(obj)
    assert "<table" in text
    assert "<th" in text
    assert text.count("<table") == text.count("</table>")


@pytest.mark.parametrize("name", NAMES)
def test_hostile_text_is_escaped(world: World, name: str) -> None:
    """Names, messages and paths are escaped: no markup from the data reaches the page."""
    text = _html(_hostile(world)[name])
    assert "<img" not in text
    assert 'onerror="' not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in text


def test_escaping_negative_control() -> None:
    """The check above would catch unescaped markup (a raw string fails it)."""
    assert "<img" in f"<td>{HOSTILE}</td>"


def _key_fragments(root: Path) -> list[str]:
    """Distinctive pieces of every private key on the node (PEM lines and base64 of DER)."""
    out = []
    for path in [*root.rglob("*.key"), *root.rglob("*.pem"), *root.rglob("*.conf")]:
        if path.is_symlink():  # kubelet-client-current.pem: an absolute link, meant for the node's /
            continue
        text = path.read_text(errors="replace")
        for block in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\n(.*?)-----END", text, re.S):
            out += [line for line in block.splitlines() if len(line) >= 40][:3]
        for data in re.findall(r"client-key-data: (\S+)", text):
            out.append(data[40:100])
            out += [line for line in base64.b64decode(data).decode().splitlines() if len(line) >= 40][:2]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_no_private_key_material(world: World, name: str) -> None:
    """No rendering contains a private key, embedded or from a file."""
    obj = {"Inventory": world.inventory, "RenewalPlan": world.plan, "RenewalResult": world.result,
           "VerifyReport": world.report, "RestorePlan": world.restore_plan,
           "RestoreResult": world.restore_result, "BackupInfo": world.backup}[name]
    text = _html(obj)
    fragments = _key_fragments(world.root)
    assert len(fragments) > 20  # the negative control: there is key material to leak
    assert "PRIVATE KEY" not in text
    assert not [f for f in fragments if f in text]
