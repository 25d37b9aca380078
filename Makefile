# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000

.PHONY: run test install install-dev install-chaos lint bench chaos clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-chaos: $(VENV)/.installed-dev
	$(PY) -m pip install --quiet -e '.[dev,chaos]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-chaos: $(VENV)/.installed-chaos

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	PORT=$(PORT) $(PY) manage.py serve

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .

bench: install-dev
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# Fault injection against a real qcluster (PostgreSQL + Redis on 127.0.0.1); see benchmarks/chaos/run.py.
chaos: install-chaos
	$(PY) benchmarks/chaos/run.py $(CHAOS_ARGS)

clean:
	rm -rf var .pytest_cache
