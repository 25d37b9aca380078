# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
SHELL  := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: run prod test check install install-dev install-chaos lint bench chaos clean assets

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

# `make test` runs every test; `make check`, the inner loop, leaves out those marked slow (README
# "Tests"). Both run them in parallel worker processes (pytest-xdist, tests/xdist_schedule.py):
# `make test` one more than the machine has cores (at most 8), because much of the suite waits
# (processes starting, a slow fake SMTP server, a browser's network going quiet) and the extra
# worker uses those waits; `make check`, whose tests only compute, one per core.
# `make test PYTEST_XDIST=` runs the suite in one process.
CORES        := $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
TEST_WORKERS ?= $(shell echo $$(( $(CORES) + 1 > 8 ? 8 : $(CORES) + 1 )))
PYTEST_XDIST ?= -n $(TEST_WORKERS) --dist load
FAST         := not e2e and not browser and not fuzz and not slow

# The tests write bytecode (__pycache__/, git-ignored) even where the environment sets
# PYTHONDONTWRITEBYTECODE: each worker, and each process a test starts, compiled the project again
# otherwise (a worker's collection took twice as long).
test check: export PYTHONDONTWRITEBYTECODE :=
# No screenshots of the browser tests unless asked (`make test SCREENSHOTS=1`): they were a
# seventh of the suite's CPU (tests/browser/conftest.py, `shot`).
test: export SCREENSHOTS ?= 0

test: install-dev
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# The fuzz is not even collected: reading its schema cost each worker seconds.
check: install-dev
	$(PY) -m pytest -n $(CORES) --dist load -m "$(FAST)" --ignore=tests/test_api_fuzz.py $(PYTEST_ARGS)

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

# The canvas (static/web/canvas/: React Flow and dagre, built with esbuild) is committed, so
# neither `make run` nor CI needs Node. After changing crm_automation/web/frontend/, rebuild it
# with Node 18+ and npm: the versions are pinned in package.json and package-lock.json.
FRONTEND := crm_automation/web/frontend
assets:
	cd $(FRONTEND) && npm ci --no-audit --no-fund && npm run build
