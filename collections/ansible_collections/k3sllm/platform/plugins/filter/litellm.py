"""Filters for the gateway (roles/litellm): LiteLLM's config, worker count, resources and database URL.

The logic lives in module_utils/litellm_config.py so the gateway tests and the benchmark use the same code.

.. code-block:: yaml

    litellm_workers: "{{ ansible_processor_vcpus | k3sllm.platform.litellm_workers }}"
    litellm_config: >-
      {{ k3sllm_models | k3sllm.platform.litellm_config(
           'http://switcher.k3sllm.svc:8080/v1', {'queue_timeout_seconds': 300}) }}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.module_utils import litellm_config as _gateway

_T = TypeVar("_T")


def _wrap(func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    try:
        return func(*args, **kwargs)
    except _gateway.LiteLLMConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def litellm_config(
    models: list[Mapping[str, Any]], switcher_api_base: str, settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """LiteLLM's config.yaml (a dict) routing every catalog model and alias to the switcher."""
    return _wrap(_gateway.build_litellm_config, models, switcher_api_base, settings)


def litellm_workers(cpu_cores: int) -> int:
    """LiteLLM workers for a node with this many cores."""
    return _wrap(_gateway.gateway_workers, cpu_cores)


def litellm_node_cores(nodes: list[Mapping[str, Any]], fallback: Any = None) -> int:
    """Cores of the smallest GPU node among Kubernetes Node objects; ``fallback`` (a number or a list of
    numbers, e.g. fact values) when no node reports its cores; 1 when neither is known."""
    cores = _wrap(_gateway.node_cpu_cores, nodes)
    if cores:
        return cores
    known = [
        int(v) for v in (fallback if isinstance(fallback, list) else [fallback]) if v not in (None, "", 0)
    ]
    return min(known) if known else 1


def litellm_resources(workers: int) -> dict[str, dict[str, str]]:
    """Requests and limits of one LiteLLM pod with this many workers."""
    return _wrap(_gateway.gateway_resources, workers)


def litellm_database_url(
    password: str, host: str, port: int = 5432, user: str = "litellm", database: str = "litellm"
) -> str:
    """postgresql:// URL with the password percent-encoded."""
    return _wrap(_gateway.database_url, password, host, port, user, database)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "litellm_config": litellm_config,
            "litellm_workers": litellm_workers,
            "litellm_resources": litellm_resources,
            "litellm_node_cores": litellm_node_cores,
            "litellm_database_url": litellm_database_url,
        }
