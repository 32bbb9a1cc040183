"""A large generated fleet: `n` site stack files made from the two sample templates (GPU fine-tuning, CPU-only),
with labels spread over the placement vocabulary, plus journal runs and cluster status for every site."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

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


def big_fleet(dest: Path, n: int, seed: int = 7) -> PortalUnderTest:
    repo = make_repo(dest)
    rng = random.Random(seed)
    for i in range(n):
        name = f"gen-{i:05d}"
        template = GPU if i % 3 else CPU
        tier = rng.choice(["production", "production", "staging", "canary"])
        text = template.format(name=name, tier=tier, wave=rng.choice("123"), a=100 + i // 250, b=i % 250)
        (repo / "stacks" / f"Pulumi.site-{name}.yaml").write_text(text)
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
