"""Fleet lab start time and memory: `edgefm lab up` for the sample fleet (the hub and four sites), warm binaries.

Each repetition starts the lab twice: fresh (new lab directory: CA, certificates, empty etcd, CRDs and nodes
applied) and restarted (after `down`, data kept). Reported: wall time of `up` until every node is Ready, and the
summed resident memory (VmRSS) of every process the lab started, read from /proc once `up` returns and again
after `--settle` seconds. Run: `python bench/lab_start.py --reps 3` (needs `make lab-tools`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from edgefm.ops.lab.runtime import Lab

ROOT = Path(__file__).resolve().parent.parent


def rss_bytes(lab: Lab) -> dict[str, int]:
    """VmRSS per process name, summed over every cluster."""
    out: dict[str, int] = {}
    for stack in lab.stacks_with_state():
        for name, proc in lab.cluster(stack).procs.items():
            if not proc.alive():
                continue
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[name] = out.get(name, 0) + int(line.split()[1]) * 1024
    return out


def timed_up(lab: Lab) -> float:
    started = time.monotonic()
    statuses = lab.up()
    seconds = time.monotonic() - started
    assert all(s.healthy for s in statuses), [s for s in statuses if not s.healthy]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to wait before the second RSS reading")
    args = parser.parse_args()
    fresh: list[float] = []
    restart: list[float] = []
    rss_up: list[int] = []
    rss_settled: list[int] = []
    per_process: dict[str, int] = {}
    clusters = 0
    with tempfile.TemporaryDirectory(prefix="edgefm-lab-bench-") as tmp:
        for rep in range(args.reps):
            lab = Lab(ROOT, Path(tmp) / f"lab-{rep}")
            try:
                clusters = len(lab.plan())
                fresh.append(timed_up(lab))
                rss_up.append(sum(rss_bytes(lab).values()))
                lab.down()
                restart.append(timed_up(lab))
                time.sleep(args.settle)
                per_process = rss_bytes(lab)
                rss_settled.append(sum(per_process.values()))
            finally:
                lab.down(purge=True)
            print(
                f"rep {rep + 1}: fresh {fresh[-1]:.1f}s, restart {restart[-1]:.1f}s, "
                f"RSS {rss_up[-1] / 2**30:.2f} GiB at up, {rss_settled[-1] / 2**30:.2f} GiB after {args.settle:.0f}s"
            )
    gib = 2**30
    print(f"\n{clusters} clusters (hub + sites), {args.reps} repetitions, median (min-max):")
    print(f"  fresh start   {statistics.median(fresh):.1f} s ({min(fresh):.1f}-{max(fresh):.1f})")
    print(f"  restart       {statistics.median(restart):.1f} s ({min(restart):.1f}-{max(restart):.1f})")
    print(
        f"  RSS at up     {statistics.median(rss_up) / gib:.2f} GiB ({min(rss_up) / gib:.2f}-{max(rss_up) / gib:.2f})"
    )
    print(
        f"  RSS settled   {statistics.median(rss_settled) / gib:.2f} GiB "
        f"({min(rss_settled) / gib:.2f}-{max(rss_settled) / gib:.2f})"
    )
    print(
        "  per process (last rep, all clusters): "
        + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in per_process.items())
    )


if __name__ == "__main__":
    main()
