"""The listening side: connection cap, header and idle timeouts, and logs without request bytes.

aiohttp has a keep-alive timeout but no header timeout and no connection cap, and its server logger
prints the raw bytes of a request it cannot parse (headers, prompt, bearer token) while its 400 echoes
a malformed header back. ``GuardedHandler`` is aiohttp's protocol with those closed:

- a connection must complete its request headers within ``header_timeout_seconds`` of opening (or of
  its first byte after an idle keep-alive), and may idle ``idle_timeout_seconds`` between requests;
  while a handler runs the handler bounds itself (body and write timeouts in the proxy);
- at ``max_connections`` a new connection closes the oldest one that has no request running
  (idle, or still sending its headers), so idle connections cannot lock clients or probes out;
  when every connection runs a request, new ones go to a small reserve
  (``health_reserve_connections``) that answers only ``/healthz``, ``/readyz`` and ``/metrics``
  (anything else gets 503 at once); beyond it a connection is closed at once. The cap is kept
  below the process's file-descriptor limit, which is raised to its hard limit at start, so
  accept() never fails with "Too many open files";
- parse errors are answered with a fixed OpenAI-style 400 and logged as one line naming the error
  class only.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import traceback
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler

from .config import Limits

log = logging.getLogger("switcher.server")

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Descriptors kept for everything but client connections: engine connections (one per forwarded
# request, counted per client below), the control pool, logs, the listening socket.
_FD_MARGIN = 64
# Listen backlog, which is also how many connections asyncio accepts in one go (each takes a
# descriptor before the cap can close it). Lowered when descriptors are scarce.
ACCEPT_BACKLOG = 128
# Accept bursts whose descriptors can be open beyond the cap at once: asyncio accepts a burst in one
# loop iteration, makes their transports in the next, calls connection_made (where the cap refuses or
# evicts) in the third and closes the refused or evicted sockets only in the fourth, while a flood
# keeps the listening socket readable and a new burst arrives in every iteration.
_ACCEPT_BURSTS_IN_FLIGHT = 3
# A reserve connection must send its request quickly: it exists for probes, which do.
_RESERVE_HEADER_SECONDS = 2.0


class ConnectionGuard:
    """Counts connections and holds the limits every ``GuardedHandler`` applies."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.max_connections = limits.max_connections
        self.reserve = limits.health_reserve_connections
        self.accept_backlog = ACCEPT_BACKLOG
        self.normal = 0
        self.reserved = 0
        self.refused = 0
        self.evicted = 0
        # Connections with no request running, oldest first, per pool (normal, reserve): at the cap
        # the oldest of them makes room, so idle connections cannot lock out new clients or probes.
        self._waiting: tuple[dict[GuardedHandler, None], dict[GuardedHandler, None]] = ({}, {})

    def admit(self, handler: GuardedHandler) -> bool:
        """Count a new connection in; False when it must be refused."""
        if self.normal < self.max_connections:
            self.normal += 1
            return True
        if self._evict(self._waiting[0]):
            self.normal += 1
            return True
        # Every connection is running a request: the reserve, for health probes only.
        handler.reserve_slot = True
        if self.reserved < self.reserve or self._evict(self._waiting[1]):
            self.reserved += 1
            return True
        self.refused += 1
        return False

    def _evict(self, waiting: dict[GuardedHandler, None]) -> bool:
        if not waiting:
            return False
        oldest = next(iter(waiting))
        oldest.drop()
        self.evicted += 1
        return True

    def release(self, handler: GuardedHandler) -> None:
        self.set_waiting(handler, False)
        if handler.reserve_slot:
            self.reserved -= 1
        else:
            self.normal -= 1

    def set_waiting(self, handler: GuardedHandler, waiting: bool) -> None:
        pool = self._waiting[1 if handler.reserve_slot else 0]
        if waiting:
            pool.pop(handler, None)
            pool[handler] = None  # to the end: the newest
        else:
            pool.pop(handler, None)

    def fit_to_fd_limit(self) -> None:
        """Raise the soft fd limit to the hard one; lower the cap if the fds still do not cover it.

        Each client connection may need a second descriptor for its engine connection, and during
        a flood ``_ACCEPT_BURSTS_IN_FLIGHT`` accept bursts hold descriptors before the cap closes
        them; with few descriptors the burst (the backlog) shrinks so they stay a small share.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
            except (ValueError, OSError):
                pass
        if soft == resource.RLIM_INFINITY:
            return
        spare = max(0, soft - _FD_MARGIN)
        # At most a quarter of the spare descriptors for accepts in flight, never under 8 a burst.
        self.accept_backlog = min(ACCEPT_BACKLOG, max(8, spare // (4 * _ACCEPT_BURSTS_IN_FLIGHT)))
        in_flight = _ACCEPT_BURSTS_IN_FLIGHT * self.accept_backlog
        fit = max(1, (spare - in_flight) // 2 - self.reserve)
        if fit < self.max_connections:
            log.warning(
                "limits.max_connections=%d does not fit the file-descriptor limit %d; using %d",
                self.max_connections,
                soft,
                fit,
            )
            self.max_connections = fit


class GuardedHandler(RequestHandler):
    """aiohttp's HTTP/1 protocol with a connection cap, header/idle deadlines and quiet errors."""

    def __init__(self, server: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.guard = guard
        self.reserve_slot = False
        self.busy = False
        self.idle = False  # between requests on a keep-alive connection
        self._deadline: asyncio.TimerHandle | None = None
        self._counted = False

    # ---- connection lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        if not guard.admit(self):
            assert isinstance(transport, asyncio.Transport)
            transport.abort()  # over the cap and the reserve, all busy: refused before anything is read
            return
        self._counted = True
        guard.set_waiting(self, True)
        super().connection_made(transport)
        header_seconds = guard.limits.header_timeout_seconds
        if self.reserve_slot:
            header_seconds = min(header_seconds, _RESERVE_HEADER_SECONDS)
        self._arm(header_seconds)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self.guard.release(self)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.idle and data:
            self.idle = False
            # The first byte of a request on an idle keep-alive connection: its headers now have
            # header_timeout_seconds to arrive.
            self._arm(self.guard.limits.header_timeout_seconds)
        super().data_received(data)

    # ---- deadlines

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self._loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def drop(self) -> None:
        """Close this connection now and stop counting it (it made room for a new one)."""
        if self._counted:
            self._counted = False
            self.guard.release(self)
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def _expire(self) -> None:
        self._deadline = None
        if not self.busy and self.transport is not None:
            self.transport.abort()

    def request_started(self) -> None:
        self.busy = True
        self.idle = False
        self.guard.set_waiting(self, False)
        self._disarm()

    def request_finished(self) -> None:
        self.busy = False
        self.idle = True
        if self._counted:
            self.guard.set_waiting(self, True)
        # Covers writing the answer and then waiting for the next request on this connection.
        self._arm(self.guard.limits.idle_timeout_seconds)

    # ---- errors and logs: never the request's bytes

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            frames = "".join(traceback.format_tb(exc.__traceback__)) if exc is not None else ""
            log.error("internal error (%s)\n%s", type(exc).__name__ if exc else "unknown", frames)
            text = "internal error"
            err_type = "internal_error"
        else:
            log.info("refused a malformed request (%s)", type(exc).__name__ if exc else status)
            text = "malformed HTTP request"
            err_type = "invalid_request_error"
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        resp = web.json_response(
            {"error": {"message": text, "type": err_type, "param": None, "code": None}}, status=status
        )
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        name = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        log.error("%s (%s)", args[0] if args else "server error", name)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mark the connection busy while a handler runs; keep reserve connections to health paths."""
    protocol = request.protocol
    if isinstance(protocol, GuardedHandler):
        if protocol.reserve_slot and request.path not in HEALTH_PATHS:
            resp = web.json_response(
                {
                    "error": {
                        "message": "the switcher is at its connection limit; retry shortly",
                        "type": "service_unavailable",
                        "param": None,
                        "code": "server_busy",
                    }
                },
                status=503,
                headers={"Retry-After": "1"},
            )
            resp.force_close()
            return resp
        protocol.request_started()
    try:
        return await handler(request)
    finally:
        if isinstance(protocol, GuardedHandler):
            protocol.request_finished()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections are ``GuardedHandler`` protocols."""

    __slots__ = ("_guard", "_handler_kwargs")

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard, **kwargs: Any):
        super().__init__(runner, host, port, backlog=guard.accept_backlog)
        self._guard = guard
        self._handler_kwargs = kwargs

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def protocol() -> GuardedHandler:
            return GuardedHandler(server, self._guard, loop=loop, **self._handler_kwargs)

        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        if "_bound_port" in web.TCPSite.__slots__:  # aiohttp >= 3.11 reports the bound port
            self._bound_port = (
                self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
            )


class QuietServerLogs(logging.Filter):
    """Drop exception details from aiohttp's loggers: parse errors carry the raw request bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_aiohttp_logs() -> None:
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietServerLogs) for f in logger.filters):
            logger.addFilter(QuietServerLogs())
