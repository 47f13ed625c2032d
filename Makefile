# The two commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test test-slow lint typecheck clean bench catalogs translations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

# The worker runs in the background beside the dev server and is stopped with it.
# DEV_HOST/DEV_PORT tell the app where it is served, so Checkout's return URLs
# and the sandbox's webhook deliveries follow PORT= (unless PUBLIC_BASE_URL is set).
DEV_ENV = DEV_HOST=$(HOST) DEV_PORT=$(PORT)
# Message catalogs: translations/<lang>/LC_MESSAGES/messages.po is the source,
# its .mo is compiled here (never committed; tests/conftest.py compiles too).
catalogs: $(VENV)/.installed
	$(BIN)/pybabel -q compile -d translations

# After changing donor-facing text: extract it again (babel.cfg says from where)
# and merge it into every language's .po; then translate what is new or fuzzy
# (tests/unit/test_translations.py fails until every string is translated).
translations: $(VENV)/.installed
	$(BIN)/pybabel -q extract -F babel.cfg -k _l -k lazy_gettext -k N_ --add-location=file \
		--sort-output --no-wrap --project=donations -o translations/messages.pot .
	$(BIN)/pybabel -q update -i translations/messages.pot -d translations --no-wrap \
		--ignore-pot-creation-date --ignore-obsolete

run: $(VENV)/.installed catalogs
	$(BIN)/donations db upgrade
	$(DEV_ENV) $(BIN)/donations worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(DEV_ENV) $(BIN)/donations run --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test catalogs
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-test catalogs
	SLOW_TESTS=1 $(BIN)/pytest $(PYTEST_ARGS)

# The benchmarks (see README "Speed" and bench/README.md): bench/all.py runs
# each on loopback within a time budget and prints one table (also
# bench-results/all.json): the web stack under gunicorn loaded by wrk (each
# speed beside a bare Flask reference measured in the same run), posting, the
# worker, stripe sync, and the finance area at BENCH_PAYMENTS (seeded once in
# its own database and reused; BENCH_PAYMENTS=100000 for a quick run). wrk is
# Debian's package, installed here when missing and possible; without it the
# web step says so. Fails if a target is missed.
BENCH_PAYMENTS ?= 1000000
BENCH_CHARGES ?= 20000
bench: $(VENV)/.installed
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } \
	      || echo "bench: could not install wrk; the web benchmarks will say so"; \
	  else echo "bench: wrk is missing (apt-get install wrk); the web benchmarks will say so"; fi; }
	BENCH_PAYMENTS=$(BENCH_PAYMENTS) BENCH_CHARGES=$(BENCH_CHARGES) $(BIN)/python bench/all.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
