"""Filters ``k3sllm.platform.observability_stack_objects`` and ``k3sllm.platform.observability_content_objects``:
the monitoring stack's Kubernetes objects, and the dashboards' and alert rules', from the observability role's
settings; the builders are in plugin_utils/observability_manifests.py.

.. code-block:: yaml

    observability_stack_objects: "{{ observability_stack_settings | k3sllm.platform.observability_stack_objects }}"
    observability_content_objects: "{{ observability_content_settings | k3sllm.platform.observability_content_objects }}"
"""

from __future__ import annotations

from typing import Any

from ansible_collections.k3sllm.platform.plugins.plugin_utils import observability_manifests
from ansible_collections.k3sllm.platform.plugins.plugin_utils.charts import as_filter


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "observability_stack_objects": as_filter(observability_manifests.stack_objects),
            "observability_content_objects": as_filter(observability_manifests.content_objects),
        }
