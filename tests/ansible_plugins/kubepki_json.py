"""An Ansible stdout callback for the tests: every task result, then the stats, as one JSON document.

ansible-core's own ``json`` callback moved to the ansible.posix collection, which
ansible-core alone does not install; this keeps the tests on ansible-core.
"""

from __future__ import annotations

import json
from typing import Any

from ansible.plugins.callback import CallbackBase  # type: ignore[import-not-found]


def _part(result: Any, name: str) -> Any:
    """``result.task`` / ``result.host`` / ``result.result`` (2.19+) or the older private names."""
    value = getattr(result, name, None)
    return value if value is not None else getattr(result, f"_{name}", None)


class CallbackModule(CallbackBase):  # type: ignore[misc]
    """Collects results and prints ``{"tasks": [...], "stats": {host: {...}}}`` at the end."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "kubepki_json"

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[dict[str, Any]] = []

    def _record(self, result: Any, status: str) -> None:
        task = _part(result, "task")
        host = _part(result, "host")
        self.tasks.append({"task": task.get_name() if task is not None else None,
                           "host": host.get_name() if host is not None else None,
                           "status": status, "result": _part(result, "result")})

    def v2_runner_on_ok(self, result: Any, **_kwargs: Any) -> None:
        """A task succeeded on a host."""
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False, **_kwargs: Any) -> None:
        """A task failed on a host."""
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result: Any, **_kwargs: Any) -> None:
        """A host could not be reached."""
        self._record(result, "unreachable")

    def v2_runner_on_skipped(self, result: Any, **_kwargs: Any) -> None:
        """A task was skipped on a host."""
        self._record(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        """Print everything collected."""
        summary = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._display.display(json.dumps({"tasks": self.tasks, "stats": summary}, default=str))
