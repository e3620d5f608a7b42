"""Config schema: defaults, validation errors that name the field, the CLI's exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from switcher.config import (
    ADMIN_TOKEN_ENV,
    ConfigError,
    load_config,
    model_share_gib,
    parse_config,
    read_admin_token,
)

REPO = Path(__file__).resolve().parents[2]


def minimal(**over) -> dict:
    data = {
        "models": [{"name": "a", "base_url": "http://a:8000"}, {"name": "b", "base_url": "http://b:8000/"}]
    }
    data.update(over)
    return data


def test_minimal_config_gets_documented_defaults():
    config = parse_config(minimal())
    assert config.listen.port == 8080
    assert config.policy.sleep_level == 1
    assert config.policy.min_residency_seconds == 5
    assert config.models[1].base_url == "http://b:8000"  # trailing slash dropped
    assert config.models[0].engine_model_name == "a"
    assert not config.coresidency


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (minimal(policy={"min_residency": 3}), "policy.min_residency: Extra inputs are not permitted"),
        (minimal(policy={"sleep_level": 3}), "policy.sleep_level"),
        (minimal(policy={"queue_max_per_model": 0}), "policy.queue_max_per_model"),
        ({"models": [{"name": "a", "base_url": "a:8000"}]}, "models[0].base_url"),
        ({"models": []}, "models: List should have at least 1 item"),
        (
            {
                "models": [
                    {"name": "a", "base_url": "http://a"},
                    {"name": "b", "base_url": "http://b", "aliases": ["a"]},
                ]
            },
            "name or alias 'a' is already used by a",
        ),
        (
            {
                "models": [
                    {"name": "a", "base_url": "http://a", "vram_gib": 10},
                    {"name": "b", "base_url": "http://b"},
                ]
            },
            "not for: b",
        ),
        (
            {"models": [{"name": "a", "base_url": "http://a", "vram_gib": 10}]},
            "policy.gpu_total_vram_gib is required",
        ),
        (
            {
                "models": [{"name": "a", "base_url": "http://a", "vram_gib": 90}],
                "policy": {"gpu_total_vram_gib": 80},
            },
            "model a needs 90 GiB",
        ),
        (
            {"models": [{"name": "a", "base_url": "http://a", "vram_gib": 9, "gpu_memory_utilization": 0.2}]},
            "not both",
        ),
        (
            minimal(policy={"retry_backoff_initial_seconds": 10, "retry_backoff_max_seconds": 1}),
            "retry_backoff_max",
        ),
    ],
)
def test_bad_config_names_the_field(data, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "switcher.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("switcher.yaml")


def test_gpu_memory_utilization_is_a_share_of_the_gpu():
    config = parse_config(
        {
            "models": [{"name": "a", "base_url": "http://a", "gpu_memory_utilization": 0.45}],
            "policy": {"gpu_total_vram_gib": 80},
        }
    )
    assert config.coresidency
    assert model_share_gib(config.models[0], config.policy) == pytest.approx(36)


def test_cli_exits_non_zero_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(minimal(policy={"drain_timeout_seconds": -1})))
    result = subprocess.run(
        [sys.executable, "-m", "switcher", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "policy.drain_timeout_seconds" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(minimal()))
    result = subprocess.run(
        [sys.executable, "-m", "switcher", "--config", str(good), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_missing_file_and_bad_yaml_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_admin_token_from_file_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    config = parse_config(minimal(admin_token_file=str(token_file)))
    assert read_admin_token(config) == "s3cret"
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "from-env")
    assert read_admin_token(config) == "from-env"
    monkeypatch.delenv(ADMIN_TOKEN_ENV)
    token_file.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_admin_token(config)
    assert read_admin_token(parse_config(minimal())) is None


def test_metrics_listen_needs_a_port_of_its_own():
    base = {"listen": {"port": 8080}, "models": [{"name": "m", "base_url": "http://m"}]}
    assert parse_config({**base, "metrics_listen": {"port": 9090}}).metrics_listen.port == 9090
    assert parse_config(base).metrics_listen is None
    with pytest.raises(ConfigError, match=r"metrics_listen\.port must differ from listen\.port"):
        parse_config({**base, "metrics_listen": {"port": 8080}})
