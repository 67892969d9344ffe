"""The docs' generated reference tables (docs/_ext/kubepki_catalog.py), built without Sphinx.

The catalog, findings, JSON and CLI pages are rendered from kubepki's data; these
tests build the same docutils nodes and check nothing is left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from docutils import nodes

from kubepki import catalog
from kubepki.catalog import Component
from kubepki.cli import build_parser
from kubepki.inspection._findings import CODES

EXT_PATH = Path(__file__).resolve().parent.parent / "docs" / "_ext" / "kubepki_catalog.py"


def _load_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kubepki_catalog", EXT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kubepki_catalog", module)
    spec.loader.exec_module(module)
    return module


ext = _load_extension()

ENTRY_TABLES = ["artifacts", "profiles", "consumers"]


def rows(table: nodes.table) -> list[list[str]]:
    """The body rows of ``table`` as lists of cell texts."""
    body = next(iter(table.findall(nodes.tbody)))
    return [[entry.astext() for entry in row.findall(nodes.entry)] for row in body.findall(nodes.row)]


def header(table: nodes.table) -> list[str]:
    """The header row of ``table``."""
    head = next(iter(table.findall(nodes.thead)))
    return [entry.astext() for entry in head.findall(nodes.entry)]


def first_column(table: nodes.table) -> set[str]:
    """The texts of the first column."""
    return {row[0] for row in rows(table)}


@pytest.mark.parametrize("table", ENTRY_TABLES)
def test_every_catalog_entry_is_in_the_table(table: str) -> None:
    """Each per-entry table has a row for every entry of CATALOG, and nothing else."""
    built = ext.CATALOG_TABLES[table]()
    assert first_column(built) == set(catalog.names())


@pytest.mark.parametrize("table", ENTRY_TABLES)
def test_a_missing_entry_would_be_noticed(table: str) -> None:
    """Negative control: a table built from fewer entries fails the completeness check."""
    built = ext.CATALOG_TABLES[table](catalog.CATALOG[1:])
    assert catalog.CATALOG[0].name not in first_column(built)
    assert first_column(built) != set(catalog.names())


@pytest.mark.parametrize("entry", catalog.CATALOG, ids=lambda e: e.name)
def test_artifact_row_shows_the_entry(entry: catalog.CatalogEntry) -> None:
    """An entry's artifacts row names its kind, every file, signer, scope and flags."""
    built = ext.artifacts_table()
    columns = header(built)
    row = dict(zip(columns, next(r for r in rows(built) if r[0] == entry.name), strict=True))
    assert row["Kind"] == entry.kind.value
    for f in entry.files:
        assert f"/{f.path} {f.mode:04o}" in row["Files (default path, mode)"]
    assert row["Signer"] == (entry.signer or "none")
    assert row["Scope"] == entry.scope.value
    assert row["Renewable"] == ("yes" if entry.renewable else "no")
    assert row["Required"] == ("yes" if entry.required else "no")
    for role in catalog.NodeRole:
        assert (role.value in row["Node roles"].split(" (")[0].split(", ")
                or f"{role.value} (" in row["Node roles"]) is (role in entry.roles)


def test_organisations_show_their_versions() -> None:
    """The 1.29 change of apiserver-kubelet-client's O is shown with both ranges."""
    row = next(r for r in rows(ext.profiles_table()) if r[0] == "apiserver-kubelet-client")
    assert "system:masters (< 1.29)" in row[2]
    assert "kubeadm:cluster-admins (≥ 1.29)" in row[2]
    plain = next(r for r in rows(ext.profiles_table()) if r[0] == "kubelet.conf")
    assert plain[2] == "system:nodes"


def test_versioned_entries_show_their_range() -> None:
    """super-admin.conf exists from kubeadm 1.29; etcd entries only with local etcd."""
    by_name = {r[0]: r for r in rows(ext.artifacts_table())}
    assert by_name["super-admin.conf"][7] == "≥ 1.29"
    assert by_name["etcd-peer"][7] == "all, local etcd only"
    assert by_name["apiserver"][7] == "all"


def test_every_consumer_is_in_the_consumers_table() -> None:
    """Each (entry, component, flag) of the catalog has a row with its reload mode."""
    shown = {(r[0], r[1], r[2]): r[3] for r in rows(ext.consumers_table())}
    for entry in catalog.CATALOG:
        for c in entry.consumers:
            assert shown[(entry.name, c.component.value, c.flag)].startswith(c.reload.value)


def test_every_consumer_is_in_the_components_table() -> None:
    """The per-component table lists every consumer, under its component."""
    shown: set[tuple[str, str, str]] = set()
    component = ""
    for r in rows(ext.components_table()):
        component = r[0] or component
        shown.add((component, r[1], r[2]))
    expected = {(c.component.value, e.name, c.flag) for e in catalog.CATALOG for c in e.consumers}
    assert shown == expected
    assert {s[0] for s in shown} <= {c.value for c in Component}


def test_reload_table_explains_every_mode() -> None:
    """Each reload mode has a non-empty explanation taken from catalog.py."""
    table = rows(ext.reload_table())
    assert [r[0] for r in table] == [m.value for m in catalog.Reload]
    assert all(r[1] for r in table)
    assert {r[0] for r in table if r[2] == "yes"} == {"restart"}


def test_findings_table_lists_every_code() -> None:
    """The findings page has every code of CODES with its severity and meaning."""
    table = rows(ext.findings_table())
    assert [r[0] for r in table] == list(CODES)
    for code, severity, meaning in table:
        assert (severity, meaning) == (CODES[code][0].value, CODES[code][1])


@pytest.mark.parametrize("pointer", ["#", "#/$defs/item", "#/$defs/finding",
                                     "#/$defs/certificate", "#/$defs/file"])
def test_schema_tables_list_every_property(pointer: str) -> None:
    """Each JSON schema table on docs/json.md has one row per property."""
    schema = json.loads(ext.SCHEMA.read_text(encoding="utf-8"))
    obj = schema
    for part in pointer.lstrip("#").strip("/").split("/"):
        if part:
            obj = obj[part]
    assert [r[0] for r in rows(ext.schema_table(pointer))] == list(obj["properties"])


def test_schema_table_rejects_unknown_pointer() -> None:
    """Negative control: a pointer to nothing is an error, not an empty table."""
    with pytest.raises(KeyError):
        ext.schema_table("#/$defs/no-such-object")


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """``prefix`` and every (nested) sub-command under it, found through argparse."""
    found = [prefix]
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # an alias is the same parser again
                    seen.add(id(sub))
                    found += _commands(sub, f"{prefix} {name}")
    return found


def test_cli_reference_covers_every_command() -> None:
    """The CLI page has a section for kubepki and each (nested) sub-command, with its --help."""
    parser = build_parser()
    sections = ext.cli_sections(parser)
    titles = [s[0].astext() for s in sections]
    assert titles == _commands(parser, "kubepki")
    assert "kubepki check" in titles
    for section in sections:
        text = section[1].astext()
        assert text.startswith("usage: ")
        assert "-h, --help" in text
        assert "\x1b[" not in text  # no terminal colours in the docs


def test_cli_help_width_does_not_follow_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated help is the same whatever $COLUMNS the build runs with."""
    monkeypatch.setenv("COLUMNS", "40")
    narrow = [s.astext() for s in ext.cli_sections(build_parser())]
    monkeypatch.setenv("COLUMNS", "200")
    wide = [s.astext() for s in ext.cli_sections(build_parser())]
    assert narrow == wide


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tutorial\nrenewal\nbackup\ncatalog\n", "tutorial\nbackup\ncatalog\n"),
        ("See [renewing](renewal.md#restarts) and [the catalog](catalog.md).",
         "See renewing and [the catalog](catalog.md)."),
        ("[Renew](../renewal.md) now", "Renew now"),
        ("the renewal of certificates\n", "the renewal of certificates\n"),
    ],
)
def test_missing_pages_are_dropped(text: str, expected: str) -> None:
    """Toctree lines and links of a page that does not exist yet are removed; prose stays."""
    assert ext.drop_missing_pages(text, ["renewal"]) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("kubepki.Inventory", "kubepki.inspection._inventory.Inventory"),
        ("kubepki.inspection._inventory.Inventory.to_dict", "kubepki.Inventory.to_dict"),
        ("kubepki.errors.NodeError", "kubepki.NodeError"),
        ("kubepki.catalog.get", None),
    ],
)
def test_public_and_canonical_names_find_each_other(target: str, expected: str | None) -> None:
    """Cross-references work whether a docstring uses the public or the module name."""
    assert next(ext._alternatives(target), None) == expected


def _tables() -> list[Callable[[], nodes.table]]:
    return [*ext.CATALOG_TABLES.values(), ext.findings_table]


@pytest.mark.parametrize("build", _tables(), ids=lambda f: f.__name__)
def test_tables_are_well_formed(build: Callable[[], nodes.table]) -> None:
    """Every row has as many cells as the header (docutils would fail the build)."""
    table = build()
    width = len(header(table))
    assert all(len(r) == width for r in rows(table))
    assert rows(table)
