"""What the NVIDIA roles leave on a lab host (a container: no GPU, no kernel module)."""

from __future__ import annotations

import pytest

# Debian release -> the driver branch roles/nvidia_driver pins there; the release is resolved at run time.
DRIVER_BRANCHES = {"12": "535", "13": "550"}
DRIVER_PACKAGES = ("nvidia-kernel-dkms", "nvidia-smi", "libcuda1")
# molecule.yml pins 1.20.0; side_effect.yml then moves host b's pin to the newer 1.20.1 (upgrade path).
TOOLKIT_VERSIONS = {"k3sllm-nvidia-a": "1.20.0-1+k3sllmstandin", "k3sllm-nvidia-b": "1.20.1-1+k3sllmstandin"}
TOOLKIT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)


def newest_offered(host, package, prefix=""):
    """The newest version apt offers for a package (as dpkg orders them), read with the host's own tools."""
    versions = [
        line.split("|")[1].strip()
        for line in host.check_output(f"apt-cache madison {package}").splitlines()
        if line.count("|") == 2 and line.split("|")[1].strip().startswith(prefix)
    ]
    assert versions, f"apt offers no {package} {prefix}"
    newest = versions[0]
    for version in versions[1:]:
        if host.run(f"dpkg --compare-versions {version} gt {newest}").rc == 0:
            newest = version
    return newest


@pytest.fixture
def pins(host):
    """(driver package version, nvidia-persistenced package version) that the resolution must pick:
    the newest release of the pinned branch that the real Debian archive offers."""
    branch = DRIVER_BRANCHES[host.system_info.release.split(".")[0]]
    return newest_offered(host, "nvidia-smi", f"{branch}."), newest_offered(host, "nvidia-persistenced")


def selection(host, package):
    return host.check_output(f"dpkg --get-selections {package}").split()[-1]


def test_driver_packages_from_debian_non_free_at_the_newest_release_of_the_branch(host, pins):
    driver, persistenced = pins
    for package in DRIVER_PACKAGES:
        assert host.package(package).is_installed, package
        assert host.package(package).version == driver, package
    assert host.package("nvidia-persistenced").version == persistenced
    # Dependencies that are not named are pinned too (apt preferences by source package).
    assert host.package("libnvidia-ml1").version == driver
    sources = host.file("/etc/apt/sources.list.d/k3sllm-debian-nonfree.sources").content_string
    assert "Components: contrib non-free non-free-firmware" in sources
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in sources


def test_driver_packages_are_held_and_pinned(host, pins):
    for package in (*DRIVER_PACKAGES, "nvidia-persistenced"):
        assert selection(host, package) == "hold", package
    policy = host.check_output("apt-cache policy libnvidia-ml1")
    assert pins[0] in policy and "1001" in policy
    preferences = host.file("/etc/apt/preferences.d/k3sllm-nvidia-driver.pref").content_string
    assert f"Pin: version {pins[0].split('-')[0]}-*" in preferences


def test_unattended_upgrades_leave_the_driver_alone(host):
    config = host.check_output("apt-config dump Unattended-Upgrade::Package-Blacklist")
    for pattern in ("^nvidia-", "^libnvidia-", "^libcuda", "^firmware-nvidia-"):
        assert f'"{pattern}"' in config


def test_nouveau_is_blacklisted(host):
    conf = host.file("/etc/modprobe.d/k3sllm-blacklist-nouveau.conf")
    assert conf.mode == 0o644
    assert "blacklist nouveau" in conf.content_string
    assert "options nouveau modeset=0" in conf.content_string


def test_persistenced_enabled_but_not_running_without_a_driver(host):
    service = host.service("nvidia-persistenced")
    assert service.is_enabled
    assert not service.is_running


def test_installed_but_not_loaded_is_what_the_host_reports(host):
    # A container cannot load kernel modules: the driver is installed, the module absent, and
    # nvidia-smi says so; the role reported this instead of rebooting.
    assert not host.file("/sys/module/nvidia").exists
    result = host.run("nvidia-smi")
    assert result.rc != 0


def test_toolkit_repository_is_signed_and_trusted_only_by_its_keyring(host):
    sources = host.file("/etc/apt/sources.list.d/k3sllm-nvidia-container-toolkit.sources").content_string
    assert "URIs: http://127.0.0.1:8765/libnvidia-container/stable/deb/amd64" in sources
    assert "Signed-By: /etc/apt/keyrings/k3sllm-nvidia-container-toolkit.asc" in sources
    keyring = host.file("/etc/apt/keyrings/k3sllm-nvidia-container-toolkit.asc")
    served = host.file("/srv/k3sllm-standin-apt/libnvidia-container/gpgkey")
    assert keyring.sha256sum == served.sha256sum
    # apt keeps an InRelease file only after checking its signature.
    lists = host.check_output("ls /var/lib/apt/lists")
    assert "127.0.0.1:8765_libnvidia-container_stable_deb_amd64_InRelease" in lists
    assert not host.file("/etc/apt/trusted.gpg.d/nvidia-container-toolkit.gpg").exists


def test_toolkit_at_its_pin_and_held(host):
    version = TOOLKIT_VERSIONS[host.backend.get_hostname()]
    for package in TOOLKIT_PACKAGES:
        assert host.package(package).version == version, package
        assert selection(host, package) == "hold", package
    assert (
        f"Pin: version {version}"
        in host.file("/etc/apt/preferences.d/k3sllm-nvidia-container-toolkit.pref").content_string
    )
    # The repository offers both releases; the pin decides, and nothing moves on an upgrade.
    assert "1.20.1-1+k3sllmstandin" in host.check_output("apt-cache madison nvidia-container-toolkit")
    assert "1.20.0-1+k3sllmstandin" in host.check_output("apt-cache madison nvidia-container-toolkit")
    assert "Inst nvidia-container" not in host.check_output("apt-get -s dist-upgrade")
    assert f"version {version.split('-')[0]}" in host.check_output("nvidia-ctk --version")


def test_no_cdi_spec_without_a_driver(host):
    assert not host.file("/etc/cdi/nvidia.yaml").exists


def test_running_k3s_restarted_once_after_the_toolkit_change(host):
    starts = host.file("/var/lib/k3sllm-standin/k3s-starts")
    if host.backend.get_hostname() != "k3sllm-nvidia-a":
        assert not starts.exists  # no K3s there: nothing to restart
        return
    # Started by prepare, restarted by the first converge; the idempotence and check runs did not.
    assert len(starts.content_string.split()) == 2
