# Quick start: `make run` (the directory on http://127.0.0.1:2582, SQLite in ./plc-directory.sqlite3)
# and `make test`. Everything installs into ./.venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test test-fast lint bench load openapi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/plc serve

test: $(VENV)/.installed-test
	$(BIN)/pytest -n 2 --benchmark-disable $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-test
	$(BIN)/pytest -n 2 --benchmark-disable -m "not postgres and not slow" $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check plc auditor tests
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/pytest benchmarks --benchmark-only -p no:xdist

# Side by side with the reference server (../shared/refserver, node + its own PostgreSQL).
LOAD_ARGS ?= --creates 3000 --updates 3000 --resolves 10000 --concurrency 8
load: $(VENV)/.installed-test
	$(BIN)/python benchmarks/compare_reference.py $(LOAD_ARGS) --out results/compare.json

openapi: $(VENV)/.installed
	$(BIN)/python -m plc.api.openapi_export openapi/plc-directory.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
