"""A naive one-lock switcher, the baseline for mixed-model throughput.

One lock; requests for the awake model run concurrently, a request for another model takes the lock,
waits for the in-flight ones, sleeps the awake engine, wakes its own, and goes on. Correct (it
never sends to a sleeping engine) but with no batching, no residency and no co-residency, so a
random mix of models makes it switch on nearly every request.
Run: ``python -m bench.switcher.naive --port 9001 --model a=http://127.0.0.1:8101 ...``
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
from aiohttp import web


def make_app(upstreams: dict[str, str], current: str) -> web.Application:
    app = web.Application()
    lock = asyncio.Lock()
    idle = asyncio.Event()
    idle.set()
    state: dict = {"current": current, "inflight": 0}

    async def session_ctx(_: web.Application):
        state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await state["s"].close()

    async def switch(model: str) -> None:
        s = state["s"]
        await idle.wait()
        async with s.post(upstreams[state["current"]] + "/sleep?level=1") as r:
            r.raise_for_status()
        async with s.post(upstreams[model] + "/wake_up") as r:
            r.raise_for_status()
        async with s.post(upstreams[model] + "/reset_prefix_cache") as r:
            r.raise_for_status()
        state["current"] = model

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        model = json.loads(body)["model"]
        if model not in upstreams:  # before the lock: an unknown name must not sleep the awake engine
            return web.json_response({"error": f"unknown model {model}"}, status=404)
        async with lock:
            if state["current"] != model:
                await switch(model)
            state["inflight"] += 1
            idle.clear()
        try:
            url = upstreams[model] + request.rel_url.raw_path_qs
            async with state["s"].post(url, data=body, headers={"Content-Type": "application/json"}) as up:
                return web.Response(body=await up.read(), status=up.status, content_type=up.content_type)
        finally:
            state["inflight"] -= 1
            if state["inflight"] == 0:
                idle.set()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", required=True, help="NAME=URL; the first starts awake")
    args = parser.parse_args()
    upstreams = dict(spec.split("=", 1) for spec in args.model)
    first = args.model[0].split("=", 1)[0]
    web.run_app(make_app(upstreams, first), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
