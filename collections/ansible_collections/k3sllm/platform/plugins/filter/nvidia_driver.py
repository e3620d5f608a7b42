"""Decisions behind roles/nvidia_driver, kept pure so they can be tested with injected facts.

- which release of the pinned branch to install: the installed one, or the newest the sources
  offer (for Canonical's signed modules: the newest one the running kernel's modules were built for);
- which packages provide the driver on Ubuntu (Canonical's signed modules or DKMS) and Debian;
- whether Secure Boot forbids the only module source there is;
- whether a reboot is needed, and what to do about it;
- which packages of an older branch must go when the pinned branch changes.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any

from ansible.errors import AnsibleFilterError

# Kernel series each Ubuntu LTS ships as its GA kernel; any other series is an HWE kernel, whose
# flavour metapackages carry a "-hwe-<release>" suffix.
UBUNTU_GA_KERNELS = {"22.04": "5.15", "24.04": "6.8", "26.04": "7.0"}
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


def _spec(name: str, version: str | None, hold: bool, kind: str, exact: bool = False) -> dict[str, Any]:
    if not version:
        spec = name
    elif exact:
        spec = f"{name}={version}"
    else:
        # apt module syntax; a version glob matches the distribution's revision suffix.
        spec = f"{name}={version}-*"
    return {"name": name, "version": version, "spec": spec, "hold": hold, "kind": kind}


def _char_order(char: str) -> int:
    # Debian policy: "~" sorts before everything (even the end), letters before other characters.
    if char == "~":
        return -1
    if not char or char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_fragment(left: str, right: str) -> int:
    i = j = 0
    while i < len(left) or j < len(right):
        while (i < len(left) and not left[i].isdigit()) or (j < len(right) and not right[j].isdigit()):
            lo = _char_order(left[i] if i < len(left) else "")
            ro = _char_order(right[j] if j < len(right) else "")
            if lo != ro:
                return -1 if lo < ro else 1
            i += 1
            j += 1
        start_i, start_j = i, j
        while i < len(left) and left[i].isdigit():
            i += 1
        while j < len(right) and right[j].isdigit():
            j += 1
        ln, rn = int(left[start_i:i] or 0), int(right[start_j:j] or 0)
        if ln != rn:
            return -1 if ln < rn else 1
    return 0


def _split_version(version: str) -> tuple[int, str, str]:
    epoch, _colon, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _dash, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def nvidia_driver_compare_versions(left: str, right: str) -> int:
    """Compare two Debian package versions as dpkg does: -1, 0 or 1."""
    le, lu, lr = _split_version(str(left))
    re_, ru, rr = _split_version(str(right))
    if le != re_:
        return -1 if le < re_ else 1
    return _compare_fragment(lu, ru) or _compare_fragment(lr, rr)


def _newest_first(versions: Iterable[str]) -> list[str]:
    ordered: list[str] = []
    for version in versions:
        at = 0
        while at < len(ordered) and nvidia_driver_compare_versions(ordered[at], version) > 0:
            at += 1
        if at == len(ordered) or nvidia_driver_compare_versions(ordered[at], version) != 0:
            ordered.insert(at, version)
    return ordered


def nvidia_driver_offered_versions(madison: str | list[Any]) -> list[str]:
    """Binary package versions in ``apt-cache madison`` output, newest first, each once.

    ``nvidia-smi | 535.261.03-1 | http://deb.debian.org/debian bookworm/non-free amd64 Packages``
    """
    lines = madison.splitlines() if isinstance(madison, str) else list(madison or [])
    found = []
    for line in lines:
        fields = [field.strip() for field in str(line).split("|")]
        if len(fields) == 3 and fields[1] and not fields[2].endswith("Sources"):
            found.append(fields[1])
    return _newest_first(found)


def nvidia_driver_signed_modules(apt_cache_show: str, branch: str) -> dict[str, Any]:
    """Which driver release each offered version of Canonical's signed module package was built for.

    ``apt-cache show linux-modules-nvidia-<branch>-server-<kernel>`` prints one stanza per offered
    version; each depends on exactly one ``nvidia-kernel-common-<branch>-server`` release
    (``(>= 580.95.05), (<= 580.95.05-1)``). Returns ``{module package version: driver release}``.
    """
    common = re.compile(
        rf"nvidia-kernel-common-{re.escape(str(branch))}-server\s*\(\s*(?:>=|=)\s*([^)\s]+)\s*\)"
    )
    modules = {}
    for stanza in re.split(r"\n\s*\n", str(apt_cache_show or "")):
        version = re.search(r"^Version:\s*(\S+)", stanza, re.MULTILINE)
        depends = re.search(r"^Depends:(.*)$", stanza, re.MULTILINE)
        needs = common.search(depends.group(1)) if depends else None
        if version and needs:
            modules[version.group(1)] = nvidia_driver_upstream_version(needs.group(1))
    return modules


def nvidia_driver_resolve(
    offered: list[str],
    installed: str | None,
    branch: str | None,
    upgrade: bool = False,
    signed_modules: dict[str, Any] | None = None,
    requested: str | None = "",
) -> dict[str, Any]:
    """Choose the driver release to install and hold, for DKMS and for Canonical's signed modules.

    ``offered``: package versions the sources offer (``nvidia_driver_offered_versions``);
    ``installed``: the installed package version ("" when none); ``branch``: the pinned branch
    (None: any release, for packages versioned apart from the driver); ``upgrade``: move an
    installed driver to the newest release; ``signed_modules``: ``nvidia_driver_signed_modules``
    for the running kernel; ``requested``: an exact release to use instead of the newest.

    A host keeps its installed release unless an upgrade is asked for, the branch changed or an
    exact release is requested. Otherwise the newest offered release of the branch is chosen; for
    signed modules the newest one that the running kernel's modules were built for (the two must
    match exactly, and Ubuntu's archive keeps only the current driver).

    Returns ``version`` (``{"dkms": release|None, "signed": release|None}``), ``module_version``
    (signed module package version or None), ``newest``, ``installed``, ``keep``, ``reason`` and
    ``error`` (empty when a release was found).
    """
    prefix = f"{branch}." if branch else ""
    releases = _newest_first(
        nvidia_driver_upstream_version(v) for v in offered or [] if nvidia_driver_upstream_version(v)
    )
    of_branch = [r for r in releases if r.startswith(prefix)]
    current = nvidia_driver_upstream_version(installed)
    requested = str(requested or "")
    result: dict[str, Any] = {
        "version": {"dkms": None, "signed": None},
        "module_version": None,
        "newest": of_branch[0] if of_branch else "",
        "installed": current,
        "keep": False,
        "reason": "",
        "error": "",
    }
    if requested and not requested.startswith(prefix):
        result["error"] = (
            f"nvidia_driver_version {requested} is not a release of branch {branch}; "
            "set nvidia_driver_branch and nvidia_driver_version together (or leave nvidia_driver_version empty)."
        )
        return result
    if requested:
        candidates = [requested] if requested in of_branch or requested == current else []
        result["keep"] = requested == current
        result["reason"] = f"release {requested} as set in nvidia_driver_version"
    elif current and current.startswith(prefix) and not upgrade:
        candidates = [current]
        result["keep"] = True
        result["reason"] = (
            f"keeps the installed release {current} (newest offered: {result['newest'] or 'none'}; "
            "nvidia_driver_upgrade: true moves to the newest)"
        )
    else:
        candidates = of_branch
        if current and current.startswith(prefix):
            result["reason"] = f"upgrade from {current} to the newest offered release"
        elif current:
            result["reason"] = (
                f"branch change from {current} to the newest offered release of branch {branch}"
            )
        else:
            result["reason"] = "newest offered release" + (f" of branch {branch}" if branch else "")
    if not candidates:
        offered_list = ", ".join(releases) or "nothing"
        wanted = (
            f"release {requested}" if requested else (f"release of branch {branch}" if branch else "release")
        )
        result["error"] = (
            f"The package sources offer no {wanted} (they offer: {offered_list}). Set nvidia_driver_branch "
            "(and nvidia_driver_version, if set) to one they offer, or fix the package sources."
        )
        return result
    result["version"]["dkms"] = candidates[0]
    by_release: dict[str, list[str]] = {}
    for module_version, release in (signed_modules or {}).items():
        by_release.setdefault(release, []).append(module_version)
    for release in candidates:
        if release in by_release:
            result["version"]["signed"] = release
            result["module_version"] = _newest_first(by_release[release])[0]
            break
    return result


def nvidia_driver_packages(
    kernel_release: str,
    distribution: str,
    distribution_version: str,
    branch: str,
    version: str,
    module_source: str,
    persistenced_version: str | None = None,
    module_version: str | None = None,
    follow_kernel: bool = True,
) -> list[dict[str, Any]]:
    """The packages that install the chosen driver release, one dict per package.

    Each entry: ``name``, ``version`` (upstream release, the signed module package's own version,
    or None when the package tracks the kernel), ``spec`` (for ansible.builtin.apt), ``hold`` (pin
    it against upgrades), ``kind`` (``kernel`` or ``userspace``). ``module_version``: the signed
    module package version built for ``version`` (``nvidia_driver_resolve``); ``follow_kernel``:
    add the flavour metapackage that brings the modules of the next kernel.
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
                # Built for exactly one driver release, so held together with it.
                _spec(
                    f"linux-modules-nvidia-{branch}-server-{kernel_release}",
                    module_version,
                    bool(module_version),
                    "kernel",
                    exact=True,
                )
            ]
            if follow_kernel:
                # Metapackage that follows the flavour, so the next kernel upgrade brings its modules.
                kernel.append(_spec(f"linux-modules-nvidia-{branch}-server-{flavour}", None, False, "kernel"))
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
) -> dict[str, Any]:
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
) -> dict[str, Any]:
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


def nvidia_driver_stale_packages(installed: list[Any] | dict[str, Any], branch: str) -> list[str]:
    """Installed driver packages of another numbered branch, which a branch change must remove."""
    names = installed.keys() if isinstance(installed, dict) else installed
    stale = []
    for name in sorted(names):
        match = BRANCH_PACKAGE_RE.match(name)
        if match and match["branch"] != str(branch):
            stale.append(name)
    return stale


def nvidia_driver_pending_packages(packages: list[Any], installed: dict[str, Any]) -> list[str]:
    """The apt specs (``name``, ``name=version`` or ``name=version-*``) that the installed packages
    (``ansible_facts.packages``) do not satisfy yet: what a real run would install or change."""
    pending = []
    for package in packages:
        spec = package["spec"] if isinstance(package, dict) else str(package)
        name, _equals, wanted = spec.partition("=")
        versions = [entry.get("version", "") for entry in (installed or {}).get(name, [])]
        if not versions or (wanted and not any(fnmatch.fnmatchcase(v, wanted) for v in versions)):
            pending.append(spec)
    return pending


def nvidia_repo_key_fingerprints(gpg_colons: str) -> list[str]:
    """Fingerprints of the primary keys in ``gpg --with-colons --show-keys`` output (subkeys left out)."""
    fingerprints, record = [], ""
    for line in str(gpg_colons or "").splitlines():
        fields = line.split(":")
        if fields[0] == "fpr" and record == "pub" and len(fields) > 9:
            fingerprints.append(fields[9].upper())
        record = fields[0] if fields[0] != "fpr" else ""
    return fingerprints


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "nvidia_driver_kernel_flavour": nvidia_driver_kernel_flavour,
            "nvidia_driver_packages": nvidia_driver_packages,
            "nvidia_driver_source_packages": nvidia_driver_source_packages,
            "nvidia_driver_module_source": nvidia_driver_module_source,
            "nvidia_driver_upstream_version": nvidia_driver_upstream_version,
            "nvidia_driver_reboot_plan": nvidia_driver_reboot_plan,
            "nvidia_driver_stale_packages": nvidia_driver_stale_packages,
            "nvidia_driver_compare_versions": nvidia_driver_compare_versions,
            "nvidia_driver_offered_versions": nvidia_driver_offered_versions,
            "nvidia_driver_signed_modules": nvidia_driver_signed_modules,
            "nvidia_driver_resolve": nvidia_driver_resolve,
            "nvidia_driver_pending_packages": nvidia_driver_pending_packages,
            "nvidia_repo_key_fingerprints": nvidia_repo_key_fingerprints,
        }
