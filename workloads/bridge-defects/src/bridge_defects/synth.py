"""Procedurally drawn drone frames of concrete-bridge surfaces for the six defect classes.

Every frame is a function of (seed, class, index) only, so a data set can be rebuilt bit for bit anywhere.
A frame is drawn at twice its output size on a concrete texture (multi-scale noise, aggregate, pores), gets the
class's defect, then distractors every class shares (formwork joints, tie holes, dirt smudges), then the drone's
view: uneven lighting, rotation, zoom, defocus blur and sensor noise.

    python -m bridge_defects.synth OUT_DIR --per-class 50 --seed 7 --size 224

writes ``OUT_DIR/<class>/<class>-<index>.png`` (the layout the trainer reads from the datasets bucket).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from bridge_defects.classes import CLASSES

Array = NDArray[Any]
Rng = np.random.Generator


def _noise(rng: Rng, size: int, cells: int) -> Array:
    """Smooth value noise in [0, 1]: a random grid upsampled bicubically."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    img = Image.fromarray(grid, "L").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def _fractal(rng: Rng, size: int, octaves: tuple[int, ...] = (4, 9, 21, 53)) -> Array:
    out = np.zeros((size, size), np.float32)
    weight = 1.0
    for cells in octaves:
        out += weight * (_noise(rng, size, cells) - 0.5)
        weight *= 0.55
    return out


def _concrete(rng: Rng, size: int) -> Array:
    """An RGB concrete surface in [0, 1]: grey with a warm or cool cast, mottling, aggregate and pores."""
    base = rng.uniform(0.45, 0.68)
    tint = np.array([1.0, 1.0, 1.0], np.float32) + rng.uniform(-0.04, 0.04, 3).astype(np.float32)
    mottle = _fractal(rng, size) * rng.uniform(0.12, 0.22)
    grain = (rng.random((size, size)).astype(np.float32) - 0.5) * rng.uniform(0.05, 0.1)
    lum = base + mottle + grain
    img = np.clip(lum[..., None] * tint, 0, 1).astype(np.float32)
    # Aggregate and air pores: small light and dark specks.
    pil = Image.fromarray((img * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    for _ in range(int(size * size / rng.uniform(180, 400))):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(0.6, 2.2) * size / 448
        shade = int(rng.uniform(-60, 35) + lum[int(y) % size, int(x) % size] * 255)
        shade = max(0, min(255, shade))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(shade, shade, shade))
    return np.asarray(pil, dtype=np.float32) / 255.0


def _blob_mask(rng: Rng, size: int, cx: float, cy: float, radius: float, wobble: float = 0.35) -> Array:
    """A soft irregular blob (1 inside) around (cx, cy)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.arctan2(yy - cy, xx - cx)
    rim = np.ones_like(angle) * radius
    for k in range(2, 7):
        rim += radius * wobble / k * np.sin(k * angle + rng.uniform(0, 2 * math.pi))
    rim *= 1 + 0.12 * (_noise(rng, size, 12) - 0.5)
    dist = np.hypot(xx - cx, yy - cy)
    mask: Array = np.clip((rim - dist) / (0.04 * radius + 1), 0, 1).astype(np.float32)
    return mask


def _walk(rng: Rng, start: tuple[float, float], heading: float, steps: int, step: float) -> list[tuple[float, float]]:
    pts = [start]
    x, y = start
    for _ in range(steps):
        heading += rng.normal(0, 0.35)
        x += math.cos(heading) * step
        y += math.sin(heading) * step
        pts.append((x, y))
    return pts


def _paint(img: Array, mask: Array, colour: Array | tuple[float, float, float], alpha: float = 1.0) -> Array:
    col = np.asarray(colour, np.float32)
    m = (mask * alpha)[..., None]
    out: Array = img * (1 - m) + col * m
    return out


def _crack(rng: Rng, img: Array) -> Array:
    size = img.shape[0]
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(1, 3))):
        start = (float(rng.uniform(0.3, 0.7) * size), float(rng.uniform(0.3, 0.7) * size))
        heading = rng.uniform(0, 2 * math.pi)
        main = _walk(rng, start, heading, int(rng.integers(25, 45)), size / 55)
        width = max(1, int(rng.uniform(1.5, 4.0) * size / 448))
        draw.line(main, fill=255, width=width, joint="curve")
        for _ in range(int(rng.integers(1, 4))):
            at = main[int(rng.integers(3, len(main) - 3))]
            branch = _walk(rng, at, heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2), 12, size / 70)
            draw.line(branch, fill=255, width=max(1, width - 1), joint="curve")
    mask = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.6)), np.float32) / 255.0
    return _paint(img, mask, img.mean() * np.array([0.25, 0.24, 0.23], np.float32), 0.95)


def _cavity(rng: Rng, img: Array, scale: tuple[float, float]) -> tuple[Array, Array, float, float, float]:
    """A spalled cavity: the surface layer gone, a rough darker crater with a lit and a shadowed rim."""
    size = img.shape[0]
    cx, cy = (float(v) for v in rng.uniform(0.3, 0.7, 2) * size)
    radius = float(rng.uniform(*scale) * size)
    mask = _blob_mask(rng, size, cx, cy, radius)
    rough = _fractal(rng, size, (20, 45, 90)) * 0.5
    crater = np.clip(img * 0.62 + rough[..., None] * 0.5 + 0.03, 0, 1)
    out = img * (1 - mask[..., None]) + crater * mask[..., None]
    # Rim shading from a light to the upper left: a shifted mask difference.
    shift = max(1, int(radius * 0.08))
    lit = np.clip(mask - np.roll(np.roll(mask, shift, 0), shift, 1), 0, 1)
    shade = np.clip(np.roll(np.roll(mask, shift, 0), shift, 1) - mask, 0, 1)
    out = _paint(out, lit, (0.15, 0.15, 0.15), 0.6)
    out = _paint(out, shade, (0.9, 0.9, 0.88), 0.35)
    return out.astype(np.float32), mask, cx, cy, radius


def _spallation(rng: Rng, img: Array) -> Array:
    return _cavity(rng, img, (0.12, 0.26))[0]


def _exposed_bars(rng: Rng, img: Array) -> Array:
    out, mask, cx, cy, radius = _cavity(rng, img, (0.16, 0.3))
    size = img.shape[0]
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    angle = rng.uniform(0, math.pi)
    dx, dy = math.cos(angle), math.sin(angle)
    nx, ny = -dy, dx
    width = max(2, int(rng.uniform(0.05, 0.08) * size))
    bars = int(rng.integers(1, 4))
    spacing = radius * 0.7
    for i in range(bars):
        off = (i - (bars - 1) / 2) * spacing
        ox, oy = cx + nx * off, cy + ny * off
        draw.line((ox - dx * size, oy - dy * size, ox + dx * size, oy + dy * size), fill=255, width=width)
    bar = np.asarray(layer, np.float32) / 255.0 * np.clip(mask * 1.3, 0, 1)
    # Ribbed steel: rust with periodic ribs along the bar and a highlight along its axis.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    along = (xx * dx + yy * dy) / max(2.0, width * 0.9)
    ribs = 0.75 + 0.25 * np.sign(np.sin(along * math.pi))
    rust = np.array([0.42, 0.24, 0.12], np.float32) * rng.uniform(0.8, 1.2)
    steel = rust[None, None, :] * ribs[..., None] * (0.85 + 0.3 * _noise(rng, size, 30)[..., None])
    done: Array = (out * (1 - bar[..., None]) + steel * bar[..., None]).astype(np.float32)
    return done


def _streaks(rng: Rng, size: int, count: int, width: tuple[float, float], length: tuple[float, float]) -> Array:
    """Soft streaks running down the surface from sources near the top (water run-off)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((size, size), np.float32)
    for _ in range(count):
        x0 = rng.uniform(0.25, 0.75) * size
        y0 = rng.uniform(0.1, 0.45) * size
        w = rng.uniform(*width) * size
        ln = rng.uniform(*length) * size
        sway = (_noise(rng, size, 5) - 0.5) * size * 0.08
        across = np.exp(-(((xx - x0 - sway) / w) ** 2))
        down = np.clip((yy - y0) / (0.05 * size), 0, 1) * np.exp(-np.clip(yy - y0, 0, None) / ln)
        out = np.maximum(out, across * down)
    return out


def _efflorescence(rng: Rng, img: Array) -> Array:
    size = img.shape[0]
    streak = _streaks(rng, size, int(rng.integers(2, 6)), (0.03, 0.09), (0.25, 0.6))
    cx, cy = (float(v) for v in rng.uniform(0.25, 0.75, 2) * size)
    patch = _blob_mask(rng, size, cx, cy, rng.uniform(0.08, 0.18) * size)
    chalk = np.clip(np.maximum(streak, patch * 0.9) * (0.6 + 0.6 * _noise(rng, size, 40)), 0, 1)
    return _paint(img, chalk, (0.95, 0.95, 0.93), rng.uniform(0.7, 0.9))


def _corrosion_stain(rng: Rng, img: Array) -> Array:
    size = img.shape[0]
    streak = _streaks(rng, size, int(rng.integers(2, 5)), (0.02, 0.07), (0.2, 0.55))
    stain = np.clip(streak * (0.5 + 0.7 * _noise(rng, size, 35)), 0, 1)
    brown = np.array([0.55, 0.3, 0.12], np.float32) * rng.uniform(0.75, 1.1)
    return _paint(img, stain, brown, rng.uniform(0.65, 0.85))


def _background(rng: Rng, img: Array) -> Array:
    return img


DEFECTS: dict[str, Callable[[Rng, Array], Array]] = {
    "background": _background,
    "crack": _crack,
    "spallation": _spallation,
    "efflorescence": _efflorescence,
    "exposed-bars": _exposed_bars,
    "corrosion-stain": _corrosion_stain,
}
assert tuple(DEFECTS) == CLASSES


def _distractors(rng: Rng, img: Array) -> Array:
    """What every class may show: formwork joints, tie-rod holes, dirt and moss smudges."""
    size = img.shape[0]
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    if rng.random() < 0.6:
        # Straight, even formwork joints: unlike cracks they never wander.
        pos = rng.uniform(0.15, 0.85) * size
        shade = tuple(int(v) for v in np.asarray(pil).reshape(-1, 3).mean(0) * 0.72)
        w = max(1, int(size / 150))
        if rng.random() < 0.5:
            draw.line((0, pos, size, pos), fill=shade, width=w)
        else:
            draw.line((pos, 0, pos, size), fill=shade, width=w)
    if rng.random() < 0.4:
        for _ in range(int(rng.integers(1, 5))):
            x, y = rng.uniform(0.05, 0.95, 2) * size
            r = size * 0.012
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(60, 60, 62))
    out = np.asarray(pil, np.float32) / 255.0
    if rng.random() < 0.5:
        cx, cy = (float(v) for v in rng.uniform(0.1, 0.9, 2) * size)
        smudge = _blob_mask(rng, size, cx, cy, rng.uniform(0.05, 0.15) * size) * 0.35
        colour = (0.3, 0.33, 0.25) if rng.random() < 0.5 else (0.35, 0.35, 0.35)
        out = _paint(out, smudge, colour)
    return out


def _camera(rng: Rng, img: Array, size: int) -> Image.Image:
    """Uneven light, rotation, zoom, defocus and sensor noise; returns the frame at ``size`` px."""
    big = img.shape[0]
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big
    angle = rng.uniform(0, 2 * math.pi)
    light = 1 + rng.uniform(0.1, 0.35) * ((xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle))
    light *= rng.uniform(0.75, 1.2)
    lit = np.clip(img * light[..., None], 0, 1)
    pil = Image.fromarray((lit * 255).astype(np.uint8), "RGB")
    zoom = rng.uniform(1.0, 1.4)
    pil = pil.rotate(rng.uniform(0, 360), resample=Image.Resampling.BILINEAR, expand=False, fillcolor=None)
    # Crop inside the rotated square (corners are empty) and apply the zoom.
    keep = big / math.sqrt(2) / zoom
    off = (big - keep) / 2
    jitter = rng.uniform(-0.05, 0.05, 2) * keep
    box = (off + jitter[0], off + jitter[1], off + jitter[0] + keep, off + jitter[1] + keep)
    pil = pil.resize((size, size), Image.Resampling.BILINEAR, box=box)
    blur = rng.uniform(0, 1.3) * size / 224
    if blur > 0.2:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(pil, np.float32)
    noisy = arr + rng.normal(0, rng.uniform(1, 5), arr.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def frame_rng(seed: int, label: str, index: int) -> Rng:
    """The frame's own random stream, independent of which other frames are drawn."""
    return np.random.default_rng([seed, CLASSES.index(label), index])


def draw_frame(label: str, index: int, *, seed: int = 0, size: int = 224) -> Image.Image:
    """One RGB frame of class ``label``; the same arguments always give the same pixels."""
    if label not in DEFECTS:
        raise ValueError(f"unknown class {label!r}; expected one of {', '.join(CLASSES)}")
    if size < 16:
        raise ValueError(f"frame size {size} is too small (at least 16 px)")
    rng = frame_rng(seed, label, index)
    # Drawn at 2x (at least 320 px) so thin cracks survive the rotation and resampling.
    big = max(320, 2 * size)
    # Before the rotation crop only the centre 1/sqrt(2) survives: draw defects there.
    img = _concrete(rng, big)
    img = DEFECTS[label](rng, img)
    img = _distractors(rng, img)
    return _camera(rng, img, size)


def write_dataset(
    out: Path, per_class: int, *, seed: int = 0, size: int = 224, classes: tuple[str, ...] = CLASSES, start: int = 0
) -> list[Path]:
    """Write ``per_class`` frames of each class to ``out/<class>/<class>-<index>.png``."""
    written: list[Path] = []
    for label in classes:
        (out / label).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            path = out / label / f"{label}-{i:05d}.png"
            draw_frame(label, i, seed=seed, size=size).save(path, optimize=False)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw labelled drone frames of concrete-bridge defects.")
    parser.add_argument("out", type=Path, help="output directory (one sub-directory per class)")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224, help="frame edge in pixels")
    parser.add_argument("--start", type=int, default=0, help="first frame index (disjoint ranges: disjoint frames)")
    args = parser.parse_args(argv)
    if args.per_class < 1:
        parser.error(f"--per-class must be at least 1, got {args.per_class}")
    try:
        paths = write_dataset(args.out, args.per_class, seed=args.seed, size=args.size, start=args.start)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} frames ({args.per_class} per class, {args.size} px, seed {args.seed}) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
