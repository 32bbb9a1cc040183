"""The network: timm's ``vit_small_patch14_dinov2`` with the hub's pretrained backbone and a new class head.

The base model (what ``edgefm models publish`` puts in the registry) is a directory with
``backbone.safetensors`` (timm parameter names, position embedding at its native 37x37 grid) and
``model.json`` (architecture, source and checksum). Loading resamples the position embedding to the training
image size once, so one base model serves any input size that is a multiple of the 14 px patch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file
from timm.layers.pos_embed import resample_abs_pos_embed
from torch import nn

ARCH = "vit_small_patch14_dinov2"
PATCH = 14
BACKBONE_FILE = "backbone.safetensors"
META_FILE = "model.json"
# DINOv2 was trained on ImageNet-normalised inputs.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class BaseModelError(RuntimeError):
    """The base model directory is incomplete or not the architecture this trainer builds."""


def build(num_classes: int, image_size: int, depth: int | None = None) -> nn.Module:
    """An untrained network; ``depth`` keeps only the first blocks (a cut-down backbone for quick runs)."""
    if image_size % PATCH:
        raise ValueError(f"image size {image_size} is not a multiple of the {PATCH} px patch")
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": num_classes, "img_size": image_size}
    if depth is not None:
        if not 1 <= depth <= 12:
            raise ValueError(f"depth {depth} is out of range 1..12")
        kwargs["depth"] = depth
    model: nn.Module = timm.create_model(ARCH, **kwargs)
    return model


def read_meta(base_dir: Path) -> dict[str, Any]:
    meta_path = base_dir / META_FILE
    weights = base_dir / BACKBONE_FILE
    if not meta_path.is_file() or not weights.is_file():
        raise BaseModelError(f"{base_dir} lacks {META_FILE} or {BACKBONE_FILE}: not a base model directory")
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if meta.get("architecture") != ARCH:
        raise BaseModelError(f"base model architecture is {meta.get('architecture')!r}, this trainer builds {ARCH}")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if meta.get("sha256") != digest:
        raise BaseModelError(f"{weights} does not match the sha256 in {META_FILE}: incomplete or altered")
    return meta


def load_backbone(model: nn.Module, base_dir: Path) -> dict[str, Any]:
    """Load the pretrained backbone into ``model`` (all of it but the head); returns the base model's metadata."""
    meta = read_meta(base_dir)
    # Stored as float32 or bfloat16 (a smaller copy for transfer); trained in float32 master weights either way.
    state = {k: v.float() for k, v in load_file(str(base_dir / BACKBONE_FILE)).items()}
    own = model.state_dict()
    grid = own["pos_embed"].shape[1] - 1
    side = int(grid**0.5)
    state["pos_embed"] = resample_abs_pos_embed(
        state["pos_embed"], new_size=[side, side], num_prefix_tokens=1, antialias=False
    )
    # A cut-down model keeps only its first blocks; everything it has must come from the base model.
    wanted = {k: v for k, v in state.items() if k in own}
    missing = sorted(k for k in own if k not in wanted and not k.startswith("head."))
    if missing:
        raise BaseModelError(f"base model lacks {len(missing)} backbone tensors, e.g. {missing[0]}")
    for key, value in wanted.items():
        if value.shape != own[key].shape:
            raise BaseModelError(
                f"base model tensor {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}"
            )
    model.load_state_dict(wanted, strict=False)
    return meta


_STATS: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float32 normalised input."""
    # Mean and std are made on the device once: a host-to-device copy per batch would stall the launch queue.
    if frames.device not in _STATS:
        mean = torch.tensor(MEAN, device=frames.device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=frames.device).view(1, 3, 1, 1)
        _STATS[frames.device] = (mean, std)
    mean, std = _STATS[frames.device]
    return (frames.float() / 255.0 - mean) / std
