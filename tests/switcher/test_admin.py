"""Admin API (bearer token), health endpoints and the metrics contract."""

from __future__ import annotations

import os

import pytest

from switcher.config import ADMIN_TOKEN_ENV

AB = [{"name": "a"}, {"name": "b"}]
TOKEN = "t0k3n-for-tests"

CONTRACT = [
    "k3sllm_switcher_model_state",
    "k3sllm_switcher_switches_total",
    "k3sllm_switcher_switch_duration_seconds",
    "k3sllm_switcher_queue_depth",
    "k3sllm_switcher_queue_wait_seconds",
    "k3sllm_switcher_requests_total",
    "k3sllm_switcher_drain_timeouts_total",
    "k3sllm_switcher_queue_rejected_total",
]


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch):
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)


async def test_admin_needs_the_bearer_token(make_cluster):
    c = await make_cluster(AB, admin_token=TOKEN)
    assert (await c.admin("GET", "/admin/models", None))[0] == 401
    assert (await c.admin("GET", "/admin/models", "wrong"))[0] == 401
    assert (await c.admin("GET", "/admin/models", TOKEN[:-1]))[0] == 401
    assert (await c.admin("POST", "/admin/models/b/activate", "wrong"))[0] == 401
    assert c.state("b") == "sleeping"  # the refused call changed nothing
    status, body = await c.admin("GET", "/admin/models", TOKEN)
    assert status == 200
    assert {m["name"]: m["state"] for m in body["models"]} == {"a": "awake", "b": "sleeping"}


async def test_admin_disabled_without_a_token(make_cluster):
    c = await make_cluster(AB)
    status, body = await c.admin("GET", "/admin/models", "anything")
    assert status == 403 and ADMIN_TOKEN_ENV in body["error"]


async def test_token_file_is_reread_when_the_secret_changes(make_cluster, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    c = await make_cluster(AB, extra={"admin_token_file": str(token_file)}, admin_token="first")
    assert (await c.admin("GET", "/admin/models", "first"))[0] == 200
    token_file.write_text("second\n")
    os.utime(token_file, (1, 1))  # make sure the mtime differs even on coarse clocks
    assert (await c.admin("GET", "/admin/models", "first"))[0] == 401
    assert (await c.admin("GET", "/admin/models", "second"))[0] == 200


async def test_activate_sleep_and_drain(make_cluster):
    c = await make_cluster(AB, admin_token=TOKEN, policy={"min_residency_seconds": 60})
    status, body = await c.admin("POST", "/admin/models/b/activate", TOKEN)
    assert status == 200 and body["state"] == "awake"  # an operator overrides residency
    assert (c.state("a"), c.state("b")) == ("sleeping", "awake")
    status, body = await c.admin("POST", "/admin/models/b/sleep", TOKEN)
    assert status == 200 and c.state("b") == "sleeping"
    assert (await c.admin("POST", "/admin/models/nope/sleep", TOKEN))[0] == 404
    status, body = await c.admin("POST", "/admin/models/a/activate", TOKEN)
    assert status == 200
    status, body = await c.admin("POST", "/admin/models/a/drain?timeout=1", TOKEN)
    assert status == 200 and body == {"model": "a", "drained": True, "inflight": 0}
    r = await c.request("a")
    assert r.status == 503 and "drained by an operator" in r.body["error"]["message"]
    assert (await c.admin("POST", "/admin/models/a/activate", TOKEN))[0] == 200
    assert (await c.request("a")).status == 200


async def test_health_ready_and_metrics_contract(make_cluster):
    c = await make_cluster(AB)
    assert (await c.request("b")).status == 200
    async with c.session.get(c.url + "/healthz") as resp:
        assert resp.status == 200
    async with c.session.get(c.url + "/readyz") as resp:
        assert resp.status == 200
    async with c.session.get(c.url + "/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
    for name in CONTRACT:
        assert f"\n{name}" in text or text.startswith(name), f"{name} missing from /metrics"
    for state in ("cold", "starting", "awake", "sleeping", "failed"):
        assert f'k3sllm_switcher_model_state{{model="b",state="{state}"}}' in text
    assert 'k3sllm_switcher_switches_total{model="b",outcome="success"} 1.0' in text
    assert 'k3sllm_switcher_queue_depth{model="a"} 0.0' in text
    for phase in ("drain", "sleep", "wake", "total"):
        assert f'k3sllm_switcher_switch_duration_seconds_count{{phase="{phase}"}}' in text


async def test_emptied_token_file_disables_the_old_token(make_cluster, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    c = await make_cluster(AB, extra={"admin_token_file": str(token_file)}, admin_token="first")
    assert (await c.admin("GET", "/admin/models", "first"))[0] == 200
    token_file.write_text("")
    os.utime(token_file, (1, 1))
    assert (await c.admin("GET", "/admin/models", "first"))[0] == 403


async def test_odd_tokens_and_names_get_clean_answers(make_cluster):
    c = await make_cluster(AB, admin_token=TOKEN)
    # A bearer token that is not latin-1 (raw UTF-8 bytes on the wire) is a wrong token, not a crash.
    async with c.session.get(
        c.url + "/admin/models",
        headers={"Authorization": "Bearer caf\u00e9\u2603".encode().decode("latin-1")},
    ) as resp:
        assert resp.status == 401
    # A model name with quotes cannot break out of the JSON answer.
    status, body = await c.admin("POST", '/admin/models/x"%2C"ok":true%2C"y/sleep', TOKEN)
    assert status == 404 and set(body) == {"error"} and 'x","ok":true,"y' in body["error"]


async def test_slept_victims_do_not_show_draining(make_cluster):
    c = await make_cluster(AB, admin_token=TOKEN)
    assert (await c.request("b")).status == 200  # a was drained and slept for b
    _, body = await c.admin("GET", "/admin/models", TOKEN)
    a = next(m for m in body["models"] if m["name"] == "a")
    assert a["state"] == "sleeping" and a["draining"] is False
