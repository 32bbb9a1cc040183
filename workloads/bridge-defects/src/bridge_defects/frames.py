"""Decoding labelled frames into the uint8 (N, 3, H, W) tensor the fine-tune keeps on its device."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def load_frame(path: Path, size: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_frames(paths: list[Path], size: int, threads: int = 8) -> torch.Tensor:
    if not paths:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        arrays = list(pool.map(lambda p: load_frame(p, size), paths))
    return torch.from_numpy(np.stack(arrays))
