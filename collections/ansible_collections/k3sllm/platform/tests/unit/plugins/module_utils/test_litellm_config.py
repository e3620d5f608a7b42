"""The gateway's LiteLLM config, worker rule, resources and database URL, and their filter wrappers."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.litellm import FilterModule
from ansible_collections.k3sllm.platform.plugins.module_utils import litellm_config as gw

SWITCHER = "http://switcher.k3sllm.svc:8080/v1"
CATALOG = [
    {
        "name": "qwen",
        "aliases": ["claude-sonnet-4-5", "gpt-4o"],
        "tool_call_parser": "hermes",
        "max_model_len": 8192,
    },
    {"name": "llama", "aliases": ["claude-haiku-4-5"]},
    {"name": "bge"},
]


def entries(config: dict) -> dict[str, dict]:
    return {e["model_name"]: e for e in config["model_list"]}


def test_every_model_and_alias_routes_to_its_model_at_the_switcher():
    config = gw.build_litellm_config(CATALOG, SWITCHER + "/")
    routes = {
        name: (e["litellm_params"]["model"], e["litellm_params"]["api_base"])
        for name, e in entries(config).items()
    }
    assert routes == {
        "qwen": ("hosted_vllm/qwen", SWITCHER),
        "claude-sonnet-4-5": ("hosted_vllm/qwen", SWITCHER),
        "gpt-4o": ("hosted_vllm/qwen", SWITCHER),
        "llama": ("hosted_vllm/llama", SWITCHER),
        "claude-haiku-4-5": ("hosted_vllm/llama", SWITCHER),
        "bge": ("hosted_vllm/bge", SWITCHER),
    }
    # Catalog order, each deployment with its own id.
    assert [e["model_name"] for e in config["model_list"]][:3] == ["qwen", "claude-sonnet-4-5", "gpt-4o"]
    assert len({e["model_info"]["id"] for e in config["model_list"]}) == 6


def test_tools_follow_the_catalogs_parser():
    found = entries(gw.build_litellm_config(CATALOG, SWITCHER))
    assert found["claude-sonnet-4-5"]["model_info"]["supports_function_calling"] is True
    assert found["claude-haiku-4-5"]["model_info"]["supports_function_calling"] is False
    assert found["qwen"]["model_info"]["max_input_tokens"] == 8192
    assert "max_input_tokens" not in found["llama"]["model_info"]


def test_catalog_prices_become_litellms_per_token_prices():
    priced = [
        {
            "name": "qwen",
            "aliases": ["q"],
            "input_cost_per_million_tokens": 0.5,
            "output_cost_per_million_tokens": 2,
        }
    ]
    info = {name: e["model_info"] for name, e in entries(gw.build_litellm_config(priced, SWITCHER)).items()}
    for name in ("qwen", "q"):
        assert info[name]["input_cost_per_token"] == pytest.approx(0.5e-6)
        assert info[name]["output_cost_per_token"] == pytest.approx(2e-6)
    free = entries(gw.build_litellm_config([{"name": "qwen", "input_cost_per_million_tokens": 0}], SWITCHER))
    assert free["qwen"]["model_info"]["input_cost_per_token"] == 0
    assert "output_cost_per_token" not in free["qwen"]["model_info"]


@pytest.mark.parametrize("price", [-1, "1", True])
def test_a_bad_price_names_the_model_and_field(price):
    with pytest.raises(
        gw.LiteLLMConfigError, match="'qwen': output_cost_per_million_tokens must be a number >= 0"
    ):
        gw.build_litellm_config([{"name": "qwen", "output_cost_per_million_tokens": price}], SWITCHER)


def test_secrets_come_from_the_environment_only():
    config = gw.build_litellm_config(CATALOG, SWITCHER)
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert config["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    for entry in config["model_list"]:
        assert "api_key" not in entry["litellm_params"]


def test_nothing_wakes_models_behind_the_clients_back():
    config = gw.build_litellm_config(CATALOG, SWITCHER)
    assert config["general_settings"]["background_health_checks"] is False
    with pytest.raises(gw.LiteLLMConfigError, match="background_health_checks would wake"):
        gw.build_litellm_config(CATALOG, SWITCHER, {"general_settings": {"background_health_checks": True}})


@pytest.mark.parametrize("queue", [30, 300, 900])
def test_timeouts_outlast_the_switchers_queue(queue):
    config = gw.build_litellm_config(CATALOG, SWITCHER, {"queue_timeout_seconds": queue})
    timeouts = gw.config_timeouts(config)
    assert timeouts["timeout"] == queue + 600
    assert timeouts["stream_timeout"] == queue + 120
    assert config["litellm_settings"]["request_timeout"] >= timeouts["timeout"]


def test_retries_are_few_and_spaced_and_nothing_cools_down():
    router = gw.build_litellm_config(CATALOG, SWITCHER)["router_settings"]
    assert router == {"num_retries": 1, "retry_after": 5, "disable_cooldowns": True}
    assert all(
        e["litellm_params"]["max_retries"] == 0
        for e in gw.build_litellm_config(CATALOG, SWITCHER)["model_list"]
    )


def test_anthropic_route_metrics_and_privacy_settings():
    settings = gw.build_litellm_config(CATALOG, SWITCHER)["litellm_settings"]
    assert settings["use_chat_completions_url_for_anthropic_messages"] is True
    assert settings["callbacks"] == ["prometheus"]
    assert settings["require_auth_for_metrics_endpoint"] is False
    assert settings["turn_off_message_logging"] is True
    stored = gw.build_litellm_config(CATALOG, SWITCHER, {"store_prompts": True, "metrics_require_auth": True})
    assert stored["litellm_settings"]["turn_off_message_logging"] is False
    assert stored["general_settings"]["store_prompts_in_spend_logs"] is True
    assert stored["litellm_settings"]["require_auth_for_metrics_endpoint"] is True


def test_extra_settings_merge_over_the_roles():
    config = gw.build_litellm_config(
        CATALOG, SWITCHER, {"router_settings": {"num_retries": 0}, "litellm_settings": {"json_logs": False}}
    )
    assert config["router_settings"]["num_retries"] == 0
    assert config["litellm_settings"]["json_logs"] is False
    assert config["litellm_settings"]["callbacks"] == ["prometheus"]


@pytest.mark.parametrize(
    ("models", "base", "settings", "message"),
    [
        ([], SWITCHER, None, "k3sllm_models is empty"),
        ([{"aliases": ["x"]}], SWITCHER, None, "has no name"),
        ([{"name": "a"}, {"name": "b", "aliases": ["a"]}], SWITCHER, None, "'a' names both 'a' and 'b'"),
        (CATALOG, "switcher:8080", None, "switcher_api_base must be an http"),
        (CATALOG, SWITCHER, {"queue_timeout_seconds": 0}, "queue_timeout_seconds must be a positive"),
        (CATALOG, SWITCHER, {"num_retries": -1}, "num_retries must be a whole number"),
        (CATALOG, SWITCHER, {"num_retries": True}, "num_retries must be a whole number"),
        (CATALOG, SWITCHER, {"timeout": 5}, "unknown settings timeout"),
    ],
)
def test_bad_input_names_the_setting(models, base, settings, message):
    with pytest.raises(gw.LiteLLMConfigError, match=message):
        gw.build_litellm_config(models, base, settings)


@pytest.mark.parametrize(
    ("cores", "workers"),
    [(1, 2), (2, 2), (8, 2), (9, 3), (16, 4), (32, 8), (64, 16), (128, 16), ("24", 6)],
)
def test_workers_are_a_quarter_of_the_cores_within_bounds(cores, workers):
    assert gw.gateway_workers(cores) == workers


def test_the_worker_rule_keeps_up_with_a_gpu():
    # A 32-core H100 server: 8 workers carry about 6,400 streamed chunks/s (one chunk per token), above
    # what one 7-8B model streams at full batch, and 360 requests/s.
    capacity = gw.gateway_capacity(gw.gateway_workers(32))
    assert capacity == {"requests_per_second": 360, "chunks_per_second": 6400}


@pytest.mark.parametrize("cores", [0, -4, "many", None])
def test_workers_refuse_nonsense(cores):
    with pytest.raises(gw.LiteLLMConfigError, match="cpu_cores"):
        gw.gateway_workers(cores)


def test_resources_grow_with_the_workers():
    two, eight = gw.gateway_resources(2), gw.gateway_resources(8)
    assert two == {"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"memory": "1792Mi"}}
    assert eight["requests"]["cpu"] == "4000m" and "cpu" not in eight["limits"]
    with pytest.raises(gw.LiteLLMConfigError):
        gw.gateway_resources(0)


def test_node_cores_prefer_the_gpu_nodes():
    nodes = [
        {"metadata": {"labels": {}}, "status": {"capacity": {"cpu": "4"}}},
        {"metadata": {"labels": {"nvidia.com/gpu.present": "true"}}, "status": {"capacity": {"cpu": "64"}}},
        {
            "metadata": {"labels": {"nvidia.com/gpu.present": "true"}},
            "status": {"capacity": {"cpu": "48000m"}},
        },
    ]
    assert gw.node_cpu_cores(nodes) == 48
    assert gw.node_cpu_cores(nodes[:1]) == 4
    assert gw.node_cpu_cores([{"metadata": {}, "status": {}}]) is None
    assert gw.node_cpu_cores(None) is None


def test_database_url_encodes_the_password():
    password = "p@ss/w:rd?#%"
    url = gw.database_url(password, "litellm-postgres.k3sllm.svc")
    parts = urlsplit(url)
    assert (
        parts.scheme == "postgresql"
        and parts.hostname == "litellm-postgres.k3sllm.svc"
        and parts.port == 5432
    )
    assert unquote(parts.password) == password and parts.username == "litellm" and parts.path == "/litellm"
    with pytest.raises(gw.LiteLLMConfigError, match="password is empty"):
        gw.database_url("", "host")


def test_filters_wrap_errors_for_ansible():
    filters = FilterModule().filters()
    assert filters["litellm_workers"](16) == 4
    assert filters["litellm_config"](CATALOG, SWITCHER)["model_list"][0]["model_name"] == "qwen"
    assert filters["litellm_node_cores"]([], [12, 8]) == 8
    assert filters["litellm_node_cores"]([], None) == 1
    assert filters["litellm_resources"](2)["limits"]["memory"] == "1792Mi"
    assert filters["litellm_database_url"]("pw", "h").startswith("postgresql://litellm:pw@h:5432/")
    with pytest.raises(AnsibleFilterError, match="k3sllm_models is empty"):
        filters["litellm_config"]([], SWITCHER)
    with pytest.raises(AnsibleFilterError, match="cpu_cores"):
        filters["litellm_workers"](0)
