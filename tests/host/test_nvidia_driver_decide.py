"""roles/nvidia_driver tasks/decide.yml with injected facts: the Secure Boot refusal and the
Ubuntu package choice, run through Ansible exactly as the role runs them (nothing is installed)."""

from __future__ import annotations

import json

import pytest
import yaml

# Each case runs ansible-playbook (a few seconds).
pytestmark = pytest.mark.slow

UBUNTU_NOBLE = {
    "distribution": "Ubuntu",
    "distribution_version": "24.04",
    "kernel": "6.8.0-45-generic",
    "secure_boot_enabled": False,
    "signed_available": True,
}


@pytest.fixture
def decide(tmp_path, local_inventory, run_playbook):
    """Run decide.yml with the given facts and settings; return (result, decision or None)."""

    def _run(facts: dict, **settings):
        out = tmp_path / "decision.json"
        play = [
            {
                "name": "Decide with injected facts",
                "hosts": "localhost",
                "gather_facts": False,
                "tasks": [
                    {
                        "name": "Run the role's decision",
                        "ansible.builtin.include_role": {"name": "nvidia_driver", "tasks_from": "decide.yml"},
                        "vars": {
                            "nvidia_driver_facts": facts,
                            "nvidia_driver_branch": "580",
                            "nvidia_driver_version": "580.126.09",
                            "nvidia_driver_persistenced_version": "",
                            **settings,
                        },
                    },
                    {
                        "name": "Write it down",
                        "ansible.builtin.copy": {
                            "dest": str(out),
                            "content": "{{ {'decision': nvidia_driver_decision, "
                            "'packages': nvidia_driver_packages} | to_json }}",
                            "mode": "0644",
                        },
                    },
                ],
            }
        ]
        playbook = tmp_path / "decide.yml"
        playbook.write_text(yaml.safe_dump(play, sort_keys=False))
        inventory = local_inventory({"k3sllm_gpu_required": False})
        result = run_playbook(str(playbook), inventory)
        return result, (json.loads(out.read_text()) if out.exists() else None)

    return _run


def test_ubuntu_with_signed_modules(decide):
    result, decided = decide(UBUNTU_NOBLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["decision"] == {"source": "signed", "error": ""}
    assert [p["spec"] for p in decided["packages"]] == [
        "linux-modules-nvidia-580-server-6.8.0-45-generic",
        "linux-modules-nvidia-580-server-generic",
        "nvidia-headless-no-dkms-580-server=580.126.09-*",
        "nvidia-utils-580-server=580.126.09-*",
    ]


def test_ubuntu_hwe_kernel_on_jammy_with_another_branch(decide):
    facts = {**UBUNTU_NOBLE, "distribution_version": "22.04"}
    result, decided = decide(facts, nvidia_driver_branch="570", nvidia_driver_version="570.172.08")
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["packages"][1]["name"] == "linux-modules-nvidia-570-server-generic-hwe-22.04"


def test_ubuntu_without_signed_modules_falls_back_to_dkms(decide):
    result, decided = decide({**UBUNTU_NOBLE, "signed_available": False})
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["decision"]["source"] == "dkms"
    assert decided["packages"][0]["spec"] == "nvidia-dkms-580-server=580.126.09-*"


@pytest.mark.parametrize(
    "facts",
    [
        {**UBUNTU_NOBLE, "signed_available": False, "secure_boot_enabled": True},
        {**UBUNTU_NOBLE, "distribution": "Debian", "distribution_version": "12", "secure_boot_enabled": True},
    ],
)
def test_secure_boot_refusal_stops_before_the_package_list(decide, facts):
    result, decided = decide(facts)
    assert result.returncode != 0
    assert decided is None
    output = result.stdout + result.stderr
    assert "Secure Boot is enabled" in output
    assert "nvidia_driver_secure_boot_mok_enrolled" in output
    assert "Work out the driver packages" not in output


def test_secure_boot_with_an_enrolled_mok_allows_dkms(decide):
    facts = {**UBUNTU_NOBLE, "signed_available": False, "secure_boot_enabled": True}
    result, decided = decide(facts, nvidia_driver_secure_boot_mok_enrolled=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["decision"]["source"] == "dkms"
