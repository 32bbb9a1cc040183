"""The Triton model repository the trainer publishes into, and the order that keeps every poll consistent.

Layout under the output prefix (the site's ``finetuned/`` prefix in the models bucket)::

    <model>/config.pbtxt     written LAST; its version_policy names the one version to serve
    <model>/labels.txt       the class names, one a line, in output order
    <model>/<N>/model.onnx   the fine-tuned network (dynamic batch axis)
    <model>/<N>/eval.json    held-out accuracy, per-class accuracy and confusion matrix
    <model>/<N>/labels.txt   the classes of this version, kept with it

Triton in poll mode lists the repository every few seconds and may do so while files are still uploading. A new
version directory is therefore written in full while ``config.pbtxt`` still pins the previous version, and only
then is ``config.pbtxt`` replaced (one PUT, atomic in S3): a poll sees either the old complete state or the new
complete state, never a version with half its files.

Production serves ``model.onnx`` with Triton's ``onnxruntime_onnx`` platform. The ``python`` flavour serves the same
file through onnxruntime inside Triton's Python backend (the only backend in the ``nvidia-pytriton`` wheel the
tests run); its config differs only in the backend line and the bundled ``model.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # boto3 is not needed to lay out a repository (benchmarks import this module without it)
    from bridge_defects.storage import Bucket

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
Flavour = Literal["onnxruntime", "python"]


@dataclass(frozen=True)
class ServingSpec:
    model_name: str
    classes: tuple[str, ...]
    image_size: int
    max_batch_size: int = 32

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.model_name):
            raise ValueError(f"model name {self.model_name!r}: letters, digits, '.', '_' and '-' only")
        if not 1 <= self.max_batch_size <= 1024:
            raise ValueError(f"max batch size {self.max_batch_size} is out of range 1..1024")


def config_pbtxt(spec: ServingSpec, version: int, flavour: Flavour = "onnxruntime") -> str:
    """Triton's model configuration: one input (N, 3, H, W) float32, one output (N, classes) with labels."""
    backend = 'platform: "onnxruntime_onnx"' if flavour == "onnxruntime" else 'backend: "python"'
    return f"""name: "{spec.model_name}"
{backend}
max_batch_size: {spec.max_batch_size}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ 3, {spec.image_size}, {spec.image_size} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {len(spec.classes)} ]
    label_filename: "labels.txt"
  }}
]
# Serve exactly the version the last fine-tune completed; it is named only after all its files are in place.
version_policy: {{ specific: {{ versions: [ {version} ] }} }}
dynamic_batching {{
  max_queue_delay_microseconds: 2000
}}
"""


def labels_txt(classes: tuple[str, ...]) -> str:
    return "".join(f"{c}\n" for c in classes)


def python_model_source() -> bytes:
    """The Python-backend ``model.py`` that runs ``model.onnx`` through onnxruntime."""
    return resources.files("bridge_defects").joinpath("triton_python_model.py").read_bytes()


def existing_versions(models: Bucket, prefix: str, model_name: str) -> list[int]:
    root = f"{prefix}{model_name}/"
    found: set[int] = set()
    for key in models.keys(root):
        head = key[len(root) :].split("/", 1)[0]
        if head.isdigit() and "/" in key[len(root) :]:
            found.add(int(head))
    return sorted(found)


def publish_version(
    models: Bucket,
    prefix: str,
    spec: ServingSpec,
    onnx_bytes: bytes,
    evaluation: dict[str, object],
    flavour: Flavour = "onnxruntime",
) -> int:
    """Upload the next numbered version, then switch ``config.pbtxt`` to it; returns the version number."""
    if prefix and not prefix.endswith("/"):
        raise ValueError(f"output prefix {prefix!r} must end with '/'")
    versions = existing_versions(models, prefix, spec.model_name)
    version = (versions[-1] + 1) if versions else 1
    root = f"{prefix}{spec.model_name}/"
    vdir = f"{root}{version}/"
    labels = labels_txt(spec.classes).encode()
    if flavour == "python":
        models.put(f"{vdir}model.py", python_model_source())
    models.put(f"{vdir}labels.txt", labels)
    models.put(f"{vdir}eval.json", json.dumps(evaluation, indent=2).encode())
    models.put(f"{vdir}model.onnx", onnx_bytes)
    # Only now does any poll learn of the version: labels first (the old version's classes are the same unless
    # the class list changed, in which case the config below changes dims in the same step), config last.
    models.put(f"{root}labels.txt", labels)
    models.put(f"{root}config.pbtxt", config_pbtxt(spec, version, flavour).encode())
    return version
