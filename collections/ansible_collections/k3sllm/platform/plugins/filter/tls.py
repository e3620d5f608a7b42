"""Filters ``k3sllm.platform.tls_cert_manager_objects`` and ``k3sllm.platform.tls_objects``: cert-manager's
Kubernetes objects, and the issuers, certificates and Traefik configuration, from the tls role's settings; the
builders are in plugin_utils/tls_manifests.py.

.. code-block:: yaml

    tls_cert_manager_objects: "{{ tls_cert_manager_settings | k3sllm.platform.tls_cert_manager_objects }}"
    tls_objects: "{{ tls_settings | k3sllm.platform.tls_objects }}"
"""

from __future__ import annotations

from typing import Any

from ansible_collections.k3sllm.platform.plugins.plugin_utils import tls_manifests
from ansible_collections.k3sllm.platform.plugins.plugin_utils.charts import as_filter


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "tls_cert_manager_objects": as_filter(tls_manifests.cert_manager_objects),
            "tls_objects": as_filter(tls_manifests.tls_objects),
        }
