# Touchline: `make run` for a working local system, `make test` for the whole suite. See README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
INSTALLED := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
BIN := $(VENV)/bin
LOCAL := deploy/local

.PHONY: run stop status cluster cluster-stop test lint unit integration faults fuzz bench venv infra fmt clean node-check browser-check

# The virtualenv is rebuilt only when pyproject.toml changes, so a second run downloads nothing.
$(INSTALLED): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "[touchline] error: $(PYTHON) not found; Touchline needs Python 3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[touchline] installing Python dependencies into $(VENV)"
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(INSTALLED)

# Segment's Node library, for the tracking API's end-to-end test; from the lock file, so a second run
# installs nothing.
NODE_CHECK := tests/segment_node
$(NODE_CHECK)/node_modules/.package-lock.json: $(NODE_CHECK)/package-lock.json
	@command -v npm >/dev/null || { echo "[touchline] error: npm not found; the tests need Node.js 18+" >&2; exit 1; }
	@echo "[touchline] installing $(NODE_CHECK)'s Node packages"
	@cd $(NODE_CHECK) && npm ci --no-audit --no-fund --loglevel=error

node-check: $(NODE_CHECK)/node_modules/.package-lock.json

# Debian's Chromium, for the console's browser tests (Playwright drives it; it downloads no browser).
CHROMIUM := /usr/bin/chromium
browser-check:
	@test -x $(CHROMIUM) || { echo "[touchline] installing Debian's chromium for the console's browser tests"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) sh -c 'apt-get update -qq && apt-get install -y -qq chromium' >/dev/null; }

infra: venv
	@bash $(LOCAL)/kafka.sh start && bash $(LOCAL)/postgres.sh start

run: venv
	@bash $(LOCAL)/run.sh

stop:
	@bash $(LOCAL)/stop.sh

# A three-node KRaft cluster on loopback (ports 29092-29094) from the same Maven artifacts, for trying
# Touchline with replication 3 / min.insync.replicas 2 (the fault suite starts its own the same way).
CLUSTER := TOUCHLINE_RUN_DIR=$(CURDIR)/.run/cluster TOUCHLINE_KAFKA_NODES=3 TOUCHLINE_KAFKA_PORT=29092 \
	TOUCHLINE_KAFKA_CONTROLLER_PORT=29192
cluster: venv
	@$(CLUSTER) bash $(LOCAL)/kafka.sh start
	@echo "cluster up: TOUCHLINE_KAFKA_BOOTSTRAP=127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094" \
		"TOUCHLINE_KAFKA_REPLICATION_FACTOR=3 TOUCHLINE_KAFKA_MIN_INSYNC_REPLICAS=2"

cluster-stop:
	@$(CLUSTER) bash $(LOCAL)/kafka.sh stop

# Every process with its state, pid, uptime and restarts; then Kafka, PostgreSQL and Prometheus; then the
# pipeline from Prometheus (per stage: records/s, lag, p99), live in a terminal, once otherwise.
status:
	@bash $(LOCAL)/supervise.sh status || true
	@bash $(LOCAL)/kafka.sh status && echo "kafka                  RUNNING" || echo "kafka                  STOPPED"
	@bash $(LOCAL)/postgres.sh status && echo "postgresql             RUNNING" || echo "postgresql             STOPPED"
	@bash $(LOCAL)/prometheus.sh status && echo "prometheus             RUNNING" || echo "prometheus             STOPPED"
	@if [ -t 1 ]; then $(BIN)/python -m services.ops status; else $(BIN)/python -m services.ops status --once; fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit -q

test: lint node-check browser-check
	@bash $(LOCAL)/with-infra.sh $(BIN)/pytest tests/unit tests/integration tests/e2e tests/faults tests/fuzz -q \
		-p no:cacheprovider

# schemathesis against every API with every phase (coverage included) and 500 examples per operation.
fuzz: venv
	@TOUCHLINE_FUZZ_EXAMPLES=500 TOUCHLINE_FUZZ_PHASES=examples,coverage,fuzzing,stateful \
		bash $(LOCAL)/with-infra.sh $(BIN)/pytest tests/fuzz -q -p no:cacheprovider -rA

# Every fault scenario at 1,000 touches/s for 60 s; restarts the local Kafka and PostgreSQL, so not beside
# a `make run` you care about. Writes bench/results/faults.md, the table README.md quotes.
faults: venv
	@TOUCHLINE_FAULTS_FULL=1 bash $(LOCAL)/with-infra.sh $(BIN)/pytest tests/faults -q -p no:cacheprovider -rf

bench: venv
	@bash $(LOCAL)/with-infra.sh $(BIN)/python -m tests.bench

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: stop
	rm -rf .run
