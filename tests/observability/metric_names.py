"""Metric names each component really exports, for checking our dashboards and alert rules.

Each list names its source. Counters and histograms are listed by their base name with their type;
`exported()` expands them the way the Prometheus client libraries expose them: a counter `x` as
`x_total` (and `x_created`), a histogram `x` as `x_bucket`, `x_sum`, `x_count` (and `x_created`).
When a component's version pin changes, re-check its list against the source named here.
"""

from __future__ import annotations

GAUGE = "gauge"
COUNTER = "counter"
HISTOGRAM = "histogram"

# NVIDIA DCGM exporter, the counters enabled in etc/default-counters.csv (the same set as
# etc/dcp-metrics-included.csv, which the GPU Operator mounts by default), NVIDIA/dcgm-exporter
# main as of 2026-05. DCGM exposes every field under its field name, counters included (no _total).
DCGM: dict[str, str] = {
    "DCGM_FI_DEV_SM_CLOCK": GAUGE,
    "DCGM_FI_DEV_MEM_CLOCK": GAUGE,
    "DCGM_FI_DEV_MEMORY_TEMP": GAUGE,
    "DCGM_FI_DEV_GPU_TEMP": GAUGE,
    "DCGM_FI_DEV_POWER_USAGE": GAUGE,
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": GAUGE,  # a counter in mJ, exposed under its field name
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": GAUGE,  # likewise
    "DCGM_FI_DEV_GPU_UTIL": GAUGE,
    "DCGM_FI_DEV_MEM_COPY_UTIL": GAUGE,
    "DCGM_FI_DEV_ENC_UTIL": GAUGE,
    "DCGM_FI_DEV_DEC_UTIL": GAUGE,
    "DCGM_FI_DEV_XID_ERRORS": GAUGE,
    "DCGM_FI_DEV_FB_FREE": GAUGE,
    "DCGM_FI_DEV_FB_USED": GAUGE,
    "DCGM_FI_DEV_FB_RESERVED": GAUGE,
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": GAUGE,
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS": GAUGE,
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": GAUGE,
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": GAUGE,
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": GAUGE,
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": GAUGE,
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": GAUGE,
    "DCGM_FI_PROF_DRAM_ACTIVE": GAUGE,
    "DCGM_FI_PROF_PCIE_TX_BYTES": GAUGE,
    "DCGM_FI_PROF_PCIE_RX_BYTES": GAUGE,
}

# vLLM V1 engine, vllm/v1/metrics/loggers.py (PrometheusStatLogger) of the 0.1x-0.3x series; the
# image is pinned at k3sllm_vllm_image (v0.32.0). Labels: model_name, engine; sleep state adds
# sleep_state (awake | weights_offloaded | discard_all), request_success adds finished_reason.
# Deprecated names removed upstream (vllm:gpu_cache_usage_perc, vllm:time_per_output_token_seconds,
# vllm:gpu_prefix_cache_*) are deliberately absent. Metrics that need extra flags (LoRA, KV cache
# residency, speculative decoding, KV connectors) are left out.
VLLM: dict[str, str] = {
    "vllm:num_requests_running": GAUGE,
    "vllm:num_requests_waiting": GAUGE,
    "vllm:engine_sleep_state": GAUGE,
    "vllm:kv_cache_usage_perc": GAUGE,
    "vllm:cache_config_info": GAUGE,
    "vllm:prefix_cache_queries": COUNTER,
    "vllm:prefix_cache_hits": COUNTER,
    "vllm:external_prefix_cache_queries": COUNTER,
    "vllm:external_prefix_cache_hits": COUNTER,
    "vllm:mm_cache_queries": COUNTER,
    "vllm:mm_cache_hits": COUNTER,
    "vllm:num_preemptions": COUNTER,
    "vllm:prompt_tokens": COUNTER,
    "vllm:prompt_tokens_by_source": COUNTER,
    "vllm:prompt_tokens_cached": COUNTER,
    "vllm:prompt_tokens_recomputed": COUNTER,
    "vllm:generation_tokens": COUNTER,
    "vllm:request_success": COUNTER,
    "vllm:request_prompt_tokens": HISTOGRAM,
    "vllm:request_generation_tokens": HISTOGRAM,
    "vllm:iteration_tokens_total": HISTOGRAM,
    "vllm:request_max_num_generation_tokens": HISTOGRAM,
    "vllm:request_params_n": HISTOGRAM,
    "vllm:request_params_max_tokens": HISTOGRAM,
    "vllm:time_to_first_token_seconds": HISTOGRAM,
    "vllm:inter_token_latency_seconds": HISTOGRAM,
    "vllm:request_time_per_output_token_seconds": HISTOGRAM,
    "vllm:e2e_request_latency_seconds": HISTOGRAM,
    "vllm:request_queue_time_seconds": HISTOGRAM,
    "vllm:request_inference_time_seconds": HISTOGRAM,
    "vllm:request_prefill_time_seconds": HISTOGRAM,
    "vllm:request_decode_time_seconds": HISTOGRAM,
    "vllm:request_prefill_kv_computed_tokens": HISTOGRAM,
}

# LiteLLM proxy, `callbacks: [prometheus]`: litellm/integrations/prometheus.py and the label lists
# in litellm/types/integrations/prometheus.py of the PyPI release 1.109.1. The proxy-level ones we
# chart: litellm_proxy_total_requests_metric (labels requested_model, status_code, route, ...),
# litellm_proxy_failed_requests_metric (exception_status, exception_class, ...),
# litellm_request_total_latency_metric (model_group, model, requested_model, ...),
# litellm_spend_metric (model, hashed_api_key, api_key_alias, team, ...).
LITELLM: dict[str, str] = {
    "litellm_proxy_total_requests_metric": COUNTER,
    "litellm_proxy_failed_requests_metric": COUNTER,
    "litellm_request_total_latency_metric": HISTOGRAM,
    "litellm_llm_api_latency_metric": HISTOGRAM,
    "litellm_llm_api_time_to_first_token_metric": HISTOGRAM,
    "litellm_overhead_latency_metric": HISTOGRAM,
    "litellm_request_queue_time_seconds": HISTOGRAM,
    "litellm_deployment_latency_per_output_token": HISTOGRAM,
    "litellm_spend_metric": COUNTER,
    "litellm_total_tokens_metric": COUNTER,
    "litellm_input_tokens_metric": COUNTER,
    "litellm_output_tokens_metric": COUNTER,
    "litellm_requests_metric": COUNTER,
    "litellm_llm_api_failed_requests_metric": COUNTER,
    "litellm_deployment_success_responses": COUNTER,
    "litellm_deployment_failure_responses": COUNTER,
    "litellm_deployment_total_requests": COUNTER,
    "litellm_deployment_cooled_down": COUNTER,
    "litellm_deployment_successful_fallbacks": COUNTER,
    "litellm_deployment_failed_fallbacks": COUNTER,
    "litellm_deployment_state": GAUGE,
    "litellm_remaining_team_budget_metric": GAUGE,
    "litellm_remaining_api_key_budget_metric": GAUGE,
    "litellm_remaining_requests_metric": GAUGE,
    "litellm_remaining_tokens_metric": GAUGE,
    "litellm_cache_hits_metric": COUNTER,
    "litellm_cache_misses_metric": COUNTER,
    "litellm_callback_logging_failures_metric": COUNTER,
}

# Our switcher (switcher/): names fixed by its design. Labels in comments.
SWITCHER: dict[str, str] = {
    "k3sllm_switcher_model_state": GAUGE,  # model, state (cold|starting|awake|sleeping|failed)
    "k3sllm_switcher_switches": COUNTER,  # model, outcome (success|failed)
    "k3sllm_switcher_switch_duration_seconds": HISTOGRAM,  # phase (drain|sleep|wake|total)
    "k3sllm_switcher_queue_depth": GAUGE,  # model
    "k3sllm_switcher_queue_wait_seconds": HISTOGRAM,  # model
    "k3sllm_switcher_requests": COUNTER,  # model, code
    "k3sllm_switcher_drain_timeouts": COUNTER,  # model
    "k3sllm_switcher_queue_rejected": COUNTER,  # model
}

# Prometheus itself (kube-prometheus-stack), per scrape target: job, namespace, pod, instance, ...
PROMETHEUS: dict[str, str] = {
    "up": GAUGE,
    "scrape_duration_seconds": GAUGE,
    "scrape_samples_scraped": GAUGE,
}


def exported(metrics: dict[str, str]) -> frozenset[str]:
    """The series names a client library exposes for these metric families."""
    names: set[str] = set()
    for name, kind in metrics.items():
        if kind == GAUGE:
            names.add(name)
        elif kind == COUNTER:
            base = name.removesuffix("_total")
            names.update({f"{base}_total", f"{base}_created"})
        elif kind == HISTOGRAM:
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"})
        else:  # pragma: no cover - a typo in the tables above
            raise ValueError(f"{name}: unknown metric type {kind!r}")
    return frozenset(names)


COMPONENTS: dict[str, frozenset[str]] = {
    "dcgm": exported(DCGM),
    "vllm": exported(VLLM),
    "litellm": exported(LITELLM),
    "switcher": exported(SWITCHER),
    "prometheus": exported(PROMETHEUS),
}
