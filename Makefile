# The two README commands (make test, make demo) and their set-up. Needs Python 3.11, Node 20 and make.
# Every step is idempotent: stamps record what is installed, so a rerun only redoes what changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
PIP_FLAGS := --disable-pip-version-check --quiet

.PHONY: venv test lint demo bench clean k8s screenshots

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

# The test files run side by side on pytest-xdist workers, each starting and stopping what its
# tests need: most of the suite's time is waiting (queues, controllers, maintenance windows), and
# the waits overlap (tests/scheduling.py). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 4

test: lint k8s
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile tests/unit tests/integration tests/e2e tests/realk8s

# K8S=real: each cluster's nodes and workloads on a real control plane (make k8s), driven by the
# emulator's AKS half; the emulator's own Kubernetes model is the fast default.
demo: venv $(if $(filter real,$(K8S)),k8s)
	$(PY) -m sandbox.demo $(if $(filter real,$(K8S)),--kubernetes real)

# The README's two console screenshots, from the real console on the sandbox (needs Chromium).
screenshots: venv
	$(PY) -m pytest tests/e2e/test_console.py -q
	cp test-artifacts/console/console-run.png test-artifacts/console/console-finding.png docs/

BENCHMARKS := cold_import drain_vs_kubectl preflight_scale bluegreen scan_scale rollout

# Benchmarks print figures (never asserted in tests); each starts and stops what it needs.
bench: venv
	@for b in $(BENCHMARKS); do echo "== bench/$$b.py"; $(PY) -m bench.$$b || exit 1; done

# The real-Kubernetes test backend (sandbox/k8s): one all-in-one control-plane binary (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler) and kwok, built from the Go module proxy
# into a folder named after the pins; the stamp makes a rerun instant until a pin or source changes.
# Go keeps its module and build caches in its default places (GOMODCACHE, GOCACHE).
K8S_CP := sandbox/k8s/go/controlplane
K8S_KWOK := sandbox/k8s/go/kwok
K8S_VERSION := $(shell awk '$$1=="k8s.io/kubernetes"{print $$2}' $(K8S_CP)/go.mod)
KWOK_VERSION := $(shell awk '$$1=="sigs.k8s.io/kwok"{print $$2}' $(K8S_KWOK)/go.mod)
K8S_DIR := .cache/k8s/$(K8S_VERSION)-kwok-$(KWOK_VERSION)
K8S_LDFLAGS := -s -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION:v%=%))) \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION:v%=%))) \
	-X k8s.io/component-base/version.gitTreeState=clean

k8s: $(K8S_DIR)/.built

$(K8S_DIR)/.built: $(K8S_CP)/go.mod $(K8S_CP)/go.sum $(wildcard $(K8S_CP)/*.go) $(K8S_KWOK)/go.mod $(K8S_KWOK)/go.sum
	@command -v go >/dev/null || { echo "make k8s needs Go 1.24 or newer (the real-Kubernetes test backend)"; exit 1; }
	cd $(K8S_CP) && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -ldflags='$(K8S_LDFLAGS)' -o $(abspath $(K8S_DIR))/bin/controlplane .
	cd $(K8S_KWOK) && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -ldflags=-s -o $(abspath $(K8S_DIR))/bin/kwok sigs.k8s.io/kwok/cmd/kwok
	touch $@

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .ruff_cache .hypothesis .sandbox
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
