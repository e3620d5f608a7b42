"""A progress file that the model_weights role polls while a download runs."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any


class Progress:
    """Thread-safe byte counter that a polling role can read from a JSON file (atomic rewrites)."""

    def __init__(
        self, path: str | Path | None, *, name: str, repo: str, revision: str, interval: float = 0.5
    ):
        self.path = Path(path) if path else None
        self.info = {"name": name, "repo": repo, "revision": revision}
        self.interval = interval
        self.lock = threading.Lock()
        self.state = "listing"
        self.total = 0
        self.done = 0
        self.files_total = 0
        self.files_done = 0
        self.started = time.time()
        self.transfer_started: float | None = None
        self.transferred = 0  # bytes moved in this run (not counting what was already on disk)
        self.message = ""
        self._last_write = 0.0

    def begin(self, total: int, present: int, files_total: int) -> None:
        with self.lock:
            self.state = "downloading"
            self.total = total
            self.done = present
            self.files_total = files_total
            self.transfer_started = time.time()
        self.write(force=True)

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
            if n > 0:
                self.transferred += n
        self.write()

    def file_done(self) -> None:
        with self.lock:
            self.files_done += 1
        self.write()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = time.time()
            elapsed = now - (self.transfer_started or now)
            rate = self.transferred / elapsed if elapsed > 0 else 0.0
            left = max(self.total - self.done, 0)
            return {
                **self.info,
                "state": self.state,
                "bytes_done": self.done,
                "bytes_total": self.total,
                "percent": round(100.0 * self.done / self.total, 1) if self.total else 100.0,
                "files_done": self.files_done,
                "files_total": self.files_total,
                "rate_bytes_per_second": round(rate),
                "eta_seconds": round(left / rate) if rate > 0 and left else (0 if not left else None),
                "started_at": self.started,
                "updated_at": now,
                "pid": os.getpid(),
                "message": self.message,
            }

    def write(self, force: bool = False) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._last_write < self.interval:
            return
        self._last_write = now
        data = json.dumps(self.snapshot())
        # Best effort: a progress file must never fail a download.
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(data)
            os.replace(tmp, self.path)

    def finish(self, state: str, message: str = "") -> None:
        with self.lock:
            self.state = state
            self.message = message
        self.write(force=True)
