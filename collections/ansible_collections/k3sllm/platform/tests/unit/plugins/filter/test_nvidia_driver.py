"""Package selection, Secure Boot refusal and reboot decision of roles/nvidia_driver (facts injected)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.nvidia_driver import (
    FilterModule,
    nvidia_driver_compare_versions,
    nvidia_driver_kernel_flavour,
    nvidia_driver_module_source,
    nvidia_driver_offered_versions,
    nvidia_driver_packages,
    nvidia_driver_pending_packages,
    nvidia_driver_reboot_plan,
    nvidia_driver_resolve,
    nvidia_driver_signed_modules,
    nvidia_driver_source_packages,
    nvidia_driver_stale_packages,
    nvidia_driver_upstream_version,
    nvidia_repo_key_fingerprints,
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
        # 26.04 ships Linux 7.0 as its GA kernel.
        ("7.0.0-14-generic", "26.04", "generic"),
        ("7.2.0-5-generic", "26.04", "generic-hwe-26.04"),
        ("7.0.0-1004-aws", "26.04", "aws"),
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
        ("7.0.0-14-generic", "26.04", "generic"),
        ("7.2.0-5-generic", "26.04", "generic-hwe-26.04"),
    ],
)
def test_ubuntu_signed_packages(branch, kernel, release, meta):
    version = f"{branch}.100.01"
    packages = nvidia_driver_packages(
        kernel, "Ubuntu", release, branch, version, "signed", None, "9.9.9-1.1+2"
    )
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
    # The running kernel's modules are built for exactly this release: pinned to their version and held.
    assert by_name[f"linux-modules-nvidia-{branch}-server-{kernel}"]["spec"] == (
        f"linux-modules-nvidia-{branch}-server-{kernel}=9.9.9-1.1+2"
    )
    assert by_name[f"linux-modules-nvidia-{branch}-server-{kernel}"]["hold"] is True
    assert by_name[f"linux-modules-nvidia-{branch}-server-{meta}"] == {
        "name": f"linux-modules-nvidia-{branch}-server-{meta}",
        "version": None,
        "spec": f"linux-modules-nvidia-{branch}-server-{meta}",
        "hold": False,
        "kind": "kernel",
    }
    assert not any("dkms-" in n and "no-dkms" not in n for n in names(packages))


def test_ubuntu_signed_packages_without_the_flavour_metapackage():
    # A host that lags behind the archive gets the running kernel's modules only (the metapackage
    # would pull the newest kernel's modules, built for a newer driver than the one chosen).
    packages = nvidia_driver_packages(
        "6.8.0-45-generic", "Ubuntu", "24.04", "580", "580.95.05", "signed", None, "6.8.0-45.45+1", False
    )
    assert names(packages) == [
        "linux-modules-nvidia-580-server-6.8.0-45-generic",
        "nvidia-headless-no-dkms-580-server",
        "nvidia-utils-580-server",
    ]


@pytest.mark.parametrize("release", ["22.04", "24.04", "26.04"])
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
    ("release", "kernel", "branch", "version", "persistenced"),
    [
        ("12", "6.1.0-30-amd64", "535", "535.261.03", "535.171.04"),
        ("13", "6.12.38+deb13-amd64", "550", "550.163.01", "550.163.01"),
    ],
)
def test_debian_packages(release, kernel, branch, version, persistenced):
    packages = nvidia_driver_packages(kernel, "Debian", release, branch, version, "dkms", persistenced)
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
        "nvidia_driver_compare_versions",
        "nvidia_driver_offered_versions",
        "nvidia_driver_signed_modules",
        "nvidia_driver_resolve",
        "nvidia_driver_pending_packages",
        "nvidia_repo_key_fingerprints",
    }


# --- Release resolution: pin the branch, resolve the release, hold it ---------------------------


@pytest.mark.parametrize(
    ("left", "right", "order"),
    [
        ("580.126.09-0ubuntu0.24.04.1", "580.95.05-0ubuntu1", 1),  # numeric, not text, order
        ("580.173.02-0ubuntu0.24.04.1", "580.173.02-0ubuntu0.24.04.2", -1),
        ("535.261.03-1", "535.261.03-1", 0),
        ("535.171.04-1~deb12u1", "535.171.04-1", -1),  # ~ sorts before the end
        ("1.0~rc1", "1.0", -1),
        ("1:1.0", "2.0", 1),  # epoch first
        ("1:1.0:2-1", "1:1.0:10-1", -1),  # the epoch ends at the first colon
        ("1.0a", "1.0+", -1),  # letters before other characters
        ("1.0", "1.0.0", -1),
        ("6.8.0-45.45+2", "6.8.0-45.45+1", 1),
        ("550.163.01-2", "550.163.01-10", -1),
    ],
)
def test_compare_versions_as_dpkg_does(left, right, order):
    assert nvidia_driver_compare_versions(left, right) == order
    assert nvidia_driver_compare_versions(right, left) == -order


MADISON_BOOKWORM = """\
nvidia-smi | 535.261.03-1 | http://deb.debian.org/debian bookworm/non-free amd64 Packages
nvidia-smi | 535.216.01-1~deb12u1 | http://deb.debian.org/debian bookworm-updates/non-free amd64 Packages
nvidia-graphics-drivers | 535.261.03-1 | http://deb.debian.org/debian bookworm/non-free Sources
"""
MADISON_NOBLE = [
    "nvidia-utils-580-server | 580.95.05-0ubuntu0.24.04.2 | http://archive.ubuntu.com/ubuntu noble-updates/restricted amd64 Packages",
    "nvidia-utils-580-server | 580.173.02-0ubuntu0.24.04.1 | http://security.ubuntu.com/ubuntu noble-security/restricted amd64 Packages",
    "nvidia-utils-580-server | 580.173.02-0ubuntu0.24.04.1 | http://archive.ubuntu.com/ubuntu noble-updates/restricted amd64 Packages",
]


def test_offered_versions_newest_first_once_without_sources():
    assert nvidia_driver_offered_versions(MADISON_BOOKWORM) == ["535.261.03-1", "535.216.01-1~deb12u1"]
    assert nvidia_driver_offered_versions(MADISON_NOBLE) == [
        "580.173.02-0ubuntu0.24.04.1",
        "580.95.05-0ubuntu0.24.04.2",
    ]
    assert nvidia_driver_offered_versions("") == []
    assert nvidia_driver_offered_versions(None) == []


# apt-cache show prints a Depends field on one line; built in pieces to stay within the line length.
DEPENDS_45_2 = ", ".join(
    [
        "linux-image-6.8.0-45-generic | linux-image-unsigned-6.8.0-45-generic",
        "linux-signatures-nvidia-6.8.0-45-generic (= 6.8.0-45.45+2)",
        "nvidia-kernel-common-580-server (<= 580.159.03-1)",
        "nvidia-kernel-common-580-server (>= 580.159.03)",
    ]
)
SHOW_SIGNED = f"""\
Package: linux-modules-nvidia-580-server-6.8.0-45-generic
Version: 6.8.0-45.45+2
Depends: {DEPENDS_45_2}
Description: Linux kernel nvidia modules for version 6.8.0-45

Package: linux-modules-nvidia-580-server-6.8.0-45-generic
Version: 6.8.0-45.45+1
Depends: linux-image-6.8.0-45-generic, nvidia-kernel-common-580-server (>= 580.95.05), nvidia-kernel-common-580-server (<= 580.95.05-1)

Package: linux-modules-nvidia-580-server-6.8.0-45-generic
Version: 6.8.0-45.45
Depends: linux-image-6.8.0-45-generic, nvidia-kernel-common-570-server (>= 570.1.2)
"""


def test_signed_modules_name_the_driver_release_they_were_built_for():
    assert nvidia_driver_signed_modules(SHOW_SIGNED, "580") == {
        "6.8.0-45.45+2": "580.159.03",
        "6.8.0-45.45+1": "580.95.05",
    }
    assert nvidia_driver_signed_modules(SHOW_SIGNED, 570) == {"6.8.0-45.45": "570.1.2"}
    assert nvidia_driver_signed_modules("", "580") == {}
    assert nvidia_driver_signed_modules("E: No packages found", "580") == {}


NOBLE_OFFERED = ["580.173.02-0ubuntu0.24.04.1", "580.159.03-0ubuntu0.24.04.1", "580.95.05-0ubuntu1"]
NOBLE_SIGNED = {"6.8.0-45.45+2": "580.159.03", "6.8.0-45.45+1": "580.95.05"}
INSTALLED_OLD = "580.95.05-0ubuntu1"

# (offered, installed, branch, upgrade, signed modules, requested) ->
# (dkms release, signed release, signed module version, keep, reason fragment)
RESOLUTIONS = [
    # Fresh host: the newest release of the branch for DKMS, and for signed modules the newest
    # release the running kernel's modules were built for (they must match exactly).
    (
        (NOBLE_OFFERED, "", "580", False, NOBLE_SIGNED, ""),
        ("580.173.02", "580.159.03", "6.8.0-45.45+2", False, "newest offered release of branch 580"),
    ),
    # No signed modules for this kernel: DKMS only.
    ((NOBLE_OFFERED, "", "580", False, {}, ""), ("580.173.02", None, None, False, "newest")),
    # Modules built only for a release the archive no longer offers: unusable.
    ((NOBLE_OFFERED[:1], "", "580", False, NOBLE_SIGNED, ""), ("580.173.02", None, None, False, "newest")),
    # A re-run keeps what is installed, even when newer releases are offered.
    (
        (NOBLE_OFFERED, INSTALLED_OLD, "580", False, NOBLE_SIGNED, ""),
        ("580.95.05", "580.95.05", "6.8.0-45.45+1", True, "keeps the installed release 580.95.05"),
    ),
    # ... and keeps it even when the archive dropped it (held packages stay installable as they are).
    (
        (NOBLE_OFFERED[:1], INSTALLED_OLD, "580", False, {}, ""),
        ("580.95.05", None, None, True, "newest offered: 580.173.02"),
    ),
    # nvidia_driver_upgrade moves to the newest.
    (
        (NOBLE_OFFERED, INSTALLED_OLD, "580", True, NOBLE_SIGNED, ""),
        ("580.173.02", "580.159.03", "6.8.0-45.45+2", False, "upgrade from 580.95.05"),
    ),
    # A branch change moves to the new branch without asking for an upgrade.
    (
        (["570.195.03-0ubuntu1", *NOBLE_OFFERED], "570.195.03-0ubuntu1", "580", False, {}, ""),
        ("580.173.02", None, None, False, "branch change from 570.195.03"),
    ),
    # Other branches offered by the same sources are never chosen.
    (
        (["590.44.01-1", "535.261.03-1"], "", "535", False, {}, ""),
        ("535.261.03", None, None, False, "newest"),
    ),
    # An exact release (a mirror or snapshot that still has it).
    (
        (NOBLE_OFFERED, INSTALLED_OLD, "580", False, NOBLE_SIGNED, "580.159.03"),
        ("580.159.03", "580.159.03", "6.8.0-45.45+2", False, "as set in nvidia_driver_version"),
    ),
    (
        (NOBLE_OFFERED, INSTALLED_OLD, "580", True, NOBLE_SIGNED, "580.95.05"),
        ("580.95.05", "580.95.05", "6.8.0-45.45+1", True, "as set"),
    ),
    # Debian's nvidia-persistenced: no branch, resolved like the driver.
    (
        (["535.171.04-1~deb12u1"], "", None, False, {}, ""),
        ("535.171.04", None, None, False, "newest offered release"),
    ),
    (
        (["550.163.01-1"], "535.171.04-1~deb12u1", None, False, {}, ""),
        ("535.171.04", None, None, True, "keeps"),
    ),
]


@pytest.mark.parametrize(("arguments", "expected"), RESOLUTIONS)
def test_resolution(arguments, expected):
    dkms, signed, module_version, keep, reason = expected
    result = nvidia_driver_resolve(*arguments)
    assert result["error"] == ""
    assert result["version"] == {"dkms": dkms, "signed": signed}
    assert result["module_version"] == module_version
    assert result["keep"] is keep
    assert reason in result["reason"]


def test_resolution_reports_newest_and_installed():
    result = nvidia_driver_resolve(NOBLE_OFFERED, INSTALLED_OLD, "580")
    assert result["newest"] == "580.173.02"
    assert result["installed"] == "580.95.05"


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        # Nothing of the branch offered (sources not configured, or a branch the release lacks).
        (
            (["550.163.01-2"], "", "535", False, {}, ""),
            ["offer no release of branch 535", "550.163.01", "nvidia_driver_branch"],
        ),
        (([], "", "580", False, {}, ""), ["they offer: nothing", "fix the package sources"]),
        # An exact release that the archive no longer has: the rot this resolution exists for.
        (
            (NOBLE_OFFERED, "", "580", False, {}, "580.126.09"),
            ["offer no release 580.126.09", "580.173.02, 580.159.03, 580.95.05"],
        ),
        (
            (NOBLE_OFFERED, "", "580", False, {}, "550.163.01"),
            ["not a release of branch 580", "nvidia_driver_version"],
        ),
    ],
)
def test_resolution_errors_name_the_setting_and_what_is_offered(arguments, fragments):
    result = nvidia_driver_resolve(*arguments)
    assert result["version"] == {"dkms": None, "signed": None}
    for fragment in fragments:
        assert fragment in result["error"]


INSTALLED_FACTS = {
    "nvidia-smi": [{"version": "535.261.03-1"}],
    "libcuda1": [{"version": "535.216.01-1~deb12u1"}],
    "nvidia-container-toolkit": [{"version": "1.20.0-1"}],
}


@pytest.mark.parametrize(
    ("specs", "pending"),
    [
        (["nvidia-smi=535.261.03-*"], []),
        (["libcuda1=535.261.03-*"], ["libcuda1=535.261.03-*"]),  # installed at another release
        (["nvidia-kernel-dkms=535.261.03-*"], ["nvidia-kernel-dkms=535.261.03-*"]),  # not installed
        (["nvidia-container-toolkit=1.20.0-1"], []),
        (["nvidia-container-toolkit=1.20.0-2"], ["nvidia-container-toolkit=1.20.0-2"]),
        (
            ["nvidia-smi", "linux-modules-nvidia-580-server-generic"],
            ["linux-modules-nvidia-580-server-generic"],
        ),
        ([{"spec": "nvidia-smi=535.*"}], []),
    ],
)
def test_pending_packages(specs, pending):
    assert nvidia_driver_pending_packages(specs, INSTALLED_FACTS) == pending


GPG_COLONS = """\
pub:-:4096:1:DDCAE044F796ECB0:1492128000:::-:::scESC::::::23::0:
fpr:::::::::c95b321b61e88c1809c4f759ddcae044f796ecb0:
uid:-::::1492128000::0D2A6B1AD1A5DE2F6C3E8AD5A6A6B0F1A2B3C4D5::NVIDIA CORPORATION (Open Source Projects) <cudatools@nvidia.com>::::::::::0:
sub:-:4096:1:1111222233334444:1492128000::::::e::::::23:
fpr:::::::::AAAABBBBCCCCDDDDEEEEFFFF1111222233334444:
pub:-:255:22:A4B469963BF863CC:1650000000:::-:::scESC::::::23::0:
fpr:::::::::EB693B3035CD5710E231E123A4B469963BF863CC:
"""


def test_key_fingerprints_are_the_primary_keys_only():
    assert nvidia_repo_key_fingerprints(GPG_COLONS) == [
        "C95B321B61E88C1809C4F759DDCAE044F796ECB0",
        "EB693B3035CD5710E231E123A4B469963BF863CC",
    ]
    assert nvidia_repo_key_fingerprints("") == []
    assert nvidia_repo_key_fingerprints(None) == []
