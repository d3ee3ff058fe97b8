# medperf-apply: `make demo` runs the tutorial end to end, `make test` runs the test suite.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Both cores (pytest-xdist), one test module per worker at a time (module-scoped fixtures and checks stay whole).
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: help venv test bench lint images data demo demo-clean

help: ## show this help
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[server,test]'
	touch $@

venv: $(STAMP) ## create the virtualenv and install the project (editable) with test tools

test: $(STAMP) ## the whole suite with its real parts (started when none answers; the last line names what was skipped)
	@PYTEST_ARGS='$(PYTEST_ARGS)' bash scripts/test.sh

bench: $(STAMP) ## run the benchmarks in bench/ and print their figures
	@set -e; for s in bench/*.py; do echo "== $$s"; $(BIN)/python $$s; done

lint: $(STAMP) ## static checks: ruff, and the layering contracts of .importlinter (lint-imports)
	$(BIN)/ruff check runner server schemas tests bench
	$(BIN)/lint-imports --config .importlinter

images: $(STAMP) ## build the chest X-ray example images (offline base image when none is given)
	bash examples/chestxray/build.sh

data: $(STAMP) ## generate the toy tutorial data into medperf_tutorial/sample_raw_data/
	$(BIN)/python examples/chestxray/make_data.py --out medperf_tutorial/sample_raw_data

demo: ## the tutorial end to end: images, toy data, local server, apply, approve, apply (MEDPERF_DEMO_PORT=8000)
	@bash scripts/demo.sh demo

demo-clean: ## stop what the demo started (by pid) and remove what it created (.demo/, the toy data it generated)
	@bash scripts/demo.sh clean
