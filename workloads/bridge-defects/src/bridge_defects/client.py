"""Send frames from a directory to Triton and print each frame's class, confidence and the latency percentiles.

    python -m bridge_defects.client FRAMES_DIR --url 127.0.0.1:8001 --protocol grpc --model bridge-defect-vit

The class names come from the server (the model's ``labels.txt`` through Triton's classification extension),
the input size from the model's metadata, so the client needs no copy of either.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from bridge_defects.model import MEAN, STD
from bridge_defects.triton_repo import INPUT_NAME, OUTPUT_NAME

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Prediction:
    frame: str
    label: str
    confidence: float
    latency_ms: float


def preprocess(path: Path, size: int) -> NDArray[np.float32]:
    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
    mean = np.asarray(MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(STD, np.float32).reshape(3, 1, 1)
    out: NDArray[np.float32] = ((x - mean) / std)[None]
    return out


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float32] = e / e.sum(axis=-1, keepdims=True)
    return out


class Client:
    """One protocol's tritonclient, used the same way for HTTP and gRPC."""

    def __init__(self, url: str, protocol: str, model: str, version: str = "") -> None:
        if protocol == "grpc":
            import tritonclient.grpc as tc
        elif protocol == "http":
            import tritonclient.http as tc
        else:
            raise ValueError(f"protocol {protocol!r}: expected grpc or http")
        self.tc: Any = tc
        self.protocol = protocol
        self.client: Any = tc.InferenceServerClient(url=url)
        self.model = model
        self.version = version

    def ready(self) -> bool:
        try:
            return bool(self.client.is_model_ready(self.model, self.version))
        except Exception:
            return False

    def image_size(self) -> int:
        meta = self.client.get_model_metadata(self.model, self.version)
        inputs = meta.inputs if self.protocol == "grpc" else meta["inputs"]
        shape = list(inputs[0].shape) if self.protocol == "grpc" else list(inputs[0]["shape"])
        return int(shape[-1])

    def labels(self, n_classes: int, x: NDArray[np.float32]) -> list[str]:
        """The label of every output index, from one classification request for all classes."""
        inp = self.tc.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = self.tc.InferRequestedOutput(OUTPUT_NAME, class_count=n_classes)
        result = self.client.infer(self.model, [inp], model_version=self.version, outputs=[out])
        labels = [""] * n_classes
        for entry in result.as_numpy(OUTPUT_NAME)[0]:
            # Each entry is b"<score>:<index>:<label>".
            _, index, label = entry.decode().split(":", 2)
            labels[int(index)] = label
        return labels

    def logits(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        inp = self.tc.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = self.tc.InferRequestedOutput(OUTPUT_NAME)
        result = self.client.infer(self.model, [inp], model_version=self.version, outputs=[out])
        logits: NDArray[np.float32] = result.as_numpy(OUTPUT_NAME)
        return logits


def wait_ready(client: Client, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not client.ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"model {client.model} is not ready after {timeout:.0f}s")
        time.sleep(0.25)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def classify(client: Client, frames: list[Path], warmup: int = 2) -> list[Prediction]:
    size = client.image_size()
    inputs = [preprocess(p, size) for p in frames]
    first = client.logits(inputs[0])
    labels = client.labels(first.shape[1], inputs[0])
    for x in inputs[:warmup]:
        client.logits(x)
    predictions = []
    for path, x in zip(frames, inputs, strict=True):
        started = time.perf_counter()
        logits = client.logits(x)
        latency = (time.perf_counter() - started) * 1000
        probs = softmax(logits)[0]
        best = int(probs.argmax())
        predictions.append(Prediction(path.name, labels[best], float(probs[best]), latency))
    return predictions


def find_frames(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"frames directory {directory} does not exist")
    frames = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise FileNotFoundError(f"no .png/.jpg frames under {directory}")
    return frames


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Classify frames with the Triton-served bridge-defect model.")
    p.add_argument("frames", type=Path, help="directory of frames (searched recursively)")
    p.add_argument("--url", default="127.0.0.1:8001", help="host:port of Triton's gRPC or HTTP endpoint")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--model", default="bridge-defect-vit")
    p.add_argument("--model-version", default="", help="version to ask for (default: the one Triton serves)")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the model to be ready")
    args = p.parse_args(argv)
    try:
        frames = find_frames(args.frames)
        client = Client(args.url, args.protocol, args.model, args.model_version)
        wait_ready(client, args.wait)
        predictions = classify(client, frames)
    except (FileNotFoundError, TimeoutError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    width = max(len(pr.frame) for pr in predictions)
    for pr in predictions:
        print(f"{pr.frame:<{width}}  {pr.label:<16} {pr.confidence:6.3f}  {pr.latency_ms:7.2f} ms")
    lat = [pr.latency_ms for pr in predictions]
    print(
        f"{len(lat)} frames over {args.protocol}: latency p50 {percentile(lat, 50):.2f} ms, "
        f"p90 {percentile(lat, 90):.2f} ms, p99 {percentile(lat, 99):.2f} ms, mean {statistics.fmean(lat):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
