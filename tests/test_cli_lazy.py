"""The lazy command line: a command imports what it runs, and nothing of the other commands.

Lightness is asserted by which modules a real ``python -m kubepki`` process loaded
(never by time: benchmarks/bench_ratios.py measures that).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import kubepki
from kubepki import cli
from kubepki.cli import _common, _exit
from tests.kubeadm_trees import materialize

REPO = Path(__file__).resolve().parents[1]

#: Loaded only by the commands that renew, back up, restart or span clusters.
OTHER_COMMANDS = ("kubepki.cli.renew", "kubepki.cli.backup", "kubepki.cli.restarts", "kubepki.cli.cluster",
                  "kubepki.cli.autorenew", "kubepki.cli.kubelet", "kubepki.cli.permissions",
                  "kubepki.renewal", "kubepki.backups", "kubepki.restarts", "kubepki.cluster",
                  "kubepki.autorenew", "kubepki.permissions", "kubepki.objects")
#: What inspection costs: a parser or a completion script needs none of it.
INSPECTION = ("kubepki.inspection._inventory", "kubepki.inspection._cis", "kubepki.node._node",
              "kubepki.renewal._renewal", "kubepki.backups._backups", "kubepki.pki._issuing")


def _loaded(*argv: str) -> tuple[int, set[str]]:
    """Run ``kubepki argv`` in a fresh interpreter; its exit status and the kubepki modules it loaded."""
    code = (
        "import json, sys\n"
        "from kubepki import cli\n"
        "try:\n"
        "    status = cli.main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "sys.stdout.flush()\n"
        "print('\\n' + json.dumps([status, sorted(sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    status, modules = json.loads(out.strip().splitlines()[-1])
    return status, set(modules)


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_commands_table_names_every_command_of_the_full_parser() -> None:
    """COMMANDS lists each module's top-level commands (aliases included), no more and no less."""
    listed = {name for _, names in cli.COMMANDS for name in names}
    assert listed == _commands(cli.build_parser())
    for module, names in cli.COMMANDS:
        assert _commands(cli.build_parser(names[0])) == set(names), module
    assert {"check", "renew", "backup", "completion"} <= listed  # control: the table is not empty


def test_build_parser_for_one_command_parses_as_the_full_one(tmp_path: Path) -> None:
    argv = ["check", "--root", str(tmp_path), "--warn-within", "60d", "-q"]
    one, full = cli.build_parser("check").parse_args(argv), cli.build_parser().parse_args(argv)
    assert vars(one) == vars(full)
    with pytest.raises(SystemExit):  # control: the one-command parser knows no other command
        cli.build_parser("check").parse_args(["renew", "all"])


#: What ``check`` needs none of (issue 20): key generation and signing, the HTML escaper (text output).
NOT_FOR_CHECK = ("kubepki.pki._issuing", "html", "kubepki.inspection.timeline", "kubepki.inspection.frames")


def test_check_imports_no_other_command(tmp_path: Path) -> None:
    root = materialize("single-full", tmp_path / "n")
    status, modules = _loaded("check", "--root", str(root), "-o", "json")
    assert status == 0
    assert "kubepki.inspection._inventory" in modules  # it did inspect
    assert sorted(m for m in modules if m.startswith(OTHER_COMMANDS)) == []
    floor = _modules_after("import cryptography.x509, yaml, attrs")  # what the dependencies load themselves
    assert sorted(m for m in modules - floor if m.split(".")[0] in NOT_FOR_CHECK or m in NOT_FOR_CHECK) == []
    # Controls: HTML output (a notebook's) does load the escaper, and a renewal loads key generation.
    assert "html" in _modules_after(f"import kubepki\nkubepki.inspect({str(root)!r})._repr_html_()")
    _, renew_modules = _loaded("renew", "all", "--root", str(root))
    assert "kubepki.pki._issuing" in renew_modules


def test_renew_loads_what_it_runs_negative_control(tmp_path: Path) -> None:
    """Control for the check above: a renewal command does load renewal."""
    root = materialize("single-full", tmp_path / "n")
    status, modules = _loaded("renew", "all", "--root", str(root))
    assert status in (0, 1)
    assert {"kubepki.cli.renew", "kubepki.renewal._renewal"} <= modules
    assert "kubepki.cli.backup" not in modules


@pytest.mark.parametrize("argv", [["--help"], ["completion", "bash"], ["check", "--help"], []])
def test_help_and_completion_load_no_implementation(argv: list[str]) -> None:
    status, modules = _loaded(*argv)
    assert status in (0, 3)
    assert "kubepki.cli.completion" in modules or argv == ["check", "--help"]
    assert sorted(m for m in modules if m.startswith(INSPECTION)) == []


def test_completion_still_describes_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "kubepki", "completion", "bash"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    for _, names in cli.COMMANDS:
        for name in names:
            assert name in out
    assert "no-such-command" not in out


def test_unknown_command_is_refused_by_the_full_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == cli.EXIT_ERROR
    assert "invalid choice" in capsys.readouterr().err


def test_global_options_before_the_command_pick_it(tmp_path: Path) -> None:
    assert cli._command(["--no-color", "-q", "check", "--root", "x"]) == "check"
    assert cli._command(["--debug", "restore", "f"]) == "restore"
    assert cli._command(["--help"]) is None
    assert cli._command(["nonsense"]) is None
    assert cli._command(["--", "check"]) is None


def test_constants_spelt_out_for_the_parser_agree_with_the_library() -> None:
    from kubepki.autorenew import DEFAULT_WITHIN
    from kubepki.backups import DEFAULT_BACKUP_DIR
    from kubepki.inspection import DEFAULT_WARN_WITHIN

    assert tuple(r.value for r in kubepki.NodeRole) == _common.ROLES
    assert _common.DEFAULT_WARN_WITHIN == DEFAULT_WARN_WITHIN
    assert _common.DEFAULT_BACKUP_DIR == DEFAULT_BACKUP_DIR
    assert _common.DEFAULT_RENEW_WITHIN == DEFAULT_WITHIN


def test_every_outcome_has_an_exit_status() -> None:
    from kubepki._report import Outcome

    assert set(_exit.EXIT_STATUS) == {o.value for o in Outcome}
    assert [_exit.EXIT_STATUS[o.value] for o in Outcome] == [0, 1, 2, 3]


def test_exit_status_and_json_document_are_still_exported() -> None:
    assert cli.exit_status is _exit.exit_status
    assert cli.json_document is _exit.json_document
    with pytest.raises(AttributeError):
        cli.no_such_name  # noqa: B018


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_inspection_loads_nothing_until_used() -> None:
    """``import kubepki.inspection`` is a table of names; the X.509 stack, YAML and attrs wait for use."""
    modules = _modules_after("import kubepki.inspection")
    assert sorted(m for m in modules if m.startswith(("cryptography", "yaml", "attr", "kubepki.inspection._"))) == []
    used = _modules_after("from kubepki.inspection import inspect")  # control: using it loads it
    assert {"kubepki.inspection._inventory", "cryptography.x509", "yaml"} <= used
    assert sorted(m for m in used if m.startswith((*OTHER_COMMANDS, "rich", "docker", "paramiko", "pandas"))) == []


# -- loading the implementation with the collector paused ------------------------------------------


_PROBE = """
import gc, importlib.abc, json, sys
seen = {}
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "kubepki.inspection._inventory":
            seen["collector on while loading"] = gc.isenabled()
        return None
sys.meta_path.insert(0, Probe())
if sys.argv[1] == "off":
    gc.disable()
from kubepki.inspection import inspect
seen["collector on after"] = gc.isenabled()
print(json.dumps(seen))
"""


@pytest.mark.parametrize(("before", "after"), [("on", True), ("off", False)])
def test_lazy_loading_pauses_the_collector_and_puts_it_back(before: str, after: bool) -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE, before], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    seen = json.loads(out)
    assert seen == {"collector on while loading": False, "collector on after": after}
