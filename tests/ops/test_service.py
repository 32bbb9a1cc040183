"""FleetService on a real PostgreSQL (no workers): rollouts queued, operator actions, approvals, audit."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from edgefm.ops.service import FleetService
from edgefm.ops.strategy import RolloutStrategy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def service(postgres: str) -> FleetService:
    # A database of its own per test, on the session's server.
    name = f"t{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return FleetService(postgres.rsplit("/", 1)[0] + f"/{name}", ROOT)


def test_start_rollout_queues_the_controller_and_returns_at_once(service: FleetService) -> None:
    strategy = RolloutStrategy(canary=["site-bridge-south"], approve=["wave=2"], max_concurrency="50%")
    rollout_id = service.start_rollout(strategy, "ana")
    view = service.rollout(rollout_id)
    assert view is not None and view.state == "queued" and view.actor == "ana"
    assert [g.name for g in view.groups] == ["hub", "access shards", "canary", "wave=1", "wave=2", "wave=3"]
    assert view.strategy == strategy.model_copy(update={})
    with service.journal.engine.connect() as conn:
        jobs = conn.execute(text("SELECT task_name, lock, queueing_lock, status FROM procrastinate_jobs")).all()
    assert [tuple(j) for j in jobs] == [
        ("edgefm:edgefm.rollout", f"rollout:{rollout_id}", f"rollout:{rollout_id}", "todo")
    ]
    assert [r.id for r in service.rollouts()] == [rollout_id]
    events = service.events(rollout_id)
    assert [e.seq for e in events] == [1] and events[0].kind == "rollout.created"


def test_approval_is_refused_to_the_starter_and_recorded(service: FleetService) -> None:
    rollout_id = service.start_rollout(RolloutStrategy(canary=["site-bridge-south"], approve=["wave=2"]), "ana")
    with pytest.raises(PermissionError, match=f"ana started rollout {rollout_id} and cannot approve it"):
        service.approve(rollout_id, "ana")
    service.approve(rollout_id, "ben")
    view = service.rollout(rollout_id)
    assert view is not None
    assert {g.name: g.approved_by for g in view.groups}["wave=2"] == "ben"
    # A second approval of the same group is refused, whoever gives it: it names who approved first.
    second = f"group wave=2 of rollout {rollout_id} is already approved (by ben)"
    for actor in ("ben", "cleo"):
        with pytest.raises(ValueError, match=re.escape(second)):
            service.approve(rollout_id, actor)
    assert [e.kind for e in service.events(rollout_id)].count("group.approved") == 1
    log = service.audit_log(10)
    assert [(e.actor, e.action, e.result) for e in reversed(log)] == [
        ("ana", "rollout.start", "queued: 7 stack(s), 6 group(s)"),
        ("ana", "rollout.approve", f"refused: ana started rollout {rollout_id} and cannot approve it"),
        ("ben", "rollout.approve", "approved group wave=2"),
        ("ben", "rollout.approve", f"refused: {second}"),
        ("cleo", "rollout.approve", f"refused: {second}"),
    ]


def test_two_approvals_at_once_one_wins(service: FleetService) -> None:
    """Approvers race on the real journal: each call reads the group as unapproved before either writes (the
    barrier), and the journal's conditional update lets exactly one of them record the approval."""
    rollout_id = service.start_rollout(RolloutStrategy(canary=["site-bridge-south"], approve=["wave=2"]), "ana")
    approvers = [f"approver{i}" for i in range(6)]
    barrier = threading.Barrier(len(approvers))
    journal = service.journal
    read_groups = journal.groups

    def groups_then_wait(run_id: str) -> list[Any]:
        found = read_groups(run_id)
        barrier.wait(timeout=30)
        return found

    outcomes: dict[str, str] = {}
    # A service per approver: its own connections, as separate portal processes would have.
    services = {a: FleetService(service.url, ROOT) for a in approvers}

    def approve(actor: str) -> None:
        own = services[actor]
        own.journal.groups = groups_then_wait  # type: ignore[method-assign]
        try:
            own.approve(rollout_id, actor)
            outcomes[actor] = "approved"
        except ValueError as exc:
            outcomes[actor] = str(exc)

    threads = [threading.Thread(target=approve, args=(a,)) for a in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for own in services.values():
        own.close()
    winners = [a for a, result in outcomes.items() if result == "approved"]
    assert len(winners) == 1, outcomes
    for actor, result in outcomes.items():
        if actor != winners[0]:
            assert result == f"group wave=2 of rollout {rollout_id} is already approved (by {winners[0]})"
    view = service.rollout(rollout_id)
    assert view is not None and {g.name: g.approved_by for g in view.groups}["wave=2"] == winners[0]
    assert [e.kind for e in service.events(rollout_id)].count("group.approved") == 1


def test_pause_resume_abort_and_unknown_rollouts(service: FleetService) -> None:
    rollout_id = service.start_rollout(RolloutStrategy(canary=["site-bridge-south"]), "ana")
    service.pause(rollout_id, "ana")
    assert service.rollout(rollout_id).desired == "paused"  # type: ignore[union-attr]
    service.resume(rollout_id, "ana")
    service.abort(rollout_id, "ben")
    assert service.rollout(rollout_id).desired == "aborted"  # type: ignore[union-attr]
    kinds = [e.kind for e in service.events(rollout_id)]
    assert kinds == [
        "rollout.created",
        "rollout.paused-requested",
        "rollout.running-requested",
        "rollout.aborted-requested",
    ]
    # Resume re-queues the controller only once: the queueing lock holds while one waits.
    with service.journal.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar_one() == 1
    with pytest.raises(LookupError, match="no rollout 'nope'"):
        service.pause("nope", "ana")
    assert service.audit_log(1)[0].result == "refused: no such rollout"


def test_preview_jobs_are_queued_per_stack_with_its_lock(service: FleetService) -> None:
    job_id = service.start_preview(["site-bridge-north", "site-viaduct-cpu"], "ana")
    runs = service.site_runs("site-bridge-north")
    assert [(r.run_id, r.operation, r.state) for r in runs] == [(job_id, "preview", "running")]
    with service.journal.engine.connect() as conn:
        locks = sorted(r[0] for r in conn.execute(text("SELECT lock FROM procrastinate_jobs")))
    assert locks == ["stack:site-bridge-north", "stack:site-viaduct-cpu"]
    with pytest.raises(ValueError, match="no such stack"):
        service.start_preview(["site-nowhere"], "ana")


def test_event_data_is_redacted(service: FleetService) -> None:
    from edgefm.ops.journal import Batch

    rollout_id = service.start_rollout(RolloutStrategy(canary=["site-bridge-south"]), "ana")
    batch = Batch()
    batch.event(
        rollout_id,
        "site.output",
        "outputs",
        data={"kubeconfig": "apiVersion: v1", "endpoint": "x", "nested": {"secretAccessKey": "k", "ok": 1}},
    )
    service.journal.write(batch)
    data = service.events(rollout_id, after_seq=1)[0].data
    assert data == {"kubeconfig": "[secret]", "endpoint": "x", "nested": {"secretAccessKey": "[secret]", "ok": 1}}


def test_a_change_preview_queues_a_preview_of_exactly_the_affected_stacks(service: FleetService) -> None:
    """The change job as a worker runs it: the stacks the edit affects get a site job each, with the edited policy
    to overlay in their workspace; an edit that affects nothing ends the run at once."""
    import json

    import yaml

    from edgefm.ops.queue import run_change

    placement = (ROOT / "policies" / "placement.yaml").read_text()
    doc = yaml.safe_load(placement)
    doc["defaults"]["model"]["version"] = "1.2.0"
    edited = yaml.safe_dump(doc, sort_keys=False)
    run_id = service.start_change_preview(edited, "defaults: model.version = 1.2.0", "ana")
    with service.app.open():
        run_change(service.journal, service.app, run_id)
    view = service.change_preview(run_id)
    assert view is not None and view.state == "running"
    affected = ["site-bridge-north", "site-harbor-ocp", "site-viaduct-cpu"]  # the canary pins its own version
    assert [(c.stack, c.run.operation, c.reasons) for c in view.sites] == [
        (s, "change-preview", ["resolved profile changed (policies/placement.yaml)"]) for s in affected
    ]
    with service.journal.engine.connect() as conn:
        jobs = conn.execute(
            text("SELECT lock, args FROM procrastinate_jobs WHERE task_name = 'edgefm:edgefm.site' ORDER BY lock")
        ).all()
    assert [lock for lock, _ in jobs] == [f"stack:{s}" for s in affected]
    for _, args in jobs:
        args = args if isinstance(args, dict) else json.loads(args)
        assert args["task"]["operation"] == "change-preview"
        assert args["context"]["overlay"] == {"policies/placement.yaml": edited}
    assert (ROOT / "policies" / "placement.yaml").read_text() == placement
    # Nothing affected: the run ends as it starts.
    quiet = service.start_change_preview(placement, "no change", "ana")
    with service.app.open():
        run_change(service.journal, service.app, quiet)
    done = service.change_preview(quiet)
    assert done is not None and done.state == "succeeded" and done.sites == []
    assert done.message == "the change affects no stack"
    # An edit that does not load is refused by the job, with the loader's message.
    broken = service.start_change_preview("profiles: [", "broken", "ana")
    with service.app.open():
        run_change(service.journal, service.app, broken)
    failed = service.change_preview(broken)
    assert failed is not None and failed.state == "failed" and "does not load" in failed.message
