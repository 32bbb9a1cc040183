"""The guardrails as the fleet runs them: the CrossGuard pack in `policies/guardrails`, inside the engine.

The engine runs the pack through its executable (`policies/guardrails/analyzer`, an analyzer plugin the CLI
starts directly) with every preview and update, and reports each finding as a policy event; `Findings` gathers
them. One thing the engine cannot hand the pack: the analyzer protocol carries a resource's `protect` option
but not `retainOnDelete`, so `retention_findings` runs the pack's own datasets-protection check over the
engine's step events, which do carry it. Nothing else is evaluated in process.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

GUARDRAILS = Path("policies") / "guardrails"
# The pack as an executable analyzer plugin: works with every engine this project builds or finds.
ANALYZER = GUARDRAILS / "analyzer"
RETENTION_POLICY = "storage-datasets-protected"
# The engine sends policy messages with its colour markup (`<{%reset%}>`) for the display to render.
_COLOR_MARKUP = re.compile(r"<\{%[^%]*%\}>")


@dataclass(frozen=True)
class Finding:
    policy: str
    mandatory: bool
    message: str
    urn: str | None = None

    def __str__(self) -> str:
        return f"[{self.policy}] {self.message}"


@dataclass
class Findings:
    """Policy findings of one engine operation, gathered from its events."""

    found: list[Finding] = field(default_factory=list)

    def on_event(self, event: auto.EngineEvent) -> None:
        policy = event.policy_event
        if policy is not None:
            mandatory = policy.enforcement_level.lower() == "mandatory"
            message = _COLOR_MARKUP.sub("", policy.message).strip()
            # pulumi_policy sends "<policy description>\n<finding>"; the finding is what names the resource.
            message = message.split("\n", 1)[-1].strip()
            self.found.append(Finding(policy.policy_name, mandatory, message, policy.resource_urn))

    @property
    def mandatory(self) -> list[str]:
        return _unique(str(f) for f in self.found if f.mandatory)

    @property
    def advisory(self) -> list[str]:
        return _unique(str(f) for f in self.found if not f.mandatory)


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


def load_pack(root: Path) -> Any:
    """The pack's own modules, imported from the checkout (the pack is not an installed package)."""
    pack = str(root / GUARDRAILS)
    if pack not in sys.path:
        sys.path.insert(0, pack)
    return importlib.import_module("edgefm_guardrails.sovereignty")


def retention_findings(root: Path, planned: Sequence[Mapping[str, Any]]) -> list[str]:
    """The pack's datasets-protection check for `retainOnDelete`, over planned resources as the engine's step
    events describe them (`urn`, `type`, `inputs`, `retainOnDelete`). `protect` is left to the engine's run of
    the same policy, which sees it."""
    sovereignty = load_pack(root)
    model = importlib.import_module("edgefm_guardrails.model")
    resources = [
        model.Resource(
            r["urn"],
            r["type"],
            r["urn"].rsplit("::", 1)[-1],
            r.get("inputs") or {},
            retain_on_delete=r.get("retainOnDelete"),
        )
        for r in planned
    ]
    try:
        found = sovereignty.check_datasets_protected(resources)
    except model.NotApplicable:
        return []
    # Without the facts or the bucket the engine's run of the policy already reports it.
    return [f"[{RETENTION_POLICY}] {v.message}" for v in found if "retainOnDelete" in v.message]
