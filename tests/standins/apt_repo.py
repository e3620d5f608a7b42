"""TEST STAND-IN: a signed flat apt repository of fake NVIDIA Container Toolkit packages.

NVIDIA's repository is unreachable from CI, so molecule's prepare step runs this script inside
each container to build one on the layout NVIDIA uses (``<root>/libnvidia-container/gpgkey`` and
``<root>/libnvidia-container/stable/deb/<arch>/``), signed with a throwaway GPG key, then serves
it on 127.0.0.1. The packages carry the real names (the role's pin, hold and repository code is
the real code path) but their versions end in ``+k3sllmstandin``, their descriptions say TEST
STAND-IN, and their ``nvidia-ctk`` only prints its version.

Needs only python3, dpkg-deb and gpg (present in the molecule images).

    python3 apt_repo.py /srv/k3sllm-standin-apt --versions 1.17.8-1+k3sllmstandin 1.18.0-1+k3sllmstandin
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import subprocess
import tempfile
import textwrap
from email.utils import formatdate
from pathlib import Path

PACKAGES = {
    "libnvidia-container1": "",
    "libnvidia-container-tools": "libnvidia-container1 (= {version})",
    "nvidia-container-toolkit-base": "",
    "nvidia-container-toolkit": "nvidia-container-toolkit-base (= {version}), libnvidia-container-tools (= {version})",
}
STANDIN_CTK = """#!/bin/sh
# TEST STAND-IN for nvidia-ctk (k3sllm tests/standins/apt_repo.py); not NVIDIA software.
case "$1" in
  --version) echo "NVIDIA Container Toolkit CLI version {upstream} (k3sllm test stand-in)"; echo "commit: standin" ;;
  *) echo "nvidia-ctk test stand-in: only --version is implemented" >&2; exit 2 ;;
esac
"""


def build_deb(work: Path, out: Path, name: str, version: str, depends: str, arch: str) -> Path:
    root = work / f"{name}_{version}"
    (root / "DEBIAN").mkdir(parents=True)
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "K3SLLM-TEST-STANDIN").write_text("Built by k3sllm tests/standins/apt_repo.py for tests only.\n")
    if name == "nvidia-container-toolkit-base":
        ctk = root / "usr/bin/nvidia-ctk"
        ctk.parent.mkdir(parents=True)
        ctk.write_text(STANDIN_CTK.format(upstream=version.split("-")[0]))
        ctk.chmod(0o755)
    control = {
        "Package": name,
        "Version": version,
        "Architecture": arch,
        "Maintainer": "k3sllm tests <tests@k3sllm.invalid>",
        "Section": "utils",
        "Priority": "optional",
        "Description": f"TEST STAND-IN for {name} (k3sllm CI)\n Not NVIDIA software; holds no toolkit code.",
    }
    if depends:
        control["Depends"] = depends.format(version=version)
    (root / "DEBIAN/control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
    deb = out / f"{name}_{version}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def index(repo: Path, debs: list[Path]) -> None:
    stanzas = []
    for deb in sorted(debs):
        fields = subprocess.run(
            ["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True
        ).stdout
        data = deb.read_bytes()
        stanzas.append(
            fields.rstrip("\n")
            + f"\nFilename: ./{deb.name}\nSize: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    sums = "".join(
        f" {hashlib.sha256((repo / n).read_bytes()).hexdigest()} {(repo / n).stat().st_size} {n}\n"
        for n in ("Packages", "Packages.gz")
    )
    release = (
        textwrap.dedent(f"""\
        Origin: k3sllm-test-standin
        Label: k3sllm test stand-in of the NVIDIA Container Toolkit repository
        Date: {formatdate(usegmt=True)}
        SHA256:
        """)
        + sums
    )
    (repo / "Release").write_text(release)


def sign(top: Path, repo: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="k3sllm-standin-gpg-"))
    home.chmod(0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run(
            [
                *gpg,
                "--quick-gen-key",
                "k3sllm test stand-in apt key <standin@k3sllm.invalid>",
                "ed25519",
                "sign",
                "1d",
            ],
            check=True,
            capture_output=True,
        )
        key = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout
        (top / "gpgkey").write_bytes(key)
        for args in (["--clearsign", "-o", "InRelease"], ["--detach-sign", "--armor", "-o", "Release.gpg"]):
            subprocess.run([*gpg, "--yes", *args, "Release"], check=True, cwd=repo, capture_output=True)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--versions", nargs="+", required=True)
    parser.add_argument("--arch", default="amd64")
    args = parser.parse_args()
    top = Path(args.root) / "libnvidia-container"
    repo = top / "stable" / "deb" / args.arch
    if top.exists():
        shutil.rmtree(top)
    repo.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        debs = [
            build_deb(Path(work), repo, name, version, depends, args.arch)
            for version in args.versions
            for name, depends in PACKAGES.items()
        ]
    index(repo, debs)
    sign(top, repo)
    print(f"stand-in repository ready: {repo}")


if __name__ == "__main__":
    main()
