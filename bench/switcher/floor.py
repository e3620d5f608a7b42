"""The floor: the most minimal aiohttp pass-through proxy we can write (one fixed upstream).

Any Python proxy in front of vLLM costs at least this much; the switcher is measured against it.
Run: ``python -m bench.switcher.floor --port 9000 --upstream http://127.0.0.1:8101``
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web

HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "accept-encoding"}


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    state: dict[str, aiohttp.ClientSession] = {}

    async def session_ctx(_: web.Application):
        state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        yield
        await state["s"].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with state["s"].post(upstream + request.rel_url.raw_path_qs, data=body, headers=headers) as up:
            if up.content_type == "text/event-stream":
                out = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
                await out.prepare(request)
                async for chunk in up.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
            return web.Response(body=await up.read(), status=up.status, content_type=up.content_type)

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        handler_cancellation=True,
    )


if __name__ == "__main__":
    main()
