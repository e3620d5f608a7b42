"""What preflight leaves behind on a host: one local fact file and nothing else."""

import json


def test_preflight_fact_records_lab_mode(host):
    fact = host.file("/etc/ansible/facts.d/k3sllm_preflight.fact")
    assert fact.exists
    assert fact.user == "root"
    assert fact.mode == 0o644
    report = json.loads(fact.content_string)
    assert report["lab_mode"] is True
    # Containers have no NVIDIA PCI devices and no EFI variables.
    assert report["pci_gpus"] == []
    assert report["secure_boot_enabled"] is False
    assert report["os"].startswith("Debian")


def test_preflight_installs_nothing(host):
    # Preflight only checks; installing packages is the job of later roles.
    assert not host.package("pciutils").is_installed
    assert not host.package("mokutil").is_installed
