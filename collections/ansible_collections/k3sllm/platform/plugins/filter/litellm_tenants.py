"""Filter ``k3sllm.platform.litellm_tenants``: the inventory's teams and keys, checked and in apply order.

.. code-block:: yaml

    litellm_tenants_plan: "{{ litellm_teams | k3sllm.platform.litellm_tenants(litellm_keys) }}"

The logic is ``plan_tenants`` in module_utils/litellm_api.py (unit-tested there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.k3sllm.platform.plugins.module_utils.litellm_api import plan_tenants


def litellm_tenants(teams: list[Any], keys: list[Any]) -> dict[str, Any]:
    """Teams to create or update, keys, teams to delete, and the problems found (see plan_tenants)."""
    return plan_tenants(teams, keys)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"litellm_tenants": litellm_tenants}
