"""Admin API (bearer token), boot grants for init containers, health and metrics endpoints."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import ADMIN_TOKEN_ENV
from .manager import Manager
from .metrics import Metrics
from .state import ModelRuntime


class TokenSource:
    """The admin token, re-read when its file changes (Kubernetes updates mounted Secrets in place)."""

    def __init__(self, path: Path | None, initial: str | None) -> None:
        self.path = path
        self.token = initial
        self._mtime = self._stat()

    def _stat(self) -> float | None:
        if self.path is None or os.environ.get(ADMIN_TOKEN_ENV):
            return None
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def current(self) -> str | None:
        mtime = self._stat()
        if mtime is not None and mtime != self._mtime:
            self._mtime = mtime
            with contextlib.suppress(OSError):  # unreadable for a moment: keep the last good token
                # An emptied Secret revokes the token: the admin API is then disabled, not left open
                # to whoever knew the old one.
                self.token = self.path.read_text().strip() or None  # type: ignore[union-attr]
        return self.token


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class Admin:
    def __init__(self, manager: Manager, metrics: Metrics, tokens: TokenSource) -> None:
        self.manager = manager
        self.metrics = metrics
        self.tokens = tokens

    def health_routes(self) -> list[web.RouteDef]:
        """Probes and metrics: on the main port, or on ``metrics_listen`` when that is set."""
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics_endpoint),
        ]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/boot/{model}", self.boot),
            web.get("/admin/models", self.list_models),
            web.post("/admin/models/{model}/activate", self.activate),
            web.post("/admin/models/{model}/sleep", self.sleep),
            web.post("/admin/models/{model}/drain", self.drain),
            web.delete("/admin/boot/{model}", self.revoke_boot),
        ]

    # ---- auth

    def _authorize(self, request: web.Request) -> web.Response | None:
        token = self.tokens.current()
        if token is None:
            return _error(
                403,
                f"admin API disabled: no token configured (admin_token_file or env {ADMIN_TOKEN_ENV})",
            )
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        # Constant-time comparison of bytes, so response timing says nothing about the token. Header
        # bytes that are not UTF-8 reach us as surrogates; they cannot match, but must not raise.
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, token.encode()):
            return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        return None

    def _model(self, request: web.Request) -> ModelRuntime:
        m = self.manager.resolve(request.match_info["model"])
        if m is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"unknown model {request.match_info['model']}"}),
                content_type="application/json",
            )
        return m

    # ---- open endpoints

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if not self.manager.ready:
            return _error(503, "learning engine states")
        return web.json_response({"status": "ready"})

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def boot(self, request: web.Request) -> web.Response:
        """Boot grant for a vLLM init container: 200 when it may start, 423 (Locked) to retry.

        Long-polls up to ``?wait=`` seconds (capped by policy.boot_poll_max_seconds). Unauthenticated
        on purpose: init containers carry no secret, and the worst a caller can do is delay a boot;
        the NetworkPolicy restricts who reaches the switcher.
        """
        name = request.match_info["model"]
        m = self.manager.resolve(name)
        if m is None:
            return _error(404, f"unknown model {name}")
        cap = self.manager.policy.boot_poll_max_seconds
        try:
            wait = min(float(request.query.get("wait", cap)), cap)
        except ValueError:
            return _error(400, "wait must be a number of seconds")
        granted, status = await self.manager.request_boot(m.name, max(wait, 0.0))
        if granted:
            return web.json_response(status)
        return web.json_response(status, status=423, headers={"Retry-After": "1"})

    # ---- admin endpoints

    async def list_models(self, request: web.Request) -> web.Response:
        if denied := self._authorize(request):
            return denied
        m = self.manager
        return web.json_response(
            {
                "models": [m.describe(x) for x in m.models.values()],
                "switching": m.switching,
                "boot": {"holder": m.grant, "queue": m.boot_queue},
                "vram_capacity": m.capacity,
            }
        )

    async def activate(self, request: web.Request) -> web.Response:
        if denied := self._authorize(request):
            return denied
        m = self._model(request)
        ok, message = await self.manager.activate(m)
        return web.json_response(
            {"ok": ok, "message": message, **self.manager.describe(m)}, status=200 if ok else 409
        )

    async def sleep(self, request: web.Request) -> web.Response:
        if denied := self._authorize(request):
            return denied
        m = self._model(request)
        ok, message = await self.manager.sleep(m)
        return web.json_response(
            {"ok": ok, "message": message, **self.manager.describe(m)}, status=200 if ok else 409
        )

    async def revoke_boot(self, request: web.Request) -> web.Response:
        """Take back a boot grant that is holding the GPU for an engine that is not coming up."""
        if denied := self._authorize(request):
            return denied
        m = self._model(request)
        ok, message = await self.manager.revoke_boot(m)
        return web.json_response(
            {"ok": ok, "message": message, **self.manager.describe(m)}, status=200 if ok else 409
        )

    async def drain(self, request: web.Request) -> web.Response:
        if denied := self._authorize(request):
            return denied
        m = self._model(request)
        try:
            timeout = float(request.query.get("timeout", self.manager.policy.drain_timeout_seconds))
        except ValueError:
            return _error(400, "timeout must be a number of seconds")
        return web.json_response(await self.manager.drain(m, timeout))
