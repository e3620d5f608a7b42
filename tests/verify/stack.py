"""The test stack for roles/verify: the real switcher in front of vLLM stand-in engines, a Prometheus
API stand-in and a ``kubectl port-forward`` stand-in that reaches them, all on 127.0.0.1.

The stack runs on an event loop of its own (a thread), so the verify script and ansible-playbook can
run as subprocesses, as users run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k3sllm_testlib import REPO, free_port

from standins.prometheus_api import PrometheusApiStandIn
from standins.vllm_cluster import Cluster, start_cluster
from standins.vllm_engine import Timings
from switcher.app import start_metrics_site

SCRIPT = REPO / "roles" / "verify" / "files" / "k3sllm_verify.py"
KUBECTL_STANDIN = REPO / "tests" / "standins" / "kubectl_port_forward.py"
ADMIN_TOKEN = "test-switcher-admin-token-0123456789"
MODELS = ["alpha", "beta", "gamma"]
# Measurable but quick: the switch phases and token gaps must show up in the report.
TIMINGS = Timings(start_s=0.0, sleep_s=0.15, wake_s=0.25, token_s=0.004, default_tokens=16)


@dataclass
class Stack:
    loop: asyncio.AbstractEventLoop
    cluster: Cluster
    prometheus: PrometheusApiStandIn
    forwards_file: Path

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def switcher_url(self) -> str:
        return self.cluster.url

    def kubectl_calls(self) -> list[list[str]]:
        return json.loads(self.forwards_file.read_text())["calls"]

    def kubectl_env(self) -> dict[str, str]:
        return {"K3SLLM_STANDIN_KUBECTL_FORWARDS": str(self.forwards_file)}

    @property
    def kubectl(self) -> str:
        return f"{sys.executable} {KUBECTL_STANDIN}"


@contextlib.contextmanager
def start_stack(tmp_path: Path) -> Iterator[Stack]:
    """Start the stack; stop it when the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="verify-stack", daemon=True)
    thread.start()

    metrics_port = free_port()

    async def start() -> tuple[Cluster, PrometheusApiStandIn, Any]:
        # As the role configures it: /metrics on a port of its own (metrics_listen), not on the API port.
        cluster = await start_cluster(
            [{"name": name, "aliases": [f"claude-{name}"]} for name in MODELS],
            admin_token=ADMIN_TOKEN,
            timings=TIMINGS,
            extra={"metrics_listen": {"host": "127.0.0.1", "port": metrics_port}},
        )
        metrics = await start_metrics_site(cluster.switcher, "127.0.0.1", metrics_port)
        prometheus = PrometheusApiStandIn()
        await prometheus.start()
        return cluster, prometheus, metrics

    cluster, prometheus, metrics = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    forwards = tmp_path / "kubectl-forwards.json"
    forwards.write_text(
        json.dumps(
            {
                "forwards": {
                    "k3sllm/switcher:8080": cluster.url.removeprefix("http://"),
                    "k3sllm/switcher:9090": f"127.0.0.1:{metrics_port}",
                    "monitoring/kube-prometheus-stack-prometheus:9090": prometheus.url.removeprefix(
                        "http://"
                    ),
                },
                "calls": [],
            }
        )
    )
    stack = Stack(loop, cluster, prometheus, forwards)
    try:
        yield stack
    finally:

        async def stop() -> None:
            await prometheus.close()
            await metrics.cleanup()
            await cluster.close()

        stack.run(stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def load_script():
    """roles/verify/files/k3sllm_verify.py as a module (it is a script, not a package)."""
    name = "k3sllm_verify"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]
