# edgefm developer entry points. PYTHON defaults to the repo's venv.
PYTHON ?= .venv/bin/python

.PHONY: tools tools-status test-engine

# Provide the Pulumi engine (CLI, Python language host, provider plugins): uses a compatible pulumi on PATH,
# otherwise builds from Go modules into ${EDGEFM_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-~/.cache}/edgefm/toolchain}.
tools:
	$(PYTHON) -m edgefm.toolchain

tools-status:
	$(PYTHON) -m edgefm.toolchain --status

# Integration tests against the real engine (bootstraps it first if needed).
test-engine:
	$(PYTHON) -m pytest -m engine tests/engine
