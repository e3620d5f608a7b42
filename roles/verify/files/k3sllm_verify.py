#!/usr/bin/env python3
"""End-to-end checks, benchmark and model switch for a k3sllm platform, from the controller.

    k3sllm_verify.py verify --gateway-url https://llm.example.com --model a --model b ...
    k3sllm_verify.py switch --model a --switcher-url http://127.0.0.1:8080

``verify`` checks the front door (``/v1/models``, one streamed chat completion per model, which wakes
each in turn, an Anthropic ``/v1/messages`` call), Prometheus (every active target up, no alert
firing), then benchmarks: streamed chat completions at each concurrency level (time to first token,
inter-token latency, output tokens/s) and, for every ordered pair of models (A, B), the switch the
switcher makes when B is asked for while A is awake: its sleep, wake and total phases (deltas of the
switcher's ``k3sllm_switcher_switch_duration_seconds`` histogram over that one switch) and the first
token after the wake as a client sees it. It writes ``verify-<UTC time>.json`` and ``.md`` to
``--report-dir``, prints the Markdown, and exits 1 if a check failed.

``switch`` asks the switcher's admin API to activate a model and waits until it is awake.

The switcher and Prometheus are inside the cluster: give their URLs (a port-forward of your own), or
let the script run ``kubectl port-forward`` for the time it needs them (``--kubectl``, ``--kubeconfig``).
Secrets (the gateway key, the switcher's admin token) come from a JSON file (``--secrets-file``:
``{"api_key": ..., "switcher_token": ...}``) or the environment (``K3SLLM_API_KEY``,
``K3SLLM_SWITCHER_TOKEN``), never from the command line, and are never printed.

Needs Python 3.11+, httpx and prometheus_client (both in the repository's requirements.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

SWITCH_METRIC = "k3sllm_switcher_switch_duration_seconds"
PHASES = ("drain", "sleep", "wake", "total")
# kube-prometheus-stack's alerts that fire all the time by design (dead man's switch, inhibitor).
ALWAYS_FIRING = ("Watchdog", "InfoInhibitor")
DEFAULT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


class VerifyError(Exception):
    """A problem the operator must fix; the message says what and how."""


# --------------------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; None when empty."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0 and 100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class RequestResult:
    """One streamed request as the client saw it (seconds from sending it)."""

    ok: bool
    status: int | None = None
    error: str | None = None
    ttft: float | None = None  # first chunk that carries content
    itls: list[float] = field(default_factory=list)  # gaps between consecutive content chunks
    output_tokens: int = 0
    duration: float = 0.0


@dataclass
class LevelResult:
    model: str
    concurrency: int
    requests: int
    ok: int
    failed: int
    wall_seconds: float
    ttft_p50: float | None
    ttft_p95: float | None
    itl_p50: float | None
    itl_p95: float | None
    output_tokens: int
    output_tokens_per_second: float
    errors: list[str]


def summarize_level(
    model: str, concurrency: int, results: Sequence[RequestResult], wall: float
) -> LevelResult:
    """Aggregate one concurrency level: latencies over successful requests, throughput over the wall time."""
    good = [r for r in results if r.ok]
    ttfts = [r.ttft for r in good if r.ttft is not None]
    itls = [gap for r in good for gap in r.itls]
    tokens = sum(r.output_tokens for r in good)
    errors = sorted({r.error or f"HTTP {r.status}" for r in results if not r.ok})
    return LevelResult(
        model=model,
        concurrency=concurrency,
        requests=len(results),
        ok=len(good),
        failed=len(results) - len(good),
        wall_seconds=wall,
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=percentile(ttfts, 95),
        itl_p50=percentile(itls, 50),
        itl_p95=percentile(itls, 95),
        output_tokens=tokens,
        output_tokens_per_second=tokens / wall if wall > 0 else 0.0,
        errors=errors,
    )


def switch_phase_totals(metrics_text: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of the switcher's switch-duration histogram per phase, from its /metrics text."""
    totals: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != SWITCH_METRIC:
            continue
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for sample in family.samples:
            phase = sample.labels.get("phase")
            if sample.name == SWITCH_METRIC + "_sum":
                sums[phase] = sample.value
            elif sample.name == SWITCH_METRIC + "_count":
                counts[phase] = sample.value
        totals = {phase: (sums.get(phase, 0.0), counts.get(phase, 0.0)) for phase in set(sums) | set(counts)}
    if not totals:
        raise VerifyError(f"the switcher's /metrics has no {SWITCH_METRIC}: is this URL the k3sllm switcher?")
    return totals


def phase_deltas(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict:
    """Seconds spent and operations counted per phase between two snapshots."""
    out = {}
    for phase in PHASES:
        s0, c0 = before.get(phase, (0.0, 0.0))
        s1, c1 = after.get(phase, (0.0, 0.0))
        out[phase] = {"seconds": round(s1 - s0, 6), "count": round(c1 - c0)}
    return out


# --------------------------------------------------------------------------------------- HTTP clients


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


async def stream_chat(
    client: httpx.AsyncClient, url: str, key: str, model: str, prompt: str, max_tokens: int
) -> RequestResult:
    """Send one streamed chat completion; time the first content chunk and the gaps between chunks.

    Output tokens are the server's ``usage.completion_tokens`` when it sends usage (asked for with
    ``stream_options``), else the number of content chunks (vLLM sends one token per chunk).
    """
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    last: float | None = None
    result = RequestResult(ok=False)
    chunks = 0
    usage_tokens: int | None = None
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=_auth(key)) as resp:
            result.status = resp.status_code
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")
                result.error = f"HTTP {resp.status_code}: {_short(text)}"
                return result
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    result.error = f"error event: {_short(json.dumps(event['error']))}"
                    return result
                if event.get("usage") and event["usage"].get("completion_tokens") is not None:
                    usage_tokens = int(event["usage"]["completion_tokens"])
                content = "".join(
                    (choice.get("delta") or {}).get("content") or "" for choice in event.get("choices") or []
                )
                if not content:
                    continue
                now = time.perf_counter()
                if last is None:
                    result.ttft = now - start
                else:
                    result.itls.append(now - last)
                last = now
                chunks += 1
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        result.error = f"{type(exc).__name__}: {_short(str(exc))}"
        return result
    result.duration = time.perf_counter() - start
    result.output_tokens = usage_tokens if usage_tokens is not None else chunks
    if chunks == 0:
        result.error = "the stream carried no content"
        return result
    result.ok = True
    return result


async def run_level(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    model: str,
    concurrency: int,
    requests: int,
    prompt: str,
    max_tokens: int,
) -> LevelResult:
    """``requests`` streamed requests, ``concurrency`` of them in flight at any time (closed loop)."""
    pending = iter(range(requests))
    results: list[RequestResult] = []

    async def worker() -> None:
        for _ in pending:
            results.append(await stream_chat(client, url, key, model, prompt, max_tokens))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summarize_level(model, concurrency, results, time.perf_counter() - start)


class Switcher:
    """The switcher's admin API and metrics."""

    def __init__(
        self, client: httpx.AsyncClient, url: str, token: str, metrics_url: str | None = None
    ) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self.token = token
        # The role serves /metrics on a port of its own (metrics_listen); without it, on the main port.
        self.metrics_url = (metrics_url or url).rstrip("/")

    async def _admin(self, method: str, path: str) -> tuple[int, dict]:
        if not self.token:
            raise VerifyError(
                "no switcher admin token (secrets file key switcher_token or env K3SLLM_SWITCHER_TOKEN)"
            )
        resp = await self.client.request(method, self.url + path, headers=_auth(self.token))
        if resp.status_code in (401, 403):
            raise VerifyError(
                f"the switcher refused the admin token (HTTP {resp.status_code}): use the one in the cluster's "
                "Secret switcher-admin-token (model_switcher_admin_token)"
            )
        try:
            return resp.status_code, resp.json()
        except json.JSONDecodeError:
            return resp.status_code, {"error": _short(resp.text)}

    async def models(self) -> dict[str, dict]:
        status, body = await self._admin("GET", "/admin/models")
        if status != 200:
            raise VerifyError(f"GET /admin/models answered {status}: {body}")
        return {m["name"]: m for m in body["models"]}

    async def activate(self, model: str) -> tuple[bool, dict]:
        status, body = await self._admin("POST", f"/admin/models/{model}/activate")
        if status == 404:
            raise VerifyError(f"the switcher has no model {model}")
        return status == 200 and bool(body.get("ok")), body

    async def sleep(self, model: str) -> tuple[bool, dict]:
        status, body = await self._admin("POST", f"/admin/models/{model}/sleep")
        return status == 200 and bool(body.get("ok")), body

    async def phase_totals(self) -> dict[str, tuple[float, float]]:
        try:
            resp = await self.client.get(self.metrics_url + "/metrics")
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise VerifyError(
                f"cannot read the switcher's metrics at {self.metrics_url}/metrics ({type(exc).__name__}): "
                "check --switcher-metrics-port (model_switcher_metrics_port)"
            ) from exc
        return switch_phase_totals(resp.text)

    async def wait_awake(self, model: str, wait_seconds: float, poll: float = 1.0) -> dict:
        """Activate ``model`` until it is awake (an engine that is still starting is retried)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            ok, body = await self.activate(model)
            if ok:
                return body
            if time.monotonic() > deadline:
                raise VerifyError(
                    f"model {model} is not awake after {wait_seconds:g} s: state {body.get('state')}, "
                    f"{body.get('message') or body.get('last_error') or body}. Check its engine's pod and "
                    "the switcher's GET /admin/models (last_error)."
                )
            await asyncio.sleep(poll)


async def measure_switch(
    client: httpx.AsyncClient, switcher: Switcher, gateway: str, key: str, a: str, b: str, wait_seconds: float
) -> dict:
    """Put ``b`` to sleep and ``a`` awake, then ask for ``b`` through the front door: the switch it
    triggers is timed by the switcher's own metrics; the first token after the wake by the client."""
    await switcher.wait_awake(a, wait_seconds)
    states = await switcher.models()
    if states[b]["state"] == "awake":
        ok, body = await switcher.sleep(b)
        if not ok:
            raise VerifyError(f"could not put {b} to sleep for the {a} -> {b} measurement: {body}")
    before = await switcher.phase_totals()
    result = await stream_chat(client, gateway, key, b, "Say hello.", 16)
    after = await switcher.phase_totals()
    states = await switcher.models()
    deltas = phase_deltas(before, after)
    return {
        "from": a,
        "to": b,
        "ok": result.ok,
        "error": result.error,
        "sleep_seconds": deltas["sleep"]["seconds"] if deltas["sleep"]["count"] else None,
        "wake_seconds": deltas["wake"]["seconds"] if deltas["wake"]["count"] else None,
        "switch_seconds": deltas["total"]["seconds"] if deltas["total"]["count"] else None,
        "first_token_after_wake_seconds": result.ttft,
        "models_slept": deltas["sleep"]["count"],
        # Both awake afterwards: they fit together on the GPU, so only a wake was needed.
        "co_resident": states[a]["state"] == "awake" and states[b]["state"] == "awake",
        "phases": deltas,
    }


# --------------------------------------------------------------------------------------- checks


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


async def check_models(client: httpx.AsyncClient, url: str, key: str, models: Sequence[str]) -> Check:
    try:
        resp = await client.get(url + "/v1/models", headers=_auth(key))
    except httpx.HTTPError as exc:
        return Check("GET /v1/models", False, f"{type(exc).__name__}: {_short(str(exc))}")
    if resp.status_code != 200:
        return Check("GET /v1/models", False, f"HTTP {resp.status_code}: {_short(resp.text)}")
    listed = {m.get("id") for m in resp.json().get("data", [])}
    missing = [m for m in models if m not in listed]
    if missing:
        return Check(
            "GET /v1/models", False, f"missing {', '.join(missing)} (listed: {', '.join(sorted(listed))})"
        )
    return Check("GET /v1/models", True, f"{len(listed)} models and aliases listed")


async def check_chat(client: httpx.AsyncClient, url: str, key: str, model: str) -> Check:
    result = await stream_chat(client, url, key, model, "Say hello.", 16)
    name = f"chat completion: {model}"
    if not result.ok:
        return Check(name, False, result.error or "failed")
    return Check(name, True, f"first token after {result.ttft:.2f} s, {result.output_tokens} tokens")


async def check_anthropic(client: httpx.AsyncClient, url: str, key: str, model: str) -> Check:
    """One Anthropic Messages call, as Claude Code sends it (bearer token, anthropic-version)."""
    name = f"Anthropic /v1/messages: {model}"
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}
    headers = {**_auth(key), "anthropic-version": "2023-06-01"}
    try:
        resp = await client.post(url + "/v1/messages", json=body, headers=headers)
    except httpx.HTTPError as exc:
        return Check(name, False, f"{type(exc).__name__}: {_short(str(exc))}")
    if resp.status_code != 200:
        return Check(name, False, f"HTTP {resp.status_code}: {_short(resp.text)}")
    answer = resp.json()
    texts = [part.get("text", "") for part in answer.get("content", []) if part.get("type") == "text"]
    if answer.get("type") != "message" or not any(texts):
        return Check(name, False, f"not an Anthropic message with text: {_short(resp.text)}")
    return Check(name, True, f"{answer.get('usage', {}).get('output_tokens', '?')} output tokens")


async def check_prometheus(
    client: httpx.AsyncClient, url: str, ignored_jobs: Sequence[str], ignored_alerts: Sequence[str]
) -> list[Check]:
    checks = []
    try:
        resp = await client.get(url + "/api/v1/targets", params={"state": "active"})
        resp.raise_for_status()
        targets = resp.json()["data"]["activeTargets"]
        alerts_resp = await client.get(url + "/api/v1/alerts")
        alerts_resp.raise_for_status()
        alerts = alerts_resp.json()["data"]["alerts"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return [Check("Prometheus API", False, f"{url}: {type(exc).__name__}: {_short(str(exc))}")]
    down = [
        f"{t['labels'].get('job', '?')} {t.get('scrapeUrl', '')}: {t.get('lastError') or t.get('health')}"
        for t in targets
        if t.get("health") != "up" and t["labels"].get("job") not in ignored_jobs
    ]
    if not targets:
        checks.append(Check("Prometheus targets up", False, "Prometheus has no active targets"))
    else:
        detail = f"{len(targets) - len(down)} of {len(targets)} up" + (
            f"; down: {'; '.join(down)}" if down else ""
        )
        checks.append(Check("Prometheus targets up", not down, detail))
    firing = sorted(
        {
            a["labels"].get("alertname", "?")
            for a in alerts
            if a.get("state") == "firing" and a["labels"].get("alertname") not in ignored_alerts
        }
    )
    checks.append(
        Check("no alert firing", not firing, "firing: " + ", ".join(firing) if firing else "none firing")
    )
    return checks


# --------------------------------------------------------------------------------------- port-forward

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def port_forward(
    kubectl: Sequence[str], namespace: str, target: str, port: int, timeout: float = 30
) -> Iterator[str]:
    """``kubectl port-forward`` to ``target`` (``service/<name>``) on a free local port, for the block."""
    argv = [*kubectl, "-n", namespace, "port-forward", "--address", "127.0.0.1", target, f":{port}"]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError as exc:
        raise VerifyError(
            f"{kubectl[0]} not found: install kubectl on the controller (or set --kubectl), or forward the port "
            "yourself and give its URL"
        ) from exc
    try:
        deadline = time.monotonic() + timeout
        local = None
        assert proc.stdout is not None
        while local is None:
            line = proc.stdout.readline()
            if not line:
                raise VerifyError(
                    f"kubectl port-forward to {namespace}/{target} failed: {_short(proc.stderr.read())}"
                )
            if match := _FORWARDING.search(line):
                local = match.group(1)
            elif time.monotonic() > deadline:
                raise VerifyError(
                    f"kubectl port-forward to {namespace}/{target} did not start in {timeout:g} s"
                )
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def endpoint(
    url: str | None, args: argparse.Namespace, namespace: str, service: str, port: int
) -> Iterator[str]:
    """The given URL, or a port-forward to the service for the block."""
    if url:
        yield url.rstrip("/")
        return
    kubectl = [*args.kubectl.split()] + ([f"--kubeconfig={args.kubeconfig}"] if args.kubeconfig else [])
    with port_forward(kubectl, namespace, f"service/{service}", port) as forwarded:
        yield forwarded


# --------------------------------------------------------------------------------------- report


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def render_markdown(report: dict) -> str:
    """The report as Markdown: checks, benchmark table, switch table."""
    lines = [
        f"# k3sllm verify: {report['gateway_url']}",
        "",
        f"{report['started_at']} UTC, {report['verdict']}",
        "",
    ]
    lines += ["## Checks", "", "| check | result | detail |", "|---|---|---|"]
    for check in report["checks"]:
        detail = check["detail"].replace("|", "\\|")
        lines.append(f"| {check['name']} | {'pass' if check['ok'] else 'FAIL'} | {detail} |")
    if report["benchmark"]:
        lines += [
            "",
            f"## Benchmark (streamed chat, {report['settings']['max_tokens']} tokens max per request)",
            "",
            "| model | concurrency | requests | failed | TTFT p50 | TTFT p95 | ITL p50 | ITL p95 | output tokens/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for level in report["benchmark"]:
            lines.append(
                f"| {level['model']} | {level['concurrency']} | {level['requests']} | {level['failed']} | "
                f"{ms(level['ttft_p50'])} | {ms(level['ttft_p95'])} | {ms(level['itl_p50'])} | "
                f"{ms(level['itl_p95'])} | {level['output_tokens_per_second']:.1f} |"
            )
    if report["switches"]:
        lines += [
            "",
            "## Model switches (switcher metrics; first token as the client saw it)",
            "",
            "| from | to | sleep | wake | switch total | first token after wake | note |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for s in report["switches"]:
            note = s.get("error") or ("co-resident: no sleep needed" if s.get("co_resident") else "")
            lines.append(
                f"| {s['from']} | {s['to']} | {secs(s['sleep_seconds'])} | {secs(s['wake_seconds'])} | "
                f"{secs(s['switch_seconds'])} | {secs(s['first_token_after_wake_seconds'])} | {note} |"
            )
    return "\n".join(lines) + "\n"


def write_report(report: dict, folder: Path) -> tuple[Path, Path]:
    """Write ``verify-<time>.json`` and ``.md`` (mode 0644) in ``folder``; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = "verify-" + report["started_at"].replace("-", "").replace(":", "")
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    md_path.write_text(render_markdown(report))
    return json_path, md_path


# --------------------------------------------------------------------------------------- commands


def load_secrets(path: str | None) -> dict[str, str]:
    secrets = {
        "api_key": os.environ.get("K3SLLM_API_KEY", ""),
        "switcher_token": os.environ.get("K3SLLM_SWITCHER_TOKEN", ""),
    }
    if path:
        given = json.loads(Path(path).read_text())
        secrets.update({k: v for k, v in given.items() if k in secrets and v})
    return secrets


def _client(args: argparse.Namespace) -> httpx.AsyncClient:
    verify: Any = True
    if args.ca_file:
        import ssl

        verify = ssl.create_default_context(cafile=args.ca_file)
    limits = httpx.Limits(max_connections=max(args.concurrency, default=1) + 8, max_keepalive_connections=64)
    return httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(args.timeout, connect=10), limits=limits)


async def benchmark(
    args: argparse.Namespace,
    secrets: dict[str, str],
    client: httpx.AsyncClient,
    gateway: str,
    key: str,
    report: dict,
    checks: list[Check],
) -> None:
    """The concurrency levels, then the switch of every ordered pair of models, into ``report``."""
    with contextlib.ExitStack() as forwards:
        url = forwards.enter_context(
            endpoint(args.switcher_url, args, args.namespace, args.switcher_service, args.switcher_port)
        )
        metrics_url = None
        if args.switcher_metrics_url or (args.switcher_metrics_port and not args.switcher_url):
            metrics_url = forwards.enter_context(
                endpoint(
                    args.switcher_metrics_url,
                    args,
                    args.namespace,
                    args.switcher_service,
                    args.switcher_metrics_port,
                )
            )
        switcher = Switcher(client, url, secrets["switcher_token"], metrics_url)
        for model in report["settings"]["bench_models"]:
            await switcher.wait_awake(model, args.wake_timeout)
            for concurrency in args.concurrency:
                requests = max(args.requests, concurrency)
                level = await run_level(
                    client, gateway, key, model, concurrency, requests, args.prompt, args.max_tokens
                )
                report["benchmark"].append(asdict(level))
                if level.failed:
                    detail = f"{level.failed} of {level.requests} failed: {'; '.join(level.errors)}"
                    checks.append(Check(f"benchmark {model} x{concurrency}", False, detail))
        if not args.skip_switches:
            for a, b in itertools.permutations(args.model, 2):
                pair = await measure_switch(client, switcher, gateway, key, a, b, args.wake_timeout)
                report["switches"].append(pair)
                if not pair["ok"]:
                    checks.append(Check(f"switch {a} -> {b}", False, pair["error"] or "failed"))


async def verify(
    args: argparse.Namespace, secrets: dict[str, str], prior_checks: Sequence[Check] = ()
) -> dict:
    if not secrets["api_key"]:
        raise VerifyError("no gateway key: secrets file key api_key or env K3SLLM_API_KEY")
    key = secrets["api_key"]
    gateway = args.gateway_url.rstrip("/")
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    checks = list(prior_checks)
    report: dict[str, Any] = {
        "gateway_url": gateway,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "models": args.model,
        "settings": {
            "concurrency": args.concurrency,
            "requests_per_level": args.requests,
            "max_tokens": args.max_tokens,
            "bench_models": args.bench_model or args.model[:1],
        },
        "benchmark": [],
        "switches": [],
    }
    async with _client(args) as client:
        checks.append(await check_models(client, gateway, key, args.model))
        for model in args.model:
            checks.append(await check_chat(client, gateway, key, model))
        if args.anthropic_model:
            checks.append(await check_anthropic(client, gateway, key, args.anthropic_model))
        if not args.skip_prometheus:
            with endpoint(
                args.prometheus_url, args, args.prometheus_namespace, args.prometheus_service, 9090
            ) as prom:
                checks.extend(await check_prometheus(client, prom, args.ignore_job, args.ignore_alert))
        if all(c.ok for c in checks) and not args.skip_benchmark:
            # A benchmark that cannot go on (no admin token, a model that does not wake) is a failed
            # check in the report, not a lost report.
            try:
                await benchmark(args, secrets, client, gateway, key, report, checks)
            except VerifyError as exc:
                checks.append(Check("benchmark", False, str(exc)))
    report["checks"] = [asdict(c) for c in checks]
    report["verdict"] = "all checks passed" if all(c.ok for c in checks) else "CHECKS FAILED"
    return report


async def switch(args: argparse.Namespace, secrets: dict[str, str]) -> dict:
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout, connect=10)) as client:
        with endpoint(
            args.switcher_url, args, args.namespace, args.switcher_service, args.switcher_port
        ) as url:
            switcher = Switcher(client, url, secrets["switcher_token"])
            models = await switcher.models()
            if args.model not in models and not any(args.model in m["aliases"] for m in models.values()):
                raise VerifyError(
                    f"the switcher has no model {args.model}; it serves {', '.join(sorted(models))}"
                )
            before = next(m for m in models.values() if args.model in (m["name"], *m["aliases"]))
            start = time.monotonic()
            body = await switcher.wait_awake(before["name"], args.wake_timeout)
            after = await switcher.models()
            return {
                "model": before["name"],
                "state_before": before["state"],
                "state": body.get("state"),
                "seconds": round(time.monotonic() - start, 3),
                "awake": sorted(name for name, m in after.items() if m["state"] == "awake"),
            }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--secrets-file", help='JSON {"api_key": ..., "switcher_token": ...}; else env')
        p.add_argument(
            "--switcher-url", help="the switcher's URL; default: kubectl port-forward to its Service"
        )
        p.add_argument(
            "--namespace", default="k3sllm", help="namespace of the switcher (default %(default)s)"
        )
        p.add_argument("--switcher-service", default="switcher")
        p.add_argument("--switcher-port", type=int, default=8080)
        p.add_argument("--kubectl", default="kubectl", help="kubectl command (words split on spaces)")
        p.add_argument("--kubeconfig", help="kubeconfig for kubectl (default: kubectl's own)")
        p.add_argument(
            "--timeout", type=float, default=600, help="seconds per HTTP request (default %(default)s)"
        )
        p.add_argument("--wake-timeout", type=float, default=900, help="seconds to wait for a model to wake")

    v = sub.add_parser("verify", help="end-to-end checks and benchmark; writes the report")
    common(v)
    v.add_argument("--gateway-url", required=True, help="the front door, e.g. https://llm.example.com")
    v.add_argument(
        "--ca-file", help="CA certificate to trust for the gateway (tls_mode selfsigned: artifacts/ca.crt)"
    )
    v.add_argument("--model", action="append", required=True, help="catalog model name (repeat)")
    v.add_argument("--anthropic-model", help="model or alias for the Anthropic /v1/messages check")
    v.add_argument("--bench-model", action="append", help="models to benchmark (default: the first --model)")
    v.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 8, 32],
        help="comma-separated concurrency levels (default 1,8,32)",
    )
    v.add_argument("--requests", type=int, default=32, help="requests per level, at least the concurrency")
    v.add_argument("--max-tokens", type=int, default=128)
    v.add_argument("--prompt", default=DEFAULT_PROMPT)
    v.add_argument(
        "--switcher-metrics-port",
        type=int,
        default=9090,
        help="the switcher Service's metrics port (model_switcher_metrics_port; 0: /metrics on the main port)",
    )
    v.add_argument("--switcher-metrics-url", help="the switcher's metrics URL, if not forwarded by kubectl")
    v.add_argument("--prometheus-url", help="Prometheus URL; default: kubectl port-forward to its Service")
    v.add_argument("--prometheus-namespace", default="monitoring")
    v.add_argument("--prometheus-service", default="kube-prometheus-stack-prometheus")
    v.add_argument(
        "--ignore-alert",
        action="append",
        default=list(ALWAYS_FIRING),
        help="alert name not to count (repeat; Watchdog and InfoInhibitor, which always fire, are ignored)",
    )
    v.add_argument("--ignore-job", action="append", default=[], help="scrape job whose targets may be down")
    v.add_argument("--skip-prometheus", action="store_true")
    v.add_argument("--skip-benchmark", action="store_true")
    v.add_argument("--skip-switches", action="store_true", help="no per-pair switch measurements")
    v.add_argument(
        "--checks-file", help="JSON list of checks made elsewhere ({name, ok, detail}) for the report"
    )
    v.add_argument("--report-dir", type=Path, required=True)

    s = sub.add_parser(
        "switch", help="activate a model through the switcher's admin API and wait until awake"
    )
    common(s)
    s.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    if args.command == "switch":
        args.concurrency = [1]
    elif min(args.concurrency) < 1:
        parser.error("--concurrency levels must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        secrets = load_secrets(args.secrets_file)
        if args.command == "switch":
            print(json.dumps(asyncio.run(switch(args, secrets))))
            return 0
        prior = (
            [Check(**c) for c in json.loads(Path(args.checks_file).read_text())] if args.checks_file else []
        )
        report = asyncio.run(verify(args, secrets, prior))
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json_path, md_path = write_report(report, args.report_dir)
    print(render_markdown(report))
    print(f"report: {md_path}\nreport (JSON): {json_path}")
    return 0 if report["verdict"] == "all checks passed" else 1


if __name__ == "__main__":
    sys.exit(main())
