"""How a drift check reads the engine's refresh events."""

from __future__ import annotations

from pulumi.automation import events

from edgefm.ops.siteops import _drift_entry


def test_drift_reports_the_engines_detailed_diff_paths() -> None:
    """A refresh step's result as the engine sends it for a Kubernetes object: `diffs` empty, the changed
    property paths in `detailed_diff` (seen from the lab's clusters; see test_lab_fleetops)."""

    def meta(op: str, detailed: dict[str, str]) -> events.StepEventMetadata:
        return events.StepEventMetadata(
            op=events.OpType(op),
            urn="urn:pulumi:site-a::edgefm::kubernetes:apps/v1:Deployment::a-triton",
            type="kubernetes:apps/v1:Deployment",
            provider="",
            diffs=None,
            detailed_diff={k: events.PropertyDiff(events.DiffKind(v), False) for k, v in detailed.items()},
        )

    replicas = _drift_entry(meta("update", {"spec.replicas": "update", 'metadata.labels["x"]': "delete"}))
    assert replicas is not None and replicas["op"] == "update"
    assert replicas["keys"] == ['metadata.labels["x"]', "spec.replicas"]
    # In an update with refresh the refresh phase reports under "refresh": drift only where properties differ.
    assert _drift_entry(meta("refresh", {"spec.replicas": "update"})) == {**replicas, "keys": ["spec.replicas"]}
    assert _drift_entry(meta("refresh", {})) is None
    assert _drift_entry(meta("same", {})) is None
    gone = _drift_entry(meta("delete", {}))
    assert gone is not None and gone["op"] == "delete" and gone["keys"] == []
