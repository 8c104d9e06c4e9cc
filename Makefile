# dicomlake developer commands. `make run` and `make test` are the two a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test lint format typecheck test-unit test-integration test-faults bench bench-stow bench-frames bench-qido clean

help:
	@echo "make run     start PostgreSQL, Azurite and the service on http://127.0.0.1:8080 (Ctrl-C stops all)"
	@echo "make test    install what is needed, then lint, type-check and run every test"
	@echo "make lint | typecheck | test-unit | test-integration | test-faults | test-infra | bench | clean"

# --- installation -----------------------------------------------------------------------------
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + ")")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 20+ with npm is needed for Azurite: https://nodejs.org/ or 'apt-get install nodejs npm'"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) node_modules/.installed

# --- the two commands -------------------------------------------------------------------------
run: install
	$(BIN)/python -m dicomlake devstack

test: install lint typecheck test-infra
	$(BIN)/python -m pytest -q -m "not faults" tests

# --- pieces -----------------------------------------------------------------------------------
lint: $(STAMP)
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service tests

format: $(STAMP)
	$(BIN)/ruff check --fix service tests
	$(BIN)/ruff format service tests

typecheck: $(STAMP)
	$(BIN)/mypy

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: install
	$(BIN)/python -m pytest -q -m integration tests

test-faults: install
	$(BIN)/python -m pytest -q -m faults tests

# Every scenario (each prints its table; results also land in .bench/). Run one alone with
# `make bench-stow`, `make bench-frames` or `make bench-qido`.
bench: bench-stow bench-frames bench-qido

bench-stow: install
	$(BIN)/python -m bench

bench-frames: install
	$(BIN)/python -m bench.frames

bench-qido: install
	$(BIN)/python -m bench.qido

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .bench

include mk/infra.mk
