#!/usr/bin/python
"""Ansible module ``kubepki``: inspect and renew a kubeadm node's certificates with kubepki.

It runs on the managed node (kubepki must be importable by the node's Python)
and works on the node's own files, so private keys never travel. Check mode
returns the renewal plan; ``changed`` says whether applying would write.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kubepki
short_description: Inspect and renew kubeadm certificates and kubeconfigs with kubepki
description:
  - Inspects every certificate, key and kubeconfig kubeadm put on a control-plane node
    (C(state=checked)), or renews them as C(kubeadm certs renew) does, plan first
    (C(state=renewed)).
  - Check mode maps to kubepki's plans; nothing is written. C(changed) is true when the
    plan would renew something.
  - Idempotent with C(expiring_within) set; renewing what is not due changes nothing.
  - A backup of the node's PKI is written on the node first (C(backup_dir)).
  - "Run one node at a time (C(serial: 1)) and restart the components that read renewed
    files before moving on; see C(playbooks/renew-ha.yml)."
requirements:
  - kubepki importable by the managed node's Python (C(pip install kubepki))
options:
  state:
    description: C(checked) inspects only; C(renewed) renews what is selected and due.
    type: str
    choices: [checked, renewed]
    default: checked
  names:
    description: Catalog names to renew (C(apiserver), C(admin.conf)...) or C(all).
    type: list
    elements: str
    default: [all]
  root:
    description: The node's filesystem root (C(/) on the node itself).
    type: path
    default: /
  expiring_within:
    description:
      - Renew only items expiring within this duration (C(30d), C(720h)).
      - Without it every selected item is renewed on each run, which is not idempotent.
    type: str
  validity:
    description: Validity of new certificates (default the kubeadm config's, else C(365d)).
    type: str
  key_algorithm:
    description: Key algorithm of new keys (default each item's current one).
    type: str
    choices: [RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384]
  backup_dir:
    description:
      - Directory on the node, under C(root), for the backup taken before renewing.
      - Set to an empty string to renew without a backup.
    type: str
    default: /var/backups/kubepki
  warn_within:
    description: With C(state=checked), items expiring within this are warnings.
    type: str
    default: 30d
  lock_wait:
    description: Seconds to wait for another kubepki writing to the node.
    type: float
    default: 0
  role:
    description:
      - The node's role, C(control-plane), C(worker) or C(etcd); discovered when not given.
      - A worker has nothing kubeadm renews (the kubelet rotates its own certificate), so C(renewed)
        changes nothing there; C(checked) checks what a worker has.
    type: str
    choices: [control-plane, worker, etcd]
author:
  - kubepki developers
"""

EXAMPLES = r"""
- name: What is due within 30 days (check mode shows the plan)
  kubepki:
    state: renewed
    expiring_within: 30d
  check_mode: true
  register: plan

- name: Renew what is due, backing the node up first
  kubepki:
    state: renewed
    expiring_within: 30d
  register: renewal

- name: Inspect only
  kubepki:
    state: checked
  register: inventory
  failed_when: exit_status(inventory) == 2
"""

RETURN = r"""
changed_items:
  description: Catalog names renewed (in check mode, that would be renewed).
  returned: state=renewed
  type: list
  elements: str
plan:
  description: The renewal plan as C(kubepki renew -o json) prints it.
  returned: state=renewed
  type: dict
result:
  description: The renewal result as C(kubepki renew --apply -o json) prints it.
  returned: state=renewed, not in check mode, when something was renewed
  type: dict
backup:
  description: The backup archive written on the node before renewing.
  returned: when a backup was taken
  type: str
exit_code:
  description: 0 all well, 1 warnings only, 2 something expired, invalid or refused.
  returned: always
  type: int
summary:
  description: Items per status (checked) or steps per action (renewed).
  returned: always
  type: dict
findings:
  description: With state=checked, the findings at warning level or worse.
  returned: state=checked
  type: list
  elements: dict
node:
  description: The node's name as kubepki discovered it.
  returned: always
  type: str
"""

# Ansible's layout: the documentation strings come first, then the imports.
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-not-found]  # noqa: E402


def _duration(module: Any, value: str | None, what: str) -> Any:
    if not value:
        return None
    from kubepki.errors import ConfigError
    from kubepki.node._kubeadm_config import parse_duration

    try:
        return parse_duration(value)
    except ConfigError as exc:
        module.fail_json(msg=f"{what}: {exc}")
    return None  # unreachable: fail_json exits


def _checked(module: Any, node: Any) -> dict[str, Any]:
    import kubepki
    from kubepki.cli import exit_status
    from kubepki.inspection._inventory import DEFAULT_WARN_WITHIN

    warn = _duration(module, module.params["warn_within"], "warn_within") or DEFAULT_WARN_WITHIN
    inv = kubepki.inspect(node, warn_within=warn)
    findings = [
        {"item": item.name, **f.to_dict()}
        for item, f in inv.findings
        if f.severity.rank >= kubepki.Severity.WARNING.rank
    ]
    return {"changed": False, "node": inv.node, "role": inv.profile.role.value, "exit_code": exit_status(inv),
            "summary": inv.counts(),
            "findings": findings, "inventory": inv.to_dict()}


def _renewed(module: Any, node: Any) -> dict[str, Any]:
    import kubepki
    from kubepki.cli import exit_status

    p = module.params
    plan = kubepki.plan_renewal(
        node, p["names"], expiring_within=_duration(module, p["expiring_within"], "expiring_within"),
        validity=_duration(module, p["validity"], "validity"), key_algorithm=p["key_algorithm"],
    )
    work = [s.name for s in plan.work]
    out: dict[str, Any] = {
        "changed": bool(work), "node": plan.node_name, "role": node.profile.role.value, "changed_items": work,
        "summary": plan.counts(),
        "plan": plan.to_dict(), "exit_code": 2 if plan.refused else 0,
    }
    if plan.refused:
        refused = ", ".join(f"{s.name} ({s.reason})" for s in plan.refused)
        module.fail_json(msg=f"kubepki refuses to renew {refused}", **out)
    if module.check_mode or not work:
        return out
    backup_dir = p["backup_dir"] or None
    result = kubepki.apply_renewal(plan, backup_dir=backup_dir, take_backup=backup_dir is not None,
                                   backup_on_node=True, wait=p["lock_wait"])
    out.update(changed=bool(result.changed), changed_items=list(result.changed), result=result.to_dict(),
               exit_code=exit_status(result))
    if result.backup is not None:
        out["backup"] = str(result.backup)
    return out


def main() -> None:
    """The module's entry point."""
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["checked", "renewed"], "default": "checked"},
            "names": {"type": "list", "elements": "str", "default": ["all"]},
            "root": {"type": "path", "default": "/"},
            "expiring_within": {"type": "str"},
            "validity": {"type": "str"},
            "key_algorithm": {"type": "str",
                              "choices": ["RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384"]},
            "backup_dir": {"type": "str", "default": "/var/backups/kubepki"},
            "warn_within": {"type": "str", "default": "30d"},
            "lock_wait": {"type": "float", "default": 0.0},
            "role": {"type": "str", "choices": ["control-plane", "worker", "etcd"]},
        },
        supports_check_mode=True,
    )
    try:
        import kubepki
    except ImportError as exc:
        module.fail_json(msg=f"kubepki is not importable by {module._name} on this node's Python: {exc}; "
                             "pip install kubepki (or set PYTHONPATH)")
        return
    try:
        node = kubepki.Node(module.params["root"], role=module.params["role"])
        node.check_root()
        if module.params["state"] == "checked":
            module.exit_json(**_checked(module, node))
        else:
            module.exit_json(**_renewed(module, node))
    except kubepki.KubepkiError as exc:
        module.fail_json(msg=f"kubepki: {exc}", error=type(exc).__name__, path=exc.path, name=exc.name)


if __name__ == "__main__":
    main()
