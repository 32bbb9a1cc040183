"""A large generated fleet: `n` site stack files made from the two sample templates (GPU fine-tuning, CPU-only),
with labels spread over the placement vocabulary, plus journal runs and cluster status for every site: in the
in-memory service (`big_fleet`), or written to a real journal as workers write it (`journal_history`)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgefm.ops.controller import SiteOutcome, site_outcome_rows
from edgefm.ops.journal import Batch, Journal
from edgefm.ops.queue import queue_site_runs
from edgefm.portal.contracts import PreviewRecord, SiteStatus
from tests.portal.conftest import PortalUnderTest, build_portal, make_repo
from tests.portal.fakes import SiteRun

GPU = """config:
  edgefm:site:
    name: {name}
    region: eu-central-1
    jurisdiction: DE
    labels: {{tier: {tier}, accelerator: gpu, finetune: enabled, workload: bridge-inspection, wave: "{wave}"}}
    network: 10.{a}.{b}.0/24
    nodes:
      - {{name: n1, address: 10.{a}.{b}.11, gpus: 1, gpuModel: L40S}}
      - {{name: n2, address: 10.{a}.{b}.12, gpus: 1, gpuModel: L40S}}
      - {{name: n3, address: 10.{a}.{b}.13, gpus: 1, gpuModel: L40S}}
  edgefm:sshPrivateKey:
    secure: v1:AAAAAAAAAAAAAAAA:AAAA
"""
CPU = """config:
  edgefm:site:
    name: {name}
    region: eu-west-3
    jurisdiction: FR
    labels: {{tier: {tier}, accelerator: cpu, workload: tunnel-inspection, wave: "{wave}"}}
    network: 10.{a}.{b}.0/24
    nodes:
      - {{name: n1, address: 10.{a}.{b}.10}}
      - {{name: n2, address: 10.{a}.{b}.11}}
      - {{name: n3, address: 10.{a}.{b}.12}}
  edgefm:sshPrivateKey:
    secure: v1:AAAAAAAAAAAAAAAA:AAAA
"""


def write_sites(repo: Path, n: int, seed: int = 7) -> list[str]:
    """`n` generated site stack files in the checkout's stacks/; returns every site stack there."""
    rng = random.Random(seed)
    for i in range(n):
        name = f"gen-{i:05d}"
        template = GPU if i % 3 else CPU
        tier = rng.choice(["production", "production", "staging", "canary"])
        text = template.format(name=name, tier=tier, wave=rng.choice("123"), a=100 + i // 250, b=i % 250)
        (repo / "stacks" / f"Pulumi.site-{name}.yaml").write_text(text)
    return sorted(p.name[7:-5] for p in (repo / "stacks").glob("Pulumi.site-*.yaml"))


def big_fleet(dest: Path, n: int, seed: int = 7) -> PortalUnderTest:
    repo = make_repo(dest)
    rng = random.Random(seed)
    write_sites(repo, n, seed)
    portal = build_portal(repo)
    now = datetime.now(UTC)
    for stack in sorted(p.name[7:-5] for p in (repo / "stacks").glob("Pulumi.site-*.yaml")):
        for k, op in enumerate(("preview", "update")):
            at = now - timedelta(minutes=10 - k)
            run = SiteRun(f"r-{stack}-{k}", f"r-{k}", stack, op, "succeeded", at, at, {"same": 20})
            portal.service.add_run(run, PreviewRecord([], ["[labels-present] advisory"]) if op == "preview" else None)
        drift = ("Deployment/triton: spec.replicas",) if rng.random() < 0.05 else ()
        portal.status.values[stack] = SiteStatus("healthy", "ready", drift, "1.0.0", now)
    return portal


# What a fleet's journal holds after a while: previews, rollouts and a drift check across every site.
HISTORY = ("preview", "update", "drift", "preview", "update")


def journal_history(journal: Journal, stacks: list[str], operations: tuple[str, ...] = HISTORY, steps: int = 30) -> int:
    """Journals one run per operation over every stack, each site's outcome written the way a worker writes it
    (site run, its preview's planned steps and findings, drift, outputs, events); returns the site runs written."""
    rng = random.Random(3)
    written = 0
    for operation in operations:
        run_id = journal.create_run(operation, "ana", stacks)
        batch = Batch()
        tasks = queue_site_runs(batch, run_id, stacks, operation, "ana")
        journal.write(batch)
        done = Batch()
        for task in tasks:
            now = time.time()
            planned = [
                {
                    "urn": f"urn:pulumi:{task.stack}::edgefm::kubernetes:apps/v1:Deployment::workload-{k}",
                    "type": "kubernetes:apps/v1:Deployment",
                    "op": "update",
                    "keys": ["spec.template.spec.containers[0].image"],
                }
                for k in range(steps)
            ]
            drifted = planned[:1] if operation == "drift" and rng.random() < 0.05 else []
            outcome = SiteOutcome(
                ok=rng.random() > 0.02,
                phase=operation,
                started_at=now,
                finished_at=now,
                preview_seconds=3.0,
                update_seconds=20.0 if operation == "update" else None,
                changes={"update": steps, "same": 40},
                steps=planned if operation != "drift" else [],
                advisories=["[labels-present] Deployment workload-0 has no team label"] if operation != "drift" else [],
                drift=drifted,
                outputs={"tritonUrl": f"http://{task.stack}.example:8000", "kubeconfig": "[secret]"}
                if operation == "update"
                else None,
            )
            site_outcome_rows(task, outcome, done)
            written += 1
        journal.write(done, settle_run=run_id)
    return written
