"""Parse ``nvidia-smi -q -x`` output and scan PCI for NVIDIA GPUs.

Shared by the ``nvidia_gpu_facts`` module and its tests. The XML schema is NVIDIA's
``nvsmi_device`` DTD: ``<nvidia_smi_log>`` holds driver-wide fields and one ``<gpu id=...>``
element per device. Values carry units (``"81559 MiB"``) or ``"N/A"``.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Any

NVIDIA_PCI_VENDOR = "0x10de"
# PCI base class 0x03 is "display controller": 0x0300 VGA (consumer and workstation cards),
# 0x0302 3D controller (data-centre cards without a display output).
DISPLAY_CLASS_PREFIX = "0x03"

_MIB_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*MiB\s*$")


class NvidiaSmiParseError(ValueError):
    """The text is not nvidia-smi's XML log."""


def _text(element: ET.Element | None, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value in ("", "N/A", "Not Supported", "[N/A]") else value


def _mib(value: str | None) -> int | None:
    if value is None:
        return None
    match = _MIB_RE.match(value)
    return int(float(match.group(1))) if match else None


def _number(value: str | None, unit: str) -> float | None:
    if value is None:
        return None
    value = value.replace(unit, "").strip()
    try:
        return float(value)
    except ValueError:
        return None


def _mig_mode(gpu: ET.Element) -> dict[str, str | None]:
    return {
        "current": _text(gpu, "mig_mode/current_mig"),
        "pending": _text(gpu, "mig_mode/pending_mig"),
    }


def parse_nvidia_smi_xml(xml_text: str) -> dict[str, Any]:
    """Turn the XML log into facts: driver and CUDA versions and one dict per GPU."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise NvidiaSmiParseError(f"nvidia-smi did not return XML: {exc}") from exc
    if root.tag != "nvidia_smi_log":
        raise NvidiaSmiParseError(f"unexpected root element <{root.tag}>, expected <nvidia_smi_log>")

    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        mig = _mig_mode(gpu)
        minor = _text(gpu, "minor_number") or ""
        gpus.append(
            {
                "index": int(minor) if minor.isdigit() else index,
                "name": _text(gpu, "product_name"),
                "brand": _text(gpu, "product_brand"),
                "architecture": _text(gpu, "product_architecture"),
                "uuid": _text(gpu, "uuid"),
                "serial": _text(gpu, "serial"),
                "pci_bus_id": gpu.get("id") or _text(gpu, "pci/pci_bus_id"),
                "vbios_version": _text(gpu, "vbios_version"),
                "persistence_mode": _text(gpu, "persistence_mode") == "Enabled",
                "memory_total_mib": _mib(_text(gpu, "fb_memory_usage/total")),
                "memory_used_mib": _mib(_text(gpu, "fb_memory_usage/used")),
                "memory_free_mib": _mib(_text(gpu, "fb_memory_usage/free")),
                "mig_mode": mig,
                "mig_enabled": mig["current"] == "Enabled",
                "temperature_c": _number(_text(gpu, "temperature/gpu_temp"), "C"),
                "compute_mode": _text(gpu, "compute_mode"),
            }
        )

    attached = _text(root, "attached_gpus")
    return {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
        "attached_gpus": int(attached) if attached and attached.isdigit() else len(gpus),
        "gpus": gpus,
    }


def scan_pci(sysfs_root: str = "/sys/bus/pci/devices") -> list[dict[str, str | None]]:
    """List NVIDIA display-class PCI functions from sysfs; works before any driver is installed."""
    devices: list[dict[str, str | None]] = []
    try:
        entries = sorted(os.listdir(sysfs_root))
    except OSError:
        return devices
    for address in entries:
        base = os.path.join(sysfs_root, address)
        try:
            with open(os.path.join(base, "vendor"), encoding="ascii") as handle:
                vendor = handle.read().strip().lower()
            with open(os.path.join(base, "class"), encoding="ascii") as handle:
                pci_class = handle.read().strip().lower()
            with open(os.path.join(base, "device"), encoding="ascii") as handle:
                device = handle.read().strip().lower()
        except OSError:
            continue
        if vendor == NVIDIA_PCI_VENDOR and pci_class.startswith(DISPLAY_CLASS_PREFIX):
            driver_link = os.path.join(base, "driver")
            driver = os.path.basename(os.readlink(driver_link)) if os.path.islink(driver_link) else None
            devices.append({"address": address, "device_id": device, "class": pci_class, "driver": driver})
    return devices
