"""The verify script as users run it (a subprocess), against the real switcher in front of vLLM
stand-in engines, a Prometheus API stand-in, and a ``kubectl port-forward`` stand-in that reaches both
(tests/verify/stack.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from verify.stack import ADMIN_TOKEN, MODELS, SCRIPT, TIMINGS, Stack

from standins.prometheus_api import alert, target

API_KEY = "sk-verify-test-key-not-checked-by-the-switcher"


def run_script(
    stack: Stack, tmp_path: Path, *args: str, secrets: dict | None = None
) -> subprocess.CompletedProcess:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps(secrets or {"api_key": API_KEY, "switcher_token": ADMIN_TOKEN}))
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--secrets-file", str(secrets_file), "--kubectl", stack.kubectl],
        env={**os.environ, **stack.kubectl_env()},
        capture_output=True,
        text=True,
        timeout=240,
    )


def verify_args(stack: Stack, reports: Path, *extra: str) -> list[str]:
    args = ["verify", "--gateway-url", stack.switcher_url, "--report-dir", str(reports)]
    for model in MODELS:
        args += ["--model", model]
    return [*args, *extra]


def test_full_report(stack: Stack, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    proc = run_script(
        stack,
        tmp_path,
        *verify_args(stack, reports, "--concurrency", "1,4", "--requests", "8", "--max-tokens", "12"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ADMIN_TOKEN not in proc.stdout + proc.stderr and API_KEY not in proc.stdout + proc.stderr
    (json_path,) = reports.glob("verify-*.json")
    (md_path,) = reports.glob("verify-*.md")
    report = json.loads(json_path.read_text())
    assert md_path.read_text() in proc.stdout  # the table is printed as written

    assert report["verdict"] == "all checks passed"
    names = [c["name"] for c in report["checks"]]
    assert names == [
        "GET /v1/models",
        *(f"chat completion: {m}" for m in MODELS),
        "Prometheus targets up",
        "no alert firing",
    ]

    levels = report["benchmark"]
    assert [(lv["model"], lv["concurrency"], lv["requests"], lv["failed"]) for lv in levels] == [
        ("alpha", 1, 8, 0),
        ("alpha", 4, 8, 0),
    ]
    for level in levels:
        # The stand-in paces tokens TIMINGS.token_s apart: gaps cannot be shorter.
        assert level["itl_p50"] >= TIMINGS.token_s * 0.9
        assert 0 < level["ttft_p50"] <= level["ttft_p95"]
        # 12 tokens and the stand-in's name chunk per request.
        assert level["output_tokens"] == 8 * 13
        assert level["output_tokens_per_second"] > 0

    pairs = {(s["from"], s["to"]): s for s in report["switches"]}
    assert set(pairs) == {(a, b) for a in MODELS for b in MODELS if a != b}
    for pair in pairs.values():
        assert pair["ok"] and pair["models_slept"] == 1 and not pair["co_resident"]
        assert pair["sleep_seconds"] >= TIMINGS.sleep_s
        assert pair["wake_seconds"] >= TIMINGS.wake_s
        assert pair["switch_seconds"] >= pair["sleep_seconds"] + pair["wake_seconds"]
        assert pair["first_token_after_wake_seconds"] >= pair["switch_seconds"]
        # Everything else the switch cost is overhead: keep it honest (a wrong delta would be ~0 or double).
        assert pair["switch_seconds"] < 3 * (TIMINGS.sleep_s + TIMINGS.wake_s)

    # The switcher and Prometheus were reached through port-forwards, as on a cluster.
    forwarded = sorted({(call[-2], call[-1]) for call in stack.kubectl_calls()})
    assert forwarded == [
        ("service/kube-prometheus-stack-prometheus", ":9090"),
        ("service/switcher", ":8080"),
        ("service/switcher", ":9090"),  # the switcher's metrics port (metrics_listen)
    ]
    stack.cluster.assert_gpu_safe()


def test_failed_checks_are_reported_and_skip_the_benchmark(stack: Stack, tmp_path: Path) -> None:
    stack.prometheus.targets.append(target("dcgm-exporter", health="down", error="connection refused"))
    stack.prometheus.alerts += [alert("K3sllmSwitcherModelFailed"), alert("KubePodNotReady", state="pending")]
    reports = tmp_path / "reports"
    proc = run_script(stack, tmp_path, *verify_args(stack, reports, "--model", "no-such-model"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(next(reports.glob("*.json")).read_text())
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert set(failed) == {
        "GET /v1/models",
        "chat completion: no-such-model",
        "Prometheus targets up",
        "no alert firing",
    }
    assert failed["GET /v1/models"].startswith("missing no-such-model")
    assert "model_not_found" in failed["chat completion: no-such-model"]
    assert "connection refused" in failed["Prometheus targets up"]
    # Firing counts, pending and kube-prometheus-stack's always-firing Watchdog do not.
    assert failed["no alert firing"] == "firing: K3sllmSwitcherModelFailed"
    assert report["benchmark"] == [] and report["switches"] == []
    assert "CHECKS FAILED" in proc.stdout


def test_wrong_admin_token(stack: Stack, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    proc = run_script(
        stack,
        tmp_path,
        *verify_args(stack, reports, "--concurrency", "1", "--requests", "1"),
        secrets={"api_key": API_KEY, "switcher_token": "wrong-token-value"},
    )
    assert proc.returncode == 1
    assert "wrong-token-value" not in proc.stdout + proc.stderr
    # The checks before the benchmark passed and are in the report; the benchmark says why it stopped.
    report = json.loads(next(reports.glob("*.json")).read_text())
    failed = [c for c in report["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["benchmark"]
    assert failed[0]["detail"].startswith("the switcher refused the admin token (HTTP 401)")
    assert "switcher-admin-token" in failed[0]["detail"]
    assert len(report["checks"]) == 7


def test_prometheus_unreachable_is_a_failed_check(stack: Stack, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    proc = run_script(
        stack, tmp_path, *verify_args(stack, reports, "--prometheus-url", dead, "--skip-benchmark")
    )
    assert proc.returncode == 1
    report = json.loads(next(reports.glob("*.json")).read_text())
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert list(failed) == ["Prometheus API"]
    assert failed["Prometheus API"].startswith(f"{dead}: ConnectError")


def test_switch(stack: Stack, tmp_path: Path) -> None:
    assert stack.cluster.state("alpha") == "awake"
    proc = run_script(stack, tmp_path, "switch", "--model", "claude-gamma")  # an alias works too
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model"] == "gamma" and result["state_before"] == "sleeping" and result["state"] == "awake"
    assert result["awake"] == ["gamma"]
    assert stack.cluster.state("gamma") == "awake" and stack.cluster.state("alpha") == "sleeping"
    assert result["seconds"] >= TIMINGS.wake_s

    proc = run_script(stack, tmp_path, "switch", "--model", "delta")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: the switcher has no model delta; it serves alpha, beta, gamma"
    stack.cluster.assert_gpu_safe()


def test_help_runs_alone() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "verify", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--concurrency" in proc.stdout and "--report-dir" in proc.stdout
