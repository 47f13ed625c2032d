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

# The benchmarks on PostgreSQL (127.0.0.1:5432); see bench/README.md: posting
# (BENCH_CHARGES charges recognised and settled through app.ledger, database
# donations_bench_posting, made afresh), then the finance area (database
# donations_bench, seeded once per BENCH_PAYMENTS and reused). They need only
# the app itself: no test or load tools. Fails if either misses a target.
BENCH_PAYMENTS ?= 100000
BENCH_CHARGES ?= 20000
bench: $(VENV)/.installed
	$(BIN)/python bench/posting.py --charges $(BENCH_CHARGES); posting=$$?; \
	$(BIN)/python bench/run.py --payments $(BENCH_PAYMENTS) && exit $$posting

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
