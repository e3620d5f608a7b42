"""Filters for the k3s role; the builders are in plugin_utils/k3s_config.py.

``k3sllm.platform.k3s_config_flags``: a node's K3s config.yaml as a mapping of flags, from the k3s
role's settings (roles/k3s/vars/main.yml).
``k3sllm.platform.k3s_controller_kubeconfig``: K3s's admin kubeconfig pointed at the API address the
controller reaches.

.. code-block:: yaml

    k3s_config_flags: "{{ k3s_config_settings | k3sllm.platform.k3s_config_flags }}"
    content: "{{ k3s_kubeconfig.content | b64decode | k3sllm.platform.k3s_controller_kubeconfig(k3s_api_host, 6443) }}"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.plugin_utils import k3s_config


def k3s_config_flags(settings: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError(
            f"k3s_config_flags: settings must be a mapping, not {type(settings).__name__}"
        )
    try:
        return k3s_config.config_flags(settings)
    except k3s_config.K3sConfigError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def k3s_controller_kubeconfig(text: str, address: str, port: Any) -> str:
    try:
        return k3s_config.controller_kubeconfig(str(text), str(address), int(port))
    except ValueError as exc:  # K3sConfigError is one, and so is a port that is not a number
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "k3s_config_flags": k3s_config_flags,
            "k3s_controller_kubeconfig": k3s_controller_kubeconfig,
        }
