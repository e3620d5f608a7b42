"""Hostile and careless clients on the request path: bodies, slow sockets, floods, malformed HTTP.

Every test here failed on the switcher before issue 14's hardening.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path

import aiohttp
import openai
import yaml
from k3sllm_testlib import switcher_process

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings

TWO = [
    {"name": "llama"},
    {"name": "qwen", "aliases": ["gpt-4o"], "served_name": "Qwen/Qwen3-8B"},
]
MIB = 1024**2
REPO = Path(__file__).resolve().parents[2]


def limits(**values) -> dict:
    return {"limits": values}


async def raw_exchange(url: str, data: bytes, read_for: float = 2.0) -> bytes:
    """Send raw bytes on a fresh connection; return what comes back until close or ``read_for``."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        async with asyncio.timeout(read_for):
            while chunk := await reader.read(65536):
                out += chunk
    except TimeoutError:
        pass
    writer.close()
    return out


async def closed_within(url: str, data: bytes, seconds: float) -> float:
    """Open a connection, send ``data``, and return how long until the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    writer.write(data)
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    finally:
        writer.close()
    return time.monotonic() - started


# ---------------------------------------------------------------- bodies


async def test_body_over_the_cap_is_a_413_before_it_is_read(make_cluster):
    c = await make_cluster(TWO, extra=limits(max_body_bytes=MIB))
    big = json.dumps({"model": "llama", "prompt": "x" * (2 * MIB)}).encode()
    async with c.session.post(c.url + "/v1/completions", data=big) as resp:
        assert resp.status == 413
        error = (await resp.json())["error"]
    assert error["code"] == "request_too_large" and "max_body_bytes" in error["message"]
    assert c.engines["llama"].stats.served == 0

    async def endless():  # a chunked body that never ends
        yield b'{"model": "llama", "prompt": "'
        while True:
            yield b"x" * 65536

    async with c.session.post(c.url + "/v1/completions", data=endless()) as resp:
        assert resp.status == 413
    assert c.metric("k3sllm_switcher_requests_total", model="_unknown", code="413") == 2
    assert (await c.request("llama")).status == 200  # and the switcher still serves


async def test_deep_nesting_and_bad_bodies_are_openai_400s(make_cluster):
    c = await make_cluster(TWO)
    cases = {
        b'{"model": "llama", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}": "nests deeper",
        b'{"messages": []}': "`model`",
        b'{"model": 7}': "`model` must be a string",
        b'{"model": "llama", "model": "qwen"}': "`model` twice",
        b"[1, 2]": "JSON object",
        b"{not json": "not valid JSON",
    }
    for body, words in cases.items():
        async with c.session.post(c.url + "/v1/chat/completions", data=body) as resp:
            assert resp.status == 400, body[:40]
            error = (await resp.json())["error"]
        assert words in error["message"] and error["type"] == "invalid_request_error", error
    async with c.session.post(c.url + "/v1/chat/completions", data=b'{"messages": []}') as resp:
        assert (await resp.json())["error"]["param"] == "model"


async def test_model_key_spelled_with_escapes_routes_like_the_engine_reads_it(make_cluster):
    c = await make_cluster(TWO, awake=("llama", "qwen"), gpu_gib=20)
    body = b'{"mod\\u0065l": "llama", "messages": []}'
    async with c.session.post(c.url + "/v1/chat/completions", data=body) as resp:
        assert resp.status == 200 and (await resp.json())["model"] == "llama"


async def test_alias_rewrite_keeps_the_clients_bytes(make_cluster):
    c = await make_cluster(TWO, awake=("qwen",))
    body = b'{ "input" : "caf\\u00e9",  "model":"gpt-4o" ,"x": 1.50e0, "n": [1,2] }'
    async with c.session.post(c.url + "/v1/embeddings", data=body) as resp:
        assert resp.status == 200
    # Only the model value changed: spacing, escapes, number spelling and key order are the client's.
    assert c.engines["qwen"].last_raw_body == body.replace(b'"gpt-4o"', b'"Qwen/Qwen3-8B"')


async def test_body_buffer_is_bounded_across_requests(make_cluster):
    # Requests queued for a slow wake hold their bodies; the budget holds two of them, no more.
    c = await make_cluster(
        TWO,
        timings=Timings(wake_s=1.5),
        extra=limits(max_body_bytes=MIB, max_buffered_body_bytes=2 * MIB, body_timeout_seconds=0.5),
    )
    body = json.dumps({"model": "qwen", "prompt": "x" * (MIB - 100)}).encode()

    async def post() -> int:
        async with aiohttp.ClientSession() as s, s.post(c.url + "/v1/completions", data=body) as resp:
            return resp.status

    first = [asyncio.create_task(post()) for _ in range(2)]
    await wait_until(lambda: len(c.manager.models["qwen"].queue) == 2, what="two bodies queued")
    assert c.switcher.proxy.budget.used == 2 * len(body)
    started = time.monotonic()
    assert await post() == 503  # no room for a third body: refused once body_timeout passed
    assert time.monotonic() - started < 1.5
    assert await asyncio.gather(*first) == [200, 200]
    assert c.switcher.proxy.budget.used == 0


# ---------------------------------------------------------------- slow and idle connections


async def test_header_body_and_idle_timeouts_close_connections(make_cluster):
    c = await make_cluster(
        TWO,
        extra=limits(header_timeout_seconds=0.3, body_timeout_seconds=0.3, idle_timeout_seconds=0.5),
    )
    assert await closed_within(c.url, b"", 3) < 1.5  # sends nothing
    assert await closed_within(c.url, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", 3) < 1.5
    partial = b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model"'
    answer = await raw_exchange(c.url, partial, read_for=3)
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    # A kept-alive connection that goes quiet is closed after idle_timeout_seconds.
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert 0.3 < await closed_within(c.url, ok, 3) < 1.5


async def test_connection_cap_answers_fast_and_health_keeps_answering(make_cluster):
    c = await make_cluster(
        TWO,
        timings=Timings(token_s=0.05),
        extra=limits(max_connections=8, health_reserve_connections=2, header_timeout_seconds=30),
    )
    guard = c.switcher.guard
    host, port = c.url.removeprefix("http://").split(":")
    idle = [await asyncio.open_connection(host, int(port)) for _ in range(8)]
    await wait_until(lambda: guard.normal == 8, what="the cap to be reached")
    # Idle connections cannot lock anyone out: the oldest makes room for a new one.
    health = await raw_exchange(c.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", read_for=1)
    assert health.startswith(b"HTTP/1.1 200") and guard.evicted == 1
    assert await idle[0][0].read() == b""  # the oldest idle connection was closed
    assert (await c.request("llama")).status == 200
    for _, w in idle:
        w.close()
    # Every connection busy with a request: probes use the reserve, other requests get a fast 503.
    streams = [asyncio.create_task(c.request("llama", stream=True, max_tokens=60)) for _ in range(8)]
    await wait_until(lambda: c.manager.models["llama"].inflight == 8, what="8 streams in flight")
    started = time.monotonic()
    health = await raw_exchange(c.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", read_for=1)
    assert health.startswith(b"HTTP/1.1 200")
    busy = await raw_exchange(
        c.url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", read_for=1
    )
    assert busy.startswith(b"HTTP/1.1 503") and b"server_busy" in busy
    assert time.monotonic() - started < 1.5
    assert all(r.finish_reason == "length" for r in await asyncio.gather(*streams))
    await wait_until(lambda: guard.reserved == 0, what="reserve connections to be released")
    assert guard.normal <= 8


async def test_client_that_stops_reading_is_cut_off(make_cluster):
    c = await make_cluster(
        TWO,
        timings=Timings(token_s=0.0),
        extra=limits(write_timeout_seconds=0.5),
        policy={"health_interval_seconds": 5},
    )
    host, port = c.url.removeprefix("http://").split(":")
    body = json.dumps({"model": "llama", "prompt": "x", "max_tokens": 400000, "stream": True}).encode()
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    head = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    await asyncio.get_running_loop().sock_sendall(sock, head + body)
    m = c.manager.models["llama"]
    await wait_until(lambda: m.inflight == 1, what="the stream to start")
    # ...and the client never reads. The switcher gives up on it once a write blocks 0.5 s.
    await wait_until(lambda: m.inflight == 0, within=20, what="the stalled stream to be ended")
    sock.close()
    assert c.metric("k3sllm_switcher_requests_total", model="llama", code="499") == 1
    assert (await c.request("qwen")).status == 200  # a switch away from llama does not wait


# ---------------------------------------------------------------- routes


async def test_every_openai_route_is_routed_or_answers_in_openai_shape(make_cluster):
    c = await make_cluster(TWO)
    async with c.session.post(c.url + "/v1/responses", json={"model": "gpt-4o", "input": "hi"}) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["model"] == "Qwen/Qwen3-8B" and body["object"] == "response"
    async with c.session.post(c.url + "/tokenize", json={"model": "llama", "prompt": "a b c"}) as resp:
        assert resp.status == 200 and (await resp.json())["count"] == 3
    async with c.session.get(c.url + "/v1/models/gpt-4o") as resp:
        card = await resp.json()
        assert resp.status == 200 and card["id"] == "qwen" and card["object"] == "model"
    async with c.session.get(c.url + "/v1/models/nope") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "model_not_found"
    async with c.session.get(c.url + "/v1/files") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    async with c.session.get(c.url + "/v1/chat/completions") as resp:
        assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


# ---------------------------------------------------------------- logs


async def test_malformed_requests_leave_no_secret_in_logs_or_answers(make_cluster, caplog):
    caplog.set_level(logging.DEBUG)
    c = await make_cluster(TWO)
    secret, prompt = "sk-s3cret-admin-token", "my private prompt"
    attempts = [
        # A control character in a header value, as a broken client sends it.
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\x01\r\n"
        f'Content-Length: 40\r\n\r\n{{"model": "llama", "x": "{prompt}"}}',
        # A request line that is not HTTP at all, with the prompt and key in it.
        f"GARBAGE {prompt} {secret}\r\n\r\n",
        # A header line too long for the parser.
        f"GET /healthz HTTP/1.1\r\nX-Key: {secret}{'a' * 9000}\r\n\r\n",
    ]
    for attempt in attempts:
        answer = await raw_exchange(c.url, attempt.encode("latin-1"), read_for=1)
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), answer[:80]
        assert secret.encode() not in answer and prompt.encode() not in answer
    logged = "\n".join(r.getMessage() + (str(r.exc_info) if r.exc_info else "") for r in caplog.records)
    logged += caplog.text
    assert secret not in logged and prompt not in logged


async def test_busy_port_exits_with_one_clear_line(tmp_path):

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = switcher_process.write_config(tmp_path / "switcher.yaml", port, "http://127.0.0.1:9")
        proc = await switcher_process.start(config, asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 1
    assert f"switcher: cannot listen on 127.0.0.1:{port}: Address already in use" in text
    assert "Traceback" not in text and "Unclosed" not in text


# ---------------------------------------------------------------- metrics


async def test_streams_the_openai_sdk_received_in_full_count_as_successes(make_cluster, monkeypatch):
    # The SDK closes its connection as soon as it reads `data: [DONE]`, here before the engine has
    # ended the response: that is a served request, not a client abort or an engine failure.
    c = await make_cluster(TWO, timings=Timings(token_s=0.02, done_to_eof_s=0.2))
    probes: list[str] = []
    monkeypatch.setattr(c.manager, "report_engine_error", lambda m: probes.append(m.name))
    client = openai.AsyncOpenAI(base_url=c.url + "/v1", api_key="unused", max_retries=0)
    for _ in range(10):
        stream = await client.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=3
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        assert text == "[llama] tok0 tok1 tok2 "
    await client.close()
    await wait_until(lambda: c.manager.models["llama"].inflight == 0)
    assert c.metric("k3sllm_switcher_requests_total", model="llama", code="200") == 10
    # A client that leaves mid-stream is a client-side reset (499): no engine error, no probe.
    async with aiohttp.ClientSession() as s:
        payload = {"model": "llama", "prompt": "x", "max_tokens": 50, "stream": True}
        resp = await s.post(c.url + "/v1/completions", json=payload)
        await resp.content.readline()
        resp.close()
    await wait_until(lambda: c.metric("k3sllm_switcher_requests_total", model="llama", code="499") == 1)
    for code in ("502", "503"):
        assert c.metric("k3sllm_switcher_requests_total", model="llama", code=code) == 0
    assert probes == []


async def test_stream_stuck_on_its_client_is_ended_when_the_drain_gives_up(make_cluster):
    # write_timeout is long here: what ends the stuck stream is the drain of its model.
    c = await make_cluster(TWO, extra=limits(write_timeout_seconds=60), policy={"drain_timeout_seconds": 0.5})
    host, port = c.url.removeprefix("http://").split(":")
    body = json.dumps({"model": "llama", "prompt": "x", "max_tokens": 400000, "stream": True}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    head = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    await loop.sock_sendall(sock, head + body)
    llama = c.manager.models["llama"]
    await wait_until(lambda: llama.inflight == 1, what="the stream to start")
    await asyncio.sleep(1.0)  # long enough for the client's buffers to fill: writes now block
    started = time.monotonic()
    r = await c.request("qwen")
    assert r.status == 200 and r.model == "Qwen/Qwen3-8B"
    assert time.monotonic() - started < 5.0
    await wait_until(lambda: llama.inflight == 0, within=10, what="the stuck stream to be ended")
    sock.close()
    c.assert_gpu_safe()


# ---------------------------------------------------------------- the role exposes the limits


def test_role_limits_match_the_switcher_config():
    from switcher.config import Limits  # here, so the rest of the file runs against older switchers

    specs = yaml.safe_load((REPO / "roles/model_switcher/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]["model_switcher_limits"]["options"]
    assert set(options) == set(Limits.model_fields)
    for name, option in options.items():
        annotation = Limits.model_fields[name].annotation
        assert option["type"] == ("int" if annotation is int else "float"), name
    defaults = yaml.safe_load((REPO / "roles/model_switcher/defaults/main.yml").read_text())
    assert Limits.model_validate(defaults["model_switcher_limits"]) == Limits()
