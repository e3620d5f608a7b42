#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: facts about NVIDIA GPUs from nvidia-smi and the PCI bus."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Gather facts about NVIDIA GPUs, with or without a working driver
description:
  - Scans the PCI bus (sysfs) for NVIDIA display-class devices, which works before any driver is
    installed.
  - Runs C(nvidia-smi -q -x) when it is present and parses the XML into driver and CUDA versions and
    one entry per GPU (name, UUID, memory, MIG mode).
  - A missing driver, or a driver that does not answer (for example after a package upgrade and
    before the reboot), is not an error; RV(gpu_present) is then false and RV(driver_error) says why.
  - Makes no changes, so it is safe in check mode.
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
options:
  nvidia_smi_path:
    description: Path or name of the nvidia-smi binary.
    type: str
    default: nvidia-smi
  sysfs_pci_path:
    description: Folder listing PCI devices; tests point it at a fake tree.
    type: path
    default: /sys/bus/pci/devices
  timeout:
    description: Seconds to wait for nvidia-smi, which can hang when the driver is wedged.
    type: int
    default: 30
extends_documentation_fragment:
  - k3sllm.platform.read_only
"""

EXAMPLES = r"""
- name: Gather GPU facts
  k3sllm.platform.nvidia_gpu_facts:
  register: k3sllm_gpu

- name: Require a working driver of the pinned version
  ansible.builtin.assert:
    that:
      - k3sllm_gpu.gpu_present
      - k3sllm_gpu.driver_version is version('550.127.05', '==')
"""

RETURN = r"""
gpu_present:
  description: True when nvidia-smi answered and listed at least one GPU.
  returned: always
  type: bool
pci_devices:
  description: NVIDIA display-class PCI functions found in sysfs, whether or not a driver is bound.
  returned: always
  type: list
  elements: dict
  sample: [{"address": "0000:01:00.0", "device_id": "0x2330", "class": "0x030200", "driver": "nvidia"}]
driver_version:
  description: Version of the loaded kernel driver, as nvidia-smi reports it.
  returned: when the driver answered
  type: str
  sample: "550.127.05"
cuda_version:
  description: Highest CUDA version the driver supports.
  returned: when the driver answered
  type: str
  sample: "12.4"
gpu_count:
  description: Number of GPUs nvidia-smi lists (0 when it does not answer).
  returned: always
  type: int
gpus:
  description: One entry per GPU.
  returned: always
  type: list
  elements: dict
  sample:
    - index: 0
      name: NVIDIA H100 80GB HBM3
      uuid: GPU-5c3b6f0e-1d2a-4c1b-9a3e-0f6d2b7e8a11
      memory_total_mib: 81559
      mig_enabled: false
memory_total_mib:
  description: Sum of the GPUs' framebuffer memory.
  returned: always
  type: int
mig_enabled:
  description: True when any GPU runs in MIG mode.
  returned: always
  type: bool
driver_error:
  description: Why the driver gave no facts (not installed, not loaded, version mismatch).
  returned: when gpu_present is false
  type: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.k3sllm.platform.plugins.module_utils.nvidia_smi import (
    NvidiaSmiParseError,
    parse_nvidia_smi_xml,
    scan_pci,
)


def gather(module: AnsibleModule) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "gpu_present": False,
        "pci_devices": scan_pci(module.params["sysfs_pci_path"]),
        "gpus": [],
        "gpu_count": 0,
        "memory_total_mib": 0,
        "mig_enabled": False,
    }
    binary = module.get_bin_path(module.params["nvidia_smi_path"])
    if binary is None:
        facts["driver_error"] = "nvidia-smi not found: the NVIDIA driver is not installed"
        return facts

    command = [binary, "-q", "-x"]
    timeout_bin = module.get_bin_path("timeout")
    if timeout_bin:
        command = [timeout_bin, str(module.params["timeout"]), *command]
    rc, out, err = module.run_command(command, check_rc=False)
    if rc == 124:
        facts["driver_error"] = f"nvidia-smi did not answer within {module.params['timeout']} s"
        return facts
    if rc != 0:
        # Typical: "Failed to initialize NVML: Driver/library version mismatch" before a reboot,
        # or "couldn't communicate with the NVIDIA driver" when the module is not loaded.
        message = (err or out).strip().splitlines()
        facts["driver_error"] = message[0] if message else f"nvidia-smi exited with {rc}"
        return facts
    try:
        parsed = parse_nvidia_smi_xml(out)
    except NvidiaSmiParseError as exc:
        facts["driver_error"] = str(exc)
        return facts

    facts.update(parsed)
    facts["gpu_count"] = len(parsed["gpus"])
    facts["gpu_present"] = facts["gpu_count"] > 0
    facts["memory_total_mib"] = sum(gpu["memory_total_mib"] or 0 for gpu in parsed["gpus"])
    facts["mig_enabled"] = any(gpu["mig_enabled"] for gpu in parsed["gpus"])
    if not facts["gpu_present"]:
        facts["driver_error"] = "nvidia-smi answered but lists no GPU"
    return facts


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi_path": {"type": "str", "default": "nvidia-smi"},
            "sysfs_pci_path": {"type": "path", "default": "/sys/bus/pci/devices"},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    module.run_command_environ_update = {"LC_ALL": "C"}
    facts = gather(module)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
