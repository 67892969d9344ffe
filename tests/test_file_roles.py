"""File roles are enums, not strings: inspection's ItemFileRole, renewal's PlannedFileRole.

Their values are the strings of the JSON output (docs/schema/check.schema.json) and of
the renewal journal, so the output is unchanged; a role kubepki reads back (the
journal) that is no member is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import kubepki
from kubepki import testing
from kubepki.catalog import CATALOG, FileRole
from kubepki.errors import RenewalError
from kubepki.inspection import ItemFileRole
from kubepki.node import Node
from kubepki.renewal import JOURNAL_NAME, PlannedFileRole, resume_renewal, switch_kubelet_conf
from tests.kubeadm_trees import config_path, materialize

UTC = dt.timezone.utc
ISSUED = dt.datetime(2026, 11, 28, tzinfo=UTC)
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "schema" / "check.schema.json"
PKI = Path("etc/kubernetes/pki")


def _schema_roles() -> list[str]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    roles: list[str] = schema["$defs"]["file"]["properties"]["role"]["enum"]
    return roles


@pytest.mark.parametrize("role", _schema_roles())
def test_every_schema_role_is_an_item_file_role_and_back(role: str) -> None:
    """Each role the check schema allows is one ItemFileRole member, whose value is the string."""
    member = ItemFileRole(role)
    assert member.value == role
    assert ItemFileRole[member.name] is member


def test_item_file_roles_are_exactly_the_schema_roles() -> None:
    """No member the schema does not document, none missing."""
    assert sorted(r.value for r in ItemFileRole) == sorted(_schema_roles())


def test_item_file_role_of_every_catalog_role() -> None:
    """Every catalog FileRole has its ItemFileRole; only ``referenced`` is no catalog role."""
    for role in FileRole:
        assert ItemFileRole.of(role).value == role.value
    assert {r.value for r in ItemFileRole} - {r.value for r in FileRole} == {"referenced"}
    for entry in CATALOG:
        for f in entry.files:
            assert ItemFileRole.of(f.role) in ItemFileRole


@pytest.mark.parametrize("role", ["symlink", "Cert", "certificate", "", "cert "])
def test_unknown_item_file_role_is_refused(role: str) -> None:
    """Negative control: a string that is no role is no member."""
    with pytest.raises(ValueError, match="is not a valid ItemFileRole"):
        ItemFileRole(role)


def test_planned_file_roles_are_catalog_roles_and_the_symlink() -> None:
    """A renewal writes the catalog's roles (not sa.pub's public_key), plus the kubelet's link."""
    planned = {r.value for r in PlannedFileRole}
    assert planned - {r.value for r in FileRole} == {"symlink"}
    assert {r.value for r in FileRole} - planned == {"public_key"}


def test_inventory_files_carry_members_and_emit_plain_strings(tmp_path: Path) -> None:
    """ItemFile.role is a member; to_dict emits its value as a plain str (JSON unchanged)."""
    demo = testing.build_node(tmp_path / "n", issued_at=ISSUED)
    inv = kubepki.inspect(demo.root, now=ISSUED)
    seen = set()
    for item in inv:
        for f in item.files:
            assert isinstance(f.role, ItemFileRole)
            out = f.to_dict()["role"]
            assert type(out) is str and out == f.role.value
            seen.add(f.role)
    # The demo's kubelet.conf names kubelet-client-current.pem: a referenced file.
    assert ItemFileRole.REFERENCED in seen
    assert {ItemFileRole.CERT, ItemFileRole.KEY, ItemFileRole.PUBLIC_KEY, ItemFileRole.KUBECONFIG,
            ItemFileRole.CERT_AND_KEY} <= seen
    roles = {f["role"] for item in json.loads(inv.to_json())["items"] for f in item["files"]}
    assert roles == {r.value for r in seen}


def test_switch_plan_roles_are_members_and_emit_plain_strings(tmp_path: Path) -> None:
    """The kubelet.conf switch writes the PEM, the link and the kubeconfig, typed."""
    root = materialize("single", tmp_path / "root")
    plan = switch_kubelet_conf(Node(root, config=config_path("single")), now=ISSUED)
    (step,) = [s for s in plan.steps if s.files]
    assert [f.role for f in step.files] == [PlannedFileRole.CERT_AND_KEY, PlannedFileRole.SYMLINK,
                                           PlannedFileRole.KUBECONFIG]
    assert all(isinstance(f.role, PlannedFileRole) for f in step.files)
    dumped = [f.to_dict()["role"] for f in step.files]
    assert dumped == ["cert_and_key", "symlink", "kubeconfig"]
    assert all(type(r) is str for r in dumped)


def _journal(role: str) -> dict[str, Any]:
    return {"version": 1, "state": "committing", "started": "2027-09-01T12:00:00Z", "pid": 1,
            "groups": [{"name": "apiserver", "check": "pair", "files": [
                {"staged": "/etc/kubernetes/pki/.apiserver.key.kubepki-new",
                 "target": "/etc/kubernetes/pki/apiserver.key", "role": "key"},
                {"staged": "/etc/kubernetes/pki/.apiserver.crt.kubepki-new",
                 "target": "/etc/kubernetes/pki/apiserver.crt", "role": role}]}]}


@pytest.mark.parametrize("role", ["certificate", "referenced", "public_key", "CERT"])
def test_journal_with_an_unknown_role_is_refused(tmp_path: Path, role: str) -> None:
    """Negative control: a journal naming a role renewal never writes is damaged; nothing moves."""
    demo = testing.build_node(tmp_path / "n", issued_at=ISSUED)
    root = demo.root
    pki = root / PKI
    staged = pki / ".apiserver.crt.kubepki-new"
    shutil.copyfile(pki / "apiserver.crt", staged)
    before = (pki / "apiserver.crt").read_bytes()
    (pki / JOURNAL_NAME).write_text(json.dumps(_journal(role)))
    with pytest.raises(RenewalError, match="damaged"):
        resume_renewal(root)
    assert staged.exists() and (pki / JOURNAL_NAME).exists()
    assert (pki / "apiserver.crt").read_bytes() == before


def test_journal_with_known_roles_is_read(tmp_path: Path) -> None:
    """The control's positive twin: the same journal with ``cert`` completes the rename."""
    demo = testing.build_node(tmp_path / "n", issued_at=ISSUED)
    pki = demo.root / PKI
    shutil.copyfile(pki / "apiserver.crt", pki / ".apiserver.crt.kubepki-new")
    (pki / JOURNAL_NAME).write_text(json.dumps(_journal("cert")))
    result = resume_renewal(demo.root)
    assert result is not None and result.resumed == ("apiserver",)
    assert not (pki / JOURNAL_NAME).exists()
