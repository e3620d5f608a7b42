"""The switcher's YAML config: schema, validation and loading.

Every field is documented in README.md. Unknown keys are refused (``extra="forbid"``) so that a typo
in the inventory fails at start with the field named, instead of silently using a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .vram import valid_utilization

ADMIN_TOKEN_ENV = "SWITCHER_ADMIN_TOKEN"

PositiveSeconds = Annotated[float, Field(gt=0)]
NonNegativeSeconds = Annotated[float, Field(ge=0)]


class ConfigError(Exception):
    """A config that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)


class ModelSpec(_Strict):
    name: str = Field(min_length=1, description="Name clients send in the `model` field.")
    base_url: str = Field(description="Root URL of the model's vLLM engine, e.g. http://vllm-x:8000.")
    served_name: str | None = Field(
        None, description="Name the engine serves (--served-model-name); defaults to `name`."
    )
    aliases: list[str] = Field(default_factory=list)
    awake_by_default: bool = False
    priority: int = 0
    idle_ttl_seconds: PositiveSeconds | None = None
    vram_gib: Annotated[float, Field(gt=0)] | None = None
    gpu_memory_utilization: float | None = None  # range checked by the VRAM rule (vram.py), as Ansible does
    sleep_level: Literal[1, 2] | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _utilization_range(cls, value: float | None) -> float | None:
        if value is not None and not valid_utilization(value):
            raise ValueError(f"must be above 0 and at most 1 (vLLM's range), got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_vram_field(self) -> ModelSpec:
        if self.vram_gib is not None and self.gpu_memory_utilization is not None:
            raise ValueError("set vram_gib or gpu_memory_utilization, not both")
        return self

    @property
    def engine_model_name(self) -> str:
        return self.served_name or self.name


class Policy(_Strict):
    sleep_level: Literal[1, 2] = 1
    min_residency_seconds: NonNegativeSeconds = 5.0
    # Scheduling (README "Scheduling policy"): residency protects demand, measured switch costs.
    residency_switch_cost_multiple: Annotated[float, Field(ge=0)] = 4.0
    demand_grace_seconds: NonNegativeSeconds = 0.05
    drain_timeout_seconds: NonNegativeSeconds = 30.0
    queue_max_per_model: int = Field(default=64, ge=1)
    queue_timeout_seconds: PositiveSeconds = 300.0
    sleep_timeout_seconds: PositiveSeconds = 120.0
    wake_timeout_seconds: PositiveSeconds = 120.0
    batch_window_seconds: NonNegativeSeconds = 0.0
    retry_backoff_initial_seconds: PositiveSeconds = 5.0
    retry_backoff_max_seconds: PositiveSeconds = 120.0
    retry_after_seconds: int = Field(default=5, ge=1)
    health_interval_seconds: PositiveSeconds = 5.0
    engine_probe_timeout_seconds: PositiveSeconds = 3.0
    boot_grant_timeout_seconds: PositiveSeconds = 900.0
    boot_poll_max_seconds: PositiveSeconds = 30.0
    gpu_total_vram_gib: Annotated[float, Field(gt=0)] | None = None
    sleeping_residual_vram_gib: NonNegativeSeconds = 1.0
    sleep_mode: Literal["abort", "wait", "keep"] | None = None
    upstream_connect_timeout_seconds: PositiveSeconds = 5.0

    @model_validator(mode="after")
    def _backoff_order(self) -> Policy:
        if self.retry_backoff_max_seconds < self.retry_backoff_initial_seconds:
            raise ValueError("retry_backoff_max_seconds must be >= retry_backoff_initial_seconds")
        return self


MiB = 1024**2


class Limits(_Strict):
    """What one client can make the switcher hold: bytes, connections, time (README "Limits")."""

    max_body_bytes: int = Field(default=4 * MiB, ge=1024)
    max_buffered_body_bytes: int = Field(default=64 * MiB, ge=1024)
    max_json_depth: int = Field(default=64, ge=2, le=512)
    max_json_elements: int = Field(default=100_000, ge=16)
    header_timeout_seconds: PositiveSeconds = 10.0
    body_timeout_seconds: PositiveSeconds = 60.0
    idle_timeout_seconds: PositiveSeconds = 75.0
    write_timeout_seconds: PositiveSeconds = 30.0
    max_connections: int = Field(default=1024, ge=1)
    health_reserve_connections: int = Field(default=16, ge=1)

    @model_validator(mode="after")
    def _buffer_holds_a_body(self) -> Limits:
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError("max_buffered_body_bytes must be >= max_body_bytes")
        return self


class Config(_Strict):
    listen: Listen = Field(default_factory=Listen)
    # When set, /metrics, /healthz and /readyz are served here and not on `listen` (a NetworkPolicy can
    # then let Prometheus scrape without reaching /v1).
    metrics_listen: Listen | None = None
    limits: Limits = Field(default_factory=Limits)
    admin_token_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    policy: Policy = Field(default_factory=Policy)
    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_and_capacity(self) -> Config:
        if self.metrics_listen is not None and self.metrics_listen.port == self.listen.port:
            raise ValueError(
                f"metrics_listen.port must differ from listen.port ({self.listen.port}): "
                "metrics are served on a port of their own"
            )
        seen: dict[str, str] = {}
        for index, model in enumerate(self.models):
            for key in (model.name, *model.aliases):
                if key in seen:
                    raise ValueError(
                        f"models[{index}] ({model.name}): name or alias {key!r} is already used by {seen[key]}"
                    )
                seen[key] = model.name
        with_vram = [m for m in self.models if m.vram_gib is not None or m.gpu_memory_utilization is not None]
        if with_vram and len(with_vram) != len(self.models):
            missing = ", ".join(m.name for m in self.models if m not in with_vram)
            raise ValueError(
                f"vram_gib or gpu_memory_utilization is set for some models but not for: {missing}; "
                "set it for all (co-residency planning) or for none (one awake model at a time)"
            )
        if with_vram and self.policy.gpu_total_vram_gib is None:
            raise ValueError("policy.gpu_total_vram_gib is required when models declare their VRAM")
        total = self.policy.gpu_total_vram_gib
        for model in with_vram:
            share = model_share_gib(model, self.policy)
            if total is not None and share > total:
                raise ValueError(
                    f"model {model.name} needs {share:g} GiB but policy.gpu_total_vram_gib is {total:g}"
                )
        return self

    @property
    def coresidency(self) -> bool:
        """True when the models declare their VRAM, so several may be awake at once if they fit."""
        return any(m.vram_gib is not None or m.gpu_memory_utilization is not None for m in self.models)


def model_share_gib(model: ModelSpec, policy: Policy) -> float:
    """VRAM a model holds while awake, in GiB (``gpu_memory_utilization`` is a share of the GPU)."""
    if model.vram_gib is not None:
        return model.vram_gib
    if model.gpu_memory_utilization is not None and policy.gpu_total_vram_gib is not None:
        return model.gpu_memory_utilization * policy.gpu_total_vram_gib
    return 1.0


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        lines.append(f"  {loc or '(top level)'}: {err['msg']}")
    return "\n".join(lines)


def parse_config(data: object, source: str = "<config>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with at least `models:`")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid switcher config:\n{_format_errors(exc)}") from None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))


def read_admin_token(config: Config) -> str | None:
    """The admin bearer token: env SWITCHER_ADMIN_TOKEN wins, else the file (a mounted Secret)."""
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if token:
        return token
    if config.admin_token_file is None:
        return None
    try:
        token = config.admin_token_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"admin_token_file {config.admin_token_file}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"admin_token_file {config.admin_token_file} is empty")
    return token
