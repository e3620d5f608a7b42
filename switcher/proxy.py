"""The OpenAI-compatible request path: route by ``model``, wait for it to be awake, forward.

Streaming responses are copied chunk by chunk as they arrive (no buffering). If the client goes
away, aiohttp cancels this handler (``handler_cancellation=True``), which closes the upstream
connection, and vLLM aborts the request when its client disconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from aiohttp import web

from .manager import Manager, ModelRuntime, Unavailable
from .metrics import Metrics

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


def openai_error(
    status: int, message: str, err_type: str, code: str | None = None, **headers: str
) -> web.Response:
    body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers or None)


class Proxy:
    def __init__(self, manager: Manager, metrics: Metrics) -> None:
        self.manager = manager
        self.metrics = metrics
        self.session: aiohttp.ClientSession | None = None  # set when the app starts

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = json.loads(body)
            name = payload.get("model") if isinstance(payload, dict) else None
        except ValueError:
            self.metrics.count_request(UNKNOWN_MODEL_LABEL, 400)
            return openai_error(400, "request body is not valid JSON", "invalid_request_error")
        m = self.manager.resolve(name)
        if m is None:
            self.metrics.count_request(UNKNOWN_MODEL_LABEL, 404)
            known = ", ".join(sorted(self.manager.models))
            return openai_error(
                404,
                f"The model `{name}` does not exist. Known models: {known}",
                "invalid_request_error",
                "model_not_found",
            )
        served = m.spec.engine_model_name
        if name != served:
            # An alias (or a switcher name that differs from --served-model-name): vLLM only knows
            # its served name, so rewrite the field. Only here do we pay for re-serialising.
            payload["model"] = served
            body = json.dumps(payload).encode()
        if not self.manager.try_admit(m):
            try:
                await self.manager.wait_admitted(m)
            except Unavailable as exc:
                self.metrics.count_request(m.name, 503)
                return openai_error(
                    503, exc.message, "service_unavailable", exc.code, **{"Retry-After": str(exc.retry_after)}
                )
        try:
            return await self._forward(request, m, body)
        except asyncio.CancelledError:
            self.metrics.count_request(m.name, CLIENT_CLOSED)  # the client went away
            raise
        finally:
            self.manager.release(m)

    async def _forward(self, request: web.Request, m: ModelRuntime, body: bytes) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        url = m.spec.base_url + request.rel_url.raw_path_qs
        session = self.session
        assert session is not None
        try:
            async with session.post(url, data=body, headers=headers) as upstream:
                if upstream.content_type == "text/event-stream":
                    return await self._stream(request, m, upstream)
                data = await upstream.read()
                self.metrics.count_request(m.name, upstream.status)
                out = web.Response(body=data, status=upstream.status)
                for key in _PASS_BACK:
                    if key in upstream.headers:
                        out.headers[key] = upstream.headers[key]
                return out
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            # Nothing reached the client yet: answer clearly and re-learn the engine's state.
            self.manager.report_engine_error(m)
            self.metrics.count_request(m.name, 503)
            log.warning("model %s: engine unreachable: %s", m.name, exc)
            return openai_error(
                503,
                f"the engine for model {m.name} is unreachable ({exc.__class__.__name__}); it may be restarting",
                "service_unavailable",
                "engine_unreachable",
                **{"Retry-After": str(self.manager.policy.retry_after_seconds)},
            )
        except aiohttp.ClientError as exc:
            self.manager.report_engine_error(m)
            self.metrics.count_request(m.name, 502)
            return openai_error(
                502, f"engine for model {m.name} failed: {exc}", "bad_gateway", "engine_error"
            )

    async def _stream(
        self, request: web.Request, m: ModelRuntime, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        out = web.StreamResponse(status=upstream.status)
        out.content_type = "text/event-stream"
        out.headers["Cache-Control"] = "no-cache"
        if "X-Request-Id" in upstream.headers:
            out.headers["X-Request-Id"] = upstream.headers["X-Request-Id"]
        await out.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
        except ConnectionResetError:
            # The client vanished between two chunks; leaving closes the upstream request too.
            self.metrics.count_request(m.name, CLIENT_CLOSED)
            return out
        except aiohttp.ClientError as exc:
            # The engine died mid-stream. Headers are gone, so tell the client in-band, then end.
            self.manager.report_engine_error(m)
            self.metrics.count_request(m.name, 502)
            log.warning("model %s: upstream stream broke: %s", m.name, exc)
            error = {
                "error": {
                    "message": f"the engine for model {m.name} stopped mid-stream ({exc.__class__.__name__})",
                    "type": "bad_gateway",
                    "param": None,
                    "code": "engine_error",
                }
            }
            await out.write(b"data: " + json.dumps(error).encode() + b"\n\n")
            return out
        self.metrics.count_request(m.name, upstream.status)
        await out.write_eof()
        return out

    async def list_models(self, request: web.Request) -> web.Response:
        data = []
        for m in self.manager.models.values():
            data.append(
                {
                    "id": m.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "k3sllm",
                    "state": str(m.state),
                    "aliases": list(m.spec.aliases),
                }
            )
        return web.json_response({"object": "list", "data": data})
