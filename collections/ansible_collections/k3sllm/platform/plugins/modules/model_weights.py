#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: download and verify a pinned model snapshot from the Hugging Face Hub."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_weights
short_description: Download a pinned Hugging Face model snapshot, verified, into the weights folder
description:
  - Makes C(<weights_dir>/<name>/<revision>) hold the files of O(repo) at O(revision) that match
    O(allow_patterns) and not O(ignore_patterns), fetched with the C(huggingface_hub) library (model info,
    tree listing, file metadata, redirects, authentication, ranged downloads).
  - Verifies every file while it arrives, LFS files against the sha256 of the Hub's listing and small
    files against their git blob id, because C(huggingface_hub) accepts any content of the right size.
    A corrupt file (on disk or as served) is fetched again, up to O(retries) times.
  - Resumes interrupted downloads, also across runs, from a partial file per blob kept in
    C(<target>/.k3sllm/partial).
  - Checks free disk space before fetching anything. A C(.k3sllm/manifest.json) in the target records what was
    verified, so a re-run checks sizes and modification times only (O(verify=quick)) or re-hashes all (O(verify=full)).
  - Reports changed only when files were fetched. In check mode it reports what would be fetched and how many bytes.
  - For long downloads run it with C(async) and C(poll=0) and read O(progress_file) (JSON with bytes done, total,
    rate and ETA) while it runs; the k3sllm C(model_weights) role does this.
  - For airgapped hosts, O(offline_source) takes a snapshot folder or tarball instead of the Hub.
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
requirements:
  - huggingface_hub >= 2.0 on the managed host (not needed with O(offline_source))
options:
  name:
    description: Served model name; the folder under O(weights_dir).
    type: str
    required: true
  repo:
    description: Hugging Face repository id, for example C(Qwen/Qwen2.5-7B-Instruct).
    type: str
    required: true
  revision:
    description:
      - Commit sha (recommended) or a branch or tag name. It names the target folder as given.
      - With a branch name the folder's content follows the branch; the module warns.
    type: str
    required: true
  weights_dir:
    description: Host folder holding all models' weights.
    type: path
    default: /srv/k3sllm/models
  allow_patterns:
    description: Only files matching one of these glob patterns (as C(huggingface_hub) matches them).
    type: list
    elements: str
  ignore_patterns:
    description: Skip files matching one of these glob patterns.
    type: list
    elements: str
  token:
    description:
      - Hugging Face token for gated or private repos. Defaults to the E(HF_TOKEN) environment variable.
    type: str
  endpoint:
    description: Hub endpoint or mirror URL. Defaults to E(HF_ENDPOINT), else U(https://huggingface.co).
    type: str
  offline_source:
    description:
      - Path on the managed host of a snapshot folder or tarball (C(.tar), C(.tar.gz), ...) to install from
        instead of the Hub. A folder or tarball made from a target folder of this module carries its
        manifest, so its files are verified; one made by C(hf download --local-dir) is verified from
        C(huggingface_hub)'s metadata; anything else is taken as it is, with a warning.
    type: path
  verify:
    description:
      - C(quick) trusts files whose size and modification time match the manifest written after their last
        full check; C(full) re-hashes every file (slow on large models, catches silent corruption).
    type: str
    choices: [quick, full]
    default: quick
  max_workers:
    description: Files downloaded in parallel.
    type: int
    default: 8
  retries:
    description: Further attempts per file after a checksum mismatch or a failed transfer.
    type: int
    default: 3
  disk_reserve_mib:
    description: Free space (MiB) that must remain on the weights file system after the download.
    type: int
    default: 1024
  transfer:
    description:
      - What streams the file bytes from the Hub. C(http) (the Python standard library; several times faster
        than C(huggingface_hub)'s httpx client on the same machine) or C(huggingface_hub)
        (C(huggingface_hub.file_download.http_get)). Listing, metadata, redirects, authentication and error
        handling go through C(huggingface_hub) either way, and both resume and verify the same way.
    type: str
    choices: [http, huggingface_hub]
    default: http
  progress_file:
    description: JSON progress file, rewritten about twice a second. Defaults to C(<target>/.k3sllm/progress.json).
    type: path
attributes:
  check_mode:
    description: Reports which files would be fetched (RV(would_fetch)) and writes nothing.
    support: full
    details: Contacts the Hub (read-only) to list files; writes nothing.
  diff_mode:
    description: No diff; RV(fetched) and RV(repaired) name the files that changed.
    support: none
notes:
  - Xet-backed files are fetched through the Hub's HTTP resolve endpoint (which serves them), not the hf_xet protocol.
"""

EXAMPLES = r"""
- name: Download Qwen2.5-7B-Instruct weights (pinned)
  k3sllm.platform.model_weights:
    name: qwen2.5-7b-instruct
    repo: Qwen/Qwen2.5-7B-Instruct
    revision: a09a35458c702b33eeacc393d103063234e8bc28
    allow_patterns: ["*.json", "*.safetensors", "tokenizer*"]
    weights_dir: /srv/k3sllm/models
    token: "{{ k3sllm_hf_token | default(omit, true) }}"
  async: 21600
  poll: 0
  register: download

- name: Install from a tarball copied to an airgapped host
  k3sllm.platform.model_weights:
    name: qwen2.5-7b-instruct
    repo: Qwen/Qwen2.5-7B-Instruct
    revision: a09a35458c702b33eeacc393d103063234e8bc28
    offline_source: /var/tmp/qwen2.5-7b-instruct.tar
"""

RETURN = r"""
path:
  description: The snapshot folder.
  returned: always
  type: str
  sample: /srv/k3sllm/models/qwen2.5-7b-instruct/a09a35458c702b33eeacc393d103063234e8bc28
revision:
  description: Resolved commit sha of the snapshot.
  returned: always
  type: str
requested_revision:
  description: O(revision) as given.
  returned: always
  type: str
files:
  description: Relative paths of the snapshot's selected files.
  returned: always
  type: list
  elements: str
bytes:
  description: Total size of the selected files.
  returned: always
  type: int
fetched:
  description: Files fetched by this run (empty in check mode).
  returned: always
  type: list
  elements: str
would_fetch:
  description: Files missing or failing verification before this run (what check mode would fetch).
  returned: always
  type: list
  elements: str
bytes_to_fetch:
  description: Size of RV(would_fetch).
  returned: always
  type: int
bytes_fetched:
  description: Bytes written by this run.
  returned: always
  type: int
repaired:
  description: Files found corrupt on disk or as first served, and fetched again.
  returned: always
  type: list
  elements: str
duration_seconds:
  description: Time the module took.
  returned: always
  type: float
throughput_bytes_per_second:
  description: RV(bytes_fetched) over RV(duration_seconds).
  returned: always
  type: int
source:
  description: C(hub), C(folder) or C(tarball).
  returned: always
  type: str
progress_file:
  description: Path of the progress file (null in check mode).
  returned: always
  type: str
error_kind:
  description: On failure, a stable name of the problem (repo_not_found, gated_no_token, gated_no_access,
    bad_token, revision_not_found, disk_full, checksum_mismatch, unreachable, offline_source, ...).
  returned: failure
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

# huggingface_hub reads these at import time: no progress bars in a module's output, no telemetry.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from ansible_collections.k3sllm.platform.plugins.module_utils.weights.ensure import (
    ensure_weights,
    open_source,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.files import (
    STATE_DIR,
    WeightsError,
    is_commit,
    target_dir,
)

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "repo": {"type": "str", "required": True},
    "revision": {"type": "str", "required": True},
    "weights_dir": {"type": "path", "default": "/srv/k3sllm/models"},
    "allow_patterns": {"type": "list", "elements": "str"},
    "ignore_patterns": {"type": "list", "elements": "str"},
    "token": {"type": "str", "no_log": True},
    "endpoint": {"type": "str"},
    "offline_source": {"type": "path"},
    "verify": {"type": "str", "choices": ["quick", "full"], "default": "quick"},
    "max_workers": {"type": "int", "default": 8},
    "retries": {"type": "int", "default": 3},
    "disk_reserve_mib": {"type": "int", "default": 1024},
    "progress_file": {"type": "path"},
    "transfer": {"type": "str", "choices": ["http", "huggingface_hub"], "default": "http"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    if p["max_workers"] < 1 or p["retries"] < 0 or p["disk_reserve_mib"] < 0:
        module.fail_json(msg="max_workers must be >= 1; retries and disk_reserve_mib must be >= 0.")
    if not is_commit(p["revision"]):
        module.warn(
            f"{p['name']}: revision {p['revision']!r} is not a commit sha; the download follows whatever it points "
            "at today. Pin the 40-character commit sha for reproducible installs."
        )
    try:
        target = target_dir(p["weights_dir"], p["name"], p["revision"])
        source = open_source(
            p["repo"],
            p["revision"],
            offline_source=p["offline_source"],
            endpoint=p["endpoint"],
            token=p["token"],
            transfer=p["transfer"],
        )
        result = ensure_weights(
            name=p["name"],
            repo=p["repo"],
            revision=p["revision"],
            weights_dir=p["weights_dir"],
            allow_patterns=p["allow_patterns"],
            ignore_patterns=p["ignore_patterns"],
            source=source,
            verify=p["verify"],
            check_mode=module.check_mode,
            workers=p["max_workers"],
            retries=p["retries"],
            disk_reserve_bytes=p["disk_reserve_mib"] << 20,
            progress_file=p["progress_file"] or str(target / STATE_DIR / "progress.json"),
        )
    except WeightsError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, **exc.details)
    except OSError as exc:
        module.fail_json(msg=f"{p['name']}: file system error: {exc}", error_kind="os_error")
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
