#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: free space on the file system that will hold a path."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: path_space_facts
short_description: Report total and available bytes of the file system holding a path
description:
  - The path need not exist yet; its closest existing ancestor decides the file system.
  - Unlike the C(mounts) fact, this works for bind mounts, overlays and containers.
  - Makes no changes, so it is safe in check mode.
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
options:
  path:
    description: The path whose file system to measure.
    type: path
    required: true
extends_documentation_fragment:
  - k3sllm.platform.read_only
"""

EXAMPLES = r"""
- name: Free space for model weights
  k3sllm.platform.path_space_facts:
    path: /srv/k3sllm/models
  register: weights_space
"""

RETURN = r"""
existing_path:
  description: The closest existing ancestor of O(path) (or O(path) itself).
  returned: always
  type: str
size_total_bytes:
  description: Size of the file system.
  returned: always
  type: int
size_available_bytes:
  description: Bytes an unprivileged writer can still use.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.k3sllm.platform.plugins.module_utils.diskspace import space_for


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}}, supports_check_mode=True
    )
    try:
        result = space_for(module.params["path"])
    except OSError as exc:
        module.fail_json(msg=f"Cannot measure free space for {module.params['path']}: {exc}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
