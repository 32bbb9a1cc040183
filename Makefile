# edgefm — `make demo` shows the fleet, `make test` checks everything. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install tools tools-status minio portal-assets chromium lint typecheck unit test demo portal portal-screenshots bench clean workload-env workload-test workload-bench prometheus db bench-fleet lab-tools lab-tools-status lab lab-status lab-down demo-render

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# The Pulumi engine (CLI, Python language host, provider plugins): a compatible pulumi on PATH is used as it
# is, otherwise it is built from Go modules into ~/.cache/edgefm/toolchain (see tools/engine/README.md).
tools: install
	$(BIN)/python -m tools.engine.build

tools-status: install
	$(BIN)/python -m tools.engine.build --status

# MinIO for the registry tests, built from its Go module into ~/.cache/edgefm/minio (cold: minutes; warm: instant).
minio: install
	$(BIN)/python -m tools.minio.server build

# The portal's browser libraries (htmx and its SSE extension), pinned by tools/portal-assets/package-lock.json,
# installed from the npm registry and served by the portal itself: no CDN.
PORTAL_ASSETS := tools/portal-assets
PORTAL_VENDOR := edgefm/portal/static/vendor
$(PORTAL_VENDOR)/.installed: $(PORTAL_ASSETS)/package.json $(PORTAL_ASSETS)/package-lock.json
	npm ci --prefix $(PORTAL_ASSETS) --cache $(HOME)/.cache/edgefm/npm --no-audit --no-fund --loglevel=error
	mkdir -p $(PORTAL_VENDOR)
	for spec in htmx.org:dist/htmx.min.js:htmx.min.js htmx-ext-sse:dist/sse.min.js:sse.min.js; do \
	  IFS=: read -r pkg src dst <<< "$$spec"; dir=$(PORTAL_ASSETS)/node_modules/$$pkg; \
	  version=$$(node -p "require('./$$dir/package.json').version"); \
	  { echo "/*! $$pkg $$version (npm), 0BSD: see $$pkg.LICENSE */"; cat $$dir/$$src; } > $(PORTAL_VENDOR)/$$dst; \
	  cp $$dir/LICENSE $(PORTAL_VENDOR)/$$pkg.LICENSE; \
	done
	@touch $@

portal-assets: $(PORTAL_VENDOR)/.installed

# Debian's chromium for the portal's browser tests (Playwright drives it by path; it never downloads one).
chromium:
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
# Prometheus for the health gate's PromQL tests, built from its Go module into ~/.cache/edgefm/prometheus.
prometheus: install
	$(BIN)/python -m tools.prometheus.server build
# PostgreSQL for the journal and job queue (`edgefm db start` runs it embedded): Debian's package.
db:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
# The fleet lab's control plane (kube-apiserver, controller-manager, scheduler, etcd, kwok) and the vendors' CRDs,
# from the Go modules pinned in tools/lab/pins.toml into ~/.cache/edgefm/lab (cold: 15-45 min; warm: instant).
# Binaries in $$EDGEFM_LAB_BIN, or on PATH, are used as they are.
lab-tools: install
	$(BIN)/python -m tools.lab.build

lab-tools-status: install
	$(BIN)/python -m tools.lab.build --status

# One real Kubernetes API per stack (the hub and every site) on 127.0.0.1, state in .state/lab/.
lab: lab-tools
	$(BIN)/python -m edgefm lab up

lab-status: install
	$(BIN)/python -m edgefm lab status

lab-down: install
	$(BIN)/python -m edgefm lab down

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy edgefm components tools tests bench __main__.py
	# Separately: the pack's __main__.py would clash with the program's.
	$(BIN)/mypy policies/guardrails/__main__.py policies/guardrails/edgefm_guardrails

unit: install minio tools lab-tools portal-assets chromium prometheus db
	$(BIN)/python -m pytest -q

test: lint typecheck unit workload-test

# The bridge-defects workload (workloads/bridge-defects) has its own environment: torch with its CUDA libraries
# (~5 GB), built once per lock hash into ~/.cache/edgefm/workloads and linked as workloads/bridge-defects/.venv.
WORKLOAD := workloads/bridge-defects
workload-env:
	$(PY) tools/workload_venv.py $(WORKLOAD)

# Its own typecheck and tests, end to end against MinIO and a real tritonserver (the CLI from .venv).
workload-test: install minio workload-env
	cd $(WORKLOAD) && .venv/bin/mypy src tests bench
	cd $(WORKLOAD) && .venv/bin/python -m pytest -q

# Pretrained vs random-init fine-tune accuracy on 50 held-out frames per class (long on a CPU; see its README).
workload-bench: workload-env
	cd $(WORKLOAD) && .venv/bin/python bench/quality.py

# The sample fleet on the real engine and the fleet lab: start a Kubernetes API for the hub and every site,
# update the hub then every site against them for real (each previewed and judged by the guardrails first),
# show what runs where as each cluster's API reports it, then preview them all again: nothing left to change.
demo: install tools lab-tools
	$(BIN)/python -m edgefm validate
	$(BIN)/python -m edgefm explain site-bridge-north
	$(BIN)/python -m edgefm lab up
	$(BIN)/python -m edgefm fleet up --lab
	$(BIN)/python -m edgefm lab status
	$(BIN)/python -m edgefm fleet preview --lab
	$(BIN)/python -m edgefm lab status --summary

# The same fleet rendered to out/<stack> instead (file backend in .state/, local passphrase): no cluster needed.
demo-render: install tools
	$(BIN)/python -m edgefm fleet up --render-root out
	$(BIN)/python -m edgefm fleet preview --render-root out

# The portal on 127.0.0.1:8080 over this checkout (see docs/portal.md for sign-in and the fleet service).
portal: install portal-assets db tools
	$(BIN)/python -m edgefm portal

# The README's portal screenshots (docs/portal/*.png), taken by the browser tests.
portal-screenshots: install portal-assets chromium
	EDGEFM_PORTAL_SCREENSHOTS=docs/portal $(BIN)/python -m pytest -q tests/portal/test_browser.py

# `models publish` vs boto3 upload_file (default threaded transfer) for a 1 GB model, side by side against a
# local MinIO, plus what publish's manifest hashing and resume journal cost on their own.
bench: install minio
	$(BIN)/python bench/publish_throughput.py --reps 3

# `edgefm fleet preview` of 16 sites vs a sequential `pulumi preview` loop; the controller over 10,000
# simulated sites (CPU, journal included) and a time model for real fleets.
bench-fleet: install tools
	$(BIN)/python bench/fleet_preview.py --reps 2
	$(BIN)/python bench/rollout_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache out .state
