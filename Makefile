# The two commands of the README, and the checks CI runs.  Needs Python 3.11+ with venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck docs package bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## the main job on its embedded default: naive vs throttled, fake provider
	$(BIN)/throttle-trio demo --plot demo-timeline.svg

test: $(STAMP)  ## the suite on asyncio and trio, then ruff, mypy --strict, the site, the package
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest
	$(MAKE) --no-print-directory check

check: lint typecheck docs package

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/pyright --pythonpath $(BIN)/python

docs: $(STAMP)  ## the documentation site, failing on any broken link or reference
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

package: $(STAMP)  ## wheel and sdist, twine check, each extra installed into a clean venv
	bash scripts/check_package.sh

bench-quick: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench --quick

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
