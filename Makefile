# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Each creates .venv in the project root and installs the package into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_out

.PHONY: venv demo test test-slow bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/clipnerf demo --out $(DEMO_OUT) --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python bench/bench_synth.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
