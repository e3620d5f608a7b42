"""Model catalog helpers shared by filters and modules (no Ansible imports)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def unpinned_models(models: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Catalog entries whose revision is a branch or tag, not a commit sha (not reproducible)."""
    return [
        {"name": str(m.get("name")), "repo": str(m.get("repo")), "revision": str(m.get("revision"))}
        for m in models
        if not COMMIT_RE.match(str(m.get("revision", "")))
    ]
