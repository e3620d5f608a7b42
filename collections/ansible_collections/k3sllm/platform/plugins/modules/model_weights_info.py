#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: weight sizes of catalog models from the Hub's listing, without downloading."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_weights_info
short_description: Size of each catalog model's weights, for the capacity plan, before any download
description:
  - For each entry of O(models) (the C(k3sllm_models) catalog), sums the sizes of the files that
    C(k3sllm.platform.model_weights) would download (the same allow and ignore patterns).
  - A complete snapshot already in O(weights_dir) answers from its manifest, without the network; otherwise
    the offline source of O(offline_sources), else the Hub's listing.
  - Makes no changes, so it is safe in check mode.
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
requirements:
  - huggingface_hub >= 2.0 on the managed host for models not yet downloaded and without an offline source
options:
  models:
    description: Catalog entries; C(name), C(repo), C(revision), C(allow_patterns) and C(ignore_patterns) are used.
    type: list
    elements: dict
    required: true
  weights_dir:
    description: Host folder holding all models' weights (to count what is already there).
    type: path
    default: /srv/k3sllm/models
  token:
    description: Hugging Face token. Defaults to the E(HF_TOKEN) environment variable.
    type: str
  endpoint:
    description: Hub endpoint or mirror URL. Defaults to E(HF_ENDPOINT), else U(https://huggingface.co).
    type: str
  offline_sources:
    description: Model name to snapshot folder or tarball on the managed host.
    type: dict
    default: {}
extends_documentation_fragment:
  - k3sllm.platform.read_only
"""

EXAMPLES = r"""
- name: Weight sizes for the capacity plan
  k3sllm.platform.model_weights_info:
    models: "{{ k3sllm_models }}"
    weights_dir: "{{ k3sllm_weights_dir }}"
    token: "{{ k3sllm_hf_token | default(omit, true) }}"
  register: weights_info

- name: Sizes by name
  ansible.builtin.debug:
    var: weights_info.weight_bytes
"""

RETURN = r"""
models:
  description: One entry per model.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "qwen", "repo": "Qwen/Qwen2.5-7B-Instruct", "revision": "a09a...", "bytes": 15231233024,
            "file_count": 12, "present_bytes": 0, "source": "hub", "gated": false}]
weight_bytes:
  description: Model name to total bytes of its selected files.
  returned: always
  type: dict
present_bytes:
  description: Model name to bytes already in place (files of the right size).
  returned: always
  type: dict
total_bytes:
  description: Sum of RV(weight_bytes).
  returned: always
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from ansible_collections.k3sllm.platform.plugins.module_utils.weights.ensure import describe_model
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.files import WeightsError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "models": {"type": "list", "elements": "dict", "required": True},
            "weights_dir": {"type": "path", "default": "/srv/k3sllm/models"},
            "token": {"type": "str", "no_log": True},
            "endpoint": {"type": "str"},
            "offline_sources": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    p = module.params
    described = []
    errors = []
    for model in p["models"]:
        missing = [k for k in ("name", "repo", "revision") if not model.get(k)]
        if missing:
            errors.append(f"catalog entry {model.get('name', model)!r} lacks {', '.join(missing)}")
            continue
        try:
            described.append(
                describe_model(
                    model,
                    weights_dir=p["weights_dir"],
                    endpoint=p["endpoint"],
                    token=p["token"],
                    offline_source=p["offline_sources"].get(model["name"]),
                )
            )
        except WeightsError as exc:
            errors.append(f"{model['name']}: {exc}")
    if errors:
        # Every model's problem at once: fixing a catalog one error per run is tedious.
        module.fail_json(msg="Cannot size the model weights: " + " | ".join(errors), errors=errors)
    module.exit_json(
        changed=False,
        models=described,
        weight_bytes={m["name"]: m["bytes"] for m in described},
        present_bytes={m["name"]: m["present_bytes"] for m in described},
        total_bytes=sum(m["bytes"] for m in described),
    )


if __name__ == "__main__":
    main()
