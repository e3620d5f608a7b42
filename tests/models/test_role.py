"""roles/model_weights end to end against the Hugging Face Hub stand-in: async download with progress,
idempotent re-run, honest check mode, capacity plan refusal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from models.weights_data import REPO_ID, SHARD

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]


def catalog(sha: str) -> list[dict]:
    return [
        {
            "name": "tiny",
            "repo": REPO_ID,
            "revision": sha,
            # The 6 MiB shard only: enough for a few progress lines at the throttled rate, and quick.
            "allow_patterns": ["*.json", "model-00002-of-00002.safetensors"],
            "gpu_memory_utilization": 0.4,
            "max_model_len": 256,
            "awake_by_default": True,
        },
        {
            "name": "tiny-main",
            "repo": REPO_ID,
            "revision": "main",
            "allow_patterns": ["config.json"],
            "gpu_memory_utilization": 0.4,
            "max_model_len": 256,
        },
    ]


@pytest.fixture
def inventory(local_inventory, hub, sha, tmp_path):
    def _make(**overrides: object) -> Path:
        settings = {
            "k3sllm_hostname": "llm.test",
            "k3sllm_gpu_required": False,
            "k3sllm_models": catalog(sha),
            "k3sllm_weights_dir": str(tmp_path / "weights"),
            "k3sllm_hf_endpoint": hub.url,
            "k3sllm_host_ram_reserve_gib": 0.5,
            "model_weights_install_hub": False,
            "model_weights_python": sys.executable,
            "model_weights_progress_interval": 1,
        }
        settings.update(overrides)
        return local_inventory(settings)

    return _make


def recap(stdout: str) -> dict[str, int]:
    match = re.search(r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", stdout)
    assert match, stdout
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def run_while_watching(inventory: Path, hub, lines_wanted: int) -> tuple[int, str]:
    """Run the role's playbook, keeping the stand-in slow until the play has printed ``lines_wanted``
    progress lines, at least one of them past 0 % (a slow machine prints 0 % while the job starts),
    then let the download finish at full speed (robust on a loaded machine)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(inventory),
            "tests/models/playbooks/role.yml",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out = []
    seen = 0
    moved = False
    for line in proc.stdout:
        out.append(line)
        progress = PROGRESS.search(line)
        if progress:
            seen += 1
            moved = moved or float(progress.group(1)) > 0
            if seen >= lines_wanted and moved:
                hub.rate_bps = 0
    proc.wait(240)
    hub.rate_bps = 0
    return proc.returncode, "".join(out)


PROGRESS = re.compile(r"tiny: downloading ([\d.]+)% \(.*MiB/s.*ETA")


def test_role_downloads_with_progress_then_changes_nothing(inventory, hub, sha, tmp_path, run_playbook):
    hub.rate_bps = 256 << 10  # slow until the play has shown progress twice
    inv = inventory()
    returncode, stdout = run_while_watching(inv, hub, lines_wanted=2)
    assert returncode == 0, stdout
    percents = [float(p) for p in PROGRESS.findall(stdout)]
    assert len(percents) >= 2 and max(percents) > 0, stdout
    assert "tiny: fetched 6 files" in stdout
    assert 'is pinned to \\"main\\"' in stdout or 'pinned to "main"' in stdout
    weights = json.loads(re.search(r"WEIGHT_BYTES=(\{.*?\})", stdout).group(1))
    assert weights["tiny"] == SHARD // 2 + sum(
        hub.file(REPO_ID, f).size
        for f in (
            "config.json",
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors.index.json",
        )
    )
    shard2 = tmp_path / "weights" / "tiny" / sha / "model-00002-of-00002.safetensors"
    assert shard2.stat().st_size == SHARD // 2
    assert not (tmp_path / "weights" / "tiny" / sha / "model-00001-of-00002.safetensors").exists()
    assert (tmp_path / "weights" / "tiny-main" / "main" / "config.json").exists()
    assert recap(stdout)["changed"] >= 2

    hub.rate_bps = 0
    again = run_playbook("tests/models/playbooks/role.yml", inv)
    assert again.returncode == 0, again.stdout + again.stderr
    assert recap(again.stdout)["changed"] == 0, again.stdout
    assert "tiny: up to date" in again.stdout


def test_role_check_mode_reports_and_writes_nothing(inventory, hub, tmp_path, run_playbook):
    run = run_playbook("tests/models/playbooks/role.yml", inventory(), "--check")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tiny: would fetch 6 of 6 files" in run.stdout
    assert "tiny-main: would fetch 1 of 1 files" in run.stdout
    assert not (tmp_path / "weights").exists()
    assert hub.requests("GET", "/cdn-lfs/") == []


def test_role_refuses_a_catalog_that_does_not_fit_before_downloading(inventory, hub, run_playbook):
    run = run_playbook("tests/models/playbooks/role.yml", inventory(k3sllm_host_ram_reserve_gib=100000))
    assert run.returncode != 0
    assert "Capacity plan:" in run.stdout and "sleep level 1" in run.stdout and "tiny" in run.stdout
    assert hub.requests("GET", "/cdn-lfs/") == [] and hub.requests("HEAD") == []


def test_an_unreachable_hub_stops_the_role_naming_the_endpoint_setting(inventory, run_playbook, tmp_path):
    # Nothing listens on port 9 (discard) here: the Hub's listing fails at once.
    run = run_playbook(
        "tests/models/playbooks/role.yml", inventory(k3sllm_hf_endpoint="http://127.0.0.1:9"), "--check"
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Cannot size the model weights: tiny:" in output and "tiny-main:" in output, output[-3000:]
    assert "cannot reach http://127.0.0.1:9" in output and "k3sllm_hf_endpoint" in output, output[-3000:]
    assert "has no attribute" not in output, output[-3000:]
    assert not (tmp_path / "weights").exists()


def test_role_leaves_weights_readable_by_the_engines_user(inventory, hub, sha, tmp_path, run_playbook):
    """The engines run as a non-root user that owns nothing here. The download module writes files 0644
    (and runs async, under umask 022), but a folder that already exists keeps its mode: one an operator
    created, or restored from a backup, with 0700 would hide the weights from the engines."""
    model = tmp_path / "weights" / "tiny"
    (model / sha).mkdir(parents=True)
    model.chmod(0o700)
    (model / sha).chmod(0o700)
    run = run_playbook("tests/models/playbooks/role.yml", inventory())
    assert run.returncode == 0, run.stdout + run.stderr
    assert (model / sha / "config.json").exists()
    for path in [model, *model.rglob("*")]:
        mode = path.stat().st_mode
        wanted = 0o005 if path.is_dir() else 0o004
        assert mode & wanted == wanted, f"{path} is {oct(mode)}"
