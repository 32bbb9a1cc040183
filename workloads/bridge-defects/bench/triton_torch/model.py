"""Triton Python-backend model for the GPU benchmark: the network in torch on the GPU (bf16 autocast).

The GPU machine has no onnxruntime, so this serves the same architecture, input, output and labels as the
production ``onnxruntime_onnx`` model, from torch, with random weights (latency does not depend on them).
Tensors cross the backend by DLPack only: the stub's numpy-1 array path is never used.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import timm  # noqa: E402
import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: E402
from torch.utils.dlpack import from_dlpack, to_dlpack  # type: ignore[attr-defined]  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        size = int(config["input"][0]["dims"][-1])
        classes = int(config["output"][0]["dims"][0])
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(0)
        net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=classes, img_size=size)
        self.model = net.to(self.device).eval()

    def execute(self, requests: list[Any]) -> list[Any]:
        xs = [from_dlpack(pb_utils.get_input_tensor_by_name(r, self.input_name).to_dlpack()) for r in requests]
        sizes = [x.shape[0] for x in xs]
        x = torch.cat(xs).to(self.device, non_blocking=True)
        bf16 = self.device.type == "cuda"
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
            logits = self.model(x).float().cpu()
        responses = []
        start = 0
        for n in sizes:
            part = logits[start : start + n].contiguous()
            out = pb_utils.Tensor.from_dlpack(self.output_name, to_dlpack(part))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += n
        return responses
