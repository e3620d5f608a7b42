"""Model weights: list, verify and fetch a pinned snapshot into ``<weights_dir>/<name>/<revision>``.

Shared by the ``model_weights`` and ``model_weights_info`` modules, the tests and the benchmark. No Ansible
imports here, so it runs (and is tested) as plain Python.

Why not plain ``huggingface_hub.snapshot_download``: it accepts a file whose bytes differ from the Hub's
LFS sha256 as long as the size is right, and (2.x) deletes partial files when a download fails, so an
interrupted 5 GB shard starts again from zero. We keep using ``huggingface_hub`` for everything that
speaks the Hub protocol (model info, tree listing, HEAD metadata and redirects, auth headers, ranged GET with
its own retries, error classes) and add, around it: a partial file per blob that survives the process (resume
across runs), a sha256 (LFS) or git blob sha1 (small files) computed while the bytes arrive, bounded re-fetch
of corrupt files, a free-space check before fetching, a progress file, and a manifest that makes re-runs
cheap and offline sources verifiable.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import HTTPRedirectHandler, Request, build_opener

from ansible_collections.k3sllm.platform.plugins.module_utils.diskspace import space_for

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
STATE_DIR = ".k3sllm"  # inside the snapshot folder; vLLM ignores it
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
CHUNK = 8 << 20
NET_CHUNK = 1 << 20
DEFAULT_ENDPOINT = "https://huggingface.co"
TRANSFERS = ("http", "huggingface_hub")


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


# ---- hashing -----------------------------------------------------------------------------------


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

    def write(self, data: bytes) -> int:
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


# ---- progress ----------------------------------------------------------------------------------


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


# ---- manifest ----------------------------------------------------------------------------------


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


# ---- sources -----------------------------------------------------------------------------------


class Source(Protocol):
    kind: str
    resumable: bool
    workers: int | None  # None: caller decides

    def snapshot(self) -> Snapshot: ...

    def preflight(self, f: WeightFile) -> None: ...

    def fetch(self, f: WeightFile, writer: HashingWriter, resume: int) -> None: ...


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = urlparse(url)
    return parsed.scheme, (parsed.hostname or "").lower(), parsed.port


class _NoAuthAcrossOrigins(HTTPRedirectHandler):
    """urllib keeps every header on a redirect; a token must not follow a redirect to another host."""

    def redirect_request(self, req: Request, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


class HubSource:
    """A repo on the Hugging Face Hub or a Hub-compatible mirror.

    ``huggingface_hub`` does the protocol: model info, tree listing, per-file HEAD (redirects to the CDN,
    linked ETag and size), auth headers and the mapping of the Hub's error headers. The bytes themselves
    are streamed either by the standard library (``transfer="http"``, the default: on this project's
    test machine huggingface_hub's httpx-based ``http_get`` moved 120-180 MiB/s where a plain urllib
    stream moved 450-730 MiB/s from the same server) or by ``huggingface_hub.file_download.http_get``
    (``transfer="huggingface_hub"``). Both resume from our partial files with a Range request.
    """

    kind = "hub"
    resumable = True
    workers = None

    def __init__(
        self,
        repo: str,
        revision: str,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        transfer: str = "http",
        timeout: float = 60.0,
    ):
        try:
            # Imported here: offline sources and the capacity plan must work on hosts without it.
            from huggingface_hub import HfApi
        except ImportError as exc:
            raise WeightsError(
                "missing_library",
                "The Python library huggingface_hub is not installed for the interpreter running this module "
                f"({exc}). Install it (the model_weights role does, into its own virtualenv) or use an offline "
                "source.",
            ) from exc
        self.repo = repo
        self.revision = revision
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        # An explicit token wins; else HF_TOKEN, as huggingface_hub itself does.
        self.token = token or os.environ.get("HF_TOKEN") or None
        self.api = HfApi(endpoint=self.endpoint, token=self.token, library_name="k3sllm")
        if transfer not in TRANSFERS:
            raise WeightsError("invalid", f"transfer must be one of {', '.join(TRANSFERS)}, not {transfer!r}")
        self.transfer = transfer
        self.timeout = timeout
        # build_opener keeps urllib's proxy support (HTTPS_PROXY, NO_PROXY), like huggingface_hub.
        self._opener = build_opener(_NoAuthAcrossOrigins())
        self.sha = ""
        self._locations: dict[str, tuple[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    # Error mapping: the library's exception classes carry the Hub's X-Error-Code; we add what to do.
    def _explain(self, exc: Exception, what: str) -> WeightsError:
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        status = getattr(getattr(exc, "response", None), "status_code", None)
        server = (getattr(exc, "server_message", "") or "").strip()
        where = f"{self.repo} on {self.endpoint}"
        if isinstance(exc, GatedRepoError):
            if not self.token:
                return WeightsError(
                    "gated_no_token",
                    f"{where} is gated: accept its license on the model page with your Hugging Face account, "
                    "then set k3sllm_hf_token (vault) or HF_TOKEN to a token of that account. "
                    f"Hub said: {server or status}",
                )
            return WeightsError(
                "gated_no_access",
                f"{where} is gated and the token has no access yet (HTTP {status}): request access on the model "
                f"page (or wait for approval) with the token's account. Hub said: {server}",
            )
        if isinstance(exc, RevisionNotFoundError):
            return WeightsError(
                "revision_not_found",
                f"Revision {self.revision!r} does not exist in {where}. Check the revision in k3sllm_models "
                "(a full 40-character commit sha from the repo's commit history, or a branch or tag name).",
            )
        if isinstance(exc, RepositoryNotFoundError):
            hint = (
                " The token may lack access to this private repo."
                if self.token
                else " If the repo is private, set k3sllm_hf_token."
            )
            return WeightsError(
                "repo_not_found",
                f"Repository {self.repo!r} was not found on {self.endpoint} (HTTP {status}). Check the repo id "
                f"in k3sllm_models (owner/name, case-sensitive).{hint}",
            )
        if isinstance(exc, RemoteEntryNotFoundError):
            return WeightsError(
                "file_not_found", f"{what}: the file is listed but the Hub cannot serve it (HTTP {status})."
            )
        if isinstance(exc, HfHubHTTPError) and status == 401:
            return WeightsError(
                "bad_token",
                f"{self.endpoint} rejected the Hugging Face token (HTTP 401: {server or 'invalid credentials'}). "
                "The token is wrong, expired or revoked: create a read token at "
                "https://huggingface.co/settings/tokens and update k3sllm_hf_token.",
            )
        if isinstance(exc, HfHubHTTPError) and status is not None and status < 500 and status != 429:
            return WeightsError("hub_error", f"{what} failed on {where}: HTTP {status} {server}")
        return WeightsError(
            "unreachable",
            f"{what} failed: cannot reach {self.endpoint} ({type(exc).__name__}: {exc}). Check the host's "
            "network and proxy, set k3sllm_hf_endpoint to a reachable mirror, or use an offline source.",
        )

    def snapshot(self) -> Snapshot:
        from huggingface_hub.hf_api import RepoFile

        try:
            info = self.api.model_info(self.repo, revision=self.revision)
            sha = str(info.sha or "")
            if not is_commit(sha):
                raise WeightsError("hub_error", f"{self.endpoint} returned no commit sha for {self.repo}.")
            entries = list(self.api.list_repo_tree(self.repo, revision=sha, recursive=True))
        except WeightsError:
            raise
        except Exception as exc:
            raise self._explain(exc, f"Listing {self.repo}@{self.revision}") from exc
        self.sha = sha
        files = [
            WeightFile(
                path=safe_relpath(e.path),
                size=int(e.size),
                sha256=(e.lfs.sha256 if e.lfs is not None else None),
                blob_id=(None if e.lfs is not None else e.blob_id),
            )
            for e in entries
            if isinstance(e, RepoFile)
        ]
        return Snapshot(self.repo, self.revision, sha, files, gated=info.gated or False)

    def _location(self, f: WeightFile) -> tuple[str, dict[str, str]]:
        with self._lock:
            if f.path in self._locations:
                return self._locations[f.path]
        from huggingface_hub import hf_hub_url
        from huggingface_hub.file_download import get_hf_file_metadata
        from huggingface_hub.utils import build_hf_headers

        url = hf_hub_url(self.repo, f.path, revision=self.sha, endpoint=self.endpoint)
        try:
            meta = get_hf_file_metadata(url, token=self.token, endpoint=self.endpoint)
        except Exception as exc:
            raise self._explain(exc, f"Reading metadata of {f.path}") from exc
        headers = build_hf_headers(token=self.token, library_name="k3sllm")
        location = meta.location or url
        if _origin(location) != _origin(url):
            # Signed CDN URL: the token must not leave the Hub.
            headers.pop("authorization", None)
        with self._lock:
            self._locations[f.path] = (location, headers)
        return location, headers

    def preflight(self, f: WeightFile) -> None:
        """HEAD one file before any byte is written: gated repos answer here, not at listing time."""
        self._location(f)

    def fetch(self, f: WeightFile, writer: HashingWriter, resume: int) -> None:
        location, headers = self._location(f)
        try:
            if self.transfer == "http":
                self._stream(location, headers, writer, resume, f)
            else:
                self._hub_http_get(location, headers, writer, resume, f)
        except TransientError:
            # Signed CDN URLs expire (an hour on the Hub): the next attempt asks the Hub again.
            with self._lock:
                self._locations.pop(f.path, None)
            raise

    def _stream(
        self, url: str, headers: dict[str, str], writer: HashingWriter, resume: int, f: WeightFile
    ) -> None:
        request_headers = {**headers, "Accept-Encoding": "identity"}
        if resume:
            request_headers["Range"] = f"bytes={resume}-"
        try:
            response = self._opener.open(Request(url, headers=request_headers), timeout=self.timeout)
        except HTTPError as exc:
            status = exc.code
            message = exc.headers.get("X-Error-Message", "") if exc.headers else ""
            exc.close()
            if status >= 500 or status in (403, 408, 416, 429):
                # 403 from a CDN is usually an expired signed URL; 416 a partial the server rejects.
                raise TransientError(f"{f.path}: HTTP {status} {message}".strip()) from exc
            raise WeightsError(
                "hub_error", f"Downloading {f.path} from {self.endpoint} failed: HTTP {status} {message}"
            ) from exc
        except (URLError, OSError, http.client.HTTPException) as exc:
            raise TransientError(f"{f.path}: {exc}") from exc
        buffer = bytearray(NET_CHUNK)
        view = memoryview(buffer)
        try:
            with response:
                if resume and response.status == 200:
                    # The server ignored the Range header: start the file over.
                    writer.seek(0)
                    writer.truncate(0)
                while True:
                    n = response.readinto(buffer)
                    if not n:
                        break
                    writer.write(view[:n])
        except (OSError, http.client.HTTPException) as exc:
            if getattr(exc, "errno", None) == errno.ENOSPC:
                raise
            raise TransientError(f"{f.path}: connection lost: {exc}") from exc
        finally:
            view.release()
        writer.flush()
        size = os.fstat(writer.fh.fileno()).st_size
        if size < f.size:
            raise TransientError(f"{f.path}: connection closed after {size} of {f.size} bytes")

    def _hub_http_get(
        self, url: str, headers: dict[str, str], writer: HashingWriter, resume: int, f: WeightFile
    ) -> None:
        from huggingface_hub.errors import HfHubHTTPError
        from huggingface_hub.file_download import http_get

        try:
            # http_get also retries a cut stream itself, with a Range request, within this attempt.
            http_get(url, writer, resume_size=resume, headers=dict(headers), expected_size=f.size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            raise TransientError(f"{f.path}: {exc}") from exc
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status is not None and (status >= 500 or status in (403, 408, 416, 429)):
                raise TransientError(f"{f.path}: HTTP {status}") from exc
            raise self._explain(exc, f"Downloading {f.path}") from exc
        except Exception as exc:  # httpx transport errors after the library's own retries
            raise TransientError(f"{f.path}: {type(exc).__name__}: {exc}") from exc


def _digest_from_etag(etag: str) -> tuple[str | None, str | None]:
    etag = etag.strip().strip('"').lower()
    if SHA256_RE.match(etag):
        return etag, None
    if COMMIT_RE.match(etag):
        return None, etag
    return None, None


def _expectations_from_listing(listing: dict[str, dict[str, Any]], sizes: dict[str, int]) -> list[WeightFile]:
    """Files with their checksums from a manifest written by this module."""
    files = []
    for path, rec in listing.items():
        if path not in sizes:
            continue
        algo, digest = rec.get("algo"), rec.get("digest")
        files.append(
            WeightFile(
                path=safe_relpath(path),
                size=int(rec.get("size", sizes[path])),
                sha256=digest if algo == "sha256" else None,
                blob_id=digest if algo == "git-sha1" else None,
            )
        )
    return files


class FolderSource:
    """A copied snapshot folder (airgap). Checksums come from, in order: our manifest (a folder this
    module filled), huggingface_hub's local-dir metadata (``hf download --local-dir``), or nowhere (the
    files are then taken as they are, and the result says so)."""

    kind = "folder"
    resumable = True
    workers: int | None = None

    def __init__(self, root: str | Path, repo: str, revision: str):
        self.root = Path(root)
        self.repo = repo
        self.revision = revision
        if not self.root.is_dir():
            raise WeightsError("offline_source", f"Offline source {self.root} is not a folder.")

    def _walk(self) -> dict[str, int]:
        sizes = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = Path(dirpath).relative_to(self.root)
            # Skip our state and huggingface_hub's cache folder: they are not model files.
            dirnames[:] = [d for d in dirnames if not (rel_dir == Path(".") and d in (STATE_DIR, ".cache"))]
            for name in filenames:
                rel = (rel_dir / name).as_posix()
                sizes[rel] = (Path(dirpath) / name).stat().st_size
        return sizes

    def _hf_metadata(self, path: str) -> tuple[str | None, str | None, str | None]:
        meta = self.root / ".cache" / "huggingface" / "download" / f"{path}.metadata"
        try:
            commit, etag, *_ = meta.read_text().splitlines()
        except (OSError, ValueError):
            return None, None, None
        sha256, blob = _digest_from_etag(etag)
        return commit.strip(), sha256, blob

    def snapshot(self) -> Snapshot:
        sizes = self._walk()
        manifest = load_manifest(self.root)
        if manifest.get("files"):
            check_source_identity(
                manifest.get("repo"), manifest.get("sha"), self.repo, self.revision, self.root
            )
            files = _expectations_from_listing(manifest["files"], sizes)
            missing = sorted(set(manifest["files"]) - set(sizes))
            if missing:
                raise WeightsError(
                    "offline_source",
                    f"Offline source {self.root} lacks files its manifest lists: {', '.join(missing[:5])}.",
                )
            return Snapshot(self.repo, self.revision, manifest.get("sha") or self.revision, files)
        files = []
        commits = set()
        unverified = False
        for path, size in sorted(sizes.items()):
            commit, sha256, blob = self._hf_metadata(path)
            if commit:
                commits.add(commit)
            unverified = unverified or not (sha256 or blob)
            files.append(WeightFile(safe_relpath(path), size, sha256, blob))
        if len(commits) > 1:
            raise WeightsError(
                "offline_source", f"Offline source {self.root} mixes files of several commits."
            )
        sha = commits.pop() if commits else self.revision
        check_source_identity(None, sha if is_commit(sha) else None, self.repo, self.revision, self.root)
        return Snapshot(self.repo, self.revision, sha, files, verified_source=not unverified)

    def preflight(self, f: WeightFile) -> None:
        return None

    def fetch(self, f: WeightFile, writer: HashingWriter, resume: int) -> None:
        with open(self.root / f.path, "rb") as src:
            src.seek(resume)
            shutil.copyfileobj(src, writer, CHUNK)


class TarSource:
    """A tarball of a snapshot folder (``tar -C <weights_dir>/<name>/<sha> -cf model.tar .``).

    Read in archive order by one worker, so compressed archives are decompressed once."""

    kind = "tarball"
    resumable = False
    workers = 1

    def __init__(self, path: str | Path, repo: str, revision: str):
        self.path = Path(path)
        self.repo = repo
        self.revision = revision
        try:
            self.tar = tarfile.open(self.path, "r:*")  # noqa: SIM115 - kept open for fetch()
        except (OSError, tarfile.TarError) as exc:
            raise WeightsError("offline_source", f"Cannot read offline tarball {self.path}: {exc}") from exc
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in self.tar.getmembers():
            name = PurePosixPath(member.name)
            parts = [p for p in name.parts if p != "."]
            if not parts:
                continue
            rel = "/".join(parts)
            if member.isfile():
                self.members[rel] = member
        self.order = {name: i for i, name in enumerate(self.members)}
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        manifest_member = self.members.get(f"{STATE_DIR}/{MANIFEST}")
        sizes = {
            name: m.size
            for name, m in self.members.items()
            if not name.startswith((f"{STATE_DIR}/", ".cache/"))
        }
        if manifest_member is not None:
            extracted = self.tar.extractfile(manifest_member)
            manifest = json.loads(extracted.read()) if extracted else {}
            check_source_identity(
                manifest.get("repo"), manifest.get("sha"), self.repo, self.revision, self.path
            )
            files = _expectations_from_listing(manifest.get("files", {}), sizes)
            missing = sorted(set(manifest.get("files", {})) - set(sizes))
            if missing:
                raise WeightsError(
                    "offline_source",
                    f"Tarball {self.path} lacks files its manifest lists: {', '.join(missing[:5])}.",
                )
            return Snapshot(self.repo, self.revision, manifest.get("sha") or self.revision, files)
        files = [WeightFile(safe_relpath(p), s) for p, s in sorted(sizes.items())]
        return Snapshot(self.repo, self.revision, self.revision, files, verified_source=False)

    def preflight(self, f: WeightFile) -> None:
        return None

    def fetch(self, f: WeightFile, writer: HashingWriter, resume: int) -> None:
        with self._lock:
            extracted = self.tar.extractfile(self.members[f.path])
            if extracted is None:
                raise WeightsError("offline_source", f"{f.path} in {self.path} is not a regular file.")
            shutil.copyfileobj(extracted, writer, CHUNK)


def check_source_identity(
    src_repo: str | None, src_sha: str | None, repo: str, revision: str, where: Path
) -> None:
    if src_repo and src_repo != repo:
        raise WeightsError(
            "offline_source", f"Offline source {where} holds {src_repo}, the catalog asks for {repo}."
        )
    if src_sha and is_commit(revision) and src_sha != revision:
        raise WeightsError(
            "offline_source",
            f"Offline source {where} holds revision {src_sha}, the catalog pins {revision}: copy the right "
            "snapshot or change the pin.",
        )


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


# ---- fetching ----------------------------------------------------------------------------------


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


# ---- the whole operation -----------------------------------------------------------------------


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


# ---- sizes for the capacity plan -----------------------------------------------------------------


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
