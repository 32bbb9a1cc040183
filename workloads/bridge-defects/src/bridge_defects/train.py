"""The FineTuning Job's entry point: site buckets in, a new Triton model version out.

    python -m bridge_defects.train --base-model foundation/bridge-defect-vit/1.0.0/files/ \\
        --dataset-prefix labelled/ --output-prefix finetuned/ --model-name bridge-defect-vit \\
        --classes background,crack,... --epochs 20 --batch-size 32 --learning-rate 0.0001 \\
        --checkpoint-prefix <job-name>/

1. reads the base model (``backbone.safetensors`` + ``model.json``) from the models bucket, the labelled frames
   (``<dataset-prefix><class>/<frame>.png|jpg``) from the datasets bucket;
2. splits off a held-out set by a hash of each frame's key (stable across restarts and re-runs);
3. fine-tunes, checkpointing to ``<checkpoint-prefix>epoch-NNNN.pt`` in the checkpoints bucket every epoch, and
   resumes from the newest checkpoint after a pod restart;
4. evaluates on the held-out set (accuracy, per-class accuracy, confusion matrix);
5. exports ONNX (dynamic batch) and publishes it as the next numbered version under ``<output-prefix><model>/``;
6. records ``<checkpoint-prefix>done.json``, so a restarted pod does not publish the same run twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bridge_defects import model as vit
from bridge_defects.classes import parse_classes
from bridge_defects.finetune import TrainConfig, evaluate, export_onnx, fine_tune, format_evaluation, stderr_log
from bridge_defects.frames import load_frames
from bridge_defects.storage import Bucket, StorageError, bucket
from bridge_defects.triton_repo import ServingSpec, publish_version

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
log = stderr_log


class TrainError(RuntimeError):
    """Bad input or state; the message is one line naming what is wrong."""


@dataclass
class S3Checkpoints:
    bucket: Bucket
    prefix: str
    keep: int = 2

    def _epochs(self) -> list[tuple[int, str]]:
        found = []
        for key in self.bucket.keys(self.prefix):
            name = key[len(self.prefix) :]
            if name.startswith("epoch-") and name.endswith(".pt") and name[6:-3].isdigit():
                found.append((int(name[6:-3]), key))
        return sorted(found)

    def latest(self) -> tuple[int, bytes] | None:
        epochs = self._epochs()
        if not epochs:
            return None
        epoch, key = epochs[-1]
        blob = self.bucket.get(key)
        return (epoch, blob) if blob is not None else None

    def save(self, epoch: int, blob: bytes) -> None:
        # One PUT: an object appears whole or not at all, so a pod killed mid-upload leaves the previous one.
        self.bucket.put(f"{self.prefix}epoch-{epoch:04d}.pt", blob)
        old = [key for _, key in self._epochs()[: -self.keep]]
        if old:
            self.bucket.delete(old)


def held_out(key: str, fraction: float) -> bool:
    """Whether a frame is in the held-out split: decided by its key alone, so every run agrees."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


def list_dataset(datasets: Bucket, prefix: str, classes: tuple[str, ...]) -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = {c: [] for c in classes}
    ignored: set[str] = set()
    for key in datasets.keys(prefix):
        rest = key[len(prefix) :]
        if "/" not in rest or not rest.lower().endswith(IMAGE_SUFFIXES):
            continue
        label = rest.split("/", 1)[0]
        if label in by_class:
            by_class[label].append(key)
        else:
            ignored.add(label)
    if ignored:
        log(f"ignoring frames of classes not in --classes: {', '.join(sorted(ignored))}")
    empty = [c for c, keys in by_class.items() if not keys]
    if empty:
        raise TrainError(f"no frames under s3://{datasets.name}/{prefix}<class>/ for class(es): {', '.join(empty)}")
    return by_class


def download_base(models: Bucket, prefix: str, dest: Path) -> dict[str, Any]:
    for name in (vit.META_FILE, vit.BACKBONE_FILE):
        key = f"{prefix}{name}"
        try:
            models.download(key, dest / name)
        except models.client.exceptions.ClientError as exc:
            raise TrainError(f"base model file s3://{models.name}/{key} could not be read: {exc}") from None
    try:
        return vit.read_meta(dest)
    except vit.BaseModelError as exc:
        raise TrainError(str(exc)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Fine-tune the bridge-defect ViT on the site's labelled frames.")
    p.add_argument("--base-model", required=True, help="prefix of the base model in the models bucket")
    p.add_argument("--dataset-prefix", required=True, help="prefix of <class>/<frame> in the datasets bucket")
    p.add_argument("--output-prefix", required=True, help="Triton repository prefix in the models bucket")
    p.add_argument("--model-name", required=True, help="Triton model name")
    p.add_argument("--classes", required=True, help="comma-separated class names, in output order")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--learning-rate", type=float, required=True)
    p.add_argument("--checkpoint-prefix", required=True, help="prefix for this run in the checkpoints bucket")
    p.add_argument("--image-size", type=int, default=224, help="input edge in px (multiple of 14)")
    p.add_argument("--depth", type=int, default=None, help="keep only the first N backbone blocks (quick runs)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of frames held out for evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serving-backend", choices=["onnxruntime", "python"], default="onnxruntime")
    p.add_argument("--max-batch-size", type=int, default=32, help="Triton max_batch_size")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    args = p.parse_args(argv)
    for name in ("base_model", "dataset_prefix", "output_prefix", "checkpoint_prefix"):
        value: str = getattr(args, name)
        if not value.endswith("/"):
            p.error(f"--{name.replace('_', '-')} {value!r} must end with '/'")
    if not 0 < args.holdout < 1:
        p.error(f"--holdout must be between 0 and 1, got {args.holdout}")
    return args


def run(args: argparse.Namespace) -> int:
    classes = parse_classes(args.classes)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        image_size=args.image_size,
        seed=args.seed,
    )
    spec = ServingSpec(args.model_name, classes, args.image_size, args.max_batch_size)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    datasets, models, ckpt_bucket = bucket("DATASETS"), bucket("MODELS"), bucket("CHECKPOINTS")

    done_key = f"{args.checkpoint_prefix}done.json"
    done = ckpt_bucket.get(done_key)
    if done is not None:
        log(f"this run already published version {json.loads(done)['version']}; nothing to do")
        return 0

    # The pod's scratch volume when mounted, else the system temporary directory.
    scratch = Path(os.environ.get("EDGEFM_SCRATCH", "/scratch"))
    scratch_root = scratch if scratch.is_dir() and os.access(scratch, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="finetune-", dir=scratch_root) as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        meta = download_base(models, args.base_model, work / "base")
        by_class = list_dataset(datasets, args.dataset_prefix, classes)
        train_keys: list[tuple[str, int]] = []
        test_keys: list[tuple[str, int]] = []
        for label, keys in by_class.items():
            for key in sorted(keys):
                (test_keys if held_out(key, args.holdout) else train_keys).append((key, classes.index(label)))
        if not train_keys or not test_keys:
            raise TrainError(f"{len(train_keys)} training and {len(test_keys)} held-out frames: need both")

        def fetch(key: str) -> Path:
            dest = work / "frames" / key
            datasets.download(key, dest)
            return dest

        with ThreadPoolExecutor(max_workers=16) as pool:
            train_paths = list(pool.map(fetch, [k for k, _ in train_keys]))
            test_paths = list(pool.map(fetch, [k for k, _ in test_keys]))
        train_x = load_frames(train_paths, args.image_size)
        test_x = load_frames(test_paths, args.image_size)
        train_y = torch.tensor([c for _, c in train_keys])
        test_y = torch.tensor([c for _, c in test_keys])
        log(
            f"data: {len(train_keys)} training and {len(test_keys)} held-out frames of {len(classes)} classes "
            f"loaded in {time.perf_counter() - started:.1f}s; base model {meta.get('name', '?')} "
            f"(sha256 {meta['sha256'][:12]})"
        )

        torch.manual_seed(args.seed)
        net = vit.build(len(classes), args.image_size, args.depth)
        vit.load_backbone(net, work / "base")
        fingerprint = {
            "classes": list(classes),
            "base_sha256": meta["sha256"],
            "depth": args.depth,
            "train_keys": hashlib.sha256("\n".join(k for k, _ in train_keys).encode()).hexdigest(),
        }
        checkpoints = S3Checkpoints(ckpt_bucket, args.checkpoint_prefix)
        stats = fine_tune(net, train_x, train_y, cfg, checkpoints, fingerprint, device=device)
        log(f"trained at {stats.images_per_second:.1f} images/s on {device}")

        result = evaluate(net, test_x, test_y, classes, device)
        log(format_evaluation(result))
        onnx_path = work / "model.onnx"
        diff = export_onnx(net, args.image_size, onnx_path, test_x[:3])
        if diff > 1e-2:
            raise TrainError(f"exported ONNX differs from the trained model by {diff:.2e}; not publishing it")
        evaluation = {
            **result,
            "base_model": meta,
            "settings": vars(args),
            "onnx_max_abs_diff": diff,
            "train_images_per_second": stats.images_per_second,
        }
        version = publish_version(
            models, args.output_prefix, spec, onnx_path.read_bytes(), evaluation, flavour=args.serving_backend
        )
        ckpt_bucket.put(done_key, json.dumps({"version": version, "accuracy": result["accuracy"]}).encode())
        log(
            f"published {args.model_name} version {version} to s3://{models.name}/{args.output_prefix}"
            f"{args.model_name}/ (held-out accuracy {result['accuracy']:.3f})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (TrainError, StorageError, vit.BaseModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
