#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: one LiteLLM team, identified by its alias, through LiteLLM's admin API."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: litellm_team
short_description: Create, update and delete a LiteLLM team by its alias
description:
  - Makes the LiteLLM team named O(alias) exist with the given settings (allowed models, shared budget and its
    reset period, rate limits, blocked, metadata), or not exist. Keys of a team draw on its budget and may call
    only its models (M(k3sllm.platform.litellm_key) with O(k3sllm.platform.litellm_key#module:team)).
  - The alias is the team's identity. LiteLLM does not require team aliases to be unique; when several teams
    share O(alias) the module fails and names them instead of guessing.
  - Reports C(changed) only when a setting differs. Settings the task leaves out are left as they are,
    unless O(purge) is set. In check mode it reports what would change and changes nothing.
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
options:
  alias:
    description: The team's alias (C(team_alias) in LiteLLM), for example C(research).
    type: str
    required: true
  state:
    description:
      - C(present) creates or updates the team. C(absent) deletes it, and LiteLLM deletes the team's keys with
        it (RV(keys_deleted) names them).
    type: str
    choices: [present, absent]
    default: present
  models:
    description: Model names (or aliases) the team's keys may call; an empty list means every model.
    type: list
    elements: str
  max_budget:
    description: Spend limit in US dollars shared by all the team's keys.
    type: float
  budget_duration:
    description: How often the team's spend resets, in LiteLLM's syntax (C(1h), C(1d), C(7d), C(30d), C(1mo), ...).
    type: str
  rpm_limit:
    description: Requests per minute for the whole team.
    type: int
  tpm_limit:
    description: Tokens per minute for the whole team.
    type: int
  blocked:
    description: A blocked team's keys are all refused; the team, its keys and its spend are kept.
    type: bool
  metadata:
    description:
      - Entries to set in the team's metadata. Only these entries are compared and written; other entries are kept.
    type: dict
  purge:
    description:
      - Also reset every setting the task leaves out (O(models), O(max_budget), O(budget_duration), O(rpm_limit),
        O(tpm_limit), O(blocked)) to LiteLLM's default (every model, no limit, not blocked). O(metadata) is never
        purged.
    type: bool
    default: false
extends_documentation_fragment:
  - k3sllm.platform.litellm_admin
attributes:
  check_mode:
    description: Reports what would change without changing it.
    support: full
    details: Reads the team from LiteLLM; changes nothing.
  diff_mode:
    description: Shows the team's settings before and after.
    support: full
"""

EXAMPLES = r"""
- name: A team with a monthly budget and two models
  k3sllm.platform.litellm_team:
    url: https://llm.example.com
    master_key: "{{ litellm_master_key }}"
    ca_path: inventories/gpu1/artifacts/ca.crt
    alias: research
    models: [qwen2.5-7b-instruct, llama-3.1-8b-instruct]
    max_budget: 100
    budget_duration: 30d
    rpm_limit: 600
  delegate_to: localhost

- name: Remove a team (and, in LiteLLM, all its keys)
  k3sllm.platform.litellm_team:
    url: https://llm.example.com
    master_key: "{{ litellm_master_key }}"
    alias: old-project
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
created:
  description: Whether the team was created by this run (or would be, in check mode).
  returned: always
  type: bool
team_id:
  description: LiteLLM's id of the team (null in check mode before its creation).
  returned: when the team exists or is created
  type: str
changes:
  description: Each setting that differs (or, on creation, is set), with its value before and after.
  returned: always
  type: dict
  sample: {"max_budget": {"before": 100.0, "after": 150.0}}
settings:
  description: The team's managed settings after this run (as they would be, in check mode).
  returned: when state is present
  type: dict
keys_deleted:
  description: Aliases (or, for keys without one, hashes) of the keys LiteLLM deleted with the team.
  returned: when state is absent
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.k3sllm.platform.plugins.module_utils.litellm_api import (
    CONNECTION_SPEC,
    TEAM_SETTINGS,
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
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_tenant_module(module, "litellm_team", LiteLLMAdmin.find_team, absent, present)


def absent(module: AnsibleModule, api: LiteLLMAdmin, current: dict[str, Any] | None) -> None:
    if current is None:
        module.exit_json(changed=False, created=False, changes={}, keys_deleted=[])
    keys = [
        key.get("key_alias") or key.get("token") for key in current.get("keys") or [] if isinstance(key, dict)
    ]
    if not module.check_mode:
        api.delete_team(current["team_id"])
    module.exit_json(
        changed=True,
        created=False,
        team_id=current["team_id"],
        changes={"state": {"before": "present", "after": "absent"}},
        keys_deleted=keys,
        diff={"before": summary(current, TEAM_SETTINGS), "after": {}},
    )


def present(module: AnsibleModule, api: LiteLLMAdmin, current: dict[str, Any] | None) -> None:
    p = module.params
    desired = desired_settings(
        {field: p[field] for field in TEAM_SETTINGS}, purge=p["purge"], fields=TEAM_SETTINGS
    )
    changes, after = planned_changes(desired, current, TEAM_SETTINGS)
    if current is None:
        team_id = None
        if not module.check_mode:
            team_id = api.create_team(p["alias"], creation_settings(desired)).get("team_id")
        module.exit_json(
            changed=True,
            created=True,
            team_id=team_id,
            changes=changes,
            settings=after,
            diff={"before": {}, "after": after},
        )
    if changes and not module.check_mode:
        api.update_team(current["team_id"], update_settings(changes))
        if "blocked" in changes:
            api.set_team_blocked(current["team_id"], changes["blocked"]["after"])
    module.exit_json(
        changed=bool(changes),
        created=False,
        team_id=current["team_id"],
        changes=changes,
        settings=after,
        diff={"before": summary(current, TEAM_SETTINGS), "after": after},
    )


if __name__ == "__main__":
    main()
