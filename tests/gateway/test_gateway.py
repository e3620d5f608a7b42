"""The gateway end to end with real clients: the openai and anthropic SDKs -> the real LiteLLM proxy
(config rendered by the role, PostgreSQL behind it) -> the real switcher -> vLLM stand-ins.

One stack for the whole module (LiteLLM takes 20-60 s to start here); the tests run in file order
and each makes its own virtual key, so none depends on another's traffic except the metrics test,
which comes last on purpose (it checks the failure counters the earlier tests produced).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

import anthropic
import certifi
import httpx
import openai
import pytest
from k3sllm_testlib import REPO
from observability.promql import metric_names
from verify.through_gateway import verify_through_gateway

pytestmark = [pytest.mark.slow]

# A tool as Claude Code declares them (name, description, JSON schema of its input).
READ_TOOL = {
    "name": "Read",
    "description": "Reads a file from the local filesystem.",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string", "description": "The absolute path to the file"}},
        "required": ["file_path"],
    },
}
SYSTEM_PROMPT = "You are Claude Code, Anthropic's official CLI for Claude. Answer briefly."


def _openai(stack, key: str) -> openai.OpenAI:
    # max_retries=0: a refused request must show up as refused, not be retried into a pass.
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0, timeout=120)


def _anthropic(stack, key: str) -> anthropic.Anthropic:
    # The way Claude Code is pointed at the gateway: ANTHROPIC_BASE_URL and a virtual key as token.
    return anthropic.Anthropic(base_url=stack.url, auth_token=key, max_retries=0, timeout=120)


def _alias_of(stack, model: str) -> str:
    """A claude-* alias the catalog routes to ``model``."""
    for entry in stack.config["model_list"]:
        if entry["model_name"].startswith("claude-") and entry["litellm_params"]["model"].endswith(
            "/" + model
        ):
            return entry["model_name"]
    raise AssertionError(f"the catalog has no claude-* alias for {model}")


def _chat(client: openai.OpenAI, model: str, max_tokens: int = 5):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=max_tokens
    )


def test_rendered_config_is_what_runs(litellm_stack):
    """The running config is the rendered one, but for api_base (and the stand-in's prices)."""
    rendered = litellm_stack.rendered_config
    running = litellm_stack.config
    assert [e["model_name"] for e in running["model_list"]] == [
        e["model_name"] for e in rendered["model_list"]
    ]
    for ours, theirs in zip(running["model_list"], rendered["model_list"], strict=True):
        assert ours["litellm_params"] == {
            **theirs["litellm_params"],
            "api_base": litellm_stack.switcher_url + "/v1",
        }
    for section in ("litellm_settings", "general_settings", "router_settings"):
        assert running[section] == rendered[section]


def test_openai_chat_plain_and_streamed(litellm_stack):
    key = litellm_stack.new_key(key_alias="chat")
    client = _openai(litellm_stack, key)
    model = litellm_stack.models[0]

    answer = _chat(client, model, max_tokens=5)
    # The stand-in prefixes every answer with the engine that produced it.
    assert answer.choices[0].message.content.startswith(f"[{model}] tok0")
    assert answer.usage.completion_tokens == 5
    assert answer.choices[0].finish_reason == "length"

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(f"[{model}] tok0") and "tok7" in text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 8
    # The stand-in streams no usage; LiteLLM counts the streamed text itself (one usage chunk).
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens >= 8


def test_anthropic_messages_as_claude_code_sends_them(litellm_stack):
    """/v1/messages with a system prompt and a tool, model named by a claude-* alias; plain and streamed."""
    key = litellm_stack.new_key(key_alias="claude-code")
    client = _anthropic(litellm_stack, key)
    model = litellm_stack.models[0]
    alias = _alias_of(litellm_stack, model)

    message = client.messages.create(
        model=alias,
        max_tokens=6,
        system=SYSTEM_PROMPT,
        tools=[READ_TOOL],
        messages=[{"role": "user", "content": "What is in README.md?"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith(f"[{model}] tok0")
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 6

    with client.messages.stream(
        model=alias,
        max_tokens=6,
        system=SYSTEM_PROMPT,
        tools=[READ_TOOL],
        messages=[{"role": "user", "content": "What is in README.md?"}],
    ) as stream:
        deltas = [
            e.delta.text for e in stream if e.type == "content_block_delta" and e.delta.type == "text_delta"
        ]
        final = stream.get_final_message()
    assert "".join(deltas).startswith(f"[{model}] tok0")
    assert len(deltas) >= 6
    assert final.stop_reason == "max_tokens"

    # What reached the engine: the system prompt and the tool, in OpenAI form, on chat completions.
    engine = litellm_stack.cluster.engines[model]
    sent = json.loads(engine.last_raw_body)
    assert sent["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert [t["function"]["name"] for t in sent["tools"]] == ["Read"]


def test_sleeping_model_is_woken_through_the_gateway(litellm_stack):
    cluster = litellm_stack.cluster
    asleep = [m for m in litellm_stack.models if cluster.state(m) == "sleeping"]
    assert asleep, f"no sleeping model to switch to: {[(m, cluster.state(m)) for m in litellm_stack.models]}"
    target = asleep[0]
    awake = [m for m in litellm_stack.models if cluster.state(m) == "awake"]
    key = litellm_stack.new_key(key_alias="switch")

    answer = _chat(_openai(litellm_stack, key), _alias_of(litellm_stack, target), max_tokens=3)

    assert answer.choices[0].message.content.startswith(f"[{target}] ")
    assert cluster.state(target) == "awake"
    assert all(cluster.state(m) == "sleeping" for m in awake)
    assert cluster.metric("k3sllm_switcher_switches_total", model=target, outcome="success") >= 1
    cluster.assert_gpu_safe()


def test_wrong_key_is_refused(litellm_stack):
    client = _openai(litellm_stack, "sk-not-a-key-of-this-gateway")
    with pytest.raises(openai.AuthenticationError) as refused:
        _chat(client, litellm_stack.models[0])
    assert refused.value.status_code == 401
    with pytest.raises(anthropic.AuthenticationError):
        _anthropic(litellm_stack, "sk-not-a-key-of-this-gateway").messages.create(
            model=_alias_of(litellm_stack, litellm_stack.models[0]),
            max_tokens=3,
            messages=[{"role": "user", "content": "hi"}],
        )


def test_blocked_key_is_refused_and_unblocked_key_works(litellm_stack):
    key = litellm_stack.new_key(key_alias="to-block")
    client = _openai(litellm_stack, key)
    model = litellm_stack.models[0]
    assert _chat(client, model).choices[0].message.content

    resp = litellm_stack.admin("POST", "/key/block", json={"key": key})
    assert resp.status_code == 200, resp.text
    with pytest.raises(openai.AuthenticationError) as refused:
        _chat(client, model)
    assert refused.value.status_code == 401
    assert "blocked" in str(refused.value).lower()

    resp = litellm_stack.admin("POST", "/key/unblock", json={"key": key})
    assert resp.status_code == 200, resp.text
    assert _chat(client, model).choices[0].message.content


def _recorded_spend(stack, key_alias: str) -> float:
    value = stack.pg.psql(f"SELECT spend FROM \"LiteLLM_VerificationToken\" WHERE key_alias = '{key_alias}'")
    return float(value or 0)


def _spend_log_rows(stack, key_alias: str) -> int:
    value = stack.pg.psql(
        'SELECT count(*) FROM "LiteLLM_SpendLogs" s JOIN "LiteLLM_VerificationToken" t ON s.api_key = t.token '
        f"WHERE t.key_alias = '{key_alias}'"
    )
    return int(value)


def test_key_over_budget_is_refused_once_spend_is_recorded(litellm_stack):
    """Spend is counted at the catalog's prices and written to PostgreSQL in batches (seconds to a
    minute after the call); once it passes the key's budget, the key is refused with LiteLLM's 422
    budget_exceeded."""
    model = litellm_stack.models[0]
    price = next(e for e in litellm_stack.config["model_list"] if e["model_name"] == model)["model_info"]
    assert price.get("output_cost_per_token", 0) > 0, "the example catalog prices its models"
    budget = 5 * price["output_cost_per_token"]  # half of one 10-token answer
    key = litellm_stack.new_key(key_alias="budget", max_budget=budget)
    client = _openai(litellm_stack, key)
    _chat(client, model, max_tokens=10)

    deadline = time.monotonic() + 120
    while (spend := _recorded_spend(litellm_stack, "budget")) <= budget:
        assert time.monotonic() < deadline, f"spend {spend} not recorded past {budget} in PostgreSQL"
        time.sleep(2)
    # LiteLLM writes the key's spend and the spend log rows in separate batches: the row can come
    # a moment after the spend (seen once under CI's load).
    while (logs := _spend_log_rows(litellm_stack, "budget")) == 0:
        assert time.monotonic() < deadline, "the call's spend log row was not written to PostgreSQL"
        time.sleep(2)
    assert logs == 1

    with pytest.raises(openai.APIStatusError) as refused:
        _chat(client, model)
    assert "budget" in str(refused.value).lower()
    assert refused.value.status_code == 422


def test_rpm_limit_is_enforced(litellm_stack):
    key = litellm_stack.new_key(key_alias="rpm", rpm_limit=2)
    client = _openai(litellm_stack, key)
    model = litellm_stack.models[0]
    for _ in range(2):
        assert _chat(client, model).choices[0].message.content
    with pytest.raises(openai.RateLimitError) as limited:
        _chat(client, model)
    assert limited.value.status_code == 429


def _readme_use_it_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block in the README's "Use it" section, in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Use it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(\w*)\n(.*?)^```", section, flags=re.M | re.S)


def _readme_block(language: str, needle: str) -> str:
    found = [body for lang, body in _readme_use_it_blocks() if lang == language and needle in body]
    assert len(found) == 1, f"README's Use it section has {len(found)} {language} blocks with {needle!r}"
    return found[0]


def _client_env(stack, key: str) -> dict[str, str]:
    """The three settings the README's snippets read. The test stack speaks plain HTTP, so the CA
    file is never used for a handshake here; it must still be a readable bundle."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_"))}
    env.update(K3SLLM_URL=stack.url, K3SLLM_KEY=key, K3SLLM_CA=certifi.where())
    return env


def test_readme_curl_snippet_works_as_written(litellm_stack):
    key = litellm_stack.new_key(key_alias="readme-curl")
    snippet = _readme_block("sh", "curl ")
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", snippet],
        env=_client_env(litellm_stack, key),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["choices"][0]["message"]["content"].startswith("[qwen2.5-7b-instruct] ")


def test_readme_openai_snippet_works_as_written(litellm_stack):
    key = litellm_stack.new_key(key_alias="readme-openai")
    run = subprocess.run(
        [sys.executable, "-c", _readme_block("python", "OpenAI(")],
        env=_client_env(litellm_stack, key),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("[qwen2.5-7b-instruct] ")


def test_readme_claude_code_settings_reach_the_models(litellm_stack):
    """Claude Code itself does not run here; the anthropic SDK reads the same ANTHROPIC_* variables
    (base URL, bearer token) and sends what Claude Code sends: a system prompt and a tool, by the
    model ids the README sets."""
    key = litellm_stack.new_key(key_alias="readme-claude")
    settings = _readme_block("sh", "ANTHROPIC_BASE_URL")
    exports = "\n".join(line for line in settings.splitlines() if line.strip() != "claude")
    assert exports != settings, "the block ends by starting claude"
    client = f"""
import json, os, anthropic
client = anthropic.Anthropic(max_retries=0, timeout=120)
assert os.environ["NODE_EXTRA_CA_CERTS"]
answers = {{}}
for model in (os.environ["ANTHROPIC_MODEL"], os.environ["ANTHROPIC_DEFAULT_HAIKU_MODEL"]):
    msg = client.messages.create(
        model=model, max_tokens=20, system={SYSTEM_PROMPT!r}, tools=[{READ_TOOL!r}],
        messages=[{{"role": "user", "content": "Read /etc/hostname"}}],
    )
    answers[model] = msg.content[0].text
print(json.dumps(answers))
"""
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{exports}\nexec {sys.executable} -c {shlex.quote(client)}"],
        env={**_client_env(litellm_stack, key), "ANTHROPIC_API_KEY": "sk-must-be-unset-by-the-snippet"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(run.stdout)
    # The aliases land on the catalog's models (the stand-in names the engine in every answer).
    assert answers["claude-sonnet-4-5"].startswith("[qwen2.5-7b-instruct] ")
    assert answers["claude-haiku-4-5"].startswith("[llama-3.1-8b-instruct] ")


def test_verify_playbook_checks_pass_through_the_gateway(litellm_stack, tmp_path):
    """roles/verify's script (what playbooks/verify.yml runs) against this gateway: /v1/models, a
    streamed chat per catalog model and Anthropic /v1/messages by a claude-* alias, all through LiteLLM."""
    report = verify_through_gateway(litellm_stack, tmp_path)
    assert all(check["ok"] for check in report["checks"]), report["checks"]


def test_metrics_carry_what_the_gateway_dashboard_charts(litellm_stack):
    """/metrics (no key: Prometheus scrapes it inside the cluster) exposes every litellm_* series the
    gateway dashboard queries, filled by the traffic of the tests above."""
    board = json.loads((REPO / "files" / "dashboards" / "gateway.json").read_text())
    charted = set()
    stack_panels = list(board.get("panels", []))
    while stack_panels:
        panel = stack_panels.pop()
        stack_panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            charted |= {n for n in metric_names(target.get("expr", "")) if n.startswith("litellm_")}
    assert charted, "the gateway dashboard charts no litellm_* metric"

    resp = httpx.get(litellm_stack.url + "/metrics/", timeout=30, follow_redirects=True)
    assert resp.status_code == 200
    exported = {
        line.split("{")[0].split(" ")[0] for line in resp.text.splitlines() if line and line[0] != "#"
    }
    missing = sorted(charted - exported)
    assert not missing, f"charted but not exported after traffic: {missing}"
