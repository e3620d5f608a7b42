"""Filters over the model catalog; the logic is in plugin_utils/catalog.py.

- ``catalog_normalise``: validate ``k3sllm_models`` once and return one complete record per model (defaults
  applied; engine args, Service name, URL and port; the switcher's entry; capacity figures).
- ``catalog_switcher_models``: the switcher config's ``models`` list from the normalised catalog.
- ``catalog_unpinned``: entries whose revision is a branch or tag instead of a commit sha.

.. code-block:: yaml

    k3sllm_catalog: >-
      {{ k3sllm_models | k3sllm.platform.catalog_normalise(
           namespace=k3sllm_namespace, engine_port=k3sllm_engine_port,
           switcher_service=k3sllm_switcher_service, switcher_port=k3sllm_switcher_port,
           weights_dir=k3sllm_weights_dir) }}
    models: "{{ k3sllm_catalog | k3sllm.platform.catalog_switcher_models(plan_vram=true) }}"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.plugin_utils.catalog import (
    CatalogError,
    normalise_catalog,
    switcher_models,
    unpinned_models,
)


def _whole(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"catalog_normalise: {what} must be a port number, not {value!r}") from exc


def catalog_normalise(
    models: Sequence[Mapping[str, Any]],
    namespace: str,
    engine_port: int,
    switcher_service: str,
    switcher_port: int,
    weights_dir: str,
) -> list[dict[str, Any]]:
    """One record per catalog model; fails with the model, the field and the fix on a bad catalog."""
    try:
        return normalise_catalog(
            models,
            namespace=str(namespace),
            engine_port=_whole(engine_port, "engine_port (k3sllm_engine_port)"),
            switcher_service=str(switcher_service),
            switcher_port=_whole(switcher_port, "switcher_port (k3sllm_switcher_port)"),
            weights_dir=str(weights_dir),
        )
    except CatalogError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def catalog_switcher_models(
    catalog: Sequence[Mapping[str, Any]], plan_vram: bool = False
) -> list[dict[str, Any]]:
    return switcher_models(catalog, plan_vram=bool(plan_vram))


def catalog_unpinned(models: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return unpinned_models(models)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "catalog_normalise": catalog_normalise,
            "catalog_switcher_models": catalog_switcher_models,
            "catalog_unpinned": catalog_unpinned,
        }
