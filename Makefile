# edgefm — `make demo` shows the fleet, `make test` checks everything. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install tools tools-status minio prometheus db lint typecheck unit test demo bench bench-fleet clean

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

# Prometheus for the health gate's PromQL tests, built from its Go module into ~/.cache/edgefm/prometheus.
prometheus: install
	$(BIN)/python -m tools.prometheus.server build

# PostgreSQL for the journal and job queue (`edgefm db start` runs it embedded): Debian's package.
db:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy edgefm components tools tests bench __main__.py
	# Separately: the pack's __main__.py would clash with the program's.
	$(BIN)/mypy policies/guardrails/__main__.py policies/guardrails/edgefm_guardrails

unit: install minio tools prometheus db
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# The sample fleet on the real engine, rendered to out/<stack> (file backend in .state/, local passphrase):
# validate, explain one site, update the hub then every site (each previewed and judged by the guardrails
# first), then preview them all again: nothing left to change. A summary table follows each pass.
demo: install tools
	$(BIN)/python -m edgefm validate
	$(BIN)/python -m edgefm explain site-bridge-north
	$(BIN)/python -m edgefm fleet up --render-root out
	$(BIN)/python -m edgefm fleet preview --render-root out

# `models publish` vs single-stream boto3 for a 1 GB model, side by side against a local MinIO.
bench: install minio
	$(BIN)/python bench/publish_throughput.py --reps 3

# `edgefm fleet preview` of 16 sites vs a sequential `pulumi preview` loop; the controller over 10,000
# simulated sites (CPU, journal included) and a time model for real fleets.
bench-fleet: install tools
	$(BIN)/python bench/fleet_preview.py --reps 2
	$(BIN)/python bench/rollout_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache out .state
