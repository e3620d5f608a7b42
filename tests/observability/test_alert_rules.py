"""Alert rules in files/alerts: promtool check and unit tests, coverage of every alert, metadata,
metric names the components really export, and a mutation check that the unit tests can fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from observability.metric_names import COMPONENTS
from observability.promql import metric_names

REPO = Path(__file__).resolve().parents[2]
ALERTS_DIR = REPO / "files" / "alerts"
RULE_TESTS_DIR = Path(__file__).resolve().parent / "rules"
RULE_FILES = sorted(ALERTS_DIR.glob("*.yml"))
TEST_FILES = sorted(RULE_TESTS_DIR.glob("*.test.yml"))

# Which components' metrics each rule file may use (Prometheus' own `up` is allowed everywhere).
RULE_FILE_COMPONENTS = {
    "gpu.yml": {"dcgm"},
    "vllm.yml": {"vllm"},
    "switcher.yml": {"switcher"},
    "targets.yml": set(),
    "gateway.yml": {"litellm"},
}
SEVERITIES = {"info", "warning", "critical"}
# An expression that never returns anything, put in place of an alert's to see its tests fail.
NEVER = "vector(0) > 1"


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _alerts(path: Path) -> list[dict]:
    return [rule for group in _load(path)["groups"] for rule in group["rules"] if "alert" in rule]


def _run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _tested_rule_files(test_file: Path) -> set[Path]:
    return {(test_file.parent / name).resolve() for name in _load(test_file).get("rule_files", [])}


def test_artefacts_exist():
    assert RULE_FILES, f"no alert rule files in {ALERTS_DIR}"
    assert TEST_FILES, f"no promtool test files in {RULE_TESTS_DIR}"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(promtool, rule_file):
    result = _run(promtool, "check", "rules", str(rule_file), cwd=REPO)
    assert result.returncode == 0, f"promtool check rules {rule_file.name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(promtool, test_file):
    result = _run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, f"promtool test rules {test_file.name}:\n{result.stdout}{result.stderr}"


def test_every_rule_file_is_unit_tested():
    tested = set().union(*(_tested_rule_files(t) for t in TEST_FILES))
    untested = [p.name for p in RULE_FILES if p.resolve() not in tested]
    assert not untested, f"rule files no promtool test file loads: {untested}"


def test_every_alert_has_firing_and_silent_cases():
    """Each alert is expected to fire in some test case and to stay silent in another."""
    firing: dict[str, int] = {}
    silent: dict[str, int] = {}
    for test_file in TEST_FILES:
        for case in _load(test_file).get("tests", []):
            for check in case.get("alert_rule_test", []):
                bucket = firing if check.get("exp_alerts") else silent
                bucket[check["alertname"]] = bucket.get(check["alertname"], 0) + 1
    problems = []
    for rule_file in RULE_FILES:
        for alert in _alerts(rule_file):
            name = alert["alert"]
            if not firing.get(name):
                problems.append(f"{rule_file.name}: {name} has no test case where it fires")
            if not silent.get(name):
                problems.append(f"{rule_file.name}: {name} has no test case where it stays silent")
    defined = {a["alert"] for p in RULE_FILES for a in _alerts(p)}
    unknown = sorted((set(firing) | set(silent)) - defined)
    if unknown:
        problems.append(f"test cases for alerts that do not exist: {unknown}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_alert_metadata(rule_file):
    problems = []
    names = [a["alert"] for p in RULE_FILES for a in _alerts(p)]
    for alert in _alerts(rule_file):
        name = alert["alert"]
        if names.count(name) != 1:
            problems.append(f"{name}: defined {names.count(name)} times")
        if not name.startswith("K3sllm"):
            problems.append(f"{name}: name should start with K3sllm")
        if "for" not in alert:
            problems.append(f"{name}: no `for:`")
        if alert.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity label not one of {sorted(SEVERITIES)}")
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        # the affected model/gpu/target must be named, unless the alert is about a missing series
        text = f"{annotations.get('summary', '')} {annotations.get('description', '')}"
        if "absent(" not in alert["expr"] and "$labels." not in text:
            problems.append(f"{name}: summary and description name no label of the affected object")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_alert_metric_names_are_exported(rule_file):
    assert rule_file.name in RULE_FILE_COMPONENTS, f"add {rule_file.name} to RULE_FILE_COMPONENTS"
    allowed = set(COMPONENTS["prometheus"]).union(
        *(COMPONENTS[c] for c in RULE_FILE_COMPONENTS[rule_file.name])
    )
    problems = []
    for alert in _alerts(rule_file):
        found = metric_names(alert["expr"])
        if not found:
            problems.append(f"{alert['alert']}: no metric name found in {alert['expr']!r}")
        for name in sorted(found - allowed):
            problems.append(
                f"{alert['alert']}: {name} is not exported by {sorted(RULE_FILE_COMPONENTS[rule_file.name])}"
            )
    assert not problems, "\n".join(problems)


def _mutations() -> list[tuple[Path, str]]:
    return [(p, a["alert"]) for p in RULE_FILES for a in _alerts(p)]


@pytest.mark.parametrize(("rule_file", "alert"), _mutations(), ids=lambda v: getattr(v, "name", v))
def test_unit_tests_fail_when_alert_never_fires(promtool, tmp_path, rule_file, alert):
    """Replace one alert's expression by one that never fires: its unit tests must then fail."""
    document = _load(rule_file)
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = NEVER
    (tmp_path / rule_file.name).write_text(yaml.safe_dump(document, sort_keys=False))
    users = [t for t in TEST_FILES if rule_file.resolve() in _tested_rule_files(t)]
    assert users, f"no test file loads {rule_file.name}"
    for test_file in users:
        rule_names = [Path(r).name for r in _load(test_file)["rule_files"]]
        for other in RULE_FILES:
            if other.name in rule_names and other != rule_file:
                shutil.copy(other, tmp_path / other.name)
        test_doc = _load(test_file)
        test_doc["rule_files"] = rule_names
        (tmp_path / test_file.name).write_text(yaml.safe_dump(test_doc, sort_keys=False))
    results = [_run(promtool, "test", "rules", t.name, cwd=tmp_path) for t in users]
    assert any(r.returncode != 0 for r in results), f"{alert} never fires, yet all its promtool tests pass"
    assert any(alert in r.stdout + r.stderr for r in results), f"promtool's failure does not mention {alert}"
