"""Wiring: the Switcher object (manager, proxy, admin), its aiohttp app, and serving it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from .admin import Admin, TokenSource
from .config import Config, read_admin_token
from .manager import Manager
from .metrics import Metrics
from .proxy import MODEL_ROUTES, Proxy, openai_error
from .server import ConnectionGuard, GuardedSite, guard_middleware, quiet_aiohttp_logs

log = logging.getLogger("switcher")


class ListenError(Exception):
    """The port cannot be bound; the message is one line for the operator."""


class Switcher:
    def __init__(self, config: Config, admin_token: str | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.manager = Manager(config, self.metrics)
        self.proxy = Proxy(self.manager, self.metrics, config.limits)
        self.admin = Admin(self.manager, self.metrics, TokenSource(config.admin_token_file, admin_token))
        self.guard = ConnectionGuard(config.limits)
        self._sessions: list[aiohttp.ClientSession] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        policy = self.config.policy
        # Proxy pool: no connection limit (the engines batch themselves), keep-alive connections reused.
        proxy_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=policy.upstream_connect_timeout_seconds),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        # Control calls get their own small pool, so a flood of requests cannot starve them.
        control_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
        self._sessions = [proxy_session, control_session]
        self.proxy.session = proxy_session
        await self.manager.start(control_session)
        self._tasks = [asyncio.create_task(self.proxy.watch_drains(), name="switcher-drain-watch")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.manager.stop()
        self.proxy.close()
        for session in self._sessions:
            await session.close()
        self._sessions = []

    def app(self) -> web.Application:
        # Bodies are read by the proxy within limits.max_body_bytes; other routes read none.
        app = web.Application(
            client_max_size=self.config.limits.max_body_bytes,
            middlewares=[guard_middleware, openai_not_found],
        )

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await self.start()
            yield
            await self.stop()

        app.cleanup_ctx.append(lifecycle)
        for path in MODEL_ROUTES:
            app.router.add_post(path, self.proxy.handle)
        app.router.add_get("/v1/models", self.proxy.list_models)
        app.router.add_get("/v1/models/{model:.+}", self.proxy.get_model)
        app.router.add_get("/v1/responses/{response_id}", self.proxy.handle_stored_response)
        app.router.add_post("/v1/responses/{response_id}/cancel", self.proxy.handle_stored_response)
        app.add_routes(self.admin.routes())
        if self.config.metrics_listen is None:
            app.add_routes(self.admin.health_routes())
        return app

    def metrics_app(self) -> web.Application:
        """``metrics_listen``'s app: /metrics, /healthz and /readyz only (reads no request bodies)."""
        app = web.Application(client_max_size=1024, middlewares=[openai_not_found])
        app.add_routes(self.admin.health_routes())
        return app


@web.middleware
async def openai_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown routes and wrong methods answer in the OpenAI error shape, not aiohttp's plain text."""
    unmatched = request.match_info.http_exception
    if isinstance(unmatched, web.HTTPNotFound):
        return openai_error(
            404,
            f"no route {request.method} {request.path[:200]} on this server",
            "invalid_request_error",
            "not_found",
        )
    if isinstance(unmatched, web.HTTPMethodNotAllowed):
        return openai_error(
            405,
            f"{request.method} is not allowed on {request.path[:200]}",
            "invalid_request_error",
            "method_not_allowed",
            Allow=", ".join(sorted(unmatched.allowed_methods)),
        )
    return await handler(request)


async def start_site(switcher: Switcher, host: str, port: int) -> web.AppRunner:
    """Start serving; returns the runner (``await runner.cleanup()`` stops). Used by serve and tests.

    Raises ``ListenError`` (after cleaning up) when the address cannot be bound.
    """
    limits = switcher.config.limits
    quiet_aiohttp_logs()
    # handler_cancellation: a client that disconnects cancels its handler, which closes the upstream
    # connection and so aborts the generation in vLLM.
    # shutdown_timeout: in-flight requests get this long on SIGTERM, below Kubernetes' default 30 s
    # grace period so they end before the kubelet kills the pod.
    runner = web.AppRunner(switcher.app(), access_log=None, handler_cancellation=True, shutdown_timeout=20)
    await runner.setup()
    switcher.guard.fit_to_fd_limit()
    site = GuardedSite(
        runner,
        host,
        port,
        switcher.guard,
        access_log=None,
        keepalive_timeout=limits.idle_timeout_seconds,
        # An answer sent before the body was read (413, 408) closes the connection instead of
        # reading the rest of a body nobody wants.
        lingering_time=0,
        max_line_size=8190,
        max_field_size=8190,
        max_headers=64,
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
    return runner


async def start_metrics_site(switcher: Switcher, host: str, port: int) -> web.AppRunner:
    """Serve ``metrics_listen``; start it after ``start_site`` (whose app starts the switcher)."""
    runner = web.AppRunner(
        switcher.metrics_app(),
        access_log=None,
        shutdown_timeout=1,
        keepalive_timeout=switcher.config.limits.idle_timeout_seconds,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(f"cannot listen on {host}:{port} (metrics_listen): {reason}") from None
    return runner


async def serve(config: Config) -> None:
    switcher = Switcher(config, read_admin_token(config))
    runner = await start_site(switcher, config.listen.host, config.listen.port)
    runners = [runner]
    if config.metrics_listen is not None:
        try:
            runners.insert(
                0, await start_metrics_site(switcher, config.metrics_listen.host, config.metrics_listen.port)
            )
        except ListenError:
            await runner.cleanup()
            raise
    log.info(
        "switcher listening on %s:%d with %d models (%s)",
        config.listen.host,
        config.listen.port,
        len(config.models),
        "co-residency by VRAM" if config.coresidency else "one awake model at a time",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    for each in runners:
        await each.cleanup()
