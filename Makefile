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
# make's commands import this clone's cl even when another clone sharing the venv installed
# itself last; the editable install serves JupyterLab and scripts run outside make
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export PYTHONUNBUFFERED := 1

.PHONY: help setup env editable data run notebooks lab test lint bench device-bundle clean

help:
	@echo "make run | test | lab | notebooks | lint | bench | clean   (SCALE=smoke|cpu|gpu for run)"

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

# the cl package, installed in editable mode: notebooks and scripts import it from anywhere, and
# an edit of cl/ takes effect at once. A clone of its own installs itself (the venv is shared).
editable: env
	@env -u PYTHONPATH $(PY) -c "import cl, pathlib, sys; sys.exit(pathlib.Path(cl.__file__).parent != pathlib.Path('cl').resolve())" \
	  2>/dev/null || $(PY) -m pip install --quiet --no-deps --no-build-isolation -e . > /dev/null 2>&1 || { \
	  echo "error: pip could not install the cl package in editable mode (pip install -e .) into $(VENV)."; exit 1; }

# Data and WordNet: tried online first, else from Debian's packages (installed when
# missing and apt-get is usable), else a clear error. A second call fetches nothing.
data: editable
	$(PY) -m cl.data fetch
	$(PY) -m cl.semantics fetch

setup: env data

run: setup
	$(PY) -m cl.study run --scale $(SCALE)

notebooks: editable
	$(PY) -m jupytext --sync notebooks/*.py

# as root (most containers) JupyterLab wants --allow-root
lab: setup notebooks
	$(PY) -m jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# The plan's runs train first; then nbval executes the notebooks, which reuse them. The second pytest
# checks runs/smoke after that: every run's name and identity as pinned, and that no notebook trained
# (a file under tests/ named apart, so that the first pytest, which collects tests/, leaves it out).
test: setup
	rm -rf runs/smoke
	$(PY) -m cl.study prepare --scale smoke
	$(PY) -m cl.study train --scale smoke
	$(PY) -m pytest --nbval-lax -p no:cacheprovider tests runs/smoke/notebooks/*.ipynb
	$(PY) -m pytest -q -p no:cacheprovider tests/smoke_identities_check.py tests/smoke_study_check.py

lint: editable
	$(PY) -m ruff check cl tests notebooks

bench: setup
	$(PY) -m cl.bench

# What a lent GPU machine needs beside its own torch: pure-Python tqdm and PyYAML (its C extension, if
# copied, is skipped on another Python) to carry with data/ (docs/gpu-check.md has the command)
device-bundle: env
	rm -rf build/device-deps && mkdir -p build/device-deps
	cp -r $$($(PY) -c "import tqdm, yaml, os; print(os.path.dirname(tqdm.__file__), os.path.dirname(yaml.__file__))") build/device-deps/

clean:
	rm -rf runs/ notebooks/*.ipynb notebooks/.ipynb_checkpoints .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
