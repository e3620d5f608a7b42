"""Kubernetes object helpers shared by the k8s filters and the k8s_render module."""

from __future__ import annotations

import functools
import re
import traceback
from typing import Any

try:
    import yaml
except ImportError:  # a module reports it with missing_required_lib instead of a traceback
    HAS_YAML = False
    YAML_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_YAML = True
    YAML_IMPORT_ERROR = None

REDACTED = "<redacted: set at apply time from vault or a generated secret>"


def file_name(obj: dict[str, Any], index: int) -> str:
    """A stable, readable file name for one object in a render folder."""
    meta = obj.get("metadata", {})
    parts = [f"{index:02d}", obj.get("kind", "object").lower()]
    if meta.get("namespace"):
        parts.append(meta["namespace"])
    parts.append(meta.get("name", "unnamed"))
    return re.sub(r"[^a-z0-9.-]+", "-", "-".join(parts).lower()) + ".yml"


def redact_secrets(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace Secret values so a GitOps export never holds a password in plain text."""
    result = []
    for obj in objects:
        if obj.get("kind") == "Secret":
            obj = dict(obj)  # a shallow copy: only the value maps are replaced
            for field in ("data", "stringData"):
                if obj.get(field):
                    obj[field] = dict.fromkeys(obj[field], REDACTED)
        result.append(obj)
    return result


@functools.cache
def _block_dumper() -> Any:
    """A SafeDumper writing multi-line strings (chart values, scripts, dashboards) as readable ``|`` blocks.

    Built on first use, so importing this file needs no PyYAML."""

    class BlockDumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, represent_str)
    return BlockDumper


def to_yaml(obj: dict[str, Any]) -> str:
    """One YAML document, keys in the template's order."""
    return "---\n" + yaml.dump(
        obj, Dumper=_block_dumper(), sort_keys=False, default_flow_style=False, width=120
    )
