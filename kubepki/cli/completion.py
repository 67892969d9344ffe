"""``kubepki completion bash|zsh``: a static tab-completion script for the shell.

The script is generated from the argument parser itself, so it knows every
command, action and option of this version, the choices of options such as
``-o table|json``, and the catalog names ``kubepki renew`` takes. Values that
are paths fall back to the shell's own file-name completion. Nothing runs
kubepki while completing, so completion costs nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from typing import Any

from kubepki._version import __version__
from kubepki.cli._common import emit

__all__ = ["bash_script", "register", "suggest", "zsh_script"]

EXAMPLES = """\
examples:
  source <(kubepki completion bash)        # this bash session
  kubepki completion bash > ~/.local/share/bash-completion/completions/kubepki
  source <(kubepki completion zsh)         # zsh, after compinit (e.g. in ~/.zshrc)"""

_WORDS = "_kubepki_words"


def suggest(action: argparse.Action, words: Iterable[str]) -> argparse.Action:
    """Offer ``words`` when completing ``action``'s value (without restricting it as choices would)."""
    setattr(action, _WORDS, tuple(words))
    return action


def register(sub: Any) -> None:
    """Add the ``completion`` sub-command."""
    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)",
                       description="Print a tab-completion script for kubepki's commands and options.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the script for ``args.shell``."""
    from kubepki import cli  # the package imports this module: not at the top

    parser = cli.build_parser()
    emit(bash_script(parser) if args.shell == "bash" else zsh_script(parser))
    return 0


# --------------------------------------------------------------------------------------


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public way to walk sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for name, child in _children(parser).items():
        yield from _walk(child, f"{path}/{name}")


def _values(action: argparse.Action) -> tuple[str, ...] | None:
    words = getattr(action, _WORDS, None)
    if words is not None:
        return tuple(words)
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return tuple(str(c) for c in action.choices)
    return None


def _bash_function(parser: argparse.ArgumentParser) -> str:
    paths: list[str] = []
    value_cases: list[str] = []
    word_cases: list[str] = []
    for path, p in _walk(parser, parser.prog):
        paths.append(path)
        options: list[str] = []
        words: list[str] = list(_children(p))
        free: list[str] = []  # options whose value the shell completes as a path
        for action in p._actions:
            if action.help == argparse.SUPPRESS:
                continue
            if not action.option_strings:
                words += _values(action) or ()
                continue
            options += action.option_strings
            if action.nargs == 0:
                continue
            labels = [f'"{path} {o}"' for o in action.option_strings]
            values = _values(action)
            if values:
                value_cases.append(f'        {"|".join(labels)}) COMPREPLY=($(compgen -W "{" ".join(values)}" '
                                   '-- "$cur")); return ;;')
            else:
                free += labels
        if free:
            value_cases.append(f"        {'|'.join(free)}) return ;;")
        word_cases.append(f'        {path}) opts="{" ".join(options)}"; words="{" ".join(words)}" ;;')
    commands = "|".join(paths[1:])
    return f"""_kubepki() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local cmd=kubepki opts="" words="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "$cmd/${{COMP_WORDS[i]}}" in
            {commands}) cmd="$cmd/${{COMP_WORDS[i]}}" ;;
        esac
    done
    COMPREPLY=()
    case "$cmd $prev" in  # an option's value: its choices, else the shell's own (paths)
{chr(10).join(value_cases)}
    esac
    case "$cmd" in
{chr(10).join(word_cases)}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}}"""


def bash_script(parser: argparse.ArgumentParser) -> str:
    """The bash completion script for ``parser`` (kubepki's, from :func:`kubepki.cli.build_parser`)."""
    return f"""# bash completion for kubepki {__version__}, generated by `kubepki completion bash`.
# Load it with `source <(kubepki completion bash)`, or save it as
# ~/.local/share/bash-completion/completions/kubepki.
{_bash_function(parser)}
complete -o default -F _kubepki kubepki
"""


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """The zsh completion script: the bash one, through zsh's ``bashcompinit``."""
    return f"""#compdef kubepki
# zsh completion for kubepki {__version__}, generated by `kubepki completion zsh`.
# Load it after compinit with `source <(kubepki completion zsh)`.
autoload -U +X bashcompinit && bashcompinit
{_bash_function(parser)}
complete -o default -F _kubepki kubepki
"""
