# The two commands a newcomer needs:   make run   (the whole graph on the demo drops)   make test
# Both create the virtual environment and install what they need on first use. `make test-fast` runs the
# fast tier (synthetic data, no models) in a lighter environment of its own, without the model packages.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export PYTHONUNBUFFERED := 1

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

FAST_VENV ?= .venv-fast

.PHONY: install run test test-fast lint dev validate benchmark clean serve chromium postgresql lighthouse

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[models,test]'
	touch $@

$(FAST_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(FAST_VENV)/bin/python || $(PYTHON) -m venv $(FAST_VENV)
	$(FAST_VENV)/bin/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed
	$(PY) -c "from pinlanding_assets.instance import ensure_dagster_home; ensure_dagster_home()"

run: install
	$(VENV)/bin/pinlanding run

# The browser test drives Debian's Chromium (Playwright with the system browser's executable).
chromium:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

# The daemon test keeps its Dagster instance in a throwaway PostgreSQL cluster (Debian's PostgreSQL 15).
postgresql:
	test -n "$$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null)" || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q postgresql; }

# The site audit runs Lighthouse from npm (12.2.3: later versions want Node 22) against Debian's Chromium.
LIGHTHOUSE := .lighthouse/node_modules/.bin/lighthouse
lighthouse: $(LIGHTHOUSE)
$(LIGHTHOUSE):
	command -v npm >/dev/null || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q nodejs npm; }
	npm install --prefix .lighthouse --no-audit --no-fund --loglevel=error lighthouse@12.2.3

lint: install
	$(VENV)/bin/ruff check .

test: install chromium postgresql lighthouse lint
	$(PY) -m pytest

test-fast: $(FAST_VENV)/.installed
	$(FAST_VENV)/bin/ruff check .
	$(FAST_VENV)/bin/python -m pytest pinlanding_assets_tests/fast --no-models

serve: install
	$(VENV)/bin/pinlanding serve

dev: install
	$(VENV)/bin/dagster dev -w workspace.yaml

validate: install
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

benchmark: install
	$(PY) benchmarks/catalog_drop.py

clean:
	rm -rf data/warehouse .dagster_home $(FAST_VENV)
