"""The Hugging Face Hub (or a Hub-compatible mirror) as a source of a snapshot's files."""

from __future__ import annotations

import errno
import http.client
import os
import threading
from typing import Any, BinaryIO, cast
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import HTTPRedirectHandler, Request, build_opener

from ansible_collections.k3sllm.platform.plugins.module_utils.weights.files import (
    HashingWriter,
    Snapshot,
    TransientError,
    WeightFile,
    WeightsError,
    is_commit,
    safe_relpath,
)

NET_CHUNK = 1 << 20
DEFAULT_ENDPOINT = "https://huggingface.co"
TRANSFERS = ("http", "huggingface_hub")


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
    workers: int | None = None

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

        # Public in huggingface_hub.utils, but imported there without a re-export marker mypy accepts.
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

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
            # HashingWriter implements the part of a binary file http_get uses (write, tell, seek, truncate).
            sink = cast(BinaryIO, writer)
            http_get(url, sink, resume_size=resume, headers=dict(headers), expected_size=f.size)
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
