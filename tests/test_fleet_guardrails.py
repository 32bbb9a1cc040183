"""How the fleet takes the guardrails' verdict: findings from the engine's policy events, and the one check
the analyzer protocol cannot carry (the datasets bucket's retainOnDelete), over the engine's step events."""

from __future__ import annotations

from typing import Any

from pulumi.automation import events

from edgefm.ops.guardrails import Findings, retention_findings
from tests import harness

SITE = harness.STACKS / "Pulumi.site-bridge-north.yaml"


def policy_event(policy: str, level: str, message: str) -> events.EngineEvent:
    payload = events.PolicyEvent(message, "raw", policy, "edgefm-guardrails", "0.1.0", "0.1.0", level, "urn:x")
    return events.EngineEvent(sequence=1, timestamp=1, policy_event=payload)


def test_findings_come_from_policy_events() -> None:
    findings = Findings()
    findings.on_event(policy_event("images", "mandatory", "<{%reset%}>Deployment 'x': image floats<{%reset%}>\n"))
    findings.on_event(policy_event("images", "mandatory", "<{%reset%}>Deployment 'x': image floats<{%reset%}>\n"))
    findings.on_event(policy_event("labels", "advisory", "Objects carry labels.\nConfigMap 'y' lacks labels"))
    findings.on_event(events.EngineEvent(sequence=2, timestamp=1))
    assert findings.mandatory == ["[images] Deployment 'x': image floats"]
    assert findings.advisory == ["[labels] ConfigMap 'y' lacks labels"]


def planned(run: harness.Run) -> list[dict[str, Any]]:
    """The program's resources as the fleet's preview records them from step events."""
    return [
        {
            "urn": r.urn,
            "type": r.type,
            "inputs": harness.unwrap(r.inputs),
            "protect": r.protect,
            "retainOnDelete": r.retain_on_delete,
        }
        for r in run.resources
    ]


def test_the_programs_datasets_bucket_is_retained() -> None:
    plan = planned(harness.run_site_file(SITE))
    datasets = [p for p in plan if p["urn"].endswith("bucket-datasets")]
    assert len(datasets) == 1 and datasets[0]["retainOnDelete"] is True and datasets[0]["protect"] is True
    assert retention_findings(harness.ROOT, plan) == []


def test_a_datasets_bucket_that_is_not_retained() -> None:
    plan = planned(harness.run_site_file(SITE))
    for p in plan:
        if p["urn"].endswith("bucket-datasets"):
            p["retainOnDelete"] = False
            p["protect"] = False  # the engine's run of the policy reports protect; the fleet only retainOnDelete
    (line,) = retention_findings(harness.ROOT, plan)
    assert line.startswith("[storage-datasets-protected] Job 'bridge-north-storage-bucket-datasets'")
    assert "without retainOnDelete;" in line and "protect and" not in line
