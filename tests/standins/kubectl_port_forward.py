#!/usr/bin/env python3
"""TEST STAND-IN for ``kubectl port-forward`` (k3sllm tests only; it runs no Kubernetes).

roles/verify's script (verify.yml, switch_model.yml) reaches the switcher and Prometheus, which live
inside the cluster, through ``kubectl port-forward``. Tests have no cluster: the role's
``verify_kubectl`` points at this file, which behaves as kubectl does for the one form the script
uses and forwards to a test server instead of a pod:

    kubectl [--kubeconfig=FILE] -n NS port-forward --address 127.0.0.1 service/NAME :PORT

It listens on a free port of 127.0.0.1, prints ``Forwarding from 127.0.0.1:<local> -> <PORT>`` (as
kubectl does) and copies bytes both ways for every connection until it is terminated. An unknown
service or port fails as kubectl does (``Error from server (NotFound)``, exit 1). Anything else is
refused, so that a change of the script that needs more is noticed.

The services come from the JSON file named by ``K3SLLM_STANDIN_KUBECTL_FORWARDS``:
``{"forwards": {"NS/NAME:PORT": "127.0.0.1:TARGET_PORT"}, "calls": []}``; each call's argv (after
``kubectl``) is appended to ``calls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
from pathlib import Path


def fail(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(1)


def record(state_path: Path, argv: list[str]) -> dict:
    with state_path.open("r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        state = json.load(f)
        state.setdefault("calls", []).append(argv)
        f.seek(0)
        f.truncate()
        json.dump(state, f)
    return state


def parse(argv: list[str]) -> tuple[str, str, str]:
    """(namespace, target, remote port) of a port-forward call; exits as kubectl does on anything else."""
    namespace = "default"
    words: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--kubeconfig="):
            continue
        if arg in ("-n", "--namespace"):
            namespace = next(args)
        elif arg == "--address":
            if next(args) != "127.0.0.1":
                fail("stand-in: only --address 127.0.0.1 is supported")
        elif arg.startswith("-"):
            fail(f"stand-in: flag {arg} is not supported")
        else:
            words.append(arg)
    if len(words) != 3 or words[0] != "port-forward" or not words[2].startswith(":"):
        fail(f"stand-in: only 'port-forward TARGET :PORT' is supported, got {words}")
    return namespace, words[1], words[2][1:]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


async def serve(target_host: str, target_port: int, remote_port: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        except OSError as exc:
            sys.stderr.write(f"E0000 portforward: error forwarding port {remote_port}: {exc}\n")
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    local = server.sockets[0].getsockname()[1]
    print(f"Forwarding from 127.0.0.1:{local} -> {remote_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    argv = sys.argv[1:]
    state = record(Path(os.environ["K3SLLM_STANDIN_KUBECTL_FORWARDS"]), argv)
    namespace, target, port = parse(argv)
    kind, _, name = target.partition("/")
    if kind not in ("service", "svc"):
        fail(f"stand-in: only service/NAME targets are supported, got {target}")
    address = state["forwards"].get(f"{namespace}/{name}:{port}")
    if address is None:
        fail(f'Error from server (NotFound): services "{name}" not found')
    host, _, target_port = address.rpartition(":")
    asyncio.run(serve(host, int(target_port), port))


if __name__ == "__main__":
    main()
