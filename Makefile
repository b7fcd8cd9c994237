# Forge: every target sets up what it needs (venv, install, generated code).
#   make run    start the whole stack on the embedded PostgreSQL
#   make test   lint, type-check and run every test
#   make bench  run the benchmark and print the table
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GEN := clients/python/forge/v1
PROTO := proto/forge/v1/broker.proto

.PHONY: setup run test lint pytest proto bench clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The package includes the generated forge.v1 module, so generate it first with just the
# code generators installed, then install the project (editable) with everything else.
$(STAMP): pyproject.toml $(GEN)/broker_pb2.py
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

proto: $(GEN)/broker_pb2.py

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

run: setup
	$(BIN)/python scripts/stack.py

test: setup lint pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(GEN) .pytest_cache .mypy_cache .ruff_cache
