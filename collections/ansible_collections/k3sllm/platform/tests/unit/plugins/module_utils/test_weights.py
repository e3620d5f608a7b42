"""Unit tests of the weights logic that needs no Hub: selection, hashing, local checks, retries, progress."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ansible_collections.k3sllm.platform.plugins.module_utils import weights as w


def wf(path: str, data: bytes, lfs: bool = True) -> w.WeightFile:
    """A WeightFile whose expected digest is the real one for ``data``."""
    if lfs:
        return w.WeightFile(path, len(data), sha256=hashlib.sha256(data).hexdigest())
    blob = hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
    return w.WeightFile(path, len(data), blob_id=blob)


class MemorySource:
    """A source serving bytes from memory, with scripted failures per attempt."""

    kind = "memory"
    resumable = True
    workers = None

    def __init__(self, content: dict[str, bytes], failures: dict[str, list[str]] | None = None):
        self.content = content
        self.failures = failures or {}
        self.calls: list[tuple[str, int]] = []

    def snapshot(self) -> w.Snapshot:
        return w.Snapshot("org/m", "0" * 40, "0" * 40, [wf(p, d) for p, d in self.content.items()])

    def preflight(self, f: w.WeightFile) -> None:
        return None

    def fetch(self, f: w.WeightFile, writer: w.HashingWriter, resume: int) -> None:
        self.calls.append((f.path, resume))
        data = self.content[f.path]
        plan = self.failures.get(f.path, [])
        action = plan.pop(0) if plan else "ok"
        if action == "cut":
            writer.write(data[resume : resume + len(data) // 3])
            raise w.TransientError("connection reset")
        if action == "corrupt":
            writer.write(bytes(len(data) - resume))
            return
        if action == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        writer.write(data[resume:])


def ensure(tmp_path: Path, source: MemorySource, **kwargs: object) -> dict:
    return w.ensure_weights(
        name="m",
        repo="org/m",
        revision="0" * 40,
        weights_dir=tmp_path,
        source=source,
        retry_delay=0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_git_blob_ids_match_git():
    # Known ids from git itself (git hash-object): the empty blob and "hello\n".
    assert (
        w.WeightFile("e", 0, blob_id="x").hasher().hexdigest() == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    )
    h = w.WeightFile("h", 6, blob_id="x").hasher()
    h.update(b"hello\n")
    assert h.hexdigest() == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_select_files_follows_huggingface_hub_pattern_rules():
    files = [w.WeightFile(p, 1) for p in ("a.json", "m.safetensors", "original/c.pth", "sub/x.json")]
    assert [f.path for f in w.select_files(files, ["*.json"], None)] == ["a.json", "sub/x.json"]
    assert [f.path for f in w.select_files(files, None, ["original/"])] == [
        "a.json",
        "m.safetensors",
        "sub/x.json",
    ]
    assert [f.path for f in w.select_files(files, ["*.json", "*.safetensors"], ["sub/*"])] == [
        "a.json",
        "m.safetensors",
    ]
    assert w.select_files(files, ["*.gguf"], None) == []


@pytest.mark.parametrize("bad", ["/etc/passwd", "../up", "a/../../b", ".k3sllm/manifest.json", ""])
def test_unsafe_names_are_refused(bad):
    with pytest.raises(w.WeightsError) as err:
        w.safe_relpath(bad)
    assert err.value.kind == "invalid"


def test_revision_must_name_a_folder(tmp_path):
    assert w.target_dir(tmp_path, "m", "main") == tmp_path / "m" / "main"
    with pytest.raises(w.WeightsError):
        w.target_dir(tmp_path, "m", "refs/pr/1")


def test_hashing_writer_rehashes_after_truncate(tmp_path):
    data = os.urandom(5000)
    f = wf("x", data)
    part = tmp_path / "x.part"
    seen: list[int] = []
    with open(part, "wb") as fh:
        writer = w.HashingWriter(part, fh, f, f.hasher(), seen.append)
        writer.write(b"junk-from-a-server-that-ignored-range")
        writer.seek(0)
        writer.truncate()  # what huggingface_hub does when a server answers 200 to a Range request
        writer.write(data)
    assert part.read_bytes() == data
    assert writer.hasher.hexdigest() == f.sha256
    assert sum(seen) == len(data)  # progress un-counts the discarded bytes


def test_progress_file_reports_bytes_rate_and_eta(tmp_path):
    path = tmp_path / "p" / "progress.json"
    progress = w.Progress(path, name="m", repo="org/m", revision="r", interval=0)
    progress.begin(total=1000, present=200, files_total=4)
    progress.transfer_started -= 2  # two seconds ago
    progress.add(300)
    data = json.loads(path.read_text())
    assert data["state"] == "downloading" and data["bytes_done"] == 500 and data["bytes_total"] == 1000
    assert data["percent"] == 50.0 and data["files_total"] == 4
    assert 140 <= data["rate_bytes_per_second"] <= 150  # 300 bytes moved in about 2 s; the 200 were there
    assert 3 <= data["eta_seconds"] <= 4
    progress.finish("failed", "boom")
    assert json.loads(path.read_text())["message"] == "boom"
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"]  # no temp files left


def test_check_local_quick_trusts_manifest_and_full_rehashes(tmp_path):
    data = os.urandom(3000)
    f = wf("m.safetensors", data)
    (tmp_path / f.path).write_bytes(data)
    fresh = w.check_local(tmp_path, [f], {}, "quick")
    assert fresh.ok == [f] and fresh.hashed_bytes == 3000  # no manifest yet: hashed
    manifest = {"files": fresh.records}
    again = w.check_local(tmp_path, [f], manifest, "quick")
    assert again.ok == [f] and again.hashed_bytes == 0  # size+mtime match: trusted
    with open(tmp_path / f.path, "r+b") as fh:
        fh.write(b"\x00\x00")
    changed = w.check_local(tmp_path, [f], manifest, "quick")
    assert changed.corrupt == [f.path] and changed.todo == [f]
    missing = w.check_local(tmp_path, [wf("other", b"abc")], manifest, "full")
    assert missing.todo and not missing.corrupt


def test_fetch_retries_and_resumes_after_transient_errors(tmp_path):
    data = os.urandom(90_000)
    source = MemorySource({"m.safetensors": data}, {"m.safetensors": ["cut", "cut"]})
    result = ensure(tmp_path, source)
    assert result["changed"] is True
    # Each retry resumed where the previous attempt stopped.
    assert [c[1] for c in source.calls] == [0, 30_000, 60_000]
    assert (tmp_path / "m" / ("0" * 40) / "m.safetensors").read_bytes() == data


def test_transfer_gives_up_after_retries_and_keeps_the_partial(tmp_path):
    data = os.urandom(90_000)
    source = MemorySource({"m.safetensors": data}, {"m.safetensors": ["cut", "cut"]})
    with pytest.raises(w.WeightsError) as err:
        ensure(tmp_path, source, retries=1)
    assert err.value.kind == "transfer_failed" and "resumes" in str(err.value)
    part = w.partial_path(tmp_path / "m" / ("0" * 40), source.snapshot().files[0])
    assert part.stat().st_size == 60_000
    result = ensure(tmp_path, source)  # the next run resumes it
    assert result["resumed_bytes"] == 60_000 and source.calls[-1] == ("m.safetensors", 60_000)


def test_corrupt_content_is_discarded_not_resumed(tmp_path):
    data = os.urandom(10_000)
    source = MemorySource({"m.safetensors": data}, {"m.safetensors": ["corrupt"]})
    result = ensure(tmp_path, source)
    assert result["checksum_failures"] == {"m.safetensors": 1}
    assert [c[1] for c in source.calls] == [0, 0]


def test_disk_full_while_writing_is_named(tmp_path):
    source = MemorySource({"m.safetensors": b"x" * 100}, {"m.safetensors": ["enospc"]})
    with pytest.raises(w.WeightsError) as err:
        ensure(tmp_path, source)
    assert err.value.kind == "disk_full"


def test_free_space_check_counts_partial_bytes(tmp_path):
    data = os.urandom(100_000)
    source = MemorySource({"m.safetensors": data})
    f = source.snapshot().files[0]
    part = w.partial_path(tmp_path / "m" / ("0" * 40), f)
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:40_000])
    with pytest.raises(w.WeightsError) as err:
        ensure(tmp_path, source, disk_reserve_bytes=0, free_bytes=lambda _p: 59_999)
    assert err.value.kind == "disk_full" and err.value.details == {"need": 60_000, "free": 59_999}
    result = ensure(tmp_path, source, disk_reserve_bytes=0, free_bytes=lambda _p: 60_000)
    assert result["resumed_bytes"] == 40_000


def test_tarball_with_unsafe_member_is_refused(tmp_path):
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/evil")
        payload = b"* * * * * root true\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    source = w.TarSource(tarball, "org/m", "0" * 40)
    with pytest.raises(w.WeightsError) as err:
        source.snapshot()
    assert err.value.kind == "invalid"


def test_offline_folder_of_another_repo_or_commit_is_refused(tmp_path):
    folder = tmp_path / "copy"
    (folder / w.STATE_DIR).mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    manifest = {"format": 1, "repo": "org/m", "sha": "1" * 40, "files": {"config.json": {"size": 2}}}
    (folder / w.STATE_DIR / w.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(w.WeightsError, match="holds org/m"):
        w.FolderSource(folder, "org/other", "1" * 40).snapshot()
    with pytest.raises(w.WeightsError, match="pins " + "2" * 40):
        w.FolderSource(folder, "org/m", "2" * 40).snapshot()
    assert w.FolderSource(folder, "org/m", "1" * 40).snapshot().sha == "1" * 40


def test_describe_model_uses_a_complete_local_manifest(tmp_path):
    data = os.urandom(1234)
    source = MemorySource({"m.safetensors": data})
    ensure(tmp_path, source, allow_patterns=["*.safetensors"])
    model = {"name": "m", "repo": "org/m", "revision": "0" * 40, "allow_patterns": ["*.safetensors"]}
    described = w.describe_model(model, weights_dir=tmp_path)
    assert (
        described["bytes"] == 1234 and described["present_bytes"] == 1234 and described["source"] == "local"
    )


def hf_local_dir(
    folder: Path, files: dict[str, bytes], commit: str, etags: dict[str, str] | None = None
) -> None:
    """A folder as ``hf download --local-dir`` leaves it: the files, and per file a metadata file of
    three lines (commit, ETag = LFS sha256 or git blob id, timestamp) under .cache/huggingface/download."""
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
        etag = (etags or {}).get(path) or hashlib.sha256(data).hexdigest()
        meta = folder / ".cache" / "huggingface" / "download" / f"{path}.metadata"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(f"{commit}\n{etag}\n1764600000.0\n")


def test_offline_folder_from_hf_download_is_verified_with_its_metadata(tmp_path):
    folder = tmp_path / "copy"
    shard, config = os.urandom(3000), b'{"a": 1}\n'
    blob = hashlib.sha1(b"blob %d\x00" % len(config) + config).hexdigest()
    hf_local_dir(folder, {"model.safetensors": shard, "config.json": config}, "1" * 40, {"config.json": blob})
    snap = w.FolderSource(folder, "org/m", "1" * 40).snapshot()
    assert snap.sha == "1" * 40 and snap.verified_source
    by_path = {f.path: f for f in snap.files}
    assert set(by_path) == {"model.safetensors", "config.json"}  # the .cache folder is not a model file
    assert by_path["model.safetensors"].sha256 == hashlib.sha256(shard).hexdigest()
    assert by_path["config.json"].blob_id == blob

    # A file changed after the download no longer matches its metadata: refused, not copied.
    (folder / "model.safetensors").write_bytes(bytes(3000))
    with pytest.raises(w.WeightsError) as err:
        w.ensure_weights(
            name="m",
            repo="org/m",
            revision="1" * 40,
            weights_dir=tmp_path / "weights",
            source=w.FolderSource(folder, "org/m", "1" * 40),
            retries=0,
            retry_delay=0,
            free_bytes=lambda _path: 1 << 40,
        )
    assert err.value.kind == "checksum_mismatch"


def test_offline_folder_metadata_of_two_commits_or_none_at_all(tmp_path):
    mixed = tmp_path / "mixed"
    hf_local_dir(mixed, {"a.bin": b"a"}, "1" * 40)
    hf_local_dir(mixed, {"b.bin": b"b"}, "2" * 40)
    with pytest.raises(w.WeightsError, match="several commits"):
        w.FolderSource(mixed, "org/m", "main").snapshot()

    # Metadata cut short (one line) counts as none: the files are taken as they are, and said so.
    bare = tmp_path / "bare"
    hf_local_dir(bare, {"a.bin": b"a"}, "1" * 40)
    (bare / ".cache" / "huggingface" / "download" / "a.bin.metadata").write_text("1" * 40 + "\n")
    snap = w.FolderSource(bare, "org/m", "main").snapshot()
    assert not snap.verified_source and snap.sha == "main" and snap.files[0].sha256 is None
