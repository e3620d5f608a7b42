"""Reset needs a confirmation, removes K3s and its data, and keeps weights and unrelated files."""

from __future__ import annotations

import pytest
from k3s_scenario import KUBECONFIG, flat, playbook

REMOVED = [
    "/usr/local/bin/k3s",
    "/etc/rancher/k3s",
    "/var/lib/rancher/k3s",
    "/etc/systemd/system/k3s.service",
    "/etc/systemd/system/k3s.service.env",
    "/var/cache/k3sllm/k3s",
]
KEPT = ["/srv/k3sllm/models/tiny/model.safetensors", "/srv/unrelated/notes.txt"]


def test_reset_without_confirmation_changes_nothing(server, agent):
    result = playbook("reset.yml", verbose=False)
    assert result.returncode != 0
    assert "k3s_reset_confirm=true" in flat(result)
    for host in (server, agent):
        assert host.file("/usr/local/bin/k3s").exists
        assert host.service("k3s").is_running
    assert KUBECONFIG.exists()


@pytest.fixture(scope="module")
def reset():
    return playbook("reset.yml", {"k3s_reset_confirm": True}, verbose=False)


@pytest.mark.parametrize("which", ["server", "agent"])
def test_reset_removes_k3s_and_keeps_the_rest(reset, request, which):
    assert reset.returncode == 0, reset.stdout[-3000:]
    host = request.getfixturevalue(which)
    for path in REMOVED:
        assert not host.file(path).exists, path
    assert not host.service("k3s").is_running
    assert host.run("pgrep -f 'k3s (server|agent)'").rc == 1
    for path in KEPT:
        assert host.file(path).content_string == "kept across reset\n"
    # Unrelated services survive.
    assert host.service("k3sllm-standin-mirror").is_running


def test_reset_removes_the_stale_kubeconfig(reset):
    assert not KUBECONFIG.exists()
