"""Kubernetes object helpers shared by the k8s filters and the k8s_render module."""

from __future__ import annotations

import copy
import re

import yaml

REDACTED = "<redacted: set at apply time from vault or a generated secret>"


def file_name(obj: dict, index: int) -> str:
    """A stable, readable file name for one object in a render folder."""
    meta = obj.get("metadata", {})
    parts = [f"{index:02d}", obj.get("kind", "object").lower()]
    if meta.get("namespace"):
        parts.append(meta["namespace"])
    parts.append(meta.get("name", "unnamed"))
    return re.sub(r"[^a-z0-9.-]+", "-", "-".join(parts).lower()) + ".yml"


def redact_secrets(objects: list[dict]) -> list[dict]:
    """Replace Secret values so a GitOps export never holds a password in plain text."""
    result = []
    for obj in objects:
        if obj.get("kind") == "Secret":
            obj = copy.deepcopy(obj)
            for field in ("data", "stringData"):
                if obj.get(field):
                    obj[field] = dict.fromkeys(obj[field], REDACTED)
        result.append(obj)
    return result


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (chart values, scripts, dashboards) as readable ``|`` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def to_yaml(obj: dict) -> str:
    """One YAML document, keys in the template's order."""
    return "---\n" + yaml.dump(obj, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=120)
