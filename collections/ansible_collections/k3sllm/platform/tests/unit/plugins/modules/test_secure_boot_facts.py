"""secure_boot_facts against fake efivarfs trees (attribute bytes + one value byte)."""

from __future__ import annotations

import pytest

from ansible_collections.k3sllm.platform.plugins.modules import secure_boot_facts

GUID = secure_boot_facts.EFI_GLOBAL_GUID
ATTRIBUTES = b"\x06\x00\x00\x00"


def efivars(tmp_path, **flags: int) -> str:
    folder = tmp_path / "efivars"
    folder.mkdir()
    for name, value in flags.items():
        (folder / f"{name}-{GUID}").write_bytes(ATTRIBUTES + bytes([value]))
    return str(folder)


@pytest.mark.parametrize(
    ("flags", "enabled", "setup"),
    [
        ({"SecureBoot": 1, "SetupMode": 0}, True, False),
        ({"SecureBoot": 0, "SetupMode": 0}, False, False),
        # Setup mode: keys not enrolled, nothing enforced even though SecureBoot reads 1.
        ({"SecureBoot": 1, "SetupMode": 1}, False, True),
        # UEFI firmware without Secure Boot support publishes no SecureBoot variable.
        ({}, False, False),
    ],
)
def test_uefi_states(tmp_path, run_module, flags, enabled, setup):
    result = run_module(secure_boot_facts.main, {"efivars_path": efivars(tmp_path, **flags)})
    assert result["uefi"] is True
    assert result["secure_boot_enabled"] is enabled
    assert result["setup_mode"] is setup
    assert result["changed"] is False


def test_legacy_bios(tmp_path, run_module):
    result = run_module(secure_boot_facts.main, {"efivars_path": str(tmp_path / "no-efi")})
    assert result == {**result, "uefi": False, "secure_boot_enabled": False, "setup_mode": False}


def test_truncated_variable_reads_as_absent(tmp_path):
    folder = tmp_path / "efivars"
    folder.mkdir()
    (folder / f"SecureBoot-{GUID}").write_bytes(ATTRIBUTES)
    assert secure_boot_facts.read_efi_flag(str(folder), "SecureBoot") is None
