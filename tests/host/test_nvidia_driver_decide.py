"""roles/nvidia_driver tasks/decide.yml with injected facts: the release resolution, the Secure Boot
refusal and the Ubuntu package choice, run through Ansible exactly as the role runs them (nothing
is installed)."""

from __future__ import annotations

import json

import pytest
import yaml

# Each case runs ansible-playbook (a few seconds).
pytestmark = pytest.mark.slow

# What apt offers on a noble host whose archive moved on: the running kernel's signed modules were
# built for 580.159.03, while the newest driver is 580.173.02.
UBUNTU_NOBLE = {
    "distribution": "Ubuntu",
    "distribution_version": "24.04",
    "kernel": "6.8.0-45-generic",
    "secure_boot_enabled": False,
    "offered": ["580.173.02-0ubuntu0.24.04.1", "580.159.03-0ubuntu0.24.04.1", "570.195.03-0ubuntu1"],
    "installed": "",
    "signed_modules": {"6.8.0-45.45+2": "580.159.03"},
    "persistenced_offered": [],
    "persistenced_installed": "",
}
DEBIAN_BOOKWORM = {
    "distribution": "Debian",
    "distribution_version": "12",
    "kernel": "6.1.0-30-amd64",
    "secure_boot_enabled": False,
    "offered": ["535.261.03-1", "535.216.01-1~deb12u1"],
    "installed": "",
    "signed_modules": {},
    "persistenced_offered": ["535.171.04-1~deb12u1"],
    "persistenced_installed": "",
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
                            **settings,
                        },
                    },
                    {
                        "name": "Write it down",
                        "ansible.builtin.copy": {
                            "dest": str(out),
                            "content": "{{ {'decision': nvidia_driver_decision, 'release': nvidia_driver_release, "
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
    # The driver matches the modules, not the newest driver (580.173.02 has no modules for this kernel).
    assert decided["release"] == "580.159.03"
    assert [p["spec"] for p in decided["packages"]] == [
        "linux-modules-nvidia-580-server-6.8.0-45-generic=6.8.0-45.45+2",
        "nvidia-headless-no-dkms-580-server=580.159.03-*",
        "nvidia-utils-580-server=580.159.03-*",
    ]
    assert "newest offered release of branch 580" in result.stdout


def test_ubuntu_resolute_with_signed_modules_for_the_newest_driver(decide):
    facts = {
        **UBUNTU_NOBLE,
        "distribution_version": "26.04",
        "kernel": "7.0.0-14-generic",
        "signed_modules": {"7.0.0-14.14+1": "580.173.02"},
    }
    result, decided = decide(facts)
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["release"] == "580.173.02"
    assert [p["spec"] for p in decided["packages"]] == [
        "linux-modules-nvidia-580-server-7.0.0-14-generic=7.0.0-14.14+1",
        # Up to date with the archive: the flavour metapackage brings the next kernel's modules.
        "linux-modules-nvidia-580-server-generic",
        "nvidia-headless-no-dkms-580-server=580.173.02-*",
        "nvidia-utils-580-server=580.173.02-*",
    ]


def test_ubuntu_hwe_kernel_on_jammy_with_another_branch(decide):
    facts = {
        **UBUNTU_NOBLE,
        "distribution_version": "22.04",
        "signed_modules": {"6.8.0-45.45~22.04.1+1": "570.195.03"},
    }
    result, decided = decide(facts, nvidia_driver_branch="570")
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["release"] == "570.195.03"
    assert decided["packages"][1]["name"] == "linux-modules-nvidia-570-server-generic-hwe-22.04"


def test_a_rerun_keeps_the_installed_release(decide):
    facts = {**UBUNTU_NOBLE, "installed": "580.159.03-0ubuntu0.24.04.1", "signed_modules": {}}
    result, decided = decide(facts)
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["release"] == "580.159.03"
    assert "keeps the installed release 580.159.03" in result.stdout
    result, decided = decide(facts, nvidia_driver_upgrade=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["release"] == "580.173.02"


def test_ubuntu_without_signed_modules_falls_back_to_dkms(decide):
    result, decided = decide({**UBUNTU_NOBLE, "signed_modules": {}})
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["decision"]["source"] == "dkms"
    assert decided["packages"][0]["spec"] == "nvidia-dkms-580-server=580.173.02-*"


def test_debian_resolves_the_driver_and_persistenced(decide):
    result, decided = decide(DEBIAN_BOOKWORM, nvidia_driver_branch="535")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p["name"]: p["spec"] for p in decided["packages"]} == {
        "nvidia-kernel-dkms": "nvidia-kernel-dkms=535.261.03-*",
        "nvidia-smi": "nvidia-smi=535.261.03-*",
        "libcuda1": "libcuda1=535.261.03-*",
        "nvidia-persistenced": "nvidia-persistenced=535.171.04-*",
    }


def test_a_branch_the_sources_do_not_offer_fails_naming_what_they_offer(decide):
    result, decided = decide(DEBIAN_BOOKWORM, nvidia_driver_branch="550")
    assert result.returncode != 0
    assert decided is None
    output = result.stdout + result.stderr
    assert "offer no release of branch 550" in output
    assert "535.261.03, 535.216.01" in output


@pytest.mark.parametrize(
    "facts",
    [
        {**UBUNTU_NOBLE, "signed_modules": {}, "secure_boot_enabled": True},
        {**DEBIAN_BOOKWORM, "secure_boot_enabled": True},
    ],
)
def test_secure_boot_refusal_stops_before_the_package_list(decide, facts):
    result, decided = decide(
        facts, nvidia_driver_branch="580" if facts["distribution"] == "Ubuntu" else "535"
    )
    assert result.returncode != 0
    assert decided is None
    output = result.stdout + result.stderr
    assert "Secure Boot is enabled" in output
    assert "nvidia_driver_secure_boot_mok_enrolled" in output
    assert "Work out the driver packages" not in output


def test_secure_boot_with_an_enrolled_mok_allows_dkms(decide):
    facts = {**UBUNTU_NOBLE, "signed_modules": {}, "secure_boot_enabled": True}
    result, decided = decide(facts, nvidia_driver_secure_boot_mok_enrolled=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert decided["decision"]["source"] == "dkms"
