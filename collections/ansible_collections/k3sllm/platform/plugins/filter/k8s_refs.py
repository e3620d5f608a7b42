# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Filter: kind/namespace/name of rendered objects, for k3sllm.platform.k8s_prune's keep option."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.k3sllm.platform.plugins.module_utils.k8s_prune import object_refs


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        # Only identities leave the filter, so the prune task's arguments never carry Secret data.
        return {"k8s_object_refs": object_refs}
