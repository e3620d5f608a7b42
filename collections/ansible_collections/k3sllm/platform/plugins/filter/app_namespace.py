"""Filter for roles/app_namespace: the platform namespace and its network baseline, built as data.

The builders live in plugin_utils/namespace_manifests.py.

.. code-block:: yaml

    app_namespace_objects: "{{ {'namespace': 'k3sllm', ...} | k3sllm.platform.app_namespace_manifests }}"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.plugin_utils import namespace_manifests as _namespace


def app_namespace_manifests(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Namespace, default-deny ingress and egress NetworkPolicies, and the DNS allowance."""
    try:
        return _namespace.app_namespace_manifests(settings)
    except _namespace.NamespaceManifestError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"app_namespace_manifests": app_namespace_manifests}
