"""Filters ``k3sllm.platform.observability_stack_objects`` and ``k3sllm.platform.observability_content_objects``:
the monitoring stack's Kubernetes objects, and the dashboards' and alert rules', from the observability role's
settings; the builders are in plugin_utils/observability_manifests.py.

.. code-block:: yaml

    observability_stack_objects: "{{ observability_stack_settings | k3sllm.platform.observability_stack_objects }}"
    observability_content_objects: "{{ observability_content_settings | k3sllm.platform.observability_content_objects }}"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.plugin_utils import observability_manifests
from ansible_collections.k3sllm.platform.plugins.plugin_utils.charts import ChartManifestError


def observability_stack_objects(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        return observability_manifests.stack_objects(settings)
    except ChartManifestError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def observability_content_objects(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        return observability_manifests.content_objects(settings)
    except ChartManifestError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "observability_stack_objects": observability_stack_objects,
            "observability_content_objects": observability_content_objects,
        }
