"""Hub scale: what a fleet of N sites costs the hub, a new site and `edgefm affected`, on the real engine.

For each fleet size (default 40, 400 and 3,500 sites) a copy of the project is made in a temporary directory
(never in the checkout's `stacks/`): the program, the placement policy, the hub stack file and N generated site
stack files, alternately copies of the sample GPU and CPU sites with their own name and network. The copy is a
git repository (for `edgefm affected`) with its own file backend; every stack renders its manifests (render mode,
`EDGEFM_RENDER_ROOT`), so no cluster or cloud is touched. Measured, each as wall time and peak resident memory
of the whole process tree (the CLI, language host, program and provider plugins, sampled from /proc; memory is
the tree's proportional set size, so pages a forked worker shares with its parent count once):

  hub preview   `pulumi preview` of every stack that is not a site (the hub, and whatever else the project
                keeps beside it), one after the other;
  hub update    `pulumi up --skip-preview` of the same stacks, first update (optionally time-boxed);
  affected      `edgefm affected --base HEAD` after adding site N+1, and after touching the placement policy;
  onboarding    `pulumi up` (with its preview, as an operator runs it) of every non-site stack `affected`
                names for the new site, plus the project's onboarding command if given (`--onboard`);
  site preview  `pulumi preview` of the new site, median of `--site-previews` runs.

    python bench/hub_scale.py [--sites 40,400,3500] [--project PATH] [--label before] [--json out.json]

`--project` measures another checkout (e.g. an older revision extracted with `git archive`) with this
checkout's engine and virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

PROJECT_FILES = ["Pulumi.yaml", "__main__.py", "edgefm", "components", "policies", "pyproject.toml"]
GPU_TEMPLATE, CPU_TEMPLATE = "site-bridge-north", "site-viaduct-cpu"
TICK = os.sysconf("SC_CLK_TCK")
GiB = 1024**3


def _engine_env(project: Path, state: Path, render: Path) -> dict[str, str]:
    from edgefm.ops.engine import engine_env

    env = engine_env(repo=project, backend_url=state.as_uri())
    env["EDGEFM_RENDER_ROOT"] = str(render)
    # The measured copy's own code, not the package installed from this checkout.
    env["PYTHONPATH"] = str(project)
    # Commands of the measured project (keygen) reach the same backend.
    env["EDGEFM_BACKEND_URL"] = state.as_uri()
    return env


# --- measuring ------------------------------------------------------------------------------------------


def _tree(root: int) -> set[int]:
    """`root` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: fields start after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return tree


def _pss(pid: int) -> int:
    """Proportional set size: pages shared between processes (a forked worker and its server, a binary mapped
    twice) are split among them, so the tree's sum is the memory it really holds."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _cpu(pid: int) -> float:
    """User + system seconds `pid` has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Measure:
    what: str
    seconds: float
    peak_rss: int
    ok: bool
    timed_out: bool = False
    note: str = ""
    # CPU time (user + system) of the whole process tree: what the work costs on a machine of its own.
    cpu_seconds: float = 0.0

    def show(self) -> str:
        state = "TIMED OUT" if self.timed_out else ("ok" if self.ok else "FAILED")
        note = f"  {self.note}" if self.note else ""
        return (
            f"{self.what:<48} {self.seconds:8.1f} s wall {self.cpu_seconds:8.1f} s cpu "
            f"{self.peak_rss / GiB:6.2f} GiB  {state}{note}"
        )


def measure(what: str, cmd: Sequence[str], *, cwd: Path, env: dict[str, str], limit: float | None = None) -> Measure:
    """Runs `cmd`, sampling the memory of its process tree every 0.2 s; kills the tree past `limit` seconds."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process tree is gone
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    peak = 0
    # CPU per process as last seen: processes a pool forks are not reaped into this process's rusage.
    seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            tree = _tree(proc.pid)
            peak = max(peak, sum(_pss(pid) for pid in tree))
            for pid in tree:
                seen[pid] = max(seen.get(pid, 0.0), _cpu(pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timed_out = False
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # The larger of the two: rusage misses what a pool forked; sampling misses a process's last 0.2 s.
    cpu = max(cpu, sum(seen.values()))
    stop.set()
    sampler.join()
    note = ""
    if proc.returncode != 0 and not timed_out:
        log.seek(0)
        tail = log.read().decode(errors="replace").strip().splitlines()[-15:]
        note = "\n    " + "\n    ".join(tail)
    log.close()
    return Measure(what, seconds, peak, proc.returncode == 0, timed_out, note, cpu)


def combine(what: str, parts: Sequence[Measure]) -> Measure:
    """Stacks run one after the other: times add up, memory peaks at the largest."""
    return Measure(
        what,
        sum(p.seconds for p in parts),
        max((p.peak_rss for p in parts), default=0),
        all(p.ok for p in parts),
        any(p.timed_out for p in parts),
        f"({len(parts)} stack(s))" if len(parts) != 1 else "",
        sum(p.cpu_seconds for p in parts),
    )


# --- the generated fleet --------------------------------------------------------------------------------


def site_file(template: dict[str, Any], index: int) -> dict[str, Any]:
    """A copy of a sample site stack file with its own name and network (secure values stay as they are:
    they decrypt with the copied encryption salt)."""
    doc: dict[str, Any] = json.loads(json.dumps(template))
    spec = doc["config"]["edgefm:site"]
    name = f"gen-{index:05d}"
    spec["name"] = name
    net = f"10.{64 + index // 256}.{index % 256}"
    spec["network"] = f"{net}.0/24"
    for n, node in enumerate(spec["nodes"]):
        node["address"] = f"{net}.{11 + n}"
    if spec.get("cluster", {}).get("apiAddress"):
        spec["cluster"]["apiAddress"] = f"{net}.11"
    return doc


def make_fleet(project: Path, dest: Path, sites: int) -> tuple[Path, dict[str, Any]]:
    """The fleet copy with `sites` generated site stacks; returns it and the template for site N+1."""
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = project / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    (dest / "stacks").mkdir()
    for path in sorted((project / "stacks").glob("Pulumi.*.yaml")):
        if not path.name.startswith("Pulumi.site-"):
            shutil.copy2(path, dest / "stacks" / path.name)
    templates = [
        yaml.safe_load((project / "stacks" / f"Pulumi.{t}.yaml").read_text()) for t in (GPU_TEMPLATE, CPU_TEMPLATE)
    ]
    for i in range(sites):
        doc = site_file(templates[i % 2], i)
        (dest / "stacks" / f"Pulumi.site-gen-{i:05d}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (dest / ".venv").symlink_to(REPO / ".venv")
    (dest / ".gitignore").write_text(".venv\n.state/\nout/\n__pycache__/\n")
    git = ["git", "-C", str(dest), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", f"fleet of {sites}"], check=True)
    return dest, templates[0]


def non_site_stacks(project: Path) -> list[str]:
    names = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (project / "stacks").glob("Pulumi.*.yaml")]
    rest = sorted(n for n in names if not n.startswith("site-"))
    return (["hub"] if "hub" in rest else []) + [n for n in rest if n != "hub"]


# --- one fleet size -------------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    sites: int
    measures: dict[str, Measure] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def _scale(result: Result, key: str, parts: list[Measure], shards: int) -> None:
    """With sampled shards: the hub's own run plus the mean shard run times every shard (memory: the largest
    one run, as they run one after the other)."""
    sampled = [m for m in parts[1:]]
    if not sampled or len(sampled) == shards:
        return
    mean = statistics.mean(m.seconds for m in sampled)
    mean_cpu = statistics.mean(m.cpu_seconds for m in sampled)
    result.measures[key + "_all"] = Measure(
        f"{key} scaled to {shards} shards",
        parts[0].seconds + mean * shards,
        max(m.peak_rss for m in parts),
        all(m.ok for m in parts),
        note=f"hub + {len(sampled)} of {shards} shards measured, mean shard x {shards}",
        cpu_seconds=parts[0].cpu_seconds + mean_cpu * shards,
    )


def run_size(args: argparse.Namespace, sites: int) -> Result:
    result = Result(args.label, sites)
    py = str(REPO / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix=f"edgefm-hubscale-{sites}-", dir=args.tmp) as tmp:
        proj, template = make_fleet(args.project, Path(tmp) / "project", sites)
        state, render = Path(tmp) / "state", Path(tmp) / "out"
        state.mkdir()
        env = _engine_env(proj, state, render)
        args.pulumi_cli = shutil.which("pulumi", path=env["PATH"]) or "pulumi"
        pulumi = [args.pulumi_cli, "--non-interactive", "--color", "never"]

        def engine(what: str, *cmd: str, limit: float | None = None) -> Measure:
            m = measure(what, [*pulumi, *cmd], cwd=proj, env=env, limit=limit)
            print("  " + m.show(), flush=True)
            return m

        for prep in args.prepare:
            subprocess.run(shlex.split(prep.format(python=py)), cwd=proj, env=env, check=True)
        # What the preparation wrote is part of the fleet as committed.
        git = ["git", "-C", str(proj), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "prepared"], check=True)
        all_hub_side = non_site_stacks(proj)
        result.facts["hub_side_stacks"] = len(all_hub_side)

        # `affected` for two pull requests: site N+1 added (its file appears in the working tree), and a central
        # change every site's profile sees (the default storage size, one GiB more; undone afterwards).
        stack = f"site-gen-{sites:05d}"
        new = site_file(template, sites)
        (proj / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(new, sort_keys=False))
        edgefm = [py, "-m", "edgefm", "affected", "--base", "HEAD", "--json"]
        m = measure("affected (a site added)", edgefm, cwd=proj, env=env)
        print("  " + m.show(), flush=True)
        result.measures["affected_site_added"] = m
        listed = subprocess.run(edgefm, cwd=proj, env=env, capture_output=True, text=True, check=True).stdout
        touched = [s for s in json.loads(listed) if not s.startswith("site-")]
        result.facts["onboarding_touches"] = touched
        placement = proj / "policies" / "placement.yaml"
        text = placement.read_text()
        placement.write_text(text.replace("sizeGi: 500", "sizeGi: 501", 1))
        m = measure("affected (placement: every site's profile)", edgefm, cwd=proj, env=env)
        print("  " + m.show(), flush=True)
        result.measures["affected_placement"] = m
        listed = subprocess.run(edgefm, cwd=proj, env=env, capture_output=True, text=True, check=True).stdout
        result.facts["placement_change_affects"] = len(json.loads(listed))
        placement.write_text(text)
        # The new site stays out of the fleet-wide runs: it is onboarded after them.
        held = proj / f"Pulumi.{stack}.yaml.held"
        (proj / "stacks" / f"Pulumi.{stack}.yaml").rename(held)

        hub_side = all_hub_side
        shards = [h for h in all_hub_side if h != "hub"]
        if args.sample_shards and len(shards) > args.sample_shards:
            # Shards are independent stacks of near-equal size: measure the hub, the shard the new site lands in
            # and others up to the sample, and scale the shards' sum to all of them.
            picked = [h for h in shards if h in touched] + [h for h in shards if h not in touched]
            hub_side = [h for h in all_hub_side if h == "hub"] + sorted(picked[: args.sample_shards])
            result.facts["sampled_shards"] = len(hub_side) - 1
        for hub_stack in hub_side:
            subprocess.run([*pulumi, "stack", "init", hub_stack], cwd=proj, env=env, check=True, capture_output=True)
        print(f"fleet of {sites} sites ({len(hub_side)} hub-side stack(s)), label {args.label}", flush=True)
        previews = [engine(f"preview {s}", "preview", "--stack", s, limit=args.preview_limit) for s in hub_side]
        result.measures["hub_preview"] = combine("hub preview (all hub-side stacks)", previews)
        _scale(result, "hub_preview", previews, len(all_hub_side) - 1)
        if args.update_limit == 0:
            print("  hub update skipped (--update-limit 0)")
            return result
        if args.fleet_up:
            # What edgefm itself runs for fleet-wide hub work: `edgefm fleet up` of the hub and then every shard,
            # `--fleet-up` at a time, each previewed and judged by the guardrails before its update.
            if not _fleet_wide(args, result, proj, env, render, all_hub_side, py):
                print("  hub update did not finish: onboarding and site preview not measured at this size")
                return result
            return _onboard_and_site(args, result, proj, env, render, held, stack, touched, engine, pulumi, py)
        left = args.update_limit
        updates = []
        for hub_stack in hub_side:
            m = engine(f"update {hub_stack}", "up", "--yes", "--skip-preview", "--stack", hub_stack, limit=left)
            updates.append(m)
            if left is not None:
                left -= m.seconds
                if m.timed_out or left <= 0:
                    break
        result.measures["hub_update"] = combine("hub first update (all hub-side stacks)", updates)
        _scale(result, "hub_update", updates, len(all_hub_side) - 1)
        checkpoints = sum(p.stat().st_size for p in state.rglob("*.json") if p.is_file())
        result.facts["state_bytes_after_update"] = checkpoints
        if not all(m.ok for m in updates) or len(updates) < len(hub_side):
            print("  hub update did not finish: onboarding and site preview not measured at this size")
            return result

        return _onboard_and_site(args, result, proj, env, render, held, stack, touched, engine, pulumi, py)


def _onboard_more(
    args: argparse.Namespace,
    result: Result,
    proj: Path,
    env: dict[str, str],
    render: Path,
    first: str,
    engine: Any,
    py: str,
) -> None:
    """Two more sites onboarded, each into its own shard's existing state: one applied by the update alone (what
    the hub runs after CI previewed the pull request), one by `edgefm fleet up` (preview, guardrails, update)."""
    from edgefm.model.stacks import access_stack_of

    template = yaml.safe_load((proj / "stacks" / f"Pulumi.{first}.yaml").read_text())
    shards = len(list((proj / "stacks").glob("Pulumi.hub-access-*.yaml")))
    base = int(first.rsplit("-", 1)[1])
    for offset, key in ((1, "onboarding_update"), (2, "onboarding_fleet")):
        stack = f"site-gen-{base + offset:05d}"
        (proj / "stacks" / f"Pulumi.{stack}.yaml").write_text(
            yaml.safe_dump(site_file(template, base + offset), sort_keys=False)
        )
        for onboard in args.onboard:
            subprocess.run(shlex.split(onboard.format(python=py, stack=stack)), cwd=proj, env=env, check=True)
        shard = access_stack_of(stack, shards)
        if key == "onboarding_update":
            m = engine(f"onboard: up --skip-preview {shard}", "up", "--yes", "--skip-preview", "--stack", shard)
            m.what = "onboarding one site (hub side, the update alone)"
        else:
            cmd = [py, "-m", "edgefm", "fleet", "up", shard, "--render-root", str(render)]
            m = measure("onboarding one site (hub side, edgefm fleet up)", cmd, cwd=proj, env=env)
            print("  " + m.show(), flush=True)
        result.measures[key] = m


def _fleet_wide(
    args: argparse.Namespace,
    result: Result,
    proj: Path,
    env: dict[str, str],
    render: Path,
    hub_side: list[str],
    py: str,
) -> bool:
    """The first update of every hub-side stack, then a credential-seed rotation (a new seed on the hub, the
    shard files rewritten from it, every site's access re-keyed), each one `edgefm fleet up` run."""
    fleet_up = [py, "-m", "edgefm", "fleet", "up", *hub_side, "--render-root", str(render)]
    fleet_up += ["--parallel", str(args.fleet_up)]
    what = f"hub first update: edgefm fleet up, {args.fleet_up} at a time"
    m = measure(what, fleet_up, cwd=proj, env=env)
    print("  " + m.show(), flush=True)
    result.measures["hub_update_fleet"] = m
    if not m.ok:
        return False
    seed = [args.pulumi_cli, "--non-interactive", "config", "set", "--secret", "edgefm:credentialSeed"]
    subprocess.run([*seed, "rotated-" + os.urandom(16).hex(), "--stack", "hub"], cwd=proj, env=env, check=True)
    shards = len(hub_side) - 1
    subprocess.run([py, "-m", "edgefm", "hub", "shards", "--count", str(shards)], cwd=proj, env=env, check=True)
    m = measure(f"credential-seed rotation: edgefm fleet up, {args.fleet_up} at a time", fleet_up, cwd=proj, env=env)
    print("  " + m.show(), flush=True)
    result.measures["seed_rotation_fleet"] = m
    return m.ok


def _onboard_and_site(
    args: argparse.Namespace,
    result: Result,
    proj: Path,
    env: dict[str, str],
    render: Path,
    held: Path,
    stack: str,
    touched: list[str],
    engine: Any,
    pulumi: list[str],
    py: str,
) -> Result:
    # Onboarding site N+1.
    held.rename(proj / "stacks" / f"Pulumi.{stack}.yaml")
    for onboard in args.onboard:
        subprocess.run(shlex.split(onboard.format(python=py, stack=stack)), cwd=proj, env=env, check=True)
    select = [*pulumi, "stack", "select", "--create"]
    # What onboarding changes on the hub side, from the engine's own plan (before it is applied).
    planned: dict[str, int] = {}
    for hub_stack in touched:
        subprocess.run([*select, hub_stack], cwd=proj, env=env, check=True, capture_output=True)
        plan = subprocess.run(
            [*pulumi, "preview", "--stack", hub_stack, "--json"], cwd=proj, env=env, capture_output=True, text=True
        )
        if plan.returncode == 0:
            for op, n in json.loads(plan.stdout).get("changeSummary", {}).items():
                planned[op] = planned.get(op, 0) + int(n)
    result.facts["onboarding_plan"] = planned
    parts = [engine(f"onboard: up {s}", "up", "--yes", "--stack", s) for s in touched]
    result.measures["onboarding"] = combine("onboarding one site (hub side, up with preview)", parts)
    if args.fleet_up:
        _onboard_more(args, result, proj, env, render, stack, engine, py)

    subprocess.run([*pulumi, "stack", "select", "--create", stack], cwd=proj, env=env, check=True, capture_output=True)
    for setup in args.site_setup:
        subprocess.run(shlex.split(setup.format(python=py, stack=stack)), cwd=proj, env=env, check=True)
    runs = [engine(f"preview {stack} #{i + 1}", "preview", "--stack", stack) for i in range(args.site_previews)]
    result.measures["site_preview"] = Measure(
        "one site's preview (median)",
        statistics.median(r.seconds for r in runs),
        max(r.peak_rss for r in runs),
        all(r.ok for r in runs),
        cpu_seconds=statistics.median(r.cpu_seconds for r in runs),
    )

    return result


ROWS = [
    ("hub_preview", "hub preview (all hub-side stacks)"),
    ("hub_update", "hub first update (all hub-side stacks)"),
    ("onboarding", "onboarding one site: hub-side `up`"),
    ("site_preview", "one site's preview (median of 3)"),
    ("affected_site_added", "`edgefm affected`, a site added"),
    ("affected_placement", "`edgefm affected`, placement change"),
]


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "not measured"
    state = "" if m["ok"] else (" (killed at the time box)" if m["timed_out"] else " (FAILED)")
    return f"{m['seconds']:.1f} s / {m['cpu_seconds']:.1f} s cpu / {m['peak_rss'] / GiB:.2f} GiB{state}"


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per measure and fleet size, before and after side by side (wall / cpu / peak RSS)."""
    by = {(r["label"], r["sites"]): r for r in results}
    sizes = sorted({r["sites"] for r in results})
    lines = ["| measure | sites | before | after |", "|---|---:|---|---|"]
    for key, title in ROWS:
        for n in sizes:
            cells = []
            for label in ("before", "after"):
                measures = by.get((label, n), {}).get("measures", {})
                scaled = measures.get(key + "_all")
                # Sampled shards: the figure for every shard, scaled from the sample.
                cells.append(_cell(scaled) + f" ({scaled['note']})" if scaled else _cell(measures.get(key)))
            lines.append(f"| {title} | {n:,} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="40,400,3500", help="comma-separated fleet sizes")
    parser.add_argument("--project", type=Path, default=REPO, help="the checkout to measure")
    parser.add_argument("--label", default="current")
    parser.add_argument("--json", type=Path, help="append results to this JSON file")
    parser.add_argument("--tmp", type=Path, default=None, help="where fleets are generated")
    parser.add_argument("--site-previews", type=int, default=3)
    parser.add_argument("--preview-limit", type=float, default=None, help="seconds before a preview is killed")
    parser.add_argument(
        "--update-limit", type=float, default=None, help="seconds for the whole hub update (0: skip updating)"
    )
    parser.add_argument("--prepare", action="append", default=[], help="command run in the fleet copy first")
    parser.add_argument("--onboard", action="append", default=[], help="onboarding command ({stack}, {python})")
    parser.add_argument("--site-setup", action="append", default=[], help="run before the site preview ({stack})")
    parser.add_argument("--sample-shards", type=int, default=0, help="measure only this many access shards")
    parser.add_argument(
        "--fleet-up", type=int, default=0, help="fleet-wide hub work through `edgefm fleet up`, N stacks at a time"
    )
    parser.add_argument("--table", type=Path, help="print a before/after markdown table of this results file")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    args.project = args.project.resolve()
    results = []
    for n in (int(s) for s in args.sites.split(",")):
        res = run_size(args, n)
        results.append(res)
        for m in res.measures.values():
            print(f"[{res.label} {n}] {m.show()}", flush=True)
        print(f"[{res.label} {n}] facts: {res.facts}", flush=True)
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(old + [asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
