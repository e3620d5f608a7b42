"""The switcher runs on the vLLM image: it may import only the stdlib and what that image ships."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from k3sllm_testlib.real_vllm import REPO, VENV, free_port, require_setup

PACKAGE = Path(__file__).resolve().parents[2] / "switcher"
SHIPPED = {"aiohttp", "fastapi", "uvicorn", "httpx", "prometheus_client", "pydantic", "yaml"}


def test_switcher_imports_only_stdlib_and_what_vllm_ships():
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    assert "aiohttp" in found  # the scan works
    foreign = {
        top: files
        for top, files in found.items()
        if top not in sys.stdlib_module_names and top not in SHIPPED and top != "__future__"
    }
    assert foreign == {}, f"imports not on the vLLM image: {foreign}"


@pytest.mark.realvllm
def test_switcher_serves_with_the_libraries_of_the_vllm_environment(tmp_path):
    """The switcher runs on the vLLM image, whose aiohttp and pydantic it does not choose, and its
    connection limits build on aiohttp's request handler. Start it with the Python of the real vLLM
    build (.venv-vllm) and touch the limits: health, a malformed request, an oversized body."""
    require_setup()
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "limits": {"max_body_bytes": 64 * 1024, "max_buffered_body_bytes": 64 * 1024},
                "models": [{"name": "a", "base_url": f"http://127.0.0.1:{free_port()}"}],
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "switcher.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(VENV / "bin" / "python"), "-m", "switcher", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-secret\x01\r\n\r\n"
            )
            answer = raw.recv(4096)
        assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), answer
        assert b"sk-secret" not in answer

        too_big = httpx.post(
            base + "/v1/chat/completions",
            content=b'{"model": "a", "x": "' + b"y" * 100_000 + b'"}',
            timeout=30,
        )
        assert too_big.status_code == 413, too_big.text
        assert too_big.json()["error"]["code"]
        assert "sk-secret" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
