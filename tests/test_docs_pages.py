"""The documentation site: every page is reachable, and every console command that can run offline runs.

Commands are read from the ```console blocks of docs/**/*.md (``$ `` starts one, ``> ``
and a trailing backslash continue it); each page's commands run in order in a
bash of their own, with ``/tmp/`` moved into a temporary directory and
``kubepki`` being this checkout. A command that cannot run here (root, a
cluster, SSH, the network, a synopsis) must match one rule of :data:`SKIPPED`,
each with its reason; a command matching none runs, and a rule matching no
command fails, so nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
EXCLUDED = ("_build", "schema", "notebooks", "_ext")

#: (regular expression searched in the command, why it is not run here). Reviewed: keep it short.
SKIPPED: list[tuple[str, str]] = [
    (r"^sudo ", "needs root on a real control-plane node"),
    (r"^(kubectl|ansible-playbook|crictl|date)\b|pip install|^cp /etc/|^server=", "needs a cluster, Ansible "
     "hosts, a container runtime or a package index"),
    (r"^cd ansible$", "the Ansible page's inventory names real hosts"),
    (r"ssh://|--node \.\.\.", "needs SSH-reachable nodes"),
    (r"\[--|\bFILE\b|<node>|<time>", "a synopsis, not a command"),
    (r"^kubepki check( -o json.*)?( +#.*)?$", "reads this machine's /etc/kubernetes"),
    (r"^kubepki check --root /host", "reads a host filesystem mounted at /host"),
    (r"^kubepki backup (verify|list) /var/backups/", "reads this machine's backups"),
    (r"^kubepki restarts apply --root /host", "restarts the host's components from a pod"),
    (r"--root \./cp1-copy", "a copy of a real node's tree"),
    (r"^kubepki check --root /tmp/cp1 --config kubeadm-config.yaml", "the test suite's tree and config"),
    (r"^kubepki secrets check (--kubeconfig|--context)|\| kubepki secrets check -f -|-f objects\.yaml",
     "needs a live cluster (or its objects)"),
    (r"^kubepki probe shop\.example\.com", "needs the network"),
    (r"^kubepki metrics --serve", "serves until stopped"),
    (r"^kubepki restore /tmp/backups/kubepki-backup-cp1-2026", "the archive's name holds the time of the run"),
    (r'^\[ "\$status"', "continues the previous line's status (a script, not a command)"),
]


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if not any(x in p.relative_to(DOCS).parts for x in EXCLUDED))


def _commands(text: str) -> list[tuple[str, list[str]]]:
    """Each ``$`` command of the console blocks, with the output lines printed after it."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```console\n(.*?)^```", text, re.S | re.M):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                cmd = line[2:]
                while i + 1 < len(lines) and (cmd.endswith("\\") or lines[i + 1].startswith("> ")):
                    i += 1
                    nxt = lines[i][2:] if lines[i].startswith("> ") else lines[i]
                    cmd = cmd[:-1].rstrip() + " " + nxt.strip() if cmd.endswith("\\") else cmd + "\n" + nxt
                out.append((cmd, []))
            elif out:
                out[-1][1].append(line)
            i += 1
    return out


def _skip_reason(cmd: str) -> str | None:
    hits = [why for pattern, why in SKIPPED if re.search(pattern, cmd, re.M)]
    return hits[0] if hits else None


def _toctree_entries(page: Path) -> set[Path]:
    found: set[Path] = set()
    for block in re.findall(r"^```\{toctree\}\n(.*?)^```", page.read_text(), re.S | re.M):
        for raw in block.splitlines():
            entry = raw.strip()
            if entry and not entry.startswith(":"):
                found.add((page.parent / entry).with_suffix(".md").resolve())
    return found


def unreachable(pages: list[Path], index: Path) -> list[Path]:
    """The pages no toctree reaches from ``index``, or that hide as ``orphan``."""
    reached, todo = {index.resolve()}, [index]
    while todo:
        for entry in _toctree_entries(todo.pop()):
            if entry not in reached and entry.exists():
                reached.add(entry)
                todo.append(entry)
    return [p for p in pages if p.resolve() not in reached or re.match(r"---\n(?:.*\n)*?orphan:", p.read_text())]


def test_every_page_is_in_a_toctree() -> None:
    """Every page is reached from index.md through toctrees; none is an orphan."""
    assert unreachable(_pages(), DOCS / "index.md") == []


def test_an_unlisted_page_is_found(tmp_path: Path) -> None:
    """Negative control: a page no toctree names, and an orphan one, are reported."""
    (tmp_path / "index.md").write_text("# i\n\n```{toctree}\nlisted\nhidden\n```\n")
    (tmp_path / "listed.md").write_text("# l\n")
    (tmp_path / "hidden.md").write_text("---\norphan: true\n---\n# h\n")
    (tmp_path / "lost.md").write_text("# x\n")
    pages = sorted(tmp_path.glob("*.md"))
    assert [p.name for p in unreachable(pages, tmp_path / "index.md")] == ["hidden.md", "lost.md"]


def test_every_skip_rule_is_used() -> None:
    """A rule that matches no command any more is removed, not kept as a blind spot."""
    commands = [cmd for page in _pages() for cmd, _ in _commands(page.read_text())]
    unused = [pattern for pattern, _ in SKIPPED if not any(re.search(pattern, c, re.M) for c in commands)]
    assert unused == []


def test_skip_rules_can_tell_commands_apart() -> None:
    """Negative control: offline commands are not caught by any rule."""
    for cmd in ("kubepki check --root /tmp/cluster/cp1", "kubepki demo /tmp/x", "kubepki check --demo",
                "source <(kubepki completion bash)"):
        assert _skip_reason(cmd) is None, cmd
    assert _skip_reason("sudo kubepki check") is not None


def _run_page(page: Path, tmp: Path) -> list[str]:
    """Run the page's runnable commands in order; the problems found."""
    problems: list[str] = []
    work = tmp / "tmp"
    work.mkdir()
    cwd = tmp
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", "HOME": str(tmp)}
    env.pop("KUBEPKI_TEST_CRASH_AT", None)
    prelude = f'kubepki() {{ "{sys.executable}" -m kubepki "$@"; }}\n'
    last: int | None = None
    for cmd, output in _commands(page.read_text()):
        if cmd.strip() == "echo $?":
            expected = output[0].strip() if output else ""
            if last is not None and expected.isdigit() and int(expected) != last:
                problems.append(f"the command before `echo $?` exited {last}, the page says {expected}")
            continue
        if _skip_reason(cmd) is not None:
            last = None
            continue
        local = cmd.replace("/tmp/", f"{work}/")
        if local.startswith("cd "):
            cwd = Path(local[3:].strip())
            last = 0
            continue
        proc = subprocess.run(["bash", "-c", prelude + local], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        last = proc.returncode
        if proc.returncode not in (0, 1, 2) or "Traceback" in proc.stderr or "deprecated" in proc.stderr:
            problems.append(f"`{cmd}` exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return problems


_RUNNABLE = [p for p in _pages() if any(_skip_reason(c) is None for c, _ in _commands(p.read_text()))]


@pytest.mark.parametrize("page", _RUNNABLE, ids=[str(p.relative_to(DOCS)) for p in _RUNNABLE])
def test_console_commands_run(page: Path, tmp_path: Path) -> None:
    """The page's offline commands run, with the exit statuses the page shows, without deprecated options."""
    assert _run_page(page, tmp_path) == []


def test_a_broken_command_is_reported(tmp_path: Path) -> None:
    """Negative control: an unknown option, and a wrong documented exit status, are problems."""
    page = tmp_path / "bad.md"
    page.write_text("```console\n$ kubepki check --no-such-option\n$ kubepki check --demo\n$ echo $?\n7\n```\n")
    problems = _run_page(page, tmp_path)
    assert len(problems) == 2 and "exited 3" in problems[0] and "page says 7" in problems[1]
