# `make demo` and `make test` work on a fresh machine: they create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The layers (lint-imports, the contract in pyproject.toml) and lint (ruff) first: a new upward import, a
# cycle or a lint error fails the run in seconds, before the suite.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m vision.cli.demo

bench: $(STAMP)
	$(PY) benchmarks/bench_predict.py

clean:
	rm -rf demo_output .pytest_cache
