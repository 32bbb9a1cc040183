"""GPU benchmark: the fine-tune pipeline vs the bare training loop, side by side; inference latency in torch.

One run, on one GPU, without network access:

1. draws 300 labelled frames (50 per class, 224 px) as PNG files, and 300 held-out frames;
2. pipeline: decode the PNGs, build the network, load the pretrained backbone, fine-tune 5 epochs (bf16 autocast,
   on-device augmentation, a checkpoint every epoch written in the background) exactly as the trainer does;
3. bare loop: the same network and optimizer on the same frames already normalised on the GPU, no augmentation,
   no checkpoints: the rate the hardware gives this model;
   (2 and 3 run back to back after a shared warm-up, twice, alternating which goes first);
4. held-out accuracy of the pipeline's model, and of the same recipe from random weights;
5. inference p50/p99 latency and images/s at batch 1, 8 and 32 (bf16 autocast, eager).

    python bench/gpu.py --base-model DIR [--frames 300] [--epochs 5] [--size 224] [--json out.json]

``DIR`` is a base model directory (``python -m bridge_defects.base_model DIR --dtype bfloat16`` makes a 44 MB copy
that travels to a GPU machine). Small ``--frames/--size`` values check the script's logic on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bridge_defects import model as vit
from bridge_defects import synth
from bridge_defects.classes import CLASSES
from bridge_defects.finetune import LocalCheckpoints, TrainConfig, _param_groups, evaluate, fine_tune
from bridge_defects.frames import load_frames
from bridge_defects.model import normalise


def _draw(job: tuple[Path, str, int, int, int]) -> str:
    out, label, index, seed, size = job
    path = out / label / f"{label}-{index:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    synth.draw_frame(label, index, seed=seed, size=size).save(path)
    return str(path)


def draw(out: Path, per_class: int, start: int, seed: int, size: int) -> tuple[list[Path], torch.Tensor]:
    jobs = [(out, label, i, seed, size) for label in CLASSES for i in range(start, start + per_class)]
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        paths = [Path(p) for p in pool.map(_draw, jobs, chunksize=4)]
    labels = torch.tensor([CLASSES.index(label) for _, label, *_ in jobs])
    return paths, labels


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, device: torch.device
) -> dict[str, float]:
    """The same model and optimizer on GPU-resident, pre-normalised tensors: nothing but the training steps."""
    net.to(device).train()
    optimizer = torch.optim.AdamW(_param_groups(net, cfg))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    n = x.shape[0]
    sync(device)
    started = time.perf_counter()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, device=device)
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = criterion(net(x[idx]).float(), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    sync(device)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "images_per_second": n * cfg.epochs / seconds}


def pipeline(
    paths: list[Path],
    labels: torch.Tensor,
    base: Path | None,
    cfg: TrainConfig,
    device: torch.device,
    ckpt: Path | None,
) -> tuple[nn.Module, dict[str, float]]:
    """What the trainer does after its download: decode, build, load, fine-tune with per-epoch checkpoints."""
    sync(device)
    started = time.perf_counter()
    frames = load_frames(paths, cfg.image_size, threads=min(16, os.cpu_count() or 1))
    decoded = time.perf_counter()
    torch.manual_seed(cfg.seed)
    net = vit.build(len(CLASSES), cfg.image_size)
    if base is not None:
        vit.load_backbone(net, base)
    built = time.perf_counter()
    store = LocalCheckpoints(ckpt) if ckpt is not None else None
    stats = fine_tune(net, frames, labels, cfg, store, {"bench": True}, device=device, log=_quiet)
    sync(device)
    ended = time.perf_counter()
    n = frames.shape[0] * cfg.epochs
    return net, {
        "wall_seconds": ended - started,
        "decode_seconds": decoded - started,
        "build_and_load_seconds": built - decoded,
        "train_seconds": ended - built,
        "epoch_seconds": sum(e.seconds for e in stats.epochs),
        "checkpoint_wait_seconds": stats.checkpoint_wait_seconds,
        # Rate over the training phase, checkpoints included: what the Job's epochs cost.
        "images_per_second": n / (ended - built),
        "images_per_second_end_to_end": n / (ended - started),
    }


def _quiet(_: str) -> None:
    pass


def latency(net: nn.Module, size: int, batch: int, device: torch.device, iters: int) -> dict[str, float]:
    net.eval().to(device)
    x = normalise(torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, device=device))
    times: list[float] = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for i in range(iters + 10):
            sync(device)
            started = time.perf_counter()
            net(x)
            sync(device)
            if i >= 10:  # warm-up iterations are not counted
                times.append((time.perf_counter() - started) * 1000)
    times.sort()

    def p(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))]

    return {
        "batch": batch,
        "p50_ms": p(0.50),
        "p99_ms": p(0.99),
        "mean_ms": statistics.fmean(times),
        "images_per_second": batch * 1000 / statistics.fmean(times),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-model", type=Path, required=True)
    p.add_argument("--frames", type=int, default=300, help="training frames (and as many held out)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--latency-iters", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2, help="pipeline/bare pairs, alternating order")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {card}; torch {torch.__version__}; python {platform.python_version()}", flush=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    per_class = max(1, args.frames // len(CLASSES))
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, image_size=args.size
    )
    report: dict[str, Any] = {"device": card, "torch": torch.__version__, "settings": vars(args) | {"json": None}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        train_paths, train_y = draw(work / "train", per_class, 0, 0, args.size)
        test_paths, test_y = draw(work / "heldout", per_class, 100_000, 0, args.size)
        report["draw_seconds"] = time.perf_counter() - started
        print(f"drew {len(train_paths)} + {len(test_paths)} frames in {report['draw_seconds']:.1f}s", flush=True)
        test_x = load_frames(test_paths, args.size)

        # Shared warm-up (CUDA context, kernels, allocator) so neither side pays it.
        warm = vit.build(len(CLASSES), args.size)
        bare_x = normalise(load_frames(train_paths, args.size).to(device))
        bare_y = train_y.to(device)
        bare_loop(warm, bare_x[: args.batch_size * 2], bare_y[: args.batch_size * 2], cfg, device)
        del warm

        runs: dict[str, list[dict[str, float]]] = {"pipeline": [], "bare": [], "pipeline_no_checkpoints": []}
        trained: nn.Module | None = None
        for r in range(args.rounds):
            order: list[tuple[str, Callable[[], None]]] = []

            def run_pipeline(r: int = r) -> None:
                nonlocal trained
                net, stats = pipeline(train_paths, train_y, args.base_model, cfg, device, work / f"ckpt-{r}")
                runs["pipeline"].append(stats)
                trained = net

            def run_bare() -> None:
                net = vit.build(len(CLASSES), args.size)
                vit.load_backbone(net, args.base_model)
                runs["bare"].append(bare_loop(net, bare_x, bare_y, cfg, device))

            def run_unsaved(r: int = r) -> None:
                # The same pipeline without checkpoints: what checkpointing costs.
                runs["pipeline_no_checkpoints"].append(
                    pipeline(train_paths, train_y, args.base_model, cfg, device, None)[1]
                )

            order = [("pipeline", run_pipeline), ("bare", run_bare), ("unsaved", run_unsaved)]
            for _, fn in order if r % 2 == 0 else reversed(order):
                fn()
            pl, br = runs["pipeline"][-1], runs["bare"][-1]
            print(
                f"round {r + 1}: pipeline {pl['images_per_second']:.1f} img/s (wall {pl['wall_seconds']:.2f}s, "
                f"decode {pl['decode_seconds']:.2f}s, checkpoint wait {pl['checkpoint_wait_seconds']:.2f}s); "
                f"bare loop {br['images_per_second']:.1f} img/s ({br['seconds']:.2f}s); "
                f"pipeline without checkpoints {runs['pipeline_no_checkpoints'][-1]['images_per_second']:.1f} img/s",
                flush=True,
            )
        report["runs"] = runs
        med = {k: statistics.median(s["images_per_second"] for s in v) for k, v in runs.items()}
        report["pipeline_vs_bare"] = med["pipeline"] / med["bare"]
        assert trained is not None
        pre = evaluate(trained, test_x, test_y, CLASSES, device)

        torch.manual_seed(cfg.seed)
        scratch = vit.build(len(CLASSES), args.size)
        fine_tune(scratch, load_frames(train_paths, args.size), train_y, cfg, None, {}, device=device, log=_quiet)
        rnd = evaluate(scratch, test_x, test_y, CLASSES, device)
        report["quality"] = {
            "heldout_frames": len(test_paths),
            "pretrained": pre["accuracy"],
            "random_init": rnd["accuracy"],
            "pretrained_per_class": pre["per_class_accuracy"],
            "pretrained_confusion": pre["confusion_matrix"],
        }
        print(
            f"held-out accuracy ({len(test_paths)} frames): pretrained {pre['accuracy']:.3f}, "
            f"random init {rnd['accuracy']:.3f}",
            flush=True,
        )
        report["inference_torch"] = [
            latency(trained, args.size, b, device, args.latency_iters if b < 32 else args.latency_iters // 2)
            for b in (1, 8, 32)
        ]
        for row in report["inference_torch"]:
            print(
                f"torch inference batch {row['batch']:>2}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                f"{row['images_per_second']:.0f} img/s",
                flush=True,
            )
        if device.type == "cuda":
            report["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(
        f"fine-tune pipeline {med['pipeline']:.1f} img/s vs bare loop {med['bare']:.1f} img/s "
        f"= {report['pipeline_vs_bare']:.2f} (median of {args.rounds})",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
