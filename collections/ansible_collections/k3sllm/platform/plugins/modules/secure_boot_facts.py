#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: is the host booted with UEFI Secure Boot enforcing?"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secure_boot_facts
short_description: Report UEFI and Secure Boot state from efivarfs
description:
  - Reads the C(SecureBoot) and C(SetupMode) EFI variables from efivarfs, which needs no extra
    package (C(mokutil) is not required).
  - A host booted in legacy BIOS mode has no EFI variables; it reports RV(uefi=false) and Secure Boot
    disabled.
  - Makes no changes, so it is safe in check mode.
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
options:
  efivars_path:
    description: Folder of EFI variables; tests point it at a fake tree.
    type: path
    default: /sys/firmware/efi/efivars
extends_documentation_fragment:
  - k3sllm.platform.read_only
"""

EXAMPLES = r"""
- name: Find out whether unsigned kernel modules would be refused
  k3sllm.platform.secure_boot_facts:
  register: k3sllm_secure_boot
"""

RETURN = r"""
uefi:
  description: True when the host booted through UEFI.
  returned: always
  type: bool
secure_boot_enabled:
  description: True when Secure Boot is enforcing, so the kernel only loads signed modules.
  returned: always
  type: bool
setup_mode:
  description: True when the firmware is in setup mode (keys not enrolled; nothing is enforced).
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule

# The EFI global variable GUID, under which the firmware publishes SecureBoot and SetupMode.
EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


def read_efi_flag(efivars_path: str, name: str) -> bool | None:
    """Return the one-byte boolean EFI variable, or None when it does not exist.

    efivarfs files start with four bytes of attributes; the value follows.
    """
    path = os.path.join(efivars_path, f"{name}-{EFI_GLOBAL_GUID}")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if len(data) < 5:
        return None
    return data[4] == 1


def main() -> None:
    module = AnsibleModule(
        argument_spec={"efivars_path": {"type": "path", "default": "/sys/firmware/efi/efivars"}},
        supports_check_mode=True,
    )
    efivars = module.params["efivars_path"]
    uefi = os.path.isdir(efivars)
    secure_boot = read_efi_flag(efivars, "SecureBoot") if uefi else None
    setup_mode = read_efi_flag(efivars, "SetupMode") if uefi else None
    module.exit_json(
        changed=False,
        uefi=uefi,
        # In setup mode the firmware enforces nothing even if SecureBoot reads 1.
        secure_boot_enabled=bool(secure_boot) and not bool(setup_mode),
        setup_mode=bool(setup_mode),
    )


if __name__ == "__main__":
    main()
