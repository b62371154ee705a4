# Dorsi: `make run` serves the API, `make test` runs the whole suite. Nothing else needed
# but python3 (3.11+); everything is installed into .venv from the lock files.
PYTHON ?= python3
# Where `make run` serves: `make run PORT=8123`, or `make run HOST=0.0.0.0` for the network.
HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_VERSION := 0.13.9

.PHONY: run test lint migrate openapi bench lock clean

run: $(VENV)/.runtime
	$(BIN)/dorsi serve --host $(HOST) --port $(PORT)

test: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m tests.halves

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

migrate: $(VENV)/.runtime
	$(BIN)/dorsi migrate

openapi: $(VENV)/.runtime
	$(BIN)/dorsi openapi

bench: $(VENV)/.dev
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.catalog
	$(BIN)/python -m bench.today
	$(BIN)/python -m bench.adherence
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.fhir
	$(BIN)/python -m bench.load

lock: $(UV)
	$(UV) pip compile --quiet --python-version 3.11 pyproject.toml -o requirements.lock
	$(UV) pip compile --quiet --python-version 3.11 --extra dev pyproject.toml -o requirements-dev.lock

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Dependencies are installed compiled to bytecode, as in the image: every start of the
# app, a test's subprocess or a benchmark's server then skips compiling them again (which
# nothing would save where PYTHONDONTWRITEBYTECODE is set).
$(VENV)/.runtime: requirements.lock pyproject.toml | $(UV)
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(VENV)/.dev: requirements-dev.lock pyproject.toml | $(UV)
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
