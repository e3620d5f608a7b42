"""The gateway's LiteLLM proxy configuration, worker count and resources, built from the catalog.

Pure Python (no Ansible imports): the ``k3sllm.platform.litellm_*`` filters, the gateway tests and the
gateway benchmark share it, so what they run is what the role renders.

Every catalog model and every alias becomes one ``model_list`` entry that sends the request to the switcher
(``hosted_vllm/<served name>`` at the switcher's ``/v1``); the switcher wakes the model and forwards it to
the engine. The settings that matter for a switching backend:

- no background health checks: they call every model and would wake the sleeping ones;
- timeouts longer than the switcher's queue timeout, so a request that waits for a model switch is
  answered by the switcher (200, or 503 with Retry-After) instead of being cut off by the gateway;
- one retry, not sooner than ``retry_after_seconds``, and no cooldowns: each name has exactly one
  deployment, so a cooldown would turn one slow wake into 429s for every client of that model;
- Anthropic ``/v1/messages`` bridged over chat completions, the route the switcher and vLLM serve;
- the master key and the database URL come from the environment (Kubernetes Secrets), never from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

# One LiteLLM worker (one CPU core) was measured at about 45 requests/s and 800-950 streamed chunks/s
# (FACTS.md). The rule below gives a quarter of the node's cores to the gateway, at least 2 workers
# (one crashing or busy worker never stops the gateway), at most 16: 16 workers carry about 700 requests/s
# and 13,000 chunks/s, above what one GPU streams to clients, and more would only take cores from the
# engines' own API servers and tokenizers.
GATEWAY_CORE_SHARE = 4
GATEWAY_MIN_WORKERS = 2
GATEWAY_MAX_WORKERS = 16
WORKER_REQUESTS_PER_SECOND = 45
WORKER_CHUNKS_PER_SECOND = 800

# Resources per worker (measured RSS of one proxy worker is 250-350 MiB, CPU about 1 core at its limit).
BASE_MEMORY_MIB = 256
WORKER_MEMORY_REQUEST_MIB = 384
WORKER_MEMORY_LIMIT_MIB = 768
WORKER_CPU_REQUEST_MILLI = 500

DEFAULT_SETTINGS: dict[str, Any] = {
    # The switcher's queue timeout: how long a request may wait for its model to be woken.
    "queue_timeout_seconds": 300,
    # Added to the queue timeout: the longest answer a non-streamed request may take once its model is awake.
    "generation_timeout_seconds": 600,
    # Added to the queue timeout: the longest a stream may wait for its first chunk (and between chunks).
    "first_token_timeout_seconds": 120,
    "num_retries": 1,
    "retry_after_seconds": 5,
    # Prometheus scrapes /metrics without a key; only Prometheus' namespace may reach the pod's port.
    "metrics_require_auth": False,
    # Prompts and answers stay out of the spend logs.
    "store_prompts": False,
    # PostgreSQL connections per worker.
    "database_connection_pool_limit": 10,
    "litellm_settings": {},
    "general_settings": {},
    "router_settings": {},
}

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
DATABASE_URL_ENV = "DATABASE_URL"


class LiteLLMConfigError(ValueError):
    """A catalog or setting the gateway cannot serve; the message names the setting."""


def gateway_workers(cpu_cores: int) -> int:
    """LiteLLM workers for a node with ``cpu_cores`` cores (see the rule above GATEWAY_CORE_SHARE)."""
    try:
        cores = int(cpu_cores)
    except (TypeError, ValueError) as exc:
        raise LiteLLMConfigError(
            f"gateway_workers: cpu_cores must be a whole number, not {cpu_cores!r}"
        ) from exc
    if cores < 1:
        raise LiteLLMConfigError(f"gateway_workers: cpu_cores must be at least 1, not {cores}")
    return max(GATEWAY_MIN_WORKERS, min(GATEWAY_MAX_WORKERS, math.ceil(cores / GATEWAY_CORE_SHARE)))


def node_cpu_cores(
    nodes: list[Mapping[str, Any]] | None, gpu_label: str = "nvidia.com/gpu.present"
) -> int | None:
    """Cores of the smallest GPU node (``status.capacity.cpu`` of Kubernetes Node objects), or of the smallest
    node when none carries ``gpu_label``; None when no node reports its cores."""

    def cores(node: Mapping[str, Any]) -> int | None:
        quantity = str(((node.get("status") or {}).get("capacity") or {}).get("cpu") or "")
        if quantity.endswith("m") and quantity[:-1].isdigit():
            return max(1, int(quantity[:-1]) // 1000)
        return int(quantity) if quantity.isdigit() else None

    nodes = list(nodes or [])
    gpu_nodes = [
        n for n in nodes if str(((n.get("metadata") or {}).get("labels") or {}).get(gpu_label)) == "true"
    ]
    counts = [c for c in map(cores, gpu_nodes or nodes) if c]
    return min(counts) if counts else None


def gateway_capacity(workers: int) -> dict[str, int]:
    """What ``workers`` LiteLLM workers carry, from the per-worker measurements."""
    return {
        "requests_per_second": int(workers) * WORKER_REQUESTS_PER_SECOND,
        "chunks_per_second": int(workers) * WORKER_CHUNKS_PER_SECOND,
    }


def gateway_resources(workers: int) -> dict[str, dict[str, str]]:
    """Kubernetes resources for one LiteLLM pod running ``workers`` workers (no CPU limit: throttling a
    proxy adds latency to every token)."""
    count = int(workers)
    if count < 1:
        raise LiteLLMConfigError(f"gateway_resources: workers must be at least 1, not {workers!r}")
    return {
        "requests": {
            "cpu": f"{count * WORKER_CPU_REQUEST_MILLI}m",
            "memory": f"{BASE_MEMORY_MIB + count * WORKER_MEMORY_REQUEST_MIB}Mi",
        },
        "limits": {"memory": f"{BASE_MEMORY_MIB + count * WORKER_MEMORY_LIMIT_MIB}Mi"},
    }


def database_url(
    password: str, host: str, port: int = 5432, user: str = "litellm", database: str = "litellm"
) -> str:
    """PostgreSQL URL for LiteLLM, the password percent-encoded (a vault password may hold ``@`` or ``/``)."""
    if not password:
        raise LiteLLMConfigError("database_url: the PostgreSQL password is empty")
    return f"postgresql://{quote(user, safe='')}:{quote(str(password), safe='')}@{host}:{int(port)}/{quote(database, safe='')}"


def _settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(DEFAULT_SETTINGS)
    unknown = sorted(set(settings or {}) - set(DEFAULT_SETTINGS))
    if unknown:
        raise LiteLLMConfigError(
            f"litellm config: unknown settings {', '.join(unknown)}; known: {', '.join(sorted(DEFAULT_SETTINGS))}"
        )
    merged.update({k: v for k, v in (settings or {}).items() if v is not None})
    for name in ("queue_timeout_seconds", "generation_timeout_seconds", "first_token_timeout_seconds"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise LiteLLMConfigError(
                f"litellm config: {name} must be a positive number of seconds, not {value!r}"
            )
    for name in ("num_retries", "retry_after_seconds", "database_connection_pool_limit"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LiteLLMConfigError(f"litellm config: {name} must be a whole number >= 0, not {value!r}")
    return merged


# Catalog price fields and the LiteLLM model_info keys they become (LiteLLM prices per token).
PRICE_FIELDS = {
    "input_cost_per_million_tokens": "input_cost_per_token",
    "output_cost_per_million_tokens": "output_cost_per_token",
}


def model_prices(model: Mapping[str, Any]) -> dict[str, float]:
    """LiteLLM's per-token prices for a catalog model; without them its spend is 0 and budgets never run out."""
    prices = {}
    for field, key in PRICE_FIELDS.items():
        value = model.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise LiteLLMConfigError(
                f"litellm config: k3sllm_models {model.get('name')!r}: {field} must be a number >= 0, not {value!r}"
            )
        prices[key] = value / 1_000_000
    return prices


def _served_names(models: list[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """(client-facing name, model) for every name and alias, catalog order, each name once."""
    if not isinstance(models, list) or not models:
        raise LiteLLMConfigError(
            "litellm config: k3sllm_models is empty; the gateway needs at least one model"
        )
    names: list[tuple[str, Mapping[str, Any]]] = []
    seen: dict[str, str] = {}
    for model in models:
        if not isinstance(model, Mapping) or not model.get("name"):
            raise LiteLLMConfigError(f"litellm config: a k3sllm_models entry has no name: {model!r:.80}")
        for name in [model["name"], *(model.get("aliases") or [])]:
            if name in seen:
                raise LiteLLMConfigError(
                    f"litellm config: {name!r} names both {seen[name]!r} and {model['name']!r} in k3sllm_models; "
                    "each name or alias must route to one model"
                )
            seen[name] = str(model["name"])
            names.append((str(name), model))
    return names


def build_litellm_config(
    models: list[Mapping[str, Any]], switcher_api_base: str, settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The LiteLLM proxy ``config.yaml`` (as a dict) that routes every model and alias to the switcher."""
    if not str(switcher_api_base or "").startswith(("http://", "https://")):
        raise LiteLLMConfigError(
            f"litellm config: switcher_api_base must be an http(s) URL ending in /v1, not {switcher_api_base!r}"
        )
    api_base = str(switcher_api_base).rstrip("/")
    opts = _settings(settings)
    queue = opts["queue_timeout_seconds"]
    timeout = queue + opts["generation_timeout_seconds"]
    stream_timeout = queue + opts["first_token_timeout_seconds"]

    model_list = []
    for name, model in _served_names(models):
        tools = bool(model.get("tool_call_parser"))
        model_list.append(
            {
                "model_name": name,
                "litellm_params": {
                    # The switcher and vLLM know the model by its catalog name; aliases end there.
                    "model": f"hosted_vllm/{model['name']}",
                    "api_base": api_base,
                    "timeout": timeout,
                    "stream_timeout": stream_timeout,
                    # Retries belong to the router (num_retries, retry_after), not to the HTTP client.
                    "max_retries": 0,
                },
                "model_info": {
                    "id": f"k3sllm-{name}",
                    "k3sllm_model": str(model["name"]),
                    "supports_function_calling": tools,
                    "supports_tool_choice": tools,
                    **model_prices(model),
                    **(
                        {"max_input_tokens": int(model["max_model_len"])}
                        if model.get("max_model_len")
                        else {}
                    ),
                },
            }
        )

    litellm_settings = {
        "callbacks": ["prometheus"],
        "require_auth_for_metrics_endpoint": bool(opts["metrics_require_auth"]),
        # The switcher and vLLM serve chat completions, not /v1/responses (which the Anthropic route
        # would use otherwise: a 404 there cools the model down for everyone).
        "use_chat_completions_url_for_anthropic_messages": True,
        "drop_params": True,
        "request_timeout": max(timeout, stream_timeout),
        "turn_off_message_logging": not opts["store_prompts"],
        "json_logs": True,
        **opts["litellm_settings"],
    }
    general_settings = {
        "master_key": f"os.environ/{MASTER_KEY_ENV}",
        "database_url": f"os.environ/{DATABASE_URL_ENV}",
        "database_connection_pool_limit": opts["database_connection_pool_limit"],
        # Health checks call the models: they would wake every sleeping one, every interval.
        "background_health_checks": False,
        "store_model_in_db": False,
        "store_prompts_in_spend_logs": bool(opts["store_prompts"]),
        **opts["general_settings"],
    }
    router_settings = {
        "num_retries": opts["num_retries"],
        "retry_after": opts["retry_after_seconds"],
        "disable_cooldowns": True,
        **opts["router_settings"],
    }
    if general_settings.get("background_health_checks"):
        raise LiteLLMConfigError(
            "litellm config: background_health_checks would wake every sleeping model; remove it from "
            "litellm_general_settings"
        )
    return {
        "model_list": model_list,
        "litellm_settings": litellm_settings,
        "general_settings": general_settings,
        "router_settings": router_settings,
    }


def config_timeouts(config: Mapping[str, Any]) -> dict[str, float]:
    """The smallest request and stream timeouts of a built config (what the tests hold against the queue)."""
    params = [entry["litellm_params"] for entry in config.get("model_list", [])]
    return {
        "timeout": min(float(p["timeout"]) for p in params),
        "stream_timeout": min(float(p["stream_timeout"]) for p in params),
    }
