# Tollgate: `make run` serves the portal, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run serve release test lint bench chromium nginx wrk setup clean

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

# The development settings, written once and read by settings.py (the environment wins over it):
# DEBUG on and a secret key of this checkout's own, so every manage.py command works as it is.
.env:
	@umask 077 && printf 'DJANGO_DEBUG=1\nDJANGO_SECRET_KEY=%s\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > $@
	@echo "wrote .env (DJANGO_DEBUG=1 and a new DJANGO_SECRET_KEY)"

setup: .env $(VENV)/.run-installed
	$(BIN)/python manage.py migrate --noinput -v 0
	@# TOLLGATE_CONFIG=tollgate.toml: the models and plans as code, loaded on every start.
	if [ -n "$$TOLLGATE_CONFIG" ]; then $(BIN)/python manage.py load_config "$$TOLLGATE_CONFIG"; fi
	$(BIN)/python manage.py collectstatic --noinput -v 0

run: setup
	@echo "Tollgate on http://$(HOST):$(PORT)/  (Ctrl+C stops it)"
	$(BIN)/uvicorn portal.asgi:application --host $(HOST) --port $(PORT) --no-access-log $(UVICORN_ARGS)

# Production: what a deploy runs once per release (the database, static files, tollgate.toml) ...
release: $(VENV)/.run-installed
	$(BIN)/python manage.py migrate --noinput -v 0
	if [ -n "$$TOLLGATE_CONFIG" ]; then $(BIN)/python manage.py load_config "$$TOLLGATE_CONFIG"; fi
	DJANGO_DEBUG=0 $(BIN)/python manage.py collectstatic --noinput -v 0

# ... and then serves with it: DEBUG off, WEB_CONCURRENCY workers, SHUTDOWN_GRACE for streams on SIGTERM.
serve: $(VENV)/.run-installed
	$(BIN)/python -m portal.serve --host $(HOST) --port $(PORT)

# Debian's Chromium for the browser tests (Playwright cannot download its own browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

# Debian's nginx for the deploy/ test. Only the binary: the test starts its own on a free port;
# the system service the package would start is kept from starting (policy-rc.d says no).
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { made=; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then made=1; \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
			$(SUDO) chmod +x /usr/sbin/policy-rc.d; fi; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx; \
		[ -z "$$made" ] || $(SUDO) rm -f /usr/sbin/policy-rc.d; }

test: $(VENV)/.dev-installed chromium nginx
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
