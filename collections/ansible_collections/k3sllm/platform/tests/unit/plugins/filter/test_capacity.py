"""Capacity plan: one test per rule, the edge cases, and the filter wrapper."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.capacity import FilterModule, capacity_plan
from ansible_collections.k3sllm.platform.plugins.plugin_utils import capacity as cap

GIB = 1 << 30
H100 = 81559  # MiB, as nvidia-smi reports an H100 80GB


def model(name: str, gmu: float, awake: bool = False) -> dict:
    return {"name": name, "gpu_memory_utilization": gmu, "awake_by_default": awake}


def plan(models: list[dict], **kwargs: object) -> dict:
    args: dict = {
        "gpu_memory_mib": H100,
        "host_ram_mib": 256 * 1024,
        "disk_free_bytes": 2000 * GIB,
        "weight_bytes": {m["name"]: 4 * GIB for m in models},
        "sleep_level": 1,
        "sleeping_vram_gib": 1.0,
        "host_ram_reserve_gib": 16,
    }
    args.update(kwargs)
    return cap.capacity_plan(models, **args)


def rules(result: dict) -> list[str]:
    return [v["rule"] for v in result["violations"]]


def test_a_sensible_catalog_fits():
    result = plan([model("a", 0.45, True), model("b", 0.45), model("c", 0.3)])
    assert result["ok"] is True and result["violations"] == [] and result["warnings"] == []
    assert result["vram"]["awake"] == ["a"]
    # 0.45 awake + two sleepers x 1 GiB on 81559 MiB
    assert result["vram"]["total_fraction"] == pytest.approx(0.45 + 2 * 1024 / H100, abs=1e-4)
    assert result["models"][0]["vram_mib"] == round(0.45 * H100)
    assert result["host_ram"]["sleep_weights_bytes"] == 12 * GIB
    assert result["disk"]["download_bytes"] == 12 * GIB


def test_awake_set_over_the_gpu_is_named_with_numbers():
    # 0.99 awake + one sleeper's 1 GiB (0.0126 of an H100) crosses 1.
    result = plan([model("a", 0.5, True), model("b", 0.49, True), model("c", 0.2)])
    assert rules(result) == ["vram_awake_set"]
    violation = result["violations"][0]
    assert violation["models"] == ["a", "b"]
    assert violation["total_fraction"] == pytest.approx(0.99 + 1024 / H100, abs=1e-4)
    assert (
        "a 0.5" in violation["message"]
        and "b 0.49" in violation["message"]
        and "81559 MiB" in violation["message"]
    )
    assert result["summary"] == violation["message"]


def test_awake_set_exactly_at_one_fits():
    # vLLM starts an engine when free memory >= its share: two 0.5 engines share a GPU (module_utils/vram.py).
    assert plan([model("a", 0.5, True), model("b", 0.5, True)], sleeping_vram_gib=0)["ok"]
    result = plan([model("a", 0.5, True), model("b", 0.51, True)], sleeping_vram_gib=0)
    assert rules(result) == ["vram_awake_set"]


def test_residual_vram_of_many_sleepers_counts():
    sleepers = [model(f"s{i}", 0.1) for i in range(10)]
    ok = plan([model("a", 0.85, True), *sleepers], gpu_memory_mib=H100, weight_bytes={})
    assert ok["ok"], ok["summary"]
    # On a 24 GiB card ten sleeping engines keep 10 GiB: 0.85 no longer fits.
    small = plan([model("a", 0.85, True), *sleepers], gpu_memory_mib=24576, weight_bytes={})
    assert "vram_awake_set" in rules(small)


def test_a_model_that_cannot_wake_even_alone():
    models = [model("big", 0.95), *[model(f"s{i}", 0.1) for i in range(5)]]
    result = plan(models, gpu_memory_mib=40960, weight_bytes={})
    assert rules(result) == ["vram_single_model"]
    assert (
        result["violations"][0]["model"] == "big"
        and "5 sleeping engines" in result["violations"][0]["message"]
    )


def test_weights_larger_than_the_vram_share():
    result = plan([model("a", 0.2, True)], weight_bytes={"a": 17 * GIB})  # 0.2 x 79.6 GiB = 15.9 GiB
    assert rules(result) == ["weights_exceed_vram_share"]
    assert result["violations"][0]["weight_bytes"] == 17 * GIB
    assert "17.00 GiB" in result["violations"][0]["message"]


def test_sleep_level_one_needs_all_weights_in_ram_with_the_reserve():
    models = [model("a", 0.3, True), model("b", 0.3), model("c", 0.3)]
    sizes = {"a": 20 * GIB, "b": 20 * GIB, "c": 20 * GIB}
    fits = plan(models, weight_bytes=sizes, host_ram_mib=76 * 1024, host_ram_reserve_gib=16)
    assert fits["ok"], fits["summary"]  # 60 + 16 = 76 GiB: exactly enough
    short = plan(models, weight_bytes=sizes, host_ram_mib=75 * 1024, host_ram_reserve_gib=16)
    assert rules(short) == ["host_ram_sleep"]
    violation = short["violations"][0]
    assert violation["sleep_weights_bytes"] == 60 * GIB and violation["available_bytes"] == 59 * GIB
    assert "sleep level 2" in violation["message"]


def test_sleep_level_two_keeps_no_weights_in_ram():
    models = [model("a", 0.3, True), model("b", 0.3)]
    result = plan(models, weight_bytes={"a": 20 * GIB, "b": 20 * GIB}, host_ram_mib=8 * 1024, sleep_level=2)
    assert result["ok"], result["summary"]
    assert all(r["sleep_ram_bytes"] == 0 for r in result["models"])


def test_disk_counts_only_what_is_still_to_download():
    models = [model("a", 0.4, True), model("b", 0.4)]
    sizes = {"a": 30 * GIB, "b": 30 * GIB}
    short = plan(models, weight_bytes=sizes, disk_free_bytes=40 * GIB)
    assert rules(short) == ["disk"]
    assert (
        short["violations"][0]["download_bytes"] == 60 * GIB
        and short["violations"][0]["free_bytes"] == 40 * GIB
    )
    partly_there = plan(models, weight_bytes=sizes, present_bytes={"a": 30 * GIB}, disk_free_bytes=40 * GIB)
    assert partly_there["ok"]
    assert partly_there["disk"]["download_bytes"] == 30 * GIB


def test_invalid_utilization_is_reported_per_model():
    models = [model("zero", 0), model("one", 1.0), model("over", 1.01), model("fine", 0.3)]
    result = plan(models, weight_bytes={})
    invalid = [v for v in result["violations"] if v["rule"] == "invalid_gpu_memory_utilization"]
    assert [v["model"] for v in invalid] == ["zero", "over"]
    assert "at most 1" in invalid[1]["message"]


def test_missing_inputs_skip_rules_with_warnings():
    result = cap.capacity_plan([model("a", 0.5, True)])
    assert result["ok"] is True
    assert any("GPU memory unknown" in w for w in result["warnings"])
    assert any("weight size unknown" in w for w in result["warnings"])
    assert any("host RAM unknown" in w for w in result["warnings"])
    assert any("free disk unknown" in w for w in result["warnings"])


def test_empty_catalog_and_nothing_awake():
    assert cap.capacity_plan([], gpu_memory_mib=H100, host_ram_mib=1024, disk_free_bytes=0)["ok"]
    asleep = plan([model("a", 0.9), model("b", 0.9)])
    assert asleep["ok"] and asleep["vram"]["awake"] == []


def test_gpu_memory_from_facts_is_the_smallest_gpu():
    assert cap.gpu_memory_mib_from_facts([{"memory_total_mib": 81559}, {"memory_total_mib": 40960}]) == 40960
    assert cap.gpu_memory_mib_from_facts([]) is None


def test_filter_takes_gpu_facts_and_string_numbers():
    models = [model("a", 0.5, True), model("b", 0.5, True), model("c", 0.2)]  # + c's 1 GiB: over
    result = capacity_plan(
        models,
        gpus=[{"memory_total_mib": 81559}],
        host_ram_mib="262144",
        disk_free_bytes="1000000000000",
        weight_bytes={"a": "1000", "b": 1000},
    )
    assert result["vram"]["gpu_memory_mib"] == 81559
    assert rules(result) == ["vram_awake_set"]
    assert FilterModule().filters()["capacity_plan"] is capacity_plan


def test_filter_rejects_garbage():
    with pytest.raises(AnsibleFilterError, match="k3sllm_models"):
        capacity_plan({"name": "a"})  # type: ignore[arg-type]
    with pytest.raises(AnsibleFilterError, match="host_ram_mib"):
        capacity_plan([], host_ram_mib="lots")
