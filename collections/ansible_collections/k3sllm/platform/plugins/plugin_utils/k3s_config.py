"""A node's K3s config.yaml as data (roles/k3s writes it with the ``k3sllm.platform.k3s_config_flags`` filter).

K3s reads flags from that file: each key is a command-line flag without its dashes. Servers carry the cluster
settings; every node but the first server joins it through the server URL and the token file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

REQUIRED_SETTINGS = (
    "node_name",
    "is_server",
    "is_first_server",
    "server_count",
    "join_address",
    "api_port",
    "uses_token_file",
    "token_file",
    "write_kubeconfig_mode",
    "tls_san",
    "cluster_cidr",
    "service_cidr",
    "disable",
    "node_labels",
    "node_taints",
    "kubelet_args",
    "nvidia_default_runtime",
    "server_config",
    "agent_config",
)
# Settings that are lists of flag values, with the variable each comes from.
LIST_FLAGS = (
    ("node_labels", "node-label", "k3s_node_labels"),
    ("node_taints", "node-taint", "k3s_node_taints"),
    ("kubelet_args", "kubelet-arg", "k3s_kubelet_args"),
)


class K3sConfigError(ValueError):
    """Settings config.yaml cannot be built from; the message names the setting."""


def server_url(address: str, port: int) -> str:
    """https://<address>:<port>, an IPv6 address in brackets (given with or without them)."""
    host = str(address)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"https://{host}:{port}"


def controller_kubeconfig(text: str, address: str, port: int) -> str:
    """K3s's admin kubeconfig (``k3s.yaml``, which names the server 127.0.0.1) with every cluster's
    ``server`` set to the API address the controller reaches; the rest, credentials included, as it was."""
    try:
        kubeconfig = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise K3sConfigError(f"k3s_controller_kubeconfig: k3s.yaml is not YAML ({exc})") from exc
    clusters = kubeconfig.get("clusters") if isinstance(kubeconfig, dict) else None
    if (
        not isinstance(clusters, list)
        or not clusters
        or not all(isinstance(entry, dict) and isinstance(entry.get("cluster"), dict) for entry in clusters)
    ):
        raise K3sConfigError(
            "k3s_controller_kubeconfig: k3s.yaml has no clusters: entries; K3s writes it when its server "
            "starts (systemctl status k3s on the first server)"
        )
    for entry in clusters:
        entry["cluster"]["server"] = server_url(address, port)
    return yaml.safe_dump(kubeconfig, sort_keys=False, default_flow_style=False)


def _flag(settings: Mapping[str, Any], key: str) -> bool:
    value = settings[key]
    if not isinstance(value, bool):
        raise K3sConfigError(f"k3s_config_flags: {key} is {value!r}, not true or false")
    return value


def _list(settings: Mapping[str, Any], key: str, variable: str) -> list[Any]:
    value = settings[key]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise K3sConfigError(f"{variable} is {value!r}: set a list")
    return list(value)


def _extra(settings: Mapping[str, Any], key: str, variable: str) -> Mapping[str, Any]:
    value = settings[key]
    if not isinstance(value, Mapping):
        raise K3sConfigError(
            f"{variable} is {value!r}: set a mapping of K3s flags (without dashes) to values"
        )
    return value


def config_flags(settings: Mapping[str, Any]) -> dict[str, Any]:
    """This node's flags, in the order config.yaml lists them; k3s_server_config or k3s_agent_config last,
    each of their keys replacing ours."""
    missing = [key for key in REQUIRED_SETTINGS if key not in settings]
    if missing:
        raise K3sConfigError(f"k3s_config_flags: settings lack {', '.join(missing)}")
    is_server = _flag(settings, "is_server")
    is_first_server = _flag(settings, "is_first_server")
    flags: dict[str, Any] = {"node-name": settings["node_name"]}
    if is_server:
        flags["write-kubeconfig-mode"] = settings["write_kubeconfig_mode"]
        flags["tls-san"] = _list(settings, "tls_san", "k3s_tls_san")
        flags["cluster-cidr"] = settings["cluster_cidr"]
        flags["service-cidr"] = settings["service_cidr"]
        disable = _list(settings, "disable", "k3s_disable")
        if disable:
            flags["disable"] = disable
        # Embedded etcd only when there is more than one server: one server keeps SQLite.
        if is_first_server and int(settings["server_count"]) > 1:
            flags["cluster-init"] = True
    # Every node but the first server joins it.
    if not is_first_server:
        flags["server"] = server_url(settings["join_address"], int(settings["api_port"]))
    if _flag(settings, "uses_token_file"):
        flags["token-file"] = settings["token_file"]
    for key, flag, variable in LIST_FLAGS:
        values = _list(settings, key, variable)
        if values:
            flags[flag] = values
    if _flag(settings, "nvidia_default_runtime"):
        flags["default-runtime"] = "nvidia"
    if is_server:
        extra = _extra(settings, "server_config", "k3s_server_config")
    else:
        extra = _extra(settings, "agent_config", "k3s_agent_config")
    return {**flags, **extra}
