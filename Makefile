# Front door: `make run` serves on embedded defaults, `make test` runs the whole suite.
# VENV may live outside the checkout (CI caches it under ~/.cache/alo).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 9090
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)


.PHONY: install run migrate admin test test-fast bench lint clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

# The console's first account (asks for a name and a password).
admin: migrate
	$(PY) manage.py createsuperuser

run: migrate
	PORT=$(PORT) $(PY) manage.py serve

# The whole suite on SQLite, then the database-backed tests again on a real PostgreSQL.
# (Tests whose subject does not touch the service's database run once: -m "not database_independent".)
test: install
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS)
	$(PY) tests/with_postgres.py $(PY) -m pytest tests/contract tests/learning tests/test_jobs.py tests/test_web_boot.py \
		tests/integration -m "not database_independent" --durations=25 $(PYTEST_ARGS)

# Unit and contract tests only (no servers started).
test-fast: install
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

bench: install
	$(PY) bench/predict.py
	$(PY) bench/webhooks.py
	$(PY) bench/push.py

clean:
	rm -rf data .pytest_cache
