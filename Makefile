# The two README commands (make test, make demo) and their set-up. Needs Python 3.11, Node 20 and make.
# Every step is idempotent: stamps record what is installed, so a rerun only redoes what changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
PIP_FLAGS := --disable-pip-version-check --quiet

.PHONY: venv test lint demo bench clean

venv: $(VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -r requirements-dev.txt
	touch $@

# checkov pins dependency versions that clash with the app's: it gets its own venv.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install $(PIP_FLAGS) -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest tests/unit tests/integration tests/e2e

demo: venv
	$(PY) -m sandbox.demo

BENCHMARKS := cold_import drain_vs_kubectl preflight_scale bluegreen scan_scale

# Benchmarks print figures (never asserted in tests); each starts and stops what it needs.
bench: venv
	@for b in $(BENCHMARKS); do echo "== bench/$$b.py"; $(PY) -m bench.$$b || exit 1; done

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .ruff_cache .hypothesis .sandbox
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
