"""The OpenAI-compatible request path: route by ``model``, wait for it to be awake, forward.

Streaming responses are copied chunk by chunk as they arrive (no buffering). If the client goes
away, aiohttp cancels this handler (``handler_cancellation=True``), which closes the upstream
connection, and vLLM aborts the request when its client disconnects.

What one client can make this hold is bounded (README "Limits"): the body (``max_body_bytes``,
read within ``body_timeout_seconds``, counted against ``max_buffered_body_bytes`` until it has been
sent to the engine), the time a write to it may block (``write_timeout_seconds``), and a stream of a
model being put to sleep (ended once the drain gives up on it). Error answers name no engine URL
and carry no engine text: clients here are not authenticated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from aiohttp import web

from .body import BodyError, ByteBudget, find_form_model, find_model, replace_form_value, replace_span
from .config import Limits
from .manager import Manager
from .metrics import Metrics
from .state import ModelRuntime, Unavailable

log = logging.getLogger("switcher.proxy")

# Headers that describe one hop, not the message (RFC 9110 7.6.1), plus ones aiohttp sets itself.
_HOP_HEADERS = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        "Accept-Encoding",
    )
)
_PASS_BACK = ("Content-Type", "X-Request-Id")
UNKNOWN_MODEL_LABEL = "_unknown"
CLIENT_CLOSED = 499  # nginx's code for "client closed the request"

# vLLM's routes that carry the model in a JSON body (vLLM 0.32 OpenAI server and its extras).
MODEL_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/audio/transcriptions",  # multipart/form-data: `model` is a form field
    "/v1/audio/translations",
    "/tokenize",
    "/detokenize",
    "/pooling",
    "/classify",
    "/score",
    "/v1/score",
    "/rerank",
    "/v1/rerank",
    "/v2/rerank",
)
# Responses the switcher saw created, by id, so `GET /v1/responses/{id}` (and its cancel) reach the
# engine that holds them; the oldest are forgotten past this many.
RESPONSE_IDS_KEPT = 10_000
_RESPONSE_ID = re.compile(rb'"id"\s*:\s*"(resp_[A-Za-z0-9_-]{1,128})"')
# A response's id is in the first bytes of its answer (JSON, or the first stream event).
_RESPONSE_ID_WITHIN = 4096
_DONE = b"data: [DONE]"
# Bodies above this are scanned for `model` in a worker thread, so the event loop keeps serving.
_SCAN_INLINE_BYTES = 256 * 1024
# A write pending this long counts as stuck (a client that reads keeps writes short).
_STUCK_WRITE_SECONDS = 0.5
# Chunked bodies (no Content-Length) reserve their budget in steps of this size as they arrive.
_BUDGET_STEP = 256 * 1024


def openai_error(
    status: int,
    message: str,
    err_type: str,
    code: str | None = None,
    param: str | None = None,
    **headers: str,
) -> web.Response:
    body = {"error": {"message": message, "type": err_type, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers or None)


class _Exchange:
    """One proxied request: its outcome is counted once, as the client experienced it."""

    __slots__ = ("counted", "cut", "delivered", "label", "waiting_budget", "writing_since")

    def __init__(self) -> None:
        self.label = UNKNOWN_MODEL_LABEL
        self.counted = False
        self.delivered = False  # the client has the whole answer (e.g. `data: [DONE]` was written)
        self.cut = False  # ended by the switcher: stuck on a client when its model's drain gave up
        self.waiting_budget = False
        self.writing_since: float | None = None  # set while a write to the client is pending


class Proxy:
    def __init__(self, manager: Manager, metrics: Metrics, limits: Limits | None = None) -> None:
        self.manager = manager
        self.metrics = metrics
        self.limits = limits or Limits()
        self.budget = ByteBudget(self.limits.max_buffered_body_bytes)
        # One thread scans large bodies, so they take at most one core's share between them.
        self._scanner = ThreadPoolExecutor(1, thread_name_prefix="switcher-body-scan")
        self.session: aiohttp.ClientSession | None = None  # set when the app starts
        # In-flight forwards by model, so a drain that gives up can end them (see _watch_drains).
        self._forwards: dict[str, dict[asyncio.Task[Any], _Exchange]] = {name: {} for name in manager.models}
        self._drain_started: dict[str, float] = {}
        self.responses: OrderedDict[str, str] = OrderedDict()  # response id -> model name

    def close(self) -> None:
        self._scanner.shutdown(wait=False, cancel_futures=True)

    def _count(self, ex: _Exchange, code: int) -> None:
        if not ex.counted:
            ex.counted = True
            self.metrics.count_request(ex.label, code)

    # ------------------------------------------------------------------ the request path

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ex = _Exchange()
        try:
            return await self._handle(request, ex)
        except asyncio.CancelledError:
            # The client went away, or a drain ended the request; a client that already had the
            # whole answer (the openai SDK closes right after `data: [DONE]`) was served.
            self._count(ex, 200 if ex.delivered else CLIENT_CLOSED)
            raise

    async def _handle(self, request: web.Request, ex: _Exchange) -> web.StreamResponse:
        limits = self.limits
        declared = request.content_length
        if declared is not None and declared > limits.max_body_bytes:
            return self._too_large(request, ex)
        reserved = 0

        def release_body() -> None:
            nonlocal reserved
            if reserved:
                self.budget.release(reserved)
                reserved = 0
            # Sent: free it now, not when a long stream ends (unless the transport still holds a
            # view of it, as Python 3.12's selector transport may; then it goes with the handler).
            with contextlib.suppress(BufferError):
                body.clear()

        try:
            try:
                async with asyncio.timeout(limits.body_timeout_seconds):
                    body, reserved = await self._read_body(request, declared, ex)
            except TimeoutError:
                if ex.waiting_budget:
                    return self._refuse(
                        request,
                        ex,
                        503,
                        "the switcher holds as many request bodies as it may (max_buffered_body_bytes); "
                        "retry shortly",
                        "server_busy",
                    )
                return self._refuse(
                    request,
                    ex,
                    408,
                    f"the request body did not arrive within {limits.body_timeout_seconds:g}s",
                    "request_timeout",
                )
            except _TooLarge:
                return self._too_large(request, ex)
            form = request.content_type == "multipart/form-data"
            try:
                name: object
                if form:
                    name, span = find_form_model(body, request.headers.get("Content-Type", ""))
                elif len(body) > _SCAN_INLINE_BYTES:
                    name, span = await asyncio.get_running_loop().run_in_executor(
                        self._scanner, find_model, body, limits.max_json_depth, limits.max_json_elements
                    )
                else:
                    name, span = find_model(body, limits.max_json_depth, limits.max_json_elements)
            except BodyError as exc:
                self._count(ex, exc.status)
                return openai_error(exc.status, exc.message, "invalid_request_error", exc.code, exc.param)
            m = self.manager.resolve(name)
            if m is None:
                self._count(ex, 404)
                known = ", ".join(sorted(self.manager.models))
                shown = name if isinstance(name, str) and len(name) <= 200 else "(a long name)"
                return openai_error(
                    404,
                    f"The model `{shown}` does not exist. Known models: {known}",
                    "invalid_request_error",
                    "model_not_found",
                    "model",
                )
            ex.label = m.name
            served = m.spec.engine_model_name
            if name != served:
                # An alias (or a switcher name that differs from --served-model-name): vLLM only
                # knows its served name. The value is replaced in place; the rest stays as sent.
                (replace_form_value if form else replace_span)(body, span, served)
            return await self._admit_and_forward(request, m, body, ex, release_body)
        finally:
            if reserved:
                self.budget.release(reserved)

    async def _admit_and_forward(
        self,
        request: web.Request,
        m: ModelRuntime,
        body: bytearray,
        ex: _Exchange,
        release_body: Callable[[], None],
    ) -> web.StreamResponse:
        if not self.manager.try_admit(m):
            try:
                await self.manager.wait_admitted(m)
            except Unavailable as exc:
                self._count(ex, 503)
                return openai_error(
                    503,
                    exc.message,
                    "service_unavailable",
                    exc.code,
                    **{"Retry-After": str(exc.retry_after)},
                )
        task = asyncio.current_task()
        assert task is not None
        forwards = self._forwards[m.name]
        forwards[task] = ex
        try:
            return await self._forward(request, m, body, ex, release_body)
        finally:
            forwards.pop(task, None)
            self.manager.release(m)

    async def handle_stored_response(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/responses/{id}`` and ``POST /v1/responses/{id}/cancel``: no model in the request,
        so the response's id says which engine holds it (recorded when the switcher forwarded it)."""
        ex = _Exchange()
        try:
            response_id = request.match_info["response_id"]
            name = self.responses.get(response_id)
            if name is None:
                self._count(ex, 404)
                shown = response_id if len(response_id) <= 200 else "(a long id)"
                return openai_error(
                    404,
                    f"Response with id '{shown}' not found.",
                    "invalid_request_error",
                    "response_not_found",
                    "response_id",
                )
            m = self.manager.models[name]
            ex.label = m.name
            return await self._admit_and_forward(request, m, bytearray(), ex, lambda: None)
        except asyncio.CancelledError:
            self._count(ex, 200 if ex.delivered else CLIENT_CLOSED)
            raise

    def _remember_response(self, request: web.Request, m: ModelRuntime, head: bytes) -> bool:
        """Record the id of a response created through ``POST /v1/responses``; True once found."""
        if request.path != "/v1/responses":
            return True
        match = _RESPONSE_ID.search(head, 0, _RESPONSE_ID_WITHIN)
        if match is None:
            return len(head) >= _RESPONSE_ID_WITHIN
        self.responses[match.group(1).decode()] = m.name
        self.responses.move_to_end(match.group(1).decode())
        while len(self.responses) > RESPONSE_IDS_KEPT:
            self.responses.popitem(last=False)
        return True

    async def _read_body(
        self, request: web.Request, declared: int | None, ex: _Exchange
    ) -> tuple[bytearray, int]:
        """Read the body within the byte budget. Returns it and the bytes reserved for it."""
        limit = self.limits.max_body_bytes
        reserved = 0
        body = bytearray()
        try:
            if declared is not None:
                ex.waiting_budget = True
                await self.budget.acquire(declared)
                ex.waiting_budget = False
                reserved = declared
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                if len(body) + len(chunk) > limit:
                    raise _TooLarge
                if len(body) + len(chunk) > reserved:  # chunked, or more than declared
                    step = min(max(_BUDGET_STEP, len(chunk)), limit - reserved)
                    ex.waiting_budget = True
                    await self.budget.acquire(step)
                    ex.waiting_budget = False
                    reserved += step
                body += chunk
        except BaseException:
            if reserved:
                self.budget.release(reserved)
            raise
        return body, reserved

    def _too_large(self, request: web.Request, ex: _Exchange) -> web.Response:
        return self._refuse(
            request,
            ex,
            413,
            f"the request body is larger than {self.limits.max_body_bytes} bytes (max_body_bytes)",
            "request_too_large",
        )

    def _refuse(
        self, request: web.Request, ex: _Exchange, status: int, message: str, code: str
    ) -> web.Response:
        """An answer sent before the body was read: the connection closes (the rest is not read)."""
        self._count(ex, status)
        err_type = "service_unavailable" if status == 503 else "invalid_request_error"
        resp = openai_error(
            status, message, err_type, code, **({"Retry-After": "1"} if status == 503 else {})
        )
        resp.force_close()
        return resp

    # ------------------------------------------------------------------ forwarding

    async def _forward(
        self,
        request: web.Request,
        m: ModelRuntime,
        body: bytearray,
        ex: _Exchange,
        release_body: Callable[[], None],
    ) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        url = m.spec.base_url + request.rel_url.raw_path_qs
        session = self.session
        assert session is not None
        try:
            upstream_cm = session.request(request.method, url, data=body, headers=headers)
            upstream = await upstream_cm.__aenter__()
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            # Nothing reached the client yet: answer clearly and re-learn the engine's state.
            self.manager.report_engine_error(m)
            self._count(ex, 503)
            log.warning("model %s: engine unreachable: %s", m.name, exc)
            return openai_error(
                503,
                f"the engine for model {m.name} is unreachable; it may be restarting",
                "service_unavailable",
                "engine_unreachable",
                **{"Retry-After": str(self.manager.policy.retry_after_seconds)},
            )
        except aiohttp.ClientError as exc:
            return self._engine_failed(m, ex, exc)
        release_body()
        try:
            if upstream.content_type == "text/event-stream":
                return await self._stream(request, m, upstream, ex)
            try:
                data = await upstream.read()
            except aiohttp.ClientError as exc:
                return self._engine_failed(m, ex, exc)
            if upstream.status == 200:
                self._remember_response(request, m, data[:_RESPONSE_ID_WITHIN])
            out = web.StreamResponse(status=upstream.status)
            for key in _PASS_BACK:
                if key in upstream.headers:
                    out.headers[key] = upstream.headers[key]
            await self._send(request, out, data, ex)
            return out
        finally:
            await upstream_cm.__aexit__(None, None, None)

    def _engine_failed(self, m: ModelRuntime, ex: _Exchange, exc: BaseException) -> web.Response:
        self.manager.report_engine_error(m)
        self._count(ex, 502)
        log.warning("model %s: engine failed: %s: %s", m.name, exc.__class__.__name__, exc)
        return openai_error(502, f"the engine for model {m.name} failed", "bad_gateway", "engine_error")

    async def _write(self, request: web.Request, out: web.StreamResponse, data: bytes, ex: _Exchange) -> None:
        """Write within write_timeout_seconds; a client that stopped reading is cut off."""
        ex.writing_since = time.monotonic()
        try:
            async with asyncio.timeout(self.limits.write_timeout_seconds):
                await out.write(data)
            ex.writing_since = None
        except TimeoutError:
            log.info(
                "model %s: client stopped reading for %gs; closing",
                ex.label,
                self.limits.write_timeout_seconds,
            )
            if request.transport is not None:
                request.transport.abort()
            raise _ClientGone from None
        except ConnectionError:  # aiohttp's ClientConnectionResetError is one too
            raise _ClientGone from None

    async def _send(self, request: web.Request, out: web.StreamResponse, data: bytes, ex: _Exchange) -> None:
        """Send a whole (non-streamed) answer ourselves, so a client that does not read is bounded."""
        out.content_length = len(data)
        try:
            await out.prepare(request)
            await self._write(request, out, data, ex)
            await out.write_eof()
        except _ClientGone:
            self._count(ex, CLIENT_CLOSED)
            return
        except ConnectionError:
            self._count(ex, CLIENT_CLOSED)
            return
        self._count(ex, out.status)

    async def _stream(
        self, request: web.Request, m: ModelRuntime, upstream: aiohttp.ClientResponse, ex: _Exchange
    ) -> web.StreamResponse:
        out = web.StreamResponse(status=upstream.status)
        out.content_type = "text/event-stream"
        out.headers["Cache-Control"] = "no-cache"
        if "X-Request-Id" in upstream.headers:
            out.headers["X-Request-Id"] = upstream.headers["X-Request-Id"]
        try:
            await out.prepare(request)
        except ConnectionError:
            self._count(ex, CLIENT_CLOSED)
            return out
        tail = b""
        head = b""
        looking = upstream.status == 200  # for a new response's id, in the first bytes
        chunks = upstream.content.iter_any()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except aiohttp.ClientError as exc:
                # The engine died mid-stream. Headers are gone, so tell the client in-band, then end.
                self.manager.report_engine_error(m)
                self._count(ex, 502)
                log.warning("model %s: upstream stream broke: %s", m.name, exc)
                error = (
                    b'data: {"error": {"message": "the engine for model '
                    + m.name.encode()
                    + b' stopped mid-stream", "type": "bad_gateway", "param": null, "code": "engine_error"}}\n\n'
                )
                with contextlib.suppress(_ClientGone):
                    await self._write(request, out, error, ex)
                return out
            try:
                await self._write(request, out, chunk, ex)
            except _ClientGone:
                # A client-side reset, not an engine failure: no probe, counted as 499.
                self._count(ex, CLIENT_CLOSED)
                return out
            if looking:
                head = (head + chunk)[:_RESPONSE_ID_WITHIN]
                looking = not self._remember_response(request, m, head)
            tail = (tail + chunk)[-64:]
            if _DONE in tail:
                ex.delivered = True
        ex.delivered = True  # the engine ended the stream and the client has every byte of it
        self._count(ex, upstream.status)
        with contextlib.suppress(ConnectionError):
            await out.write_eof()
        return out

    # ------------------------------------------------------------------ drains

    async def watch_drains(self) -> None:
        """End forwards of a draining model that are stuck writing to their client when the drain
        gives up (drain_timeout_seconds).

        The manager then puts the engine to sleep anyway, and vLLM ends (aborts) what it still
        generates, which ends the forwards that are moving. One whose client stopped reading would
        sit in its write until write_timeout_seconds, holding the model's in-flight count (and so
        the next switch and its idle TTL): it is ended here.
        """
        grace = self.manager.policy.drain_timeout_seconds
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for name, m in self.manager.models.items():
                if not (m.draining and m.inflight):
                    self._drain_started.pop(name, None)
                    continue
                since = self._drain_started.setdefault(name, now)
                if now - since >= grace:
                    for task, ex in list(self._forwards[name].items()):
                        stuck = (
                            ex.writing_since is not None and now - ex.writing_since >= _STUCK_WRITE_SECONDS
                        )
                        if stuck and not ex.cut:
                            ex.cut = True
                            task.cancel()

    # ------------------------------------------------------------------ model listing

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [self._card(m) for m in self.manager.models.values()]}
        )

    async def get_model(self, request: web.Request) -> web.Response:
        m = self.manager.resolve(request.match_info["model"])
        if m is None:
            return openai_error(
                404, "The model does not exist.", "invalid_request_error", "model_not_found", "model"
            )
        return web.json_response(self._card(m))

    def _card(self, m: ModelRuntime) -> dict[str, object]:
        return {
            "id": m.name,
            "object": "model",
            "created": 0,
            "owned_by": "k3sllm",
            "state": str(m.state),
            "aliases": list(m.spec.aliases),
        }


class _TooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass
