"""TEST STAND-IN for Prometheus's HTTP API (k3sllm tests only; it is NOT Prometheus).

Serves the two read endpoints roles/verify's script uses, in Prometheus's response format:

- ``GET /api/v1/targets?state=active``: ``{"status": "success", "data": {"activeTargets": [...],
  "droppedTargets": []}}``, each target with ``labels``, ``scrapeUrl``, ``health`` (up, down,
  unknown) and ``lastError``;
- ``GET /api/v1/alerts``: ``{"status": "success", "data": {"alerts": [...]}}``, each alert with
  ``labels`` (``alertname``), ``state`` (pending, firing) and ``activeAt``.

Tests set ``targets`` and ``alerts`` to what a real cluster would report.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


def target(job: str, health: str = "up", error: str = "") -> dict[str, Any]:
    return {
        "discoveredLabels": {"__address__": f"10.42.0.9:{8080}"},
        "labels": {"job": job, "instance": "10.42.0.9:8080"},
        "scrapePool": f"serviceMonitor/k3sllm/{job}/0",
        "scrapeUrl": f"http://10.42.0.9:8080/metrics#{job}",
        "lastError": error,
        "lastScrape": "2026-12-01T20:00:00Z",
        "health": health,
    }


def alert(name: str, state: str = "firing") -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": "warning"},
        "annotations": {"summary": name},
        "state": state,
        "activeAt": "2026-12-01T20:00:00Z",
        "value": "1e+00",
    }


class PrometheusApiStandIn:
    def __init__(self) -> None:
        self.targets: list[dict[str, Any]] = [target("switcher"), target("litellm"), target("dcgm-exporter")]
        # kube-prometheus-stack's Watchdog fires all the time by design.
        self.alerts: list[dict[str, Any]] = [alert("Watchdog")]
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _targets(self, request: web.Request) -> web.Response:
        if request.query.get("state", "any") not in ("active", "any"):
            return web.json_response(
                {"status": "success", "data": {"activeTargets": [], "droppedTargets": []}}
            )
        return web.json_response(
            {"status": "success", "data": {"activeTargets": self.targets, "droppedTargets": []}}
        )

    async def _alerts(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {"alerts": self.alerts}})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/api/v1/targets", self._targets)
        app.router.add_get("/api/v1/alerts", self._alerts)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
