# labchat: the two commands a new user needs are `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
JUPYTER_PORT ?= 8888

.PHONY: setup lab test lint demo captures bench clean

# Create the venv if missing and install labchat with its test extras.
# Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

# Certificates and demo accounts if missing, then JupyterLab on the first notebook.
lab: setup
	$(PY) -m labchat init
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.port=$(JUPYTER_PORT) \
		--LabApp.default_url=/lab/tree/00-start-here.ipynb $(JUPYTER_ARGS)

# Every test, notebooks included. Non-zero exit on any failure.
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Regenerate the reference captures in captures/ (pcapng + keys.log + manifest.json each).
captures: setup
	$(PY) -m labchat capture --all --out captures
