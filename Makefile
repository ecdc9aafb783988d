# Tollgate: `make run` serves the portal, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench chromium wrk setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps: reinstall only when a requirements file changes.
$(VENV)/.run-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.run-installed

setup: $(VENV)/.run-installed
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py migrate --noinput -v 0
	@# TOLLGATE_CONFIG=tollgate.toml: the models and plans as code, loaded on every start.
	if [ -n "$$TOLLGATE_CONFIG" ]; then \
		DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py load_config "$$TOLLGATE_CONFIG"; fi
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py collectstatic --noinput -v 0

run: setup
	@echo "Tollgate on http://$(HOST):$(PORT)/  (Ctrl+C stops it)"
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/uvicorn portal.asgi:application --host $(HOST) --port $(PORT) \
		--no-access-log $(UVICORN_ARGS)

# Debian's Chromium for the browser tests (Playwright cannot download its own browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

test: $(VENV)/.dev-installed chromium
	DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only $(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# wrk from Debian: the load tool of `make bench`.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }

bench: $(VENV)/.dev-installed wrk
	DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only $(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles db.sqlite3 db.sqlite3-wal db.sqlite3-shm
