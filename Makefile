# The negatives study. Two commands do everything on a fresh machine:
#   make run    set up, then execute every notebook at the cpu scale into runs/
#   make test   set up if needed, then the unit tests and every notebook at the smoke scale
SHELL := /bin/bash
PYTHON ?= python3
# The virtual environment lives outside the clone so that clones share it; a change of
# requirements.txt (its hash names the stamp) reinstalls.
VENV ?= $(HOME)/.cache/negatives/venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-$(shell sha1sum requirements.txt | cut -c1-16)
SCALE ?= cpu
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export PYTHONUNBUFFERED := 1

.PHONY: help setup env data run notebooks lab test bench clean

help:
	@echo "make run | test | lab | notebooks | bench | clean   (SCALE=smoke|cpu|gpu for run)"

env: $(STAMP)
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "error: could not create a virtual environment at $(VENV) with $(PYTHON)."; \
	  echo "       Install Python 3.11 with venv (Debian: apt-get install python3-venv) or set PYTHON=..."; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt || { \
	  echo "error: pip could not install requirements.txt into $(VENV)."; \
	  echo "       Check that PyPI is reachable; torch==2.14.1 is large when not on local disk."; exit 1; }
	rm -f $(VENV)/.requirements-* && touch $@

# Data and WordNet: tried online first, else from Debian's packages (installed when
# missing and apt-get is usable), else a clear error. A second call fetches nothing.
data: env
	$(PY) -m cl.data fetch
	$(PY) -m cl.semantics fetch

setup: env data

run: setup
	$(PY) -m cl.study run --scale $(SCALE)

notebooks: env
	$(PY) -m jupytext --sync notebooks/*.py

lab: setup notebooks
	$(PY) -m jupyter lab notebooks/

test: setup
	rm -rf runs/smoke
	$(PY) -m cl.study prepare --scale smoke
	$(PY) -m pytest --nbval-lax -p no:cacheprovider tests runs/smoke/notebooks/*.ipynb

bench: setup
	$(PY) -m cl.bench

clean:
	rm -rf runs/ notebooks/*.ipynb notebooks/.ipynb_checkpoints .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
