"""The whole operation: make a snapshot folder hold the verified files, and size a model for the capacity plan."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible_collections.k3sllm.platform.plugins.module_utils.diskspace import space_for
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.fetch import fetch_all, partial_bytes
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.files import (
    MANIFEST_FORMAT,
    Snapshot,
    Source,
    WeightsError,
    select_files,
    target_dir,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.hub import HubSource
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.manifest import (
    check_local,
    load_manifest,
    save_manifest,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.offline import FolderSource, TarSource
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.progress import Progress


def open_source(
    repo: str,
    revision: str,
    *,
    offline_source: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    transfer: str = "http",
) -> Source:
    if offline_source:
        path = Path(offline_source)
        if path.is_dir():
            return FolderSource(path, repo, revision)
        if path.is_file():
            return TarSource(path, repo, revision)
        raise WeightsError(
            "offline_source",
            f"Offline source {path} does not exist (expected a snapshot folder or a tarball).",
        )
    return HubSource(repo, revision, endpoint=endpoint, token=token, transfer=transfer)


def ensure_weights(
    *,
    name: str,
    repo: str,
    revision: str,
    weights_dir: str | Path,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
    source: Source,
    verify: str = "quick",
    check_mode: bool = False,
    workers: int = 8,
    retries: int = 3,
    disk_reserve_bytes: int = 1 << 30,
    progress_file: str | Path | None = None,
    retry_delay: float = 1.0,
    free_bytes: Callable[[str], int] | None = None,
) -> dict[str, Any]:
    """Make ``<weights_dir>/<name>/<revision>`` hold the verified snapshot; return what happened."""
    began = time.monotonic()
    target = target_dir(weights_dir, name, revision)
    progress = Progress(None if check_mode else progress_file, name=name, repo=repo, revision=revision)
    warnings: list[str] = []
    try:
        snap = source.snapshot()
        files = select_files(snap.files, allow_patterns, ignore_patterns)
        if not files:
            raise WeightsError(
                "no_files",
                f"No file of {repo}@{snap.sha} matches allow_patterns={allow_patterns} "
                f"ignore_patterns={ignore_patterns}; {len(snap.files)} files exist.",
            )
        if not snap.verified_source:
            warnings.append(
                f"{repo}: the offline source carries no checksums; files were taken as they are. Make the copy "
                "with this module (its manifest makes the copy verifiable)."
            )
        manifest = load_manifest(target)
        if manifest.get("sha") and manifest.get("sha") != snap.sha:
            # Same folder, new commit (a branch moved): nothing in the old manifest can be trusted.
            warnings.append(
                f"{target} held commit {manifest.get('sha')}, now {snap.sha}: re-verifying all files."
            )
            manifest = {}
        local = check_local(target, files, manifest, verify, workers)
        total = sum(f.size for f in files)
        present = sum(f.size for f in local.ok) + sum(partial_bytes(target, f) for f in local.todo)
        to_fetch = sum(f.size for f in local.todo)
        need = to_fetch - sum(partial_bytes(target, f) for f in local.todo)
        result: dict[str, Any] = {
            "path": str(target),
            "name": name,
            "repo": repo,
            "requested_revision": revision,
            "revision": snap.sha,
            "source": source.kind,
            "files": [f.path for f in files],
            "file_count": len(files),
            "bytes": total,
            "bytes_to_fetch": to_fetch,
            "would_fetch": [f.path for f in local.todo],
            "corrupt": sorted(local.corrupt),
            "verified_bytes": local.hashed_bytes,
            "gated": snap.gated,
            "progress_file": str(progress_file) if progress_file and not check_mode else None,
            "warnings": warnings,
        }
        if check_mode or not local.todo:
            records = dict(local.records)
            if not check_mode and (manifest.get("files") != records or not manifest.get("complete")):
                save_manifest(
                    target, _manifest(repo, revision, snap, allow_patterns, ignore_patterns, records)
                )
            progress.begin(total, total, len(files))
            progress.files_done = len(files)
            progress.finish("done")
            return _finish(result, began, changed=bool(local.todo), fetched=[], bytes_fetched=0, repaired=[])

        source.preflight(local.todo[0])
        target.mkdir(parents=True, exist_ok=True)
        free = free_bytes(str(target)) if free_bytes else int(space_for(str(target))["size_available_bytes"])
        if need + disk_reserve_bytes > free:
            raise WeightsError(
                "disk_full",
                f"Not enough free disk for {name}: {len(local.todo)} files need {_gib(need)} plus a reserve of "
                f"{_gib(disk_reserve_bytes)}, but the file system of {target} has {_gib(free)} free. Free space, "
                "move k3sllm_weights_dir to a larger disk, or narrow allow_patterns.",
                need=need,
                free=free,
            )
        # Records of good files are saved first, so an interrupted run keeps what it had verified.
        records = dict(local.records)
        save_manifest(
            target, _manifest(repo, revision, snap, allow_patterns, ignore_patterns, records, False)
        )
        progress.begin(total, present, len(files))
        progress.files_done = len(local.ok)
        try:
            stats = fetch_all(
                source,
                target,
                local.todo,
                workers=workers,
                retries=retries,
                progress=progress,
                records=records,
                retry_delay=retry_delay,
            )
        finally:
            save_manifest(
                target,
                _manifest(
                    repo, revision, snap, allow_patterns, ignore_patterns, records, len(records) == len(files)
                ),
            )
        progress.finish("done")
        result["resumed_bytes"] = stats.resumed_bytes
        result["checksum_failures"] = stats.checksum_failures
        return _finish(
            result,
            began,
            changed=True,
            fetched=sorted(stats.fetched),
            bytes_fetched=stats.bytes_fetched,
            repaired=sorted(set(local.corrupt) | {p for p, n in stats.checksum_failures.items() if n}),
        )
    except WeightsError as exc:
        progress.finish("failed", str(exc))
        raise
    except Exception as exc:
        progress.finish("failed", f"{type(exc).__name__}: {exc}")
        raise


def _manifest(
    repo: str,
    revision: str,
    snap: Snapshot,
    allow: list[str] | None,
    ignore: list[str] | None,
    records: dict[str, dict[str, Any]],
    complete: bool = True,
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "repo": repo,
        "revision": revision,
        "sha": snap.sha,
        "allow_patterns": allow,
        "ignore_patterns": ignore,
        "complete": complete,
        "files": records,
    }


def _finish(
    result: dict[str, Any],
    began: float,
    *,
    changed: bool,
    fetched: list[str],
    bytes_fetched: int,
    repaired: list[str],
) -> dict[str, Any]:
    duration = time.monotonic() - began
    result.update(
        changed=changed,
        fetched=fetched,
        bytes_fetched=bytes_fetched,
        repaired=repaired,
        duration_seconds=round(duration, 3),
        throughput_bytes_per_second=round(bytes_fetched / duration) if duration > 0 and bytes_fetched else 0,
    )
    return result


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def describe_model(
    model: dict[str, Any],
    *,
    weights_dir: str | Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    offline_source: str | None = None,
) -> dict[str, Any]:
    """Size of one catalog entry's selected files, without downloading.

    A complete local snapshot (its manifest) answers without the network, so re-runs and airgapped
    hosts need no Hub; otherwise the offline source or the Hub's listing does."""
    name, repo, revision = model["name"], model["repo"], model["revision"]
    allow, ignore = model.get("allow_patterns") or None, model.get("ignore_patterns") or None
    if weights_dir:
        target = target_dir(weights_dir, name, revision)
        manifest = load_manifest(target)
        if (
            manifest.get("complete")
            and manifest.get("repo") == repo
            and manifest.get("allow_patterns") == allow
            and manifest.get("ignore_patterns") == ignore
        ):
            sizes = {p: int(r["size"]) for p, r in manifest["files"].items()}
            return {
                "name": name,
                "repo": repo,
                "revision": manifest.get("sha"),
                "bytes": sum(sizes.values()),
                "file_count": len(sizes),
                "present_bytes": sum(sizes.values()),
                "source": "local",
                "gated": None,
            }
    source = open_source(repo, revision, offline_source=offline_source, endpoint=endpoint, token=token)
    snap = source.snapshot()
    files = select_files(snap.files, allow, ignore)
    present = 0
    if weights_dir:
        target = target_dir(weights_dir, name, revision)
        for f in files:
            with contextlib.suppress(OSError):
                if (target / f.path).stat().st_size == f.size:
                    present += f.size
    return {
        "name": name,
        "repo": repo,
        "revision": snap.sha,
        "bytes": sum(f.size for f in files),
        "file_count": len(files),
        "present_bytes": present,
        "source": source.kind,
        "gated": snap.gated,
    }
