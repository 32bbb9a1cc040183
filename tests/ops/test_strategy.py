"""Rollout strategies: validation at the edge, quantities, groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefm.ops.strategy import RolloutStrategy, StrategyError, load_strategy, parse_strategy, plan_groups


def test_a_strategy_file_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "strategy.yaml"
    path.write_text(
        "canary: [site-a]\ngroupBy: region\nmaxConcurrency: 25%\nmaxFailures: 2\nminSuccessTime: 300\n"
        "progressDeadline: 900\napprove: ['*']\n"
        "health: {pendingDeadline: 120, promql: 'up{site=\"{site}\"} == 1', prometheusUrl: 'http://127.0.0.1:9090'}\n"
    )
    strategy = load_strategy(path, {"maxFailures": "10%"})
    assert strategy.max_concurrency == "25%" and strategy.max_failures == "10%"
    assert strategy.concurrency(10) == 2 and strategy.concurrency(3) == 1
    assert strategy.failure_budget(40) == 4
    assert strategy.needs_approval("region=eu") and strategy.health.pending_deadline == 120


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "canary: Field required"),
        ({"canary": []}, "canary: List should have at least 1 item"),
        ({"canary": ["a"], "maxFailures": "ten"}, "maxFailures must be a count or a percentage"),
        ({"canary": ["a"], "maxFailures": "120%"}, "from 0% to 100%"),
        ({"canary": ["a"], "maxConcurrency": 0}, "maxConcurrency must be at least 1"),
        ({"canary": ["a"], "stacks": ["b"]}, "canary stacks not in the rollout's stacks: a"),
        ({"canary": ["a"], "maxConcurency": 2}, "maxConcurency: Extra inputs are not permitted"),
        ({"canary": ["a"], "health": {"promql": "up"}}, "health.promql needs health.prometheusUrl"),
        ({"canary": ["a"], "progressDeadline": -1}, "progressDeadline: Input should be greater than 0"),
    ],
)
def test_bad_strategies_are_refused_with_one_line_naming_the_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(StrategyError) as caught:
        parse_strategy(raw, "strategy.yaml")
    text = str(caught.value)
    assert message in text and "\n" not in text and text.startswith("strategy.yaml: ")


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StrategyError, match="cannot read"):
        load_strategy(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(StrategyError, match="a strategy is a mapping"):
        load_strategy(tmp_path / "list.yaml")


def test_groups_hub_then_canary_then_by_label() -> None:
    strategy = RolloutStrategy(canary=["site-c"], group_by="wave")
    labels = {
        "site-a": {"wave": "2"},
        "site-b": {"wave": "10"},
        "site-c": {"wave": "2"},
        "site-d": {},
        "site-e": {"wave": "pilot"},
    }
    groups = plan_groups(strategy, ["hub", *labels], labels)
    assert [(g.name, g.stacks) for g in groups] == [
        ("hub", ("hub",)),
        ("canary", ("site-c",)),
        ("wave=2", ("site-a",)),
        ("wave=10", ("site-b",)),
        ("wave=pilot", ("site-e",)),
        ("wave=unlabelled", ("site-d",)),
    ]
    with pytest.raises(StrategyError, match="canary stacks not in the fleet: site-x"):
        plan_groups(RolloutStrategy(canary=["site-x"]), ["site-a"], labels)
