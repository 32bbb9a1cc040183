"""Build (once, cached) and run Prometheus on 127.0.0.1 for the health-gate tests.

Prometheus is compiled from its Go module (`go install`, no `replace` in its go.mod) into
``${XDG_CACHE_HOME:-~/.cache}/edgefm/prometheus/<version>/prometheus``; ``EDGEFM_PROMETHEUS_BIN`` names a prebuilt
binary instead. Built without the web UI's assets (the API is all the tests use).

    python -m tools.prometheus.server build   # prints the binary path, builds if missing

`hub_and_agent(tmp, metrics_port)` starts what the hub has: a Prometheus server with the remote-write receiver,
fed by a Prometheus agent that scrapes a metrics endpoint and remote-writes, as each site's agent does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.gobuild import BuildError, Go, cache_root, ensure_binary, go_install

MODULE = "github.com/prometheus/prometheus"
# Prometheus 3.x is published to the module proxy as v0.3XX.Y (v0.316.0 is Prometheus 3.16.0).
VERSION = "v0.316.0"


class PrometheusError(RuntimeError):
    """Prometheus could not be built or started."""


def binary_path() -> Path:
    override = os.environ.get("EDGEFM_PROMETHEUS_BIN")
    return Path(override) if override else cache_root() / "prometheus" / VERSION / "prometheus"


def ensure_prometheus(*, quiet: bool = False) -> Path:
    started = time.monotonic()

    def build(scratch: Path) -> Path:
        if not quiet:
            print(f"building Prometheus {VERSION} (one time, several minutes) ...", file=sys.stderr)
        go = Go(gocache=cache_root() / "gocache", scratch=scratch)
        return go_install(go, f"{MODULE}/cmd/prometheus@{VERSION}", "prometheus", scratch, step="prometheus")

    try:
        path, built = ensure_binary(binary_path(), build)
    except BuildError as exc:
        raise PrometheusError(f"{exc}\n{exc.tail}") from exc
    if built and not quiet:
        print(f"built {path} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Running:
    url: str
    process: subprocess.Popen[bytes]


def _ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrometheusError(f"prometheus exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise PrometheusError(f"prometheus at {url} not ready after {timeout:.0f}s:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def _serve(args: list[str], port: int, log: Path) -> Iterator[Running]:
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ensure_prometheus(quiet=True)), *args, f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _ready(url, process, log)
        yield Running(url, process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def hub_and_agent(work: Path, metrics_port: int, site: str, interval: str = "1s") -> Iterator[Running]:
    """The hub's Prometheus (remote-write receiver on) and an agent scraping 127.0.0.1:`metrics_port` with the
    external label site=`site`, remote-writing to the hub; yields the hub."""
    hub_port, agent_port = free_port(), free_port()
    (work / "hub").mkdir(parents=True, exist_ok=True)
    (work / "agent").mkdir(parents=True, exist_ok=True)
    (work / "hub.yml").write_text("global:\n  scrape_interval: 1m\n")
    (work / "agent.yml").write_text(
        f"global:\n  scrape_interval: {interval}\n  external_labels:\n    site: {site}\n"
        f"scrape_configs:\n  - job_name: site\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        f"remote_write:\n  - url: http://127.0.0.1:{hub_port}/api/v1/write\n"
        f"    queue_config:\n      batch_send_deadline: 1s\n"
    )
    hub_args = [
        f"--config.file={work / 'hub.yml'}",
        f"--storage.tsdb.path={work / 'hub'}",
        "--web.enable-remote-write-receiver",
    ]
    agent_args = ["--agent", f"--config.file={work / 'agent.yml'}", f"--storage.agent.path={work / 'agent'}"]
    with _serve(hub_args, hub_port, work / "hub.log") as hub, _serve(agent_args, agent_port, work / "agent.log"):
        yield hub


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(ensure_prometheus())
    else:
        sys.exit("usage: python -m tools.prometheus.server build")
