#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: write Kubernetes objects to a folder, one file each (GitOps export)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_render
short_description: Write Kubernetes objects to a folder, one YAML file per object
description:
  - Writes each object to O(dest) as C(<index>-<kind>-<namespace>-<name>.yml), in order, so the folder
    can be applied with C(kubectl apply -f) or committed to a GitOps repository.
  - Secret values are replaced by a placeholder; the real values are applied from vault or generated
    secrets by a normal run.
  - Files of objects no longer in O(objects) are removed (other files are left alone), so the folder
    always mirrors the current inventory.
  - Only files whose content differs are written; check mode reports what would change.
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
options:
  dest:
    description: Folder to write to; created when missing.
    type: path
    required: true
  objects:
    description: The Kubernetes objects, in apply order.
    type: list
    elements: dict
    required: true
attributes:
  check_mode:
    description: Reports which files would be written or removed, and writes nothing.
    support: full
  diff_mode:
    description: No diff is shown; RV(written) and RV(removed) name the files that change.
    support: none
"""

EXAMPLES = r"""
- name: Export the switcher's manifests
  k3sllm.platform.k8s_render:
    dest: inventories/gpu1/rendered/switcher
    objects: "{{ switcher_objects }}"
  delegate_to: localhost
"""

RETURN = r"""
written:
  description: Files written (new or changed).
  returned: always
  type: list
  elements: str
removed:
  description: Files removed because their object is no longer rendered.
  returned: always
  type: list
  elements: str
files:
  description: Every file of the folder's current set, in order.
  returned: always
  type: list
  elements: str
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.k3sllm.platform.plugins.module_utils.k8s_objects import (
    HAS_YAML,
    YAML_IMPORT_ERROR,
    file_name,
    redact_secrets,
    to_yaml,
)


def plan(dest: str, objects: list[dict[str, Any]]) -> tuple[dict[str, str], list[str], list[str]]:
    """Desired file contents, the names that differ on disk, and the stale names to remove."""
    desired = {file_name(obj, index): to_yaml(obj) for index, obj in enumerate(redact_secrets(objects))}
    existing = (
        sorted(name for name in os.listdir(dest) if name.endswith(".yml")) if os.path.isdir(dest) else []
    )
    to_write = []
    for name, content in desired.items():
        path = os.path.join(dest, name)
        try:
            with open(path, encoding="utf-8") as handle:
                if handle.read() == content:
                    continue
        except OSError:
            pass
        to_write.append(name)
    return desired, to_write, [name for name in existing if name not in desired]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "objects": {"type": "list", "elements": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)
    dest = module.params["dest"]
    desired, to_write, to_remove = plan(dest, module.params["objects"])
    changed = bool(to_write or to_remove)
    if changed and not module.check_mode:
        try:
            os.makedirs(dest, exist_ok=True)
            for name in to_write:
                path = os.path.join(dest, name)
                with open(path + ".tmp", "w", encoding="utf-8") as handle:
                    handle.write(desired[name])
                os.chmod(path + ".tmp", 0o644)
                os.replace(path + ".tmp", path)
            for name in to_remove:
                os.remove(os.path.join(dest, name))
        except OSError as exc:
            module.fail_json(
                msg=f"Cannot write rendered manifests to {dest}: {exc}. Check k3sllm_render_dir."
            )
    module.exit_json(changed=changed, written=to_write, removed=to_remove, files=list(desired))


if __name__ == "__main__":
    main()
