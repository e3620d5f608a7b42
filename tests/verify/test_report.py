"""Unit tests of the verify script's statistics, metric deltas and report writer."""

from __future__ import annotations

import json
import re

import pytest
from verify.stack import load_script

from switcher.metrics import Metrics

v = load_script()


def test_percentile_interpolates_between_ranks() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # unsorted on purpose
    assert v.percentile(values, 0) == 1.0
    assert v.percentile(values, 50) == 3.0
    assert v.percentile(values, 100) == 5.0
    # rank (5-1) * 0.95 = 3.8: 4 + 0.8 * (5 - 4)
    assert v.percentile(values, 95) == pytest.approx(4.8)
    assert v.percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    assert v.percentile([7.0], 95) == 7.0
    assert v.percentile([], 50) is None
    with pytest.raises(ValueError, match="within 0 and 100"):
        v.percentile(values, 101)


def _request(ttft: float, itls: list[float], tokens: int) -> object:
    return v.RequestResult(ok=True, status=200, ttft=ttft, itls=itls, output_tokens=tokens, duration=1.0)


def test_level_summary_counts_only_successful_requests() -> None:
    results = [
        _request(0.1, [0.01, 0.03], 10),
        _request(0.3, [0.02], 20),
        v.RequestResult(ok=False, status=503, error="HTTP 503: queue_full"),
        v.RequestResult(ok=False, status=503, error="HTTP 503: queue_full"),
        v.RequestResult(ok=False, error="ReadTimeout: timed out"),
    ]
    level = v.summarize_level("m", 8, results, wall=2.0)
    assert (level.requests, level.ok, level.failed) == (5, 2, 3)
    assert level.ttft_p50 == pytest.approx(0.2)
    assert level.ttft_p95 == pytest.approx(0.1 + 0.95 * 0.2)
    assert level.itl_p50 == pytest.approx(0.02)  # over every gap of every request
    assert level.output_tokens == 30
    assert level.output_tokens_per_second == pytest.approx(15.0)
    assert level.errors == ["HTTP 503: queue_full", "ReadTimeout: timed out"]


def test_level_summary_of_failures_only() -> None:
    level = v.summarize_level("m", 1, [v.RequestResult(ok=False, status=401)], wall=0.0)
    assert (level.ok, level.ttft_p50, level.itl_p95, level.output_tokens_per_second) == (0, None, None, 0.0)
    assert level.errors == ["HTTP 401"]


def _switcher_metrics(observations: dict[str, list[float]]) -> str:
    """The text the real switcher's /metrics serves after these phase durations."""
    metrics = Metrics()
    metrics.add_model("a", "awake")
    for phase, durations in observations.items():
        for seconds in durations:
            metrics.switch_duration.labels(phase=phase).observe(seconds)
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_switch_phase_deltas_from_the_switchers_metrics() -> None:
    before = v.switch_phase_totals(_switcher_metrics({"sleep": [2.0], "wake": [3.0], "total": [5.5]}))
    after = v.switch_phase_totals(
        _switcher_metrics({"sleep": [2.0, 0.4, 0.6], "wake": [3.0, 1.25], "total": [5.5, 2.5]})
    )
    deltas = v.phase_deltas(before, after)
    assert deltas["sleep"] == {"seconds": pytest.approx(1.0), "count": 2}  # two models made room
    assert deltas["wake"] == {"seconds": pytest.approx(1.25), "count": 1}
    assert deltas["total"] == {"seconds": pytest.approx(2.5), "count": 1}
    assert deltas["drain"] == {"seconds": 0.0, "count": 0}


def test_metrics_without_the_switch_histogram_are_refused() -> None:
    with pytest.raises(v.VerifyError, match="is this URL the k3sllm switcher"):
        v.switch_phase_totals("# HELP up up\n# TYPE up gauge\nup 1\n")


def _report(**overrides) -> dict:
    report = {
        "gateway_url": "https://llm.example.com",
        "started_at": "2026-12-01T20:15:07Z",
        "verdict": "CHECKS FAILED",
        "models": ["a", "b"],
        "settings": {
            "concurrency": [1, 8],
            "requests_per_level": 32,
            "max_tokens": 64,
            "bench_models": ["a"],
        },
        "checks": [
            {"name": "GET /v1/models", "ok": True, "detail": "4 models and aliases listed"},
            {"name": "no alert firing", "ok": False, "detail": "firing: A|B"},
        ],
        "benchmark": [
            v.asdict(v.summarize_level("a", 8, [_request(0.25, [0.02, 0.04], 3)], wall=0.5)),
        ],
        "switches": [
            {
                "from": "a",
                "to": "b",
                "ok": True,
                "error": None,
                "sleep_seconds": 1.234,
                "wake_seconds": 2.5,
                "switch_seconds": 3.9,
                "first_token_after_wake_seconds": 4.25,
                "co_resident": False,
            },
            {
                "from": "b",
                "to": "a",
                "ok": True,
                "error": None,
                "sleep_seconds": None,
                "wake_seconds": 0.5,
                "switch_seconds": 0.6,
                "first_token_after_wake_seconds": 0.75,
                "co_resident": True,
            },
        ],
    }
    report.update(overrides)
    return report


def test_markdown_tables() -> None:
    text = v.render_markdown(_report())
    lines = text.splitlines()
    assert lines[0] == "# k3sllm verify: https://llm.example.com"
    assert "2026-12-01T20:15:07Z UTC, CHECKS FAILED" in lines
    assert "| no alert firing | FAIL | firing: A\\|B |" in lines  # a | in a detail does not break the table
    assert "| a | 8 | 1 | 0 | 250 ms | 250 ms | 30 ms | 39 ms | 6.0 |" in lines
    assert "| a | b | 1.23 s | 2.50 s | 3.90 s | 4.25 s |  |" in lines
    assert "| b | a | - | 0.50 s | 0.60 s | 0.75 s | co-resident: no sleep needed |" in lines
    # Every row of every table has its header's number of cells (an escaped | is not a cell border).
    tables: list[list[str]] = []
    for previous, line in zip(["", *lines], lines, strict=False):
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
    assert len(tables) == 3
    for table in tables:
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table}
        assert len(widths) == 1, table


def test_markdown_without_benchmark_has_only_checks() -> None:
    text = v.render_markdown(_report(benchmark=[], switches=[]))
    assert "## Checks" in text
    assert "## Benchmark" not in text
    assert "## Model switches" not in text


def test_write_report(tmp_path) -> None:
    report = _report()
    json_path, md_path = v.write_report(report, tmp_path / "reports" / "gpu1")
    assert json_path.name == "verify-20261201T201507Z.json"
    assert md_path.name == "verify-20261201T201507Z.md"
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(report))
    assert md_path.read_text() == v.render_markdown(report)
