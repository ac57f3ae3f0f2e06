# carbon-sensors: make demo (set up and run the offline demo), make test (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint bench lock clean

$(STAMP): pyproject.toml constraints/ci.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints/ci.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The whole suite, integration tests included (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -m "" -q

# The fast default suite, without tests marked integration.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/dag_parse.py

lock: $(STAMP)
	{ echo "# Known-good versions for CI and 'make install' (pip install -c constraints/ci.txt -e '.[dev]')."; \
	  echo "# Regenerate: make lock (after upgrading in .venv); Python 3.11."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^carbon-sensors'; } > constraints/ci.txt

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache
