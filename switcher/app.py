"""Wiring: the Switcher object (manager, proxy, admin), its aiohttp app, and serving it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from .admin import Admin, TokenSource
from .config import Config, read_admin_token
from .manager import Manager
from .metrics import Metrics
from .proxy import Proxy

log = logging.getLogger("switcher")


class Switcher:
    def __init__(self, config: Config, admin_token: str | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.manager = Manager(config, self.metrics)
        self.proxy = Proxy(self.manager, self.metrics)
        self.admin = Admin(self.manager, self.metrics, TokenSource(config.admin_token_file, admin_token))
        self._sessions: list[aiohttp.ClientSession] = []

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

    async def stop(self) -> None:
        await self.manager.stop()
        for session in self._sessions:
            await session.close()
        self._sessions = []

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            await self.start()
            yield
            await self.stop()

        app.cleanup_ctx.append(lifecycle)
        app.router.add_post("/v1/chat/completions", self.proxy.handle)
        app.router.add_post("/v1/completions", self.proxy.handle)
        app.router.add_post("/v1/embeddings", self.proxy.handle)
        app.router.add_get("/v1/models", self.proxy.list_models)
        app.add_routes(self.admin.routes())
        return app


async def start_site(switcher: Switcher, host: str, port: int) -> web.AppRunner:
    """Start serving; returns the runner (``await runner.cleanup()`` stops). Used by serve and tests."""
    # handler_cancellation: a client that disconnects cancels its handler, which closes the upstream
    # connection and so aborts the generation in vLLM.
    # shutdown_timeout: in-flight requests get this long on SIGTERM, below Kubernetes' default 30 s
    # grace period so they end before the kubelet kills the pod.
    runner = web.AppRunner(switcher.app(), access_log=None, handler_cancellation=True, shutdown_timeout=20)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner


async def serve(config: Config) -> None:
    switcher = Switcher(config, read_admin_token(config))
    runner = await start_site(switcher, config.listen.host, config.listen.port)
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
    await runner.cleanup()
