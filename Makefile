# The README's two commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/constraints.txt
OUT ?= out/demo

.PHONY: demo test lint typecheck lock browser r clean fuzz

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev,gx,bench]"
	touch $(STAMP)

# Headless Chromium for the HTML-report and portal browser tests (Debian package; skipped if
# present). Without it `make test` stops: a browser test must never skip silently in CI.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: install Debian's chromium (as root: make browser)" >&2; exit 1; fi; }

# R with survival and cmprsk: the reference the statistics tests run (Debian packages; skipped
# if present). Without them the R tests fail, they are never skipped.
r:
	@{ command -v Rscript >/dev/null 2>&1 && Rscript -e 'library(survival); library(cmprsk)' >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      r-base-core r-cran-survival r-cran-cmprsk >/dev/null; \
	  else echo "R with survival and cmprsk not found: install r-base-core r-cran-survival r-cran-cmprsk" >&2; exit 1; fi; }

demo: $(STAMP)
	$(BIN)/cartreg demo --out $(OUT)

test: $(STAMP) browser r
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The fuzz suite at full size (docs/fuzzing.md): FUZZ_EXAMPLES cases per reader and for mappings
# (CI runs the same tests with a small budget). FUZZ_ONLY=csv runs the tests matching a keyword.
FUZZ_EXAMPLES ?= 10000
FUZZ_LOG ?= out/fuzz/cases.jsonl
fuzz: $(STAMP)
	mkdir -p $(dir $(FUZZ_LOG))
	rm -f $(FUZZ_LOG)
	CARTREG_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CARTREG_FUZZ_LOG=$(FUZZ_LOG) RUST_BACKTRACE=0 \
	  $(BIN)/python -m pytest tests/fuzz/test_fuzz.py -q -p no:cacheprovider $(if $(FUZZ_ONLY),-k "$(FUZZ_ONLY)")
	$(BIN)/python -m tests.fuzz.summary $(FUZZ_LOG)

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)

typecheck: $(STAMP)
	$(BIN)/mypy

# Regenerate the pinned versions from pyproject.toml (needs the venv for pip-tools).
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --strip-extras --extra dev --extra gx --extra bench --no-emit-index-url --no-emit-find-links \
	  --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
