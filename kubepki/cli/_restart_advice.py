"""What a command that wrote certificates tells about restarts: kubepki's own plan, not kubeadm's line.

kubeadm ends every renewal with "restart the kube-apiserver, kube-controller-manager,
kube-scheduler and etcd" whatever it wrote. ``renew``, the ``certs`` writes and
``restore --apply`` instead print :func:`kubepki.plan_restarts` for exactly the catalog
names they wrote (front-proxy-client: the kube-apiserver only; kubelet.conf: the
kubelet only; super-admin.conf: nothing), the policy it was made with, and the
``kubepki restarts apply`` command line that carries that same plan out.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from kubepki.errors import KubepkiError

if TYPE_CHECKING:
    from kubepki.node import Node
    from kubepki.restarts import RestartPlan

__all__ = ["RestartAdvice", "restart_advice"]

#: The policy of the plan shown, as ``kubepki restarts plan`` defaults to: every reader restarts.
POLICY = "safe"


@attrs.frozen(kw_only=True)
class RestartAdvice:
    """The restart plan for what a command wrote, and the command line that applies it."""

    changed: tuple[str, ...]
    policy: str
    #: None when the plan could not be made (``error`` says why).
    plan: RestartPlan | None
    #: ``kubepki restarts apply ... --apply`` as argv (without the program name); empty when nothing restarts.
    argv: tuple[str, ...] = ()
    error: str | None = None

    @property
    def restarts(self) -> tuple[str, ...]:
        """The components the plan restarts, in order."""
        return tuple(s.component.value for s in self.plan.restarts) if self.plan is not None else ()

    @property
    def command(self) -> str | None:
        """The shell command that applies the plan, or None when nothing needs a restart."""
        return shlex.join(["kubepki", *self.argv]) if self.argv else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the ``restarts`` field of the commands' JSON."""
        return {
            "policy": self.policy,
            "changed": list(self.changed),
            "restart": list(self.restarts),
            "needed": bool(self.restarts),
            "command": self.command,
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "error": self.error,
        }

    def lines(self) -> list[str]:
        """The plan in words: each restart, each note, then the command (or "nothing needs a restart")."""
        if not self.changed:
            return ["Restarts: nothing was written, so nothing needs a restart."]
        names = ", ".join(self.changed)
        if self.plan is None:
            return [f"Restarts: kubepki could not plan them ({self.error}); see "
                    f"kubepki restarts plan --changed {' '.join(self.changed)}"]
        out = [f"Restarts for what was written ({names}; kubepki's plan, policy {self.policy}):"]
        out += [f"  restart {s.component.value} ({s.method.value}): {s.describe()}" for s in self.plan.restarts]
        if not self.plan.restarts:
            out.append("  nothing needs a restart")
        out += [f"  note: {s.component.value}: {s.note}" for s in self.plan.steps
                if s.action.value == "note" and s.note]
        out += [f"  note: {n}" for n in self.plan.notes]
        if self.command:
            out.append(f"To restart them: {self.command}")
        return out


def _node_options(args: argparse.Namespace) -> list[str]:
    """The options that chose the node, to repeat in the suggested command."""
    out: list[str] = []
    for option, value in (("--root", args.root if args.root != "/" else None),
                          ("--cert-dir", getattr(args, "cert_dir", None)),
                          ("--kubeconfig-dir", getattr(args, "kubeconfig_dir", None)),
                          ("--config", getattr(args, "config", None)),
                          ("--role", getattr(args, "role", None))):
        if value:
            out += [option, str(value)]
    return out


def restart_advice(args: argparse.Namespace, node: Node, changed: Sequence[str]) -> RestartAdvice:
    """kubepki's restart plan (policy ``safe``) for the catalog names ``changed`` on ``node``."""
    from kubepki.restarts import Changed, plan_restarts

    names = tuple(dict.fromkeys(changed))
    if not names:
        return RestartAdvice(changed=(), policy=POLICY, plan=plan_restarts(node, Changed(()), policy=POLICY))
    try:
        plan = plan_restarts(node, Changed(names), policy=POLICY)
    except KubepkiError as exc:  # the files are written: say what could not be planned, never a traceback
        return RestartAdvice(changed=names, policy=POLICY, plan=None, error=str(exc))
    argv: tuple[str, ...] = ()
    if plan.restarts:
        argv = ("restarts", "apply", "--changed", *names, *_node_options(args), "--policy", POLICY, "--apply")
    return RestartAdvice(changed=names, policy=POLICY, plan=plan, argv=argv)
