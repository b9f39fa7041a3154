# Everything a fresh machine needs comes from here: `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench geodata clean system-deps

# the runtime only (what `make demo` needs); the test extras come with `make test`
$(BIN)/patchmap: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-extras: $(BIN)/patchmap
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

## make demo: install the runtime, run the whole chain on the bundled California data, print
## the map path; then call the CLI as .venv/bin/patchmap (or `. .venv/bin/activate` first)
demo: $(BIN)/patchmap
	$(BIN)/patchmap demo --out out/demo

## system-deps: Debian's headless Chromium for the browser test of the map
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

## make test: install with test extras (and Chromium), lint, check formatting, run the suite
test: $(VENV)/.test-extras system-deps
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/python -m pytest -n 2 -q

lint: $(VENV)/.test-extras
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks

## make geodata: rebuild geodata/ from ../shared/data (or the official Census files)
geodata: $(BIN)/patchmap
	$(BIN)/python scripts/build_geodata.py

bench: $(BIN)/patchmap
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/partition_peers.py

clean:
	rm -rf $(VENV) out .pytest_cache
