"""The manifest in each snapshot folder: what was verified, so re-runs and offline copies are cheap to check."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.k3sllm.platform.plugins.module_utils.weights.files import (
    MANIFEST,
    MANIFEST_FORMAT,
    STATE_DIR,
    WeightFile,
    hash_file,
)


def manifest_path(target: Path) -> Path:
    return target / STATE_DIR / MANIFEST


def load_manifest(target: Path) -> dict[str, Any]:
    try:
        data = json.loads(manifest_path(target).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else {}


def save_manifest(target: Path, data: dict[str, Any]) -> None:
    path = manifest_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def record_for(f: WeightFile, digest: str, st: os.stat_result) -> dict[str, Any]:
    return {"size": f.size, "algo": f.algo, "digest": digest, "mtime_ns": st.st_mtime_ns}


@dataclass
class LocalState:
    ok: list[WeightFile] = field(default_factory=list)
    todo: list[WeightFile] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    hashed_bytes: int = 0


def check_local(
    target: Path, files: list[WeightFile], manifest: dict[str, Any], verify: str, workers: int = 4
) -> LocalState:
    """Which files are present and right. ``quick`` trusts files whose size and mtime match the manifest
    written after their last full check; ``full`` re-hashes everything (catches silent bit rot)."""
    state = LocalState()
    known = manifest.get("files", {}) if isinstance(manifest.get("files"), dict) else {}
    to_hash: list[tuple[WeightFile, os.stat_result]] = []
    for f in files:
        path = target / f.path
        try:
            st = path.stat()
        except FileNotFoundError:
            state.todo.append(f)
            continue
        if st.st_size != f.size:
            state.corrupt.append(f.path)
            state.todo.append(f)
            continue
        rec = known.get(f.path)
        want = f.expected
        if (
            verify == "quick"
            and isinstance(rec, dict)
            and rec.get("size") == st.st_size
            and rec.get("mtime_ns") == st.st_mtime_ns
            and (want is None or (rec.get("algo"), rec.get("digest")) == want)
        ):
            state.ok.append(f)
            state.records[f.path] = rec
            continue
        to_hash.append((f, st))

    def _hash(item: tuple[WeightFile, os.stat_result]) -> tuple[WeightFile, os.stat_result, str]:
        f, st = item
        return f, st, hash_file(target / f.path, f).hexdigest()

    # hashlib releases the GIL on large blocks, so threads use several cores for a full check.
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_hash) or 1))) as pool:
        for f, st, digest in pool.map(_hash, to_hash):
            state.hashed_bytes += f.size
            want = f.expected
            if want is None or want[1] == digest:
                state.ok.append(f)
                state.records[f.path] = record_for(f, digest, st)
            else:
                state.corrupt.append(f.path)
                state.todo.append(f)
    return state
