"""vLLM engine STAND-IN for tests and benchmarks. It is NOT vLLM.

It speaks the parts of vLLM's HTTP API that the switcher uses, with vLLM's behaviour where it
matters (see ../../../shared/FACTS.md, "vLLM sleep mode"):

- OpenAI routes ``/v1/chat/completions``, ``/v1/completions`` (both with SSE streaming),
  ``/v1/responses`` (not streamed), ``/tokenize`` and
  ``/v1/embeddings``; ``/v1/models``. Every answer names the model that produced it (``model`` field
  and a ``[served-name]`` prefix in the text), so tests can check routing.
- ``GET /health`` answers 200 whenever the server listens, sleeping or not (as vLLM does).
- Dev-mode routes: ``POST /sleep?level=1|2[&mode=abort|wait]`` (query parameter), ``POST /wake_up``
  with optional ``?tags=weights`` / ``?tags=kv_cache``, ``GET /is_sleeping``,
  ``POST /reset_prefix_cache``, ``POST /collective_rpc`` (``reload_weights``), and ``/metrics`` with
  ``vllm:engine_sleep_state``.
- A request sent to a sleeping engine HANGS until the engine is woken, like the real one; such
  requests are counted (``stats.requests_while_sleeping``) so tests can prove the switcher never
  sends one.
- ``/is_sleeping`` turns true when a sleep begins, while the engine still holds its memory for
  ``sleep_s``; that release goes on when the caller of ``/sleep`` gives up, and a repeated
  ``/sleep`` is answered when it is done (vLLM 0.32's ``EngineCore.sleep`` and ``is_sleeping``).
- Before it is ready (``start_s``) nothing listens on its port: connections are refused.
- After a level-2 sleep, weights are garbage until ``reload_weights``; after any wake the prefix
  cache is stale until ``/reset_prefix_cache``. Answers given in either condition are counted.

VRAM: every stand-in in a process books its memory in one shared ``VramLedger``. A start or wake that
would exceed the GPU's capacity FAILS (the engine answers 500 "CUDA out of memory", or the start
aborts), as a real GPU would, and the refusal is recorded. ``ledger.max_committed`` and
``ledger.refusals`` let tests assert that the GPU was never over-committed.

Faults (``engine.faults``): fail the next N wakes, hang sleeps, wakes or ``/is_sleeping``, answer the
next N ``/reset_prefix_cache`` with 200 ``{"success": false}`` (vLLM 0.32 while blocks are held), die
mid-stream after N tokens (and optionally come back after a delay, like a restarted pod), answer
``/metrics`` with 503, hold a sleep's memory release until a test sets an event.

Run it alone: ``python tests/standins/vllm_engine.py --engine a=8101:20 --engine b=8102:20
--capacity 40 --token-s 0.005``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

WEIGHTS_FRACTION = 0.7  # share of an engine's VRAM that is weights; the rest is KV cache


class OverCommit(Exception):
    """A booking would exceed the GPU: what a real engine reports as CUDA out of memory."""


class VramLedger:
    """Simulated VRAM of one GPU, shared by every stand-in engine in the process."""

    def __init__(self, capacity_gib: float) -> None:
        self.capacity = capacity_gib
        self.held: dict[str, float] = {}
        self.max_committed = 0.0
        self.refusals: list[str] = []
        self._lock = threading.Lock()

    @property
    def committed(self) -> float:
        return sum(self.held.values())

    def book(self, engine: str, gib: float) -> None:
        """Set what ``engine`` holds. Raises ``OverCommit`` (and records it) if it would not fit."""
        with self._lock:
            others = sum(v for k, v in self.held.items() if k != engine)
            if gib > self.held.get(engine, 0.0) and others + gib > self.capacity + 1e-9:
                message = (
                    f"CUDA out of memory (stand-in ledger): {engine} needs {gib:g} GiB, others hold "
                    f"{others:g} of {self.capacity:g} GiB ({self.held})"
                )
                self.refusals.append(message)
                raise OverCommit(message)
            self.held[engine] = gib
            self.max_committed = max(self.max_committed, others + gib)


@dataclass
class Timings:
    start_s: float = 0.05  # model load until the server listens
    sleep_s: float = 0.02
    wake_s: float = 0.02
    token_s: float = 0.0  # per generated token
    default_tokens: int = 8
    done_to_eof_s: float = 0.0  # between a stream's `data: [DONE]` and the end of the response


@dataclass
class Faults:
    fail_wakes: int = 0  # the next N wakes answer 500
    hang_sleep: bool = False  # /sleep never answers (and the engine stays awake)
    hang_wake: bool = False
    hang_status: bool = False  # /is_sleeping never answers (a wedged engine)
    busy_prefix_resets: int = 0  # the next N /reset_prefix_cache answer 200 {"success": false} (vLLM 0.32)
    die_after_tokens: int | None = None  # the next stream kills the engine after N tokens
    restart_after_s: float | None = None  # ...and it comes back (awake) after this long
    metrics_down: bool = False  # /metrics answers 503 (the sleep level cannot be read)
    release_gate: asyncio.Event | None = None  # a sleep's memory release waits until a test sets it


@dataclass
class Stats:
    served: int = 0
    requests_while_sleeping: int = 0
    stale_prefix_answers: int = 0
    garbage_answers: int = 0
    cancelled: int = 0
    aborted_by_sleep: int = 0
    tokens: int = 0
    sleeps: list[int] = field(default_factory=list)
    sleep_modes: list[str | None] = field(default_factory=list)  # each /sleep's `mode`, None if absent
    metrics_reads: int = 0  # GET /metrics calls (a Prometheus page: not free to render)
    status_probes: int = 0  # GET /is_sleeping calls
    wakes: list[str | None] = field(default_factory=list)
    prefix_resets: int = 0
    reloads: int = 0
    starts: int = 0


class VllmEngineStandIn:
    def __init__(
        self,
        served_name: str,
        ledger: VramLedger,
        vram_gib: float,
        *,
        residual_gib: float = 0.0,
        timings: Timings | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.name = served_name
        self.ledger = ledger
        self.vram = vram_gib
        self.residual = min(residual_gib, vram_gib)
        self.timings = timings or Timings()
        self.faults = Faults()
        self.stats = Stats()
        self.host = host
        self._sock = self._bind(port)
        self.port = self._sock.getsockname()[1]
        self.state = "down"  # down | starting | awake | sleeping
        self.weights_awake = False
        self.kv_awake = False
        self.weights_valid = True
        self.sleep_level: int | None = None
        self.prefix_stale = False
        self._awake = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._generations: set[asyncio.Event] = set()
        self._transports: set[asyncio.BaseTransport] = set()
        self._restart_task: asyncio.Task | None = None
        self._sleep_task: asyncio.Task | None = None  # the memory release of the sleep in progress
        self.start_error: str | None = None
        self.last_raw_body = b""  # the bytes of the last OpenAI request, as the switcher sent them
        self.stored_responses: set[str] = set()  # ids of the responses this engine made

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _bind(self, port: int) -> socket.socket:
        # Bound but not listening: connections are refused until start() finishes, as with a real
        # vLLM that is still loading. The port is known up front, so configs can name it.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host if hasattr(self, "host") else "127.0.0.1", port))
        return sock

    # ------------------------------------------------------------------ lifecycle

    async def start(self, asleep: bool = False) -> None:
        """Load (book full VRAM), then listen. Raises OverCommit if the GPU is full.

        ``asleep=True`` is a test shortcut for "started earlier, then slept at level 1": it books only
        the residual VRAM and does not wait ``start_s``.
        """
        self.state = "starting"
        self.stats.starts += 1
        try:
            self.ledger.book(self.name, self.residual if asleep else self.vram)
        except OverCommit as exc:
            self.state = "down"
            self.start_error = str(exc)
            raise
        if not asleep:
            await asyncio.sleep(self.timings.start_s)
        self.weights_awake = self.kv_awake = True
        self.weights_valid = True
        self.prefix_stale = False
        self.sleep_level = None
        self.state = "awake"
        self._awake.set()
        if asleep:
            self.force_sleep(1)
        app = web.Application()
        app.add_routes(
            [
                web.get("/health", self._health),
                web.get("/is_sleeping", self._is_sleeping),
                web.post("/sleep", self._sleep),
                web.post("/wake_up", self._wake_up),
                web.post("/reset_prefix_cache", self._reset_prefix_cache),
                web.post("/collective_rpc", self._collective_rpc),
                web.get("/metrics", self._metrics),
                web.get("/standin/ledger", self._ledger),
                web.get("/v1/models", self._models),
                web.post("/v1/chat/completions", self._chat),
                web.post("/v1/completions", self._completions),
                web.post("/v1/embeddings", self._embeddings),
                web.post("/v1/responses", self._responses),
                web.get("/v1/responses/{response_id}", self._stored_response),
                web.post("/v1/responses/{response_id}/cancel", self._stored_response),
                web.post("/v1/audio/transcriptions", self._transcription),
                web.post("/v1/audio/translations", self._transcription),
                web.post("/tokenize", self._tokenize),
            ]
        )
        app.middlewares.append(self._track_transport)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def kill(self) -> None:
        """The process dies: connections cut, VRAM freed, port refuses connections."""
        self.state = "down"
        if self._sleep_task is not None:
            self._sleep_task.cancel()
        self._awake.clear()
        for transport in list(self._transports):
            transport.abort()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.ledger.book(self.name, 0.0)
        self._sock = self._bind(self.port)

    def force_sleep(self, level: int = 1) -> None:
        """Put the engine to sleep at once, without HTTP (test and benchmark setup)."""
        self.state = "sleeping"
        self._awake.clear()
        self.weights_awake = self.kv_awake = False
        self.sleep_level = level
        if level == 2:
            self.weights_valid = False
        self.ledger.book(self.name, self.residual)

    async def restart(self, delay_s: float = 0.0) -> None:
        await self.kill()
        await asyncio.sleep(delay_s)
        await self.start()

    async def close(self) -> None:
        if self._restart_task is not None:
            self._restart_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OverCommit):
                await self._restart_task
        if self._runner is not None:
            await self.kill()
        self._sock.close()

    @web.middleware
    async def _track_transport(self, request: web.Request, handler):
        transport = request.transport
        if transport is not None:
            self._transports.add(transport)
        try:
            return await handler(request)
        finally:
            if transport is not None:
                self._transports.discard(transport)

    # ------------------------------------------------------------------ sleep mode routes

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _is_sleeping(self, request: web.Request) -> web.Response:
        self.stats.status_probes += 1
        if self.faults.hang_status:
            await asyncio.Event().wait()
        return web.json_response({"is_sleeping": self.state == "sleeping"})

    async def _sleep(self, request: web.Request) -> web.Response:
        level = int(request.query.get("level", "1"))
        self.stats.sleep_modes.append(request.query.get("mode"))
        mode = request.query.get("mode", "abort")
        if self.faults.hang_sleep:
            await asyncio.Event().wait()  # until the caller gives up and disconnects
        if self.state == "sleeping":
            # vLLM 0.32 (EngineCore.sleep): a repeated sleep is answered once the sleep in progress
            # has released the memory (its pause completes after the first one's executor sleep).
            if self._sleep_task is not None:
                await asyncio.shield(self._sleep_task)
            return web.Response(status=200)
        if mode == "wait":
            while self._generations:  # noqa: ASYNC110 - a stand-in; polling keeps it short
                await asyncio.sleep(0.005)
        else:  # abort (vLLM's default): in-flight requests end now
            for flag in list(self._generations):
                flag.set()
        self._awake.clear()
        # vLLM 0.32 reports sleeping from the pause on (EngineCore.is_sleeping: scheduler paused or
        # executor asleep), before the executor has released the memory; and the release runs in
        # the engine core, so it goes on when the HTTP caller gives up.
        self.state = "sleeping"
        self._sleep_task = asyncio.ensure_future(self._release_memory(level))
        await asyncio.shield(self._sleep_task)
        return web.Response(status=200)

    async def _release_memory(self, level: int) -> None:
        await asyncio.sleep(self.timings.sleep_s)
        if self.faults.release_gate is not None:
            await self.faults.release_gate.wait()  # held by a test: still releasing, memory held
        self.weights_awake = self.kv_awake = False
        self.sleep_level = level
        if level == 2:
            self.weights_valid = False
        self.ledger.book(self.name, self.residual)
        self.stats.sleeps.append(level)

    async def _wake_up(self, request: web.Request) -> web.Response:
        tags = request.query.getall("tags", []) or ["weights", "kv_cache"]
        self.stats.wakes.append(",".join(request.query.getall("tags", [])) or None)
        if self.faults.hang_wake:
            await asyncio.Event().wait()
        if self.faults.fail_wakes > 0:
            self.faults.fail_wakes -= 1
            return web.json_response({"error": "injected wake failure (stand-in fault)"}, status=500)
        weights = self.weights_awake or "weights" in tags
        kv = self.kv_awake or "kv_cache" in tags
        want = self.residual + (self.vram - self.residual) * (
            (WEIGHTS_FRACTION if weights else 0.0) + ((1 - WEIGHTS_FRACTION) if kv else 0.0)
        )
        try:
            self.ledger.book(self.name, max(want, self.residual))
        except OverCommit as exc:
            return web.json_response({"error": str(exc)}, status=500)
        await asyncio.sleep(self.timings.wake_s)
        self.weights_awake, self.kv_awake = weights, kv
        if weights and kv and self.state == "sleeping":
            self.state = "awake"
            self.prefix_stale = True
            self._awake.set()
        return web.Response(status=200)

    async def _reset_prefix_cache(self, request: web.Request) -> web.Response:
        self.stats.prefix_resets += 1
        if self.faults.busy_prefix_resets > 0:
            # vLLM 0.32 answers 200 with success false while blocks are still held; nothing is reset.
            self.faults.busy_prefix_resets -= 1
            return web.json_response({"success": False})
        self.prefix_stale = False
        return web.json_response({"success": True})

    async def _collective_rpc(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("method") != "reload_weights":
            return web.json_response({"error": f"unsupported method {body.get('method')}"}, status=400)
        if not self.weights_awake:
            return web.json_response({"error": "weights are asleep; wake_up?tags=weights first"}, status=500)
        self.weights_valid = True
        self.stats.reloads += 1
        return web.json_response({"results": [None]})

    async def _ledger(self, request: web.Request) -> web.Response:
        """Stand-in only (benchmarks in other processes read it): the shared GPU's high-water mark."""
        ledger = self.ledger
        body = {
            "capacity": ledger.capacity,
            "max_committed": ledger.max_committed,
            "refusals": ledger.refusals,
        }
        return web.json_response(body)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.stats.metrics_reads += 1
        if self.faults.metrics_down:
            return web.Response(status=503, text="metrics unavailable (stand-in fault)")
        labels = f'engine="0",model_name="{self.name}"'
        # vLLM records the sleep state once /sleep has completed (AsyncLLM.sleep), after the release.
        releasing = self._sleep_task is not None and not self._sleep_task.done()
        sleeping = self.state == "sleeping" and not releasing
        lines = [
            "# HELP vllm:engine_sleep_state Engine sleep state; awake = 0 means engine is sleeping.",
            "# TYPE vllm:engine_sleep_state gauge",
            f'vllm:engine_sleep_state{{{labels},sleep_state="awake"}} {0.0 if sleeping else 1.0}',
            f'vllm:engine_sleep_state{{{labels},sleep_state="weights_offloaded"}} '
            f"{1.0 if sleeping and self.sleep_level == 1 else 0.0}",
            f'vllm:engine_sleep_state{{{labels},sleep_state="discard_all"}} '
            f"{1.0 if sleeping and self.sleep_level == 2 else 0.0}",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{labels}}} {len(self._generations)}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    # ------------------------------------------------------------------ OpenAI routes

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "vllm"}]}
        )

    async def _admit(self, request: web.Request) -> dict | web.Response:
        self.last_raw_body = await request.read()
        body = await request.json()
        if self.state == "sleeping":
            self.stats.requests_while_sleeping += 1
            await self._awake.wait()  # what vLLM does: the request waits for a wake
        if body.get("model") != self.name:
            return web.json_response(
                {
                    "error": {
                        "message": f"The model `{body.get('model')}` does not exist.",
                        "type": "NotFoundError",
                        "param": "model",
                        "code": 404,
                    }
                },
                status=404,
            )
        if self.prefix_stale:
            self.stats.stale_prefix_answers += 1
        if not self.weights_valid:
            self.stats.garbage_answers += 1
        return body

    def _word(self, i: int) -> str:
        return f"tok{i} " if self.weights_valid else "garbage "

    async def _generate(self, request: web.Request, body: dict, chat: bool) -> web.StreamResponse:
        n = int(body.get("max_tokens") or self.timings.default_tokens)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:16]
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        abort = asyncio.Event()
        self._generations.add(abort)
        try:
            if body.get("stream"):
                return await self._stream(request, n, rid, created, obj, chat, abort)
            words = [f"[{self.name}] "]
            async for i in self._paced_tokens(n, abort):
                words.append(self._word(i))
                self.stats.tokens += 1
            reason = "length" if len(words) == n + 1 else "abort"
            text = "".join(words)
            choice: dict = {"index": 0, "finish_reason": reason}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            self.stats.served += 1
            usage = {"prompt_tokens": 4, "completion_tokens": n, "total_tokens": n + 4}
            return web.json_response(
                {
                    "id": rid,
                    "object": obj,
                    "created": created,
                    "model": self.name,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self._generations.discard(abort)

    async def _stream(self, request, n, rid, created, obj, chat, abort) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        chunk_obj = obj + ".chunk" if chat else obj

        def event(text: str | None, finish: str | None) -> bytes:
            if chat:
                delta = {"content": text} if text is not None else {}
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish}
            data = {
                "id": rid,
                "object": chunk_obj,
                "created": created,
                "model": self.name,
                "choices": [choice],
            }
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        await resp.write(event(f"[{self.name}] ", None))
        sent = 0
        async for i in self._paced_tokens(n, abort):
            if self.faults.die_after_tokens is not None and i >= self.faults.die_after_tokens:
                self.faults.die_after_tokens = None
                self._die_soon()
                await asyncio.Event().wait()  # the kill aborts our connection and cancels us
            await resp.write(event(self._word(i), None))
            self.stats.tokens += 1
            sent += 1
        await resp.write(event(None, "length" if sent == n else "abort"))
        await resp.write(b"data: [DONE]\n\n")
        self.stats.served += 1
        if self.timings.done_to_eof_s:
            await asyncio.sleep(self.timings.done_to_eof_s)
        await resp.write_eof()
        return resp

    async def _paced_tokens(self, n: int, abort: asyncio.Event) -> AsyncIterator[int]:
        """Token indexes at the engine's pace; stops early when a sleep aborts the request, as vLLM
        finishes a running request with reason "abort"."""
        for i in range(n):
            if self.timings.token_s:
                await asyncio.sleep(self.timings.token_s)
            if abort.is_set():
                self.stats.aborted_by_sleep += 1
                return
            yield i

    def _die_soon(self) -> None:
        async def die_and_maybe_restart() -> None:
            await self.kill()
            if self.faults.restart_after_s is not None:
                await asyncio.sleep(self.faults.restart_after_s)
                await self.start()

        self._restart_task = asyncio.get_running_loop().create_task(die_and_maybe_restart())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._admit(request)
        if isinstance(body, web.Response):
            return body
        return await self._generate(request, body, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._admit(request)
        if isinstance(body, web.Response):
            return body
        return await self._generate(request, body, chat=False)

    async def _responses(self, request: web.Request) -> web.Response:
        body = await self._admit(request)
        if isinstance(body, web.Response):
            return body
        self.stats.served += 1
        text = f"[{self.name}] " + "".join(self._word(i) for i in range(self.timings.default_tokens))
        rid = "resp_" + uuid.uuid4().hex[:16]
        self.stored_responses.add(rid)  # as vLLM with VLLM_ENABLE_RESPONSES_API_STORE=1 keeps it
        return web.json_response(
            {
                "id": rid,
                "object": "response",
                "model": self.name,
                "status": "completed",
                "output": [
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text}],
                    }
                ],
            }
        )

    async def _stored_response(self, request: web.Request) -> web.Response:
        """``GET /v1/responses/{id}`` (and its cancel): only this engine knows the responses it made."""
        if self.state == "sleeping":
            self.stats.requests_while_sleeping += 1
            await self._awake.wait()
        rid = request.match_info["response_id"]
        if rid not in self.stored_responses:
            return web.json_response(
                {
                    "error": {
                        "message": f"Response with id '{rid}' not found.",
                        "type": "NotFoundError",
                        "code": 404,
                    }
                },
                status=404,
            )
        self.stats.served += 1
        status = "cancelled" if request.method == "POST" else "completed"
        return web.json_response({"id": rid, "object": "response", "model": self.name, "status": status})

    async def _transcription(self, request: web.Request) -> web.Response:
        """The audio routes take multipart/form-data: a `file` part and a `model` field."""
        self.last_raw_body = await request.read()
        # Parsed by the standard library's MIME parser (not the switcher's scan it checks).
        message = email.message_from_bytes(
            b"Content-Type: " + request.headers["Content-Type"].encode() + b"\r\n\r\n" + self.last_raw_body,
            policy=email.policy.HTTP,
        )
        form = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()
        }
        if self.state == "sleeping":
            self.stats.requests_while_sleeping += 1
            await self._awake.wait()
        model = (form.get("model") or b"").decode()
        if model != self.name:
            return web.json_response(
                {"error": {"message": f"The model `{model}` does not exist.", "code": 404}}, status=404
            )
        self.stats.served += 1
        return web.json_response({"text": f"[{self.name}] {len(form.get('file') or b'')} bytes of audio"})

    async def _tokenize(self, request: web.Request) -> web.Response:
        body = await self._admit(request)
        if isinstance(body, web.Response):
            return body
        tokens = list(range(len(str(body.get("prompt", "")).split())))
        return web.json_response({"count": len(tokens), "max_model_len": 256, "tokens": tokens})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await self._admit(request)
        if isinstance(body, web.Response):
            return body
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for i, text in enumerate(inputs):
            digest = hashlib.sha256(f"{self.name}:{text}".encode()).digest()
            data.append({"object": "embedding", "index": i, "embedding": [b / 255 for b in digest[:8]]})
        self.stats.served += 1
        return web.json_response(
            {
                "object": "list",
                "model": self.name,
                "data": data,
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )


async def _main() -> None:
    parser = argparse.ArgumentParser(description="vLLM stand-in engines sharing one simulated GPU")
    parser.add_argument("--engine", action="append", required=True, help="NAME=PORT:VRAM_GIB")
    parser.add_argument("--capacity", type=float, required=True, help="GPU VRAM in GiB")
    parser.add_argument("--residual", type=float, default=0.0)
    parser.add_argument("--token-s", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--sleep-s", type=float, default=0.02)
    parser.add_argument("--wake-s", type=float, default=0.02)
    parser.add_argument("--start-asleep", action="store_true", help="sleep every engine but the first")
    args = parser.parse_args()
    ledger = VramLedger(args.capacity)
    timings = Timings(
        start_s=0.0,
        sleep_s=args.sleep_s,
        wake_s=args.wake_s,
        token_s=args.token_s,
        default_tokens=args.tokens,
    )
    engines = []
    for spec in args.engine:
        name, _, rest = spec.partition("=")
        port, _, vram = rest.partition(":")
        engine = VllmEngineStandIn(
            name, ledger, float(vram), residual_gib=args.residual, timings=timings, port=int(port)
        )
        await engine.start(asleep=args.start_asleep and bool(engines))
        engines.append(engine)
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for engine in engines:
            await engine.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
