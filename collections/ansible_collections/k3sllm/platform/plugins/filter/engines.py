"""Filter ``k3sllm.platform.vllm_engine_objects``: the vLLM engines' Kubernetes objects from the normalised
catalog (``k3sllm_catalog``) and the vllm role's settings; the builders are in plugin_utils/engines.py.

.. code-block:: yaml

    vllm_objects: "{{ k3sllm_catalog | k3sllm.platform.vllm_engine_objects(vllm_engine_settings) }}"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.plugin_utils.engines import (
    EngineManifestError,
    engine_objects,
)


def vllm_engine_objects(
    catalog: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError(
            f"vllm_engine_objects: settings must be a mapping, not {type(settings).__name__}"
        )
    try:
        return engine_objects(catalog, settings)
    except EngineManifestError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"vllm_engine_objects": vllm_engine_objects}
