"""Hugging Face Hub stand-in: a tiny hub on 127.0.0.1 for tests and benchmarks.

It is NOT the Hugging Face Hub. It speaks just enough of the Hub's HTTP protocol for
``huggingface_hub`` 2.x and our ``model_weights`` module (see ../../../shared/FACTS.md):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: model info (sha, gated, siblings).
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=true``: listing with ``type``, ``oid``, ``size``,
  ``path`` and ``lfs {oid, size, pointerSize}`` for LFS files.
- ``HEAD``/``GET /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``ETag`` (git blob id for small files,
  sha256 for LFS files), ``Content-Length``, ``Accept-Ranges``. LFS files answer with a 302 to a CDN-like
  ``/cdn-lfs/{sha256}`` URL plus ``X-Linked-Etag``/``X-Linked-Size``, as the real Hub does, so redirect
  handling is exercised. ``Range: bytes=N-`` is honoured (206), which resume depends on.
- Errors carry the headers ``huggingface_hub`` interprets (``X-Error-Code``: ``RepoNotFound``,
  ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``; ``X-Error-Message``; 401 ``Invalid credentials in
  Authorization header`` for an unknown token). Gated repos list their metadata to anyone (as the Hub
  does) and refuse file downloads: 401 without a token, 403 for a token not granted access.

Fault injection (``HubStandIn.inject``): serve corrupted bytes (same size, so only a checksum notices),
cut the connection after N bytes, or throttle to a byte rate. Every request is logged for assertions.

Run it alone for manual tries: ``python tests/standins/hf_hub.py --port 8999 --demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

# Extensions that the Hub stores in LFS in a typical model repo (.gitattributes of transformers repos).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx")
CHUNK = 1 << 20


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as ``oid`` for every file."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class StoredFile:
    path: str
    blob: Path  # content on disk, shared between commits with the same content
    size: int
    sha256: str
    lfs: bool
    oid: str  # git blob id (of the LFS pointer for LFS files, as on the Hub)


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool | str = False
    granted_tokens: set[str] = field(default_factory=set)


@dataclass
class Fault:
    kind: str  # "corrupt" | "cut"
    times: int = 1  # GETs affected; -1 for every GET
    at: int = 0  # for "cut": bytes sent before the connection is dropped


class HubStandIn:
    """In-process hub. ``with HubStandIn(tmp) as hub: hub.add_repo(...); hub.url``."""

    def __init__(self, root: Path | str, *, port: int = 0, tokens: set[str] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port
        # LFS content is served from a second port: a different origin, like the Hub's CDN, so clients
        # stop following the redirect at HEAD time and do not forward the token there.
        self.cdn_port = 0
        # Tokens the hub knows; any other token gets 401 "Invalid credentials", like a revoked token.
        self.tokens: set[str] = set(tokens or set())
        self.repos: dict[str, Repo] = {}
        self.faults: dict[tuple[str, str], Fault] = {}  # (repo_id, path) -> fault
        self.rate_bps: int = 0  # per response stream; 0: unthrottled
        self.link_bps: int = 0  # all streams together, like one network link; 0: unthrottled
        self._link_free_at = 0.0
        self.log: list[dict[str, Any]] = []
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()

    # ---- repository content -------------------------------------------------------------------
    def _store(self, data: bytes | None, size: int, seed: int) -> tuple[Path, int, str]:
        blobs = self.root / "blobs"
        blobs.mkdir(exist_ok=True)
        digest = hashlib.sha256()
        tmp = blobs / f"tmp-{os.getpid()}-{threading.get_ident()}-{seed}"
        with open(tmp, "wb") as out:
            if data is not None:
                out.write(data)
                digest.update(data)
                size = len(data)
            else:
                rng = random.Random(seed)
                left = size
                while left:
                    block = rng.randbytes(min(left, 8 * CHUNK))
                    out.write(block)
                    digest.update(block)
                    left -= len(block)
        final = blobs / digest.hexdigest()
        os.replace(tmp, final)
        return final, size, digest.hexdigest()

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes | int],
        *,
        branch: str = "main",
        gated: bool | str | None = None,
        seed: int = 0,
    ) -> str:
        """Add a commit; ``files`` maps a path to its bytes, or to a size for generated random content.

        Returns the commit sha, which also becomes the head of ``branch``.
        """
        repo = self.repos.setdefault(repo_id, Repo(repo_id))
        if gated is not None:
            repo.gated = gated
        stored: dict[str, StoredFile] = {}
        for index, (path, content) in enumerate(sorted(files.items())):
            data = content if isinstance(content, bytes) else None
            size = content if isinstance(content, int) else 0
            blob, size, sha256 = self._store(data, size, seed * 1000 + index)
            lfs = path.endswith(LFS_SUFFIXES)
            # The Hub's oid of an LFS file is the blob id of its pointer, not of the content.
            oid = git_blob_sha1(lfs_pointer(sha256, size)) if lfs else git_blob_sha1(blob.read_bytes())
            stored[path] = StoredFile(path, blob, size, sha256, lfs, oid)
        listing = json.dumps({p: f.oid for p, f in sorted(stored.items())}) + repo_id + str(len(repo.commits))
        sha = hashlib.sha1(listing.encode()).hexdigest()
        repo.commits[sha] = stored
        repo.refs[branch] = sha
        return sha

    add_repo = add_commit

    def grant(self, repo_id: str, token: str) -> None:
        self.tokens.add(token)
        self.repos[repo_id].granted_tokens.add(token)

    def inject(self, repo_id: str, path: str, kind: str, *, times: int = 1, at: int = 0) -> None:
        """Make the next ``times`` GETs of a file misbehave: ``corrupt`` (flip bytes) or ``cut`` at ``at``."""
        if kind not in {"corrupt", "cut"}:
            raise ValueError(kind)
        self.faults[(repo_id, path)] = Fault(kind, times, at)

    def file(self, repo_id: str, path: str, revision: str = "main") -> StoredFile:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs.get(revision, revision)][path]

    def requests(self, method: str | None = None, contains: str = "") -> list[dict[str, Any]]:
        with self._lock:
            return [
                r for r in self.log if (method is None or r["method"] == method) and contains in r["path"]
            ]

    # ---- HTTP ---------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, code: str | None, message: str) -> web.Response:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        return web.json_response({"error": message}, status=status, headers=headers)

    def _auth(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        header = request.headers.get("Authorization", "")
        if not header:
            return None, None
        token = header.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            return token, self._error(401, None, "Invalid credentials in Authorization header")
        return token, None

    def _lookup(
        self, repo_id: str, revision: str
    ) -> tuple[Repo | None, str | None, dict[str, StoredFile] | None, web.Response | None]:
        repo = self.repos.get(repo_id)
        if repo is None:
            # The Hub answers 401 RepoNotFound to anonymous callers and 404 to signed-in ones.
            return None, None, None, self._error(404, "RepoNotFound", "Repository not found")
        sha = repo.refs.get(revision, revision)
        if sha not in repo.commits:
            return repo, None, None, self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo, sha, repo.commits[sha], None

    def _model_info(self, repo: Repo, sha: str, files: dict[str, StoredFile], blobs: bool) -> dict:
        siblings = []
        for f in files.values():
            entry: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                entry.update(blobId=f.oid, size=f.size)
                if f.lfs:
                    entry["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(entry)
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "private": False,
            "gated": repo.gated,
            "disabled": False,
            "tags": ["standin"],
            "downloads": 0,
            "likes": 0,
            "library_name": "transformers",
            "siblings": siblings,
        }

    async def _api(self, request: web.Request) -> web.StreamResponse:
        _, denied = self._auth(request)
        if denied:
            return denied
        rest = request.match_info["rest"]
        match = re.fullmatch(r"([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/(.*))?)?", rest)
        if not match:
            return self._error(404, None, "Not found")
        repo_id, kind, revision, subpath = match.groups()
        repo, sha, files, error = self._lookup(repo_id, revision or "main")
        if error:
            return error
        assert repo is not None and sha is not None and files is not None
        if kind in (None, "revision"):
            blobs = request.query.get("blobs", "").lower() in {"1", "true"}
            return web.json_response(self._model_info(repo, sha, files, blobs))
        recursive = request.query.get("recursive", "").lower() in {"1", "true"}
        prefix = f"{subpath.strip('/')}/" if subpath else ""
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for f in sorted(files.values(), key=lambda item: item.path):
            if not f.path.startswith(prefix):
                continue
            rel = f.path[len(prefix) :]
            if "/" in rel and not recursive:
                folders.add(prefix + rel.split("/")[0])
                continue
            if recursive:
                parts = rel.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    folders.add(prefix + "/".join(parts[:depth]))
            entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(entry)
        tree = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(folders)
        ]
        return web.json_response(tree + entries)

    def _fault_for(self, repo_id: str, path: str) -> Fault | None:
        with self._lock:
            fault = self.faults.get((repo_id, path))
            if fault is None or fault.times == 0:
                return None
            if fault.times > 0:
                fault.times -= 1
            return Fault(fault.kind, 1, fault.at)

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        token, denied = self._auth(request)
        if denied:
            return denied
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        repo, sha, files, error = self._lookup(repo_id, request.match_info["rev"])
        if error:
            return error
        assert repo is not None and sha is not None and files is not None
        path = request.match_info["path"]
        if repo.gated:
            if token is None:
                return self._error(
                    401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in.",
                )
            if token not in repo.granted_tokens:
                return self._error(
                    403,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                    f"Visit {self.url}/{repo_id} to ask for access.",
                )
        stored = files.get(path)
        if stored is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on revision {sha}")
        common = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if stored.lfs:
            # Like the Hub: LFS content lives on a CDN; the resolve URL redirects there.
            headers = {
                **common,
                "Location": f"{self.cdn_url}/cdn-lfs/{repo_id}/{stored.sha256}",
                "X-Linked-Etag": f'"{stored.sha256}"',
                "X-Linked-Size": str(stored.size),
                "ETag": f'"{stored.oid}"',
            }
            return web.Response(status=302, headers=headers)
        return await self._send(request, repo_id, stored, {**common, "ETag": f'"{stored.oid}"'})

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        digest = request.match_info["sha256"]
        repo = self.repos.get(repo_id)
        stored = None
        if repo is not None:
            for files in repo.commits.values():
                stored = next((f for f in files.values() if f.sha256 == digest), None)
                if stored:
                    break
        if stored is None:
            return web.Response(status=404, text="NoSuchKey")
        return await self._send(
            request, repo_id, stored, {"ETag": f'"{stored.sha256}"', "Accept-Ranges": "bytes"}
        )

    async def _send(
        self, request: web.Request, repo_id: str, stored: StoredFile, headers: dict[str, str]
    ) -> web.StreamResponse:
        start = 0
        status = 200
        range_header = request.headers.get("Range")
        if range_header:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if not match or int(match.group(1)) >= stored.size:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{stored.size}"})
            start = int(match.group(1))
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stored.size - 1}/{stored.size}"
        length = stored.size - start
        headers["Content-Length"] = str(length)
        headers["Content-Type"] = "application/octet-stream"
        response = web.StreamResponse(status=status, headers=headers)
        if request.method == "HEAD":
            await response.prepare(request)
            return response
        fault = self._fault_for(repo_id, stored.path)
        await response.prepare(request)
        sent = 0
        began = time.monotonic()
        # Blocking reads are fine here: blobs sit in the page cache and a thread hop per MiB costs more.
        with open(stored.blob, "rb") as source:  # noqa: ASYNC230
            source.seek(start)
            while sent < length:
                block = source.read(min(CHUNK, length - sent))
                if not block:
                    break
                if fault and fault.kind == "corrupt" and sent == 0:
                    # Same length, different bytes: only a content checksum can tell.
                    block = bytes(b ^ 0xFF for b in block[:64]) + block[64:]
                if fault and fault.kind == "cut" and start + sent + len(block) > fault.at:
                    keep = max(fault.at - start - sent, 0)
                    if keep:
                        await response.write(block[:keep])
                        sent += keep
                    self._count(sent)
                    # Drop the TCP connection mid-body, as a flaky network or proxy would.
                    if request.transport is not None:
                        request.transport.close()
                    return response
                await response.write(block)
                sent += len(block)
                if self.link_bps:
                    await self._pace_link(len(block))
                if self.rate_bps:
                    ahead = sent / self.rate_bps - (time.monotonic() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        self._count(sent)
        await response.write_eof()
        return response

    async def _pace_link(self, n: int) -> None:
        # One shared clock for every stream (all on this event loop): a block may leave once the link
        # has carried the blocks before it.
        now = time.monotonic()
        self._link_free_at = max(now, self._link_free_at) + n / self.link_bps
        if self._link_free_at > now:
            await asyncio.sleep(self._link_free_at - now)

    def _count(self, sent: int) -> None:
        with self._lock:
            self.bytes_sent += sent

    @web.middleware
    async def _logger(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self.log.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "range": request.headers.get("Range"),
                    "auth": "Authorization" in request.headers,
                }
            )
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._logger])
        app.router.add_route("GET", "/api/models/{rest:.+}", self._api)
        for method in ("GET", "HEAD"):
            app.router.add_route(method, "/{org}/{name}/resolve/{rev}/{path:.+}", self._resolve)
            app.router.add_route(method, "/cdn-lfs/{org}/{name}/{sha256}", self._cdn)
        return app

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self.cdn_port}"

    def start(self) -> HubStandIn:
        self._thread = threading.Thread(target=self._serve, name="hf-hub-standin", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("hub stand-in did not start")
        return self

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app(), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self.port = self._bound_port(site)
        cdn = web.TCPSite(self._runner, "127.0.0.1", self.cdn_port)
        self._loop.run_until_complete(cdn.start())
        self.cdn_port = self._bound_port(cdn)
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    @staticmethod
    def _bound_port(site: web.TCPSite) -> int:
        server = site._server
        assert server is not None and server.sockets
        return int(server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_hub(root: Path | str, **kwargs: Any) -> Iterator[HubStandIn]:
    hub = HubStandIn(root, **kwargs)
    with hub:
        yield hub


def demo_repo(hub: HubStandIn, repo_id: str = "standin/tiny-llm", weight_bytes: int = 4 << 20) -> str:
    """A small repo shaped like a transformers checkpoint (two safetensors shards)."""
    half = weight_bytes // 2
    return hub.add_commit(
        repo_id,
        {
            "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 128}).encode(),
            "generation_config.json": b'{"do_sample": false}',
            "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE"}}).encode(),
            "tokenizer_config.json": b'{"model_max_length": 256}',
            "model-00001-of-00002.safetensors": half,
            "model-00002-of-00002.safetensors": weight_bytes - half,
            "model.safetensors.index.json": b'{"weight_map": {}}',
            "README.md": b"# tiny\n",
            "original/consolidated.pth": 1 << 16,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--root", default="/tmp/hf-hub-standin")
    parser.add_argument("--demo", action="store_true", help="serve standin/tiny-llm")
    parser.add_argument("--repo-spec", help="JSON file: {repo_id: {path: size-or-text}}")
    parser.add_argument(
        "--link-mbps", type=float, default=0, help="emulate a network link of this many Mbit/s"
    )
    args = parser.parse_args()
    hub = HubStandIn(args.root, port=args.port)
    hub.link_bps = int(args.link_mbps * 1_000_000 / 8)
    if args.demo:
        print("standin/tiny-llm", demo_repo(hub), flush=True)
    if args.repo_spec:
        for repo_id, files in json.loads(Path(args.repo_spec).read_text()).items():
            spec = {p: (v.encode() if isinstance(v, str) else int(v)) for p, v in files.items()}
            print(repo_id, hub.add_commit(repo_id, spec), flush=True)
    hub.start()
    print(f"listening on {hub.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
