"""Run the real ``tritonserver`` that the ``nvidia-pytriton`` wheel carries, for tests and benchmarks.

The wheel holds Triton 2.51 with the Python backend only, and one Python-backend stub per Python version. Its
own Python API pins numpy<2, so the server binary is run directly: a private backend directory gets the backend
library and the stub for this interpreter (links, nothing copied into the shared environment), and the stub
finds numpy and onnxruntime through PYTHONPATH. Ports are free ones on 127.0.0.1; the server is stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

STUB_SITE = "triton-stub"  # from requirements-target-triton-stub.lock


class TritonError(RuntimeError):
    """tritonserver could not be found or did not come up."""


def server_root() -> Path:
    try:
        dist = metadata.distribution("nvidia-pytriton")
    except metadata.PackageNotFoundError:
        raise TritonError("nvidia-pytriton is not installed: it carries the tritonserver binary") from None
    root = Path(str(dist.locate_file("pytriton/tritonserver")))
    if not (root / "bin" / "tritonserver").is_file():
        raise TritonError(f"{root}/bin/tritonserver is missing from the nvidia-pytriton wheel")
    return root


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def backend_dir(root: Path, dest: Path) -> Path:
    """``dest/python`` with the Python backend and this interpreter's stub, as Triton expects them."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    python = dest / "python"
    python.mkdir(parents=True, exist_ok=True)
    for src in (*sorted((root / "backends" / "python").glob("*.*")), stub):
        link = python / src.name
        if not link.exists():
            link.symlink_to(src)
    return dest


@dataclass(frozen=True)
class Triton:
    http_port: int
    grpc_port: int
    metrics_port: int
    pid: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _wait_live(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TritonError(f"tritonserver exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"http://{url}/v2/health/live", timeout=1) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise TritonError(f"tritonserver was not live within {timeout:.0f}s:\n{log.read_text(errors='replace')[-4000:]}")


@contextlib.contextmanager
def run_triton(
    repository: str,
    *,
    poll_seconds: int = 2,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 60.0,
    extra_args: tuple[str, ...] = (),
    root: Path | None = None,
    stub_path: list[str] | None = None,
) -> Iterator[Triton]:
    """Serve ``repository`` (a directory or ``s3://http://host:port/bucket/prefix``) in poll mode.

    ``root`` and ``stub_path`` override where the server comes from and what the Python-backend stub imports
    from (a GPU machine with the server's files unpacked, and models that exchange tensors by DLPack only)."""
    root = root or server_root()
    with tempfile.TemporaryDirectory(prefix="triton-") as tmp:
        backends = backend_dir(root, Path(tmp) / "backends")
        http, grpc, metrics = free_port(), free_port(), free_port()
        if stub_path is None:
            # numpy 1 first: the stub's C++ side was built against numpy 1's array layout (numpy 2 arrays come
            # back with the wrong size), then the environment's own packages (onnxruntime works with either).
            stub_site = Path(sys.prefix) / STUB_SITE
            if not stub_site.is_dir():
                raise TritonError(f"{stub_site} is missing: the environment was not built by tools/workload_venv.py")
            stub_path = [str(stub_site), sysconfig.get_paths()["purelib"]]
        site_packages = os.pathsep.join(stub_path)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        run_env = {
            **os.environ,
            **(env or {}),
            # The stub runs model.py with this environment's numpy and onnxruntime, against its libpython.
            "PYTHONPATH": site_packages,
            "LD_LIBRARY_PATH": os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p),
        }
        log = (log_dir or Path(tmp)) / f"tritonserver-{http}.log"
        cmd = [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=poll",
            f"--repository-poll-secs={poll_seconds}",
            "--http-address=127.0.0.1",
            f"--http-port={http}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics}",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            "--strict-readiness=false",
            "--exit-on-error=false",
            # The default 30 s would outlive a short test; models are stateless, nothing to drain.
            "--exit-timeout-secs=3",
            *extra_args,
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, env=run_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_live(f"127.0.0.1:{http}", proc, log, timeout)
            yield Triton(http, grpc, metrics, proc.pid, log)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    # The server's session holds the Python-backend stubs it started: stop them with it.
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
