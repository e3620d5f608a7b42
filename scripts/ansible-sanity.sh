#!/usr/bin/env bash
# `ansible-test sanity` on the k3sllm.platform collection, runnable on a fresh machine without the
# internet beyond PyPI.
#
# ansible-test bootstraps pip in each test's virtual environment with a get-pip script from
# ci-files.testing.ansible.com, which is unreachable here (and from many CI runners); it uses a
# cached copy at ~/.ansible/test/cache/get_pip_<version>.py when one exists. This script puts there
# a small stand-in that installs pip from the pip wheel of that version (downloaded from PyPI once),
# then runs the sanity tests with their requirements installed from PyPI into ansible-test's venvs.
#
# Usage: scripts/ansible-sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
venv_bin=${VENV_BIN:-$repo_root/.venv/bin}
collection=$repo_root/collections/ansible_collections/k3sllm/platform
# The Python the controller and CI use; ansible-test would otherwise test every supported version.
sanity_python=${SANITY_PYTHON:-3.11}
cache=${HOME}/.ansible/test/cache

# The pip version ansible-test bootstraps, read from ansible-test itself so an upgrade follows.
pip_version=$("$venv_bin/python" - "$sanity_python" <<'EOF'
import sys
import types

from ansible_test._internal.python_requirements import get_venv_packages

print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))["pip"])
EOF
)
get_pip=$cache/get_pip_${pip_version//./_}.py
pip_wheel=$cache/pip-${pip_version}-py3-none-any.whl

mkdir -p "$cache"
if [[ ! -f $pip_wheel ]]; then
    "$venv_bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --dest "$cache" "pip==${pip_version}"
fi
# Written every run (cheap), so a stale or partial copy never lingers.
cat >"$get_pip.tmp" <<EOF
# Stand-in for get-pip.py written by k3sllm's scripts/ansible-sanity.sh: installs pip from the
# wheel beside it. ansible-test passes pip's install arguments plus get-pip's own
# --no-setuptools/--no-wheel, which pip does not know.
import os
import sys

wheel = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-${pip_version}-py3-none-any.whl")
sys.path.insert(0, wheel)
from pip._internal.cli.main import main  # noqa: E402

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-index", "--find-links", os.path.dirname(wheel), *args]))
EOF
mv "$get_pip.tmp" "$get_pip"
rm -f "$get_pip.download"

cd "$collection"
started=$(date +%s)
status=0
"$venv_bin/ansible-test" sanity --venv --requirements --python "$sanity_python" --color no "$@" || status=$?
echo "ansible-test sanity: exit $status after $(($(date +%s) - started)) s"
exit "$status"
