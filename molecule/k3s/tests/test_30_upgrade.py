"""Bumping k3s_version upgrades node by node from an airgap folder on the controller; downgrades are refused."""

from __future__ import annotations

import pytest
from k3s_scenario import AGENT, NEW, OLD, SERVER, STANDIN, flat, installed_version, playbook, starts

# The module's fixture runs the rolling upgrade (drain, stop, replace, start on two nodes): more than
# the suite's default 300 s per test on a busy machine.
pytestmark = pytest.mark.timeout(1200)

AIRGAP = {
    "k3s_version": NEW,
    "k3s_airgap_dir": str(STANDIN / "release" / NEW),
    "k3s_airgap_location": "controller",
}


# The scenario's cluster runs the K3s stand-in and no platform: the charts play of upgrade.yml (which
# downloads kube-prometheus-stack's CRDs) is tested against the API stand-in in tests/k8s_apply.
K3S_ONLY = ("--skip-tags", "charts")


@pytest.fixture(scope="module")
def upgrade():
    return playbook("upgrade.yml", AIRGAP, args=K3S_ONLY)


def test_upgrade_succeeds(upgrade):
    assert upgrade.returncode == 0, upgrade.stdout[-3000:] + upgrade.stderr


def test_both_nodes_run_the_new_release(upgrade, server, agent):
    for host in (server, agent):
        assert installed_version(host) == NEW
        assert starts(host) == [OLD, NEW]
        assert (
            NEW
            in host.file("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst").content_string
        )


def test_nodes_were_drained_and_uncordoned_one_at_a_time(upgrade, server):
    calls = server.file("/var/lib/rancher/k3s/standin-kubectl").content_string.splitlines()
    assert [line.split()[:2] for line in calls] == [
        ["drain", SERVER],
        ["uncordon", SERVER],
        ["drain", AGENT],
        ["uncordon", AGENT],
    ]


def test_token_never_appears_in_the_output(upgrade, server):
    token = server.file("/var/lib/rancher/k3s/server/token").content_string.strip()
    assert len(token) > 20
    assert token not in upgrade.stdout + upgrade.stderr


def test_downgrade_is_refused(upgrade, server, agent):
    result = playbook(
        "upgrade.yml", verbose=False, args=K3S_ONLY
    )  # the inventory still pins the older release
    assert result.returncode != 0
    assert f"runs K3s {NEW}, newer than k3s_version {OLD}" in flat(result)
    assert installed_version(server) == NEW
    assert installed_version(agent) == NEW
