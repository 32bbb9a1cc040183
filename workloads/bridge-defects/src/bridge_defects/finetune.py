"""Fine-tuning, evaluation and ONNX export, independent of where frames and checkpoints are stored.

The trainer (``bridge_defects.train``) feeds it frames from the site buckets; the benchmarks feed it frames
drawn locally. Frames stay uint8 on the training device for the whole run and are augmented there (flips and
quarter turns: a drone sees a bridge surface from any heading), so the input pipeline costs almost nothing next to
the network. Checkpoints are written every epoch in a background thread from a CPU copy of the state, so the next
epoch does not wait on storage.
"""

from __future__ import annotations

import math
import pickle
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from bridge_defects.model import normalise
from bridge_defects.triton_repo import INPUT_NAME, OUTPUT_NAME

Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    learning_rate: float
    image_size: int = 224
    seed: int = 0
    # The new head starts from scratch and learns this many times faster than the pretrained backbone.
    head_lr_scale: float = 10.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"--learning-rate must be in (0, 1), got {self.learning_rate}")


class Checkpoints(Protocol):
    def latest(self) -> tuple[int, bytes] | None: ...
    def save(self, epoch: int, blob: bytes) -> None: ...


@dataclass
class LocalCheckpoints:
    """Checkpoints in a local directory (benchmarks); the trainer's S3 store has the same interface."""

    root: Path

    def latest(self) -> tuple[int, bytes] | None:
        found = sorted(self.root.glob("epoch-*.pt"))
        return (int(found[-1].stem.split("-")[1]), found[-1].read_bytes()) if found else None

    def save(self, epoch: int, blob: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".epoch-{epoch:04d}.pt.tmp"
        tmp.write_bytes(blob)
        tmp.replace(self.root / f"epoch-{epoch:04d}.pt")


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_accuracy: float
    images: int
    seconds: float


@dataclass
class RunStats:
    epochs: list[EpochStats] = field(default_factory=list)
    resumed_from: int = 0
    checkpoint_wait_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        images = sum(e.images for e in self.epochs)
        seconds = sum(e.seconds for e in self.epochs)
        return images / seconds if seconds else 0.0


def augment(frames: torch.Tensor, flips: torch.Tensor, turns: int) -> torch.Tensor:
    """Flip a uint8 (N, 3, H, W) batch where ``flips`` (N, 2, bool, on the batch's device) says, then turn it
    ``turns`` quarter turns. The random draws are made per epoch, so no step waits on a host-to-device copy."""
    n = frames.shape[0]
    out = torch.where(flips[:, 0].view(n, 1, 1, 1), frames.flip(3), frames)
    out = torch.where(flips[:, 1].view(n, 1, 1, 1), out.flip(2), out)
    return torch.rot90(out, turns, dims=(2, 3))


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    head, decay, no_decay = [], [], []
    for name, p in model.named_parameters():
        if name.startswith("head."):
            head.append(p)
        elif p.ndim <= 1 or name in ("pos_embed", "cls_token", "reg_token"):
            no_decay.append(p)  # norms, biases, layer scales and embeddings are not weight-decayed
        else:
            decay.append(p)
    lr = cfg.learning_rate
    return [
        {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay, "base_lr": lr},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0, "base_lr": lr},
        {"params": head, "lr": lr * cfg.head_lr_scale, "weight_decay": 0.0, "base_lr": lr * cfg.head_lr_scale},
    ]


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


@dataclass(frozen=True)
class _Ref:
    index: int


CHECKPOINT_MAGIC = b"EDGEFM-CKPT-1\n"


@dataclass
class Packed:
    """A checkpoint as a small picklable skeleton plus one flat byte buffer per device.

    Made in the training thread with one concatenation per device (a few kernels, in stream order, no copy to the
    host); turned into bytes in the background, where the only large operations (one copy to pinned host memory,
    one join) release the GIL, unlike ``torch.save``'s zip writer, whose per-record CRC holds it while the
    launch-bound training thread waits."""

    skeleton: Any
    entries: list[tuple[str, int, int, str, tuple[int, ...]]]  # (buffer, offset, bytes, dtype, shape)
    buffers: dict[str, torch.Tensor]

    def to_bytes(self) -> bytes:
        host: dict[str, torch.Tensor] = {}
        for where, flat in self.buffers.items():
            if flat.is_cuda:
                # A side stream, so the copy overlaps the next epoch's kernels instead of queueing among them.
                side = torch.cuda.Stream(device=flat.device)  # type: ignore[no-untyped-call]
                side.wait_stream(torch.cuda.default_stream(flat.device))
                with torch.cuda.stream(side):
                    pinned = torch.empty(flat.numel(), dtype=torch.uint8, pin_memory=True)
                    pinned.copy_(flat, non_blocking=True)
                side.synchronize()
                host[where] = pinned
            else:
                host[where] = flat
        header = pickle.dumps(
            {"skeleton": self.skeleton, "entries": self.entries, "sizes": {k: v.numel() for k, v in host.items()}}
        )
        parts: list[bytes | memoryview] = [CHECKPOINT_MAGIC, len(header).to_bytes(8, "little"), header]
        parts += [memoryview(host[k].numpy().data) for k in sorted(host)]
        return b"".join(parts)


def pack(state: Any) -> Packed:
    tensors: dict[str, list[torch.Tensor]] = {}
    entries: list[tuple[str, int, int, str, tuple[int, ...]]] = []
    offsets: dict[str, int] = {}

    def ref(t: torch.Tensor) -> _Ref:
        where = "cuda" if t.is_cuda else "cpu"
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8)
        tensors.setdefault(where, []).append(raw)
        offset = offsets.get(where, 0)
        entries.append((where, offset, raw.numel(), str(t.dtype).removeprefix("torch."), tuple(t.shape)))
        offsets[where] = offset + raw.numel()
        return _Ref(len(entries) - 1)  # the skeleton keeps the entry's index in the tensor's place

    skeleton = _map_tensors(state, ref)
    buffers = {where: torch.cat(parts) for where, parts in tensors.items()}
    return Packed(skeleton, entries, buffers)


def unpack(blob: bytes) -> Any:
    if not blob.startswith(CHECKPOINT_MAGIC):
        raise ValueError("not an edgefm checkpoint (unknown format)")
    at = len(CHECKPOINT_MAGIC)
    size = int.from_bytes(blob[at : at + 8], "little")
    header = pickle.loads(blob[at + 8 : at + 8 + size])
    at += 8 + size
    starts: dict[str, int] = {}
    for where in sorted(header["sizes"]):
        starts[where] = at
        at += header["sizes"][where]
    if at != len(blob):
        raise ValueError(f"checkpoint is {len(blob)} bytes, its header describes {at}: truncated or altered")
    view = memoryview(bytearray(blob))  # writable, as torch.frombuffer wants
    tensors = []
    for where, offset, nbytes, dtype, shape in header["entries"]:
        start = starts[where] + offset
        # Cloned first: a fresh allocation is aligned for any dtype, a slice of the blob may not be.
        raw = torch.frombuffer(view[start : start + nbytes], dtype=torch.uint8).clone() if nbytes else torch.zeros(0)
        tensors.append(raw.to(torch.uint8).view(getattr(torch, dtype)).reshape(shape))

    def resolve(obj: Any) -> Any:
        if isinstance(obj, _Ref):
            return tensors[obj.index]
        if isinstance(obj, dict):
            return {k: resolve(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(resolve(v) for v in obj)
        return obj

    return resolve(header["skeleton"])


def fine_tune(
    model: nn.Module,
    frames: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    checkpoints: Checkpoints | None,
    fingerprint: dict[str, Any],
    *,
    device: torch.device,
    log: Log = stderr_log,
) -> RunStats:
    """Train ``model`` on uint8 ``frames`` (N, 3, H, W) with integer ``labels``; resume from the last checkpoint
    whose fingerprint matches this run's, and checkpoint after every epoch."""
    if frames.shape[0] != labels.shape[0] or frames.shape[0] == 0:
        raise ValueError(f"{frames.shape[0]} frames and {labels.shape[0]} labels: need as many, and at least one")
    stats = RunStats()
    model.to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg), betas=(0.9, 0.999))
    steps_per_epoch = math.ceil(frames.shape[0] / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(total * cfg.warmup_fraction))
    generator = torch.Generator().manual_seed(cfg.seed)
    start_epoch = 1
    fp = {**fingerprint, "config": asdict(cfg)}
    if checkpoints is not None and (found := checkpoints.latest()) is not None:
        epoch, blob = found
        state = unpack(blob)
        if state.get("fingerprint") != fp:
            raise ValueError(
                f"checkpoint of epoch {epoch} belongs to another run (different settings, classes or data); "
                "use a new --checkpoint-prefix or remove the old checkpoints"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start_epoch = epoch + 1
        stats.resumed_from = epoch
        log(f"resumed from the checkpoint of epoch {epoch}")
    frames_dev = frames.to(device)
    labels_dev = labels.to(device)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    use_bf16 = device.type == "cuda"
    saver = ThreadPoolExecutor(max_workers=1)
    pending: Future[None] | None = None
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            model.train()
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            order = torch.randperm(frames.shape[0], generator=generator).to(device)
            flips = (torch.rand(frames.shape[0], 2, generator=generator) < 0.5).to(device)
            turns = torch.randint(0, 4, (steps_per_epoch,), generator=generator).tolist()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            for i in range(steps_per_epoch):
                step = (epoch - 1) * steps_per_epoch + i
                factor = _lr_factor(step, total, warmup)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                x = normalise(augment(frames_dev[idx], flips[i * cfg.batch_size : (i + 1) * cfg.batch_size], turns[i]))
                y = labels_dev[idx]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(x)
                    loss = criterion(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * idx.numel()
                correct += (logits.argmax(1) == y).sum()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            n = frames.shape[0]
            es = EpochStats(epoch, float(loss_sum) / n, int(correct) / n, n, seconds)
            stats.epochs.append(es)
            log(
                f"epoch {epoch}/{cfg.epochs}: loss {es.loss:.4f}, train accuracy {es.train_accuracy:.3f}, "
                f"{n / seconds:.1f} images/s"
            )
            # The last epoch is not checkpointed: its result is the model the caller exports and publishes next
            # (a pod lost in between retrains one epoch), and waiting for its upload would only add to the run.
            if checkpoints is not None and epoch < cfg.epochs:
                # A device-side snapshot (fast, in stream order); the copy to the host and the upload happen in
                # the background while the next epoch trains.
                packed = pack(
                    {
                        "epoch": epoch,
                        "fingerprint": fp,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(),
                    }
                )
                waited = time.perf_counter()
                if pending is not None:
                    pending.result()  # at most one checkpoint in flight
                stats.checkpoint_wait_seconds += time.perf_counter() - waited
                pending = saver.submit(_save, checkpoints, epoch, packed)
        waited = time.perf_counter()
        if pending is not None:
            pending.result()
        stats.checkpoint_wait_seconds += time.perf_counter() - waited
    finally:
        saver.shutdown(wait=True)
    return stats


def _save(checkpoints: Checkpoints, epoch: int, packed: Packed) -> None:
    checkpoints.save(epoch, packed.to_bytes())


@torch.no_grad()
def predict(model: nn.Module, frames: torch.Tensor, device: torch.device, batch_size: int = 64) -> torch.Tensor:
    model.eval().to(device)
    out = []
    for i in range(0, frames.shape[0], batch_size):
        x = normalise(frames[i : i + batch_size].to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def evaluate(
    model: nn.Module, frames: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...], device: torch.device
) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true class, columns: predicted)."""
    preds = predict(model, frames, device).argmax(1)
    k = len(classes)
    confusion = torch.zeros(k, k, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist(), strict=True):
        confusion[t, p] += 1
    per_class = {
        c: (confusion[i, i].item() / int(confusion[i].sum())) if int(confusion[i].sum()) else None
        for i, c in enumerate(classes)
    }
    total = int(confusion.sum())
    return {
        "frames": total,
        "accuracy": (int(confusion.diag().sum()) / total) if total else None,
        "per_class_accuracy": per_class,
        "confusion_matrix": {"classes": list(classes), "rows_true_columns_predicted": confusion.tolist()},
    }


def format_evaluation(result: dict[str, Any]) -> str:
    classes: list[str] = result["confusion_matrix"]["classes"]
    rows: list[list[int]] = result["confusion_matrix"]["rows_true_columns_predicted"]
    width = max(len(c) for c in classes) + 2
    lines = [f"held-out accuracy {result['accuracy']:.3f} on {result['frames']} frames"]
    lines.append("true \\ predicted".ljust(width) + "".join(c[:6].rjust(8) for c in classes) + "  accuracy")
    for c, row in zip(classes, rows, strict=True):
        acc = result["per_class_accuracy"][c]
        shown = f"{acc:.3f}" if acc is not None else "-"
        lines.append(c.ljust(width) + "".join(str(v).rjust(8) for v in row) + f"  {shown}")
    return "\n".join(lines)


def export_onnx(model: nn.Module, image_size: int, path: Path, check_frames: torch.Tensor) -> float:
    """Write ``model`` as ONNX with a dynamic batch axis; returns the largest difference from torch on
    ``check_frames`` (run through onnxruntime at a batch size other than the one traced)."""
    import onnxruntime as ort  # only needed here

    model = model.eval().float().cpu()
    dummy = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        model,
        (dummy,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    assert program is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)
    x = normalise(check_frames)
    with torch.no_grad():
        want = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    return float(abs(got - want).max())
