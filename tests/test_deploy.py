"""The packaging in deploy/: systemd units checked by the real ``systemd-analyze verify``.

Each unit's ``ExecStart`` is also parsed by kubepki's own argument parser, so a renamed
option cannot leave a unit that fails at 3 a.m.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from kubepki.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SYSTEMD = DEPLOY / "systemd"
UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="needs systemd-analyze (Debian's systemd package)")


def _verify(directory: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", *(f"./{n}" for n in names)], cwd=directory,
                          capture_output=True, text=True, check=False, timeout=60)


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  -- systemd keys are case-sensitive
    parser.read(SYSTEMD / name)
    return parser


def test_the_four_units_are_there() -> None:
    """The auto-renew and metrics services, each with its timer."""
    assert UNITS == ["kubepki-auto-renew.service", "kubepki-auto-renew.timer", "kubepki-metrics.service",
                     "kubepki-metrics.timer"]


@needs_systemd
def test_systemd_analyze_verify_accepts_them_without_a_word(tmp_path: Path) -> None:
    """``systemd-analyze verify`` exits 0 and prints nothing (a warning is a mistake too).
    Controls: a misspelt calendar fails, a misspelt service type is warned about."""
    for name in UNITS:
        shutil.copy(SYSTEMD / name, tmp_path / name)
    run = _verify(tmp_path, *UNITS)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == "", run
    timer = (SYSTEMD / "kubepki-auto-renew.timer").read_text().replace("OnCalendar=daily", "OnCalendar=dailyy")
    (tmp_path / "bad.timer").write_text(timer.replace("Unit=kubepki-auto-renew.service", "Unit=bad.service"))
    shutil.copy(SYSTEMD / "kubepki-auto-renew.service", tmp_path / "bad.service")
    assert _verify(tmp_path, "bad.timer").returncode != 0
    service = (SYSTEMD / "kubepki-auto-renew.service").read_text().replace("Type=oneshot", "Type=oneshott")
    (tmp_path / "bad.service").write_text(service)
    assert "Failed to parse service type" in _verify(tmp_path, "bad.service").stderr


def test_the_auto_renew_timer_is_daily_randomized_and_persistent() -> None:
    """Daily, at a random moment within an hour, catching up after downtime; it starts the service."""
    timer = _unit("kubepki-auto-renew.timer")["Timer"]
    assert timer["OnCalendar"] == "daily" and timer["Persistent"] == "true"
    assert timer["RandomizedDelaySec"] == "1h" and timer["Unit"] == "kubepki-auto-renew.service"
    metrics = _unit("kubepki-metrics.timer")["Timer"]
    assert metrics["Unit"] == "kubepki-metrics.service" and metrics["OnUnitActiveSec"] == "15min"


@pytest.mark.parametrize("service", ["kubepki-auto-renew.service", "kubepki-metrics.service"])
def test_exec_start_is_a_kubepki_command_line(service: str) -> None:
    """ExecStart parses with kubepki's own parser (control: a misspelt option does not)."""
    argv = shlex.split(_unit(service)["Service"]["ExecStart"])
    assert argv[:2] == ["/usr/bin/env", "kubepki"]
    parser = build_parser()
    args = parser.parse_args(argv[2:])
    assert callable(args.func)
    if service.startswith("kubepki-auto-renew"):
        assert args.apply and args.root == "/"
    with pytest.raises(SystemExit):
        parser.parse_args([*argv[2:], "--no-such-option"])
