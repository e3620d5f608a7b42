"""model_weights against the Hugging Face Hub stand-in: the module's real code path, huggingface_hub included."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
from models.weights_data import GATED_ID, REPO_ID, SHARD, TOKEN_GRANTED, TOKEN_OTHER

from standins.hf_hub import HubStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARD1 = "model-00001-of-00002.safetensors"
ALL_FILES = {
    "README.md",
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "original/consolidated.pth",
    "tokenizer.json",
    "tokenizer_config.json",
}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_snapshot_matches_hub(hub: HubStandIn, folder: Path, files: set[str]) -> None:
    for name in files:
        assert (folder / name).read_bytes() == hub.file(REPO_ID, name).blob.read_bytes(), name


def test_fresh_download_verifies_and_reports(run_weights, hub, sha, tmp_path):
    result = run_weights()
    folder = tmp_path / "weights" / "tiny" / sha
    assert result["changed"] is True
    assert result["path"] == str(folder)
    assert result["revision"] == sha
    assert set(result["files"]) == ALL_FILES == set(result["fetched"])
    expected_bytes = sum(hub.file(REPO_ID, f).size for f in ALL_FILES)
    assert result["bytes"] == result["bytes_fetched"] == result["bytes_to_fetch"] == expected_bytes
    assert result["throughput_bytes_per_second"] > 0 and result["duration_seconds"] > 0
    assert_snapshot_matches_hub(hub, folder, ALL_FILES)
    manifest = json.loads((folder / ".k3sllm" / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["sha"] == sha
    assert manifest["files"][SHARD1]["digest"] == hub.file(REPO_ID, SHARD1).sha256
    # Small files are checked too, against their git blob id.
    assert manifest["files"]["config.json"]["algo"] == "git-sha1"
    progress = json.loads(Path(result["progress_file"]).read_text())
    assert progress["state"] == "done" and progress["bytes_done"] == progress["bytes_total"] == expected_bytes
    # No partial files are left behind.
    assert not list((folder / ".k3sllm" / "partial").iterdir())


def test_rerun_changes_nothing_and_fetches_nothing(run_weights, hub):
    run_weights()
    before = hub.bytes_sent
    gets_before = len(hub.requests("GET", "/resolve/")) + len(hub.requests("GET", "/cdn-lfs/"))
    again = run_weights()
    assert again["changed"] is False
    assert again["fetched"] == [] and again["bytes_fetched"] == 0
    assert hub.bytes_sent == before
    assert len(hub.requests("GET", "/resolve/")) + len(hub.requests("GET", "/cdn-lfs/")) == gets_before
    # verify=full re-hashes every file and still finds nothing to do.
    full = run_weights(verify="full")
    assert full["changed"] is False and full["verified_bytes"] == full["bytes"]


def test_corrupted_file_on_disk_is_detected_and_refetched(run_weights, hub, sha, tmp_path):
    run_weights()
    shard = tmp_path / "weights" / "tiny" / sha / SHARD1
    stat = shard.stat()
    with open(shard, "r+b") as fh:  # same size, different bytes: bit rot or a bad copy
        fh.seek(4096)
        fh.write(b"\x00" * 16)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime...
    quick = run_weights()
    assert quick["changed"] is False  # ...quick mode trusts size+mtime (that is its contract),
    repaired = run_weights(verify="full")  # ...and a full check catches it.
    assert repaired["changed"] is True
    assert repaired["corrupt"] == [SHARD1] == repaired["repaired"] == repaired["fetched"]
    assert sha256_of(shard) == hub.file(REPO_ID, SHARD1).sha256

    # A plain edit changes the mtime, so the default quick check notices it too.
    with open(shard, "r+b") as fh:
        fh.write(b"garbage")
    assert run_weights()["repaired"] == [SHARD1]
    assert sha256_of(shard) == hub.file(REPO_ID, SHARD1).sha256


def test_corrupt_bytes_from_the_hub_are_refetched(run_weights, hub, sha, tmp_path):
    hub.inject(REPO_ID, SHARD1, "corrupt", times=1)
    result = run_weights()
    assert result["changed"] is True
    assert result["checksum_failures"] == {SHARD1: 1}
    assert result["repaired"] == [SHARD1]
    assert sha256_of(tmp_path / "weights" / "tiny" / sha / SHARD1) == hub.file(REPO_ID, SHARD1).sha256
    assert len(hub.requests("GET", hub.file(REPO_ID, SHARD1).sha256)) == 2


def test_checksum_mismatch_after_retries_fails_and_installs_nothing(run_weights, hub, sha, tmp_path):
    hub.inject(REPO_ID, SHARD1, "corrupt", times=-1)
    result = run_weights(retries=2)
    assert result["failed"] is True
    assert result["error_kind"] == "checksum_mismatch"
    assert (
        SHARD1 in result["msg"]
        and "3 times" in result["msg"]
        and hub.file(REPO_ID, SHARD1).sha256 in result["msg"]
    )
    assert len(hub.requests("GET", hub.file(REPO_ID, SHARD1).sha256)) == 3
    assert not (tmp_path / "weights" / "tiny" / sha / SHARD1).exists()
    progress = json.loads((tmp_path / "weights" / "tiny" / sha / ".k3sllm" / "progress.json").read_text())
    assert progress["state"] == "failed" and "verification" in progress["message"]


@pytest.mark.parametrize(
    ("transfer", "resumed_at"),
    # Our stream keeps every byte received; huggingface_hub's http_get keeps whole 10 MiB read chunks.
    [("http", 11 << 20), ("huggingface_hub", 10 << 20)],
)
def test_connection_cut_mid_file_is_resumed_with_a_range_request(
    run_weights, hub, sha, tmp_path, transfer, resumed_at
):
    hub.inject(REPO_ID, SHARD1, "cut", at=11 << 20)
    result = run_weights(transfer=transfer)
    assert result["changed"] is True
    ranges = [r["range"] for r in hub.requests("GET", hub.file(REPO_ID, SHARD1).sha256)]
    assert ranges == [None, f"bytes={resumed_at}-"]
    assert sha256_of(tmp_path / "weights" / "tiny" / sha / SHARD1) == hub.file(REPO_ID, SHARD1).sha256


def test_both_transfers_give_the_same_verified_snapshot(run_weights, hub, sha, tmp_path):
    fast = run_weights(name="a")
    hub_client = run_weights(name="b", transfer="huggingface_hub")
    assert fast["fetched"] == hub_client["fetched"] and fast["bytes_fetched"] == hub_client["bytes_fetched"]
    assert_snapshot_matches_hub(hub, Path(hub_client["path"]), ALL_FILES)
    assert_snapshot_matches_hub(hub, Path(fast["path"]), ALL_FILES)


def test_killed_download_resumes_from_its_partial_file_in_the_next_run(hub, tmp_path):
    big = hub.add_commit("standin/big", {"model.safetensors": 24 << 20}, seed=7)
    digest = hub.file("standin/big", "model.safetensors").sha256
    weights = tmp_path / "weights"
    from ansible_collections.k3sllm.platform.plugins.module_utils import weights as w

    target = weights / "big" / big
    partial = w.partial_path(target, w.WeightFile("model.safetensors", 24 << 20, sha256=digest))
    hub.rate_bps = 8 << 20  # slow enough to kill the process mid-file
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(REPO_ROOT / "collections")!r}]
        from ansible_collections.k3sllm.platform.plugins.module_utils import weights as w
        src = w.open_source("standin/big", {big!r}, endpoint={hub.url!r})
        w.ensure_weights(name="big", repo="standin/big", revision={big!r}, weights_dir={str(weights)!r}, source=src)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size >= 10 << 20:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup runs: as if the host lost power or async timed out
    proc.wait()
    kept = partial.stat().st_size
    assert 0 < kept < 24 << 20
    hub.rate_bps = 0

    source = w.open_source("standin/big", big, endpoint=hub.url)
    result = w.ensure_weights(
        name="big", repo="standin/big", revision=big, weights_dir=weights, source=source
    )
    assert result["changed"] is True and result["resumed_bytes"] == kept
    assert result["bytes_fetched"] == (24 << 20) - kept
    assert hub.requests("GET", digest)[-1]["range"] == f"bytes={kept}-"
    assert sha256_of(weights / "big" / big / "model.safetensors") == digest


def test_allow_and_ignore_patterns(run_weights, hub, sha, tmp_path):
    result = run_weights(allow_patterns=["*.json", "*.safetensors"], ignore_patterns=["original/"])
    fetched = set(result["fetched"])
    assert fetched == {f for f in ALL_FILES if f.endswith((".json", ".safetensors"))}
    assert not (tmp_path / "weights" / "tiny" / sha / "original").exists()
    assert not (tmp_path / "weights" / "tiny" / sha / "README.md").exists()
    nothing = run_weights(allow_patterns=["*.gguf"])
    assert nothing["failed"] is True and nothing["error_kind"] == "no_files" and "*.gguf" in nothing["msg"]


def test_gated_repo_without_token_fails_before_any_download(run_weights, hub, tmp_path):
    gated_sha = hub.repos[GATED_ID].refs["main"]
    result = run_weights(name="gated", repo=GATED_ID, revision=gated_sha)
    assert result["failed"] is True and result["error_kind"] == "gated_no_token"
    assert "k3sllm_hf_token" in result["msg"] and "gated" in result["msg"]
    # Nothing but the progress file (state "failed", for the polling role) was written.
    written = [p for p in (tmp_path / "weights" / "gated").rglob("*") if p.is_file()]
    assert [p.name for p in written] == ["progress.json"]
    assert hub.requests("GET", "/cdn-lfs/") == []

    no_access = run_weights(name="gated", repo=GATED_ID, revision=gated_sha, token=TOKEN_OTHER)
    assert no_access["error_kind"] == "gated_no_access" and "request access" in no_access["msg"]

    seen = len(hub.log)
    granted = run_weights(name="gated", repo=GATED_ID, revision=gated_sha, token=TOKEN_GRANTED)
    assert granted["changed"] is True and set(granted["fetched"]) == {"config.json", "model.safetensors"}
    # The token went to the Hub but not to the CDN the LFS redirect points at.
    heads = [r for r in hub.log[seen:] if r["method"] == "HEAD"]
    cdn = [r for r in hub.log[seen:] if "/cdn-lfs/" in r["path"]]
    assert heads and all(r["auth"] for r in heads)
    assert cdn and not any(r["auth"] for r in cdn)
    # The token never appears in the result.
    assert TOKEN_GRANTED not in json.dumps(granted)


def test_token_from_hf_token_environment(run_weights, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN_GRANTED)
    result = run_weights(name="gated", repo=GATED_ID, revision=hub.repos[GATED_ID].refs["main"])
    assert result["changed"] is True


def test_bad_token_is_named(run_weights, hub):
    result = run_weights(token="hf_revoked")
    assert result["failed"] is True and result["error_kind"] == "bad_token"
    assert "rejected the Hugging Face token" in result["msg"] and "hf_revoked" not in result["msg"]


def test_repo_and_revision_not_found(run_weights, hub):
    missing = run_weights(repo="standin/no-such-model")
    assert missing["failed"] is True and missing["error_kind"] == "repo_not_found"
    assert "standin/no-such-model" in missing["msg"]
    bad_rev = run_weights(revision="f" * 40)
    assert bad_rev["error_kind"] == "revision_not_found" and "f" * 40 in bad_rev["msg"]


def test_unreachable_endpoint(run_weights):
    result = run_weights(endpoint="http://127.0.0.1:9")  # discard port: nothing listens
    assert result["failed"] is True and result["error_kind"] == "unreachable"
    assert "k3sllm_hf_endpoint" in result["msg"]


def test_disk_space_is_checked_before_fetching(run_weights, hub, tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    result = run_weights(disk_reserve_mib=(free >> 20) + 1)
    assert result["failed"] is True and result["error_kind"] == "disk_full"
    assert "Not enough free disk for tiny" in result["msg"] and "GiB" in result["msg"]
    assert result["need"] == sum(hub.file(REPO_ID, f).size for f in ALL_FILES)
    assert hub.requests("GET", "/cdn-lfs/") == []


def test_check_mode_reports_without_writing(run_weights, hub, sha, tmp_path):
    result = run_weights(_ansible_check_mode=True)
    assert result["changed"] is True
    assert set(result["would_fetch"]) == ALL_FILES and result["fetched"] == []
    assert result["bytes_to_fetch"] == sum(hub.file(REPO_ID, f).size for f in ALL_FILES)
    assert not (tmp_path / "weights").exists()
    assert hub.requests("GET", "/cdn-lfs/") == [] and hub.requests("HEAD") == []

    run_weights(allow_patterns=["*.json"])
    partly = run_weights(_ansible_check_mode=True)
    assert set(partly["would_fetch"]) == {f for f in ALL_FILES if not f.endswith(".json")}
    done = run_weights()
    assert run_weights(_ansible_check_mode=True)["changed"] is False
    assert done["changed"] is True


def test_branch_revision_warns_and_resolves(run_weights, hub, sha, tmp_path):
    result = run_weights(revision="main")
    assert result["revision"] == sha and result["path"].endswith("/tiny/main")
    assert any("not a commit sha" in w for w in result["warnings"])


def test_offline_folder_made_by_the_module_is_verified(run_weights, hub, sha, tmp_path):
    online = run_weights(name="online")
    source = Path(online["path"])
    offline = run_weights(name="airgap", offline_source=str(source), endpoint="http://127.0.0.1:9")
    assert offline["changed"] is True and offline["source"] == "folder"
    assert set(offline["fetched"]) == ALL_FILES and offline["revision"] == sha
    assert offline["warnings"] == []
    assert_snapshot_matches_hub(hub, Path(offline["path"]), ALL_FILES)
    again = run_weights(name="airgap", offline_source=str(source), endpoint="http://127.0.0.1:9")
    assert again["changed"] is False

    # A damaged copy is refused, naming the file.
    with open(source / SHARD1, "r+b") as fh:
        fh.write(b"rot")
    bad = run_weights(name="airgap2", offline_source=str(source), retries=1)
    assert bad["failed"] is True and bad["error_kind"] == "checksum_mismatch" and SHARD1 in bad["msg"]


def test_offline_tarball_is_verified(run_weights, hub, sha, tmp_path):
    online = run_weights(name="online", allow_patterns=["*.json", "*.safetensors"])
    tarball = tmp_path / "tiny.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(online["path"], arcname=".")
    result = run_weights(
        name="airgap", offline_source=str(tarball), allow_patterns=["*.json", "*.safetensors"]
    )
    assert result["changed"] is True and result["source"] == "tarball"
    assert set(result["fetched"]) == set(online["files"])
    assert_snapshot_matches_hub(hub, Path(result["path"]), set(online["files"]))
    wrong_pin = run_weights(name="airgap3", offline_source=str(tarball), revision="a" * 40)
    assert wrong_pin["error_kind"] == "offline_source" and sha in wrong_pin["msg"]


def test_offline_folder_from_hf_download_is_verified_by_its_metadata(run_weights, hub, sha, tmp_path):
    from huggingface_hub import snapshot_download

    folder = tmp_path / "hf-local-dir"
    snapshot_download(REPO_ID, revision=sha, local_dir=folder, endpoint=hub.url)
    result = run_weights(name="airgap", offline_source=str(folder))
    assert result["changed"] is True and result["revision"] == sha and not result.get("warnings")
    # Corrupt a file of the copy: huggingface_hub's own metadata (etag = sha256) exposes it.
    with open(folder / SHARD1, "r+b") as fh:
        fh.write(b"bad")
    bad = run_weights(name="airgap2", offline_source=str(folder), retries=0)
    assert bad["error_kind"] == "checksum_mismatch"


def test_offline_folder_without_checksums_is_taken_with_a_warning(run_weights, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(os.urandom(1000))
    result = run_weights(name="plain", repo="someone/plain", revision="b" * 40, offline_source=str(folder))
    assert result["changed"] is True and set(result["fetched"]) == {"config.json", "model.safetensors"}
    assert any("carries no checksums" in w for w in result["warnings"])


def test_missing_offline_source_is_named(run_weights, tmp_path):
    result = run_weights(offline_source=str(tmp_path / "nope.tar"))
    assert result["error_kind"] == "offline_source" and "nope.tar" in result["msg"]


def test_info_module_sizes_from_hub_then_from_local_manifest(capsys, hub, sha, tmp_path, run_weights):
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.k3sllm.platform.plugins.modules import model_weights_info

    models = [
        {"name": "tiny", "repo": REPO_ID, "revision": sha, "allow_patterns": ["*.safetensors"]},
        {"name": "gated", "repo": GATED_ID, "revision": hub.repos[GATED_ID].refs["main"]},
    ]

    def info(**extra: object) -> dict:
        args = {"models": models, "weights_dir": str(tmp_path / "weights"), "endpoint": hub.url, **extra}
        with patch_module_args(args), pytest.raises(SystemExit):
            model_weights_info.main()
        return json.loads(capsys.readouterr().out)

    first = info()
    assert first["changed"] is False
    assert first["weight_bytes"] == {"tiny": SHARD + SHARD // 2, "gated": 2 + (1 << 16)}
    assert first["present_bytes"] == {"tiny": 0, "gated": 0}
    assert first["models"][1]["gated"] == "manual"  # sizes of gated repos are public

    run_weights(allow_patterns=["*.safetensors"])
    hub.stop()  # a downloaded model is sized from its manifest, with no network
    later = info(models=[models[0]])
    assert later["weight_bytes"] == {"tiny": SHARD + SHARD // 2}
    assert later["present_bytes"] == {"tiny": SHARD + SHARD // 2} and later["models"][0]["source"] == "local"

    broken = info(models=[{"name": "x", "repo": REPO_ID}, {"name": "y", "repo": "a/b", "revision": "main"}])
    assert broken["failed"] is True and len(broken["errors"]) == 2 and "lacks revision" in broken["msg"]


@pytest.mark.slow
def test_module_through_ansible_playbook(hub, sha, tmp_path, local_inventory, run_playbook):
    """The module as Ansible runs it (AnsiballZ, module_utils shipped): download, re-run, check mode."""
    inventory = local_inventory(
        {
            "test_endpoint": hub.url,
            "test_repo": REPO_ID,
            "test_revision": sha,
            "test_weights_dir": str(tmp_path / "weights"),
        }
    )
    run = run_playbook("tests/models/playbooks/module.yml", inventory)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "changed=1" in run.stdout  # first download only
    assert_snapshot_matches_hub(hub, tmp_path / "weights" / "tiny" / sha, ALL_FILES)
    checked = run_playbook("tests/models/playbooks/module.yml", inventory, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "changed=0" in checked.stdout
