# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Each creates .venv in the project root and installs the package into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_out

.PHONY: venv browser demo test test-slow wheel-check bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/clipnerf demo --out $(DEMO_OUT) --overwrite

# The viewer test drives Debian's chromium (Playwright comes with the dev extra). Installed here
# when missing and apt-get is usable (root); otherwise that test is skipped with a note.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: no chromium (apt-get install chromium): the viewer test will be skipped"

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The wheel installed into a fresh venv outside the checkout, as a user installs it (CI runs it).
wheel-check:
	bash .ci/install_check

bench: $(STAMP)
	$(BIN)/python bench/bench_synth.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
