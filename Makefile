# The two commands: `make run` and `make test`. Each bootstraps .venv once and
# reinstalls only when setup.cfg changes (stamp files).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app oidc_provider
HOST   ?= 127.0.0.1
PORT   ?= 5000
E2E    := tests/e2e

.PHONY: run test lint e2e-deps demo bench bench-deps clean translations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(FLASK) clients check
	$(FLASK) db upgrade
	$(FLASK) keys ensure
	WEB_HOST=$(HOST) WEB_PORT=$(PORT) $(FLASK) serve

# The provider and a demo app (examples/demo_rp) for each of the six apps of clients.yaml, :5001–:5006.
$(VENV)/.installed-demo: examples/demo_rp/requirements.txt | $(VENV)/.installed
	$(BIN)/pip install -q -r examples/demo_rp/requirements.txt
	touch $@

demo: $(VENV)/.installed $(VENV)/.installed-demo
	$(FLASK) clients check
	$(FLASK) db upgrade
	$(FLASK) keys ensure
	$(BIN)/python -m examples.launcher

# The catalogs (oidc_provider/translations): extract every marked sentence from the
# package and the templates, merge it into each language's .po (new ones empty, none
# guessed), and compile the .mo files the portal reads (committed, so a checkout runs as is).
# Translate the empty msgstr in the .po, then run it again; tests/test_translations.py checks.
TRANSLATIONS := oidc_provider/translations
translations: $(VENV)/.installed
	$(BIN)/pybabel -q extract -F babel.cfg -k _l -k N_ --no-location --sort-output \
	  --project "Login Portal" -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel -q update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) \
	  --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d $(TRANSLATIONS) --statistics

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

test: $(VENV)/.installed-test e2e-deps $(E2E)/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest

# Speed per core against the real server (tests/bench): one core serves, another loads;
# exits non-zero when a target is missed. DATABASE_URL=… or BENCH_DB=postgres for PostgreSQL.
bench: $(VENV)/.installed-test bench-deps
	$(BIN)/python tests/bench

bench-deps:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || \
	  { echo "make bench needs wrk: apt-get install -y wrk" >&2; exit 1; }

# Debian packages the browser tests need (installed when running as root).
e2e-deps:
	@bash tests/e2e/install-deps.sh

# openid-client for the certified-RP test, from the lock; again only when the lock changes.
$(E2E)/node_modules/.installed: $(E2E)/package-lock.json | e2e-deps
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(E2E) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm is missing: the openid-client test will be skipped" >&2; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
