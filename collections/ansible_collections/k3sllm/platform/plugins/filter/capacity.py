"""Filter: the catalog's capacity plan (``k3sllm.platform.capacity_plan``).

The logic lives in plugin_utils (capacity.py, catalog.py); the VRAM rule it applies is module_utils/vram.py,
the file the switcher also runs.

.. code-block:: yaml

    k3sllm_capacity: >-
      {{ k3sllm_models | k3sllm.platform.capacity_plan(
           gpus=k3sllm_gpu.gpus, host_ram_mib=ansible_facts.memtotal_mb,
           disk_free_bytes=weights_space.size_available_bytes,
           weight_bytes=weights_info.weight_bytes, present_bytes=weights_info.present_bytes,
           sleep_level=k3sllm_sleep_level, sleeping_vram_gib=k3sllm_sleeping_vram_gib,
           host_ram_reserve_gib=k3sllm_host_ram_reserve_gib) }}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.plugin_utils.capacity import (
    capacity_plan as _capacity_plan,
)
from ansible_collections.k3sllm.platform.plugins.plugin_utils.capacity import (
    gpu_memory_mib_from_facts,
)


def _number(value: Any, what: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"capacity_plan: {what} must be a number, not {value!r}") from exc


def capacity_plan(
    models: list[Mapping[str, Any]],
    gpus: list[Mapping[str, Any]] | None = None,
    gpu_memory_mib: float | None = None,
    host_ram_mib: float | None = None,
    disk_free_bytes: int | None = None,
    weight_bytes: Mapping[str, int] | None = None,
    present_bytes: Mapping[str, int] | None = None,
    sleep_level: int = 1,
    sleeping_vram_gib: float = 1.0,
    host_ram_reserve_gib: float = 16.0,
) -> dict[str, Any]:
    """Plan for ``models``; GPU memory from ``gpus`` (nvidia_gpu_facts) unless ``gpu_memory_mib`` is given."""
    if not isinstance(models, list):
        raise AnsibleFilterError(f"capacity_plan expects the k3sllm_models list, got {type(models).__name__}")
    memory = _number(gpu_memory_mib, "gpu_memory_mib")
    if memory is None:
        memory = gpu_memory_mib_from_facts(gpus)
    free = _number(disk_free_bytes, "disk_free_bytes")
    return _capacity_plan(
        models,
        gpu_memory_mib=memory,
        host_ram_mib=_number(host_ram_mib, "host_ram_mib"),
        disk_free_bytes=int(free) if free is not None else None,
        weight_bytes={str(k): int(v) for k, v in (weight_bytes or {}).items()},
        present_bytes={str(k): int(v) for k, v in (present_bytes or {}).items()},
        sleep_level=int(sleep_level),
        sleeping_vram_gib=float(sleeping_vram_gib),
        host_ram_reserve_gib=float(host_ram_reserve_gib),
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"capacity_plan": capacity_plan}
