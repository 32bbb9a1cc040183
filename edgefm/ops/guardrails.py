"""The guardrails loader: the CrossGuard pack in `policies/guardrails`, evaluated over planned resources.

The pack is not an installed package; it is imported from the checkout, so the fleet judges plans with exactly
the policies the engine runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

GUARDRAILS = Path("policies") / "guardrails"


def load_pack(root: Path) -> Any:
    """The pack's own check module, imported from the checkout (it is not an installed package)."""
    pack = str(root / GUARDRAILS)
    if pack not in sys.path:
        sys.path.insert(0, pack)
    return importlib.import_module("edgefm_guardrails.crossguard")


def judge(
    root: Path, planned: Sequence[Mapping[str, Any]], config: Mapping[str, Any] | None = None
) -> tuple[list[str], list[str]]:
    """Mandatory and advisory findings of the guardrails over planned resources (`urn`, `type`, `inputs`)."""
    crossguard = load_pack(root)
    model = importlib.import_module("edgefm_guardrails.model")
    resources = [
        model.Resource(r["urn"], r["type"], r["urn"].rsplit("::", 1)[-1], r.get("inputs") or {}) for r in planned
    ]
    levels = {g.name: g.level.value for g in crossguard.guardrails()}
    found = crossguard.evaluate(resources, config or {})
    mandatory: list[str] = []
    advisory: list[str] = []
    for name, violations in found.items():
        bucket = mandatory if levels.get(name) == "mandatory" else advisory
        bucket += [f"[{name}] {v.message}" for v in violations]
    return mandatory, advisory
