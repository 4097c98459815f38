# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup lock services stop browser demo test lint typecheck unit bench bench-kafka bench-scaleout bench-soak bench-edge bench-audit bench-audit-shards bench-whatif clean

# constraints.txt pins every distribution to the version tested (`make lock` rewrites it).
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/.installed  ## create .venv and install the project with its dev tools, at the locked versions

lock:  ## install pyproject.toml's requirements into .venv, then pin them all in constraints.txt (UPGRADE=1: newest allowed)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python scripts/lock.py $(if $(UPGRADE),--upgrade)

demo: setup  ## the whole system + simulated traffic, live; Ctrl-C stops (DEMO_SECONDS=30: by itself)
	PYTHON=$(BIN)/python scripts/demo.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

services: setup  ## install (first time) and start PostgreSQL and Apache Kafka on loopback
	scripts/postgres.sh start
	scripts/kafka.sh start

stop:  ## stop the Apache Kafka and PostgreSQL that `make services` and `make test` leave running
	scripts/kafka.sh stop
	scripts/postgres.sh stop

unit: setup
	$(BIN)/pytest

# The services stay up for the next run (starting Kafka takes a while); the last line says so,
# whether the tests passed or not.
browser:  ## install Debian's chromium (apt) for the console tests in tests/browser
	scripts/chromium.sh install

test: lint typecheck services browser  ## the full suite: ruff, mypy strict, pytest on real Kafka, PostgreSQL and Chromium
	@$(BIN)/pytest; status=$$?; \
	echo "make test: Kafka and PostgreSQL are left running for the next run; 'make stop' stops both."; \
	exit $$status

bench: setup  ## engine benchmark (pure engine, replay, Cedar), baselines measured in the same run
	$(BIN)/python benchmarks/run.py

bench-kafka: services  ## the guard on the real broker against a decode-and-forward Faust baseline
	$(BIN)/python benchmarks/guard_kafka.py $(BENCH_ARGS)

bench-scaleout: services  ## the guard with 1 and then 2 workers on the same backlog
	$(BIN)/python benchmarks/guard_scaleout.py $(BENCH_ARGS)

bench-soak: services  ## one guard worker, 500,000 transfers: flat memory, bounded restarts
	$(BIN)/python benchmarks/guard_soak.py $(BENCH_ARGS)

bench-edge: setup  ## the HTTP edge's cost per request against a bare ASGI app and the order service's own requests
	$(BIN)/python benchmarks/edge_bench.py

bench-audit: services  ## audit sink: appends, verification, proofs (SQLite and PostgreSQL)
	$(BIN)/python benchmarks/audit_bench.py $(BENCH_ARGS)

bench-audit-shards: services  ## audit sink: two sinks on 1, 2 and 3 shards against one single log (PostgreSQL)
	$(BIN)/python benchmarks/audit_shards_bench.py $(BENCH_ARGS)

bench-whatif: setup  ## what-if over 1,000,000 historical events against replay of the same events
	$(BIN)/python benchmarks/whatif_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
