"""Portal inventory render time at fleet scale: the fleet page over N generated sites, server time per request.

Sites are generated from the two sample templates (GPU fine-tuning, CPU-only) with labels spread over the
placement vocabulary, each with a preview and an update in the journal and a cluster status. The first request
after start reads and resolves every stack file (the portal also warms this up in the background); later
requests find it cached and only stat each file. Server time is read from the portal's Server-Timing header
(wall time, and the request thread's CPU time, which a busy shared machine does not inflate).

    python bench/portal_inventory.py [--sites 1000 3500] [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from edgefm.portal.app import server_ms
from tests.portal.bigfleet import big_fleet
from tests.portal.conftest import sign_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1000, 3500])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    print(f"{'sites':>6} {'first ms':>9} {'median ms':>10} {'p90 ms':>7} {'median CPU ms':>14} {'filtered ms':>12}")
    for n in args.sites:
        with tempfile.TemporaryDirectory() as tmp:
            portal = big_fleet(Path(tmp) / "fleet", n - 4)
            with TestClient(portal.app, base_url="http://127.0.0.1") as client:
                sign_in(client, "alice")
                first = server_ms(client.get("/").headers["server-timing"])
                timings = [client.get("/").headers["server-timing"] for _ in range(args.reps)]
                filtered = client.get("/", params={"selector": "tier=production,accelerator=gpu"})
            wall = sorted(server_ms(t) for t in timings)
            cpu = statistics.median(server_ms(t, "cpu") for t in timings)
            p90 = wall[int(0.9 * (len(wall) - 1))]
            print(
                f"{n:>6} {first:>9.0f} {statistics.median(wall):>10.0f} {p90:>7.0f} {cpu:>14.0f}"
                f" {server_ms(filtered.headers['server-timing']):>12.0f}"
            )


if __name__ == "__main__":
    main()
