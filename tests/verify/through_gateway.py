"""The verify script's checks through the real LiteLLM gateway, for tests/gateway to call with its stack
(LiteLLM starts in 60-275 s here, so the check shares the stack the gateway tests start anyway).

    from verify.through_gateway import verify_through_gateway

    def test_verify_script_through_the_gateway(litellm_stack, tmp_path):
        verify_through_gateway(litellm_stack, tmp_path)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from verify.stack import SCRIPT


def verify_through_gateway(stack: Any, tmp_path: Path) -> dict:
    """Run ``k3sllm_verify.py verify`` (checks only) against ``stack`` (tests/gateway's litellm_stack):
    /v1/models, a streamed chat completion per catalog model and the Anthropic /v1/messages call with
    the catalog's first claude-* alias, all through LiteLLM with its master key. Returns the report."""
    aliases = sorted(
        {e["model_name"] for e in stack.config["model_list"] if e["model_name"].startswith("claude-")}
    )
    assert aliases, "the example catalog has claude-* aliases"
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"api_key": stack.master_key}))
    reports = tmp_path / "reports"
    argv = [sys.executable, str(SCRIPT), "verify", "--gateway-url", stack.url, "--secrets-file", str(secrets)]
    argv += [
        "--report-dir",
        str(reports),
        "--anthropic-model",
        aliases[0],
        "--skip-prometheus",
        "--skip-benchmark",
    ]
    for model in stack.models:
        argv += ["--model", model]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stack.master_key not in proc.stdout + proc.stderr
    report = json.loads(next(reports.glob("verify-*.json")).read_text())
    names = [c["name"] for c in report["checks"] if c["ok"]]
    assert names == [
        "GET /v1/models",
        *(f"chat completion: {m}" for m in stack.models),
        f"Anthropic /v1/messages: {aliases[0]}",
    ]
    return report
