# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
SHELL  := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: run prod test install install-dev install-chaos lint bench chaos clean

PIP    := $(PY) -m pip install --disable-pip-version-check --progress-bar on

$(VENV)/.installed: pyproject.toml
	@echo "== Creating the virtualenv in $(VENV) and installing the project (about 20 s the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) --quiet --upgrade pip
	@$(PIP) -e . 2>&1 | awk '/^(Collecting|Successfully installed|ERROR)/'
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	@echo "== Installing the test tools"
	@$(PIP) -e '.[dev]' 2>&1 | awk '/^(Collecting|Successfully installed|ERROR)/'
	@touch $@

$(VENV)/.installed-chaos: $(VENV)/.installed-dev
	@echo "== Installing what the fault harness needs"
	@$(PIP) --quiet -e '.[dev,chaos]'
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-chaos: $(VENV)/.installed-chaos

run: install
	@echo "== Migrating the database"
	@$(PY) manage.py migrate --noinput
	@echo "== Loading the demo organization"
	@$(PY) manage.py seed_demo
	@PORT=$(PORT) $(PY) manage.py serve

# Production (README "Production"): DEBUG off, deploy checks, migrate, collectstatic, then gunicorn
# and WORKER_PROCESSES qcluster processes. Needs SECRET_KEY and ALLOWED_HOSTS; loads no demo data.
prod: install
	@DEBUG=0 PORT=$(PORT) $(PY) manage.py serve_prod

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .

# mypy with the Django and DRF plugins; its settings are [tool.mypy] in pyproject.toml (the runtime
# and nodes packages strict, the rest mypy's defaults). CI runs it right after ruff.
.PHONY: typecheck
typecheck: install-dev
	$(VENV)/bin/mypy

bench: install-dev
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# Fault injection against a real qcluster (PostgreSQL + Redis on 127.0.0.1); see benchmarks/chaos/run.py.
chaos: install-chaos
	$(PY) benchmarks/chaos/run.py $(CHAOS_ARGS)

clean:
	rm -rf var .pytest_cache
