"""Fetching files into the snapshot folder: resumable partial files, verification while the bytes arrive,
bounded retries, several files at once."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.k3sllm.platform.plugins.module_utils.weights.files import (
    STATE_DIR,
    HashingWriter,
    Source,
    TransientError,
    WeightFile,
    WeightsError,
    hash_file,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.manifest import record_for
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.offline import TarSource
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.progress import Progress


def partial_path(target: Path, f: WeightFile) -> Path:
    # Keyed by content id, so a partial is only ever resumed with the same bytes, and by path, because two
    # files of a repo can have the same content and are fetched by different threads.
    content = f.sha256 or f.blob_id or f"size{f.size}"
    return target / STATE_DIR / "partial" / f"{content}-{hashlib.sha1(f.path.encode()).hexdigest()[:12]}.part"


def partial_bytes(target: Path, f: WeightFile) -> int:
    try:
        size = partial_path(target, f).stat().st_size
    except FileNotFoundError:
        return 0
    return size if size <= f.size else 0


@dataclass
class FetchStats:
    fetched: list[str] = field(default_factory=list)
    bytes_fetched: int = 0
    resumed_bytes: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    checksum_failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def fetch_file(
    source: Source,
    target: Path,
    f: WeightFile,
    *,
    retries: int,
    progress: Progress,
    stats: FetchStats,
    records: dict[str, dict[str, Any]],
    retry_delay: float = 1.0,
) -> None:
    part = partial_path(target, f)
    part.parent.mkdir(parents=True, exist_ok=True)
    want = f.expected
    last_problem = ""
    for attempt in range(1, retries + 2):
        with stats.lock:
            stats.attempts[f.path] = attempt
        resume = partial_bytes(target, f) if source.resumable else 0
        if resume:
            hasher = hash_file(part, f, resume)
            with stats.lock:
                stats.resumed_bytes += resume
        else:
            hasher = f.hasher()
        with open(part, "ab" if resume else "wb") as fh:
            writer = HashingWriter(part, fh, f, hasher, progress.add)
            try:
                if resume < f.size:
                    source.fetch(f, writer, resume)
                else:
                    progress.add(0)
            except TransientError as exc:
                last_problem = str(exc)
                if attempt <= retries:
                    time.sleep(retry_delay)
                    continue
                raise WeightsError(
                    "transfer_failed",
                    f"Downloading {f.path} failed {attempt} times, last: {last_problem}. The partial file is kept "
                    "and the next run resumes it.",
                ) from exc
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise WeightsError(
                        "disk_full",
                        f"The disk holding {target} filled up while writing {f.path}: free space.",
                    ) from exc
                raise
            fh.flush()
            written = writer.written
            digest = writer.hasher.hexdigest()
        size = part.stat().st_size
        if size != f.size or (want is not None and digest != want[1]):
            # Corrupt (or wrong-size) content: throw it away entirely, a resume would keep the bad bytes.
            last_problem = f"got {want[0] if want else 'sha256'} {digest} ({size} bytes), expected " + (
                f"{want[1]} ({f.size} bytes)" if want else f"{f.size} bytes"
            )
            part.unlink(missing_ok=True)
            progress.add(-(resume + written))
            with stats.lock:
                stats.checksum_failures[f.path] = stats.checksum_failures.get(f.path, 0) + 1
            if attempt <= retries:
                continue
            raise WeightsError(
                "checksum_mismatch",
                f"{f.path} failed verification {attempt} times ({last_problem}). The source serves damaged "
                "content: retry later, try another endpoint/mirror, or re-create the offline copy.",
                file=f.path,
            )
        dest = target / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(part, 0o644)
        os.replace(part, dest)
        with stats.lock:
            stats.fetched.append(f.path)
            stats.bytes_fetched += written
            records[f.path] = record_for(f, digest, dest.stat())
        progress.file_done()
        return


def fetch_all(
    source: Source,
    target: Path,
    todo: list[WeightFile],
    *,
    workers: int,
    retries: int,
    progress: Progress,
    records: dict[str, dict[str, Any]],
    retry_delay: float = 1.0,
) -> FetchStats:
    stats = FetchStats()
    if source.workers is not None:
        workers = source.workers
    if isinstance(source, TarSource):
        order = sorted(todo, key=lambda f: source.order.get(f.path, 0))
    else:
        # Largest first: the long transfers start early and the small files fill the gaps.
        order = sorted(todo, key=lambda f: -f.size)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(order) or 1))) as pool:
        futures = [
            pool.submit(
                fetch_file,
                source,
                target,
                f,
                retries=retries,
                progress=progress,
                stats=stats,
                records=records,
                retry_delay=retry_delay,
            )
            for f in order
        ]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in pending:
            fut.cancel()
        for fut in done:
            exc = fut.exception()
            if exc is not None:
                raise exc
    return stats
