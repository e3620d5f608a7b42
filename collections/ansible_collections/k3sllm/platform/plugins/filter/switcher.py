"""Filter for roles/model_switcher: every Kubernetes object of the switcher, built as data.

The builders live in plugin_utils/switcher_manifests.py (one function per object, unit-tested directly).

.. code-block:: yaml

    model_switcher_objects: >-
      {{ model_switcher_settings | k3sllm.platform.switcher_manifests(k3sllm_catalog, code, token) }}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.plugin_utils import switcher_manifests as _switcher


def switcher_manifests(
    settings: Mapping[str, Any], catalog: Sequence[Mapping[str, Any]], code: Mapping[str, str], token: str
) -> list[dict[str, Any]]:
    """The switcher's ConfigMaps, Secret, Deployment, Service, ServiceMonitor and NetworkPolicies, from
    the normalised catalog (``k3sllm_catalog``)."""
    try:
        return _switcher.switcher_manifests(settings, catalog, code, token)
    except _switcher.SwitcherManifestError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"switcher_manifests": switcher_manifests}
