"""The journal's fleet-wide reads on SQLite and on a real PostgreSQL: every stack's newest run, newest judged
preview with its findings, and newest drift check in one query, checked against the same answer worked out
from each stack's own history; stack outputs after an update, secrets masked."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from edgefm.ops.controller import SiteOutcome, site_outcome_rows
from edgefm.ops.journal import DRIFT_OPERATIONS, FAILED, PREVIEW_OPERATIONS, SUCCEEDED, Batch, Journal
from edgefm.ops.queue import queue_site_runs

OPERATIONS = ["preview", "update", "check", "drift", "reconcile", "change-preview", "destroy"]


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'journal.db'}"
    else:
        postgres: str = request.getfixturevalue("postgres")
        name = f"j{uuid.uuid4().hex[:10]}"
        admin = create_engine(postgres.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = postgres.rsplit("/", 1)[0] + f"/{name}"
    journal = Journal(url)
    yield journal
    journal.close()


def run_op(
    journal: Journal,
    stack: str,
    operation: str,
    *,
    ok: bool = True,
    previewed: bool = True,
    drift: list[dict[str, Any]] | None = None,
    outputs: dict[str, Any] | None = None,
    advisories: list[str] | None = None,
    at: float | None = None,
) -> str:
    """One operation on one stack, journaled the way a worker does (queued, then its outcome)."""
    run_id = journal.create_run(operation, "ana", [stack])
    batch = Batch()
    (task,) = queue_site_runs(batch, run_id, [stack], operation, "ana")
    if at is not None:
        batch.site_runs[0]["queued_at"] = at
    journal.write(batch)
    now = time.time()
    outcome = SiteOutcome(
        ok=ok,
        phase=operation,
        started_at=now,
        finished_at=now,
        preview_seconds=0.5 if previewed else None,
        steps=[{"urn": f"urn:pulumi:{stack}::edgefm::kubernetes:core/v1:ConfigMap::c", "op": "update", "keys": []}],
        advisories=advisories or [],
        drift=drift or [],
        outputs=outputs,
        error=None if ok else "boom",
    )
    done = Batch()
    site_outcome_rows(task, outcome, done)
    journal.write(done, settle_run=run_id)
    return task.site_run_id


DRIFTED = [{"urn": "urn:pulumi:s::edgefm::kubernetes:apps/v1:Deployment::triton", "type": "t", "op": "update"}]


def test_summaries_pick_the_newest_of_each_kind(journal: Journal) -> None:
    t = 1_000_000.0
    run_op(journal, "site-a", "preview", advisories=["[labels] old"], at=t)
    update = run_op(journal, "site-a", "update", advisories=["[labels] new"], outputs={"endpoint": "x"}, at=t + 1)
    drift = run_op(journal, "site-a", "drift", previewed=True, drift=DRIFTED, at=t + 2)
    run_op(journal, "site-a", "drift", ok=False, at=t + 3)  # a failed check says nothing about drift
    run_op(journal, "site-a", "change-preview", advisories=["[what-if]"], at=t + 4)
    run_op(journal, "site-b", "drift", drift=DRIFTED, at=t)
    reconcile = run_op(journal, "site-b", "reconcile", drift=DRIFTED, outputs={}, at=t + 1)
    failed = run_op(journal, "site-c", "update", ok=False, previewed=False, at=t)

    summaries = journal.site_summaries()
    a, b, c = summaries["site-a"], summaries["site-b"], summaries["site-c"]
    assert a.last_run is not None and a.last_run.operation == "change-preview"
    assert a.last_preview is not None and a.last_preview.id == update and a.advisories == ("[labels] new",)
    assert a.drift_check is not None and a.drift_check.id == drift
    assert [d["urn"] for d in a.drift] == [DRIFTED[0]["urn"]]
    # A reconcile put what drifted back: the stack has a drift check and no drift.
    assert b.drift_check is not None and b.drift_check.id == reconcile and b.drift == []
    assert c.last_run is not None and c.last_run.id == failed and c.last_run.state == FAILED
    assert c.last_preview is None and c.drift_check is None and c.advisories == ()
    assert set(journal.site_summaries(["site-b", "site-zz"])) == {"site-b"}


def test_summaries_match_each_stacks_own_history(journal: Journal) -> None:
    """A random history over 40 stacks: the one-query answer equals the one worked out per stack."""
    rng = random.Random(11)
    stacks = [f"site-{i:02d}" for i in range(40)]
    t = 2_000_000.0
    for step in range(400):
        stack = rng.choice(stacks)
        operation = rng.choice(OPERATIONS)
        ok = rng.random() < 0.8
        previewed = operation != "destroy" and rng.random() < 0.9
        drift = DRIFTED if operation in DRIFT_OPERATIONS and rng.random() < 0.5 else None
        at = t + step // 2  # pairs of runs share a queue time: the id breaks the tie
        run_op(journal, stack, operation, ok=ok, previewed=previewed, drift=drift, advisories=[f"#{step}"], at=at)
    summaries = journal.site_summaries()
    assert set(summaries) <= set(stacks)
    for stack in stacks:
        runs = sorted(journal.site_runs(stack=stack), key=lambda r: (r.queued_at, r.id), reverse=True)
        if not runs:
            assert stack not in summaries
            continue
        got = summaries[stack]
        assert got.last_run is not None and got.last_run.id == runs[0].id
        judged = [r for r in runs if r.operation in PREVIEW_OPERATIONS and journal.preview(r.id) is not None]
        assert (got.last_preview.id if got.last_preview else None) == (judged[0].id if judged else None)
        if judged:
            preview = journal.preview(judged[0].id)
            assert preview is not None and list(got.advisories) == preview.advisories
        checks = [r for r in runs if r.operation in DRIFT_OPERATIONS and r.state == SUCCEEDED]
        assert (got.drift_check.id if got.drift_check else None) == (checks[0].id if checks else None)
        expected_drift = checks[0].drift if checks and checks[0].operation == "drift" else []
        assert got.drift == (expected_drift or [])


def test_outputs_are_the_newest_updates_and_secrets_stay_masked(journal: Journal) -> None:
    assert journal.outputs("site-a") is None
    run_op(journal, "site-a", "update", outputs={"endpoint": "http://old"}, at=1.0)
    run_op(journal, "site-a", "update", outputs={"endpoint": "http://new", "kubeconfig": "apiVersion: v1"}, at=2.0)
    run_op(journal, "site-a", "preview", at=3.0)  # a preview records no outputs
    assert journal.outputs("site-a") == {"endpoint": "http://new", "kubeconfig": "[secret]"}
    run_op(journal, "site-a", "destroy", outputs={}, at=4.0)
    assert journal.outputs("site-a") == {}


def test_migration_0002_keeps_the_runs_already_journaled(journal: Journal) -> None:
    """A journal made at revision 0001 with runs in it: upgraded, its runs read as before; downgraded, too."""
    from alembic import command

    from edgefm.ops.journal import _migrations_config

    url = journal.url
    journal.close()
    with journal.engine.begin() as conn:
        for table in ("events", "previews", "site_runs", "rollout_groups", "audit", "runs", "alembic_version"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    config = _migrations_config(url)
    command.upgrade(config, "0001")
    old = Journal(url, migrate=False)
    with old.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, kind, actor, created_at, state, desired, stacks, message, last_seq) "
                "VALUES ('r1', 'preview', 'ana', 1, 'succeeded', 'running', '[]', '', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO site_runs (id, run_id, stack, operation, state, phase, attempt, actor, worker, queued_at)"
                " VALUES ('r1:site-a:1', 'r1', 'site-a', 'update', 'succeeded', 'health', 1, 'ana', 'w', 5)"
            )
        )
    old.close()
    upgraded = Journal(url)
    summary = upgraded.site_summaries()["site-a"]
    assert summary.last_run is not None and summary.last_run.id == "r1:site-a:1" and summary.last_run.drift is None
    assert upgraded.outputs("site-a") is None
    upgraded.close()
    command.downgrade(_migrations_config(url), "0001")
    with upgraded.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM site_runs")).scalar_one() == 1
