# The two commands a newcomer needs:   make run   (the whole graph on the demo drops)   make test
# Both create the virtual environment and install what they need on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export PYTHONUNBUFFERED := 1

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test dev validate benchmark clean serve chromium

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed
	$(PY) -c "from pinlanding_assets.instance import ensure_dagster_home; ensure_dagster_home()"

run: install
	$(VENV)/bin/pinlanding run

# The browser test drives Debian's Chromium (Playwright with the system browser's executable).
chromium:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

test: install chromium
	$(PY) -m pytest

serve: install
	$(VENV)/bin/pinlanding serve

dev: install
	$(VENV)/bin/dagster dev -w workspace.yaml

validate: install
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

benchmark: install
	$(PY) benchmarks/catalog_drop.py

clean:
	rm -rf data/warehouse .dagster_home
