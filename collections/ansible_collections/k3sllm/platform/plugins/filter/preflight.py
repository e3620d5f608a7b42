"""Decisions behind roles/preflight, kept pure so they can be tested with injected facts.

Each ``preflight_*_check`` filter returns one check record, ``{"name", "ok", "problem", "fix"}``
(a list of them for the per-model check); the role collects every record and
``preflight_failures`` turns the failed ones into one message, so a host with three problems
shows all three in one run.

.. code-block:: yaml

    preflight_checks: >-
      {{ preflight_checks + [preflight_gpu.cuda_version | k3sllm.platform.preflight_cuda_check(
           required=k3sllm_vllm_image_min_cuda, image=k3sllm_vllm_image)] }}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# Lowest Linux x86_64 driver release for each CUDA minor release, from the table "CUDA Toolkit and
# Corresponding Driver Versions" in NVIDIA's CUDA Toolkit release notes. nvidia-smi prints the
# highest of these a driver supports as its "CUDA Version".
CUDA_MIN_DRIVER: dict[tuple[int, int], tuple[int, ...]] = {
    (12, 0): (525, 60, 13),
    (12, 1): (530, 30, 2),
    (12, 2): (535, 54, 3),
    (12, 3): (545, 23, 6),
    (12, 4): (550, 54, 14),
    (12, 5): (555, 42, 2),
    (12, 6): (560, 28, 3),
    (12, 8): (570, 26),
    (12, 9): (575, 51, 3),
    (13, 0): (580, 65, 6),
    (13, 1): (590, 44, 1),
}

# Lowest compute capability of each architecture as nvidia-smi names it (product_architecture);
# used when the driver is too old to answer --query-gpu=compute_cap.
ARCHITECTURE_CAPABILITY: dict[str, tuple[int, int]] = {
    "pascal": (6, 0),
    "volta": (7, 0),
    "turing": (7, 5),
    "ampere": (8, 0),
    "ada lovelace": (8, 9),
    "hopper": (9, 0),
    "blackwell": (10, 0),
}

# vLLM's own floor (its GPU installation notes: compute capability 7.0 or higher).
VLLM_MIN_CAPABILITY = (7, 0)
# What a model's dtype or quantization needs beyond that, and why (vLLM's quantization notes:
# FP8 runs as weight-only W8A16 through the Marlin kernels from 8.0, with FP8 compute from 8.9).
DTYPE_MIN_CAPABILITY: dict[str, tuple[tuple[int, int], str]] = {
    "bfloat16": ((8, 0), "bfloat16 needs compute capability 8.0 (Ampere) or newer"),
}
QUANTIZATION_MIN_CAPABILITY: dict[str, tuple[tuple[int, int], str]] = {
    "fp8": ((8, 0), "FP8 needs compute capability 8.0 (weight-only) and 8.9 (Ada, Hopper) for FP8 compute"),
    "awq": ((7, 5), "AWQ kernels need compute capability 7.5 (Turing) or newer"),
    "awq_marlin": ((8, 0), "AWQ Marlin kernels need compute capability 8.0 (Ampere) or newer"),
    "gptq_marlin": ((8, 0), "GPTQ Marlin kernels need compute capability 8.0 (Ampere) or newer"),
}

_VERSION_RE = re.compile(r"^\s*(\d+(?:\.\d+)*)\s*$")


def _version(value: Any, what: str) -> tuple[int, ...]:
    match = _VERSION_RE.match(str(value))
    if not match:
        raise AnsibleFilterError(f"preflight: {what} must be a dotted version such as 13.0, not {value!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def _text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _record(name: str, problem: str = "", fix: str = "") -> dict[str, Any]:
    return {"name": name, "ok": not problem, "problem": problem, "fix": fix}


def preflight_check(ok: Any, name: str, problem: str, fix: str) -> dict[str, Any]:
    """A check record from a condition the role worked out (``ok`` must be a real boolean)."""
    if not isinstance(ok, bool):
        raise AnsibleFilterError(f"preflight: check {name!r} got {ok!r} ({type(ok).__name__}), not a boolean")
    return _record(name, "" if ok else problem, "" if ok else fix)


def preflight_branch_cuda(branch: Any) -> str:
    """Highest CUDA version a driver branch (its major number, such as 580) supports; "" if older than 12.0."""
    major = _version(branch, "the driver branch")[0]
    supported = [cuda for cuda, driver in CUDA_MIN_DRIVER.items() if driver[0] <= major]
    return _text(max(supported)) if supported else ""


def preflight_min_branch(cuda: Any) -> str:
    """Lowest driver branch that supports a CUDA version."""
    wanted = _version(cuda, "the CUDA version")[:2]
    candidates = [driver[0] for version, driver in CUDA_MIN_DRIVER.items() if version >= wanted]
    if not candidates:
        raise AnsibleFilterError(
            f"preflight: no known driver branch supports CUDA {cuda}; extend CUDA_MIN_DRIVER"
        )
    return str(min(candidates))


def preflight_cuda_check(
    driver_cuda: Any,
    required: Any,
    image: str = "the vLLM image",
    planned_branch: Any = "",
    driver_version: Any = "",
) -> dict[str, Any]:
    """The driver's CUDA version (nvidia-smi), or that of the branch this run would install, against the image's."""
    name = "driver CUDA version"
    need = _version(required, "k3sllm_vllm_image_min_cuda")[:2]
    branch = preflight_min_branch(_text(need))
    fix = (
        f"Install NVIDIA driver branch {branch} or newer (set nvidia_driver_branch; on Debian, whose archive "
        f"stops at 550, enable nvidia_driver_cuda_repo_enabled) and reboot, or pin a vLLM image built for an "
        f"older CUDA in k3sllm_vllm_image together with k3sllm_vllm_image_min_cuda."
    )
    if driver_cuda not in (None, ""):
        have = _version(driver_cuda, "the driver's CUDA version")[:2]
        if have >= need:
            return _record(name)
        loaded = f"driver {driver_version}" if driver_version else "The loaded driver"
        return _record(
            name,
            f"{loaded} supports CUDA {_text(have)}; {image} needs CUDA {_text(need)} or newer.",
            fix,
        )
    if planned_branch not in (None, ""):
        branch_cuda = preflight_branch_cuda(planned_branch)
        if branch_cuda and _version(branch_cuda, "CUDA")[:2] >= need:
            return _record(name)
        return _record(
            name,
            f"Driver branch {planned_branch} (nvidia_driver_branch, what this run would install) supports CUDA "
            f"{branch_cuda or 'older than 12.0'}; {image} needs CUDA {_text(need)} or newer.",
            fix,
        )
    return _record(name)


def preflight_kernel_modules_check(
    distribution: str,
    kernel: str,
    signed_package: str = "",
    signed_available: Any = False,
    headers_installed: Any = False,
    headers_available: Any = False,
    module_source: str = "auto",
) -> dict[str, Any]:
    """Whether the running kernel can get NVIDIA modules: Canonical's signed ones (Ubuntu) or DKMS + headers."""
    name = "kernel modules for the running kernel"
    signed_ok = distribution == "Ubuntu" and module_source != "dkms" and bool(signed_available)
    dkms_ok = module_source != "signed" and (bool(headers_installed) or bool(headers_available))
    if signed_ok or dkms_ok:
        return _record(name)
    headers = f"linux-headers-{kernel}"
    if distribution == "Ubuntu" and module_source == "signed":
        problem = f"No signed NVIDIA modules for the running kernel {kernel}: apt offers no {signed_package}."
        fix = (
            "Run apt-get update and boot the newest kernel of the archive (apt-get dist-upgrade, reboot): "
            "Canonical builds signed modules for current kernels only. Or set nvidia_driver_module_source: auto "
            "to allow DKMS."
        )
    elif distribution == "Ubuntu":
        problem = (
            f"The running kernel {kernel} has neither signed NVIDIA modules ({signed_package}) nor kernel "
            f"headers ({headers}) in apt, so no driver module can be installed for it."
        )
        fix = (
            "Run apt-get update; if the packages are still missing the kernel is no longer in the archive: "
            "apt-get dist-upgrade and reboot into the current kernel, then run again."
        )
    else:
        problem = (
            f"DKMS needs the headers of the running kernel {kernel}, and {headers} is neither installed nor "
            f"offered by apt."
        )
        fix = (
            "Run apt-get update; if it is still missing, install the current kernel (apt-get dist-upgrade) and "
            "reboot into it, then run again."
        )
    return _record(name, problem, fix)


def _capability(gpu: Mapping[str, Any]) -> tuple[tuple[int, int] | None, str]:
    """A GPU's compute capability: measured (compute_capability) or the floor of its architecture."""
    measured = gpu.get("compute_capability")
    if measured not in (None, ""):
        return tuple(_version(measured, "compute_capability")[:2]), str(measured)  # type: ignore[return-value]
    architecture = str(gpu.get("architecture") or "").strip().lower()
    floor = ARCHITECTURE_CAPABILITY.get(architecture)
    if floor is None:
        return None, ""
    return floor, f"{_text(floor)} or more ({gpu.get('architecture')})"


def _measured_capabilities(query_output: str) -> dict[int, str]:
    """Index to compute capability from ``nvidia-smi --query-gpu=index,compute_cap --format=csv,noheader``."""
    found = {}
    for line in str(query_output or "").splitlines():
        index, _separator, capability = line.partition(",")
        if index.strip().isdigit() and _VERSION_RE.match(capability):
            found[int(index)] = capability.strip()
    return found


def preflight_compute_capability_check(
    gpus: Iterable[Mapping[str, Any]] | None,
    models: Iterable[Mapping[str, Any]] | None,
    compute_caps: str = "",
) -> list[dict[str, Any]]:
    """One record per model: can every GPU run its dtype and quantization? Unknown capability passes.

    ``compute_caps`` is nvidia-smi's answer to ``--query-gpu=index,compute_cap`` (drivers older than 510
    do not know the field: then the architecture's floor is used).
    """
    records = []
    known = []
    measured = _measured_capabilities(compute_caps)
    for gpu in gpus or []:
        if gpu.get("index") in measured and not gpu.get("compute_capability"):
            gpu = {**gpu, "compute_capability": measured[gpu["index"]]}
        capability, shown = _capability(gpu)
        if capability is not None:
            known.append((capability, shown, gpu.get("name") or f"GPU {gpu.get('index', '?')}"))
    for model in models or []:
        name = f"compute capability for model {model.get('name')}"
        needs = [(VLLM_MIN_CAPABILITY, "vLLM needs compute capability 7.0 or newer")]
        dtype = str(model.get("dtype") or "auto").lower()
        quantization = str(model.get("quantization") or "").lower()
        if dtype in DTYPE_MIN_CAPABILITY:
            needs.append(DTYPE_MIN_CAPABILITY[dtype])
        if quantization in QUANTIZATION_MIN_CAPABILITY:
            needs.append(QUANTIZATION_MIN_CAPABILITY[quantization])
        problems = [
            f"{gpu_name} has compute capability {shown}; {why}"
            for capability, shown, gpu_name in known
            for minimum, why in needs
            if capability < minimum
        ]
        if not problems:
            records.append(_record(name))
            continue
        fix = (
            "Serve this model on a newer GPU, or change it in k3sllm_models: dtype float16 instead of bfloat16, "
            "or another quantization (or none)."
        )
        records.append(
            _record(
                name,
                f"Model {model.get('name')} ({dtype}, quantization {quantization or 'none'}): "
                + "; ".join(sorted(set(problems)))
                + ".",
                fix,
            )
        )
    return records


def preflight_failures(checks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The failed checks and one message listing each problem with its fix."""
    failed = [dict(check) for check in checks or [] if not check.get("ok")]
    lines = [f"{len(failed)} preflight check(s) failed; nothing was changed:"] if failed else []
    for number, check in enumerate(failed, start=1):
        lines.append(f"{number}. [{check.get('name')}] {check.get('problem')}")
        if check.get("fix"):
            lines.append(f"   Fix: {check.get('fix')}")
    return {"failed": failed, "count": len(failed), "message": "\n".join(lines)}


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "preflight_check": preflight_check,
            "preflight_branch_cuda": preflight_branch_cuda,
            "preflight_min_branch": preflight_min_branch,
            "preflight_cuda_check": preflight_cuda_check,
            "preflight_kernel_modules_check": preflight_kernel_modules_check,
            "preflight_compute_capability_check": preflight_compute_capability_check,
            "preflight_failures": preflight_failures,
        }
