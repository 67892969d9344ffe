"""The command line as a user meets it: colour rules, --quiet, completion, help, errors, a first session."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kubepki.cli.check
from kubepki import testing
from kubepki.cli import build_parser, main
from kubepki.cli._output import Output, color_wanted

ESC = "\x1b["
#: The environment without the variables that steer colour, so each test sets its own.
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}


def kubepki_cmd(*args: str, env: dict[str, str] | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kubepki ARGS`` as a user would; return the completed process."""
    return subprocess.run([sys.executable, "-m", "kubepki", *args], capture_output=True, text=True,
                          env={**(BASE_ENV if env is None else env), **extra_env}, timeout=120, check=False)


def run_in_pty(*args: str, **extra_env: str) -> tuple[int, str]:
    """Run ``python -m kubepki ARGS`` with a terminal as stdout and stderr; return (status, output)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "kubepki", *args], stdin=subprocess.DEVNULL,
                            stdout=terminal, stderr=terminal, env={**BASE_ENV, "TERM": "xterm", **extra_env})
    os.close(terminal)
    chunks = []
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def expiring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node whose leaves expire in about two weeks (warnings, exit 1)."""
    issued = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=350)
    return testing.build_node(tmp_path_factory.mktemp("exp"), issued_at=issued).root


# -- colour -----------------------------------------------------------------------------


def test_no_colour_into_a_pipe() -> None:
    """Piped output is plain text: no escape sequences, on stdout or stderr."""
    proc = kubepki_cmd("check", "--demo")
    assert proc.returncode == 0, proc.stderr
    assert "CERTIFICATE" in proc.stdout
    assert ESC not in proc.stdout
    assert proc.stderr == ""


def test_force_color_colours_a_pipe() -> None:
    """FORCE_COLOR=1 colours even into a pipe (the control for the test above)."""
    proc = kubepki_cmd("check", "--demo", FORCE_COLOR="1")
    assert proc.returncode == 0, proc.stderr
    assert f"{ESC}32m" in proc.stdout  # the time left of ok items, in green


@pytest.mark.parametrize(("args", "env"), [
    (("--no-color", "check", "--demo"), {"FORCE_COLOR": "1"}),
    (("check", "--demo", "--no-color"), {"FORCE_COLOR": "1"}),
    (("check", "--demo"), {"FORCE_COLOR": "1", "NO_COLOR": "1"}),
])
def test_no_color_wins(args: tuple[str, ...], env: dict[str, str]) -> None:
    """--no-color (before or after the command) and NO_COLOR beat FORCE_COLOR."""
    proc = kubepki_cmd(*args, **env)
    assert proc.returncode == 0, proc.stderr
    assert "CERTIFICATE" in proc.stdout
    assert ESC not in proc.stdout


def test_colour_on_a_terminal() -> None:
    """On a terminal the statuses are coloured; --no-color turns it off there too."""
    status, out = run_in_pty("check", "--demo")
    assert status == 0, out
    assert f"{ESC}32m" in out
    status, out = run_in_pty("check", "--demo", "--no-color")
    assert status == 0, out
    assert "CERTIFICATE" in out
    assert f"{ESC}32m" not in out


def test_colour_marks_problems(expiring: Path) -> None:
    """Warnings are yellow and the findings' severities coloured; the words stay the same."""
    coloured = kubepki_cmd("check", "--root", str(expiring), FORCE_COLOR="1")
    plain = kubepki_cmd("check", "--root", str(expiring))
    assert coloured.returncode == plain.returncode == 1
    assert f"{ESC}33mWARNING{ESC}0m" in coloured.stdout
    assert f"{ESC}33m14d{ESC}0m" in coloured.stdout or f"{ESC}33m15d{ESC}0m" in coloured.stdout
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured.stdout) == plain.stdout


@pytest.mark.parametrize(("env", "tty", "flag", "wanted"), [
    ({}, False, False, False),
    ({}, True, False, True),
    ({}, True, True, False),
    ({"NO_COLOR": "1"}, True, False, False),
    ({"FORCE_COLOR": "1"}, False, False, True),
    ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False, False),
    ({"TERM": "dumb"}, True, False, False),
    ({"NO_COLOR": ""}, True, False, True),
])
def test_colour_rules(env: dict[str, str], tty: bool, flag: bool, wanted: bool) -> None:
    """The documented order: --no-color, NO_COLOR, FORCE_COLOR, TERM=dumb, then isatty."""

    class Stream:
        def isatty(self) -> bool:
            return tty

    assert color_wanted(Stream(), no_color=flag, environ=env) is wanted  # type: ignore[arg-type]


def test_plain_without_rich(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without rich installed, colour requests fall back to the same plain text."""
    monkeypatch.setitem(sys.modules, "rich.console", None)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert main(["check", "--demo"]) == 0
    out = capsys.readouterr().out
    assert "CERTIFICATE" in out
    assert ESC not in out


def test_rich_is_imported_only_when_needed() -> None:
    """The CLI loads rich only for colour or a spinner, not for plain output."""
    code = ("import sys\nfrom kubepki.cli import main\nrc = main(['check', '--demo'])\n"
            "print('rich' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=BASE_ENV, check=False)
    assert proc.returncode == 0
    assert proc.stderr.strip() == "False"


def test_spinner_only_on_a_terminal(tmp_path: Path) -> None:
    """Slow commands show a spinner on a terminal's stderr, and nothing in a pipe."""
    proc = kubepki_cmd("demo", str(tmp_path / "piped"))
    assert proc.returncode == 0
    assert proc.stderr == ""
    status, out = run_in_pty("demo", str(tmp_path / "tty"))
    assert status == 0
    assert "Writing 1 demo node" in out
    assert "cp1\t10.0.0.11" in out


# -- quiet ------------------------------------------------------------------------------


def test_quiet_check_is_silent_when_all_is_well(capsys: pytest.CaptureFixture[str]) -> None:
    """check -q on a healthy node prints nothing: the exit status is the answer."""
    assert main(["check", "--demo", "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_quiet_check_prints_only_findings(expiring: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check -q with warnings prints the findings and not the tables."""
    assert main(["-q", "check", "--root", str(expiring)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FINDINGS\n")
    assert "expiring" in out
    assert "CERTIFICATE" not in out


def test_quiet_never_hides_a_query_result(expiring: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """JSON, a renewal plan and metrics are printed even with --quiet."""
    assert main(["check", "--root", str(expiring), "-q", "-o", "json"]) == 1
    assert capsys.readouterr().out.startswith("{")
    assert main(["renew", "all", "--root", str(expiring), "-q"]) == 0
    assert "Nothing has been written." in capsys.readouterr().out
    assert main(["metrics", "--root", str(expiring), "-q"]) == 0
    assert "kubepki_certificate_seconds_left" in capsys.readouterr().out


def test_quiet_actions_report_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """demo, renew --apply and backup say nothing with --quiet when they succeed."""
    assert main(["demo", str(tmp_path / "d"), "-q"]) == 0
    root = str(tmp_path / "d" / "cp1")
    assert main(["renew", "all", "--root", root, "--apply", "--no-backup", "-q"]) == 0
    assert main(["backup", "--root", root, "--backup-dir", str(tmp_path / "b"), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["renew", "all", "--root", root, "--apply", "--no-backup"]) == 0
    assert "renewed" in capsys.readouterr().out  # the control: without -q there is a report


# -- completion -------------------------------------------------------------------------


def _complete(script: str, *words: str) -> list[str]:
    """What the bash script offers for the command line ``words`` (the last one being typed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    code = (f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _kubepki; "
            'printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return out.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion(capsys: pytest.CaptureFixture[str]) -> None:
    """The bash script completes commands, actions, options, their choices and catalog names."""
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert _complete(script, "kubepki", "ch") == ["check"]
    assert _complete(script, "kubepki", "backup", "") == ["create", "list", "verify", "prune"]
    assert _complete(script, "kubepki", "check", "--ou") == ["--output"]
    assert _complete(script, "kubepki", "--no-color", "check", "-o", "") == ["table", "json"]
    assert _complete(script, "kubepki", "completion", "") == ["bash", "zsh"]
    names = _complete(script, "kubepki", "renew", "")
    assert {"all", "apiserver", "admin.conf"} <= set(names)
    assert "ca" not in names  # CAs are never renewed: not offered
    assert _complete(script, "kubepki", "check", "--root", "") == []  # left to the shell: paths


def test_zsh_completion(capsys: pytest.CaptureFixture[str]) -> None:
    """The zsh script loads the same completion through bashcompinit."""
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef kubepki\n")
    assert "bashcompinit" in script
    assert "complete -o default -F _kubepki kubepki" in script
    if shutil.which("zsh") is None:
        return
    subprocess.run(["zsh", "-n"], input=script, text=True, check=True)
    # zsh's bashcompinit runs the function under `emulate sh` and filters the words itself.
    code = (f"autoload -U compinit && compinit -u -D\n{script}\n"
            'emulate -L sh; COMP_WORDS=(kubepki check -o ""); COMP_CWORD=3; _kubepki; echo "${COMPREPLY[*]}"')
    out = subprocess.run(["zsh", "-f", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["table", "json"]


# -- help -------------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: list[argparse.ArgumentParser] = []
            for name, child in action.choices.items():
                if child not in seen:
                    seen.append(child)
                    out += _parsers(child, f"{path} {name}")
    return out


@pytest.mark.parametrize(("command", "parser"), _parsers(build_parser(), "kubepki"))
def test_every_help_has_examples(command: str, parser: argparse.ArgumentParser) -> None:
    """Every command's --help ends with examples that start with `kubepki`."""
    text = parser.format_help()
    assert "examples:" in text, command
    examples = text.split("examples:", 1)[1]
    assert "  kubepki " in examples or "kubectl " in examples, command
    for option in ("--no-color", "--quiet", "--debug"):
        assert option in text, (command, option)


# -- errors -----------------------------------------------------------------------------


def test_errors_are_one_line(tmp_path: Path) -> None:
    """A failure is one line on stderr and exit 3; --debug shows the traceback."""
    proc = kubepki_cmd("check", "--root", str(tmp_path / "absent"))
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.startswith("kubepki: error: ")
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    debug = kubepki_cmd("--debug", "check", "--root", str(tmp_path / "absent"))
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr


def test_unexpected_errors_are_one_line_too(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A bug still gives one line naming --debug, and --debug re-raises it."""

    def broken(args: Any) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(kubepki.cli.check, "run", broken)
    assert main(["check", "--demo"]) == 3
    err = capsys.readouterr().err
    assert err == "kubepki: error: unexpected RuntimeError: boom second line (run with --debug for the traceback)\n"
    with pytest.raises(RuntimeError, match="boom"):
        main(["check", "--demo", "--debug"])


def test_bad_arguments_are_one_line() -> None:
    """argparse's own errors are one line too, pointing at --help."""
    proc = kubepki_cmd("check", "--output", "xml")
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.endswith("(see --help)\n")


# -- a first session --------------------------------------------------------------------


def test_new_user_session(tmp_path: Path) -> None:
    """The README's first steps work end to end: help, demo check, demo, renew plan and apply, check."""
    cluster = tmp_path / "cluster"
    steps = [
        ("--help",),
        ("check", "--demo"),
        ("demo", str(cluster)),
        ("renew", "all", "--root", str(cluster / "cp1")),
        ("renew", "all", "--root", str(cluster / "cp1"), "--apply", "--no-backup"),
        ("check", "--root", str(cluster / "cp1")),
    ]
    outputs = []
    for args in steps:
        proc = kubepki_cmd(*args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert proc.stderr == "", args
        outputs.append(proc.stdout)
    assert "examples:" in outputs[0]
    assert outputs[2].startswith("cp1\t")
    assert "11 item(s) to write" in outputs[3]
    assert "Done renewing certificates." in outputs[4]
    assert "364d" in outputs[5]  # renewed for a year


def test_output_helper_quiet_rules(capsys: pytest.CaptureFixture[str]) -> None:
    """Output.result is always printed, Output.info not with quiet."""
    quiet = Output(quiet=True)
    quiet.result("answer")
    quiet.info("chatter")
    assert capsys.readouterr().out == "answer\n"
    Output().info("chatter")
    assert capsys.readouterr().out == "chatter\n"
