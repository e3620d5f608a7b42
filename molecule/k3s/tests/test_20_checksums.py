"""A release whose checksum does not match is never installed, from the release URL or an airgap folder."""

from __future__ import annotations

import yaml
from k3s_scenario import NEW, OLD, PROJECT, flat, installed_version, playbook, starts


def test_standin_releases_are_not_in_the_real_checksum_table():
    # Else the role would (rightly) check the stand-ins against the real release's sha256.
    defaults = yaml.safe_load((PROJECT / "roles/k3s/defaults/main.yml").read_text())
    assert OLD not in defaults["k3s_checksums"]
    assert NEW not in defaults["k3s_checksums"]


def assert_untouched(server, agent):
    assert installed_version(server) == OLD
    assert installed_version(agent) == OLD
    assert starts(server) == [OLD]
    # The failure came before any drain.
    assert not server.file("/var/lib/rancher/k3s/standin-kubectl").exists


def test_wrong_pinned_checksum_fails_the_download(server, agent):
    wrong = {NEW: {"k3s": "0" * 64, "k3s-airgap-images-amd64.tar.zst": "0" * 64}}
    result = playbook("upgrade.yml", {"k3s_version": NEW, "k3s_checksums": wrong})
    assert result.returncode != 0
    assert "checksum" in flat(result).lower()
    assert "0" * 64 in flat(result)
    assert_untouched(server, agent)


def test_wrong_published_checksum_in_host_airgap_folder_fails(server, agent):
    result = playbook(
        "upgrade.yml",
        {"k3s_version": NEW, "k3s_airgap_dir": "/srv/k3s-airgap-bad", "k3s_airgap_location": "host"},
    )
    assert result.returncode != 0
    assert "The checksum did not match" in flat(result)
    assert_untouched(server, agent)
