# molibackup: `make demo` runs the main job against a local EC2 emulator; `make test` runs
# every check. Both set up their own virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help dev demo test lint typecheck pytest schema docs clean

help:
	@echo "make demo       run a backup job against a local EC2 emulator with a sample fleet"
	@echo "make test       lint, type-check and run the whole test suite"
	@echo "make dev        create $(VENV) with molibackup and its development tools"
	@echo "make schema     copy schema/molibackup.schema.json to where it is packaged"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

dev: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy src

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

schema:
	cp schema/molibackup.schema.json src/molibackup/schema.json

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache

docs: $(STAMP)
	$(BIN)/python scripts/config_reference.py --write README.md
