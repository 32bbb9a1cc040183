"""Triton on the GPU: batch 1, 8 and 32 latency through Triton's HTTP endpoint, the model in torch on the GPU.

For a GPU machine without network: the server's files come unpacked from the ``nvidia-pytriton`` wheel (``--root``,
the directory that holds ``pytriton/`` and ``nvidia_pytriton.libs/``), the model is ``bench/triton_torch/model.py``
(same name, dims and labels as production). Requests use Triton's binary tensor extension over one keep-alive HTTP
connection, as tritonclient's HTTP client does.

    python bench/triton_gpu.py --root DIR [--size 224] [--iters 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import site
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bridge_defects.classes import CLASSES
from bridge_defects.triton_repo import INPUT_NAME, OUTPUT_NAME, ServingSpec, config_pbtxt, labels_txt
from bridge_defects.tritonserver import run_triton

MODEL = "bridge-defect-vit"


def infer(conn: http.client.HTTPConnection, x: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, Any]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": OUTPUT_NAME, "parameters": {"binary_data": True}}],
        }
    ).encode()
    conn.request(
        "POST",
        f"/v2/models/{MODEL}/infer",
        body=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"Triton answered {resp.status}: {body[:500]!r}")
    length = int(resp.getheader("Inference-Header-Content-Length") or len(body))
    meta = json.loads(body[:length])
    shape = meta["outputs"][0]["shape"]
    return np.frombuffer(body[length:], dtype=np.float32).reshape(shape)


def wait_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", f"/v2/models/{MODEL}/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.5)
    raise TimeoutError(f"{MODEL} not ready after {timeout:.0f}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="directory holding pytriton/ and nvidia_pytriton.libs/")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        (repo / MODEL / "1").mkdir(parents=True)
        spec = ServingSpec(MODEL, CLASSES, args.size)
        (repo / MODEL / "config.pbtxt").write_text(config_pbtxt(spec, 1, "python"))
        (repo / MODEL / "labels.txt").write_text(labels_txt(CLASSES))
        shutil.copy(Path(__file__).parent / "triton_torch" / "model.py", repo / MODEL / "1" / "model.py")
        stub_path = [*site.getsitepackages(), site.getusersitepackages()]
        root = (args.root / "pytriton" / "tritonserver").resolve()  # the backend links must be absolute
        with run_triton(str(repo), root=root, stub_path=stub_path, log_dir=Path(tmp), timeout=120) as server:
            try:
                wait_ready(server.http_port, 180)
            except TimeoutError:
                print(server.log_tail(), file=sys.stderr)
                raise
            conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
            rng = np.random.default_rng(0)
            for batch in (1, 8, 32):
                x = rng.standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
                out = infer(conn, x)
                assert out.shape == (batch, len(CLASSES)), out.shape
                iters = args.iters if batch < 32 else args.iters // 2
                times = []
                for i in range(iters + 20):
                    started = time.perf_counter()
                    infer(conn, x)
                    if i >= 20:
                        times.append((time.perf_counter() - started) * 1000)
                times.sort()
                row = {
                    "batch": batch,
                    "p50_ms": times[len(times) // 2],
                    "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))],
                    "mean_ms": statistics.fmean(times),
                    "images_per_second": batch * 1000 / statistics.fmean(times),
                }
                rows.append(row)
                print(
                    f"triton (HTTP, binary tensors) batch {batch:>2}: p50 {row['p50_ms']:.2f} ms, "
                    f"p99 {row['p99_ms']:.2f} ms, {row['images_per_second']:.0f} img/s",
                    flush=True,
                )
            conn.close()
    direct = torch_latency(args.size, args.iters)
    if args.json:
        args.json.write_text(json.dumps({"triton_http": rows, "torch_in_process": direct}, indent=2))
    return 0


def torch_latency(size: int, iters: int) -> list[dict[str, float]]:
    """The same network in this process, side by side with Triton's figures: what serving adds."""
    import timm
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=len(CLASSES), img_size=size)
    net = net.to(device).eval()
    rows = []
    rng = np.random.default_rng(0)
    for batch in (1, 8, 32):
        host = torch.from_numpy(rng.standard_normal((batch, 3, size, size)).astype(np.float32))
        times = []
        n = iters if batch < 32 else iters // 2
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            for i in range(n + 20):
                started = time.perf_counter()
                net(host.to(device)).float().cpu()  # host in, host out, as through the server
                if i >= 20:
                    times.append((time.perf_counter() - started) * 1000)
        times.sort()
        row = {
            "batch": batch,
            "p50_ms": times[len(times) // 2],
            "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))],
            "images_per_second": batch * 1000 / statistics.fmean(times),
        }
        rows.append(row)
        print(
            f"torch in process (host in/out) batch {batch:>2}: p50 {row['p50_ms']:.2f} ms, "
            f"p99 {row['p99_ms']:.2f} ms, {row['images_per_second']:.0f} img/s",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
