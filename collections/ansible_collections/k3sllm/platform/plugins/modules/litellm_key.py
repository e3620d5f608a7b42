#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: one LiteLLM virtual key, identified by its alias, through LiteLLM's admin API."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: litellm_key
short_description: Create, update and delete a LiteLLM virtual key by its alias
description:
  - Makes the LiteLLM virtual key named O(alias) exist with the given settings (allowed models, budget and its
    reset period, rate limits, team, blocked, metadata), or not exist.
  - The alias is the key's identity; LiteLLM refuses a second key with the same alias.
  - Reports C(changed) only when a setting differs. Settings the task leaves out are left as they are,
    unless O(purge) is set. In check mode it reports what would change and changes nothing.
  - The key's value exists only once, in LiteLLM's answer to its creation; LiteLLM stores a hash of it
    and cannot give it back. The module writes it to O(save_path) (mode 0600) and returns it as RV(key) only
    to a task that sets C(no_log) (so it never reaches a log); with neither, creating a key fails before
    anything is changed, because its value would be lost.
  - A lost value cannot be read back. To give a key a new value, delete it (O(state=absent)) and create it
    again (spend recorded so far stays in LiteLLM's spend logs, the key's own spend counter starts at 0).
    LiteLLM's C(/key/regenerate) route does this in place, but in LiteLLM 1.108 it is an Enterprise
    (licensed) feature, so this module does not use it.
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
options:
  alias:
    description: The key's alias (C(key_alias) in LiteLLM), for example C(alice-laptop).
    type: str
    required: true
  state:
    description:
      - C(present) creates or updates the key; C(absent) deletes it (it stops working at once) and removes
        O(save_path), which would otherwise hold a dead value.
    type: str
    choices: [present, absent]
    default: present
  team:
    description:
      - Alias of the team the key belongs to (create it first, for example with M(k3sllm.platform.litellm_team)).
        The team's models and budget then apply too.
    type: str
  models:
    description: Model names (or aliases) the key may call; an empty list means every model.
    type: list
    elements: str
  max_budget:
    description: Spend limit in US dollars (LiteLLM's cost tracking); the key is refused once its spend passes it.
    type: float
  budget_duration:
    description: How often the spend resets, in LiteLLM's syntax (C(30s), C(1h), C(1d), C(7d), C(1mo), ...).
    type: str
  rpm_limit:
    description: Requests per minute.
    type: int
  tpm_limit:
    description: Tokens per minute.
    type: int
  blocked:
    description: A blocked key is refused by LiteLLM but kept, with its settings and spend.
    type: bool
  metadata:
    description:
      - Entries to set in the key's metadata. Only these entries are compared and written; other entries
        (LiteLLM's own, the UI's) are kept.
    type: dict
  purge:
    description:
      - Also reset every setting the task leaves out (O(models), O(max_budget), O(budget_duration),
        O(rpm_limit), O(tpm_limit), O(team), O(blocked)) to LiteLLM's default (every model, no limit, no team,
        not blocked), so the key matches the task exactly. O(metadata) is never purged.
    type: bool
    default: false
  save_path:
    description:
      - File to write the value of a newly created key to (mode 0600; a missing folder is created with mode
        0700), on the host the task runs on. Written only when the key is created (it then replaces whatever
        the file held); never rewritten while the key exists, and removed with O(state=absent).
    type: path
extends_documentation_fragment:
  - k3sllm.platform.litellm_admin
attributes:
  check_mode:
    description: Reports what would change without changing it.
    support: full
    details: Reads the key and its team from LiteLLM; changes nothing, writes no file.
  diff_mode:
    description: Shows the key's settings before and after (never its value).
    support: full
"""

EXAMPLES = r"""
- name: A key for a teammate, value saved on the controller
  k3sllm.platform.litellm_key:
    url: https://llm.example.com
    master_key: "{{ litellm_master_key }}"
    ca_path: inventories/gpu1/artifacts/ca.crt
    alias: alice-laptop
    team: research
    models: [qwen2.5-7b-instruct]
    max_budget: 20
    budget_duration: 30d
    rpm_limit: 60
    save_path: inventories/gpu1/artifacts/keys/alice-laptop
  delegate_to: localhost

- name: Create a key and hand its value to the next task (returned only because of no_log)
  k3sllm.platform.litellm_key:
    url: http://127.0.0.1:4000
    master_key: "{{ litellm_master_key }}"
    alias: ci-runner
    max_budget: 5
  register: ci_key
  no_log: true

- name: Revoke a key
  k3sllm.platform.litellm_key:
    url: https://llm.example.com
    master_key: "{{ litellm_master_key }}"
    alias: bob-old-laptop
    state: absent
    save_path: inventories/gpu1/artifacts/keys/bob-old-laptop
"""

RETURN = r"""
created:
  description: Whether the key was created by this run (or would be, in check mode).
  returned: always
  type: bool
key:
  description:
    - The new key's value (C(sk-...)). Only when this run created the key and the task sets C(no_log);
      it cannot be read back later.
  returned: when created, to a task with no_log
  type: str
key_hash:
  description: LiteLLM's id of the key (the sha256 of its value); accepted by LiteLLM's C(/key/info) and C(/key/block).
  returned: when the key exists (not in check mode before its creation)
  type: str
team_id:
  description: LiteLLM's id of the key's team, or null.
  returned: when state is present
  type: str
changes:
  description: Each setting that differs (or, on creation, is set), with its value before and after.
  returned: always
  type: dict
  sample: {"max_budget": {"before": 10.0, "after": 20.0}}
settings:
  description: The key's managed settings after this run (as they would be, in check mode).
  returned: when state is present
  type: dict
saved_path:
  description: O(save_path) when this run wrote the key's value there.
  returned: when the value was written
  type: str
"""

import hashlib
import os
import stat
from typing import Any, NoReturn

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.k3sllm.platform.plugins.module_utils.litellm_api import (
    CONNECTION_SPEC,
    SETTINGS,
    TENANT_SPEC,
    LiteLLMAdmin,
    creation_settings,
    desired_settings,
    planned_changes,
    run_tenant_module,
    summary,
    update_settings,
)

ARGUMENT_SPEC = {
    **CONNECTION_SPEC,
    **TENANT_SPEC,
    "team": {"type": "str"},
    "save_path": {"type": "path"},
}


def save_path_problem(path: str) -> str | None:
    """Why the key's value could not be written to ``path``, checked before the key is created."""
    if os.path.isdir(path):
        return f"save_path {path} is a folder; name the file to write the key's value to."
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        return f"save_path {path} cannot be written: {folder} is not a writable folder."
    return None


def write_secret(path: str, value: str) -> None:
    """Write ``value`` to ``path`` with mode 0600 (folder 0700 when created), atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        run_tenant_module(module, "litellm_key", LiteLLMAdmin.find_key, absent, present)
    except OSError as exc:  # reading, writing or removing save_path
        module.fail_json(msg=f"litellm_key {module.params['alias']!r}: {module.params['save_path']}: {exc}")


def absent(module: AnsibleModule, api: LiteLLMAdmin, current: dict[str, Any] | None) -> None:
    save_path = module.params["save_path"]
    stale_file = bool(save_path) and os.path.lexists(save_path)
    if not module.check_mode:
        if current is not None:
            api.delete_key(current["token"])
        if stale_file:
            os.remove(save_path)
    module.exit_json(
        changed=current is not None or stale_file,
        created=False,
        changes={} if current is None else {"state": {"before": "present", "after": "absent"}},
        diff={"before": summary(current) if current else {}, "after": {}} if current else {},
        **({"key_hash": current["token"]} if current else {}),
    )


def resolve_team(module: AnsibleModule, api: LiteLLMAdmin) -> str | None:
    """The team id of ``team`` (None with no team); a placeholder in check mode for a team not yet created."""
    team = module.params["team"]
    if not team:
        return None
    found = api.find_team(team)
    if found is not None:
        return str(found["team_id"])
    if module.check_mode:
        module.warn(
            f"Team {team!r} does not exist yet; a real run fails unless a task before this one creates it."
        )
        return f"(team {team}, not created yet)"
    module.fail_json(
        msg=f"litellm_key {module.params['alias']!r}: team {team!r} does not exist in LiteLLM. Create it first "
        "(k3sllm.platform.litellm_team, or an entry in litellm_teams) or fix the key's team."
    )
    return None  # not reached


def present(module: AnsibleModule, api: LiteLLMAdmin, current: dict[str, Any] | None) -> None:
    p = module.params
    alias, save_path = p["alias"], p["save_path"]
    requested = {field: p[field] for field in SETTINGS if field != "team_id"}
    requested["team_id"] = resolve_team(module, api)
    desired = desired_settings(requested, purge=p["purge"])

    if current is None:
        create(module, api, desired)

    changes, after = planned_changes(desired, current)
    mode_fixed = False
    if save_path and os.path.isfile(save_path):
        mode_fixed = stat.S_IMODE(os.stat(save_path).st_mode) != 0o600
        if mode_fixed and not module.check_mode:
            os.chmod(save_path, 0o600)
    elif save_path:
        module.warn(
            f"Key {alias!r} exists but {save_path} does not: LiteLLM cannot give a key's value back. If it is "
            "lost, delete the key (state: absent) and run again to get a new value."
        )
    if changes and not module.check_mode:
        api.update_key(current["token"], update_settings(changes))
        if "blocked" in changes:
            api.set_key_blocked(current["token"], changes["blocked"]["after"])
    module.exit_json(
        changed=bool(changes) or mode_fixed,
        created=False,
        key_hash=current["token"],
        team_id=after["team_id"],
        changes=changes,
        settings=after,
        diff={"before": summary(current), "after": after},
    )


def create(module: AnsibleModule, api: LiteLLMAdmin, desired: dict[str, Any]) -> NoReturn:
    p = module.params
    alias, save_path = p["alias"], p["save_path"]
    if not save_path and not module.no_log:
        module.fail_json(
            msg=f"litellm_key {alias!r}: creating this key would lose its value, which LiteLLM shows only once. "
            "Set save_path (the k3sllm role's save: true), or set no_log: true on the task and register "
            "its result (the value is then in the returned 'key')."
        )
    if save_path:
        problem = save_path_problem(save_path)
        if problem:
            module.fail_json(msg=f"litellm_key {alias!r}: {problem}")
    changes, after = planned_changes(desired, None)
    result: dict[str, Any] = {
        "changed": True,
        "created": True,
        "team_id": after["team_id"],
        "changes": changes,
        "settings": after,
        "diff": {"before": {}, "after": after},
    }
    if module.check_mode:
        module.exit_json(**result)
    answer = api.generate_key(alias, creation_settings(desired))
    value = answer["key"]
    token = hashlib.sha256(value.encode()).hexdigest()  # LiteLLM's hash_token
    if save_path:
        try:
            write_secret(save_path, value)
        except OSError as exc:
            # A key whose value nobody has is useless: take it back, so a re-run starts clean.
            api.delete_key(token)
            module.fail_json(
                msg=f"litellm_key {alias!r}: could not write its value to {save_path} ({exc}); the new key "
                "was deleted again. Fix the path and run again."
            )
        result["saved_path"] = save_path
    if module.no_log:
        result["key"] = value
    module.exit_json(key_hash=token, **result)


if __name__ == "__main__":
    main()
