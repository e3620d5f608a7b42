"""The files of a snapshot: what they are, where they go, and how their bytes are checked."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
STATE_DIR = ".k3sllm"  # inside the snapshot folder; vLLM ignores it
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
CHUNK = 8 << 20


class WeightsError(Exception):
    """A failure a person can act on; ``kind`` lets callers and tests tell them apart."""

    def __init__(self, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


class TransientError(Exception):
    """A network failure worth another attempt (the partial file is kept and resumed)."""


@dataclass(frozen=True)
class WeightFile:
    path: str
    size: int
    sha256: str | None = None  # LFS files: the content sha256 from the Hub's listing
    blob_id: str | None = None  # small files: the git blob sha1 (the Hub's ``oid``)

    @property
    def expected(self) -> tuple[str, str] | None:
        if self.sha256:
            return "sha256", self.sha256
        if self.blob_id:
            return "git-sha1", self.blob_id
        return None

    def hasher(self) -> Any:
        if self.sha256 or not self.blob_id:
            return hashlib.sha256()
        # A git blob id is sha1("blob <size>\0" + content): small files get verified too.
        h = hashlib.sha1()
        h.update(b"blob %d\x00" % self.size)
        return h

    @property
    def algo(self) -> str:
        return "git-sha1" if (self.blob_id and not self.sha256) else "sha256"


@dataclass
class Snapshot:
    repo: str
    revision: str  # as requested
    sha: str  # resolved commit (or the requested revision when a source cannot tell)
    files: list[WeightFile]
    gated: bool | str = False
    verified_source: bool = True  # False: an offline source without checksums


def is_commit(revision: str) -> bool:
    return bool(COMMIT_RE.match(revision))


def safe_relpath(path: str) -> str:
    """Refuse absolute paths and '..' so a listing or tarball cannot write outside the snapshot folder."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or pure.parts[0] == STATE_DIR:
        raise WeightsError("invalid", f"Refusing unsafe file name {path!r} in the model listing.")
    return str(pure)


def _matches(path: str, patterns: Iterable[str]) -> bool:
    # Same semantics as huggingface_hub: fnmatch, and a trailing '/' means the whole folder.
    return any(fnmatch.fnmatch(path, p + "*" if p.endswith("/") else p) for p in patterns)


def select_files(
    files: Iterable[WeightFile], allow: list[str] | None, ignore: list[str] | None
) -> list[WeightFile]:
    chosen = []
    for f in files:
        if allow and not _matches(f.path, allow):
            continue
        if ignore and _matches(f.path, ignore):
            continue
        chosen.append(f)
    return sorted(chosen, key=lambda f: f.path)


def target_dir(weights_dir: str | Path, name: str, revision: str) -> Path:
    if "/" in revision or revision in {"", ".", ".."}:
        raise WeightsError(
            "invalid", f"Revision {revision!r} cannot name a folder; pin a commit sha instead."
        )
    return Path(weights_dir) / name / revision


def hash_file(path: Path, f: WeightFile, limit: int | None = None) -> Any:
    """Hasher fed with the file's first ``limit`` bytes (all when None)."""
    hasher = f.hasher()
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            block = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            hasher.update(block)
            if left is not None:
                left -= len(block)
    return hasher


class HashingWriter:
    """File object handed to the transfer: hashes and counts bytes as they are written.

    Implements what ``huggingface_hub.file_download.http_get`` uses (write, tell, seek, truncate);
    a truncate (server ignored our Range) re-hashes the kept prefix so the digest stays right.
    """

    def __init__(self, path: Path, fh: BinaryIO, f: WeightFile, hasher: Any, on_bytes: Callable[[int], None]):
        self.path = path
        self.fh = fh
        self.file = f
        self.hasher = hasher
        self.on_bytes = on_bytes
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = self.fh.write(data)
        self.hasher.update(data)
        self.written += len(data)
        self.on_bytes(len(data))
        return n

    def tell(self) -> int:
        return self.fh.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        before = self.fh.tell() if size is None else size
        old = os.fstat(self.fh.fileno()).st_size
        result = self.fh.truncate(size)
        self.fh.flush()
        self.on_bytes(-(old - before))
        self.hasher = hash_file(self.path, self.file, before)
        return result

    def flush(self) -> None:
        self.fh.flush()


class Source(Protocol):
    kind: str
    resumable: bool
    workers: int | None  # None: caller decides

    def snapshot(self) -> Snapshot: ...

    def preflight(self, f: WeightFile) -> None: ...

    def fetch(self, f: WeightFile, writer: HashingWriter, resume: int) -> None: ...
