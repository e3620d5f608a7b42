"""The catalog normaliser: validation, defaults applied once, and each consumer's part of the record."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.catalog import FilterModule
from ansible_collections.k3sllm.platform.plugins.plugin_utils import catalog as cat

SHA = "a09a35458c702b33eeacc393d103063234e8bc28"
SETTINGS = {
    "namespace": "k3sllm",
    "engine_port": 8000,
    "switcher_service": "switcher",
    "switcher_port": 8080,
    "weights_dir": "/srv/k3sllm/models/",
}
FILTERS = FilterModule().filters()


def model(name: str = "qwen", **fields: object) -> dict:
    entry: dict = {
        "name": name,
        "repo": f"org/{name}",
        "revision": SHA,
        "gpu_memory_utilization": 0.45,
        "max_model_len": 16384,
    }
    entry.update(fields)
    return entry


def normalise(models: list[dict], **settings: object) -> list[dict]:
    return cat.normalise_catalog(models, **{**SETTINGS, **settings})  # type: ignore[arg-type]


def test_minimal_entry_gets_every_default_once():
    (record,) = normalise([model()])
    for key, default in cat.DEFAULTS.items():
        assert record[key] == default, key
    assert record["engine"]["args"] == [
        "/models/qwen",
        "--served-model-name=qwen",
        "--host=0.0.0.0",
        "--port=8000",
        "--enable-sleep-mode",
        "--gpu-memory-utilization=0.45",
        "--max-model-len=16384",
        "--dtype=auto",
    ]
    assert record["switcher"] == {
        "name": "qwen",
        "base_url": "http://vllm-qwen.k3sllm.svc:8000",
        "aliases": [],
        "awake_by_default": False,
        "priority": 0,
        "gpu_memory_utilization": 0.45,
    }
    assert record["capacity"] == {"name": "qwen", "gpu_memory_utilization": 0.45, "awake_by_default": False}


def test_cross_role_names_come_from_the_settings():
    (record,) = normalise(
        [model("llama")], namespace="ai", engine_port=9000, switcher_service="sw", switcher_port=81
    )
    engine = record["engine"]
    assert engine["name"] == "vllm-llama" == cat.engine_name("llama")
    assert engine["labels"] == {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": "vllm-llama",
        "k3sllm.io/model": "llama",
    }
    assert engine["port"] == 9000
    assert engine["base_url"] == record["switcher"]["base_url"] == "http://vllm-llama.ai.svc:9000"
    assert engine["boot_grant_url"] == "http://sw.ai.svc:81/boot/llama"
    assert "--port=9000" in engine["args"]
    # The trailing slash of the setting does not double.
    assert engine["host_weights_path"] == f"/srv/k3sllm/models/llama/{SHA}"
    assert engine["model_path"] == "/models/llama" == engine["args"][0]


def test_optional_fields_reach_the_engine_and_the_switcher():
    (record,) = normalise(
        [
            model(
                dtype="bfloat16",
                quantization="awq",
                tool_call_parser="hermes",
                extra_args=["--enforce-eager", "--seed=1"],
                aliases=["claude-sonnet-4-5"],
                awake_by_default=True,
                priority=10,
                idle_ttl_seconds=1800,
            )
        ]
    )
    assert record["engine"]["args"][7:] == [
        "--dtype=bfloat16",
        "--quantization=awq",
        "--enable-auto-tool-choice",
        "--tool-call-parser=hermes",
        "--enforce-eager",
        "--seed=1",
    ]
    switcher = record["switcher"]
    assert switcher["aliases"] == ["claude-sonnet-4-5"]
    assert switcher["awake_by_default"] is True
    assert switcher["priority"] == 10
    assert switcher["idle_ttl_seconds"] == 1800
    assert record["capacity"]["awake_by_default"] is True


def test_served_name_reaches_the_engine_and_the_switcher():
    named, plain = normalise([model("llama", served_name="meta-llama/Llama-3.1-8B-Instruct"), model("qwen")])
    assert "--served-model-name=meta-llama/Llama-3.1-8B-Instruct" in named["engine"]["args"]
    assert named["switcher"]["served_name"] == "meta-llama/Llama-3.1-8B-Instruct"
    # Object names and the weights folder keep the catalog name.
    assert named["engine"]["name"] == "vllm-llama" and named["engine"]["model_path"] == "/models/llama"
    assert "--served-model-name=qwen" in plain["engine"]["args"]
    assert "served_name" not in plain["switcher"]


def test_zero_idle_ttl_is_left_out_of_the_switcher_entry():
    (record,) = normalise([model(idle_ttl_seconds=0)])
    assert "idle_ttl_seconds" not in record["switcher"]


def test_explicit_null_takes_the_default():
    (record,) = normalise([model(dtype=None, extra_args=None, aliases=None)])
    assert record["dtype"] == "auto"
    assert record["extra_args"] == [] and record["aliases"] == []


def test_input_and_defaults_are_not_shared_or_changed():
    catalog = [model(aliases=["a"]), model("other")]
    before = copy.deepcopy(catalog)
    first, second = normalise(catalog)
    first["aliases"].append("b")
    second["aliases"].append("c")
    assert catalog == before
    assert cat.DEFAULTS["aliases"] == []


def test_switcher_models_drop_vram_shares_without_a_gpu_size():
    catalog = normalise([model("a"), model("b", gpu_memory_utilization=0.3)])
    assert [m["gpu_memory_utilization"] for m in cat.switcher_models(catalog, plan_vram=True)] == [0.45, 0.3]
    assert all("gpu_memory_utilization" not in m for m in cat.switcher_models(catalog, plan_vram=False))
    # The records themselves keep their share.
    assert catalog[0]["switcher"]["gpu_memory_utilization"] == 0.45


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        ({"name": "a"}, "must be a list"),
        (["qwen"], r"k3sllm_models\[0\] must be a mapping"),
        ([{k: v for k, v in model().items() if k != "repo"}], "qwen lacks repo"),
        ([model(colour="red")], "unknown fields colour"),
        ([model("Tiny_Model")], '"Tiny_Model" is not usable as a Kubernetes name'),
        ([model("a" * 43)], "not usable as a Kubernetes name"),
        ([model(gpu_memory_utilization=1.5)], "gpu_memory_utilization 1.5; .* above 0 and at most 1"),
        ([model(gpu_memory_utilization=0)], "gpu_memory_utilization 0;"),
        ([model(gpu_memory_utilization="half")], "gpu_memory_utilization 'half'"),
        ([model(max_model_len="long")], "max_model_len 'long'"),
        (
            [model(tool_call_parser="Hermes 2")],
            'tool_call_parser "Hermes 2", which is not a vLLM parser name',
        ),
        ([model(aliases="claude")], "aliases 'claude'; it must be a list"),
        ([model("tiny"), model("tiny")], "duplicate names: tiny"),
        ([model("tiny"), model("other", aliases=["tiny"])], "used more than once: tiny"),
        ([model("a", aliases=["x"]), model("b", aliases=["x"])], "used more than once: x"),
    ],
)
def test_bad_catalogs_fail_with_the_field_and_the_fix(catalog, message):
    with pytest.raises(cat.CatalogError, match=message):
        normalise(catalog)
    with pytest.raises(AnsibleFilterError, match=message):
        FILTERS["catalog_normalise"](catalog, **SETTINGS)


def test_42_character_names_are_accepted():
    (record,) = normalise([model("a" * 42)])
    assert len(record["engine"]["name"]) == 47


def test_filter_checks_the_ports():
    with pytest.raises(AnsibleFilterError, match=r"engine_port .* port number"):
        FILTERS["catalog_normalise"]([model()], **{**SETTINGS, "engine_port": "http"})
    (record,) = FILTERS["catalog_normalise"]([model()], **{**SETTINGS, "engine_port": "8001"})
    assert record["engine"]["port"] == 8001


def test_filters_are_registered():
    catalog = FILTERS["catalog_normalise"]([model()], **SETTINGS)
    assert FILTERS["catalog_switcher_models"](catalog) == [
        {k: v for k, v in catalog[0]["switcher"].items() if k != "gpu_memory_utilization"}
    ]


def test_catalog_unpinned_lists_branch_revisions():
    unpinned = FILTERS["catalog_unpinned"](
        [
            {"name": "a", "repo": "o/a", "revision": SHA},
            {"name": "b", "repo": "o/b", "revision": "main"},
            {"name": "c", "repo": "o/c", "revision": SHA.upper()},
        ]
    )
    assert [m["name"] for m in unpinned] == ["b", "c"]
