"""`edgefm fleet rollout`: every strategy field documented; bad strategies refused before anything starts."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from edgefm.cli import app
from edgefm.ops.strategy import HealthGate, RolloutStrategy

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_help_documents_every_strategy_field() -> None:
    result = runner.invoke(app, ["fleet", "rollout", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    fields = [f.alias for f in RolloutStrategy.model_fields.values() if f.alias not in ("stacks", "health")]
    fields += [f"health.{f.alias}" for f in HealthGate.model_fields.values()]
    missing = [f for f in fields if f"{f} (" not in text]
    assert not missing, missing


def test_bad_strategy_flags_are_one_line_and_start_nothing(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    args = ["fleet", "rollout", "start", "--root", str(ROOT), "--database", f"sqlite:///{db}"]
    result = runner.invoke(app, [*args, "--canary", "site-bridge-south", "--max-failures", "ten"])
    assert result.exit_code == 2
    assert "flags: maxFailures: maxFailures must be a count or a percentage" in result.output
    result = runner.invoke(app, [*args, "--canary", "site-nowhere"])
    assert result.exit_code == 2 and "site-nowhere" in result.output
    result = runner.invoke(app, [*args, "site-bridge-south", "--canary", "site-bridge-north"])
    assert result.exit_code == 2 and "canary stacks not in the rollout's stacks: site-bridge-north" in result.output
    assert not db.exists()


def test_operator_commands_on_unknown_or_own_rollouts(tmp_path: Path) -> None:
    from edgefm.ops.controller import start_rollout
    from edgefm.ops.journal import Journal

    url = f"sqlite:///{tmp_path / 'journal.db'}"
    journal = Journal(url)
    strategy = RolloutStrategy(canary=["site-a"], approve=["*"])
    run_id = start_rollout(journal, strategy, [("canary", ["site-a"])], "ana")
    base = ["--database", url, "--root", str(ROOT)]
    refused = runner.invoke(app, ["fleet", "rollout", "approve", run_id, *base, "--actor", "ana"])
    assert refused.exit_code == 2 and f"ana started rollout {run_id} and cannot approve it" in refused.output
    ok = runner.invoke(app, ["fleet", "rollout", "approve", run_id, *base, "--actor", "ben"])
    assert ok.exit_code == 0 and "group canary approved by ben" in ok.output
    again = runner.invoke(app, ["fleet", "rollout", "approve", run_id, *base, "--actor", "cleo"])
    assert again.exit_code == 2 and f"group canary of rollout {run_id} is already approved (by ben)" in again.output
    assert journal.groups(run_id)[0].approved_by == "ben"
    assert runner.invoke(app, ["fleet", "rollout", "pause", run_id, *base, "--actor", "ana"]).exit_code == 0
    assert journal.run(run_id).desired == "paused"  # type: ignore[union-attr]
    unknown = runner.invoke(app, ["fleet", "rollout", "abort", "nope", *base])
    assert unknown.exit_code == 2 and "no rollout 'nope'" in unknown.output
    assert [(e.actor, e.action) for e in reversed(journal.audit_log())] == [
        ("ana", "rollout.approve"),
        ("ben", "rollout.approve"),
        ("cleo", "rollout.approve"),
        ("ana", "rollout.paused"),
    ]
