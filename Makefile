# Two commands do all the set-up on a fresh machine:
#   make run   - create .venv, install, run the main job on this machine (no cluster)
#   make test  - create .venv, install, bring up the local 2-node Slurm cluster, run the suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := contract planner launcher runtime tui scalectl

.PHONY: run test lint typecheck unit slurm-up slurm-down manifests bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/main_job.py

lint: $(STAMP)
	$(BIN)/ruff check $(PACKAGES) tests bench scripts
	$(BIN)/ruff format --check $(PACKAGES) tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

slurm-up:
	scripts/slurm-local.sh up

slurm-down:
	scripts/slurm-local.sh down

unit: $(STAMP)
	$(BIN)/pytest

test: $(STAMP) lint typecheck
	@if [ "$$(id -u)" = 0 ]; then scripts/slurm-local.sh up; \
	 else echo "make test: not root, the local Slurm cluster cannot be started; Slurm tests will skip"; fi
	$(BIN)/pytest -v --durations=20

# Example Kubernetes manifests (issue 9); tests/k8s/test_k8s_manifests.py fails on drift.
manifests: $(STAMP)
	$(BIN)/scalectl manifests manifests/llama3-8b.job.yaml -o manifests/llama3-8b \
	    --k8s-flavor all --job-id 20250601-120000-8b8b

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
