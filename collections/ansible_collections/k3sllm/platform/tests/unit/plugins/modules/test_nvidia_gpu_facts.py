"""nvidia_gpu_facts: parsing real-schema XML, PCI scan, and the no-driver paths."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ansible_collections.k3sllm.platform.plugins.module_utils.nvidia_smi import (
    NvidiaSmiParseError,
    parse_nvidia_smi_xml,
    scan_pci,
)
from ansible_collections.k3sllm.platform.plugins.modules import nvidia_gpu_facts

FIXTURES = Path(__file__).parent / "fixtures"


def fake_nvidia_smi(tmp_path: Path, body: str) -> str:
    """Write an executable that behaves like nvidia-smi for ``-q -x`` (a test stand-in)."""
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def fake_pci_tree(root: Path, devices: dict[str, tuple[str, str, str]]) -> str:
    for address, (vendor, pci_class, device) in devices.items():
        folder = root / address
        folder.mkdir(parents=True)
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "class").write_text(pci_class + "\n")
        (folder / "device").write_text(device + "\n")
    return str(root)


def test_parse_single_h100():
    facts = parse_nvidia_smi_xml((FIXTURES / "nvidia-smi-h100.xml").read_text())
    assert facts["driver_version"] == "550.127.05"
    assert facts["cuda_version"] == "12.4"
    assert facts["attached_gpus"] == 1
    (gpu,) = facts["gpus"]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["uuid"] == "GPU-5c3b6f0e-1d2a-4c1b-9a3e-0f6d2b7e8a11"
    assert gpu["memory_total_mib"] == 81559
    assert gpu["memory_free_mib"] == 81231
    assert gpu["pci_bus_id"] == "00000000:01:00.0"
    assert gpu["persistence_mode"] is True
    assert gpu["mig_enabled"] is False
    assert gpu["temperature_c"] == 31.0
    assert gpu["architecture"] == "Hopper"


def test_parse_two_gpus_with_mig_and_missing_values():
    facts = parse_nvidia_smi_xml((FIXTURES / "nvidia-smi-2xa100-mig.xml").read_text())
    first, second = facts["gpus"]
    assert [first["index"], second["index"]] == [0, 1]
    assert first["mig_enabled"] is True
    # A pending MIG change is reported but does not count as enabled until the GPU is reset.
    assert second["mig_enabled"] is False
    assert second["mig_mode"] == {"current": "Disabled", "pending": "Enabled"}
    # N/A becomes None rather than a string a template would compare against numbers.
    assert first["serial"] is None
    assert first["temperature_c"] is None


@pytest.mark.parametrize("text", ["", "Failed to initialize NVML", "<other/>"])
def test_parse_rejects_non_nvidia_smi_output(text):
    with pytest.raises(NvidiaSmiParseError):
        parse_nvidia_smi_xml(text)


def test_scan_pci_finds_only_nvidia_display_devices(tmp_path):
    root = fake_pci_tree(
        tmp_path / "pci",
        {
            "0000:00:02.0": ("0x8086", "0x030000", "0x46a6"),  # Intel iGPU
            "0000:01:00.0": ("0x10de", "0x030200", "0x2330"),  # H100 (3D controller)
            "0000:01:00.1": ("0x10de", "0x040300", "0x22ba"),  # NVIDIA HDMI audio: not a GPU
            "0000:02:00.0": ("0x10de", "0x030000", "0x2684"),  # RTX 4090 (VGA)
        },
    )
    found = scan_pci(root)
    assert [d["address"] for d in found] == ["0000:01:00.0", "0000:02:00.0"]
    assert found[0]["device_id"] == "0x2330"
    assert found[0]["driver"] is None


def test_scan_pci_reports_bound_driver(tmp_path):
    root = fake_pci_tree(tmp_path / "pci", {"0000:01:00.0": ("0x10de", "0x030200", "0x2330")})
    driver_dir = tmp_path / "drivers" / "nvidia"
    driver_dir.mkdir(parents=True)
    os.symlink(driver_dir, Path(root) / "0000:01:00.0" / "driver")
    assert scan_pci(root)[0]["driver"] == "nvidia"


def test_scan_pci_without_sysfs_is_empty(tmp_path):
    assert scan_pci(str(tmp_path / "missing")) == []


def test_module_with_working_driver(tmp_path, run_module):
    xml = (FIXTURES / "nvidia-smi-h100.xml").read_text()
    (tmp_path / "out.xml").write_text(xml)
    binary = fake_nvidia_smi(tmp_path, f'[ "$1 $2" = "-q -x" ] || exit 9\ncat "{tmp_path}/out.xml"\n')
    pci = fake_pci_tree(tmp_path / "pci", {"0000:01:00.0": ("0x10de", "0x030200", "0x2330")})
    result = run_module(nvidia_gpu_facts.main, {"nvidia_smi_path": binary, "sysfs_pci_path": pci})
    assert result["changed"] is False
    assert result["gpu_present"] is True
    assert result["gpu_count"] == 1
    assert result["memory_total_mib"] == 81559
    assert result["driver_version"] == "550.127.05"
    assert len(result["pci_devices"]) == 1
    assert "driver_error" not in result


def test_module_without_driver_is_not_an_error(tmp_path, run_module):
    pci = fake_pci_tree(tmp_path / "pci", {"0000:01:00.0": ("0x10de", "0x030200", "0x2330")})
    result = run_module(
        nvidia_gpu_facts.main, {"nvidia_smi_path": str(tmp_path / "absent-nvidia-smi"), "sysfs_pci_path": pci}
    )
    assert result.get("failed") is not True
    assert result["gpu_present"] is False
    assert result["gpu_count"] == 0
    assert "not installed" in result["driver_error"]
    # The PCI scan still sees the card, which is how preflight works before the driver exists.
    assert result["pci_devices"][0]["address"] == "0000:01:00.0"


def test_module_reports_driver_library_mismatch(tmp_path, run_module):
    binary = fake_nvidia_smi(
        tmp_path, 'echo "Failed to initialize NVML: Driver/library version mismatch" >&2\nexit 18\n'
    )
    result = run_module(
        nvidia_gpu_facts.main, {"nvidia_smi_path": binary, "sysfs_pci_path": str(tmp_path / "none")}
    )
    assert result["gpu_present"] is False
    assert result["driver_error"] == "Failed to initialize NVML: Driver/library version mismatch"


def test_module_times_out_on_a_wedged_driver(tmp_path, run_module):
    binary = fake_nvidia_smi(tmp_path, "sleep 30\n")
    result = run_module(
        nvidia_gpu_facts.main,
        {"nvidia_smi_path": binary, "sysfs_pci_path": str(tmp_path / "none"), "timeout": 1},
    )
    assert result["gpu_present"] is False
    assert "did not answer within 1 s" in result["driver_error"]
