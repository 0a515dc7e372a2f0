# labchat: the two commands a new user needs are `make lab` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
JUPYTER_PORT ?= 8888

.PHONY: setup lab test lint demo captures bench clean student worksheets hub-deps docs-img

# Create the venv if missing and install labchat with its test extras.
# Re-runs only when pyproject.toml changes. pip's output (and the build backend's warnings)
# goes to $(VENV)/pip.log, shown only if the install fails: on success it buried the demo
# passwords that `make lab` prints (issue 12).
PIP_LOG := $(VENV)/pip.log
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing labchat and its dependencies into $(VENV) (log: $(PIP_LOG))"
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[test]'; } \
		>$(PIP_LOG) 2>&1 || { cat $(PIP_LOG); echo "pip install failed (above, and in $(PIP_LOG))"; exit 1; }
	@touch $(STAMP)

setup: $(STAMP)

# Certificates and demo accounts if missing, then JupyterLab on the first notebook.
# `labchat init` ends with the demo accounts in a box; JupyterLab logs only warnings, so the
# next thing on screen is its banner with the address (JUPYTER_LOG_LEVEL=INFO for the rest).
# Jupyter refuses to run as root (a container, CI) unless told --allow-root.
JUPYTER_LOG_LEVEL ?= WARN
lab: setup
	@$(PY) -m labchat init
	@$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.port=$(JUPYTER_PORT) \
		--LabApp.default_url=/lab/tree/00-start-here.ipynb \
		--ServerApp.log_level=$(JUPYTER_LOG_LEVEL) --LabApp.log_level=$(JUPYTER_LOG_LEVEL) \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(JUPYTER_ARGS)

# Every test, notebooks included. Non-zero exit on any failure.
# The notebooks run twice under nbval (outputs compared, notebooks/sanitize.cfg hides what
# differs run to run): with whatever capture mode works here, then with the shipped captures.
# Importing matplotlib's font_manager first builds its font cache, whose one-time notice
# would otherwise land on a notebook's stderr. Only the lab's own notebooks (NN-*.ipynb) run:
# one a learner made in JupyterLab (Untitled.ipynb) is theirs, not a test (issue 12).
LAB_NOTEBOOKS = $(sort $(wildcard notebooks/[0-9][0-9]-*.ipynb))
test: setup
	$(PY) -m pytest $(PYTEST_ARGS) tests
	$(PY) -c "import matplotlib.font_manager"
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg \
		--nbval-cell-timeout=120 -p no:cacheprovider $(LAB_NOTEBOOKS)
	LABCHAT_CAPTURE_MODE=offline $(PY) -m pytest --nbval --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=120 \
		-p no:cacheprovider $(LAB_NOTEBOOKS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# Regenerate the reference captures in captures/ (pcapng + keys.log + manifest.json each).
captures: setup
	$(PY) -m labchat capture --all --out captures --mode private

# Headless demo: capture a TLS 1.3 chat, draw its ladder, print what happened.
demo: setup
	$(PY) -m labchat demo --out captures/demo

# The README's pictures, drawn again by today's code (issue 12: a picture drawn once went
# stale): the TLS 1.3 ladder from the reference capture, then the notebook screenshots that
# tests/test_browser.py takes in headless chromium. Run it after `make captures` or a change
# to labchat/plots.py; tests/test_docsimg.py fails until the ladder is redrawn.
docs-img: setup
	$(PY) -m labchat.docsimg
	LABCHAT_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_browser.py

# Benchmarks (bench/README.md): handshakes vs openssl s_server, room fan-out vs Redis pub/sub,
# capacity and memory, lab latency, the classroom attacks (bench/attacks.py). Loopback only,
# about 12 minutes; writes bench/results/
# Installs redis-server with apt-get only if it is missing and we are root.
bench: setup
	@sh bench/ensure_deps.sh
	$(PY) -m bench.run $(BENCH_ARGS)

# The student edition of the notebooks (answers removed, solution cells emptied, checks kept)
# in student/ (STUDENT_DIR=...): hand that folder out. notebooks/README.md has the convention.
STUDENT_DIR ?= student
student: setup
	$(PY) -m labchat student-edition $(STUDENT_DIR)

# One printable page per notebook (objectives, time, the questions, room to answer) in
# worksheets/ (WORKSHEET_DIR=...): HTML, and PDF too where chromium is installed.
WORKSHEET_DIR ?= worksheets
worksheets: setup
	$(PY) -m labchat.classroom.worksheet $(WORKSHEET_DIR) \
		$(if $(shell command -v chromium || command -v chromium-browser),--pdf)

# configurable-http-proxy, the proxy in front of JupyterHub, from npm into hub/node_modules
# (versions pinned in hub/package-lock.json). tests/test_jupyterhub.py and a class server use
# it (docs/classroom.md). Needs node 20+ and npm.
hub-deps: hub/node_modules/.bin/configurable-http-proxy

hub/node_modules/.bin/configurable-http-proxy: hub/package.json hub/package-lock.json
	npm ci --prefix hub --no-audit --no-fund --loglevel=error
	@touch $@
