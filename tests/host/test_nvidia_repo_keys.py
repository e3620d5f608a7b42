"""The NVIDIA apt keys are trusted only when their fingerprint is the pinned one: the roles' key
tasks run through Ansible on this machine against keys made here with gpg (nothing else changes)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

# Each case runs ansible-playbook (a few seconds).
pytestmark = pytest.mark.slow

# role -> (tasks file, url setting, fingerprint setting, keyring setting)
ROLES = {
    "nvidia_container_toolkit": (
        "key.yml",
        "nvidia_container_toolkit_repo_key_url",
        "nvidia_container_toolkit_repo_key_fingerprint",
        "nvidia_container_toolkit_keyring",
    ),
    "nvidia_driver": (
        "repository_key.yml",
        "nvidia_driver_cuda_repo_key_url",
        "nvidia_driver_cuda_repo_key_fingerprint",
        "nvidia_driver_cuda_keyring",
    ),
}


def make_key(folder, name):
    """A throwaway signing key (armoured public key file, fingerprint)."""
    # A short home: gpg-agent's socket path must fit in a Unix socket address.
    home = Path(tempfile.mkdtemp(prefix="k3sllm-gpg-"))
    gpg = ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", f"{name} <{name}@k3sllm.invalid>", "ed25519", "sign", "1d"],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        [*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True
    ).stdout
    fingerprint = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))
    key = folder / f"{name}.asc"
    key.write_bytes(subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
    return key, fingerprint


@pytest.fixture
def trust(tmp_path, local_inventory, run_playbook):
    """Run a role's key tasks for a key file and a pinned fingerprint; return (result, keyring path)."""

    def _run(role, key, fingerprint):
        tasks, url, pinned, keyring_setting = ROLES[role]
        keyring = tmp_path / "keyrings" / f"{role}.asc"
        scratch = tmp_path / "scratch"
        scratch.mkdir(exist_ok=True)
        play = [
            {
                "name": "Trust a key",
                "hosts": "localhost",
                "gather_facts": False,
                "tasks": [
                    {
                        "name": "Run the role's key tasks",
                        "ansible.builtin.include_role": {"name": role, "tasks_from": tasks},
                        "vars": {
                            url: f"file://{key}",
                            pinned: fingerprint,
                            keyring_setting: str(keyring),
                            "nvidia_driver_scratch": {"path": str(scratch)},
                        },
                    }
                ],
            }
        ]
        playbook = tmp_path / "trust.yml"
        playbook.write_text(yaml.safe_dump(play, sort_keys=False))
        return run_playbook(str(playbook), local_inventory({})), keyring

    return _run


@pytest.mark.parametrize("role", sorted(ROLES))
def test_the_pinned_key_is_trusted(tmp_path, trust, role):
    key, fingerprint = make_key(tmp_path, "nvidia")
    # Fingerprints are often published in groups of four, in lower case: accepted as written.
    spaced = " ".join(fingerprint[i : i + 4] for i in range(0, 40, 4)).lower()
    result, keyring = trust(role, key, spaced)
    assert result.returncode == 0, result.stdout + result.stderr
    assert keyring.read_bytes() == key.read_bytes()


@pytest.mark.parametrize("role", sorted(ROLES))
def test_another_key_is_refused_before_it_is_trusted(tmp_path, trust, role):
    _pinned_key, pinned = make_key(tmp_path, "nvidia")
    other_key, other = make_key(tmp_path, "impostor")
    result, keyring = trust(role, other_key, pinned)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"has the fingerprint(s) {other}" in output
    assert f"not {pinned} ({ROLES[role][2]})" in output
    assert "The key was not trusted" in output
    assert not keyring.exists()


def test_a_file_that_is_no_key_is_refused(tmp_path, trust):
    _key, pinned = make_key(tmp_path, "nvidia")
    page = tmp_path / "error.html"
    page.write_text("<html>mirror error page</html>\n")
    result, keyring = trust("nvidia_container_toolkit", page, pinned)
    assert result.returncode != 0
    assert "none (not an OpenPGP key)" in result.stdout + result.stderr
    assert not keyring.exists()


def test_an_unset_fingerprint_is_refused(tmp_path, trust):
    key, _pinned = make_key(tmp_path, "nvidia")
    result, keyring = trust("nvidia_driver", key, "")
    assert result.returncode != 0
    assert "set it to the 40-hex-digit fingerprint" in result.stdout + result.stderr
    assert not keyring.exists()
