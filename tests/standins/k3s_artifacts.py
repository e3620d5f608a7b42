#!/usr/bin/env python3
"""Build TEST STAND-IN K3s release folders (k3sllm tests only).

    k3s_artifacts.py OUT v1.36.3+k3s1 v1.36.4+k3s1 [--corrupt v1.36.4+k3s1]

writes, per version, the layout of K3s's GitHub release downloads (and of an airgap folder):

    OUT/<version>/k3s                              the stand-in (k3s_standin.py, VERSION set)
    OUT/<version>/k3s-airgap-images-amd64.tar.zst  a few bytes, clearly not images
    OUT/<version>/sha256sum-amd64.txt              "<sha256>  <name>" lines, as upstream

so ``<release_url>/<version>/<file>`` serves it over HTTP and ``OUT/<version>`` is an airgap
folder. ``--corrupt`` writes a wrong checksum for that version's binary (checksum tests).
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

STANDIN = Path(__file__).with_name("k3s_standin.py")
ARCH = "amd64"
IMAGES = f"k3s-airgap-images-{ARCH}.tar.zst"


def build(out: Path, version: str, corrupt: bool = False) -> dict[str, str]:
    folder = out / version
    folder.mkdir(parents=True, exist_ok=True)
    source = STANDIN.read_text()
    source, count = re.subn(r'^VERSION = ".*"$', f'VERSION = "{version}"', source, count=1, flags=re.M)
    if count != 1:
        raise SystemExit("k3s_standin.py has no VERSION line")
    binary = folder / "k3s"
    binary.write_text(source)
    binary.chmod(0o755)
    (folder / IMAGES).write_bytes(f"K3SLLM TEST STAND-IN: not an image archive ({version})\n".encode())
    sums = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("k3s", IMAGES)}
    if corrupt:
        sums["k3s"] = hashlib.sha256(b"something else").hexdigest()
    (folder / f"sha256sum-{ARCH}.txt").write_text("".join(f"{sha}  {name}\n" for name, sha in sums.items()))
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("versions", nargs="+")
    parser.add_argument("--corrupt", action="append", default=[], help="version whose checksum is wrong")
    args = parser.parse_args()
    for version in args.versions:
        build(args.out, version, version in args.corrupt)


if __name__ == "__main__":
    main()
