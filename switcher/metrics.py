"""Prometheus metrics of the switcher.

The names and labels below are a contract: dashboards and alerts elsewhere in k3sllm are written
against them. Add metrics freely, but do not rename these.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STATES = ("cold", "starting", "awake", "sleeping", "failed")

# Switch phases run from milliseconds (stand-ins, small models) to minutes (cold L2 reloads).
_SWITCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, float("inf"))
_QUEUE_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, float("inf"))


class Metrics:
    """One registry per switcher instance, so several can live in one process (tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.model_state = Gauge(
            "k3sllm_switcher_model_state",
            "1 for the state each model is in, 0 for the others.",
            ["model", "state"],
            registry=r,
        )
        self.switches = Counter(
            "k3sllm_switcher_switches",
            "Switches to a target model (drain, sleep others, wake target), by outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.switch_duration = Histogram(
            "k3sllm_switcher_switch_duration_seconds",
            "Duration of switch phases: drain, sleep, wake and total.",
            ["phase"],
            buckets=_SWITCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "k3sllm_switcher_queue_depth", "Requests waiting for their model to wake.", ["model"], registry=r
        )
        self.queue_wait = Histogram(
            "k3sllm_switcher_queue_wait_seconds",
            "Time a request waited in the queue before it was forwarded or refused.",
            ["model"],
            buckets=_QUEUE_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "k3sllm_switcher_requests",
            "Proxied requests by model and HTTP status answered to the client.",
            ["model", "code"],
            registry=r,
        )
        self.drain_timeouts = Counter(
            "k3sllm_switcher_drain_timeouts",
            "Drains that hit drain_timeout_seconds; the model was put to sleep with requests in flight.",
            ["model"],
            registry=r,
        )
        self.queue_rejected = Counter(
            "k3sllm_switcher_queue_rejected",
            "Requests refused with 503 because the model's queue was full.",
            ["model"],
            registry=r,
        )
        # Extra metrics (not part of the contract above).
        self.sleeps = Counter(
            "k3sllm_switcher_sleeps",
            "Models put to sleep, by reason (switch, idle_ttl, admin, boot).",
            ["model", "reason"],
            registry=r,
        )
        self.inflight = Gauge(
            "k3sllm_switcher_inflight_requests",
            "Requests being forwarded to each engine.",
            ["model"],
            registry=r,
        )
        self.boot_grants = Counter(
            "k3sllm_switcher_boot_grants", "Boot grants given to engines.", ["model"], registry=r
        )
        self._request_children: dict[tuple[str, int], Counter] = {}

    def add_model(self, model: str, state: str) -> None:
        """Create every series of a model at zero, so rate() and absent() alerts work from the start."""
        self.set_state(model, state)
        for outcome in ("success", "failed"):
            self.switches.labels(model=model, outcome=outcome)
        self.drain_timeouts.labels(model=model)
        self.queue_rejected.labels(model=model)
        self.queue_wait.labels(model=model)
        for phase in ("drain", "sleep", "wake", "total"):
            self.switch_duration.labels(phase=phase)

    def set_state(self, model: str, state: str) -> None:
        for candidate in STATES:
            self.model_state.labels(model=model, state=candidate).set(1 if candidate == state else 0)

    def count_request(self, model: str, code: int) -> None:
        # Cache label children: .labels() hashes and locks on every call, which the hot path notices.
        key = (model, code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(model=model, code=str(code))
        child.inc()
