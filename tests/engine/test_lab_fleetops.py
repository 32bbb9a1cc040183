"""Fleet operations against the fleet lab's real Kubernetes APIs, through the CLI as an operator runs them: drift
found and reconciled, the health gate on live clusters (and a rollout halted by it), and a rollout SIGKILLed in
the middle of a site's update, then resumed. Runs on the session's applied fleet (see conftest) and leaves every
stack as it found it; it avoids the site test_lab_fleet destroys at its end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from edgefm.ops.health import ClusterWorkloads, gate
from edgefm.ops.journal import Journal
from edgefm.ops.locks import LockError, clear_stale_locks, owner_state, pending_operations, stack_locks
from edgefm.ops.strategy import HealthGate
from tests.engine.labfleet import (
    Applied,
    Env,
    deployment,
    edited_placement,
    image_of,
    set_unschedulable,
    sigkill_tree,
    triton,
    wait_for,
)
from tests.harness import ROOT

pytestmark = pytest.mark.engine

# test_lab_fleet destroys site-bridge-north at its end; these three stay applied.
CANARY, SICK, LAST = "site-viaduct-cpu", "site-bridge-south", "site-harbor-ocp"
DESTROYED_EARLIER = "site-bridge-north"
OPERATOR = "ops-console"  # the field manager an operator's tool writes with
BUMP = "nvcr.io/nvidia/tritonserver:25.02-py3"


@pytest.fixture(scope="module")
def sites(env: Env, applied: Applied) -> list[str]:
    ours = [CANARY, SICK, LAST]
    assert set(ours) <= set(env.sites()), (ours, applied.failed)
    return ours


def _journal(env: Env) -> Journal:
    return Journal(f"sqlite:///{env.project / '.state' / 'journal.db'}")


def _rollout_id(output: str) -> str:
    found = re.search(r"^rollout (\w+): \d+ stack", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def _drift_report(stdout: str) -> dict[str, list[str]]:
    """`edgefm fleet drift` output: stack -> its drifted resource lines ([] for "no drift")."""
    report: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if m := re.match(r"^(\S+): (no drift|\d+ resource\(s\) drifted)$", line):
            current = report.setdefault(m.group(1), [])
        elif line.startswith("    ") or not line.startswith("  ") or current is None:
            continue
        else:
            current.append(" ".join(line.split()))
    return report


# ------------------------------------------------------------------------------------------------ drift


def test_a_change_through_one_sites_api_is_its_drift_alone_and_reconcile_puts_it_back(
    env: Env, sites: list[str]
) -> None:
    stacks = [s for s in env.fleet.stacks() if s != DESTROYED_EARLIER]
    api = env.api(CANARY)
    reconciled = False
    try:
        serving = triton(api)
        ns, name = serving["metadata"]["namespace"], serving["metadata"]["name"]
        declared = serving["spec"]["replicas"]
        facts_path = "api/v1/namespaces/edgefm-system/configmaps/edgefm-site-facts"
        site_label = api.get(facts_path)["metadata"]["labels"]["edgefm.io/site"]
        # An operator's tool takes the replica count over by server-side apply (so the field is no longer
        # edgefm's), and someone removes a label with a JSON merge patch (as `kubectl label ... key-` does).
        api.patch(
            f"apis/apps/v1/namespaces/{ns}/deployments/{name}",
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {"replicas": 4}},
            patch_type="apply",
            field_manager=OPERATOR,
            force=True,
        )
        api.patch(facts_path, {"metadata": {"labels": {"edgefm.io/site": None}}}, field_manager="kubectl-label")

        t0 = time.monotonic()
        found = env.edgefm("fleet", "drift", *stacks, "--lab")
        drift_seconds = time.monotonic() - t0
        assert found.returncode == 1, found.stdout + found.stderr
        report = _drift_report(found.stdout)
        assert set(report) == set(stacks), found.stdout
        assert sorted(report[CANARY]) == sorted(
            [
                f"update {name} (kubernetes:apps/v1:Deployment): spec.replicas",
                'update viaduct-cpu-facts (kubernetes:core/v1:ConfigMap): metadata.labels["edgefm.io/site"]',
            ]
        ), found.stdout
        assert all(report[s] == [] for s in stacks if s != CANARY), found.stdout

        # Reconcile takes the field back from the other manager (a plain update would stop on the conflict).
        fixed = env.edgefm("fleet", "reconcile", CANARY, "--lab")
        reconciled = fixed.returncode == 0
        assert reconciled, fixed.stdout + fixed.stderr
        live = deployment(api, ns, name)
        assert live["spec"]["replicas"] == declared
        assert OPERATOR not in {m["manager"] for m in live["metadata"]["managedFields"]}
        assert api.get(facts_path)["metadata"]["labels"]["edgefm.io/site"] == site_label

        again = env.edgefm("fleet", "drift", *stacks, "--lab")
        assert again.returncode == 0, again.stdout + again.stderr
        assert _drift_report(again.stdout) == {s: [] for s in stacks}, again.stdout
        print(f"drift over {len(stacks)} stacks: {drift_seconds:.1f} s")
    finally:
        if not reconciled:  # leave the site as the other tests expect it
            env.edgefm("fleet", "reconcile", CANARY, "--lab")
        api.close()


# ------------------------------------------------------------------------------------------------ health


@contextmanager
def _unavailable_triton(env: Env, stack: str) -> Iterator[tuple[str, str]]:
    """A site whose Triton Deployment has lost a replica for good, until the block ends: every node cordoned and
    one Triton pod deleted, so its replacement stays Pending. Yields (namespace, name); uncordoned after, and
    waited for until the Deployment is available again."""
    api = env.api(stack)
    try:
        serving = triton(api)
        ns, name = serving["metadata"]["namespace"], serving["metadata"]["name"]
        set_unschedulable(api, True)
        selector = ",".join(f"{k}={v}" for k, v in serving["spec"]["selector"]["matchLabels"].items())
        pod = api.items(f"api/v1/namespaces/{ns}/pods", {"labelSelector": selector})[0]
        api.delete(f"api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}")
        wait_for(
            f"{name} to lose a replica",
            lambda: (deployment(api, ns, name)["status"].get("availableReplicas") or 0) < serving["spec"]["replicas"],
        )
        yield ns, name
    finally:
        set_unschedulable(api, False)
        wait_for(
            "Triton to be available again",
            lambda: not gate(stack, HealthGate(), ClusterWorkloads(env.kubeconfig(stack)), 0).problems,
            timeout=120,
        )
        api.close()


def test_the_health_gate_on_live_clusters_and_a_rollout_it_halts(env: Env, sites: list[str]) -> None:
    quick = HealthGate(pending_deadline=1, interval=1)
    healthy = gate("viaduct-cpu", quick, ClusterWorkloads(env.kubeconfig(CANARY)), time.time() + 30)
    assert healthy.healthy and healthy.problems == []

    with _unavailable_triton(env, SICK) as (ns, name):
        verdict = gate("bridge-south", quick, ClusterWorkloads(env.kubeconfig(SICK)), time.time() + 4)
        assert not verdict.healthy
        assert re.fullmatch(rf"Deployment {ns}/{name}: [0-2]/3 replicas available", verdict.problems[0]), verdict
        assert any(
            re.fullmatch(rf"Pod {ns}/{name}-\S+: Pending for \d+ s \(deadline 1 s\)", p) for p in verdict.problems
        )

        # A rollout over the three sites: the canary passes, the sick site's group fails on the gate and the
        # rollout stops there (no failure allowed); the last group never starts.
        t0 = time.monotonic()
        run = env.edgefm(
            "fleet", "rollout", "start", *sites, "--canary", CANARY, "--lab", "--actor", "ops",
            "--progress-deadline", "60", "--pending-deadline", "1", "--health-interval", "1",
        )  # fmt: skip
        rollout_seconds = time.monotonic() - t0
    assert run.returncode == 1, run.stdout + run.stderr
    run_id = _rollout_id(run.stdout)
    journal = _journal(env)
    try:
        row = journal.run(run_id)
        assert row is not None and row.state == "failed", row
        assert "1 site(s) failed, more than the 0 allowed; not started: wave=3" in row.message
        groups = {g.name: g.state for g in journal.groups(run_id)}
        assert groups["canary"] == "succeeded" and groups["wave=3"] == "queued", groups
        runs = {r.stack: r for r in journal.site_runs(run_id=run_id)}
        assert set(runs) == {CANARY, SICK}
        assert runs[CANARY].state == "succeeded" and runs[CANARY].phase == "health"
        assert runs[SICK].state == "failed" and runs[SICK].phase == "health"
        assert (runs[SICK].error or "").startswith(f"unhealthy: Deployment {ns}/{name}: "), runs[SICK].error
    finally:
        journal.close()
    assert f"{SICK}: failed: unhealthy: Deployment {ns}/{name}" in run.stdout
    print(f"rollout halted at {SICK}'s group after {rollout_seconds:.1f} s")


# ------------------------------------------------------------------------------------------------ resume


def _export(env: Env, stack: str) -> dict[str, Any]:
    deployment = env.fleet.stack(stack).export_stack().deployment
    assert deployment is not None
    return dict(deployment)


def _pending_update_of_a_deployment(env: Env, stack: str) -> list[dict[str, Any]]:
    return [
        op
        for op in pending_operations(_export(env, stack))
        if op["type"] == "updating" and op["resource"]["type"] == "kubernetes:apps/v1:Deployment"
    ]


def _running(proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(
            f"the rollout ended (exit {proc.returncode}) before it could be killed:\n{log.read_text()}"
        )
    return True


def test_a_rollout_killed_mid_update_resumes_where_it_stopped(env: Env, sites: list[str]) -> None:
    """SIGKILL of the whole process tree while the second site's Triton update waits on its rollout (its nodes are
    cordoned, so the new pods cannot start): the engine's lock and a pending operation stay behind. Resume clears
    the dead owner's lock, resolves the pending operation by a refresh, checks the site, and goes on."""
    victim = SICK
    api = env.api(victim)
    log = env.project / ".state" / "killed-rollout.log"
    try:
        with edited_placement(env.project, lambda doc: doc["defaults"]["serving"].update(image=BUMP)):
            set_unschedulable(api, True)
            try:
                with log.open("w") as out:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "edgefm", "fleet", "rollout", "start", *sites, "--canary", CANARY,
                         "--lab", "--actor", "ops", "--health-interval", "1", "--root", str(env.project)],
                        cwd=ROOT, env={**env.cli_env(), "PYTHONUNBUFFERED": "1"}, stdout=out,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                    try:
                        wait_for(
                            f"{victim}'s Triton update to be under way",
                            lambda: _running(proc, log) and bool(_pending_update_of_a_deployment(env, victim)),
                            timeout=240,
                            interval=1.0,
                        )
                    finally:
                        killed = sigkill_tree(proc.pid)
                        proc.wait()
            finally:
                set_unschedulable(api, False)
            assert len(killed) >= 4, killed  # the CLI, its worker, the engine and its plugins
            run_id = _rollout_id(log.read_text())

            # What the kill left: the engine's lock, held by a process that is gone, and a pending update.
            locks = stack_locks(env.backend.as_uri(), "edgefm", victim)
            assert len(locks) == 1 and owner_state(locks[0]) == "gone", locks
            assert _pending_update_of_a_deployment(env, victim)
            canary_history = len(env.fleet.stack(CANARY).history())

            t0 = time.monotonic()
            resumed = env.edgefm("fleet", "rollout", "resume", run_id, "--actor", "ops")
            resume_seconds = time.monotonic() - t0
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            out_text = " ".join(resumed.stdout.split())
            assert f"{victim}: removed the stale lock of {locks[0].owner()}: that process is gone" in out_text
            assert re.search(
                rf"{victim}: resolved \d+ interrupted operation\(s\) by a refresh: .*\(updating\)", out_text
            )

            # Finished sites were not touched again: no new engine run on the canary, one attempt in the journal.
            assert len(env.fleet.stack(CANARY).history()) == canary_history
            journal = _journal(env)
            try:
                attempts = [(r.stack, r.operation, r.state) for r in journal.site_runs(run_id=run_id)]
                recovered = [e.data.get("recovered") for e in journal.events(run_id) if e.stack == victim]
                final = journal.run(run_id)
            finally:
                journal.close()
            assert sorted(attempts) == sorted(
                [
                    (CANARY, "update", "succeeded"),
                    (victim, "update", "interrupted"),
                    (victim, "check", "succeeded"),
                    (LAST, "update", "succeeded"),
                ]
            ), attempts
            assert any(recovered), recovered
            assert final is not None and final.state == "succeeded", final

            # The interrupted site ends updated, its state consistent: no lock, nothing pending, the new image in
            # state and in the cluster, and nothing left to change.
            state = _export(env, victim)
            assert not pending_operations(state) and not stack_locks(env.backend.as_uri(), "edgefm", victim)
            json.dumps(state)
            in_state = next(
                r
                for r in state["resources"]
                if r["type"] == "kubernetes:apps/v1:Deployment" and r["urn"].endswith("-triton")
            )
            assert image_of(in_state["outputs"]) == image_of(in_state["inputs"]) == BUMP
            live = triton(api)
            assert image_of(live) == BUMP and live["status"].get("availableReplicas") == live["spec"]["replicas"]
            assert set(env.fleet.preview(victim).changes) == {"same"}
            assert all(image_of(triton(env.api(s))) == BUMP for s in (CANARY, LAST))
            print(f"resume after SIGKILL: {resume_seconds:.1f} s")
    finally:
        # The placement is back as it was: every site of the rollout back to it (after a failure above, first
        # without what the kill left, so the session's other tests find the sites as they were).
        with suppress(LockError):
            clear_stale_locks(env.backend.as_uri(), "edgefm", victim)
        for stack in sites:
            env.fleet.up(stack)
        api.close()
    assert {image_of(triton(env.api(s))) for s in sites} == {"nvcr.io/nvidia/tritonserver:25.01-py3"}
