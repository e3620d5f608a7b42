"""Preflight's decisions (CUDA, kernel modules, compute capability, the one failure message) with injected facts."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.preflight import (
    FilterModule,
    preflight_branch_cuda,
    preflight_check,
    preflight_compute_capability_check,
    preflight_cuda_check,
    preflight_failures,
    preflight_kernel_modules_check,
    preflight_min_branch,
)


@pytest.mark.parametrize(
    ("branch", "cuda"),
    [
        ("535", "12.2"),
        ("550", "12.4"),
        ("570", "12.8"),
        ("575", "12.9"),
        ("580", "13.0"),
        (590, "13.1"),
        ("470", ""),
    ],
)
def test_branch_cuda(branch, cuda):
    assert preflight_branch_cuda(branch) == cuda


@pytest.mark.parametrize(
    ("cuda", "branch"), [("12.4", "550"), ("12.7", "570"), ("13.0", "580"), ("13.0.2", "580")]
)
def test_min_branch(cuda, branch):
    assert preflight_min_branch(cuda) == branch


def test_min_branch_beyond_the_table_is_an_error_not_a_guess():
    with pytest.raises(AnsibleFilterError, match="CUDA_MIN_DRIVER"):
        preflight_min_branch("99.0")


@pytest.mark.parametrize(
    ("driver_cuda", "planned", "required", "ok", "in_problem"),
    [
        # The loaded driver answers: its CUDA decides, whatever the plan.
        ("13.0", "", "13.0", True, None),
        ("13.1", "535", "13.0", True, None),
        ("12.4", "580", "13.0", False, "supports CUDA 12.4"),
        ("12.9", "", "13.0", False, "needs CUDA 13.0"),
        # No driver yet: the branch this run would install decides.
        ("", "580", "13.0", True, None),
        (None, "535", "13.0", False, "Driver branch 535"),
        ("", "550", "12.4", True, None),
        ("", "550", "12.8", False, "supports CUDA 12.4"),
        # Neither known (a lab host, nvidia_driver not in the play): nothing to decide.
        ("", "", "13.0", True, None),
    ],
)
def test_cuda_check(driver_cuda, planned, required, ok, in_problem):
    record = preflight_cuda_check(driver_cuda, required, image="vllm:v0", planned_branch=planned)
    assert record["ok"] is ok
    if ok:
        assert record["problem"] == "" and record["fix"] == ""
    else:
        assert in_problem in record["problem"]
        assert "vllm:v0" in record["problem"]
        assert f"branch {preflight_min_branch(required)} or newer" in record["fix"]
        assert "k3sllm_vllm_image" in record["fix"]


def test_cuda_check_rejects_a_required_version_that_is_not_one():
    with pytest.raises(AnsibleFilterError, match="k3sllm_vllm_image_min_cuda"):
        preflight_cuda_check("13.0", "latest")


@pytest.mark.parametrize(
    ("distribution", "source", "signed", "installed", "available", "ok", "in_problem"),
    [
        ("Ubuntu", "auto", True, False, False, True, None),
        ("Ubuntu", "auto", False, False, True, True, None),
        ("Ubuntu", "auto", False, True, False, True, None),
        ("Ubuntu", "auto", False, False, False, False, "neither signed NVIDIA modules"),
        ("Ubuntu", "signed", False, True, True, False, "No signed NVIDIA modules"),
        ("Ubuntu", "signed", True, False, False, True, None),
        ("Ubuntu", "dkms", True, False, False, False, "neither signed"),
        ("Ubuntu", "dkms", True, False, True, True, None),
        # Debian has no signed NVIDIA modules: a signed package in apt does not count.
        ("Debian", "auto", True, False, False, False, "DKMS needs the headers"),
        ("Debian", "auto", False, False, True, True, None),
        ("Debian", "auto", False, True, False, True, None),
    ],
)
def test_kernel_modules_check(distribution, source, signed, installed, available, ok, in_problem):
    record = preflight_kernel_modules_check(
        distribution,
        "6.8.0-45-generic",
        signed_package="linux-modules-nvidia-580-server-6.8.0-45-generic",
        signed_available=signed,
        headers_installed=installed,
        headers_available=available,
        module_source=source,
    )
    assert record["ok"] is ok
    if not ok:
        assert in_problem in record["problem"]
        assert "6.8.0-45-generic" in record["problem"]
        assert "apt-get" in record["fix"]


H100 = {"name": "NVIDIA H100", "compute_capability": "9.0"}
T4 = {"name": "Tesla T4", "compute_capability": "7.5"}
L4_BY_ARCHITECTURE = {"name": "NVIDIA L4", "architecture": "Ada Lovelace"}
V100_BY_ARCHITECTURE = {"name": "Tesla V100", "architecture": "Volta"}
P100 = {"name": "Tesla P100", "compute_capability": "6.0"}
UNKNOWN = {"name": "mystery", "architecture": "Rubin"}


@pytest.mark.parametrize(
    ("gpus", "model", "ok", "in_problem"),
    [
        ([H100], {"dtype": "bfloat16"}, True, None),
        ([T4], {"dtype": "bfloat16"}, False, "Tesla T4 has compute capability 7.5; bfloat16 needs"),
        ([T4], {"dtype": "float16"}, True, None),
        ([T4], {"dtype": "auto"}, True, None),
        ([T4], {}, True, None),
        ([V100_BY_ARCHITECTURE], {"dtype": "bfloat16"}, False, "7.0 or more (Volta)"),
        ([L4_BY_ARCHITECTURE], {"quantization": "fp8"}, True, None),
        ([T4], {"quantization": "fp8"}, False, "FP8 needs"),
        ([T4], {"quantization": "awq"}, True, None),
        ([V100_BY_ARCHITECTURE], {"quantization": "awq"}, False, "AWQ"),
        ([P100], {"dtype": "float16"}, False, "vLLM needs compute capability 7.0"),
        # Every GPU must run the model: one old card in the host fails it.
        ([H100, T4], {"dtype": "bfloat16"}, False, "Tesla T4"),
        # Capability unknown (no driver, unknown architecture): nothing to decide yet.
        ([UNKNOWN], {"dtype": "bfloat16"}, True, None),
        ([], {"dtype": "bfloat16"}, True, None),
    ],
)
def test_compute_capability_check(gpus, model, ok, in_problem):
    (record,) = preflight_compute_capability_check(gpus, [{"name": "m", **model}])
    assert record["ok"] is ok
    assert record["name"] == "compute capability for model m"
    if not ok:
        assert in_problem in record["problem"]
        assert "float16" in record["fix"]


def test_compute_capability_check_gives_one_record_per_model():
    records = preflight_compute_capability_check([T4], [{"name": "a", "dtype": "bfloat16"}, {"name": "b"}])
    assert [(r["name"], r["ok"]) for r in records] == [
        ("compute capability for model a", False),
        ("compute capability for model b", True),
    ]


@pytest.mark.parametrize(
    ("answer", "ok"),
    [
        ("0, 7.5\n", False),  # measured: a T4 although the XML only said Turing
        ("0, 9.0\n", True),
        (
            'Field "compute_cap" is not a valid field to query.\n',
            False,
        ),  # old driver: the architecture decides
        ("", False),
    ],
)
def test_compute_capability_from_nvidia_smi_query(answer, ok):
    gpus = [{"index": 0, "name": "GPU0", "architecture": "Turing"}]
    (record,) = preflight_compute_capability_check(
        gpus, [{"name": "m", "dtype": "bfloat16"}], compute_caps=answer
    )
    assert record["ok"] is ok


def test_check_wants_a_real_boolean():
    """A string 'false' is truthy: a check that receives one was handed an uncoerced -e value."""
    assert preflight_check(True, "x", "bad", "fix") == {"name": "x", "ok": True, "problem": "", "fix": ""}
    assert preflight_check(False, "x", "bad", "fix")["problem"] == "bad"
    with pytest.raises(AnsibleFilterError, match="not a boolean"):
        preflight_check("false", "x", "bad", "fix")


def test_failures_lists_every_problem_with_its_fix():
    checks = [
        preflight_check(True, "os", "no", "no"),
        preflight_check(False, "cpu", "2 threads", "use a larger host"),
        preflight_check(False, "disk", "1 GiB free", ""),
    ]
    result = preflight_failures(checks)
    assert result["count"] == 2
    assert [c["name"] for c in result["failed"]] == ["cpu", "disk"]
    assert result["message"].splitlines() == [
        "2 preflight check(s) failed; nothing was changed:",
        "1. [cpu] 2 threads",
        "   Fix: use a larger host",
        "2. [disk] 1 GiB free",
    ]


def test_failures_of_passing_checks_is_empty():
    assert preflight_failures([preflight_check(True, "os", "", "")]) == {
        "failed": [],
        "count": 0,
        "message": "",
    }


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "preflight_check",
        "preflight_branch_cuda",
        "preflight_min_branch",
        "preflight_cuda_check",
        "preflight_kernel_modules_check",
        "preflight_compute_capability_check",
        "preflight_failures",
    }
