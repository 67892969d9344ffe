"""`kubepki check -o json` against the published schema, docs/schema/check.schema.json.

The schema is strict (every field required, no others allowed), so these tests
fail when the output and its documentation drift apart in either direction.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kubepki.catalog import Kind, Scope
from kubepki.cli import main
from kubepki.inspection import ItemFileRole
from kubepki.inspection._findings import CODES, Severity, Status
from tests.kubeadm_trees import PKI_SCENARIOS, config_path, materialize

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "schema" / "check.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# The fixture trees were issued on 2026-11-28: leaves last a year, CAs ten.
NOWS = {
    "fresh": "2026-12-01T00:00:00Z",
    "expiring": "2027-11-10T00:00:00Z",
    "expired": "2028-01-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """Materialise each fixture tree once per module; the checks only read them."""
    made: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("trees")

    def get(scenario: str) -> Path:
        if scenario not in made:
            made[scenario] = materialize(scenario, base / scenario)
        return made[scenario]

    yield get
    shutil.rmtree(base, ignore_errors=True)


def check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run `kubepki check -o json` in-process; return its status and parsed output."""
    code = main(["check", *argv, "-o", "json"])
    out, err = capsys.readouterr()
    assert err == ""
    return code, json.loads(out)


def errors(document: Any) -> list[str]:
    """The schema violations of ``document``, readable in an assertion message."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATOR.iter_errors(document)]


def test_schema_is_valid_draft_2020_12() -> None:
    """The schema itself is a valid JSON Schema."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("when", sorted(NOWS))
@pytest.mark.parametrize("scenario", PKI_SCENARIOS)
def test_fixture_tree_output_matches_schema(
    scenario: str, when: str, trees: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every real kubeadm tree, fresh, expiring and expired, gives schema-valid JSON."""
    code, data = check_json(capsys, "--root", str(trees(scenario)), "--now", NOWS[when])
    assert errors(data) == []
    assert data["exit_code"] == code
    assert sum(data["summary"].values()) == len(data["items"])


@pytest.mark.parametrize("scenario", PKI_SCENARIOS)
def test_fixture_tree_with_config_matches_schema(
    scenario: str, trees: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """With the kubeadm config (version and SAN checks known) the output is still valid."""
    code, data = check_json(capsys, "--root", str(trees(scenario)), "--config",
                            str(config_path(scenario)), "--now", NOWS["fresh"])
    assert errors(data) == []
    assert data["version_source"] != "assumed"
    assert data["exit_code"] == code


def test_damaged_tree_matches_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing, garbage and symlinked files (the null branches) are schema-valid too."""
    root = materialize("single-full", tmp_path / "n")
    pki = root / "etc/kubernetes/pki"
    (pki / "apiserver.key").unlink()
    (pki / "front-proxy-client.crt").write_bytes(b"not a certificate\n")
    (pki / "sa.pub").unlink()
    (root / "etc/kubernetes/admin.conf").write_text("apiVersion: v1\nkind: Config\n")
    code, data = check_json(capsys, "--root", str(root), "--now", NOWS["fresh"])
    assert errors(data) == []
    assert code == 2
    by_name = {i["name"]: i for i in data["items"]}
    key = next(f for f in by_name["apiserver"]["files"] if f["role"] == "key")
    assert key == {"path": "/etc/kubernetes/pki/apiserver.key", "role": "key", "exists": False,
                   "size": None, "mode": None, "uid": None, "gid": None, "mtime": None,
                   "sha256": None, "link_target": None}
    assert by_name["front-proxy-client"]["certificate"] is None
    assert by_name["front-proxy-client"]["status"] == "invalid"
    assert by_name["sa"]["status"] == "missing"
    pem = by_name["kubelet-client-current.pem"]["files"][0]
    assert pem["link_target"] is not None


def test_demo_output_matches_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`kubepki check --demo`, the first thing a new user runs, gives schema-valid JSON."""
    code, data = check_json(capsys, "--demo")
    assert errors(data) == []
    assert code == 0


def _valid_document(trees: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    _, data = check_json(capsys, "--root", str(trees("single-full")), "--now", NOWS["fresh"])
    assert errors(data) == []
    return data


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set(("undocumented",), 1), id="extra-top-level-field"),
        pytest.param(_delete(("cert_dir",)), id="missing-top-level-field"),
        pytest.param(_set(("items", 0, "status"), "fine"), id="unknown-status"),
        pytest.param(_set(("items", 0, "kind"), "cert"), id="unknown-kind"),
        pytest.param(_set(("items", 0, "not_after"), "2036-11-25 14:38:21"), id="not-iso-utc"),
        pytest.param(_set(("items", 0, "files", 0, "mode"), 420), id="mode-as-integer"),
        pytest.param(_delete(("items", 0, "files", 0, "sha256")), id="missing-file-field"),
        pytest.param(_set(("items", 0, "certificate", "extra"), True), id="extra-certificate-field"),
        pytest.param(_set(("items", 0, "findings"), [{"code": "expired", "severity": "bad",
                                                      "message": "x"}]), id="unknown-severity"),
        pytest.param(_set(("exit_code",), 3), id="exit-code-3-is-never-json"),
    ],
)
def test_schema_rejects_drift(
    mutate: Callable[[dict[str, Any]], None], trees: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Negative control: output that strays from the documented shape fails validation."""
    doc = copy.deepcopy(_valid_document(trees, capsys))
    mutate(doc)
    assert errors(doc) != []


def _enum(pointer: str) -> set[Any]:
    node: Any = SCHEMA
    for part in pointer.split("/"):
        node = node[part]
    return set(node["enum"])


@pytest.mark.parametrize(
    ("pointer", "values"),
    [
        ("$defs/item/properties/kind", {k.value for k in Kind}),
        ("$defs/item/properties/scope", {s.value for s in Scope}),
        ("$defs/item/properties/status", {s.value for s in Status}),
        ("$defs/finding/properties/severity", {s.value for s in Severity}),
        ("$defs/file/properties/role", {r.value for r in ItemFileRole}),
    ],
)
def test_schema_enums_follow_the_code(pointer: str, values: set[str]) -> None:
    """The schema's enumerations are exactly the values of kubepki's enums."""
    assert _enum(pointer) == values


def test_summary_keys_are_the_statuses() -> None:
    """`summary` has one count per status, no more, no less."""
    summary = SCHEMA["properties"]["summary"]
    assert set(summary["required"]) == set(summary["properties"]) == {s.value for s in Status}


CODE_SCHEMA = jsonschema.Draft202012Validator(SCHEMA["$defs"]["finding"]["properties"]["code"])


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_finding_code_fits_the_code_pattern(code: str) -> None:
    """Finding codes are lower-case words joined by hyphens, as the schema requires."""
    assert CODE_SCHEMA.is_valid(code)


@pytest.mark.parametrize("code", ["Expired", "key_mismatch", "-missing", "missing-", ""])
def test_code_pattern_rejects_other_spellings(code: str) -> None:
    """Negative control: the code pattern is not a catch-all."""
    assert not CODE_SCHEMA.is_valid(code)


@pytest.mark.parametrize("pointer", ["#", "#/$defs/item", "#/$defs/finding",
                                     "#/$defs/certificate", "#/$defs/file"])
def test_documented_objects_describe_every_field(pointer: str) -> None:
    """Each object docs/json.md renders has a description for every field."""
    node: Any = SCHEMA
    for part in pointer.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part]
    assert set(node["required"]) == set(node["properties"])
    undocumented = [name for name, prop in node["properties"].items() if not prop.get("description")]
    assert undocumented == []
