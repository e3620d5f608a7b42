"""Grafana dashboards in files/dashboards: well-formed, loadable by the sidecar, every panel queries
Prometheus through the ${datasource} variable, and every metric a query names is one the component
really exports (tests/observability/metric_names.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from observability.metric_names import COMPONENTS
from observability.promql import grafana_variable_metric_names, metric_names

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "files" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))

# The component whose metrics each dashboard charts (Prometheus' own `up` is allowed everywhere).
DASHBOARD_COMPONENTS = {
    "gpu.json": {"dcgm"},
    "vllm.json": {"vllm"},
    "switcher.json": {"switcher"},
    "gateway.json": {"litellm"},
}
# What each dashboard must show (issue 4): at least these series are queried.
REQUIRED_METRICS = {
    "gpu.json": {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_XID_ERRORS",
    },
    "vllm.json": {
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:num_preemptions_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:engine_sleep_state",
    },
    "switcher.json": {
        "k3sllm_switcher_model_state",
        "k3sllm_switcher_switches_total",
        "k3sllm_switcher_switch_duration_seconds_bucket",
        "k3sllm_switcher_queue_depth",
        "k3sllm_switcher_queue_wait_seconds_bucket",
        "k3sllm_switcher_requests_total",
    },
    "gateway.json": {
        "litellm_proxy_total_requests_metric_total",
        "litellm_proxy_failed_requests_metric_total",
        "litellm_request_total_latency_metric_bucket",
        "litellm_spend_metric_total",
    },
}
DATASOURCE_UID = "${datasource}"
# Grafana's built-in variables that need no definition.
_VARIABLE_USE = re.compile(r"\$\{?(\w+)")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _panels(panels: list[dict]):
    """Every panel, the ones inside (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries(board: dict):
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            yield panel, target.get("expr", "")


def _variables(board: dict) -> list[dict]:
    return board.get("templating", {}).get("list", [])


def _variable_query(variable: dict) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def test_dashboards_exist():
    assert {p.name for p in DASHBOARDS} >= set(DASHBOARD_COMPONENTS), (
        "a dashboard named in issue 4 is missing"
    )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path):
    board = _load(path)  # raises on invalid JSON
    assert isinstance(board.get("uid"), str) and re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", board["uid"]), "uid"
    assert board.get("title"), "title"
    assert 36 <= board.get("schemaVersion", 0) <= 41, "schemaVersion"
    assert board.get("id") is None, "a provisioned dashboard must not carry a database id"
    ids = [p.get("id") for p in _panels(board["panels"])]
    assert all(isinstance(i, int) for i in ids), f"panel without an integer id in {path.name}"
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate panel ids {duplicates}"
    for panel in _panels(board["panels"]):
        assert {"h", "w", "x", "y"} <= set(panel.get("gridPos", {})), f"panel {panel['id']} has no gridPos"


def test_dashboard_uids_and_titles_are_unique():
    boards = [_load(p) for p in DASHBOARDS]
    uids = [b["uid"] for b in boards]
    titles = [b["title"] for b in boards]
    assert len(set(uids)) == len(uids), f"duplicate uids {uids}"
    assert len(set(titles)) == len(titles), f"duplicate titles {titles}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_datasource_is_a_prometheus_variable(path):
    board = _load(path)
    variables = {v["name"]: v for v in _variables(board)}
    datasource = variables.get("datasource")
    assert datasource and datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    problems = []
    for panel in _panels(board["panels"]):
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"panel {panel['id']} {panel.get('title')!r}: datasource is not {DATASOURCE_UID}")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid", DATASOURCE_UID) != DATASOURCE_UID:
                problems.append(f"panel {panel['id']} target {target.get('refId')}: datasource")
    for variable in variables.values():
        if variable["type"] == "query" and variable.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"variable {variable['name']}: datasource is not {DATASOURCE_UID}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_a_query(path):
    problems = []
    for panel in _panels(_load(path)["panels"]):
        if panel.get("type") in ("row", "text"):
            continue
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"panel {panel['id']} {panel.get('title')!r} has no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            problems.append(f"panel {panel['id']}: refIds {refs} not unique")
        for target in targets:
            if not str(target.get("expr", "")).strip():
                problems.append(
                    f"panel {panel['id']} {panel.get('title')!r} target {target.get('refId')}: empty expr"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_template_variables_used_are_defined(path):
    board = _load(path)
    defined = {v["name"] for v in _variables(board)}
    used: set[str] = set()
    for _panel, expr in _queries(board):
        used |= {name for name in _VARIABLE_USE.findall(expr) if not name.startswith("__")}
    for variable in _variables(board):
        used |= {n for n in _VARIABLE_USE.findall(_variable_query(variable)) if not n.startswith("__")}
    assert used <= defined, f"undefined template variables {sorted(used - defined)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_queried_metrics_are_exported(path):
    assert path.name in DASHBOARD_COMPONENTS, f"add {path.name} to DASHBOARD_COMPONENTS"
    components = DASHBOARD_COMPONENTS[path.name]
    allowed = set(COMPONENTS["prometheus"]).union(*(COMPONENTS[c] for c in components))
    board = _load(path)
    problems = []
    for panel, expr in _queries(board):
        found = metric_names(expr)
        if not found:
            problems.append(f"panel {panel['id']} {panel.get('title')!r}: no metric in {expr!r}")
        for name in sorted(found - allowed):
            problems.append(
                f"panel {panel['id']} {panel.get('title')!r}: {name} is not exported by {sorted(components)}"
            )
    for variable in _variables(board):
        if variable["type"] != "query":
            continue
        for name in sorted(grafana_variable_metric_names(_variable_query(variable)) - allowed):
            problems.append(f"variable {variable['name']}: {name} is not exported by {sorted(components)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_shows_what_issue_4_asks(path):
    used: set[str] = set()
    for _panel, expr in _queries(_load(path)):
        used |= metric_names(expr)
    missing = REQUIRED_METRICS.get(path.name, set()) - used
    assert not missing, f"{path.name} charts none of {sorted(missing)}"
