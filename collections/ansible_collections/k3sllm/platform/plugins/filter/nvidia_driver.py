"""Decisions behind roles/nvidia_driver, kept pure so they can be tested with injected facts.

- which packages provide the driver on Ubuntu (Canonical's signed modules or DKMS) and Debian;
- whether Secure Boot forbids the only module source there is;
- whether a reboot is needed, and what to do about it;
- which packages of an older branch must go when the pinned branch changes.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# Kernel series each Ubuntu LTS ships as its GA kernel; any other series is an HWE kernel, whose
# flavour metapackages carry a "-hwe-<release>" suffix.
UBUNTU_GA_KERNELS = {"22.04": "5.15", "24.04": "6.8"}
# Flavours that have HWE variants (cloud kernels such as aws or azure roll forward under one name).
HWE_FLAVOURS = ("generic", "generic-64k", "lowlatency", "lowlatency-64k")
KERNEL_RE = re.compile(r"^(?P<series>\d+\.\d+)\.\d+-\d+-(?P<flavour>[a-z0-9][a-z0-9-]*)$")
DEBIAN_PACKAGES = ("nvidia-kernel-dkms", "nvidia-smi", "libcuda1")
MODULE_SOURCES = ("auto", "signed", "dkms")
# Driver packages of a numbered Ubuntu branch: nvidia-utils-535-server, linux-modules-nvidia-535-server-...
BRANCH_PACKAGE_RE = re.compile(
    r"^(?:nvidia|libnvidia|linux-modules-nvidia|linux-objects-nvidia|xserver-xorg-video-nvidia)-"
    r"(?:.*-)?(?P<branch>\d{3})-server(?:-|$)"
)


def nvidia_driver_kernel_flavour(kernel_release: str, distribution_version: str) -> str:
    """The flavour suffix of Ubuntu's kernel metapackages for a running kernel.

    ``5.15.0-105-generic`` on 22.04 -> ``generic``; ``6.8.0-45-generic`` on 22.04 (HWE) ->
    ``generic-hwe-22.04``; ``6.8.0-1015-aws`` -> ``aws``.
    """
    match = KERNEL_RE.match(str(kernel_release))
    if not match:
        raise AnsibleFilterError(
            f"nvidia_driver: cannot read the flavour of kernel {kernel_release!r} "
            "(expected <version>-<abi>-<flavour>, as Ubuntu kernels are named)"
        )
    flavour = match["flavour"]
    ga_series = UBUNTU_GA_KERNELS.get(str(distribution_version))
    if ga_series is None:
        raise AnsibleFilterError(
            f"nvidia_driver: Ubuntu {distribution_version} is not supported "
            f"(supported: {', '.join(UBUNTU_GA_KERNELS)})"
        )
    if flavour in HWE_FLAVOURS and match["series"] != ga_series:
        return f"{flavour}-hwe-{distribution_version}"
    return flavour


def _spec(name: str, version: str | None, hold: bool, kind: str) -> dict:
    return {
        "name": name,
        "version": version,
        # apt module syntax; a version glob matches the distribution's revision suffix.
        "spec": f"{name}={version}-*" if version else name,
        "hold": hold,
        "kind": kind,
    }


def nvidia_driver_packages(
    kernel_release: str,
    distribution: str,
    distribution_version: str,
    branch: str,
    version: str,
    module_source: str,
    persistenced_version: str | None = None,
) -> list[dict]:
    """The packages that install the pinned driver, one dict per package.

    Each entry: ``name``, ``version`` (upstream, or None when the package tracks the kernel),
    ``spec`` (for ansible.builtin.apt), ``hold`` (pin it against upgrades), ``kind``
    (``kernel`` or ``userspace``).
    """
    branch = str(branch)
    if not str(version).startswith(f"{branch}."):
        raise AnsibleFilterError(
            f"nvidia_driver: nvidia_driver_version {version} is not a release of branch {branch}; "
            "set nvidia_driver_branch and nvidia_driver_version together"
        )
    if distribution == "Ubuntu":
        userspace = [
            _spec(f"nvidia-headless-no-dkms-{branch}-server", version, True, "userspace"),
            _spec(f"nvidia-utils-{branch}-server", version, True, "userspace"),
        ]
        if module_source == "signed":
            flavour = nvidia_driver_kernel_flavour(kernel_release, distribution_version)
            kernel = [
                # Modules for the running kernel, signed by Canonical: loadable under Secure Boot now.
                _spec(f"linux-modules-nvidia-{branch}-server-{kernel_release}", None, False, "kernel"),
                # Metapackage that follows the flavour, so the next kernel upgrade brings its modules.
                _spec(f"linux-modules-nvidia-{branch}-server-{flavour}", None, False, "kernel"),
            ]
        elif module_source == "dkms":
            kernel = [_spec(f"nvidia-dkms-{branch}-server", version, True, "kernel")]
        else:
            raise AnsibleFilterError(f"nvidia_driver: unknown module source {module_source!r}")
        return kernel + userspace
    if distribution == "Debian":
        if module_source != "dkms":
            raise AnsibleFilterError("nvidia_driver: Debian has no prebuilt signed NVIDIA modules; use dkms")
        packages = [
            _spec(name, version, True, "kernel" if name.endswith("dkms") else "userspace")
            for name in DEBIAN_PACKAGES
        ]
        packages.append(_spec("nvidia-persistenced", persistenced_version or version, True, "userspace"))
        return packages
    raise AnsibleFilterError(f"nvidia_driver: unsupported distribution {distribution!r}")


def nvidia_driver_source_packages(distribution: str, branch: str) -> list[str]:
    """Source packages whose binaries the apt preferences file pins to the driver version."""
    if distribution == "Ubuntu":
        return [f"nvidia-graphics-drivers-{branch}-server"]
    return ["nvidia-graphics-drivers"]


def nvidia_driver_module_source(
    preference: str,
    distribution: str,
    signed_available: bool,
    secure_boot_enabled: bool,
    mok_enrolled: bool = False,
) -> dict:
    """Pick signed modules or DKMS, and say why not when Secure Boot rules the choice out.

    Returns ``{"source": "signed"|"dkms"|None, "error": str}``; ``error`` is empty when installing may go on.
    """
    if preference not in MODULE_SOURCES:
        return {
            "source": None,
            "error": f"nvidia_driver_module_source is {preference!r}; use one of {', '.join(MODULE_SOURCES)}.",
        }
    signed_possible = distribution == "Ubuntu" and signed_available
    if preference == "signed" and not signed_possible:
        where = (
            "Debian ships no prebuilt signed NVIDIA modules"
            if distribution != "Ubuntu"
            else "Canonical publishes no signed modules of this branch for the running kernel"
        )
        return {
            "source": None,
            "error": f"nvidia_driver_module_source is 'signed' but {where}. Set it to 'auto' or 'dkms', "
            "or pick a branch (nvidia_driver_branch) that has signed modules for this kernel.",
        }
    source = "signed" if preference in ("auto", "signed") and signed_possible else "dkms"
    if source == "dkms" and secure_boot_enabled and not mok_enrolled:
        reason = (
            "no signed modules of this branch exist for the running kernel"
            if distribution == "Ubuntu"
            else f"{distribution} builds the module with DKMS"
        )
        return {
            "source": None,
            "error": (
                f"Secure Boot is enabled and {reason}: the kernel would refuse an unsigned DKMS module. "
                "Nothing was installed. Choose one: (1) on Ubuntu, use a kernel flavour and branch with "
                "Canonical's signed modules (linux-modules-nvidia-<branch>-server-<flavour>, see "
                "nvidia_driver_branch); (2) enrol a Machine Owner Key that signs DKMS modules (mokutil "
                "--import /var/lib/dkms/mok.pub, confirm at the next boot) and set "
                "nvidia_driver_secure_boot_mok_enrolled: true; (3) disable Secure Boot in the firmware."
            ),
        }
    return {"source": source, "error": ""}


def nvidia_driver_upstream_version(package_version: str | None) -> str:
    """``535.261.03-1`` or ``580.126.09-0ubuntu0.24.04.1`` -> the NVIDIA release ``535.261.03``."""
    if not package_version:
        return ""
    version = str(package_version).split(":", 1)[-1]
    return version.rsplit("-", 1)[0] if "-" in version else version


def nvidia_driver_reboot_plan(
    installed_version: str,
    loaded_version: str,
    packages_changed: bool,
    gpu_on_pci: bool,
    nouveau_loaded: bool,
    can_reboot: bool,
    reboot_mode: str,
    gpu_required: bool,
) -> dict:
    """Decide what to do after installing: nothing, reboot, fail, or only report.

    A reboot is needed only for a GPU that is on the bus and whose loaded module is missing or
    differs from the installed driver (or is blocked by nouveau). Returns ``action`` (``none``,
    ``reboot``, ``fail``, ``report``), ``pending`` (reasons) and ``message``.
    """
    if reboot_mode not in ("auto", "never"):
        raise AnsibleFilterError(f"nvidia_driver_reboot is {reboot_mode!r}; use auto or never")
    pending: list[str] = []
    if not installed_version:
        pending.append("the driver is not installed")
    elif not loaded_version:
        pending.append(f"driver {installed_version} is installed but its kernel module is not loaded")
    elif loaded_version != installed_version:
        pending.append(
            f"the loaded kernel module is {loaded_version} but the installed driver is {installed_version}"
        )
    if nouveau_loaded:
        pending.append("the nouveau module is loaded and blocks the NVIDIA module")
    if pending and packages_changed:
        pending.append("the driver packages changed in this run")
    if not pending:
        return {"action": "none", "pending": [], "message": f"driver {loaded_version} is loaded"}
    listed = "; ".join(pending)
    if not gpu_on_pci:
        # Without a GPU the module cannot load, so a reboot would not help (lab mode only:
        # preflight refuses production hosts without a GPU).
        return {
            "action": "fail" if gpu_required else "report",
            "pending": pending,
            "message": f"{listed}. No NVIDIA GPU is on the PCI bus, so the module cannot load and a "
            "reboot would not help" + ("" if gpu_required else " (lab mode: nothing to do)."),
        }
    if reboot_mode == "never":
        return {
            "action": "fail",
            "pending": pending,
            "message": f"A reboot is pending: {listed}. nvidia_driver_reboot is 'never': reboot the host "
            "in a maintenance window, then run the playbook again (or set nvidia_driver_reboot: auto).",
        }
    if not can_reboot:
        return {
            "action": "fail" if gpu_required else "report",
            "pending": pending,
            "message": f"A reboot is pending: {listed}. This host is a container and cannot be rebooted "
            "from here; restart it from its host.",
        }
    return {"action": "reboot", "pending": pending, "message": f"Rebooting: {listed}."}


def nvidia_driver_stale_packages(installed: list | dict, branch: str) -> list[str]:
    """Installed driver packages of another numbered branch, which a branch change must remove."""
    names = installed.keys() if isinstance(installed, dict) else installed
    stale = []
    for name in sorted(names):
        match = BRANCH_PACKAGE_RE.match(name)
        if match and match["branch"] != str(branch):
            stale.append(name)
    return stale


class FilterModule:
    def filters(self):
        return {
            "nvidia_driver_kernel_flavour": nvidia_driver_kernel_flavour,
            "nvidia_driver_packages": nvidia_driver_packages,
            "nvidia_driver_source_packages": nvidia_driver_source_packages,
            "nvidia_driver_module_source": nvidia_driver_module_source,
            "nvidia_driver_upstream_version": nvidia_driver_upstream_version,
            "nvidia_driver_reboot_plan": nvidia_driver_reboot_plan,
            "nvidia_driver_stale_packages": nvidia_driver_stale_packages,
        }
