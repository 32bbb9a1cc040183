"""Rollout waves: ordering, per-wave preview before update, and stopping on failures."""

from __future__ import annotations

import pytest

from edgefm.ops.fleet import PolicyViolation, StackRun
from edgefm.ops.rollout import Wave, rollout, site_labels, waves_of
from tests.harness import ROOT


class FakeFleet:
    """Records the order of operations; stacks in `bad_preview`/`bad_up` fail there."""

    def __init__(self, bad_preview: frozenset[str] = frozenset(), bad_up: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, str]] = []
        self.bad_preview, self.bad_up = bad_preview, bad_up

    def preview(self, name: str) -> StackRun:
        self.calls.append(("preview", name))
        if name in self.bad_preview:
            raise PolicyViolation(name, ["[gpu-capacity] too many GPUs"])
        return StackRun(name, "preview", {"update": 1}, 0.1)

    def up(self, name: str) -> StackRun:
        self.calls.append(("up", name))
        if name in self.bad_up:
            raise RuntimeError("engine failed")
        return StackRun(name, "update", {"update": 1}, 0.1)


def test_sample_fleet_waves_follow_the_wave_label() -> None:
    labels = site_labels(ROOT, ["hub", "site-bridge-north", "site-bridge-south", "site-harbor-ocp", "site-viaduct-cpu"])
    assert waves_of(labels, "wave") == [
        Wave("1", ["site-bridge-south", "site-viaduct-cpu"]),
        Wave("2", ["site-bridge-north"]),
        Wave("3", ["site-harbor-ocp"]),
    ]


def test_wave_order_numeric_then_names_then_unlabelled() -> None:
    labels = {"a": {"wave": "10"}, "b": {"wave": "2"}, "c": {}, "d": {"wave": "pilot"}, "e": {"wave": "2"}}
    assert [(w.label, w.stacks) for w in waves_of(labels, "wave")] == [
        ("2", ["b", "e"]),
        ("10", ["a"]),
        ("pilot", ["d"]),
        ("unlabelled", ["c"]),
    ]


WAVES = [Wave("1", ["s1", "s2"]), Wave("2", ["s3"]), Wave("3", ["s4"])]


def test_each_wave_is_previewed_whole_before_it_changes() -> None:
    fleet = FakeFleet()
    report = rollout(fleet, WAVES)
    assert report.ok
    assert fleet.calls == [
        ("preview", "s1"),
        ("preview", "s2"),
        ("up", "s1"),
        ("up", "s2"),
        ("preview", "s3"),
        ("up", "s3"),
        ("preview", "s4"),
        ("up", "s4"),
    ]


def test_a_failing_wave_holds_the_later_ones() -> None:
    fleet = FakeFleet(bad_preview=frozenset({"s2"}))
    report = rollout(fleet, WAVES)
    assert not report.ok
    assert list(report.failures) == ["s2"] and "gpu-capacity" in report.failures["s2"]
    assert ("up", "s1") in fleet.calls and ("up", "s2") not in fleet.calls
    assert [w.label for w in report.held] == ["2", "3"]
    assert not any(name in ("s3", "s4") for _, name in fleet.calls)


@pytest.mark.parametrize(("max_failures", "held"), [(0, ["3"]), (1, [])])
def test_failure_budget(max_failures: int, held: list[str]) -> None:
    fleet = FakeFleet(bad_up=frozenset({"s3"}))
    report = rollout(fleet, WAVES, max_failures=max_failures)
    assert [w.label for w in report.held] == held
    assert report.failures == {"s3": "update: engine failed"}
