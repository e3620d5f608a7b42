"""Package selection, Secure Boot refusal and reboot decision of roles/nvidia_driver (facts injected)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.nvidia_driver import (
    FilterModule,
    nvidia_driver_kernel_flavour,
    nvidia_driver_module_source,
    nvidia_driver_packages,
    nvidia_driver_reboot_plan,
    nvidia_driver_source_packages,
    nvidia_driver_stale_packages,
    nvidia_driver_upstream_version,
)


@pytest.mark.parametrize(
    ("kernel", "release", "flavour"),
    [
        ("5.15.0-105-generic", "22.04", "generic"),
        ("6.8.0-45-generic", "22.04", "generic-hwe-22.04"),
        ("6.8.0-45-generic", "24.04", "generic"),
        ("6.11.0-26-generic", "24.04", "generic-hwe-24.04"),
        ("5.15.0-105-lowlatency", "22.04", "lowlatency"),
        ("6.8.0-40-lowlatency", "22.04", "lowlatency-hwe-22.04"),
        ("6.8.0-45-generic-64k", "24.04", "generic-64k"),
        ("6.14.0-29-generic-64k", "24.04", "generic-64k-hwe-24.04"),
        # Cloud kernels roll forward under one flavour name, with no hwe suffix.
        ("6.8.0-1015-aws", "22.04", "aws"),
        ("6.8.0-1015-aws", "24.04", "aws"),
        ("5.15.0-1070-azure", "22.04", "azure"),
        ("6.8.0-1020-gcp", "24.04", "gcp"),
    ],
)
def test_kernel_flavour(kernel, release, flavour):
    assert nvidia_driver_kernel_flavour(kernel, release) == flavour


@pytest.mark.parametrize(("kernel", "release"), [("6.8.0", "24.04"), ("6.8.0-45-generic", "20.04")])
def test_kernel_flavour_refuses_what_it_cannot_read(kernel, release):
    with pytest.raises(AnsibleFilterError, match="nvidia_driver"):
        nvidia_driver_kernel_flavour(kernel, release)


def names(packages):
    return [p["name"] for p in packages]


@pytest.mark.parametrize("branch", ["535", "550", "570", "580"])
@pytest.mark.parametrize(
    ("kernel", "release", "meta"),
    [
        ("5.15.0-105-generic", "22.04", "generic"),
        ("6.8.0-45-generic", "22.04", "generic-hwe-22.04"),
        ("6.8.0-45-generic", "24.04", "generic"),
        ("6.8.0-1015-aws", "24.04", "aws"),
        ("6.8.0-40-lowlatency", "24.04", "lowlatency"),
    ],
)
def test_ubuntu_signed_packages(branch, kernel, release, meta):
    version = f"{branch}.100.01"
    packages = nvidia_driver_packages(kernel, "Ubuntu", release, branch, version, "signed")
    assert names(packages) == [
        f"linux-modules-nvidia-{branch}-server-{kernel}",
        f"linux-modules-nvidia-{branch}-server-{meta}",
        f"nvidia-headless-no-dkms-{branch}-server",
        f"nvidia-utils-{branch}-server",
    ]
    by_name = {p["name"]: p for p in packages}
    # Userspace is pinned to the exact release and held; module packages follow the kernel.
    assert by_name[f"nvidia-utils-{branch}-server"]["spec"] == f"nvidia-utils-{branch}-server={version}-*"
    assert by_name[f"nvidia-utils-{branch}-server"]["hold"] is True
    assert by_name[f"linux-modules-nvidia-{branch}-server-{meta}"] == {
        "name": f"linux-modules-nvidia-{branch}-server-{meta}",
        "version": None,
        "spec": f"linux-modules-nvidia-{branch}-server-{meta}",
        "hold": False,
        "kind": "kernel",
    }
    assert not any("dkms-" in n and "no-dkms" not in n for n in names(packages))


@pytest.mark.parametrize("release", ["22.04", "24.04"])
@pytest.mark.parametrize("branch", ["535", "580"])
def test_ubuntu_dkms_packages(release, branch):
    packages = nvidia_driver_packages("6.8.0-45-generic", "Ubuntu", release, branch, f"{branch}.1.2", "dkms")
    assert names(packages) == [
        f"nvidia-dkms-{branch}-server",
        f"nvidia-headless-no-dkms-{branch}-server",
        f"nvidia-utils-{branch}-server",
    ]
    assert all(p["hold"] and p["spec"].endswith(f"={branch}.1.2-*") for p in packages)
    assert not any(n.startswith("linux-modules-") for n in names(packages))


@pytest.mark.parametrize(
    ("branch", "version", "persistenced"),
    [("535", "535.261.03", "535.171.04"), ("550", "550.163.01", "550.163.01")],
)
def test_debian_packages(branch, version, persistenced):
    packages = nvidia_driver_packages("6.1.0-30-amd64", "Debian", "12", branch, version, "dkms", persistenced)
    specs = {p["name"]: p["spec"] for p in packages}
    assert specs == {
        "nvidia-kernel-dkms": f"nvidia-kernel-dkms={version}-*",
        "nvidia-smi": f"nvidia-smi={version}-*",
        "libcuda1": f"libcuda1={version}-*",
        "nvidia-persistenced": f"nvidia-persistenced={persistenced}-*",
    }
    assert all(p["hold"] for p in packages)


def test_package_selection_refuses_mismatched_pins():
    with pytest.raises(AnsibleFilterError, match="not a release of branch 580"):
        nvidia_driver_packages("6.8.0-45-generic", "Ubuntu", "24.04", "580", "550.163.01", "signed")
    with pytest.raises(AnsibleFilterError, match="no prebuilt signed"):
        nvidia_driver_packages("6.1.0-30-amd64", "Debian", "12", "535", "535.261.03", "signed")
    with pytest.raises(AnsibleFilterError, match="unsupported distribution"):
        nvidia_driver_packages("6.1.0-30-amd64", "Fedora", "41", "535", "535.261.03", "dkms")


def test_source_packages():
    assert nvidia_driver_source_packages("Ubuntu", "580") == ["nvidia-graphics-drivers-580-server"]
    assert nvidia_driver_source_packages("Debian", "535") == ["nvidia-graphics-drivers"]


@pytest.mark.parametrize(
    ("preference", "distribution", "signed", "secure_boot", "mok", "source"),
    [
        ("auto", "Ubuntu", True, False, False, "signed"),
        ("auto", "Ubuntu", True, True, False, "signed"),  # signed modules: Secure Boot needs no MOK
        ("auto", "Ubuntu", False, False, False, "dkms"),  # fallback
        ("dkms", "Ubuntu", True, False, False, "dkms"),
        ("signed", "Ubuntu", True, True, False, "signed"),
        ("auto", "Debian", False, False, False, "dkms"),
        ("auto", "Ubuntu", False, True, True, "dkms"),  # MOK enrolled: DKMS modules are signed by it
        ("auto", "Debian", False, True, True, "dkms"),
    ],
)
def test_module_source_choice(preference, distribution, signed, secure_boot, mok, source):
    assert nvidia_driver_module_source(preference, distribution, signed, secure_boot, mok) == {
        "source": source,
        "error": "",
    }


@pytest.mark.parametrize(
    ("preference", "distribution", "signed"),
    [("auto", "Ubuntu", False), ("dkms", "Ubuntu", True), ("auto", "Debian", False)],
)
def test_secure_boot_refuses_unsigned_modules_and_names_the_options(preference, distribution, signed):
    decision = nvidia_driver_module_source(preference, distribution, signed, True, False)
    assert decision["source"] is None
    message = decision["error"]
    assert message.startswith("Secure Boot is enabled")
    assert "Nothing was installed" in message
    for option in (
        "linux-modules-nvidia-",
        "mokutil",
        "nvidia_driver_secure_boot_mok_enrolled",
        "disable Secure Boot",
    ):
        assert option in message


def test_signed_preference_fails_where_none_exist():
    assert (
        "Debian ships no prebuilt" in nvidia_driver_module_source("signed", "Debian", False, False)["error"]
    )
    assert "no signed modules" in nvidia_driver_module_source("signed", "Ubuntu", False, False)["error"]
    assert "use one of" in nvidia_driver_module_source("prebuilt", "Ubuntu", True, False)["error"]


@pytest.mark.parametrize(
    ("package_version", "upstream"),
    [
        ("535.261.03-1", "535.261.03"),
        ("550.163.01-2", "550.163.01"),
        ("580.126.09-0ubuntu0.24.04.1", "580.126.09"),
        ("1:2.0-3", "2.0"),
        ("", ""),
        (None, ""),
    ],
)
def test_upstream_version(package_version, upstream):
    assert nvidia_driver_upstream_version(package_version) == upstream


BASE = {
    "installed_version": "550.163.01",
    "loaded_version": "550.163.01",
    "packages_changed": False,
    "gpu_on_pci": True,
    "nouveau_loaded": False,
    "can_reboot": True,
    "reboot_mode": "auto",
    "gpu_required": True,
}


def plan(**changes):
    return nvidia_driver_reboot_plan(**{**BASE, **changes})


def test_no_reboot_when_the_loaded_module_matches():
    assert plan() == {"action": "none", "pending": [], "message": "driver 550.163.01 is loaded"}
    # A package change that left the loaded module current (nothing driver-related moved) needs no reboot.
    assert plan(packages_changed=True)["action"] == "none"


def test_reboot_after_an_upgrade():
    decision = plan(installed_version="580.126.09", packages_changed=True)
    assert decision["action"] == "reboot"
    assert decision["pending"] == [
        "the loaded kernel module is 550.163.01 but the installed driver is 580.126.09",
        "the driver packages changed in this run",
    ]


def test_reboot_when_a_previous_run_left_it_pending():
    decision = plan(loaded_version="")
    assert decision["action"] == "reboot"
    assert "installed but its kernel module is not loaded" in decision["pending"][0]


def test_nouveau_blocks_the_module():
    decision = plan(loaded_version="", nouveau_loaded=True)
    assert decision["action"] == "reboot"
    assert "nouveau" in decision["pending"][1]


def test_never_fails_listing_what_is_pending():
    decision = plan(installed_version="580.126.09", packages_changed=True, reboot_mode="never")
    assert decision["action"] == "fail"
    assert "550.163.01 but the installed driver is 580.126.09" in decision["message"]
    assert "nvidia_driver_reboot is 'never'" in decision["message"]


def test_lab_container_reports_instead_of_rebooting():
    decision = plan(loaded_version="", gpu_on_pci=False, can_reboot=False, gpu_required=False)
    assert decision["action"] == "report"
    assert "No NVIDIA GPU is on the PCI bus" in decision["message"]
    assert "lab mode" in decision["message"]


def test_container_with_a_gpu_cannot_reboot_itself():
    assert plan(loaded_version="", can_reboot=False)["action"] == "fail"
    assert plan(loaded_version="", can_reboot=False, gpu_required=False)["action"] == "report"


def test_production_without_a_gpu_fails():
    assert plan(loaded_version="", gpu_on_pci=False)["action"] == "fail"


def test_reboot_mode_is_checked():
    with pytest.raises(AnsibleFilterError, match="auto or never"):
        plan(reboot_mode="always")


def test_stale_packages_of_an_old_branch():
    installed = {
        "nvidia-utils-535-server": [],
        "libnvidia-compute-535-server": [],
        "linux-modules-nvidia-535-server-6.8.0-45-generic": [],
        "linux-modules-nvidia-535-server-generic": [],
        "nvidia-headless-no-dkms-580-server": [],
        "nvidia-utils-580-server": [],
        "nvidia-container-toolkit": [],
        "libnvidia-container1": [],
        "nvidia-smi": [],
    }
    assert nvidia_driver_stale_packages(installed, "580") == [
        "libnvidia-compute-535-server",
        "linux-modules-nvidia-535-server-6.8.0-45-generic",
        "linux-modules-nvidia-535-server-generic",
        "nvidia-utils-535-server",
    ]
    assert nvidia_driver_stale_packages(list(installed), "535") == [
        "nvidia-headless-no-dkms-580-server",
        "nvidia-utils-580-server",
    ]


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "nvidia_driver_kernel_flavour",
        "nvidia_driver_packages",
        "nvidia_driver_source_packages",
        "nvidia_driver_module_source",
        "nvidia_driver_upstream_version",
        "nvidia_driver_reboot_plan",
        "nvidia_driver_stale_packages",
    }
