"""Quality: the pretrained backbone fine-tuned on a small labelled set vs the same network from random weights.

Both runs see the same frames, the same recipe (the trainer's fine_tune with the Job's default learning rate) and
the same held-out set: ``--heldout`` frames per class drawn from indices the training frames never use. The
figures are what a site gets from its own few labelled frames with and without the hub's foundation model.

    python bench/quality.py --base-model DIR [--train 30] [--heldout 50] [--size 112] [--epochs 4] [--device cpu]

``DIR`` is a converted base model (``python -m bridge_defects.base_model DIR``; made in a temporary directory when
omitted). Prints a table and writes ``--json`` when given. Targets: pretrained >= 0.90 held-out accuracy, and at
least 0.30 above random initialisation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bridge_defects import model as vit
from bridge_defects import synth
from bridge_defects.base_model import write_base_model
from bridge_defects.classes import CLASSES
from bridge_defects.finetune import TrainConfig, evaluate, fine_tune, format_evaluation


def frames(per_class: int, start: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for label_index, label in enumerate(CLASSES):
        for i in range(start, start + per_class):
            img = synth.draw_frame(label, i, seed=seed, size=size)
            xs.append(torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()))
            ys.append(label_index)
    return torch.stack(xs), torch.tensor(ys)


def run(pretrained: bool, base: Path, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    net = vit.build(len(CLASSES), args.size)
    if pretrained:
        vit.load_backbone(net, base)
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, image_size=args.size
    )
    device = torch.device(args.device)
    started = time.perf_counter()
    stats = fine_tune(net, data["train_x"], data["train_y"], cfg, None, {}, device=device)
    train_s = time.perf_counter() - started
    result = evaluate(net, data["test_x"], data["test_y"], CLASSES, device)
    label = "pretrained" if pretrained else "random init"
    print(f"\n{label}:\n{format_evaluation(result)}", flush=True)
    return {**result, "train_seconds": train_s, "train_images_per_second": stats.images_per_second}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-model", type=Path, default=None)
    p.add_argument("--train", type=int, default=30, help="training frames per class")
    p.add_argument("--heldout", type=int, default=50, help="held-out frames per class")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.base_model or Path(tmp) / "base"
        if args.base_model is None:
            write_base_model(base)
        started = time.perf_counter()
        train_x, train_y = frames(args.train, 0, args.size, args.seed)
        # Held-out frames come from an index range training never draws from.
        test_x, test_y = frames(args.heldout, 100_000, args.size, args.seed)
        data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
        print(f"drew {len(train_y)} training and {len(test_y)} held-out frames in {time.perf_counter() - started:.0f}s")
        pre = run(True, base, data, args)
        rnd = run(False, base, data, args)
    margin = pre["accuracy"] - rnd["accuracy"]
    ok = pre["accuracy"] >= 0.90 and margin >= 0.30
    print(
        f"\nheld-out accuracy ({args.heldout}/class, {args.size} px, {args.train}/class trained, {args.epochs} epochs, "
        f"{args.device}): pretrained {pre['accuracy']:.3f}, random init {rnd['accuracy']:.3f}, margin {margin:+.3f} "
        f"-> {'meets' if ok else 'MISSES'} the targets (>= 0.90, margin >= 0.30)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "settings": vars(args) | {"base_model": str(base), "json": None},
                    "pretrained": pre,
                    "random_init": rnd,
                    "margin": margin,
                },
                indent=2,
                default=str,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
