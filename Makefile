# Forge: every target sets up what it needs (venv, install, generated code).
#   make run        start the whole stack on the embedded PostgreSQL
#   make test       lint, type-check and run every test
#   make test-fast  run the tests not marked slow, for quick feedback while working
#   make bench      run the benchmark and print the table
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GEN := clients/python/forge/v1
# forge.Client, generated from AsyncClient (clients/python/sync_client.py), never committed.
SYNC := clients/python/forge/_sync.py
PROTO := proto/forge/v1/broker.proto

.PHONY: setup run test lint pytest proto bench clean

setup: $(STAMP) $(SYNC)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The client package includes the generated forge.v1 module, so generate it first with just the
# code generators installed, then install every distribution (editable) and the dev tools.
PYPROJECTS := clients/python/pyproject.toml common/pyproject.toml broker/pyproject.toml \
              workerd/pyproject.toml gateway/pyproject.toml
$(STAMP): requirements-dev.txt $(PYPROJECTS) $(GEN)/broker_pb2.py
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

proto: $(GEN)/broker_pb2.py

$(SYNC): clients/python/forge/client.py clients/python/sync_client.py | $(BIN)/python
	$(BIN)/python clients/python/sync_client.py

$(GEN)/broker_pb2.py: $(PROTO) | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check grpcio-tools mypy-protobuf googleapis-common-protos
	mkdir -p $(GEN)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc \
	  -I proto -I "$$($(BIN)/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(list(google.api.__path__)[0])))')" \
	  --python_out=clients/python --mypy_out=clients/python \
	  --grpc_python_out=clients/python --mypy_grpc_out=clients/python \
	  --descriptor_set_out=$(GEN)/broker.binpb --include_source_info --include_imports \
	  $(PROTO)
	touch $(GEN)/__init__.py

run: setup dashboard
	$(BIN)/python scripts/stack.py

test: setup lint dashboard-test pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: setup dashboard chromium pgbouncer node-client
	$(BIN)/python -m pytest

# The fast tier: every test not marked `slow` (see pyproject.toml). Slow ones start many processes
# or run for long: chaos, bench smoke, the browser and Node tests, the fuzzers, the workerd crash,
# shutdown, restart and lease suites, metrics, CLI runs and the client install test. Needs no
# dashboard build, Chromium or Node; no lint either (make lint).
.PHONY: test-fast
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" -n 4

bench: setup
	$(BIN)/python -m bench

# The chaos suite at full size: kills, broker and PostgreSQL restarts while 20,000 jobs drain.
# Options: make chaos CHAOS_ARGS="--jobs 5000 --seed 7"
.PHONY: chaos
chaos: setup
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

# --- dashboard: React + Vite app in dashboard/, served by the gateway at / -------------------
DASH := dashboard
# npm writes node_modules/.package-lock.json on every install: the stamp of `npm ci`.
DASH_DEPS := $(DASH)/node_modules/.package-lock.json
DASH_SRC := $(shell find $(DASH)/src $(DASH)/public -type f 2>/dev/null) \
            $(DASH)/index.html $(DASH)/vite.config.ts $(DASH)/tsconfig.json

.PHONY: dashboard dashboard-test chromium e2e screenshot

$(DASH_DEPS): $(DASH)/package.json $(DASH)/package-lock.json
	cd $(DASH) && npm ci --no-audit --no-fund
	touch $@

# Type-checks, then builds; redone only when a source, the config or the lock file changes.
$(DASH)/dist/index.html: $(DASH_DEPS) $(DASH_SRC)
	cd $(DASH) && npm run build
	touch $@

dashboard: $(DASH)/dist/index.html

dashboard-test: $(DASH_DEPS)
	cd $(DASH) && npm test

# Debian's chromium for the browser tests, installed only when /usr/bin/chromium is missing.
chromium:
	scripts/install-package.sh chromium "$${CHROMIUM:-/usr/bin/chromium}"

# Debian's pgbouncer for tests/test_pgbouncer.py, installed only when /usr/sbin/pgbouncer is missing.
.PHONY: pgbouncer
pgbouncer:
	scripts/install-package.sh pgbouncer "$${PGBOUNCER:-/usr/sbin/pgbouncer}"

e2e: setup dashboard chromium
	$(BIN)/python -m pytest tests/test_dashboard_e2e.py

# --- clients/node: the Node.js client (tests/test_node_client.py runs its example) -----------
NODE_CLIENT := clients/node
NODE_DEPS := $(NODE_CLIENT)/node_modules/.package-lock.json

.PHONY: node-client

$(NODE_DEPS): $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund
	touch $@

node-client: $(NODE_DEPS)

# Regenerates docs/screenshots/*.png (a picture of each view, for the README): the browser test
# writes them there only when asked (FORGE_DOCS_SCREENSHOTS=1), else under dashboard/e2e/screenshots/.
screenshot: setup dashboard chromium
	FORGE_DOCS_SCREENSHOTS=1 $(BIN)/python -m pytest tests/test_dashboard_e2e.py::test_dashboard_in_a_real_browser

clean:
	rm -rf $(VENV) $(GEN) .pytest_cache .mypy_cache .ruff_cache $(DASH)/node_modules $(DASH)/dist \
	  $(NODE_CLIENT)/node_modules
