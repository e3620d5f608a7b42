"""Filter ``k3sllm.platform.gpu_operator_objects``: the GPU Operator's Kubernetes objects from the
gpu_operator role's settings; the builders are in plugin_utils/gpu_operator_manifests.py.

.. code-block:: yaml

    gpu_operator_objects: "{{ gpu_operator_settings | k3sllm.platform.gpu_operator_objects }}"
"""

from __future__ import annotations

from typing import Any

from ansible_collections.k3sllm.platform.plugins.plugin_utils import gpu_operator_manifests
from ansible_collections.k3sllm.platform.plugins.plugin_utils.charts import as_filter


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gpu_operator_objects": as_filter(gpu_operator_manifests.gpu_operator_objects)}
