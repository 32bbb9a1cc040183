"""Build (once, cached) and run a local MinIO server for tests and benchmarks.

MinIO is compiled from its Go module with ``go install`` so no binary has to be downloaded from
outside a package registry. The binary is cached per pinned version under
``${XDG_CACHE_HOME:-~/.cache}/edgefm/minio/<version>/minio``; set ``EDGEFM_MINIO_BIN`` to use a
prebuilt binary instead.

Command line (for the Makefile / CI prebuild step)::

    python -m tools.minio.server build     # prints the binary path, builds if missing
    python -m tools.minio.server serve DIR # runs a server on 127.0.0.1 until Ctrl-C
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.gobuild import BuildError, Go, cache_root, ensure_binary, go_install

MINIO_MODULE = "github.com/minio/minio"
# The proxy serves MinIO's RELEASE.* tags only as pseudo-versions; this is the newest commit it
# has (2026-02-12). Its go.mod has no `replace`, so plain `go install module@version` works.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

ROOT_USER = "edgefm-test"
ROOT_PASSWORD = "edgefm-test-secret"


class MinioError(RuntimeError):
    """MinIO could not be built or started."""


def cache_dir() -> Path:
    return cache_root() / "minio" / MINIO_VERSION


def binary_path() -> Path:
    override = os.environ.get("EDGEFM_MINIO_BIN")
    return Path(override) if override else cache_dir() / "minio"


def ensure_minio(*, quiet: bool = False) -> Path:
    """Return the MinIO binary, building it with ``go install`` if it is not cached yet."""
    binary = binary_path()
    if os.environ.get("EDGEFM_MINIO_BIN") and not (binary.is_file() and os.access(binary, os.X_OK)):
        raise MinioError(f"EDGEFM_MINIO_BIN={binary} is not an executable file")
    started = time.monotonic()

    def build(scratch: Path) -> Path:
        if not quiet:
            print(f"building MinIO {MINIO_VERSION} (one time, several minutes) ...", file=sys.stderr)
        go = Go(gocache=cache_root() / "gocache", scratch=scratch)
        return go_install(go, f"{MINIO_MODULE}@{MINIO_VERSION}", "minio", scratch, step="minio")

    try:
        path, built = ensure_binary(binary, build)
    except BuildError as exc:
        raise MinioError(f"{exc}\n{exc.tail}") from exc
    if built and not quiet:
        print(f"built {path} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class MinioServer:
    endpoint_url: str
    access_key: str
    secret_key: str
    data_dir: Path
    pid: int


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float, ca: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MinioError(f"MinIO exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{url}/minio/health/live", timeout=1, context=context) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise MinioError(f"MinIO did not become healthy within {timeout:.0f}s:\n{log.read_text(errors='replace')[-4000:]}")


@contextlib.contextmanager
def run_minio(
    data_dir: Path, *, port: int | None = None, timeout: float = 60.0, certs_dir: Path | None = None
) -> Iterator[MinioServer]:
    """Run MinIO on 127.0.0.1 with ``data_dir`` as its single drive; stop it on exit.

    With ``certs_dir`` (``public.crt``, ``private.key`` and ``CAs/``) it serves HTTPS only."""
    binary = ensure_minio()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    console = free_port()
    env = {
        **os.environ,
        "MINIO_ROOT_USER": ROOT_USER,
        "MINIO_ROOT_PASSWORD": ROOT_PASSWORD,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        # Keep the server off every network except loopback.
        "MINIO_CALLHOME_ENABLE": "off",
    }
    log = data_dir.parent / f"{data_dir.name}.minio.log"
    url = f"{'https' if certs_dir else 'http'}://127.0.0.1:{port}"
    tls = ["--certs-dir", str(certs_dir)] if certs_dir else []
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "server",
                "--quiet",
                "--address",
                f"127.0.0.1:{port}",
                "--console-address",
                f"127.0.0.1:{console}",
                *tls,
                str(data_dir),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ca = certs_dir / "CAs" / "ca.crt" if certs_dir else None
        _wait_healthy(url, proc, log, timeout, ca)
        yield MinioServer(url, ROOT_USER, ROOT_PASSWORD, data_dir, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["build"]:
        print(ensure_minio())
        return 0
    if args[:1] == ["serve"] and len(args) == 2:
        # Stop MinIO on SIGTERM too, and on Ctrl-C even when started from a script as a background job.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with run_minio(Path(args[1]).resolve()) as server:
            print(f"MinIO at {server.endpoint_url} (user {server.access_key}, password {server.secret_key})")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        return 0
    print("usage: python -m tools.minio.server build | serve DATA_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
