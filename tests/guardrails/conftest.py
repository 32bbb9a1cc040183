"""Makes the policy pack's package importable in tests (the pack lives outside the `edgefm` package so it
can be published on its own; the engine imports it from the pack directory)."""

from __future__ import annotations

import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[2] / "policies" / "guardrails"
if str(PACK_DIR) not in sys.path:
    sys.path.insert(0, str(PACK_DIR))
