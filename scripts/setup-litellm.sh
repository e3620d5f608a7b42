#!/usr/bin/env bash
# Prepare the gateway tests (tests/gateway) and bench/gateway:
#   .venv-litellm   the LiteLLM proxy from PyPI at the version the role deploys
#                   (litellm_version in roles/litellm/defaults/main.yml), prometheus_client for its
#                   metrics callback, and its Prisma client (prisma-client-py) generated offline
#   tests/standins/prisma_engine/node_modules
#                   Prisma's CLI and its WebAssembly query engine with the PostgreSQL adapter, pinned
#                   in package-lock.json: the query-engine stand-in runs on them (shared FACTS.md,
#                   "LiteLLM with its database on these machines")
# Idempotent: a quick no-op when both are ready for the pinned versions. Needs python3, node and npm.
set -euo pipefail
# No arguments: Ansible once ran this file as an inventory script (`--list`) from a syntax check, and
# a rebuild must never start by accident.
if (($#)); then
  echo "usage: $0 (no arguments)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."

VENV=.venv-litellm
ENGINE_DIR=tests/standins/prisma_engine
PYTHON=${PYTHON:-python3}
# prisma-client-py that LiteLLM's schema is generated with; it expects Prisma CLI 5.17.0 (package.json).
PRISMA_CLIENT_PY=0.15.0

litellm_version=$(sed -n -E 's/^litellm_version:[[:space:]]*"?([0-9][0-9A-Za-z.]*)"?[[:space:]]*(#.*)?$/\1/p' \
  roles/litellm/defaults/main.yml)
if [[ -z $litellm_version ]]; then
  echo "setup-litellm: no litellm_version in roles/litellm/defaults/main.yml" >&2
  exit 1
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "setup-litellm: $tool missing; run scripts/install-test-deps.sh" >&2; exit 1; }
done

# What a finished setup was made from: any change starts that part again.
want_venv="litellm[proxy]==$litellm_version prisma==$PRISMA_CLIENT_PY"
want_npm=$(sha256sum "$ENGINE_DIR/package-lock.json" | cut -d' ' -f1)
venv_stamp=$VENV/.k3sllm-ready
npm_stamp=$ENGINE_DIR/node_modules/.k3sllm-ready

if [[ $(cat "$npm_stamp" 2>/dev/null) != "$want_npm" ]]; then
  # --ignore-scripts: @prisma/engines' install script downloads native engines from a host that is
  # unreachable here; the stand-in replaces the query engine and nothing runs the others.
  (cd "$ENGINE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null)
  echo "$want_npm" >"$npm_stamp"
fi

engine_env=(
  PATH="$PWD/$VENV/bin:$PATH"
  PRISMA_BINARY_CACHE_DIR="$PWD/$ENGINE_DIR"
  PRISMA_QUERY_ENGINE_BINARY="$PWD/$ENGINE_DIR/query-engine-standin.mjs"
  PRISMA_SCHEMA_ENGINE_BINARY="$PWD/$ENGINE_DIR/schema-engine-placeholder"
  PRISMA_HIDE_UPDATE_MESSAGE=true
)

# Importing litellm fetches a price list from the internet unless told to use the one it ships.
export LITELLM_LOCAL_MODEL_COST_MAP=True

install() {
  "$PYTHON" -m venv "$VENV" &&
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "litellm[proxy]==$litellm_version" "prisma==$PRISMA_CLIENT_PY" prometheus_client &&
  # Writes the Python client for LiteLLM's schema into the venv's prisma package; offline, since the
  # CLI only asks the engines for their versions.
  local schema &&
  schema=$("$VENV/bin/python" -c 'import litellm.proxy, pathlib; print(pathlib.Path(litellm.proxy.__file__).parent / "schema.prisma")') &&
  env "${engine_env[@]}" "$VENV/bin/prisma" generate --schema "$schema" >/dev/null &&
  "$VENV/bin/python" -c 'import prisma, litellm; print("litellm", litellm.__version__ if hasattr(litellm, "__version__") else "", "prisma client generated")'
}

if [[ $(cat "$venv_stamp" 2>/dev/null) != "$want_venv" ]]; then
  started=$(date +%s)
  # Resolve first, so a version the package index cannot serve leaves a working venv in place.
  if ! "$PYTHON" -m pip install --dry-run --ignore-installed -q --disable-pip-version-check \
    "litellm[proxy]==$litellm_version" "prisma==$PRISMA_CLIENT_PY" prometheus_client >/dev/null; then
    echo "setup-litellm: litellm[proxy]==$litellm_version (litellm_version in roles/litellm/defaults/main.yml)" \
      "cannot be installed from this package index; $VENV left as it was" >&2
    exit 1
  fi
  rm -rf "$VENV"
  install
  echo "$want_venv" >"$venv_stamp"
  echo "setup-litellm: installed $VENV ($want_venv) in $(($(date +%s) - started)) s"
fi
echo "setup-litellm: ready ($VENV, litellm $litellm_version)"
