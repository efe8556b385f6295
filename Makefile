# Quick start: `make run` (the directory on http://127.0.0.1:2582, SQLite in ./plc-directory.sqlite3)
# and `make test`. Everything installs into ./.venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test test-fast lint typecheck bench load openapi clean

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

openapi: $(VENV)/.installed
	$(BIN)/python -m plc.api.openapi_export openapi/plc-directory.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
