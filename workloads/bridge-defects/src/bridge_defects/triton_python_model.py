"""Triton Python-backend model: runs this version's ``model.onnx`` with onnxruntime.

Copied into each version directory as ``model.py`` where Triton's onnxruntime backend is not available (the
``nvidia-pytriton`` server carries the Python backend only). Inputs, outputs and labels are those of the
production ``onnxruntime_onnx`` configuration, so clients cannot tell the two apart.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# The backend stub embeds an interpreter that ignores PYTHONPATH; honour it here (ahead of the system paths) so
# numpy and onnxruntime can come from another environment.
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: E402


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        threads = int(os.environ.get("EDGEFM_ORT_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(path, options, providers=providers)

    def execute(self, requests: list[Any]) -> list[Any]:
        # Triton's dynamic batcher hands several requests at once: run them as one batch, split the result.
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        batch = np.concatenate(arrays).astype(np.float32, copy=False)
        (logits,) = self.session.run([self.output_name], {self.input_name: batch})
        responses = []
        start = 0
        for n in sizes:
            out = pb_utils.Tensor(self.output_name, np.ascontiguousarray(logits[start : start + n]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += n
        return responses
