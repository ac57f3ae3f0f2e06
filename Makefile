# carbon-sensors: make demo (set up and run the offline demo), make test (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Prefect and Airflow 3.3 cannot share a venv (their fastapi ranges do not overlap): Prefect's tests
# run in their own, installed from a frozen set with --no-deps (Prefect 3.9.1 pins a certifi release
# newer than the package index has).
PREFECT_VENV := .venv-prefect
PREFECT_STAMP := $(PREFECT_VENV)/.installed-stamp
PREFECT_VERSION := 3.9.1

.PHONY: install install-prefect demo test test-airflow test-prefect test-fast lint lint-imports bench lock lock-prefect clean dist matrix matrix-ci

$(STAMP): pyproject.toml constraints/ci.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints/ci.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(PREFECT_STAMP): pyproject.toml constraints/prefect.txt
	test -x $(PREFECT_VENV)/bin/python || $(PYTHON) -m venv $(PREFECT_VENV)
	$(PREFECT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PREFECT_VENV)/bin/python -m pip install --quiet --no-deps -r constraints/prefect.txt
	$(PREFECT_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(PREFECT_VENV)/bin/python -c "import prefect, carbon_sensors.prefect; assert prefect.__version__ == '$(PREFECT_VERSION)', prefect.__version__"
	touch $(PREFECT_STAMP)

install-prefect: $(PREFECT_STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The whole suite, integration tests included (what CI runs): the layer contracts, Airflow and core, then Prefect.
test: lint-imports test-airflow test-prefect

test-airflow: $(STAMP)
	$(BIN)/python -m pytest -m "" -q

test-prefect: $(PREFECT_STAMP)
	$(PREFECT_VENV)/bin/python -m pytest tests/prefect -m "" -q

# The fast default suite, without tests marked integration.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP) lint-imports
	$(BIN)/ruff check .

# The layer contracts of [tool.importlinter] in pyproject.toml; a broken one names the import to remove.
lint-imports: $(STAMP)
	$(BIN)/lint-imports

# The built artefact: wheel and sdist under .matrix/dist, twine-checked, package data verified.
dist: $(STAMP)
	$(BIN)/python scripts/matrix.py --cells none

# The version matrix (clean venvs with the built wheel; see scripts/matrix.py): every cell, then CI's cell.
matrix: $(STAMP)
	$(BIN)/python scripts/matrix.py --json .matrix/results.json

matrix-ci: $(STAMP)
	$(BIN)/python scripts/matrix.py --cells ci --json .matrix/results-ci.json

bench: $(STAMP)
	$(BIN)/python bench/dag_parse.py

lock: $(STAMP)
	{ echo "# Known-good versions for CI and 'make install' (pip install -c constraints/ci.txt -e '.[dev]')."; \
	  echo "# Regenerate: make lock (after upgrading in .venv); Python 3.11."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^carbon-sensors'; } > constraints/ci.txt

lock-prefect: $(PREFECT_STAMP)
	{ sed -n '1,3p' constraints/prefect.txt; \
	  $(PREFECT_VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^carbon-sensors'; } > constraints/prefect.txt.new
	mv constraints/prefect.txt.new constraints/prefect.txt

clean:
	rm -rf $(VENV) $(PREFECT_VENV) .demo .pytest_cache .ruff_cache .matrix
