"""Free space of the file system that holds (or will hold) a path."""

from __future__ import annotations

import os


def nearest_existing(path: str) -> str:
    """The path itself, or its closest existing ancestor (the folder may not be created yet)."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def space_for(path: str) -> dict[str, int | str]:
    """statvfs of the file system that holds ``path``; works for bind mounts and overlays alike."""
    existing = nearest_existing(path)
    stats = os.statvfs(existing)
    return {
        "path": path,
        "existing_path": existing,
        "size_total_bytes": stats.f_frsize * stats.f_blocks,
        # f_bavail, not f_bfree: space reserved for root is not available to our files.
        "size_available_bytes": stats.f_frsize * stats.f_bavail,
    }
