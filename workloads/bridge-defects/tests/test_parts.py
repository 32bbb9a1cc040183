"""The workload's parts on their own: generator, class list, trainer arguments, repository layout, publish order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge_defects import synth, train
from bridge_defects.classes import CLASSES, parse_classes
from bridge_defects.finetune import LocalCheckpoints, TrainConfig, fine_tune
from bridge_defects.model import build
from bridge_defects.storage import StorageError, bucket
from bridge_defects.triton_repo import ServingSpec, config_pbtxt, existing_versions, publish_version


def test_frames_are_a_function_of_seed_class_and_index() -> None:
    a = np.asarray(synth.draw_frame("crack", 3, seed=5, size=64))
    b = np.asarray(synth.draw_frame("crack", 3, seed=5, size=64))
    c = np.asarray(synth.draw_frame("crack", 3, seed=6, size=64))
    d = np.asarray(synth.draw_frame("crack", 4, seed=5, size=64))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_classes_differ_in_colour_where_they_should() -> None:
    """Rust is orange-brown, efflorescence is chalk-white: their mean colours separate from bare concrete."""

    def mean_rgb(label: str) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
        frames = [np.asarray(synth.draw_frame(label, i, seed=1, size=48), np.float64) for i in range(12)]
        out: np.ndarray[tuple[int], np.dtype[np.float64]] = np.mean([f.reshape(-1, 3).mean(0) for f in frames], 0)
        return out

    background, stain, white = mean_rgb("background"), mean_rgb("corrosion-stain"), mean_rgb("efflorescence")
    assert stain[0] - stain[2] > background[0] - background[2] + 5  # redder than concrete
    assert white.mean() > background.mean() + 5  # lighter than concrete


def test_generator_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown class 'rust'"):
        synth.draw_frame("rust", 0)
    with pytest.raises(ValueError, match="too small"):
        synth.draw_frame("crack", 0, size=8)
    with pytest.raises(SystemExit):
        synth.main([str(tmp_path), "--per-class", "0"])
    assert "--per-class must be at least 1, got 0" in capsys.readouterr().err
    assert synth.main([str(tmp_path / "ok"), "--per-class", "1", "--size", "32"]) == 0
    assert sorted(p.parent.name for p in (tmp_path / "ok").rglob("*.png")) == sorted(CLASSES)


def test_class_list() -> None:
    assert parse_classes(" crack, spallation ") == ("crack", "spallation")
    with pytest.raises(ValueError, match="at least two"):
        parse_classes("crack")
    with pytest.raises(ValueError, match="repeats crack"):
        parse_classes("crack,spallation,crack")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--output-prefix", "finetuned"], "--output-prefix 'finetuned' must end with '/'"),
        (["--holdout", "1.5"], "--holdout must be between 0 and 1"),
    ],
)
def test_trainer_rejects_bad_arguments(change: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = {
        "--base-model": "foundation/m/1.0.0/files/",
        "--dataset-prefix": "labelled/",
        "--output-prefix": "finetuned/",
        "--model-name": "m",
        "--classes": "a,b",
        "--epochs": "1",
        "--batch-size": "2",
        "--learning-rate": "0.001",
        "--checkpoint-prefix": "job/",
    }
    args.update(dict(zip(change[::2], change[1::2], strict=True)))
    with pytest.raises(SystemExit):
        train.parse_args([x for kv in args.items() for x in kv])
    assert message in capsys.readouterr().err


def test_train_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="--epochs must be at least 1"):
        TrainConfig(epochs=0, batch_size=1, learning_rate=0.1)
    with pytest.raises(ValueError, match="--learning-rate must be in"):
        TrainConfig(epochs=1, batch_size=1, learning_rate=2.0)


def test_storage_names_the_missing_setting() -> None:
    with pytest.raises(StorageError, match="EDGEFM_SITE_S3_ENDPOINT must be an http"):
        bucket("MODELS", {})
    with pytest.raises(StorageError, match="EDGEFM_MODELS_BUCKET is not set"):
        bucket("MODELS", {"EDGEFM_SITE_S3_ENDPOINT": "http://127.0.0.1:9"})


def test_held_out_split_is_stable_and_near_the_fraction() -> None:
    keys = [f"labelled/crack/crack-{i:05d}.png" for i in range(2000)]
    first = [train.held_out(k, 0.2) for k in keys]
    assert first == [train.held_out(k, 0.2) for k in keys]
    assert 0.17 < sum(first) / len(keys) < 0.23


def test_serving_configs_differ_only_in_backend() -> None:
    spec = ServingSpec("bridge-defect-vit", CLASSES, 224)
    prod = config_pbtxt(spec, 3, "onnxruntime").splitlines()
    test = config_pbtxt(spec, 3, "python").splitlines()
    diff = [(a, b) for a, b in zip(prod, test, strict=True) if a != b]
    assert diff == [('platform: "onnxruntime_onnx"', 'backend: "python"')]
    text = "\n".join(prod)
    assert "dims: [ 3, 224, 224 ]" in text and "dims: [ 6 ]" in text and 'label_filename: "labels.txt"' in text
    assert "versions: [ 3 ]" in text
    with pytest.raises(ValueError, match="model name"):
        ServingSpec("bad name", CLASSES, 224)


@dataclass
class RecordingBucket:
    """Stands in for a site bucket: records the order of PUTs (what a Triton poll could observe)."""

    objects: dict[str, bytes] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    name: str = "models"

    def keys(self, prefix: str) -> list[str]:
        return [k for k in self.objects if k.startswith(prefix)]

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body
        self.order.append(key)


def test_publish_writes_the_next_version_and_switches_config_last() -> None:
    b = RecordingBucket()
    b.objects["finetuned/m/7/model.onnx"] = b"old"
    b.objects["finetuned/m/config.pbtxt"] = b"old"
    spec = ServingSpec("m", ("a", "b"), 56)
    version = publish_version(b, "finetuned/", spec, b"onnx", {"accuracy": 1.0}, flavour="python")  # type: ignore[arg-type]
    assert version == 8
    assert b.order[-1] == "finetuned/m/config.pbtxt"
    assert set(b.order[:-2]) == {f"finetuned/m/8/{f}" for f in ("model.py", "labels.txt", "eval.json", "model.onnx")}
    assert "versions: [ 8 ]" in b.objects["finetuned/m/config.pbtxt"].decode()
    assert json.loads(b.objects["finetuned/m/8/eval.json"]) == {"accuracy": 1.0}
    assert existing_versions(b, "finetuned/", "m") == [7, 8]  # type: ignore[arg-type]


def test_resume_continues_from_the_last_checkpoint_and_refuses_another_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    frames = torch.randint(0, 255, (8, 3, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([0, 1] * 4)
    cfg = TrainConfig(epochs=2, batch_size=4, learning_rate=1e-3, image_size=28)
    store = LocalCheckpoints(tmp_path)
    logs: list[str] = []
    net = build(2, 28, depth=1)
    fine_tune(net, frames, labels, cfg, store, {"run": 1}, device=torch.device("cpu"), log=logs.append)
    # Every epoch but the last is checkpointed (the last one's result is what gets exported).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001.pt"]
    # A run restarted from there trains only the second epoch, and ends with the same weights.
    again = build(2, 28, depth=1)
    stats = fine_tune(again, frames, labels, cfg, store, {"run": 1}, device=torch.device("cpu"), log=logs.append)
    assert stats.resumed_from == 1 and [e.epoch for e in stats.epochs] == [2]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="belongs to another run"):
        fine_tune(build(2, 28, depth=1), frames, labels, cfg, store, {"run": 2}, device=torch.device("cpu"))
