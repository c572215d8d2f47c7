# Every target creates .venv and installs what it needs when missing, so a fresh
# machine with only Python 3.11 and make is enough.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/config.yaml

.PHONY: run test unit integration bench bench-compare bench-count bench-latency bench-backlog lint reliability simulator clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/emarsys-destination dev --config $(CONFIG)

# Two pytest processes, one test file each at a time: the integration tests mostly wait
# on real workers, so two files side by side halve the wall time on 2 cores.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration -m "not slow" $(PYTEST_ARGS)

reliability: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration $(PYTEST_ARGS)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# This tree against BASE (a revision; default HEAD), ROUNDS rounds alternating: the app's
# row and the stages' CPU, medians and their ratio (bench/compare.py).
BASE ?= HEAD
ROUNDS ?= 5
bench-compare: $(BENCH_STAMP)
	$(BIN)/python -m bench.compare --base $(BASE) --rounds $(ROUNDS) $(BENCH_ARGS)

# The stages' instructions per event, counted by valgrind (repeatable where timing is not),
# this tree against BASE (default HEAD: uncommitted changes) (bench/instructions.py).
bench-count: $(BENCH_STAMP)
	$(BIN)/python -m bench.instructions --base $(BASE) $(BENCH_ARGS)

# p50/p99 from ingest acknowledged to Emarsys acknowledged at 1,000 events/s for one
# account while another account's Emarsys answers 503 (bench/latency.py).
bench-latency: $(STAMP)
	$(BIN)/python -m bench.latency $(BENCH_ARGS)

# A worker's memory while it works through a backlog of 1,000,000 events written before
# it started (bench/backlog.py).
bench-backlog: $(STAMP)
	$(BIN)/python -m bench.backlog $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app agents tables tests bench
	$(BIN)/ruff format --check app agents tables tests bench
	$(BIN)/mypy

simulator: $(STAMP)
	$(BIN)/emarsys-destination emarsys-simulator --port 9797

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
