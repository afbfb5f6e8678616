# make run   - create .venv, install, start the server on 127.0.0.1:9003 (dev profile, simulator on)
# make test  - install what the tests need (Python, npm and, as root, Debian packages), lint, type-check, test
# make bench - run the benchmark scenarios (see bench/README.md)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: run test lint typecheck pytest bench proto system-deps clean js-generate dashboard

$(VENV)/.run-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.run-installed
	$(PY) -m pip install --quiet -e '.[test]'
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

clean:
	rm -rf $(VENV) node_modules clients/js/node_modules clients/js/build clients/js/dist \
		.mypy_cache .ruff_cache .pytest_cache
