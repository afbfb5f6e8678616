# make run   - create .venv, install, start the server on 127.0.0.1:9003 (dev profile, simulator on)
# make test  - install what the tests need (Python, npm and, as root, Debian packages), lint, type-check, test
# make bench - run the benchmark scenarios (see bench/README.md)
# make client-types - regenerate the Python SDK's types, close codes and protobuf schema

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

CLIENT := clients/python

.PHONY: run test lint typecheck pytest bench proto client-types js-generate dashboard system-deps clean

# The client package comes second: its `aurigraph-stream` command (the same name) runs
# `listen` itself and hands serve and token to the server package.
$(VENV)/.run-installed: pyproject.toml $(CLIENT)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	$(PY) -m pip install --quiet -e '$(CLIENT)[cli]'
	touch $@

$(VENV)/.test-installed: pyproject.toml $(CLIENT)/pyproject.toml $(VENV)/.run-installed
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet -e '$(CLIENT)[all]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The TypeScript client and the dashboard's build tools (TypeScript, esbuild, uPlot, ws).
clients/js/node_modules/.installed: clients/js/package.json clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.run-installed
	$(VENV)/bin/aurigraph-stream serve --profile dev $(ARGS)

system-deps:
	bash scripts/system-deps.sh

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.test-installed
	$(VENV)/bin/mypy

pytest: $(VENV)/.test-installed node_modules/.installed clients/js/node_modules/.installed system-deps
	PATH="$(CURDIR)/node_modules/.bin:$$PATH" $(VENV)/bin/pytest $(ARGS)

test: lint typecheck pytest

bench: $(VENV)/.test-installed system-deps
	$(PY) -m bench $(ARGS)

# Regenerate the committed Protocol Buffers code after editing aurigraph_v11.proto.
proto: $(VENV)/.run-installed
	$(PY) -m pip install --quiet -e '.[proto]'
	cd src && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CURDIR)/$(PY) -m grpc_tools.protoc -I. \
		--python_out=. --mypy_out=. aurigraph_stream/proto/aurigraph_v11.proto

# Regenerate the TypeScript client's close codes and message types (clients/js/src/generated)
# from the server's contract and JSON Schemas, after changing either.
js-generate: $(VENV)/.run-installed clients/js/node_modules/.installed
	$(PY) scripts/js_contract.py | node clients/js/scripts/generate.mjs

# Rebuild the committed dashboard assets (src/aurigraph_stream/dashboard/assets) from
# clients/js/dashboard and the TypeScript client; `make run` serves them without Node.
dashboard: clients/js/node_modules/.installed
	cd clients/js && node scripts/build-dashboard.mjs

# Regenerate the Python SDK's committed code from the server's schemas and close codes.
client-types: $(VENV)/.test-installed
	$(PY) -m scripts.client_codegen

clean:
	rm -rf $(VENV) node_modules clients/js/node_modules clients/js/build clients/js/dist \
		.mypy_cache .ruff_cache .pytest_cache
