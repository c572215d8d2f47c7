# Every target creates .venv and installs what it needs when missing, so a fresh
# machine with only Python 3.11 and make is enough.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/config.yaml

.PHONY: native run test unit integration bench bench-compare bench-count bench-latency bench-backlog lint reliability simulator clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,native]'
	@touch $(STAMP)

# The per-event core compiled with mypyc (build_native.py; ~1.5 min, again after any of
# its sources changes). EMD_NATIVE=0 removes the build and runs the sources instead.
NATIVE_STAMP := $(VENV)/.native-built
NATIVE_SOURCES := $(shell grep -oE '^    "app/[a-z_/]+\.py",$$' app/native.py | tr -d '", ')

ifeq ($(EMD_NATIVE),0)
$(NATIVE_STAMP): FORCE $(STAMP)
	$(BIN)/python build_native.py --clean
	@rm -f $(NATIVE_STAMP)
else
$(NATIVE_STAMP): $(STAMP) build_native.py app/native.py $(NATIVE_SOURCES)
	$(BIN)/python build_native.py > $(VENV)/native-build.log 2>&1 || { tail -30 $(VENV)/native-build.log; echo "compiling the core failed (log: $(VENV)/native-build.log); EMD_NATIVE=0 runs the sources"; exit 1; }
	@touch $(NATIVE_STAMP)
endif

FORCE:

native: $(NATIVE_STAMP)

run: $(NATIVE_STAMP)
	$(BIN)/emarsys-destination dev --config $(CONFIG)

# Two pytest processes, one test file each at a time: the integration tests mostly wait
# on real workers, so two files side by side halve the wall time on 2 cores.
test: $(NATIVE_STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)

unit: $(NATIVE_STAMP)
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

integration: $(NATIVE_STAMP)
	$(BIN)/python -m pytest -q tests/integration -m "not slow" $(PYTEST_ARGS)

reliability: $(NATIVE_STAMP)
	$(BIN)/python -m pytest -q tests/integration $(PYTEST_ARGS)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,native,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) $(NATIVE_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# This tree against BASE (a revision; default HEAD), ROUNDS rounds alternating: the app's
# row and the stages' CPU, medians and their ratio (bench/compare.py).
BASE ?= HEAD
ROUNDS ?= 5
bench-compare: $(BENCH_STAMP) $(NATIVE_STAMP)
	$(BIN)/python -m bench.compare --base $(BASE) --rounds $(ROUNDS) $(BENCH_ARGS)

# The stages' instructions per event, counted by valgrind (repeatable where timing is not),
# this tree against BASE (default HEAD: uncommitted changes) (bench/instructions.py).
bench-count: $(BENCH_STAMP) $(NATIVE_STAMP)
	$(BIN)/python -m bench.instructions --base $(BASE) $(BENCH_ARGS)

# p50/p99 from ingest acknowledged to Emarsys acknowledged at 1,000 events/s for one
# account while another account's Emarsys answers 503 (bench/latency.py).
bench-latency: $(NATIVE_STAMP)
	$(BIN)/python -m bench.latency $(BENCH_ARGS)

# A worker's memory while it works through a backlog of 1,000,000 events written before
# it started (bench/backlog.py).
bench-backlog: $(NATIVE_STAMP)
	$(BIN)/python -m bench.backlog $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app agents tables tests bench build_native.py
	$(BIN)/ruff format --check app agents tables tests bench build_native.py
	$(BIN)/mypy

simulator: $(STAMP)
	$(BIN)/emarsys-destination emarsys-simulator --port 9797

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
