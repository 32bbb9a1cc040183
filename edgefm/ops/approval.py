"""Approving a rollout's group: the one rule set every front end goes through (the fleet service, hence the
portal, and `edgefm fleet rollout approve`).

- Nobody approves a rollout they started.
- The group approved is the first one the strategy holds for an approval that has not started: the one waiting
  now, or the next that will wait. If that group is approved already, the approval is refused — a second
  approval never moves on to a later group behind the approver's back.
- The journal records the approval with a conditional update, so of two approvals at once exactly one wins
  and the other is refused with who approved first.

Refusals raise with a one-line message: `LookupError` (no such rollout), `PermissionError` (the starter),
`ValueError` (ended, nothing waits, approved already).
"""

from __future__ import annotations

from edgefm.ops.journal import FINAL, QUEUED, WAITING_APPROVAL, Journal
from edgefm.ops.strategy import RolloutStrategy


def approve(journal: Journal, rollout_id: str, actor: str) -> str:
    """Approves the rollout's group that is held for an approval; returns the group's name."""
    run = journal.run(rollout_id)
    if run is None or run.kind != "rollout":
        raise LookupError(f"no rollout {rollout_id!r}")
    if actor == run.actor:
        raise PermissionError(f"{actor} started rollout {rollout_id} and cannot approve it")
    if run.state in FINAL:
        raise ValueError(f"rollout {rollout_id} has ended ({run.state})")
    strategy = RolloutStrategy.model_validate(run.strategy) if run.strategy else None
    held = next(
        (
            g
            for g in journal.groups(rollout_id)
            if g.state == WAITING_APPROVAL
            or (g.state == QUEUED and strategy is not None and strategy.needs_approval(g.name))
        ),
        None,
    )
    if held is None:
        raise ValueError(f"no group of rollout {rollout_id} waits for an approval")
    earlier = held.approved_by or journal.approve_group(rollout_id, held.position, actor)
    if earlier is not None:
        raise ValueError(f"group {held.name} of rollout {rollout_id} is already approved (by {earlier})")
    return held.name
