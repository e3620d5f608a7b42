"""The metric-name extractor the dashboard and alert tests rely on: it must find names, not noise."""

from __future__ import annotations

import pytest
from observability.promql import grafana_variable_metric_names, metric_names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", {"up"}),
        ('up{job="x", namespace=~"k3sllm.*"} == 0', {"up"}),
        ("vllm:kv_cache_usage_perc > 0.9", {"vllm:kv_cache_usage_perc"}),
        (
            "histogram_quantile(0.95, sum by (namespace, model_name, le) "
            "(rate(vllm:time_to_first_token_seconds_bucket[5m])))",
            {"vllm:time_to_first_token_seconds_bucket"},
        ),
        (
            'sum without (le) (rate(a_bucket{le="+Inf"}[$__rate_interval])) / ignoring(code) '
            "group_left(model) b_total offset 1h",
            {"a_bucket", "b_total"},
        ),
        ("sum(rate(x_total[5m])) by (model)", {"x_total"}),
        ("max_over_time(foo[1h:5m]) and on (gpu) bar unless baz @ 1609746000", {"foo", "bar", "baz"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ('count_values("version", build_info) or vector(0)', {"build_info"}),
        ("topk(5, sum by (model) (increase(requests_total[1d])))", {"requests_total"}),
        ("1e3 * x + 0x1F - Inf + NaN", {"x"}),
        (
            'sum(rate(http_requests_total{code=~"5.."}[${__range}]))  # trailing comment',
            {"http_requests_total"},
        ),
        (
            "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
            {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"},
        ),
        ("absent(k3sllm_switcher_model_state)", {"k3sllm_switcher_model_state"}),
        ("min by(le) (y)", {"y"}),
        ('time() - process_start_time_seconds{job="$job"}', {"process_start_time_seconds"}),
    ],
)
def test_metric_names(expr, expected):
    assert metric_names(expr) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("label_values(vllm:num_requests_running, model_name)", {"vllm:num_requests_running"}),
        ('label_values(DCGM_FI_DEV_GPU_TEMP{Hostname=~"$host", a="x,y"}, gpu)', {"DCGM_FI_DEV_GPU_TEMP"}),
        ("label_values(namespace)", set()),
        ("query_result(topk(3, sum by (model) (rate(x_total[1h]))))", {"x_total"}),
    ],
)
def test_grafana_variable_metric_names(query, expected):
    assert grafana_variable_metric_names(query) == expected
