"""Offline sources for airgapped hosts: a copied snapshot folder or a tarball of one."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from ansible_collections.k3sllm.platform.plugins.module_utils.weights.files import (
    CHUNK,
    COMMIT_RE,
    MANIFEST,
    SHA256_RE,
    STATE_DIR,
    HashingWriter,
    Snapshot,
    WeightFile,
    WeightsError,
    is_commit,
    safe_relpath,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.manifest import load_manifest


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
            commit, etag = meta.read_text().splitlines()[:2]
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
    workers: int | None = 1

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
