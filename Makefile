# The course's two commands: `make lab` and `make test`. Everything else is optional.
# Works with GNU make on Linux and macOS; see README for the plain pip equivalents.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
IP     ?= 127.0.0.1
PORT   ?= 8888
JOBS   ?= 2
export TF_CPP_MIN_LOG_LEVEL ?= 2

# Reinstall only when the requirements or the package metadata change.
REQ_HASH := $(shell $(PYTHON) -c "import hashlib;print(hashlib.sha256(open('requirements.txt','rb').read()+open('pyproject.toml','rb').read()).hexdigest()[:16])")
STAMP    := $(VENV)/.installed-$(REQ_HASH)
BENCH_STAMP := $(VENV)/.bench-installed
DEPLOY_STAMP := $(VENV)/.deploy-installed-$(shell $(PYTHON) -c "import hashlib;print(hashlib.sha256(open('requirements-deploy.txt','rb').read()).hexdigest()[:16])")

.PHONY: help setup system-deps checkpoint lab test test-fast bench release grade course-report render lint clean

help:
	@echo "make lab    set up (once) and start JupyterLab on notebooks/  (IP=0.0.0.0 PORT=8888 on a VM)"
	@echo "make test   set up (once) and run the whole test suite"
	@echo "make bench  print the benchmark table"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

# System packages, as package:command (the Debian package, and a command it installs; a package
# is missing when its command is). bubblewrap: the grader's sandbox (setpriv is in util-linux);
# chromium: the browser tests of the lab (tests/test_browser.py), not needed to grade.
# The missing ones are installed here when running as root with apt (CI, a class VM); otherwise
# the README says how.
GRADER_PACKAGES := bubblewrap:bwrap
SYSTEM_PACKAGES := $(GRADER_PACKAGES) chromium:chromium
system-deps:
	@missing=""; for pc in $(SYSTEM_PACKAGES); do \
		command -v "$${pc#*:}" >/dev/null 2>&1 || missing="$$missing $${pc%%:*}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "note: not installed:$$missing; the tests that need them will be skipped (see README)"; fi

checkpoint: setup
	PYTHON=$(BIN)/python ./download_checkpoint.sh

# JupyterLab with the learners' Jupyter settings (deploy/jupyter/learner): no nbgrader instructor
# tools, no news pop-up; the class hub gives its learners the same. The command line lives in
# workshop/tools/lab.py, which the browser tests start too.
lab: checkpoint
	$(BIN)/python -m workshop lab --ip=$(IP) --port=$(PORT)

# the tests compare against the benchmark's baselines too, so they install its extras
$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(BIN)/python -m pip install -r requirements-bench.txt
	@touch $@

# serving a class (deploy/): the hub and what tests it in a browser
$(DEPLOY_STAMP): requirements-deploy.txt $(STAMP)
	$(BIN)/python -m pip install -r requirements-deploy.txt
	@rm -f $(VENV)/.deploy-installed-*
	@touch $@

test: checkpoint $(BENCH_STAMP) $(DEPLOY_STAMP) system-deps
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup

test-fast: $(BENCH_STAMP) $(DEPLOY_STAMP) system-deps
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup -m "not slow"

bench: $(BENCH_STAMP)
	$(BIN)/python -m workshop.bench

release: setup
	$(BIN)/python -m workshop release

SUBMISSIONS ?= nbgrader/submitted
OUT ?= results
grade: setup
	@$(MAKE) --no-print-directory system-deps SYSTEM_PACKAGES="$(GRADER_PACKAGES)"
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m workshop grade $(SUBMISSIONS) --solutions solutions --out $(OUT) --jobs $(JOBS)

course-report: checkpoint
	$(BIN)/python -m workshop course-report

# the course as HTML pages with the solution run's outputs, the learner's view, in build/course/
# (make render ONLY=03,06 WITH_SOLUTIONS=1: some chapters; also the instructor's view)
render: checkpoint
	$(BIN)/python -m workshop render $(if $(ONLY),--only $(ONLY)) $(if $(WITH_SOLUTIONS),--with-solutions)

lint: setup
	$(BIN)/ruff check workshop tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
