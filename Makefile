# Two commands (see README): `make demo` runs the main job, `make test` runs every check.
# Each sets itself up: a .venv with the exact versions in requirements.lock.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LOCK_HASH := $(shell sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(LOCK_HASH)
DEMO_DIR ?= .demo
# Drop pip's notes about local mirror folders that do not exist; keep real errors.
QUIET_PIP := { grep -v '^WARNING: Location' || true; }

export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PYTHONHASHSEED := 0

.PHONY: setup demo test lint typecheck contracts pytest browser java fmt clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Tagsmith needs Python 3.11, got " + sys.version' 
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the pinned set from requirements.lock into $(VENV) (first run: ~1-2 min)"
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | $(QUIET_PIP)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | $(QUIET_PIP)
	@rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh "$(DEMO_DIR)"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The packages ([tool.mypy] in pyproject.toml), then the benchmark scripts, which run as
# files beside them (hence explicit package bases).
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases benchmarks

contracts: $(STAMP)
	$(BIN)/lint-imports

# The console's browser tests drive Debian's chromium (installed here when missing).
browser:
	@bash scripts/ensure-chromium.sh

# The Spark engine's tests start a JVM: Java 17+ (Debian's, installed here when missing).
java:
	@bash scripts/ensure-java.sh

pytest: $(STAMP) browser java
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -n 2 --dist loadgroup --timeout 600 -q

test: lint typecheck contracts pytest

fmt: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
